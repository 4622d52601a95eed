//! Documents as last decoded, kept while the bytes read for them stay the same.
//!
//! An idle round reads every znode it needs from the watch cache, and decoding them all
//! again (JSON, schema checks) was the largest part of an idle deadman's own work. A document
//! is decoded and checked once per distinct content; a changed content (a watch fired and the
//! cache re-read it) is decoded afresh. Nothing is trusted more for being remembered: the
//! remembered outcome is the one the checks gave for exactly these bytes.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use zgres_schema::{DecodeError, Document, Fetched, UnreadableFilter};

/// Decodes what the deadman reads: each distinct content once, each unreadable one logged
/// and counted once.
pub(super) struct Decoder {
    memo: DecodedDocuments,
    /// Bad contents already reported, so each is logged once, not every round.
    reported: UnreadableFilter,
    /// Counts each distinct unreadable content reported (a metric; shared across sessions).
    unreadable_total: Arc<AtomicU64>,
}

impl Decoder {
    /// A decoder that counts what it reports in `unreadable_total`.
    pub(super) fn new(unreadable_total: Arc<AtomicU64>) -> Self {
        Decoder {
            memo: DecodedDocuments::default(),
            reported: UnreadableFilter::default(),
            unreadable_total,
        }
    }

    /// Decodes `data` read at `path` (or gives what the same bytes gave last time), reporting
    /// it when unreadable.
    pub(super) fn decode<T: Document + Clone + Send + 'static>(
        &mut self,
        path: &str,
        data: &[u8],
    ) -> Fetched<T> {
        if let Some(known) = self.memo.get::<T>(path, data) {
            return known;
        }
        let fetched = Fetched::decode(path, Some(data));
        match &fetched {
            Fetched::Unreadable(e) => self.report(e, data),
            _ => self.reported.clear(path),
        }
        self.memo.put(path, data, fetched.clone());
        fetched
    }

    /// Logs (once per distinct content) and counts an unreadable or unusable znode.
    pub(super) fn report(&mut self, error: &DecodeError, data: &[u8]) {
        if self.reported.is_new(error, data) {
            self.unreadable_total.fetch_add(1, Ordering::Relaxed);
            tracing::error!(znode = %error.path, reason = %error.kind, "ignoring unreadable znode");
        }
    }

    /// What was read at `path` passed every check and is used: a later bad content there is
    /// new again, even the very bytes reported before (a remembered decode skips the clearing
    /// a fresh valid decode does).
    pub(super) fn usable(&mut self, path: &str) {
        self.reported.clear(path);
    }

    /// `path` does not exist: a later bad content there is new again.
    pub(super) fn absent(&mut self, path: &str) {
        self.reported.clear(path);
        self.memo.forget(path);
    }
}

/// More paths than a group's reads ever touch (its own znodes, one state per member, the
/// history's promotions); past it everything is forgotten, so a flood of hostile children
/// cannot grow the memory without bound.
const MOST_PATHS: usize = 4096;

/// Per path: the bytes decoded and what decoding them gave (a `Fetched<T>`).
#[derive(Default)]
struct DecodedDocuments {
    entries: HashMap<String, (Vec<u8>, Box<dyn Any + Send>)>,
}

impl DecodedDocuments {
    /// What decoding `data` as a `T` gave last time, if `path` was last decoded from exactly
    /// these bytes as that type.
    fn get<T: Clone + 'static>(&self, path: &str, data: &[u8]) -> Option<Fetched<T>> {
        let (bytes, decoded) = self.entries.get(path)?;
        if bytes.as_slice() != data {
            return None;
        }
        decoded.downcast_ref::<Fetched<T>>().cloned()
    }

    /// Remembers what decoding `data` read at `path` gave.
    fn put<T: Send + 'static>(&mut self, path: &str, data: &[u8], decoded: Fetched<T>) {
        if self.entries.len() >= MOST_PATHS && !self.entries.contains_key(path) {
            self.entries.clear();
        }
        self.entries
            .insert(path.to_owned(), (data.to_vec(), Box::new(decoded)));
    }

    /// Forgets `path` (it no longer exists).
    fn forget(&mut self, path: &str) {
        self.entries.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zgres_schema::documents::GroupConfig;
    use zgres_schema::DecodeErrorKind;

    #[test]
    fn each_bad_content_is_counted_once_and_again_after_a_good_spell() {
        let total = Arc::new(AtomicU64::new(0));
        let mut decoder = Decoder::new(total.clone());
        let count = || total.load(Ordering::Relaxed);
        let garbage = b"{garbage";
        for _ in 0..3 {
            assert!(decoder.decode::<GroupConfig>("/c", garbage).is_unreadable());
        }
        assert_eq!(count(), 1, "the same garbage, read three times");
        let valid = br#"{"v":1,"paused":true}"#;
        assert!(decoder.decode::<GroupConfig>("/c", valid).valid().is_some());
        decoder.decode::<GroupConfig>("/c", garbage);
        assert_eq!(count(), 2, "garbage again after a valid content");

        // A content that decodes but must not be used (say, a persistent peer state).
        let unusable = DecodeError {
            path: "/s".into(),
            kind: DecodeErrorKind::Field {
                field: "v".into(),
                message: "not ephemeral".into(),
            },
        };
        decoder.report(&unusable, b"state");
        decoder.report(&unusable, b"state");
        assert_eq!(count(), 3, "reported once");
        decoder.usable("/s");
        decoder.report(&unusable, b"state");
        assert_eq!(count(), 4, "again after it was usable in between");
    }

    #[test]
    fn a_document_is_remembered_only_for_the_same_bytes_and_type() {
        let mut memo = DecodedDocuments::default();
        memo.put("/a", b"one", Fetched::Valid(1u32));
        assert_eq!(memo.get::<u32>("/a", b"one"), Some(Fetched::Valid(1)));
        assert_eq!(memo.get::<u32>("/a", b"two"), None, "other bytes");
        assert_eq!(memo.get::<u64>("/a", b"one"), None, "another type");
        assert_eq!(memo.get::<u32>("/b", b"one"), None, "another path");
        memo.forget("/a");
        assert_eq!(memo.get::<u32>("/a", b"one"), None, "forgotten");
    }

    #[test]
    fn past_the_bound_everything_is_forgotten() {
        let mut memo = DecodedDocuments::default();
        for i in 0..MOST_PATHS {
            memo.put(&format!("/{i}"), b"x", Fetched::Valid(i));
        }
        assert_eq!(memo.get::<usize>("/0", b"x"), Some(Fetched::Valid(0)));
        memo.put("/one-more", b"x", Fetched::Valid(0usize));
        assert_eq!(memo.get::<usize>("/0", b"x"), None);
        assert_eq!(memo.entries.len(), 1);
    }
}
