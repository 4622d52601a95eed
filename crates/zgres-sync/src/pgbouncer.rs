//! The built-in pgbouncer plugin: rewrites a `[databases]` file (included from pgbouncer.ini)
//! so that `{group}` goes to the primary and `{group}{suffix}` to a replica, then tells
//! pgbouncer to `RELOAD` through its admin console.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::NoTls;
use zgres_schema::GroupName;

use crate::config::PgbouncerConfig;
use crate::safe_value::is_safe_config_value;
use crate::snapshot::{Endpoint, GroupSnapshot, Snapshot};

/// Why pgbouncer could not be updated. Retryable.
#[derive(Debug, thiserror::Error)]
pub enum PgbouncerError {
    /// The databases file could not be written.
    #[error("pgbouncer: cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The admin console refused or could not be reached.
    #[error("pgbouncer admin console: {0}")]
    Admin(#[from] tokio_postgres::Error),
}

/// The first line of the databases file.
const HEADER: &str = "; Written by zgres-sync; changes here are overwritten.\n[databases]\n";

/// One group's lines of the `[databases]` section: `{group}` to the primary (none without
/// one) and `{group}{suffix}` to the replicas (or the primary when there are none). An entry
/// with a value that is not [`is_safe_config_value`] is left out.
pub fn render_group(config: &PgbouncerConfig, group: &GroupName, g: &GroupSnapshot) -> String {
    let line = |name: String, endpoints: &[&Endpoint]| -> String {
        let Some(first) = endpoints.first() else {
            return String::new();
        };
        let values = endpoints
            .iter()
            .flat_map(|e| [Some(e.host.as_str()), e.dbname.as_deref()]);
        if !values.flatten().all(is_safe_config_value) {
            return String::new();
        }
        // pgbouncer takes several hosts but one port: list several only when they agree.
        let hosts: Vec<&str> = if endpoints.iter().all(|e| e.port == first.port) {
            endpoints.iter().map(|e| e.host.as_str()).collect()
        } else {
            vec![first.host.as_str()]
        };
        let dbname = first.dbname.as_deref().unwrap_or(&config.dbname);
        format!(
            "{name} = host={} port={} dbname={dbname}\n",
            hosts.join(","),
            first.port
        )
    };
    let mut text = String::new();
    if let Some(primary) = &g.primary {
        text.push_str(&line(group.to_string(), &[primary]));
    }
    let readers: Vec<&Endpoint> = g
        .replicas
        .iter()
        .filter(|r| !r.tags.noloadbalance)
        .collect();
    let readers = if readers.is_empty() {
        g.primary.iter().collect()
    } else {
        readers
    };
    text.push_str(&line(
        format!("{group}{}", config.read_only_suffix),
        &readers,
    ));
    text
}

/// The whole `[databases]` section for `snapshot`.
pub fn render(config: &PgbouncerConfig, snapshot: &Snapshot) -> String {
    let mut text = String::from(HEADER);
    for (group, g) in &snapshot.groups {
        text.push_str(&render_group(config, group, g));
    }
    text
}

/// A group as last rendered and told to pgbouncer.
#[derive(Debug)]
struct Rendered {
    group: GroupSnapshot,
    lines: String,
}

/// The built-in pgbouncer plugin. It remembers each group's rendered lines, so a change
/// renders only the groups that changed, and tells pgbouncer's console only about groups
/// whose primary came or went.
#[derive(Debug)]
pub struct PgbouncerPlugin {
    config: PgbouncerConfig,
    rendered: BTreeMap<GroupName, Rendered>,
    /// Groups whose ENABLE/DISABLE pgbouncer has not confirmed (all of them at first, and
    /// after the console failed: pgbouncer may have restarted).
    unconfirmed: BTreeSet<GroupName>,
    console_known: bool,
}

impl PgbouncerPlugin {
    /// A plugin with nothing rendered yet.
    pub fn new(config: PgbouncerConfig) -> Self {
        PgbouncerPlugin {
            config,
            rendered: BTreeMap::new(),
            unconfirmed: BTreeSet::new(),
            console_known: false,
        }
    }

    /// Renders the groups of `snapshot` that changed since the last call, and returns the
    /// whole section (equal to [`render`]) and the groups whose primary came or went, or moved
    /// from one node to another.
    fn update(&mut self, snapshot: &Snapshot) -> Update {
        self.rendered
            .retain(|name, _| snapshot.groups.contains_key(name));
        let mut primary_changed = Vec::new();
        let mut primary_moved = Vec::new();
        for (name, g) in &snapshot.groups {
            let old = self.rendered.get(name);
            if old.is_some_and(|r| r.group == *g) {
                continue;
            }
            if old.map(|r| r.group.primary.is_some()) != Some(g.primary.is_some()) {
                primary_changed.push(name.clone());
            }
            let writer = |g: &GroupSnapshot| g.primary.as_ref().map(|p| (p.host.clone(), p.port));
            if let (Some(was), Some(now)) = (old.and_then(|r| writer(&r.group)), writer(g)) {
                if was != now {
                    primary_moved.push(name.clone());
                }
            }
            let lines = render_group(&self.config, name, g);
            self.rendered.insert(
                name.clone(),
                Rendered {
                    group: g.clone(),
                    lines,
                },
            );
        }
        Update {
            text: self.text_without_writers(&[]),
            primary_changed,
            primary_moved,
        }
    }

    /// The whole section as rendered, without the writer entries of `groups`.
    fn text_without_writers(&self, groups: &[GroupName]) -> String {
        let mut text = String::from(HEADER);
        for (name, r) in &self.rendered {
            if groups.contains(name) {
                let writer = format!("{name} = ");
                for line in r.lines.lines().filter(|l| !l.starts_with(&writer)) {
                    text.push_str(line);
                    text.push('\n');
                }
            } else {
                text.push_str(&r.lines);
            }
        }
        text
    }

    fn write(&self, text: &str) -> Result<bool, PgbouncerError> {
        let path = &self.config.databases_file;
        crate::atomic_file::write_if_changed(path, text).map_err(|source| PgbouncerError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Applies `snapshot`: writes the file if its content changed, reloads pgbouncer, and
    /// enables or disables the groups whose primary came or went.
    ///
    /// # Errors
    /// [`PgbouncerError`]; the caller retries with the next snapshot or the same one.
    pub async fn apply(&mut self, snapshot: &Snapshot) -> Result<(), PgbouncerError> {
        let update = self.update(snapshot);
        self.unconfirmed.extend(update.primary_changed);
        let Some(conninfo) = self.config.admin_conninfo.clone() else {
            self.write_logged(&update.text)?;
            return Ok(());
        };
        // pgbouncer keeps a pool's failed-connect state when its database changes host, and
        // then waits `server_login_retry` before it tries the new one; a database removed and
        // added again gets a fresh pool. So a writer moving straight from one node to another
        // is first taken out. The file is written before the console is tried: pgbouncer
        // needs it to start at all.
        let moved = !update.primary_moved.is_empty();
        if moved {
            self.write(&self.text_without_writers(&update.primary_moved))?;
        } else {
            self.write_logged(&update.text)?;
        }
        if !self.console_known {
            self.unconfirmed = snapshot.groups.keys().cloned().collect();
        }
        self.console_known = false;
        let (client, connection) = tokio_postgres::connect(&conninfo, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        if moved {
            client.simple_query("RELOAD").await?;
            self.write_logged(&update.text)?;
        }
        // Reload even when unchanged: pgbouncer may have restarted with an old file in memory.
        client.simple_query("RELOAD").await?;
        for group in std::mem::take(&mut self.unconfirmed) {
            let Some(g) = snapshot.groups.get(&group) else {
                continue;
            };
            // No primary: refuse new clients for the group rather than leave them on a stale one.
            let verb = if g.primary.is_some() {
                "ENABLE"
            } else {
                "DISABLE"
            };
            if let Err(e) = client.simple_query(&format!("{verb} \"{group}\"")).await {
                tracing::debug!(error = %e, %group, verb, "pgbouncer did not take it");
            }
        }
        self.console_known = true;
        Ok(())
    }

    /// Writes `text` if it differs from the file, and says so in the log.
    fn write_logged(&self, text: &str) -> Result<(), PgbouncerError> {
        if self.write(text)? {
            tracing::info!(file = %self.config.databases_file.display(), "pgbouncer databases updated");
        }
        Ok(())
    }
}

/// What [`PgbouncerPlugin::update`] found.
#[derive(Debug)]
struct Update {
    /// The whole `[databases]` section.
    text: String,
    /// Groups whose primary came or went (for `ENABLE`/`DISABLE`).
    primary_changed: Vec<GroupName>,
    /// Groups whose writer entry moved from one address to another.
    primary_moved: Vec<GroupName>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use zgres_schema::documents::Tags;

    fn endpoint(i: u8, port: u16) -> Endpoint {
        Endpoint {
            node: format!("10.0.0.{i}:{port}").parse().unwrap(),
            host: format!("10.0.0.{i}"),
            port,
            dbname: None,
            tags: Tags::default(),
        }
    }

    fn config() -> PgbouncerConfig {
        PgbouncerConfig {
            databases_file: "/tmp/x.ini".into(),
            dbname: "app".into(),
            read_only_suffix: "-ro".into(),
            admin_conninfo: None,
        }
    }

    #[test]
    fn writers_go_to_the_primary_and_readers_to_replicas() {
        let mut s = Snapshot::default();
        let mut hidden = endpoint(4, 5432);
        hidden.tags.noloadbalance = true;
        s.groups.insert(
            GroupName::new("main").unwrap(),
            GroupSnapshot {
                primary: Some(endpoint(1, 5432)),
                replicas: vec![endpoint(2, 5432), endpoint(3, 5432), hidden],
            },
        );
        let text = render(&config(), &s);
        assert!(
            text.contains("main = host=10.0.0.1 port=5432 dbname=app\n"),
            "{text}"
        );
        assert!(
            text.contains("main-ro = host=10.0.0.2,10.0.0.3 port=5432 dbname=app\n"),
            "{text}"
        );
    }

    #[test]
    fn no_primary_means_no_writer_entry_and_readers_fall_back_to_the_primary() {
        let mut s = Snapshot::default();
        s.groups.insert(
            GroupName::new("a").unwrap(),
            GroupSnapshot {
                primary: None,
                replicas: vec![endpoint(2, 5432)],
            },
        );
        s.groups.insert(
            GroupName::new("b").unwrap(),
            GroupSnapshot {
                primary: Some(endpoint(1, 6000)),
                replicas: vec![],
            },
        );
        let text = render(&config(), &s);
        assert!(!text.contains("\na = "), "{text}");
        assert!(text.contains("a-ro = host=10.0.0.2 port=5432"));
        assert!(text.contains("b-ro = host=10.0.0.1 port=6000"));
    }

    #[test]
    fn an_entry_with_a_directive_starting_value_is_left_out() {
        let mut s = Snapshot::default();
        let mut evil = endpoint(2, 5432);
        evil.host = "10.0.0.2\nlisten_addr = *".into();
        s.groups.insert(
            GroupName::new("main").unwrap(),
            GroupSnapshot {
                primary: Some(endpoint(1, 5432)),
                replicas: vec![evil],
            },
        );
        let text = render(&config(), &s);
        assert!(text.contains("main = host=10.0.0.1 "), "{text}");
        assert!(!text.contains("listen_addr"), "{text}");
        assert!(!text.contains("main-ro"), "{text}");
    }

    fn group(primary: Option<u8>, replicas: &[u8], port: u16) -> GroupSnapshot {
        GroupSnapshot {
            primary: primary.map(|i| endpoint(i, port)),
            replicas: replicas.iter().map(|&i| endpoint(i, port)).collect(),
        }
    }

    proptest! {
        /// Over any sequence of snapshots, rendering only the changed groups gives exactly the
        /// whole rendering, and the groups reported for ENABLE/DISABLE are exactly those whose
        /// primary came or went.
        #[test]
        fn incremental_rendering_equals_a_full_one(
            steps in proptest::collection::vec(
                proptest::collection::btree_map(0u8..6, (proptest::option::of(1u8..4), proptest::collection::vec(1u8..4, 0..3), 5432u16..5434), 0..6),
                1..12,
            )
        ) {
            let mut plugin = PgbouncerPlugin::new(config());
            let mut before: BTreeMap<GroupName, bool> = BTreeMap::new();
            for step in steps {
                let mut s = Snapshot::default();
                for (i, (primary, replicas, port)) in step {
                    s.groups.insert(GroupName::new(&format!("g{i}")).unwrap(), group(primary, &replicas, port));
                }
                let previous = plugin.rendered.iter().map(|(n, r)| (n.clone(), r.group.primary.clone())).collect::<BTreeMap<_, _>>();
                let update = plugin.update(&s);
                let (text, changed) = (update.text, update.primary_changed);
                prop_assert_eq!(text, render(&config(), &s));
                let moved: Vec<GroupName> = s.groups.iter()
                    .filter(|(name, g)| matches!(
                        (previous.get(*name), &g.primary),
                        (Some(Some(was)), Some(now)) if (&was.host, was.port) != (&now.host, now.port)
                    ))
                    .map(|(name, _)| name.clone())
                    .collect();
                prop_assert_eq!(&update.primary_moved, &moved);
                let without = plugin.text_without_writers(&moved);
                for name in &moved {
                    let writer_line = format!("\n{name} = ");
                    let reader_line = format!("\n{name}-ro = ");
                    prop_assert!(!without.contains(&writer_line));
                    prop_assert_eq!(without.contains(&reader_line), render(&config(), &s).contains(&reader_line));
                }
                let expected: Vec<GroupName> = s.groups.iter()
                    .filter(|(name, g)| before.get(*name) != Some(&g.primary.is_some()))
                    .map(|(name, _)| name.clone())
                    .collect();
                prop_assert_eq!(changed, expected);
                before = s.groups.iter().map(|(n, g)| (n.clone(), g.primary.is_some())).collect();
            }
        }
    }
}
