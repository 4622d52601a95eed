//! A TCP proxy in front of ZooKeeper that counts what a client sends: requests (reads, writes,
//! watches) and pings apart. Benchmarks route a daemon through it to measure its ZooKeeper load.
//!
//! ZooKeeper's wire format: every frame is a 4-byte big-endian length and that many bytes. A
//! connection's first frame is the session handshake; every later client frame starts with its
//! xid, and pings use the reserved xid -2.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The xid of a ping.
const PING_XID: i32 = -2;

#[derive(Debug, Default)]
struct Counts {
    pings: AtomicU64,
    handshakes: AtomicU64,
    /// Requests by operation and path ("getData /zgres/g/lock"), so a bench can say what an
    /// idle deadman still asks for.
    by_request: Mutex<BTreeMap<String, u64>>,
}

/// A running counting proxy. Dropping it stops accepting (open connections end with the
/// runtime or their peers).
#[derive(Debug)]
pub struct RequestCounter {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl Drop for RequestCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RequestCounter {
    /// Listens on a free loopback port and forwards every connection to `upstream`. Must be
    /// called inside a tokio runtime.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counts = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, counts).await;
                    }
                });
            }
        });
        Ok(RequestCounter { addr, counts, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests sent so far (everything but pings and handshakes).
    pub fn requests(&self) -> u64 {
        self.by_request().values().sum()
    }

    /// Pings sent so far.
    pub fn pings(&self) -> u64 {
        self.counts.pings.load(Ordering::Relaxed)
    }

    /// Requests sent so far, by operation and path (`"getData /zgres/g/lock"`; a `multi` is
    /// counted as one `multi` without its paths).
    pub fn by_request(&self) -> BTreeMap<String, u64> {
        self.counts
            .by_request
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Connections (session handshakes) so far.
    pub fn handshakes(&self) -> u64 {
        self.counts.handshakes.load(Ordering::Relaxed)
    }
}

async fn relay(client: TcpStream, server: TcpStream, counts: Arc<Counts>) {
    // Without this, Nagle's algorithm and delayed acknowledgements add ~40 ms per request.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut first = true;
    loop {
        let mut len = [0u8; 4];
        if client_read.read_exact(&mut len).await.is_err() {
            break;
        }
        let size = u32::from_be_bytes(len) as usize;
        let mut frame = vec![0u8; size];
        if client_read.read_exact(&mut frame).await.is_err() {
            break;
        }
        if first {
            counts.handshakes.fetch_add(1, Ordering::Relaxed);
            first = false;
        } else if frame.len() >= 4 {
            let xid = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            if xid == PING_XID {
                counts.pings.fetch_add(1, Ordering::Relaxed);
            } else {
                *counts
                    .by_request
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .entry(describe(&frame))
                    .or_default() += 1;
            }
        }
        let mut whole = Vec::with_capacity(4 + frame.len());
        whole.extend_from_slice(&len);
        whole.extend_from_slice(&frame);
        if server_write.write_all(&whole).await.is_err() {
            break;
        }
    }
    down.abort();
}

/// "operation path" of a request frame (after its length): the xid, the operation code and,
/// for the operations whose body starts with a path, that path.
fn describe(frame: &[u8]) -> String {
    let Some(op) = frame.get(4..8) else {
        return "short frame".to_string();
    };
    let op = i32::from_be_bytes([op[0], op[1], op[2], op[3]]);
    let name = match op {
        1 => "create",
        2 => "delete",
        3 => "exists",
        4 => "getData",
        5 => "setData",
        8 => "getChildren",
        9 => "sync",
        12 => "getChildren2",
        13 => "check",
        14 => "multi",
        15 => "create2",
        19 => "createContainer",
        21 => "createTTL",
        100 => "auth",
        101 => "setWatches",
        105 => "setWatches2",
        106 => "addWatch",
        _ => return format!("op {op}"),
    };
    let path_first = !matches!(op, 14 | 100 | 101 | 105);
    let path = frame.get(8..12).and_then(|len| {
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        let len = usize::try_from(len).ok()?;
        frame.get(12..12 + len)
    });
    match path {
        Some(path) if path_first => format!("{name} {}", String::from_utf8_lossy(path)),
        _ => name.to_string(),
    }
}
