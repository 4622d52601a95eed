//! A run: episodes of faults drawn from the seed, the supervisor restarting dead deadmen, the
//! wait for the group to be whole after each episode, and the checker's verdict at the end.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::checker::{self, Record, Verdict};
use crate::cluster::{Cluster, SIZE, TABLE};
use crate::faults::{Nemesis, Scheduled};
use crate::health;
use crate::lag::LagSampler;
use crate::long_writer::LongWriter;
use crate::report::{self, Episode};
use crate::supervisor::Supervisor;
use crate::workload::Workload;
use zgres_testkit::group::Timing;

/// The deadmen's and ZooKeeper's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Session 2 s (fence margin 0.5 s, rounds every 0.2 s), ZooKeeper tickTime 200 ms.
    Fast,
    /// The deadman's documented defaults (session 4 s, fence margin 1 s, rounds every 2 s),
    /// ZooKeeper's default tickTime of 2 s.
    Defaults,
}

impl Profile {
    /// The deadmen's timing.
    pub fn timing(self) -> Timing {
        match self {
            Profile::Fast => Timing::default(),
            Profile::Defaults => Timing {
                session_timeout_ms: 4_000,
                fence_margin_ms: 1_000,
                primary_restart_timeout_ms: 10_000,
                loop_interval_ms: 2_000,
                state_refresh_ms: 30_000,
            },
        }
    }

    /// ZooKeeper's tickTime, ms (the testkit reads it from `ZGRES_TEST_ZK_TICK_MS`).
    pub fn zookeeper_tick_ms(self) -> u64 {
        match self {
            Profile::Fast => 200,
            Profile::Defaults => 2_000,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seeds the faults, their targets and timing, and the supervisor's delays.
    pub seed: u64,
    /// How many faults to inject (an episode of two overlapping faults counts two).
    pub faults: usize,
    /// `synchronous_mode = on` (no acknowledged write may be lost) or asynchronous.
    pub synchronous: bool,
    /// Where a failing run leaves every log.
    pub logs_dir: PathBuf,
    /// Leave them there after a passing run too.
    pub keep_logs: bool,
    /// The timing profile.
    pub profile: Profile,
    /// Instead of faults: this long without any, under load, counting false failovers.
    pub soak: Option<Duration>,
    /// Draw only these kinds (indexes into [`crate::faults::KINDS`]; empty: every kind).
    pub only: Vec<usize>,
    /// Also run the long writer ([`crate::long_writer`]).
    pub long_writes: bool,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// Every episode, in order.
    pub episodes: Vec<Episode>,
    /// The checker's findings (none for a soak, which prints its own).
    pub verdict: Option<Verdict>,
    /// Whether every invariant held and the group recovered after every episode.
    pub passed: bool,
}

/// After its faults end, an episode fails when the group is not whole within two session
/// timeouts plus this (a rewind or a clone, and the supervisor's restart delay).
const REPAIR_ALLOWANCE: Duration = Duration::from_secs(90);
/// How long a new group may take to be whole, with the workload's table everywhere.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How often the run looks at its faults and the supervisor at the deadmen.
const TICK: Duration = Duration::from_millis(50);

/// One fault of the running episode.
struct Running {
    scheduled: Scheduled,
    started: bool,
    ended: bool,
    /// A flapping cut: when it next toggles and whether it is cut now.
    flap: Option<(Instant, bool)>,
}

/// Runs `options` to the end, printing the fault timeline to `out` as it goes. Panics when
/// the group cannot be set up.
pub async fn run(options: &Options, out: &mut impl Write) -> Outcome {
    let mode = if options.synchronous { "sync" } else { "async" };
    let what = match options.soak {
        Some(duration) => format!("soak {duration:?}"),
        None => format!("faults {}", options.faults),
    };
    let _ = writeln!(
        out,
        "zgres-chaos: seed {} {what} mode {mode} timing {:?}",
        options.seed, options.profile
    );
    let own_disks = options.soak.is_none();
    let mut cluster =
        Cluster::start(options.synchronous, options.profile.timing(), own_disks).await;
    if let Some(duration) = options.soak {
        let soaked = crate::soak::soak(
            &mut cluster,
            duration,
            options.synchronous,
            options.seed,
            out,
        )
        .await;
        return Outcome {
            episodes: Vec::new(),
            verdict: None,
            passed: soaked.passed,
        };
    }
    let session = cluster.session_timeout();
    if !wait_ready(&cluster, out).await {
        return Outcome {
            episodes: Vec::new(),
            verdict: None,
            passed: false,
        };
    }
    let epoch = Instant::now();
    let workload = Workload::start(cluster.client_targets(), epoch);
    let long_writer = options.long_writes.then(|| {
        let nodes = cluster.node_targets().into_iter().map(|(_, c)| c).collect();
        LongWriter::start(nodes, epoch)
    });
    let lag = LagSampler::start(cluster.node_targets(), epoch);
    let disk_full = match cluster.disks_unavailable() {
        Some(why) => {
            let _ = writeln!(out, "no disk-full faults: {why}");
            false
        }
        None => true,
    };
    let mut nemesis =
        Nemesis::new(options.seed, SIZE, session, disk_full).with_only(options.only.clone());
    let mut supervisor = Supervisor::new(options.seed);
    let mut episodes = Vec::new();
    let mut injected = 0;
    let mut recovered_every_time = true;
    let mut operation_failovers = Vec::new();
    let mut primary = Some(0);
    while injected < options.faults {
        let plan = nemesis.episode();
        injected += plan.len();
        let started = Instant::now();
        // Read only where it is checked: each read is a ZooKeeper session of its own.
        let operations_only = plan.iter().all(|s| s.fault.is_operation());
        let timelines_before = if operations_only {
            timelines(&cluster).await
        } else {
            Vec::new()
        };
        let faults_ended = play(&plan, &mut cluster, &mut nemesis, &mut supervisor, out).await;
        let limit = 2 * session + REPAIR_ALLOWANCE;
        let recovered = wait_whole(&mut cluster, &mut supervisor, limit, out).await;
        let primary_before = primary;
        primary = recovered.and_then(|(_, port)| cluster.ports().iter().position(|&p| p == port));
        let recovered = recovered.map(|(at, _)| at);
        let episode = Episode {
            plan: plan.clone(),
            primary_before,
            started_us: micros(epoch, started),
            faults_ended_us: micros(epoch, faults_ended),
            recovered_us: recovered.map(|at| micros(epoch, at)),
            write_gap_us: 0,
        };
        let _ = writeln!(out, "{}", episode.line());
        let timelines_after = if operations_only {
            timelines(&cluster).await
        } else {
            Vec::new()
        };
        if timelines_after != timelines_before {
            let _ = writeln!(out, "    a failover during an operation alone");
            operation_failovers.push(format!(
                "{}: timelines {timelines_before:?} became {timelines_after:?}",
                episode.line()
            ));
        }
        episodes.push(episode);
        if recovered.is_none() {
            recovered_every_time = false;
            break;
        }
    }
    let (mut acks, refusals) = workload.finish().await;
    report::print_refusals(out, &refusals);
    if let Some(long_writer) = long_writer {
        let long = long_writer.finish().await;
        let _ = writeln!(out, "long writes acknowledged: {}", long.len());
        acks.extend(long);
    }
    let record = Record {
        lag: lag.finish().await,
        final_ids: cluster.final_ids().await,
        history: cluster.history().await,
        logs: cluster.logs(),
        unexpected_exits: supervisor.unexpected_exits,
        acks,
    };
    let verdict = checker::check(&record);
    report::fill_write_gaps(&mut episodes, &record.acks);
    // A run whose clients never wrote checked nothing.
    let wrote = !record.acks.is_empty();
    if !wrote {
        let _ = writeln!(out, "FAILED: no write was acknowledged in the whole run");
    }
    let passed = recovered_every_time
        && wrote
        && operation_failovers.is_empty()
        && verdict.passed(options.synchronous);
    let _ = report::print(out, &episodes, &verdict, &record, options.synchronous);
    let _ = writeln!(
        out,
        "failovers caused by operations alone: {operation_failovers:?}"
    );
    if !passed || options.keep_logs {
        let dir = options.logs_dir.join(format!("seed-{}", options.seed));
        let verdict = if passed { "passed" } else { "FAILED" };
        match cluster.keep_logs(&dir) {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "{verdict} (seed {}): logs in {}",
                    options.seed,
                    dir.display()
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{verdict} (seed {}); logs not kept: {e}", options.seed);
            }
        }
    }
    Outcome {
        episodes,
        verdict: Some(verdict),
        passed,
    }
}

/// Applies and heals the episode's faults on their schedule; returns when the last ended.
async fn play(
    plan: &[Scheduled],
    cluster: &mut Cluster,
    nemesis: &mut Nemesis,
    supervisor: &mut Supervisor,
    out: &mut impl Write,
) -> Instant {
    let start = Instant::now();
    let mut running: Vec<Running> = plan
        .iter()
        .map(|&scheduled| Running {
            scheduled,
            started: false,
            ended: false,
            flap: None,
        })
        .collect();
    loop {
        cluster.tick_paused_stops(out);
        supervisor.tick(cluster, out);
        let now = Instant::now();
        for r in &mut running {
            let fault = r.scheduled.fault;
            if !r.started && now >= start + r.scheduled.starts_after {
                cluster.apply(fault).await;
                r.started = true;
                if let crate::faults::Fault::ZookeeperFlap(_) = fault {
                    r.flap = Some((now + flap_interval(nemesis), true));
                }
            }
            if r.started && !r.ended {
                if fault == crate::faults::Fault::RollingRestart {
                    // Holds until every zgresctl started returns; one may fail when other
                    // faults overlap (or a second restart finds the first's requests).
                    for (code, output) in cluster.finished_operations() {
                        if code != 0 {
                            let _ = writeln!(
                                out,
                                "    zgresctl restart exited {code}: {}",
                                output.trim()
                            );
                        }
                    }
                    r.ended = !cluster.operation_running();
                } else if now >= start + r.scheduled.ends_after() {
                    cluster.heal(fault).await;
                    r.ended = true;
                } else if let (Some((next, cut)), Some(node)) = (r.flap, fault.node()) {
                    if now >= next {
                        cluster.flap(node, !cut);
                        r.flap = Some((now + flap_interval(nemesis), !cut));
                    }
                }
            }
        }
        if running.iter().all(|r| r.ended) {
            return Instant::now();
        }
        tokio::time::sleep(TICK).await;
    }
}

fn flap_interval(nemesis: &mut Nemesis) -> Duration {
    nemesis.jitter(Duration::from_millis(200), Duration::from_millis(1500))
}

/// Waits until the group is whole ([`health::whole`]), at most `limit`; when it is, and its
/// primary's port.
async fn wait_whole(
    cluster: &mut Cluster,
    supervisor: &mut Supervisor,
    limit: Duration,
    out: &mut impl Write,
) -> Option<(Instant, u16)> {
    let deadline = Instant::now() + limit;
    let ports = cluster.ports();
    loop {
        supervisor.tick(cluster, out);
        let last = match health::whole(&ports, &cluster.bouncer_conninfo()).await {
            Ok(primary) => return Some((Instant::now(), primary)),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            let _ = writeln!(out, "    not whole within {limit:?}: {last}");
            return None;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Waits, at most [`READY_WITHIN`], until the group is whole and every node has the
/// workload's table: in asynchronous mode a primary lost before the table reached the standbys
/// would leave the next one without it, and every write of the run would fail. Says why not.
async fn wait_ready(cluster: &Cluster, out: &mut impl Write) -> bool {
    let deadline = Instant::now() + READY_WITHIN;
    let ports = cluster.ports();
    loop {
        let last = match health::whole(&ports, &cluster.bouncer_conninfo()).await {
            Err(why) => why.to_string(),
            Ok(_) => {
                let mut missing = Vec::new();
                for &port in &ports {
                    if !health::has_table(port, TABLE).await {
                        missing.push(port);
                    }
                }
                if missing.is_empty() {
                    return true;
                }
                format!("{TABLE} not yet on the nodes on ports {missing:?}")
            }
        };
        if Instant::now() >= deadline {
            let _ = writeln!(
                out,
                "the group was not ready within {READY_WITHIN:?}: {last}"
            );
            return false;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// The timelines `/history` records now (read with the checker's own reader).
async fn timelines(cluster: &Cluster) -> Vec<u64> {
    cluster
        .history()
        .await
        .and_then(|bytes| checker::history_timelines(&bytes).ok())
        .unwrap_or_default()
}

fn micros(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_micros() as u64
}
