//! The HTTP health API, compatible with Patroni's so existing HAProxy configurations work
//! unchanged (e.g. `option httpchk OPTIONS /master` against `check port 8008`).
//!
//! | endpoint | 200 when |
//! |---|---|
//! | `/primary`, `/master`, `/leader`, `/read-write` | this node holds the lock, PostgreSQL runs as primary, and — checked at request time against the fence clock — its session was confirmed recently enough that no fencing step is due |
//! | `/replica` (`?lag=` bytes or `16MB`-style) | a healthy standby, not tagged `noloadbalance`, within `lag` of the last primary position |
//! | `/read-only` | primary or replica as above |
//! | `/health` | PostgreSQL is running and answering |
//! | `/liveness` | the deadman's loop ran recently |
//! | `/readiness` | primary as above, or a healthy standby |
//! | `/sync` | replica as above, listed in `/sync/{GROUP}` (a synchronous standby) |
//! | `/async` | replica as above, not synchronous |
//!
//! Otherwise 503. `GET /` returns the node's status as JSON; `GET /metrics` OpenMetrics text.
//! GET, HEAD and OPTIONS are answered alike (HEAD and OPTIONS without a body). Like Patroni, the
//! endpoint is the last path segment, so `OPTIONS/master` (HAProxy's single-argument `httpchk`
//! form) means `/master`. The server is `zgres-http` (bounded request size, time and
//! connections); it runs in its own task and never touches PostgreSQL or ZooKeeper itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zgres_schema::documents::{Role, Tags, WalPositions};
use zgres_schema::{Lsn, NodeId, Timeline};

use zgres_http::{Limits, Method, Request, Response, TlsSlot};

use crate::fence::{monotonic_ns, FenceClock};

mod metrics;
mod patroni;

/// What the API knows about the node, refreshed by the daemon every round. Serialized flat
/// (the groups below are only for the code).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The node.
    pub node: NodeId,
    /// Its group.
    pub group: zgres_schema::GroupName,
    /// Role, lock and health.
    #[serde(flatten)]
    pub health: Health,
    /// Timeline, WAL positions and synchronous replication.
    #[serde(flatten)]
    pub replication: Replication,
    /// What this process counted.
    #[serde(flatten)]
    pub counters: Counters,
    /// When the daemon's loop last completed a round.
    #[serde(skip)]
    pub updated: Instant,
    /// Longest expected time between rounds (for `/liveness`).
    #[serde(skip)]
    pub loop_interval: Duration,
}

/// The node's role, lock and health.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// What PostgreSQL is doing.
    pub role: Role,
    /// This node's session holds the group lock (as of the last round).
    pub lock_held: bool,
    /// Computed at request time from the fence clock: the session was confirmed recently
    /// enough and PostgreSQL runs under an armed fence. `/primary` needs it, so a node whose
    /// loop is stuck or stopped stops answering 200 before its fence fires.
    pub writable: bool,
    /// Why the node is unhealthy; empty when healthy.
    pub problems: Vec<String>,
    /// What an operator should know that does not make the node unhealthy.
    pub warnings: Vec<String>,
    /// Operator tags.
    pub tags: Tags,
    /// The ZooKeeper session is established.
    pub zookeeper_connected: bool,
    /// The group is a standby cluster and this node holds its lock (running as a standby of
    /// the source, or about to): `/standby-leader` answers 200 when it also runs as one.
    pub standby_leader: bool,
    /// Settings waiting for a restart, as in the node's state (`postgresql.NAME` for
    /// PostgreSQL's parameters); Patroni's `pending_restart: true` accompanies a non-empty list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_restart_settings: Vec<String>,
}

/// Timeline, WAL and synchronous replication.
#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    /// Current timeline.
    pub timeline: Option<Timeline>,
    /// WAL positions.
    pub wal: WalPositions,
    /// The furthest position the primary published, as this node last saw it.
    pub primary_position: Option<Lsn>,
    /// This standby is listed in `/sync/{GROUP}` (every acknowledged commit is on it).
    pub synchronous: bool,
    /// As the primary in synchronous mode: no synchronous standby is in force.
    pub synchronous_degraded: bool,
    /// The database system identifier.
    pub system_id: Option<zgres_schema::SystemId>,
    /// PostgreSQL's `server_version_num` (Patroni's `server_version`), once connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<i32>,
    /// Bytes of WAL each local replication slot retains (from its `restart_lsn` to this
    /// node's position).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub slot_retained_bytes: BTreeMap<zgres_schema::SlotName, u64>,
}

/// What this process counted, and the fence's headroom.
#[derive(Debug, Clone, Serialize)]
pub struct Counters {
    /// Distinct unreadable znode contents this process met.
    pub unreadable_znodes_total: u64,
    /// Seconds until the fence fires unless the session is confirmed (when armed).
    pub fence_headroom_seconds: Option<f64>,
    /// How many times this process fenced PostgreSQL.
    pub fenced_total: u64,
    /// Promotions done by this process.
    pub promotions_total: u64,
}

impl Status {
    fn is_primary(&self) -> bool {
        self.health.lock_held && self.health.role == Role::Primary && self.health.writable
    }

    fn is_replica(&self, max_lag: Option<u64>) -> bool {
        if self.health.role != Role::Replica
            || !self.health.problems.is_empty()
            || self.health.tags.noloadbalance
        {
            return false;
        }
        // As Patroni: the lag is measured from what the replica has replayed (what a reader
        // sees), not what it received.
        match (max_lag, self.replication.primary_position) {
            (Some(max), Some(primary)) => self
                .replication
                .wal
                .replay
                .is_some_and(|m| primary.bytes_after(m) <= max),
            _ => true,
        }
    }

    fn is_alive(&self) -> bool {
        self.updated.elapsed() <= self.loop_interval * 3 + Duration::from_secs(10)
    }
}

/// Serves the API as `api` says (address, TLS) until `shutdown`, answering from the latest
/// `status`, on the shared HTTP layer's limits. The TLS files are read now; the returned
/// slot takes a rotated certificate later ([`tls_acceptor`]).
///
/// # Errors
/// When the address cannot be bound or the TLS files cannot be used (reported at start-up);
/// errors on single connections are only logged.
pub async fn serve(
    api: &crate::config::ApiConfig,
    status: watch::Receiver<Option<Status>>,
    fence: Arc<FenceClock>,
    shutdown: CancellationToken,
) -> std::io::Result<TlsSlot> {
    let handler = move |request: &Request| {
        let mut current = status.borrow().clone();
        if let Some(s) = current.as_mut() {
            s.health.writable = fence.may_serve_as_primary(monotonic_ns());
        }
        route(request, current.as_ref())
    };
    let tls = TlsSlot::new(
        tls_acceptor(api).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
    );
    let addr = api.listen;
    let https = api.tls.is_some();
    zgres_http::serve(
        addr,
        Arc::new(handler),
        Limits::default(),
        tls.clone(),
        shutdown,
    )
    .await?;
    tracing::info!(%addr, https, "health API listening");
    Ok(tls)
}

/// The TLS acceptor `api` asks for, its files read now (`None`: plain HTTP).
///
/// # Errors
/// [`zgres_http::TlsError`] naming the file that cannot be used.
pub fn tls_acceptor(
    api: &crate::config::ApiConfig,
) -> Result<Option<zgres_http::TlsAcceptor>, zgres_http::TlsError> {
    api.tls.as_ref().map(zgres_http::acceptor).transpose()
}

/// Parses `lag` as bytes, with optional kB/MB/GB (powers of 1024, as PostgreSQL and Patroni).
fn parse_lag(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn route(request: &Request, status: Option<&Status>) -> Response {
    if let Method::Other(_) = request.method {
        return Response::text(405, "method not allowed");
    }
    let endpoint = request.path().rsplit('/').next().unwrap_or_default();
    let lag = match request.query("lag").map(parse_lag) {
        Some(None) => {
            return Response::text(400, "lag: expected bytes, or a number with kB, MB or GB")
        }
        Some(lag) => lag,
        None => None,
    };
    let Some(s) = status else {
        return Response::text(503, "starting");
    };
    let ok = match endpoint {
        // The status on every role; `/` is a primary check, as in Patroni, because HAProxy's
        // bare `option httpchk` sends `OPTIONS /`: answering 200 there sent writes to replicas.
        "patroni" | "status" => return Response::new(200, JSON, status_json(s)),
        "metrics" => return Response::new(200, metrics::CONTENT_TYPE, metrics::render(s)),
        "" | "primary" | "master" | "leader" | "read-write" => s.is_primary(),
        "replica" => s.is_replica(lag),
        "async" => s.is_replica(lag) && !s.replication.synchronous,
        "sync" => s.is_replica(lag) && s.replication.synchronous,
        "read-only" => s.is_primary() || s.is_replica(lag),
        "health" => matches!(s.health.role, Role::Primary | Role::Replica),
        // Patroni's names for a standby cluster's lock holder.
        "standby-leader" | "standby_leader" => {
            s.health.standby_leader
                && s.health.role == Role::Replica
                && s.health.problems.is_empty()
        }
        "liveness" => s.is_alive(),
        "readiness" => s.is_primary() || s.is_replica(None),
        _ => return Response::text(404, "unknown endpoint"),
    };
    let code = if ok { 200 } else { 503 };
    Response::new(code, JSON, status_json(s))
}

const JSON: &str = "application/json";

fn status_json(s: &Status) -> String {
    let mut value = serde_json::to_value(s).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.extend(patroni::fields(s));
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(role: Role, lock_held: bool) -> Status {
        Status {
            node: "10.0.0.1:5432".parse().unwrap(),
            group: zgres_schema::GroupName::new("main").unwrap(),
            health: Health {
                role,
                lock_held,
                writable: true,
                problems: vec![],
                warnings: vec![],
                tags: Tags::default(),
                zookeeper_connected: true,
                standby_leader: false,
                pending_restart_settings: Vec::new(),
            },
            replication: Replication {
                timeline: Some(Timeline::FIRST),
                wal: WalPositions {
                    write: None,
                    receive: Some(Lsn(100)),
                    replay: Some(Lsn(100)),
                    oldest_kept: None,
                },
                primary_position: Some(Lsn(100 + (32 << 20))),
                synchronous: false,
                synchronous_degraded: false,
                system_id: Some(zgres_schema::SystemId(7_000_000_000_000_000_001)),
                server_version: Some(150_004),
                slot_retained_bytes: [(zgres_schema::SlotName::new("app").unwrap(), 4096)]
                    .into_iter()
                    .collect(),
            },
            counters: Counters {
                unreadable_znodes_total: 0,
                fence_headroom_seconds: None,
                fenced_total: 0,
                promotions_total: 0,
            },
            updated: Instant::now(),
            loop_interval: Duration::from_secs(1),
        }
    }

    /// What the server answers to the raw request `head`.
    fn answer(head: &[u8], s: &Status) -> Vec<u8> {
        let s = s.clone();
        let handler = move |r: &Request| route(r, Some(&s));
        zgres_http::respond_to(head, &handler)
    }

    fn code(request: &str, s: &Status) -> u16 {
        let r = answer(request.as_bytes(), s);
        String::from_utf8_lossy(&r)[9..12].parse().unwrap()
    }

    #[test]
    fn the_standby_leader_endpoint_needs_a_standby_cluster_lock_holder_running_as_a_standby() {
        let mut leader = status(Role::Replica, true);
        leader.health.standby_leader = true;
        for path in ["/standby-leader", "/standby_leader"] {
            assert_eq!(code(&format!("GET {path} HTTP/1.1\r\n\r\n"), &leader), 200);
        }
        assert_eq!(code("GET /primary HTTP/1.1\r\n\r\n", &leader), 503);
        // A lock holder mid-promotion in a normal group, a promoted one, a replica: 503.
        let promoting = status(Role::Replica, true);
        let mut promoted = status(Role::Primary, true);
        promoted.health.standby_leader = true;
        for s in [&promoting, &promoted, &status(Role::Replica, false)] {
            assert_eq!(code("GET /standby-leader HTTP/1.1\r\n\r\n", s), 503);
        }
    }

    #[test]
    fn primary_endpoints_need_the_lock() {
        let primary = status(Role::Primary, true);
        let orphan = status(Role::Primary, false);
        for path in [
            "/",
            "/primary",
            "/master",
            "/leader",
            "/read-write",
            "OPTIONS/master",
        ] {
            assert_eq!(
                code(&format!("OPTIONS {path} HTTP/1.0\r\n\r\n"), &primary),
                200,
                "{path}"
            );
            assert_eq!(
                code(&format!("GET {path} HTTP/1.1\r\n\r\n"), &orphan),
                503,
                "{path}"
            );
        }
        assert_eq!(code("OPTIONS /replica HTTP/1.0\r\n\r\n", &primary), 503);
        let replica = status(Role::Replica, false);
        for request in ["GET / HTTP/1.1\r\n\r\n", "OPTIONS / HTTP/1.0\r\n\r\n"] {
            assert_eq!(
                code(request, &replica),
                503,
                "{request}: / is a primary check"
            );
        }
        assert_eq!(code("GET /read-only HTTP/1.0\r\n\r\n", &primary), 200);
    }

    #[test]
    fn replica_endpoints_honour_health_tags_and_lag() {
        let replica = status(Role::Replica, false);
        assert_eq!(code("OPTIONS /replica HTTP/1.0\r\n\r\n", &replica), 200);
        assert_eq!(
            code("GET /replica?lag=64MB HTTP/1.0\r\n\r\n", &replica),
            200
        );
        assert_eq!(
            code("GET /replica?lag=16MB HTTP/1.0\r\n\r\n", &replica),
            503
        );
        assert_eq!(
            code("GET /replica?lag=nonsense HTTP/1.0\r\n\r\n", &replica),
            400
        );
        assert_eq!(code("GET /master HTTP/1.0\r\n\r\n", &replica), 503);
        let mut hidden = replica.clone();
        hidden.health.tags.noloadbalance = true;
        assert_eq!(code("GET /replica HTTP/1.0\r\n\r\n", &hidden), 503);
        let mut sick = replica.clone();
        sick.health.problems.push("postgres does not answer".into());
        assert_eq!(code("GET /replica HTTP/1.0\r\n\r\n", &sick), 503);
        assert_eq!(code("GET /sync HTTP/1.0\r\n\r\n", &replica), 503);
        assert_eq!(code("GET /async HTTP/1.0\r\n\r\n", &replica), 200);
        let mut synchronous = replica.clone();
        synchronous.replication.synchronous = true;
        assert_eq!(code("GET /sync HTTP/1.0\r\n\r\n", &synchronous), 200);
        assert_eq!(code("GET /async HTTP/1.0\r\n\r\n", &synchronous), 503);
    }

    #[test]
    fn status_carries_patronis_field_names() {
        let s = status(Role::Replica, false);
        let r = String::from_utf8(answer(b"GET /patroni HTTP/1.1\r\n\r\n", &s)).unwrap();
        let body: serde_json::Value =
            serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["state"], "running");
        assert_eq!(body["role"], "replica");
        assert_eq!(body["xlog"]["received_location"], 100);
        assert_eq!(body["xlog"]["replayed_location"], 100);
        assert_eq!(body["database_system_identifier"], "7000000000000000001");
        assert_eq!(body["server_version"], 150_004);
        assert_eq!(body["patroni"]["scope"], "main");
        assert_eq!(body["patroni"]["name"], "10.0.0.1:5432");
    }

    #[test]
    fn replica_lag_is_measured_from_the_replayed_position() {
        let mut s = status(Role::Replica, false);
        // Received everything, replayed 32 MB behind.
        s.replication.wal.receive = s.replication.primary_position;
        assert_eq!(code("GET /replica?lag=16MB HTTP/1.0\r\n\r\n", &s), 503);
        assert_eq!(code("GET /replica?lag=64MB HTTP/1.0\r\n\r\n", &s), 200);
    }

    #[test]
    fn status_metrics_and_bad_requests() {
        let s = status(Role::Replica, false);
        for path in ["/", "/patroni", "/status"] {
            let r = String::from_utf8(answer(
                format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes(),
                &s,
            ))
            .unwrap();
            assert!(r.contains("\"role\":\"replica\""), "{path}: {r}");
        }
        assert_eq!(code("GET /patroni HTTP/1.1\r\n\r\n", &s), 200);
        let m = String::from_utf8(answer(b"GET /metrics HTTP/1.1\r\n\r\n", &s)).unwrap();
        assert!(
            m.contains("zgres_replica{group=\"main\",node=\"10.0.0.1:5432\"} 1"),
            "{m}"
        );
        assert!(m.contains("zgres_replication_lag_bytes"), "{m}");
        assert!(
            m.contains(
                "zgres_replication_slot_retained_bytes{group=\"main\",node=\"10.0.0.1:5432\",slot=\"app\"} 4096"
            ),
            "{m}"
        );
        let head = String::from_utf8(answer(b"HEAD /replica HTTP/1.1\r\n\r\n", &s)).unwrap();
        assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
        assert_eq!(code("DELETE /master HTTP/1.1\r\n\r\n", &s), 405);
        assert_eq!(code("GET /bogus HTTP/1.1\r\n\r\n", &s), 404);
        assert_eq!(code("garbage\r\n\r\n", &s), 400);
        assert_eq!(parse_lag("1kB"), Some(1024));
        assert_eq!(parse_lag("7"), Some(7));
        assert_eq!(parse_lag("99999999999999999999GB"), None);
    }

    #[test]
    fn every_metric_family_has_help_type_and_the_group_and_node() {
        let mut s = status(Role::Replica, false);
        s.counters.fence_headroom_seconds = Some(1.5);
        s.counters.fenced_total = 2;
        let m = String::from_utf8(answer(b"GET /metrics HTTP/1.1\r\n\r\n", &s)).unwrap();
        let body = &m[m.find("\r\n\r\n").unwrap() + 4..];
        assert!(body.ends_with("# EOF\n"), "{body}");
        let mut families = 0;
        for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(body.contains(&format!("# HELP {name} ")), "{name}: no HELP");
            families += 1;
        }
        assert!(families >= 15, "{families} families\n{body}");
        for sample in body.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                sample.contains("group=\"main\"") && sample.contains("node=\"10.0.0.1:5432\""),
                "{sample}"
            );
        }
        for line in [
            "zgres_fenced_total{group=\"main\",node=\"10.0.0.1:5432\"} 2",
            "zgres_fence_headroom_seconds{group=\"main\",node=\"10.0.0.1:5432\"} 1.5",
            "# UNIT zgres_replication_lag_bytes bytes",
        ] {
            assert!(body.contains(line), "{line:?} missing from\n{body}");
        }
    }
}
