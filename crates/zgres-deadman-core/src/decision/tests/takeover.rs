//! A node that takes over a lock another session lost waits before it accepts writes; a
//! planned hand-over and a new group's bootstrap do not.

use super::*;

const WAIT: Duration = Duration::from_millis(2_100);

fn waiting_decider() -> Decider {
    decider(1).with_takeover_wait(WAIT)
}

fn hand_over(stopped_lsn: Option<u64>) -> Switchover {
    Switchover {
        kind: SwitchoverKind::Switchover,
        from: Some(node(2)),
        to: Some(node(1)),
        scheduled_at_ms: None,
        requested_at_ms: 0,
        stopped_lsn: stopped_lsn.map(Lsn),
    }
}

/// A waiting decider (node 1, a stopped primary's data directory, node 2 a replica) that saw
/// the lock free at `t0`.
fn saw_the_lock_free_as_a_stopped_primary(t0: Instant) -> (Decider, LocalPostgres, Vec<Peer>) {
    let mut d = waiting_decider();
    let peers = vec![fresh(peer_state(2, Role::Replica, 0))];
    let stopped_primary = stopped(DataDirKind::Primary);
    d.decide(&obs(
        t0,
        LockView::Free,
        stopped_primary.clone(),
        peers.clone(),
    ));
    (d, stopped_primary, peers)
}

#[test]
fn a_replica_that_took_over_an_expired_lock_promotes_only_after_the_takeover_wait() {
    let t0 = Instant::now();
    let mut d = waiting_decider();
    let free = d.decide_round(
        &obs(t0, LockView::Free, standby(100), vec![]),
        RoundInputs::default(),
    );
    assert!(free.actions.contains(&Action::AcquireLock));
    let t1 = t0 + Duration::from_millis(50);
    let held = d.decide_round(
        &obs(t1, LockView::Ours, standby(100), vec![]),
        RoundInputs::default(),
    );
    assert!(held.actions.is_empty(), "{:?}", held.actions);
    assert_eq!(
        held.wake_at,
        Some(t0 + WAIT),
        "the shell looks again when the wait ends"
    );
    assert!(held
        .published
        .warnings
        .contains(&WAITING_TO_PROMOTE.to_owned()));
    let due = d.decide_round(
        &obs(t0 + WAIT, LockView::Ours, standby(100), vec![]),
        RoundInputs::default(),
    );
    assert!(
        matches!(due.actions.as_slice(), [Action::Promote { .. }]),
        "{:?}",
        due.actions
    );
    assert!(!due
        .published
        .warnings
        .contains(&WAITING_TO_PROMOTE.to_owned()));
}

#[test]
fn a_stopped_primary_that_took_over_starts_only_after_the_wait_but_restarts_in_place_at_once() {
    let t0 = Instant::now();
    let (mut d, stopped_primary, peers) = saw_the_lock_free_as_a_stopped_primary(t0);
    let early = d.decide(&obs(
        t0 + WAIT / 2,
        LockView::Ours,
        stopped_primary.clone(),
        peers.clone(),
    ));
    assert!(early.is_empty(), "{early:?}");
    let due = d.decide(&obs(
        t0 + WAIT,
        LockView::Ours,
        stopped_primary.clone(),
        peers.clone(),
    ));
    assert_eq!(due, vec![Action::StartPrimary]);
    // Running as the primary, then PostgreSQL crashes: the lock was ours all along.
    let later = t0 + WAIT * 2;
    d.decide(&obs(later, LockView::Ours, primary(), peers.clone()));
    let crashed = d.decide(&obs(later, LockView::Ours, stopped_primary, peers));
    assert_eq!(crashed, vec![Action::StartPrimary]);
}

#[test]
fn a_switchover_candidate_promotes_at_once_but_a_failover_request_waits() {
    for (request, waits) in [
        (hand_over(Some(100)), false),
        (hand_over(None), true),
        (
            Switchover {
                kind: SwitchoverKind::Failover,
                ..hand_over(None)
            },
            true,
        ),
    ] {
        let t0 = Instant::now();
        let mut d = waiting_decider();
        let mut free = obs(t0, LockView::Free, standby(100), vec![]);
        free.switchover = Some(request.clone());
        assert!(d.decide(&free).contains(&Action::AcquireLock));
        let mut held = obs(t0, LockView::Ours, standby(100), vec![]);
        held.switchover = Some(request.clone());
        let promotes = matches!(d.decide(&held).as_slice(), [Action::Promote { .. }]);
        assert_eq!(promotes, !waits, "{request:?}");
    }
}

#[test]
fn a_deadman_that_did_not_see_the_takeover_begin_waits_from_its_first_look() {
    let t0 = Instant::now();
    let mut d = waiting_decider();
    assert!(d
        .decide(&obs(t0, LockView::Ours, standby(100), vec![]))
        .is_empty());
    let due = d.decide(&obs(t0 + WAIT, LockView::Ours, standby(100), vec![]));
    assert!(
        matches!(due.as_slice(), [Action::Promote { .. }]),
        "{due:?}"
    );
}

#[test]
fn a_new_groups_bootstrap_does_not_wait() {
    let t0 = Instant::now();
    let mut d = waiting_decider();
    let mut free = obs(t0, LockView::Free, empty(), vec![]);
    free.db_id = Fetched::Absent;
    assert!(d.decide(&free).contains(&Action::AcquireLock));
    let mut held = obs(t0, LockView::Ours, empty(), vec![]);
    held.db_id = Fetched::Absent;
    assert_eq!(d.decide(&held), vec![Action::Bootstrap]);
}

/// Found by the simulator (seed 19, `on` mode, paused stops): a pause during the takeover wait
/// used up the restart bound, and the node gave up on resume.
#[test]
fn a_pause_while_taking_over_does_not_use_up_the_restart_bound() {
    let t0 = Instant::now();
    let (mut d, stopped_primary, peers) = saw_the_lock_free_as_a_stopped_primary(t0);
    assert!(d
        .decide(&obs(
            t0,
            LockView::Ours,
            stopped_primary.clone(),
            peers.clone()
        ))
        .is_empty());
    // Paused for longer than the 10 s restart bound.
    let mut paused = obs(
        t0 + Duration::from_secs(1),
        LockView::Ours,
        stopped_primary.clone(),
        peers.clone(),
    );
    paused.config.paused = true;
    assert!(d.decide(&paused).is_empty());
    let resumed = d.decide(&obs(
        t0 + Duration::from_secs(20),
        LockView::Ours,
        stopped_primary,
        peers,
    ));
    assert_eq!(resumed, vec![Action::StartPrimary]);
}

/// The old primary's own timing counts (its fence margin, its session): a holder that
/// published a longer wait than this node's is waited for; a forged one only up to
/// [`MAX_PUBLISHED_WAIT`]; a shorter one changes nothing.
#[test]
fn the_holders_published_wait_is_honoured_when_longer_up_to_the_bound() {
    for (published, expected) in [
        (Some(5_000), Duration::from_secs(5)),
        (Some(u64::MAX), MAX_PUBLISHED_WAIT),
        (Some(100), WAIT),
        (None, WAIT),
    ] {
        let t0 = Instant::now();
        let mut d = waiting_decider();
        let mut holder = peer_state(2, Role::Primary, 100);
        holder.takeover_wait_ms = published;
        let following = obs(
            t0,
            LockView::Other(Some(node(2))),
            standby(100),
            vec![fresh(holder)],
        );
        d.decide(&following);
        // The holder's session expired: its state went with it.
        assert!(d
            .decide(&obs(t0, LockView::Free, standby(100), vec![]))
            .contains(&Action::AcquireLock));
        let held = d.decide_round(
            &obs(t0, LockView::Ours, standby(100), vec![]),
            RoundInputs::default(),
        );
        assert!(held.actions.is_empty(), "{published:?}: {:?}", held.actions);
        assert_eq!(held.wake_at, Some(t0 + expected), "{published:?}");
    }
}

/// Found by `fencing::a_primary_that_gives_up_its_lock_spares_the_next_the_takeover_wait`: a
/// stopped primary's data directory that took over the lock with a takeover wait longer than
/// its restart bound (ZooKeeper's defaults: 11.9 s against 10 s) gave the lock up before it
/// was allowed to start, so a cold-started group lost its former primary to the election
/// and waited twice. The bound runs from when it may start.
#[test]
fn a_stopped_primary_waiting_to_take_over_does_not_use_up_its_restart_bound() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut d = decider(1).with_takeover_wait(Duration::from_secs(20));
    let down = stopped(DataDirKind::Primary);
    d.decide(&obs(t0, LockView::Free, down.clone(), vec![]));
    assert_eq!(d.decide(&obs(t0, LockView::Ours, down.clone(), vec![])), []);
    assert_eq!(
        d.decide(&obs(at(15), LockView::Ours, down.clone(), vec![])),
        []
    );
    assert_eq!(
        d.decide(&obs(at(20), LockView::Ours, down.clone(), vec![])),
        [Action::StartPrimary]
    );
    // Its start fails: the bound runs from when it was allowed to start.
    assert_eq!(
        d.decide(&obs(at(29), LockView::Ours, down.clone(), vec![])),
        [Action::StartPrimary]
    );
    assert_eq!(
        d.decide(&obs(at(30), LockView::Ours, down, vec![])),
        [Action::ReleaseLock { quiet: true }]
    );
}
