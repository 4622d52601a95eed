//! Hostile and broken input: garbage in ZooKeeper, a deleted `/static` node, ZooKeeper
//! unreachable at start-up, a bad config file, a foreign data directory.

use std::time::{Duration, Instant};

use zgres_schema::documents::DatabaseId;
use zgres_schema::{decode, Dir, Znode};
use zgres_testkit::fault_proxy::ProxyMode;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;
use zookeeper_client as zk;

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

async fn mkdirs(group: &Group, client: &zk::Client) {
    for dir in [Dir::Lock, Dir::State, Dir::Static] {
        client
            .mkdir(&group.layout.dir(dir), &persistent())
            .await
            .unwrap();
    }
}

/// A lock holding garbage, and peer states that are garbage, non-UTF-8, or valid-looking but
/// persistent (so nobody vouches for them): nothing crashes, nothing promotes while the garbage
/// lock exists, each bad znode is logged by path, and the group forms once the lock is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_zookeeper_is_logged_and_never_trusted() {
    let mut group = Group::prepare(2, Timing::default()).await;
    let client = group.zk_client().await;
    mkdirs(&group, &client).await;
    let lock = group.path(Znode::Lock);
    client
        .create(&lock, b"\x00garbage{", &persistent())
        .await
        .unwrap();
    let fake_peer = format!("{}/main_127.0.0.9:9", group.layout.dir(Dir::State));
    let fake_state = br#"{"v":1,"node":"127.0.0.9:9","role":"replica","updated_at_ms":0,
        "wal":{"receive":"FFFFFFFF/0","replay":"FFFFFFFF/0"},"timeline":99}"#;
    client
        .create(&fake_peer, fake_state, &persistent())
        .await
        .unwrap();
    let binary_peer = format!("{}/main_127.0.0.8:8", group.layout.dir(Dir::State));
    client
        .create(&binary_peer, b"\xff\xfe\x00", &persistent())
        .await
        .unwrap();
    // Nobody can take the lock while the garbage stands: start them all together.
    group.start_all_at_once();

    // While the garbage lock stands, nobody is primary and nobody crashes.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for (i, node) in group.nodes.iter_mut().enumerate() {
            let deadman = node.deadman.as_mut().unwrap();
            assert!(
                deadman.try_exit_status().unwrap().is_none(),
                "deadman {i} exited"
            );
        }
        for node in &group.nodes {
            assert_ne!(node.is_primary().await, Some(true));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in &group.nodes {
        let log = node.log_text();
        assert!(
            log.contains(lock.as_str()),
            "{} did not log {lock}:\n{log}",
            node.name
        );
    }

    // Clearing the garbage lock starts an election, which reads the peers: the bogus ones are
    // logged and ignored (the fake "better" one is not ephemeral), and the group forms.
    client.delete(&lock, None).await.unwrap();
    let primary = group.wait_primary(&[]).await;
    assert_eq!(primary, 0);
    let log = group.nodes[0].log_text();
    for path in [&fake_peer, &binary_peer] {
        assert!(log.contains(path.as_str()), "n0 did not log {path}:\n{log}");
    }

    // Each bad content is reported once, not once per round that reads it (the primary reads
    // every peer each round): let n1 refresh its state three times (each refresh is a round
    // of n0's that reads the peers again), then count. The persistent one decodes fine and
    // used to be reported again every round.
    let n1_state = format!(
        "{}/main_{}",
        group.layout.dir(Dir::State),
        group.nodes[1].node_id()
    );
    let refreshes = std::sync::Mutex::new(Vec::new());
    let (refreshes, client, n1_state) = (&refreshes, &client, &n1_state);
    poll::until("three state refreshes of n1", DEADLINE, || async move {
        let (_, stat) = client.get_data(n1_state).await.ok()?;
        let mut seen = refreshes.lock().unwrap();
        if seen.last() != Some(&stat.mzxid) {
            seen.push(stat.mzxid);
        }
        (seen.len() > 3).then_some(())
    })
    .await
    .unwrap();
    let log = group.nodes[0].log_text();
    for path in [&fake_peer, &binary_peer] {
        let reports = log
            .lines()
            .filter(|l| l.contains("ignoring unreadable znode") && l.contains(path.as_str()))
            .count();
        assert_eq!(reports, 1, "n0 reported {path} {reports} times:\n{log}");
    }
}

/// A deleted `/static/{GROUP}-db-id` is published again by the primary with its system id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_static_node_is_restored_by_the_primary() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    let client = group.zk_client().await;
    let path = group.path(Znode::DatabaseId);
    let original: DatabaseId = poll::until("the group's system id", DEADLINE, || async {
        let (data, _) = client.get_data(&path).await.ok()?;
        decode(&path, &data).ok()
    })
    .await
    .unwrap();
    client.delete(&path, None).await.unwrap();
    let restored: DatabaseId = poll::until("the system id to be restored", DEADLINE, || async {
        let (data, _) = client.get_data(&path).await.ok()?;
        decode(&path, &data).ok()
    })
    .await
    .unwrap();
    assert_eq!(restored, original);
}

/// ZooKeeper unreachable at start-up: the deadman says so, retries, leaves PostgreSQL alone,
/// and joins the group once ZooKeeper answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_zookeeper_at_startup_is_retried_without_touching_postgres() {
    let mut group = Group::prepare(1, Timing::default()).await;
    group.proxy_node(0).set_mode(ProxyMode::Refuse);
    group.start(0);
    poll::until(
        "the deadman to report ZooKeeper unreachable",
        DEADLINE,
        || async {
            group.nodes[0]
                .log_text()
                .contains("ZooKeeper unreachable")
                .then_some(())
        },
    )
    .await
    .unwrap();
    assert!(
        group.nodes[0].postmaster_pid().is_none(),
        "postgres not started without ZooKeeper"
    );
    assert!(group.nodes[0]
        .deadman
        .as_mut()
        .unwrap()
        .try_exit_status()
        .unwrap()
        .is_none());
    group.nodes[0]
        .proxy
        .as_ref()
        .unwrap()
        .set_mode(ProxyMode::Pass);
    assert_eq!(group.wait_primary(&[]).await, 0);
}

/// A node whose data directory belongs to another database system refuses to run, says why,
/// and touches nothing: PostgreSQL is not started and nothing of it appears in ZooKeeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_data_directory_is_refused_and_untouched() {
    let mut group = Group::prepare(1, Timing::default()).await;
    group.start(0);
    assert_eq!(group.wait_primary(&[]).await, 0);
    // A second, unrelated cluster configured into the same group.
    let mut stranger = zgres_testkit::postgres::PgNode::init_primary("stranger")
        .await
        .unwrap();
    stranger.stop();
    let before = std::fs::read(stranger.data_dir().join("postgresql.auto.conf")).unwrap();
    let dir = group.nodes[0].files.config.parent().unwrap().to_owned();
    group
        .nodes
        .push(zgres_testkit::group::Node::new("stranger", stranger, &dir));
    group.start(1);
    let status = poll::until("the stranger's deadman to exit", DEADLINE, || {
        let status = group.nodes[1]
            .deadman
            .as_mut()
            .unwrap()
            .try_exit_status()
            .unwrap();
        std::future::ready(status)
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(65), "{}", group.nodes[1].log_text());
    assert!(group.nodes[1].log_text().contains("system identifier"));
    assert!(group.nodes[1].postmaster_pid().is_none());
    assert!(!group.nodes[1].pg.data_dir().join("standby.signal").exists());
    let after = std::fs::read(group.nodes[1].pg.data_dir().join("postgresql.auto.conf")).unwrap();
    assert_eq!(before, after, "configuration untouched");
    let client = group.zk_client().await;
    let states = client
        .list_children(&group.layout.dir(Dir::State))
        .await
        .unwrap();
    assert!(!states.iter().any(|s| s.contains(&group.nodes[1].node_id())));
}

/// Config errors exit 78 and name the key; usage errors exit 64; --check-config validates.
#[test]
fn config_and_usage_errors_have_their_exit_codes() {
    let exe = env!("CARGO_BIN_EXE_zgres-deadman");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[zookeeper]\nconnect = \"127.0.0.1:1\"\nsession_timeout_ms = 10\n\
         [node]\ngroup = \"a_b\"\naddress = \"127.0.0.1\"\n\
         [postgres]\ndata_dir = \"/nonexistent\"\nport = 5432\nrun_as = \"postgres\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(exe)
        .args(["--check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["zookeeper.session_timeout_ms", "node.group", "bad.toml"] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    let out = std::process::Command::new(exe)
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = std::process::Command::new(exe).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/zgres-deadman.toml"
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

/// `--check-config` prints the takeover wait the `[zookeeper]` section gives; undeclared
/// ensemble timing is a warning (ZooKeeper's defaults assumed), a bad value a config error
/// naming its key.
#[test]
fn check_config_prints_the_takeover_wait_and_warns_when_the_ensemble_is_undeclared() {
    let exe = env!("CARGO_BIN_EXE_zgres-deadman");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/zgres-deadman.toml"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(exe)
            .args(["--check-config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    // The example leaves them commented out: ZooKeeper's defaults, 2000 ms x 5.
    let (code, out) = check("undeclared.toml", &example);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("warning:") && l.contains("waits 11.90 s")),
        "{out}"
    );
    let declared = example
        .replace("# ensemble_tick_ms = 200", "ensemble_tick_ms = 200")
        .replace("# ensemble_sync_limit = 5", "ensemble_sync_limit = 5");
    let (code, out) = check("declared.toml", &declared);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("waits 1.10 s"), "{out}");
    assert!(!out.contains("ZooKeeper's defaults, assumed"), "{out}");
    let standalone = declared.replace("ensemble_sync_limit = 5", "ensemble_sync_limit = 0");
    let (_, out) = check("standalone.toml", &standalone);
    assert!(out.contains("waits 0.00 s"), "{out}");
    let bad = declared.replace("ensemble_sync_limit = 5", "ensemble_sync_limit = 5000");
    let (code, out) = check("bad.toml", &bad);
    assert_eq!(code, Some(78), "{out}");
    assert!(out.contains("zookeeper.ensemble_sync_limit"), "{out}");
}

/// Someone overwrites the primary's lock with garbage, then with another node's id: the lock
/// holder notices, logs it, and puts its own content back (its session still owns the znode);
/// it stays the primary throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwritten_lock_content_is_restored_by_its_holder() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    let client = group.zk_client().await;
    let lock = group.path(Znode::Lock);
    let other = format!(
        r#"{{"v":1,"node":"{}","timeline":1}}"#,
        group.nodes[1].node_id()
    );
    for content in [&b"\x00garbage"[..], other.as_bytes()] {
        client.set_data(&lock, content, None).await.unwrap();
        poll::until("the holder to restore its lock", DEADLINE, || async {
            (group.lock_holder(&client).await == Some(0)).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    }
    let log = group.nodes[0].log_text();
    assert_eq!(
        log.matches("our lock's content was overwritten; restoring it")
            .count(),
        2,
        "{log}"
    );
    assert!(log.contains("restored our lock's content"), "{log}");
    assert_eq!(group.nodes[0].is_primary().await, Some(true));
}
