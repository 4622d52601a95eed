//! A failed pg_rewind, and a data directory an interrupted one left damaged: wiped to be
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
