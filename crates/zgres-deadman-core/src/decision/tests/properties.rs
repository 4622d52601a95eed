//! Safety properties over arbitrary observations.

use super::*;

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
        proptest::option::of(proptest::collection::btree_set(1u8..6, 0..4)),
        proptest::option::of(0u64..1000),
    )
        .prop_map(
            |(running, standby_dir, probe, streaming, recovering)| LocalPostgres {
                // Read by the shell only for a running server that does not answer.
                recovering_from: recovering.filter(|_| running && probe.is_none()).map(Lsn),
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
                        member_slot: false,
                        oldest_kept: None,
                        restores_from_archive: false,
                    }),
                control: Some((tl(1), Lsn(0))),
                streaming: streaming.map(|s| s.into_iter().map(node).collect()),
            },
        )
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

/// Mostly held by this node, so that restart bounds run out and the lock is released.
fn arb_lock_mostly_ours() -> impl Strategy<Value = LockView> {
    prop_oneof![
        1 => Just(LockView::Unknown),
        2 => Just(LockView::Free),
        8 => Just(LockView::Ours),
        1 => (1u8..5).prop_map(|i| LockView::Other(Some(node(i)))),
    ]
}

/// When the lock was first seen free in the election under way, as the properties follow it:
/// the moment a takeover's wait runs from.
#[derive(Default)]
struct Election {
    free_since: Option<Instant>,
}

impl Election {
    /// The lock seen as `lock` at `now`, with `postgres` as it was: when it was first seen free
    /// (`None` outside an election).
    fn observe(
        &mut self,
        lock: LockView,
        postgres: &LocalPostgres,
        now: Instant,
    ) -> Option<Instant> {
        let is_primary = postgres.running && postgres.probe.is_some_and(|p| !p.in_recovery);
        match lock {
            LockView::Free => {
                self.free_since.get_or_insert(now);
            }
            LockView::Other(_) => self.free_since = None,
            // Running as the primary with the lock: whatever came before is over.
            LockView::Ours if is_primary => self.free_since = None,
            _ => {}
        }
        self.free_since
    }
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
            let actions = d.decide(&obs(start + elapsed, lock, postgres.clone(), peers));
            let is_primary = postgres.running && postgres.probe.is_some_and(|p| !p.in_recovery);
            for action in &actions {
                match action {
                    Action::Promote { .. } | Action::StartPrimary => prop_assert_eq!(lock, LockView::Ours),
                    Action::AcquireLock => prop_assert_eq!(lock, LockView::Free),
                    Action::ReleaseLock { .. } => prop_assert_eq!(lock, LockView::Ours),
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

    /// A node that takes over a lock it saw free accepts writes (promotes or starts a
    /// primary) only once the takeover wait has passed since it first saw it free, over any
    /// sequence of observations (no hand-over, the group has a database).
    #[test]
    fn a_takeover_never_accepts_writes_before_the_wait(
        steps in proptest::collection::vec((arb_lock(), arb_postgres(), arb_peers(), 0u64..3000), 1..30)
    ) {
        let wait = Duration::from_millis(2_100);
        let mut d = decider(1).with_takeover_wait(wait);
        let start = Instant::now();
        let mut elapsed = Duration::ZERO;
        let mut election = Election::default();
        for (lock, postgres, peers, advance_ms) in steps {
            elapsed += Duration::from_millis(advance_ms);
            let now = start + elapsed;
            let free_since = election.observe(lock, &postgres, now);
            let actions = d.decide(&obs(now, lock, postgres, peers));
            if actions.iter().any(|a| matches!(a, Action::Promote { .. } | Action::StartPrimary)) {
                if let Some(since) = free_since {
                    prop_assert!(now >= since + wait, "accepted writes {:?} after the lock was seen free", now - since);
                }
            }
        }
    }

    /// Among replicas that all see each other's fresh positions, only those with the best
    /// (timeline, position, priority) try for the lock — and at least one does, unless every
    /// replica has priority 0 (never promoted), which never tries.
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
        let best = replicas.values().filter(|&&(_, _, p)| p > 0)
            .map(|&(t, l, p)| (Some(tl(t)), Lsn(l), p)).max();
        let mut contenders = 0;
        for (&me, &(timeline, lsn, priority)) in &replicas {
            let peers = replicas.iter().filter(|(i, _)| **i != me)
                .map(|(&i, &v)| fresh(state_of(i, v))).collect();
            let mut pg = standby(lsn);
            pg.probe.as_mut().unwrap().timeline = Some(tl(timeline));
            let mut d = Decider::new(node(me), Tags { priority, ..Tags::default() },
                Duration::from_secs(10), Duration::from_secs(2));
            let tries = d.decide(&obs(t, LockView::Free, pg, peers)).contains(&Action::AcquireLock);
            prop_assert_eq!(tries, Some((Some(tl(timeline)), Lsn(lsn), priority)) == best);
            contenders += usize::from(tries);
        }
        prop_assert_eq!(contenders >= 1, best.is_some());
    }

    /// A round's decision as a whole: the fence is never disarmed while PostgreSQL may still
    /// accept writes (it runs, or the lock is ours); the group's database is recorded exactly
    /// when the lock holder runs as a primary of a group with none, after every other action;
    /// only healthy replicas without `nosync` may become synchronous standbys.
    #[test]
    fn round_decisions_keep_the_fence_records_and_sync_set_right(
        lock in arb_lock(),
        postgres in arb_postgres(),
        mut peers in arb_peers(),
        recorded in any::<bool>(),
        sick_or_nosync in proptest::collection::vec((any::<bool>(), any::<bool>()), 4),
    ) {
        for (peer, (sick, nosync)) in peers.iter_mut().zip(sick_or_nosync) {
            if sick {
                peer.state.problems.push("not streaming".into());
            }
            peer.state.tags.nosync = nosync;
        }
        let mut o = obs(Instant::now(), lock, postgres.clone(), peers.clone());
        if !recorded {
            o.db_id = Fetched::Absent;
        }
        let decision = decider(1).decide_round(&o, RoundInputs::default());
        if decision.disarm_fence {
            prop_assert!(!postgres.running && lock != LockView::Ours);
        }
        let running_primary = postgres.running && postgres.probe.is_some_and(|p| !p.in_recovery);
        let records: Vec<_> = decision.actions.iter().enumerate()
            .filter(|(_, a)| matches!(a, Action::RecordDatabase { .. })).map(|(i, _)| i).collect();
        if lock == LockView::Ours && running_primary && !recorded {
            prop_assert_eq!(records, vec![decision.actions.len() - 1]);
        } else {
            prop_assert!(records.is_empty());
        }
        let may_be_synchronous = |p: &Peer| {
            p.state.is_healthy() && p.state.role == Role::Replica && !p.state.tags.nosync
        };
        let expected: std::collections::BTreeSet<_> =
            peers.iter().filter(|p| may_be_synchronous(p)).map(|p| p.state.node).collect();
        prop_assert_eq!(decision.sync_eligible, expected);
    }

    /// A quiet release (whoever takes the lock next will not wait) comes only when nobody can
    /// be writing under the lock: this node's PostgreSQL is down, killed by the action just
    /// before or a standby, and the node is not within its own takeover wait (the primary
    /// before it may still be writing), over any sequence of observations, with promotions
    /// vetoed by the `pre_promote` callback at random.
    #[test]
    fn a_quiet_release_never_leaves_a_writer_behind(
        steps in proptest::collection::vec((arb_lock_mostly_ours(), arb_postgres(), arb_peers(), 0u64..6000, any::<bool>()), 1..60)
    ) {
        let wait = Duration::from_millis(12_000);
        let mut d = decider(1).with_takeover_wait(wait);
        let start = Instant::now();
        let mut elapsed = Duration::ZERO;
        let mut election = Election::default();
        for (lock, postgres, peers, advance_ms, veto) in steps {
            elapsed += Duration::from_millis(advance_ms);
            let now = start + elapsed;
            let free_since = election.observe(lock, &postgres, now);
            let actions = d.decide(&obs(now, lock, postgres.clone(), peers));
            if veto && actions.iter().any(|a| matches!(a, Action::Promote { .. })) {
                d.promotion_vetoed(now);
            }
            for (i, action) in actions.iter().enumerate() {
                if *action != (Action::ReleaseLock { quiet: true }) {
                    continue;
                }
                let killed_first = actions[..i]
                    .iter()
                    .any(|a| matches!(a, Action::StopPostgres { immediate: true, .. }));
                let standby = postgres.probe.is_some_and(|p| p.in_recovery);
                prop_assert!(!postgres.running || killed_first || standby, "{:?} with {:?}", actions, postgres);
                if let Some(since) = free_since {
                    prop_assert!(now >= since + wait, "released quietly {:?} after the lock was seen free", now - since);
                }
            }
        }
    }
}
