//! Timers that wake an idle tokio runtime once, at their deadline.
//!
//! tokio's timer wheel keeps a timer more than 64 ms away in a coarser slot and wakes the
//! runtime at the start of that slot (up to 64 ms early) to move it to a finer one, then again
//! at the deadline: two wake-ups per timer. An idle deadman's timers (the ZooKeeper ping, the
//! next round) are all that far away, and on a small VM each wake-up is tens of microseconds
//! of mostly kernel time, so the extra one was a third of an idle deadman's CPU.
//!
//! A [`Timer`] here is a Linux `timerfd` registered with tokio's I/O driver: the kernel wakes
//! `epoll_wait` exactly at the deadline, and the wheel is not involved. Where a timerfd cannot
//! be had (out of descriptors, no runtime with I/O enabled) a timer falls back to
//! `tokio::time::Sleep`, which is correct, only less frugal.
//!
//! Unlike `tokio::time::sleep`, these timers ignore tokio's paused test clock: use them only
//! where real time is meant.

#![forbid(unsafe_code)]

use std::future::{poll_fn, Future};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;

/// A one-shot timer that can be re-armed: armed with [`Timer::set_at`], awaited with
/// [`Timer::expired`] or polled with [`Timer::poll_expired`].
#[derive(Debug, Default)]
pub struct Timer {
    deadline: Option<Instant>,
    clock: Option<Clock>,
}

/// What the timer waits on, created at the first arming.
#[derive(Debug)]
enum Clock {
    Kernel(AsyncFd<KernelTimer>),
    Wheel(Pin<Box<tokio::time::Sleep>>),
}

/// A non-blocking monotonic timerfd, in the form tokio's `AsyncFd` takes.
#[derive(Debug)]
struct KernelTimer(TimerFd);

impl AsRawFd for KernelTimer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Timer {
    /// A timer that is not armed: it never expires until [`Timer::set_at`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A timer armed to expire at `when`. Must be called within a tokio runtime.
    pub fn at(when: Instant) -> Self {
        let mut timer = Self::new();
        timer.set_at(when);
        timer
    }

    /// A timer armed to expire `after` from now. Must be called within a tokio runtime.
    pub fn after(after: Duration) -> Self {
        Self::at(Instant::now() + after)
    }

    /// The moment the timer expires, if armed.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Arms the timer to expire at `when` (at once if `when` has passed), replacing any
    /// earlier arming. Must be called within a tokio runtime.
    pub fn set_at(&mut self, when: Instant) {
        self.deadline = Some(when);
        // Never zero: a zero expiry disarms a timerfd instead of firing it.
        let after = when
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        match self.clock.get_or_insert_with(|| Clock::new(when)) {
            Clock::Kernel(fd) => {
                let set = fd.get_ref().0.set(
                    Expiration::OneShot(TimeSpec::from_duration(after)),
                    TimerSetTimeFlags::empty(),
                );
                // Cannot fail on a valid timerfd; if it ever did, the wheel is still correct.
                if set.is_err() {
                    self.clock = Some(Clock::Wheel(Box::pin(tokio::time::sleep_until(
                        when.into(),
                    ))));
                }
            }
            Clock::Wheel(sleep) => sleep.as_mut().reset(when.into()),
        }
    }

    /// Disarms the timer: it does not expire until armed again.
    pub fn unset(&mut self) {
        self.deadline = None;
        if let Some(Clock::Kernel(fd)) = &self.clock {
            let _ = fd.get_ref().0.unset();
        }
    }

    /// Resolves when the armed deadline passes (never while disarmed) and disarms the timer.
    /// Cancel-safe: dropping the future leaves the timer armed.
    pub async fn expired(&mut self) {
        poll_fn(|cx| self.poll_expired(cx)).await
    }

    /// Polls for the armed deadline: `Ready` once it passed, after which the timer is
    /// disarmed; `Pending` (and never woken) while disarmed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.deadline.is_none() {
            return Poll::Pending;
        }
        match self.clock.as_mut() {
            // An error from the driver means it is shutting down and nothing will wake us:
            // report expiry rather than let the caller wait forever.
            Some(Clock::Kernel(fd)) => {
                while let Ok(mut ready) = ready!(fd.poll_read_ready(cx)) {
                    match ready.get_inner().0.wait() {
                        Err(Errno::EAGAIN) => ready.clear_ready(),
                        // Read the expiry, or an error reading it: either way the deadline
                        // is not worth waiting on any more.
                        _ => break,
                    }
                }
            }
            Some(Clock::Wheel(sleep)) => ready!(sleep.as_mut().poll(cx)),
            None => {}
        }
        self.deadline = None;
        Poll::Ready(())
    }
}

impl Clock {
    fn new(when: Instant) -> Self {
        let kernel = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .ok()
        .and_then(|fd| register(KernelTimer(fd)));
        match kernel {
            Some(fd) => Clock::Kernel(fd),
            None => Clock::Wheel(Box::pin(tokio::time::sleep_until(when.into()))),
        }
    }
}

/// Registers the timerfd with the runtime's I/O driver.
///
/// `AsyncFd::new` is deprecated in favour of an `unsafe` constructor because an arbitrary
/// `AsRawFd` type could close or swap its descriptor while registered. `KernelTimer` owns its
/// timerfd for its whole life and always returns that descriptor, so the safe constructor is
/// sound here, and this crate keeps `forbid(unsafe_code)`.
#[allow(deprecated)]
fn register(timer: KernelTimer) -> Option<AsyncFd<KernelTimer>> {
    AsyncFd::new(timer).ok()
}

/// Waits until `after` has passed, waking the runtime once (see the crate docs). Cancel-safe.
/// Must be called within a tokio runtime.
pub fn sleep(after: Duration) -> impl Future<Output = ()> + Send {
    let mut timer = Timer::after(after);
    async move { timer.expired().await }
}

#[cfg(test)]
mod tests;
