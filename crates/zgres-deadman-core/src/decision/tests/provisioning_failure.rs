//! A bootstrap or a clone that failed is tried again after a pause that doubles with each
//! failure in a row, not every round.

use super::*;

/// A failed bootstrap gives the lock up (quietly: nothing ran) and is tried again only after
/// a pause that doubles with each failure in a row, so a setting initdb rejects does not run
/// it, and take and give up the lock in ZooKeeper, many times a second.
#[test]
fn a_failed_bootstrap_gives_the_lock_up_and_is_tried_again_after_a_growing_pause() {
    let t0 = Instant::now();
    let mut d = decider(1);
    let new_group = |at, lock| {
        let mut o = obs(at, lock, empty(), vec![]);
        o.db_id = Fetched::Absent;
        o
    };
    assert_eq!(
        d.decide(&new_group(t0, LockView::Ours)),
        [Action::Bootstrap]
    );
    assert_eq!(d.bootstrap_failed(t0), BOOTSTRAP_RETRY);
    assert_eq!(
        d.decide(&new_group(t0, LockView::Ours)),
        [Action::ReleaseLock { quiet: true }]
    );
    let waiting = d.decide_round(&new_group(t0, LockView::Free), RoundInputs::default());
    assert!(!waiting.actions.contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::BootstrapFailed));
    assert!(
        waiting.wake_at.is_some_and(|at| at <= t0 + BOOTSTRAP_RETRY),
        "the loop looks again when the pause is over: {:?}",
        waiting.wake_at
    );
    let just_before = t0 + BOOTSTRAP_RETRY - Duration::from_millis(1);
    assert!(!d
        .decide(&new_group(just_before, LockView::Free))
        .contains(&Action::AcquireLock));

    let t1 = t0 + BOOTSTRAP_RETRY;
    assert!(d
        .decide(&new_group(t1, LockView::Free))
        .contains(&Action::AcquireLock));
    assert_eq!(
        d.decide(&new_group(t1, LockView::Ours)),
        [Action::Bootstrap]
    );
    assert_eq!(d.bootstrap_failed(t1), BOOTSTRAP_RETRY * 2);
    let half_way = t1 + BOOTSTRAP_RETRY;
    assert!(!d
        .decide(&new_group(half_way, LockView::Free))
        .contains(&Action::AcquireLock));

    // A success starts the count again.
    let t2 = t1 + BOOTSTRAP_RETRY * 2;
    d.decide(&obs(t2, LockView::Ours, primary(), vec![]));
    assert_eq!(d.bootstrap_failed(t2), BOOTSTRAP_RETRY);
}

/// A clone that failed (this node's disk full, the primary's pg_hba refusing it) is tried
/// again after a pause that doubles with each failure in a row, not every round: each attempt
/// may stream much of the database from the primary before it fails.
#[test]
fn a_failed_clone_is_tried_again_after_a_growing_pause() {
    let t0 = Instant::now();
    let mut d = decider(3);
    let following = |at| {
        let mut o = obs(
            at,
            LockView::Other(Some(node(2))),
            empty(),
            vec![fresh(peer_state(2, Role::Primary, 5))],
        );
        o.db_id = Fetched::Valid(SYS);
        o
    };
    let clone = [Action::CloneFrom { source: node(2) }];
    assert_eq!(d.decide(&following(t0)), clone);
    assert_eq!(d.clone_failed(t0), CLONE_RETRY);
    let paused = d.decide_round(&following(t0), RoundInputs::default());
    assert_eq!(paused.actions, []);
    assert_eq!(paused.wake_at, Some(t0 + CLONE_RETRY));
    let t1 = t0 + CLONE_RETRY;
    assert_eq!(d.decide(&following(t1)), clone);
    assert_eq!(d.clone_failed(t1), CLONE_RETRY * 2);
    assert_eq!(d.decide(&following(t1 + CLONE_RETRY)), []);
    assert_eq!(d.decide(&following(t1 + CLONE_RETRY * 2)), clone);
}

/// A clone that failed while node 2 held the lock is tried at once when node 4 takes over:
/// the pause, up to a minute after failures in a row, would keep a new replica waiting on a
/// primary that is gone.
#[test]
fn a_failed_clone_is_tried_at_once_under_a_new_primary() {
    let t0 = Instant::now();
    let mut d = decider(3);
    let following = |at, holder: u8| {
        let mut o = obs(
            at,
            LockView::Other(Some(node(holder))),
            empty(),
            vec![fresh(peer_state(holder, Role::Primary, 5))],
        );
        o.db_id = Fetched::Valid(SYS);
        o
    };
    assert_eq!(
        d.decide(&following(t0, 2)),
        [Action::CloneFrom { source: node(2) }]
    );
    assert_eq!(d.clone_failed(t0), CLONE_RETRY);
    let soon = t0 + CLONE_RETRY / 2;
    assert_eq!(d.decide(&following(soon, 2)), []);
    assert_eq!(
        d.decide(&following(soon, 4)),
        [Action::CloneFrom { source: node(4) }]
    );
    assert_eq!(
        d.clone_failed(soon),
        CLONE_RETRY * 2,
        "failures still count"
    );
    assert_eq!(d.decide(&following(soon + CLONE_RETRY, 4)), []);
}

#[test]
fn bootstrap_retries_double_up_to_a_minute() {
    let waits: Vec<u64> = (1..=6)
        .map(|n| bootstrap_retry_after(n).as_secs())
        .collect();
    assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    assert_eq!(bootstrap_retry_after(u32::MAX), BOOTSTRAP_RETRY_MAX);
}
