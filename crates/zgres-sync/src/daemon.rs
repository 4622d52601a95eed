//! The sync daemon's loop: follow ZooKeeper, rebuild the snapshot after a short debounce, and
//! hand it to every plugin, each in its own task so a slow or failing one holds up no other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PgbouncerConfig};
use crate::follower::{Change, FollowError, Follower};
use crate::snapshot::{self, Snapshot};
use crate::template::TemplatePlugin;
use crate::{atomic_file, hooks, pgbouncer};

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
    Pgbouncer(PgbouncerConfig),
    Template(TemplatePlugin),
}

impl Plugin {
    fn name(&self) -> String {
        match self {
            Plugin::Hooks { dir, .. } => format!("hooks in {}", dir.display()),
            Plugin::Pgbouncer(_) => "pgbouncer".to_owned(),
            Plugin::Template(t) => format!("template {}", t.name()),
        }
    }

    async fn apply(&mut self, published: &Published) -> Result<(), String> {
        match self {
            Plugin::Hooks {
                dir,
                snapshot_file,
                timeout,
            } => {
                let failures = hooks::run_all(dir, snapshot_file, *timeout).await;
                if failures.is_empty() {
                    Ok(())
                } else {
                    Err(failures
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "))
                }
            }
            Plugin::Pgbouncer(config) => pgbouncer::apply(config, &published.snapshot)
                .await
                .map_err(|e| e.to_string()),
            Plugin::Template(t) => t
                .apply(&published.snapshot)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// Applies each new snapshot with `plugin`; on failure retries the latest one with exponential
/// backoff up to `retry_max`. Returns when `shutdown` is cancelled.
async fn drive(
    mut plugin: Plugin,
    mut snapshots: watch::Receiver<Option<Arc<Published>>>,
    retry_max: Duration,
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
                    tracing::info!(
                        plugin = %name,
                        latency_ms = published.seen_at.elapsed().as_millis() as u64,
                        "plugin applied the snapshot"
                    );
                }
                Err(e) => {
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

/// Runs the sync daemon until `shutdown` is cancelled. ZooKeeper trouble is logged and retried
/// (the last snapshot stays in force meanwhile); plugins keep running independently.
pub async fn run(config: Config, shutdown: CancellationToken) {
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
        plugins.push(Plugin::Pgbouncer(p.clone()));
    }
    for t in &config.templates {
        plugins.push(Plugin::Template(TemplatePlugin::new(t.clone())));
    }
    let tasks: Vec<_> = plugins
        .into_iter()
        .map(|p| {
            tokio::spawn(drive(
                p,
                snapshots.clone(),
                config.sync.retry_max,
                shutdown.clone(),
            ))
        })
        .collect();

    let mut follower: Option<Follower> = None;
    let mut backoff = Duration::from_millis(200);
    let mut last: Option<Snapshot> = None;
    let mut seen_at = Instant::now();
    while !shutdown.is_cancelled() {
        let Some(f) = follower.as_mut() else {
            match Follower::connect(&config.zookeeper).await {
                Ok(f) => {
                    follower = Some(f);
                    backoff = Duration::from_millis(200);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "ZooKeeper unreachable; keeping the last snapshot");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            continue;
        };
        match f.refresh().await {
            Ok(tree) => {
                let (snapshot, skipped) =
                    snapshot::build(&config.zookeeper.layout, tree, &config.sync.groups);
                for s in &skipped {
                    tracing::warn!(znode = %s.path, reason = %s.reason, "ignoring unusable znode");
                }
                if last.as_ref() != Some(&snapshot) {
                    publish_snapshot(&config, &publish, &snapshot, seen_at);
                    last = Some(snapshot);
                }
            }
            Err(FollowError::SessionEnded) => {
                tracing::warn!("ZooKeeper session ended; opening a new one");
                follower = None;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read ZooKeeper; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
        }
        // Wait for a change, then collect more for the debounce interval.
        let change = tokio::select! {
            c = f.next_change() => c,
            () = shutdown.cancelled() => break,
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
    drop(publish);
    for task in tasks {
        let _ = task.await;
    }
}

fn publish_snapshot(
    config: &Config,
    publish: &watch::Sender<Option<Arc<Published>>>,
    snapshot: &Snapshot,
    seen_at: Instant,
) {
    let groups = snapshot.groups.len();
    let with_primary = snapshot
        .groups
        .values()
        .filter(|g| g.primary.is_some())
        .count();
    match serde_json::to_vec_pretty(snapshot) {
        Ok(json) => {
            if let Err(e) = atomic_file::write(&config.sync.snapshot_file, &json) {
                tracing::error!(file = %config.sync.snapshot_file.display(), error = %e, "cannot write the snapshot file");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode the snapshot"),
    }
    tracing::info!(groups, with_primary, "new snapshot");
    publish.send_replace(Some(Arc::new(Published {
        snapshot: snapshot.clone(),
        seen_at,
    })));
}
