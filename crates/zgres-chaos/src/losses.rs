//! Asynchronous mode's lost writes set against the replication lag measured at the time.
//!
//! Without synchronous replication a failover may lose the writes the new primary had not
//! received yet: at most those acknowledged within its replication lag before the old primary
//! stopped. Each primary's tenure is a run of acknowledgements by one server; a tenure whose
//! tail is missing from the final primary is a loss, compared with the lag its successor had
//! as a standby just before. Like the rest of the checker it shares no code with zgres.

use crate::recording::Ack;

/// How far a standby's replay was behind, as sampled from the standby itself
/// (`now() - pg_last_xact_replay_timestamp()` while in recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagSample {
    /// The standby's port.
    pub server: u16,
    /// When sampled, µs of the run's monotonic clock.
    pub at_us: u64,
    /// How far behind its replay was, µs.
    pub lag_us: u64,
}

/// The lost writes of one primary's tenure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The primary that acknowledged them.
    pub server: u16,
    /// How many.
    pub writes: usize,
    /// From the earliest of them to the tenure's last acknowledgement, µs.
    pub span_us: u64,
    /// The server whose tenure followed, if any.
    pub successor: Option<u16>,
    /// The successor's lag at the tenure's last acknowledgement, as bounded by its last
    /// sample before then (that sample's lag plus the time since): µs, if it was sampled.
    pub successor_lag_us: Option<u64>,
}

impl Loss {
    /// Whether the lost writes all fall within the successor's lag (unknown without a
    /// sample).
    pub fn within_lag(&self) -> Option<bool> {
        self.successor_lag_us.map(|lag| self.span_us <= lag)
    }
}

/// One server's run of consecutive acknowledgements (in acknowledgement order).
struct Tenure {
    server: u16,
    first_us: u64,
    last_us: u64,
}

/// The losses in `lost` (a subset of `acks`), one per tenure that lost writes, in order.
pub fn losses(acks: &[Ack], lost: &[Ack], lag: &[LagSample]) -> Vec<Loss> {
    let mut ordered: Vec<&Ack> = acks.iter().collect();
    ordered.sort_by_key(|a| a.acked_us);
    let mut tenures: Vec<Tenure> = Vec::new();
    for a in ordered {
        match tenures.last_mut() {
            Some(t) if t.server == a.server => t.last_us = a.acked_us,
            _ => tenures.push(Tenure {
                server: a.server,
                first_us: a.acked_us,
                last_us: a.acked_us,
            }),
        }
    }
    let mut found: Vec<(usize, Loss)> = Vec::new();
    for a in lost {
        let index = tenures
            .partition_point(|t| t.last_us < a.acked_us)
            .min(tenures.len().saturating_sub(1));
        let Some(tenure) = tenures.get(index).filter(|t| t.first_us <= a.acked_us) else {
            continue;
        };
        match found.iter_mut().find(|(i, _)| *i == index) {
            Some((_, loss)) => {
                loss.writes += 1;
                loss.span_us = loss.span_us.max(tenure.last_us - a.acked_us);
            }
            None => {
                let successor = tenures.get(index + 1).map(|t| t.server);
                found.push((
                    index,
                    Loss {
                        server: tenure.server,
                        writes: 1,
                        span_us: tenure.last_us - a.acked_us,
                        successor,
                        successor_lag_us: successor.and_then(|s| lag_bound(lag, s, tenure.last_us)),
                    },
                ));
            }
        }
    }
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, loss)| loss).collect()
}

/// `server`'s lag at `at_us` at most: its last sample before then, plus the time since (its
/// replay may have stalled right after the sample).
fn lag_bound(lag: &[LagSample], server: u16, at_us: u64) -> Option<u64> {
    lag.iter()
        .filter(|s| s.server == server && s.at_us <= at_us)
        .max_by_key(|s| s.at_us)
        .map(|s| s.lag_us + (at_us - s.at_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i64, server: u16, acked_us: u64) -> Ack {
        Ack {
            id,
            server,
            sent_us: acked_us.saturating_sub(5),
            acked_us,
        }
    }

    fn sample(server: u16, at_us: u64, lag_us: u64) -> LagSample {
        LagSample {
            server,
            at_us,
            lag_us,
        }
    }

    #[test]
    fn a_tenures_lost_tail_is_set_against_its_successors_lag() {
        // n(5432) acknowledges 1..=4 until 400; 5433 takes over at 1_000.
        let acks = [
            ack(1, 5432, 100),
            ack(2, 5432, 200),
            ack(3, 5432, 300),
            ack(4, 5432, 400),
            ack(5, 5433, 1_000),
        ];
        let lost = [acks[2], acks[3]];
        // Sampled at 350, 5433 replayed 50 µs behind: at 400 it was at most 100 behind.
        let within = losses(&acks, &lost, &[sample(5433, 350, 50), sample(5433, 500, 9)]);
        assert_eq!(
            within,
            vec![Loss {
                server: 5432,
                writes: 2,
                span_us: 100,
                successor: Some(5433),
                successor_lag_us: Some(100),
            }]
        );
        assert_eq!(within[0].within_lag(), Some(true));
        // A standby sampled as current long before could not have missed 200 µs of writes.
        let lost = [acks[1], acks[2], acks[3]];
        let beyond = losses(&acks, &lost, &[sample(5433, 390, 0)]);
        assert_eq!(beyond[0].span_us, 200);
        assert_eq!(beyond[0].within_lag(), Some(false));
        // Never sampled: unknown.
        assert_eq!(losses(&acks, &lost, &[])[0].within_lag(), None);
    }

    #[test]
    fn each_tenure_that_lost_writes_is_one_loss() {
        let acks = [
            ack(1, 5432, 100),
            ack(2, 5433, 200),
            ack(3, 5433, 300),
            ack(4, 5432, 400),
        ];
        let found = losses(&acks, &[acks[0], acks[2]], &[]);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].server, found[0].successor), (5432, Some(5433)));
        assert_eq!((found[1].server, found[1].successor), (5433, Some(5432)));
        assert!(losses(&acks, &[], &[]).is_empty());
    }
}
