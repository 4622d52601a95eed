//! Whether a `/conn/{GROUP}_{NODE}` document may be used to reach its node.
//!
//! Its values end up in pgbouncer's databases file, HAProxy's configuration and templates, so
//! anyone able to write ZooKeeper could otherwise inject directives (a newline in `host`) or
//! point a group's clients anywhere (a foreign `host`). The rules: the host is the node id's
//! own address, or a strictly valid DNS name; the port is the node id's; the database name, if
//! any, is a plain identifier. Whether the znode is ephemeral is the reader's to check (it is
//! in the znode's stat, not its content).

use std::net::IpAddr;

use crate::documents::ConnInfo;
use crate::NodeId;

/// Longest database name PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_DBNAME: usize = 63;
/// Longest DNS name.
const MAX_HOSTNAME: usize = 253;

/// Why a `/conn` document is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnProblem {
    /// The host is an address other than the node id's.
    #[error("host {host} is not the address of node {node}")]
    ForeignAddress {
        /// The host given.
        host: String,
        /// The node of the znode.
        node: NodeId,
    },
    /// The host is neither an address nor a valid DNS name (at most 253 characters, labels of
    /// 1–63 letters, digits and inner hyphens).
    #[error("host {0:?} is not an IP address or a valid DNS name")]
    BadHost(String),
    /// The port is not the node id's.
    #[error("port {port} is not the port of node {node}")]
    ForeignPort {
        /// The port given.
        port: u16,
        /// The node of the znode.
        node: NodeId,
    },
    /// The database name is not 1–63 characters of letters, digits, `_`, `-` and `.`.
    #[error("dbname {0:?} is not 1 to 63 characters of A-Z a-z 0-9 _ - .")]
    BadDbname(String),
    /// The health API's port is 0.
    #[error("api_port 0 is not a port")]
    BadApiPort,
}

impl ConnInfo {
    /// Checks that this document may be used to reach `node` (see the module docs).
    ///
    /// # Errors
    /// The first rule it breaks, as [`ConnProblem`].
    pub fn check(&self, node: NodeId) -> Result<(), ConnProblem> {
        let truncated = |s: &str| s.chars().take(80).collect::<String>();
        match self.host.parse::<IpAddr>() {
            Ok(ip) if ip != node.addr().ip() => {
                return Err(ConnProblem::ForeignAddress {
                    host: self.host.clone(),
                    node,
                })
            }
            Ok(_) => {}
            Err(_) if !is_dns_name(&self.host) => {
                return Err(ConnProblem::BadHost(truncated(&self.host)))
            }
            Err(_) => {}
        }
        if self.port != node.addr().port() {
            return Err(ConnProblem::ForeignPort {
                port: self.port,
                node,
            });
        }
        if let Some(db) = &self.dbname {
            let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
            if db.is_empty() || db.len() > MAX_DBNAME || !db.chars().all(plain) {
                return Err(ConnProblem::BadDbname(truncated(db)));
            }
        }
        if self.api_port == Some(0) {
            return Err(ConnProblem::BadApiPort);
        }
        Ok(())
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= MAX_HOSTNAME
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::Tags;

    fn node() -> NodeId {
        "10.0.0.1:5432".parse().unwrap()
    }

    fn conn(host: &str, port: u16, dbname: Option<&str>) -> ConnInfo {
        ConnInfo {
            role: None,
            host: host.into(),
            port,
            dbname: dbname.map(Into::into),
            tags: Tags::default(),
            api_port: None,
        }
    }

    #[test]
    fn the_nodes_own_address_or_a_dns_name_passes() {
        for host in ["10.0.0.1", "db1.example.com", "db-1", "db1.example.com."] {
            assert_eq!(
                conn(host, 5432, Some("app_1")).check(node()),
                Ok(()),
                "{host}"
            );
        }
    }

    #[test]
    fn injected_foreign_and_oversized_values_are_refused() {
        let cases = [
            conn("10.0.0.1\nlisten_addr = *", 5432, None),
            conn("10.0.0.9", 5432, None),
            conn("10.0.0.1 port=6432", 5432, None),
            conn("-bad.example.com", 5432, None),
            conn(&"a".repeat(300), 5432, None),
            conn("10.0.0.1", 6432, None),
            conn("10.0.0.1", 5432, Some("app dbname=other")),
            conn("10.0.0.1", 5432, Some(&"d".repeat(64))),
            conn("10.0.0.1", 5432, Some("")),
            ConnInfo {
                api_port: Some(0),
                ..conn("10.0.0.1", 5432, None)
            },
        ];
        for c in cases {
            assert!(c.check(node()).is_err(), "{c:?}");
        }
        assert_eq!(
            conn("10.0.0.9", 5432, None).check(node()),
            Err(ConnProblem::ForeignAddress {
                host: "10.0.0.9".into(),
                node: node()
            })
        );
    }
}
