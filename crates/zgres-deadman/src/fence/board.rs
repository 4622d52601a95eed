//! The fence keeper's deadline board: a small in-memory file (a memfd) the deadman writes the
//! deadline in force to, and the keeper reads when one of its steps falls due.
//!
//! Why: every ZooKeeper confirmation moves the deadline later. Sent as a line on the keeper's
//! pipe, each one woke the keeper (and cost the deadman the wake-up of another process) about
//! once per ping, to learn something it only needs when its graceful or kill step is due.
//! Written here, a confirmation wakes nobody; everything else (arming, disarming, a new target,
//! an earlier deadline) is still a line, which wakes the keeper at once. The board is written
//! before every line, so it never shows a deadline later than the one in force
//! ([`FenceState::with_board_deadline`](zgres_deadman_core::fence_deadline::FenceState::with_board_deadline)).
//!
//! The keeper gets the board as its standard output (the one descriptor besides stdin and
//! stderr that a child can be given without unsafe code); it writes nothing there.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

/// The protocol line that tells the keeper to stop reading the board (the deadman could not
/// write it): it then goes by lines alone, which the deadman sends for every change from then
/// on. A keeper without a board ignores it.
pub const BOARD_OFF_LINE: &str = "board off\n";

/// Mixed into the second word, so that a torn or foreign content is never read as a deadline.
const CHECK: u64 = 0x7a67_7265_735f_666e; // "zgres_fn"

/// How often a read that found the two words disagreeing (a write in progress) is tried again.
const READ_TRIES: usize = 3;

/// One board: the deadline (ns, `CLOCK_MONOTONIC`) and its check word, 16 bytes at offset 0.
#[derive(Debug)]
pub struct DeadlineBoard {
    file: File,
}

impl DeadlineBoard {
    /// A new, empty board (reads as `None` until posted to).
    ///
    /// # Errors
    /// When the kernel cannot create a memfd.
    pub fn create() -> std::io::Result<Self> {
        let fd = nix::sys::memfd::memfd_create(
            c"zgres-fence-deadline",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )?;
        Ok(DeadlineBoard {
            file: File::from(fd),
        })
    }

    /// The board this process was given as its standard output (the keeper's side).
    ///
    /// # Errors
    /// When standard output cannot be duplicated.
    pub fn from_stdout() -> std::io::Result<Self> {
        let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
        Ok(DeadlineBoard {
            file: File::from(fd),
        })
    }

    /// The board a previous image of this process left open at `fd` (see
    /// [`crate::handover`]): reopened as a file of our own, the inherited descriptor closed.
    ///
    /// # Errors
    /// When `/proc/self/fd/{fd}` cannot be opened.
    pub fn adopt(fd: RawFd) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{fd}"))?;
        let _ = nix::unistd::close(fd);
        Ok(DeadlineBoard { file })
    }

    /// A second descriptor for the same board, to give the keeper as its standard output.
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated.
    pub fn share(&self) -> std::io::Result<OwnedFd> {
        self.file.as_fd().try_clone_to_owned()
    }

    /// The descriptor, for a handover across `execve`.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Writes the deadline in force. One `pwrite` to memory: it neither blocks nor wakes anyone.
    ///
    /// # Errors
    /// When the write fails (the kernel is out of memory); the caller must then not rely on
    /// the board.
    pub fn post(&self, deadline_ns: u64) -> std::io::Result<()> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&deadline_ns.to_le_bytes());
        bytes[8..].copy_from_slice(&(deadline_ns ^ CHECK).to_le_bytes());
        self.file.write_all_at(&bytes, 0)
    }

    /// The deadline last posted, or `None` when the board is empty, unreadable or shows
    /// something that is not a posted deadline (a keeper then goes by its lines alone, which
    /// can only make it fence earlier, never later).
    pub fn read(&self) -> Option<u64> {
        for _ in 0..READ_TRIES {
            let mut bytes = [0u8; 16];
            match self.file.read_at(&mut bytes, 0) {
                Ok(16) => {}
                _ => return None,
            }
            let deadline = u64::from_le_bytes(bytes[..8].try_into().ok()?);
            let check = u64::from_le_bytes(bytes[8..].try_into().ok()?);
            if deadline ^ CHECK == check {
                return Some(deadline);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posted_deadline_reads_back_through_a_shared_descriptor() {
        let board = DeadlineBoard::create().unwrap();
        assert_eq!(board.read(), None, "an empty board shows no deadline");
        let keeper_side = DeadlineBoard {
            file: File::from(board.share().unwrap()),
        };
        board.post(123_456_789).unwrap();
        assert_eq!(keeper_side.read(), Some(123_456_789));
        board.post(7).unwrap();
        assert_eq!(keeper_side.read(), Some(7), "the last post wins");
    }

    #[test]
    fn content_that_was_not_posted_is_not_a_deadline() {
        let board = DeadlineBoard::create().unwrap();
        board.post(1_000).unwrap();
        // A torn write, or anything written there by mistake: the check word disagrees.
        board.file.write_all_at(&2_000u64.to_le_bytes(), 0).unwrap();
        assert_eq!(board.read(), None);
        board.file.write_all_at(b"hello, world!!!!", 0).unwrap();
        assert_eq!(board.read(), None);
    }

    #[test]
    fn an_adopted_board_is_the_same_board() {
        let board = DeadlineBoard::create().unwrap();
        let inherited = std::os::fd::IntoRawFd::into_raw_fd(board.share().unwrap());
        let adopted = DeadlineBoard::adopt(inherited).unwrap();
        adopted.post(42).unwrap();
        assert_eq!(board.read(), Some(42));
    }
}
