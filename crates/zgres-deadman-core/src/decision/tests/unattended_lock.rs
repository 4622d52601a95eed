//! A lock left persistent at a paused shutdown: taken back by the node it names, paused or
//! not, when that node's PostgreSQL is (or was) the primary; never by a standby.

use super::*;

fn paused(mut o: Observation) -> Observation {
    o.config.paused = true;
    o
}

#[test]
fn the_primary_left_running_takes_its_lock_back_paused_or_not() {
    let now = Instant::now();
    for o in [
        obs(now, LockView::Unattended, primary(), vec![]),
        paused(obs(now, LockView::Unattended, primary(), vec![])),
    ] {
        assert_eq!(decider(1).decide(&o), vec![Action::ReclaimLock]);
    }
}

#[test]
fn a_stopped_primary_takes_its_lock_back() {
    let now = Instant::now();
    let o = obs(
        now,
        LockView::Unattended,
        stopped(DataDirKind::Primary),
        vec![],
    );
    assert_eq!(decider(1).decide(&o), vec![Action::ReclaimLock]);
}

#[test]
fn a_standby_never_takes_a_lock_left_naming_it() {
    let now = Instant::now();
    let o = obs(now, LockView::Unattended, standby(10), vec![]);
    let decision = decider(1).decide_round(&o, RoundInputs::default());
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert!(decision
        .published
        .problems
        .iter()
        .any(|p| p.contains("zgresctl unlock")));
    let empty = obs(
        now,
        LockView::Unattended,
        stopped(DataDirKind::Standby),
        vec![],
    );
    assert!(decider(1).decide(&empty).is_empty());
}

/// Regression (found by the paused-stop bench): a paused node logged "not contending for the
/// free lock why=Paused" while another node held the lock.
#[test]
fn a_reason_not_to_contend_is_given_only_while_the_lock_is_free() {
    let now = Instant::now();
    let held = paused(obs(
        now,
        LockView::Other(Some(node(2))),
        standby(10),
        vec![],
    ));
    let decision = decider(1).decide_round(&held, RoundInputs::default());
    assert_eq!(decision.ineligible, None);
    let free = paused(obs(now, LockView::Free, standby(10), vec![]));
    let decision = decider(1).decide_round(&free, RoundInputs::default());
    assert_eq!(decision.ineligible, Some(Ineligible::Paused));
}
