//! Releasing the group lock, and telling a lock its holder released with nobody writing under
//! it from one that merely vanished.
//!
//! A lock that vanished may have expired with its primary still writing through a ZooKeeper
//! member cut from its leader, so whoever takes it over waits the takeover wait first
//! (`zgres-deadman-core`'s `decision::takeover`). A holder that releases it after stopping its
//! PostgreSQL, and only once every holder before it is fenced, says so in `/released/{GROUP}`
//! in the same transaction that deletes the lock. A node may take the free lock over at once
//! when that record names the lock it last saw held (its creation zxid) *and* was written by
//! the last change of the lock directory's children (the record's `mzxid` is the directory's
//! `pzxid`): a lock created after it — by a node this one never saw hold it, or by a deadman
//! of an older version that writes no record — would have moved the `pzxid` on. (Found by
//! the simulator: a node cut from ZooKeeper while the holder released quietly, took the lock
//! again and lost it with its session, came back to a record naming the lock it had seen.)
//! Another group's lock changing in between costs the wait, never safety. The record is input
//! from ZooKeeper like any other: it only ever shortens a wait when both checks hold, and with
//! authentication on only the group's writer identity can write it.

use zgres_schema::documents::LockRelease;
use zgres_schema::{encode, Fetched, Znode};
use zgres_zk::Outcome;

use super::{Coordinator, Result};

/// What this session saw of the group lock, across rounds.
#[derive(Debug, Default)]
pub(super) struct LockSightings {
    /// pzxid of the lock directory when the lock was last seen free.
    pub(super) gone_zxid: Option<i64>,
    /// The creation zxid of the lock last seen held by another session.
    other_czxid: Option<i64>,
    /// Once that lock was seen free: whether its holder released it with nobody writing.
    verdict: Option<bool>,
}

impl LockSightings {
    /// The lock is held, with creation zxid `czxid`, by this session (`ours`) or another.
    pub(super) fn held(&mut self, czxid: i64, ours: bool) {
        self.gone_zxid = None;
        let other = (!ours).then_some(czxid);
        if other != self.other_czxid {
            self.other_czxid = other;
            self.verdict = None;
        }
    }
}

impl Coordinator {
    /// Deletes the lock if this session holds it; with `quiet`, records in `/released/{GROUP}`,
    /// in the same transaction, that nobody is writing under it (the caller has stopped
    /// PostgreSQL, and every earlier holder is fenced). Returns whether it deleted it.
    ///
    /// # Errors
    /// As any request; nothing was deleted then.
    pub async fn release_lock(&mut self, quiet: bool) -> Result<bool> {
        let path = self.lock_path();
        self.cache.invalidate(&path);
        let Some(stat) = self.session.stat(&path).await? else {
            return Ok(false);
        };
        if stat.ephemeral_owner != self.session.session_id().0 {
            return Ok(false);
        }
        // Gone or changed meanwhile: not ours to delete any more.
        let outcome = if quiet {
            let record = encode(&LockRelease {
                lock_czxid: stat.czxid,
                node: self.me,
            })?;
            let record_path = self.path(Znode::Released(self.group.clone()));
            self.session
                .delete_recording(&path, stat.version, &record_path, &record)
                .await?
        } else {
            self.session.delete(&path, Some(stat.version)).await?
        };
        Ok(outcome == Outcome::Done(()))
    }

    /// Whether the lock, seen free now, was released by the holder this session last saw with
    /// nobody writing under it: its record names that lock and is the lock directory's last
    /// change (see the module's documentation). Read from the server once per lock (a read
    /// after the lock's deletion was seen sees the record written with it); `false` when this
    /// session never saw the lock held by another, or the record is absent, unreadable, about
    /// another lock or older than the directory's last change.
    ///
    /// # Errors
    /// As any request.
    pub(super) async fn released_quietly(&mut self) -> Result<bool> {
        let (Some(czxid), Some(gone_zxid)) = (self.sightings.other_czxid, self.sightings.gone_zxid)
        else {
            return Ok(false);
        };
        if let Some(verdict) = self.sightings.verdict {
            return Ok(verdict);
        }
        let path = self.path(Znode::Released(self.group.clone()));
        let verdict = match self.session.get(&path).await? {
            Some((data, stat)) => match self.decoder.decode::<LockRelease>(&path, &data) {
                Fetched::Valid(record) if record.lock_czxid == czxid && stat.mzxid == gone_zxid => {
                    tracing::info!(
                        holder = %record.node,
                        "the lock was released with nobody writing under it: no takeover wait"
                    );
                    true
                }
                _ => false,
            },
            None => false,
        };
        self.sightings.verdict = Some(verdict);
        Ok(verdict)
    }
}
