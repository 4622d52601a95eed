//! The group's `pg_hba` lines (`/config` `postgresql.pg_hba`) as a marked block at the end of
//! the node's `pg_hba.conf`. PostgreSQL takes the first record that matches, so the node's own
//! lines, before the block, win over the group's, as its parameters do. PostgreSQL 15's
//! `pg_hba.conf` cannot include another file, hence a block the deadman owns.

use crate::config::PostgresConfig;
use crate::data_dir::{self, DataDirError};

const BEGIN: &str = "# BEGIN zgres: /config postgresql.pg_hba (rewritten by zgres-deadman)";
const END: &str = "# END zgres";

/// Rewrites the block in `pg_hba.conf` to hold `lines` (no block when empty). Returns whether
/// the file changed.
///
/// # Errors
/// [`DataDirError::Io`] naming the file.
pub fn write(config: &PostgresConfig, lines: &[String]) -> Result<bool, DataDirError> {
    let path = config.data_dir.join("pg_hba.conf");
    let old = match std::fs::read_to_string(&path) {
        // Nothing to write, nothing to remove (e.g. an hba_file elsewhere).
        Err(e) if lines.is_empty() && e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        read => read.map_err(|source| DataDirError::Io {
            path: path.clone(),
            source,
        })?,
    };
    let new = with_block(&old, lines);
    if new == old {
        return Ok(false);
    }
    data_dir::write_owned(config, &path, new.as_bytes())?;
    Ok(true)
}

/// `text` without any earlier block, then the block for `lines`.
fn with_block(text: &str, lines: &[String]) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        match line {
            BEGIN => inside = true,
            END if inside => inside = false,
            _ if !inside => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    if !lines.is_empty() {
        out.push_str(BEGIN);
        out.push('\n');
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_is_replaced_in_place_and_removed_when_empty() {
        let own = "local all all peer\nhost all all 127.0.0.1/32 trust\n";
        let one = with_block(own, &["host all all 10.0.0.0/8 scram-sha-256".into()]);
        assert!(one.starts_with(own), "the node's lines come first: {one}");
        assert_eq!(one.matches(BEGIN).count(), 1);
        let two = with_block(&one, &["hostssl all all 10.1.0.0/16 cert".into()]);
        assert!(
            !two.contains("10.0.0.0/8") && two.contains("10.1.0.0/16"),
            "{two}"
        );
        assert_eq!(two.matches(BEGIN).count(), 1);
        assert_eq!(with_block(&two, &[]), own);
        assert_eq!(with_block(own, &[]), own, "nothing set: untouched");
    }
}
