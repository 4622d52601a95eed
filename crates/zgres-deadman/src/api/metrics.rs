//! `GET /metrics`: the node's status as OpenMetrics text, through prometheus-client.
//!
//! Every series carries the group and node labels, so alerts can aggregate per group (e.g.
//! exactly one primary). Values are taken from the status at scrape time.

use std::borrow::Cow;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::Status;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn flag(registry: &mut Registry, name: &str, help: &str, on: bool) {
    let gauge = Gauge::<i64>::default();
    gauge.set(i64::from(on));
    registry.register(name, help, gauge);
}

fn count(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let counter = Counter::<u64>::default();
    counter.inc_by(value);
    registry.register(name, help, counter);
}

fn bytes(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The exposition for `s`.
pub fn render(s: &Status) -> String {
    let labels = [
        (Cow::Borrowed("group"), Cow::Owned(s.group.to_string())),
        (Cow::Borrowed("node"), Cow::Owned(s.node.to_string())),
    ];
    let mut registry = Registry::with_prefix_and_labels("zgres", labels.into_iter());
    let r = &mut registry;
    flag(
        r,
        "primary",
        "1 when this node holds the lock and runs as primary",
        s.is_primary(),
    );
    flag(
        r,
        "replica",
        "1 when this node is a healthy standby",
        s.is_replica(None),
    );
    flag(
        r,
        "lock_held",
        "1 when this node's session holds the group lock",
        s.health.lock_held,
    );
    flag(
        r,
        "healthy",
        "1 when the node reports no problems",
        s.health.problems.is_empty(),
    );
    flag(
        r,
        "zookeeper_connected",
        "1 when the ZooKeeper session is established",
        s.health.zookeeper_connected,
    );
    flag(
        r,
        "synchronous",
        "1 when this standby is listed in /sync (a synchronous standby)",
        s.replication.synchronous,
    );
    flag(
        r,
        "synchronous_degraded",
        "1 when this primary runs in synchronous mode without a synchronous standby",
        s.replication.synchronous_degraded,
    );
    let timeline = Gauge::<i64>::default();
    timeline.set(s.replication.timeline.map_or(0, |t| i64::from(t.get())));
    r.register("timeline", "PostgreSQL timeline", timeline);
    let warnings = Gauge::<i64>::default();
    warnings.set(i64::try_from(s.health.warnings.len()).unwrap_or(i64::MAX));
    r.register(
        "warnings",
        "Warnings in the status, e.g. an unreadable /config (see GET /)",
        warnings,
    );

    let wal = Family::<[(&'static str, &'static str); 1], Gauge<i64>>::default();
    for (kind, lsn) in [
        ("write", s.replication.wal.write),
        ("receive", s.replication.wal.receive),
        ("replay", s.replication.wal.replay),
    ] {
        if let Some(lsn) = lsn {
            wal.get_or_create(&[("kind", kind)]).set(bytes(lsn.0));
        }
    }
    r.register_with_unit(
        "wal_lsn",
        "WAL positions of this node (write on a primary; receive and replay on a standby)",
        Unit::Bytes,
        wal,
    );
    if let Some(primary) = s.replication.primary_position {
        if let Some(mine) = [s.replication.wal.receive, s.replication.wal.replay]
            .into_iter()
            .flatten()
            .max()
        {
            let lag = Gauge::<i64>::default();
            lag.set(bytes(primary.bytes_after(mine)));
            r.register_with_unit(
                "replication_lag",
                "Bytes of WAL this standby lacks behind the primary's last published position",
                Unit::Bytes,
                lag,
            );
        }
    }
    if !s.replication.slot_retained_bytes.is_empty() {
        let retained = Family::<[(&'static str, String); 1], Gauge<i64>>::default();
        for (slot, held) in &s.replication.slot_retained_bytes {
            // Slot names are [a-z0-9_]: nothing to escape in the label.
            retained
                .get_or_create(&[("slot", slot.to_string())])
                .set(bytes(*held));
        }
        r.register_with_unit(
            "replication_slot_retained",
            "WAL a replication slot keeps on this node, from its restart_lsn to this node's position",
            Unit::Bytes,
            retained,
        );
    }
    if let Some(headroom) = s.counters.fence_headroom_seconds {
        let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        gauge.set(headroom);
        r.register_with_unit(
            "fence_headroom",
            "Time until the fence fires unless the session is confirmed",
            Unit::Seconds,
            gauge,
        );
    }
    count(
        r,
        "fenced",
        "Times this process fenced PostgreSQL",
        s.counters.fenced_total,
    );
    count(
        r,
        "promotions",
        "Promotions done by this process",
        s.counters.promotions_total,
    );
    count(
        r,
        "unreadable_znodes",
        "Distinct unreadable znode contents met (each logged once)",
        s.counters.unreadable_znodes_total,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}
