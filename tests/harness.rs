//! The test harness against the real things: a ZooKeeper ensemble survives member loss, a
//! blackholed client's session expires and takes its ephemeral znode with it, a replica made by
//! the harness streams from its primary, and no process outlives a test.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use zgres_testkit::fault_proxy::{FaultProxy, ProxyMode};
use zgres_testkit::poll;
use zgres_testkit::postgres::PgNode;
use zgres_testkit::zookeeper::ZkCluster;
use zookeeper_client as zk;

const DEADLINE: Duration = Duration::from_secs(30);

async fn connect(addr: &str, session_timeout: Duration) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(session_timeout)
        .connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to ZooKeeper at {addr}: {e}"))
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

#[tokio::test]
async fn zookeeper_ensemble_keeps_serving_with_one_member_down() {
    let mut ensemble = ZkCluster::start(3).await.unwrap();
    let mut modes = Vec::new();
    for i in 0..3 {
        modes.push(ensemble.mode(i).await.unwrap());
    }
    let leader = modes.iter().position(|m| m == "leader").unwrap_or_else(|| {
        panic!("an ensemble of 3 has a leader, modes were {modes:?}");
    });

    // Lose the leader: the two others must elect a new one and keep serving writes.
    ensemble.kill_member(leader);
    assert!(ensemble.mode(leader).await.is_none());
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let survivor_addrs = survivors
        .iter()
        .map(|&i| ensemble.client_addr(i).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let client = connect(&survivor_addrs, Duration::from_secs(4)).await;
    poll::until(
        "a write accepted with one member down",
        DEADLINE,
        || async {
            client
                .create("/written-without-leader", b"yes", &persistent())
                .await
                .ok()
        },
    )
    .await
    .unwrap();

    // The lost member comes back as a follower and serves what was written without it.
    ensemble.restart_member(leader).await.unwrap();
    assert_eq!(ensemble.mode(leader).await.as_deref(), Some("follower"));
    let rejoined = connect(
        &ensemble.client_addr(leader).to_string(),
        Duration::from_secs(4),
    )
    .await;
    rejoined.sync("/written-without-leader").await.unwrap();
    let (data, _) = rejoined.get_data("/written-without-leader").await.unwrap();
    assert_eq!(data, b"yes");
}

#[tokio::test]
async fn ephemeral_znode_vanishes_when_its_blackholed_session_expires() {
    let server = ZkCluster::standalone().await.unwrap();
    let proxy = FaultProxy::start(server.client_addr(0)).unwrap();
    let behind_proxy = connect(&proxy.addr().to_string(), Duration::from_secs(2)).await;
    let observer = connect(&server.connect_string(), Duration::from_secs(10)).await;

    behind_proxy
        .create(
            "/ephemeral",
            b"mine",
            &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let (_, stat) = observer.get_data("/ephemeral").await.unwrap();
    assert_eq!(stat.ephemeral_owner, behind_proxy.session_id().0);

    proxy.set_mode(ProxyMode::Blackhole);
    // Cut off, the session is still alive on the server until its timeout passes...
    assert!(observer.check_stat("/ephemeral").await.unwrap().is_some());
    // ...and then the server expires it and deletes the ephemeral node.
    poll::until("the ephemeral znode to vanish", DEADLINE, || async {
        match observer.check_stat("/ephemeral").await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await
    .unwrap();

    // Once traffic flows again, the cut-off client learns its session is gone.
    proxy.set_mode(ProxyMode::Pass);
    let states = behind_proxy.state_watcher();
    poll::until(
        "the cut-off client to see its session expire",
        DEADLINE,
        || {
            let state = states.peek_state();
            async move { (state == zk::SessionState::Expired).then_some(()) }
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn replica_made_by_the_harness_streams_from_its_primary() {
    let primary = PgNode::init_primary("primary").await.unwrap();
    let replica = primary.clone_replica("replica").await.unwrap();
    replica.wait_streaming(DEADLINE).await.unwrap();

    assert!(!primary.is_in_recovery().await.unwrap());
    assert!(replica.is_in_recovery().await.unwrap());
    assert_eq!(
        primary.system_id().await.unwrap(),
        replica.system_id().await.unwrap()
    );

    primary
        .execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('streamed')")
        .await
        .unwrap();
    let written = primary
        .wal_lsn()
        .await
        .unwrap()
        .expect("primary has an LSN");
    poll::until("the row to reach the replica", DEADLINE, || async {
        let client = replica.connect().await.ok()?;
        let row = client.query_opt("SELECT v FROM t", &[]).await.ok()??;
        (row.get::<_, String>(0) == "streamed").then_some(())
    })
    .await
    .unwrap();
    let replayed = replica
        .replay_lsn()
        .await
        .unwrap()
        .expect("replica replays");
    assert!(
        replayed >= written,
        "replayed {replayed} < written {written}"
    );
}

/// Process groups with a member that is still running (zombies do not count: they are dead,
/// waiting for their parent to reap them).
fn live_groups(groups: &HashSet<u32>) -> Vec<String> {
    let mut live = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return live;
    };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, pgrp, ...
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(pgrp)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        if *state != "Z" && pgrp.parse().is_ok_and(|g: u32| groups.contains(&g)) {
            live.push(stat.chars().take(80).collect());
        }
    }
    live
}

const CHILD_MODE: &str = "ZGRES_HARNESS_CHILD_MODE";
const CHILD_PIDS: &str = "ZGRES_HARNESS_CHILD_PIDS";

/// Not a test by itself: `no_process_is_left_behind` runs it in a child process, which then
/// panics or is killed.
#[tokio::test]
#[ignore = "helper run by no_process_is_left_behind"]
async fn harness_child_process() {
    let (Ok(mode), Ok(pid_file)) = (std::env::var(CHILD_MODE), std::env::var(CHILD_PIDS)) else {
        return;
    };
    let zookeeper = ZkCluster::standalone().await.unwrap();
    let primary = PgNode::init_primary("left-primary").await.unwrap();
    let replica = primary.clone_replica("left-replica").await.unwrap();
    let proxy = FaultProxy::start(zookeeper.client_addr(0)).unwrap();
    let pids = [zookeeper.pid(0), primary.pid(), replica.pid()]
        .map(|p| p.unwrap().to_string())
        .join(" ");
    let tmp = format!("{pid_file}.tmp");
    std::fs::write(&tmp, pids).unwrap();
    std::fs::rename(&tmp, &pid_file).unwrap();
    match mode.as_str() {
        "panic" => panic!("the harness must clean up when a test panics"),
        _ => {
            // Wait to be killed with SIGKILL by the parent test.
            tokio::time::sleep(Duration::from_secs(600)).await;
            drop((proxy, replica, primary, zookeeper));
        }
    }
}

/// Runs the child test with its temp dirs inside `pid_file`'s directory, so that the parent
/// removes them even when the child is killed before its destructors run.
fn run_child(mode: &str, pid_file: &Path) -> std::process::Child {
    use std::os::unix::fs::PermissionsExt;
    let tmp = pid_file.with_extension("tmpdir");
    std::fs::create_dir_all(&tmp).unwrap();
    // PostgreSQL runs as `postgres` under root and must traverse it.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args([
            "harness_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_MODE, mode)
        .env(CHILD_PIDS, pid_file)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

async fn child_groups(pid_file: &Path, child: &mut std::process::Child) -> HashSet<u32> {
    let text = poll::until(
        "the child test to start its processes",
        Duration::from_secs(120),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("child test exited before starting its processes: {status}");
            }
            std::future::ready(std::fs::read_to_string(pid_file).ok())
        },
    )
    .await
    .unwrap();
    text.split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

async fn assert_all_gone(groups: &HashSet<u32>) {
    assert_eq!(groups.len(), 3);
    poll::until("every harness process to be gone", DEADLINE, || async {
        live_groups(groups).is_empty().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; still running: {:?}", live_groups(groups)));
}

#[tokio::test]
async fn no_process_is_left_behind() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // A test that panics: the harness's destructors kill and reap everything while unwinding.
    let pid_file = dir.path().join("panic.pids");
    let mut child = run_child("panic", &pid_file);
    let groups = child_groups(&pid_file, &mut child).await;
    assert!(!live_groups(&groups).is_empty(), "processes ran");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child test panicked");
    assert_all_gone(&groups).await;

    // A test process killed with SIGKILL runs no destructor: the kernel's parent-death signal
    // must take its processes down.
    let pid_file = dir.path().join("kill.pids");
    let mut child = run_child("sigkill", &pid_file);
    let groups = child_groups(&pid_file, &mut child).await;
    assert!(!live_groups(&groups).is_empty(), "processes ran");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_all_gone(&groups).await;
}
