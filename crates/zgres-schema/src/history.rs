//! A group's promotion history as read: the `/history/{GROUP}` document, and the promotions
//! recorded beside it (as its children) while it was unreadable.
//!
//! An unreadable history is never overwritten: it may be an operator's mistake worth
//! repairing, or an attack worth investigating. A new primary then records its promotion in a
//! child znode instead, and readers merge both.

use crate::documents::{History, Promotion};
use crate::fetched::Fetched;
use crate::Timeline;

/// What a reader found of a group's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryView {
    /// `/history/{GROUP}` itself.
    pub document: Fetched<History>,
    /// Promotions recorded beside it, in creation order.
    pub beside: Vec<Fetched<Promotion>>,
}

impl HistoryView {
    /// Every readable promotion, oldest first (by the time its primary recorded it).
    pub fn entries(&self) -> Vec<&Promotion> {
        let mut entries: Vec<&Promotion> = self
            .document
            .valid()
            .into_iter()
            .flat_map(|h| h.entries.iter())
            .chain(self.beside.iter().filter_map(Fetched::valid))
            .collect();
        entries.sort_by_key(|p| (p.at_ms, p.timeline));
        entries
    }

    /// The newest timeline any readable promotion names.
    pub fn newest_timeline(&self) -> Option<Timeline> {
        self.entries().iter().map(|p| p.timeline).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::PromotionReason;
    use crate::{decode, Lsn};

    fn promotion(timeline: u32, at_ms: u64) -> Promotion {
        Promotion {
            timeline: Timeline::new(timeline).unwrap(),
            lsn: Lsn::ZERO,
            reason: PromotionReason::Failover,
            at_ms,
            new_primary: "10.0.0.1:5432".parse().unwrap(),
            old_primary: None,
        }
    }

    #[test]
    fn merges_the_document_and_what_was_recorded_beside_it() {
        let garbage = decode::<History>("/zgres/history/main", b"{junk").unwrap_err();
        let view = HistoryView {
            document: Fetched::Unreadable(garbage),
            beside: vec![
                Fetched::Valid(promotion(4, 40)),
                Fetched::Valid(promotion(3, 30)),
            ],
        };
        let timelines: Vec<_> = view.entries().iter().map(|p| p.timeline).collect();
        assert_eq!(
            timelines,
            vec![promotion(3, 0).timeline, promotion(4, 0).timeline]
        );
        assert_eq!(view.newest_timeline(), Some(promotion(4, 0).timeline));

        let repaired = HistoryView {
            document: Fetched::Valid(History {
                entries: vec![promotion(2, 20), promotion(5, 50)],
            }),
            ..view
        };
        assert_eq!(repaired.entries().len(), 4);
        assert_eq!(repaired.newest_timeline(), Some(promotion(5, 0).timeline));
    }
}
