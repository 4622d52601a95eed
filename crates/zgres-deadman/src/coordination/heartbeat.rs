//! The fence's heartbeat: a request of its own only when nothing else confirmed the session.

use std::time::Duration;

use zgres_deadman_core::fence_deadline::{self, Heartbeat};
use zgres_zk::ZkSession;

use crate::fence::{monotonic_ns, SessionFence};

/// While `wanted`, confirms the session for the fence with a cheap request (timed from its
/// send) whenever nothing confirmed it for `stale_after`. Runs until the session ends, the
/// sender of `wanted` is dropped, or the task is dropped.
pub async fn heartbeat(
    session: ZkSession,
    path: String,
    fence: SessionFence,
    stale_after: Duration,
    mut wanted: tokio::sync::watch::Receiver<bool>,
) {
    // One timer, re-armed on each plan: a confirmation moves the moment the session turns
    // stale, and while pings keep it fresh the timer never expires. On a timerfd, unlike
    // tokio's wheel, a timer that is moved before it expires costs no wake-up at all.
    let mut stale = zgres_timer::Timer::new();
    loop {
        let sent = monotonic_ns();
        let plan = fence_deadline::heartbeat(
            sent,
            fence.clock().last_ok_ns(),
            stale_after,
            *wanted.borrow(),
        );
        let pause = match plan {
            Heartbeat::UntilWanted => {
                stale.unset();
                match wanted.wait_for(|w| *w).await {
                    Ok(_) => continue,
                    Err(_) => return,
                }
            }
            Heartbeat::Sleep(pause) => pause,
            Heartbeat::Send => match session.stat(&path).await {
                Ok(_) if fence.confirm(sent) => continue,
                // Armed for a session before this one: this one's answers prove nothing, and
                // the fence fires at the deadline that session left.
                Ok(_) => stale_after / 4,
                Err(e) if e.session_ended() => return,
                // Not answered in time: try again soon, without polling.
                Err(_) => stale_after / 4,
            },
        };
        stale.set_at(std::time::Instant::now() + pause);
        tokio::select! {
            () = stale.expired() => {}
            () = fence.clock().confirmed() => {}
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
