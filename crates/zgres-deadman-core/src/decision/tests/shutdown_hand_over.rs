//! What a deadman's shutdown hands over: a primary holding the lock names the standby a
//! switchover would pick, so that it takes over without the takeover wait.

use super::*;
use crate::decision::ShutdownPlan;

fn replicas(lsns: &[(u8, u64)]) -> Vec<Peer> {
    lsns.iter()
        .map(|&(i, lsn)| fresh(peer_state(i, Role::Replica, lsn)))
        .collect()
}

fn hands_over_to(plan: ShutdownPlan) -> Option<NodeId> {
    match plan {
        ShutdownPlan::StopPostgres { hand_over_to, .. } => hand_over_to,
        ShutdownPlan::LeaveRunning { .. } => panic!("left running: {plan:?}"),
    }
}

#[test]
fn a_stopping_primary_hands_its_lock_to_the_best_streaming_standby() {
    let t = Instant::now();
    let d = decider(1);
    let ours = obs(
        t,
        LockView::Ours,
        primary(),
        replicas(&[(2, 900), (3, 1000)]),
    );
    assert_eq!(hands_over_to(d.shutdown_plan(&ours)), Some(node(3)));

    // Only a standby streaming from it: one that is not would leave the group without a
    // primary until the request timed out.
    let mut only_2 = ours.clone();
    only_2.postgres.streaming = Some([node(2)].into());
    assert_eq!(hands_over_to(d.shutdown_plan(&only_2)), Some(node(2)));
    let mut nobody = ours.clone();
    nobody.postgres.streaming = Some(Default::default());
    assert_eq!(hands_over_to(d.shutdown_plan(&nobody)), None);
    let mut unknown = ours.clone();
    unknown.postgres.streaming = None;
    assert_eq!(hands_over_to(d.shutdown_plan(&unknown)), None);
}

#[test]
fn nothing_is_handed_over_without_the_lock_a_running_primary_or_with_a_request_pending() {
    let t = Instant::now();
    let d = decider(1);
    let peers = replicas(&[(2, 1000)]);
    let not_ours = obs(t, LockView::Other(Some(node(2))), primary(), peers.clone());
    assert_eq!(hands_over_to(d.shutdown_plan(&not_ours)), None);
    let stopped = obs(
        t,
        LockView::Ours,
        stopped(DataDirKind::Primary),
        peers.clone(),
    );
    assert_eq!(hands_over_to(d.shutdown_plan(&stopped)), None);
    let as_standby = obs(t, LockView::Ours, standby(1000), peers.clone());
    assert_eq!(hands_over_to(d.shutdown_plan(&as_standby)), None);
    let mut requested = obs(t, LockView::Ours, primary(), peers.clone());
    requested.switchover = Some(Switchover {
        kind: SwitchoverKind::Switchover,
        from: Some(node(1)),
        to: None,
        scheduled_at_ms: Some(u64::MAX),
        requested_at_ms: 0,
        stopped_lsn: None,
    });
    assert_eq!(hands_over_to(d.shutdown_plan(&requested)), None);
    let mut paused = obs(t, LockView::Ours, primary(), peers);
    paused.config.paused = true;
    assert_eq!(
        d.shutdown_plan(&paused),
        ShutdownPlan::LeaveRunning { persist_lock: true }
    );
}
