//! Replication slots, kept as a pure plan: which slots the local PostgreSQL should create,
//! advance or drop this round. No I/O; the shell reads `pg_replication_slots` and carries the
//! steps out.
//!
//! - **The primary** keeps a physical slot for every other member in `/state`
//!   ([`SlotName::for_member`]), so a replica that was down resumes streaming however much
//!   WAL was written meanwhile, and the permanent slots of `/config`. A member slot nobody
//!   streams from (the member is down, or cascades from another replica) is advanced to the
//!   position the member publishes, so it holds only the WAL the member still needs. The slot
//!   of a member absent from `/state` for `member_slots_ttl_ms` is dropped: a slot retains
//!   WAL without bound, and a primary's disk is worth more than a lost member.
//! - **A replica** keeps copies of the physical slots the primary publishes (but its own), and
//!   advances each unused copy to the primary's position for it, so the next primary has
//!   every member's slot from the moment it is promoted. It drops member copies the primary
//!   no longer has. PostgreSQL 15 cannot keep a logical slot on a standby: a new primary
//!   creates permanent logical slots afresh, at its current position.
//!
//! Only slots named as members' ([`SlotName::is_member_slot`]) are ever dropped; a slot in
//! use is never touched (PostgreSQL refuses, and its consumer advances it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use zgres_schema::documents::{GroupConfig, NodeState, Role};
use zgres_schema::slots::{PermanentSlot, SlotIdentifier, SlotKind};
use zgres_schema::{Lsn, NodeId, SlotName};

/// A slot of the local PostgreSQL (`pg_replication_slots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSlot {
    /// `slot_name`.
    pub name: SlotName,
    /// `slot_type`.
    pub kind: SlotKind,
    /// `active`: a consumer streams from it now.
    pub active: bool,
    /// `restart_lsn`: the oldest WAL it retains (unset when it reserves none).
    pub restart_lsn: Option<Lsn>,
}

/// One step on the local slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotStep {
    /// `pg_create_physical_replication_slot(name, true)`: reserving WAL at once.
    CreatePhysical {
        /// The slot.
        name: SlotName,
    },
    /// `pg_create_logical_replication_slot(name, plugin)`, connected to `database`.
    CreateLogical {
        /// The slot.
        name: SlotName,
        /// Its output plugin.
        plugin: SlotIdentifier,
        /// Its database.
        database: SlotIdentifier,
    },
    /// `pg_replication_slot_advance(name, to)` (PostgreSQL stops at what it has replayed).
    Advance {
        /// The slot.
        name: SlotName,
        /// The position to move it to.
        to: Lsn,
    },
    /// `pg_drop_replication_slot(name)`.
    Drop {
        /// The slot.
        name: SlotName,
        /// Why, for the log.
        reason: DropReason,
    },
}

/// Why a slot is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its member has been absent from `/state` longer than `member_slots_ttl_ms`.
    MemberAbsent {
        /// For how long.
        for_ms: u64,
    },
    /// `member_slots` is off in `/config`.
    MemberSlotsOff,
    /// A replica's copy of a slot the primary no longer has (or of its own).
    NotOnThePrimary,
}

/// What this node is, for its slots.
#[derive(Debug, Clone, Copy)]
pub enum SlotRole<'a> {
    /// The running primary holding the lock.
    Primary,
    /// A running standby; the primary's published state.
    Replica {
        /// The lock holder's `/state`, while it runs as a primary.
        primary: &'a NodeState,
    },
}

/// What the slot plan is made from, one round.
#[derive(Debug, Clone, Copy)]
pub struct SlotInputs<'a> {
    /// Now, on the monotonic clock.
    pub now: Instant,
    /// This node.
    pub me: NodeId,
    /// Primary or replica.
    pub role: SlotRole<'a>,
    /// The other members' `/state` (every member's, on the primary).
    pub members: &'a [&'a NodeState],
    /// The local PostgreSQL's slots.
    pub local: &'a [LocalSlot],
    /// The group configuration in force.
    pub config: &'a GroupConfig,
}

/// Keeps, across rounds, since when each member slot's member has been absent.
#[derive(Debug, Default)]
pub struct SlotKeeper {
    absent_since: BTreeMap<SlotName, Instant>,
}

impl SlotKeeper {
    /// The steps to take this round, in order (creations first).
    pub fn plan(&mut self, inputs: &SlotInputs<'_>) -> Vec<SlotStep> {
        match inputs.role {
            SlotRole::Primary => self.as_primary(inputs),
            SlotRole::Replica { primary } => {
                self.absent_since.clear();
                as_replica(inputs, primary)
            }
        }
    }

    /// Forgets the absence times (the node is no longer the primary).
    pub fn reset(&mut self) {
        self.absent_since.clear();
    }

    fn as_primary(&mut self, inputs: &SlotInputs<'_>) -> Vec<SlotStep> {
        let config = inputs.config;
        let members: BTreeMap<SlotName, &NodeState> = inputs
            .members
            .iter()
            .filter(|m| m.node != inputs.me)
            .map(|m| (SlotName::for_member(m.node), *m))
            .collect();
        let local: BTreeMap<&SlotName, &LocalSlot> =
            inputs.local.iter().map(|s| (&s.name, s)).collect();
        let mut steps = Vec::new();
        if config.member_slots {
            for name in members.keys().filter(|n| !local.contains_key(n)) {
                steps.push(SlotStep::CreatePhysical { name: name.clone() });
            }
        }
        for (name, declared) in config.slots.iter() {
            if !local.contains_key(name) {
                steps.push(create(name, declared));
            }
        }
        self.absent_since.retain(|name, _| {
            local.contains_key(name) && !(config.member_slots && members.contains_key(name))
        });
        for slot in inputs.local.iter().filter(|s| s.name.is_member_slot()) {
            if slot.active || slot.kind != SlotKind::Physical {
                continue;
            }
            if !config.member_slots {
                steps.push(SlotStep::Drop {
                    name: slot.name.clone(),
                    reason: DropReason::MemberSlotsOff,
                });
                continue;
            }
            match members.get(&slot.name) {
                Some(member) => {
                    if let Some(to) = advance_to(slot, member_position(member)) {
                        steps.push(SlotStep::Advance {
                            name: slot.name.clone(),
                            to,
                        });
                    }
                }
                None => {
                    let since = *self
                        .absent_since
                        .entry(slot.name.clone())
                        .or_insert(inputs.now);
                    let absent = inputs.now.saturating_duration_since(since);
                    if absent >= Duration::from_millis(config.member_slots_ttl_ms) {
                        self.absent_since.remove(&slot.name);
                        steps.push(SlotStep::Drop {
                            name: slot.name.clone(),
                            reason: DropReason::MemberAbsent {
                                for_ms: absent.as_millis() as u64,
                            },
                        });
                    }
                }
            }
        }
        steps
    }
}

fn create(name: &SlotName, declared: &PermanentSlot) -> SlotStep {
    match declared {
        PermanentSlot::Physical => SlotStep::CreatePhysical { name: name.clone() },
        PermanentSlot::Logical { plugin, database } => SlotStep::CreateLogical {
            name: name.clone(),
            plugin: plugin.clone(),
            database: database.clone(),
        },
    }
}

/// The WAL a member still needs from: what a running replica has replayed (it asks for the
/// WAL after what it received, and replays from its own `pg_wal` up to there).
fn member_position(member: &NodeState) -> Option<Lsn> {
    (member.role == Role::Replica)
        .then_some(member.wal.replay)
        .flatten()
}

/// Where to advance an unused slot, when `target` is past its position.
fn advance_to(slot: &LocalSlot, target: Option<Lsn>) -> Option<Lsn> {
    let target = target?;
    match slot.restart_lsn {
        Some(at) if at < target => Some(target),
        _ => None,
    }
}

fn as_replica(inputs: &SlotInputs<'_>, primary: &NodeState) -> Vec<SlotStep> {
    let mine = SlotName::for_member(inputs.me);
    let wanted: BTreeMap<&SlotName, Option<Lsn>> = if inputs.config.member_slots {
        primary
            .slots
            .iter()
            .filter(|(name, _)| **name != mine)
            .map(|(name, at)| (name, *at))
            .collect()
    } else {
        BTreeMap::new()
    };
    let local: BTreeMap<&SlotName, &LocalSlot> =
        inputs.local.iter().map(|s| (&s.name, s)).collect();
    let mut steps: Vec<SlotStep> = wanted
        .keys()
        .filter(|name| !local.contains_key(*name))
        .map(|name| SlotStep::CreatePhysical {
            name: (*name).clone(),
        })
        .collect();
    for slot in inputs
        .local
        .iter()
        .filter(|s| !s.active && s.kind == SlotKind::Physical)
    {
        match wanted.get(&slot.name) {
            Some(at) => {
                if let Some(to) = advance_to(slot, *at) {
                    steps.push(SlotStep::Advance {
                        name: slot.name.clone(),
                        to,
                    });
                }
            }
            None if slot.name.is_member_slot() => steps.push(SlotStep::Drop {
                name: slot.name.clone(),
                reason: if inputs.config.member_slots {
                    DropReason::NotOnThePrimary
                } else {
                    DropReason::MemberSlotsOff
                },
            }),
            None => {}
        }
    }
    steps
}

/// Whether a standby should stream with its member slot from `upstream` (whose published
/// state it is): member slots are on and the upstream lists the slot, so the WAL receiver
/// never asks for a slot that does not exist (it would retry for ever).
pub fn streams_with_slot(config: &GroupConfig, me: NodeId, upstream: Option<&NodeState>) -> bool {
    config.member_slots && upstream.is_some_and(|u| u.slots.contains_key(&SlotName::for_member(me)))
}

#[cfg(test)]
mod tests;
