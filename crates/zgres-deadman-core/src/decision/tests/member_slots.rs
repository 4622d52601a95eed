//! A standby streams with its member slot only once its upstream has it.

use super::*;

#[test]
fn a_standby_streams_with_its_slot_once_the_upstream_publishes_it() {
    let t = Instant::now();
    let mut d = decider(1);
    let holder = LockView::Other(Some(node(2)));
    let mut primary_with_slot = peer_state(2, Role::Primary, 5);
    primary_with_slot
        .slots
        .insert(zgres_schema::SlotName::for_member(node(1)), Some(Lsn(5)));
    // Started with the slot when the primary has it, without it otherwise.
    assert_eq!(
        d.decide(&obs(
            t,
            holder,
            stopped(DataDirKind::Standby),
            vec![fresh(primary_with_slot.clone())]
        )),
        [Action::StartStandby {
            upstream: Some(node(2)),
            slot: true,
        }]
    );
    let following = standby_of(1, 2);
    assert_eq!(
        d.decide(&obs(
            t,
            holder,
            following.clone(),
            vec![fresh(peer_state(2, Role::Primary, 5))]
        )),
        [],
        "no slot on the primary: streaming without one is right"
    );
    // The primary created it: re-pointed to use it, then left alone.
    assert_eq!(
        d.decide(&obs(
            t,
            holder,
            following.clone(),
            vec![fresh(primary_with_slot.clone())]
        )),
        [Action::Repoint {
            upstream: node(2),
            slot: true
        }]
    );
    let mut with_slot = following;
    with_slot.probe.as_mut().unwrap().member_slot = true;
    assert_eq!(
        d.decide(&obs(
            t,
            holder,
            with_slot.clone(),
            vec![fresh(primary_with_slot)]
        )),
        []
    );
    // The slot went away (dropped, or a new primary without it yet): off it again, since a
    // WAL receiver asking for a missing slot never streams.
    assert_eq!(
        d.decide(&obs(
            t,
            holder,
            with_slot,
            vec![fresh(peer_state(2, Role::Primary, 5))]
        )),
        [Action::Repoint {
            upstream: node(2),
            slot: false
        }]
    );
}
