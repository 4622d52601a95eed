//! zgres-sync against a real ZooKeeper, with executable hooks: snapshots follow lock and conn
//! changes, hooks run in order, failing, hanging and garbage-printing hooks are contained and
//! retried, a world-writable hook is never run, and an expired session is replaced.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zgres_testkit::fault_proxy::{FaultProxy, ProxyMode};
use zgres_testkit::poll;
use zgres_testkit::process::ManagedProcess;
use zgres_testkit::znodes;
use zgres_testkit::zookeeper::ZkCluster;
use zookeeper_client as zk;

const DEADLINE: Duration = Duration::from_secs(30);

fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Setup {
    _dir: tempfile::TempDir,
    record: PathBuf,
    log: PathBuf,
    sync: ManagedProcess,
    metrics_port: u16,
}

/// `GET /metrics` from the daemon.
fn scrape(port: u16) -> String {
    zgres_testkit::http::get(port, "/metrics").unwrap_or_default()
}

/// Starts zgres-sync on `connect` with four hooks: one printing garbage, one recording each
/// snapshot it is given (with a run counter), one hanging (past the timeout, with a child), and
/// one always failing.
fn start_sync(connect: &str, session_timeout_ms: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks");
    let record = dir.path().join("record");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::create_dir_all(&record).unwrap();
    script(&hooks, "05-garbage", "head -c 3000 /dev/urandom; exit 0");
    script(
        &hooks,
        "10-record",
        &format!(
            "n=$(ls {r} | wc -l); cp \"$1\" {r}/snapshot-$n.json; cp \"$1\" {r}/latest.json.tmp; mv {r}/latest.json.tmp {r}/latest",
            r = record.display()
        ),
    );
    script(
        &hooks,
        "15-hang",
        &format!(
            "sleep 1000.4242 & echo $! >> {}/hang-pids; wait",
            dir.path().display()
        ),
    );
    script(&hooks, "20-fail", "echo failing on purpose >&2; exit 3");
    // Anyone may rewrite it: never run.
    script(
        &hooks,
        "25-world-writable",
        &format!("touch {}/world-writable-ran", dir.path().display()),
    );
    std::fs::set_permissions(
        hooks.join("25-world-writable"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    script(&hooks, ".hidden", "exit 9");
    std::fs::write(hooks.join("30-not-executable"), "#!/bin/sh\nexit 9\n").unwrap();
    let config = dir.path().join("sync.toml");
    let metrics_port = zgres_testkit::ports::free_port().unwrap();
    std::fs::write(
        &config,
        format!(
            "[zookeeper]\nconnect = \"{connect}\"\nsession_timeout_ms = {session_timeout_ms}\n\
             [sync]\nsnapshot_file = \"{}\"\nhooks_dir = \"{}\"\nhook_timeout_ms = 500\n\
             retry_max_ms = 1000\ndebounce_ms = 20\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
             [log]\nlevel = \"debug\"\n",
            dir.path().join("snapshot.json").display(),
            hooks.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("sync.log");
    let sync = ManagedProcess::spawn(
        "zgres-sync",
        env!("CARGO_BIN_EXE_zgres-sync"),
        ["--config", config.to_str().unwrap()],
        &[],
        None,
        &log,
    )
    .unwrap();
    Setup {
        _dir: dir,
        record,
        log,
        sync,
        metrics_port,
    }
}

fn latest(setup: &Setup) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(setup.record.join("latest")).ok()?;
    serde_json::from_str(&text).ok()
}

fn runs(setup: &Setup) -> usize {
    std::fs::read_dir(&setup.record)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot-"))
                .count()
        })
        .unwrap_or(0)
}

async fn wait_primary(setup: &Setup, port: u16) -> serde_json::Value {
    poll::until(
        &format!("a snapshot with primary port {port}"),
        DEADLINE,
        || async {
            let snap = latest(setup)?;
            (snap["groups"]["main"]["primary"]["port"] == port).then_some(snap)
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(&setup.log).unwrap_or_default()
        )
    })
}

#[tokio::test]
async fn hooks_follow_changes_and_bad_hooks_are_contained_and_retried() {
    let zookeeper = ZkCluster::standalone().await.unwrap();
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .unwrap();
    znodes::make_dirs(&client).await;
    znodes::add_node(&client, "main", 5001).await;
    znodes::add_node(&client, "main", 5002).await;
    znodes::set_lock(&client, "main", 5001).await;
    let setup = start_sync(&zookeeper.connect_string(), 10_000);

    let snap = wait_primary(&setup, 5001).await;
    assert_eq!(snap["v"], 1);
    assert_eq!(snap["groups"]["main"]["replicas"][0]["port"], 5002);
    assert_eq!(snap["masters"]["main"], "127.0.0.1:5001");
    assert_eq!(snap["conn_info"]["main_127.0.0.1:5002"]["port"], 5002);
    assert_eq!(snap["databases"]["main"].as_array().unwrap().len(), 2);

    // The lock moves: the recording hook sees the new primary, despite the hooks around it.
    znodes::set_lock(&client, "main", 5002).await;
    wait_primary(&setup, 5002).await;

    // 20-fail always fails, so the hooks are retried with backoff, with no change in ZooKeeper.
    let before = runs(&setup);
    poll::until("a retry without any change", DEADLINE, || {
        std::future::ready((runs(&setup) > before).then_some(()))
    })
    .await
    .unwrap();
    let log = std::fs::read_to_string(&setup.log).unwrap();
    assert!(
        log.contains("20-fail") && log.contains("exit status: 3"),
        "{log}"
    );
    assert!(
        log.contains("15-hang") && log.contains("killed after"),
        "{log}"
    );
    assert!(!log.contains(".hidden") && !log.contains("30-not-executable"));
    assert!(
        log.contains("25-world-writable: writable by its group or others"),
        "{log}"
    );
    assert!(
        !setup._dir.path().join("world-writable-ran").exists(),
        "a world-writable hook ran"
    );

    // The metrics say so too.
    let metrics = scrape(setup.metrics_port);
    let hooks = format!(
        "plugin=\"hooks in {}\"",
        setup._dir.path().join("hooks").display()
    );
    for line in [
        "HTTP/1.1 200 OK".to_owned(),
        "zgres_sync_zookeeper_connected 1".to_owned(),
        "zgres_sync_groups 1".to_owned(),
        format!("zgres_sync_plugin_failing{{{hooks}}} 1"),
    ] {
        assert!(metrics.contains(&line), "{line:?} missing from\n{metrics}");
    }
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("zgres_sync_plugin_failures_total{{{hooks}}} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(failures >= 2, "{metrics}");

    // The children of timed-out runs of the hanging hook were killed with its process group
    // (the last run may still be going).
    let pids = std::fs::read_to_string(setup._dir.path().join("hang-pids")).unwrap();
    let pids: Vec<&str> = pids.lines().collect();
    assert!(pids.len() >= 2, "the hanging hook ran on every attempt");
    for pid in &pids[..pids.len() - 1] {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, r)| !r.starts_with('Z'))
        });
        assert!(!alive, "child {pid} of a timed-out hook survived");
    }
    drop(setup.sync);
}

#[tokio::test]
async fn a_new_session_replaces_an_expired_one() {
    let zookeeper = ZkCluster::standalone().await.unwrap();
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .unwrap();
    znodes::make_dirs(&client).await;
    znodes::add_node(&client, "main", 6001).await;
    znodes::add_node(&client, "main", 6002).await;
    znodes::set_lock(&client, "main", 6001).await;
    let proxy = FaultProxy::start(zookeeper.client_addr(0)).unwrap();
    let setup = start_sync(&proxy.addr().to_string(), 2_000);
    wait_primary(&setup, 6001).await;

    // Cut off long enough for the server to expire the session, and change things meanwhile.
    proxy.set_mode(ProxyMode::Blackhole);
    znodes::set_lock(&client, "main", 6002).await;
    poll::until("the sync daemon's session to expire", DEADLINE, || async {
        let reply = zgres_testkit::zookeeper::four_letter_word(zookeeper.client_addr(0), "cons")
            .await
            .ok()?;
        // Only our own observer connection is left once the proxied session is gone.
        (reply.lines().filter(|l| l.contains("sid=")).count() == 1).then_some(())
    })
    .await
    .unwrap();
    proxy.set_mode(ProxyMode::Pass);
    wait_primary(&setup, 6002).await;
    let log = std::fs::read_to_string(&setup.log).unwrap();
    assert!(
        log.contains("session ended") || log.contains("following ZooKeeper"),
        "{log}"
    );
}

/// Config errors exit 78 and name the key; usage errors exit 64; the example config validates.
#[test]
fn config_and_usage_errors_have_their_exit_codes() {
    let exe = env!("CARGO_BIN_EXE_zgres-sync");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[zookeeper]\nconnect = \"127.0.0.1:1\"\n[sync]\nsnapshot_file = \"x.json\"\ngroups = [\"a/b\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(exe)
        .args(["--check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["sync.snapshot_file", "sync.groups[0]", "bad.toml"] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    let out = std::process::Command::new(exe)
        .arg("--nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/zgres-sync.toml"
    );
    let out = std::process::Command::new(exe)
        .args(["--check-config", example])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A malformed `/conn` is logged once per distinct content (not on every refresh), counted in
/// the metrics, and left out of the snapshot.
#[tokio::test]
async fn unusable_znodes_are_logged_once_per_content_and_counted() {
    let zookeeper = ZkCluster::standalone().await.unwrap();
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .unwrap();
    znodes::make_dirs(&client).await;
    znodes::add_node(&client, "main", 7001).await;
    znodes::add_node(&client, "main", 7002).await;
    znodes::set_lock(&client, "main", 7001).await;
    let bad = "/zgres/conn/main_127.0.0.1:7003";
    znodes::put(&client, bad, b"{not json").await;
    let setup = start_sync(&zookeeper.connect_string(), 10_000);
    wait_primary(&setup, 7001).await;
    // More refreshes with the same bad content.
    for port in [7002, 7001, 7002] {
        znodes::set_lock(&client, "main", port).await;
        wait_primary(&setup, port).await;
    }
    let reports = |setup: &Setup| {
        std::fs::read_to_string(&setup.log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("ignoring unusable znode") && l.contains(bad))
            .count()
    };
    assert_eq!(reports(&setup), 1, "one content, one report");
    let snap = latest(&setup).unwrap();
    assert!(snap["conn_info"].get("main_127.0.0.1:7003").is_none());
    let counted = |setup: &Setup| {
        scrape(setup.metrics_port)
            .lines()
            .find_map(|l| l.strip_prefix("zgres_sync_unreadable_znodes_total "))
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(counted(&setup), Some(1));

    // Another bad content is a new report.
    znodes::put(&client, bad, b"[]").await;
    poll::until("the second bad content to be reported", DEADLINE, || {
        std::future::ready((reports(&setup) == 2).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(counted(&setup), Some(2));
    drop(setup.sync);
}
