//! Typed identifiers: nodes, groups, PostgreSQL system identifiers and timelines.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A group name outside `[A-Za-z0-9.-]{1,100}`, or `.`/`..`.
    #[error("invalid group name {0:?}: use 1 to 100 characters from A-Z a-z 0-9 . - (not \".\" or \"..\")")]
    Group(String),
    /// A node id that is not `IPADDR:PORT` in canonical form.
    #[error("invalid node id {input:?}: {reason}")]
    Node {
        /// The rejected text (truncated to 100 characters).
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A system identifier that is not a decimal 64-bit number.
    #[error("invalid PostgreSQL system identifier {0:?}: expected a decimal 64-bit number")]
    SystemId(String),
    /// A node name outside `[A-Za-z0-9_-]{1,63}`.
    #[error("invalid node name {0:?}: use 1 to 63 characters from A-Z a-z 0-9 _ -")]
    NodeName(String),
    /// A timeline of 0 (PostgreSQL timelines start at 1).
    #[error("invalid timeline 0: PostgreSQL timelines start at 1")]
    Timeline,
}

fn truncated(s: &str) -> String {
    s.chars().take(100).collect()
}

/// The name of a PostgreSQL primary/replica group: `[A-Za-z0-9.-]{1,100}`.
///
/// `_` and `/` are excluded because group names are joined to node ids with `_` and used as
/// znode names; `.` and `..` are excluded because ZooKeeper forbids them as path components.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(String);

impl GroupName {
    /// Longest accepted group name, in bytes.
    pub const MAX_LEN: usize = 100;

    /// Validates `name`.
    ///
    /// # Errors
    /// [`IdError::Group`] when the name is empty, too long, `.`/`..`, or has another character.
    pub fn new(name: &str) -> Result<Self, IdError> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if valid {
            Ok(GroupName(name.to_owned()))
        } else {
            Err(IdError::Group(truncated(name)))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GroupName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GroupName::new(s)
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A node's short name for people (`node.name` in the deadman's config, e.g. `n0`):
/// `[A-Za-z0-9_-]{1,63}`, so it is safe in logs, tables and `application_name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    /// Validates `name`.
    ///
    /// # Errors
    /// [`IdError::NodeName`] when empty, longer than 63 bytes or with another character.
    pub fn new(name: &str) -> Result<Self, IdError> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(NodeName(name.to_owned()))
        } else {
            Err(IdError::NodeName(truncated(name)))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        NodeName::new(&s)
    }
}

impl From<NodeName> for String {
    fn from(name: NodeName) -> String {
        name.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A database node: the IP address and port of its PostgreSQL connect address.
///
/// Text form `IPADDR:PORT`, IPv6 in brackets (`[fd00::5]:5432`). Only the canonical spelling is
/// accepted (the one [`fmt::Display`] prints), so one node has exactly one znode name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(SocketAddr);

impl NodeId {
    /// Wraps a socket address.
    ///
    /// # Errors
    /// [`IdError::Node`] for port 0, or an IPv6 address with a scope id (a scope is local to
    /// one host and means nothing to the other members of the group).
    pub fn new(addr: SocketAddr) -> Result<Self, IdError> {
        let reject = |reason| IdError::Node {
            input: addr.to_string(),
            reason,
        };
        if addr.port() == 0 {
            return Err(reject("port 0 is not a connect address"));
        }
        if let SocketAddr::V6(v6) = addr {
            if v6.scope_id() != 0 || v6.flowinfo() != 0 {
                return Err(reject("IPv6 scope ids and flow labels are not allowed"));
            }
        }
        Ok(NodeId(addr))
    }

    /// The PostgreSQL connect address.
    pub fn addr(&self) -> SocketAddr {
        self.0
    }
}

impl FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let reject = |reason| IdError::Node {
            input: truncated(s),
            reason,
        };
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| reject("expected IPADDR:PORT, with IPv6 in brackets"))?;
        let node = NodeId::new(addr)?;
        if node.to_string() != s {
            return Err(reject("not in canonical form (write it as the address is printed, e.g. [::1]:5432, 10.0.0.1:5432)"));
        }
        Ok(node)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0.to_string())
    }
}

/// PostgreSQL's database system identifier (`pg_control_system().system_identifier`).
///
/// Stored in JSON as a decimal string: the value uses all 64 bits and JSON numbers that large
/// are silently rounded by many tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemId(pub u64);

impl FromStr for SystemId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::SystemId(truncated(s)));
        }
        s.parse()
            .map(SystemId)
            .map_err(|_| IdError::SystemId(truncated(s)))
    }
}

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A PostgreSQL timeline id; starts at 1 and grows by one at each promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Timeline(u32);

impl Timeline {
    /// The timeline of a freshly initialised cluster.
    pub const FIRST: Timeline = Timeline(1);

    /// Wraps a timeline number.
    ///
    /// # Errors
    /// [`IdError::Timeline`] for 0.
    pub fn new(id: u32) -> Result<Self, IdError> {
        if id == 0 {
            Err(IdError::Timeline)
        } else {
            Ok(Timeline(id))
        }
    }

    /// The timeline number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for Timeline {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Timeline::new(u32::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// Serde through the type's text form, for the identifiers stored as JSON strings.
macro_rules! serde_as_text {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_as_text!(GroupName, NodeId, SystemId);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv6Addr};

    #[test]
    fn group_names() {
        for ok in ["main", "db-1", "a.b", "A9", &"x".repeat(100)] {
            assert!(GroupName::new(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", ".", "..", "a_b", "a/b", "é", "a b", &"x".repeat(101)] {
            assert!(GroupName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_ids_accept_only_canonical_ip_and_port() {
        assert_eq!(
            "10.0.0.1:5432".parse::<NodeId>().unwrap().to_string(),
            "10.0.0.1:5432"
        );
        assert_eq!(
            "[fd00::5]:5432".parse::<NodeId>().unwrap().to_string(),
            "[fd00::5]:5432"
        );
        for bad in [
            "db1:5432",
            "10.0.0.1",
            "10.0.0.1:0",
            "fd00::5:5432",
            "[fd00:0::5]:5432",
            "[fe80::1%2]:5432",
            "010.0.0.1:5432",
            "10.0.0.1:05432",
            " 10.0.0.1:5432",
        ] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn system_ids_and_timelines() {
        assert_eq!(
            "18446744073709551615".parse::<SystemId>().unwrap(),
            SystemId(u64::MAX)
        );
        assert!("18446744073709551616".parse::<SystemId>().is_err());
        assert!("+1".parse::<SystemId>().is_err());
        assert!("".parse::<SystemId>().is_err());
        assert!(Timeline::new(0).is_err());
        assert_eq!(Timeline::new(7).unwrap().get(), 7);
    }

    proptest! {
        #[test]
        fn ipv4_node_ids_round_trip(ip in any::<[u8; 4]>(), port in 1u16..) {
            let node = NodeId::new(SocketAddr::new(IpAddr::from(ip), port)).unwrap();
            prop_assert_eq!(node.to_string().parse::<NodeId>().unwrap(), node);
        }

        #[test]
        fn ipv6_node_ids_round_trip(ip in any::<[u16; 8]>(), port in 1u16..) {
            let ip = Ipv6Addr::new(ip[0], ip[1], ip[2], ip[3], ip[4], ip[5], ip[6], ip[7]);
            let node = NodeId::new(SocketAddr::new(IpAddr::V6(ip), port)).unwrap();
            let text = node.to_string();
            prop_assert!(text.starts_with('['));
            prop_assert_eq!(text.parse::<NodeId>().unwrap(), node);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,60}") {
            let _ = s.parse::<NodeId>();
            let _ = GroupName::new(&s);
            let _ = s.parse::<SystemId>();
        }
    }
}
