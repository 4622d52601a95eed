//! zgres-sync with in-process plugins built from `plugins/`: the example plugin is called with
//! every snapshot; a plugin with another ABI version, or one others may write, stops the daemon
//! at start-up, clearly.

use std::path::PathBuf;
use std::time::Duration;

use zgres_testkit::artifacts::library;
use zgres_testkit::poll;
use zgres_testkit::process::ManagedProcess;
use zgres_testkit::znodes;
use zgres_testkit::zookeeper::ZkCluster;
use zookeeper_client as zk;

fn config(dir: &std::path::Path, zookeeper: &str, library: &std::path::Path) -> PathBuf {
    let path = dir.join("sync.toml");
    std::fs::write(
        &path,
        format!(
            "[zookeeper]\nconnect = \"{zookeeper}\"\n[sync]\nsnapshot_file = \"{}\"\n\
             [[plugin]]\nlibrary = \"{}\"\n[log]\nlevel = \"debug\"\n",
            dir.join("snapshot.json").display(),
            library.display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn the_example_library_plugin_gets_every_snapshot() {
    let zookeeper = ZkCluster::standalone().await.unwrap();
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .unwrap();
    znodes::make_dirs(&client).await;
    znodes::add_node(&client, "main", 5001).await;
    znodes::set_lock(&client, "main", 5001).await;

    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &zookeeper.connect_string(),
        &library("zgres_plugin_example"),
    );
    let log = dir.path().join("sync.log");
    let _sync = ManagedProcess::spawn(
        "zgres-sync",
        env!("CARGO_BIN_EXE_zgres-sync"),
        ["--config", config.to_str().unwrap()],
        &[],
        None,
        &log,
    )
    .unwrap();
    poll::until(
        "the example plugin's answer in the log",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            std::future::ready(
                (text.contains("loaded plugin")
                    && text.contains(r#""primaries":{"main":"127.0.0.1:5001"}"#))
                .then_some(()),
            )
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
}

/// Checks that zgres-sync with `config`, checked or started, exits 78 saying `why`.
fn refused_at_start(config: &std::path::Path, why: &str) {
    for flag in ["--check-config", "--config"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zgres-sync"))
            .args([flag, config.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{flag}: {stderr}");
    }
}

#[test]
fn a_library_with_another_abi_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "127.0.0.1:1",
        &library("zgres_plugin_example_wrong_abi"),
    );
    refused_at_start(&config, "ABI version 999");
}

#[test]
fn a_library_others_may_write_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libzgres_plugin_example.so");
    std::fs::copy(library("zgres_plugin_example"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o775)).unwrap();
    let config = config(dir.path(), "127.0.0.1:1", &copy);
    refused_at_start(&config, "writable by its group or others (mode 775)");
}
