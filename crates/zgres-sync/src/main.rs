//! `zgres-sync`: parse arguments, set up logging and signals, run the daemon.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use zgres_config::{Mode, EXIT_CONFIG, EXIT_USAGE};
use zgres_sync::config::Config;

/// Keeps this host's pgbouncer and other configuration pointed at the right databases.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Exit status: 0 stopped cleanly (or --check-config passed); 1 cannot run; \
64 usage error; 78 configuration error (bad config file, unusable plugin library)."
)]
struct Args {
    /// Run with this configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "check_config")]
    config: Option<PathBuf>,
    /// Validate this configuration file and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Args = match zgres_config::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let Some(mode) = Mode::from_args(args.config, args.check_config) else {
        eprintln!("zgres-sync: give --config FILE or --check-config FILE");
        return ExitCode::from(EXIT_USAGE);
    };
    let (path, check_only) = (mode.path().to_owned(), matches!(mode, Mode::Check(_)));
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
    let warnings = config.warnings();
    if check_only {
        println!("{}: OK", path.display());
        for warning in &warnings {
            println!("warning: {warning}");
        }
        return ExitCode::SUCCESS;
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
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
        tokio::spawn(zgres_config::cancel_on_signal(shutdown.clone()));
        tokio::spawn(zgres_config::check_on_hangup(path.clone(), |p| {
            Config::load(p).map(drop)
        }));
        match zgres_sync::run(config, libraries, shutdown).await {
            Ok(()) => {
                tracing::info!("zgres-sync stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "zgres-sync cannot run");
                eprintln!("zgres-sync: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
