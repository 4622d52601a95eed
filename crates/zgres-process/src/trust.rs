//! Whether a file zgres is about to run or load may be trusted: a hook or a plugin library
//! that someone else can write is someone else's code running with the daemon's rights.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a file is not run or loaded.
#[derive(Debug, thiserror::Error)]
pub enum UntrustedFile {
    /// It cannot be inspected.
    #[error("{}: cannot inspect it: {source}", path.display())]
    Inspect {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Its group or others may write it.
    #[error("{}: writable by its group or others (mode {mode:o}); refusing to run or load it (chmod go-w)", path.display())]
    Writable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It belongs to a user other than root and this daemon's.
    #[error("{}: owned by uid {owner}, neither root nor this daemon's user (uid {ours}); refusing to run or load it", path.display())]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The daemon's effective uid.
        ours: u32,
    },
}

/// Checks that `path` (after symlinks) is owned by root or this process's effective user and
/// is writable by neither its group nor others.
///
/// # Errors
/// [`UntrustedFile`] naming the file and the rule.
pub fn check_trusted(path: &Path) -> Result<(), UntrustedFile> {
    let meta = std::fs::metadata(path).map_err(|source| UntrustedFile::Inspect {
        path: path.to_owned(),
        source,
    })?;
    let ours = nix::unistd::Uid::effective().as_raw();
    if meta.uid() != 0 && meta.uid() != ours {
        return Err(UntrustedFile::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            ours,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(UntrustedFile::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn group_or_world_writable_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        for (mode, ok) in [(0o755, true), (0o700, true), (0o775, false), (0o757, false)] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let result = check_trusted(&file);
            assert_eq!(result.is_ok(), ok, "{mode:o}: {result:?}");
        }
        let error = check_trusted(&dir.path().join("missing")).unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
    }
}
