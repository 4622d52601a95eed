//! The group under test: a 3-member ZooKeeper ensemble, three PostgreSQL nodes with deadmen
//! that reach each member through their own fault proxy, and zgres-sync keeping a pgbouncer.
//! Faults are applied and healed here; deciding which and when is [`crate::run`]'s.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zgres_schema::documents::{GroupConfig, SyncMode};
use zgres_schema::Znode;
use zgres_testkit::fault_proxy::{FaultProxy, ProxyMode};
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

use crate::paused_stop::{set_paused, PausedStops};
use zgres_testkit::zookeeper::ZkCluster;
use zgres_tests::e2e::BouncerWithSync;

use crate::disk::{DiskError, NodeDisk};
use crate::faults::Fault;
use crate::inbound::Inbound;

/// Members of the ZooKeeper ensemble, and PostgreSQL nodes.
pub const SIZE: usize = 3;

/// The table the clients write to.
pub const TABLE: &str = "chaos_writes";

/// The running group and the handles to break it.
pub struct Cluster {
    /// Per node, the tmpfs its data directory lives on, or why there are none. Declared
    /// before the group so that they are unmounted before its directories are removed.
    disks: Result<Vec<NodeDisk>, DiskError>,
    /// The deadmen's group (ZooKeeper ensemble and nodes).
    pub group: Group,
    /// pgbouncer and the zgres-sync that keeps it.
    pub bouncer: BouncerWithSync,
    /// Per node, one proxy per ZooKeeper member.
    zookeeper_links: Vec<Vec<FaultProxy>>,
    /// Per node, how its peers reach its PostgreSQL (at its advertised address).
    inbound: Vec<Inbound>,
    /// Per node, the pid of its deadman while this run holds it stopped.
    paused: Vec<Option<u32>>,
    /// Per node, its PostgreSQL's processes while this run holds them stopped.
    frozen: Vec<Vec<i32>>,
    /// The `zgresctl restart`s started and not yet collected: exit code and output.
    operations: Vec<std::thread::JoinHandle<(i32, String)>>,
    /// Deadmen to stop, and stopped, in a paused group.
    paused_stops: PausedStops,
}

impl Cluster {
    /// Starts everything and waits until node 0 is the primary and the table exists.
    /// `synchronous` sets `synchronous_mode = on` in `/config`. With `own_disks` each data
    /// directory moves onto a tmpfs of its own, for disk-full faults (when this runs as
    /// root). Panics when it cannot start.
    ///
    /// Node `i` advertises `127.0.0.(11+i)` with its PostgreSQL's port, where its inbound proxy
    /// listens and forwards to the server on 127.0.0.1; its deadman probes 127.0.0.1 directly.
    pub async fn start(synchronous: bool, timing: Timing, own_disks: bool) -> Cluster {
        // Every member's links to its peers pass fault proxies, for member cuts.
        let zk = ZkCluster::start_isolatable(SIZE)
            .await
            .expect("a 3-member ZooKeeper ensemble");
        let mut group = Group::prepare_on(zk, SIZE, timing).await;
        // The nodes are stopped: their data directories can move.
        let disks = if own_disks {
            group
                .nodes
                .iter()
                .map(|n| NodeDisk::place(&n.pg.data_dir()))
                .collect()
        } else {
            Err(DiskError::NotAsked)
        };
        // Without root nothing moved; a copy that failed half-way leaves no usable node.
        if let Err(e @ DiskError::Io { .. }) = &disks {
            panic!("cannot move a data directory onto its own disk: {e}");
        }
        let mut zookeeper_links = Vec::new();
        let advertised: Vec<SocketAddr> = (0..SIZE)
            .map(|i| {
                (
                    Ipv4Addr::new(127, 0, 0, 11 + i as u8),
                    group.nodes[i].port(),
                )
                    .into()
            })
            .collect();
        let inbound: Vec<Inbound> = (0..SIZE).map(|i| Inbound::start(i, &advertised)).collect();
        for (i, node) in group.nodes.iter_mut().enumerate() {
            let advertised = advertised[i].ip();
            let links: Vec<FaultProxy> = (0..SIZE)
                .map(|m| FaultProxy::start(group.zk.client_addr(m)).expect("a fault proxy"))
                .collect();
            let connect: Vec<String> = links.iter().map(|l| l.addr().to_string()).collect();
            node.zookeeper_via = Some(connect.join(","));
            // A replica whose WAL is gone heals itself, as an operator who wants that sets it.
            node.extra_config = format!(
                "[node]\naddress = \"{advertised}\"\n[postgres]\nprobe_host = \"127.0.0.1\"\n\
                 [provisioning]\nreclone_on_missing_wal = true\n"
            );
            zookeeper_links.push(links);
        }
        if synchronous {
            let config = GroupConfig {
                synchronous_mode: SyncMode::On,
                ..GroupConfig::default()
            };
            group.set_group_config(&config).await;
        }
        // As an operator adopts a running primary: its deadman first (the testkit's start_all
        // knows nodes by 127.0.0.1 addresses), the others once it takes writes.
        group.start(0);
        let primary = &group.nodes[0];
        poll::until("n0 to take writes", DEADLINE, || async {
            let client = primary.client().await?;
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, client text NOT NULL)"
                ))
                .await
                .ok()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
        for i in 1..SIZE {
            group.start(i);
        }
        let bouncer = BouncerWithSync::start(&group.zk.connect_string());
        Cluster {
            disks,
            group,
            bouncer,
            zookeeper_links,
            inbound,
            paused: vec![None; SIZE],
            frozen: vec![Vec::new(); SIZE],
            paused_stops: PausedStops::default(),
            operations: Vec::new(),
        }
    }

    /// Why the nodes have no disks of their own to fill, if they have none.
    pub fn disks_unavailable(&self) -> Option<&DiskError> {
        self.disks.as_ref().err()
    }

    fn disk(&self, n: usize) -> Option<&NodeDisk> {
        self.disks.as_ref().ok().map(|disks| &disks[n])
    }

    /// The session timeout the deadmen run with.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.group.timing.session_timeout_ms)
    }

    /// Each node's PostgreSQL port.
    pub fn ports(&self) -> Vec<u16> {
        self.group.nodes.iter().map(|n| n.port()).collect()
    }

    /// The clients' targets: (name, conninfo), one per node and one through pgbouncer.
    pub fn client_targets(&self) -> Vec<(String, String)> {
        let mut targets: Vec<(String, String)> = self
            .group
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.client_conninfo()))
            .collect();
        targets.push(("pgbouncer".into(), self.bouncer_conninfo()));
        targets
    }

    /// Each node's port and a connection string to it (not through its proxy).
    pub fn node_targets(&self) -> Vec<(u16, String)> {
        self.group
            .nodes
            .iter()
            .map(|n| (n.port(), n.client_conninfo()))
            .collect()
    }

    /// A connection string through pgbouncer's database for the group (its primary).
    pub fn bouncer_conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=main connect_timeout=2",
            self.bouncer.bouncer.port()
        )
    }

    /// Applies `fault`. Kills leave the repair to the supervisor; the rest hold until
    /// [`Cluster::heal`]. Panics when a disk cannot be filled.
    pub async fn apply(&mut self, fault: Fault) {
        match fault {
            Fault::KillNode(n) => {
                self.group.nodes[n].kill_postgres();
                if let Some(deadman) = self.group.nodes[n].deadman.take() {
                    deadman.kill();
                }
            }
            Fault::KillPostgres(n) => self.group.nodes[n].kill_postgres(),
            Fault::FreezePostgres(n) => {
                if let Some(pid) = self.group.nodes[n].postmaster_pid() {
                    self.frozen[n] = zgres_testkit::freeze::freeze(pid);
                }
            }
            Fault::PauseDeadman(n) => {
                if let Some(deadman) = &self.group.nodes[n].deadman {
                    let pid = deadman.pid();
                    if kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).is_ok() {
                        self.paused[n] = Some(pid);
                    }
                }
            }
            Fault::ZookeeperCut(n) | Fault::ZookeeperFlap(n) => {
                self.set_links(n, ProxyMode::Blackhole);
            }
            Fault::ZookeeperRequestsHeld(n) => self.set_links(n, ProxyMode::HoldToServer),
            Fault::ZookeeperRepliesHeld(n) => self.set_links(n, ProxyMode::HoldToClient),
            Fault::ZookeeperLatency(n, delay) => self.set_links(n, ProxyMode::Delay(delay)),
            Fault::ReplicationCut(n) => self.inbound[n].set_all(ProxyMode::Blackhole),
            Fault::StreamCut { from, to } => {
                self.inbound[from].set_stream(to, ProxyMode::Blackhole);
            }
            Fault::ReexecDeadman(n) => {
                if let Some(deadman) = &self.group.nodes[n].deadman {
                    let _ = kill(Pid::from_raw(deadman.pid() as i32), Signal::SIGUSR2);
                }
            }
            Fault::RollingRestart => {
                let zookeeper = self.group.zk.connect_string();
                self.operations.push(std::thread::spawn(move || {
                    zgres_testkit::zgresctl::run(&zookeeper, &["restart", "main", "--force"])
                }));
            }
            Fault::DiskFull(n) => {
                if let Some(Err(e)) = self.disk(n).map(NodeDisk::fill) {
                    panic!("cannot fill n{n}'s disk: {e}");
                }
            }
            Fault::PausedStop(n) => {
                set_paused(
                    &self.group.zk.connect_string(),
                    true,
                    &mut std::io::stdout(),
                );
                self.paused_stops.begin(n);
            }
            Fault::ZookeeperMemberDown(m) => self.group.zk.kill_member(m),
            Fault::ZookeeperQuorumLost(kept) => {
                for m in (0..SIZE).filter(|&m| m != kept) {
                    self.group.zk.kill_member(m);
                }
            }
            Fault::ZookeeperMemberCut { member, stranded } => {
                // A follower's links go silent (it answers its clients until it notices); a
                // leader's are reset, since with its links half-open the other two can take
                // minutes to elect a new one (ZooKeeper's own behaviour, not the subject).
                let leads = self.group.zk.mode(member).await.as_deref() == Some("leader");
                let mode = if leads {
                    ProxyMode::Refuse
                } else {
                    ProxyMode::Blackhole
                };
                self.group.zk.set_member_links(member, mode);
                let others = (0..SIZE).filter(|&m| m != member);
                for m in others {
                    self.zookeeper_links[stranded][m].set_mode(ProxyMode::Blackhole);
                }
            }
        }
    }

    /// A flapping link's next state: cut when `cut`, else passing.
    pub fn flap(&self, node: usize, cut: bool) {
        let mode = if cut {
            ProxyMode::Blackhole
        } else {
            ProxyMode::Pass
        };
        self.set_links(node, mode);
    }

    /// Ends `fault`: links pass again, a stopped deadman continues, members start again,
    /// disks are emptied. Panics when a ZooKeeper member does not serve again within a minute
    /// or a disk cannot be emptied.
    pub async fn heal(&mut self, fault: Fault) {
        match fault {
            Fault::KillNode(_)
            | Fault::KillPostgres(_)
            | Fault::ReexecDeadman(_)
            | Fault::RollingRestart => {}
            Fault::FreezePostgres(n) => {
                zgres_testkit::freeze::thaw(&std::mem::take(&mut self.frozen[n]))
            }
            Fault::PauseDeadman(n) => {
                // Only the process this run stopped: a kill meanwhile may have replaced it.
                let current = self.group.nodes[n].deadman.as_ref().map(|d| d.pid());
                if let Some(pid) = self.paused[n].take().filter(|&p| Some(p) == current) {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                }
            }
            Fault::ZookeeperCut(n)
            | Fault::ZookeeperFlap(n)
            | Fault::ZookeeperRequestsHeld(n)
            | Fault::ZookeeperRepliesHeld(n)
            | Fault::ZookeeperLatency(n, _) => self.set_links(n, ProxyMode::Pass),
            Fault::ReplicationCut(n) => self.inbound[n].set_all(ProxyMode::Pass),
            Fault::StreamCut { from, to } => self.inbound[from].set_stream(to, ProxyMode::Pass),
            Fault::DiskFull(n) => {
                if let Some(Err(e)) = self.disk(n).map(NodeDisk::empty) {
                    panic!("cannot empty n{n}'s disk: {e}");
                }
            }
            Fault::PausedStop(n) => {
                self.paused_stops.end(n);
                set_paused(
                    &self.group.zk.connect_string(),
                    false,
                    &mut std::io::stdout(),
                );
            }
            Fault::ZookeeperMemberDown(m) => self.restart_member(m).await,
            Fault::ZookeeperMemberCut { member, stranded } => {
                self.group.zk.set_member_links(member, ProxyMode::Pass);
                self.set_links(stranded, ProxyMode::Pass);
            }
            Fault::ZookeeperQuorumLost(kept) => {
                for m in (0..SIZE).filter(|&m| m != kept) {
                    self.restart_member(m).await;
                }
            }
        }
    }

    /// Whether an operation this run started (`zgresctl restart`) still runs.
    pub fn operation_running(&self) -> bool {
        self.operations.iter().any(|o| !o.is_finished())
    }

    /// The exit code and output of each operation that finished since the last call.
    pub fn finished_operations(&mut self) -> Vec<(i32, String)> {
        let (finished, running) = std::mem::take(&mut self.operations)
            .into_iter()
            .partition(|o| o.is_finished());
        self.operations = running;
        finished
            .into_iter()
            .map(|o: std::thread::JoinHandle<(i32, String)>| {
                o.join()
                    .unwrap_or((-1, "zgresctl's thread panicked".into()))
            })
            .collect()
    }

    async fn restart_member(&mut self, m: usize) {
        if let Err(e) = self.group.zk.restart_member(m).await {
            panic!("ZooKeeper member {m} does not serve again: {e}");
        }
    }

    fn set_links(&self, node: usize, mode: ProxyMode) {
        for link in &self.zookeeper_links[node] {
            link.set_mode(mode);
        }
    }

    /// Whether node `n`'s deadman is held stopped by this run.
    pub fn is_paused(&self, n: usize) -> bool {
        self.paused[n].is_some()
    }

    /// Node `n`'s deadman, if it exited since the last look: how it ended. A deadman this run
    /// killed is already gone and not reported.
    pub fn reap(&mut self, n: usize) -> Option<String> {
        let node = &mut self.group.nodes[n];
        let deadman = node.deadman.as_mut()?;
        let pid = deadman.pid();
        let status = deadman.try_exit_status().ok()??;
        node.deadman = None;
        (!self.paused_stops.expected_exit(pid)).then(|| status.to_string())
    }

    /// Stops the deadmen of paused stops that now see the pause ([`PausedStops::tick`]).
    pub fn tick_paused_stops(&mut self, out: &mut impl std::io::Write) {
        for n in 0..SIZE {
            let node = &self.group.nodes[n];
            let deadman = node.deadman.as_ref().map(|d| (d.pid(), node.log_text()));
            self.paused_stops.tick(n, deadman, out);
        }
    }

    /// Whether node `n`'s deadman runs (or is held stopped).
    pub fn deadman_runs(&self, n: usize) -> bool {
        self.group.nodes[n].deadman.is_some()
    }

    /// Starts node `n`'s deadman again, as systemd would.
    pub fn restart_deadman(&mut self, n: usize) {
        self.paused[n] = None;
        self.group.start(n);
    }

    /// The ids in the final primary's table (empty when the group is not whole).
    pub async fn final_ids(&self) -> std::collections::HashSet<i64> {
        let Ok(primary) = crate::health::whole(&self.ports(), &self.bouncer_conninfo()).await
        else {
            return Default::default();
        };
        let Some(node) = self.group.nodes.iter().find(|n| n.port() == primary) else {
            return Default::default();
        };
        let Some(client) = node.client().await else {
            return Default::default();
        };
        client
            .query(&format!("SELECT id FROM {TABLE}"), &[])
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default()
    }

    /// `/history`'s bytes, if it exists and ZooKeeper answers.
    pub async fn history(&self) -> Option<Vec<u8>> {
        let client = self.group.zk_client().await;
        let path = self.group.path(Znode::History);
        client.get_data(&path).await.ok().map(|(data, _)| data)
    }

    /// Every daemon's log: (name, text).
    pub fn logs(&self) -> Vec<(String, String)> {
        let mut logs: Vec<(String, String)> = self
            .group
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.log_text()))
            .collect();
        logs.push(("zgres-sync+pgbouncer".into(), self.bouncer.logs()));
        logs
    }

    /// Copies every log into `dir` (created), one file per daemon.
    ///
    /// # Errors
    /// When `dir` or a file in it cannot be written.
    pub fn keep_logs(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, text) in self.logs() {
            std::fs::write(dir.join(format!("{name}.log")), text)?;
        }
        Ok(())
    }
}
