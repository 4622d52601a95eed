//! `zgres-deadman`: parse arguments, set up logging and signals, run the daemon.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use zgres_deadman::config::Config;
use zgres_deadman::fence::board::DeadlineBoard;

use zgres_config::{Mode, EXIT_CONFIG, EXIT_USAGE};

/// Exit status for data that must not be used, e.g. a foreign data directory (`EX_DATAERR`).
const EXIT_DATA: u8 = 65;

/// Keeps one PostgreSQL node of a zgres group available and safe.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Exit status: 0 stopped cleanly; 1 the fence could not be set up; 64 usage error; \
65 the data directory belongs to another database system or is not a PostgreSQL one (nothing \
was changed); 78 configuration error (bad config file, unusable plugin, API address in use)."
)]
struct Args {
    /// Run with this configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "check_config")]
    config: Option<PathBuf>,
    /// Validate this configuration file and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Internal: run as the fence keeper process (started by the deadman itself).
    #[arg(long, hide = true)]
    fence_keeper: bool,
    /// Internal: the fence keeper's first state (a keeper-protocol line), enforced before
    /// anything arrives on its stdin.
    #[arg(long, hide = true, value_name = "STATE")]
    fence_state: Option<String>,
    /// Internal: the fence keeper's standard output is its deadline board (a memfd the deadman
    /// writes confirmations to).
    #[arg(long, hide = true)]
    fence_board: bool,
}

fn main() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if raw.get(1).is_some_and(|a| a == "--postmaster-guardian") {
        return guardian(&raw[2..]);
    }
    // Before anything else: SIGUSR2 (re-execute) waits until its handler is installed.
    zgres_deadman::handover::hold_upgrade_signal();
    let args: Args = match zgres_config::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    if args.fence_keeper {
        // Signals meant for the deadman (SIGHUP reload, SIGUSR2 re-exec, SIGINT/SIGTERM) reach
        // the keeper too when sent to the whole unit or process group; none may end it.
        // Blocked, they stay pending; the keeper ends only when the deadman is done with it.
        zgres_deadman::fence::keep_signals_away();
        // A keeper started in place of a dead one is armed from its first instant, even if the
        // deadman is frozen before it writes anything.
        let first = format!("{}\n", args.fence_state.unwrap_or_default());
        let input = std::io::Read::chain(std::io::Cursor::new(first), std::io::stdin());
        // The deadman sends confirmations to the board only: a keeper that cannot read it
        // would fence a healthy primary. It exits instead, and the deadman starts another
        // (its fence thread covers the gap).
        let board = match args
            .fence_board
            .then(DeadlineBoard::from_stdout)
            .transpose()
        {
            Ok(board) => board,
            Err(e) => {
                eprintln!("zgres fence keeper: cannot open its deadline board: {e}");
                return ExitCode::FAILURE;
            }
        };
        zgres_deadman::fence::run_keeper(std::io::BufReader::new(input), board, std::io::stderr());
        return ExitCode::SUCCESS;
    }
    let Some(mode) = Mode::from_args(args.config, args.check_config) else {
        eprintln!("zgres-deadman: give --config FILE or --check-config FILE");
        return ExitCode::from(EXIT_USAGE);
    };
    let (path, check_only) = (mode.path().to_owned(), matches!(mode, Mode::Check(_)));
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("zgres-deadman: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let auth_warning = config.zookeeper.settings.auth_warning();
    if check_only {
        println!(
            "{}: OK (node {} in group {})",
            path.display(),
            config.node,
            config.group
        );
        if let Some(warning) = auth_warning {
            println!("warning: {warning}");
        }
        let takeover = config.zookeeper.takeover_note();
        match config.zookeeper.ensemble.declared {
            true => println!("{takeover}"),
            false => println!("warning: {takeover}"),
        }
        return ExitCode::SUCCESS;
    }
    let log_level = config.log.init();
    if let Some(warning) = auth_warning {
        tracing::warn!("{warning}");
    }
    let takeover = config.zookeeper.takeover_note();
    match config.zookeeper.ensemble.declared {
        true => tracing::info!("{takeover}"),
        false => tracing::warn!("{takeover}"),
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zgres-deadman: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(zgres_config::cancel_on_signal(shutdown.clone()));
        // One pending reload is enough: a newer SIGHUP re-reads the file anyway.
        let (reload_tx, configs) = tokio::sync::mpsc::channel(1);
        tokio::spawn(zgres_config::reload_on_hangup(
            path.clone(),
            Config::load,
            reload_tx,
        ));
        let reloads = zgres_deadman::daemon::Reloads {
            configs,
            log_level: Some(log_level),
        };
        match zgres_deadman::run(config, shutdown, reloads).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "zgres-deadman stopped");
                eprintln!("zgres-deadman: {e}");
                // Exhaustive: a new error kind must choose its exit status here.
                use zgres_deadman::DaemonError;
                match e {
                    DaemonError::Fence(_) => ExitCode::FAILURE,
                    DaemonError::Plugins(_)
                    | DaemonError::Callbacks(_)
                    | DaemonError::Api { .. } => ExitCode::from(EXIT_CONFIG),
                    DaemonError::DataDir(_)
                    | DaemonError::WrongSystem { .. }
                    | DaemonError::Provisioning(_)
                    | DaemonError::Passfile(_) => ExitCode::from(EXIT_DATA),
                }
            }
        }
    })
}

/// Internal: `--postmaster-guardian SOCKET PARENT PROGRAM ARGS...`, started by the deadman to
/// run PostgreSQL (see `zgres_deadman::guardian`).
fn guardian(args: &[std::ffi::OsString]) -> ExitCode {
    // Only the deadman ends it (through PostgreSQL's exit or its own death): once PostgreSQL
    // runs, the guardian blocks the signals meant for the deadman (see `run_guardian`).
    let Some((socket, parent, program, rest)) =
        zgres_deadman::guardian::link::parse_guardian_args(args)
    else {
        eprintln!(
            "zgres postmaster guardian: usage: --postmaster-guardian SOCKET PARENT PROGRAM ARGS..."
        );
        return ExitCode::from(EXIT_USAGE);
    };
    match zgres_deadman::guardian::run_guardian(&socket, parent, &program, &rest) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zgres postmaster guardian: {e}");
            ExitCode::FAILURE
        }
    }
}
