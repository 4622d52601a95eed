//! One database node of a test group.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio_postgres::NoTls;

use crate::fault_proxy::FaultProxy;
use crate::postgres::PgNode;
use crate::process::ManagedProcess;

/// Where a node's deadman reads its config and writes its log.
#[derive(Debug, Clone)]
pub struct DeadmanFiles {
    /// The config file, written at each start.
    pub config: PathBuf,
    /// The log (PostgreSQL's server log goes there too).
    pub log: PathBuf,
}

/// One database node: its PostgreSQL data directory, its deadman (when running) and the files
/// the deadman reads and writes.
pub struct Node {
    /// The node's configured name (`n0`, `n1`, ...).
    pub name: String,
    /// The node's PostgreSQL (the deadman runs it; the test reads its data directory).
    pub pg: PgNode,
    /// The running deadman, if started.
    pub deadman: Option<ManagedProcess>,
    /// Its deadman's config file and log.
    pub files: DeadmanFiles,
    /// The fault proxy between the deadman and ZooKeeper, if any.
    pub proxy: Option<FaultProxy>,
    /// Where the deadman connects to ZooKeeper instead of the group's ensemble (e.g. a
    /// counting proxy); a fault proxy takes precedence.
    pub zookeeper_via: Option<String>,
    /// TOML merged into the generated config (tables key by key, so it may add to any section).
    pub extra_config: String,
    /// Environment for the deadman process.
    pub env: Vec<(String, String)>,
    /// Where this node's health API listens.
    pub api_port: u16,
    /// The test's own connections ([`Node::client`], the writer) go through PostgreSQL's Unix
    /// socket instead of TCP (for a `pg_hba.conf` that takes only TLS over TCP).
    pub clients_use_socket: bool,
}

impl Drop for Node {
    /// Stops the deadman and kills its PostgreSQL, and waits (at most 5 s) until every process
    /// of PostgreSQL's group is gone, before the fields drop. Without this the data directory
    /// (`pg`, declared first) was deleted while PostgreSQL still ran and wrote into it, and the
    /// directory sometimes survived (a CI run failed on a `zgres-pg-n0-*` left in /tmp).
    fn drop(&mut self) {
        drop(self.deadman.take());
        let Some(pid) = self.postmaster_pid() else {
            return;
        };
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGKILL);
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while group_runs(pid) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether a process of process group `pgid` still runs (a zombie, dead but not yet reaped,
/// does not count: it writes nothing).
fn group_runs(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // After the command name in parentheses: state, ppid, pgrp.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
        group == Some(pgid) && !matches!(state, Some("Z" | "X"))
    })
}

impl Node {
    /// A node named `name` over `pg`, not started, with its config and log in `dir`.
    ///
    /// # Panics
    /// When no free port is left for its health API.
    pub fn new(name: &str, pg: PgNode, dir: &std::path::Path) -> Node {
        Node {
            name: name.to_owned(),
            files: DeadmanFiles {
                config: dir.join(format!("{name}.toml")),
                log: dir.join(format!("{name}.log")),
            },
            pg,
            deadman: None,
            proxy: None,
            zookeeper_via: None,
            extra_config: String::new(),
            // Its temporary files (a plugin run's input) go with the group's directory, even
            // when a test kills the deadman during a run.
            env: vec![("TMPDIR".to_owned(), dir.display().to_string())],
            api_port: crate::ports::free_port().unwrap(),
            clients_use_socket: false,
        }
    }

    /// The pids of the running deadman, its fence keeper and its postmaster guardian, named
    /// for printing (`n0 deadman`, `n0 fence keeper`, `n0 guardian`); empty when the deadman
    /// is not running.
    pub fn daemon_pids(&self) -> Vec<(String, u32)> {
        let Some(deadman) = self.deadman.as_ref().map(ManagedProcess::pid) else {
            return vec![];
        };
        let mut pids = vec![(format!("{} deadman", self.name), deadman)];
        if let Some(keeper) = crate::proc_usage::child_with_arg(deadman, "--fence-keeper") {
            pids.push((format!("{} fence keeper", self.name), keeper));
        }
        if let Some(guardian) = crate::proc_usage::child_with_arg(deadman, "--postmaster-guardian")
        {
            pids.push((format!("{} guardian", self.name), guardian));
        }
        pids
    }

    /// PostgreSQL's port.
    pub fn port(&self) -> u16 {
        self.pg.port()
    }

    /// The node id the deadman publishes (`127.0.0.1:PORT`).
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

    /// kill -9 of the postmaster's process group, as a crash would (each backend leads a group
    /// of its own: an idle one exits when it sees its postmaster gone).
    pub fn kill_postgres(&self) {
        if let Some(pid) = self.postmaster_pid() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// The running deadman's pid; panics when it is not running.
    pub fn deadman_pid(&self) -> u32 {
        self.deadman.as_ref().expect("deadman running").pid()
    }

    /// The whole log so far (empty when there is none yet).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.files.log).unwrap_or_default()
    }

    /// The timeline history files in `pg_wal`, one line each (name, line count, first and
    /// last line), for failure messages: a pg_rewind that finds no common ancestor is
    /// explained by them.
    pub fn timeline_histories(&self) -> String {
        let Ok(entries) = std::fs::read_dir(self.pg.data_dir().join("pg_wal")) else {
            return "(no pg_wal)".into();
        };
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.ends_with(".history"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.pg.data_dir().join("pg_wal").join(name))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "{name}: {} lines, first {:?}, last {:?}",
                    lines.len(),
                    lines.first().unwrap_or(&""),
                    lines.last().unwrap_or(&"")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How the test connects to this node as `postgres` (TCP on 127.0.0.1, or the Unix
    /// socket: [`Node::clients_use_socket`]).
    pub fn client_conninfo(&self) -> String {
        let host = if self.clients_use_socket {
            self.pg.socket_dir().display().to_string()
        } else {
            "127.0.0.1".to_owned()
        };
        format!(
            "host={host} port={} user=postgres dbname=postgres connect_timeout=1",
            self.port()
        )
    }

    /// A connection as `postgres` to this node, or `None` when it does not answer within 2 s.
    pub async fn client(&self) -> Option<tokio_postgres::Client> {
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_postgres::connect(&self.client_conninfo(), NoTls),
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

    /// The WAL receiver's status, the port it streams from and whether it uses a slot, when
    /// one runs.
    pub async fn wal_receiver_slot(&self) -> Option<(String, i32, bool)> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT status, sender_port, slot_name IS NOT NULL FROM pg_stat_wal_receiver",
                &[],
            )
            .await
            .ok()??;
        Some((row.get(0), row.get::<_, Option<i32>>(1)?, row.get(2)))
    }

    /// The WAL receiver's status and the port it streams from, when one runs.
    pub async fn wal_receiver(&self) -> Option<(String, i32)> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT status, sender_port FROM pg_stat_wal_receiver", &[])
            .await
            .ok()??;
        Some((row.get(0), row.get::<_, Option<i32>>(1)?))
    }
}
