//! Config validation tests.

use super::*;

/// A directory with a `postgres` file (a committed fixture, so no test leaves files
/// behind), so validation passes without PostgreSQL installed.
fn fake_bin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-bin")
}

/// The smallest valid file, with `extra` appended to its `[postgres]` section.
pub(crate) fn minimal(extra: &str) -> String {
    let run_as = if nix::unistd::Uid::effective().is_root() {
        "run_as = \"postgres\"\n"
    } else {
        ""
    };
    format!(
        "[zookeeper]\nconnect = \"127.0.0.1:2181\"\n[node]\ngroup = \"main\"\naddress = \"10.0.0.1\"\n\
         [postgres]\ndata_dir = \"/var/lib/pg\"\nbin_dir = \"{}\"\nport = 5432\n{run_as}{extra}",
        fake_bin_dir().display()
    )
}

fn problems(text: &str, env: &[(&str, &str)]) -> Vec<String> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match Config::parse(Path::new("t.toml"), text, |k| env.get(k).cloned()) {
        Ok(_) => vec![],
        Err(ConfigError::Invalid { problems, .. }) => problems.into_iter().map(|p| p.key).collect(),
        Err(other) => vec![other.to_string()],
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(Path::new("t.toml"), &minimal(""), |_| None).unwrap();
    assert_eq!(c.node.to_string(), "10.0.0.1:5432");
    assert_eq!(c.node_name, "10_0_0_1_5432");
    assert_eq!(c.zookeeper.settings.layout.root(), "/zgres");
    assert_eq!(c.zookeeper.settings.session_timeout, Duration::from_secs(4));
    assert_eq!(c.postgres.probe_host.to_string(), "10.0.0.1");
}

#[test]
fn every_bad_value_is_reported_with_its_key() {
    let text = minimal(
        "password_env = \"NOPE\"\n[timing]\nloop_interval_ms = 1\n[log]\nlevel = \"[[[\"\n",
    )
    .replace("\"main\"", "\"ma_in\"")
    .replace("\"10.0.0.1\"", "\"db1.example\"")
    .replace(
        "connect = \"127.0.0.1:2181\"",
        "connect = \"127.0.0.1:2181\"\nsession_timeout_ms = 500",
    );
    let mut keys = problems(&text, &[]);
    keys.sort();
    assert_eq!(
        keys,
        [
            "log.level",
            "node.address",
            "node.group",
            "postgres.password_env",
            "timing.loop_interval_ms",
            "zookeeper.fence_margin_ms",
            "zookeeper.session_timeout_ms",
        ]
    );
}

#[test]
fn syntax_errors_and_unknown_keys_name_the_key() {
    let err = Config::parse(Path::new("t.toml"), &minimal("bogus = 1\n"), |_| None).unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
    let err = Config::parse(Path::new("t.toml"), "[zookeeper\n", |_| None).unwrap_err();
    assert!(err.to_string().contains("t.toml"), "{err}");
}

#[test]
fn secrets_come_from_env_and_never_print() {
    let text = minimal("password_env = \"PGPW\"\n");
    let c = Config::parse(Path::new("t.toml"), &text, |k| {
        (k == "PGPW").then(|| "hunter2".to_owned())
    })
    .unwrap();
    assert_eq!(c.postgres.password.as_ref().unwrap().expose(), "hunter2");
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn parameter_names_and_values_are_checked_for_the_parameters_file() {
    let text = minimal(
        "[postgres.parameters]\n\"work_mem = 1\" = \"x\"\nsearch_path = \"a\\nb\"\nwork_mem = \"4MB\"\n",
    );
    let mut found = problems(&text, &[]);
    found.sort();
    assert_eq!(
        found,
        [
            "postgres.parameters.search_path",
            "postgres.parameters.work_mem = 1"
        ]
    );
}

#[test]
fn callbacks_need_absolute_paths_and_a_bounded_timeout() {
    let text =
        minimal("[callbacks]\non_start = \"vip\"\npre_promote = \"/bin/true\"\ntimeout_ms = 50\n");
    let mut found = problems(&text, &[]);
    found.sort();
    assert_eq!(found, ["callbacks.on_start", "callbacks.timeout_ms"]);
    let c = Config::parse(
        Path::new("t.toml"),
        &minimal("[callbacks]\non_role_change = \"/usr/local/bin/vip\"\n"),
        |_| None,
    )
    .unwrap();
    assert_eq!(
        c.hooks.callbacks.on_role_change.as_deref(),
        Some(Path::new("/usr/local/bin/vip"))
    );
    assert_eq!(c.hooks.callbacks.timeout, Duration::from_secs(10));
}

#[test]
fn a_data_directory_too_long_for_the_guardians_socket_is_refused() {
    let long = format!("/var/lib/{}", "p".repeat(100));
    let text = minimal("").replace("\"/var/lib/pg\"", &format!("\"{long}\""));
    assert_eq!(problems(&text, &[]), vec!["postgres.data_dir"]);
    let fits = format!("/var/lib/{}", "p".repeat(80));
    let text = minimal("").replace("\"/var/lib/pg\"", &format!("\"{fits}\""));
    assert!(problems(&text, &[]).is_empty());
}
