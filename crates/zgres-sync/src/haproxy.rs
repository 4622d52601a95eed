//! The bundled HAProxy configuration: per group a `{group}_primary` backend (the healthy
//! primary only, so writes never reach anything else) and a `{group}_replicas` backend that
//! balances reads over every healthy replica, whatever its port, honouring `noloadbalance` and,
//! when `replica_max_lag` is set, each replica's lag as its health API reports it
//! (`GET /read-only?lag=`, the Patroni-compatible check); a replica that falls behind has its
//! sessions closed (`on-marked-down shutdown-sessions`), since a pooler in front would otherwise
//! keep reusing them. Frontends stay in the operator's own configuration file.

mod master_cli;

pub use master_cli::{reload, MasterCliError};

/// A lag limit as the deadman's health API takes it: bytes, or a number with `kB`, `MB` or
/// `GB`. Checked when the configuration is read, so the value can go into HAProxy's
/// configuration as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLag(String);

impl ReplicaLag {
    /// `text` if it is 1 to 15 digits with an optional `kB`, `MB` or `GB`.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = ["kB", "MB", "GB"]
            .iter()
            .find_map(|unit| text.strip_suffix(unit))
            .unwrap_or(text);
        let valid = (1..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit());
        valid.then(|| ReplicaLag(text.to_owned()))
    }

    /// The limit as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const TEMPLATE: &str = r#"# Written by zgres-sync; changes here are overwritten.
{% for name, g in groups|items %}
backend {{ name }}_primary
    mode tcp
{%- if g.primary %}
    server {{ g.primary.node|server_name }} {{ g.primary.host }}:{{ g.primary.port }} check inter 1s fall 2 rise 1
{%- endif %}

backend {{ name }}_replicas
    mode tcp
    balance roundrobin
{%- if replica_max_lag %}
    # Each server's health API says whether it may serve reads within the lag limit.
    option httpchk GET /read-only?lag={{ replica_max_lag }}
    http-check expect status 200
{%- endif %}
{%- for r in g.replicas %}{% if not r.tags.noloadbalance %}
{%- if replica_max_lag and not r.api_port %}
    # {{ r.node }} left out: it publishes no health API port, so its lag cannot be checked
{%- else %}
    server {{ r.node|server_name }} {{ r.host }}:{{ r.port }} check inter 1s fall 2 rise 1{% if replica_max_lag %} port {{ r.api_port }} on-marked-down shutdown-sessions{% endif %}
{%- endif %}
{%- endif %}{% endfor %}
{%- if g.primary and not (replica_max_lag and not g.primary.api_port) %}
    server {{ g.primary.node|server_name }} {{ g.primary.host }}:{{ g.primary.port }} check inter 1s fall 2 rise 1{% if replica_max_lag %} port {{ g.primary.api_port }}{% endif %} backup
{%- endif %}
{% endfor %}
"#;

/// The template text, with the lag limit (if any) set at its top.
pub fn template(replica_max_lag: Option<&ReplicaLag>) -> String {
    let limit = match replica_max_lag {
        // Validated: digits and a unit, nothing that could close the string.
        Some(lag) => format!("\"{}\"", lag.as_str()),
        None => "none".to_owned(),
    };
    format!("{{% set replica_max_lag = {limit} %}}{TEMPLATE}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Endpoint, GroupSnapshot, Snapshot};
    use crate::template::render;
    use zgres_schema::documents::Tags;
    use zgres_schema::GroupName;

    fn endpoint(i: u8, api_port: Option<u16>) -> Endpoint {
        Endpoint {
            node: format!("10.0.0.{i}:{}", 5430 + u16::from(i))
                .parse()
                .unwrap(),
            host: format!("10.0.0.{i}"),
            port: 5430 + u16::from(i),
            dbname: None,
            tags: Tags::default(),
            api_port,
        }
    }

    fn snapshot(primary: Option<u8>, replicas: &[(u8, Option<u16>)]) -> Snapshot {
        let mut s = Snapshot::default();
        s.groups.insert(
            GroupName::new("main").unwrap(),
            GroupSnapshot {
                primary: primary.map(|i| endpoint(i, Some(8000 + u16::from(i)))),
                replicas: replicas.iter().map(|&(i, api)| endpoint(i, api)).collect(),
            },
        );
        s
    }

    fn replicas_backend(text: &str) -> &str {
        text.split("backend main_replicas").nth(1).unwrap()
    }

    #[test]
    fn lag_limits_are_digits_and_a_unit() {
        for good in ["0", "16MB", "1024", "7kB", "2GB"] {
            assert!(ReplicaLag::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "MB",
            "16 MB",
            "16mb",
            "1\"",
            "-1",
            "1e9",
            &"9".repeat(16),
        ] {
            assert!(ReplicaLag::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_a_lag_limit_replicas_are_checked_on_their_postgres_port() {
        let text = render(
            &template(None),
            &snapshot(Some(1), &[(2, Some(8002)), (3, None)]),
        )
        .unwrap();
        let replicas = replicas_backend(&text);
        assert!(!replicas.contains("httpchk"), "{text}");
        assert!(
            replicas.contains("server 10_0_0_2_5432 10.0.0.2:5432 check inter 1s fall 2 rise 1\n"),
            "{text}"
        );
        assert!(
            replicas.contains("server 10_0_0_3_5433 10.0.0.3:5433 check inter 1s fall 2 rise 1\n"),
            "{text}"
        );
        assert!(
            replicas.contains("10.0.0.1:5431 check inter 1s fall 2 rise 1 backup"),
            "{text}"
        );
    }

    #[test]
    fn a_lag_limit_checks_every_server_on_its_api_and_leaves_out_those_without_one() {
        let lag = ReplicaLag::parse("16MB").unwrap();
        let text = render(
            &template(Some(&lag)),
            &snapshot(Some(1), &[(2, Some(8002)), (3, None)]),
        )
        .unwrap();
        let replicas = replicas_backend(&text);
        assert!(
            replicas.contains("option httpchk GET /read-only?lag=16MB\n"),
            "{text}"
        );
        assert!(replicas.contains("http-check expect status 200"), "{text}");
        assert!(
            replicas.contains("server 10_0_0_2_5432 10.0.0.2:5432 check inter 1s fall 2 rise 1 port 8002 on-marked-down shutdown-sessions\n"),
            "{text}"
        );
        assert!(!replicas.contains("server 10_0_0_3_5433"), "{text}");
        assert!(replicas.contains("# 10.0.0.3:5433 left out"), "{text}");
        assert!(
            replicas.contains("10.0.0.1:5431 check inter 1s fall 2 rise 1 port 8001 backup"),
            "{text}"
        );
        let primary = text.split("backend main_replicas").next().unwrap();
        assert!(
            !primary.contains("httpchk"),
            "the writer backend keeps its own check: {text}"
        );
    }
}
