//! Private key files (TLS) must not be open to others: anyone on the host could otherwise
//! act as the program that presents the key.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Why a private key file is refused.
#[derive(Debug, thiserror::Error)]
pub enum PrivateKeyFile {
    /// Its mode cannot be read.
    #[error("{0}")]
    Inspect(std::io::Error),
    /// Others (not its owner or group) may read, write or run it.
    #[error("a private key others may access (mode {0:o}): chmod o-rwx")]
    OpenToOthers(u32),
}

/// Checks that others may not access the key file at `path` (after symlinks). Its group may
/// read it: Debian's `ssl-cert` group convention (mode 0640) is accepted.
///
/// # Errors
/// [`PrivateKeyFile`].
pub fn check_private_key(path: &Path) -> Result<(), PrivateKeyFile> {
    let mode = std::fs::metadata(path)
        .map_err(PrivateKeyFile::Inspect)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o007 != 0 {
        return Err(PrivateKeyFile::OpenToOthers(mode));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_key_closed_to_others_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let key = dir.join("k.pem");
        std::fs::write(&key, "x").unwrap();
        for (mode, ok) in [(0o600, true), (0o640, true), (0o644, false), (0o602, false)] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(check_private_key(&key).is_ok(), ok, "mode {mode:o}");
        }
        let refused = check_private_key(&key).unwrap_err().to_string();
        assert_eq!(
            refused,
            "a private key others may access (mode 602): chmod o-rwx"
        );
        assert!(check_private_key(&dir.join("missing")).is_err());
    }
}
