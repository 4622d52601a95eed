//! The property test: a model primary whose commits wait as PostgreSQL's would.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Event {
    Commit,
    Connect(u8),
    Disconnect(u8),
    CatchUp(u8),
    Round,
    Mode(u8),
    Acknowledgers(u8, bool),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::Commit),
        1 => (2u8..5).prop_map(Event::Connect),
        1 => (2u8..5).prop_map(Event::Disconnect),
        3 => (2u8..5).prop_map(Event::CatchUp),
        5 => Just(Event::Round),
        1 => (0u8..3).prop_map(Event::Mode),
        1 => (1u8..4, any::<bool>()).prop_map(|(k, any)| Event::Acknowledgers(k, any)),
    ]
}

/// `synchronous_standby_names` as PostgreSQL reads it (our own spellings only): how many of
/// which standbys each commit waits for; `None` waits for nothing.
fn parse_names(names: &str) -> Option<(usize, Vec<usize>)> {
    let index = |quoted: &str| {
        (2..5)
            .find(|&i| standby_name(node(i as u8)) == quoted)
            .expect("a known standby")
    };
    if names.is_empty() {
        return None;
    }
    if names == "*" {
        return Some((1, vec![2, 3, 4]));
    }
    if let Some(rest) = names
        .strip_prefix("FIRST ")
        .or_else(|| names.strip_prefix("ANY "))
    {
        let (k, list) = rest.split_once(' ').unwrap();
        let list = list.trim_start_matches('(').trim_end_matches(')');
        return Some((k.parse().unwrap(), list.split(',').map(index).collect()));
    }
    Some((1, vec![index(names)]))
}

/// A model primary: commits wait as PostgreSQL's would for `synchronous_standby_names`, and
/// standbys flush WAL only when they catch up. Whatever happens, every acknowledged commit is
/// on at least as many of the standbys `/sync` lists as it claims.
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
        let released = match parse_names(&self.names) {
            None => true,
            Some((k, listed)) => {
                listed
                    .iter()
                    .filter(|&&i| self.connected[i] && self.flush[i] >= self.written)
                    .count()
                    >= k
            }
        };
        if released {
            self.acked = self.written;
        }
    }

    fn connected(&self) -> Vec<Connected> {
        let listed = parse_names(&self.names).map(|(_, l)| l).unwrap_or_default();
        (2..5usize)
            .filter(|&i| self.connected[i])
            .map(|i| Connected {
                node: node(i as u8),
                streaming: true,
                synchronous: listed.contains(&i),
                flush: Some(Lsn(self.flush[i])),
            })
            .collect()
    }
}

proptest! {
    #[test]
    fn every_acknowledged_commit_is_on_as_many_listed_nodes_as_claimed(
        events in proptest::collection::vec(event(), 1..300)
    ) {
        let mut m = Model::default();
        let mut keeper = SyncKeeper::default();
        let mut mode = SyncMode::On;
        let mut acknowledgers = Acknowledgers::default();
        for e in events {
            match e {
                Event::Commit => m.written += 1,
                Event::Connect(i) => m.connected[i as usize] = true,
                Event::Disconnect(i) => m.connected[i as usize] = false,
                Event::CatchUp(i) => if m.connected[i as usize] { m.flush[i as usize] = m.written },
                Event::Mode(k) => mode = [SyncMode::Off, SyncMode::On, SyncMode::Strict][k as usize],
                Event::Acknowledgers(count, any) => acknowledgers = Acknowledgers {
                    count: count as usize,
                    method: if any { SyncMethod::Any } else { SyncMethod::First },
                },
                Event::Round => {
                    let i = SyncInputs {
                        mode,
                        acknowledgers,
                        me: node(ME),
                        published: m.published.clone(),
                        standby_names: m.names.clone(),
                        connected: m.connected(),
                        allowed: set(&[2, 3, 4]),
                        progress: None,
                    };
                    let step = keeper.step(&i);
                    match &step {
                        Some(SyncStep::Publish(c)) => m.published = Some(c.document(node(ME))),
                        Some(SyncStep::Unpublish) => m.published = None,
                        Some(SyncStep::SetStandbyNames(n)) => m.names = n.clone(),
                        Some(SyncStep::Confirm) => keeper.confirming(Lsn(m.written)),
                        None => {}
                    }
                    if let Some(step) = &step {
                        keeper.done(step);
                    }
                }
            }
            m.release();
            if let Some(sync) = &m.published {
                let holding = sync
                    .standbys
                    .iter()
                    .filter(|n| {
                        let i = (2..5).find(|&i| node(i as u8) == **n).unwrap();
                        m.flush[i] >= m.acked
                    })
                    .count();
                prop_assert!(holding >= sync.holders(), "{holding} of {sync:?} hold every acknowledged commit: {m:?}");
            }
        }
    }
}
