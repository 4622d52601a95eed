//! Which OS user runs PostgreSQL, and handing files to it.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (as in CI) the harness runs it
//! as the `postgres` user created by the Debian package; otherwise as the current user.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use crate::{io_error, HarnessError, Result};

/// An unprivileged OS user to run PostgreSQL as.
#[derive(Debug, Clone)]
pub struct OsUser {
    /// User name.
    pub name: String,
    /// User id.
    pub uid: Uid,
    /// Primary group id.
    pub gid: Gid,
}

impl OsUser {
    /// `None` when the current user can run PostgreSQL itself; the `postgres` user when we are
    /// root.
    ///
    /// # Errors
    /// [`HarnessError::Setup`] when running as root and there is no `postgres` user.
    pub fn for_postgres() -> Result<Option<OsUser>> {
        if !Uid::effective().is_root() {
            return Ok(None);
        }
        let user = User::from_name("postgres")
            .map_err(|e| HarnessError::Setup(format!("look up the postgres OS user: {e}")))?
            .ok_or_else(|| {
                HarnessError::Setup(
                    "tests running as root need the 'postgres' OS user to run PostgreSQL \
                     (apt-get install postgresql-15 creates it)"
                        .into(),
                )
            })?;
        Ok(Some(OsUser {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
        }))
    }

    /// `setpriv` arguments that switch to this user before exec.
    pub fn setpriv_args(&self) -> Vec<String> {
        vec![
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            "--init-groups".into(),
        ]
    }

    /// Gives `path` to this user.
    ///
    /// # Errors
    /// When `chown` fails.
    pub fn chown(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid.as_raw()), Some(self.gid.as_raw())).map_err(
            io_error(format!("chown {} to {}", path.display(), self.name)),
        )
    }
}
