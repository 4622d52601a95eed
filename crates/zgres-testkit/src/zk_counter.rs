//! A TCP proxy in front of ZooKeeper that counts what a client sends: requests (reads, writes,
//! watches) and pings apart. Benchmarks route a daemon through it to measure its ZooKeeper load.
//!
//! ZooKeeper's wire format: every frame is a 4-byte big-endian length and that many bytes. A
//! connection's first frame is the session handshake; every later client frame starts with its
//! xid, and pings use the reserved xid -2.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The xid of a ping.
const PING_XID: i32 = -2;

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    pings: AtomicU64,
    handshakes: AtomicU64,
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
        self.counts.requests.load(Ordering::Relaxed)
    }

    /// Pings sent so far.
    pub fn pings(&self) -> u64 {
        self.counts.pings.load(Ordering::Relaxed)
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
            let counter = if xid == PING_XID {
                &counts.pings
            } else {
                &counts.requests
            };
            counter.fetch_add(1, Ordering::Relaxed);
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
