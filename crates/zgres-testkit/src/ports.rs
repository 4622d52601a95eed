//! Free loopback ports.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use crate::{io_error, Result};

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback TCP port that is free now and was not handed out before in this process.
///
/// The kernel picks it (bind to port 0), so parallel test processes rarely collide; a port can
/// still be taken by someone else between this call and its use, which surfaces as a start-up
/// failure of the process that wanted it.
///
/// # Errors
/// When no port can be bound on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let seen = guard.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(io_error("bind a free loopback port"))?;
        let port = listener
            .local_addr()
            .map_err(io_error("read a bound port"))?
            .port();
        if seen.insert(port) {
            return Ok(port);
        }
    }
}
