//! The sync daemon's Prometheus metrics: plugin runs, failures and propagation latency, the
//! snapshot and the ZooKeeper session, served as text on `GET /metrics`.
//!
//! The server has its own task and only reads counters the daemon updates; it never touches
//! ZooKeeper or plugins, so a slow scraper cannot slow the daemon.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A per-plugin series: name, type, help, and its value for one plugin.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PluginStats) -> Option<String>,
);

#[derive(Debug, Default, Clone, Copy)]
struct PluginStats {
    runs: u64,
    failures: u64,
    last_latency: Option<Duration>,
    failing: bool,
}

/// Counters shared between the daemon (writer) and the metrics server (reader).
#[derive(Debug, Default)]
pub struct Metrics {
    plugins: Mutex<BTreeMap<String, PluginStats>>,
    snapshots: AtomicU64,
    groups: AtomicU64,
    groups_without_primary: AtomicU64,
    unreadable_znodes: AtomicU64,
    connected: AtomicBool,
}

impl Metrics {
    fn with_plugin(&self, name: &str, update: impl FnOnce(&mut PluginStats)) {
        if let Ok(mut plugins) = self.plugins.lock() {
            update(plugins.entry(name.to_owned()).or_default());
        }
    }

    /// `name` applied a snapshot `latency` after the change that led to it was seen.
    pub fn plugin_applied(&self, name: &str, latency: Duration) {
        self.with_plugin(name, |p| {
            p.runs += 1;
            p.last_latency = Some(latency);
            p.failing = false;
        });
    }

    /// `name` failed to apply a snapshot.
    pub fn plugin_failed(&self, name: &str) {
        self.with_plugin(name, |p| {
            p.runs += 1;
            p.failures += 1;
            p.failing = true;
        });
    }

    /// A new snapshot with `groups` groups, `without_primary` of them without a primary.
    pub fn snapshot(&self, groups: usize, without_primary: usize) {
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        self.groups.store(groups as u64, Ordering::Relaxed);
        self.groups_without_primary
            .store(without_primary as u64, Ordering::Relaxed);
    }

    /// A distinct unusable znode content was met (and logged).
    pub fn unreadable_znode(&self) {
        self.unreadable_znodes.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the ZooKeeper session is up.
    pub fn connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "zgres_sync_zookeeper_connected",
            "1 while the ZooKeeper session is up",
            u64::from(self.connected.load(Ordering::Relaxed)),
        );
        gauge(
            &mut out,
            "zgres_sync_groups",
            "groups in the current snapshot",
            self.groups.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "zgres_sync_groups_without_primary",
            "groups in the current snapshot with no primary",
            self.groups_without_primary.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP zgres_sync_snapshots_total snapshots handed to plugins\n\
             # TYPE zgres_sync_snapshots_total counter\nzgres_sync_snapshots_total {}",
            self.snapshots.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP zgres_sync_unreadable_znodes_total distinct unusable znode contents met (each logged once)\n\
             # TYPE zgres_sync_unreadable_znodes_total counter\nzgres_sync_unreadable_znodes_total {}",
            self.unreadable_znodes.load(Ordering::Relaxed)
        );
        let plugins = self.plugins.lock().map(|p| p.clone()).unwrap_or_default();
        let series: [Series; 4] = [
            (
                "zgres_sync_plugin_runs_total",
                "counter",
                "times the plugin was given a snapshot",
                |p| Some(p.runs.to_string()),
            ),
            (
                "zgres_sync_plugin_failures_total",
                "counter",
                "times the plugin failed",
                |p| Some(p.failures.to_string()),
            ),
            (
                "zgres_sync_plugin_failing",
                "gauge",
                "1 while the plugin's last run failed (it is being retried)",
                |p| Some(u8::from(p.failing).to_string()),
            ),
            (
                "zgres_sync_plugin_propagation_seconds",
                "gauge",
                "seconds from the ZooKeeper change to the plugin's last successful run",
                |p| p.last_latency.map(|l| format!("{:.3}", l.as_secs_f64())),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (plugin, stats) in &plugins {
                if let Some(value) = value(stats) {
                    let label = plugin.replace('\\', "\\\\").replace('"', "\\\"");
                    let _ = writeln!(out, "{name}{{plugin=\"{label}\"}} {value}");
                }
            }
        }
        out
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown`.
///
/// # Errors
/// When the address cannot be bound (reported at start-up).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    Ok(tokio::spawn(async move {
        loop {
            let (mut stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
                () = shutdown.cancelled() => return,
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                // Only the request line matters; read what fits in one buffer, briefly.
                let mut buf = [0u8; 2048];
                let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf));
                let Ok(Ok(len)) = read.await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..len]);
                let mut words = head.split_whitespace();
                let (code, body) = match (words.next(), words.next()) {
                    (Some("GET"), Some(path)) if path.split('?').next() == Some("/metrics") => {
                        ("200 OK", metrics.render())
                    }
                    _ => ("404 Not Found", "GET /metrics\n".to_owned()),
                };
                let response = format!(
                    "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_plugin_series_with_labels() {
        let m = Metrics::default();
        m.connected(true);
        m.snapshot(3, 1);
        m.plugin_applied("pgbouncer", Duration::from_millis(31));
        m.plugin_failed("hooks in /etc/zgres/hooks");
        let text = m.render();
        for line in [
            "zgres_sync_zookeeper_connected 1",
            "zgres_sync_groups 3",
            "zgres_sync_groups_without_primary 1",
            "zgres_sync_snapshots_total 1",
            "zgres_sync_plugin_runs_total{plugin=\"pgbouncer\"} 1",
            "zgres_sync_plugin_failures_total{plugin=\"hooks in /etc/zgres/hooks\"} 1",
            "zgres_sync_plugin_failing{plugin=\"hooks in /etc/zgres/hooks\"} 1",
            "zgres_sync_plugin_propagation_seconds{plugin=\"pgbouncer\"} 0.031",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }
}
