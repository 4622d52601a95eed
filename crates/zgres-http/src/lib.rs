//! The HTTP/1 server behind the deadman's health API and the metrics endpoints.
//!
//! One request per connection (`Connection: close`), parsed with `httparse` and answered by a
//! synchronous [`Handler`]: health checks and scrapes are tiny, and a handler must never wait
//! on ZooKeeper or PostgreSQL. Every connection is bounded in request size, in time, and in
//! number ([`Limits`]); a client that breaks a limit gets an error status or is dropped, and
//! never delays another. With [`TlsFiles`] a server speaks TLS only (rustls, ring); the
//! handshake is bounded by the read timeout.
//!
//! Why not hyper: HAProxy's single-argument `option httpchk OPTIONS/master` (the form in the
//! Patroni configurations zgres must serve unchanged) sends the request target
//! `OPTIONS/master`, which is not a valid URI; hyper answers 400 before a handler sees it.
//! Here the target is passed through as sent and the handler decides.
#![forbid(unsafe_code)]

mod server;
mod tls;

pub use server::{respond_to, serve, Limits};
pub use tls::{acceptor, files_from_settings, TlsError, TlsFiles, TlsSettingsError, TlsSlot};
pub use tokio_rustls::TlsAcceptor;

/// A request method, as far as the handlers care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `GET`: answered with a body.
    Get,
    /// `HEAD`: answered without a body.
    Head,
    /// `OPTIONS` (HAProxy's default health check): answered without a body.
    Options,
    /// Anything else.
    Other(String),
}

impl Method {
    fn parse(method: &str) -> Method {
        match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    /// Whether the response carries its body (only for `GET`).
    pub fn wants_body(&self) -> bool {
        *self == Method::Get
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The target as sent (e.g. `/replica?lag=1MB`, or `OPTIONS/master` from HAProxy).
    pub target: String,
}

impl Request {
    /// A request from its method and target (for handler tests).
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: Method::parse(method),
            target: target.to_owned(),
        }
    }

    /// The target's path, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The value of query parameter `name`, if given.
    pub fn query(&self, name: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }
}

/// A response: status, content type and body. The server adds the length and
/// `Connection: close`, and drops the body for `HEAD` and `OPTIONS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `body` of `content_type`.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Unknown",
        }
    }

    /// The bytes sent for this response to a request with `method`.
    pub fn to_bytes(&self, method: &Method) -> Vec<u8> {
        let body: &[u8] = if method.wants_body() { &self.body } else { &[] };
        let mut bytes = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason(),
            self.content_type,
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }
}

/// Answers requests. Called on the server's tasks; must not block.
pub trait Handler: Send + Sync + 'static {
    /// The response to `request`.
    fn handle(&self, request: &Request) -> Response;
}

impl<F> Handler for F
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, request: &Request) -> Response {
        self(request)
    }
}
