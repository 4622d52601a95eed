//! Which group configuration is in force, given what `/config/{GROUP}` holds. Pure: no I/O.
//!
//! The rule: an unreadable or invalid `/config` never changes behaviour. Anyone who can write to
//! ZooKeeper could otherwise turn off synchronous mode or lift a pause by writing garbage, since
//! "unreadable" would fall back to the defaults. So the last valid configuration stays in force;
//! a deadman that has never read a valid one takes no automatic action (as if paused) until it
//! can. An absent `/config` is not an error: it means the defaults.

use zgres_schema::documents::{GroupConfig, SyncMode};
use zgres_schema::Fetched;

/// The configuration in force and why it may differ from `/config/{GROUP}`.
#[derive(Debug, Default)]
pub struct ConfigInForce {
    /// The last valid (or absent, hence default) configuration read.
    last_valid: Option<GroupConfig>,
    /// Why `/config` is not used as it stands, while it is unreadable.
    problem: Option<String>,
}

/// What changed with one read of `/config`, for the log (reported once per change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Nothing worth a log line.
    None,
    /// `/config` became (or changed while) unreadable; the reason and what stays in force.
    Unreadable(String),
    /// `/config` is readable again after being unreadable.
    Readable,
}

impl ConfigInForce {
    /// Takes one read of `/config` into account.
    pub fn observe(&mut self, read: Fetched<GroupConfig>) -> ConfigChange {
        match read {
            Fetched::Unreadable(e) => {
                let problem = format!(
                    "{}; {}",
                    e,
                    if self.last_valid.is_some() {
                        "keeping the last valid group config"
                    } else {
                        "no valid group config read yet: no automatic action"
                    }
                );
                if self.problem.as_ref() == Some(&problem) {
                    return ConfigChange::None;
                }
                self.problem = Some(problem.clone());
                ConfigChange::Unreadable(problem)
            }
            valid_or_absent => {
                self.last_valid = Some(valid_or_absent.into_valid().unwrap_or_default());
                match self.problem.take() {
                    Some(_) => ConfigChange::Readable,
                    None => ConfigChange::None,
                }
            }
        }
    }

    /// The configuration to act on: the last valid one, or — when none was ever read — the
    /// defaults with `paused` set, so that nothing automatic happens.
    /// In a standby cluster nothing commits locally: synchronous mode and member slots are
    /// off whatever `/config` says (they apply again once the cluster is promoted).
    pub fn effective(&self) -> GroupConfig {
        let mut config = self.last_valid.clone().unwrap_or(GroupConfig {
            paused: true,
            ..GroupConfig::default()
        });
        if config.standby_cluster.is_some() {
            config.synchronous_mode = SyncMode::Off;
            config.member_slots = false;
        }
        config
    }

    /// Whether a valid configuration was ever read (synchronous replication is only managed
    /// then: its mode is unknown before).
    pub fn is_known(&self) -> bool {
        self.last_valid.is_some()
    }

    /// Why `/config` is not used as it stands, while it is unreadable.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zgres_schema::{decode, DecodeError};

    fn garbage(data: &[u8]) -> Fetched<GroupConfig> {
        let e: DecodeError = decode::<GroupConfig>("/zgres/config/main", data).unwrap_err();
        Fetched::Unreadable(e)
    }

    fn synchronous() -> GroupConfig {
        GroupConfig {
            synchronous_mode: SyncMode::On,
            ..GroupConfig::default()
        }
    }

    #[test]
    fn garbage_keeps_the_last_valid_config() {
        let mut keeper = ConfigInForce::default();
        assert_eq!(
            keeper.observe(Fetched::Valid(synchronous())),
            ConfigChange::None
        );
        for bad in [
            &b"{junk"[..],
            b"[1]",
            br#"{"v":9}"#,
            br#"{"v":1,"paused":"no"}"#,
        ] {
            assert!(matches!(
                keeper.observe(garbage(bad)),
                ConfigChange::Unreadable(_)
            ));
            assert_eq!(
                keeper.effective(),
                synchronous(),
                "{:?}",
                std::str::from_utf8(bad)
            );
            assert!(keeper.problem().unwrap().contains("keeping the last valid"));
        }
        assert_eq!(
            keeper.observe(garbage(br#"{"v":1,"paused":"no"}"#)),
            ConfigChange::None,
            "the same problem is reported once"
        );
        assert_eq!(keeper.observe(Fetched::Absent), ConfigChange::Readable);
        assert_eq!(
            keeper.effective(),
            GroupConfig::default(),
            "absent means defaults"
        );
        assert_eq!(keeper.problem(), None);
    }

    #[test]
    fn never_valid_means_no_automatic_action() {
        let mut keeper = ConfigInForce::default();
        assert!(!keeper.is_known());
        assert!(
            matches!(keeper.observe(garbage(b"{junk")), ConfigChange::Unreadable(p) if p.contains("no automatic action"))
        );
        assert!(keeper.effective().paused);
        assert!(!keeper.is_known());
        keeper.observe(Fetched::Valid(synchronous()));
        assert!(keeper.is_known());
        assert!(!keeper.effective().paused);
    }
}
