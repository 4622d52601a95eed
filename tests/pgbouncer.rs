//! End to end: real deadmen fail a group over, zgres-sync rewrites a real pgbouncer's databases,
//! and clients connecting through pgbouncer write to the new primary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use zgres_testkit::group::checks::{request_switchover, wait_ready_to_take_over};
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

/// A two-node group whose writes reach the primary through a real pgbouncer that zgres-sync
/// keeps; returns the group, its primary and the pair.
async fn two_nodes_behind_pgbouncer() -> (Group, usize, BouncerWithSync) {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    group.wait_following(1 - primary, primary).await;
    let proxy = BouncerWithSync::start(&group.zk.connect_string());
    let bouncer_port = proxy.bouncer.port();
    poll::until("a write through pgbouncer", DEADLINE, || {
        through(bouncer_port, "main", true)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
    (group, primary, proxy)
}

/// Waits until a write through pgbouncer's writer database lands on node `i`.
async fn wait_writes_through_pgbouncer(group: &Group, proxy: &BouncerWithSync, i: usize) {
    let port = i32::from(group.nodes[i].port());
    poll::until(
        "writes through pgbouncer to the new primary",
        DEADLINE,
        || async {
            let (reached, _) = through(proxy.bouncer.port(), "main", true).await?;
            (reached == port).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
}

/// A client connecting to pgbouncer's writer database in a tight loop, as an application
/// reconnecting at once after each error would.
struct TightClient {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u32, u32, u32)>,
}

impl TightClient {
    fn start(bouncer_port: u16) -> TightClient {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let (mut served, mut in_recovery, mut failed) = (0, 0, 0);
                while !stop.load(Ordering::Relaxed) {
                    match through(bouncer_port, "main", false).await {
                        Some((_, true)) => in_recovery += 1,
                        Some((_, false)) => served += 1,
                        None => failed += 1,
                    }
                }
                (served, in_recovery, failed)
            }
        });
        TightClient { stop, task }
    }

    /// Stops it: connections served by a primary, served by a node in recovery, failed.
    async fn stop(self) -> (u32, u32, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Issue 16: the writer entry names a node only once it runs as a primary. A client connects to
/// the writer database in a tight loop through 10 switchovers and 3 node kills: it never reaches
/// a node in recovery (before, the candidate got connections for up to 38 ms while still a
/// standby).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_database_never_reaches_a_replica_being_promoted() {
    let (mut group, mut primary, proxy) = two_nodes_behind_pgbouncer().await;
    let bouncer_port = proxy.bouncer.port();

    let client = TightClient::start(bouncer_port);
    // 20 switchovers, then 3 kills of the primary node (its deadman started again after each,
    // as systemd would, so it rejoins as a replica): the count issue 16 asks for.
    const SWITCHOVERS: usize = 20;
    for round in 0..SWITCHOVERS + 3 {
        let candidate = 1 - primary;
        // The primary hands over only to a healthy replica on its own timeline.
        wait_ready_to_take_over(&group, candidate, primary).await;
        if round < SWITCHOVERS {
            request_switchover(&group, Some(candidate), None).await;
        } else {
            group.kill_node(primary);
        }
        assert_eq!(group.wait_primary(&[primary]).await, candidate);
        if round >= SWITCHOVERS {
            group.start(primary);
        }
        wait_writes_through_pgbouncer(&group, &proxy, candidate).await;
        group.wait_following(primary, candidate).await;
        primary = candidate;
    }
    let (served, in_recovery, _) = client.stop().await;
    println!("{SWITCHOVERS} switchovers and 3 node kills: {served} connections to the writer database, {in_recovery} reached a node in recovery");
    assert!(served > 50, "the client was served only {served} times");
    assert_eq!(
        in_recovery,
        0,
        "{in_recovery} of {} connections to the writer database reached a node in recovery",
        served + in_recovery
    );
}

/// Server connects pgbouncer logged as failed (`S-…closing because: connect failed`) in `log`.
fn failed_server_connects(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" S-") && l.contains("closing because: connect failed"))
        .count()
}

/// Issue 16: no connect storm. A client connects to the writer database in a tight loop while
/// the primary's node is killed three times. Until the dead primary's session expires, its
/// entry still names it; with `server_login_retry = 0` pgbouncer tried it for every waiting
/// client, tens of thousands of times a second (645,689 log lines for three kills). With the
/// recommended setting it tries about once a second and new clients fail at once, and after
/// the failover the writer entry comes back fresh, so nothing waits out the retry interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_costs_pgbouncer_a_handful_of_connect_attempts() {
    let (mut group, mut primary, proxy) = two_nodes_behind_pgbouncer().await;
    let bouncer_port = proxy.bouncer.port();

    let client = TightClient::start(bouncer_port);
    let log_path = proxy.bouncer.log().to_owned();
    let mut figures = Vec::new();
    for _ in 0..3 {
        let candidate = 1 - primary;
        group.wait_following(candidate, primary).await;
        let before = std::fs::read_to_string(&log_path).unwrap_or_default().len();
        let cpu_before = zgres_testkit::proc_usage::cpu_nanos(proxy.bouncer.pid()).unwrap_or(0);
        let killed = std::time::Instant::now();
        group.kill_node(primary);
        assert_eq!(group.wait_primary(&[primary]).await, candidate);
        wait_writes_through_pgbouncer(&group, &proxy, candidate).await;
        let window = killed.elapsed();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let during = log.get(before..).unwrap_or_default();
        let cpu_nanos = zgres_testkit::proc_usage::cpu_nanos(proxy.bouncer.pid())
            .unwrap_or(0)
            .saturating_sub(cpu_before);
        figures.push((
            failed_server_connects(during),
            during.lines().count(),
            window,
            cpu_nanos,
        ));
        group.start(primary);
        primary = candidate;
    }
    let (served, in_recovery, failed) = client.stop().await;
    let attempts = served + in_recovery + failed;
    for (i, (failed, lines, window, cpu_nanos)) in figures.iter().enumerate() {
        println!(
            "kill {}: {failed} failed server connects, {lines} pgbouncer log lines, pgbouncer CPU {:.2} s in {:.1} s from the kill to writes on the new primary",
            i + 1,
            *cpu_nanos as f64 / 1e9,
            window.as_secs_f64()
        );
    }
    println!("{attempts} client connection attempts in all");
    assert!(attempts > 100, "the client tried only {attempts} times");
    for (i, (failed, _, window, _)) in figures.iter().enumerate() {
        // About one a second while the dead primary is still named, plus one.
        let bound = window.as_secs() as usize + 3;
        assert!(
            *failed <= bound,
            "kill {}: {failed} failed server connects in {window:?} (at most {bound})\n{}",
            i + 1,
            proxy.logs()
        );
    }
}
