//! Stands in for a node's PostgreSQL at its advertised address and routes each connection
//! by who makes it, so that the stream from this node to one peer can be cut alone.
//!
//! Every peer reaches a node at the one address it advertises, all from 127.0.0.1, so only
//! the connection itself tells them apart: a peer's WAL receiver names its node in
//! `application_name`, which the startup message carries. The router reads the startup
//! message (declining TLS and GSS encryption first, which the chaos group does not use), and
//! forwards the connection, startup message included, to that peer's own fault proxy; every
//! other connection (pg_rewind, pg_basebackup, pgbouncer, cancel requests) goes through a
//! shared one. The faults act on those proxies; the router itself only forwards.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zgres_testkit::own_thread::OwnThread;

/// The request codes that may come before the startup message, in its place.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
/// A startup message longer than this is not one (PostgreSQL's own limit is 10,000).
const MAX_STARTUP: usize = 10_000;
/// A client that has not sent its startup message by then is dropped.
const STARTUP_WITHIN: Duration = Duration::from_secs(10);

/// A running router. Dropping it stops accepting and closes the connections it forwards
/// (their fault proxies' sides close with them).
#[derive(Debug)]
pub struct PeerRouter {
    addr: SocketAddr,
    _serving: OwnThread,
}

/// Where the router sends connections: by `application_name`, else to `others`.
#[derive(Debug, Clone)]
pub struct Routes {
    /// `(application_name, address)` pairs.
    pub by_name: Vec<(String, SocketAddr)>,
    /// Every connection no pair names.
    pub others: SocketAddr,
}

impl Routes {
    fn pick(&self, application_name: Option<&str>) -> SocketAddr {
        application_name
            .and_then(|name| self.by_name.iter().find(|(n, _)| n == name))
            .map_or(self.others, |(_, addr)| *addr)
    }
}

impl PeerRouter {
    /// Listens on `listen` and routes by `routes`, on a thread and runtime of its own (so a
    /// stopped or busy caller never stalls it).
    ///
    /// # Errors
    /// When `listen` cannot be bound or the thread cannot start.
    pub fn start(listen: SocketAddr, routes: Routes) -> std::io::Result<PeerRouter> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let serving = OwnThread::spawn(format!("peer-router-{addr}"), move || async move {
            if let Ok(listener) = TcpListener::from_std(std_listener) {
                accept(listener, routes).await;
            }
        })?;
        Ok(PeerRouter {
            addr,
            _serving: serving,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn accept(listener: TcpListener, routes: Routes) {
    loop {
        if let Ok((client, _)) = listener.accept().await {
            tokio::spawn(route(client, routes.clone()));
        }
    }
}

async fn route(mut client: TcpStream, routes: Routes) {
    let _ = client.set_nodelay(true);
    let Ok(Ok(startup)) = tokio::time::timeout(STARTUP_WITHIN, read_startup(&mut client)).await
    else {
        return;
    };
    let name = application_name(&startup);
    let Ok(mut server) = TcpStream::connect(routes.pick(name.as_deref())).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    if server.write_all(&startup).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// Reads the client's first message that is not a TLS or GSS encryption request (those are
/// declined with `N`, as a server without them does): the startup or cancel message, whole.
async fn read_startup(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    loop {
        let length = client.read_u32().await? as usize;
        if !(8..=MAX_STARTUP).contains(&length) {
            return Err(std::io::Error::other("not a PostgreSQL startup message"));
        }
        let mut message = vec![0; length];
        message[..4].copy_from_slice(&(length as u32).to_be_bytes());
        client.read_exact(&mut message[4..]).await?;
        let code = u32::from_be_bytes([message[4], message[5], message[6], message[7]]);
        if length == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST) {
            client.write_all(b"N").await?;
            continue;
        }
        return Ok(message);
    }
}

/// The `application_name` a startup message carries: after the length and the protocol
/// version, `name\0value\0` pairs ending with an empty name.
fn application_name(message: &[u8]) -> Option<String> {
    let mut fields = message.get(8..)?.split(|&b| b == 0);
    while let Some(key) = fields.next() {
        if key.is_empty() {
            return None;
        }
        let value = fields.next()?;
        if key == b"application_name" {
            return String::from_utf8(value.to_vec()).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut body = 196_608u32.to_be_bytes().to_vec();
        for (k, v) in pairs {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut message = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        message.extend(body);
        message
    }

    #[test]
    fn the_application_name_is_read_from_the_startup_message() {
        let m = startup(&[
            ("user", "postgres"),
            ("application_name", "127.0.0.12:5433"),
            ("replication", "true"),
        ]);
        assert_eq!(application_name(&m).as_deref(), Some("127.0.0.12:5433"));
        assert_eq!(application_name(&startup(&[("user", "postgres")])), None);
        // Cut short: nothing, and no panic.
        assert_eq!(application_name(&m[..20]), None);
        assert_eq!(application_name(&[0, 0, 0, 8]), None);
    }

    #[test]
    fn a_named_peer_gets_its_route_and_everyone_else_the_shared_one() {
        let routes = Routes {
            by_name: vec![("n1".into(), ([127, 0, 0, 1], 1).into())],
            others: ([127, 0, 0, 1], 2).into(),
        };
        assert_eq!(routes.pick(Some("n1")).port(), 1);
        assert_eq!(routes.pick(Some("pg_rewind")).port(), 2);
        assert_eq!(routes.pick(None).port(), 2);
    }

    #[tokio::test]
    async fn a_connection_declining_tls_first_reaches_its_peers_route_with_its_startup() {
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let others = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let routes = Routes {
            by_name: vec![("n1".into(), peer.local_addr().unwrap())],
            others: others.local_addr().unwrap(),
        };
        let router = PeerRouter::start(([127, 0, 0, 1], 0).into(), routes).unwrap();
        let addr = router.addr();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let mut ssl = 8u32.to_be_bytes().to_vec();
        ssl.extend(SSL_REQUEST.to_be_bytes());
        client.write_all(&ssl).await.unwrap();
        assert_eq!(client.read_u8().await.unwrap(), b'N');
        let message = startup(&[("application_name", "n1")]);
        client.write_all(&message).await.unwrap();
        let (mut server, _) = peer.accept().await.unwrap();
        let mut seen = vec![0; message.len()];
        server.read_exact(&mut seen).await.unwrap();
        assert_eq!(seen, message);
        // And then both ways, as a plain proxy.
        server.write_all(b"R").await.unwrap();
        assert_eq!(client.read_u8().await.unwrap(), b'R');
    }
}
