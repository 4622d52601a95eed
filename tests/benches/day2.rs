//! Day-2 operations benchmark with real deadmen, ZooKeeper, PostgreSQL and zgresctl (release
//! build), at production-like timing (session 4 s, loop 1 s). A writer commits without pause
//! on every node; each acknowledged commit carries the server's commit time (all nodes share
//! this host's clock).
//!
//! Prints, over `ZGRES_BENCH_RUNS` runs each (default 5):
//! - `zgresctl restart GROUP PRIMARY`: PostgreSQL restarted in place on the primary: the
//!   longest gap between two commits the primary acknowledged around it, and the command's
//!   duration;
//! - a rolling change of a postmaster-level parameter for the whole group (`config set
//!   postgresql.parameters.max_connections`, alternately raised and lowered, then `restart
//!   GROUP --pending`): its duration from `config set` to the last node back, and the longest
//!   commit gap on the primary;
//! - acknowledged commits lost, and whether the lock ever moved (it must not: no failover).
//!
//! The deadman's own re-execution (an upgrade of zgres in place) is measured by
//! `cargo bench -p zgres-deadman --bench lifecycle`.
//!
//! Run: `cargo bench -p zgres-tests --bench day2`

use std::time::{Duration, Instant, SystemTime};

use zgres_testkit::figures::summary;
use zgres_testkit::group::{missing_acks, Group, Timing, Writer};
use zgres_testkit::poll;
use zgres_tests::e2e::zgresctl;

const DEADLINE: Duration = Duration::from_secs(120);

fn timing() -> Timing {
    Timing {
        session_timeout_ms: 4_000,
        fence_margin_ms: 1_000,
        loop_interval_ms: 1_000,
        ..Timing::default()
    }
}

/// The longest gap between two commits `node` acknowledged after the first `after` acks.
async fn longest_gap(writer: &Writer, node: usize, after: usize) -> f64 {
    let acks = writer.acks().await;
    let mut times: Vec<SystemTime> = acks[after.min(acks.len())..]
        .iter()
        .filter(|a| a.node == node)
        .map(|a| a.at)
        .collect();
    times.sort();
    times
        .windows(2)
        .filter_map(|w| w[1].duration_since(w[0]).ok())
        .max()
        .unwrap_or_default()
        .as_secs_f64()
}

/// Runs zgresctl, panicking with its message when it fails.
async fn ctl(zk: &str, args: &[&str]) {
    let out = zgresctl(zk, args).await;
    assert!(
        out.status.success(),
        "zgresctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Until zgresctl list shows `count` nodes waiting for a restart of `parameter`.
async fn pending_on(zk: &str, parameter: &str, count: usize) {
    poll::until("the nodes to wait for a restart", DEADLINE, || async {
        let out = zgresctl(zk, &["list"]).await;
        let list = String::from_utf8_lossy(&out.stdout).into_owned();
        (list.matches(parameter).count() >= count).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("ZGRES_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let mut group = Group::prepare(3, timing()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    for other in (0..3).filter(|&i| i != primary) {
        group.wait_following(other, primary).await;
    }
    let zk = group.zk.connect_string();
    let client = group.zk_client().await;
    let lock = group.path(zgres_schema::Znode::Lock);
    let (_, lock_before) = client.get_data(&lock).await.unwrap();
    poll::until(
        "the primary to publish its pg_settings",
        DEADLINE,
        || async {
            client
                .check_stat(&group.path(zgres_schema::Znode::PgSettings))
                .await
                .unwrap()
                .map(drop)
        },
    )
    .await
    .unwrap();
    let name = format!("n{primary}");
    let writer = Writer::start(&group);
    writer.wait_more_acks(primary, 100).await;

    let (mut restart_gaps, mut restart_took) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let start = writer.acks().await.len();
        let began = Instant::now();
        ctl(&zk, &["restart", "main", &name, "--force"]).await;
        restart_took.push(began.elapsed().as_secs_f64());
        writer.wait_more_acks(primary, 50).await;
        let gap = longest_gap(&writer, primary, start).await;
        println!("  primary restart in place {run}: longest commit gap {gap:.3}s");
        restart_gaps.push(gap);
    }

    let (mut roll_gaps, mut roll_took) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        // Raised, then lowered, alternately: both orders of the hot-standby rule.
        let value = if run % 2 == 1 { 150 } else { 120 };
        let start = writer.acks().await.len();
        let began = Instant::now();
        ctl(
            &zk,
            &[
                "config",
                "set",
                "main",
                &format!("postgresql.parameters.max_connections={value}"),
            ],
        )
        .await;
        pending_on(&zk, "postgresql.max_connections", 1).await;
        ctl(&zk, &["restart", "main", "--pending", "--force"]).await;
        roll_took.push(began.elapsed().as_secs_f64());
        writer.wait_more_acks(primary, 50).await;
        let gap = longest_gap(&writer, primary, start).await;
        println!("  rolling max_connections={value} {run}: longest commit gap {gap:.3}s");
        roll_gaps.push(gap);
    }
    let acks = writer.finish().await;
    let lost = missing_acks(&group, &acks, primary).await.len();
    let (_, lock_after) = client.get_data(&lock).await.unwrap();
    let moved = lock_after.czxid != lock_before.czxid
        || lock_after.ephemeral_owner != lock_before.ephemeral_owner;

    summary(
        "primary restart in place: longest commit gap",
        &restart_gaps,
    );
    summary(
        "primary restart in place: zgresctl restart duration",
        &restart_took,
    );
    summary("rolling parameter change: longest commit gap", &roll_gaps);
    summary(
        "rolling parameter change: config set to all restarted",
        &roll_took,
    );
    println!("acknowledged commits lost: {lost}; lock moved (a failover): {moved}");
}
