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
//! Otherwise 503. `GET /` returns the node's status as JSON; `GET /metrics` Prometheus text.
//! GET, HEAD and OPTIONS are answered alike (HEAD and OPTIONS without a body). Like Patroni, the
//! endpoint is the last path segment, so `OPTIONS/master` (HAProxy's single-argument `httpchk`
//! form) means `/master`. Requests are read with a size limit and a timeout; the server runs in
//! its own task and never touches PostgreSQL or ZooKeeper itself.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zgres_schema::documents::{Role, Tags, WalPositions};
use zgres_schema::{Lsn, NodeId, Timeline};

use crate::fence::{monotonic_ns, FenceClock};

const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the API knows about the node, refreshed by the daemon every round.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The node.
    pub node: NodeId,
    /// Its group.
    pub group: zgres_schema::GroupName,
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
    /// Distinct unreadable znode contents this process met.
    pub unreadable_znodes_total: u64,
    /// Current timeline.
    pub timeline: Option<Timeline>,
    /// WAL positions.
    pub wal: WalPositions,
    /// The furthest position the primary published, as this node last saw it.
    pub primary_position: Option<Lsn>,
    /// Operator tags.
    pub tags: Tags,
    /// The ZooKeeper session is established.
    pub zookeeper_connected: bool,
    /// Seconds until the fence fires unless the session is confirmed (when armed).
    pub fence_headroom_seconds: Option<f64>,
    /// How many times this process fenced PostgreSQL.
    pub fenced_total: u64,
    /// Promotions done by this process.
    pub promotions_total: u64,
    /// This standby is listed in `/sync/{GROUP}` (every acknowledged commit is on it).
    pub synchronous: bool,
    /// As the primary in synchronous mode: no synchronous standby is in force.
    pub synchronous_degraded: bool,
    /// When the daemon's loop last completed a round.
    #[serde(skip)]
    pub updated: Instant,
    /// Longest expected time between rounds (for `/liveness`).
    #[serde(skip)]
    pub loop_interval: Duration,
}

impl Status {
    fn is_primary(&self) -> bool {
        self.lock_held && self.role == Role::Primary && self.writable
    }

    fn is_replica(&self, max_lag: Option<u64>) -> bool {
        if self.role != Role::Replica || !self.problems.is_empty() || self.tags.noloadbalance {
            return false;
        }
        match (max_lag, self.primary_position) {
            (Some(max), Some(primary)) => {
                let mine = [self.wal.receive, self.wal.replay]
                    .into_iter()
                    .flatten()
                    .max();
                mine.is_some_and(|m| primary.bytes_after(m) <= max)
            }
            _ => true,
        }
    }

    fn is_alive(&self) -> bool {
        self.updated.elapsed() <= self.loop_interval * 3 + Duration::from_secs(10)
    }
}

/// Serves the API on `addr` until `shutdown`, answering from the latest `status`.
///
/// # Errors
/// When the address cannot be bound (reported at start-up); errors on single connections are
/// only logged.
pub async fn serve(
    addr: SocketAddr,
    status: watch::Receiver<Option<Status>>,
    fence: Arc<FenceClock>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "health API listening");
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = shutdown.cancelled() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let status = status.clone();
            let fence = fence.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, status, &fence).await {
                    tracing::debug!(error = %e, "health API connection failed");
                }
            });
        }
    }))
}

async fn answer(
    mut stream: TcpStream,
    status: watch::Receiver<Option<Status>>,
    fence: &FenceClock,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_REQUEST {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    let response = match read {
        Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) if buf.len() > MAX_REQUEST => Response::plain(431, "request too large"),
        Ok(Ok(())) => {
            let mut current = status.borrow().clone();
            if let Some(s) = current.as_mut() {
                s.writable = fence.may_serve_as_primary(monotonic_ns());
            }
            route(&buf, current.as_ref())
        }
    };
    stream.write_all(&response.bytes).await?;
    stream.shutdown().await
}

struct Response {
    bytes: Vec<u8>,
}

impl Response {
    fn new(code: u16, content_type: &str, body: &str, with_body: bool) -> Self {
        let reason = match code {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let mut text = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            if with_body { body.len() } else { 0 }
        );
        if with_body {
            text.push_str(body);
        }
        Response {
            bytes: text.into_bytes(),
        }
    }

    fn plain(code: u16, body: &str) -> Self {
        Response::new(code, "text/plain", body, true)
    }
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

fn route(request: &[u8], status: Option<&Status>) -> Response {
    let text = String::from_utf8_lossy(request);
    let mut words = text.lines().next().unwrap_or_default().split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Response::plain(400, "bad request");
    };
    let with_body = match method {
        "GET" => true,
        "HEAD" | "OPTIONS" => false,
        _ => return Response::plain(405, "method not allowed"),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let endpoint = path.rsplit('/').next().unwrap_or_default();
    let lag = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("lag="))
        .map(parse_lag);
    if lag == Some(None) {
        return Response::new(
            400,
            "text/plain",
            "lag: expected bytes, or a number with kB, MB or GB",
            with_body,
        );
    }
    let lag = lag.flatten();
    let Some(s) = status else {
        return Response::new(503, "text/plain", "starting", with_body);
    };
    let ok = match endpoint {
        "" => return Response::new(200, "application/json", &status_json(s), with_body),
        "metrics" => {
            return Response::new(200, "text/plain; version=0.0.4", &metrics(s), with_body)
        }
        "primary" | "master" | "leader" | "read-write" => s.is_primary(),
        "replica" => s.is_replica(lag),
        "async" => s.is_replica(lag) && !s.synchronous,
        "sync" => s.is_replica(lag) && s.synchronous,
        "read-only" => s.is_primary() || s.is_replica(lag),
        "health" => matches!(s.role, Role::Primary | Role::Replica),
        "liveness" => s.is_alive(),
        "readiness" => s.is_primary() || s.is_replica(None),
        _ => return Response::new(404, "text/plain", "unknown endpoint", with_body),
    };
    let code = if ok { 200 } else { 503 };
    Response::new(code, "application/json", &status_json(s), with_body)
}

fn status_json(s: &Status) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

fn metrics(s: &Status) -> String {
    let mut out = String::new();
    // Every series carries the group, so alerts can aggregate per group (e.g. one primary).
    let labels = format!("group=\"{}\",node=\"{}\"", s.group, s.node);
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}"
        );
    };
    gauge(
        "zgres_primary",
        "1 when this node holds the lock and runs as primary",
        f64::from(u8::from(s.is_primary())),
    );
    gauge(
        "zgres_replica",
        "1 when this node is a healthy standby",
        f64::from(u8::from(s.is_replica(None))),
    );
    gauge(
        "zgres_lock_held",
        "1 when this node's session holds the group lock",
        f64::from(u8::from(s.lock_held)),
    );
    gauge(
        "zgres_healthy",
        "1 when the node reports no problems",
        f64::from(u8::from(s.problems.is_empty())),
    );
    gauge(
        "zgres_zookeeper_connected",
        "1 when the ZooKeeper session is established",
        f64::from(u8::from(s.zookeeper_connected)),
    );
    gauge(
        "zgres_synchronous",
        "1 when this standby is listed in /sync (a synchronous standby)",
        f64::from(u8::from(s.synchronous)),
    );
    gauge(
        "zgres_synchronous_degraded",
        "1 when this primary runs in synchronous mode without a synchronous standby",
        f64::from(u8::from(s.synchronous_degraded)),
    );
    gauge(
        "zgres_timeline",
        "PostgreSQL timeline",
        s.timeline.map_or(0.0, |t| f64::from(t.get())),
    );
    for (kind, lsn) in [
        ("write", s.wal.write),
        ("receive", s.wal.receive),
        ("replay", s.wal.replay),
    ] {
        if let Some(lsn) = lsn {
            let _ = writeln!(
                out,
                "zgres_wal_lsn_bytes{{{labels},kind=\"{kind}\"}} {}",
                lsn.0
            );
        }
    }
    if let Some(primary) = s.primary_position {
        let mine = [s.wal.receive, s.wal.replay].into_iter().flatten().max();
        if let Some(mine) = mine {
            let _ = writeln!(
                out,
                "zgres_replication_lag_bytes{{{labels}}} {}",
                primary.bytes_after(mine)
            );
        }
    }
    if let Some(headroom) = s.fence_headroom_seconds {
        let _ = writeln!(
            out,
            "zgres_fence_headroom_seconds{{{labels}}} {headroom:.3}"
        );
    }
    let _ = writeln!(
        out,
        "# TYPE zgres_fenced_total counter\nzgres_fenced_total{{{labels}}} {}",
        s.fenced_total
    );
    let _ = writeln!(
        out,
        "# TYPE zgres_promotions_total counter\nzgres_promotions_total{{{labels}}} {}",
        s.promotions_total
    );
    let _ = writeln!(
        out,
        "# HELP zgres_unreadable_znodes_total Distinct unreadable znode contents met (each logged once).\n# TYPE zgres_unreadable_znodes_total counter\nzgres_unreadable_znodes_total{{{labels}}} {}",
        s.unreadable_znodes_total
    );
    let _ = writeln!(
        out,
        "# HELP zgres_warnings Warnings in the status, e.g. an unreadable /config (see GET /).\n# TYPE zgres_warnings gauge\nzgres_warnings{{{labels}}} {}",
        s.warnings.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(role: Role, lock_held: bool) -> Status {
        Status {
            node: "10.0.0.1:5432".parse().unwrap(),
            group: zgres_schema::GroupName::new("main").unwrap(),
            role,
            lock_held,
            writable: true,
            problems: vec![],
            warnings: vec![],
            unreadable_znodes_total: 0,
            timeline: Some(Timeline::FIRST),
            wal: WalPositions {
                write: None,
                receive: Some(Lsn(100)),
                replay: Some(Lsn(100)),
            },
            primary_position: Some(Lsn(100 + (32 << 20))),
            tags: Tags::default(),
            zookeeper_connected: true,
            fence_headroom_seconds: None,
            fenced_total: 0,
            promotions_total: 0,
            synchronous: false,
            synchronous_degraded: false,
            updated: Instant::now(),
            loop_interval: Duration::from_secs(1),
        }
    }

    fn code(request: &str, s: &Status) -> u16 {
        let r = route(request.as_bytes(), Some(s));
        String::from_utf8_lossy(&r.bytes)[9..12].parse().unwrap()
    }

    #[test]
    fn primary_endpoints_need_the_lock() {
        let primary = status(Role::Primary, true);
        let orphan = status(Role::Primary, false);
        for path in [
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
        hidden.tags.noloadbalance = true;
        assert_eq!(code("GET /replica HTTP/1.0\r\n\r\n", &hidden), 503);
        let mut sick = replica.clone();
        sick.problems.push("postgres does not answer".into());
        assert_eq!(code("GET /replica HTTP/1.0\r\n\r\n", &sick), 503);
        assert_eq!(code("GET /sync HTTP/1.0\r\n\r\n", &replica), 503);
        assert_eq!(code("GET /async HTTP/1.0\r\n\r\n", &replica), 200);
        let mut synchronous = replica.clone();
        synchronous.synchronous = true;
        assert_eq!(code("GET /sync HTTP/1.0\r\n\r\n", &synchronous), 200);
        assert_eq!(code("GET /async HTTP/1.0\r\n\r\n", &synchronous), 503);
    }

    #[test]
    fn status_metrics_and_bad_requests() {
        let s = status(Role::Replica, false);
        let r = String::from_utf8(route(b"GET / HTTP/1.1\r\n\r\n", Some(&s)).bytes).unwrap();
        assert!(r.contains("\"role\":\"replica\""), "{r}");
        let m = String::from_utf8(route(b"GET /metrics HTTP/1.1\r\n\r\n", Some(&s)).bytes).unwrap();
        assert!(
            m.contains("zgres_replica{group=\"main\",node=\"10.0.0.1:5432\"} 1"),
            "{m}"
        );
        assert!(m.contains("zgres_replication_lag_bytes"), "{m}");
        let head =
            String::from_utf8(route(b"HEAD /replica HTTP/1.1\r\n\r\n", Some(&s)).bytes).unwrap();
        assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
        assert_eq!(code("DELETE /master HTTP/1.1\r\n\r\n", &s), 405);
        assert_eq!(code("GET /bogus HTTP/1.1\r\n\r\n", &s), 404);
        assert_eq!(code("garbage\r\n\r\n", &s), 400);
        assert_eq!(parse_lag("1kB"), Some(1024));
        assert_eq!(parse_lag("7"), Some(7));
        assert_eq!(parse_lag("99999999999999999999GB"), None);
    }
}
