//! Free loopback ports.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::sync::Mutex;

use crate::{io_error, Result};

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Ports handed out: below Linux's default ephemeral range (32768–60999). A port from that range
/// can be taken as the local port of any outgoing connection while its service is down (a
/// killed deadman's API, a restarting PostgreSQL), and the restart then fails with "address in
/// use"; ports below it are only ever taken by a listener that asked for them.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Claims on ports held for this process's lifetime: an abstract unix socket per port, which
/// no other process can bind while this one lives (and which leaves no file behind).
static CLAIMS: Mutex<Vec<UnixListener>> = Mutex::new(Vec::new());

/// Claims `port` for this process against every other test process on the machine; false when
/// another one holds it. A test's PostgreSQL nodes are stopped and started again on their
/// ports (by the deadmen), so a port free at one moment may still belong to a running test:
/// before the claims, another test process could start a server on it meanwhile (seen in CI:
/// a new primary's `CREATE TABLE` answered by another test's standby).
fn claim(port: u16) -> bool {
    let Ok(addr) = SocketAddr::from_abstract_name(format!("zgres-test-port-{port}")) else {
        return true;
    };
    match UnixListener::bind_addr(&addr) {
        Ok(listener) => {
            CLAIMS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(listener);
            true
        }
        Err(_) => false,
    }
}

/// A loopback TCP port that is free now, was not handed out before in this process, and is
/// claimed by no other test process while this one runs.
///
/// Each process starts probing at its own offset in [`PORTS`]; a port can still be taken by
/// a process that is not a test between this call and its use, which surfaces as a start-up
/// failure of the process that wanted it.
///
/// # Errors
/// When no port of the range can be bound on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let seen = guard.get_or_insert_with(HashSet::new);
    let span = u32::from(PORTS.end - PORTS.start);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let start = (std::process::id().wrapping_mul(7919) ^ nanos) % span;
    for i in 0..span {
        let port = PORTS.start + ((start + i) % span) as u16;
        if seen.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() && claim(port) {
            seen.insert(port);
            return Ok(port);
        }
    }
    Err(io_error("bind a free loopback port")(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("every port of {PORTS:?} is in use"),
    )))
}
