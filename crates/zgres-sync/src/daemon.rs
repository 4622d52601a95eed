//! The sync daemon's loop: follow ZooKeeper, rebuild the snapshot after a short debounce, and
//! hand it to every plugin, each in its own task so a slow or failing one holds up no other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zgres_zk::Backoff;

use crate::config::Config;
use crate::follower::{Change, Changes, Follower};
use crate::metrics::{self, Metrics};
use crate::pgbouncer::{self, PgbouncerPlugin};
use crate::snapshot::{Snapshot, SnapshotBuilder, SnapshotFileText};
use crate::template::TemplatePlugin;
use crate::{atomic_file, hooks};
use zgres_plugin::{LoadedPlugin, PluginError};
use zgres_systemd::Notifier;

/// How often the idle loop wakes to ping the systemd watchdog.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The metrics address cannot be listened on. Permanent.
    #[error("metrics: cannot listen on {addr}: {source}")]
    Metrics {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why an in-process plugin library is not used.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// Others may write it.
    #[error(transparent)]
    Untrusted(#[from] zgres_process::UntrustedFile),
    /// It cannot be loaded or speaks another ABI version.
    #[error(transparent)]
    Load(#[from] PluginError),
}

/// A snapshot as published to plugins.
#[derive(Debug)]
pub struct Published {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// When the change that led to it was seen (for propagation latency).
    pub seen_at: Instant,
}

/// A plugin the daemon drives.
#[derive(Debug)]
enum Plugin {
    Hooks {
        dir: std::path::PathBuf,
        snapshot_file: std::path::PathBuf,
        timeout: Duration,
    },
    Pgbouncer(PgbouncerPlugin),
    Template(TemplatePlugin),
    Library(Arc<LoadedPlugin>, Duration),
}

impl Plugin {
    fn name(&self) -> String {
        match self {
            Plugin::Hooks { dir, .. } => format!("hooks in {}", dir.display()),
            Plugin::Pgbouncer(_) => "pgbouncer".to_owned(),
            Plugin::Template(t) => format!("template {}", t.name()),
            Plugin::Library(p, _) => format!("plugin {}", p.name()),
        }
    }

    async fn apply(&mut self, published: &Published) -> Result<(), ApplyError> {
        match self {
            Plugin::Hooks {
                dir,
                snapshot_file,
                timeout,
            } => Ok(hooks::run_all(dir, snapshot_file, *timeout).await?),
            Plugin::Pgbouncer(plugin) => Ok(plugin.apply(&published.snapshot).await?),
            Plugin::Template(t) => Ok(t.apply(&published.snapshot).await?),
            Plugin::Library(plugin, timeout) => {
                let input = serde_json::to_vec(&published.snapshot).map_err(ApplyError::Encode)?;
                let plugin = plugin.clone();
                // A library call cannot be interrupted: it runs on a blocking thread, and one
                // that overruns is reported (its thread finishes whenever the plugin returns).
                let call = tokio::task::spawn_blocking(move || plugin.call(&input));
                match tokio::time::timeout(*timeout, call).await {
                    Err(_) => Err(ApplyError::TimedOut(*timeout)),
                    Ok(Err(e)) => Err(ApplyError::Crashed(e)),
                    Ok(Ok(Err(e))) => Err(e.into()),
                    Ok(Ok(Ok(answer))) => {
                        tracing::debug!(answer = %String::from_utf8_lossy(&answer), "plugin answered");
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Why a plugin did not apply a snapshot (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    /// Hooks failed.
    #[error(transparent)]
    Hooks(#[from] hooks::HooksError),
    /// The pgbouncer plugin failed.
    #[error(transparent)]
    Pgbouncer(#[from] pgbouncer::PgbouncerError),
    /// A template could not be rendered or its command failed.
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    /// A library plugin refused or failed.
    #[error(transparent)]
    Library(#[from] zgres_plugin::PluginError),
    /// A library plugin did not return in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The blocking thread of a library call failed.
    #[error("the plugin call did not finish: {0}")]
    Crashed(tokio::task::JoinError),
    /// The snapshot could not be encoded (a bug).
    #[error("cannot encode the snapshot: {0}")]
    Encode(serde_json::Error),
}

/// Applies each new snapshot with `plugin`; on failure retries the latest one with exponential
/// backoff up to `retry_max`. Returns when `shutdown` is cancelled.
async fn drive(
    mut plugin: Plugin,
    mut snapshots: watch::Receiver<Option<Arc<Published>>>,
    retry_max: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let name = plugin.name();
    let mut backoff = Duration::from_millis(100);
    loop {
        let current = snapshots.borrow_and_update().clone();
        let mut wait_for_change = true;
        if let Some(published) = current {
            match plugin.apply(&published).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    metrics.plugin_applied(&name, published.seen_at.elapsed());
                    tracing::info!(
                        plugin = %name,
                        latency_ms = published.seen_at.elapsed().as_millis() as u64,
                        "plugin applied the snapshot"
                    );
                }
                Err(e) => {
                    metrics.plugin_failed(&name);
                    tracing::warn!(plugin = %name, error = %e, retry_in = ?backoff, "plugin failed");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = snapshots.changed() => {}
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(retry_max);
                    wait_for_change = false;
                }
            }
        }
        if wait_for_change {
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// Loads the in-process plugins configured; done before [`run`] so that a bad library stops the
/// daemon at start-up with a clear error.
///
/// # Errors
/// The first library that others may write, cannot be loaded or speaks another ABI version.
pub fn load_libraries(config: &Config) -> Result<Vec<(Arc<LoadedPlugin>, Duration)>, LibraryError> {
    config
        .libraries
        .iter()
        .map(|(path, timeout)| {
            zgres_process::check_trusted(path)?;
            let plugin = LoadedPlugin::load(path)?;
            tracing::info!(plugin = plugin.name(), library = %path.display(), "loaded plugin");
            Ok((Arc::new(plugin), *timeout))
        })
        .collect()
}

/// Runs the sync daemon until `shutdown` is cancelled, with the in-process plugins from
/// [`load_libraries`]. ZooKeeper trouble is logged and retried (the last snapshot stays in force
/// meanwhile); plugins keep running independently. Under systemd it reports readiness after
/// the first complete snapshot and pings the watchdog from its loop.
///
/// # Errors
/// [`RunError`] when the metrics server cannot listen (before anything else runs).
pub async fn run(
    config: Config,
    libraries: Vec<(Arc<LoadedPlugin>, Duration)>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::default());
    let server = match config.sync.metrics_listen {
        Some(addr) => Some(
            metrics::serve(
                addr,
                config.sync.metrics_tls.as_ref(),
                metrics.clone(),
                shutdown.child_token(),
            )
            .await
            .map_err(|source| RunError::Metrics { addr, source })?,
        ),
        None => None,
    };
    let mut notifier = Notifier::from_env();
    let mut ready = false;
    let (publish, snapshots) = watch::channel::<Option<Arc<Published>>>(None);
    let mut plugins = Vec::new();
    if let Some(dir) = &config.sync.hooks_dir {
        plugins.push(Plugin::Hooks {
            dir: dir.clone(),
            snapshot_file: config.sync.snapshot_file.clone(),
            timeout: config.sync.hook_timeout,
        });
    }
    if let Some(p) = &config.pgbouncer {
        plugins.push(Plugin::Pgbouncer(PgbouncerPlugin::new(p.clone())));
    }
    for t in &config.templates {
        plugins.push(Plugin::Template(TemplatePlugin::new(t.clone())));
    }
    for (plugin, timeout) in libraries {
        plugins.push(Plugin::Library(plugin, timeout));
    }
    let tasks: Vec<_> = plugins
        .into_iter()
        .map(|p| {
            tokio::spawn(drive(
                p,
                snapshots.clone(),
                config.sync.retry_max,
                metrics.clone(),
                shutdown.clone(),
            ))
        })
        .collect();

    let mut follower: Option<Follower> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut builder =
        SnapshotBuilder::new(config.zookeeper.layout.clone(), config.sync.groups.clone());
    let mut published_once = false;
    let mut file_text = SnapshotFileText::default();
    let mut reported = zgres_schema::UnreadableFilter::default();
    let mut seen_at = Instant::now();
    'rounds: while !shutdown.is_cancelled() {
        notifier.keep_alive();
        let Some(f) = follower.as_mut() else {
            match Follower::connect(&config.zookeeper).await {
                Ok(f) => {
                    follower = Some(f);
                    metrics.connected(true);
                    backoff.reset();
                }
                Err(e) => {
                    metrics.connected(false);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "ZooKeeper unreachable; keeping the last snapshot");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
            continue;
        };
        match f.refresh().await {
            Ok((tree, changes)) => {
                // Only what changed is decoded, and only its groups assembled again.
                match changes {
                    Changes::All => builder.reset(tree),
                    Changes::Paths(paths) => {
                        for path in paths {
                            builder.update(&path, tree.get(&path));
                        }
                    }
                }
                let skipped = builder.skipped();
                // Each distinct bad content once, not on every refresh.
                reported.retain(|path| skipped.iter().any(|s| s.path == path));
                for s in &skipped {
                    let data = tree.get(&s.path).map_or(&[][..], |z| z.data.as_slice());
                    if reported.is_new_at(&s.path, &s.reason, data) {
                        metrics.unreadable_znode();
                        tracing::warn!(znode = %s.path, reason = %s.reason, "ignoring unusable znode");
                    }
                }
                if builder.assemble() || !published_once {
                    let outputs = Outputs {
                        config: &config,
                        publish: &publish,
                        metrics: &metrics,
                    };
                    publish_snapshot(&outputs, &mut file_text, builder.snapshot(), seen_at);
                    published_once = true;
                }
                if !ready {
                    ready = true;
                    notifier.ready("following ZooKeeper; first snapshot handed to plugins");
                }
            }
            Err(e) if e.session_ended() => {
                tracing::warn!("ZooKeeper session ended; opening a new one");
                metrics.connected(false);
                follower = None;
                continue;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot read ZooKeeper; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
        }
        // Wait for a change (waking to ping the watchdog), then collect more for the debounce
        // interval.
        let change = loop {
            tokio::select! {
                c = f.next_change() => break c,
                () = tokio::time::sleep(KEEP_ALIVE) => notifier.keep_alive(),
                () = shutdown.cancelled() => break 'rounds,
            }
        };
        seen_at = Instant::now();
        if change == Change::SessionEnded {
            follower = None;
            continue;
        }
        f.note(change);
        let deadline = tokio::time::Instant::now() + config.sync.debounce;
        loop {
            tokio::select! {
                c = f.next_change() => {
                    if c == Change::SessionEnded {
                        break;
                    }
                    f.note(c);
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
    }
    notifier.stopping();
    drop(publish);
    for task in tasks {
        let _ = task.await;
    }
    if let Some(server) = server {
        server.abort();
    }
    Ok(())
}

/// Where a new snapshot goes: the file, the plugins, the metrics.
struct Outputs<'a> {
    config: &'a Config,
    publish: &'a watch::Sender<Option<Arc<Published>>>,
    metrics: &'a Metrics,
}

fn publish_snapshot(
    outputs: &Outputs<'_>,
    file_text: &mut SnapshotFileText,
    snapshot: &Snapshot,
    seen_at: Instant,
) {
    let Outputs {
        config,
        publish,
        metrics,
    } = outputs;
    let groups = snapshot.groups.len();
    let with_primary = snapshot
        .groups
        .values()
        .filter(|g| g.primary.is_some())
        .count();
    // Only the groups that changed are encoded again.
    let mut encoded = 0;
    match file_text.update(snapshot) {
        Ok((json, n)) => {
            encoded = n;
            if let Err(e) = atomic_file::write(&config.sync.snapshot_file, &json) {
                tracing::error!(file = %config.sync.snapshot_file.display(), error = %e, "cannot write the snapshot file");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode the snapshot"),
    }
    tracing::info!(
        groups,
        with_primary,
        changed_groups = encoded,
        "new snapshot"
    );
    metrics.snapshot(groups, groups - with_primary);
    publish.send_replace(Some(Arc::new(Published {
        snapshot: snapshot.clone(),
        seen_at,
    })));
}
