//! What a standby's own `pg_wal` holds: the end of the newest segment actually written there,
//! for a standby that runs but does not answer yet (recovering, not yet consistent). Its next
//! WAL can come from nowhere else than the primary once it has replayed that far, so when the
//! primary no longer keeps WAL from there it never becomes consistent.
//!
//! Segments PostgreSQL recycled (renamed ahead for later use) keep their old contents: a
//! segment counts as written only when its first page header names its own position. The
//! answer is an upper bound of where the standby's WAL ends, which is the safe side: the core
//! declares WAL missing only when even this is before the primary's oldest kept WAL.

use std::io::Read;
use std::path::Path;

use zgres_schema::Lsn;

/// The first page of a segment has PostgreSQL's long page header: `xlp_pageaddr` (the page's
/// own position) at byte 8 and `xlp_seg_size` at byte 32, both little-endian on the platforms
/// PostgreSQL packages for.
const LONG_HEADER_BYTES: usize = 40;
const PAGE_ADDR_AT: usize = 8;
const SEGMENT_SIZE_AT: usize = 32;

/// The end of the newest WAL segment written in `pg_wal` (any timeline), if any is.
pub fn written_end(pg_wal: &Path) -> Option<Lsn> {
    std::fs::read_dir(pg_wal)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| segment_end(&entry.path()))
        .max()
}

/// The end of the segment at `path` when it is a WAL segment written for its own name.
fn segment_end(path: &Path) -> Option<Lsn> {
    let name = path.file_name()?.to_str()?;
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    let mut header = [0u8; LONG_HEADER_BYTES];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    let page_addr = u64::from_le_bytes(header[PAGE_ADDR_AT..PAGE_ADDR_AT + 8].try_into().ok()?);
    let size = u32::from_le_bytes(
        header[SEGMENT_SIZE_AT..SEGMENT_SIZE_AT + 4]
            .try_into()
            .ok()?,
    );
    let size = u64::from(size);
    // PostgreSQL's sizes are powers of two from 1 MB to 1 GB.
    if !size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&size) {
        return None;
    }
    let start = (log << 32).checked_add(seg.checked_mul(size)?)?;
    (page_addr == start).then(|| Lsn(start + size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 << 20;

    /// A segment file whose first page header says it starts at `page_addr`.
    fn segment(dir: &Path, name: &str, page_addr: u64) {
        let mut data = vec![0u8; 8192];
        data[PAGE_ADDR_AT..PAGE_ADDR_AT + 8].copy_from_slice(&page_addr.to_le_bytes());
        data[SEGMENT_SIZE_AT..SEGMENT_SIZE_AT + 4].copy_from_slice(&(MB16 as u32).to_le_bytes());
        std::fs::write(dir.join(name), data).unwrap();
    }

    #[test]
    fn the_newest_written_segment_counts_and_recycled_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(written_end(dir.path()), None);
        segment(dir.path(), "000000020000000000000003", 3 * MB16);
        segment(dir.path(), "000000020000000000000004", 4 * MB16);
        // Recycled: renamed ahead, still holding segment 1's pages.
        segment(dir.path(), "000000020000000000000009", MB16);
        // Not segments at all.
        std::fs::write(
            dir.path().join("00000002.history"),
            "1\t0/3000000\tno recovery target specified\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("archive_status")).unwrap();
        std::fs::write(
            dir.path().join("000000020000000000000005.partial"),
            [0u8; 64],
        )
        .unwrap();
        assert_eq!(written_end(dir.path()), Some(Lsn(5 * MB16)));
        // A segment of the next 4 GB "log" file.
        segment(dir.path(), "000000020000000100000000", 1 << 32);
        assert_eq!(written_end(dir.path()), Some(Lsn((1 << 32) + MB16)));
    }

    #[test]
    fn short_or_garbage_files_are_not_segments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("000000010000000000000001"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("000000010000000000000002"), [0xffu8; 100]).unwrap();
        assert_eq!(written_end(dir.path()), None);
    }
}
