//! What a node publishes about itself: role, problems, warnings.

use super::*;
use crate::decision::{problems, role, warnings, WarningInputs};

#[test]
fn the_role_follows_the_probe() {
    assert_eq!(role(&primary()), Role::Primary);
    assert_eq!(role(&standby(10)), Role::Replica);
    assert_eq!(role(&stopped(DataDirKind::Primary)), Role::Stopped);
    let mut hung = standby(10);
    hung.probe = None;
    assert_eq!(role(&hung), Role::Unknown);
}

#[test]
fn a_primary_without_the_lock_or_a_stranger_system_is_unhealthy() {
    let now = Instant::now();
    let healthy = obs(now, LockView::Ours, primary(), vec![]);
    assert!(problems(&healthy, &[]).is_empty());
    let orphan = obs(now, LockView::Free, primary(), vec![]);
    assert_eq!(
        problems(&orphan, &[]),
        ["running as primary without the lock"]
    );
    let mut stranger = obs(now, LockView::Other(Some(node(2))), standby(10), vec![]);
    stranger.db_id = Fetched::Valid(SystemId(8));
    assert!(problems(&stranger, &[])[0].contains("differs from the group's"));
    let down = obs(now, LockView::Free, stopped(DataDirKind::Standby), vec![]);
    assert_eq!(
        problems(&down, &["vetoed by plugin az".to_owned()]),
        ["postgres is not running", "vetoed by plugin az"]
    );
}

#[test]
fn degraded_synchronous_mode_is_a_warning_of_the_primary_only() {
    let now = Instant::now();
    let mut o = obs(now, LockView::Ours, primary(), vec![]);
    o.config.synchronous_mode = SyncMode::Strict;
    let degraded = WarningInputs {
        config_problem: None,
        synchronous_degraded: true,
    };
    assert!(warnings(&o, degraded)[0].contains("commits wait"));
    o.config.synchronous_mode = SyncMode::On;
    assert!(warnings(&o, degraded)[0].contains("asynchronous until one is back"));
    let replica = obs(now, LockView::Other(Some(node(2))), standby(10), vec![]);
    assert!(warnings(&replica, degraded).is_empty());
    let unreadable = WarningInputs {
        config_problem: Some("/config unreadable"),
        synchronous_degraded: false,
    };
    assert_eq!(warnings(&replica, unreadable), ["/config unreadable"]);
}
