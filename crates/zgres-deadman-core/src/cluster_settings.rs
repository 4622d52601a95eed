//! Which of the group's cluster-wide PostgreSQL settings (`/config` `postgresql`) this node
//! writes for its PostgreSQL. Pure: the catalog is read and the files written elsewhere.
//!
//! The rules: the node's own `[postgres] parameters` win over the cluster's; a value this
//! node's server would refuse is left out and reported (PostgreSQL does not start with an
//! invalid value in its files, so one bad entry must not stop every node at its next start);
//! and until the node knows what its server accepts (no catalog yet), no cluster parameter is
//! written. `pg_hba` lines were checked when `/config` was decoded and are all written.

use std::collections::BTreeMap;

use zgres_schema::pg_settings::{ClusterPostgres, PgSettingsCatalog};

/// What this node writes, and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Cluster parameters to write, by name (the local ones are written after them).
    pub parameters: BTreeMap<String, String>,
    /// `pg_hba.conf` lines to write after the node's own.
    pub pg_hba: Vec<String>,
    /// Why entries were left out, one line each, for `/state` warnings and the log.
    pub left_out: Vec<String>,
}

/// The settings to write from `cluster`, given what this node's server accepts (`catalog`)
/// and the names the node sets itself (`local`).
pub fn applicable<'a>(
    cluster: &ClusterPostgres,
    catalog: Option<&PgSettingsCatalog>,
    local: impl IntoIterator<Item = &'a str>,
) -> ClusterSettings {
    let local: Vec<&str> = local.into_iter().collect();
    let mut out = ClusterSettings::default();
    // The block goes into the data directory's pg_hba.conf, which PostgreSQL does not read
    // when the node names another file.
    if local.contains(&"hba_file") && !cluster.pg_hba.is_empty() {
        out.left_out.push(
            "/config postgresql.pg_hba left out: this node sets hba_file, so PostgreSQL does not \
             read the data directory's pg_hba.conf"
                .to_owned(),
        );
    } else {
        out.pg_hba = cluster
            .pg_hba
            .iter()
            .map(|l| l.as_str().to_owned())
            .collect();
    }
    let Some(catalog) = catalog else {
        if !cluster.parameters.is_empty() {
            out.left_out.push(
                "cluster-wide PostgreSQL parameters wait until this node has read what its \
                 server accepts (pg_settings)"
                    .to_owned(),
            );
        }
        return out;
    };
    for (name, value) in &cluster.parameters {
        if local.contains(&name.as_str()) {
            continue;
        }
        match catalog.check(name.as_str(), value.as_str()) {
            Ok(_) => {
                out.parameters
                    .insert(name.as_str().to_owned(), value.as_str().to_owned());
            }
            Err(e) => out
                .left_out
                .push(format!("/config postgresql.parameters left out: {e}")),
        }
    }
    out
}

/// Raises a standby's [`zgres_schema::pg_settings::MUST_MATCH`] parameters in `parameters`
/// (the merged values it would write) to its primary's (`floors`, from `pg_controldata`),
/// setting the ones it would not write at all: a standby below its primary does not start
/// (hot standby refuses). So a value lowered for the group takes effect on the primary first,
/// and the standbys follow at their next start after replaying the primary's change. Returns
/// the names raised.
pub fn raise_to_floors(
    parameters: &mut BTreeMap<String, String>,
    floors: &[(&'static str, u64)],
) -> Vec<&'static str> {
    let mut raised = Vec::new();
    for &(name, floor) in floors {
        let below = parameters.get(name).map_or(true, |v| {
            v.trim().parse::<u64>().map_or(true, |v| v < floor)
        });
        if below {
            parameters.insert(name.to_owned(), floor.to_string());
            raised.push(name);
        }
    }
    raised
}

#[cfg(test)]
mod tests {
    use super::*;
    use zgres_schema::pg_settings::{HbaLine, ParameterName, ParameterValue, SettingSpec, VarType};

    fn cluster(parameters: &[(&str, &str)]) -> ClusterPostgres {
        ClusterPostgres {
            parameters: parameters
                .iter()
                .map(|(n, v)| {
                    (
                        ParameterName::new(n).unwrap(),
                        ParameterValue::new(n, v).unwrap(),
                    )
                })
                .collect(),
            pg_hba: vec![HbaLine::new("host all all 10.0.0.0/8 scram-sha-256").unwrap()],
        }
    }

    fn catalog() -> PgSettingsCatalog {
        let spec = |vartype, min, max| SettingSpec {
            vartype,
            unit: None,
            min,
            max,
            enumvals: Vec::new(),
            context: "user".into(),
        };
        PgSettingsCatalog {
            server_version_num: 150_000,
            settings: [
                (
                    "max_connections",
                    spec(VarType::Integer, Some(1.0), Some(1000.0)),
                ),
                ("application_name", spec(VarType::String, None, None)),
            ]
            .into_iter()
            .map(|(n, s)| (n.to_owned(), s))
            .collect(),
        }
    }

    #[test]
    fn local_parameters_win_and_refused_values_are_left_out_and_said() {
        let c = cluster(&[
            ("max_connections", "0"),
            ("application_name", "app"),
            ("nosuch", "1"),
            ("ext.knob", "x"),
        ]);
        let got = applicable(&c, Some(&catalog()), ["application_name"]);
        assert_eq!(got.parameters.keys().collect::<Vec<_>>(), ["ext.knob"]);
        assert_eq!(got.left_out.len(), 2, "{:?}", got.left_out);
        assert!(got.left_out[0].contains("max_connections"));
        assert!(got.left_out[1].contains("nosuch: unknown parameter"));
        assert_eq!(got.pg_hba, ["host all all 10.0.0.0/8 scram-sha-256"]);
    }

    #[test]
    fn a_standby_never_writes_less_than_its_primary_runs() {
        let mut parameters: BTreeMap<String, String> = [
            ("max_connections", "100"),
            ("max_wal_senders", "20"),
            ("work_mem", "8MB"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let floors = [
            ("max_connections", 200),
            ("max_wal_senders", 10),
            ("max_worker_processes", 8),
        ];
        let raised = raise_to_floors(&mut parameters, &floors);
        assert_eq!(raised, ["max_connections", "max_worker_processes"]);
        assert_eq!(
            parameters["max_connections"], "200",
            "lowered: kept at the primary's"
        );
        assert_eq!(parameters["max_wal_senders"], "20", "raised: passes");
        assert_eq!(
            parameters["max_worker_processes"], "8",
            "unset: the primary's"
        );
        assert_eq!(parameters["work_mem"], "8MB");
    }

    #[test]
    fn hba_lines_are_left_out_when_the_node_reads_another_hba_file() {
        let got = applicable(&cluster(&[]), Some(&catalog()), ["hba_file"]);
        assert!(got.pg_hba.is_empty());
        assert_eq!(got.left_out.len(), 1);
        assert!(got.left_out[0].contains("hba_file"), "{:?}", got.left_out);
    }

    #[test]
    fn without_a_catalog_no_parameter_is_written() {
        let got = applicable(&cluster(&[("max_connections", "100")]), None, []);
        assert!(got.parameters.is_empty());
        assert_eq!(got.left_out.len(), 1);
        assert_eq!(got.pg_hba.len(), 1, "hba lines need no catalog");
        let nothing = applicable(&ClusterPostgres::default(), None, []);
        assert_eq!(nothing, ClusterSettings::default());
    }
}
