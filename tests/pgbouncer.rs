//! End to end: real deadmen fail a group over, zgres-sync rewrites a real pgbouncer's databases,
//! and clients connecting through pgbouncer write to the new primary.

use zgres_schema::documents::{NodeState, Role};
use zgres_testkit::group::checks::request_switchover;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;
use zgres_tests::e2e::{through, BouncerWithSync};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_through_pgbouncer_follow_a_failover() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    let old = group.wait_primary(&[]).await;

    let proxy = BouncerWithSync::start(&group.zk.connect_string());
    let bouncer_port = proxy.bouncer.port();
    let old_port = group.nodes[old].port();
    let reached = poll::until("a write through pgbouncer to the primary", DEADLINE, || {
        through(bouncer_port, "main", true)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
    assert_eq!(reached, (i32::from(old_port), false));
    // Until a replica is healthy and in the snapshot, main-ro falls back to the primary.
    let (port, _) = poll::until(
        "a read through pgbouncer's read-only database from a replica",
        DEADLINE,
        || async {
            through(bouncer_port, "main-ro", false)
                .await
                .filter(|(_, in_recovery)| *in_recovery)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
    assert_ne!(port, i32::from(old_port), "main-ro is served by a replica");

    // The primary node dies; after the failover, new clients through pgbouncer reach the new one.
    group.kill_node(old);
    let new = group.wait_primary(&[old]).await;
    let new_port = i32::from(group.nodes[new].port());
    poll::until(
        "a write through pgbouncer to the new primary",
        DEADLINE,
        || async {
            let (port, in_recovery) = through(bouncer_port, "main", true).await?;
            (port == new_port && !in_recovery).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
}

/// Issue 16: the writer entry names a node only once it runs as a primary. A client connects to
/// the writer database in a tight loop through 10 switchovers and 3 node kills: it never reaches
/// a node in recovery (before, the candidate got connections for up to 38 ms while still a
/// standby).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_database_never_reaches_a_replica_being_promoted() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let mut primary = group.wait_primary(&[]).await;
    group.wait_following(1 - primary, primary).await;
    let proxy = BouncerWithSync::start(&group.zk.connect_string());
    let bouncer_port = proxy.bouncer.port();
    poll::until("a write through pgbouncer", DEADLINE, || {
        through(bouncer_port, "main", true)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = tokio::spawn({
        let stop = stop.clone();
        async move {
            let (mut served, mut in_recovery) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match through(bouncer_port, "main", false).await {
                    Some((_, true)) => in_recovery += 1,
                    Some((_, false)) => served += 1,
                    None => {}
                }
            }
            (served, in_recovery)
        }
    });
    let zk = group.zk_client().await;
    // 10 switchovers, then 3 kills of the primary node (its deadman started again after each,
    // as systemd would, so it rejoins as a replica).
    for round in 0..13 {
        let candidate = 1 - primary;
        // The primary hands over only to a node whose published state is a healthy replica on
        // its own timeline.
        let state_of = |i: usize| {
            let zk = &zk;
            let path = format!("/zgres/state/main_{}", group.nodes[i].node_id());
            async move {
                let (data, _) = zk.get_data(&path).await.ok()?;
                zgres_schema::decode::<NodeState>(&path, &data).ok()
            }
        };
        poll::until(
            "the candidate to publish itself a healthy replica on the primary's timeline",
            DEADLINE,
            || async {
                let (mine, theirs) = (state_of(candidate).await?, state_of(primary).await?);
                (mine.role == Role::Replica
                    && mine.is_healthy()
                    && mine.timeline == theirs.timeline)
                    .then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
        if round < 10 {
            request_switchover(&group, Some(candidate), None).await;
        } else {
            group.kill_node(primary);
        }
        assert_eq!(group.wait_primary(&[primary]).await, candidate);
        if round >= 10 {
            group.start(primary);
        }
        poll::until(
            "writes through pgbouncer to the new primary",
            DEADLINE,
            || async {
                let (port, _) = through(bouncer_port, "main", true).await?;
                (port == i32::from(group.nodes[candidate].port())).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
        group.wait_following(primary, candidate).await;
        primary = candidate;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, in_recovery) = client.await.unwrap();
    println!("10 switchovers and 3 node kills: {served} connections to the writer database, {in_recovery} reached a node in recovery");
    assert!(served > 50, "the client was served only {served} times");
    assert_eq!(
        in_recovery,
        0,
        "{in_recovery} of {} connections to the writer database reached a node in recovery",
        served + in_recovery
    );
}
