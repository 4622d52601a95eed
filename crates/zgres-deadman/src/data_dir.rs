//! Facts about and edits to the PostgreSQL data directory, while PostgreSQL is stopped or
//! independent of it: `pg_controldata`, `standby.signal`, `primary_conninfo`.

use std::path::{Path, PathBuf};

use zgres_schema::{Lsn, SystemId, Timeline};

use crate::config::PostgresConfig;
use crate::decision::DataDirKind;

/// A data directory problem. Permanent until the operator acts.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Neither empty nor a PostgreSQL data directory: zgres will not touch it.
    #[error(
        "{0} is not empty but not a PostgreSQL data directory (no PG_VERSION); refusing to use it"
    )]
    NotADataDir(PathBuf),
    /// `pg_controldata` failed or printed something unexpected.
    #[error("pg_controldata on {path}: {problem}")]
    ControlData {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        problem: ControlDataProblem,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why `pg_controldata`'s report could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ControlDataProblem {
    /// It could not be started.
    #[error("cannot run it: {0}")]
    Start(std::io::Error),
    /// It exited unsuccessfully.
    #[error("{0}")]
    Failed(String),
    /// A line it always prints is missing.
    #[error("no {0:?} line")]
    MissingField(&'static str),
    /// A line's value cannot be parsed.
    #[error("{field}: cannot parse {value:?}")]
    BadField {
        /// The line.
        field: &'static str,
        /// Its value.
        value: String,
    },
}

/// What `pg_controldata` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlData {
    /// Database system identifier.
    pub system_id: SystemId,
    /// Timeline of the latest checkpoint.
    pub timeline: Timeline,
    /// Location of the latest checkpoint.
    pub checkpoint: Lsn,
    /// The server was shut down cleanly: "shut down" (a primary's last checkpoint is then the
    /// end of its WAL) or "shut down in recovery" (a standby's).
    pub clean_shutdown: bool,
    /// The primary's settings a standby must match or exceed, as last replayed (`None` when
    /// `pg_controldata` does not print them).
    pub hot_standby_limits: Option<HotStandbyLimits>,
}

/// `pg_controldata`'s "... setting" lines: the values of the parameters a standby needs at
/// least as high as its primary's ([`zgres_schema::pg_settings::MUST_MATCH`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotStandbyLimits {
    /// `max_connections`.
    pub max_connections: u64,
    /// `max_worker_processes`.
    pub max_worker_processes: u64,
    /// `max_wal_senders`.
    pub max_wal_senders: u64,
    /// `max_prepared_transactions`.
    pub max_prepared_transactions: u64,
    /// `max_locks_per_transaction`.
    pub max_locks_per_transaction: u64,
}

impl HotStandbyLimits {
    /// The limits by parameter name.
    pub fn by_name(&self) -> [(&'static str, u64); 5] {
        [
            ("max_connections", self.max_connections),
            ("max_worker_processes", self.max_worker_processes),
            ("max_wal_senders", self.max_wal_senders),
            ("max_prepared_transactions", self.max_prepared_transactions),
            ("max_locks_per_transaction", self.max_locks_per_transaction),
        ]
    }
}

/// Runs `pg_controldata` (it reads `global/pg_control`; PostgreSQL need not run).
///
/// # Errors
/// [`DataDirError::ControlData`] when it fails or lacks a field.
pub async fn control_data(config: &PostgresConfig) -> Result<ControlData, DataDirError> {
    let fail = |problem| DataDirError::ControlData {
        path: config.data_dir.clone(),
        problem,
    };
    let output = zgres_process::command(config.bin_dir.join("pg_controldata"))
        .arg("-D")
        .arg(&config.data_dir)
        .env("LC_ALL", "C")
        .output()
        .await
        .map_err(|e| fail(ControlDataProblem::Start(e)))?;
    if !output.status.success() {
        return Err(fail(ControlDataProblem::Failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )));
    }
    parse_control_data(&String::from_utf8_lossy(&output.stdout)).map_err(fail)
}

fn parse_control_data(text: &str) -> Result<ControlData, ControlDataProblem> {
    let field = |name: &'static str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix(':'))
            .map(str::trim)
            .ok_or(ControlDataProblem::MissingField(name))
    };
    fn parsed<T>(
        field: &'static str,
        value: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ControlDataProblem> {
        parse(value).ok_or_else(|| ControlDataProblem::BadField {
            field,
            value: value.to_owned(),
        })
    }
    const SYSTEM_ID: &str = "Database system identifier";
    const TIMELINE: &str = "Latest checkpoint's TimeLineID";
    const CHECKPOINT: &str = "Latest checkpoint location";
    let system_id = parsed(SYSTEM_ID, field(SYSTEM_ID)?, |v| v.parse().ok())?;
    let timeline = parsed(TIMELINE, field(TIMELINE)?, |v| {
        Timeline::new(v.parse().ok()?).ok()
    })?;
    let checkpoint = parsed(CHECKPOINT, field(CHECKPOINT)?, |v| v.parse().ok())?;
    // A standby stopped cleanly says "shut down in recovery": as clean for pg_rewind.
    let clean_shutdown = matches!(
        field("Database cluster state")?,
        "shut down" | "shut down in recovery"
    );
    let limit = |name: &'static str| field(name).ok()?.parse().ok();
    let hot_standby_limits = (|| {
        Some(HotStandbyLimits {
            max_connections: limit("max_connections setting")?,
            max_worker_processes: limit("max_worker_processes setting")?,
            max_wal_senders: limit("max_wal_senders setting")?,
            max_prepared_transactions: limit("max_prepared_xacts setting")?,
            max_locks_per_transaction: limit("max_locks_per_xact setting")?,
        })
    })();
    Ok(ControlData {
        system_id,
        timeline,
        checkpoint,
        clean_shutdown,
        hot_standby_limits,
    })
}

/// Checks that `config.data_dir` is either a PostgreSQL cluster, or empty or absent (to be
/// bootstrapped or cloned).
///
/// # Errors
/// [`DataDirError::NotADataDir`] when it holds other files.
pub fn check_usable(config: &PostgresConfig) -> Result<(), DataDirError> {
    let dir = &config.data_dir;
    if dir.join("PG_VERSION").is_file() {
        return Ok(());
    }
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(DataDirError::NotADataDir(dir.clone())),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataDirError::Io {
            path: dir.clone(),
            source,
        }),
    }
}

/// Whether the data directory starts as a standby or a primary, has no database yet, or was
/// left damaged by an interrupted pg_rewind (its marker, [`rewind_marker`], is still there).
pub fn kind(config: &PostgresConfig) -> DataDirKind {
    if !config.data_dir.join("PG_VERSION").is_file() {
        DataDirKind::Empty
    } else if rewind_marker(config).exists() {
        DataDirKind::Damaged
    } else if config.data_dir.join("standby.signal").exists() {
        DataDirKind::Standby
    } else {
        DataDirKind::Primary
    }
}

/// The file beside the data directory (`{data_dir}.zgres-rewinding`) that exists while
/// pg_rewind may be changing it, and stays when pg_rewind stopped half-way. Beside, not in it:
/// pg_rewind deletes the files its source does not have.
pub fn rewind_marker(config: &PostgresConfig) -> PathBuf {
    let mut name = config.data_dir.as_os_str().to_owned();
    name.push(".zgres-rewinding");
    PathBuf::from(name)
}

/// Where a standby streams from: `primary_conninfo`, and the slot it uses there
/// (`primary_slot_name`; none when `None`).
#[derive(Debug, Clone, Copy)]
pub struct StandbySource<'a> {
    /// `primary_conninfo`.
    pub conninfo: &'a str,
    /// `primary_slot_name`.
    pub slot: Option<&'a str>,
}

/// Prepares a stopped data directory to start as a standby: `standby.signal`, and
/// `primary_conninfo` and `primary_slot_name` in `postgresql.auto.conf` when `source` is
/// given (otherwise what is there stays). A `synchronous_standby_names` left there from a
/// term as primary is removed: a standby ignores it, but if this node is promoted again its
/// first commits would wait for the standbys of that old term (perhaps the node just lost)
/// until the synchronous keeper sets it anew (`/sync` claims nothing of a new primary's
/// commits until then either way).
///
/// # Errors
/// [`DataDirError::Io`] when a file cannot be written.
pub fn make_standby(
    config: &PostgresConfig,
    source: Option<StandbySource<'_>>,
) -> Result<(), DataDirError> {
    let signal = config.data_dir.join("standby.signal");
    write_owned(config, &signal, b"")?;
    let auto = config.data_dir.join("postgresql.auto.conf");
    let old = std::fs::read_to_string(&auto).unwrap_or_default();
    let replaced = |l: &str| {
        let l = l.trim_start();
        l.starts_with("synchronous_standby_names")
            || (source.is_some()
                && (l.starts_with("primary_conninfo") || l.starts_with("primary_slot_name")))
    };
    let mut text: String = old
        .lines()
        .filter(|l| !replaced(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(source) = source {
        text.push_str(&format!(
            "primary_conninfo = {}\n",
            config_file_literal(source.conninfo)
        ));
        if let Some(slot) = source.slot {
            text.push_str(&format!(
                "primary_slot_name = {}\n",
                config_file_literal(slot)
            ));
        }
    }
    if text != old {
        write_owned(config, &auto, text.as_bytes())?;
    }
    Ok(())
}

/// Writes `data` to `path` and gives the file to the data directory's owner.
///
/// # Errors
/// [`DataDirError::Io`] naming `path`.
pub(crate) fn write_owned(
    config: &PostgresConfig,
    path: &Path,
    data: &[u8],
) -> Result<(), DataDirError> {
    let io = |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::write(path, data).map_err(io)?;
    give_to_owner(config, path).map_err(io)
}

/// Makes `path` belong to the data directory's owner (`postgres.run_as`), when one is set.
///
/// # Errors
/// The OS error of `chown`.
pub fn give_to_owner(config: &PostgresConfig, path: &Path) -> std::io::Result<()> {
    match config.run_as_user() {
        Some(user) => {
            std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        }
        None => Ok(()),
    }
}

/// A SQL string literal (for `ALTER SYSTEM`; with `standard_conforming_strings`, a backslash
/// is an ordinary character there).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A string literal for PostgreSQL's configuration files, whose parser reads a backslash as
/// an escape: both the quote and the backslash are doubled.
pub fn config_file_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The port of the PostgreSQL running on `config`'s data directory (the fourth line of
/// `postmaster.pid`, while the postmaster it names is alive).
pub fn running_port(config: &PostgresConfig) -> Option<u16> {
    foreign_postmaster(config)?;
    let text = std::fs::read_to_string(config.data_dir.join("postmaster.pid")).ok()?;
    text.lines().nth(3)?.trim().parse().ok()
}

/// The pid in `postmaster.pid` if that process is alive: a PostgreSQL we did not start.
pub fn foreign_postmaster(config: &PostgresConfig) -> Option<i32> {
    let text = std::fs::read_to_string(config.data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "postgres").then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg_controldata_output() {
        let text = "pg_control version number:            1300\n\
                    Database system identifier:           7312345678901234567\n\
                    Database cluster state:               in production\n\
                    Latest checkpoint location:           0/3000060\n\
                    Latest checkpoint's TimeLineID:       3\n";
        let c = parse_control_data(text).unwrap();
        assert_eq!(c.system_id, SystemId(7_312_345_678_901_234_567));
        assert_eq!(c.timeline.get(), 3);
        assert_eq!(c.checkpoint, "0/3000060".parse().unwrap());
        assert!(!c.clean_shutdown);
        for (state, clean) in [
            ("shut down", true),
            ("shut down in recovery", true),
            ("in archive recovery", false),
        ] {
            let text = format!("{text}Database cluster state:               {state}\n")
                .replace("Database cluster state:               in production\n", "");
            assert_eq!(
                parse_control_data(&text).unwrap().clean_shutdown,
                clean,
                "{state}"
            );
        }
        assert!(parse_control_data("nothing").is_err());
        assert_eq!(
            c.hot_standby_limits, None,
            "older output: no limits, no error"
        );
        let limits = format!(
            "{text}max_connections setting:              200\n\
             max_worker_processes setting:         8\n\
             max_wal_senders setting:              10\n\
             max_prepared_xacts setting:           0\n\
             max_locks_per_xact setting:           64\n"
        );
        let c = parse_control_data(&limits).unwrap();
        assert_eq!(
            c.hot_standby_limits.map(|l| l.by_name()),
            Some([
                ("max_connections", 200),
                ("max_worker_processes", 8),
                ("max_wal_senders", 10),
                ("max_prepared_transactions", 0),
                ("max_locks_per_transaction", 64),
            ])
        );
    }

    #[test]
    fn a_standby_keeps_no_synchronous_standby_names_of_an_old_term_as_primary() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::test_config::postgres_in(dir.path());
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let auto = config.data_dir.join("postgresql.auto.conf");
        std::fs::write(
            &auto,
            "# Do not edit this file manually!\nsynchronous_standby_names = '\"10.0.0.9:5432\"'\nwork_mem = '8MB'\nprimary_slot_name = 'old'\n",
        )
        .unwrap();
        make_standby(&config, None).unwrap();
        let text = std::fs::read_to_string(&auto).unwrap();
        assert!(!text.contains("synchronous_standby_names"), "{text}");
        assert!(
            text.contains("work_mem = '8MB'") && text.contains("primary_slot_name = 'old'"),
            "{text}"
        );
        assert!(config.data_dir.join("standby.signal").exists());
        let source = StandbySource {
            conninfo: "host=10.0.0.2 port=5432",
            slot: Some("zgres_10_0_0_1_5432"),
        };
        make_standby(&config, Some(source)).unwrap();
        let text = std::fs::read_to_string(&auto).unwrap();
        assert!(
            text.contains("primary_slot_name = 'zgres_10_0_0_1_5432'"),
            "{text}"
        );
        assert!(
            !text.contains("'old'")
                && text.contains("primary_conninfo = 'host=10.0.0.2 port=5432'"),
            "{text}"
        );
        let without = StandbySource {
            slot: None,
            ..source
        };
        make_standby(&config, Some(without)).unwrap();
        assert!(!std::fs::read_to_string(&auto)
            .unwrap()
            .contains("primary_slot_name"));
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(quote_literal("a'b"), "'a''b'");
        assert_eq!(config_file_literal(r"a'b\c"), r"'a''b\\c'");
    }
}
