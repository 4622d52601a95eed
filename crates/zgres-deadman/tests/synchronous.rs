//! Synchronous mode: no acknowledged commit is lost when the primary's node is killed, over
//! and over; strict mode makes commits wait for a standby, `on` degrades to asynchronous.

use std::time::Duration;

use zgres_schema::documents::{GroupConfig, SyncMethod, SyncMode};
use zgres_testkit::group::checks::{wait_sync_claim, wait_synchronous_standby};
use zgres_testkit::group::{missing_acks, Group, Timing, Writer, DEADLINE};
use zgres_testkit::poll;

fn mode(synchronous_mode: SyncMode) -> GroupConfig {
    GroupConfig {
        synchronous_mode,
        ..GroupConfig::default()
    }
}

/// A writer commits on every node without pause while the primary's node (deadman and
/// PostgreSQL) is killed with SIGKILL, 20 times in a row; each time the old node rejoins.
/// Before each kill `/sync` must claim `holders` of `standbys` standbys; every acknowledged
/// commit is on every new primary, and only a listed standby is ever promoted.
async fn twenty_primary_kills(config: GroupConfig, standbys: usize, holders: usize) {
    let mut group = Group::prepare(3, Timing::default()).await;
    // An interrupted pg_rewind is re-cloned: the testkit's nodes set reclone_on_rewind_failure.
    group.set_group_config(&config).await;
    group.start_all().await;
    let mut primary = group.wait_primary(&[]).await;
    let writer = Writer::start(&group);
    for round in 1..=20 {
        let listed = wait_sync_claim(&group, primary, standbys, holders).await;
        writer.wait_more_acks(primary, 20).await;

        group.kill_node(primary);
        let new = group.wait_primary(&[primary]).await;
        assert!(
            listed.contains(&new),
            "round {round}: n{new} promoted, not one of the listed {listed:?}"
        );
        let acks = writer.acks().await;
        let missing = missing_acks(&group, &acks, new).await;
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged commits are missing on the new primary n{new}: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        println!(
            "round {round}: n{primary} killed, n{new} promoted, {} acknowledged commits all present",
            acks.len()
        );
        group.start(primary);
        group.wait_following(primary, new).await;
        primary = new;
    }
    writer.finish().await;
}

/// One synchronous standby (`FIRST 1`, the default): only it is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_commit_is_lost_over_twenty_primary_kills() {
    twenty_primary_kills(mode(SyncMode::On), 1, 1).await;
}

/// `FIRST 2`: both standbys acknowledge every commit; either may be promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_2_loses_no_acknowledged_commit_over_twenty_primary_kills() {
    let config = GroupConfig {
        synchronous_node_count: std::num::NonZeroU32::new(2).unwrap(),
        synchronous_method: SyncMethod::First,
        ..mode(SyncMode::On)
    };
    twenty_primary_kills(config, 2, 2).await;
}

/// `ANY 1` of two standbys (quorum commit): a commit waits for the faster standby only, so
/// neither is sure to hold every commit; the one promoted must see the other at or behind
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_1_of_2_loses_no_acknowledged_commit_over_twenty_primary_kills() {
    let config = GroupConfig {
        synchronous_node_count: std::num::NonZeroU32::MIN,
        synchronous_method: SyncMethod::Any,
        ..mode(SyncMode::On)
    };
    twenty_primary_kills(config, 2, 1).await;
}

/// Waits until node `i`'s PostgreSQL has `synchronous_standby_names = value`.
async fn wait_standby_names(group: &Group, i: usize, value: &str) {
    poll::until(
        &format!("synchronous_standby_names = {value:?} on n{i}"),
        DEADLINE,
        || async {
            let client = group.nodes[i].client().await?;
            let row = client
                .query_one("SHOW synchronous_standby_names", &[])
                .await
                .ok()?;
            (row.get::<_, String>(0) == value).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

/// Strict mode: with the only standby gone, a commit waits until it is back. `on`: commits go
/// through without it, and the primary says replication is asynchronous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_waits_for_a_standby_and_on_mode_degrades() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.set_group_config(&mode(SyncMode::Strict)).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    assert_eq!(wait_synchronous_standby(&group, 0).await, 1);

    group.kill_node(1);
    // The primary noticed: any standby may release commits, and none is there.
    wait_standby_names(&group, 0, "*").await;
    let client = group.nodes[0].client().await.unwrap();
    let commit = tokio::spawn(async move {
        client
            .execute("INSERT INTO writes (node, seq) VALUES ('strict', 1)", &[])
            .await
            .map(drop)
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !commit.is_finished(),
        "a commit was acknowledged without a synchronous standby in strict mode"
    );
    group.start(1);
    tokio::time::timeout(DEADLINE, commit)
        .await
        .expect("the commit completes once the standby is back")
        .unwrap()
        .unwrap();

    wait_synchronous_standby(&group, 0).await;
    group.set_group_config(&mode(SyncMode::On)).await;
    group.kill_node(1);
    wait_standby_names(&group, 0, "").await;
    let client = group.nodes[0].client().await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        client.execute("INSERT INTO writes (node, seq) VALUES ('degraded', 1)", &[]),
    )
    .await
    .expect("commits go through without a standby in mode on")
    .unwrap();
    assert!(
        group.nodes[0]
            .log_text()
            .contains("replication is asynchronous until one is back"),
        "{}",
        group.logs()
    );
}

/// A synchronous standby that stays connected but acknowledges nothing (its WAL receiver
/// stopped): in mode `on` the primary drops it from `/sync` and stops waiting within
/// `synchronous_ack_timeout_ms`, so commits go through; in `strict` commits keep waiting until
/// it acknowledges again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_stops_acknowledging_degrades_on_but_not_strict() {
    let mut group = Group::prepare(2, Timing::default()).await;
    let on = GroupConfig {
        synchronous_mode: SyncMode::On,
        synchronous_ack_timeout_ms: 2_000,
        ..GroupConfig::default()
    };
    group.set_group_config(&on).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    assert_eq!(wait_synchronous_standby(&group, 0).await, 1);

    let receiver = group.nodes[1].freeze_wal_receiver().await;
    let client = group.nodes[0].client().await.unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(
        DEADLINE,
        client.execute("INSERT INTO writes (node, seq) VALUES ('on', 1)", &[]),
    )
    .await
    .expect("mode on: the commit goes through once the standby is dropped")
    .unwrap();
    println!(
        "mode on: a commit waited {:.2}s on the silent standby (ack timeout 2 s)",
        started.elapsed().as_secs_f64()
    );
    wait_standby_names(&group, 0, "").await;
    let log = group.nodes[0].log_text();
    assert!(
        log.contains("not acknowledging commits") && log.contains("asynchronous"),
        "{}",
        group.logs()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(receiver),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    assert_eq!(
        wait_synchronous_standby(&group, 0).await,
        1,
        "back in /sync"
    );

    group
        .set_group_config(&GroupConfig {
            synchronous_mode: SyncMode::Strict,
            ..on
        })
        .await;
    wait_standby_names(&group, 0, &format!("\"{}\"", group.nodes[1].node_id())).await;
    let receiver = group.nodes[1].freeze_wal_receiver().await;
    let commit = tokio::spawn(async move {
        client
            .execute("INSERT INTO writes (node, seq) VALUES ('strict', 2)", &[])
            .await
            .map(drop)
    });
    // Twice the ack timeout: strict still waits.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !commit.is_finished(),
        "strict mode acknowledged a commit the standby never acknowledged"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(receiver),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    tokio::time::timeout(DEADLINE, commit)
        .await
        .expect("the commit completes once the standby acknowledges")
        .unwrap()
        .unwrap();
}
