//! Automatic failover with real deadmen, ZooKeeper and PostgreSQL.

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use zgres_schema::documents::GroupConfig;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;
use zgres_testkit::zookeeper::ZkCluster;

/// kill -9 of the primary's deadman and PostgreSQL together: a replica is promoted and the
/// other follows it on the new timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_node_killed_replica_promoted_and_other_follows() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    let old = group.wait_primary(&[]).await;
    assert_eq!(old, 0, "the adopted primary keeps its role");
    for i in [1, 2] {
        group.wait_following(i, 0).await;
    }

    // The whole primary node dies at once.
    group.kill_node(old);

    let new = group.wait_primary(&[old]).await;
    let other = 3 - new; // {1, 2} minus new
    group.wait_following(other, new).await;
    let client = group.nodes[new].client().await.unwrap();
    let timeline: i32 = client
        .query_one(
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        timeline > 1,
        "promotion opened a new timeline, got {timeline}"
    );
}

/// SIGTERM of the primary's deadman: PostgreSQL is stopped cleanly and the lock released before
/// the deadman exits, so a replica can take over without waiting for a session timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_postgres_and_releases_the_lock_at_once() {
    // A long session: if the lock were left to expire, it would still be there after exit.
    let timing = Timing {
        session_timeout_ms: 30_000,
        fence_margin_ms: 5_000,
        ..Timing::default()
    };
    let mut group = Group::prepare(2, timing).await;
    group.start_all().await;
    let old = group.wait_primary(&[]).await;
    let client = group.zk_client().await;
    assert_eq!(group.lock_holder(&client).await, Some(old));

    let deadman = group.nodes[old].deadman.take().unwrap();
    let status = deadman.stop(Signal::SIGTERM, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit, got {status:?}"
    );
    assert_ne!(
        group.lock_holder(&client).await,
        Some(old),
        "the lock was released, not left to expire"
    );
    assert!(
        group.nodes[old].postmaster_pid().is_none(),
        "postgres stopped"
    );
    let new = group.wait_primary(&[old]).await;
    assert_eq!(new, 1);
}

/// SIGTERM of the primary's deadman on a ZooKeeper ensemble, where a lock that merely vanished
/// costs whoever takes it the takeover wait (it could have expired with its primary still
/// writing through a member cut from the leader): the stopping primary hands the lock to its
/// streaming standby, the stop position recorded as in a switchover, and the standby promotes
/// without waiting, with everything the old primary committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_primary_hands_its_lock_over_without_the_takeover_wait() {
    let zk = ZkCluster::start(3).await.unwrap();
    let mut group = Group::prepare_on(zk, 2, Timing::default()).await;
    group.start_all().await;
    let old = group.wait_primary(&[]).await;
    let new = 1 - old;
    group.wait_following(new, old).await;
    let writer = group.nodes[old].client().await.unwrap();
    writer
        .batch_execute("CREATE TABLE handed_over (v int); INSERT INTO handed_over VALUES (1)")
        .await
        .unwrap();

    let deadman = group.nodes[old].deadman.take().unwrap();
    let status = deadman.stop(Signal::SIGTERM, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit, got {status:?}"
    );
    assert_eq!(group.wait_primary(&[old]).await, new);
    let stopped = group.nodes[old].log_text();
    assert!(
        stopped.contains("primary stopped; handing the lock over"),
        "the stopping primary handed the lock over\n{stopped}"
    );
    let taker = group.nodes[new].log_text();
    assert!(
        !taker.contains(zgres_deadman::decision::WAITING_TO_PROMOTE),
        "the standby waited before promoting\n{taker}"
    );
    let client = group.nodes[new].client().await.unwrap();
    let row = client
        .query_one("SELECT count(*) FROM handed_over", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "the old primary's write is there");
}

/// Replicas that must not promote: one tagged nofailover (fully caught up), one further behind
/// the last primary position than maximum_lag_on_failover. With the primary gone, nobody
/// promotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nofailover_and_lagging_replicas_never_promote() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group
        .set_group_config(&GroupConfig {
            maximum_lag_on_failover_bytes: 64 * 1024,
            ..GroupConfig::default()
        })
        .await;
    group.nodes[1].extra_config = "[tags]\nnofailover = true\n".into();
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;

    // Hold node 2 behind: freeze its WAL receiver, then write well past the lag limit.
    let receiver = group.nodes[2].freeze_wal_receiver().await;
    let written = group.nodes[0].bulk_write(20_000).await;
    // Wait until the primary has published that position (its state refresh), so the replicas
    // know how far behind node 2 is.
    let client = group.zk_client().await;
    let state_path = format!("/zgres/state/main_{}", group.nodes[0].node_id());
    poll::until(
        "the primary to publish its new position",
        DEADLINE,
        || async {
            let (data, _) = client.get_data(&state_path).await.ok()?;
            let state: zgres_schema::documents::NodeState =
                zgres_schema::decode(&state_path, &data).ok()?;
            (state.wal.write? >= written).then_some(())
        },
    )
    .await
    .unwrap();
    // Node 2 must have read that position: each round reads the group, then publishes its own
    // state (at least every state_refresh). Two more publications after now mean a full round
    // has read the group after the primary's publication.
    let n2_path = format!("/zgres/state/main_{}", group.nodes[2].node_id());
    let (_, before) = client.get_data(&n2_path).await.unwrap();
    poll::until("node 2 to complete a round", DEADLINE, || async {
        let (_, stat) = client.get_data(&n2_path).await.ok()?;
        (stat.version >= before.version + 2).then_some(())
    })
    .await
    .unwrap();

    group.kill_node(0);
    // Node 2's WAL receiver stays frozen: thawed, it would read the WAL still buffered in its
    // socket and legitimately catch up.

    // The dead primary's lock goes with its session...
    poll::until("the dead primary's lock to expire", DEADLINE, || async {
        (group.lock_holder(&client).await != Some(0)).then_some(())
    })
    .await
    .unwrap();
    // ...and then, well past the election wait, nobody may take it.
    let watch_until = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < watch_until {
        if let Some(holder) = group.lock_holder(&client).await {
            panic!(
                "node {holder} took the lock but must not promote\n{}",
                group.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in [1, 2] {
        assert_eq!(group.nodes[i].is_primary().await, Some(false));
    }
    // Each says why in its published state (and so in `zgresctl list`), so an operator facing
    // a group without a primary sees the reason.
    for (i, why) in [
        (1, "not taking over the free lock: tagged nofailover"),
        (2, "maximum_lag_on_failover_bytes"),
    ] {
        let path = format!("/zgres/state/main_{}", group.nodes[i].node_id());
        poll::until(
            &format!("node {i} to publish why it does not take over"),
            DEADLINE,
            || async {
                let (data, _) = client.get_data(&path).await.ok()?;
                let state: zgres_schema::documents::NodeState =
                    zgres_schema::decode(&path, &data).ok()?;
                state.warnings.iter().any(|w| w.contains(why)).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    }
    nix::sys::signal::kill(Pid::from_raw(receiver), Signal::SIGCONT).ok();
}

/// With one replica held behind (its WAL receiver frozen), the more advanced replica is the one
/// promoted, and the other follows it once it thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_more_advanced_replica_is_promoted() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;

    let receiver = group.nodes[1].freeze_wal_receiver().await;
    let written = group.nodes[0].bulk_write(5_000).await.to_string();
    let n2 = group.nodes[2].client().await.unwrap();
    poll::until("node 2 to receive everything", DEADLINE, || async {
        let row = n2
            .query_one(
                "SELECT pg_last_wal_receive_lsn() >= $1::text::pg_lsn",
                &[&written],
            )
            .await
            .ok()?;
        row.get::<_, bool>(0).then_some(())
    })
    .await
    .unwrap();

    group.kill_node(0);
    let new = group.wait_primary(&[0]).await;
    assert_eq!(new, 2, "the replica with more WAL wins\n{}", group.logs());

    nix::sys::signal::kill(Pid::from_raw(receiver), Signal::SIGCONT).unwrap();
    group.wait_following(1, 2).await;
}

/// Regression (the CI failure of 2026-12-01, lost persistent watches): a replica whose
/// connection to ZooKeeper was lost and re-established within its session still hears that the
/// lock was deleted, and takes over when the primary dies. Before the fix in the vendored
/// client, its read cache never heard of the deletion and only its 120 s resync would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_reconnected_to_zookeeper_takes_over_when_the_primary_dies() {
    use zgres_testkit::fault_proxy::ProxyMode;

    let mut group = Group::prepare(2, Timing::default()).await;
    group.proxy_node(1);
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;

    // Connection lost and back well within the 2 s session: the same session goes on.
    let connections = |log: &str| log.matches("succeeds to establish session").count();
    let before = connections(&group.nodes[1].log_text());
    let proxy = group.nodes[1].proxy.as_ref().unwrap();
    proxy.set_mode(ProxyMode::Refuse);
    poll::until(
        "n1's client to notice the lost connection",
        DEADLINE,
        || {
            let log = group.nodes[1].log_text();
            std::future::ready(log.contains("enter state Disconnected").then_some(()))
        },
    )
    .await
    .unwrap();
    proxy.set_mode(ProxyMode::Pass);
    poll::until("n1's client to reconnect", DEADLINE, || {
        let log = group.nodes[1].log_text();
        std::future::ready((connections(&log) > before).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));
    let log = group.nodes[1].log_text();
    assert_eq!(
        log.matches("ZooKeeper session established").count(),
        1,
        "n1 opened a new session; this test is about a kept one\n{log}"
    );

    group.kill_node(0);
    assert_eq!(group.wait_primary(&[0]).await, 1);
}
