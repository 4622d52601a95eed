//! A zgres group for end-to-end tests: real ZooKeeper, real PostgreSQL data directories made by
//! the testkit, and real `zgres-deadman` processes adopting them.
#![allow(dead_code)] // Each test binary uses a different part.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::Mutex;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use zgres_schema::documents::{
    GroupConfig, History, Lock, Promotion, Switchover, SwitchoverKind, SyncState,
};
use zgres_schema::{decode, encode, GroupName, ZkLayout, Znode};
use zgres_testkit::fault_proxy::FaultProxy;
use zgres_testkit::poll;
use zgres_testkit::postgres::PgNode;
use zgres_testkit::process::ManagedProcess;
use zgres_testkit::zookeeper::ZkCluster;
use zookeeper_client as zk;

pub const GROUP: &str = "main";
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Timing for tests: short, but with the same ratios as production.
#[derive(Debug, Clone)]
pub struct Timing {
    pub session_timeout_ms: u64,
    pub fence_margin_ms: u64,
    pub primary_restart_timeout_ms: u64,
    pub loop_interval_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            session_timeout_ms: 2_000,
            fence_margin_ms: 500,
            primary_restart_timeout_ms: 10_000,
            loop_interval_ms: 200,
        }
    }
}

pub struct Node {
    pub name: String,
    pub pg: PgNode,
    pub deadman: Option<ManagedProcess>,
    pub config: PathBuf,
    pub log: PathBuf,
    pub proxy: Option<FaultProxy>,
    pub extra_config: String,
    /// Environment for the deadman process.
    pub env: Vec<(String, String)>,
    /// Where this node's health API listens.
    pub api_port: u16,
}

impl Node {
    pub fn port(&self) -> u16 {
        self.pg.port()
    }

    pub fn node_id(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// PostgreSQL's postmaster pid, from `postmaster.pid` (the deadman started it).
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.pg.data_dir().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        std::path::Path::new(&format!("/proc/{pid}"))
            .exists()
            .then_some(pid)
    }

    /// kill -9 of PostgreSQL (the whole process group: postmaster and backends).
    pub fn kill_postgres(&self) {
        if let Some(pid) = self.postmaster_pid() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    pub fn deadman_pid(&self) -> u32 {
        self.deadman.as_ref().expect("deadman running").pid()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn client(&self) -> Option<tokio_postgres::Client> {
        let conninfo = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=1",
            self.port()
        );
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_postgres::connect(&conninfo, NoTls),
        )
        .await
        .ok()?
        .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Some(client)
    }

    /// `Some(true)` primary, `Some(false)` standby, `None` not answering.
    pub async fn is_primary(&self) -> Option<bool> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .ok()?;
        Some(!row.get::<_, bool>(0))
    }

    /// Stops this standby's WAL receiver with SIGSTOP (it receives nothing more until
    /// SIGCONT); returns its pid.
    pub async fn freeze_wal_receiver(&self) -> i32 {
        let client = self.client().await.unwrap();
        let row = client
            .query_one("SELECT pid FROM pg_stat_wal_receiver", &[])
            .await
            .unwrap();
        let pid: i32 = row.get(0);
        nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        pid
    }

    /// Inserts `rows` rows in one transaction on this primary; returns its WAL position after.
    pub async fn bulk_write(&self, rows: i64) -> zgres_schema::Lsn {
        let client = self.client().await.unwrap();
        client
            .execute(
                "INSERT INTO writes (node, seq) SELECT 'bulk', g FROM generate_series(1, $1::bigint) g",
                &[&rows],
            )
            .await
            .unwrap();
        let row = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap();
        row.get::<_, String>(0).parse().unwrap()
    }

    /// The WAL receiver's (status, sender port).
    pub async fn wal_receiver(&self) -> Option<(String, i32)> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT status, sender_port FROM pg_stat_wal_receiver", &[])
            .await
            .ok()??;
        Some((row.get(0), row.get::<_, Option<i32>>(1)?))
    }
}

/// The deadman binary: cargo's for tests and benches, `ZGRES_DEADMAN_BIN` for the demo.
fn deadman_binary() -> String {
    std::env::var("ZGRES_DEADMAN_BIN")
        .ok()
        .or(option_env!("CARGO_BIN_EXE_zgres-deadman").map(str::to_owned))
        .expect("ZGRES_DEADMAN_BIN is set, or cargo provides the binary")
}

pub struct Group {
    pub zk: ZkCluster,
    pub nodes: Vec<Node>,
    pub timing: Timing,
    pub layout: ZkLayout,
    dir: tempfile::TempDir,
    /// Prepared with data directories (node 0 primary), not empty.
    adopted: bool,
}

impl Group {
    /// ZooKeeper plus `size` PostgreSQL nodes (node 0 primary, the rest streaming replicas
    /// made with pg_basebackup), all stopped and ready to be adopted by deadmen.
    pub async fn prepare(size: usize, timing: Timing) -> Group {
        Self::prepare_on(ZkCluster::standalone().await.unwrap(), size, timing).await
    }

    /// As [`Group::prepare`], on the given ZooKeeper (e.g. an ensemble).
    pub async fn prepare_on(zk: ZkCluster, size: usize, timing: Timing) -> Group {
        let mut primary = PgNode::init_primary("n0").await.unwrap();
        primary
            .execute("CREATE TABLE writes (node text NOT NULL, seq bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
            .await
            .unwrap();
        let mut pgs = Vec::new();
        for i in 1..size {
            let replica = primary.clone_replica(&format!("n{i}")).await.unwrap();
            replica.wait_streaming(DEADLINE).await.unwrap();
            pgs.push(replica);
        }
        primary.stop();
        for pg in &mut pgs {
            pg.stop();
        }
        pgs.insert(0, primary);
        let dir = tempfile::tempdir().unwrap();
        let nodes = pgs
            .into_iter()
            .enumerate()
            .map(|(i, pg)| Node {
                name: format!("n{i}"),
                config: dir.path().join(format!("n{i}.toml")),
                log: dir.path().join(format!("n{i}.log")),
                pg,
                deadman: None,
                proxy: None,
                extra_config: String::new(),
                env: vec![],
                api_port: zgres_testkit::ports::free_port().unwrap(),
            })
            .collect();
        Group {
            zk,
            nodes,
            timing,
            layout: ZkLayout::default(),
            dir,
            adopted: true,
        }
    }

    /// ZooKeeper plus `size` nodes with empty data directories, for the deadmen to bootstrap
    /// and clone.
    pub async fn prepare_empty(size: usize, timing: Timing) -> Group {
        let zk = ZkCluster::standalone().await.unwrap();
        let mut group = Group {
            zk,
            nodes: vec![],
            timing,
            layout: ZkLayout::default(),
            dir: tempfile::tempdir().unwrap(),
            adopted: false,
        };
        for _ in 0..size {
            group.add_empty_node();
        }
        group
    }

    /// Adds a node with an empty data directory (not started); returns its index.
    pub fn add_empty_node(&mut self) -> usize {
        let i = self.nodes.len();
        let name = format!("n{i}");
        self.nodes.push(Node {
            config: self.dir.path().join(format!("{name}.toml")),
            log: self.dir.path().join(format!("{name}.log")),
            pg: PgNode::empty(&name).unwrap(),
            name,
            deadman: None,
            proxy: None,
            extra_config: String::new(),
            env: vec![],
            api_port: zgres_testkit::ports::free_port().unwrap(),
        });
        i
    }

    /// Routes node `i`'s ZooKeeper traffic through a fault proxy (call before starting it).
    pub fn proxy_node(&mut self, i: usize) -> &FaultProxy {
        let proxy = FaultProxy::start(self.zk.client_addr(0)).unwrap();
        self.nodes[i].proxy = Some(proxy);
        self.nodes[i].proxy.as_ref().unwrap()
    }

    fn write_config(&self, i: usize) {
        let node = &self.nodes[i];
        let connect = match &node.proxy {
            Some(p) => p.addr().to_string(),
            None => self.zk.connect_string(),
        };
        // wal_keep_size as docs/operations.md recommends: a node rejoining with pg_rewind
        // streams the WAL since the fork from the new primary, which must still have it.
        let run_as = if nix::unistd::Uid::effective().is_root() {
            "run_as = \"postgres\"\n"
        } else {
            ""
        };
        let t = &self.timing;
        let text = format!(
            "[zookeeper]\nconnect = \"{connect}\"\nsession_timeout_ms = {}\nfence_margin_ms = {}\n\
             [node]\ngroup = \"{GROUP}\"\naddress = \"127.0.0.1\"\nname = \"{}\"\n\
             [postgres]\ndata_dir = \"{}\"\nport = {}\n{run_as}\
             parameters = {{ listen_addresses = \"127.0.0.1\", unix_socket_directories = \"{}\", log_min_messages = \"log\", wal_keep_size = \"256MB\" }}\n\
             [timing]\nloop_interval_ms = {}\nstate_refresh_ms = 1000\nelection_wait_ms = 1000\n\
             stop_timeout_ms = 10000\nprimary_restart_timeout_ms = {}\nplugin_interval_ms = 200\n\
             [api]\nlisten = \"127.0.0.1:{}\"\n[log]\nlevel = \"{}\"\n{}",
            t.session_timeout_ms,
            t.fence_margin_ms,
            node.name,
            node.pg.data_dir().display(),
            node.port(),
            node.pg.socket_dir().display(),
            t.loop_interval_ms,
            t.primary_restart_timeout_ms,
            node.api_port,
            std::env::var("ZGRES_TEST_LOG").unwrap_or_else(|_| "zgres_deadman=debug,info".into()),
            node.extra_config,
        );
        std::fs::write(&node.config, text).unwrap();
    }

    pub fn start(&mut self, i: usize) {
        self.write_config(i);
        let node = &mut self.nodes[i];
        let config = node.config.display().to_string();
        let env: Vec<(&str, &str)> = node
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        node.deadman = Some(
            ManagedProcess::spawn(
                &format!("zgres-deadman {}", node.name),
                deadman_binary(),
                ["--config", &config],
                &env,
                None,
                &node.log,
            )
            .unwrap(),
        );
    }

    /// Starts every node's deadman at the same moment.
    pub fn start_all_at_once(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// Starts every node's deadman. A prepared group is adopted as an operator would: node 0's
    /// deadman (the primary's data directory) first, and the replicas' once it holds the lock,
    /// so the existing primary stays the primary. Empty nodes all start at the same moment.
    pub async fn start_all(&mut self) {
        if self.adopted {
            self.start(0);
            let client = self.zk_client().await;
            poll::until("n0 to take the lock", DEADLINE, || async {
                (self.lock_holder(&client).await == Some(0)).then_some(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].deadman.is_none() {
                self.start(i);
            }
        }
    }

    pub async fn zk_client(&self) -> zk::Client {
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&self.zk.connect_string())
            .await
            .unwrap()
    }

    pub fn path(&self, znode: fn(GroupName) -> Znode) -> String {
        self.layout.path(&znode(GroupName::new(GROUP).unwrap()))
    }

    /// The node index named in `/lock`, if a readable lock exists.
    pub async fn lock_holder(&self, client: &zk::Client) -> Option<usize> {
        let path = self.path(Znode::Lock);
        let (data, _) = client.get_data(&path).await.ok()?;
        let lock: Lock = decode(&path, &data).ok()?;
        self.nodes
            .iter()
            .position(|n| n.node_id() == lock.node.to_string())
    }

    pub async fn set_group_config(&self, config: &GroupConfig) {
        let client = self.zk_client().await;
        let path = self.path(Znode::Config);
        let data = encode(config).unwrap();
        client
            .mkdir(
                &self.layout.dir("config"),
                &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .unwrap();
        match client
            .create(
                &path,
                &data,
                &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            )
            .await
        {
            Err(zk::Error::NodeExists) => {
                client.set_data(&path, &data, None).await.unwrap();
            }
            other => {
                other.unwrap();
            }
        }
    }

    /// Waits until some node other than those in `except` holds the lock and its PostgreSQL is
    /// a primary that accepts a write. Returns its index.
    pub async fn wait_primary(&self, except: &[usize]) -> usize {
        let client = self.zk_client().await;
        poll::until(
            "a node holding the lock to accept writes",
            DEADLINE,
            || async {
                let holder = self.lock_holder(&client).await?;
                if except.contains(&holder) {
                    return None;
                }
                let pg = self.nodes[holder].client().await?;
                pg.execute("INSERT INTO writes (node, seq) VALUES ('probe', 0)", &[])
                    .await
                    .ok()?;
                Some(holder)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// kill -9 of the whole node `i`: PostgreSQL's process group first (so no WAL receiver
    /// outlives its postmaster and acknowledges WAL a moment longer), then its deadman.
    pub fn kill_node(&mut self, i: usize) {
        let deadman = self.nodes[i].deadman.take().expect("deadman running");
        self.nodes[i].kill_postgres();
        deadman.kill();
    }

    /// Waits until node `i`'s `writes` table holds more than `rows` rows the writer committed
    /// on node `i` itself (so it took writes as a primary).
    pub async fn wait_own_writes(&self, i: usize, rows: i64) {
        let name = format!("n{i}");
        poll::until(&format!("writes on {name}"), DEADLINE, || async {
            let c = self.nodes[i].client().await?;
            let row = c
                .query_one("SELECT count(*) FROM writes WHERE node = $1", &[&name])
                .await
                .ok()?;
            (row.get::<_, i64>(0) > rows).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    /// Waits until node `i` is a standby streaming from node `primary`.
    pub async fn wait_following(&self, i: usize, primary: usize) {
        let port = i32::from(self.nodes[primary].port());
        poll::until(
            &format!(
                "{} streaming from {}",
                self.nodes[i].name, self.nodes[primary].name
            ),
            DEADLINE,
            || async {
                let (status, sender) = self.nodes[i].wal_receiver().await?;
                (status == "streaming" && sender == port).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                // The deadman's own lines and PostgreSQL's (which carry " UTC [pid] ") apart,
                // so a chatty server does not hide what the deadman decided.
                let text = n.log_text();
                let (server, deadman): (Vec<&str>, Vec<&str>) = text
                    .lines()
                    .filter(|l| !l.contains("DEBUG") && !l.starts_with('\t'))
                    .partition(|l| l.contains(" UTC ["));
                let tail =
                    |lines: &[&str], n: usize| lines[lines.len().saturating_sub(n)..].join("\n");
                format!(
                    "--- {} deadman (last lines) ---\n{}\n--- {} postgres (last lines) ---\n{}",
                    n.name,
                    tail(&deadman, 30),
                    n.name,
                    tail(&server, 12)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One acknowledged write: which node took it, and the server's commit-time clock. All nodes
/// run on this host, so their clocks are the same clock.
#[derive(Debug, Clone)]
pub struct Ack {
    pub node: usize,
    pub seq: i64,
    pub at: std::time::SystemTime,
}

/// Writes continuously to every node (each write a transaction of its own) until stopped;
/// collects every acknowledged write.
pub struct Writer {
    stop: CancellationToken,
    acks: Arc<Mutex<Vec<Ack>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writer {
    /// Waits until more than `count` further writes are acknowledged by node `i`.
    pub async fn wait_more_acks(&self, i: usize, count: usize) {
        let before = self.acks().await.len();
        poll::until(&format!("more commits on n{i}"), DEADLINE, || async {
            let acks = self.acks().await;
            (acks[before.min(acks.len())..]
                .iter()
                .filter(|a| a.node == i)
                .count()
                > count)
                .then_some(())
        })
        .await
        .unwrap();
    }

    pub fn start(group: &Group) -> Writer {
        let stop = CancellationToken::new();
        let acks = Arc::new(Mutex::new(Vec::new()));
        let tasks = group
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let port = n.port();
                let stop = stop.clone();
                let acks = acks.clone();
                tokio::spawn(async move {
                    let conninfo = format!(
                        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=1"
                    );
                    let mut seq = 0i64;
                    while !stop.is_cancelled() {
                        let Ok(Ok((client, conn))) = tokio::time::timeout(
                            Duration::from_secs(2),
                            tokio_postgres::connect(&conninfo, NoTls),
                        )
                        .await
                        else {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        };
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        let name = format!("n{i}");
                        while !stop.is_cancelled() {
                            seq += 1;
                            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                                [&name, &seq];
                            let insert = client.query_one(
                                "INSERT INTO writes (node, seq) VALUES ($1, $2) RETURNING at",
                                &params,
                            );
                            match tokio::time::timeout(Duration::from_secs(2), insert).await {
                                Ok(Ok(row)) => acks.lock().await.push(Ack {
                                    node: i,
                                    seq,
                                    at: row.get(0),
                                }),
                                Ok(Err(e)) if e.code().is_some() => {
                                    // An SQL error (read-only standby): the connection is fine.
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                                _ => break,
                            }
                        }
                    }
                })
            })
            .collect();
        Writer { stop, acks, tasks }
    }

    /// The writes acknowledged so far.
    pub async fn acks(&self) -> Vec<Ack> {
        self.acks.lock().await.clone()
    }

    pub async fn finish(self) -> Vec<Ack> {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let acks = self.acks.lock().await.clone();
        acks
    }
}

/// The acknowledged writes missing from node `on`'s `writes` table.
pub async fn missing_acks(group: &Group, acks: &[Ack], on: usize) -> Vec<Ack> {
    let client = group.nodes[on].client().await.expect("node answers");
    let rows = client
        .query("SELECT node, seq FROM writes", &[])
        .await
        .unwrap();
    let present: std::collections::HashSet<(String, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    acks.iter()
        .filter(|a| !present.contains(&(format!("n{}", a.node), a.seq)))
        .cloned()
        .collect()
}

/// Watches for `window` that no node other than `allowed` holds the lock or answers as a
/// primary (nodes without a deadman are not asked).
pub async fn assert_no_other_primary(group: &Group, allowed: Option<usize>, window: Duration) {
    let client = group.zk_client().await;
    let until = Instant::now() + window;
    while Instant::now() < until {
        let holder = group.lock_holder(&client).await;
        assert!(
            holder.is_none() || holder == allowed,
            "node {holder:?} holds the lock\n{}",
            group.logs()
        );
        for (i, node) in group.nodes.iter().enumerate() {
            if Some(i) != allowed && node.deadman.is_some() {
                assert_ne!(
                    node.is_primary().await,
                    Some(true),
                    "node {i} acts as primary"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a switchover request to `/switchover/{GROUP}` (as `zgresctl switchover` would).
pub async fn request_switchover(group: &Group, to: Option<usize>, scheduled_at_ms: Option<u64>) {
    let client = group.zk_client().await;
    let request = Switchover {
        kind: SwitchoverKind::Switchover,
        from: None,
        to: to.map(|i| group.nodes[i].node_id().parse().unwrap()),
        scheduled_at_ms,
        requested_at_ms: 0,
        stopped_lsn: None,
    };
    client
        .create(
            &group.path(Znode::Switchover),
            &encode(&request).unwrap(),
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
}

/// Waits until `/history/{GROUP}` ends with a promotion of node `i`; returns it.
pub async fn wait_promotion_recorded(group: &Group, i: usize) -> Promotion {
    let client = group.zk_client().await;
    let path = group.path(Znode::History);
    let promoted = group.nodes[i].node_id();
    poll::until("the promotion to be in /history", DEADLINE, || async {
        let (data, _) = client.get_data(&path).await.ok()?;
        let history: History = decode(&path, &data).ok()?;
        history
            .entries
            .last()
            .filter(|p| p.new_primary.to_string() == promoted)
            .cloned()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()))
}

/// Waits until `/sync/{GROUP}` names `primary` and a synchronous standby; returns the standby.
pub async fn wait_synchronous_standby(group: &Group, primary: usize) -> usize {
    let client = group.zk_client().await;
    let path = group.path(Znode::Sync);
    let primary_id = group.nodes[primary].node_id();
    poll::until(
        &format!("/sync to list a standby of n{primary}"),
        DEADLINE,
        || async {
            let (data, _) = client.get_data(&path).await.ok()?;
            let sync: SyncState = decode(&path, &data).ok()?;
            if sync.primary.to_string() != primary_id {
                return None;
            }
            let standby = sync.standbys.iter().next()?.to_string();
            group.nodes.iter().position(|n| n.node_id() == standby)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()))
}

/// Prints min/median/max of `samples` (seconds), for benchmarks.
pub fn summary(name: &str, samples: &[f64]) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    println!(
        "{name:<58} runs={} min={:.2}s median={:.2}s max={:.2}s  [{}]",
        sorted.len(),
        sorted[0],
        median,
        sorted[sorted.len() - 1],
        samples
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// Elapsed time helper for printing.
pub fn since(start: Instant) -> String {
    format!("{:.2}s", start.elapsed().as_secs_f64())
}
