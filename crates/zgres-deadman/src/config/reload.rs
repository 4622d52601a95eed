//! What a reload changes: which settings of a new configuration file take effect at once, and
//! which wait for the next start of the deadman.
//!
//! Pure: [`Reload::between`] compares two validated configurations; the daemon applies the
//! result. Settings that identify the node or its connections (the group, the node id, the
//! data directory, ZooKeeper, PostgreSQL's connection settings, the log format) cannot change
//! under a running deadman without risking its lock or its PostgreSQL: they keep their running
//! value and are reported as needing a restart until the file and the process agree again.

use super::Config;

/// The outcome of comparing the running configuration with a newly loaded one.
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// The configuration to run with from now on: the new file's live settings, the running
    /// values of the restart-only ones.
    pub config: Config,
    /// Live settings that changed (dotted keys, e.g. `timing.loop_interval_ms`).
    pub applied: Vec<&'static str>,
    /// Restart-only settings whose file value differs from the running one.
    pub restart_needed: Vec<&'static str>,
}

impl Reload {
    /// Compares `running` with `new` (both validated).
    pub fn between(running: &Config, new: Config) -> Reload {
        let (t, n) = (&running.timing, &new.timing);
        let applied = differing([
            ("tags", running.tags != new.tags),
            (
                "timing.loop_interval_ms",
                t.loop_interval != n.loop_interval,
            ),
            (
                "timing.state_refresh_ms",
                t.state_refresh != n.state_refresh,
            ),
            (
                "timing.election_wait_ms",
                t.election_wait != n.election_wait,
            ),
            ("timing.stop_timeout_ms", t.stop_timeout != n.stop_timeout),
            (
                "timing.primary_restart_timeout_ms",
                t.primary_restart_timeout != n.primary_restart_timeout,
            ),
            (
                "timing.plugin_interval_ms",
                t.plugin_interval != n.plugin_interval,
            ),
            (
                "timing.request_timeout_ms",
                t.request_timeout != n.request_timeout,
            ),
            (
                "timing.switchover_drain_ms",
                t.switchover_drain != n.switchover_drain,
            ),
            ("plugin", running.hooks.plugins != new.hooks.plugins),
            ("callbacks", running.hooks.callbacks != new.hooks.callbacks),
            ("api", running.api != new.api),
            ("provisioning", running.provisioning != new.provisioning),
            ("log.level", running.log.level != new.log.level),
            (
                "postgres.parameters",
                running.postgres.parameters != new.postgres.parameters,
            ),
        ]);
        // Restart-only: keep the running value, report the difference.
        let (z, nz) = (&running.zookeeper, &new.zookeeper);
        let (p, np) = (&running.postgres, &new.postgres);
        let restart_needed = differing([
            (
                "zookeeper.connect",
                z.settings.connect != nz.settings.connect,
            ),
            ("zookeeper.root", z.settings.layout != nz.settings.layout),
            (
                "zookeeper.session_timeout_ms",
                z.settings.session_timeout != nz.settings.session_timeout,
            ),
            ("zookeeper.user", z.settings.auth != nz.settings.auth),
            ("zookeeper.tls_ca_file", z.settings.tls != nz.settings.tls),
            (
                "zookeeper.readers",
                z.settings.readers != nz.settings.readers,
            ),
            (
                "zookeeper.fence_margin_ms",
                z.fence_margin != nz.fence_margin,
            ),
            (
                "zookeeper.ensemble_tick_ms",
                z.ensemble.tick != nz.ensemble.tick,
            ),
            (
                "zookeeper.ensemble_sync_limit",
                z.ensemble.sync_limit != nz.ensemble.sync_limit,
            ),
            ("node.group", running.group != new.group),
            (
                "node.address",
                running.node.addr().ip() != new.node.addr().ip(),
            ),
            ("node.name", running.node_name != new.node_name),
            ("postgres.port", p.port != np.port),
            ("postgres.data_dir", p.data_dir != np.data_dir),
            ("postgres.bin_dir", p.bin_dir != np.bin_dir),
            ("postgres.run_as", p.run_as != np.run_as),
            ("postgres.user", p.user != np.user),
            ("postgres.dbname", p.dbname != np.dbname),
            ("postgres.password", p.password != np.password),
            ("postgres.probe_host", p.probe_host != np.probe_host),
            ("postgres.sslmode", p.tls.mode != np.tls.mode),
            ("postgres.sslrootcert", p.tls.root_cert != np.tls.root_cert),
            ("postgres.sslcert", p.tls.client != np.tls.client),
            ("log.format", running.log.format != new.log.format),
        ]);
        let mut config = new;
        config.zookeeper = running.zookeeper.clone();
        config.group = running.group.clone();
        config.node = running.node;
        config.node_name = running.node_name.clone();
        config.postgres = super::PostgresConfig {
            parameters: config.postgres.parameters,
            ..running.postgres.clone()
        };
        config.log.format = running.log.format;
        Reload {
            config,
            applied,
            restart_needed,
        }
    }
}

/// The keys whose flag is set, in order.
fn differing<const N: usize>(keys: [(&'static str, bool); N]) -> Vec<&'static str> {
    keys.into_iter()
        .filter_map(|(key, differs)| differs.then_some(key))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::tests::minimal;

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("test.toml"), text, |_| None).unwrap()
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let text = minimal("parameters = { work_mem = \"4MB\" }\n");
        let running = parse(&text);
        let reload = Reload::between(&running, parse(&text));
        assert_eq!(reload.config, running);
        assert!(reload.applied.is_empty() && reload.restart_needed.is_empty());
    }

    #[test]
    fn live_settings_apply_and_restart_only_ones_keep_their_running_value() {
        let running = parse(&minimal("parameters = { work_mem = \"4MB\" }\n"));
        let edited = minimal(
            "parameters = { work_mem = \"8MB\" }\ndbname = \"other\"\n\
             [tags]\nnofailover = true\n[timing]\nloop_interval_ms = 500\n\
             [log]\nlevel = \"debug\"\nformat = \"json\"\n",
        )
        .replace("port = 5432", "port = 5433")
        .replace(
            "connect = \"127.0.0.1:2181\"",
            "connect = \"127.0.0.1:2182\"\nsession_timeout_ms = 6000",
        );
        let reload = Reload::between(&running, parse(&edited));
        assert_eq!(
            reload.applied,
            [
                "tags",
                "timing.loop_interval_ms",
                "log.level",
                "postgres.parameters"
            ]
        );
        assert_eq!(
            reload.restart_needed,
            [
                "zookeeper.connect",
                "zookeeper.session_timeout_ms",
                // Derived from the node id when not set.
                "node.name",
                "postgres.port",
                "postgres.dbname",
                "log.format"
            ]
        );
        let c = &reload.config;
        assert!(c.tags.nofailover);
        assert_eq!(c.timing.loop_interval.as_millis(), 500);
        assert_eq!(c.postgres.parameters["work_mem"], "8MB");
        assert_eq!(c.log.level, "debug");
        // The running values of everything that needs a restart.
        assert_eq!(c.zookeeper, running.zookeeper);
        assert_eq!(c.node, running.node);
        assert_eq!(c.postgres.port, 5432);
        assert_eq!(c.postgres.dbname, running.postgres.dbname);
        assert_eq!(c.log.format, running.log.format);
    }
}
