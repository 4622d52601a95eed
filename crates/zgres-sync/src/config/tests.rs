use super::*;

#[test]
fn bad_values_are_named() {
    let text = "[zookeeper]\nconnect = \"\"\nsession_timeout_ms = 1\nfence_margin_ms = 5\n\
                [sync]\ngroups = [\"a_b\"]\nsnapshot_file = \"relative.json\"\n\
                hooks_dir = \"/nonexistent-zgres\"\n";
    let err = Config::parse(Path::new("s.toml"), text)
        .unwrap_err()
        .to_string();
    for key in [
        "zookeeper.connect",
        "zookeeper.session_timeout_ms",
        "zookeeper.fence_margin_ms",
        "sync.groups[0]",
        "sync.snapshot_file",
        "sync.hooks_dir",
    ] {
        assert!(err.contains(key), "{key} missing from {err}");
    }
}

#[test]
fn a_signalled_haproxy_reload_is_warned_about_and_the_master_socket_is_not() {
    let dir = std::env::temp_dir();
    let head = format!(
        "[zookeeper]\nconnect = \"127.0.0.1:2181\"\n[sync]\nsnapshot_file = \"{}\"\n\
         [haproxy]\nconfig_file = \"{}\"\n",
        dir.join("snap.json").display(),
        dir.join("h.cfg").display()
    );
    let warned = |extra: &str| {
        Config::parse(Path::new("s.toml"), &format!("{head}{extra}"))
            .unwrap()
            .warnings()
            .iter()
            .any(|w| w.contains("haproxy.reload_command cannot be confirmed"))
    };
    assert!(warned(
        "reload_command = [\"/bin/systemctl\", \"reload\", \"haproxy\"]\n"
    ));
    assert!(!warned("master_socket = \"/run/haproxy-master.sock\"\n"));
}

#[test]
fn metrics_tls_needs_both_files_and_names_a_bad_one() {
    let dir = std::env::temp_dir();
    let head = format!(
        "[zookeeper]\nconnect = \"127.0.0.1:2181\"\n[sync]\nsnapshot_file = \"{}\"\n\
         metrics_listen = \"127.0.0.1:8018\"\n",
        dir.join("snap.json").display()
    );
    let only_cert = format!("{head}metrics_tls_cert_file = \"/nonexistent/cert.pem\"\n");
    let err = Config::parse(Path::new("s.toml"), &only_cert)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sync.metrics_tls_cert_file") && err.contains("or neither"),
        "{err}"
    );
    let missing = format!("{only_cert}metrics_tls_key_file = \"/nonexistent/key.pem\"\n");
    let err = Config::parse(Path::new("s.toml"), &missing)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}

#[test]
fn minimal_config_gets_defaults() {
    let dir = std::env::temp_dir();
    let text = format!(
        "[zookeeper]\nconnect = \"127.0.0.1:2181\"\n[sync]\nsnapshot_file = \"{}\"\n",
        dir.join("snap.json").display()
    );
    let c = Config::parse(Path::new("s.toml"), &text).unwrap();
    assert_eq!(c.sync.debounce, Duration::from_millis(20));
    assert!(c.sync.groups.is_empty() && c.pgbouncer.is_none());
}

#[test]
fn read_balancing_settings_are_checked_and_named() {
    let dir = std::env::temp_dir();
    let head = format!(
        "[zookeeper]\nconnect = \"127.0.0.1:2181\"\n[sync]\nsnapshot_file = \"{}\"\n\
         [pgbouncer]\ndatabases_file = \"{}\"\n",
        dir.join("snap.json").display(),
        dir.join("db.ini").display()
    );
    let bad = format!(
        "{head}[pgbouncer.readers_via]\nmain = \"localhost:6001\"\n\"a_b\" = \"127.0.0.1:1\"\n\
         [haproxy]\nconfig_file = \"{}\"\nreplica_max_lag = \"16 MB\"\n",
        dir.join("h.cfg").display()
    );
    let err = Config::parse(Path::new("s.toml"), &bad)
        .unwrap_err()
        .to_string();
    for key in [
        "pgbouncer.readers_via.main",
        "pgbouncer.readers_via.a_b",
        "haproxy.replica_max_lag",
    ] {
        assert!(err.contains(key), "{key} missing from {err}");
    }
    let good = format!("{head}[pgbouncer.readers_via]\nmain = \"127.0.0.1:6001\"\n");
    let c = Config::parse(Path::new("s.toml"), &good).unwrap();
    let via = &c.pgbouncer.unwrap().readers_via;
    assert_eq!(
        via.get(&GroupName::new("main").unwrap()),
        Some(&"127.0.0.1:6001".parse().unwrap())
    );
}
