//! One read of the group: the lock, the peers' states, the db-id, the config, the switchover
//! request, `/sync` and the history's newest timeline.

use super::{read_cache, Coordinator, Result};
use crate::decision::{wants_timeline_starts, LockView, Peer, TimelineStart};
use crate::fence::monotonic_ns;
use zgres_schema::documents::{
    DatabaseId, GroupConfig, Lock, NodeRequest, NodeState, Switchover, SyncMode, SyncState,
};
use zgres_schema::{DecodeError, Fetched, SystemId, Timeline, Znode};

/// What the group looks like in ZooKeeper at one moment.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// The lock.
    pub lock: LockView,
    /// Peers with a readable state.
    pub peers: Vec<Peer>,
    /// `/static/{GROUP}-db-id`.
    pub db_id: Fetched<SystemId>,
    /// `/config/{GROUP}`: absent means the defaults, unreadable means unknown.
    pub config: Fetched<GroupConfig>,
    /// The newest timeline in `/history/{GROUP}` and the promotions recorded beside an
    /// unreadable one (read only while the lock is free).
    pub group_timeline: Option<Timeline>,
    /// Where the recorded timelines began, read only for a standby behind its primary's
    /// timeline (see [`wants_timeline_starts`]).
    pub timeline_starts: Vec<TimelineStart>,
    /// `/switchover/{GROUP}` and its version.
    pub switchover: Fetched<(Switchover, i32)>,
    /// `/sync/{GROUP}` and its version, read only in synchronous mode.
    pub sync: Fetched<(SyncState, i32)>,
    /// `/request/{GROUP}_{NODE}` for this node and its version.
    pub node_request: Fetched<(NodeRequest, i32)>,
    /// The lock is free, released by the holder this node last saw with nobody writing
    /// under it (see `coordination::lock_release`).
    pub quiet_release: bool,
}

impl GroupView {
    /// The view of a round whose reads failed: the lock unknown, so nothing is decided.
    pub fn unknown() -> Self {
        GroupView {
            lock: LockView::Unknown,
            peers: vec![],
            db_id: Fetched::Absent,
            config: Fetched::Absent,
            group_timeline: None,
            timeline_starts: Vec::new(),
            switchover: Fetched::Absent,
            sync: Fetched::Absent,
            node_request: Fetched::Absent,
            quiet_release: false,
        }
    }
}

impl Coordinator {
    /// Reads the lock, the peers' states (every peer's when `every_peer`, see
    /// [`crate::decision::wants_every_peer`]), the db-id and the group config, and where the
    /// timelines began when `standby_timeline` (the local standby's, if one runs) is behind
    /// the primary's. Every successful read also confirms the session for the fence.
    ///
    /// # Errors
    /// As any request; then nothing is decided this round.
    pub async fn view(
        &mut self,
        standby_timeline: Option<Timeline>,
        every_peer: bool,
    ) -> Result<GroupView> {
        let sent = monotonic_ns();
        let lock_path = self.paths.lock.clone();
        // Cached reads would describe a group we cannot see now: decide nothing.
        self.session.check_connected()?;
        let ours = self.session.session_id().0;
        let cached_as_ours = self
            .cache
            .peek(&lock_path)
            .is_some_and(|(_, stat)| stat.ephemeral_owner == ours);
        if (cached_as_ours || self.fence.clock().is_armed())
            && sent.saturating_sub(self.fence.clock().last_ok_ns())
                > super::REQUEST_TIMEOUT.as_nanos() as u64
        {
            // The holder trusts a cached lock only while its session is being confirmed; else
            // it asks the server, and a silent server means nothing is decided.
            self.cache.invalidate(&lock_path);
        }
        let (lock_read, source) = self.cache.get(&self.session, &lock_path).await?;
        let lock = match lock_read {
            Some((data, stat)) => {
                let ours = stat.ephemeral_owner == self.session.session_id().0;
                self.sightings.held(stat.czxid, ours);
                let holder = self.decoder.decode::<Lock>(&lock_path, &data);
                if ours {
                    if holder.valid().map(|l| l.node) != Some(self.me) {
                        self.restore_lock(&holder, stat.version).await;
                    }
                    LockView::Ours
                } else if stat.ephemeral_owner == 0
                    && holder.valid().map(|l| l.node) == Some(self.me)
                {
                    LockView::Unattended
                } else {
                    LockView::Other(holder.into_valid().map(|l| l.node))
                }
            }
            None => {
                if self.sightings.gone_zxid.is_none() {
                    // The directory is created at connect; gone means someone deleted it.
                    let dir = self.layout.dir(zgres_schema::Dir::Lock);
                    let stat = self.session.stat(&dir).await?;
                    self.sightings.gone_zxid = Some(stat.map_or(0, |s| s.pzxid));
                }
                LockView::Free
            }
        };
        if source == read_cache::Source::Server {
            // Only an answer from the server confirms the session.
            self.fence.confirm(sent);
        }

        let switchover_path = self.paths.switchover.clone();
        let switchover = self.read::<Switchover>(&switchover_path).await?;
        let request_path = self.paths.own_request.clone();
        let node_request = self.read::<NodeRequest>(&request_path).await?;

        let config_path = self.paths.config.clone();
        let config = self
            .read::<GroupConfig>(&config_path)
            .await?
            .map(|(c, _)| c);
        // An unreadable config may hide synchronous mode: read `/sync` then too, so that no
        // one promotes outside it.
        let synchronous = config.valid().map_or(config.is_unreadable(), |c| {
            c.synchronous_mode != SyncMode::Off
        });
        let switchover_pending = !matches!(switchover, Fetched::Absent);
        // The primary keeps a slot for every member (and advances it to the member's position).
        let member_slots = config.valid().map_or(true, |c| c.member_slots);

        // Read only the states a decision can use: every peer's during an election, a
        // requested switchover, in synchronous mode, on a primary keeping member slots or to
        // choose a clone source, the holder's while following (for its WAL position, health
        // and slots), none otherwise.
        let prefix = self.paths.state_prefix.clone();
        let state_dir = self.paths.state_dir.clone();
        let children = match lock {
            LockView::Free => self
                .cache
                .children(&self.session, &state_dir)
                .await?
                .unwrap_or_default(),
            LockView::Ours if switchover_pending || synchronous || member_slots => self
                .cache
                .children(&self.session, &state_dir)
                .await?
                .unwrap_or_default(),
            LockView::Other(Some(_)) if every_peer => self
                .cache
                .children(&self.session, &state_dir)
                .await?
                .unwrap_or_default(),
            LockView::Other(Some(holder)) => vec![format!("{prefix}{holder}")],
            _ => vec![],
        };
        let mut peers = Vec::new();
        // Our own state is never a peer's: not read at all (our own writes fire the
        // directory's watch, and reading it back cost an idle primary a read per refresh).
        let own = self.paths.own_state_name.clone();
        for child in children
            .iter()
            .filter(|c| c.starts_with(&*prefix) && **c != *own)
        {
            let path = format!("{state_dir}/{child}");
            let Some((data, stat)) = self.cache.get(&self.session, &path).await?.0 else {
                continue;
            };
            let Some(state) = self.decoder.decode::<NodeState>(&path, &data).into_valid() else {
                continue;
            };
            // A state must name the node of its znode, and be ephemeral: a persistent one
            // outlives its writer and would vouch for a node that may be long gone.
            let problem = match self.layout.parse(&path) {
                _ if stat.ephemeral_owner == 0 => Some(("v", "not ephemeral".to_owned())),
                Ok(Znode::State(_, node)) if node == state.node => None,
                _ => Some((
                    "node",
                    format!("{} does not match the znode name", state.node),
                )),
            };
            if let Some((field, message)) = problem {
                let kind = zgres_schema::DecodeErrorKind::Field {
                    field: field.into(),
                    message,
                };
                let error = DecodeError {
                    path: path.clone(),
                    kind,
                };
                self.decoder.report(&error, &data);
                continue;
            }
            self.decoder.usable(&path);
            if state.node == self.me {
                continue;
            }
            let fresh = self
                .sightings
                .gone_zxid
                .is_some_and(|gone| stat.mzxid > gone);
            peers.push(Peer { state, fresh });
        }

        let db_id_path = self.paths.db_id.clone();
        let db_id = self
            .read::<DatabaseId>(&db_id_path)
            .await?
            .map(|(d, _)| d.system_id);
        let sync = if synchronous {
            let path = self.paths.sync.clone();
            self.read::<SyncState>(&path).await?
        } else {
            Fetched::Absent
        };
        let quiet_release = lock == LockView::Free && self.released_quietly().await?;
        let group_timeline = if lock == LockView::Free {
            self.history().await?.newest_timeline()
        } else {
            None
        };
        let timeline_starts = if wants_timeline_starts(lock, &peers, standby_timeline) {
            let history = self.history().await?;
            history
                .entries()
                .iter()
                .map(|p| TimelineStart {
                    timeline: p.timeline,
                    lsn: p.lsn,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(GroupView {
            lock,
            peers,
            db_id,
            config,
            group_timeline,
            timeline_starts,
            switchover,
            sync,
            node_request,
            quiet_release,
        })
    }
}
