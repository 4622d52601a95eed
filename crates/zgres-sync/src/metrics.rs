//! The sync daemon's metrics: plugin runs, failures and propagation latency, the snapshot and
//! the ZooKeeper session, kept with prometheus-client and served as OpenMetrics text on
//! `GET /metrics`.
//!
//! The server has its own task and only reads counters the daemon updates; it never touches
//! ZooKeeper or plugins, so a slow scraper cannot slow the daemon.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;
use zgres_http::{Limits, Request, Response};

/// The `Content-Type` of the exposition.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label naming a plugin.
type PluginLabel = [(&'static str, String); 1];

/// Metrics shared between the daemon (writer) and the metrics server (reader).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    snapshots: Counter,
    groups: Gauge,
    groups_without_primary: Gauge,
    unreadable_znodes: Counter,
    connected: Gauge,
    plugin: PluginFamilies,
}

/// The per-plugin series.
#[derive(Debug, Default)]
struct PluginFamilies {
    runs: Family<PluginLabel, Counter>,
    failures: Family<PluginLabel, Counter>,
    failing: Family<PluginLabel, Gauge>,
    propagation: Family<PluginLabel, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("zgres_sync");
        let metrics = Metrics {
            snapshots: Counter::default(),
            groups: Gauge::default(),
            groups_without_primary: Gauge::default(),
            unreadable_znodes: Counter::default(),
            connected: Gauge::default(),
            plugin: PluginFamilies::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "zookeeper_connected",
            "1 while the ZooKeeper session is up",
            metrics.connected.clone(),
        );
        r.register(
            "groups",
            "Groups in the current snapshot",
            metrics.groups.clone(),
        );
        r.register(
            "groups_without_primary",
            "Groups in the current snapshot with no primary",
            metrics.groups_without_primary.clone(),
        );
        r.register(
            "snapshots",
            "Snapshots handed to plugins",
            metrics.snapshots.clone(),
        );
        r.register(
            "unreadable_znodes",
            "Distinct unusable znode contents met (each logged once)",
            metrics.unreadable_znodes.clone(),
        );
        r.register(
            "plugin_runs",
            "Times the plugin was given a snapshot",
            metrics.plugin.runs.clone(),
        );
        r.register(
            "plugin_failures",
            "Times the plugin failed",
            metrics.plugin.failures.clone(),
        );
        r.register(
            "plugin_failing",
            "1 while the plugin's last run failed (it is being retried)",
            metrics.plugin.failing.clone(),
        );
        r.register_with_unit(
            "plugin_propagation",
            "Time from the ZooKeeper change to the plugin's last successful run",
            Unit::Seconds,
            metrics.plugin.propagation.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

fn plugin(name: &str) -> PluginLabel {
    [("plugin", name.to_owned())]
}

impl Metrics {
    /// `name` applied a snapshot `latency` after the change that led to it was seen.
    pub fn plugin_applied(&self, name: &str, latency: Duration) {
        let label = plugin(name);
        self.plugin.runs.get_or_create(&label).inc();
        self.plugin.failing.get_or_create(&label).set(0);
        self.plugin
            .propagation
            .get_or_create(&label)
            .set(latency.as_secs_f64());
    }

    /// `name` failed to apply a snapshot.
    pub fn plugin_failed(&self, name: &str) {
        let label = plugin(name);
        self.plugin.runs.get_or_create(&label).inc();
        self.plugin.failures.get_or_create(&label).inc();
        self.plugin.failing.get_or_create(&label).set(1);
    }

    /// A new snapshot with `groups` groups, `without_primary` of them without a primary.
    pub fn snapshot(&self, groups: usize, without_primary: usize) {
        self.snapshots.inc();
        self.groups.set(i64::try_from(groups).unwrap_or(i64::MAX));
        self.groups_without_primary
            .set(i64::try_from(without_primary).unwrap_or(i64::MAX));
    }

    /// A distinct unusable znode content was met (and logged).
    pub fn unreadable_znode(&self) {
        self.unreadable_znodes.inc();
    }

    /// Whether the ZooKeeper session is up.
    pub fn connected(&self, up: bool) {
        self.connected.set(i64::from(up));
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown`, on the shared HTTP layer's limits; with
/// `tls`, HTTPS only.
///
/// # Errors
/// When the address cannot be bound or the TLS files cannot be used (reported at start-up).
pub async fn serve(
    addr: SocketAddr,
    tls: Option<&zgres_http::TlsFiles>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let handler = move |request: &Request| match request.path() {
        "/metrics" => Response::new(200, CONTENT_TYPE, metrics.render()),
        _ => Response::text(404, "GET /metrics\n"),
    };
    let acceptor = tls
        .map(zgres_http::acceptor)
        .transpose()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let https = acceptor.is_some();
    let task = zgres_http::serve(
        addr,
        Arc::new(handler),
        Limits::default(),
        zgres_http::TlsSlot::new(acceptor),
        shutdown,
    )
    .await?;
    tracing::info!(%addr, https, "metrics listening");
    Ok(task)
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
