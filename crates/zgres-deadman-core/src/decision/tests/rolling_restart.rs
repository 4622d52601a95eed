//! A rolling restart (`zgresctl restart GROUP --scheduled`): each node hands the request on
//! once it runs again in its role.

use super::*;

fn rolling_restart_request(then: &[u8]) -> Fetched<NodeRequest> {
    Fetched::Valid(NodeRequest {
        action: NodeAction::Restart,
        requested_at_ms: 0,
        scheduled_at_ms: None,
        then: then.iter().map(|&n| node(n)).collect(),
    })
}

#[test]
fn a_rolling_restart_is_handed_on_only_once_this_node_runs_again() {
    let t = Instant::now();
    let mut d = decider(1);
    let holder = holder_on_timeline_1();
    let mut o = obs(
        t,
        LockView::Other(Some(node(2))),
        standby_of(100, 2),
        vec![fresh(holder)],
    );
    // This node (1) first, then 3, then the primary (2); a listed self is skipped.
    o.node_request = rolling_restart_request(&[1, 3, 2]);
    assert_eq!(
        d.decide(&o),
        [Action::RestartPostgres { primary: false }],
        "restarted, the request kept until the node is back"
    );
    // Starting again, not answering: nothing yet, and no second restart.
    o.postgres = LocalPostgres {
        probe: None,
        ..standby_of(100, 2)
    };
    assert_eq!(d.decide(&o), []);
    // Answering, but its WAL receiver has received nothing yet: still waiting.
    o.postgres = standby_of(100, 2);
    if let Some(p) = o.postgres.probe.as_mut() {
        p.receive_lsn = None;
    }
    assert_eq!(d.decide(&o), []);
    // Receiving WAL again: handed on to 3 (then 2), and this node's request deleted.
    o.postgres = standby_of(100, 2);
    assert_eq!(
        d.decide(&o),
        [
            Action::PassRestartOn {
                next: node(3),
                then: vec![node(2)],
            },
            Action::FinishNodeRequest
        ]
    );
}

#[test]
fn the_primary_last_in_a_rolling_restart_restarts_in_place_and_ends_it() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut o = obs(t, LockView::Ours, primary(), vec![]);
    o.node_request = rolling_restart_request(&[]);
    assert_eq!(d.decide(&o), [Action::RestartPostgres { primary: true }]);
    assert_eq!(d.decide(&o), [Action::FinishNodeRequest]);
    // A primary with nodes after it hands on once it holds the lock and runs again.
    let mut d = decider(1);
    o.node_request = rolling_restart_request(&[3]);
    assert_eq!(d.decide(&o), [Action::RestartPostgres { primary: true }]);
    assert_eq!(
        d.decide(&o),
        [
            Action::PassRestartOn {
                next: node(3),
                then: vec![],
            },
            Action::FinishNodeRequest
        ]
    );
}
