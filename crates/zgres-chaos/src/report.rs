//! The figures of a run: per fault kind, how long the group took to be whole again after the
//! faults ended, and the longest stretch without any acknowledged write.

use std::io::{self, Write};

use crate::checker::{Record, Verdict};
use crate::faults::{Scheduled, KINDS};
use crate::losses::Loss;
use crate::recording::Ack;

/// One episode of a run.
#[derive(Debug, Clone)]
pub struct Episode {
    /// Its faults (one, or two overlapping), as scheduled.
    pub plan: Vec<Scheduled>,
    /// The node that was the primary when it started, if the group was whole.
    pub primary_before: Option<usize>,
    /// When it started, µs into the run.
    pub started_us: u64,
    /// When its last fault ended.
    pub faults_ended_us: u64,
    /// When the group was whole again, if it was.
    pub recovered_us: Option<u64>,
    /// The longest stretch from its start to its recovery without an acknowledged write, µs
    /// (filled in after the run by [`fill_write_gaps`]).
    pub write_gap_us: u64,
}

impl Episode {
    /// From the end of its faults to the group whole again, µs.
    pub fn recovery_us(&self) -> Option<u64> {
        self.recovered_us
            .map(|r| r.saturating_sub(self.faults_ended_us))
    }

    /// The timeline line printed as the run goes.
    pub fn line(&self) -> String {
        let faults: Vec<String> = self
            .plan
            .iter()
            .map(|s| {
                format!(
                    "{} at +{:.1}s for {:.1}s",
                    s.fault,
                    s.starts_after.as_secs_f64(),
                    s.holds_for.as_secs_f64()
                )
            })
            .collect();
        let recovered = match self.recovery_us() {
            Some(us) => format!("whole again {:.2}s after", us as f64 / 1e6),
            None => "NOT whole again".into(),
        };
        let primary = self
            .primary_before
            .map_or("primary ?".into(), |n| format!("primary n{n}"));
        format!(
            "[{:8.1}s] {primary}: {}; {recovered}",
            self.started_us as f64 / 1e6,
            faults.join(" + ")
        )
    }
}

/// Sets each episode's longest stretch without an acknowledged write.
pub fn fill_write_gaps(episodes: &mut [Episode], acks: &[Ack]) {
    let mut times: Vec<u64> = acks.iter().map(|a| a.acked_us).collect();
    times.sort_unstable();
    for e in episodes {
        let end = e.recovered_us.unwrap_or(e.faults_ended_us);
        let mut previous = e.started_us;
        let mut gap = 0;
        let from = times.partition_point(|&t| t < e.started_us);
        for &t in times[from..].iter().take_while(|&&t| t <= end) {
            gap = gap.max(t - previous);
            previous = t;
        }
        e.write_gap_us = gap.max(end.saturating_sub(previous));
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn figures(values: &mut [u64]) -> String {
    values.sort_unstable();
    let s = |us: u64| format!("{:.2}", us as f64 / 1e6);
    format!(
        "{:>6} {:>6} {:>6}",
        s(percentile(values, 0.5)),
        s(percentile(values, 0.99)),
        s(values.last().copied().unwrap_or(0))
    )
}

/// Prints the figures per kind (an episode counts under each of its faults' kinds) and the
/// checker's findings.
///
/// # Errors
/// When `out` cannot be written.
pub fn print(
    out: &mut impl Write,
    episodes: &[Episode],
    verdict: &Verdict,
    record: &Record,
    synchronous: bool,
) -> io::Result<()> {
    let acks = &record.acks;
    writeln!(
        out,
        "\n{:<18} {:>5}  {:^20}  {:^20}",
        "fault kind", "count", "whole again p50/p99/max s", "write gap p50/p99/max s"
    )?;
    for kind in KINDS {
        let of_kind: Vec<&Episode> = episodes
            .iter()
            .filter(|e| e.plan.iter().any(|s| s.fault.kind() == kind))
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let mut recovery: Vec<u64> = of_kind.iter().filter_map(|e| e.recovery_us()).collect();
        let mut gaps: Vec<u64> = of_kind.iter().map(|e| e.write_gap_us).collect();
        writeln!(
            out,
            "{kind:<18} {:>5}  {:>20}  {:>20}",
            of_kind.len(),
            figures(&mut recovery),
            figures(&mut gaps)
        )?;
    }
    let mut by_gap: Vec<&Episode> = episodes.iter().collect();
    by_gap.sort_by_key(|e| std::cmp::Reverse(e.write_gap_us));
    writeln!(out, "\nlongest write gaps:")?;
    for e in by_gap.iter().take(8) {
        writeln!(out, "{:6.2}s  {}", e.write_gap_us as f64 / 1e6, e.line())?;
    }
    let overlapping = episodes.iter().filter(|e| e.plan.len() > 1).count();
    writeln!(
        out,
        "\nepisodes {} (overlapping {overlapping}), acknowledged writes {}",
        episodes.len(),
        acks.len()
    )?;
    writeln!(out, "split-brain: {}", verdict.split_brain.len())?;
    for (a, b) in verdict.split_brain.iter().take(5) {
        writeln!(out, "  {a:?} overlaps {b:?}")?;
    }
    let lost_rule = if synchronous {
        "must be 0"
    } else {
        "asynchronous: counted"
    };
    writeln!(
        out,
        "lost acknowledged writes: {} ({lost_rule})",
        verdict.lost.len()
    )?;
    if synchronous {
        for a in verdict.lost.iter().take(5) {
            writeln!(out, "  {a:?}")?;
        }
    } else {
        print_losses(out, &verdict.losses, record)?;
    }
    match &verdict.history {
        Ok(timelines) => writeln!(out, "/history timelines: {timelines:?}")?,
        Err(e) => writeln!(out, "/history: {e}")?,
    }
    writeln!(out, "panics: {}", verdict.panics.len())?;
    for p in &verdict.panics {
        writeln!(out, "  {p}")?;
    }
    writeln!(
        out,
        "standbys stopped for a rewind: {} (needed when a standby diverged; a healthy one stopped is a bug)",
        verdict.rewind_stops.len()
    )?;
    for stop in &verdict.rewind_stops {
        writeln!(out, "  {stop}")?;
    }
    writeln!(out, "unexpected exits: {:?}", verdict.unexpected_exits)
}

/// Asynchronous mode: the standbys' lag, and each primary's lost writes set against its
/// successor's lag.
fn print_losses(out: &mut impl Write, losses: &[Loss], record: &Record) -> io::Result<()> {
    let mut lag: Vec<u64> = record.lag.iter().map(|s| s.lag_us).collect();
    writeln!(
        out,
        "  standby replay lag p50/p99/max s: {} ({} samples, every {} ms)",
        figures(&mut lag),
        lag.len(),
        crate::lag::EVERY.as_millis()
    )?;
    let secs = |us: u64| format!("{:.2}s", us as f64 / 1e6);
    for loss in losses {
        let against = match (loss.successor, loss.successor_lag_us) {
            (Some(next), Some(lag)) => format!("{next} was at most {} behind", secs(lag)),
            (Some(next), None) => format!("{next} was never sampled before"),
            (None, _) => "no primary followed".into(),
        };
        let verdict = match loss.within_lag() {
            Some(true) => "within its lag",
            Some(false) => "BEYOND its lag",
            None => "lag unknown",
        };
        writeln!(
            out,
            "  {} lost {} writes from its last {}; {against}: {verdict}",
            loss.server,
            loss.writes,
            secs(loss.span_us)
        )?;
    }
    let within = losses
        .iter()
        .filter(|l| l.within_lag() == Some(true))
        .count();
    writeln!(
        out,
        "  failovers that lost writes: {}, within the measured lag: {within}",
        losses.len()
    )
}

/// Prints the writes servers refused other than as standbys, most frequent first.
pub fn print_refusals(out: &mut impl Write, refusals: &std::collections::BTreeMap<String, u64>) {
    let mut counted: Vec<_> = refusals.iter().collect();
    counted.sort_by(|a, b| b.1.cmp(a.1));
    for (what, count) in counted {
        let _ = writeln!(out, "writes refused (not as a standby): {count} × {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(acked_us: u64) -> Ack {
        Ack {
            id: acked_us as i64,
            server: 1,
            sent_us: acked_us,
            acked_us,
        }
    }

    #[test]
    fn the_write_gap_is_the_longest_stretch_without_an_ack_within_the_episode() {
        let mut episodes = vec![Episode {
            plan: vec![Scheduled {
                fault: crate::faults::Fault::KillPostgres(0),
                starts_after: std::time::Duration::ZERO,
                holds_for: std::time::Duration::ZERO,
            }],
            primary_before: Some(0),
            started_us: 100,
            faults_ended_us: 100,
            recovered_us: Some(1_000),
            write_gap_us: 0,
        }];
        // Acks before and after the episode do not count; inside, 300..900 is the longest.
        let acks: Vec<Ack> = [50, 150, 300, 900, 950, 2_000].map(ack).to_vec();
        fill_write_gaps(&mut episodes, &acks);
        assert_eq!(episodes[0].write_gap_us, 600);
        // No ack at all inside: the whole episode.
        fill_write_gaps(&mut episodes, &[ack(50)]);
        assert_eq!(episodes[0].write_gap_us, 900);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert!(figures(&mut v).ends_with("0.00"));
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
