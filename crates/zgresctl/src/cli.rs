//! zgresctl's command line: options and subcommands (clap).

use clap::{Parser, Subcommand};

/// Look at and steer zgres groups (reads and writes ZooKeeper only).
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Exit status: 0 done; 1 refused or failed (the message says why); 64 usage \
error; 69 ZooKeeper unreachable; 141 standard output was closed (e.g. `| head`)."
)]
pub(crate) struct Args {
    /// ZooKeeper ensemble, host:port,...
    #[arg(
        long,
        global = true,
        env = "ZGRES_ZOOKEEPER",
        default_value = "127.0.0.1:2181"
    )]
    pub(crate) zookeeper: String,
    /// Root of the zgres znodes.
    #[arg(long, global = true, env = "ZGRES_ROOT", default_value = "/zgres")]
    pub(crate) root: String,
    /// ZooKeeper digest user (the deadmen's writer identity), with --zk-password-file.
    #[arg(long, global = true, env = "ZGRES_ZK_USER")]
    pub(crate) zk_user: Option<String>,
    /// File whose first line is the ZooKeeper digest password.
    #[arg(long, global = true, env = "ZGRES_ZK_PASSWORD_FILE")]
    pub(crate) zk_password_file: Option<std::path::PathBuf>,
    /// Authenticate --zk-user with SASL DIGEST-MD5 (the deadmen's `sasl = true`).
    #[arg(long, global = true, env = "ZGRES_ZK_SASL")]
    pub(crate) zk_sasl: bool,
    /// PEM file of the CA that signed the ZooKeeper servers' certificates: connect over TLS
    /// (the deadmen's `tls_ca_file`).
    #[arg(long, global = true, env = "ZGRES_ZK_TLS_CA")]
    pub(crate) zk_tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) presented to ZooKeeper, with --zk-tls-key.
    #[arg(long, global = true, env = "ZGRES_ZK_TLS_CERT")]
    pub(crate) zk_tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --zk-tls-cert.
    #[arg(long, global = true, env = "ZGRES_ZK_TLS_KEY")]
    pub(crate) zk_tls_key: Option<std::path::PathBuf>,
    /// ACL id granted read access to what zgresctl creates or `acl apply` sets (repeatable;
    /// the deadmen's `readers`).
    #[arg(long = "zk-reader", global = true)]
    pub(crate) zk_readers: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// A table per group: members, roles, state, timeline, lag.
    List {
        /// Only this group.
        group: Option<String>,
        /// Refresh every SECONDS (default 2) until interrupted.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<f64>,
    },
    /// The full state of one node.
    Show {
        /// The group.
        group: String,
        /// The node: its id (IP:PORT) or its configured name (e.g. n1).
        node: String,
    },
    /// A libpq connection string for the group's primary (or, with --replica, its replicas),
    /// from the connection info its healthy nodes publish. No user or password.
    Dsn {
        /// The group.
        group: String,
        /// The healthy replicas not tagged `noloadbalance`, as one multi-host string with
        /// `target_session_attrs=standby` (libpq 14 or later).
        #[arg(long)]
        replica: bool,
    },
    /// Delete everything the group keeps in ZooKeeper (config, history, database id, pending
    /// requests); refused while any of its deadmen runs.
    Remove {
        /// The group.
        group: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Release a lock left persistent when the primary's deadman was stopped in a paused group
    /// (its PostgreSQL left running), for a node whose deadman will not come back: the group
    /// can then elect a new primary once resumed. Stop that PostgreSQL first if it still runs.
    Unlock {
        /// The group.
        group: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Who streams from whom, with each standby's lag (from the states the deadmen publish).
    Topology {
        /// The group.
        group: String,
    },
    /// The group's promotions.
    History {
        /// The group.
        group: String,
    },
    /// The group's dynamic configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Planned switchover: the primary stops writes, the candidate catches up fully and is
    /// promoted, the old primary follows it.
    Switchover {
        /// The group.
        group: String,
        /// The replica to promote, by id (IP:PORT) or configured name (e.g. n1); default: the
        /// best one.
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
        /// Not before this time: RFC 3339 (`2026-11-22T03:00:00Z`) or `+10m`-style from now.
        #[arg(long, value_name = "TIME")]
        scheduled: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
        /// Cancel the pending switchover or failover instead.
        #[arg(long, conflicts_with_all = ["to", "scheduled"])]
        cancel: bool,
    },
    /// Forced failover to a named replica, even when the primary is gone.
    Failover {
        /// The group.
        group: String,
        /// The replica to promote, by id (IP:PORT) or configured name (e.g. n1).
        #[arg(long, value_name = "NODE")]
        to: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Restart PostgreSQL in place, in its role, through the node's deadman: a primary keeps
    /// the lock (no failover; writes pause while it restarts), a replica follows the same
    /// primary again. Without NODE, every node one at a time, replicas first, each healthy
    /// again before the next.
    Restart(RestartArgs),
    /// Wipe a replica's data directory and clone it again from the primary, through its
    /// deadman (refused on the primary). Waits until it streams again.
    Reinit {
        /// The group.
        group: String,
        /// The replica, by id (IP:PORT) or configured name (e.g. n1).
        node: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Have the node's deadman re-read its configuration file (as `systemctl reload` does) and
    /// PostgreSQL its own (`pg_reload_conf()`). Without NODE, every node.
    Reload {
        /// The group.
        group: String,
        /// The node, by id (IP:PORT) or configured name (e.g. n1); default: every node.
        node: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Stop automatic actions (failover) in the group.
    Pause {
        /// The group.
        group: String,
    },
    /// Resume automatic actions in the group.
    Resume {
        /// The group.
        group: String,
    },
    /// ZooKeeper ACLs of the zgres tree.
    Acl {
        #[command(subcommand)]
        action: AclCommand,
    },
    /// Print the ZooKeeper ACL id of a digest identity (for `[zookeeper] readers`), from the
    /// password in `--password-file`. Needs no ZooKeeper.
    Digest {
        /// The user.
        user: String,
        /// File whose first line is the password.
        #[arg(long)]
        password_file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Put the ACL policy of --zk-user (all rights; read for each --zk-reader; nothing for
    /// anyone else) on existing znodes: the root, the directories and GROUP's znodes, or
    /// everything with --all. Znodes already carrying it are left alone.
    Apply {
        /// The group.
        group: Option<String>,
        /// Every znode under the root.
        #[arg(long, conflicts_with = "group")]
        all: bool,
        /// Remove read access from identities the tree grants it to that are not given with
        /// --zk-reader (refused otherwise, so a run without the readers cannot lock zgres-sync
        /// out).
        #[arg(long)]
        drop_readers: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
    /// Print it.
    Get {
        /// The group.
        group: String,
    },
    /// Change keys: `zgresctl config set main maximum_lag_on_failover_bytes=1048576`,
    /// `postgresql.parameters.work_mem=8MB`, `postgresql.pg_hba='["host all all 10.0.0.0/8
    /// scram-sha-256"]'`, `standby_cluster='{"group":"main"}'` (follow another group's primary,
    /// or `{"node":"10.0.0.5:5432"}` one outside zgres). New parameter values are checked against what the group's primary
    /// accepts (its pg_settings, published in /pg_settings/GROUP).
    Set {
        /// The group.
        group: String,
        /// `key=value` pairs.
        #[arg(required = true)]
        assignments: Vec<String>,
        /// Write parameters without checking them (each deadman still leaves out values its
        /// own server refuses).
        #[arg(long)]
        force: bool,
        /// Also for a group that does not exist yet (no node, lock or config), e.g. a standby
        /// cluster configured before its nodes start; without it a mistyped name is an error.
        #[arg(long)]
        create: bool,
    },
    /// Remove cluster-wide PostgreSQL settings (`postgresql.parameters.NAME`,
    /// `postgresql.pg_hba`), a permanent slot (`slots.NAME`), or `standby_cluster`: that
    /// promotes the standby cluster's standby leader, making the group a normal one.
    Unset {
        /// The group.
        group: String,
        /// The keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Edit it in $VISUAL / $EDITOR; written back only if unchanged meanwhile.
    Edit {
        /// The group.
        group: String,
        /// Write parameters without checking them against the group's pg_settings.
        #[arg(long)]
        force: bool,
    },
}

/// `zgresctl restart`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct RestartArgs {
    /// The group.
    pub(crate) group: String,
    /// The node, by id (IP:PORT) or configured name (e.g. n1); default: every node.
    pub(crate) node: Option<String>,
    /// Only the nodes whose PostgreSQL has settings waiting for a restart.
    #[arg(long)]
    pub(crate) pending: bool,
    /// Hand the primary over to the best replica first (a switchover), then restart it
    /// as a replica, instead of restarting it in place.
    #[arg(long)]
    pub(crate) switchover: bool,
    /// Not before this time, carried out by the deadmen: RFC 3339 (`2026-11-22T03:00:00Z`) or
    /// `+10m`-style from now. Returns at once. Without NODE, a rolling restart from that time:
    /// replicas first, the primary last (in place), each deadman handing on to the next once
    /// its node runs again.
    #[arg(long, value_name = "TIME", conflicts_with = "switchover")]
    pub(crate) scheduled: Option<String>,
    /// Cancel the node's pending (scheduled) request instead; without NODE, every pending
    /// request of the group (a rolling restart stops where it is).
    #[arg(long, conflicts_with_all = ["scheduled", "switchover", "pending"])]
    pub(crate) cancel: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub(crate) force: bool,
}
