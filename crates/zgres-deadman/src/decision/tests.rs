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
        db_id: Some(SYS),
        config: GroupConfig::default(),
        peers,
        postgres,
        vetoed: false,
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
            stopped(DataDirKind::Primary),
            vec![]
        )),
        [Action::StartStandby {
            upstream: Some(node(2))
        }]
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
    o.db_id = None;
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
