//! The checker: judges what the clients saw and what the group ends with. It shares no code
//! with zgres: its inputs are the clients' own records, the final primary's rows, the raw JSON
//! of `/history` and the daemons' logs.

use std::collections::{BTreeMap, HashSet};

use crate::losses::{LagSample, Loss};
use crate::recording::Ack;

/// What a run leaves for the checker.
#[derive(Debug, Default)]
pub struct Record {
    /// Every acknowledged write.
    pub acks: Vec<Ack>,
    /// The ids in the final primary's table.
    pub final_ids: HashSet<i64>,
    /// `/history`'s bytes (JSON), if it exists.
    pub history: Option<Vec<u8>>,
    /// Each daemon's name and log text.
    pub logs: Vec<(String, String)>,
    /// Daemons that exited without being killed by the run, with how.
    pub unexpected_exits: Vec<String>,
    /// The standbys' replication lag as sampled during the run.
    pub lag: Vec<LagSample>,
}

/// What is wrong with `/history`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryProblem {
    /// Not JSON at all.
    #[error("/history is not JSON: {0}")]
    NotJson(String),
    /// No array named `entries` anywhere in it.
    #[error("/history has no entries array")]
    NoEntries,
    /// An entry without a numeric `timeline`.
    #[error("/history entry without a numeric timeline: {0}")]
    NoTimeline(String),
    /// A timeline not above the one before it.
    #[error("/history timelines do not strictly increase: {seen:?} then {next}")]
    NotIncreasing {
        /// The timelines before it.
        seen: Vec<u64>,
        /// The offending one.
        next: u64,
    },
}

/// The checker's findings.
#[derive(Debug)]
pub struct Verdict {
    /// Acknowledged writes of one server whose interval overlaps an acknowledged write of
    /// another: (earlier, later).
    pub split_brain: Vec<(Ack, Ack)>,
    /// Acknowledged writes missing from the final primary.
    pub lost: Vec<Ack>,
    /// The lost writes per primary tenure, set against its successor's lag.
    pub losses: Vec<Loss>,
    /// The timelines of `/history` in order, or what is wrong with it.
    pub history: Result<Vec<u64>, HistoryProblem>,
    /// Log lines of a panic, with the daemon's name.
    pub panics: Vec<String>,
    /// Log lines of a deadman stopping its running standby to rewind it, with the daemon's
    /// name. A figure, not an invariant: a diverged standby must be stopped, but a healthy one
    /// stopped so is a needless outage of a replica (two such causes were found this way).
    pub rewind_stops: Vec<String>,
    /// As in the record.
    pub unexpected_exits: Vec<String>,
}

impl Verdict {
    /// Whether the run holds every invariant; lost writes count only when `synchronous`.
    pub fn passed(&self, synchronous: bool) -> bool {
        self.split_brain.is_empty()
            && (!synchronous || self.lost.is_empty())
            && self.history.is_ok()
            && self.panics.is_empty()
            && self.unexpected_exits.is_empty()
    }
}

/// Judges `record`.
pub fn check(record: &Record) -> Verdict {
    let lost: Vec<Ack> = record
        .acks
        .iter()
        .filter(|a| !record.final_ids.contains(&a.id))
        .copied()
        .collect();
    Verdict {
        split_brain: overlapping_servers(&record.acks),
        losses: crate::losses::losses(&record.acks, &lost, &record.lag),
        lost,
        history: match &record.history {
            None => Ok(Vec::new()),
            Some(bytes) => history_timelines(bytes),
        },
        panics: log_lines(record, "panicked at"),
        rewind_stops: log_lines(record, "stopping it to rewind it"),
        unexpected_exits: record.unexpected_exits.clone(),
    }
}

/// Every log line that contains `needle`, as "daemon: line".
fn log_lines(record: &Record, needle: &str) -> Vec<String> {
    record
        .logs
        .iter()
        .flat_map(|(name, text)| {
            text.lines()
                .filter(|l| l.contains(needle))
                .map(move |l| format!("{name}: {l}"))
        })
        .collect()
}

/// Pairs of acknowledged writes from different servers whose [sent, acked] intervals overlap:
/// both servers took writes at a time when the other may also have. Stricter than "on
/// different timelines": any two servers count. One pair is reported per later write.
pub fn overlapping_servers(acks: &[Ack]) -> Vec<(Ack, Ack)> {
    let mut by_sent: Vec<Ack> = acks.to_vec();
    by_sent.sort_by_key(|a| a.sent_us);
    // Per server, its write acknowledged last among those sent so far.
    let mut latest: BTreeMap<u16, Ack> = BTreeMap::new();
    let mut found = Vec::new();
    for ack in by_sent {
        let overlapping = latest
            .iter()
            .find(|(&server, other)| server != ack.server && other.acked_us >= ack.sent_us);
        if let Some((_, other)) = overlapping {
            found.push((*other, ack));
        }
        let entry = latest.entry(ack.server).or_insert(ack);
        if ack.acked_us > entry.acked_us {
            *entry = ack;
        }
    }
    found
}

/// The timelines of `/history`'s entries, checked strictly increasing. The document is read
/// as plain JSON: the first array named `entries`, each entry's `timeline` a number.
///
/// # Errors
/// Not JSON, no entries, a timeline that is not a number or does not increase.
pub fn history_timelines(bytes: &[u8]) -> Result<Vec<u64>, HistoryProblem> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| HistoryProblem::NotJson(e.to_string()))?;
    let entries = find_entries(&value).ok_or(HistoryProblem::NoEntries)?;
    let mut timelines = Vec::new();
    for entry in entries {
        let timeline = entry
            .get("timeline")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| HistoryProblem::NoTimeline(entry.to_string()))?;
        if timelines.last().is_some_and(|&last| timeline <= last) {
            return Err(HistoryProblem::NotIncreasing {
                seen: timelines,
                next: timeline,
            });
        }
        timelines.push(timeline);
    }
    Ok(timelines)
}

fn find_entries(value: &serde_json::Value) -> Option<&Vec<serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => map
            .get("entries")
            .and_then(serde_json::Value::as_array)
            .or_else(|| map.values().find_map(find_entries)),
        serde_json::Value::Array(items) => items.iter().find_map(find_entries),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i64, server: u16, sent_us: u64, acked_us: u64) -> Ack {
        Ack {
            id,
            server,
            sent_us,
            acked_us,
        }
    }

    #[test]
    fn writes_of_two_servers_in_overlapping_intervals_are_split_brain() {
        // A failover: the old primary's last write ends before the new one's first is sent.
        let clean = [
            ack(1, 5432, 0, 10),
            ack(2, 5432, 20, 30),
            ack(3, 5433, 40, 50),
        ];
        assert!(overlapping_servers(&clean).is_empty());
        // The same server overlapping itself (two clients) is fine.
        let one_server = [ack(1, 5432, 0, 30), ack(2, 5432, 10, 20)];
        assert!(overlapping_servers(&one_server).is_empty());
        // Two servers taking writes at once, even one write each.
        let split = [
            ack(1, 5432, 0, 30),
            ack(2, 5433, 20, 25),
            ack(3, 5432, 40, 50),
        ];
        let found = overlapping_servers(&split);
        assert_eq!(found, vec![(split[0], split[1])]);
        // Touching ends count: acknowledged at the very moment the other was sent.
        let touching = [ack(1, 5432, 0, 30), ack(2, 5433, 30, 35)];
        assert_eq!(overlapping_servers(&touching).len(), 1);
    }

    #[test]
    fn a_lost_write_a_panic_an_exit_and_a_bad_history_each_fail_the_run() {
        let mut record = Record {
            acks: vec![ack(1, 5432, 0, 10), ack(2, 5432, 20, 30)],
            final_ids: [1, 2].into_iter().collect(),
            history: Some(
                br#"{"v":1,"data":{"entries":[{"timeline":1},{"timeline":2}]}}"#.to_vec(),
            ),
            ..Record::default()
        };
        let verdict = check(&record);
        assert_eq!(verdict.history, Ok(vec![1, 2]));
        assert!(verdict.passed(true), "{verdict:?}");

        record.final_ids.remove(&2);
        let verdict = check(&record);
        assert_eq!(verdict.lost, vec![record.acks[1]]);
        assert!(!verdict.passed(true));
        assert!(
            verdict.passed(false),
            "asynchronous mode counts lost writes only"
        );
        record.final_ids.insert(2);

        record.logs = vec![(
            "n1".into(),
            "ok\nthread 'main' panicked at src/x.rs:1:1\n".into(),
        )];
        assert_eq!(check(&record).panics.len(), 1);
        assert!(!check(&record).passed(false));
        record.logs = vec![(
            "n2".into(),
            "ERROR stopping postgres reason=\"...: stopping it to rewind it\"\n".into(),
        )];
        assert_eq!(check(&record).rewind_stops.len(), 1);
        assert!(check(&record).passed(true), "a figure, not an invariant");
        record.logs.clear();

        record.unexpected_exits = vec!["n0 deadman: exit status: 65".into()];
        assert!(!check(&record).passed(false));
        record.unexpected_exits.clear();

        record.history = Some(br#"{"entries":[{"timeline":2},{"timeline":2}]}"#.to_vec());
        assert!(check(&record).history.is_err());
        record.history = Some(b"{junk".to_vec());
        assert!(!check(&record).passed(false));
    }
}
