//! Synchronous replication with one and with several standbys, side by side (issue 14): real
//! deadmen, ZooKeeper and PostgreSQL (release build), session 4 s, loop 1 s.
//!
//! For `FIRST 1` (3 nodes, the default), `FIRST 2` (3 nodes) and `ANY 2` (4 nodes) it prints:
//! - commit throughput on the primary: `ZGRES_BENCH_CLIENTS` (default 4) clients committing
//!   one-row inserts without pause for `ZGRES_BENCH_SECS` (default 5) seconds, once `/sync`
//!   claims its settled set; commits per second and the mean commit latency;
//! - `ZGRES_BENCH_KILLS` (default 5) kill -9s of the primary node in a row (the old node
//!   rejoins each time): seconds from the kill to the first commit the new primary
//!   acknowledges (a writer commits on every node throughout; server commit times), then
//!   until `/sync` claims a standby again (the group could lose its primary again without
//!   losing a commit), and acknowledged commits lost.
//!
//! Run: `cargo bench -p zgres-deadman --bench sync_methods`

use std::num::NonZeroU32;
use std::time::{Duration, Instant, SystemTime};

use zgres_schema::documents::{GroupConfig, SyncMethod, SyncMode};
use zgres_testkit::figures::summary;
use zgres_testkit::group::checks::{wait_promotable_again, wait_sync_claim};
use zgres_testkit::group::{first_ack_after, missing_acks, Group, Timing, Writer};
use zgres_testkit::poll;

const DEADLINE: Duration = Duration::from_secs(120);

fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// One configuration: its name, group size, count, method and the settled claim
/// (standbys listed, holders).
struct Variant {
    name: &'static str,
    nodes: usize,
    count: u32,
    method: SyncMethod,
    claim: (usize, usize),
}

/// What one configuration measured.
struct Figures {
    /// Commits per second.
    rate: f64,
    /// Mean commit latency, ms.
    latency: f64,
    /// Kill -> first commit on the new primary, s.
    times: Vec<f64>,
    /// First commit on the new primary -> `/sync` claims a holder again, s.
    again: Vec<f64>,
    /// Acknowledged commits missing on new primaries.
    lost: usize,
}

/// Commits per second and mean latency (ms) of `clients` clients on node `primary`.
async fn throughput(group: &Group, primary: usize, clients: u64, secs: u64) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = group.nodes[primary]
            .client()
            .await
            .expect("primary answers");
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut waited = Duration::ZERO;
            while Instant::now() < deadline {
                let sent = Instant::now();
                client
                    .execute(
                        "INSERT INTO writes (node, seq) VALUES ('bench', $1)",
                        &[&(c as i64)],
                    )
                    .await
                    .expect("commit");
                waited += sent.elapsed();
                done += 1;
            }
            (done, waited)
        }));
    }
    let mut commits = 0;
    let mut waited = Duration::ZERO;
    for task in tasks {
        let (done, took) = task.await.unwrap();
        commits += done;
        waited += took;
    }
    (
        commits as f64 / secs as f64,
        waited.as_secs_f64() * 1000.0 / commits.max(1) as f64,
    )
}

async fn run(variant: &Variant, clients: u64, secs: u64, kills: u64) -> Figures {
    let timing = Timing {
        session_timeout_ms: 4_000,
        fence_margin_ms: 1_000,
        primary_restart_timeout_ms: 10_000,
        loop_interval_ms: 1_000,
        ..Timing::default()
    };
    let mut group = Group::prepare(variant.nodes, timing).await;
    group
        .set_group_config(&GroupConfig {
            synchronous_mode: SyncMode::On,
            synchronous_node_count: NonZeroU32::new(variant.count).unwrap(),
            synchronous_method: variant.method,
            ..GroupConfig::default()
        })
        .await;
    group.start_all().await;
    let mut primary = group.wait_primary(&[]).await;
    let (standbys, holders) = variant.claim;
    wait_sync_claim(&group, primary, standbys, holders).await;
    let (rate, latency) = throughput(&group, primary, clients, secs).await;
    let writer = Writer::start(&group);
    let mut times = Vec::new();
    let mut again = Vec::new();
    let mut lost = 0;
    for kill in 0..kills {
        wait_sync_claim(&group, primary, standbys, holders).await;
        writer.wait_more_acks(primary, 20).await;
        let killed = Instant::now();
        let killed_at = SystemTime::now();
        group.kill_node(primary);
        let new = group.wait_primary(&[primary]).await;
        let acks = poll::until(
            "the writer's first commit on the new primary",
            DEADLINE,
            || async {
                let acks = writer.acks().await;
                first_ack_after(&acks, new, killed_at).map(|_| acks)
            },
        )
        .await
        .unwrap();
        let took = first_ack_after(&acks, new, killed_at)
            .and_then(|at| at.duration_since(killed_at).ok())
            .unwrap_or_default()
            .as_secs_f64();
        wait_promotable_again(&group, new).await;
        let promotable = killed.elapsed().as_secs_f64() - took;
        let missing = missing_acks(&group, &acks, new).await.len();
        println!(
            "  {} kill {kill}: n{primary} killed, n{new} took writes after {took:.2}s, a standby promotable {promotable:.2}s later, {missing} of {} acknowledged commits lost",
            variant.name,
            acks.len()
        );
        times.push(took);
        again.push(promotable);
        lost += missing;
        group.start(primary);
        group.wait_following(primary, new).await;
        primary = new;
    }
    writer.finish().await;
    Figures {
        rate,
        latency,
        times,
        again,
        lost,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var("ZGRES_TEST_LOG", "info");
    let clients = env_count("ZGRES_BENCH_CLIENTS", 4);
    let secs = env_count("ZGRES_BENCH_SECS", 5);
    let kills = env_count("ZGRES_BENCH_KILLS", 5);
    let variants = [
        Variant {
            name: "FIRST 1 (3 nodes)",
            nodes: 3,
            count: 1,
            method: SyncMethod::First,
            claim: (1, 1),
        },
        Variant {
            name: "FIRST 2 (3 nodes)",
            nodes: 3,
            count: 2,
            method: SyncMethod::First,
            claim: (2, 2),
        },
        Variant {
            name: "ANY 2 (4 nodes)",
            nodes: 4,
            count: 2,
            method: SyncMethod::Any,
            claim: (3, 2),
        },
    ];
    println!("zgres-deadman synchronous methods: session 4 s, loop 1 s, {clients} clients for {secs} s, {kills} kills each");
    let mut results = Vec::new();
    for variant in &variants {
        results.push(run(variant, clients, secs, kills).await);
    }
    println!();
    for (variant, f) in variants.iter().zip(&results) {
        println!(
            "{:<20} {:>8.0} commits/s  mean commit {:.2} ms  lost {}",
            variant.name, f.rate, f.latency, f.lost
        );
        summary(
            &format!("{}: kill -9 primary -> first new commit", variant.name),
            &f.times,
        );
        summary(
            &format!("{}: first new commit -> promotable again", variant.name),
            &f.again,
        );
    }
}
