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
    // Another replica, even a better placed one, stays out while the candidate is there.
    let mut other = decider(3);
    let candidate_there = vec![fresh(peer_state(2, Role::Replica, 1000))];
    let mut o = obs(t, LockView::Free, standby(2000), candidate_there.clone());
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
    let mut o = obs(t, LockView::Free, standby(2000), candidate_there);
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

/// Found by the simulator (seed 15947 of `zgres-sim --switchovers`): the named candidate was
/// killed just before the hand-over; its `/state` outlived it until its session expired, so the
/// primary stepped down for it, and the others waited for it the whole request timeout with no
/// primary. Now the primary hands over only to a node streaming from it, and a candidate whose
/// `/state` is gone no longer holds the others back.
#[test]
fn a_switchover_never_waits_for_a_dead_candidate() {
    let t = Instant::now();
    let peers = vec![
        fresh(peer_state(2, Role::Replica, 900)),
        fresh(peer_state(3, Role::Replica, 950)),
    ];
    let mut primary_node = decider(1);
    let mut o = obs(t, LockView::Ours, primary(), peers.clone());
    o.switchover = Some(request(Some(2), None));
    // Who streams is not read yet: wait for it rather than guess.
    o.postgres.streaming = None;
    assert_eq!(primary_node.decide(&o), []);
    // Node 2 still has its `/state` but no longer streams: no hand-over to it.
    o.postgres.streaming = Some([node(3)].into_iter().collect());
    assert!(matches!(
        primary_node.decide(&o)[..],
        [Action::DropSwitchover { .. }]
    ));
    // Any candidate: the best one that streams, not the best one published.
    let mut better_but_gone = peers.clone();
    better_but_gone.push(fresh(peer_state(4, Role::Replica, 999)));
    let mut o = obs(t, LockView::Ours, primary(), better_but_gone);
    o.postgres.streaming = Some([node(2), node(3)].into_iter().collect());
    o.switchover = Some(request(None, None));
    assert_eq!(
        primary_node.decide(&o),
        [Action::StepDown { candidate: node(3) }]
    );

    // Handed over to node 2, which then died: once its `/state` is gone, node 3 contends at
    // once instead of after the request timeout.
    let mut other = decider(3);
    let mut o = obs(t, LockView::Free, standby(1000), vec![]);
    o.switchover = Some(request(Some(2), Some(1000)));
    assert!(other.decide(&o).contains(&Action::AcquireLock));
}

/// Found by the simulator (seed 12505, `on` mode): a failover request named a replica that
/// `/sync` did not list. While the lock was free it could never take over, and the request
/// kept every other node (the old primary, the only one allowed) out of the election until
/// it timed out: 65 s without a primary. The named node now drops such a request.
#[test]
fn a_request_naming_a_node_that_can_never_take_over_is_dropped_by_it() {
    let t = Instant::now();
    let mut failover = request(Some(1), None);
    failover.kind = SwitchoverKind::Failover;
    let mut o = obs(t, LockView::Free, standby(900), vec![]);
    o.switchover = Some(failover.clone());
    o.config.synchronous_mode = SyncMode::On;
    o.sync = sync_of_node_2(&[]);
    let mut named = decider(1);
    let actions = named.decide(&o);
    assert!(drops_request(&actions), "{actions:?}");
    assert!(!actions.contains(&Action::AcquireLock));
    assert_eq!(named.last_ineligible(), Some(Ineligible::NotSynchronous));

    // Listed in /sync it takes over as asked.
    o.sync = sync_of_node_2(&[1]);
    let mut listed = decider(1);
    assert!(listed.decide(&o).contains(&Action::AcquireLock));

    // A passing reason (a health plugin vetoes it for now) keeps the request.
    o.config.synchronous_mode = SyncMode::Off;
    o.vetoed = true;
    let mut vetoed = decider(1);
    let actions = vetoed.decide(&o);
    assert!(!drops_request(&actions), "{actions:?}");

    // A node the request does not name never drops it.
    o.vetoed = false;
    o.config.synchronous_mode = SyncMode::On;
    o.sync = sync_of_node_2(&[]);
    o.switchover = Some(Switchover {
        to: Some(node(3)),
        ..failover
    });
    let mut bystander = decider(1);
    let actions = bystander.decide(&o);
    assert!(!drops_request(&actions), "{actions:?}");
}

fn drops_request(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::DropSwitchover { .. }))
}

/// `/sync` as primary node 2 publishes it, listing `standbys`.
fn sync_of_node_2(standbys: &[u8]) -> Fetched<SyncState> {
    Fetched::Valid(SyncState {
        primary: node(2),
        standbys: standbys.iter().map(|&n| node(n)).collect(),
        quorum: None,
    })
}

fn restart_request() -> Fetched<NodeRequest> {
    Fetched::Valid(NodeRequest {
        action: NodeAction::Restart,
        requested_at_ms: 0,
        scheduled_at_ms: None,
        then: Vec::new(),
    })
}

#[test]
fn a_restart_request_restarts_in_the_same_role_and_a_primary_keeps_the_lock() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut o = obs(t, LockView::Ours, primary(), vec![]);
    o.node_request = restart_request();
    assert_eq!(
        d.decide(&o),
        [Action::RestartPostgres { primary: true }],
        "the lock is never released"
    );
    assert_eq!(
        d.decide(&o),
        [Action::FinishNodeRequest],
        "the request is deleted once the primary runs again"
    );
    let holder = holder_on_timeline_1();
    let following = standby_of(100, 2);
    let mut o = obs(
        t,
        LockView::Other(Some(node(2))),
        following,
        vec![fresh(holder)],
    );
    o.node_request = restart_request();
    assert_eq!(d.decide(&o), [Action::RestartPostgres { primary: false }]);
    assert_eq!(d.decide(&o), [Action::FinishNodeRequest]);
}

/// CI, cluster_parameters: a standby restarted for a lowered max_connections failed to start
/// (stale floors); its request was deleted at once, so `zgresctl restart` went on to the
/// primary while the replica was down. The request now stays until the node runs again.
#[test]
fn a_restarted_standby_that_is_not_back_keeps_its_request() {
    let t = Instant::now();
    let mut d = decider(1);
    let holder = holder_on_timeline_1();
    let peers = vec![fresh(holder)];
    let mut o = obs(t, LockView::Other(Some(node(2))), standby_of(100, 2), peers);
    o.node_request = restart_request();
    assert_eq!(d.decide(&o), [Action::RestartPostgres { primary: false }]);
    // Down after its start failed, then running but not yet receiving WAL: still pending.
    let mut down = o.clone();
    down.postgres.running = false;
    down.postgres.probe = None;
    let not_done = |actions: Vec<Action>| {
        !actions.iter().any(|a| {
            matches!(
                a,
                Action::FinishNodeRequest | Action::DropNodeRequest { .. }
            )
        })
    };
    assert!(not_done(d.decide(&down)), "finished while down");
    let mut catching_up = o.clone();
    if let Some(p) = catching_up.postgres.probe.as_mut() {
        p.receive_lsn = None;
    }
    assert!(
        not_done(d.decide(&catching_up)),
        "finished before receiving WAL"
    );
    assert_eq!(d.decide(&o), [Action::FinishNodeRequest]);
}

#[test]
fn a_restart_request_waits_for_other_work_and_a_confirmed_session() {
    let t = Instant::now();
    let mut d = decider(1);
    // Unconfirmed session: nothing, and the request stays.
    let mut o = obs(t, LockView::Unknown, primary(), vec![]);
    o.node_request = restart_request();
    assert_eq!(d.decide(&o), []);
    // A primary running without the lock is stopped; the request is not what is done first.
    let mut o = obs(t, LockView::Other(Some(node(2))), primary(), vec![]);
    o.node_request = restart_request();
    assert!(matches!(
        d.decide(&o)[..],
        [Action::StopPostgres {
            immediate: true,
            ..
        }]
    ));
}

#[test]
fn a_restart_request_with_nothing_to_restart_or_unreadable_is_dropped() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut o = obs(
        t,
        LockView::Other(Some(node(2))),
        stopped(DataDirKind::Empty),
        vec![],
    );
    o.node_request = restart_request();
    assert!(matches!(d.decide(&o)[..], [Action::DropNodeRequest { .. }]));
    let mut o = obs(t, LockView::Ours, primary(), vec![]);
    o.node_request = Fetched::Unreadable(
        zgres_schema::decode::<NodeRequest>("/zgres/request/main_x", b"{junk").unwrap_err(),
    );
    assert_eq!(
        d.decide(&o),
        [Action::DropNodeRequest {
            reason: "the request is unreadable"
        }]
    );
}

fn reinit_request() -> Fetched<NodeRequest> {
    Fetched::Valid(NodeRequest {
        action: NodeAction::Reinit,
        requested_at_ms: 0,
        scheduled_at_ms: None,
        then: Vec::new(),
    })
}

#[test]
fn a_reinit_in_a_paused_group_is_dropped_not_left_half_done() {
    let t = Instant::now();
    let mut d = decider(1);
    let following = standby_of(100, 2);
    let mut o = obs(
        t,
        LockView::Other(Some(node(2))),
        following,
        vec![fresh(peer_state(2, Role::Primary, 100))],
    );
    o.config.paused = true;
    o.node_request = reinit_request();
    assert!(matches!(
        d.decide(&o)[..],
        [Action::DropNodeRequest { reason }] if reason.contains("paused")
    ));
}

#[test]
fn a_reinit_never_wipes_the_primary() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut o = obs(t, LockView::Ours, primary(), vec![]);
    o.node_request = reinit_request();
    assert!(matches!(
        d.decide(&o)[..],
        [Action::DropNodeRequest { reason }] if reason.contains("primary")
    ));
}

/// A reinit wipes the replica, the usual rounds clone it from the primary and start it, and
/// only then is the request deleted (its deletion tells zgresctl the node is back).
#[test]
fn a_reinit_wipes_a_replica_and_is_done_once_it_streams_again() {
    let t = Instant::now();
    let mut d = decider(1);
    let holder = holder_on_timeline_1();
    let look = |d: &mut Decider, pg: LocalPostgres| {
        let mut o = obs(
            t,
            LockView::Other(Some(node(2))),
            pg,
            vec![fresh(holder.clone())],
        );
        o.node_request = reinit_request();
        d.decide(&o)
    };
    let following = standby_of(100, 2);
    assert_eq!(look(&mut d, following.clone()), [Action::WipeDataDirectory {
            reason: "reinit requested: stopping postgres and emptying its data directory to clone it again from the primary"
        }]);
    assert_eq!(
        look(&mut d, stopped(DataDirKind::Empty)),
        [Action::CloneFrom { source: node(2) }]
    );
    assert_eq!(
        look(&mut d, stopped(DataDirKind::Standby)),
        [Action::StartStandby {
            upstream: Some(node(2)),
            slot: false,
        }]
    );
    assert_eq!(look(&mut d, following), [Action::FinishNodeRequest]);
}

#[test]
fn a_scheduled_restart_waits_for_its_time_and_the_round_wakes_for_it() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut o = obs(t, LockView::Ours, primary(), vec![]);
    o.wall_ms = 1_000_000;
    o.node_request = Fetched::Valid(NodeRequest {
        action: NodeAction::Restart,
        requested_at_ms: 990_000,
        scheduled_at_ms: Some(1_060_000),
        then: Vec::new(),
    });
    let decision = d.decide_round(&o, RoundInputs::default());
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.wake_at, Some(t + Duration::from_secs(60)));
    o.wall_ms = 1_060_000;
    o.now = t + Duration::from_secs(60);
    assert_eq!(d.decide(&o), [Action::RestartPostgres { primary: true }]);
    assert_eq!(d.decide(&o), [Action::FinishNodeRequest]);
}
