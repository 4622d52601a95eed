//! Why a zgresctl command failed, typed by what the operator can do about it: fix the command
//! line ([`Usage`]), change the group first ([`Refusal`]), or retry.

use std::path::PathBuf;
use std::time::Duration;

use zgres_schema::NodeId;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// ZooKeeper could not be reached.
    #[error(transparent)]
    Unreachable(#[from] zgres_zk::ConnectError),
    /// A request failed.
    #[error(transparent)]
    ZooKeeper(#[from] zgres_zk::ZkError),
    /// No such group.
    #[error("no group named {0:?} (zgresctl list shows the groups)")]
    UnknownGroup(String),
    /// Nothing of zgres under the root: a wrong `--zookeeper` or `--root`, or no deadman ran.
    #[error("no group under {root} at {hosts} (check --zookeeper and --root)")]
    NoGroups {
        /// The root looked at.
        root: String,
        /// The ZooKeeper connect string.
        hosts: String,
    },
    /// No such node in the group.
    #[error("group {group} has no node {node} (zgresctl list shows its nodes)")]
    UnknownNode {
        /// The group.
        group: String,
        /// The node asked for.
        node: String,
    },
    /// A document in ZooKeeper cannot be read.
    #[error(transparent)]
    Decode(#[from] zgres_schema::DecodeError),
    /// A document cannot be encoded (a bug: every document zgresctl writes is encodable).
    #[error(transparent)]
    Encode(#[from] zgres_schema::EncodeError),
    /// Bad input from the operator.
    #[error(transparent)]
    Usage(#[from] Usage),
    /// Someone else changed the znode meanwhile.
    #[error("{0} was changed by someone else meanwhile; run the command again")]
    Conflict(String),
    /// The request cannot be carried out in the group's current state.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A switchover or failover is already requested.
    #[error("a {kind} of group {group} is already pending (to {to}); cancel it with `zgresctl switchover --cancel {group}`")]
    Pending {
        /// The group.
        group: String,
        /// Switchover or failover.
        kind: String,
        /// Its target.
        to: String,
    },
    /// A request to the node is already pending.
    #[error("a request to {node} of group {group} is already pending; its deadman deletes it once carried out (or dropped: its log says why); to withdraw it (say, its node is gone for good): `zgresctl restart --cancel {group} {node}`")]
    RequestPending {
        /// The group.
        group: String,
        /// The node.
        node: NodeId,
    },
    /// Waited in vain for a node to carry out a request and be healthy again.
    #[error("{node} did not {} within {timeout:?}; its deadman's log says why",
        if *still_pending { "take the request" } else { "publish itself healthy after the request" })]
    RequestTimeout {
        /// The node.
        node: NodeId,
        /// How long it waited.
        timeout: Duration,
        /// Whether the request was still there.
        still_pending: bool,
    },
    /// Waited for a new primary in vain.
    #[error("no new primary within {timeout:?} (primary: {}, request {}); the deadmen's logs say why",
        primary.map_or("none".into(), |p| p.to_string()),
        if *still_pending { "still pending" } else { "gone" })]
    HandOverTimeout {
        /// How long it waited.
        timeout: Duration,
        /// The lock holder seen last.
        primary: Option<NodeId>,
        /// Whether the request was still there.
        still_pending: bool,
    },
}

/// Bad input on the command line, in a file or from the editor: exit code 64.
#[derive(Debug, thiserror::Error)]
pub enum Usage {
    /// `--zookeeper` or `--root` is invalid.
    #[error("{option}: {reason}")]
    Connection {
        /// The option (or config key) at fault.
        option: String,
        /// Why.
        reason: String,
    },
    /// Not a valid group name.
    #[error(transparent)]
    GroupName(#[from] zgres_schema::IdError),
    /// A config document or `key=value` is wrong.
    #[error(transparent)]
    Config(#[from] ConfigInputError),
    /// `--scheduled` is neither a time nor `+DURATION`.
    #[error("--scheduled {text:?}: {source} (use 2026-11-22T03:00:00Z or +10m)")]
    Scheduled {
        /// What was given.
        text: String,
        /// Why it does not parse (as a duration after `+`, else as a time).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A `--zk-reader` that is not an ACL id.
    #[error("--zk-reader: {0}")]
    Reader(#[from] zgres_zk::BadAclId),
    /// `acl apply` with neither a group nor `--all`.
    #[error("acl apply needs a GROUP or --all")]
    AclScope,
    /// `acl apply` without an identity to apply.
    #[error("acl apply needs an identity whose policy it applies: --zk-user and --zk-password-file, or a client certificate (--zk-tls-cert)")]
    AclNeedsIdentity,
    /// Only one of `--zk-user` and `--zk-password-file`.
    #[error("--zk-user and --zk-password-file go together")]
    ZkAuth,
    /// The TLS options are incomplete (a certificate without its key, or no CA).
    #[error("{option}: {reason}")]
    ZkTlsOptions {
        /// The option at fault.
        option: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A TLS file named by an option cannot be used.
    #[error("{option}: {source}")]
    ZkTlsFile {
        /// The option that names the file.
        option: &'static str,
        /// What is wrong with it.
        source: zgres_zk::TlsFileError,
    },
    /// `--watch` is not a positive number of seconds.
    #[error("--watch: give a positive number of seconds")]
    Watch,
    /// A failover names no target.
    #[error("failover needs --to NODE: the replica to promote")]
    FailoverNeedsTarget,
    /// Confirmation is needed and stdin is no terminal.
    #[error("{question}: no terminal to confirm on; add --force")]
    NoTerminal {
        /// What would have been asked.
        question: String,
    },
    /// `$VISUAL`/`$EDITOR` is set but empty.
    #[error("$EDITOR is empty")]
    EmptyEditor,
    /// The editor cannot be started.
    #[error("cannot run {program}: {source}")]
    Editor {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file named on the command line (or the editor's temporary file) cannot be read or
    /// written.
    #[error("{}: {source}", path.display())]
    EditFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A configured name is shared by several nodes.
    #[error("several nodes of group {group} are named {name:?} ({}); give the node id instead",
        nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    AmbiguousName {
        /// The group.
        group: String,
        /// The name.
        name: String,
        /// The nodes that carry it.
        nodes: Vec<NodeId>,
    },
}

/// What is wrong with a `/config` edit (`config set key=value` or `config edit`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigInputError {
    /// The edited document is not JSON.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// The edited document is JSON but not an object.
    #[error("the config must be a JSON object")]
    NotAnObject,
    /// A `config set` argument without `=`.
    #[error("{0:?}: expected key=value")]
    NotAnAssignment(String),
    /// No such key.
    #[error("unknown config key {key:?}; keys: {known:?}")]
    UnknownKey {
        /// The key given.
        key: String,
        /// The keys that exist.
        known: Vec<String>,
    },
    /// The value does not parse for its key's type.
    #[error("{key}: {value:?} is not a valid value")]
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
    },
    /// The value parses but is out of range for the key.
    #[error("{key}: {source}")]
    Rejected {
        /// The key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A cluster-wide PostgreSQL setting zgres refuses (local-only, not one line...).
    #[error("{key}: {source}")]
    Setting {
        /// The key.
        key: String,
        /// Why.
        source: zgres_schema::pg_settings::ClusterSettingError,
    },
    /// A permanent slot zgres refuses (bad name, a member's name).
    #[error("{key}: {source}")]
    Slot {
        /// The key.
        key: String,
        /// Why.
        source: zgres_schema::slots::SlotError,
    },
    /// A value the group's PostgreSQL would refuse (checked against `/pg_settings`).
    #[error("postgresql.parameters.{0}")]
    PostgresRefuses(zgres_schema::pg_settings::SettingValueError),
    /// No catalog to check parameters against.
    #[error("cannot check PostgreSQL parameters: {path} does not exist yet (the group's primary publishes it once its PostgreSQL runs); --force writes them unchecked, and each deadman still leaves out values its server refuses")]
    NoCatalog {
        /// The catalog's znode.
        path: String,
    },
}

/// Why the group's state does not allow the request; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The target already is the primary.
    #[error("{0} is already the primary")]
    AlreadyPrimary(NodeId),
    /// The target cannot take over.
    #[error("{node} is not a healthy replica (zgresctl list shows why): {why}")]
    NotAHealthyReplica {
        /// The target.
        node: NodeId,
        /// Its role and problems as published.
        why: String,
    },
    /// A failover in synchronous mode to a node `/sync` does not list: it may lack
    /// acknowledged commits, and its deadman would refuse the request.
    #[error("{node} is not in /sync (synchronous_mode {mode:?}): it may lack acknowledged commits; fail over to a node /sync lists, or switch over while the primary runs")]
    NotSynchronous {
        /// The target.
        node: NodeId,
        /// The group's synchronous mode.
        mode: zgres_schema::documents::SyncMode,
    },
    /// No replica could take over.
    #[error("group {0} has no healthy replica to switch over to")]
    NoHealthyReplica(String),
    /// A switchover needs a primary to hand over from.
    #[error("group {0} has no primary to hand over; use `zgresctl failover {0} --to NODE`")]
    NoPrimary(String),
    /// `acl apply` would take read access away from the tree's current readers.
    #[error("the tree's readers {} would lose read access: pass each with --zk-reader to keep it, or --drop-readers to remove it", .0.join(", "))]
    AclWouldDropReaders(Vec<String>),
    /// A deadman of the group is alive: its group is not removed.
    #[error("group {group} still has a live deadman ({live} exists); stop every deadman of the group first")]
    GroupAlive {
        /// The group.
        group: String,
        /// A znode that shows it (a state, a connection info or the lock).
        live: String,
    },
    /// `unlock` found no lock left at a paused shutdown.
    #[error("group {0} has no lock to release")]
    NoLockLeft(String),
    /// `unlock` never deletes a lock a live deadman's session holds.
    #[error("group {group}'s lock is held by {holder}'s live deadman; it is released by that deadman (switchover, or stopping it)")]
    LockHeld {
        /// The group.
        group: String,
        /// The node the lock names.
        holder: String,
    },
    /// Reinit wipes a data directory: never the primary's.
    #[error("{0} is the primary: reinit only rebuilds a replica (switch over first)")]
    ReinitOfThePrimary(NodeId),
    /// The node publishes no state: no live deadman would carry the request out.
    #[error("{0} publishes no state: its deadman is not running, so nothing would carry the request out")]
    NoDeadman(NodeId),
    /// The operator answered no.
    #[error("aborted; nothing was changed")]
    Aborted,
    /// The editor failed.
    #[error("{program} exited with {status}; nothing was changed")]
    EditorFailed {
        /// The program.
        program: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
}

impl From<ConfigInputError> for CtlError {
    fn from(e: ConfigInputError) -> Self {
        CtlError::Usage(Usage::Config(e))
    }
}
