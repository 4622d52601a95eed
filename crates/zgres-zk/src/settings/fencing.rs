//! The `[zookeeper]` keys only the deadman reads, because only it fences: the fence margin and
//! the ensemble's timing, from which a new primary's takeover wait follows (a ZooKeeper member
//! cut from its leader answers its clients for `syncLimit` ticks; see `zgres-deadman-core`'s
//! `decision::takeover`).

use std::time::Duration;

use zgres_config::Problems;

use super::ZookeeperSection;

/// ZooKeeper's default `tickTime` (zoo.cfg), assumed when `ensemble_tick_ms` is absent.
pub const ZOOKEEPER_DEFAULT_TICK: Duration = Duration::from_millis(2_000);
/// ZooKeeper's default `syncLimit` (zoo.cfg), assumed when `ensemble_sync_limit` is absent.
pub const ZOOKEEPER_DEFAULT_SYNC_LIMIT: u32 = 5;
/// Accepted `ensemble_tick_ms` values.
const TICK_RANGE_MS: std::ops::RangeInclusive<u64> = 1..=60_000;
/// Largest accepted `ensemble_sync_limit`.
const MAX_SYNC_LIMIT: u32 = 1_000;

/// The ensemble's timing as the operator declared it (zoo.cfg's `tickTime` and `syncLimit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnsembleTiming {
    /// `tickTime`.
    pub tick: Duration,
    /// `syncLimit` in ticks; 0 for a standalone server.
    pub sync_limit: u32,
    /// Whether the operator declared both (else ZooKeeper's defaults stand in for what is
    /// missing).
    pub declared: bool,
}

impl EnsembleTiming {
    /// How long a follower cut from its leader goes on serving its clients: `syncLimit ×
    /// tickTime` (its read timeout on the leader's connection).
    pub fn follower_timeout(&self) -> Duration {
        self.tick.saturating_mul(self.sync_limit)
    }

    /// The session timeout the ensemble grants for `asked`: at least two ticks (ZooKeeper's
    /// default `minSessionTimeout`).
    pub fn granted(&self, asked: Duration) -> Duration {
        asked.max(self.tick.saturating_mul(2))
    }
}

/// The longest an idle session of this crate's client stays silent: its keep-alive ping
/// interval, a fifth of the session timeout, at most 10 s (the zgres patch of the vendored
/// zookeeper-client, `vendor/zookeeper-client/PATCHES.md`). Requests only shorten the gaps.
pub fn idle_ping_gap(session_timeout: Duration) -> Duration {
    (session_timeout / 5).min(Duration::from_secs(10))
}

impl ZookeeperSection {
    /// The deadman's fence margin (`default` when absent): above zero and at most half of the
    /// session timeout asked for (`default_session_timeout` when absent), else a problem under
    /// `zookeeper.fence_margin_ms`.
    pub fn fence_margin(
        &self,
        default: Duration,
        default_session_timeout: Duration,
        problems: &mut Problems,
    ) -> Duration {
        let session_timeout = self
            .session_timeout_ms
            .map_or(default_session_timeout, Duration::from_millis);
        let margin = self.fence_margin_ms.map_or(default, Duration::from_millis);
        if margin.is_zero() || margin * 2 > session_timeout {
            problems.add(
                "zookeeper.fence_margin_ms",
                "must be above 0 and at most half of zookeeper.session_timeout_ms",
            );
        }
        margin
    }

    /// The ensemble's timing (ZooKeeper's defaults, 2000 ms and 5, for absent keys); a bad
    /// value is a problem under its key.
    pub fn ensemble(&self, problems: &mut Problems) -> EnsembleTiming {
        let tick_ms = self
            .ensemble_tick_ms
            .unwrap_or(ZOOKEEPER_DEFAULT_TICK.as_millis() as u64);
        if !TICK_RANGE_MS.contains(&tick_ms) {
            problems.add(
                "zookeeper.ensemble_tick_ms",
                "must be the ensemble's tickTime, between 1 and 60000",
            );
        }
        let sync_limit = self
            .ensemble_sync_limit
            .unwrap_or(ZOOKEEPER_DEFAULT_SYNC_LIMIT);
        if sync_limit > MAX_SYNC_LIMIT {
            problems.add(
                "zookeeper.ensemble_sync_limit",
                format!("must be the ensemble's syncLimit (0 for a standalone server), at most {MAX_SYNC_LIMIT}"),
            );
        }
        EnsembleTiming {
            tick: Duration::from_millis(
                tick_ms.clamp(*TICK_RANGE_MS.start(), *TICK_RANGE_MS.end()),
            ),
            sync_limit: sync_limit.min(MAX_SYNC_LIMIT),
            declared: self.ensemble_tick_ms.is_some() && self.ensemble_sync_limit.is_some(),
        }
    }

    /// For a program that does not fence: the deadman's keys are a mistake worth naming (the
    /// operator may think they protect something).
    pub fn reject_fencing_keys(&self, program: &str, problems: &mut Problems) {
        let set = [
            ("zookeeper.fence_margin_ms", self.fence_margin_ms.is_some()),
            (
                "zookeeper.ensemble_tick_ms",
                self.ensemble_tick_ms.is_some(),
            ),
            (
                "zookeeper.ensemble_sync_limit",
                self.ensemble_sync_limit.is_some(),
            ),
        ];
        for (key, _) in set.into_iter().filter(|(_, present)| *present) {
            problems.add(
                key,
                format!("{program} does not fence; only zgres-deadman reads this key"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> ZookeeperSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_fencing_keys_are_the_deadmans_alone() {
        let s = section(
            "connect = \"a:1\"\nfence_margin_ms = 3000\nensemble_tick_ms = 100\nensemble_sync_limit = 5",
        );
        let mut problems = Problems::default();
        s.fence_margin(
            Duration::from_secs(1),
            Duration::from_secs(4),
            &mut problems,
        );
        assert_eq!(problems.len(), 1, "3000 is more than half of 4000");
        let mut problems = Problems::default();
        s.reject_fencing_keys("zgres-sync", &mut problems);
        let keys: Vec<_> = problems.iter().map(|p| p.key.clone()).collect();
        assert_eq!(
            keys,
            [
                "zookeeper.fence_margin_ms",
                "zookeeper.ensemble_tick_ms",
                "zookeeper.ensemble_sync_limit"
            ]
        );
    }

    #[test]
    fn the_ensemble_defaults_to_zookeepers_own_timing_and_bad_values_name_their_key() {
        let mut problems = Problems::default();
        let defaults = section("connect = \"a:1\"").ensemble(&mut problems);
        assert!(problems.is_empty());
        assert!(!defaults.declared);
        assert_eq!(defaults.follower_timeout(), Duration::from_secs(10));
        assert_eq!(
            defaults.granted(Duration::from_secs(1)),
            Duration::from_secs(4)
        );
        let declared =
            section("connect = \"a:1\"\nensemble_tick_ms = 100\nensemble_sync_limit = 0")
                .ensemble(&mut problems);
        assert!(problems.is_empty());
        assert!(declared.declared);
        assert_eq!(declared.follower_timeout(), Duration::ZERO);
        section("connect = \"a:1\"\nensemble_tick_ms = 0\nensemble_sync_limit = 5000")
            .ensemble(&mut problems);
        let keys: Vec<_> = problems.iter().map(|p| p.key.clone()).collect();
        assert_eq!(
            keys,
            [
                "zookeeper.ensemble_tick_ms",
                "zookeeper.ensemble_sync_limit"
            ]
        );
    }

    #[test]
    fn an_idle_session_pings_every_fifth_of_its_timeout_at_most_ten_seconds_apart() {
        assert_eq!(
            idle_ping_gap(Duration::from_secs(4)),
            Duration::from_millis(800)
        );
        assert_eq!(
            idle_ping_gap(Duration::from_secs(120)),
            Duration::from_secs(10)
        );
    }
}
