//! Logging: the `[log]` section, and a subscriber whose level a reload can change.

use serde::Deserialize;

use crate::Problems;

/// Log output settings (`[log]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `zgres_deadman=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

impl LogConfig {
    /// Records a problem if `level` is not a valid filter.
    pub fn validate(&self, problems: &mut Problems) {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            problems.add("log.level", e.to_string());
        }
    }

    /// Installs the global `tracing` subscriber, writing to stderr, with colours only when
    /// stderr is a terminal (journald and log files get plain text). The returned handle
    /// changes the level later (a reload); the format is fixed for the process's life.
    pub fn init(&self) -> LogLevel {
        use std::io::IsTerminal;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let from_env = tracing_subscriber::EnvFilter::try_from_default_env().ok();
        let overridden = from_env.is_some();
        let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(&self.level));
        let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
        let ansi = std::io::stderr().is_terminal();
        let (text, json) = match self.format {
            LogFormat::Text => (
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(ansi)
                        .with_writer(std::io::stderr),
                ),
                None,
            ),
            LogFormat::Json => (
                None,
                Some(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(std::io::stderr),
                ),
            ),
        };
        tracing_subscriber::registry()
            .with(filter)
            .with(text)
            .with(json)
            .init();
        LogLevel { handle, overridden }
    }
}

/// Changes the running log level (see [`LogConfig::init`]).
#[derive(Debug, Clone)]
pub struct LogLevel {
    handle: tracing_subscriber::reload::Handle<
        tracing_subscriber::EnvFilter,
        tracing_subscriber::Registry,
    >,
    /// `RUST_LOG` was set: it stays in force over the file's level.
    overridden: bool,
}

impl LogLevel {
    /// Applies `level` (a filter validated by [`LogConfig::validate`]). Returns whether it
    /// took effect: not when `RUST_LOG` set the level, which a reload leaves in force, and
    /// not when `level` is not a valid filter.
    pub fn set(&self, level: &str) -> bool {
        if self.overridden {
            return false;
        }
        match tracing_subscriber::EnvFilter::try_new(level) {
            Ok(filter) => self.handle.reload(filter).is_ok(),
            Err(_) => false,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `error` with each of its causes after a colon, for a log line. Some libraries' own text is
/// only a kind (tokio-postgres: `db error`, `error performing TLS handshake`); the useful part
/// (the server's message, the handshake's reason) is the cause.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        // Some errors repeat their cause in their own text.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod with_causes_tests {
    use super::with_causes;

    #[derive(Debug, thiserror::Error)]
    #[error("db error")]
    struct Kind(#[source] std::io::Error);

    #[test]
    fn every_cause_follows_the_error() {
        let error = Kind(std::io::Error::other(
            "ERROR: relation \"t\" does not exist",
        ));
        assert_eq!(
            with_causes(&error),
            "db error: ERROR: relation \"t\" does not exist"
        );
        assert_eq!(with_causes(&std::io::Error::other("plain")), "plain");
    }
}
