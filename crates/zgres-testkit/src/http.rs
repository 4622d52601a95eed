//! Plain HTTP/1.0 requests to a daemon on loopback (metrics, status), for tests.

use std::io::{Read, Write};
use std::time::Duration;

/// The whole answer (head and body) to `GET path` on `127.0.0.1:port`, or `None` when
/// nothing answers within 5 s.
pub fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}
