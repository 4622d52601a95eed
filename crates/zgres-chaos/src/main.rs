//! `zgres-chaos`: runs random, overlapping faults against a real group and checks it.
//! Exits 0 when every invariant held, 1 when one did not (the seed and the logs are printed),
//! 64 on bad arguments, 130 when interrupted (SIGINT or SIGTERM; what it started is stopped).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use zgres_chaos::run::{run, Options, Profile};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Timing {
    /// Session 2 s, ZooKeeper tickTime 200 ms.
    Fast,
    /// The deadman's defaults (session 4 s), ZooKeeper's default tickTime (2 s).
    Defaults,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// `synchronous_mode = on`: no acknowledged write may be lost.
    Sync,
    /// Asynchronous replication: lost writes are counted.
    Async,
}

/// Random, overlapping faults against a real zgres group (3-member ZooKeeper, 3 PostgreSQL
/// nodes with deadmen, zgres-sync with pgbouncer), judged by an independent checker. It runs
/// the daemons' binaries from its own target directory; under `cargo run` it builds them
/// first.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Seed of the faults, their targets and timing (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Faults to inject.
    #[arg(long, default_value_t = 20)]
    faults: usize,
    /// Replication mode.
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    mode: Mode,
    /// Where a failing run leaves its logs.
    #[arg(long, default_value = "target/chaos")]
    logs_dir: PathBuf,
    /// Keep the logs of a passing run too (in `--logs-dir`), e.g. to see why a write gap was
    /// long.
    #[arg(long)]
    keep_logs: bool,
    /// Timing profile of the deadmen and ZooKeeper.
    #[arg(long, value_enum, default_value_t = Timing::Fast)]
    timing: Timing,
    /// No faults: run this long (e.g. `1h`) with writers plus CPU and disk load, and report
    /// every lock change and fence (false failovers).
    #[arg(long, value_parser = humantime::parse_duration)]
    soak: Option<std::time::Duration>,
    /// Inject only these kinds of fault (comma-separated, e.g. `zk-member-cut,kill-node`);
    /// where none of them can be drawn (a second fault on the ensemble) any kind is.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also run a writer whose every write keeps the primary's backend busy for 3 s before it
    /// inserts: a fence or crash that left backends running would let one commit beside the
    /// new primary. Costs about half a core.
    #[arg(long)]
    long_writes: bool,
}

/// Why the daemons could not be built first.
#[derive(Debug, thiserror::Error)]
enum BuildError {
    #[error("cannot find this binary: {0}")]
    ThisBinary(std::io::Error),
    #[error("cannot run cargo: {0}")]
    Cargo(std::io::Error),
    #[error("cargo build of the daemons failed: {0}")]
    Failed(std::process::ExitStatus),
}

/// Under `cargo run`, builds the daemons it runs with the same profile first, so that they
/// are never missing nor older than their sources (cargo builds only this package's binary).
fn build_the_daemons() -> Result<(), BuildError> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let exe = std::env::current_exe().map_err(BuildError::ThisBinary)?;
    let profile = exe
        .parent()
        .and_then(|dir| dir.file_name())
        .and_then(|name| name.to_str())
        .unwrap_or("debug");
    let profile = if profile == "debug" { "dev" } else { profile };
    eprintln!("zgres-chaos: building zgres-deadman, zgres-sync and zgresctl (profile {profile})");
    let status = std::process::Command::new(cargo)
        .args(["build", "--profile", profile])
        .args(["-p", "zgres-deadman", "-p", "zgres-sync", "-p", "zgresctl"])
        .status()
        .map_err(BuildError::Cargo)?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Failed(status))
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut only = Vec::new();
    for name in &args.only {
        match zgres_chaos::faults::kind_index(name) {
            Some(i) => only.push(i),
            None => {
                eprintln!(
                    "zgres-chaos: --only: no fault kind {name:?} (kinds: {})",
                    zgres_chaos::faults::KINDS.join(", ")
                );
                return ExitCode::from(64);
            }
        }
    }
    let options = Options {
        only,
        seed,
        faults: args.faults,
        synchronous: matches!(args.mode, Mode::Sync),
        logs_dir: args.logs_dir,
        keep_logs: args.keep_logs,
        profile: match args.timing {
            Timing::Fast => Profile::Fast,
            Timing::Defaults => Profile::Defaults,
        },
        soak: args.soak,
        long_writes: args.long_writes,
    };
    // Read by the testkit when it starts the ensemble; nothing else runs yet.
    std::env::set_var(
        "ZGRES_TEST_ZK_TICK_MS",
        options.profile.zookeeper_tick_ms().to_string(),
    );
    if let Err(e) = build_the_daemons() {
        eprintln!("zgres-chaos: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zgres-chaos: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let outcome = runtime.block_on(async {
        // Interrupted, the run is dropped: that stops its daemons and unmounts its disks.
        tokio::select! {
            outcome = run(&options, &mut stdout) => Some(outcome),
            () = interrupted() => None,
        }
    });
    match outcome {
        Some(outcome) if outcome.passed => ExitCode::SUCCESS,
        Some(_) => ExitCode::FAILURE,
        None => {
            eprintln!("zgres-chaos: interrupted (seed {seed}); everything it started is stopped");
            ExitCode::from(130)
        }
    }
}

/// Resolves on SIGINT or SIGTERM (never when neither can be watched).
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
