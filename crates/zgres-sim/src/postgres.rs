//! A model of one PostgreSQL server: its WAL as a history of timelines, whether it runs and as
//! what, and what streaming, promotion, shutdown and pg_rewind do to it.

use zgres_schema::{Lsn, Timeline};

/// One timeline of a WAL history: its number, where it starts, and which node created it
/// (two nodes can create timelines of the same number in a split brain; they differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The timeline.
    pub timeline: Timeline,
    /// Where it starts.
    pub start: Lsn,
    /// The node that promoted into it (`usize::MAX` for the group's first timeline).
    pub creator: usize,
}

/// A WAL history and where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wal {
    /// Timelines, oldest first.
    pub history: Vec<Segment>,
    /// The end of the WAL.
    pub end: Lsn,
}

impl Wal {
    /// The group's first WAL.
    pub fn first() -> Wal {
        Wal {
            history: vec![Segment {
                timeline: Timeline::FIRST,
                start: Lsn(0),
                creator: usize::MAX,
            }],
            end: Lsn(0),
        }
    }

    /// The current timeline's segment.
    pub fn current(&self) -> Segment {
        *self.history.last().expect("never empty")
    }

    /// Where `segment` ends in this history: the start of the next one, or the end.
    pub fn end_of(&self, segment: &Segment) -> Option<Lsn> {
        let i = self.history.iter().position(|s| s == segment)?;
        Some(self.history.get(i + 1).map_or(self.end, |next| next.start))
    }

    /// This WAL up to `end` (the segments that start after it dropped).
    pub fn prefix(&self, end: Lsn) -> Wal {
        let mut wal = self.clone();
        while wal.history.len() > 1 && wal.current().start > end {
            wal.history.pop();
        }
        wal.end = end.min(self.end);
        wal
    }

    /// Whether `other` is a prefix of this WAL (a standby with it can stream from this one).
    pub fn extends(&self, other: &Wal) -> bool {
        other.history.iter().all(|s| self.history.contains(s))
            && self
                .end_of(&other.current())
                .is_some_and(|end| other.end <= end)
    }

    /// Whether the write at `lsn` on `segment` is part of this WAL.
    pub fn holds(&self, segment: &Segment, lsn: Lsn) -> bool {
        self.end_of(segment).is_some_and(|end| lsn <= end)
    }

    /// Where this WAL and `source` part: the end of the last segment both have, as far as both
    /// have it.
    pub fn fork_with(&self, source: &Wal) -> Lsn {
        let mut fork = Lsn(0);
        for s in &self.history {
            match (self.end_of(s), source.end_of(s)) {
                (Some(mine), Some(theirs)) => fork = mine.min(theirs),
                _ => break,
            }
        }
        fork
    }
}

/// What the server is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not running.
    Stopped,
    /// Running; answers from `ready_at` (ms) on.
    Running {
        /// Primary (not in recovery).
        primary: bool,
        /// When it starts answering queries.
        ready_at: u64,
    },
}

/// One server.
#[derive(Debug, Clone)]
pub struct Postgres {
    /// Running or not.
    pub phase: Phase,
    /// Its WAL.
    pub wal: Wal,
    /// Whether the data directory starts as a standby.
    pub standby_signal: bool,
    /// The node it streams from, when a standby.
    pub upstream: Option<usize>,
    /// `synchronous_standby_names` (kept in `postgresql.auto.conf`, so across restarts).
    pub standby_names: String,
}

impl Postgres {
    /// Whether it runs as a primary (accepting writes once ready).
    pub fn is_primary(&self) -> bool {
        matches!(self.phase, Phase::Running { primary: true, .. })
    }

    /// Whether it runs and answers at `now`.
    pub fn answers(&self, now: u64) -> bool {
        matches!(self.phase, Phase::Running { ready_at, .. } if now >= ready_at)
    }

    /// Whether it accepts writes at `now`.
    pub fn writable(&self, now: u64) -> bool {
        self.is_primary() && self.answers(now)
    }

    /// Starts it (a standby when the data directory says so).
    pub fn start(&mut self, now: u64, startup_ms: u64) {
        if self.phase == Phase::Stopped {
            self.phase = Phase::Running {
                primary: !self.standby_signal,
                ready_at: now + startup_ms,
            };
        }
    }

    /// Stops it at once.
    pub fn stop(&mut self) {
        self.phase = Phase::Stopped;
    }

    /// Promotes a running standby: a new timeline created by `node`.
    pub fn promote(&mut self, node: usize) -> Option<(Timeline, Lsn)> {
        if !matches!(self.phase, Phase::Running { primary: false, .. }) {
            return None;
        }
        let current = self.wal.current();
        let timeline = Timeline::new(current.timeline.get() + 1).ok()?;
        self.wal.history.push(Segment {
            timeline,
            start: self.wal.end,
            creator: node,
        });
        self.standby_signal = false;
        self.upstream = None;
        if let Phase::Running { ready_at, .. } = self.phase {
            self.phase = Phase::Running {
                primary: true,
                ready_at,
            };
        }
        Some((timeline, self.wal.end))
    }

    /// pg_rewind to `source`: keep what both have, then follow it as a standby.
    pub fn rewind(&mut self, source: &Wal, upstream: usize) {
        let fork = self.wal.fork_with(source);
        self.wal = source.prefix(fork);
        self.standby_signal = true;
        self.upstream = Some(upstream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tl(t: u32) -> Timeline {
        Timeline::new(t).unwrap()
    }

    #[test]
    fn histories_fork_extend_and_rewind() {
        let mut a = Postgres {
            phase: Phase::Running {
                primary: false,
                ready_at: 0,
            },
            wal: Wal::first(),
            standby_signal: true,
            upstream: None,
            standby_names: String::new(),
        };
        a.wal.end = Lsn(10);
        let mut old_primary = a.wal.clone();
        old_primary.end = Lsn(15);
        assert_eq!(a.promote(1), Some((tl(2), Lsn(10))));
        a.wal.end = Lsn(12);
        // The old primary wrote 11..15 on timeline 1 that the new one never had.
        assert!(!a.wal.extends(&old_primary));
        assert_eq!(old_primary.fork_with(&a.wal), Lsn(10));
        assert!(!a.wal.holds(&old_primary.current(), Lsn(15)));
        assert!(a.wal.holds(&old_primary.current(), Lsn(10)));
        let mut b = Postgres {
            phase: Phase::Stopped,
            wal: old_primary,
            standby_signal: false,
            upstream: None,
            standby_names: String::new(),
        };
        b.rewind(&a.wal, 0);
        assert_eq!(b.wal.end, Lsn(10));
        assert!(a.wal.extends(&b.wal));
    }
}
