//! `zgresctl restart`, `reload` and `reinit` against a real group: carried out by the nodes'
//! deadmen, PostgreSQL restarted in place, with a writer on the primary.

use std::process::Output;

use zgres_schema::{GroupName, Znode};
use zgres_testkit::group::{missing_acks, Group, Writer, DEADLINE};
use zgres_testkit::poll;
use zgres_tests::e2e::{running_pair, zgresctl};

/// zgresctl's JSON output; on failure, its message and the group's logs.
fn json(group: &Group, out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        group.logs()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `/history` once the first primary wrote it (a round or so after taking the lock).
async fn written_history(client: &zookeeper_client::Client, history: &str) -> Vec<u8> {
    poll::until("the group's history", DEADLINE, || async {
        client.get_data(history).await.ok().map(|(data, _)| data)
    })
    .await
    .unwrap()
}

/// The primary restarts in place: a new postmaster, the same lock znode held by the same
/// session (never deleted or recreated: no failover), no promotion recorded, no acknowledged
/// commit lost, writes on the same node afterwards. A replica restarts and follows the same
/// primary again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zgresctl_restart_keeps_the_primary_and_loses_no_commit() {
    let mut group = running_pair().await;
    let zk = group.zk.connect_string();
    let client = group.zk_client().await;
    let lock = group.path(Znode::Lock);
    let history = group.path(Znode::History);
    let (_, lock_before) = client.get_data(&lock).await.unwrap();
    let history_before = written_history(&client, &history).await;
    let postmaster = group.nodes[0].postmaster_pid().unwrap();
    let writer = Writer::start(&group);
    writer.wait_more_acks(0, 20).await;

    let done = json(
        &group,
        &zgresctl(&zk, &["--json", "restart", "main", "n0", "--force"]).await,
    );
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
    let done = json(
        &group,
        &zgresctl(&zk, &["--json", "restart", "main", "n1", "--force"]).await,
    );
    assert_eq!(done["role"], "replica", "{done}");
    assert_ne!(group.nodes[1].postmaster_pid(), Some(replica_postmaster));
    // Done means back: streaming again already when zgresctl returns.
    let receiver = group.nodes[1].wal_receiver().await;
    assert!(
        receiver
            .as_ref()
            .is_some_and(|(status, _)| status == "streaming"),
        "{receiver:?}\n{}",
        group.logs_with_first(Some(1))
    );
    group.wait_following(1, 0).await;
    assert_eq!(group.wait_primary(&[]).await, 0, "the primary stayed");

    // Reload: through the same path as SIGHUP, PostgreSQL reloads too; nothing restarts.
    let primary_postmaster = group.nodes[0].postmaster_pid();
    let done = json(
        &group,
        &zgresctl(&zk, &["--json", "reload", "main", "n0", "--force"]).await,
    );
    assert_eq!(done["action"], "reload", "{done}");
    let log = group.nodes[0].log_text();
    assert!(
        log.contains("SIGHUP: the configuration file is valid"),
        "{}",
        group.logs_with_first(Some(0))
    );
    assert_eq!(group.nodes[0].postmaster_pid(), primary_postmaster);

    // The whole group, one node at a time: the replica first, the primary last, in place.
    let done = json(
        &group,
        &zgresctl(&zk, &["--json", "restart", "main", "--force"]).await,
    );
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
    let done = json(
        &group,
        &zgresctl(&zk, &["--json", "reinit", "main", "n1", "--force"]).await,
    );
    assert_eq!(done["role"], "replica", "{done}");
    assert!(!marker.exists(), "the data directory was not emptied");
    group.wait_following(1, 0).await;
    let refused = zgresctl(&zk, &["reinit", "main", "n0", "--force"]).await;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("is the primary"), "{said}");

    // With the writer on the primary throughout: nothing acknowledged lost, no promotion.
    writer.wait_more_acks(0, 20).await;
    let acks = writer.finish().await;
    let missing = missing_acks(&group, &acks, 0).await;
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    let (history_after, _) = client.get_data(&history).await.unwrap();
    assert_eq!(history_after, history_before, "a promotion was recorded");

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

/// `restart --pending` restarts only the nodes whose PostgreSQL waits for one (here a replica
/// after `ALTER SYSTEM` and `zgresctl reload`); `--switchover` hands the primary over first and
/// restarts it as a replica; `--scheduled` is carried out by the deadman at its time, and
/// `--cancel` withdraws one not yet due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zgresctl_restart_pending_switchover_and_scheduled() {
    let group = running_pair().await;
    let zk = group.zk.connect_string();
    let client = group.zk_client().await;
    let n1: zgres_schema::NodeId = group.nodes[1].node_id().parse().unwrap();

    // Nothing waits for a restart: nothing is restarted.
    let postmasters = [
        group.nodes[0].postmaster_pid(),
        group.nodes[1].postmaster_pid(),
    ];
    let none = json(
        &group,
        &zgresctl(&zk, &["--json", "restart", "main", "--pending", "--force"]).await,
    );
    assert_eq!(none, serde_json::json!([]));
    assert_eq!(
        [
            group.nodes[0].postmaster_pid(),
            group.nodes[1].postmaster_pid()
        ],
        postmasters
    );

    // A postmaster-level change on the replica, seen after a reload (one without a
    // constraint between nodes: a standby needs max_connections and the like at least as
    // high as its primary's).
    let replica = group.nodes[1].client().await.expect("the replica answers");
    replica
        .batch_execute("ALTER SYSTEM SET shared_buffers = '17MB'")
        .await
        .unwrap();
    json(
        &group,
        &zgresctl(&zk, &["--json", "reload", "main", "n1", "--force"]).await,
    );
    let state_path = format!("{}/main_{n1}", group.layout.dir(zgres_schema::Dir::State));
    let pending = || async {
        let (data, _) = client.get_data(&state_path).await.ok()?;
        let state: zgres_schema::documents::NodeState =
            zgres_schema::decode(&state_path, &data).ok()?;
        Some(state.pending_restart)
    };
    poll::until("node 1 to publish a pending restart", DEADLINE, || async {
        pending().await.filter(|p| !p.is_empty())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));
    let done = json(
        &group,
        &zgresctl(&zk, &["--json", "restart", "main", "--pending", "--force"]).await,
    );
    let nodes: Vec<&str> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        [n1.to_string()],
        "only the node with a pending restart"
    );
    assert_eq!(group.nodes[0].postmaster_pid(), postmasters[0]);
    poll::until("node 1's pending restart to clear", DEADLINE, || async {
        pending().await.filter(|p| p.is_empty())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));

    // --switchover: the primary hands over, then restarts as a replica.
    let done = json(
        &group,
        &zgresctl(
            &zk,
            &["--json", "restart", "main", "n0", "--switchover", "--force"],
        )
        .await,
    );
    assert_eq!(done["role"], "replica", "{done}");
    assert_eq!(group.wait_primary(&[0]).await, 1);
    group.wait_following(0, 1).await;

    // --scheduled: carried out by the deadman when due; zgresctl returns at once.
    let request = group
        .layout
        .path(&Znode::Request(GroupName::new("main").unwrap(), n1));
    let scheduled = json(
        &group,
        &zgresctl(
            &zk,
            &[
                "--json",
                "restart",
                "main",
                "n1",
                "--scheduled",
                "+1h",
                "--force",
            ],
        )
        .await,
    );
    assert!(
        scheduled["scheduled_at_ms"].as_u64().is_some(),
        "{scheduled}"
    );
    assert!(client.check_stat(&request).await.unwrap().is_some());
    let cancelled = json(
        &group,
        &zgresctl(&zk, &["--json", "restart", "--cancel", "main", "n1"]).await,
    );
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    let out = zgresctl(&zk, &["restart", "--cancel", "main", "n1"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("no pending request"));
    assert!(client.check_stat(&request).await.unwrap().is_none());
    let before = group.nodes[1].postmaster_pid();
    let out = zgresctl(
        &zk,
        &["restart", "main", "n1", "--scheduled", "+2s", "--force"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll::until(
        "the scheduled restart to be carried out",
        DEADLINE,
        || async {
            let gone = client.check_stat(&request).await.ok()?.is_none();
            let restarted = group.nodes[1]
                .postmaster_pid()
                .is_some_and(|p| Some(p) != before);
            (gone && restarted).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));
    assert_eq!(group.wait_primary(&[]).await, 1, "restarted in place");
}

/// `zgresctl restart GROUP --scheduled`: a rolling restart the deadmen carry out from that
/// time, one node at a time (each hands on once it runs again), replicas first and the primary
/// last, in place: every postmaster new, the lock never recreated, no promotion recorded, no
/// acknowledged commit lost, no request left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zgresctl_scheduled_rolling_restart_is_carried_out_by_the_deadmen() {
    use zgres_testkit::group::Timing;
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;
    let zk = group.zk.connect_string();
    let client = group.zk_client().await;
    let (_, lock_before) = client.get_data(&group.path(Znode::Lock)).await.unwrap();
    let history = group.path(Znode::History);
    let history_before = written_history(&client, &history).await;
    let before: Vec<_> = (0..3).map(|i| group.nodes[i].postmaster_pid()).collect();
    let writer = Writer::start(&group);
    writer.wait_more_acks(0, 20).await;

    let scheduled = json(
        &group,
        &zgresctl(
            &zk,
            &["--json", "restart", "main", "--scheduled", "+2s", "--force"],
        )
        .await,
    );
    let ids: Vec<String> = (0..3).map(|i| group.nodes[i].node_id()).collect();
    let order: Vec<usize> = scheduled["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| ids.iter().position(|id| Some(id.as_str()) == n.as_str()))
        .collect();
    assert!(
        order.len() == 3 && order[2] == 0,
        "every node, replicas first, the primary last: {scheduled}"
    );

    let requests = group.layout.dir(zgres_schema::Dir::Request);
    poll::until(
        "every node restarted and no request left",
        DEADLINE,
        || async {
            let left = client.list_children(&requests).await.ok()?;
            let all_new = (0..3).all(|i| {
                let now = group.nodes[i].postmaster_pid();
                now.is_some() && now != before[i]
            });
            (left.is_empty() && all_new).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    // Each replica handed on to the next once back, the last one to the primary.
    for (from, to) in [(order[0], order[1]), (order[1], order[2])] {
        let log = group.nodes[from].log_text();
        assert!(
            log.contains("rolling restart: this node is back; handed on")
                && log.contains(&format!("next={}", ids[to])),
            "n{from} did not hand on to n{to}\n{log}"
        );
    }
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;
    let (_, lock_after) = client.get_data(&group.path(Znode::Lock)).await.unwrap();
    assert_eq!(
        lock_after.czxid, lock_before.czxid,
        "the lock was recreated"
    );
    assert_eq!(lock_after.ephemeral_owner, lock_before.ephemeral_owner);
    writer.wait_more_acks(0, 20).await;
    let acks = writer.finish().await;
    let missing = missing_acks(&group, &acks, 0).await;
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    let (history_after, _) = client.get_data(&history).await.unwrap();
    assert_eq!(history_after, history_before, "a promotion was recorded");

    // Cancelling without a node removes every pending request of the group.
    let out = zgresctl(&zk, &["restart", "main", "--scheduled", "+1h", "--force"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(client.list_children(&requests).await.unwrap().len(), 1);
    // `list` shows where the rolling restart stands.
    let out = zgresctl(&zk, &["list"]).await;
    let listed = String::from_utf8_lossy(&out.stdout);
    let expected = format!("! request to {}: restart at ", ids[order[0]]);
    assert!(
        listed.contains(&expected)
            && listed.contains(&format!(", then {}, {}", ids[order[1]], ids[order[2]])),
        "{listed}"
    );
    let cancelled = json(
        &group,
        &zgresctl(&zk, &["--json", "restart", "--cancel", "main"]).await,
    );
    assert_eq!(
        cancelled["cancelled"],
        serde_json::json!([ids[order[0]]]),
        "{cancelled}"
    );
    assert!(client.list_children(&requests).await.unwrap().is_empty());
}
