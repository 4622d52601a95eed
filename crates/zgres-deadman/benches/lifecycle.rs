//! Lifecycle benchmark with real deadmen, ZooKeeper and PostgreSQL (release build), at
//! production-like timing (session 4 s, loop 1 s). A writer commits without pause on every node;
//! each acknowledged commit carries the server's commit time (all nodes share this host's
//! clock).
//!
//! Prints:
//! - planned switchover (`/switchover`, best candidate), over `ZGRES_BENCH_RUNS` runs (default
//!   5): write downtime, the gap between the old primary's last acknowledged commit and the new
//!   primary's first, and acknowledged commits lost;
//! - synchronous mode (`on`), `ZGRES_BENCH_KILLS` (default 20) kill -9s of the primary node in
//!   a row (the old node rejoins each time): seconds from the kill to the first commit the new
//!   primary acknowledges, and acknowledged commits lost;
//! - `ZGRES_BENCH_REEXECS` (default 20) re-executions of the primary's deadman (SIGUSR2, an
//!   upgrade in place): the longest gap between two commits the primary acknowledged around
//!   each, from the signal to the new image's first published state, and whether the lock ever
//!   moved.
//! - `ZGRES_BENCH_PAUSED_STOPS` (default 10) stops of the primary's deadman in a paused group
//!   (SIGTERM; PostgreSQL is left running) and starts of a new one, which takes it over: the
//!   longest gap between two commits the primary acknowledged around each, the stop's duration,
//!   from the new deadman's start to the lock taken back, and whether PostgreSQL ever restarted.
//!
//! Run: `cargo bench -p zgres-deadman --bench lifecycle`

use std::time::{Duration, SystemTime};

use zgres_schema::documents::{GroupConfig, SyncMode};
use zgres_testkit::figures::summary;
use zgres_testkit::group::checks::{request_switchover, wait_synchronous_standby};
use zgres_testkit::group::{first_ack_after, missing_acks, Ack, Group, Timing, Writer};
use zgres_testkit::poll;

const DEADLINE: Duration = Duration::from_secs(120);

fn timing() -> Timing {
    Timing {
        session_timeout_ms: 4_000,
        fence_margin_ms: 1_000,
        primary_restart_timeout_ms: 10_000,
        loop_interval_ms: 1_000,
        ..Timing::default()
    }
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// Waits until `node` has acknowledged `count` more commits than in `acks_before`.
async fn commits_on(writer: &Writer, node: usize, after: usize, count: usize) {
    poll::until("commits on a node", DEADLINE, || async {
        let acks = writer.acks().await;
        (acks[after.min(acks.len())..]
            .iter()
            .filter(|a| a.node == node)
            .count()
            >= count)
            .then_some(())
    })
    .await
    .unwrap();
}

fn last_on(acks: &[Ack], node: usize) -> SystemTime {
    acks.iter()
        .filter(|a| a.node == node)
        .map(|a| a.at)
        .max()
        .unwrap()
}

fn first_on_after(acks: &[Ack], node: usize, after: SystemTime) -> SystemTime {
    first_ack_after(acks, node, after).expect("an acknowledged write")
}

async fn switchover_runs(runs: usize) -> (Vec<f64>, usize) {
    let mut gaps = Vec::new();
    let mut lost = 0;
    for run in 0..runs {
        let mut group = Group::prepare(3, timing()).await;
        group.start_all().await;
        let old = group.wait_primary(&[]).await;
        group.wait_following((old + 1) % 3, old).await;
        group.wait_following((old + 2) % 3, old).await;
        let writer = Writer::start(&group);
        commits_on(&writer, old, 0, 100).await;
        request_switchover(&group, None, None).await;
        let new = group.wait_primary(&[old]).await;
        let before = writer.acks().await.len();
        commits_on(&writer, new, before, 100).await;
        let acks = writer.finish().await;
        let last_old = last_on(&acks, old);
        let gap = first_on_after(&acks, new, last_old)
            .duration_since(last_old)
            .unwrap()
            .as_secs_f64();
        let missing = missing_acks(&group, &acks, new).await.len();
        println!(
            "  switchover run {run}: n{old} -> n{new}, write gap {gap:.3}s, {} commits acknowledged, {missing} lost",
            acks.len()
        );
        gaps.push(gap);
        lost += missing;
    }
    (gaps, lost)
}

/// Re-executions of the primary's deadman: per re-execution, the longest commit gap on the
/// primary within it and the time from the signal to the new image's published state; and
/// whether the lock's owner session ever changed.
async fn reexecs(count: usize) -> (Vec<f64>, Vec<f64>, bool) {
    let mut group = Group::prepare(3, timing()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    group.wait_following((primary + 1) % 3, primary).await;
    group.wait_following((primary + 2) % 3, primary).await;
    let zk = group.zk_client().await;
    let lock = group.path(zgres_schema::Znode::Lock);
    let (_, before) = zk.get_data(&lock).await.unwrap();
    let writer = Writer::start(&group);
    commits_on(&writer, primary, 0, 100).await;
    let resumed = "re-executed: resuming the ZooKeeper session handed over";
    let (mut gaps, mut ready) = (Vec::new(), Vec::new());
    for n in 1..=count {
        let start_acks = writer.acks().await.len();
        let sent = std::time::Instant::now();
        group.nodes[primary]
            .deadman
            .as_ref()
            .unwrap()
            .signal(nix::sys::signal::Signal::SIGUSR2)
            .unwrap();
        poll::until("the new image to publish its state", DEADLINE, || {
            let log = group.nodes[primary].log_text();
            let done = log.matches(resumed).count() >= n
                && log
                    .rsplit(resumed)
                    .next()
                    .is_some_and(|after| after.contains("published node state"));
            std::future::ready(done.then_some(()))
        })
        .await
        .unwrap();
        ready.push(sent.elapsed().as_secs_f64());
        let before_acks = writer.acks().await.len();
        commits_on(&writer, primary, before_acks, 50).await;
        let acks = writer.acks().await;
        gaps.push(longest_gap(&acks[start_acks..], primary));
    }
    writer.finish().await;
    let (_, after) = zk.get_data(&lock).await.unwrap();
    let moved = after.ephemeral_owner != before.ephemeral_owner || after.czxid != before.czxid;
    (gaps, ready, moved)
}

/// The longest gap between two commits `node` acknowledged among `acks`.
fn longest_gap(acks: &[Ack], node: usize) -> f64 {
    let mut times: Vec<SystemTime> = acks
        .iter()
        .filter(|a| a.node == node)
        .map(|a| a.at)
        .collect();
    times.sort();
    let gap = times
        .windows(2)
        .filter_map(|w| w[1].duration_since(w[0]).ok())
        .max()
        .unwrap_or_default();
    gap.as_secs_f64()
}

/// What [`paused_stops`] measured, in seconds per cycle.
#[derive(Default)]
struct PausedStops {
    gaps: Vec<f64>,
    stops: Vec<f64>,
    take_backs: Vec<f64>,
    restarted: bool,
}

/// Stops of the primary's deadman in a paused group, each followed by a new deadman that
/// takes PostgreSQL and the lock back, then a resume.
async fn paused_stops(count: usize) -> PausedStops {
    use nix::sys::signal::Signal;
    let mut group = Group::prepare(3, timing()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    group.wait_following((primary + 1) % 3, primary).await;
    let zk = group.zk_client().await;
    let lock = group.path(zgres_schema::Znode::Lock);
    let postmaster = group.nodes[primary].postmaster_pid();
    let writer = Writer::start(&group);
    commits_on(&writer, primary, 0, 100).await;
    let mut out = PausedStops::default();
    let pauses_seen = |group: &Group| {
        let log = group.nodes[primary].log_text();
        log.matches("the group is paused").count()
    };
    for _ in 0..count {
        let start_acks = writer.acks().await.len();
        let paused = GroupConfig {
            paused: true,
            ..GroupConfig::default()
        };
        // Each deadman logs the pause it sees once, the one that takes over at its start too.
        let before = pauses_seen(&group);
        group.set_group_config(&paused).await;
        poll::until("the primary's deadman to see the pause", DEADLINE, || {
            std::future::ready((pauses_seen(&group) > before).then_some(()))
        })
        .await
        .unwrap();
        let stop = std::time::Instant::now();
        let deadman = group.nodes[primary].deadman.take().unwrap();
        deadman.stop(Signal::SIGTERM, Duration::from_secs(30));
        out.stops.push(stop.elapsed().as_secs_f64());
        let start = std::time::Instant::now();
        group.start(primary);
        poll::until("the lock taken back", DEADLINE, || async {
            let (_, stat) = zk.get_data(&lock).await.ok()?;
            (stat.ephemeral_owner != 0).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
        out.take_backs.push(start.elapsed().as_secs_f64());
        group.set_group_config(&GroupConfig::default()).await;
        poll::until("the new deadman to see the resume", DEADLINE, || {
            let log = group.nodes[primary].log_text();
            let resumed = log.rfind("the group is resumed") > log.rfind("the group is paused");
            std::future::ready(resumed.then_some(()))
        })
        .await
        .unwrap();
        let before_acks = writer.acks().await.len();
        commits_on(&writer, primary, before_acks, 50).await;
        out.gaps
            .push(longest_gap(&writer.acks().await[start_acks..], primary));
        out.restarted |= group.nodes[primary].postmaster_pid() != postmaster;
    }
    writer.finish().await;
    out
}

async fn synchronous_kills(kills: usize) -> (Vec<f64>, usize, usize) {
    let mut group = Group::prepare(3, timing()).await;
    group
        .set_group_config(&GroupConfig {
            synchronous_mode: SyncMode::On,
            ..GroupConfig::default()
        })
        .await;
    group.start_all().await;
    let mut primary = group.wait_primary(&[]).await;
    let writer = Writer::start(&group);
    let mut times = Vec::new();
    let mut lost = 0;
    for kill in 0..kills {
        wait_synchronous_standby(&group, primary).await;
        let before = writer.acks().await.len();
        commits_on(&writer, primary, before, 50).await;
        let killed_at = SystemTime::now();
        group.kill_node(primary);
        let new = group.wait_primary(&[primary]).await;
        let acks = poll::until(
            "the writer's first commit on the new primary",
            DEADLINE,
            || async {
                let acks = writer.acks().await;
                acks.iter()
                    .any(|a| a.node == new && a.at > killed_at)
                    .then_some(acks)
            },
        )
        .await
        .unwrap();
        let took = first_on_after(&acks, new, killed_at)
            .duration_since(killed_at)
            .unwrap()
            .as_secs_f64();
        let missing = missing_acks(&group, &acks, new).await.len();
        println!(
            "  synchronous kill {kill}: n{primary} killed, n{new} took writes after {took:.2}s, {missing} of {} acknowledged commits lost",
            acks.len()
        );
        times.push(took);
        lost += missing;
        group.start(primary);
        group.wait_following(primary, new).await;
        primary = new;
    }
    let total = writer.finish().await.len();
    (times, lost, total)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var("ZGRES_TEST_LOG", "info");
    let runs = env_count("ZGRES_BENCH_RUNS", 5);
    let kills = env_count("ZGRES_BENCH_KILLS", 20);
    let reexec_count = env_count("ZGRES_BENCH_REEXECS", 20);
    let paused_stop_count = env_count("ZGRES_BENCH_PAUSED_STOPS", 10);
    println!("zgres-deadman lifecycle benchmark: session timeout 4 s, loop 1 s");
    let (gaps, switchover_lost) = switchover_runs(runs).await;
    let (times, sync_lost, total) = synchronous_kills(kills).await;
    let (reexec_gaps, reexec_ready, lock_moved) = reexecs(reexec_count).await;
    let stopped = paused_stops(paused_stop_count).await;
    println!();
    summary(
        "planned switchover: write gap (last old -> first new)",
        &gaps,
    );
    println!("planned switchover: acknowledged commits lost: {switchover_lost}");
    summary(
        "synchronous mode: kill -9 primary node -> first new commit",
        &times,
    );
    println!(
        "synchronous mode: acknowledged commits lost over {kills} kills: {sync_lost} (of {total})"
    );
    summary(
        "deadman re-exec (SIGUSR2): longest commit gap on the primary",
        &reexec_gaps,
    );
    summary(
        "deadman re-exec (SIGUSR2): signal -> new image published",
        &reexec_ready,
    );
    println!(
        "deadman re-exec: over {reexec_count} re-executions the lock {}",
        if lock_moved {
            "MOVED"
        } else {
            "kept its owner session and creation zxid"
        }
    );
    summary(
        "paused stop: longest commit gap on the primary (stop, new deadman, resume)",
        &stopped.gaps,
    );
    summary("paused stop: SIGTERM -> deadman exited", &stopped.stops);
    summary(
        "paused stop: new deadman started -> lock taken back",
        &stopped.take_backs,
    );
    println!(
        "paused stop: over {paused_stop_count} stops PostgreSQL {}",
        if stopped.restarted {
            "RESTARTED"
        } else {
            "kept its postmaster"
        }
    );
}
