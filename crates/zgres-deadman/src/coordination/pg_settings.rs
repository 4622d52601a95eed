//! `/pg_settings/{GROUP}`: what the primary's PostgreSQL accepts, for `zgresctl config set`.

use zgres_schema::pg_settings::PgSettingsCatalog;
use zgres_schema::{encode, Znode};
use zgres_zk::{CreateKind, Outcome};

use super::{Coordinator, Result};

impl Coordinator {
    /// Writes `catalog` to `/pg_settings/{GROUP}`, creating it if needed. Only the lock
    /// holder calls this, so the last writer is the current primary.
    ///
    /// # Errors
    /// As any request.
    pub async fn publish_pg_settings(&mut self, catalog: &PgSettingsCatalog) -> Result<()> {
        let path = self.path(Znode::PgSettings(self.group.clone()));
        let data = encode(catalog)?;
        if let Outcome::NotFound = self.session.set(&path, &data, None).await? {
            self.session
                .create(&path, &data, CreateKind::Persistent)
                .await?;
        }
        Ok(())
    }
}
