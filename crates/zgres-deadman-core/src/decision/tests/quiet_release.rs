//! A lock released with nobody writing under it (`ReleaseLock { quiet: true }`): the next
//! holder promotes without the takeover wait; a holder still in its own takeover wait never
//! releases quietly.

use super::*;

/// Longer than the 10 s restart bound of these tests, so a holder can give up within it.
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_lock_released_quietly_is_taken_over_without_the_takeover_wait() {
    for quiet in [true, false] {
        let t0 = Instant::now();
        let mut d = decider(1).with_takeover_wait(WAIT);
        let holder = vec![fresh(peer_state(2, Role::Primary, 100))];
        d.decide(&obs(
            t0,
            LockView::Other(Some(node(2))),
            standby(100),
            holder,
        ));
        let mut free = obs(t0, LockView::Free, standby(100), vec![]);
        free.quiet_release = quiet;
        assert!(d.decide(&free).contains(&Action::AcquireLock));
        let held = d.decide_round(
            &obs(t0, LockView::Ours, standby(100), vec![]),
            RoundInputs::default(),
        );
        if quiet {
            assert!(
                matches!(held.actions.as_slice(), [Action::Promote { .. }]),
                "{:?}",
                held.actions
            );
        } else {
            assert_eq!(held.actions, [], "an expired lock is waited for");
            assert_eq!(held.wake_at, Some(t0 + WAIT));
        }
    }
}

/// A standby that took over an expired lock and stops answering gives the lock up after its
/// restart bound, before its takeover wait is over: the old primary may still be writing, so
/// the next holder must wait too.
#[test]
fn a_holder_still_in_its_takeover_wait_releases_the_lock_plainly() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut d = decider(1).with_takeover_wait(WAIT);
    d.decide(&obs(t0, LockView::Free, standby(100), vec![]));
    assert_eq!(d.decide(&obs(t0, LockView::Ours, standby(100), vec![])), []);
    let hung = LocalPostgres {
        probe: None,
        ..standby(100)
    };
    assert_eq!(
        d.decide(&obs(at(9), LockView::Ours, hung.clone(), vec![])),
        []
    );
    assert_eq!(
        d.decide(&obs(at(10), LockView::Ours, hung, vec![])),
        [
            Action::StopPostgres {
                immediate: true,
                reason: "primary did not come back within the restart timeout",
            },
            Action::ReleaseLock { quiet: false },
        ]
    );
}

/// Once its takeover wait is over (it started as the primary), a holder that gives up —
/// killing its hung PostgreSQL first — releases quietly.
#[test]
fn a_primary_past_its_takeover_wait_that_gives_up_releases_quietly() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut d = decider(1).with_takeover_wait(WAIT);
    let down = stopped(DataDirKind::Primary);
    d.decide(&obs(t0, LockView::Free, down.clone(), vec![]));
    assert_eq!(
        d.decide(&obs(at(20), LockView::Ours, down, vec![])),
        [Action::StartPrimary]
    );
    assert_eq!(
        d.decide(&obs(at(21), LockView::Ours, primary(), vec![])),
        []
    );
    let hung = LocalPostgres {
        probe: None,
        ..primary()
    };
    assert_eq!(
        d.decide(&obs(at(31), LockView::Ours, hung, vec![])),
        [
            Action::StopPostgres {
                immediate: true,
                reason: "primary did not come back within the restart timeout",
            },
            Action::ReleaseLock { quiet: true },
        ]
    );
}
