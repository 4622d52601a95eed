//! Where a timeline began, from the server's own timeline history file: the exact fork point
//! a promotion records in the group's history (the position observed before promoting may be
//! a little short of it: the server replays what it had received before it switches).

use zgres_schema::{Lsn, Timeline};

use super::{timed, ClientError, PostgresClient};

impl PostgresClient {
    /// Where `timeline` began: the switch point on the last line of its history file in
    /// `pg_wal`. `None` for the first timeline (it has no history file) or a file without a
    /// readable entry.
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL does not answer or cannot read the file.
    pub async fn timeline_start(&mut self, timeline: Timeline) -> Result<Option<Lsn>, ClientError> {
        if timeline == Timeline::FIRST {
            return Ok(None);
        }
        let client = self.client().await?;
        let file = format!("pg_wal/{:08X}.history", timeline.get());
        let row = timed(client.query_one("SELECT pg_read_file($1)", &[&file])).await??;
        Ok(switch_point(row.get::<_, &str>(0), timeline))
    }
}

/// Where `timeline` began, from its history file's text: each entry is a parent timeline,
/// the position where it switched to the next one, and a reason, tab-separated; comments
/// start with `#`. The last entry must be the switch from the timeline just before;
/// otherwise (or when it does not parse) `None`: an earlier entry's position would be an
/// earlier timeline's start.
fn switch_point(text: &str, timeline: Timeline) -> Option<Lsn> {
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !line.starts_with('#'))?;
    let mut fields = last.split('\t').map(str::trim);
    let parent: u32 = fields.next()?.parse().ok()?;
    let position: Lsn = fields.next()?.parse().ok()?;
    (parent.checked_add(1) == Some(timeline.get())).then_some(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tl(n: u32) -> Timeline {
        Timeline::new(n).unwrap()
    }

    #[test]
    fn the_last_entry_names_where_the_timeline_began() {
        let text = "1\t0/402EAD8\tno recovery target specified\n\n\
                    2\t0/5000120\tno recovery target specified\n";
        assert_eq!(
            switch_point(text, tl(3)),
            Some("0/5000120".parse().unwrap())
        );
    }

    #[test]
    fn comments_blank_lines_and_garbage_give_nothing() {
        assert_eq!(switch_point("", tl(2)), None);
        assert_eq!(switch_point("# a comment\n\n", tl(2)), None);
        assert_eq!(switch_point("1 0/402EAD8 no tabs\n", tl(2)), None);
        assert_eq!(switch_point("1\tnot-an-lsn\tx\n", tl(2)), None);
    }

    #[test]
    fn a_garbled_last_entry_is_not_replaced_by_an_earlier_one() {
        let text = "1\t0/402EAD8\treason\n2\t???\treason\n";
        assert_eq!(switch_point(text, tl(3)), None);
    }

    #[test]
    fn an_entry_from_another_parent_is_not_this_timelines_start() {
        assert_eq!(switch_point("1\t0/402EAD8\treason\n", tl(3)), None);
    }
}
