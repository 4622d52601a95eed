use proptest::prelude::*;

use super::*;

fn node(i: u8) -> NodeId {
    format!("10.0.0.{i}:5432").parse().unwrap()
}

const ME: u8 = 1;

fn inputs(
    mode: SyncMode,
    published: Option<&[u8]>,
    names: &str,
    connected: &[Connected],
) -> SyncInputs {
    SyncInputs {
        mode,
        me: node(ME),
        published: published.map(|p| SyncState {
            primary: node(ME),
            standbys: p.iter().copied().map(node).collect(),
        }),
        standby_names: names.to_owned(),
        connected: connected.to_vec(),
        allowed: [2, 3, 4].into_iter().map(node).collect(),
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

#[test]
fn a_standby_joins_sync_only_after_it_waits_for_it_and_caught_up() {
    let mut keeper = SyncKeeper::default();
    // A new primary first claims nothing.
    let mut i = inputs(SyncMode::On, None, "", &[streaming(2, false, 100)]);
    assert_eq!(keeper.step(&i), Some(SyncStep::Publish(BTreeSet::new())));
    keeper.done(&SyncStep::Publish(BTreeSet::new()));
    i.published = inputs(SyncMode::On, Some(&[]), "", &[]).published;
    assert_eq!(
        keeper.step(&i),
        Some(SyncStep::SetStandbyNames(standby_name(node(2))))
    );
    i.standby_names = standby_name(node(2));
    // Not reported synchronous yet: wait.
    assert_eq!(keeper.step(&i), None);
    i.connected = vec![streaming(2, true, 100)];
    assert_eq!(keeper.step(&i), Some(SyncStep::Confirm(node(2))));
    keeper.confirming(node(2), Lsn(150));
    assert_eq!(keeper.step(&i), None, "flush 100 < 150");
    i.connected = vec![streaming(2, true, 150)];
    assert_eq!(
        keeper.step(&i),
        Some(SyncStep::Publish(BTreeSet::from([node(2)])))
    );
}

#[test]
fn a_lost_standby_leaves_sync_before_postgres_stops_waiting_for_it() {
    let mut keeper = SyncKeeper::default();
    // A document from an earlier term is not trusted.
    let names = standby_name(node(2));
    let old = inputs(SyncMode::On, Some(&[2]), &names, &[streaming(2, true, 10)]);
    assert_eq!(keeper.step(&old), Some(SyncStep::Publish(BTreeSet::new())));
    keeper.done(&SyncStep::Publish(BTreeSet::new()));
    let names = standby_name(node(2));
    let i = inputs(SyncMode::On, Some(&[2]), &names, &[streaming(3, false, 10)]);
    assert_eq!(keeper.step(&i), Some(SyncStep::Publish(BTreeSet::new())));
    let i = inputs(SyncMode::On, Some(&[]), &names, &[streaming(3, false, 10)]);
    assert_eq!(
        keeper.step(&i),
        Some(SyncStep::SetStandbyNames(standby_name(node(3))))
    );
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
        let mut keeper = SyncKeeper::default();
        keeper.done(&SyncStep::Publish(BTreeSet::new()));
        keeper.done(&SyncStep::Publish([node(2)].into()));
        let names = standby_name(node(2));
        let mut i = inputs(mode, Some(&[2]), &names, &[streaming(2, true, 100)]);
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
            // First out of /sync, so nobody promotes it; then commits stop waiting.
            SyncMode::On => Some(SyncStep::Publish(BTreeSet::new())),
            _ => None,
        };
        assert_eq!(keeper.step(&i), expected, "{mode:?} past the timeout");
        assert_eq!(keeper.stalled(i.progress), BTreeSet::from([node(2)]));
        if mode == SyncMode::On {
            i.published = Some(SyncState {
                primary: node(ME),
                standbys: BTreeSet::new(),
            });
            assert_eq!(
                keeper.step(&i),
                Some(SyncStep::SetStandbyNames(String::new()))
            );
            assert!(keeper.degraded());
            // It catches up: it counts again (and is confirmed before it rejoins /sync).
            i.standby_names = String::new();
            i.connected = vec![streaming(2, false, 600)];
            i.progress = Some(at(10, 600));
            assert_eq!(
                keeper.step(&i),
                Some(SyncStep::SetStandbyNames(names.clone()))
            );
            assert!(keeper.stalled(i.progress).is_empty());
        }
    }
}

#[test]
fn without_standbys_on_degrades_and_strict_waits() {
    let mut keeper = SyncKeeper::default();
    keeper.done(&SyncStep::Publish(BTreeSet::new()));
    let names = standby_name(node(2));
    let on = inputs(SyncMode::On, Some(&[]), &names, &[]);
    assert_eq!(
        keeper.step(&on),
        Some(SyncStep::SetStandbyNames(String::new()))
    );
    assert!(keeper.degraded());
    let strict = inputs(SyncMode::Strict, Some(&[]), &names, &[]);
    assert_eq!(
        keeper.step(&strict),
        Some(SyncStep::SetStandbyNames("*".into()))
    );
    // nosync (not allowed) standbys are never chosen.
    let mut tagged = inputs(SyncMode::Strict, Some(&[]), "*", &[streaming(5, true, 10)]);
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

#[test]
fn only_listed_nodes_and_the_primary_may_promote() {
    let sync = SyncState {
        primary: node(1),
        standbys: BTreeSet::from([node(2)]),
    };
    let valid = Fetched::Valid(sync);
    assert!(may_promote(&valid, node(1)));
    assert!(may_promote(&valid, node(2)));
    assert!(!may_promote(&valid, node(3)));
    assert!(may_promote(&Fetched::Absent, node(3)));
    let garbage = zgres_schema::decode::<SyncState>("/zgres/sync/main", b"{junk").unwrap_err();
    for n in 1..=3 {
        assert!(
            !may_promote(&Fetched::Unreadable(garbage.clone()), node(n)),
            "an unreadable /sync may have named anyone: nobody may promote"
        );
    }
}

#[derive(Debug, Clone)]
enum Event {
    Commit,
    Connect(u8),
    Disconnect(u8),
    CatchUp(u8),
    Round,
    Mode(u8),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::Commit),
        1 => (2u8..5).prop_map(Event::Connect),
        1 => (2u8..5).prop_map(Event::Disconnect),
        3 => (2u8..5).prop_map(Event::CatchUp),
        4 => Just(Event::Round),
        1 => (0u8..3).prop_map(Event::Mode),
    ]
}

/// A model primary: commits wait as PostgreSQL's would for `synchronous_standby_names`, and
/// standbys flush WAL only when they catch up. Whatever happens, every acknowledged commit is
/// on every node `/sync` lists.
#[derive(Debug, Default)]
struct Model {
    written: u64,
    acked: u64,
    names: String,
    flush: [u64; 5],
    connected: [bool; 5],
    published: Option<SyncState>,
}

impl Model {
    fn release(&mut self) {
        let ok = |m: &Model, i: usize| m.connected[i] && m.flush[i] >= m.written;
        let released = if self.names.is_empty() {
            true
        } else if self.names == "*" {
            (2..5).any(|i| ok(self, i))
        } else {
            (2..5).any(|i| self.names == standby_name(node(i as u8)) && ok(self, i))
        };
        if released {
            self.acked = self.written;
        }
    }
}

proptest! {
    #[test]
    fn every_acknowledged_commit_is_on_every_listed_node(events in proptest::collection::vec(event(), 1..200)) {
        let mut m = Model::default();
        let mut keeper = SyncKeeper::default();
        let mut mode = SyncMode::On;
        for e in events {
            match e {
                Event::Commit => m.written += 1,
                Event::Connect(i) => m.connected[i as usize] = true,
                Event::Disconnect(i) => m.connected[i as usize] = false,
                Event::CatchUp(i) => if m.connected[i as usize] { m.flush[i as usize] = m.written },
                Event::Mode(k) => mode = [SyncMode::Off, SyncMode::On, SyncMode::Strict][k as usize],
                Event::Round => {
                    let connected = (2..5u8)
                        .filter(|&i| m.connected[i as usize])
                        .map(|i| Connected {
                            node: node(i),
                            streaming: true,
                            synchronous: m.names == standby_name(node(i)) || m.names == "*",
                            flush: Some(Lsn(m.flush[i as usize])),
                        })
                        .collect();
                    let i = SyncInputs {
                        mode,
                        me: node(ME),
                        published: m.published.clone(),
                        standby_names: m.names.clone(),
                        connected,
                        allowed: [2, 3, 4].into_iter().map(node).collect(),
                        progress: None,
                    };
                    let step = keeper.step(&i);
                    match &step {
                        Some(SyncStep::Publish(set)) => m.published = Some(SyncState { primary: node(ME), standbys: set.clone() }),
                        Some(SyncStep::Unpublish) => m.published = None,
                        Some(SyncStep::SetStandbyNames(n)) => m.names = n.clone(),
                        Some(SyncStep::Confirm(n)) => keeper.confirming(*n, Lsn(m.written)),
                        None => {}
                    }
                    if let Some(step) = &step {
                        keeper.done(step);
                    }
                }
            }
            m.release();
            if let Some(sync) = &m.published {
                for n in &sync.standbys {
                    let i = (2..5).find(|&i| node(i as u8) == *n).unwrap();
                    prop_assert!(m.flush[i] >= m.acked, "{n} lacks acknowledged commits: {m:?}");
                }
            }
        }
    }
}
