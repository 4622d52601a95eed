//! Availability figures (not invariants: faults may rightly leave a group without a primary
//! for a while): the longest stretch without a writable primary, and how long the group takes
//! to be whole again after each fault that ended alone.

use zgres_deadman_core::decision::PROMOTION_VETO_WAIT;

use crate::faults::{Fault, Kind};

/// Stretches of time without a writable primary, after the first one (an availability figure,
/// not an invariant: faults may rightly leave a group without a primary for a while).
#[derive(Debug, Default)]
pub(crate) struct Outage {
    seen_primary: bool,
    since: Option<u64>,
    pub(crate) longest_ms: u64,
}

impl Outage {
    pub(crate) fn observe(&mut self, t: u64, primary: bool) {
        if primary {
            self.seen_primary = true;
            self.since = None;
        } else if self.seen_primary {
            let since = *self.since.get_or_insert(t);
            self.longest_ms = self.longest_ms.max(t - since);
        }
    }
}

/// When a fault stops acting on the group: its end, except for a veto, whose node sits out
/// elections for [`PROMOTION_VETO_WAIT`] after its last vetoed promotion (which may come at the
/// veto's very end), by design.
fn effect_until(fault: &Fault) -> u64 {
    match fault.kind {
        Kind::Veto => fault.until + PROMOTION_VETO_WAIT.as_millis() as u64,
        _ => fault.until,
    }
}

/// Time from the end of a fault to the group being whole again, for faults that ended while
/// no other was active and that no other interrupted before the group was whole.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Faults that ended alone and wait for the group to be whole: (kind, end).
    waiting: Vec<(Kind, u64)>,
    /// Measured: (kind, ms from its end to whole).
    pub(crate) times: Vec<(Kind, u64)>,
}

impl Recovery {
    /// One step of `step` ms at `t`: notes the faults ending now alone, and drops those that
    /// another fault beginning now interrupts.
    pub(crate) fn note_faults(&mut self, t: u64, step: u64, faults: &[Fault]) {
        let lasting = |f: &&Fault| f.from < f.until;
        if faults
            .iter()
            .filter(lasting)
            .any(|f| f.from <= t && t < f.from + step)
        {
            // Another fault began: what follows is not this one's recovery.
            self.waiting.clear();
        }
        let alone = !faults
            .iter()
            .filter(lasting)
            .any(|f| f.from <= t && t < effect_until(f));
        let ending = faults
            .iter()
            .filter(lasting)
            .filter(|f| alone && effect_until(f) <= t && t < effect_until(f) + step);
        self.waiting
            .extend(ending.map(|f| (f.kind, effect_until(f))));
    }

    /// Whether a fault waits for the group to be whole (only then is it worth checking).
    pub(crate) fn waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The group is whole at `t`: times every fault that waited for it.
    pub(crate) fn whole_at(&mut self, t: u64) {
        let ended = self.waiting.drain(..);
        self.times.extend(ended.map(|(kind, end)| (kind, t - end)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(kind: Kind, from: u64, until: u64) -> Fault {
        Fault {
            kind,
            node: 0,
            from,
            until,
        }
    }

    #[test]
    fn recovery_is_timed_from_a_lone_fault_and_dropped_when_another_interrupts() {
        let faults = [
            fault(Kind::ZooKeeperCut, 100, 200),
            fault(Kind::Pause, 300, 400),
            // Starts before the group is whole again after the pause.
            fault(Kind::KillNode, 450, 500),
            // A request is not a fault: it neither counts nor interrupts.
            fault(Kind::Switchover, 520, 520),
        ];
        let mut recovery = Recovery::default();
        for t in (0..700).step_by(10) {
            recovery.note_faults(t, 10, &faults);
            let whole = !(100..250).contains(&t) && !(300..600).contains(&t);
            if recovery.waiting() && whole {
                recovery.whole_at(t);
            }
        }
        assert_eq!(
            recovery.times,
            [(Kind::ZooKeeperCut, 50), (Kind::KillNode, 100)]
        );
    }
}
