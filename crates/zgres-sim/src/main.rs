//! `zgres-sim`: runs many seeded schedules of the simulated group and reports what broke.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use zgres_deadman_core::synchronous::Acknowledgers;
use zgres_schema::documents::{SyncMethod, SyncMode};
use zgres_sim::{run, Bug, DeadmanTiming, Ensemble, Mix, Settings};

/// Deterministic simulation of the deadman's decision core under random overlapping faults.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// How many schedules to run.
    #[arg(long, default_value_t = 1000)]
    schedules: u64,
    /// The first seed (schedules use consecutive seeds; one failing seed replays alone).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults per schedule.
    #[arg(long, default_value_t = 4)]
    faults: usize,
    /// Switchover requests per schedule.
    #[arg(long, default_value_t = 2)]
    switchovers: usize,
    /// Replication-link cuts per schedule.
    #[arg(long, default_value_t = 1)]
    replication_cuts: usize,
    /// Failover requests per schedule.
    #[arg(long, default_value_t = 1)]
    failovers: usize,
    /// Stops of a node's deadman in a paused group per schedule.
    #[arg(long, default_value_t = 0)]
    paused_stops: usize,
    /// Stops of a node's deadman in a running group per schedule.
    #[arg(long, default_value_t = 0)]
    stops: usize,
    /// Cuts of a node's ZooKeeper member from the ensemble's leader per schedule.
    #[arg(long, default_value_t = 1)]
    member_cuts: usize,
    /// Hangs of a node's PostgreSQL (running, answering nothing) per schedule.
    #[arg(long, default_value_t = 0)]
    pg_hangs: usize,
    /// Stretches in which a node's `pre_promote` callback vetoes its promotions, per schedule.
    #[arg(long, default_value_t = 0)]
    vetoes: usize,
    /// The deadmen's `primary_restart_timeout` in ms.
    #[arg(long, default_value_t = 10_000)]
    restart_timeout_ms: u64,
    /// The ensemble's `syncLimit` (`tickTime` is 200 ms): how long a member cut from its
    /// leader goes on answering pings. The takeover wait follows from it (1.6 s at 5).
    #[arg(long, default_value_t = 5)]
    ensemble_sync_limit: u32,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: u64,
    /// How many failing schedules to print.
    #[arg(long, default_value_t = 5)]
    show: usize,
    /// The group's synchronous_mode.
    #[arg(long, default_value = "off", value_parser = ["off", "on", "strict"])]
    mode: String,
    /// `synchronous_node_count` (in `on` and `strict` mode).
    #[arg(long, default_value_t = 1)]
    sync_count: usize,
    /// `synchronous_method`.
    #[arg(long, default_value = "first", value_parser = ["first", "any"])]
    sync_method: String,
    /// Nodes in the group.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Run with a deliberate mistake, to show the checker finds it.
    #[arg(long, value_parser = ["fence-from-expiry", "skip-sync-confirm", "forget-paused-lock", "no-takeover-wait", "quiet-every-release", "new-session-confirms-fence"])]
    bug: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = Settings {
        mix: Mix {
            faults: args.faults,
            switchovers: args.switchovers,
            replication_cuts: args.replication_cuts,
            failovers: args.failovers,
            paused_stops: args.paused_stops,
            stops: args.stops,
            member_cuts: args.member_cuts,
            pg_hangs: args.pg_hangs,
            vetoes: args.vetoes,
        },
        mode: match args.mode.as_str() {
            "on" => SyncMode::On,
            "strict" => SyncMode::Strict,
            _ => SyncMode::Off,
        },
        acknowledgers: Acknowledgers {
            count: args.sync_count.max(1),
            method: match args.sync_method.as_str() {
                "any" => SyncMethod::Any,
                _ => SyncMethod::First,
            },
        },
        nodes: args.nodes.max(2),
        deadman: DeadmanTiming {
            restart_timeout_ms: args.restart_timeout_ms,
            ..Settings::default().deadman
        },
        ensemble: Ensemble {
            sync_limit: args.ensemble_sync_limit,
            ..Settings::default().ensemble
        },
        bug: args.bug.as_deref().map(|b| match b {
            "skip-sync-confirm" => Bug::SkipSyncConfirm,
            "forget-paused-lock" => Bug::ForgetPausedLock,
            "no-takeover-wait" => Bug::NoTakeoverWait,
            "quiet-every-release" => Bug::QuietEveryRelease,
            "new-session-confirms-fence" => Bug::NewSessionConfirmsFence,
            _ => Bug::FenceFromExpiry,
        }),
        ..Settings::default()
    };
    let started = Instant::now();
    let threads = args.threads.max(1);
    let results: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                scope.spawn(move || {
                    let mut outcomes = Vec::new();
                    let mut seed = args.seed + w;
                    while seed < args.seed + args.schedules {
                        outcomes.push(run(seed, settings));
                        seed += threads;
                    }
                    outcomes
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a worker panicked"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let failed: Vec<_> = results
        .iter()
        .filter(|o| !o.violations.is_empty())
        .collect();
    let writes: usize = results.iter().map(|o| o.writes).sum();
    let lost: usize = results.iter().map(|o| o.lost_writes).sum();
    let promotions: usize = results.iter().map(|o| o.tally.promotions).sum();
    let left_running: usize = results
        .iter()
        .map(|o| o.tally.paused_stops_left_running)
        .sum();
    let handed_over: usize = results.iter().map(|o| o.tally.hand_overs_at_stop).sum();
    println!(
        "{} schedules in {elapsed:.1} s ({:.0}/s), {} faults, {} switchover requests, {} replication cuts, {} failover requests, {} paused stops and {} stops each: {} promotions, {} paused stops left PostgreSQL running, {} stops handed the lock over, {} acknowledged writes, {} lost, {} schedules broke an invariant (synchronous_mode {})",
        results.len(),
        results.len() as f64 / elapsed,
        args.faults,
        args.switchovers,
        args.replication_cuts,
        args.failovers,
        args.paused_stops,
        args.stops,
        promotions,
        left_running,
        handed_over,
        writes,
        lost,
        failed.len(),
        args.mode
    );
    let mut outages: Vec<(u64, u64)> = results
        .iter()
        .map(|o| (o.longest_without_primary_ms, o.seed))
        .collect();
    outages.sort_unstable();
    if let Some(&(worst, seed)) = outages.last() {
        let at = |q| seconds_at(&outages, q);
        println!(
            "longest time without a writable primary per schedule: p50 {:.1} s, p99 {:.1} s, max {:.1} s (seed {seed})",
            at(0.5),
            at(0.99),
            worst as f64 / 1000.0
        );
        if let Some(outcome) = results.iter().find(|o| o.seed == seed) {
            for fault in &outcome.faults {
                println!("  {fault:?}");
            }
        }
    }
    print_recoveries(&results);
    for outcome in failed.iter().take(args.show) {
        println!("seed {}: {:?}", outcome.seed, outcome.violations);
        for fault in &outcome.faults {
            println!("  {fault:?}");
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Recovery per fault kind: from the end of a fault that ended alone to the group whole.
fn print_recoveries(results: &[zgres_sim::Outcome]) {
    let mut by_kind: std::collections::BTreeMap<String, Vec<(u64, u64)>> = Default::default();
    for outcome in results {
        for (kind, ms) in &outcome.recoveries {
            by_kind
                .entry(format!("{kind:?}"))
                .or_default()
                .push((*ms, outcome.seed));
        }
    }
    println!("from the end of a fault that ended alone to the group whole again:");
    for (kind, mut times) in by_kind {
        times.sort_unstable();
        let at = |q| seconds_at(&times, q);
        let (worst, seed) = times[times.len() - 1];
        println!(
            "  {kind:<16} {:>7} faults: p50 {:.2} s, p99 {:.2} s, max {:.2} s (seed {seed})",
            times.len(),
            at(0.5),
            at(0.99),
            worst as f64 / 1000.0
        );
    }
}

/// The `q` quantile (nearest rank below) of `sorted` (ms, seed) pairs, in seconds.
fn seconds_at(sorted: &[(u64, u64)], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize].0 as f64 / 1000.0
}
