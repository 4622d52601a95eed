//! Following the group's cluster-wide PostgreSQL settings (`/config` `postgresql`): which of
//! them this node writes is the core's rule ([`crate::cluster_settings::applicable`]); this
//! reads the catalog it needs from the local server, keeps a copy in the data directory (so
//! a start before the first connection, and a clone, have one), publishes it for zgresctl
//! while this node holds the lock, and rewrites the files and reloads PostgreSQL on a change.

use zgres_schema::pg_settings::PgSettingsCatalog;

use super::Daemon;
use crate::cluster_settings::applicable;
use crate::data_dir;

/// The catalog's copy in the data directory (written by this deadman only).
const CATALOG_FILE: &str = "zgres.pg_settings.json";

/// What the deadman knows of its server's `pg_settings`.
#[derive(Debug, Default)]
pub(super) struct CatalogState {
    catalog: Option<PgSettingsCatalog>,
    /// Read from the running server since it started.
    read_since_start: bool,
    /// Written to `/pg_settings/{GROUP}` since it was read.
    published: bool,
}

impl CatalogState {
    /// Forgets that the catalog is current: the server (maybe a new version) restarted.
    pub(super) fn server_started(&mut self) {
        self.read_since_start = false;
    }
}

impl Daemon {
    /// The copy kept in the data directory, if there is a readable one.
    pub(super) fn load_catalog_copy(&mut self) {
        let path = self.config.postgres.data_dir.join(CATALOG_FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            match zgres_schema::decode::<PgSettingsCatalog>(
                &path.display().to_string(),
                text.as_bytes(),
            ) {
                Ok(catalog) => self.live.catalog.catalog = Some(catalog),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring the saved pg_settings catalog; it is read again once PostgreSQL runs")
                }
            }
        }
    }

    /// Reads the catalog from the running server once per start, and keeps a copy.
    pub(super) async fn refresh_catalog(&mut self) {
        if self.live.catalog.read_since_start {
            return;
        }
        match self.pg.client.settings_catalog().await {
            Ok(catalog) => {
                let path = self.config.postgres.data_dir.join(CATALOG_FILE);
                match zgres_schema::encode(&catalog) {
                    Ok(data) => {
                        if let Err(error) =
                            data_dir::write_owned(&self.config.postgres, &path, &data)
                        {
                            tracing::warn!(%error, "cannot keep a copy of the pg_settings catalog");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot encode the pg_settings catalog to keep a copy")
                    }
                }
                let changed = self.live.catalog.catalog.as_ref() != Some(&catalog);
                self.live.catalog = super::cluster_settings::CatalogState {
                    catalog: Some(catalog),
                    read_since_start: true,
                    published: self.live.catalog.published && !changed,
                };
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read pg_settings; asking again next round")
            }
        }
    }

    /// While this node holds the lock: publishes the catalog once per reading.
    pub(super) async fn publish_catalog(&mut self) {
        let catalog = match &self.live.catalog {
            CatalogState {
                catalog: Some(catalog),
                read_since_start: true,
                published: false,
            } => catalog.clone(),
            _ => return,
        };
        let Some(session) = self.zk.session.as_mut() else {
            return;
        };
        match session.coordinator.publish_pg_settings(&catalog).await {
            Ok(()) => self.live.catalog.published = true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot publish the pg_settings catalog; trying again next round")
            }
        }
    }

    /// Recomputes the cluster-wide settings this node writes from the group config in force,
    /// the local parameters and the catalog; when they changed and PostgreSQL runs, rewrites
    /// its files and reloads it (otherwise the next start writes them). Returns whether it
    /// did.
    pub(super) async fn follow_cluster_settings(&mut self) -> bool {
        if !self.core.config_in_force.is_known() {
            // Not read yet: the files keep what they have.
            return false;
        }
        let group = self.core.config_in_force.effective().postgresql;
        let wanted = applicable(
            &group,
            self.live.catalog.catalog.as_ref(),
            self.config.postgres.parameters.keys().map(String::as_str),
        );
        if wanted.left_out != self.pg.process.cluster().left_out {
            for line in &wanted.left_out {
                tracing::warn!(problem = %line, "a cluster-wide PostgreSQL setting is not applied on this node");
            }
        }
        if self.pg.process.set_cluster(wanted) {
            tracing::info!("the group's PostgreSQL settings changed");
            self.apply_parameters().await;
            return true;
        }
        false
    }

    /// Why cluster-wide settings are left out on this node, for `/state` warnings.
    pub(super) fn cluster_settings_left_out(&self) -> &[String] {
        &self.pg.process.cluster().left_out
    }
}
