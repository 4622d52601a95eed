//! A zgres group for end-to-end tests: real ZooKeeper, real PostgreSQL data directories made by
//! the testkit, and real `zgres-deadman` processes adopting them.
//!
//! - [`Group`]: prepares the nodes, writes each deadman's config, starts and kills deadmen,
//!   and waits for the states tests assert on (a primary that accepts writes, a standby
//!   following it).
//! - [`Node`]: one database node (its PostgreSQL, deadman process, config and log).
//! - [`Writer`]: clients writing to every node, collecting each acknowledged write.
//! - [`checks`]: assertions and requests that read or write the group's znodes.
//!
//! The deadman binary is `ZGRES_DEADMAN_BIN` when set (the demo), else the workspace's build
//! beside the running test (see [`crate::artifacts`]).

pub mod checks;
mod node;
mod postgres_tls;
mod writer;
mod zk_access;

pub use node::{DeadmanFiles, Node};
pub use postgres_tls::TlsOnlyPostgres;
pub use writer::{first_ack_after, missing_acks, Ack, Writer};
pub use zk_access::{authenticate, zookeeper_ensemble_keys, zookeeper_tls_keys};

use std::path::PathBuf;
use std::time::Duration;

use zgres_schema::documents::{GroupConfig, Lock};
use zgres_schema::{decode, encode, GroupName, ZkLayout, Znode};
use zookeeper_client as zk;

use crate::fault_proxy::FaultProxy;
use crate::poll;
use crate::postgres::PgNode;
use crate::process::ManagedProcess;
use crate::zookeeper::ZkCluster;

/// The group name every test group uses.
pub const GROUP: &str = "main";
/// How long a test waits for any one expected state before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Timing for tests: short, but with the same ratios as production.
#[derive(Debug, Clone)]
pub struct Timing {
    /// `[zookeeper] session_timeout_ms`.
    pub session_timeout_ms: u64,
    /// `[zookeeper] fence_margin_ms`.
    pub fence_margin_ms: u64,
    /// `[timing] primary_restart_timeout_ms`.
    pub primary_restart_timeout_ms: u64,
    /// `[timing] loop_interval_ms`.
    pub loop_interval_ms: u64,
    /// `[timing] state_refresh_ms`.
    pub state_refresh_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            session_timeout_ms: 2_000,
            fence_margin_ms: 500,
            primary_restart_timeout_ms: 10_000,
            loop_interval_ms: 200,
            state_refresh_ms: 1_000,
        }
    }
}

/// The deadman binary: `ZGRES_DEADMAN_BIN` when set (the demo), else the workspace's build
/// beside the running test or bench.
fn deadman_binary() -> PathBuf {
    std::env::var_os("ZGRES_DEADMAN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::artifacts::binary("zgres-deadman"))
}

/// A test group: its ZooKeeper and its nodes, which the test starts, kills and inspects.
/// Dropping it kills every process it started and removes its directories.
pub struct Group {
    /// The group's ZooKeeper (standalone or an ensemble).
    pub zk: ZkCluster,
    /// The database nodes, named `n0`, `n1`, ... by index.
    pub nodes: Vec<Node>,
    /// The timing written into every deadman's config.
    pub timing: Timing,
    /// Where the group's znodes live.
    pub layout: ZkLayout,
    dir: tempfile::TempDir,
    /// Prepared with data directories (node 0 primary), not empty.
    adopted: bool,
    /// `user:password` the test's own ZooKeeper clients authenticate with (digest, or SASL
    /// DIGEST-MD5 with `zk_sasl`), when the group's znodes are not open to anyone.
    pub zk_credentials: Option<String>,
    /// Authenticate `zk_credentials` with SASL DIGEST-MD5.
    pub zk_sasl: bool,
    /// The group keeps member slots (`member_slots` in `/config`, on by default): a standby
    /// counts as following only once it streams with its slot, so the one re-point that
    /// adopts the slot after start is behind a test that then touches replication.
    pub member_slots: bool,
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
            .map(|(i, pg)| Node::new(&format!("n{i}"), pg, dir.path()))
            .collect();
        Group {
            zk,
            nodes,
            timing,
            layout: ZkLayout::default(),
            dir,
            adopted: true,
            zk_credentials: None,
            zk_sasl: false,
            member_slots: true,
        }
    }

    /// ZooKeeper plus `size` nodes with empty data directories, for the deadmen to bootstrap
    /// and clone.
    pub async fn prepare_empty(size: usize, timing: Timing) -> Group {
        Self::prepare_empty_on(ZkCluster::standalone().await.unwrap(), size, timing)
    }

    /// As [`Group::prepare_empty`], on the given ZooKeeper (e.g. a TLS-only server).
    pub fn prepare_empty_on(zk: ZkCluster, size: usize, timing: Timing) -> Group {
        let mut group = Group {
            zk,
            nodes: vec![],
            timing,
            layout: ZkLayout::default(),
            dir: tempfile::tempdir().unwrap(),
            adopted: false,
            zk_credentials: None,
            zk_sasl: false,
            member_slots: true,
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
        let pg = PgNode::empty(&name).unwrap();
        self.nodes.push(Node::new(&name, pg, self.dir.path()));
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
        let connect = match (&node.proxy, &node.zookeeper_via) {
            (Some(p), _) => p.addr().to_string(),
            (None, Some(via)) => via.clone(),
            (None, None) => self.zk.connect_string(),
        };
        // wal_keep_size as docs/operations.md recommends: a node rejoining with pg_rewind
        // streams the WAL since the fork from the new primary, which must still have it.
        // reclone_on_rewind_failure as an operator who wants self-healing sets it: on a
        // starved 2-core machine a new primary is sometimes fenced while a former primary
        // rewinds from it, and the interrupted rewind then leaves a directory that only a
        // re-clone repairs. The tests of the reported (not re-cloned) paths turn it off.
        let run_as = if nix::unistd::Uid::effective().is_root() {
            "run_as = \"postgres\"\n"
        } else {
            ""
        };
        let t = &self.timing;
        let text = format!(
            "[zookeeper]\nconnect = \"{connect}\"\nsession_timeout_ms = {}\nfence_margin_ms = {}\n{}{}\
             [node]\ngroup = \"{GROUP}\"\naddress = \"127.0.0.1\"\nname = \"{}\"\n\
             [postgres]\ndata_dir = \"{}\"\nport = {}\n{run_as}\
             parameters = {{ listen_addresses = \"127.0.0.1\", unix_socket_directories = \"{}\", log_min_messages = \"log\", wal_keep_size = \"256MB\" }}\n\
             [timing]\nloop_interval_ms = {}\nstate_refresh_ms = {}\nelection_wait_ms = 1000\n\
             stop_timeout_ms = 10000\nprimary_restart_timeout_ms = {}\nplugin_interval_ms = 200\n\
             [provisioning]\nreclone_on_rewind_failure = true\n\
             [api]\nlisten = \"127.0.0.1:{}\"\n[log]\nlevel = \"{}\"\n",
            t.session_timeout_ms,
            t.fence_margin_ms,
            zookeeper_tls_keys(&self.zk),
            zookeeper_ensemble_keys(&self.zk),
            node.name,
            node.pg.data_dir().display(),
            node.port(),
            node.pg.socket_dir().display(),
            t.loop_interval_ms,
            t.state_refresh_ms,
            t.primary_restart_timeout_ms,
            node.api_port,
            std::env::var("ZGRES_TEST_LOG").unwrap_or_else(|_| "zgres_deadman=debug,info".into()),
        );
        // The node's extra config is merged in, so it may add keys to any section.
        let mut config: toml::Table = text.parse().unwrap();
        let extra: toml::Table = node.extra_config.parse().unwrap();
        merge(&mut config, extra);
        std::fs::write(&node.files.config, toml::to_string(&config).unwrap()).unwrap();
    }

    /// Rewrites node `i`'s config file with `extra` merged in (TOML, any section), leaving
    /// its deadman running: a SIGHUP then reloads it.
    pub fn rewrite_config(&mut self, i: usize, extra: &str) {
        self.nodes[i].extra_config = extra.to_owned();
        self.write_config(i);
    }

    /// Writes node `i`'s config and starts its deadman (it must not be running).
    pub fn start(&mut self, i: usize) {
        self.write_config(i);
        let node = &mut self.nodes[i];
        let config = node.files.config.display().to_string();
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
                &node.files.log,
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

    /// A new ZooKeeper client for the test's own reads and writes.
    pub async fn zk_client(&self) -> zk::Client {
        let mut connector = zk::Client::connector().with_session_timeout(Duration::from_secs(10));
        connector = authenticate(connector, self.zk_credentials.as_deref(), self.zk_sasl);
        self.zk.connect(connector).await.unwrap()
    }

    /// The full path of one of the group's znodes, e.g. `group.path(Znode::Lock)`.
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

    /// Creates or replaces the group's `/config` document.
    pub async fn set_group_config(&self, config: &GroupConfig) {
        let client = self.zk_client().await;
        let path = self.path(Znode::Config);
        let data = encode(config).unwrap();
        client
            .mkdir(
                &self.layout.dir(zgres_schema::Dir::Config),
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
        let waited = poll::until(
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
        .await;
        match waited {
            Ok(holder) => holder,
            Err(e) => {
                // Who holds the lock, read straight from ZooKeeper: tells a lock nobody took
                // from one taken by a node whose PostgreSQL refuses writes.
                let holder = self.lock_holder(&client).await.map(|i| &self.nodes[i].name);
                let first = (0..self.nodes.len()).find(|i| !except.contains(i));
                panic!(
                    "{e} (lock held by {holder:?})\n{}",
                    self.logs_with_first(first)
                )
            }
        }
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
        let waited = poll::until(
            &format!(
                "{} streaming from {}",
                self.nodes[i].name, self.nodes[primary].name
            ),
            DEADLINE,
            || async {
                let (status, sender, slot) = self.nodes[i].wal_receiver_slot().await?;
                (status == "streaming" && sender == port && (slot || !self.member_slots))
                    .then_some(())
            },
        )
        .await;
        if let Err(e) = waited {
            let seen = self.nodes[i].wal_receiver().await;
            panic!(
                "{e} (last seen: WAL receiver {seen:?}, {} is on port {port})\n{}",
                self.nodes[primary].name,
                self.logs_with_first(Some(i))
            );
        }
    }

    /// The last lines of every node's deadman and PostgreSQL logs, for failure messages.
    pub fn logs(&self) -> String {
        self.logs_with_first(None)
    }

    /// As [`Group::logs`], with node `first`'s logs first: failure output is often cut after
    /// its first lines, and the node a wait was about is the one that explains it.
    pub fn logs_with_first(&self, first: Option<usize>) -> String {
        let order = first
            .into_iter()
            .chain((0..self.nodes.len()).filter(|&i| Some(i) != first));
        order
            .map(|i| {
                let n = &self.nodes[i];
                // The deadman's own lines and PostgreSQL's (which carry " UTC [pid] ") apart,
                // so a chatty server does not hide what the deadman decided; the ZooKeeper
                // client's per-attempt reconnect warnings are dropped for the same reason.
                let text = n.log_text();
                let (server, deadman): (Vec<&str>, Vec<&str>) = text
                    .lines()
                    .filter(|l| {
                        !l.contains("DEBUG")
                            && !l.starts_with('\t')
                            && !l.contains("zookeeper_client::session: fails to establish")
                    })
                    .partition(|l| l.contains(" UTC ["));
                let tail =
                    |lines: &[&str], n: usize| lines[lines.len().saturating_sub(n)..].join("\n");
                // The first errors too: the one that started a failure is often long before
                // the tail (e.g. a pg_rewind that failed half-way, then failed differently).
                let shown_from = deadman.len().saturating_sub(30);
                let first_errors: Vec<&str> = deadman[..shown_from]
                    .iter()
                    .filter(|l| l.contains(" ERROR "))
                    .take(5)
                    .copied()
                    .collect();
                format!(
                    "--- {} deadman (first errors) ---\n{}\n--- {} deadman (last lines) ---\n{}\n--- {} postgres (last lines) ---\n{}\n--- {} timeline histories ---\n{}",
                    n.name,
                    first_errors.join("\n"),
                    n.name,
                    tail(&deadman, 30),
                    n.name,
                    tail(&server, 12),
                    n.name,
                    n.timeline_histories()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Merges `extra` into `base`: tables key by key, any other value replaced.
fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(old)), toml::Value::Table(new)) => merge(old, new),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
