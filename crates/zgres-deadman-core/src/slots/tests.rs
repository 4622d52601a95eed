//! The slot plan: what a primary and a replica create, advance and drop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use zgres_schema::documents::{GroupConfig, NodeState, Role, Tags, WalPositions};
use zgres_schema::slots::{PermanentSlot, SlotIdentifier, SlotKind};
use zgres_schema::{Lsn, NodeId, SlotName};

use super::*;

fn node(i: u8) -> NodeId {
    format!("10.0.0.{i}:5432").parse().unwrap()
}

fn slot_of(i: u8) -> SlotName {
    SlotName::for_member(node(i))
}

fn state(i: u8, role: Role, replay: u64) -> NodeState {
    NodeState {
        node: node(i),
        name: None,
        role,
        problems: vec![],
        warnings: vec![],
        timeline: None,
        system_id: None,
        wal: WalPositions {
            replay: (role == Role::Replica).then_some(Lsn(replay)),
            ..WalPositions::default()
        },
        upstream: None,
        tags: Tags::default(),
        meta: BTreeMap::new(),
        slots: BTreeMap::new(),
        pending_restart: vec![],
        updated_at_ms: 0,
        refresh_ms: None,
        takeover_wait_ms: None,
    }
}

fn local(name: SlotName, active: bool, at: u64) -> LocalSlot {
    LocalSlot {
        name,
        kind: SlotKind::Physical,
        active,
        restart_lsn: Some(Lsn(at)),
    }
}

fn primary_plan(
    keeper: &mut SlotKeeper,
    now: Instant,
    members: &[NodeState],
    slots: &[LocalSlot],
    config: &GroupConfig,
) -> Vec<SlotStep> {
    let members: Vec<&NodeState> = members.iter().collect();
    keeper.plan(&SlotInputs {
        now,
        me: node(0),
        role: SlotRole::Primary,
        members: &members,
        local: slots,
        config,
    })
}

#[test]
fn the_primary_creates_a_slot_for_every_other_member_and_the_permanent_ones() {
    let mut config = GroupConfig::default();
    let app = SlotName::new("app").unwrap();
    let archive = SlotName::new("archive").unwrap();
    config
        .slots
        .insert(
            app.clone(),
            PermanentSlot::Logical {
                plugin: SlotIdentifier::new("plugin", "pgoutput").unwrap(),
                database: SlotIdentifier::new("database", "postgres").unwrap(),
            },
        )
        .unwrap();
    config
        .slots
        .insert(archive.clone(), PermanentSlot::Physical)
        .unwrap();
    let members = [
        state(0, Role::Primary, 0),
        state(1, Role::Replica, 10),
        state(2, Role::Stopped, 0),
    ];
    let steps = primary_plan(
        &mut SlotKeeper::default(),
        Instant::now(),
        &members,
        &[local(slot_of(2), false, 5)],
        &config,
    );
    assert_eq!(
        steps,
        vec![
            SlotStep::CreatePhysical { name: slot_of(1) },
            SlotStep::CreateLogical {
                name: app,
                plugin: SlotIdentifier::new("plugin", "pgoutput").unwrap(),
                database: SlotIdentifier::new("database", "postgres").unwrap(),
            },
            SlotStep::CreatePhysical { name: archive },
        ],
        "no slot for itself, none twice; a stopped member's slot is kept where it is"
    );
}

#[test]
fn the_primary_advances_an_unused_member_slot_to_what_the_member_replayed() {
    let members = [state(1, Role::Replica, 100), state(2, Role::Replica, 100)];
    let slots = [local(slot_of(1), false, 40), local(slot_of(2), true, 40)];
    let steps = primary_plan(
        &mut SlotKeeper::default(),
        Instant::now(),
        &members,
        &slots,
        &GroupConfig::default(),
    );
    assert_eq!(
        steps,
        vec![SlotStep::Advance {
            name: slot_of(1),
            to: Lsn(100)
        }],
        "a slot in use is its consumer's to advance"
    );
    // Never backwards.
    let members = [state(1, Role::Replica, 30)];
    let steps = primary_plan(
        &mut SlotKeeper::default(),
        Instant::now(),
        &members,
        &slots[..1],
        &GroupConfig::default(),
    );
    assert_eq!(steps, vec![]);
}

#[test]
fn an_absent_members_slot_is_dropped_after_the_ttl_and_kept_if_it_returns() {
    let config = GroupConfig {
        member_slots_ttl_ms: 60_000,
        ..GroupConfig::default()
    };
    let mut keeper = SlotKeeper::default();
    let start = Instant::now();
    let slots = [local(slot_of(1), false, 40)];
    let minute = Duration::from_secs(60);
    assert_eq!(
        primary_plan(&mut keeper, start, &[], &slots, &config),
        vec![]
    );
    assert_eq!(
        primary_plan(&mut keeper, start + minute / 2, &[], &slots, &config),
        vec![]
    );
    // Back before the TTL: the clock starts again when it next leaves.
    let back = [state(1, Role::Stopped, 0)];
    assert_eq!(
        primary_plan(&mut keeper, start + minute * 3 / 4, &back, &slots, &config),
        vec![]
    );
    assert_eq!(
        primary_plan(&mut keeper, start + minute, &[], &slots, &config),
        vec![]
    );
    assert_eq!(
        primary_plan(&mut keeper, start + minute * 2, &[], &slots, &config),
        vec![SlotStep::Drop {
            name: slot_of(1),
            reason: DropReason::MemberAbsent { for_ms: 60_000 }
        }]
    );
    // Permanent and foreign slots are never dropped; nor is a slot in use.
    let kept = [
        local(SlotName::new("app").unwrap(), false, 1),
        local(slot_of(3), true, 1),
    ];
    let later = start + minute * 10;
    assert_eq!(
        primary_plan(&mut keeper, start, &[], &kept, &config),
        vec![]
    );
    assert_eq!(
        primary_plan(&mut keeper, later, &[], &kept, &config),
        vec![]
    );
}

#[test]
fn member_slots_off_drops_the_unused_member_slots_and_creates_none() {
    let config = GroupConfig {
        member_slots: false,
        ..GroupConfig::default()
    };
    let members = [state(1, Role::Replica, 100), state(2, Role::Replica, 100)];
    let slots = [local(slot_of(1), false, 40), local(slot_of(2), true, 40)];
    let steps = primary_plan(
        &mut SlotKeeper::default(),
        Instant::now(),
        &members,
        &slots,
        &config,
    );
    assert_eq!(
        steps,
        vec![SlotStep::Drop {
            name: slot_of(1),
            reason: DropReason::MemberSlotsOff
        }]
    );
    let upstream = NodeState {
        slots: [(slot_of(1), Some(Lsn(1)))].into_iter().collect(),
        ..state(0, Role::Primary, 0)
    };
    assert!(!streams_with_slot(&config, node(1), Some(&upstream)));
    assert!(streams_with_slot(
        &GroupConfig::default(),
        node(1),
        Some(&upstream)
    ));
    assert!(!streams_with_slot(
        &GroupConfig::default(),
        node(2),
        Some(&upstream)
    ));
    assert!(!streams_with_slot(&GroupConfig::default(), node(1), None));
}

#[test]
fn a_replica_copies_the_primarys_slots_but_its_own_and_follows_their_positions() {
    let primary = NodeState {
        slots: [
            (slot_of(1), Some(Lsn(50))),
            (slot_of(2), Some(Lsn(70))),
            (SlotName::new("archive").unwrap(), None),
        ]
        .into_iter()
        .collect(),
        ..state(0, Role::Primary, 0)
    };
    let slots = [
        local(slot_of(2), false, 60),
        local(slot_of(9), false, 60),
        local(SlotName::new("mine").unwrap(), false, 60),
    ];
    let steps = SlotKeeper::default().plan(&SlotInputs {
        now: Instant::now(),
        me: node(1),
        role: SlotRole::Replica { primary: &primary },
        members: &[],
        local: &slots,
        config: &GroupConfig::default(),
    });
    assert_eq!(
        steps,
        vec![
            SlotStep::CreatePhysical {
                name: SlotName::new("archive").unwrap()
            },
            SlotStep::Advance {
                name: slot_of(2),
                to: Lsn(70)
            },
            SlotStep::Drop {
                name: slot_of(9),
                reason: DropReason::NotOnThePrimary
            },
        ]
    );
}

proptest! {
    /// Whatever the members, slots and times: nothing in use and nothing not a member's is
    /// ever dropped; no slot is created that exists; no slot moves backwards; the primary
    /// never creates a slot for itself.
    #[test]
    fn the_plan_never_touches_what_it_must_not(
        present in proptest::collection::vec(any::<bool>(), 5),
        slots in proptest::collection::vec((0u8..6, any::<bool>(), 0u64..100), 0..8),
        replays in proptest::collection::vec(0u64..100, 5),
        ttl_ms in 0u64..100,
        elapsed_ms in proptest::collection::vec(0u64..100, 1..5),
        member_slots in any::<bool>(),
    ) {
        let config = GroupConfig { member_slots, member_slots_ttl_ms: ttl_ms, ..GroupConfig::default() };
        let members: Vec<NodeState> = (0..5u8)
            .filter(|i| present[*i as usize])
            .map(|i| state(i, Role::Replica, replays[i as usize]))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        let local_slots: Vec<LocalSlot> = slots
            .iter()
            .filter_map(|(i, active, at)| {
                let name = if *i == 5 { SlotName::new("app").unwrap() } else { slot_of(*i) };
                seen.insert(name.clone()).then(|| local(name, *active, *at))
            })
            .collect();
        let mut keeper = SlotKeeper::default();
        let start = Instant::now();
        let mut now = start;
        for step in elapsed_ms {
            now += Duration::from_millis(step);
            for planned in primary_plan(&mut keeper, now, &members, &local_slots, &config) {
                match planned {
                    SlotStep::Drop { name, reason } => {
                        let slot = local_slots.iter().find(|s| s.name == name).unwrap();
                        prop_assert!(!slot.active && name.is_member_slot());
                        if let DropReason::MemberAbsent { for_ms } = reason {
                            prop_assert!(for_ms >= ttl_ms);
                            prop_assert!(!members.iter().any(|m| m.node != node(0) && SlotName::for_member(m.node) == name));
                        }
                    }
                    SlotStep::CreatePhysical { name } | SlotStep::CreateLogical { name, .. } => {
                        prop_assert!(!local_slots.iter().any(|s| s.name == name));
                        prop_assert!(name != slot_of(0));
                    }
                    SlotStep::Advance { name, to } => {
                        let slot = local_slots.iter().find(|s| s.name == name).unwrap();
                        prop_assert!(!slot.active && slot.restart_lsn < Some(to));
                    }
                }
            }
        }
    }
}
