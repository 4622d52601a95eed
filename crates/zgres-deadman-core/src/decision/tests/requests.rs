//! Operators' requests: switchovers, hand-overs, pauses.

use super::*;

fn request(to: Option<u8>, stopped_lsn: Option<u64>) -> Switchover {
    Switchover {
        kind: SwitchoverKind::Switchover,
        from: None,
        to: to.map(node),
        scheduled_at_ms: None,
        requested_at_ms: 0,
        stopped_lsn: stopped_lsn.map(Lsn),
    }
}

#[test]
fn a_switchover_steps_down_for_the_named_or_best_replica() {
    let t = Instant::now();
    let mut d = decider(1);
    let peers = vec![
        fresh(peer_state(2, Role::Replica, 900)),
        fresh(peer_state(3, Role::Replica, 950)),
    ];
    let mut o = obs(t, LockView::Ours, primary(), peers);
    assert_eq!(d.decide(&o), []);
    o.switchover = Some(request(Some(2), None));
    assert_eq!(d.decide(&o), [Action::StepDown { candidate: node(2) }]);
    o.switchover = Some(request(None, None));
    assert_eq!(d.decide(&o), [Action::StepDown { candidate: node(3) }]);
    // Not before the scheduled time.
    let mut scheduled = request(None, None);
    scheduled.scheduled_at_ms = Some(10_000);
    o.switchover = Some(scheduled);
    o.wall_ms = 9_999;
    assert_eq!(d.decide(&o), []);
    o.wall_ms = 10_000;
    assert_eq!(d.decide(&o), [Action::StepDown { candidate: node(3) }]);
    // A candidate that is not a healthy replica: the request is dropped, nothing stops.
    o.switchover = Some(request(Some(9), None));
    assert!(matches!(d.decide(&o)[..], [Action::DropSwitchover { .. }]));
    let mut other = request(Some(2), None);
    other.from = Some(node(3));
    o.switchover = Some(other);
    assert!(matches!(d.decide(&o)[..], [Action::DropSwitchover { .. }]));
    // Once handed over (the stop position is recorded), the new holder finishes it.
    o.switchover = Some(request(Some(1), Some(1000)));
    assert_eq!(d.decide(&o), [Action::FinishSwitchover]);
}

#[test]
fn during_a_hand_over_only_the_caught_up_candidate_contends() {
    let t = Instant::now();
    let handing_over = Some(request(Some(2), Some(1000)));
    // Another replica, even a better placed one, stays out.
    let mut other = decider(3);
    let mut o = obs(t, LockView::Free, standby(2000), vec![]);
    o.switchover = handing_over.clone();
    assert!(!other.decide(&o).contains(&Action::AcquireLock));
    assert_eq!(
        other.last_ineligible(),
        Some(Ineligible::RequestNamesOther(node(2)))
    );
    // The candidate waits until it has everything up to the stop position, whatever peers
    // say.
    let mut candidate = decider(2);
    let peers = vec![fresh(peer_state(3, Role::Replica, 5000))];
    let mut o = obs(t, LockView::Free, standby(999), peers.clone());
    o.switchover = handing_over.clone();
    assert!(!candidate.decide(&o).contains(&Action::AcquireLock));
    assert_eq!(candidate.last_ineligible(), Some(Ineligible::CatchingUp));
    let mut o = obs(t, LockView::Free, standby(1000), peers);
    o.switchover = handing_over.clone();
    assert!(candidate.decide(&o).contains(&Action::AcquireLock));
    // A hand-over that never completes stops steering elections after the timeout.
    let mut o = obs(t, LockView::Free, standby(2000), vec![]);
    o.switchover = handing_over.clone();
    other.decide(&o);
    o.now = t + DEFAULT_REQUEST_TIMEOUT + Duration::from_secs(1);
    assert!(other.decide(&o).contains(&Action::AcquireLock));
}

#[test]
fn paused_groups_take_no_automatic_action() {
    let t = Instant::now();
    let mut d = decider(1);
    let paused = GroupConfig {
        paused: true,
        ..GroupConfig::default()
    };
    let cases = [
        (LockView::Ours, stopped(DataDirKind::Primary)),
        (LockView::Ours, standby(10)),
        (LockView::Free, standby(10)),
        (LockView::Free, stopped(DataDirKind::Standby)),
        (
            LockView::Other(Some(node(2))),
            stopped(DataDirKind::Primary),
        ),
        (LockView::Other(Some(node(2))), standby(10)),
        (LockView::Free, empty()),
    ];
    for (i, (lock, pg)) in cases.into_iter().enumerate() {
        let mut o = obs(t + Duration::from_secs(60 * i as u64), lock, pg, vec![]);
        o.config = paused.clone();
        o.switchover = Some(request(Some(2), None));
        assert_eq!(d.decide(&o), [], "case {i}: {lock:?}");
    }
    // Safety still holds: a running primary does not run beside another lock holder, and a
    // running primary whose lock vanished takes it back instead of waiting for an election.
    let mut o = obs(t, LockView::Other(Some(node(2))), primary(), vec![]);
    o.config = paused.clone();
    assert!(matches!(d.decide(&o)[..], [Action::StopPostgres { .. }]));
    o.lock = LockView::Free;
    assert_eq!(d.decide(&o), [Action::AcquireLock]);
}

#[test]
fn a_scheduled_switchover_wakes_the_primary_at_its_time() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut o = obs(
        t,
        LockView::Ours,
        primary(),
        vec![fresh(peer_state(2, Role::Replica, 900))],
    );
    o.wall_ms = 1_000_000;
    let mut scheduled = request(Some(2), None);
    scheduled.scheduled_at_ms = Some(1_001_500);
    o.switchover = Some(scheduled);
    let decision = d.decide_round(&o, RoundInputs::default());
    assert!(decision.actions.is_empty());
    assert_eq!(decision.wake_at, Some(t + Duration::from_millis(1_500)));
    o.now = t + Duration::from_millis(1_500);
    o.wall_ms = 1_001_500;
    assert_eq!(
        d.decide_round(&o, RoundInputs::default()).actions,
        [Action::StepDown { candidate: node(2) }]
    );
}
