//! Failover benchmark with real deadmen, ZooKeeper and PostgreSQL (release build).
//!
//! Prints, over `ZGRES_BENCH_RUNS` runs (default 5):
//! - seconds from kill -9 of the primary node (deadman + PostgreSQL) to the first write a new
//!   primary acknowledges, at a 4 s session timeout;
//! - seconds from SIGTERM of the primary's deadman (`systemctl stop`: it stops PostgreSQL and
//!   hands the lock to a streaming standby) to the first write a new primary acknowledges;
//! - seconds from kill -9 of PostgreSQL alone on the primary to the first write acknowledged
//!   again, and to the replica streaming again;
//! - seconds from ZooKeeper serving again after a 10 s outage (standalone server killed and
//!   restarted; 2 of 3 ensemble members killed and restarted) to the first write on the primary,
//!   and to the group being whole (every replica streaming from it);
//! - resident memory and CPU of the deadman (and its fence keeper) with default timing over
//!   20 s from 3 s after the last fault (the settled idle figures are the idle bench's:
//!   `benches/idle.rs`), and what a bare wake-up cost on this machine over the same window;
//! - with `ZGRES_BENCH_ONLY=hangs` only: every deadman declaring ZooKeeper's default ensemble
//!   timing (`tickTime` 2000 ms, `syncLimit` 5: an 11.9 s takeover wait), seconds from
//!   freezing the primary's PostgreSQL (SIGSTOP of every process: hung storage) to the first
//!   write a new primary acknowledges (the restart bound, then a quiet release: no wait), and
//!   from kill -9 of the primary node (a lock that expired: the wait) for comparison.
//!
//! `ZGRES_BENCH_LOOP_MS` sets `loop_interval_ms` (default 2000, the deadman's default);
//! `ZGRES_BENCH_ONLY=outages` runs only the ZooKeeper outages, `ZGRES_BENCH_ONLY=kills` only
//! the kills; `ZGRES_BENCH_PG_TLS=1` runs them with PostgreSQL taking only TLS (verify-full,
//! client certificates); `ZGRES_BENCH_ZK_SECURE=1` runs the kills against a TLS-only ZooKeeper, every
//! deadman presenting a client certificate (x509 authentication, ACL policy on);
//! `ZGRES_BENCH_ZK_MEMBERS=3` runs the kills against a 3-member ensemble (`syncLimit`
//! [`SYNC_LIMIT`](zgres_testkit::zookeeper::SYNC_LIMIT)), where a node-kill failover includes the
//! takeover wait (`docs/deadman.md`).
//!
//! Run: `cargo bench -p zgres-deadman --bench failover`

use std::time::{Duration, Instant};

use zgres_testkit::figures::summary;
use zgres_testkit::group::checks::first_write;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::proc_usage::{cpu_nanos, cpu_percent_since, pss_kb, rss_kb, BareWakeups};
use zgres_testkit::zookeeper::ZkCluster;

fn timing() -> Timing {
    Timing {
        session_timeout_ms: 4_000,
        fence_margin_ms: 1_000,
        primary_restart_timeout_ms: 10_000,
        loop_interval_ms: std::env::var("ZGRES_BENCH_LOOP_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000),
        ..Timing::default()
    }
}

/// Waits until every node but `primary` streams from it; returns the time since `start`.
async fn whole(group: &Group, primary: usize, start: Instant) -> Duration {
    for i in (0..group.nodes.len()).filter(|&i| i != primary) {
        group.wait_following(i, primary).await;
    }
    start.elapsed()
}

/// ZooKeeper (`kill` members) gone for 10 s under a running group: seconds from the first
/// member serving again to the first write on the primary, and to the group being whole.
async fn zookeeper_outage(zk: ZkCluster, kill: &[usize]) -> (f64, f64) {
    let mut group = Group::prepare_on(zk, 3, timing()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    whole(&group, primary, Instant::now()).await;
    for &m in kill {
        group.zk.kill_member(m);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    group.zk.restart_member(kill[0]).await.unwrap();
    let back = Instant::now();
    for &m in &kill[1..] {
        group.zk.restart_member(m).await.unwrap();
    }
    let (new, writable) = first_write(&group, &[0, 1, 2], back).await;
    assert_eq!(new, primary, "the same primary after the outage");
    let whole = tokio::time::timeout(DEADLINE, whole(&group, primary, back))
        .await
        .unwrap();
    (writable.as_secs_f64(), whole.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var("ZGRES_TEST_LOG", "info");
    let runs: usize = std::env::var("ZGRES_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    println!(
        "zgres-deadman failover benchmark: {runs} runs each, session timeout 4 s, loop {} ms, \
         ZooKeeper tickTime {} ms (ZGRES_TEST_ZK_TICK_MS)",
        timing().loop_interval_ms,
        zgres_testkit::zookeeper::tick_ms()
    );
    let only = std::env::var("ZGRES_BENCH_ONLY").unwrap_or_default();
    if only == "hangs" {
        hangs(runs).await;
        return;
    }
    if only != "outages" {
        node_and_postgres_kills(runs).await;
    }
    if only != "kills" {
        outages(runs).await;
    }
}

/// Starts a 3-node `group` and waits until both standbys stream from its primary; the primary.
async fn started_with_standbys(group: &mut Group) -> usize {
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    for standby in (0..3).filter(|&i| i != primary) {
        group.wait_following(standby, primary).await;
    }
    primary
}

async fn node_and_postgres_kills(runs: usize) {
    let secure = std::env::var("ZGRES_BENCH_ZK_SECURE").as_deref() == Ok("1");
    let members: usize = std::env::var("ZGRES_BENCH_ZK_MEMBERS")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1);
    let zookeeper = || async move {
        if secure {
            println!("  (ZooKeeper over TLS only, x509 client authentication)");
            ZkCluster::standalone_tls().await.unwrap()
        } else if members > 1 {
            println!(
                "  ({members}-member ensemble, syncLimit {}: a takeover waits it out)",
                zgres_testkit::zookeeper::SYNC_LIMIT
            );
            ZkCluster::start(members).await.unwrap()
        } else {
            ZkCluster::standalone().await.unwrap()
        }
    };
    let postgres_tls = (std::env::var("ZGRES_BENCH_PG_TLS").as_deref() == Ok("1")).then(|| {
        println!("  (PostgreSQL over TLS only: verify-full, client certificates)");
        zgres_testkit::group::TlsOnlyPostgres::make()
    });
    let prepare = |nodes: usize| {
        let postgres_tls = postgres_tls.as_ref();
        async move {
            let mut group = Group::prepare_on(zookeeper().await, nodes, timing()).await;
            if let Some(files) = postgres_tls {
                files.apply(&mut group);
            }
            group
        }
    };
    let mut node_kill = Vec::new();
    for run in 0..runs {
        let mut group = prepare(3).await;
        let old = started_with_standbys(&mut group).await;
        let deadman = group.nodes[old].deadman.take().unwrap();
        let start = Instant::now();
        group.nodes[old].kill_postgres();
        deadman.kill();
        let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let (new, took) = first_write(&group, &others, start).await;
        println!(
            "  node kill run {run}: n{new} accepted a write after {:.2}s",
            took.as_secs_f64()
        );
        node_kill.push(took.as_secs_f64());
    }

    let mut deadman_stop = Vec::new();
    for run in 0..runs {
        let mut group = prepare(3).await;
        let old = started_with_standbys(&mut group).await;
        let deadman = group.nodes[old].deadman.take().unwrap();
        let start = Instant::now();
        // The stop returns once the deadman exited, after the hand-over: measured beside it.
        let stopping = std::thread::spawn(move || {
            deadman.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30))
        });
        let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let (new, took) = first_write(&group, &others, start).await;
        let exited = stopping.join().ok().flatten().is_some_and(|s| s.success());
        println!(
            "  deadman stop run {run}: n{new} accepted a write after {:.2}s (clean exit: {exited})",
            took.as_secs_f64()
        );
        deadman_stop.push(took.as_secs_f64());
    }

    let mut pg_crash = Vec::new();
    let mut pg_crash_whole = Vec::new();
    let mut group = prepare(2).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    for run in 0..runs {
        group.wait_primary(&[]).await;
        let start = Instant::now();
        group.nodes[primary].kill_postgres();
        let (_, took) = first_write(&group, &[0, 1], start).await;
        let streaming = whole(&group, primary, start).await;
        println!(
            "  postgres crash run {run}: write accepted after {:.2}s, replica streaming after {:.2}s",
            took.as_secs_f64(),
            streaming.as_secs_f64()
        );
        pg_crash.push(took.as_secs_f64());
        pg_crash_whole.push(streaming.as_secs_f64());
    }

    // Idle footprint: let the group settle, then measure CPU over a window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(20);
    let pids: Vec<(String, u32)> = group.nodes.iter().flat_map(|n| n.daemon_pids()).collect();
    let before: Vec<_> = pids.iter().map(|(_, p)| cpu_nanos(*p)).collect();
    // What one wake-up costs on this machine meanwhile: an idle process's CPU share is mostly
    // its wake-ups times this, which moves with the host (docs/benchmarks.md).
    let bare = BareWakeups::start(Duration::from_millis(250));
    tokio::time::sleep(window).await;
    let bare = bare.cost();
    println!();
    summary(
        "kill -9 primary node -> first write on new primary",
        &node_kill,
    );
    summary(
        "SIGTERM of the primary's deadman -> first write on new primary",
        &deadman_stop,
    );
    summary(
        "kill -9 PostgreSQL on primary -> writes accepted",
        &pg_crash,
    );
    summary(
        "kill -9 PostgreSQL on primary -> every replica streaming again",
        &pg_crash_whole,
    );
    for ((name, pid), before) in pids.iter().zip(before) {
        let cpu = before.and_then(|b| cpu_percent_since(*pid, b, window));
        if let (Some(cpu), Some(rss)) = (cpu, rss_kb(*pid)) {
            println!(
                "{name:<20} resident {:.1} MB (proportional {:.1} MB), CPU {cpu:.3}% of a core over {}s from 3 s after the last fault (not yet settled: the settled idle figure is `--bench idle`'s)",
                rss as f64 / 1024.0,
                pss_kb(*pid).unwrap_or(0) as f64 / 1024.0,
                window.as_secs()
            );
        }
    }
    if let Some(bare) = bare {
        println!(
            "a bare wake-up (a thread that only sleeps 250 ms) cost {:.0} µs of CPU in the window",
            bare.as_secs_f64() * 1e6
        );
    }
    drop(group);
}

async fn outages(runs: usize) {
    let outage_runs = runs.min(3);
    for (name, members, kill) in [
        ("standalone ZooKeeper killed 10 s", 1, &[0][..]),
        ("3-member ensemble losing quorum 10 s", 3, &[1, 2][..]),
    ] {
        let (mut writable, mut whole_after) = (Vec::new(), Vec::new());
        for run in 0..outage_runs {
            let zk = ZkCluster::start(members).await.unwrap();
            let (w, g) = zookeeper_outage(zk, kill).await;
            println!("  {name} run {run}: writes back after {w:.2}s, group whole after {g:.2}s");
            writable.push(w);
            whole_after.push(g);
        }
        summary(&format!("{name}: back -> writes on the primary"), &writable);
        summary(&format!("{name}: back -> group whole"), &whole_after);
    }
}

/// A 3-node group on a standalone server whose deadmen declare ZooKeeper's default ensemble
/// timing (an 11.9 s takeover wait for a lock that expired), its primary's PostgreSQL frozen,
/// then its node killed: the first write on a new primary after each.
async fn hangs(runs: usize) {
    use zgres_testkit::freeze::{freeze, thaw};
    let prepare = || async {
        let zk = ZkCluster::standalone().await.unwrap();
        let mut group = Group::prepare_on(zk, 3, timing()).await;
        for node in &mut group.nodes {
            node.extra_config =
                "[zookeeper]\nensemble_tick_ms = 2000\nensemble_sync_limit = 5\n".into();
        }
        group
    };
    println!("  (every deadman declares tickTime 2000 ms, syncLimit 5: an 11.9 s takeover wait)");
    let mut hang = Vec::new();
    let mut kill = Vec::new();
    for run in 0..runs {
        let mut group = prepare().await;
        let old = started_with_standbys(&mut group).await;
        let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let frozen = freeze(group.nodes[old].postmaster_pid().expect("postgres runs"));
        let start = Instant::now();
        let (new, took) = first_write(&group, &others, start).await;
        thaw(&frozen);
        println!(
            "  postgres hang run {run}: n{new} accepted a write after {:.2}s",
            took.as_secs_f64()
        );
        hang.push(took.as_secs_f64());
        drop(group);

        let mut group = prepare().await;
        let old = started_with_standbys(&mut group).await;
        let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let deadman = group.nodes[old].deadman.take().unwrap();
        let start = Instant::now();
        group.nodes[old].kill_postgres();
        deadman.kill();
        let (new, took) = first_write(&group, &others, start).await;
        println!(
            "  node kill run {run}: n{new} accepted a write after {:.2}s",
            took.as_secs_f64()
        );
        kill.push(took.as_secs_f64());
    }
    println!();
    summary(
        "PostgreSQL frozen on the primary -> first write on new primary (quiet release)",
        &hang,
    );
    summary(
        "kill -9 primary node -> first write on new primary (expired lock: the wait)",
        &kill,
    );
}
