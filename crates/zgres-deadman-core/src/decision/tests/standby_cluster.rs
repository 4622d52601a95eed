//! A standby cluster: its lock holder streams from the primary outside the group and is never
//! promoted; its members cascade from it; removing `standby_cluster` promotes it.

use super::*;
use zgres_schema::documents::StandbyOf;
use zgres_schema::GroupName;

/// The external primary (node 9 is outside the group in these tests).
const SOURCE: u8 = 9;

/// An observation of node 1 in a standby cluster of group `main`, whose lock holder is
/// [`SOURCE`].
fn in_standby_cluster(
    now: Instant,
    lock: LockView,
    postgres: LocalPostgres,
    peers: Vec<Peer>,
) -> Observation {
    let mut o = obs(now, lock, postgres, peers);
    o.config.standby_cluster = Some(StandbyOf::Group(GroupName::new("main").unwrap()));
    o.standby_source = Some(node(SOURCE));
    o
}

#[test]
fn the_standby_leader_streams_from_the_source_and_is_never_promoted() {
    let t = Instant::now();
    let mut d = decider(1);
    // Running as a standby of something else: re-pointed at the source, not promoted.
    let elsewhere = in_standby_cluster(t, LockView::Ours, standby_of(10, 2), vec![]);
    assert_eq!(
        d.decide(&elsewhere),
        [Action::Repoint {
            upstream: node(SOURCE),
            slot: false
        }]
    );
    // Streaming from the source: nothing to do, however long it holds the lock.
    for later in [t, t + Duration::from_secs(3600)] {
        let settled = in_standby_cluster(later, LockView::Ours, standby_of(10, SOURCE), vec![]);
        let decision = d.decide_round(&settled, RoundInputs::default());
        assert_eq!(decision.actions, []);
        assert!(decision.published.problems.is_empty(), "{decision:?}");
    }
    // With the source unknown (its group has no primary), nothing either.
    let mut unknown = in_standby_cluster(t, LockView::Ours, standby_of(10, 2), vec![]);
    unknown.standby_source = None;
    let decision = d.decide_round(&unknown, RoundInputs::default());
    assert_eq!(decision.actions, []);
    assert!(
        decision
            .published
            .warnings
            .iter()
            .any(|w| w.contains("nothing to follow")),
        "{:?}",
        decision.published.warnings
    );
}

#[test]
fn the_standby_leader_clones_and_starts_from_the_source() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut empty_node = in_standby_cluster(t, LockView::Ours, empty(), vec![]);
    empty_node.db_id = Fetched::Absent;
    assert_eq!(
        d.decide(&empty_node),
        [Action::CloneFrom {
            source: node(SOURCE)
        }]
    );
    let stopped_standby =
        in_standby_cluster(t, LockView::Ours, stopped(DataDirKind::Standby), vec![]);
    assert_eq!(
        d.decide(&stopped_standby),
        [Action::StartStandby {
            upstream: Some(node(SOURCE)),
            slot: false
        }]
    );
    // Never started within the restart bound: the lock goes to a member that can run.
    let later = in_standby_cluster(
        t + Duration::from_secs(10),
        LockView::Ours,
        stopped(DataDirKind::Standby),
        vec![],
    );
    assert_eq!(d.decide(&later), [Action::ReleaseLock { quiet: true }]);
}

#[test]
fn the_standby_leader_records_the_database_it_copied() {
    let mut d = decider(1);
    let mut first = in_standby_cluster(
        Instant::now(),
        LockView::Ours,
        standby_of(10, SOURCE),
        vec![],
    );
    first.db_id = Fetched::Absent;
    let decision = d.decide_round(&first, RoundInputs::default());
    assert_eq!(
        decision.actions,
        [Action::RecordDatabase {
            system_id: SYS,
            timeline: Some(tl(1)),
            lsn: Lsn(10)
        }]
    );
}

#[test]
fn members_clone_from_and_follow_the_standby_leader() {
    let t = Instant::now();
    let mut d = decider(1);
    let leader = fresh(peer_state(2, Role::Replica, 10));
    let new_member = in_standby_cluster(
        t,
        LockView::Other(Some(node(2))),
        empty(),
        vec![leader.clone()],
    );
    assert_eq!(
        d.decide(&new_member),
        [Action::CloneFrom { source: node(2) }]
    );
    // In a normal group a holder running as a replica is no primary to clone.
    let mut normal = new_member.clone();
    normal.config.standby_cluster = None;
    assert_eq!(decider(1).decide(&normal), []);
    // A running member follows the standby leader, not the source.
    let member = in_standby_cluster(
        t,
        LockView::Other(Some(node(2))),
        standby_of(10, SOURCE),
        vec![leader],
    );
    assert!(
        matches!(
            d.decide(&member)[..],
            [Action::Repoint { upstream, .. }] if upstream == node(2)
        ),
        "{:?}",
        d.decide(&member)
    );
}

#[test]
fn removing_standby_cluster_promotes_the_standby_leader() {
    let mut d = decider(1);
    let mut promoted = in_standby_cluster(
        Instant::now(),
        LockView::Ours,
        standby_of(10, SOURCE),
        vec![],
    );
    assert_eq!(d.decide(&promoted), []);
    promoted.config.standby_cluster = None;
    promoted.standby_source = None;
    assert!(
        matches!(d.decide(&promoted)[..], [Action::Promote { .. }]),
        "{:?}",
        d.decide(&promoted)
    );
}

#[test]
fn a_standby_cluster_has_no_synchronous_mode_or_member_slots_in_force() {
    let config = GroupConfig {
        synchronous_mode: SyncMode::Strict,
        standby_cluster: Some(StandbyOf::Node(node(SOURCE))),
        ..GroupConfig::default()
    };
    let mut in_force = crate::group_config::ConfigInForce::default();
    in_force.observe(Fetched::Valid(config));
    let effective = in_force.effective();
    assert_eq!(effective.synchronous_mode, SyncMode::Off);
    assert!(!effective.member_slots);
}
