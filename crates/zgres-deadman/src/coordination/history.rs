//! The group's promotion history in `/history/{GROUP}`: read with what was recorded beside an
//! unreadable document, appended to by compare-and-set, never overwritten because unreadable.

use zgres_schema::documents::{History, Promotion};
use zgres_schema::{encode, Fetched, HistoryView, Znode};
use zgres_zk::{CreateKind, Outcome};

use super::{CoordinationError, Coordinator, Result};

/// How many promotions `/history/{GROUP}` keeps (the oldest are dropped).
const HISTORY_LIMIT: usize = 1000;

impl Coordinator {
    /// Starts `/history/{GROUP}` with `first` (the group's first primary) unless it exists.
    ///
    /// # Errors
    /// As any request.
    pub async fn start_history(&mut self, first: &Promotion) -> Result<()> {
        let path = self.path(Znode::History(self.group.clone()));
        let history = History {
            entries: vec![first.clone()],
        };
        self.cache.invalidate(&path);
        // Already started (by a peer, or by us before a restart): nothing to do.
        self.session
            .create(&path, &encode(&history)?, CreateKind::Persistent)
            .await?;
        Ok(())
    }

    /// Reads `/history/{GROUP}` and the promotions recorded beside it.
    ///
    /// # Errors
    /// As any request.
    pub async fn history(&mut self) -> Result<HistoryView> {
        let path = self.path(Znode::History(self.group.clone()));
        let document = self.read::<History>(&path).await?.map(|(h, _)| h);
        let mut beside = Vec::new();
        if !matches!(document, Fetched::Absent) {
            let mut children = self
                .cache
                .children(&self.session, &path)
                .await?
                .unwrap_or_default();
            children.sort();
            for child in children {
                let child_path = format!("{path}/{child}");
                if !child.starts_with(zgres_schema::paths::HISTORY_BESIDE_NAME) {
                    continue;
                }
                let fetched = self.read::<Promotion>(&child_path).await?;
                beside.push(fetched.map(|(p, _)| p));
            }
        }
        Ok(HistoryView { document, beside })
    }

    /// Appends `promotion` to `/history/{GROUP}` (compare-and-set, retried on a concurrent
    /// change). An unreadable history is kept as found: the promotion is then recorded beside
    /// it, in a persistent sequential child znode.
    ///
    /// # Errors
    /// As any request.
    pub async fn record_promotion(&mut self, promotion: &Promotion) -> Result<()> {
        let path = self.path(Znode::History(self.group.clone()));
        // Only this group's primaries write here, so a conflict is rare; a few tries suffice.
        for _ in 0..5 {
            // Compare-and-set needs the current version, not a cached one.
            self.cache.invalidate(&path);
            let (mut history, version) = match self.read::<History>(&path).await? {
                Fetched::Valid((history, version)) => (history, Some(version)),
                Fetched::Absent => (History::default(), None),
                Fetched::Unreadable(e) => {
                    let prefix = self.layout.history_beside_prefix(&self.group);
                    let created = self
                        .session
                        .create(
                            &prefix,
                            &encode(promotion)?,
                            CreateKind::PersistentSequential,
                        )
                        .await?;
                    let Outcome::Done((_, sequence)) = created else {
                        // The history vanished meanwhile: start again from the top.
                        continue;
                    };
                    tracing::warn!(znode = %path, reason = %e.kind, recorded_at = %format!("{prefix}{sequence}"),
                        "the group's history is unreadable and kept as found; the promotion is recorded beside it");
                    return Ok(());
                }
            };
            history.entries.push(promotion.clone());
            let excess = history.entries.len().saturating_sub(HISTORY_LIMIT);
            history.entries.drain(..excess);
            let data = encode(&history)?;
            let written = match version {
                Some(v) => self.session.set(&path, &data, Some(v)).await?.is_done(),
                None => self
                    .session
                    .create(&path, &data, CreateKind::Persistent)
                    .await?
                    .is_done(),
            };
            if written {
                return Ok(());
            }
        }
        Err(CoordinationError::Contended { path })
    }
}
