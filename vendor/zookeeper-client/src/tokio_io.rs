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
pub struct Timer {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    period: Option<Duration>,
}

impl Timer {
    /// A timer that never fires.
    pub fn never() -> Self {
        Self { sleep: None, period: None }
    }

    /// Fires once at `when`.
    pub fn at(when: Instant) -> Self {
        Self { sleep: Some(Box::pin(tokio::time::sleep_until(when.into()))), period: None }
    }

    /// Fires once after `duration`.
    pub fn after(duration: Duration) -> Self {
        Self::at(Instant::now() + duration)
    }

    /// Fires every `period`, the first time one period from now.
    pub fn interval(period: Duration) -> Self {
        Self { period: Some(period), ..Self::after(period) }
    }
}

impl Future for Timer {
    type Output = Instant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        let this = self.get_mut();
        let Some(sleep) = this.sleep.as_mut() else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let now = Instant::now();
        match this.period {
            Some(period) => sleep.as_mut().reset((now + period).into()),
            None => this.sleep = None,
        }
        Poll::Ready(now)
    }
}

/// zgres patch: the session's due-check timer (ping, connection timeout), on a Linux timerfd
/// (`zgres_timer`) instead of tokio's timer wheel. The wheel wakes the runtime up to 64 ms
/// before any timer more than 64 ms away (and at each 4.096 s boundary it crosses) and then
/// again at its deadline; a timerfd wakes it once. An idle session's only timer is this one,
/// re-armed after every send and receive, so this halves its wake-ups. Everything else (connect
/// timeouts, back-off, deadlines) stays on [`Timer`]: with the timerfd there, recovery from a
/// ZooKeeper quorum loss measured slower (see PATCHES.md).
pub struct IdleTimer {
    timer: zgres_timer::Timer,
}

impl IdleTimer {
    /// Fires once at `when`.
    pub fn at(when: Instant) -> Self {
        Self { timer: zgres_timer::Timer::at(when) }
    }

    /// Re-arms the timer to fire once at `when`.
    pub fn set_at(&mut self, when: Instant) {
        self.timer.set_at(when);
    }
}

impl Future for IdleTimer {
    type Output = Instant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        let this = self.get_mut();
        match this.timer.poll_expired(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Instant::now()),
        }
    }
}
