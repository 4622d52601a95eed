//! The configuration files every test instance gets.

/// Settings every test instance gets; replication-ready, fast and unsafe for real data
/// (`fsync=off`).
pub(super) const POSTGRESQL_CONF: &str = "
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
wal_log_hints = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
fsync = off
synchronous_commit = on
full_page_writes = on
shared_buffers = 16MB
max_connections = 40
logging_collector = off
log_line_prefix = '%m [%p] '
";

pub(super) const PG_HBA_CONF: &str = "
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
";
