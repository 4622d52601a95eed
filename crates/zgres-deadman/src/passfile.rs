//! The password of `postgres.user` for PostgreSQL's own connections (the WAL receiver,
//! pg_basebackup, pg_rewind), kept in a libpq password file so that it never appears in
//! `primary_conninfo` (which `postgresql.auto.conf`, backups and `SHOW` reveal).
//!
//! The file sits beside the data directory (`{data_dir}.pgpass`, in the directory that holds
//! the data directory, which the deadman and PostgreSQL's user own), mode 0600, owned by
//! PostgreSQL's user. It is written to a fresh file created exclusively in that directory and
//! renamed into place, so no other user can have opened it or swapped it for a link.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::PostgresConfig;
use crate::data_dir::give_to_owner;

/// Why the password file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the password file {path}: {source}")]
pub struct PassfileError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

/// Where the password file for `config` lives (whether or not a password is configured).
pub fn path(config: &PostgresConfig) -> PathBuf {
    let mut name = config
        .data_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "data".into());
    name.push(".pgpass");
    config.data_dir.with_file_name(name)
}

/// The one line of the file: any host, port and database, for `user` (`:` and `\` escaped as
/// libpq requires).
fn line(user: &str, password: &str) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:*:{}:{}\n", escape(user), escape(password))
}

/// Writes the password file when a password is configured (and removes a stale one when
/// not). Returns its path when there is one.
///
/// # Errors
/// [`PassfileError`] when the file cannot be created, written, handed to PostgreSQL's user or
/// moved into place.
pub fn write(config: &PostgresConfig) -> Result<Option<PathBuf>, PassfileError> {
    let target = path(config);
    let fail = |source| PassfileError {
        path: target.clone(),
        source,
    };
    let Some(password) = &config.password else {
        match std::fs::remove_file(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
            _ => return Ok(None),
        }
    };
    let file = private_file(
        config,
        ".zgres-pgpass-",
        &line(&config.user, password.expose()),
    )
    .map_err(fail)?;
    file.persist(&target).map_err(|e| fail(e.error))?;
    Ok(Some(target))
}

/// Creates a file holding `secret` exclusively in the password file's directory (mode 0600,
/// owned by PostgreSQL's user), for a tool that reads a secret from a file (initdb's
/// `--pwfile`). It is removed when the returned handle is dropped.
///
/// # Errors
/// [`PassfileError`] as [`write`].
pub fn secret_file(
    config: &PostgresConfig,
    secret: &str,
) -> Result<tempfile::NamedTempFile, PassfileError> {
    private_file(config, ".zgres-secret-", secret).map_err(|source| PassfileError {
        // The directory it is created in: the file itself has no name yet.
        path: path(config)
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default(),
        source,
    })
}

/// A new file holding `contents` in the password file's directory: created exclusively with
/// mode 0600 (tempfile), synced, and handed to PostgreSQL's user. Removed when dropped.
fn private_file(
    config: &PostgresConfig,
    prefix: &str,
    contents: &str,
) -> std::io::Result<tempfile::NamedTempFile> {
    let target = path(config);
    let dir = target.parent().unwrap_or(Path::new("/"));
    let mut file = tempfile::Builder::new().prefix(prefix).tempfile_in(dir)?;
    file.write_all(contents.as_bytes())?;
    file.as_file().sync_all()?;
    give_to_owner(config, file.path())?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_in_the_user_and_password_are_escaped() {
        assert_eq!(
            line("post:gres", r"a\b:c"),
            "*:*:*:post\\:gres:a\\\\b\\:c\n"
        );
    }
}
