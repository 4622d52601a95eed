//! libpq's own rule for a client key file, checked up front: libpq refuses the key at
//! connection time (so a replica silently never streams) when the file is open to more
//! than its rule allows.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::Uid;

/// Why libpq would refuse the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyModeError {
    /// Its mode cannot be read.
    #[error("{0}")]
    Inspect(std::io::Error),
    /// Others may access it (never allowed for a private key).
    #[error(transparent)]
    OpenToOthers(#[from] zgres_config::PrivateKeyFile),
    /// Owned by the user libpq runs as, but its group has access.
    #[error("libpq refuses a key its owner's group may access (mode {0:o}): chmod 0600")]
    GroupAccess(u32),
    /// Owned by root, and its group may write or execute it.
    #[error(
        "libpq refuses a root-owned key its group may write or execute (mode {0:o}): chmod 0640"
    )]
    GroupWrite(u32),
}

/// Checks the key at `path` as libpq does when running as `libpq_user`: owned by that user,
/// mode 0600 or less; owned by root, 0640 or less. Others may never access it.
///
/// # Errors
/// [`KeyModeError`].
pub fn check(path: &Path, libpq_user: Uid) -> Result<(), KeyModeError> {
    zgres_config::check_private_key(path)?;
    let meta = std::fs::metadata(path).map_err(KeyModeError::Inspect)?;
    let mode = meta.mode() & 0o777;
    if meta.uid() == libpq_user.as_raw() && mode & 0o077 != 0 {
        return Err(KeyModeError::GroupAccess(mode));
    }
    if meta.uid() == 0 && mode & 0o030 != 0 {
        return Err(KeyModeError::GroupWrite(mode));
    }
    Ok(())
}
