//! Real ZooKeeper servers from the Debian `zookeeper` package.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ports::free_port;
use crate::process::ManagedProcess;
use crate::{io_error, poll, HarnessError, Result};

/// Tick length of test servers. Short, so that short session timeouts are allowed: the server
/// clamps session timeouts to [2, 20] ticks unless min/max are set, and we set both. Sessions
/// also expire on tick boundaries, so a benchmark can set `ZGRES_TEST_ZK_TICK_MS` (e.g. 2000,
/// ZooKeeper's default) to measure what a default installation sees.
pub const TICK_MS: u64 = 100;

/// The tick length in force: `ZGRES_TEST_ZK_TICK_MS` when set to a number, else [`TICK_MS`].
pub fn tick_ms() -> u64 {
    std::env::var("ZGRES_TEST_ZK_TICK_MS")
        .ok()
        .and_then(|t| t.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(TICK_MS)
}
/// Longest session timeout the test servers grant.
pub const MAX_SESSION_TIMEOUT_MS: u64 = 60_000;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const CLASSPATH: &[&str] = &[
    "/usr/share/java/zookeeper.jar",
    // Optional: without a binding SLF4J logs nothing, which makes failures hard to read.
    "/usr/share/java/slf4j-simple.jar",
];

/// One ZooKeeper server of a [`ZkCluster`].
#[derive(Debug)]
struct Member {
    id: usize,
    client_port: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<ManagedProcess>,
}

/// A standalone ZooKeeper server or an ensemble, on loopback ports, in a temp dir.
///
/// Dropping it kills every member and deletes its data.
#[derive(Debug)]
pub struct ZkCluster {
    members: Vec<Member>,
    _dir: TempDir,
}

impl ZkCluster {
    /// Starts a standalone server and waits until it serves.
    ///
    /// # Errors
    /// When Java or the ZooKeeper jar is missing or the server does not serve within a minute.
    pub async fn standalone() -> Result<Self> {
        Self::start(1).await
    }

    /// Starts an ensemble of `size` members (1 = standalone) and waits until every member
    /// serves.
    ///
    /// # Errors
    /// As [`ZkCluster::standalone`].
    pub async fn start(size: usize) -> Result<Self> {
        if !Path::new(CLASSPATH[0]).exists() {
            return Err(HarnessError::Setup(format!(
                "{} not found: apt-get install zookeeper",
                CLASSPATH[0]
            )));
        }
        let dir = tempfile::Builder::new()
            .prefix("zgres-zk-")
            .tempdir()
            .map_err(io_error("create a ZooKeeper temp dir"))?;
        let mut peers = String::new();
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
            .collect::<Result<_>>()?;
        if size > 1 {
            for (i, (_, quorum, election)) in ports.iter().enumerate() {
                let _ = writeln!(peers, "server.{}=127.0.0.1:{quorum}:{election}", i + 1);
            }
        }
        let mut members = Vec::with_capacity(size);
        for (i, (client_port, _, _)) in ports.iter().enumerate() {
            let id = i + 1;
            let data = dir.path().join(format!("data-{id}"));
            std::fs::create_dir_all(&data).map_err(io_error("create ZooKeeper data dir"))?;
            std::fs::write(data.join("myid"), format!("{id}\n"))
                .map_err(io_error("write ZooKeeper myid"))?;
            let config = dir.path().join(format!("zoo-{id}.cfg"));
            let text = format!(
                "tickTime={tick}\ninitLimit=100\nsyncLimit=20\n\
                 dataDir={data}\nclientPort={client_port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr,cons,mntr\n\
                 minSessionTimeout={min_session}\nmaxSessionTimeout={MAX_SESSION_TIMEOUT_MS}\n\
                 {peers}",
                data = data.display(),
                tick = tick_ms(),
                min_session = 2 * tick_ms(),
            );
            std::fs::write(&config, text).map_err(io_error("write ZooKeeper config"))?;
            members.push(Member {
                id,
                client_port: *client_port,
                config,
                log: dir.path().join(format!("zookeeper-{id}.log")),
                process: None,
            });
        }
        let mut cluster = ZkCluster { members, _dir: dir };
        for i in 0..size {
            cluster.spawn_member(i)?;
        }
        for i in 0..size {
            cluster.wait_serving(i).await?;
        }
        Ok(cluster)
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// `host:port,host:port,...` of every member, for a ZooKeeper client.
    pub fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client address of member `index` (0-based).
    pub fn client_addr(&self, index: usize) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.members[index].client_port).into()
    }

    /// Process id of member `index`, if it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.members[index].process.as_ref().map(|p| p.pid())
    }

    /// Kills member `index` with `SIGKILL` (member loss), and reaps it.
    pub fn kill_member(&mut self, index: usize) {
        if let Some(process) = self.members[index].process.take() {
            process.kill();
        }
    }

    /// Starts member `index` again (after [`ZkCluster::kill_member`]) and waits until it serves.
    ///
    /// # Errors
    /// When it does not serve within a minute.
    pub async fn restart_member(&mut self, index: usize) -> Result<()> {
        if self.members[index].process.is_none() {
            self.spawn_member(index)?;
        }
        self.wait_serving(index).await
    }

    /// The member's mode as its `srvr` command reports it (`standalone`, `leader`,
    /// `follower`), or `None` when it does not answer or does not serve.
    pub async fn mode(&self, index: usize) -> Option<String> {
        let reply = four_letter_word(self.client_addr(index), "srvr")
            .await
            .ok()?;
        reply
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(str::to_owned)
    }

    fn spawn_member(&mut self, index: usize) -> Result<()> {
        let member = &mut self.members[index];
        let classpath = CLASSPATH
            .iter()
            .filter(|p| Path::new(p).exists())
            .copied()
            .collect::<Vec<_>>()
            .join(":");
        let config = member.config.display().to_string();
        let args = [
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            &classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            &config,
        ];
        member.process = Some(ManagedProcess::spawn(
            &format!("zookeeper member {}", member.id),
            "java",
            args,
            &[],
            None,
            &member.log,
        )?);
        Ok(())
    }

    async fn wait_serving(&mut self, index: usize) -> Result<()> {
        let addr = self.client_addr(index);
        let what = format!("ZooKeeper member {} serving on {addr}", index + 1);
        let log = self.members[index].log.clone();
        let member = &mut self.members[index];
        poll::until(&what, START_TIMEOUT, || {
            let alive = match member.process.as_mut() {
                Some(process) => process.check_alive(),
                None => Err(HarnessError::Setup(format!("{what}: not started"))),
            };
            async move {
                if let Err(e) = alive {
                    return Some(Err(e));
                }
                match four_letter_word(addr, "srvr").await {
                    Ok(reply) if reply.contains("Mode: ") => Some(Ok(())),
                    _ => None,
                }
            }
        })
        .await
        .map_err(|e| e.with_log(log))?
    }
}

/// Sends a ZooKeeper four-letter command and returns the reply. Every step has a timeout, so a
/// hung or blackholed server cannot stall the caller.
///
/// # Errors
/// When the connection, the write or the read fails or times out.
pub async fn four_letter_word(addr: std::net::SocketAddr, word: &str) -> std::io::Result<String> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "four-letter word");
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(word.as_bytes()).await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| timed_out())?
}
