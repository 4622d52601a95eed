//! The systemd service protocol (`sd_notify`) without libsystemd: datagrams to
//! `$NOTIFY_SOCKET` saying `READY=1`, `WATCHDOG=1`, `STOPPING=1` or a `STATUS=` line.
//!
//! Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing. Sending never blocks: the
//! socket is a datagram socket, and a failed send is logged once and otherwise ignored, since a
//! daemon must not stop working because its supervisor is gone.
#![forbid(unsafe_code)]

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// A connection to the service manager, if there is one.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    failed: bool,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`/`$WATCHDOG_PID` (the watchdog applies only
    /// when it names this process). Never fails: without them, the notifier is inert.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Notifier::from_env`], with `var` looking the variables up.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let socket = var("NOTIFY_SOCKET").and_then(|path| {
            let addr = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
                }
                None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
            };
            let socket = UnixDatagram::unbound().ok()?;
            socket.set_nonblocking(true).ok()?;
            Some((socket, addr))
        });
        let for_us =
            var("WATCHDOG_PID").map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog = var("WATCHDOG_USEC")
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && for_us)
            .map(Duration::from_micros);
        Notifier {
            socket,
            watchdog,
            last_ping: None,
            failed: false,
        }
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog interval systemd expects pings within, if enabled.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&mut self, message: &str) {
        let Some((socket, addr)) = &self.socket else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            if !self.failed {
                tracing::warn!(error = %e, "cannot notify systemd");
                self.failed = true;
            }
        }
    }

    /// The service is ready (sent once by the caller when it is).
    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\n"));
    }

    /// A human-readable status line for `systemctl status`.
    pub fn status(&mut self, status: &str) {
        self.send(&format!("STATUS={status}\n"));
    }

    /// The service is shutting down.
    pub fn stopping(&mut self) {
        self.send("STOPPING=1\n");
    }

    /// Pings the watchdog if half its interval has passed since the last ping. Call it from
    /// the loop whose progress the watchdog is to vouch for.
    pub fn keep_alive(&mut self) {
        let Some(interval) = self.watchdog else {
            return;
        };
        if self.last_ping.is_some_and(|at| at.elapsed() < interval / 2) {
            return;
        }
        self.last_ping = Some(Instant::now());
        self.send("WATCHDOG=1\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_protocol_lines_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("zgres-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = UnixDatagram::bind(&dir).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let path = dir.display().to_string();
        let mut n = Notifier::from_vars(|name| match name {
            "NOTIFY_SOCKET" => Some(path.clone()),
            "WATCHDOG_USEC" => Some("2000000".into()),
            _ => None,
        });
        assert!(n.is_active());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        let mut buf = [0u8; 256];
        let mut next = || {
            let len = listener.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..len]).into_owned()
        };
        n.ready("up");
        assert_eq!(next(), "READY=1\nSTATUS=up\n");
        n.keep_alive();
        assert_eq!(next(), "WATCHDOG=1\n");
        n.keep_alive(); // within half the interval: nothing
        n.stopping();
        assert_eq!(next(), "STOPPING=1\n");
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn inert_without_systemd_and_watchdog_only_for_its_pid() {
        let mut n = Notifier::from_vars(|_| None);
        assert!(!n.is_active());
        n.ready("x");
        n.keep_alive();
        let other = Notifier::from_vars(|name| match name {
            "WATCHDOG_USEC" => Some("1000".into()),
            "WATCHDOG_PID" => Some("1".into()),
            _ => None,
        });
        assert_eq!(other.watchdog_interval(), None);
    }
}
