use std::collections::BTreeMap;

use proptest::prelude::*;
use zgres_schema::documents::WalPositions;

use super::*;

const SYS: SystemId = SystemId(7);

fn node(i: u8) -> NodeId {
    format!("10.0.0.{i}:5432").parse().unwrap()
}

fn tl(t: u32) -> Timeline {
    Timeline::new(t).unwrap()
}

fn decider(i: u8) -> Decider {
    Decider::new(
        node(i),
        Tags::default(),
        Duration::from_secs(10),
        Duration::from_secs(2),
    )
}

fn standby(lsn: u64) -> LocalPostgres {
    LocalPostgres {
        running: true,
        data_dir: DataDirKind::Standby,
        probe: Some(Probe {
            in_recovery: true,
            timeline: Some(tl(1)),
            system_id: SYS,
            write_lsn: None,
            receive_lsn: Some(Lsn(lsn)),
            replay_lsn: Some(Lsn(lsn)),
            upstream: None,
        }),
        control: None,
    }
}

fn primary() -> LocalPostgres {
    LocalPostgres {
        running: true,
        data_dir: DataDirKind::Primary,
        probe: Some(Probe {
            in_recovery: false,
            timeline: Some(tl(1)),
            system_id: SYS,
            write_lsn: Some(Lsn(1000)),
            receive_lsn: None,
            replay_lsn: None,
            upstream: None,
        }),
        control: None,
    }
}

fn stopped(kind: DataDirKind) -> LocalPostgres {
    LocalPostgres {
        running: false,
        data_dir: kind,
        probe: None,
        control: Some((tl(1), Lsn(0))),
    }
}

fn peer_state(i: u8, role: Role, lsn: u64) -> NodeState {
    NodeState {
        warnings: vec![],
        name: None,
        refresh_ms: None,
        node: node(i),
        role,
        problems: vec![],
        timeline: Some(tl(1)),
        system_id: Some(SYS),
        wal: match role {
            Role::Primary => WalPositions {
                write: Some(Lsn(lsn)),
                ..Default::default()
            },
            _ => WalPositions {
                receive: Some(Lsn(lsn)),
                replay: Some(Lsn(lsn)),
                write: None,
            },
        },
        tags: Tags::default(),
        meta: BTreeMap::new(),
        updated_at_ms: 0,
    }
}

fn obs(now: Instant, lock: LockView, postgres: LocalPostgres, peers: Vec<Peer>) -> Observation {
    Observation {
        now,
        lock,
        db_id: Fetched::Valid(SYS),
        config: GroupConfig::default(),
        peers,
        postgres,
        vetoed: false,
        group_timeline: None,
        switchover: None,
        wall_ms: 0,
        sync: Fetched::Absent,
    }
}

fn fresh(state: NodeState) -> Peer {
    Peer { state, fresh: true }
}

#[test]
fn the_most_advanced_replica_is_the_only_one_that_tries() {
    let t = Instant::now();
    let positions = [(1u8, 100u64), (2, 300), (3, 200)];
    let mut tried = vec![];
    for &(me, lsn) in &positions {
        let peers = positions
            .iter()
            .filter(|(i, _)| *i != me)
            .map(|&(i, l)| fresh(peer_state(i, Role::Replica, l)))
            .collect();
        let actions = decider(me).decide(&obs(t, LockView::Free, standby(lsn), peers));
        if actions.contains(&Action::AcquireLock) {
            tried.push(me);
        }
    }
    assert_eq!(tried, [2]);
}

#[test]
fn a_better_peer_is_waited_for_until_it_publishes_or_the_wait_ends() {
    let t = Instant::now();
    let mut d = decider(1);
    let stale = vec![Peer {
        state: peer_state(2, Role::Replica, 50),
        fresh: false,
    }];
    let first = d.decide(&obs(t, LockView::Free, standby(100), stale.clone()));
    assert_eq!(first, [Action::PublishState]);
    assert_eq!(d.last_ineligible(), Some(Ineligible::WaitingForPeers));
    let later = d.decide(&obs(
        t + Duration::from_secs(3),
        LockView::Free,
        standby(100),
        stale,
    ));
    assert_eq!(later, [Action::AcquireLock]);
}

#[test]
fn never_contends_when_tagged_nofailover_or_too_far_behind() {
    let t = Instant::now();
    let mut tagged = Decider::new(
        node(1),
        Tags {
            nofailover: true,
            ..Tags::default()
        },
        Duration::from_secs(10),
        Duration::ZERO,
    );
    let actions = tagged.decide(&obs(t, LockView::Free, standby(1 << 40), vec![]));
    assert!(!actions.contains(&Action::AcquireLock));

    // It saw the primary publish 10 MiB; it has 1 KiB; the limit is 1 MiB.
    let mut behind = decider(1);
    let primary_state = fresh(peer_state(9, Role::Primary, 10 << 20));
    behind.decide(&obs(
        t,
        LockView::Other(Some(node(9))),
        standby(1024),
        vec![primary_state],
    ));
    let actions = behind.decide(&obs(t, LockView::Free, standby(1024), vec![]));
    assert!(!actions.contains(&Action::AcquireLock));
    assert_eq!(behind.last_ineligible(), Some(Ineligible::TooFarBehind));
}

#[test]
fn a_vetoed_replica_never_contends() {
    let t = Instant::now();
    let mut o = obs(t, LockView::Free, standby(1 << 40), vec![]);
    o.vetoed = true;
    let mut d = decider(1);
    assert!(!d.decide(&o).contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::Vetoed));
}

#[test]
fn lock_holder_promotes_its_standby_and_restarts_a_crashed_primary_within_bound() {
    let t = Instant::now();
    let mut d = decider(1);
    assert_eq!(
        d.decide(&obs(t, LockView::Ours, standby(5), vec![])),
        [Action::Promote]
    );
    assert_eq!(d.decide(&obs(t, LockView::Ours, primary(), vec![])), []);
    let down = stopped(DataDirKind::Primary);
    assert_eq!(
        d.decide(&obs(t, LockView::Ours, down, vec![])),
        [Action::StartPrimary]
    );
    assert_eq!(
        d.decide(&obs(
            t + Duration::from_secs(9),
            LockView::Ours,
            down,
            vec![]
        )),
        [Action::StartPrimary]
    );
    assert_eq!(
        d.decide(&obs(
            t + Duration::from_secs(10),
            LockView::Ours,
            down,
            vec![]
        )),
        [Action::ReleaseLock]
    );
    // Having given up, it does not grab the lock straight back.
    let again = d.decide(&obs(
        t + Duration::from_secs(11),
        LockView::Free,
        down,
        vec![],
    ));
    assert!(!again.contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::GaveUp));
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
            upstream: Some(node(2))
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
        [Action::Repoint { upstream: node(2) }]
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

fn arb_lock() -> impl Strategy<Value = LockView> {
    prop_oneof![
        Just(LockView::Unknown),
        Just(LockView::Free),
        Just(LockView::Ours),
        (1u8..5).prop_map(|i| LockView::Other(Some(node(i)))),
        Just(LockView::Other(None)),
    ]
}

fn arb_postgres() -> impl Strategy<Value = LocalPostgres> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((any::<bool>(), 0u64..1000, proptest::option::of(1u8..5))),
    )
        .prop_map(|(running, standby_dir, probe)| LocalPostgres {
            running,
            data_dir: if standby_dir {
                DataDirKind::Standby
            } else {
                DataDirKind::Primary
            },
            probe: probe
                .filter(|_| running)
                .map(|(in_recovery, lsn, upstream)| Probe {
                    in_recovery,
                    timeline: Some(tl(1)),
                    system_id: SYS,
                    write_lsn: (!in_recovery).then_some(Lsn(lsn)),
                    receive_lsn: in_recovery.then_some(Lsn(lsn)),
                    replay_lsn: in_recovery.then_some(Lsn(lsn)),
                    upstream: upstream.map(node),
                }),
            control: Some((tl(1), Lsn(0))),
        })
}

fn arb_peers() -> impl Strategy<Value = Vec<Peer>> {
    proptest::collection::vec((2u8..6, 0u64..1000, any::<bool>(), any::<bool>()), 0..4).prop_map(
        |peers| {
            peers
                .into_iter()
                .map(|(i, lsn, is_primary, fresh)| Peer {
                    state: peer_state(
                        i,
                        if is_primary {
                            Role::Primary
                        } else {
                            Role::Replica
                        },
                        lsn,
                    ),
                    fresh,
                })
                .collect()
        },
    )
}

proptest! {
    /// Whatever happens, over any sequence of observations: no promotion or primary start
    /// without the lock, no contending for a held lock, and a primary without the lock is
    /// stopped at once.
    #[test]
    fn safety_rules_hold_for_any_observation_sequence(
        steps in proptest::collection::vec((arb_lock(), arb_postgres(), arb_peers(), 0u64..5000), 1..30)
    ) {
        let mut d = decider(1);
        let start = Instant::now();
        let mut elapsed = Duration::ZERO;
        for (lock, postgres, peers, advance_ms) in steps {
            elapsed += Duration::from_millis(advance_ms);
            let actions = d.decide(&obs(start + elapsed, lock, postgres, peers));
            let is_primary = postgres.running && postgres.probe.is_some_and(|p| !p.in_recovery);
            for action in &actions {
                match action {
                    Action::Promote | Action::StartPrimary => prop_assert_eq!(lock, LockView::Ours),
                    Action::AcquireLock => prop_assert_eq!(lock, LockView::Free),
                    Action::ReleaseLock => prop_assert_eq!(lock, LockView::Ours),
                    _ => {}
                }
            }
            if is_primary && matches!(lock, LockView::Free | LockView::Other(_)) {
                prop_assert!(
                    matches!(actions.as_slice(), [Action::StopPostgres { immediate: true, .. }]),
                    "primary without the lock must stop: {:?}", actions
                );
            }
            if lock == LockView::Unknown {
                prop_assert!(actions.is_empty());
            }
        }
    }

    /// Among replicas that all see each other's fresh positions, only those with the best
    /// (timeline, position, priority) try for the lock — and at least one does.
    #[test]
    fn only_the_best_replicas_contend(
        replicas in proptest::collection::btree_map(1u8..8, (1u32..3, 0u64..4, 0u32..3), 1..5)
    ) {
        let t = Instant::now();
        let state_of = |i: u8, (timeline, lsn, priority): (u32, u64, u32)| {
            let mut s = peer_state(i, Role::Replica, lsn);
            s.timeline = Some(tl(timeline));
            s.tags.priority = priority;
            s
        };
        let best = replicas.values().map(|&(t, l, p)| (Some(tl(t)), Lsn(l), p)).max().unwrap();
        let mut contenders = 0;
        for (&me, &(timeline, lsn, priority)) in &replicas {
            let peers = replicas.iter().filter(|(i, _)| **i != me)
                .map(|(&i, &v)| fresh(state_of(i, v))).collect();
            let mut pg = standby(lsn);
            pg.probe.as_mut().unwrap().timeline = Some(tl(timeline));
            let mut d = Decider::new(node(me), Tags { priority, ..Tags::default() },
                Duration::from_secs(10), Duration::from_secs(2));
            let tries = d.decide(&obs(t, LockView::Free, pg, peers)).contains(&Action::AcquireLock);
            prop_assert_eq!(tries, (Some(tl(timeline)), Lsn(lsn), priority) == best);
            contenders += usize::from(tries);
        }
        prop_assert!(contenders >= 1);
    }
}

fn empty() -> LocalPostgres {
    LocalPostgres {
        running: false,
        data_dir: DataDirKind::Empty,
        probe: None,
        control: None,
    }
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
    assert_eq!(d.decide(&ours), [Action::ReleaseLock]);
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
fn a_node_behind_the_groups_timeline_never_takes_the_lock() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut o = obs(t, LockView::Free, standby(500), vec![]);
    o.group_timeline = Some(tl(2));
    assert!(!d.decide(&o).contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::TimelineBehind));
    // A stopped former primary on the old timeline neither.
    let mut old_primary = obs(t, LockView::Free, stopped(DataDirKind::Primary), vec![]);
    old_primary.group_timeline = Some(tl(2));
    assert!(!d.decide(&old_primary).contains(&Action::AcquireLock));
    o.group_timeline = Some(tl(1));
    assert!(d.decide(&o).contains(&Action::AcquireLock));
}

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
fn in_synchronous_mode_only_listed_nodes_contend() {
    let t = Instant::now();
    let config = GroupConfig {
        synchronous_mode: zgres_schema::documents::SyncMode::On,
        ..GroupConfig::default()
    };
    let sync = SyncState {
        primary: node(9),
        standbys: [node(2)].into_iter().collect(),
    };
    // Node 1 has more WAL but is not synchronous: it stays out, and does not block node 2.
    let mut one = decider(1);
    let peers = vec![fresh(peer_state(2, Role::Replica, 500))];
    let mut o = obs(t, LockView::Free, standby(900), peers);
    o.config = config.clone();
    o.sync = Fetched::Valid(sync.clone());
    assert!(!one.decide(&o).contains(&Action::AcquireLock));
    assert_eq!(one.last_ineligible(), Some(Ineligible::NotSynchronous));
    let mut two = decider(2);
    let peers = vec![fresh(peer_state(1, Role::Replica, 900))];
    let mut o = obs(t, LockView::Free, standby(500), peers);
    o.config = config;
    o.sync = Fetched::Valid(sync);
    assert!(two.decide(&o).contains(&Action::AcquireLock));
}

#[test]
fn the_last_holder_is_known_even_before_it_published_a_position() {
    let mut d = decider(1);
    let o = obs(
        Instant::now(),
        LockView::Other(Some(node(2))),
        standby(100),
        vec![],
    );
    d.decide(&o);
    assert_eq!(d.last_primary_node(), Some(node(2)));
    assert_eq!(d.last_primary_position(), None);
}
