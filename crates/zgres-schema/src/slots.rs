//! Replication slots: their names, and the permanent slots `/config/{GROUP}` declares.
//!
//! Slot names and the slots' declarations come from ZooKeeper, hostile input: a name is
//! checked against PostgreSQL's own rule (`[a-z0-9_]{1,63}`) when decoded, so it is safe to
//! put in SQL as a literal and in a configuration file; an output plugin and a database name
//! are plain identifiers. Which plugins a deadman loads is its own configuration's choice
//! (`[postgres] slot_plugins`), not ZooKeeper's.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// The prefix of the slots zgres keeps for the members of a group (one per member, named
/// from its node id). Permanent slots may not use it, so zgres never drops one of those.
pub const MEMBER_SLOT_PREFIX: &str = "zgres_";

/// Why a slot name or declaration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Not a PostgreSQL replication slot name.
    #[error("invalid replication slot name {0:?}: use 1 to 63 characters from a-z 0-9 _")]
    Name(String),
    /// A permanent slot whose name zgres keeps for members.
    #[error("replication slot name {0:?} is reserved: names starting with \"zgres_\" are the members' slots")]
    Reserved(String),
    /// A plugin or database name that is not a plain identifier.
    #[error(
        "invalid {what} {value:?} for a logical slot: use 1 to 63 characters from A-Z a-z 0-9 _ -"
    )]
    Identifier {
        /// `plugin` or `database`.
        what: &'static str,
        /// The rejected text (truncated).
        value: String,
    },
    /// A logical slot without its plugin or database, or a physical slot with one.
    #[error("{0}")]
    Shape(&'static str),
}

/// A replication slot's name: `[a-z0-9_]{1,63}`, PostgreSQL's rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SlotName(String);

impl SlotName {
    /// Checks `name`.
    ///
    /// # Errors
    /// [`SlotError::Name`] when it is empty, longer than 63 bytes or has another character.
    pub fn new(name: &str) -> Result<Self, SlotError> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(SlotName(name.to_owned()))
        } else {
            Err(SlotError::Name(name.chars().take(80).collect()))
        }
    }

    /// The slot zgres keeps for `member` on the primary (and copies on replicas):
    /// `zgres_` and the node id with its punctuation as `_` (`zgres_10_0_0_5_5432`; an IPv6
    /// address as its 32 hex digits, `zgres_v6_..._5432`). One node id, one name, and two
    /// node ids never share one.
    pub fn for_member(member: NodeId) -> SlotName {
        let addr = member.addr();
        let host = match addr.ip() {
            std::net::IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                format!("{a}_{b}_{c}_{d}")
            }
            std::net::IpAddr::V6(v6) => format!("v6_{:032x}", u128::from(v6)),
        };
        SlotName(format!("{MEMBER_SLOT_PREFIX}{host}_{}", addr.port()))
    }

    /// Whether this is a member's slot (zgres creates and drops those).
    pub fn is_member_slot(&self) -> bool {
        self.0.starts_with(MEMBER_SLOT_PREFIX)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SlotName {
    type Error = SlotError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        SlotName::new(&name)
    }
}

impl From<SlotName> for String {
    fn from(name: SlotName) -> String {
        name.0
    }
}

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A plugin or database name in a logical slot's declaration: `[A-Za-z0-9_-]{1,63}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SlotIdentifier(String);

impl SlotIdentifier {
    /// Checks `value` (`what` names it in the error).
    ///
    /// # Errors
    /// [`SlotError::Identifier`].
    pub fn new(what: &'static str, value: &str) -> Result<Self, SlotError> {
        let valid = !value.is_empty()
            && value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(SlotIdentifier(value.to_owned()))
        } else {
            Err(SlotError::Identifier {
                what,
                value: value.chars().take(80).collect(),
            })
        }
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SlotIdentifier {
    type Error = SlotError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SlotIdentifier::new("identifier", &value)
    }
}

impl From<SlotIdentifier> for String {
    fn from(value: SlotIdentifier) -> String {
        value.0
    }
}

impl fmt::Display for SlotIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Physical (WAL for a standby or `pg_receivewal`) or logical (decoded changes for a
/// consumer, in one database, through an output plugin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotKind {
    /// `pg_create_physical_replication_slot`.
    Physical,
    /// `pg_create_logical_replication_slot`.
    Logical,
}

/// A slot every primary of the group keeps (`slots` in `/config/{GROUP}`), as Patroni's
/// permanent slots: `{"type": "physical"}` or
/// `{"type": "logical", "plugin": "pgoutput", "database": "app"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPermanentSlot", into = "RawPermanentSlot")]
pub enum PermanentSlot {
    /// A physical slot.
    Physical,
    /// A logical slot.
    Logical {
        /// Its output plugin (the deadman creates it only when `[postgres] slot_plugins`
        /// allows the plugin).
        plugin: SlotIdentifier,
        /// The database it decodes.
        database: SlotIdentifier,
    },
}

/// A permanent slot's declaration as JSON spells it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPermanentSlot {
    #[serde(rename = "type")]
    kind: SlotKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    database: Option<String>,
}

impl TryFrom<RawPermanentSlot> for PermanentSlot {
    type Error = SlotError;
    fn try_from(raw: RawPermanentSlot) -> Result<Self, Self::Error> {
        match (raw.kind, raw.plugin, raw.database) {
            (SlotKind::Physical, None, None) => Ok(PermanentSlot::Physical),
            (SlotKind::Physical, _, _) => Err(SlotError::Shape(
                "a physical slot has no plugin or database",
            )),
            (SlotKind::Logical, Some(plugin), Some(database)) => Ok(PermanentSlot::Logical {
                plugin: SlotIdentifier::new("plugin", &plugin)?,
                database: SlotIdentifier::new("database", &database)?,
            }),
            (SlotKind::Logical, _, _) => Err(SlotError::Shape(
                "a logical slot needs \"plugin\" and \"database\"",
            )),
        }
    }
}

impl From<PermanentSlot> for RawPermanentSlot {
    fn from(slot: PermanentSlot) -> Self {
        match slot {
            PermanentSlot::Physical => RawPermanentSlot {
                kind: SlotKind::Physical,
                plugin: None,
                database: None,
            },
            PermanentSlot::Logical { plugin, database } => RawPermanentSlot {
                kind: SlotKind::Logical,
                plugin: Some(plugin.into()),
                database: Some(database.into()),
            },
        }
    }
}

impl PermanentSlot {
    /// Physical or logical.
    pub fn kind(&self) -> SlotKind {
        match self {
            PermanentSlot::Physical => SlotKind::Physical,
            PermanentSlot::Logical { .. } => SlotKind::Logical,
        }
    }
}

/// The permanent slots of `/config/{GROUP}`, by name; none may take a member's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<SlotName, PermanentSlot>",
    into = "BTreeMap<SlotName, PermanentSlot>"
)]
pub struct PermanentSlots(BTreeMap<SlotName, PermanentSlot>);

impl PermanentSlots {
    /// Checks `slots`.
    ///
    /// # Errors
    /// [`SlotError::Reserved`] for the first name that is a member's.
    pub fn new(slots: BTreeMap<SlotName, PermanentSlot>) -> Result<Self, SlotError> {
        match slots.keys().find(|n| n.is_member_slot()) {
            Some(reserved) => Err(SlotError::Reserved(reserved.to_string())),
            None => Ok(PermanentSlots(slots)),
        }
    }

    /// Whether none is declared.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The declared slots, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&SlotName, &PermanentSlot)> {
        self.0.iter()
    }

    /// The declaration of `name`, if any.
    pub fn get(&self, name: &SlotName) -> Option<&PermanentSlot> {
        self.0.get(name)
    }

    /// Declares `name` (replacing an earlier declaration).
    ///
    /// # Errors
    /// [`SlotError::Reserved`] for a member's name.
    pub fn insert(&mut self, name: SlotName, slot: PermanentSlot) -> Result<(), SlotError> {
        if name.is_member_slot() {
            return Err(SlotError::Reserved(name.to_string()));
        }
        self.0.insert(name, slot);
        Ok(())
    }

    /// Removes `name`'s declaration, if any.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|n, _| n.as_str() != name);
    }
}

impl TryFrom<BTreeMap<SlotName, PermanentSlot>> for PermanentSlots {
    type Error = SlotError;
    fn try_from(slots: BTreeMap<SlotName, PermanentSlot>) -> Result<Self, Self::Error> {
        PermanentSlots::new(slots)
    }
}

impl From<PermanentSlots> for BTreeMap<SlotName, PermanentSlot> {
    fn from(slots: PermanentSlots) -> Self {
        slots.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_slot_names_are_valid_distinct_and_stable() {
        let names: Vec<SlotName> = [
            "10.0.0.5:5432",
            "10.0.0.55:432",
            "127.0.0.1:5432",
            "[::1]:5432",
            "[fd00::5]:5432",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        ]
        .iter()
        .map(|n| SlotName::for_member(n.parse().unwrap()))
        .collect();
        for name in &names {
            assert_eq!(SlotName::new(name.as_str()).as_ref(), Ok(name));
            assert!(name.is_member_slot());
        }
        assert_eq!(names[0].as_str(), "zgres_10_0_0_5_5432");
        let distinct: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
    }

    #[test]
    fn hostile_slot_names_are_refused() {
        for bad in ["", "A", "x'y", "x y", "x\n", "a-b", &"a".repeat(64), "é"] {
            assert!(SlotName::new(bad).is_err(), "{bad:?}");
        }
        assert!(SlotName::new(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn permanent_slots_decode_only_in_their_two_shapes() {
        let decode = |text: &str| serde_json::from_str::<PermanentSlot>(text);
        assert_eq!(
            decode(r#"{"type":"physical"}"#).unwrap(),
            PermanentSlot::Physical
        );
        let logical = decode(r#"{"type":"logical","plugin":"pgoutput","database":"app"}"#).unwrap();
        assert_eq!(logical.kind(), SlotKind::Logical);
        assert_eq!(
            serde_json::to_string(&logical).unwrap(),
            r#"{"type":"logical","plugin":"pgoutput","database":"app"}"#
        );
        for bad in [
            r#"{"type":"physical","plugin":"pgoutput"}"#,
            r#"{"type":"logical","plugin":"pgoutput"}"#,
            r#"{"type":"logical","plugin":"../../x","database":"app"}"#,
            r#"{"type":"logical","plugin":"pgoutput","database":"a b"}"#,
            r#"{"type":"other"}"#,
            r#"{"type":"physical","extra":1}"#,
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn permanent_slots_may_not_take_a_members_name() {
        let decode = |text: &str| serde_json::from_str::<PermanentSlots>(text);
        let ok = decode(r#"{"app":{"type":"physical"}}"#).unwrap();
        assert!(ok.get(&SlotName::new("app").unwrap()).is_some());
        let err = decode(r#"{"app":{"type":"physical"},"zgres_1_2_3_4_5":{"type":"physical"}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        assert!(decode(r#"{"Bad":{"type":"physical"}}"#).is_err());
        let mut slots = PermanentSlots::default();
        assert!(slots
            .insert(SlotName::new("zgres_x").unwrap(), PermanentSlot::Physical)
            .is_err());
        assert!(slots.is_empty());
    }
}
