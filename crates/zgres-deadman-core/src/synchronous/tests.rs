use super::*;
use zgres_schema::Fetched;

fn node(i: u8) -> NodeId {
    format!("10.0.0.{i}:5432").parse().unwrap()
}

fn set(nodes: &[u8]) -> BTreeSet<NodeId> {
    nodes.iter().copied().map(node).collect()
}

const ME: u8 = 1;

fn claim(nodes: &[u8], holders: usize) -> Claim {
    Claim {
        standbys: set(nodes),
        holders,
    }
}

fn doc(c: &Claim) -> Option<SyncState> {
    Some(c.document(node(ME)))
}

fn inputs(
    mode: SyncMode,
    published: Option<Claim>,
    names: &str,
    connected: &[Connected],
) -> SyncInputs {
    SyncInputs {
        mode,
        acknowledgers: Acknowledgers::default(),
        me: node(ME),
        published: published.as_ref().and_then(doc),
        standby_names: names.to_owned(),
        connected: connected.to_vec(),
        allowed: set(&[2, 3, 4]),
        progress: None,
    }
}

fn streaming(i: u8, synchronous: bool, flush: u64) -> Connected {
    Connected {
        node: node(i),
        streaming: true,
        synchronous,
        flush: Some(Lsn(flush)),
    }
}

/// A keeper that wrote `/sync` this term.
fn owning_keeper() -> SyncKeeper {
    let mut keeper = SyncKeeper::default();
    keeper.done(&SyncStep::Publish(Claim::nothing()));
    keeper
}

#[test]
fn a_standby_joins_sync_only_after_it_waits_for_it_and_caught_up() {
    let mut keeper = SyncKeeper::default();
    // A new primary first claims nothing.
    let mut i = inputs(SyncMode::On, None, "", &[streaming(2, false, 100)]);
    assert_eq!(keeper.step(&i), Some(SyncStep::Publish(Claim::nothing())));
    keeper.done(&SyncStep::Publish(Claim::nothing()));
    i.published = doc(&Claim::nothing());
    // Widened before the setting names it: listed, but as holding nothing yet.
    assert_eq!(keeper.step(&i), Some(SyncStep::Publish(claim(&[2], 0))));
    i.published = doc(&claim(&[2], 0));
    assert_eq!(
        keeper.step(&i),
        Some(SyncStep::SetStandbyNames(standby_name(node(2))))
    );
    i.standby_names = standby_name(node(2));
    // Not reported synchronous yet: wait.
    assert_eq!(keeper.step(&i), None);
    i.connected = vec![streaming(2, true, 100)];
    assert_eq!(keeper.step(&i), Some(SyncStep::Confirm));
    keeper.confirming(Lsn(150));
    assert_eq!(keeper.step(&i), None, "flush 100 < 150");
    i.connected = vec![streaming(2, true, 150)];
    assert_eq!(keeper.step(&i), Some(SyncStep::Publish(claim(&[2], 1))));
    i.published = doc(&claim(&[2], 1));
    assert_eq!(keeper.step(&i), None);
}

#[test]
fn a_lost_standby_is_replaced_by_widening_then_narrowing() {
    let mut keeper = SyncKeeper::default();
    // A document from an earlier term is not trusted.
    let names = standby_name(node(2));
    let old = inputs(
        SyncMode::On,
        Some(claim(&[2], 1)),
        &names,
        &[streaming(2, true, 10)],
    );
    assert_eq!(keeper.step(&old), Some(SyncStep::Publish(Claim::nothing())));
    keeper.done(&SyncStep::Publish(Claim::nothing()));
    // This term: 2 was confirmed, then it went away; 3 streams.
    let i = inputs(
        SyncMode::On,
        Some(claim(&[2], 1)),
        &names,
        &[streaming(3, false, 10)],
    );
    assert_eq!(
        keeper.step(&i),
        Some(SyncStep::Publish(claim(&[2, 3], 1))),
        "2 stays listed (it holds every commit so far), 3 joins as a possible holder"
    );
    let i = inputs(
        SyncMode::On,
        Some(claim(&[2, 3], 1)),
        &names,
        &[streaming(3, false, 10)],
    );
    assert_eq!(
        keeper.step(&i),
        Some(SyncStep::SetStandbyNames(standby_name(node(3))))
    );
}

#[test]
fn first_k_waits_for_exactly_k_standbys_and_any_k_for_k_of_all() {
    let connected = [
        streaming(2, false, 300),
        streaming(3, false, 200),
        streaming(4, false, 100),
    ];
    let mut first = owning_keeper();
    let mut i = inputs(SyncMode::On, Some(Claim::nothing()), "", &connected);
    i.acknowledgers = Acknowledgers {
        count: 2,
        method: SyncMethod::First,
    };
    assert_eq!(first.step(&i), Some(SyncStep::Publish(claim(&[2, 3], 0))));
    i.published = doc(&claim(&[2, 3], 0));
    let first_names = format!(
        "FIRST 2 ({},{})",
        standby_name(node(2)),
        standby_name(node(3))
    );
    assert_eq!(first.step(&i), Some(SyncStep::SetStandbyNames(first_names)));

    let mut any = owning_keeper();
    i.published = doc(&Claim::nothing());
    i.acknowledgers.method = SyncMethod::Any;
    assert_eq!(any.step(&i), Some(SyncStep::Publish(claim(&[2, 3, 4], 0))));
    i.published = doc(&claim(&[2, 3, 4], 0));
    let any_names = format!(
        "ANY 2 ({},{},{})",
        standby_name(node(2)),
        standby_name(node(3)),
        standby_name(node(4))
    );
    assert_eq!(
        any.step(&i),
        Some(SyncStep::SetStandbyNames(any_names.clone()))
    );
    i.standby_names = any_names;
    i.connected = connected
        .iter()
        .map(|c| Connected {
            synchronous: true,
            ..*c
        })
        .collect();
    assert_eq!(any.step(&i), Some(SyncStep::Confirm));
    any.confirming(Lsn(300));
    assert_eq!(any.step(&i), None, "3 and 4 have not flushed 300 yet");
    i.connected = connected
        .iter()
        .map(|c| Connected {
            synchronous: true,
            flush: Some(Lsn(300)),
            ..*c
        })
        .collect();
    assert_eq!(any.step(&i), Some(SyncStep::Publish(claim(&[2, 3, 4], 2))));
    // Fewer standbys than k: every one of them.
    let mut few = owning_keeper();
    let mut i = inputs(SyncMode::On, Some(Claim::nothing()), "", &connected[..1]);
    i.acknowledgers = Acknowledgers {
        count: 2,
        method: SyncMethod::Any,
    };
    assert_eq!(few.step(&i), Some(SyncStep::Publish(claim(&[2], 0))));
    i.published = doc(&claim(&[2], 0));
    assert_eq!(
        few.step(&i),
        Some(SyncStep::SetStandbyNames(format!(
            "ANY 1 ({})",
            standby_name(node(2))
        )))
    );
}

#[test]
fn the_new_setting_counts_as_in_force_only_when_exactly_its_standbys_are_synchronous() {
    let mut keeper = owning_keeper();
    let names = standby_name(node(3));
    // 2 still reported synchronous under the old setting: a walsender that has not reloaded.
    let i = inputs(
        SyncMode::On,
        Some(claim(&[3], 0)),
        &names,
        &[streaming(2, true, 50), streaming(3, true, 50)],
    );
    assert_eq!(keeper.step(&i), None);
    let i = inputs(
        SyncMode::On,
        Some(claim(&[3], 0)),
        &names,
        &[streaming(2, false, 50), streaming(3, true, 50)],
    );
    assert_eq!(keeper.step(&i), Some(SyncStep::Confirm));
}

#[test]
fn a_standby_that_stops_acknowledging_is_dropped_in_on_mode_only() {
    let start = std::time::Instant::now();
    let timeout = std::time::Duration::from_secs(3);
    let at = |secs: u64, position: u64| Progress {
        now: start + std::time::Duration::from_secs(secs),
        position: Lsn(position),
        ack_timeout: timeout,
    };
    for mode in [SyncMode::On, SyncMode::Strict] {
        let mut keeper = owning_keeper();
        let names = standby_name(node(2));
        let mut i = inputs(
            mode,
            Some(claim(&[2], 1)),
            &names,
            &[streaming(2, true, 100)],
        );
        // Streaming along: behind for moments only, so always in force.
        for (secs, position, flush) in [(0, 100, 100), (1, 150, 120), (2, 200, 150), (5, 250, 250)]
        {
            i.connected = vec![streaming(2, true, flush)];
            i.progress = Some(at(secs, position));
            assert_eq!(keeper.step(&i), None, "{mode:?} at {secs}s");
        }
        // Then it acknowledges nothing more while the primary goes on.
        for (secs, position) in [(6, 300), (7, 400), (8, 500)] {
            i.progress = Some(at(secs, position));
            assert_eq!(
                keeper.step(&i),
                None,
                "{mode:?}: within the timeout at {secs}s"
            );
        }
        i.progress = Some(at(9, 600));
        let expected = match mode {
            // First the claim drops to nothing, so nobody promotes on it; then commits stop
            // waiting.
            SyncMode::On => Some(SyncStep::Publish(claim(&[2], 0))),
            _ => None,
        };
        assert_eq!(keeper.step(&i), expected, "{mode:?} past the timeout");
        assert_eq!(keeper.stalled(i.progress), set(&[2]));
        if mode == SyncMode::On {
            i.published = doc(&claim(&[2], 0));
            assert_eq!(
                keeper.step(&i),
                Some(SyncStep::SetStandbyNames(String::new()))
            );
            assert!(keeper.degraded());
            i.standby_names = String::new();
            assert_eq!(keeper.step(&i), Some(SyncStep::Publish(Claim::nothing())));
            // It catches up: it counts again (and is confirmed before it is a holder again).
            i.published = doc(&Claim::nothing());
            i.connected = vec![streaming(2, false, 600)];
            i.progress = Some(at(10, 600));
            assert_eq!(keeper.step(&i), Some(SyncStep::Publish(claim(&[2], 0))));
            assert!(keeper.stalled(i.progress).is_empty());
        }
    }
}

#[test]
fn without_standbys_on_degrades_and_strict_waits() {
    let mut keeper = owning_keeper();
    let names = standby_name(node(2));
    let on = inputs(SyncMode::On, Some(Claim::nothing()), &names, &[]);
    assert_eq!(
        keeper.step(&on),
        Some(SyncStep::SetStandbyNames(String::new()))
    );
    assert!(keeper.degraded());
    let strict = inputs(SyncMode::Strict, Some(Claim::nothing()), &names, &[]);
    assert_eq!(
        keeper.step(&strict),
        Some(SyncStep::SetStandbyNames("*".into()))
    );
    // nosync (not allowed) standbys are never chosen.
    let mut tagged = inputs(
        SyncMode::Strict,
        Some(Claim::nothing()),
        "*",
        &[streaming(5, true, 10)],
    );
    assert_eq!(keeper.step(&tagged), None);
    tagged.mode = SyncMode::Off;
    assert_eq!(keeper.step(&tagged), Some(SyncStep::Unpublish));
    keeper.done(&SyncStep::Unpublish);
    tagged.published = None;
    assert_eq!(
        keeper.step(&tagged),
        Some(SyncStep::SetStandbyNames(String::new()))
    );
    assert!(!keeper.off_settled());
    tagged.standby_names = String::new();
    assert_eq!(keeper.step(&tagged), None);
    assert!(
        keeper.off_settled(),
        "off and undone: nothing to look at until the mode changes"
    );
}

fn witness(i: u8, position: u64) -> Witness {
    Witness {
        node: node(i),
        position: Lsn(position),
    }
}

/// `promotable` says yes.
fn may_promote(
    sync: &Fetched<SyncState>,
    node: NodeId,
    position: Lsn,
    witnesses: &[Witness],
) -> bool {
    promotable(sync, node, position, witnesses) == Promotable::Yes
}

#[test]
fn who_may_promote_under_a_claim() {
    let all = Fetched::Valid(claim(&[2], 1).document(node(1)));
    assert!(may_promote(&all, node(1), Lsn(0), &[]));
    assert!(may_promote(&all, node(2), Lsn(0), &[]));
    assert!(!may_promote(&all, node(3), Lsn(9), &[]));
    assert!(may_promote(&Fetched::Absent, node(3), Lsn(0), &[]));
    let garbage = zgres_schema::decode::<SyncState>("/zgres/sync/main", b"{junk").unwrap_err();
    for n in 1..=3 {
        assert!(
            !may_promote(&Fetched::Unreadable(garbage.clone()), node(n), Lsn(9), &[]),
            "an unreadable /sync may have named anyone: nobody may promote"
        );
    }
    // ANY 1 of {2, 3}: a commit may be on either; 2 must see 3 at or behind it.
    let quorum = Fetched::Valid(claim(&[2, 3], 1).document(node(1)));
    assert!(!may_promote(&quorum, node(2), Lsn(50), &[]), "3 unseen");
    assert!(
        !may_promote(&quorum, node(2), Lsn(50), &[witness(3, 60)]),
        "3 is ahead"
    );
    assert!(may_promote(&quorum, node(2), Lsn(60), &[witness(3, 60)]));
    // Witnesses outside the claim, or the candidate itself, do not count.
    assert!(!may_promote(
        &quorum,
        node(2),
        Lsn(60),
        &[witness(4, 0), witness(2, 0)]
    ));
    // ANY 2 of {2, 3, 4}: two of the three seen.
    let two = Fetched::Valid(claim(&[2, 3, 4], 2).document(node(1)));
    assert!(may_promote(&two, node(3), Lsn(70), &[witness(4, 70)]));
    assert!(!may_promote(&two, node(3), Lsn(70), &[witness(4, 71)]));
    // A claim of nothing about listed standbys: nobody.
    let none = Fetched::Valid(claim(&[2, 3], 0).document(node(1)));
    assert!(!may_promote(&none, node(2), Lsn(99), &[witness(3, 1)]));
}

mod model;

#[test]
fn while_the_claim_waits_to_be_narrowed_the_primary_looks_again_soon_for_a_while() {
    let start = std::time::Instant::now();
    let at = |ms: u64| Progress {
        now: start + std::time::Duration::from_millis(ms),
        position: Lsn(100),
        ack_timeout: std::time::Duration::from_secs(60),
    };
    let mut keeper = owning_keeper();
    let names = standby_name(node(2));
    // The setting names 2, which is not reported synchronous yet.
    let mut i = inputs(
        SyncMode::On,
        Some(claim(&[2], 0)),
        &names,
        &[streaming(2, false, 100)],
    );
    i.progress = Some(at(0));
    assert_eq!(keeper.step(&i), None);
    assert!(keeper.settling(at(0).now));
    i.progress = Some(at(1_000));
    assert_eq!(keeper.step(&i), None);
    assert!(keeper.settling(at(1_000).now), "still within the window");
    assert!(
        !keeper.settling(at(SETTLE_POLL_FOR.as_millis() as u64).now),
        "not for ever: a standby that never takes the setting costs no busy loop"
    );
    // Once settled, nothing to look for.
    i.connected = vec![streaming(2, true, 100)];
    assert_eq!(keeper.step(&i), Some(SyncStep::Confirm));
    keeper.confirming(Lsn(100));
    assert_eq!(keeper.step(&i), Some(SyncStep::Publish(claim(&[2], 1))));
    i.published = doc(&claim(&[2], 1));
    assert_eq!(keeper.step(&i), None);
    assert!(!keeper.settling(at(1_000).now));
}
