//! Which ZooKeeper session may confirm the fence.
//!
//! The lock is an ephemeral of one session. Once the fence is armed, only the answers of the
//! session it was armed in prove that the lock is still ours: a new session, opened after the
//! old one expired, proves nothing about a lock that went with the old one. Before this, a
//! primary whose ZooKeeper member was cut from its leader kept its fence confirmed by the cut
//! member, learnt that its session had expired when the member dropped it, opened a new session
//! elsewhere — and that session's answers moved the deadline on. A PostgreSQL that did not
//! answer then (hung), which the rounds cannot tell is a primary, was never fenced, and took
//! writes beside the new primary once it thawed (seen in the simulator, `zgres-sim`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::FenceClock;

/// The session generations of one deadman: bumped for each new session (not for a resumed
/// one), and recorded when the fence is armed.
#[derive(Debug, Default)]
pub(super) struct SessionGenerations {
    current: AtomicU64,
    armed_in: AtomicU64,
}

impl SessionGenerations {
    /// The fence is being armed: from now on only the current session confirms it.
    pub(super) fn arming(&self) {
        self.armed_in
            .store(self.current.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Whether an answer of session `generation` may confirm the fence, `armed` or not.
    pub(super) fn may_confirm(&self, generation: u64, armed: bool) -> bool {
        !armed || self.armed_in.load(Ordering::SeqCst) == generation
    }
}

/// The fence as one ZooKeeper session confirms it: its answers move the deadline only while
/// the fence is disarmed or was armed in this session.
#[derive(Debug, Clone)]
pub struct SessionFence {
    clock: Arc<FenceClock>,
    generation: u64,
}

impl SessionFence {
    /// The fence for a session about to be opened: a new one (`resumed` false), or the
    /// session of the last one resumed.
    pub fn for_session(clock: Arc<FenceClock>, resumed: bool) -> SessionFence {
        let generations = &clock.sessions;
        let generation = if resumed {
            generations.current.load(Ordering::SeqCst)
        } else {
            generations.current.fetch_add(1, Ordering::SeqCst) + 1
        };
        SessionFence { clock, generation }
    }

    /// Records that a request of this session sent at `sent_ns` got a reply (see
    /// [`FenceClock::confirm`]); ignored while the fence is armed for another session.
    /// Returns whether it counted.
    pub fn confirm(&self, sent_ns: u64) -> bool {
        let generations = &self.clock.sessions;
        let counts = generations.may_confirm(self.generation, self.clock.is_armed());
        if counts {
            self.clock.confirm(sent_ns);
        }
        counts
    }

    /// The shared fence clock.
    pub fn clock(&self) -> &Arc<FenceClock> {
        &self.clock
    }
}
