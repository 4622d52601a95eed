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
        let mut applied = Vec::new();
        let mut restart_needed = Vec::new();
        let mut live = |key: &'static str, changed: bool| {
            if changed {
                applied.push(key);
            }
        };
        live("tags", running.tags != new.tags);
        let (t, n) = (&running.timing, &new.timing);
        live(
            "timing.loop_interval_ms",
            t.loop_interval != n.loop_interval,
        );
        live(
            "timing.state_refresh_ms",
            t.state_refresh != n.state_refresh,
        );
        live(
            "timing.election_wait_ms",
            t.election_wait != n.election_wait,
        );
        live("timing.stop_timeout_ms", t.stop_timeout != n.stop_timeout);
        live(
            "timing.primary_restart_timeout_ms",
            t.primary_restart_timeout != n.primary_restart_timeout,
        );
        live(
            "timing.plugin_interval_ms",
            t.plugin_interval != n.plugin_interval,
        );
        live(
            "timing.request_timeout_ms",
            t.request_timeout != n.request_timeout,
        );
        live("plugin", running.hooks.plugins != new.hooks.plugins);
        live("callbacks", running.hooks.callbacks != new.hooks.callbacks);
        live("api.listen", running.api_listen != new.api_listen);
        live("provisioning", running.provisioning != new.provisioning);
        live("log.level", running.log.level != new.log.level);
        live(
            "postgres.parameters",
            running.postgres.parameters != new.postgres.parameters,
        );

        // Restart-only: keep the running value, report the difference.
        let mut config = new;
        let mut keep = |key: &'static str, differs: bool| {
            if differs {
                restart_needed.push(key);
            }
        };
        let (r, c) = (&running.zookeeper.settings, &config.zookeeper.settings);
        keep("zookeeper.connect", r.connect != c.connect);
        keep("zookeeper.root", r.layout != c.layout);
        keep(
            "zookeeper.session_timeout_ms",
            r.session_timeout != c.session_timeout,
        );
        keep("zookeeper.user", r.auth != c.auth);
        keep("zookeeper.readers", r.readers != c.readers);
        keep(
            "zookeeper.fence_margin_ms",
            running.zookeeper.fence_margin != config.zookeeper.fence_margin,
        );
        keep("node.group", running.group != config.group);
        keep(
            "node.address",
            running.node.addr().ip() != config.node.addr().ip(),
        );
        keep("node.name", running.node_name != config.node_name);
        let (r, c) = (&running.postgres, &config.postgres);
        keep("postgres.port", r.port != c.port);
        keep("postgres.data_dir", r.data_dir != c.data_dir);
        keep("postgres.bin_dir", r.bin_dir != c.bin_dir);
        keep("postgres.run_as", r.run_as != c.run_as);
        keep("postgres.user", r.user != c.user);
        keep("postgres.dbname", r.dbname != c.dbname);
        keep("postgres.password", r.password != c.password);
        keep("postgres.probe_host", r.probe_host != c.probe_host);
        keep("log.format", running.log.format != config.log.format);
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
