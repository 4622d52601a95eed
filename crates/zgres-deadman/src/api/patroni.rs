//! The status fields Patroni's REST API has where the meaning matches, so existing check
//! scripts and dashboards read zgres's status unchanged:
//!
//! | Patroni field | zgres value |
//! |---|---|
//! | `state` | `running` while PostgreSQL answers as primary or replica, else `stopped` or `unknown` |
//! | `role` | `primary`, `replica`, `stopped`, `unknown` (zgres's own field, same name) |
//! | `timeline` | the current timeline (zgres's own field, same name) |
//! | `xlog.location` | the primary's current WAL position, in bytes |
//! | `xlog.received_location`, `xlog.replayed_location` | a replica's received and replayed positions, in bytes |
//! | `database_system_identifier` | the system identifier, as a string |
//! | `patroni.scope`, `patroni.name` | the group and the node id |
//! | `pending_restart` | `true` while a setting waits for a restart (absent otherwise, as in Patroni); `pending_restart_settings` lists them |
//!
//! | `server_version` | PostgreSQL's `server_version_num` (zgres's own field, same name and meaning), once the deadman has connected |
//!
//! Not given: `postmaster_start_time`, `patroni.version`.

use serde_json::{json, Map, Value};
use zgres_schema::documents::Role;

use super::Status;

/// The Patroni-named fields for `s`, to add to its JSON.
pub(super) fn fields(s: &Status) -> Map<String, Value> {
    let mut fields = Map::new();
    let state = match s.health.role {
        Role::Primary | Role::Replica => "running",
        Role::Stopped => "stopped",
        Role::Unknown => "unknown",
    };
    fields.insert("state".into(), json!(state));
    let wal = &s.replication.wal;
    let bytes = |lsn: Option<zgres_schema::Lsn>| lsn.map(|l| l.0);
    let xlog = match s.health.role {
        Role::Primary => json!({ "location": bytes(wal.write) }),
        _ => json!({
            "received_location": bytes(wal.receive),
            "replayed_location": bytes(wal.replay),
        }),
    };
    fields.insert("xlog".into(), xlog);
    if let Some(id) = s.replication.system_id {
        fields.insert("database_system_identifier".into(), json!(id.to_string()));
    }
    if !s.health.pending_restart_settings.is_empty() {
        fields.insert("pending_restart".into(), json!(true));
    }
    fields.insert(
        "patroni".into(),
        json!({ "scope": s.group.as_str(), "name": s.node.to_string() }),
    );
    fields
}
