//! `zgres-sync`: parse arguments, set up logging and signals, run the daemon.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use zgres_config::{EXIT_CONFIG, EXIT_USAGE};
use zgres_sync::config::Config;

/// Keeps this host's pgbouncer and other configuration pointed at the right databases.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Run with this configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "check_config")]
    config: Option<PathBuf>,
    /// Validate this configuration file and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let (path, check_only) = match (args.config, args.check_config) {
        (Some(p), None) => (p, false),
        (None, Some(p)) => (p, true),
        _ => {
            eprintln!("zgres-sync: give --config FILE or --check-config FILE");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("zgres-sync: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !check_only {
        config.log.init();
    }
    // Libraries are loaded (and their ABI checked) before anything runs, also when checking.
    let libraries = match zgres_sync::load_libraries(&config) {
        Ok(libraries) => libraries,
        Err(e) => {
            eprintln!("zgres-sync: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if check_only {
        println!("{}: OK", path.display());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zgres-sync: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        zgres_sync::run(config, libraries, shutdown).await;
        tracing::info!("zgres-sync stopped");
    });
    ExitCode::SUCCESS
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}
