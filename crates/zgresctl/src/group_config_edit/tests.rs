use super::*;
use zgres_schema::pg_settings::{SettingSpec, VarType};

#[test]
fn config_assignments_are_typed_and_named() {
    let mut c = GroupConfig::default();
    set_config_value(&mut c, "maximum_lag_on_failover_bytes=1234").unwrap();
    set_config_value(&mut c, "paused=true").unwrap();
    set_config_value(&mut c, "synchronous_mode=strict").unwrap();
    assert_eq!(c.maximum_lag_on_failover_bytes, 1234);
    assert!(c.paused);
    for bad in [
        "nokey",
        "bogus=1",
        "paused=maybe",
        "synchronous_mode=sometimes",
        "maximum_lag_on_failover_bytes=-1",
        "primary_restart_timeout_ms=1000",
        "postgresql={}",
        "postgresql.parameters.archive_command=rm -rf /",
        "postgresql.parameters.Work_Mem=1",
        "postgresql.parameters.wal_level=minimal",
        "postgresql.pg_hba=[\"include /etc/passwd\"]",
        "postgresql.pg_hba=host all all",
    ] {
        let err = set_config_value(&mut c, bad).unwrap_err().to_string();
        let key = bad.split('=').next().unwrap();
        assert!(err.contains(key), "{bad}: {err}");
    }
}

#[test]
fn parameters_and_hba_lines_are_set_unset_and_edited() {
    let mut c = GroupConfig::default();
    set_config_value(&mut c, "postgresql.parameters.work_mem=8MB").unwrap();
    set_config_value(
        &mut c,
        r#"postgresql.pg_hba=["host all all 10.0.0.0/8 scram-sha-256"]"#,
    )
    .unwrap();
    let text = serde_json::to_string(&c).unwrap();
    assert_eq!(parse_config(&text).unwrap(), c, "an edit round-trips");
    unset_config_value(&mut c, "postgresql.parameters.work_mem").unwrap();
    unset_config_value(&mut c, "postgresql.pg_hba").unwrap();
    assert!(c.postgresql.is_empty());
    assert!(unset_config_value(&mut c, "paused").is_err());
    let hostile = r#"{"postgresql":{"parameters":{"shared_preload_libraries":"evil"}}}"#;
    assert!(parse_config(hostile)
        .unwrap_err()
        .to_string()
        .contains("local-only"));
}

#[test]
fn only_changed_parameters_are_checked_against_the_catalog() {
    let catalog = PgSettingsCatalog {
        server_version_num: 150_000,
        settings: [(
            "max_connections".to_owned(),
            SettingSpec {
                vartype: VarType::Integer,
                unit: None,
                min: Some(1.0),
                max: Some(262_143.0),
                enumvals: Vec::new(),
                context: "postmaster".into(),
            },
        )]
        .into_iter()
        .collect(),
    };
    let mut old = GroupConfig::default();
    // Written before (e.g. with --force): not this edit's business.
    set_config_value(&mut old, "postgresql.parameters.legacy_knob=1").unwrap();
    let mut new = old.clone();
    set_config_value(&mut new, "postgresql.parameters.max_connections=200").unwrap();
    check_parameters(&old, &new, &catalog).unwrap();
    set_config_value(&mut new, "postgresql.parameters.max_connections=0").unwrap();
    let err = check_parameters(&old, &new, &catalog)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("postgresql.parameters.max_connections"),
        "{err}"
    );
    assert!(err.contains("outside 1..262143"), "{err}");
}

#[test]
fn member_slot_settings_and_permanent_slots_are_set_unset_and_edited() {
    let mut c = GroupConfig::default();
    set_config_value(&mut c, "member_slots=false").unwrap();
    set_config_value(&mut c, "member_slots_ttl_ms=60000").unwrap();
    set_config_value(&mut c, r#"slots.archive={"type":"physical"}"#).unwrap();
    set_config_value(
        &mut c,
        r#"slots.app={"type":"logical","plugin":"pgoutput","database":"app"}"#,
    )
    .unwrap();
    assert!(!c.member_slots);
    assert_eq!(c.member_slots_ttl_ms, 60_000);
    assert_eq!(c.slots.iter().count(), 2);
    for bad in [
        r#"slots.zgres_1_2_3_4_5={"type":"physical"}"#,
        r#"slots.Bad={"type":"physical"}"#,
        r#"slots.x={"type":"logical","plugin":"../lib","database":"app"}"#,
        r#"slots.x={"type":"logical"}"#,
        "slots.x=physical",
        "slots={}",
    ] {
        let err = set_config_value(&mut c, bad).unwrap_err().to_string();
        let key = bad.split('=').next().unwrap();
        assert!(err.contains(key), "{bad}: {err}");
    }
    unset_config_value(&mut c, "slots.archive").unwrap();
    assert_eq!(c.slots.iter().count(), 1);
    // An edited document round-trips, slots included.
    let text = serde_json::to_string(&c).unwrap();
    assert_eq!(parse_config(&text).unwrap(), c);
    assert!(parse_config(r#"{"slots":{"zgres_x":{"type":"physical"}}}"#).is_err());
}

#[test]
fn a_standby_cluster_is_set_from_json_edited_and_unset() {
    let mut c = GroupConfig::default();
    set_config_value(&mut c, r#"standby_cluster={"group":"main"}"#).unwrap();
    assert_eq!(
        c.standby_cluster,
        Some(zgres_schema::documents::StandbyOf::Group(
            zgres_schema::GroupName::new("main").unwrap()
        ))
    );
    let text = serde_json::to_string(&c).unwrap();
    assert_eq!(parse_config(&text).unwrap(), c, "an edit round-trips");
    set_config_value(&mut c, r#"standby_cluster={"node":"10.0.0.5:5432"}"#).unwrap();
    for bad in [
        r#"standby_cluster={"group":"a/b"}"#,
        r#"standby_cluster={"node":"db.example:5432"}"#,
        r#"standby_cluster={"node":"10.0.0.5:5432","group":"main"}"#,
        "standby_cluster=main",
    ] {
        let err = set_config_value(&mut c, bad).unwrap_err().to_string();
        assert!(err.contains("standby_cluster"), "{bad}: {err}");
    }
    unset_config_value(&mut c, "standby_cluster").unwrap();
    assert_eq!(c.standby_cluster, None);
}
