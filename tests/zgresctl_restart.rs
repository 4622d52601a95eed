//! `zgresctl restart`, `reload` and `reinit` against a real group: carried out by the nodes'
//! deadmen, PostgreSQL restarted in place, with a writer on the primary.

use std::process::Output;

use zgres_schema::{GroupName, Znode};
use zgres_testkit::group::{missing_acks, Group, Timing, Writer, DEADLINE};
use zgres_testkit::poll;
use zgres_tests::e2e::binary;

/// zgresctl, run off the runtime's threads (it waits for the restart).
async fn zgresctl(zookeeper: &str, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(binary("zgresctl"));
    command.arg("--zookeeper").arg(zookeeper).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The primary restarts in place: a new postmaster, the same lock znode held by the same
/// session (never deleted or recreated: no failover), no promotion recorded, no acknowledged
/// commit lost, writes on the same node afterwards. A replica restarts and follows the same
/// primary again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zgresctl_restart_keeps_the_primary_and_loses_no_commit() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    let zk = group.zk.connect_string();
    let client = group.zk_client().await;
    let lock = group.path(Znode::Lock);
    let history = group.path(Znode::History);
    let (_, lock_before) = client.get_data(&lock).await.unwrap();
    let (history_before, _) = client.get_data(&history).await.unwrap();
    let postmaster = group.nodes[0].postmaster_pid().unwrap();
    let writer = Writer::start(&group);
    writer.wait_more_acks(0, 20).await;

    let done = json(&zgresctl(&zk, &["--json", "restart", "main", "n0", "--force"]).await);
    assert_eq!(done["role"], "primary", "{done}");
    assert_eq!(done["action"], "restart", "{done}");
    let restarted = group.nodes[0].postmaster_pid();
    assert!(
        restarted.is_some_and(|pid| pid != postmaster),
        "PostgreSQL was not restarted ({postmaster} -> {restarted:?})\n{}",
        group.logs_with_first(Some(0))
    );
    let (_, lock_after) = client.get_data(&lock).await.unwrap();
    assert_eq!(
        lock_after.czxid, lock_before.czxid,
        "the lock was recreated"
    );
    assert_eq!(
        lock_after.ephemeral_owner, lock_before.ephemeral_owner,
        "the lock changed session"
    );
    // Writes go on, on the same primary.
    writer.wait_more_acks(0, 20).await;
    let acks = writer.finish().await;
    let missing = missing_acks(&group, &acks, 0).await;
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    let (history_after, _) = client.get_data(&history).await.unwrap();
    assert_eq!(history_after, history_before, "a promotion was recorded");
    let request = group.layout.path(&Znode::Request(
        GroupName::new("main").unwrap(),
        group.nodes[0].node_id().parse().unwrap(),
    ));
    assert!(
        client.check_stat(&request).await.unwrap().is_none(),
        "the request was left behind"
    );

    // The replica.
    let replica_postmaster = group.nodes[1].postmaster_pid().unwrap();
    let done = json(&zgresctl(&zk, &["--json", "restart", "main", "n1", "--force"]).await);
    assert_eq!(done["role"], "replica", "{done}");
    assert_ne!(group.nodes[1].postmaster_pid(), Some(replica_postmaster));
    group.wait_following(1, 0).await;
    assert_eq!(group.wait_primary(&[]).await, 0, "the primary stayed");

    // Reload: through the same path as SIGHUP, PostgreSQL reloads too; nothing restarts.
    let primary_postmaster = group.nodes[0].postmaster_pid();
    let done = json(&zgresctl(&zk, &["--json", "reload", "main", "n0"]).await);
    assert_eq!(done["action"], "reload", "{done}");
    let log = group.nodes[0].log_text();
    assert!(
        log.contains("SIGHUP: the configuration file is valid"),
        "{}",
        group.logs_with_first(Some(0))
    );
    assert_eq!(group.nodes[0].postmaster_pid(), primary_postmaster);

    // The whole group, one node at a time: the replica first, the primary last, in place.
    let done = json(&zgresctl(&zk, &["--json", "restart", "main", "--force"]).await);
    let roles: Vec<&str> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["replica", "primary"], "{done}");
    assert_ne!(group.nodes[0].postmaster_pid(), primary_postmaster);
    let (_, lock_now) = client.get_data(&lock).await.unwrap();
    assert_eq!(lock_now.czxid, lock_before.czxid, "the lock was recreated");
    group.wait_following(1, 0).await;

    // Reinit: the replica's data directory emptied and cloned again from the primary; the
    // primary's is never touched.
    let marker = group.nodes[1].pg.data_dir().join("zgres-test-marker");
    std::fs::write(&marker, "written before the reinit").unwrap();
    let done = json(&zgresctl(&zk, &["--json", "reinit", "main", "n1", "--force"]).await);
    assert_eq!(done["role"], "replica", "{done}");
    assert!(!marker.exists(), "the data directory was not emptied");
    group.wait_following(1, 0).await;
    let refused = zgresctl(&zk, &["reinit", "main", "n0", "--force"]).await;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("is the primary"), "{said}");

    // A node whose deadman is gone (its state gone with its session): refused, nothing
    // written that no deadman would ever delete.
    let n1 = group.nodes[1].node_id();
    group.kill_node(1);
    let state = format!("{}/main_{n1}", group.layout.dir(zgres_schema::Dir::State));
    poll::until(
        "node 1's state to go with its session",
        DEADLINE,
        || async {
            client
                .check_stat(&state)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await
    .unwrap();
    let refused = zgresctl(&zk, &["restart", "main", &n1, "--force"]).await;
    assert!(!refused.status.success());
    let orphan = group.layout.path(&Znode::Request(
        GroupName::new("main").unwrap(),
        n1.parse().unwrap(),
    ));
    assert!(client.check_stat(&orphan).await.unwrap().is_none());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("has no node"), "{said}");
}
