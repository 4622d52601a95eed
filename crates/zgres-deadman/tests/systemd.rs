//! The systemd service protocol as a unit with `Type=notify` and `WatchdogSec=` sees it: the
//! deadman says READY=1 only once its ZooKeeper session is up and PostgreSQL was probed, pings
//! the watchdog from its loop, and says STOPPING=1 on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use zgres_testkit::fault_proxy::ProxyMode;
use zgres_testkit::group::{Group, Timing, DEADLINE};

/// Collects datagrams until `want` arrives (or the deadline); returns all seen.
fn receive_until(socket: &UnixDatagram, want: &str, deadline: Duration) -> Vec<String> {
    let until = Instant::now() + deadline;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while Instant::now() < until {
        if let Ok(len) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..len]).into_owned();
            let done = message.contains(want);
            seen.push(message);
            if done {
                break;
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ready_only_with_zookeeper_then_watchdog_and_stopping() {
    let mut group = Group::prepare(1, Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    group.nodes[0].env.extend([
        ("NOTIFY_SOCKET".into(), path.display().to_string()),
        ("WATCHDOG_USEC".into(), "1000000".into()),
    ]);
    // ZooKeeper refuses connections at first: the deadman must not claim to be ready.
    group.proxy_node(0).set_mode(ProxyMode::Refuse);
    group.start(0);
    let early = receive_until(&socket, "READY=1", Duration::from_secs(3));
    assert!(
        early.iter().all(|m| !m.contains("READY=1")),
        "ready before ZooKeeper was reachable: {early:?}"
    );
    group.nodes[0]
        .proxy
        .as_ref()
        .unwrap()
        .set_mode(ProxyMode::Pass);
    let seen = receive_until(&socket, "READY=1", DEADLINE);
    assert!(
        seen.last().is_some_and(|m| m.contains("READY=1")),
        "no READY=1 after ZooKeeper came back: {seen:?}\n{}",
        group.logs()
    );
    // With WatchdogSec=1s, pings come at least every half second while the loop runs.
    let mut pings = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        pings += receive_until(&socket, "WATCHDOG=1", Duration::from_secs(1))
            .iter()
            .filter(|m| m.contains("WATCHDOG=1"))
            .count();
    }
    assert!(pings >= 4, "only {pings} watchdog pings in 3 s");

    group.nodes[0]
        .deadman
        .as_ref()
        .unwrap()
        .signal(Signal::SIGTERM)
        .unwrap();
    let end = receive_until(&socket, "STOPPING=1", DEADLINE);
    assert!(
        end.iter().any(|m| m.contains("STOPPING=1")),
        "no STOPPING=1: {end:?}"
    );
}
