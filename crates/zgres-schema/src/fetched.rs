//! What reading one znode found: nothing, a valid document, or data that cannot be trusted.
//!
//! Absent and unreadable are different facts and callers must not merge them: an absent
//! `/config` means the defaults, but an unreadable one means "unknown", and an unreadable
//! document is never overwritten as if it were absent.

use crate::codec::{decode, DecodeError, Document};

/// The outcome of reading one znode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fetched<T> {
    /// The znode does not exist.
    #[default]
    Absent,
    /// The znode holds a valid document.
    Valid(T),
    /// The znode exists but its data is not a valid document.
    Unreadable(DecodeError),
}

impl<T: Document> Fetched<T> {
    /// Decodes the data of the znode at `path` (`None`: the znode does not exist).
    pub fn decode(path: &str, data: Option<&[u8]>) -> Self {
        match data {
            None => Fetched::Absent,
            Some(data) => match decode(path, data) {
                Ok(doc) => Fetched::Valid(doc),
                Err(e) => Fetched::Unreadable(e),
            },
        }
    }
}

impl<T> Fetched<T> {
    /// The document, if valid.
    pub fn valid(&self) -> Option<&T> {
        match self {
            Fetched::Valid(doc) => Some(doc),
            _ => None,
        }
    }

    /// The document, if valid, by value.
    pub fn into_valid(self) -> Option<T> {
        match self {
            Fetched::Valid(doc) => Some(doc),
            _ => None,
        }
    }

    /// Why the znode is unreadable, if it is.
    pub fn error(&self) -> Option<&DecodeError> {
        match self {
            Fetched::Unreadable(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the znode exists but holds no valid document.
    pub fn is_unreadable(&self) -> bool {
        matches!(self, Fetched::Unreadable(_))
    }

    /// Applies `f` to a valid document; absent and unreadable stay as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Fetched<U> {
        match self {
            Fetched::Absent => Fetched::Absent,
            Fetched::Valid(doc) => Fetched::Valid(f(doc)),
            Fetched::Unreadable(e) => Fetched::Unreadable(e),
        }
    }
}

/// Remembers the last unreadable content of each znode, so that a reader reports each distinct
/// bad content once (log line and metric) rather than on every read.
#[derive(Debug, Default)]
pub struct UnreadableFilter {
    last: std::collections::HashMap<String, u64>,
}

impl UnreadableFilter {
    /// Records that `error` was found in `data` at its path; true when this content was not the
    /// last one reported for that path (the caller logs and counts it then).
    pub fn is_new(&mut self, error: &DecodeError, data: &[u8]) -> bool {
        self.is_new_at(&error.path, &error.kind.to_string(), data)
    }

    /// As [`UnreadableFilter::is_new`], for a znode at `path` unusable for `reason`.
    pub fn is_new_at(&mut self, path: &str, reason: &str, data: &[u8]) -> bool {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        data.hash(&mut hasher);
        reason.hash(&mut hasher);
        let key = hasher.finish();
        self.last.insert(path.to_owned(), key) != Some(key)
    }

    /// The znode at `path` was read valid (or was deleted): a later bad content is new again.
    pub fn clear(&mut self, path: &str) {
        self.last.remove(path);
    }

    /// Forgets every path for which `keep` is false (znodes that are gone).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.last.retain(|path, _| keep(path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::GroupConfig;

    #[test]
    fn absent_valid_and_unreadable_stay_distinct() {
        let path = "/zgres/config/main";
        assert_eq!(Fetched::<GroupConfig>::decode(path, None), Fetched::Absent);
        let valid = Fetched::<GroupConfig>::decode(path, Some(br#"{"v":1,"paused":true}"#));
        assert!(valid.valid().is_some_and(|c| c.paused));
        let garbage = Fetched::<GroupConfig>::decode(path, Some(b"{garbage"));
        assert!(garbage.is_unreadable());
        assert!(garbage.error().unwrap().to_string().contains(path));
        assert!(garbage.map(|c| c.paused).is_unreadable());
    }

    #[test]
    fn each_distinct_bad_content_is_new_once() {
        let mut filter = UnreadableFilter::default();
        let path = "/zgres/config/main";
        let error = |data: &[u8]| decode::<GroupConfig>(path, data).unwrap_err();
        assert!(filter.is_new(&error(b"{x"), b"{x"));
        assert!(
            !filter.is_new(&error(b"{x"), b"{x"),
            "same content: reported once"
        );
        assert!(
            filter.is_new(&error(b"{y"), b"{y"),
            "other content: reported again"
        );
        filter.clear(path);
        assert!(
            filter.is_new(&error(b"{y"), b"{y"),
            "bad again after a valid read"
        );
    }
}
