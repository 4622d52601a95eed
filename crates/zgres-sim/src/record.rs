//! What a schedule's run records: the acknowledged writes, the invariants broken, counts of
//! what happened, and availability figures.

use crate::availability::{Outage, Recovery};
use crate::checker::{Violation, Write};

/// What one run recorded.
#[derive(Debug, Default)]
pub struct Record {
    /// Acknowledged writes.
    pub writes: Vec<Write>,
    /// What went wrong.
    pub violations: Vec<Violation>,
    /// What happened (for the summary and for tests that must exercise something).
    pub tally: Tally,
    /// Outages: when the current stretch without a writable primary began (after the first
    /// primary), and the longest stretch so far, in ms.
    pub(crate) outage: Outage,
    /// Recovery times after faults that ended alone.
    pub(crate) recovery: Recovery,
}

/// Counts of what happened in a schedule.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Promotions.
    pub promotions: usize,
    /// Failover requests written (zgresctl refuses the others, and so does the model).
    pub failover_requests: usize,
    /// Paused stops that left PostgreSQL running.
    pub paused_stops_left_running: usize,
    /// Operator stops of a primary's deadman that handed the lock over.
    pub hand_overs_at_stop: usize,
    /// Locks a running standby released quietly (a holder whose promotion was vetoed).
    pub quiet_releases_by_a_standby: usize,
}
