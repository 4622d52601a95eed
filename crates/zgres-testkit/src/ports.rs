//! Free loopback ports.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use crate::{io_error, Result};

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Ports handed out: below Linux's default ephemeral range (32768–60999). A port from that range
/// can be taken as the local port of any outgoing connection while its service is down (a
/// killed deadman's API, a restarting PostgreSQL), and the restart then fails with "address in
/// use"; ports below it are only ever taken by a listener that asked for them.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback TCP port that is free now and was not handed out before in this process.
///
/// Each process starts probing at its own offset in [`PORTS`], so parallel test processes
/// rarely collide; a port can still be taken by someone else between this call and its use,
/// which surfaces as a start-up failure of the process that wanted it.
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
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            seen.insert(port);
            return Ok(port);
        }
    }
    Err(io_error("bind a free loopback port")(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("every port of {PORTS:?} is in use"),
    )))
}
