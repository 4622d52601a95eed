//! A node's own small disk, for the disk-full fault: a tmpfs holding its data directory (and
//! so `pg_wal`), which the fault fills with a ballast file and empties again.
//!
//! Mounting needs root. Without it the run goes on without disk-full faults and says so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How big each node's disk is: room for the data directory, its WAL and a clone.
const SIZE: &str = "1g";

/// Why a node's disk could not be set up or filled.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The run did not ask for disks of their own (a soak keeps its data on the real disk,
    /// which its load makes slow).
    #[error("a soak keeps the data directories on the machine's disk")]
    NotAsked,
    /// `mount` refused or could not run (not root, no tmpfs).
    #[error("cannot mount a tmpfs at {path}: {why}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// What `mount` said.
        why: String,
    },
    /// Moving the data directory onto the disk, or the ballast, failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A tmpfs mounted beside a data directory, which now lives on it (the old path is a
/// symbolic link, so the deadman's configuration is unchanged). Unmounted when dropped.
#[derive(Debug)]
pub struct NodeDisk {
    mount: PathBuf,
}

impl NodeDisk {
    /// Mounts a tmpfs at `disk` beside the stopped node's `data_dir`, copies the data
    /// directory onto it keeping owners and modes, and leaves a link in its place.
    ///
    /// # Errors
    /// [`DiskError::Mount`] without root or tmpfs (nothing changed then); [`DiskError::Io`]
    /// when the copy fails.
    pub fn place(data_dir: &Path) -> Result<NodeDisk, DiskError> {
        let parent = data_dir.parent().unwrap_or(Path::new("/"));
        let mount = parent.join("disk");
        std::fs::create_dir_all(&mount).map_err(io(&mount))?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={SIZE},mode=0755"))
            .arg("tmpfs")
            .arg(&mount)
            .output();
        match mounted {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let _ = std::fs::remove_dir(&mount);
                return Err(DiskError::Mount {
                    path: mount,
                    why: String::from_utf8_lossy(&o.stderr).trim().to_string(),
                });
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&mount);
                return Err(DiskError::Mount {
                    path: mount,
                    why: e.to_string(),
                });
            }
        }
        let disk = NodeDisk { mount };
        let moved = disk.mount.join("data");
        // `cp -a` keeps the PostgreSQL user as owner when this runs as root.
        let copied = Command::new("cp")
            .arg("-a")
            .arg(data_dir)
            .arg(&moved)
            .status()
            .map_err(io(&moved))?;
        if !copied.success() {
            return Err(DiskError::Io {
                path: moved,
                source: std::io::Error::other(format!("cp -a exited {copied}")),
            });
        }
        std::fs::remove_dir_all(data_dir).map_err(io(data_dir))?;
        std::os::unix::fs::symlink(&moved, data_dir).map_err(io(data_dir))?;
        Ok(disk)
    }

    fn ballast(&self) -> PathBuf {
        self.mount.join("ballast")
    }

    /// Fills every free byte of the disk with a ballast file; returns how many it took.
    ///
    /// # Errors
    /// [`DiskError::Io`] when the ballast cannot be created (a full disk is the goal, not an
    /// error).
    pub fn fill(&self) -> Result<u64, DiskError> {
        let path = self.ballast();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let chunk = vec![0xA5u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(written)
    }

    /// Deletes the ballast, freeing the disk.
    ///
    /// # Errors
    /// [`DiskError::Io`] when it exists and cannot be removed.
    pub fn empty(&self) -> Result<(), DiskError> {
        let path = self.ballast();
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }
}

impl Drop for NodeDisk {
    fn drop(&mut self) {
        // Lazily: PostgreSQL may still hold files there while the group shuts down.
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = std::fs::remove_dir(&self.mount);
    }
}
