//! The lock holder's and the followers' PostgreSQL: promotion, restarts, repointing,
//! bootstrap and clone.

use super::*;

#[test]
fn lock_holder_promotes_its_standby_and_restarts_a_crashed_primary_within_bound() {
    let t = Instant::now();
    let mut d = decider(1);
    assert_eq!(
        d.decide(&obs(t, LockView::Ours, standby(5), vec![])),
        [Action::Promote {
            reason: PromotionReason::Failover,
            wait_for_a_standby: false,
        }]
    );
    // In strict mode commits wait for a standby from the promotion on.
    let mut strict = obs(t, LockView::Ours, standby(5), vec![]);
    strict.config.synchronous_mode = zgres_schema::documents::SyncMode::Strict;
    assert_eq!(
        decider(1).decide(&strict),
        [Action::Promote {
            reason: PromotionReason::Failover,
            wait_for_a_standby: true,
        }]
    );
    assert_eq!(d.decide(&obs(t, LockView::Ours, primary(), vec![])), []);
    let down = stopped(DataDirKind::Primary);
    assert_eq!(
        d.decide(&obs(t, LockView::Ours, down.clone(), vec![])),
        [Action::StartPrimary]
    );
    assert_eq!(
        d.decide(&obs(
            t + Duration::from_secs(9),
            LockView::Ours,
            down.clone(),
            vec![]
        )),
        [Action::StartPrimary]
    );
    assert_eq!(
        d.decide(&obs(
            t + Duration::from_secs(10),
            LockView::Ours,
            down.clone(),
            vec![]
        )),
        [Action::ReleaseLock { quiet: true }]
    );
    // Having given up, it does not grab the lock straight back.
    let again = d.decide(&obs(
        t + Duration::from_secs(11),
        LockView::Free,
        down.clone(),
        vec![],
    ));
    assert!(!again.contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::GaveUp));
    // Found by the simulator (seeds 147, 195 and 1061 with PostgreSQL hangs): when nobody
    // else can take over (the others behind its timeline), a node that gave up kept the
    // group without a primary for good. After two election waits it contends again.
    let free = obs(
        t + Duration::from_secs(13),
        LockView::Free,
        down.clone(),
        vec![],
    );
    let round = d.decide_round(&free, RoundInputs::default());
    assert!(!round.actions.contains(&Action::AcquireLock));
    assert_eq!(round.wake_at, Some(t + Duration::from_secs(14)));
    let later = d.decide(&obs(
        t + Duration::from_secs(14),
        LockView::Free,
        down,
        vec![],
    ));
    assert!(later.contains(&Action::AcquireLock), "{later:?}");
}

#[test]
fn followers_start_and_repoint_to_the_lock_holder() {
    let t = Instant::now();
    let mut d = decider(1);
    assert_eq!(
        d.decide(&obs(
            t,
            LockView::Other(Some(node(2))),
            stopped(DataDirKind::Standby),
            vec![]
        )),
        [Action::StartStandby {
            upstream: Some(node(2)),
            slot: false,
        }]
    );
    // A former primary may have diverged: it waits for the holder to run as primary, then
    // rewinds to it before following.
    assert_eq!(
        d.decide(&obs(
            t,
            LockView::Other(Some(node(2))),
            stopped(DataDirKind::Primary),
            vec![fresh(peer_state(2, Role::Replica, 5))]
        )),
        []
    );
    assert_eq!(
        d.decide(&obs(
            t,
            LockView::Other(Some(node(2))),
            stopped(DataDirKind::Primary),
            vec![fresh(peer_state(2, Role::Primary, 5))]
        )),
        [Action::Rewind { source: node(2) }]
    );
    assert_eq!(
        d.decide(&obs(t, LockView::Other(Some(node(2))), standby(1), vec![])),
        [Action::Repoint {
            upstream: node(2),
            slot: false
        }]
    );
    let mut following = standby(1);
    following.probe.as_mut().unwrap().upstream = Some(node(2));
    assert_eq!(
        d.decide(&obs(t, LockView::Other(Some(node(2))), following, vec![])),
        []
    );
    // A garbage lock: someone holds it, nobody knows who. Do nothing.
    assert_eq!(
        d.decide(&obs(t, LockView::Other(None), standby(1), vec![])),
        []
    );
}

#[test]
fn first_node_of_a_new_group_adopts_its_stopped_primary() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut o = obs(t, LockView::Free, stopped(DataDirKind::Primary), vec![]);
    o.db_id = Fetched::Absent;
    let actions = d.decide(&o);
    assert!(actions.contains(&Action::AcquireLock), "{actions:?}");
}

#[test]
fn an_empty_group_is_bootstrapped_by_the_lock_holder_and_cloned_by_the_others() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut new_group = obs(t, LockView::Free, empty(), vec![]);
    new_group.db_id = Fetched::Absent;
    assert!(d.decide(&new_group).contains(&Action::AcquireLock));
    new_group.lock = LockView::Ours;
    assert_eq!(d.decide(&new_group), [Action::Bootstrap]);

    // A node with an empty directory never creates a second database for a group that has
    // one (or whose peers have data): it waits for a primary and clones it.
    let mut d = decider(3);
    let free = obs(t, LockView::Free, empty(), vec![]);
    assert!(!d.decide(&free).contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::NoData));
    let mut peer_has_data = obs(
        t,
        LockView::Free,
        empty(),
        vec![fresh(peer_state(2, Role::Stopped, 0))],
    );
    peer_has_data.db_id = Fetched::Absent;
    assert!(!d.decide(&peer_has_data).contains(&Action::AcquireLock));
    let mut ours = obs(t, LockView::Ours, empty(), vec![]);
    ours.db_id = Fetched::Valid(SYS);
    assert_eq!(d.decide(&ours), [Action::ReleaseLock { quiet: true }]);
    let following = |role| {
        obs(
            t,
            LockView::Other(Some(node(2))),
            empty(),
            vec![fresh(peer_state(2, role, 5))],
        )
    };
    assert_eq!(d.decide(&following(Role::Replica)), []);
    assert_eq!(
        d.decide(&following(Role::Primary)),
        [Action::CloneFrom { source: node(2) }]
    );
}

#[test]
fn the_core_says_when_a_restart_bound_runs_out() {
    let t = Instant::now();
    let mut d = decider(1);
    let down = obs(t, LockView::Ours, stopped(DataDirKind::Primary), vec![]);
    let decision = d.decide_round(&down, RoundInputs::default());
    assert_eq!(decision.actions, [Action::StartPrimary]);
    assert_eq!(decision.published.role, Role::Stopped);
    assert_eq!(decision.published.problems, ["postgres is not running"]);
    // The restart bound (10 s in these tests) is the next time-based decision.
    let wake = decision.wake_at.expect("a wake-up for the restart bound");
    assert!(wake > t && wake <= t + Duration::from_secs(10), "{wake:?}");
    let later = obs(wake, LockView::Ours, stopped(DataDirKind::Primary), vec![]);
    assert!(d
        .decide_round(&later, RoundInputs::default())
        .actions
        .contains(&Action::ReleaseLock { quiet: true }));
}

/// Found by the simulator (zgres-sim): a standby that received WAL on the old timeline past the
/// point where the promoted replica's timeline forked never followed the new primary.
#[test]
fn a_standby_stuck_behind_the_primarys_timeline_is_stopped_and_rewound() {
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
    // On timeline 1 at 150, not moving: left alone until STUCK_AFTER has passed.
    assert!(look(&mut d, t, following.clone()).is_empty());
    assert!(look(&mut d, t + STUCK_AFTER / 2, following.clone()).is_empty());
    let actions = look(&mut d, t + STUCK_AFTER, following);
    assert!(
        matches!(
            actions[..],
            [Action::StopPostgres {
                immediate: false,
                ..
            }]
        ),
        "{actions:?}"
    );
    // Stopped: rewound to the primary, not started as it was.
    let actions = look(&mut d, t + STUCK_AFTER, stopped(DataDirKind::Standby));
    assert_eq!(actions, [Action::Rewind { source: node(9) }]);
    // Rewound (standby.signal again): started as the primary's standby.
    let actions = look(&mut d, t + STUCK_AFTER, stopped(DataDirKind::Standby));
    assert_eq!(
        actions,
        [Action::StartStandby {
            upstream: Some(node(9)),
            slot: false,
        }]
    );
}

#[test]
fn a_lagging_standby_that_still_moves_is_never_stopped() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut primary_state = peer_state(9, Role::Primary, 1 << 30);
    primary_state.timeline = Some(tl(2));
    for i in 0..20u32 {
        let mut following = standby(1000 + u64::from(i));
        if let Some(p) = following.probe.as_mut() {
            p.upstream = Some(node(9));
        }
        let actions = d.decide(&obs(
            t + STUCK_AFTER * i,
            LockView::Other(Some(node(9))),
            following,
            vec![fresh(primary_state.clone())],
        ));
        assert!(actions.is_empty(), "{actions:?}");
    }
}

/// A standby on an older timeline with WAL past the point where the next timeline began (as
/// `/history` records it) can never follow: it is stopped at once, not after `STUCK_AFTER`.
#[test]
fn a_standby_the_history_shows_diverged_is_stopped_at_once() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut primary_state = peer_state(9, Role::Primary, 500);
    primary_state.timeline = Some(tl(2));
    let look = |d: &mut Decider, lsn: u64, fork: u64| {
        let following = standby_of(lsn, 9);
        let mut o = obs(
            t,
            LockView::Other(Some(node(9))),
            following,
            vec![fresh(primary_state.clone())],
        );
        o.timeline_starts = vec![
            TimelineStart {
                timeline: tl(1),
                lsn: Lsn(0),
            },
            TimelineStart {
                timeline: tl(2),
                lsn: Lsn(fork),
            },
        ];
        d.decide(&o)
    };
    assert!(
        look(&mut d, 150, 150).is_empty(),
        "at the fork point it follows the new timeline"
    );
    let actions = look(&mut d, 151, 150);
    assert!(
        matches!(
            actions[..],
            [Action::StopPostgres {
                immediate: false,
                reason
            }] if reason.contains("history")
        ),
        "{actions:?}"
    );
    assert_eq!(
        d.decide(&obs(
            t,
            LockView::Other(Some(node(9))),
            stopped(DataDirKind::Standby),
            vec![fresh(primary_state.clone())],
        )),
        [Action::Rewind { source: node(9) }]
    );
}

#[test]
fn an_empty_node_clones_from_a_healthy_clonefrom_replica_on_the_primarys_timeline() {
    let t = Instant::now();
    let mut d = decider(1);
    let tagged = |i: u8, lsn: u64| {
        let mut s = peer_state(i, Role::Replica, lsn);
        s.tags.clonefrom = true;
        s
    };
    let with = |replicas: Vec<NodeState>| {
        let mut peers = vec![fresh(peer_state(2, Role::Primary, 500))];
        peers.extend(replicas.into_iter().map(fresh));
        obs(t, LockView::Other(Some(node(2))), empty(), peers)
    };
    let source = |d: &mut Decider, o: &Observation| match d.decide(o).as_slice() {
        [Action::CloneFrom { source }] => *source,
        other => panic!("{other:?}"),
    };
    // No tagged replica: the primary.
    let untagged = with(vec![peer_state(3, Role::Replica, 400)]);
    assert_eq!(source(&mut d, &untagged), node(2));
    // The most advanced tagged one.
    let two = with(vec![tagged(3, 300), tagged(4, 400)]);
    assert_eq!(source(&mut d, &two), node(4));
    // Not an unhealthy one, nor one on another timeline: the primary then.
    let mut sick = tagged(3, 300);
    sick.problems = vec!["postgres does not answer".into()];
    let mut behind = tagged(4, 400);
    behind.timeline = Some(tl(2));
    assert_eq!(source(&mut d, &with(vec![sick, behind])), node(2));
}

#[test]
fn a_replicatefrom_standby_cascades_from_a_healthy_replica_of_the_primary_else_the_primary() {
    let t = Instant::now();
    let tags = Tags {
        replicatefrom: Some(zgres_schema::NodeName::new("n3").unwrap()),
        ..Tags::default()
    };
    let mut d = Decider::new(node(1), tags, Duration::from_secs(10), Duration::ZERO);
    let holder = peer_state(2, Role::Primary, 100);
    let middle = |upstream: u8, healthy: bool| {
        let mut s = peer_state(3, Role::Replica, 100);
        s.name = Some(zgres_schema::NodeName::new("n3").unwrap());
        s.upstream = Some(node(upstream));
        if !healthy {
            s.problems.push("postgres does not answer".into());
        }
        fresh(s)
    };
    let lock = LockView::Other(Some(node(2)));
    // Stopped standby: started following n3, which streams from the primary.
    let peers = vec![fresh(holder.clone()), middle(2, true)];
    let o = obs(t, lock, stopped(DataDirKind::Standby), peers.clone());
    assert_eq!(
        d.decide(&o),
        [Action::StartStandby {
            upstream: Some(node(3)),
            slot: false,
        }]
    );
    // Running from the primary: re-pointed to n3; running from n3: left alone.
    let o = obs(t, lock, standby_of(100, 2), peers.clone());
    assert_eq!(
        d.decide(&o),
        [Action::Repoint {
            upstream: node(3),
            slot: false
        }]
    );
    let o = obs(t, lock, standby_of(100, 3), peers);
    assert_eq!(d.decide(&o), []);
    // n3 unhealthy, gone, or itself cascading (no chains, so no loops): back to the primary.
    for peers in [
        vec![fresh(holder.clone()), middle(2, false)],
        vec![fresh(holder.clone())],
        vec![fresh(holder.clone()), middle(4, true)],
    ] {
        let o = obs(t, lock, standby_of(100, 3), peers);
        assert_eq!(
            d.decide(&o),
            [Action::Repoint {
                upstream: node(2),
                slot: false
            }]
        );
    }
}
