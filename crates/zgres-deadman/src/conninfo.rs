//! libpq connection strings: quoting a value, and reading back the upstream of a
//! `primary_conninfo` the deadman wrote.

use zgres_schema::NodeId;

/// A libpq connection-string value, quoted when needed.
pub fn value(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// The `host`/`port` of a `primary_conninfo`, as a node id when the host is an IP address,
/// but only when it names this node as `application_name` (else it was not written by us, and
/// the standby is re-pointed so the primary can recognise it).
pub fn upstream_of(conninfo: &str, application_name: &str) -> Option<NodeId> {
    let mut host = None;
    let mut port = Some(5432u16);
    let mut named = false;
    for pair in conninfo.split_whitespace() {
        match pair.split_once('=') {
            Some(("host", v)) | Some(("hostaddr", v)) => host = v.trim_matches('\'').parse().ok(),
            Some(("port", v)) => port = v.trim_matches('\'').parse().ok(),
            Some(("application_name", v)) => named = v.trim_matches('\'') == application_name,
            _ => {}
        }
    }
    if !named {
        return None;
    }
    NodeId::new(std::net::SocketAddr::new(host?, port?)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_upstream_in_primary_conninfo() {
        let me = "10.0.0.1:5432";
        assert_eq!(
            upstream_of(
                "host=10.0.0.2 port=5433 user=postgres application_name=10.0.0.1:5432",
                me
            )
            .map(|n| n.to_string()),
            Some("10.0.0.2:5433".into())
        );
        assert_eq!(
            upstream_of(
                "user=postgres host='::1' application_name='10.0.0.1:5432'",
                me
            )
            .map(|n| n.to_string()),
            Some("[::1]:5432".into())
        );
        assert_eq!(
            upstream_of("host=10.0.0.2 port=5433 application_name=n1", me),
            None,
            "not written by us: to be re-pointed"
        );
        assert_eq!(
            upstream_of(
                "host=db.example port=5432 application_name=10.0.0.1:5432",
                me
            ),
            None
        );
        assert_eq!(upstream_of("", me), None);
    }

    #[test]
    fn quotes_conninfo_values() {
        assert_eq!(value("postgres"), "postgres");
        assert_eq!(value("a b'c"), "'a b\\'c'");
    }
}
