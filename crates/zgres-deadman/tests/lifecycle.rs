//! The node lifecycle the deadman owns: bootstrap of a new group, clones for new replicas,
//! rejoin of a diverged old primary with pg_rewind, `/history`, planned switchover and pause.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use zgres_schema::documents::{DatabaseId, GroupConfig, History, PromotionReason};
use zgres_schema::{decode, Znode};
use zgres_testkit::fault_proxy::ProxyMode;
use zgres_testkit::group::checks::{
    assert_no_other_primary, request_switchover, wait_promotion_recorded,
};
use zgres_testkit::group::{missing_acks, Group, Timing, Writer, DEADLINE};
use zgres_testkit::poll;

/// Waits until the lock holder's PostgreSQL runs as a primary; returns its index.
async fn wait_running_primary(group: &Group) -> usize {
    let client = group.zk_client().await;
    poll::until("the lock holder to run as primary", DEADLINE, || async {
        let holder = group.lock_holder(&client).await?;
        (group.nodes[holder].is_primary().await == Some(true)).then_some(holder)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()))
}

async fn history(group: &Group) -> History {
    let client = group.zk_client().await;
    let path = group.path(Znode::History);
    let (data, _) = client.get_data(&path).await.expect("/history exists");
    decode(&path, &data).unwrap()
}

async fn system_id(group: &Group, i: usize) -> String {
    let client = group.nodes[i].client().await.expect("node answers");
    let row = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Three deadmen started together on empty data directories: one runs initdb, the others
/// clone it and stream. A fourth node added later clones itself, here with a custom clone
/// command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_nodes_bootstrap_one_database_and_clone_it() {
    let mut group = Group::prepare_empty(3, Timing::default()).await;
    group.start_all_at_once();
    let primary = wait_running_primary(&group).await;
    for i in (0..3).filter(|&i| i != primary) {
        group.wait_following(i, primary).await;
    }
    let bootstrapped: Vec<usize> = (0..3)
        .filter(|&i| group.nodes[i].log_text().contains("bootstrap done"))
        .collect();
    assert_eq!(bootstrapped, [primary], "exactly one node ran initdb");
    for i in (0..3).filter(|&i| i != primary) {
        assert!(
            group.nodes[i].log_text().contains("clone done"),
            "n{i} cloned the primary\n{}",
            group.logs()
        );
    }
    let client = group.nodes[primary].client().await.unwrap();
    let checksums: String = client
        .query_one("SHOW data_checksums", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        checksums, "on",
        "pg_rewind needs checksums or wal_log_hints"
    );
    let zk = group.zk_client().await;
    let db_id_path = group.path(Znode::DatabaseId);
    let (data, _) = zk.get_data(&db_id_path).await.unwrap();
    let db_id: DatabaseId = decode(&db_id_path, &data).unwrap();
    for i in 0..3 {
        assert_eq!(system_id(&group, i).await, db_id.system_id.to_string());
    }
    let first = history(&group).await;
    assert_eq!(first.entries.len(), 1);
    assert_eq!(first.entries[0].reason, PromotionReason::Bootstrap);
    assert_eq!(
        first.entries[0].new_primary.to_string(),
        group.nodes[primary].node_id()
    );

    // A node added later, with a custom clone command (run as the PostgreSQL user, no shell
    // around it, source in the environment).
    let late = group.add_empty_node();
    let dir = group.nodes[late].pg.socket_dir().to_owned();
    let script = dir.join("clone.sh");
    let marker = dir.join("clone-source");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\necho \"$ZGRES_SOURCE_HOST:$ZGRES_SOURCE_PORT\" > {}\n\
             exec {}/pg_basebackup -D \"$PGDATA\" -h \"$ZGRES_SOURCE_HOST\" -p \"$ZGRES_SOURCE_PORT\" -U postgres -X stream -c fast\n",
            marker.display(),
            zgres_testkit::postgres::bindir().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    group.nodes[late].extra_config = format!(
        "[provisioning]\nclone_command = [\"{}\"]\n",
        script.display()
    );
    group.start(late);
    group.wait_following(late, primary).await;
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        group.nodes[primary].node_id(),
        "the custom clone command ran with the primary as source"
    );
    assert_eq!(system_id(&group, late).await, db_id.system_id.to_string());
}

/// The primary is cut off from its replicas' replication and then from ZooKeeper, after
/// committing rows nobody else received. A replica takes over; when the partition heals the
/// old primary rewinds itself, streams from the new primary, and the diverged rows are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_old_primary_is_rewound_and_follows_the_new_primary() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.proxy_node(0);
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;

    // Refuse replication on the old primary, so what it commits next reaches nobody.
    let hba = group.nodes[0].pg.data_dir().join("pg_hba.conf");
    let old_hba = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host replication all 0.0.0.0/0 reject\n{old_hba}"),
    )
    .unwrap();
    let old = group.nodes[0].client().await.unwrap();
    old.batch_execute(
        "SELECT pg_reload_conf(); SELECT pg_terminate_backend(pid) FROM pg_stat_replication",
    )
    .await
    .unwrap();
    poll::until("replication from n0 to stop", DEADLINE, || async {
        let row = old
            .query_one("SELECT count(*) FROM pg_stat_replication", &[])
            .await
            .ok()?;
        (row.get::<_, i64>(0) == 0).then_some(())
    })
    .await
    .unwrap();
    old.execute(
        "INSERT INTO writes (node, seq) SELECT 'diverged', g FROM generate_series(1, 100) g",
        &[],
    )
    .await
    .unwrap();

    group.nodes[0]
        .proxy
        .as_ref()
        .unwrap()
        .set_mode(ProxyMode::Blackhole);
    let new = group.wait_primary(&[0]).await;
    let other = 3 - new;
    group.wait_following(other, new).await;
    let new_client = group.nodes[new].client().await.unwrap();
    let diverged = "SELECT count(*) FROM writes WHERE node = 'diverged'";
    let count = |row: tokio_postgres::Row| row.get::<_, i64>(0);
    assert_eq!(
        count(new_client.query_one(diverged, &[]).await.unwrap()),
        0,
        "the new primary never saw the diverged rows"
    );
    let last = wait_promotion_recorded(&group, new).await;
    assert_eq!(last.reason, PromotionReason::Failover, "{}", group.logs());
    assert_eq!(
        last.old_primary.map(|n| n.to_string()),
        Some(group.nodes[0].node_id()),
        "{}",
        group.logs()
    );
    assert!(last.timeline.get() >= 2);

    group.nodes[0]
        .proxy
        .as_ref()
        .unwrap()
        .set_mode(ProxyMode::Pass);
    group.wait_following(0, new).await;
    new_client
        .execute("INSERT INTO writes (node, seq) VALUES ('after', 1)", &[])
        .await
        .unwrap();
    let rejoined = group.nodes[0].client().await.unwrap();
    poll::until("the new primary's write to reach n0", DEADLINE, || async {
        let row = rejoined
            .query_one("SELECT count(*) FROM writes WHERE node = 'after'", &[])
            .await
            .ok()?;
        (count(row) == 1).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        count(rejoined.query_one(diverged, &[]).await.unwrap()),
        0,
        "the rows only the old primary had are gone from it"
    );
    assert!(
        group.nodes[0].log_text().contains("rewound"),
        "{}",
        group.logs()
    );
}

/// A planned switchover to a named replica while a writer commits on every node: the named
/// node becomes primary, the old primary follows it without a rewind, and every acknowledged
/// write is on the new primary. The request is removed and recorded in `/history`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_to_a_named_replica_loses_no_acknowledged_write() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;
    let writer = Writer::start(&group);
    group.wait_own_writes(0, 50).await;

    request_switchover(&group, Some(2), None).await;
    assert_eq!(group.wait_primary(&[0]).await, 2);
    group.wait_following(0, 2).await;
    group.wait_following(1, 2).await;
    group.wait_own_writes(2, 50).await;
    let acks = writer.finish().await;
    assert!(acks.iter().any(|a| a.node == 0) && acks.iter().any(|a| a.node == 2));
    let missing = missing_acks(&group, &acks, 2).await;
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");

    wait_request_gone(&group, "the request to be removed").await;
    let last = wait_promotion_recorded(&group, 2).await;
    assert_eq!(last.reason, PromotionReason::Switchover);
    assert!(
        group.nodes[0].log_text().contains("no divergence"),
        "the old primary did not follow without a rewind\n{}",
        group.logs_with_first(Some(0))
    );
}

/// Waits until `/switchover` is gone (the request finished or was dropped).
async fn wait_request_gone(group: &Group, what: &str) {
    let client = group.zk_client().await;
    poll::until(what, DEADLINE, || async {
        client
            .check_stat(&group.path(Znode::Switchover))
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

/// A switchover named a replica that was killed a moment before (its `/state` lives on until
/// its session expires): the primary does not hand over to a node that is not streaming from
/// it, drops the request with the reason, and stays primary. Before, it stepped down and the
/// group had no primary until the request timed out (found by the simulator, seed 15947).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_to_a_just_killed_replica_is_refused_and_the_primary_stays() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;

    // The deadman first, so that its `/state` still shows a healthy replica. Its death takes
    // the postmaster down at once (parent-death signals), so PostgreSQL's process group is
    // taken first: by the time the postmaster is gone its WAL receiver may still stream for a
    // moment, and the group must be killed whole (seen on a loaded machine: the primary saw
    // the receiver and handed over).
    let postgres = group.nodes[2].postmaster_pid().unwrap();
    group.nodes[2].deadman.take().unwrap().kill();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(postgres),
        nix::sys::signal::Signal::SIGKILL,
    );
    request_switchover(&group, Some(2), None).await;
    wait_request_gone(&group, "the request to be dropped").await;
    assert!(
        group.nodes[0]
            .log_text()
            .contains("no healthy replica streaming from this primary"),
        "{}",
        group.logs_with_first(Some(0))
    );
    assert_eq!(group.nodes[0].is_primary().await, Some(true));
    assert_no_other_primary(&group, Some(0), Duration::from_secs(2)).await;
    assert!(
        !group.nodes[0]
            .log_text()
            .contains("stopping postgres to hand over"),
        "{}",
        group.logs_with_first(Some(0))
    );
}

/// While paused, a crashed primary is not restarted and nobody is promoted, even when the
/// primary's node dies entirely; once resumed, the group fails over normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_group_takes_no_action_until_resumed() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;

    let paused = GroupConfig {
        paused: true,
        ..GroupConfig::default()
    };
    group.set_group_config(&paused).await;
    poll::until("every deadman to see the pause", DEADLINE, || async {
        group
            .nodes
            .iter()
            .all(|n| n.log_text().contains("the group is paused"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));

    group.nodes[0].kill_postgres();
    assert_no_other_primary(&group, Some(0), Duration::from_secs(3)).await;
    assert_eq!(
        group.nodes[0].postmaster_pid(),
        None,
        "the crashed primary was not restarted while paused"
    );
    group.nodes[0].deadman.take().unwrap().kill();
    let client = group.zk_client().await;
    poll::until("the dead primary's lock to expire", DEADLINE, || async {
        group.lock_holder(&client).await.is_none().then_some(())
    })
    .await
    .unwrap();
    assert_no_other_primary(&group, None, Duration::from_secs(3)).await;

    group.set_group_config(&GroupConfig::default()).await;
    let new = group.wait_primary(&[0]).await;
    group.wait_following(3 - new, new).await;
}

/// Issue 14 (placement): a replica tagged `clonefrom` is where a new node takes its base
/// backup, sparing the primary; the new node then streams from the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_clones_from_the_replica_tagged_clonefrom() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.nodes[1].extra_config = "[tags]\nclonefrom = true\n".into();
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;

    let new = group.add_empty_node();
    group.start(new);
    group.wait_following(new, 0).await;
    let replica = group.nodes[1].node_id();
    let log = group.nodes[new].log_text();
    assert!(
        log.contains(&format!(
            "cloning the group into the empty data directory source={replica}"
        )),
        "not cloned from the clonefrom replica {replica}\n{log}"
    );
    assert!(log.contains("clone done"), "{log}");
}
