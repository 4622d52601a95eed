//! Idle cost and switchover reaction of a watch-driven group (release build).
//!
//! A 3-node group with production-like timing (session 4 s, loop 2 s, state refresh 30 s: the defaults),
//! each deadman reaching ZooKeeper through its own counting proxy. Prints:
//! - ZooKeeper requests per node per second at idle (reads, writes, watches; pings counted
//!   apart), over `ZGRES_BENCH_IDLE_SECS` seconds (default 120: one whole cycle of the read
//!   cache's resync, so the mean is not a matter of whether the window holds one) after the
//!   group settled, with the requests of each kind (`ZGRES_BENCH_KEEP_LOGS=DIR` keeps the
//!   deadmen's logs);
//! - the WAL the primary wrote in the window (settling waits until it wrote none for
//!   `ZGRES_BENCH_QUIET_SECS`, default 70: a new cluster's autovacuum is not idle);
//! - idle CPU and wake-ups per second of each deadman, its fence keeper and its postmaster
//!   guardian over the same window, and what a bare wake-up cost on this machine meanwhile
//!   (a thread that only sleeps: on a VM it varies by half with the host's load);
//! - seconds from a switchover request (as `zgresctl switchover` writes it) to the first write
//!   the new primary acknowledges, over `ZGRES_BENCH_RUNS` runs (default 5).
//!
//! Run: `cargo bench -p zgres-deadman --bench idle`

use std::time::{Duration, Instant};

use zgres_testkit::figures::summary;
use zgres_testkit::group::checks::{first_write, request_switchover};
use zgres_testkit::group::{Group, Timing};
use zgres_testkit::proc_usage::{cpu_nanos, cpu_percent_since, rss_kb, wakeups, BareWakeups};
use zgres_testkit::zk_counter::RequestCounter;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    std::env::set_var("ZGRES_TEST_LOG", "info");
    let window = Duration::from_secs(env_or("ZGRES_BENCH_IDLE_SECS", 120));
    let runs = env_or("ZGRES_BENCH_RUNS", 5);
    println!(
        "zgres-deadman idle benchmark: 3 nodes, session timeout 4 s, loop 2 s, state refresh 30 s, \
         ZooKeeper tickTime {} ms; idle window {} s; {runs} switchovers",
        zgres_testkit::zookeeper::tick_ms(),
        window.as_secs()
    );
    let mut group = Group::prepare(
        3,
        Timing {
            session_timeout_ms: 4_000,
            fence_margin_ms: 1_000,
            primary_restart_timeout_ms: 10_000,
            loop_interval_ms: 2_000,
            state_refresh_ms: 30_000,
        },
    )
    .await;
    let mut counters = Vec::new();
    for node in &mut group.nodes {
        let counter = RequestCounter::start(group.zk.client_addr(0))
            .await
            .unwrap();
        node.zookeeper_via = Some(counter.addr().to_string());
        counters.push(counter);
    }
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    for i in (0..3).filter(|&i| i != primary) {
        group.wait_following(i, primary).await;
    }
    // Settle: the first reads, watches and publications are done, and PostgreSQL stopped
    // writing WAL. A new cluster's autovacuum works through the catalogs for a minute or two,
    // and every WAL record moves positions each node publishes (a primary's write position and
    // slots, a replica's replay position and its copies of the slots): that is a group at
    // work, not at idle.
    let settling = Instant::now();
    let quiet = Duration::from_secs(env_or("ZGRES_BENCH_QUIET_SECS", 70)); // autovacuum_naptime is 60 s
    let mut last = (
        group.nodes[primary].pg.wal_lsn().await.ok().flatten(),
        Instant::now(),
    );
    while last.1.elapsed() < quiet && settling.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = group.nodes[primary].pg.wal_lsn().await.ok().flatten();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    println!(
        "settled after {:.0} s (the primary wrote no WAL for {} s)",
        settling.elapsed().as_secs_f64(),
        quiet.as_secs()
    );
    let wal_before = last.0;

    let pids: Vec<(String, u32)> = group.nodes.iter().flat_map(|n| n.daemon_pids()).collect();
    let cpu_before: Vec<_> = pids.iter().map(|(_, p)| cpu_nanos(*p)).collect();
    let wakeups_before: Vec<_> = pids.iter().map(|(_, p)| wakeups(*p)).collect();
    // What a wake-up costs on this machine during the window (it varies with the host's load).
    let bare = BareWakeups::start(Duration::from_millis(250));
    let before: Vec<(u64, u64)> = counters.iter().map(|c| (c.requests(), c.pings())).collect();
    let requests_before: Vec<_> = counters.iter().map(|c| c.by_request()).collect();
    tokio::time::sleep(window).await;
    let bare = bare.cost();
    let secs = window.as_secs_f64();
    let wal_after = group.nodes[primary].pg.wal_lsn().await.ok().flatten();
    if let (Some(before), Some(after)) = (wal_before, wal_after) {
        println!(
            "WAL written by the primary during the window: {} bytes",
            after.bytes_after(before)
        );
    }
    // The logs go with the group's temp dirs: `ZGRES_BENCH_KEEP_LOGS=DIR` copies them first,
    // to see what an idle deadman did.
    if let Ok(dir) = std::env::var("ZGRES_BENCH_KEEP_LOGS") {
        std::fs::create_dir_all(&dir).unwrap();
        for node in &group.nodes {
            let name = node.files.log.file_name().unwrap();
            std::fs::copy(&node.files.log, std::path::Path::new(&dir).join(name)).unwrap();
        }
    }
    println!();
    let mut total = 0.0;
    for (i, (counter, (requests, pings))) in counters.iter().zip(before).enumerate() {
        let rate = (counter.requests() - requests) as f64 / secs;
        total += rate;
        println!(
            "n{i} ({}): {rate:.3} ZooKeeper requests/s at idle, {:.3} pings/s",
            if i == primary { "primary" } else { "replica" },
            (counter.pings() - pings) as f64 / secs
        );
        for (request, count) in counter.by_request() {
            let earlier = requests_before[i].get(&request).copied().unwrap_or(0);
            if count > earlier {
                println!("    {:>3} x {request}", count - earlier);
            }
        }
    }
    println!(
        "idle ZooKeeper requests per node per second (mean of 3): {:.3}",
        total / 3.0
    );
    for (((name, pid), before), woke_before) in pids.iter().zip(cpu_before).zip(wakeups_before) {
        let cpu = before.and_then(|b| cpu_percent_since(*pid, b, window));
        let woke = woke_before
            .zip(wakeups(*pid))
            .map(|(b, a)| a.saturating_sub(b) as f64 / secs);
        if let (Some(cpu), Some(woke), Some(rss)) = (cpu, woke, rss_kb(*pid)) {
            println!(
                "{name:<20} idle CPU {cpu:.3}% of a core, {woke:.2} wake-ups/s, resident {:.1} MB",
                rss as f64 / 1024.0
            );
        }
    }
    if let Some(bare) = bare {
        println!(
            "a bare wake-up (a thread that only sleeps 250 ms) cost {:.0} µs of CPU in the window",
            bare.as_secs_f64() * 1e6
        );
    }

    let mut reaction = Vec::new();
    for run in 0..runs {
        let old = group.wait_primary(&[]).await;
        for i in (0..3).filter(|&i| i != old) {
            group.wait_following(i, old).await;
        }
        let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let start = Instant::now();
        request_switchover(&group, None, None).await;
        let (new, took) = first_write(&group, &others, start).await;
        println!(
            "  switchover run {run}: n{old} -> n{new}, first write after {:.3}s",
            took.as_secs_f64()
        );
        reaction.push(took.as_secs_f64());
    }
    println!();
    summary(
        "switchover request -> first write on the new primary",
        &reaction,
    );
}
