//! Who contends for a free lock: ranking, waiting for peers, tags, lag, timelines,
//! synchronous mode.

use super::*;

#[test]
fn the_most_advanced_replica_is_the_only_one_that_tries() {
    let t = Instant::now();
    let positions = [(1u8, 100u64), (2, 300), (3, 200)];
    let mut tried = vec![];
    for &(me, lsn) in &positions {
        let peers = positions
            .iter()
            .filter(|(i, _)| *i != me)
            .map(|&(i, l)| fresh(peer_state(i, Role::Replica, l)))
            .collect();
        let actions = decider(me).decide(&obs(t, LockView::Free, standby(lsn), peers));
        if actions.contains(&Action::AcquireLock) {
            tried.push(me);
        }
    }
    assert_eq!(tried, [2]);
}

#[test]
fn a_better_peer_is_waited_for_until_it_publishes_or_the_wait_ends() {
    let t = Instant::now();
    let mut d = decider(1);
    let stale = vec![Peer {
        state: peer_state(2, Role::Replica, 50),
        fresh: false,
    }];
    let first = d.decide(&obs(t, LockView::Free, standby(100), stale.clone()));
    assert_eq!(first, [Action::PublishState]);
    assert_eq!(d.last_ineligible(), Some(Ineligible::WaitingForPeers));
    let later = d.decide(&obs(
        t + Duration::from_secs(3),
        LockView::Free,
        standby(100),
        stale,
    ));
    assert_eq!(later, [Action::AcquireLock]);
}

#[test]
fn never_contends_when_tagged_nofailover_or_too_far_behind() {
    let t = Instant::now();
    let mut tagged = Decider::new(
        node(1),
        Tags {
            nofailover: true,
            ..Tags::default()
        },
        Duration::from_secs(10),
        Duration::ZERO,
    );
    let actions = tagged.decide(&obs(t, LockView::Free, standby(1 << 40), vec![]));
    assert!(!actions.contains(&Action::AcquireLock));

    // It saw the primary publish 10 MiB; it has 1 KiB; the limit is 1 MiB.
    let mut behind = decider(1);
    let primary_state = fresh(peer_state(9, Role::Primary, 10 << 20));
    behind.decide(&obs(
        t,
        LockView::Other(Some(node(9))),
        standby(1024),
        vec![primary_state],
    ));
    let actions = behind.decide(&obs(t, LockView::Free, standby(1024), vec![]));
    assert!(!actions.contains(&Action::AcquireLock));
    assert_eq!(behind.last_ineligible(), Some(Ineligible::TooFarBehind));
}

#[test]
fn a_vetoed_replica_never_contends() {
    let t = Instant::now();
    let mut o = obs(t, LockView::Free, standby(1 << 40), vec![]);
    o.vetoed = true;
    let mut d = decider(1);
    assert!(!d.decide(&o).contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::Vetoed));
}

#[test]
fn a_node_behind_the_groups_timeline_never_takes_the_lock() {
    let t = Instant::now();
    let mut d = decider(1);
    let mut o = obs(t, LockView::Free, standby(500), vec![]);
    o.group_timeline = Some(tl(2));
    assert!(!d.decide(&o).contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::TimelineBehind));
    // A stopped former primary on the old timeline neither.
    let mut old_primary = obs(t, LockView::Free, stopped(DataDirKind::Primary), vec![]);
    old_primary.group_timeline = Some(tl(2));
    assert!(!d.decide(&old_primary).contains(&Action::AcquireLock));
    o.group_timeline = Some(tl(1));
    assert!(d.decide(&o).contains(&Action::AcquireLock));
}

#[test]
fn in_synchronous_mode_only_listed_nodes_contend() {
    let t = Instant::now();
    let config = GroupConfig {
        synchronous_mode: zgres_schema::documents::SyncMode::On,
        ..GroupConfig::default()
    };
    let sync = SyncState {
        primary: node(9),
        standbys: [node(2)].into_iter().collect(),
        quorum: None,
    };
    // Node 1 has more WAL but is not synchronous: it stays out, and does not block node 2.
    let mut one = decider(1);
    let peers = vec![fresh(peer_state(2, Role::Replica, 500))];
    let mut o = obs(t, LockView::Free, standby(900), peers);
    o.config = config.clone();
    o.sync = Fetched::Valid(sync.clone());
    assert!(!one.decide(&o).contains(&Action::AcquireLock));
    assert_eq!(one.last_ineligible(), Some(Ineligible::NotSynchronous));
    let mut two = decider(2);
    let peers = vec![fresh(peer_state(1, Role::Replica, 900))];
    let mut o = obs(t, LockView::Free, standby(500), peers);
    o.config = config;
    o.sync = Fetched::Valid(sync);
    assert!(two.decide(&o).contains(&Action::AcquireLock));
}

#[test]
fn the_last_holder_is_known_even_before_it_published_a_position() {
    let mut d = decider(1);
    let o = obs(
        Instant::now(),
        LockView::Other(Some(node(2))),
        standby(100),
        vec![],
    );
    d.decide(&o);
    assert_eq!(d.last_primary_node(), Some(node(2)));
    assert_eq!(d.last_primary_position(), None);
}

#[test]
fn a_reload_tagging_the_node_nofailover_stops_it_contending_from_the_next_round() {
    let t = Instant::now();
    let mut d = Decider::new(
        node(1),
        Tags::default(),
        Duration::from_secs(10),
        Duration::ZERO,
    );
    d.reconfigure(
        Tags {
            nofailover: true,
            ..Tags::default()
        },
        Duration::from_secs(10),
        Duration::ZERO,
        Duration::from_secs(30),
    );
    let actions = d.decide(&obs(t, LockView::Free, standby(1 << 40), vec![]));
    assert!(!actions.contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::NoFailoverTag));
    // And back: the same free lock is contended once the tag is gone.
    d.reconfigure(
        Tags::default(),
        Duration::from_secs(10),
        Duration::ZERO,
        Duration::from_secs(30),
    );
    let actions = d.decide(&obs(t, LockView::Free, standby(1 << 40), vec![]));
    assert!(actions.contains(&Action::AcquireLock));
}

#[test]
fn a_vetoed_promotion_keeps_the_node_out_of_elections_for_a_while_and_wakes_it_after() {
    let t = Instant::now();
    let mut d = Decider::new(
        node(1),
        Tags::default(),
        Duration::from_secs(10),
        Duration::ZERO,
    );
    d.promotion_vetoed(t);
    let decision = d.decide_round(
        &obs(t, LockView::Free, standby(1 << 40), vec![]),
        RoundInputs::default(),
    );
    assert!(!decision.actions.contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::PromotionVetoed));
    assert!(
        decision
            .wake_at
            .is_some_and(|at| at <= t + PROMOTION_VETO_WAIT),
        "the loop looks again when the wait is over: {:?}",
        decision.wake_at
    );
    let later = t + PROMOTION_VETO_WAIT;
    let actions = d.decide(&obs(later, LockView::Free, standby(1 << 40), vec![]));
    assert!(actions.contains(&Action::AcquireLock));
}

#[test]
fn priority_zero_never_contends_and_never_outranks_a_peer() {
    let t = Instant::now();
    let zero = Tags {
        priority: 0,
        ..Tags::default()
    };
    // Alone and the most advanced: still never takes the lock.
    let mut d = Decider::new(
        node(1),
        zero.clone(),
        Duration::from_secs(10),
        Duration::from_secs(2),
    );
    let peers = vec![fresh(peer_state(2, Role::Replica, 100))];
    let actions = d.decide(&obs(t, LockView::Free, standby(500), peers));
    assert!(!actions.contains(&Action::AcquireLock), "{actions:?}");
    assert_eq!(d.last_ineligible(), Some(Ineligible::NoFailoverTag));
    // A priority-0 peer far ahead does not hold back a normal node.
    let mut ahead = peer_state(2, Role::Replica, 900);
    ahead.tags = zero;
    let actions = decider(1).decide(&obs(t, LockView::Free, standby(100), vec![fresh(ahead)]));
    assert!(actions.contains(&Action::AcquireLock), "{actions:?}");
}

/// The lock holder's `pre_promote` callback vetoed its promotion: the core gives the lock up,
/// quietly (the node is still a standby: nobody wrote under this lock), and never promotes.
#[test]
fn a_vetoed_promotion_gives_the_lock_up_quietly() {
    let t = Instant::now();
    let mut d = decider(1);
    let held = obs(t, LockView::Ours, standby(1 << 40), vec![]);
    assert!(matches!(
        d.decide(&held).as_slice(),
        [Action::Promote { .. }]
    ));
    d.promotion_vetoed(t);
    assert_eq!(d.decide(&held), [Action::ReleaseLock { quiet: true }]);
}
