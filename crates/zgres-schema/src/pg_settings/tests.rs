use super::*;

fn catalog() -> PgSettingsCatalog {
    let spec =
        |vartype, unit: Option<&str>, min, max, enumvals: &[&str], context: &str| SettingSpec {
            vartype,
            unit: unit.map(str::to_owned),
            min,
            max,
            enumvals: enumvals.iter().map(|v| v.to_string()).collect(),
            context: context.into(),
        };
    PgSettingsCatalog {
        server_version_num: 150_000,
        settings: [
            (
                "work_mem",
                spec(
                    VarType::Integer,
                    Some("kB"),
                    Some(64.0),
                    Some(2147483647.0),
                    &[],
                    "user",
                ),
            ),
            (
                "shared_buffers",
                spec(
                    VarType::Integer,
                    Some("8kB"),
                    Some(16.0),
                    Some(1073741823.0),
                    &[],
                    "postmaster",
                ),
            ),
            (
                "max_connections",
                spec(
                    VarType::Integer,
                    None,
                    Some(1.0),
                    Some(262143.0),
                    &[],
                    "postmaster",
                ),
            ),
            (
                "checkpoint_timeout",
                spec(
                    VarType::Integer,
                    Some("s"),
                    Some(30.0),
                    Some(86400.0),
                    &[],
                    "sighup",
                ),
            ),
            (
                "random_page_cost",
                spec(
                    VarType::Real,
                    None,
                    Some(0.0),
                    Some(1.79769e308),
                    &[],
                    "user",
                ),
            ),
            (
                "log_connections",
                spec(VarType::Bool, None, None, None, &[], "superuser-backend"),
            ),
            (
                "wal_level",
                spec(
                    VarType::Enum,
                    None,
                    None,
                    None,
                    &["minimal", "replica", "logical"],
                    "postmaster",
                ),
            ),
            (
                "application_name",
                spec(VarType::String, None, None, None, &[], "user"),
            ),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_owned(), s))
        .collect(),
    }
}

#[test]
fn values_postgresql_accepts_pass() {
    let c = catalog();
    for (name, value) in [
        ("work_mem", "8MB"),
        ("work_mem", "4096"),
        ("work_mem", "1 GB"),
        ("shared_buffers", "128MB"),
        ("shared_buffers", "0x100"),
        ("max_connections", "200"),
        ("checkpoint_timeout", "5min"),
        ("checkpoint_timeout", "1h"),
        ("random_page_cost", "1.1"),
        ("log_connections", "on"),
        ("log_connections", "Tru"),
        ("log_connections", "0"),
        ("wal_level", "Logical"),
        ("application_name", "anything at all"),
        ("myext.setting", "x"),
    ] {
        assert!(
            c.check(name, value).is_ok(),
            "{name}={value}: {:?}",
            c.check(name, value)
        );
    }
}

#[test]
fn values_postgresql_refuses_are_refused_with_the_reason() {
    let c = catalog();
    for (name, value, says) in [
        ("work_mem", "8XB", "a number, in kB"),
        ("work_mem", "5min", "a number, in kB"),
        ("work_mem", "32", "outside 64.."),
        ("max_connections", "10MB", "without a unit"),
        ("max_connections", "0", "outside 1.."),
        ("max_connections", "lots", "not a number"),
        ("checkpoint_timeout", "10s", "outside 30.."),
        ("checkpoint_timeout", "2d", "outside"),
        ("log_connections", "o", "a boolean"),
        ("log_connections", "maybe", "a boolean"),
        ("wal_level", "archive", "one of minimal, replica, logical"),
        ("work_mme", "1", "unknown parameter"),
    ] {
        let err = c.check(name, value).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains(says),
            "{name}={value}: {err}"
        );
    }
}

#[test]
fn names_that_run_code_or_name_files_are_local_only() {
    for name in [
        "archive_command",
        "shared_preload_libraries",
        "include",
        "port",
        "ssl_key_file",
    ] {
        assert!(
            matches!(
                ParameterName::new(name),
                Err(ClusterSettingError::LocalOnly(_))
            ),
            "{name}"
        );
    }
    for bad in [
        "Work_mem",
        "work-mem",
        "",
        "a.b.c",
        "x y",
        "1abc",
        "work_mem\n",
    ] {
        assert!(
            matches!(ParameterName::new(bad), Err(ClusterSettingError::Name(_))),
            "{bad:?}"
        );
    }
    assert!(ParameterName::new("pg_stat_statements.max").is_ok());
}

#[test]
fn hostile_values_and_hba_lines_are_refused() {
    for bad in [
        "8MB\nshared_preload_libraries = 'evil'",
        "a\rb",
        "x\0",
        &"x".repeat(2000),
    ] {
        assert!(ParameterValue::new("work_mem", bad).is_err(), "{bad:?}");
    }
    for bad in [
        "host all all 0.0.0.0/0 trust\nhost all all ::/0 trust",
        "include /etc/passwd",
        "host all @admins 10.0.0.0/8 scram-sha-256",
        "host all all",
        "local all",
        "# a comment",
    ] {
        assert!(HbaLine::new(bad).is_err(), "{bad:?}");
    }
    assert!(HbaLine::new("hostssl all all 10.0.0.0/8 scram-sha-256").is_ok());
    assert!(HbaLine::new("local all postgres peer").is_ok());
}

#[test]
fn the_config_section_decodes_numbers_and_refuses_hostile_entries() {
    let ok: ClusterPostgres = serde_json::from_str(
        r#"{"parameters":{"max_connections":200,"log_connections":true,"work_mem":"8MB"},
            "pg_hba":["host all all 10.0.0.0/8 scram-sha-256"]}"#,
    )
    .unwrap();
    let value = |n: &str| {
        ok.parameters[&ParameterName::new(n).unwrap()]
            .as_str()
            .to_owned()
    };
    assert_eq!(value("max_connections"), "200");
    assert_eq!(value("log_connections"), "on");
    for bad in [
        r#"{"parameters":{"archive_command":"rm -rf /"}}"#,
        r#"{"parameters":{"work_mem":"1\nport=1"}}"#,
        r#"{"parameters":{"work_mem":[1]}}"#,
        r#"{"pg_hba":["include x"]}"#,
        r#"{"other":1}"#,
        r#"{"parameters":{"wal_level":"Minimal"}}"#,
        r#"{"parameters":{"max_wal_senders":0}}"#,
    ] {
        assert!(
            serde_json::from_str::<ClusterPostgres>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn a_refused_entry_is_named_in_the_decode_error() {
    let doc = br#"{"v":1,"postgresql":{"parameters":{"archive_command":"touch /tmp/x"}}}"#;
    let err = crate::decode::<crate::documents::GroupConfig>("/zgres/config/main", doc)
        .unwrap_err()
        .to_string();
    assert!(err.contains("archive_command is local-only"), "{err}");
    assert!(err.contains("/zgres/config/main"), "{err}");
}

#[test]
fn a_catalog_with_many_extension_parameters_still_fits() {
    let mut big = catalog();
    let spec = big.settings["work_mem"].clone();
    for i in 0..3000 {
        big.settings
            .insert(format!("some_extension.parameter_{i}"), spec.clone());
    }
    let data = crate::encode(&big).unwrap();
    assert!(
        data.len() > crate::codec::SMALL_DOCUMENT_BYTES,
        "{}",
        data.len()
    );
    let back: PgSettingsCatalog = crate::decode("/zgres/pg_settings/main", &data).unwrap();
    assert_eq!(back, big);
}
