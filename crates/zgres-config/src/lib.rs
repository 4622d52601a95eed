//! Configuration and command-line plumbing shared by the zgres daemons.
//!
//! Each daemon describes its own file with serde types and validates values itself; this crate
//! gives them one way to read the file, report every problem by key, hold secrets, set up
//! logging, pick the `--config`/`--check-config` mode, map usage errors to exit codes, and turn
//! SIGTERM/SIGINT into a cancellation.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

mod log;
mod private_key;
mod signals;

pub use private_key::{check_private_key, PrivateKeyFile};

pub use log::{with_causes, LogConfig, LogFormat, LogLevel};
pub use signals::{cancel_on_signal, check_on_hangup, reload_on_hangup};

/// Exit status for command-line usage errors (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit status for configuration errors (`EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// A configuration problem: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `zookeeper.session_timeout_ms`.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// The configuration file could not be used. Permanent: the operator must fix the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has keys of the wrong type or unknown keys.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// Values are out of range or inconsistent.
    #[error("config file {path}:\n  {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

/// What a daemon was asked to do with its configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `--config FILE`: run with it.
    Run(PathBuf),
    /// `--check-config FILE`: validate it and exit.
    Check(PathBuf),
}

impl Mode {
    /// From the two options; `None` unless exactly one is given.
    pub fn from_args(config: Option<PathBuf>, check_config: Option<PathBuf>) -> Option<Self> {
        match (config, check_config) {
            (Some(p), None) => Some(Mode::Run(p)),
            (None, Some(p)) => Some(Mode::Check(p)),
            _ => None,
        }
    }

    /// The configuration file.
    pub fn path(&self) -> &Path {
        match self {
            Mode::Run(p) | Mode::Check(p) => p,
        }
    }
}

/// Parses the command line; on failure prints clap's message and returns the exit code
/// (0 for `--help`/`--version`, [`EXIT_USAGE`] otherwise).
pub fn parse_args<A: clap::Parser>() -> Result<A, std::process::ExitCode> {
    A::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            std::process::ExitCode::from(EXIT_USAGE)
        } else {
            std::process::ExitCode::SUCCESS
        }
    })
}

/// Collects problems while validating, to report them all at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// Records that `key` is wrong because of `reason`.
    pub fn add(&mut self, key: &str, reason: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.to_owned(),
            reason: reason.into(),
        });
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems recorded, in order.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigProblem> {
        self.0.iter()
    }

    /// `Ok(value)` when no problem was recorded, else [`ConfigError::Invalid`] for `path`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing every problem.
    pub fn finish<T>(self, path: &Path, value: Option<T>) -> Result<T, ConfigError> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: self.0,
            }),
        }
    }
}

/// Reads `path` as text.
///
/// # Errors
/// [`ConfigError::Read`].
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses `text` (the contents of `path`) into `T`.
///
/// # Errors
/// [`ConfigError::Syntax`] naming the key and line.
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.to_string().trim_end().replace('\n', "\n  "),
    })
}

/// A secret value. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself; only for handing to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a secret from a file (first line) or an environment variable, whichever is given;
/// problems are reported under `{section}.password_file` / `{section}.password_env`.
pub fn secret(
    section: &str,
    file: Option<&Path>,
    var: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<Secret> {
    match (file, var) {
        (Some(_), Some(_)) => {
            problems.add(
                &format!("{section}.password_file"),
                "set either password_file or password_env, not both",
            );
            None
        }
        (Some(file), None) => match std::fs::read_to_string(file) {
            Ok(text) => Some(Secret(text.lines().next().unwrap_or_default().to_owned())),
            Err(e) => {
                problems.add(
                    &format!("{section}.password_file"),
                    format!("cannot read {}: {e}", file.display()),
                );
                None
            }
        },
        (None, Some(var)) => match env(var) {
            Some(value) => Some(Secret(value)),
            None => {
                problems.add(
                    &format!("{section}.password_env"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_all_reported_with_the_file() {
        let mut p = Problems::default();
        p.add("a.b", "bad");
        p.add("c", "worse");
        let err = p.finish(Path::new("x.toml"), Some(1)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("x.toml") && text.contains("a.b: bad") && text.contains("c: worse"));
    }

    #[test]
    fn secrets_never_print() {
        let mut p = Problems::default();
        let s = secret("pg", None, Some("V"), |_| Some("hunter2".into()), &mut p).unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(secret("pg", None, Some("V"), |_| None, &mut p).is_none());
        assert!(!p.is_empty());
    }
}
