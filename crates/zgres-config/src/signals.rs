//! Signals a daemon answers: SIGTERM/SIGINT stop it, SIGHUP reloads or checks its file.

use std::path::Path;

/// Cancels `shutdown` on the first SIGTERM or SIGINT. Returns at once (logging why) if the
/// handlers cannot be installed.
pub async fn cancel_on_signal(shutdown: tokio_util::sync::CancellationToken) {
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

/// Answers every SIGHUP (logrotate, `systemctl reload`, habit) by loading the config file at
/// `path` with `load`: a valid file is sent to `reloads` for the daemon to apply; an invalid
/// one is logged with every problem (the `--check-config` messages) and the running
/// configuration stays. SIGHUP's default action would kill the daemon, and a deadman takes its
/// PostgreSQL with it. Returns when the receiver is gone; cancel by dropping the task.
pub async fn reload_on_hangup<C, E: std::fmt::Display>(
    path: std::path::PathBuf,
    load: impl Fn(&Path) -> Result<C, E>,
    reloads: tokio::sync::mpsc::Sender<C>,
) {
    on_each_hangup(&path, load, |config| {
        tracing::info!(file = %path.display(), "SIGHUP: the configuration file is valid; applying it");
        let reloads = reloads.clone();
        async move { reloads.send(config).await.is_ok() }
    })
    .await;
}

/// For a daemon without live reload: answers every SIGHUP by checking the config file at
/// `path` with `check` and logging the outcome, instead of dying. The running configuration
/// stays in force either way. Runs until the task is dropped.
pub async fn check_on_hangup<E: std::fmt::Display>(
    path: std::path::PathBuf,
    check: impl Fn(&Path) -> Result<(), E>,
) {
    on_each_hangup(&path, check, |()| {
        tracing::warn!(
            file = %path.display(),
            "SIGHUP: the configuration file is valid; this program does not reload live, so the running configuration stays in force until the next restart"
        );
        std::future::ready(true)
    })
    .await;
}

/// At every SIGHUP, loads `path` with `load`: an invalid file is logged (the running
/// configuration stays), a valid one is handed to `valid`, which answers whether to go on.
async fn on_each_hangup<C, E: std::fmt::Display, F: std::future::Future<Output = bool>>(
    path: &Path,
    load: impl Fn(&Path) -> Result<C, E>,
    mut valid: impl FnMut(C) -> F,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler");
        return;
    };
    while hangup.recv().await.is_some() {
        match load(path) {
            Ok(config) => {
                if !valid(config).await {
                    return;
                }
            }
            Err(e) => tracing::error!(
                file = %path.display(),
                "SIGHUP: the configuration file is not valid; the running configuration stays in force: {e}"
            ),
        }
    }
}
