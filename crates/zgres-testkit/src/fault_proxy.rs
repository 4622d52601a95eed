//! A TCP proxy that injects network faults between a client and a server.
//!
//! It runs on its own thread with its own runtime, so a test that blocks its own thread (or
//! SIGSTOPs a process) cannot stall the proxy, and mode changes take effect at once on existing
//! and new connections.

use std::net::SocketAddr;
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::own_thread::OwnThread;
use crate::{io_error, Result};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward everything at once.
    Pass,
    /// Accept connections but forward nothing, in either direction; data is held (like a
    /// network partition), and flows again if the mode goes back to `Pass` or `Delay`.
    Blackhole,
    /// Reset every existing connection and reset new ones as soon as they are accepted.
    Refuse,
    /// Forward everything, each chunk this long after it arrived.
    Delay(Duration),
    /// A one-way cut: what the client sends is held, what the server sends passes.
    HoldToServer,
    /// A one-way cut: what the server sends is held, what the client sends passes.
    HoldToClient,
}

/// Which way a pump forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// A running fault proxy. Dropping it closes every connection and stops its thread.
#[derive(Debug)]
pub struct FaultProxy {
    /// Its accept loop and connections; stopped first when dropped (before the mode's sender,
    /// whose loss would reset the connections it holds).
    _serving: OwnThread,
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<ProxyMode>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`, in [`ProxyMode::Pass`].
    ///
    /// # Errors
    /// When the listening socket or the proxy's thread cannot be created.
    pub fn start(upstream: SocketAddr) -> Result<Self> {
        Self::start_on(([127, 0, 0, 1], 0).into(), upstream)
    }

    /// As [`FaultProxy::start`], listening on `listen` (e.g. another loopback address with
    /// the upstream's port, so that the proxy stands in for the server).
    ///
    /// # Errors
    /// When the listening socket or the proxy's thread cannot be created.
    pub fn start_on(listen: SocketAddr, upstream: SocketAddr) -> Result<Self> {
        let std_listener =
            std::net::TcpListener::bind(listen).map_err(io_error("bind the fault proxy"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(io_error("configure the fault proxy socket"))?;
        let addr = std_listener
            .local_addr()
            .map_err(io_error("read the fault proxy address"))?;
        let (mode, mode_rx) = watch::channel(ProxyMode::Pass);
        let serving =
            OwnThread::spawn(format!("fault-proxy-{}", addr.port()), move || async move {
                if let Ok(listener) = TcpListener::from_std(std_listener) {
                    accept_loop(listener, upstream, mode_rx).await;
                }
            })
            .map_err(io_error("start the fault proxy thread"))?;
        Ok(FaultProxy {
            _serving: serving,
            addr,
            upstream,
            mode,
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address traffic is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches mode; takes effect immediately on every connection.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<ProxyMode>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_connection(client, upstream, mode.clone()));
    }
}

/// Closes a socket with RST instead of FIN, so the peer sees a reset connection.
fn reset(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Waits until the mode lets traffic through in `direction` (`None`: in either, for accepting a
/// connection). `false` means the connection must be reset (or the proxy is shutting down).
async fn wait_for_traffic(
    mode: &mut watch::Receiver<ProxyMode>,
    direction: Option<Direction>,
) -> bool {
    loop {
        match (*mode.borrow_and_update(), direction) {
            (ProxyMode::Refuse, _) => return false,
            (ProxyMode::Blackhole, _)
            | (ProxyMode::HoldToServer, Some(Direction::ToServer))
            | (ProxyMode::HoldToClient, Some(Direction::ToClient)) => {}
            _ => return true,
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

async fn serve_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<ProxyMode>,
) {
    let _ = client.set_nodelay(true);
    if !wait_for_traffic(&mut mode, None).await {
        reset(&client);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        reset(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let refused = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        tokio::select! {
            refused = pump(client_read, server_write, mode.clone(), Direction::ToServer) => refused,
            refused = pump(server_read, client_write, mode.clone(), Direction::ToClient) => refused,
        }
    };
    if refused {
        reset(&client);
        reset(&server);
    }
    // Dropping both streams closes them: with FIN normally, with RST when refused.
}

/// Forwards one direction until EOF (after delivering everything read before it), an error, or
/// `Refuse`. Returns true when refused.
///
/// A server that answers and closes at once (ZooKeeper telling a client its session expired)
/// must have that answer delivered: only `Refuse` may drop data already read.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    mode: watch::Receiver<ProxyMode>,
    direction: Direction,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async {
        // Moved in, so that the writer sees the end of the queue once the reader is done.
        let queue = queue;
        let mut mode = mode.clone();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if !wait_for_traffic(&mut mode, Some(direction)).await {
                return true;
            }
            tokio::select! {
                read = from.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => {
                        let delay = match *mode.borrow() {
                            ProxyMode::Delay(d) => d,
                            _ => Duration::ZERO,
                        };
                        // The writer lives as long as this future; a send cannot fail.
                        let _ = queue.send((Instant::now() + delay, buf[..n].to_vec()));
                    }
                },
                // Re-check the mode; a pending read is cancel-safe.
                _ = mode.changed() => {}
            }
        }
    };
    let writer = async {
        let mut mode = mode.clone();
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            if !wait_for_traffic(&mut mode, Some(direction)).await {
                return true;
            }
            if to.write_all(&chunk).await.is_err() {
                return false;
            }
        }
        let _ = to.shutdown().await;
        false
    };
    tokio::pin!(writer);
    tokio::select! {
        refused = reader => refused || (&mut writer).await,
        refused = &mut writer => refused,
    }
}
