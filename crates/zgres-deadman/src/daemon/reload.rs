//! Applying a reloaded configuration file while PostgreSQL keeps running: the pure comparison
//! ([`Reload`]) says what changes; this hands each live setting to the part that uses it.
//! Nothing here stops PostgreSQL, touches the lock or the ZooKeeper session.

use std::time::{Duration, Instant};

use super::Daemon;
use crate::api;
use crate::callbacks_due::{CallbackAction, Running};
use crate::config::reload::Reload;
use crate::config::Config;
use crate::plugins;
use crate::provisioning::Provisioner;

/// PostgreSQL applies `pg_reload_conf()` asynchronously: what it made of the files is asked
/// this long after.
pub(super) const SETTINGS_CHECK_DELAY: Duration = Duration::from_millis(200);

impl Daemon {
    /// Applies `new` (validated): live settings now, restart-only ones reported and kept at
    /// their running values. A live part that cannot take its new setting (a plugin library
    /// that does not load, an API address in use) keeps its running one, logged as an error.
    pub(super) async fn reload(&mut self, new: Config) {
        let Reload {
            mut config,
            applied,
            restart_needed,
        } = Reload::between(&self.config, new);
        let changed = |key: &str| applied.contains(&key);
        let t = config.timing;
        self.core.decider.reconfigure(
            config.tags.clone(),
            t.primary_restart_timeout,
            t.election_wait,
            t.request_timeout,
        );
        self.core
            .decider
            .set_reclone(crate::provisioning::reclone_rules(&config.provisioning));
        if changed("log.level") {
            let level = &config.log.level;
            if !self
                .live
                .reloads
                .log_level
                .as_ref()
                .is_some_and(|l| l.set(level))
            {
                tracing::warn!(level, "log.level not applied: RUST_LOG sets the level");
            }
        }
        if changed("plugin") || changed("timing.plugin_interval_ms") {
            self.replace_plugins(&mut config);
        }
        if changed("callbacks") {
            if let Err(e) = self
                .out
                .callbacks
                .set_config(config.hooks.callbacks.clone())
            {
                tracing::error!(error = %e, "reload: the new callbacks cannot be used; the running ones stay");
                config.hooks.callbacks = self.config.hooks.callbacks.clone();
            }
        }
        let listen = |c: &Config| c.api.as_ref().map(|a| a.listen);
        if listen(&self.config) != listen(&config) {
            self.replace_api(&mut config).await;
        } else if config.api.is_some() {
            // Same socket: the certificate files are read again (rotated under the same names).
            self.refresh_api_tls(&mut config);
        }
        if changed("provisioning") {
            self.pg.provisioner =
                Provisioner::new(config.postgres.clone(), config.provisioning.clone());
        }
        if changed("postgres.parameters") {
            self.pg
                .process
                .set_parameters(config.postgres.parameters.clone());
            self.config.postgres.parameters = config.postgres.parameters.clone();
            if !self.follow_cluster_settings().await {
                self.apply_parameters().await;
            }
        }
        self.config = config;
        if applied.is_empty() {
            tracing::info!("configuration reloaded: no live setting changed");
        } else {
            tracing::info!(changed = ?applied, "configuration reloaded");
        }
        if !restart_needed.is_empty() {
            tracing::warn!(
                settings = ?restart_needed,
                "these settings changed in the file but take effect only when the deadman restarts; they keep their running values"
            );
        }
        self.live.restart_needed = restart_needed;
    }

    fn replace_plugins(&mut self, config: &mut Config) {
        let stop = self.shutdown.child_token();
        match plugins::start(
            &config.hooks.plugins,
            config.timing.plugin_interval,
            stop.clone(),
        ) {
            Ok(plugins) => {
                self.live.plugins_stop.cancel();
                self.live.plugins = plugins;
                self.live.plugins_stop = stop;
            }
            Err(e) => {
                tracing::error!(error = %e, "reload: the new plugin settings cannot be used; the running plugins stay");
                config.hooks.plugins = self.config.hooks.plugins.clone();
                config.timing.plugin_interval = self.config.timing.plugin_interval;
            }
        }
    }

    /// Re-reads the API's certificate into the running server; a file that fails keeps the
    /// running TLS.
    fn refresh_api_tls(&mut self, config: &mut Config) {
        let Some(api_config) = &config.api else {
            return;
        };
        match api::tls_acceptor(api_config) {
            Ok(acceptor) => {
                let https = acceptor.is_some();
                self.live.api_tls.replace(acceptor);
                tracing::info!(https, "health API: TLS settings read again");
            }
            Err(e) => {
                tracing::error!(error = %e, "reload: the health API's certificate cannot be used; it keeps the running one");
                config.api = self.config.api.clone();
            }
        }
    }

    /// The new server is listening before the old one stops, so a load balancer's checks
    /// never find nothing at both addresses.
    async fn replace_api(&mut self, config: &mut Config) {
        let stop = self.shutdown.child_token();
        let started = match &config.api {
            Some(api_config) => api::serve(
                api_config,
                self.out.status.subscribe(),
                self.fence.clone(),
                stop.clone(),
            )
            .await
            .map(Some)
            .map_err(|e| (api_config.listen, e)),
            None => Ok(None),
        };
        match started {
            Ok(tls) => {
                self.live.api_stop.cancel();
                self.live.api_stop = stop;
                self.live.api_tls = tls.unwrap_or_default();
            }
            Err((addr, e)) => {
                tracing::error!(%addr, error = %e, "reload: the health API cannot listen at its new address; it stays where it was");
                config.api = self.config.api.clone();
            }
        }
    }

    /// Rewrites the parameters file and the `pg_hba.conf` block and, when PostgreSQL runs, has
    /// it re-read them.
    pub(super) async fn apply_parameters(&mut self) {
        if !self.pg.process.is_running() {
            // Written before the next start.
            return;
        }
        if let Err(e) = self.pg.process.write_settings_files() {
            tracing::error!(error = %e, "reload: cannot write PostgreSQL's settings files; PostgreSQL keeps its settings");
            return;
        }
        match self.pg.client.reload().await {
            Ok(()) => {
                tracing::info!(
                    "PostgreSQL's settings files written; PostgreSQL reloads its configuration"
                );
                if let Running::As(role) = self.out.seen {
                    self.out.callbacks.fire(CallbackAction::OnReload, role);
                }
                self.live.settings_check_at = Some(Instant::now() + SETTINGS_CHECK_DELAY);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask PostgreSQL to reload; the new parameters apply at its next reload or start")
            }
        }
    }

    /// When due (after a start or a reload) and PostgreSQL answers: logs the configuration
    /// lines it rejected and which parameters wait for a restart.
    pub(super) async fn check_settings(&mut self, postgres_answered: bool) {
        if !postgres_answered
            || !self
                .live
                .settings_check_at
                .is_some_and(|at| at <= Instant::now())
        {
            return;
        }
        match self.pg.client.settings_report().await {
            Ok(report) => {
                for line in &report.rejected {
                    tracing::error!(line, "PostgreSQL rejected a configuration setting");
                }
                if report.pending_restart != self.live.postgres_pending_restart
                    && !report.pending_restart.is_empty()
                {
                    tracing::warn!(parameters = ?report.pending_restart, "PostgreSQL parameters wait for a restart of PostgreSQL");
                }
                self.live.postgres_pending_restart = report.pending_restart;
                self.live.settings_check_at = None;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read PostgreSQL's settings; asking again next round")
            }
        }
    }
}
