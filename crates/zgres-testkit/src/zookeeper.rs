//! Real ZooKeeper servers from the Debian `zookeeper` package.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zookeeper_client as zk;

use crate::ports::free_port;
use crate::process::ManagedProcess;
use crate::{io_error, poll, HarnessError, Result};

/// Tick length of test servers. Short, so that short session timeouts are allowed: the server
/// clamps session timeouts to [2, 20] ticks unless min/max are set, and we set both. Sessions
/// also expire on tick boundaries, so a benchmark can set `ZGRES_TEST_ZK_TICK_MS` (e.g. 2000,
/// ZooKeeper's default) to measure what a default installation sees.
pub const TICK_MS: u64 = 100;

mod peers;

/// The tick length in force: `ZGRES_TEST_ZK_TICK_MS` when set to a number, else [`TICK_MS`].
pub fn tick_ms() -> u64 {
    std::env::var("ZGRES_TEST_ZK_TICK_MS")
        .ok()
        .and_then(|t| t.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(TICK_MS)
}
/// The test ensembles' `syncLimit` in ticks: how long a member cut from the leader goes on
/// serving its clients (a second at the default tick), which a new primary's takeover waits
/// out (`zookeeper.ensemble_sync_limit`).
pub const SYNC_LIMIT: u32 = 10;

/// `syncLimit` of an ensemble made by [`ZkCluster::start_with_isolatable_follower`]: longer
/// than the test sessions' fence margin by far, so that a cut member's answers clearly
/// outlast a fence that trusts them.
const ISOLATABLE_SYNC_LIMIT: u32 = 20;

/// Longest session timeout the test servers grant.
pub const MAX_SESSION_TIMEOUT_MS: u64 = 60_000;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const CLASSPATH: &[&str] = &[
    "/usr/share/java/zookeeper.jar",
    // Optional: without a binding SLF4J logs nothing, which makes failures hard to read.
    "/usr/share/java/slf4j-simple.jar",
    // Netty, for the TLS-only servers (`secureClientPort` needs NettyServerCnxnFactory); the
    // Debian package depends on libnetty-java, whose netty-all.jar is only a manifest.
    "/usr/share/java/netty-buffer.jar",
    "/usr/share/java/netty-codec.jar",
    "/usr/share/java/netty-common.jar",
    "/usr/share/java/netty-handler.jar",
    "/usr/share/java/netty-resolver.jar",
    "/usr/share/java/netty-transport.jar",
    "/usr/share/java/netty-transport-native-unix-common.jar",
];

/// The files a client of a TLS-only test server uses: the CA that signed the server's
/// certificate, and a client certificate (`CN=zgres-client`) and key signed by it.
#[derive(Debug, Clone)]
pub struct ZkClientTls {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The client certificate (PEM).
    pub cert: PathBuf,
    /// The client key (PEM).
    pub key: PathBuf,
}

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
    /// Set for a TLS-only server ([`ZkCluster::standalone_tls`]).
    tls: Option<ZkClientTls>,
    /// The JAAS file of a server with SASL users ([`ZkCluster::standalone_sasl`]).
    jaas: Option<PathBuf>,
    /// The proxies on the links between members that can be cut
    /// ([`ZkCluster::start_with_isolatable_follower`], [`ZkCluster::start_isolatable`]).
    peer_links: Vec<peers::PeerLink>,
    /// The members' `syncLimit` in ticks.
    sync_limit: u32,
    dir: TempDir,
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
        Self::start_with(size, false, &[]).await
    }

    /// A standalone server with SASL DIGEST-MD5 users (`user`, `password`), in a JAAS
    /// `Server` section with ZooKeeper's `DigestLoginModule`, and its SASL provider on (so a
    /// session of `user` is `sasl:user`). Plain TCP.
    ///
    /// # Errors
    /// As [`ZkCluster::standalone`].
    pub async fn standalone_sasl(users: &[(&str, &str)]) -> Result<Self> {
        Self::start_with(1, false, users).await
    }

    /// A standalone server that listens only on a TLS port (`secureClientPort`, Netty), with
    /// a certificate for 127.0.0.1 made for it, client certificates wanted but not required,
    /// and ZooKeeper's x509 authentication provider on. [`ZkCluster::client_tls`] gives the
    /// files a client needs.
    ///
    /// # Errors
    /// As [`ZkCluster::standalone`].
    pub async fn standalone_tls() -> Result<Self> {
        Self::start_with(1, true, &[]).await
    }

    async fn start_with(size: usize, secure: bool, sasl_users: &[(&str, &str)]) -> Result<Self> {
        Self::build(size, secure, sasl_users, peers::Isolatable::None, None).await
    }

    async fn build(
        size: usize,
        secure: bool,
        sasl_users: &[(&str, &str)],
        isolatable: peers::Isolatable,
        sync_limit: Option<u32>,
    ) -> Result<Self> {
        let isolatable_last = isolatable == peers::Isolatable::Last;
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
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
            .collect::<Result<_>>()?;
        let (peers_of, peer_links) = peers::views(&ports, isolatable)?;
        let sync_limit = sync_limit.unwrap_or(if isolatable_last {
            ISOLATABLE_SYNC_LIMIT
        } else {
            SYNC_LIMIT
        });
        let (tls, listen) = if secure {
            let certs = dir.path();
            crate::tls::make_ca(certs, "zk-ca");
            let (server_crt, server_key) =
                crate::tls::issue_leaf(certs, "zk-ca", "zk-server", "127.0.0.1");
            let (cert, key) = crate::tls::issue_leaf(certs, "zk-ca", "zk-client", "zgres-client");
            // ZooKeeper's PEM key store: the key and the certificate in one file.
            let key_store = certs.join("zk-server.pem");
            let pem = [&server_key, &server_crt]
                .iter()
                .map(std::fs::read_to_string)
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(io_error("read the test server's certificate"))?
                .concat();
            std::fs::write(&key_store, pem).map_err(io_error("write the key store"))?;
            let ca = certs.join("zk-ca.crt");
            let listen = format!(
                "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
                 ssl.keyStore.location={}\nssl.keyStore.type=PEM\n\
                 ssl.trustStore.location={}\nssl.trustStore.type=PEM\n\
                 ssl.clientAuth=want\n\
                 authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n",
                key_store.display(),
                ca.display()
            );
            (Some(ZkClientTls { ca, cert, key }), listen)
        } else {
            (None, String::new())
        };
        let jaas = if sasl_users.is_empty() {
            None
        } else {
            let users: String = sasl_users
                .iter()
                .map(|(user, password)| format!("\n  user_{user}=\"{password}\""))
                .collect();
            let path = dir.path().join("jaas.conf");
            std::fs::write(
                &path,
                format!(
                    "Server {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required{users};\n}};\n"
                ),
            )
            .map_err(io_error("write the JAAS file"))?;
            Some(path)
        };
        let sasl_provider = if jaas.is_some() {
            "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n"
        } else {
            ""
        };
        let mut members = Vec::with_capacity(size);
        for (i, (client_port, _, _)) in ports.iter().enumerate() {
            let id = i + 1;
            let data = dir.path().join(format!("data-{id}"));
            std::fs::create_dir_all(&data).map_err(io_error("create ZooKeeper data dir"))?;
            std::fs::write(data.join("myid"), format!("{id}\n"))
                .map_err(io_error("write ZooKeeper myid"))?;
            let config = dir.path().join(format!("zoo-{id}.cfg"));
            // A TLS-only server has no plain client port at all.
            let port_keys = if secure {
                format!(
                    "secureClientPort={client_port}\nsecureClientPortAddress=127.0.0.1\n{listen}"
                )
            } else {
                format!("clientPort={client_port}\nclientPortAddress=127.0.0.1\n")
            };
            let text = format!(
                "tickTime={tick}\ninitLimit=100\nsyncLimit={sync_limit}\n\
                 dataDir={data}\n{port_keys}{sasl_provider}\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr,cons,mntr\n\
                 minSessionTimeout={min_session}\nmaxSessionTimeout={MAX_SESSION_TIMEOUT_MS}\n\
                 {peers}",
                peers = peers_of[i],
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
        let mut cluster = ZkCluster {
            members,
            tls,
            jaas,
            peer_links,
            sync_limit,
            dir,
        };
        // An isolatable last member joins after the others formed a quorum: a follower.
        let together = if isolatable_last { size - 1 } else { size };
        for i in 0..together {
            cluster.spawn_member(i)?;
        }
        for i in 0..together {
            cluster.wait_serving(i).await?;
        }
        for i in together..size {
            cluster.spawn_member(i)?;
            cluster.wait_serving(i).await?;
        }
        Ok(cluster)
    }

    /// The members' `syncLimit` in ticks.
    pub fn sync_limit(&self) -> u32 {
        self.sync_limit
    }

    /// The number of members.
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

    /// The files a client needs for a TLS-only server; `None` for a plain one.
    pub fn client_tls(&self) -> Option<&ZkClientTls> {
        self.tls.as_ref()
    }

    /// A client certificate and key for subject `CN=common_name`, signed by a TLS-only
    /// server's CA (another identity for its x509 provider: `x509:CN=common_name`).
    ///
    /// # Panics
    /// On a plain server, or when `openssl` fails.
    pub fn issue_client_cert(&self, common_name: &str) -> (PathBuf, PathBuf) {
        assert!(self.tls.is_some(), "not a TLS-only server");
        crate::tls::issue_leaf(self.dir.path(), "zk-ca", common_name, common_name)
    }

    /// A new client session on this cluster (over TLS, presenting the client certificate,
    /// when it is TLS-only), with `connector`'s other options.
    ///
    /// # Errors
    /// When no session is established (the client's own timeout).
    pub async fn connect(&self, connector: zk::Connector) -> Result<zk::Client, zk::Error> {
        match &self.tls {
            Some(files) => {
                let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
                let options = zk::TlsOptions::new()
                    .with_pem_ca(&read(&files.ca))?
                    .with_pem_identity(&read(&files.cert), &read(&files.key))?;
                connector
                    .with_tls(options)
                    .secure_connect(&self.connect_string())
                    .await
            }
            None => connector.connect(&self.connect_string()).await,
        }
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
        let jaas = self
            .jaas
            .as_ref()
            .map(|p| format!("-Djava.security.auth.login.config={}", p.display()));
        let mut args = vec![
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
        ];
        args.extend(jaas.as_deref());
        args.extend([
            "-cp",
            &classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            &config,
        ]);
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
        let tls = self.tls.as_ref();
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
                if let Some(files) = tls {
                    // No plain port to ask: serving is a TLS session established.
                    return serves_tls(addr, files).await.then_some(Ok(()));
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

/// Whether a TLS session can be established with the server at `addr` now.
async fn serves_tls(addr: std::net::SocketAddr, files: &ZkClientTls) -> bool {
    let Ok(ca) = std::fs::read_to_string(&files.ca) else {
        return false;
    };
    let Ok(options) = zk::TlsOptions::new().with_pem_ca(&ca) else {
        return false;
    };
    let addr = addr.to_string();
    let connecting = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(2))
        .with_tls(options)
        .secure_connect(&addr);
    matches!(
        tokio::time::timeout(Duration::from_secs(2), connecting).await,
        Ok(Ok(_))
    )
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
