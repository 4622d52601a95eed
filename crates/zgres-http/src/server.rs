//! Accepting, reading and answering connections within the limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::TlsSlot;
use tokio_util::sync::CancellationToken;

use crate::{Handler, Method, Request, Response};

/// What one client may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request head accepted; a longer one is answered 431.
    pub max_request_bytes: usize,
    /// Time to send the request head; a slower client is answered 408.
    pub read_timeout: Duration,
    /// Time to take the response; a slower client is dropped.
    pub write_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 8 * 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_connections: 64,
        }
    }
}

/// Binds `addr` and serves `handler` on its own task until `shutdown` is cancelled; the task
/// then stops accepting (connections in progress finish within their limits). While `tls`
/// holds an acceptor, every new connection must complete a TLS handshake within
/// `limits.read_timeout` first.
///
/// # Errors
/// When `addr` cannot be bound (reported at start-up, so a daemon can refuse to start).
pub async fn serve(
    addr: SocketAddr,
    handler: Arc<dyn Handler>,
    limits: Limits,
    tls: TlsSlot,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    Ok(tokio::spawn(async move {
        loop {
            // Take a slot first, so that beyond the limit clients wait in the backlog.
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
                () = shutdown.cancelled() => return,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => return,
            };
            let Ok((stream, peer)) = accepted else {
                continue;
            };
            let handler = handler.clone();
            let limits = limits.clone();
            let tls = tls.current();
            tokio::spawn(async move {
                if let Err(e) = connection(stream, tls, handler.as_ref(), &limits).await {
                    tracing::debug!(%peer, error = %e, "HTTP connection failed");
                }
                drop(slot);
            });
        }
    }))
}

/// What reading a request head gave.
enum Head {
    Complete(Request),
    TooLarge,
    Malformed,
    TimedOut,
    Closed,
}

/// One connection: the TLS handshake if any, then the request and its answer.
async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    handler: &dyn Handler,
    limits: &Limits,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return answer(stream, handler, limits).await;
    };
    match tokio::time::timeout(limits.read_timeout, tls.accept(stream)).await {
        Ok(stream) => answer(stream?, handler, limits).await,
        Err(_) => Ok(()),
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: &dyn Handler,
    limits: &Limits,
) -> std::io::Result<()> {
    let bytes = respond(read_head(&mut stream, limits).await?, handler);
    if bytes.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    {
        Ok(written) => written,
        Err(_) => Ok(()),
    }
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, limits: &Limits) -> std::io::Result<Head> {
    let mut buf = Vec::with_capacity(512);
    let read = tokio::time::timeout(limits.read_timeout, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(head) = parse(&buf) {
                return Ok(head);
            }
            if buf.len() > limits.max_request_bytes {
                return Ok(Head::TooLarge);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                // A client that closes early: answer what arrived, if anything.
                return Ok(if buf.is_empty() {
                    Head::Closed
                } else {
                    parse_eof(&buf)
                });
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    match read {
        Ok(head) => head,
        Err(_) => Ok(Head::TimedOut),
    }
}

/// A complete head, or `None` while more bytes are needed.
fn parse(buf: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) => Some(Head::Complete(Request {
            method: Method::parse(request.method.unwrap_or_default()),
            target: request.path.unwrap_or_default().to_owned(),
        })),
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => Some(Head::TooLarge),
        Err(_) => Some(Head::Malformed),
    }
}

/// The bytes answered to a client that sent `head` and then closed its side: what the server
/// would write (for handler tests, and for the server itself).
pub fn respond_to(head: &[u8], handler: &dyn Handler) -> Vec<u8> {
    let parsed = parse(head).unwrap_or_else(|| parse_eof(head));
    respond(parsed, handler)
}

fn respond(head: Head, handler: &dyn Handler) -> Vec<u8> {
    let (response, method) = match head {
        Head::Complete(request) => (handler.handle(&request), request.method),
        Head::TooLarge => (Response::text(431, "request too large\n"), Method::Get),
        Head::Malformed => (Response::text(400, "bad request\n"), Method::Get),
        Head::TimedOut => (Response::text(408, "request timeout\n"), Method::Get),
        Head::Closed => return Vec::new(),
    };
    response.to_bytes(&method)
}

/// The head of a client that closed before the blank line: its request line is enough (old
/// health checkers send `OPTIONS /master HTTP/1.0\r\n` and half-close).
fn parse_eof(buf: &[u8]) -> Head {
    let mut completed = buf.to_vec();
    completed.extend_from_slice(b"\r\n\r\n");
    match parse(&completed) {
        Some(Head::Complete(request)) => Head::Complete(request),
        _ => Head::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(head: &[u8]) -> Option<String> {
        match parse(head)? {
            Head::Complete(r) => Some(format!("{:?} {}", r.method, r.target)),
            Head::TooLarge => Some("too large".into()),
            Head::Malformed => Some("malformed".into()),
            _ => Some("other".into()),
        }
    }

    #[test]
    fn heads_are_parsed_as_sent() {
        assert_eq!(
            target(b"OPTIONS OPTIONS/master HTTP/1.0\r\n\r\n").unwrap(),
            "Options OPTIONS/master"
        );
        assert_eq!(
            target(b"GET /replica?lag=1MB HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(),
            "Get /replica?lag=1MB"
        );
        assert_eq!(target(b"GET /replica HTTP/1.1\r\nHost"), None);
        assert_eq!(target(b"\x01\x02 nonsense\r\n\r\n").unwrap(), "malformed");
        let many: Vec<u8> = std::iter::once(&b"GET / HTTP/1.1\r\n"[..])
            .chain(std::iter::repeat(&b"X: y\r\n"[..]).take(40))
            .chain(std::iter::once(&b"\r\n"[..]))
            .flatten()
            .copied()
            .collect();
        assert_eq!(target(&many).unwrap(), "too large");
    }

    #[test]
    fn a_head_cut_short_by_the_client_still_counts() {
        match parse_eof(b"OPTIONS /master HTTP/1.0\r\n") {
            Head::Complete(r) => assert_eq!(r.target, "/master"),
            _ => panic!("not parsed"),
        }
    }

    #[test]
    fn bodies_go_only_to_get() {
        let r = Response::text(200, "hello");
        let get = String::from_utf8(r.to_bytes(&Method::Get)).unwrap();
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n") && get.ends_with("\r\n\r\nhello"));
        assert!(get.contains("Content-Length: 5\r\n"));
        let head = String::from_utf8(r.to_bytes(&Method::Options)).unwrap();
        assert!(head.contains("Content-Length: 0\r\n") && head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn query_parameters_are_found_by_name() {
        let r = Request::new("GET", "/replica?x=1&lag=16MB");
        assert_eq!(r.path(), "/replica");
        assert_eq!(r.query("lag"), Some("16MB"));
        assert_eq!(r.query("la"), None);
    }
}
