//! The round's probe: one prepared statement for role, positions, timeline, system id,
//! upstream and slots.

use std::time::Duration;

use zgres_schema::{Lsn, NodeId, SystemId, Timeline};

use super::{slots, timed, ClientError, PostgresClient, QUERY_TIMEOUT};
use crate::conninfo;
use crate::decision::Probe;

/// The probe's last column: `pg_replication_slots` as `name type active restart_lsn`, one
/// slot per comma (slot names are `[a-z0-9_]`, so neither separator occurs in one); parsed
/// by `slots::parse_slots`.
macro_rules! slots_column {
    () => {
        "(SELECT coalesce(string_agg(slot_name || ' ' || slot_type || ' ' || active::text
                                     || ' ' || coalesce(restart_lsn::text, '-'), ','), '')
            FROM pg_replication_slots)"
    };
}

/// The probe, prepared once per connection.
pub(super) const PROBE_SQL: &str = concat!(
    "
SELECT pg_is_in_recovery(),
       (SELECT system_identifier::text FROM pg_control_system()),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       -- A standby's timeline: the one it streams; while its WAL receiver is not streaming
       -- (just started, or its primary unreachable), the newest one it holds WAL of. Its
       -- checkpoint's timeline (below) is older than the one it replays until its first
       -- restartpoint on the new one: alone it made a standby that followed a new primary
       -- look diverged after a restart.
       CASE WHEN pg_is_in_recovery()
            THEN coalesce(
                   (SELECT nullif(received_tli, 0) FROM pg_stat_wal_receiver),
                   (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir()
                    WHERE name ~ '^[0-9A-F]{24}$'))
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END,
       (SELECT timeline_id FROM pg_control_checkpoint()),
       current_setting('primary_conninfo'),
       (SELECT min_recovery_end_timeline FROM pg_control_recovery()),
       -- Where the oldest segment in pg_wal begins (a primary's: what standbys can still
       -- stream from). A segment name is TIMELINE, LOG and SEGMENT in hex; the position part
       -- alone orders segments across timelines.
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE
         (SELECT ('0/0'::pg_lsn
                  + (('x' || substr(oldest, 1, 8))::bit(32)::bigint * 4294967296
                     + ('x' || substr(oldest, 9, 8))::bit(32)::bigint
                       * (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')
                    )::numeric)::text
          FROM (SELECT min(substr(name, 9)) AS oldest FROM pg_ls_waldir()
                WHERE name ~ '^[0-9A-F]{24}$') AS segments)
       END,
       current_setting('restore_command') <> '',
       current_setting('primary_slot_name'),
       ",
    slots_column!()
);

impl PostgresClient {
    /// Queries role, positions, timeline, system id and upstream.
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL does not answer properly; the connection is dropped.
    pub async fn probe(&mut self) -> Result<Probe, ClientError> {
        let result = self.probe_once().await;
        if result.is_err() {
            self.client = None;
        }
        result
    }

    /// As [`PostgresClient::probe`], but gives up after `limit` (at most the usual query
    /// timeout): the round must decide by then.
    ///
    /// # Errors
    /// As [`PostgresClient::probe`]; [`ClientError::Timeout`] after `limit`.
    pub async fn probe_within(&mut self, limit: Duration) -> Result<Probe, ClientError> {
        let limit = limit.min(QUERY_TIMEOUT);
        match tokio::time::timeout(limit, self.probe()).await {
            Ok(result) => result,
            Err(_) => {
                self.client = None;
                Err(ClientError::Timeout(limit))
            }
        }
    }

    async fn probe_once(&mut self) -> Result<Probe, ClientError> {
        let (client, probe) = self.connection().await?;
        let row = timed(client.query_one(probe, &[])).await??;
        let lsn = |i: usize| -> Result<Option<Lsn>, ClientError> {
            Ok(row
                .get::<_, Option<String>>(i)
                .map(|t| t.parse())
                .transpose()?)
        };
        let system_id: SystemId = row.get::<_, String>(1).parse()?;
        let reported = [5, 6, 8]
            .into_iter()
            .filter_map(|i| row.get::<_, Option<i32>>(i))
            .filter_map(|t| u32::try_from(t).ok())
            .filter_map(|t| Timeline::new(t).ok())
            .max();
        let timeline = reported.max(self.seen_timeline);
        self.seen_timeline = timeline;
        let in_recovery: bool = row.get(0);
        // A promoted server still reports the last positions it received and replayed as a
        // standby; they describe the past, not this primary.
        let standby_only = |v: Option<Lsn>| v.filter(|_| in_recovery);
        let probe = Probe {
            in_recovery,
            system_id,
            write_lsn: lsn(2)?,
            receive_lsn: standby_only(lsn(3)?),
            replay_lsn: standby_only(lsn(4)?),
            timeline,
            upstream: self.upstream(&row.get::<_, String>(7)),
            oldest_kept: if in_recovery { None } else { lsn(9)? },
            restores_from_archive: in_recovery && row.get::<_, bool>(10),
            member_slot: row.get::<_, String>(11) == self.member_slot.as_str(),
        };
        self.slots = slots::parse_slots(&row.get::<_, String>(12));
        Ok(probe)
    }

    /// The node `primary_conninfo` follows, when it is exactly what this deadman would write
    /// for it: a conninfo written by someone else, or before the TLS settings or the password
    /// changed, counts as following nobody, so the standby is re-pointed with the current one.
    fn upstream(&self, primary_conninfo: &str) -> Option<NodeId> {
        conninfo::upstream_of(primary_conninfo, &self.application_name)
            .filter(|upstream| self.conninfo_for(*upstream) == primary_conninfo)
    }
}
