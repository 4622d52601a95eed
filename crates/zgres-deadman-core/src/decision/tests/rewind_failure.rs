//! A failed pg_rewind, retried after an interval that grows up to a bound, and a data directory an interrupted one left damaged: wiped to be
//! cloned again only when `reclone_on_rewind_failure` allows it; a damaged directory is never
//! started, rewound or promoted, and says why.

use super::*;

fn allowing_reclone(on_rewind_failure: bool) -> Decider {
    let mut d = decider(1);
    d.set_reclone(Reclone {
        on_rewind_failure,
        ..Reclone::default()
    });
    d
}

/// Node 1 stopped with a data directory of `kind`; node 2 holds the lock as a healthy primary.
fn rejoining(at: Instant, kind: DataDirKind) -> Observation {
    obs(
        at,
        LockView::Other(Some(node(2))),
        stopped(kind),
        vec![fresh(peer_state(2, Role::Primary, 5))],
    )
}

#[test]
fn a_damaged_data_directory_is_left_alone_and_reported_unless_recloning_is_allowed() {
    let t = Instant::now();
    let mut d = allowing_reclone(false);
    d.rewind_failed(t);
    for at in [t, t + REWIND_RETRY * 10] {
        let decision = d.decide_round(&rejoining(at, DataDirKind::Damaged), RoundInputs::default());
        assert_eq!(decision.actions, [], "neither started nor rewound");
        assert_eq!(
            decision.published.problems,
            ["postgres is not running", DAMAGED_DATA_DIR],
            "one reason, not also 'retried'"
        );
    }
}

#[test]
fn a_damaged_data_directory_is_wiped_when_recloning_is_allowed() {
    let mut d = allowing_reclone(true);
    let actions = d.decide(&rejoining(Instant::now(), DataDirKind::Damaged));
    assert!(
        matches!(actions[..], [Action::WipeDataDirectory { .. }]),
        "{actions:?}"
    );
}

#[test]
fn a_failed_rewind_wipes_the_directory_next_only_when_recloning_is_allowed() {
    let t = Instant::now();
    let mut allowed = allowing_reclone(true);
    assert_eq!(
        allowed.decide(&rejoining(t, DataDirKind::Primary)),
        [Action::Rewind { source: node(2) }]
    );
    allowed.rewind_failed(t);
    let actions = allowed.decide(&rejoining(t, DataDirKind::Primary));
    assert!(
        matches!(actions[..], [Action::WipeDataDirectory { .. }]),
        "{actions:?}"
    );

    let mut not_allowed = allowing_reclone(false);
    assert_eq!(
        not_allowed.decide(&rejoining(t, DataDirKind::Primary)),
        [Action::Rewind { source: node(2) }]
    );
    not_allowed.rewind_failed(t);
    let decision =
        not_allowed.decide_round(&rejoining(t, DataDirKind::Primary), RoundInputs::default());
    assert_eq!(decision.actions, []);
    assert!(
        decision
            .published
            .problems
            .contains(&REWIND_FAILED.to_owned()),
        "says why it stays stopped: {:?}",
        decision.published.problems
    );
}

#[test]
fn a_damaged_node_never_takes_a_free_lock() {
    let t = Instant::now();
    let mut d = decider(1);
    let free = obs(t, LockView::Free, stopped(DataDirKind::Damaged), vec![]);
    let later = obs(
        t + Duration::from_secs(60),
        LockView::Free,
        stopped(DataDirKind::Damaged),
        vec![],
    );
    d.decide(&free);
    assert!(!d.decide(&later).contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::DataDirDamaged));
}

#[test]
fn a_lock_holder_whose_directory_is_damaged_releases_the_lock() {
    let mut d = decider(1);
    let holding = obs(
        Instant::now(),
        LockView::Ours,
        stopped(DataDirKind::Damaged),
        vec![],
    );
    assert_eq!(d.decide(&holding), [Action::ReleaseLock { quiet: true }]);
}

#[test]
fn a_failed_rewind_is_retried_only_after_the_retry_interval() {
    let t = Instant::now();
    let mut d = decider(1);
    let rejoin = |at: Instant| {
        obs(
            at,
            LockView::Other(Some(node(2))),
            stopped(DataDirKind::Primary),
            vec![fresh(peer_state(2, Role::Primary, 5))],
        )
    };
    assert_eq!(d.decide(&rejoin(t)), [Action::Rewind { source: node(2) }]);
    d.rewind_failed(t);
    assert_eq!(d.decide(&rejoin(t + REWIND_RETRY / 2)), []);
    assert_eq!(
        d.decide(&rejoin(t + REWIND_RETRY)),
        [Action::Rewind { source: node(2) }]
    );
}

/// A rewind that failed while node 2 held the lock is tried again at once when node 3 takes
/// over (the dead primary was likely why it failed), not after the pause; a failure against
/// the new primary waits longer, as failures in a row do.
#[test]
fn a_failed_rewind_is_tried_at_once_against_a_new_primary() {
    let t = Instant::now();
    let mut d = decider(1);
    let rejoin = |at: Instant, holder: u8| {
        obs(
            at,
            LockView::Other(Some(node(holder))),
            stopped(DataDirKind::Primary),
            vec![fresh(peer_state(holder, Role::Primary, 5))],
        )
    };
    assert_eq!(
        d.decide(&rejoin(t, 2)),
        [Action::Rewind { source: node(2) }]
    );
    d.rewind_failed(t);
    let soon = t + REWIND_RETRY / 2;
    assert_eq!(d.decide(&rejoin(soon, 2)), [], "the same primary: paused");
    assert_eq!(
        d.decide(&rejoin(soon, 3)),
        [Action::Rewind { source: node(3) }],
        "a new primary: at once"
    );
    d.rewind_failed(soon);
    let later = soon + rewind_retry_after(1);
    assert_eq!(
        d.decide(&rejoin(later, 3)),
        [],
        "the second failure waits longer"
    );
    assert_eq!(
        d.decide(&rejoin(soon + rewind_retry_after(2), 3)),
        [Action::Rewind { source: node(3) }]
    );
}

#[test]
fn the_core_says_when_a_failed_rewind_may_be_retried() {
    let t = Instant::now();
    let mut d = decider(1);
    d.rewind_failed(t);
    let rejoin = obs(
        t,
        LockView::Other(Some(node(2))),
        stopped(DataDirKind::Primary),
        vec![fresh(peer_state(2, Role::Primary, 5))],
    );
    let decision = d.decide_round(&rejoin, RoundInputs::default());
    assert!(decision.actions.is_empty());
    assert_eq!(decision.wake_at, Some(t + REWIND_RETRY));
}

/// Found by the simulator (seed 5616): a standby stopped to be rewound whose pg_rewind failed
/// (its link to the primary was cut) was started again as it was, still diverged, and was
/// caught only 10 s without progress later, a wait each primary change started over (26.6 s to
/// recover). It now stays stopped and the rewind is tried again after the retry wait.
#[test]
fn a_standby_whose_rewind_failed_stays_stopped_until_rewound() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut primary_state = peer_state(9, Role::Primary, 100);
    primary_state.timeline = Some(tl(2));
    let following = standby_of(150, 9);
    let look = |d: &mut Decider, at: Instant, pg: LocalPostgres| {
        d.decide(&obs(
            at,
            LockView::Other(Some(node(9))),
            pg,
            vec![fresh(primary_state.clone())],
        ))
    };
    assert!(look(&mut d, t, following.clone()).is_empty());
    let stop = look(&mut d, t + STUCK_AFTER, following);
    assert!(
        matches!(stop[..], [Action::StopPostgres { .. }]),
        "{stop:?}"
    );
    let stopped_standby = || stopped(DataDirKind::Standby);
    assert_eq!(
        look(&mut d, t + STUCK_AFTER, stopped_standby()),
        [Action::Rewind { source: node(9) }]
    );
    let failed = t + STUCK_AFTER;
    d.rewind_failed(failed);
    assert_eq!(
        look(&mut d, failed + REWIND_RETRY / 2, stopped_standby()),
        [],
        "neither started as it is nor rewound before the retry wait"
    );
    assert_eq!(
        look(&mut d, failed + REWIND_RETRY, stopped_standby()),
        [Action::Rewind { source: node(9) }]
    );
    // Rewound this time: started as the primary's standby.
    assert_eq!(
        look(&mut d, failed + REWIND_RETRY, stopped_standby()),
        [Action::StartStandby {
            upstream: Some(node(9)),
            slot: false,
        }]
    );
}

#[test]
fn failed_rewinds_in_a_row_wait_longer_up_to_a_bound() {
    assert_eq!(rewind_retry_after(1), REWIND_RETRY);
    assert!(rewind_retry_after(2) > rewind_retry_after(1));
    assert_eq!(rewind_retry_after(1_000), REWIND_RETRY_MAX);
    assert_eq!(rewind_retry_after(u32::MAX), REWIND_RETRY_MAX);
}
