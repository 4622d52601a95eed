//! Taking over the lock another node's session lost: how long the new holder waits before it
//! accepts writes, so that the old primary is fenced first even when its ZooKeeper member was
//! cut from the ensemble's leader.
//!
//! ZooKeeper's leader expires a session from the touches its followers report (each follower
//! sends them when the leader pings it, every half tick). A follower cut from its leader but
//! still reachable by its clients goes on answering their pings and reads until it notices,
//! after `syncLimit` ticks without a word from the leader, and closes their connections. A
//! primary connected to it keeps confirming its fence meanwhile, while the leader, hearing
//! nothing of the session, expires it and another node takes the lock.
//!
//! The bound: the leader heard of every request sent up to `tick` (half a tick for its next
//! ping, half for scheduling) before the cut, and the old primary's last unreported request
//! came at most one idle ping gap after the last reported one. The cut member answers for
//! `syncLimit × tickTime` more, and the old primary's fence fires `session_timeout −
//! fence_margin` after the send time of the last answered request. So the old primary is
//! fenced no later than the lock's expiry plus
//! `syncLimit × tickTime + tick + idle ping gap + slop − fence_margin`: the new holder waits
//! that long after it saw the lock free ([`takeover_wait`]). A larger fence margin shortens the
//! wait (the primary fences itself earlier); a standalone server has no followers.
//!
//! A planned hand-over needs no wait: the old primary stopped PostgreSQL before it released
//! the lock (the request records where it stopped). Nor does a new group's bootstrap.

use std::time::{Duration, Instant};

use super::{LockView, Peer};

/// The longest takeover wait a lock holder's published state can ask of the node that takes
/// its lock over: `/state` is input from ZooKeeper, so a forged value may slow a failover by
/// this much at most.
pub const MAX_PUBLISHED_WAIT: Duration = Duration::from_secs(60);

/// Allowance for scheduling and network delays in [`takeover_wait`].
const TAKEOVER_SLOP: Duration = Duration::from_millis(100);

/// What the takeover wait depends on: the ensemble's timing and the old primary's fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeoverTiming {
    /// The ensemble's `tickTime`.
    pub tick: Duration,
    /// The ensemble's `syncLimit` (in ticks); 0 for a standalone server, which has no
    /// followers to be cut off.
    pub sync_limit: u32,
    /// The longest a primary's ZooKeeper client stays silent (its idle ping interval).
    pub idle_ping_gap: Duration,
    /// The fence margin: the primary fences itself this long before its session could expire.
    pub fence_margin: Duration,
}

/// How long after the lock was seen free a node that took it over waits before it accepts
/// writes (see the module's documentation for the derivation). Zero for a standalone server.
pub fn takeover_wait(t: TakeoverTiming) -> Duration {
    if t.sync_limit == 0 {
        return Duration::ZERO;
    }
    let follower_timeout = t.tick.saturating_mul(t.sync_limit);
    (follower_timeout + t.tick + t.idle_ping_gap + TAKEOVER_SLOP).saturating_sub(t.fence_margin)
}

/// The published warning of a node that holds the lock and waits before it promotes.
pub const WAITING_TO_PROMOTE: &str = "holds the lock and waits before promoting, until the old primary is certainly fenced (zookeeper.ensemble_tick_ms × ensemble_sync_limit)";

/// An election's progress from this node's point of view.
#[derive(Debug, Default)]
pub(super) struct Takeover {
    /// When this node first saw the lock free in the current election.
    pub(super) lock_free_since: Option<Instant>,
    /// The lock was seen free and this node has not published its position since (peers
    /// compare positions written after the lock vanished).
    pub(super) position_unpublished: bool,
    /// Once this node holds the lock it took over, no promotion or primary start before this.
    /// `None`: no takeover under way (or this decider did not see it begin).
    promote_not_before: Option<Instant>,
    /// The takeover wait the current or last lock holder published (its own timing), at
    /// most [`MAX_PUBLISHED_WAIT`]: the old primary's fence margin and session are what count,
    /// and the group's nodes may not share them.
    holder_wait: Option<Duration>,
    /// This node's own takeover wait ([`takeover_wait`] of its settings).
    pub(super) own_wait: Duration,
}

impl Takeover {
    /// Input: the holder's published takeover wait, while another node holds the lock.
    pub(super) fn holder_seen(&mut self, lock: LockView, peers: &[Peer]) {
        let LockView::Other(Some(holder)) = lock else {
            return;
        };
        let Some(state) = peers.iter().find(|p| p.state.node == holder) else {
            return;
        };
        self.holder_wait = state
            .state
            .takeover_wait_ms
            .map(|ms| Duration::from_millis(ms).min(MAX_PUBLISHED_WAIT));
    }

    /// The wait that applies: this node's own, or the last holder's if longer.
    fn wait(&self) -> Duration {
        let own = self.own_wait;
        self.holder_wait.map_or(own, |theirs| theirs.max(own))
    }

    /// Input: the lock as observed at `now`. A lock seen free may be this node's to take
    /// over: from then on it accepts writes only the wait after the lock was first seen free
    /// (unless [`Takeover::handed_over`]).
    pub(super) fn lock_seen(&mut self, lock: LockView, now: Instant) {
        match lock {
            LockView::Free => {
                if self.lock_free_since.is_none() {
                    self.position_unpublished = true;
                }
                let wait = self.wait();
                let since = *self.lock_free_since.get_or_insert(now);
                let due = self
                    .promote_not_before
                    .map_or(since + wait, |at| at.max(since + wait));
                self.promote_not_before = Some(due);
            }
            LockView::Other(_) => {
                self.position_unpublished = false;
                self.lock_free_since = None;
                self.promote_not_before = None;
            }
            LockView::Ours | LockView::Unknown | LockView::Unattended => {
                self.position_unpublished = false;
                self.lock_free_since = None;
            }
        }
    }

    /// The node contends at `now` for a free lock nobody can be writing under: the old
    /// primary stopped before it released it (a hand-over), or the group has no database yet.
    /// It may accept writes as soon as it wins.
    pub(super) fn handed_over(&mut self, now: Instant) {
        self.promote_not_before = Some(now);
    }

    /// Whether a standby holding the lock may be promoted at `now`. A decider that did not
    /// see the takeover begin (the deadman restarted in between) waits the whole wait from
    /// now: it cannot tell whether the lock expired a moment ago.
    pub(super) fn may_promote(&mut self, now: Instant) -> bool {
        let wait = self.wait();
        now >= *self.promote_not_before.get_or_insert(now + wait)
    }

    /// Whether a stopped primary holding the lock may be started at `now`. With no takeover
    /// under way the lock was this node's all along since it last ran as the primary (a
    /// restart in place): no wait.
    pub(super) fn may_start_primary(&self, now: Instant) -> bool {
        self.promote_not_before.map_or(true, |at| now >= at)
    }

    /// Whether every node that held the lock before this one is certainly fenced at `now`:
    /// this node's takeover wait is over, or it had none (a restart in place, as
    /// [`Takeover::may_start_primary`] has it). Only then may its release say that nobody
    /// writes under the lock.
    pub(super) fn earlier_holders_fenced(&self, now: Instant) -> bool {
        self.may_start_primary(now)
    }

    /// This node runs as the primary with the lock: the takeover is over.
    pub(super) fn done(&mut self) {
        self.promote_not_before = None;
        self.holder_wait = None;
    }

    /// Whether this node holds the lock and waits to promote at `now`.
    pub(super) fn waiting(&self, now: Instant) -> bool {
        self.promote_not_before.is_some_and(|at| now < at)
    }

    /// When the wait ends, while the node holds the lock.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        self.promote_not_before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(sync_limit: u32) -> TakeoverTiming {
        TakeoverTiming {
            tick: Duration::from_millis(100),
            sync_limit,
            idle_ping_gap: Duration::from_millis(400),
            fence_margin: Duration::from_millis(500),
        }
    }

    #[test]
    fn the_wait_covers_the_cut_members_answers_beyond_the_fence_margin() {
        // 2 s follower timeout + 0.1 s tick + 0.4 s ping gap + 0.1 s slop - 0.5 s margin.
        assert_eq!(takeover_wait(timing(20)), Duration::from_millis(2_100));
        assert_eq!(takeover_wait(timing(5)), Duration::from_millis(600));
    }

    #[test]
    fn a_margin_that_covers_the_exposure_needs_no_wait_and_a_standalone_server_none() {
        let wide = TakeoverTiming {
            fence_margin: Duration::from_secs(5),
            ..timing(5)
        };
        assert_eq!(takeover_wait(wide), Duration::ZERO);
        assert_eq!(takeover_wait(timing(0)), Duration::ZERO);
    }

    fn waiting_two_seconds() -> Takeover {
        Takeover {
            own_wait: Duration::from_secs(2),
            ..Takeover::default()
        }
    }

    #[test]
    fn a_takeover_waits_from_the_moment_the_lock_was_seen_free() {
        let t0 = Instant::now();
        let mut t = waiting_two_seconds();
        t.lock_seen(LockView::Free, t0);
        t.lock_seen(LockView::Free, t0 + Duration::from_millis(500));
        assert!(!t.may_promote(t0 + Duration::from_millis(1_999)));
        assert!(t.waiting(t0 + Duration::from_millis(1_999)));
        assert!(!t.may_start_primary(t0 + Duration::from_millis(1_999)));
        assert!(t.may_promote(t0 + Duration::from_secs(2)));
        assert_eq!(t.wake_at(), Some(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn a_hand_over_needs_no_wait_and_losing_the_election_forgets_it() {
        let t0 = Instant::now();
        let mut t = waiting_two_seconds();
        t.lock_seen(LockView::Free, t0);
        t.handed_over(t0);
        assert!(t.may_promote(t0));
        t.lock_seen(LockView::Other(None), t0);
        assert_eq!(t.wake_at(), None);
        assert_eq!(t.lock_free_since, None);
    }

    #[test]
    fn a_decider_that_did_not_see_the_takeover_begin_waits_but_a_restart_in_place_does_not() {
        let t0 = Instant::now();
        let mut t = waiting_two_seconds();
        assert!(t.may_start_primary(t0));
        assert!(!t.may_promote(t0));
        assert!(t.may_promote(t0 + Duration::from_secs(2)));
        t.done();
        assert!(t.may_start_primary(t0));
    }
}
