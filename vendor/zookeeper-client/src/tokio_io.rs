//! zgres patch: the client's sockets and timers on the tokio runtime that runs its session.
//!
//! Upstream uses `async-net` and `async-io`, whose reactor is a thread of its own: every ping,
//! reply and timer of an idle session woke that thread and then, through an eventfd, the
//! daemon's runtime thread. With tokio's own TCP stream and timers an idle session wakes only
//! the runtime thread. The API mirrors the parts of `async_io::Timer` the client uses.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// A TCP stream with the `futures` I/O traits the client is written against.
pub type TcpStream = Compat<tokio::net::TcpStream>;

/// Connects to `host:port` on the current tokio runtime.
pub async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream.compat())
}

/// A one-shot or periodic timer; resolves to the moment it fired. A periodic timer may be
/// polled again after firing, like `async_io::Timer`.
///
/// On a Linux timerfd (`zgres_timer`) rather than tokio's timer wheel: the wheel wakes the
/// runtime up to 64 ms before any timer more than 64 ms away and then again at its deadline;
/// a timerfd wakes it once. The session's ping timer is such a timer, re-armed after every
/// send and receive.
pub struct Timer {
    timer: zgres_timer::Timer,
    period: Option<Duration>,
}

impl Timer {
    /// A timer that never fires.
    pub fn never() -> Self {
        Self { timer: zgres_timer::Timer::new(), period: None }
    }

    /// Fires once at `when`.
    pub fn at(when: Instant) -> Self {
        Self { timer: zgres_timer::Timer::at(when), period: None }
    }

    /// Fires once after `duration`.
    pub fn after(duration: Duration) -> Self {
        Self::at(Instant::now() + duration)
    }

    /// Fires every `period`, the first time one period from now.
    pub fn interval(period: Duration) -> Self {
        Self { period: Some(period), ..Self::after(period) }
    }

    /// Re-arms the timer to fire once at `when`.
    pub fn set_at(&mut self, when: Instant) {
        self.period = None;
        self.timer.set_at(when);
    }
}

impl Future for Timer {
    type Output = Instant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        let this = self.get_mut();
        if this.timer.poll_expired(cx).is_pending() {
            return Poll::Pending;
        }
        let now = Instant::now();
        if let Some(period) = this.period {
            this.timer.set_at(now + period);
        }
        Poll::Ready(now)
    }
}
