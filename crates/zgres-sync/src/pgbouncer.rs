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
    #[error("pgbouncer admin console: {}", zgres_config::with_causes(.0))]
    Admin(#[from] tokio_postgres::Error),
}

/// The first line of the databases file.
const HEADER: &str = "; Written by zgres-sync; changes here are overwritten.\n[databases]\n";

/// One group's lines of the `[databases]` section: `{group}` to the primary (none without
/// one) and `{group}{suffix}` to the replicas (or the primary when there are none), or to the
/// group's load balancer in `readers_via`. An entry with a value that is not
/// [`is_safe_config_value`] is left out.
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
    let readers_name = format!("{group}{}", config.read_only_suffix);
    match config.readers_via.get(group) {
        // The balancer reaches every replica; the database name is the replicas' own.
        Some(via) => {
            let dbname = readers
                .first()
                .and_then(|e| e.dbname.as_deref())
                .unwrap_or(&config.dbname);
            if is_safe_config_value(dbname) {
                text.push_str(&format!(
                    "{readers_name} = host={} port={} dbname={dbname}\n",
                    via.ip(),
                    via.port()
                ));
            }
        }
        None => text.push_str(&line(readers_name, &readers)),
    }
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
    /// whole section and the groups whose primary came or went.
    ///
    /// A database pgbouncer knows is never taken out of the file while its group exists:
    /// pgbouncer 1.18 crashes when a `RELOAD` drops a database while a client's SCRAM login to
    /// it is under way (`tests/sync_recipe.rs` hit it at every failover). A group that loses its
    /// primary keeps its last writer entry, `DISABLE`d, and likewise its last reader entry.
    fn update(&mut self, snapshot: &Snapshot) -> Update {
        self.rendered
            .retain(|name, _| snapshot.groups.contains_key(name));
        let mut primary_changed = Vec::new();
        for (name, g) in &snapshot.groups {
            let old = self.rendered.get(name);
            if old.is_some_and(|r| r.group == *g) {
                continue;
            }
            if old.map(|r| r.group.primary.is_some()) != Some(g.primary.is_some()) {
                primary_changed.push(name.clone());
            }
            let mut lines = render_group(&self.config, name, g);
            if let Some(old) = old {
                lines = keep_entries(name, &self.config.read_only_suffix, &old.lines, lines);
            }
            self.rendered.insert(
                name.clone(),
                Rendered {
                    group: g.clone(),
                    lines,
                },
            );
        }
        let mut text = String::from(HEADER);
        for r in self.rendered.values() {
            text.push_str(&r.lines);
        }
        Update {
            text,
            primary_changed,
        }
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
        // The file first: pgbouncer needs it to start at all.
        self.write_logged(&update.text)?;
        let Some(conninfo) = &self.config.admin_conninfo else {
            return Ok(());
        };
        if !self.console_known {
            self.unconfirmed = snapshot.groups.keys().cloned().collect();
        }
        self.console_known = false;
        let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
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
}

/// `new` (a group's rendered lines), plus the writer and reader entries of `old` that `new`
/// lacks: a database pgbouncer knows stays in the file (see [`PgbouncerPlugin::update`]).
fn keep_entries(group: &GroupName, suffix: &str, old: &str, new: String) -> String {
    let mut lines = new;
    for prefix in [format!("{group} = "), format!("{group}{suffix} = ")] {
        let has = |text: &str| text.lines().any(|l| l.starts_with(&prefix));
        if !has(&lines) {
            if let Some(kept) = old.lines().find(|l| l.starts_with(&prefix)) {
                lines.push_str(kept);
                lines.push('\n');
            }
        }
    }
    lines
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
            api_port: None,
        }
    }

    fn config() -> PgbouncerConfig {
        PgbouncerConfig {
            databases_file: "/tmp/x.ini".into(),
            dbname: "app".into(),
            read_only_suffix: "-ro".into(),
            admin_conninfo: None,
            readers_via: BTreeMap::new(),
        }
    }

    #[test]
    fn readers_go_through_the_groups_balancer_when_one_is_named() {
        let mut s = Snapshot::default();
        s.groups.insert(
            GroupName::new("main").unwrap(),
            GroupSnapshot {
                primary: Some(endpoint(1, 5432)),
                replicas: vec![endpoint(2, 5433), endpoint(3, 5434)],
            },
        );
        s.groups.insert(
            GroupName::new("other").unwrap(),
            GroupSnapshot {
                primary: Some(endpoint(5, 5432)),
                replicas: vec![endpoint(6, 5433), endpoint(7, 5434)],
            },
        );
        let mut config = config();
        config.readers_via.insert(
            GroupName::new("main").unwrap(),
            "127.0.0.1:6001".parse().unwrap(),
        );
        let text = render(&config, &s);
        assert!(
            text.contains("main-ro = host=127.0.0.1 port=6001 dbname=app\n"),
            "{text}"
        );
        assert!(
            text.contains("main = host=10.0.0.1 port=5432 dbname=app\n"),
            "the writer is unchanged: {text}"
        );
        // A group without a balancer keeps the direct entry (the first replica's port).
        assert!(
            text.contains("other-ro = host=10.0.0.6 port=5433 dbname=app\n"),
            "{text}"
        );
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
        /// Over any sequence of snapshots: the incremental text holds every entry of a full
        /// rendering, anything else in it is a kept entry of a group that still exists, no
        /// database of an existing group ever leaves the file, and the groups reported for
        /// ENABLE/DISABLE are exactly those whose primary came or went.
        #[test]
        fn incremental_rendering_keeps_every_known_database(
            steps in proptest::collection::vec(
                proptest::collection::btree_map(0u8..6, (proptest::option::of(1u8..4), proptest::collection::vec(1u8..4, 0..3), 5432u16..5434), 0..6),
                1..12,
            )
        ) {
            let mut plugin = PgbouncerPlugin::new(config());
            let mut before: BTreeMap<GroupName, bool> = BTreeMap::new();
            let mut known: BTreeMap<GroupName, BTreeSet<String>> = BTreeMap::new();
            for step in steps {
                let mut s = Snapshot::default();
                for (i, (primary, replicas, port)) in step {
                    s.groups.insert(GroupName::new(&format!("g{i}")).unwrap(), group(primary, &replicas, port));
                }
                let update = plugin.update(&s);
                let full = render(&config(), &s);
                for line in full.lines() {
                    prop_assert!(update.text.lines().any(|l| l == line), "{} missing", line);
                }
                let database = |line: &str| line.split_once(" = ").map(|(db, _)| db.to_owned());
                for line in update.text.lines().skip(HEADER.lines().count()) {
                    if full.lines().any(|l| l == line) {
                        continue;
                    }
                    let db = database(line).unwrap();
                    prop_assert!(!full.lines().any(|l| database(l).as_deref() == Some(db.as_str())), "{} twice", db);
                    let group = db.strip_suffix("-ro").unwrap_or(&db);
                    let group = GroupName::new(group).unwrap();
                    prop_assert!(known.get(&group).is_some_and(|dbs| dbs.contains(&db)), "{} kept but never known", db);
                }
                known.retain(|g, _| s.groups.contains_key(g));
                for dbs in known.values() {
                    for db in dbs {
                        let prefix = format!("{db} = ");
                        prop_assert!(update.text.lines().any(|l| l.starts_with(&prefix)), "{} dropped", db);
                    }
                }
                for line in update.text.lines().skip(HEADER.lines().count()) {
                    let db = database(line).unwrap();
                    let group = GroupName::new(db.strip_suffix("-ro").unwrap_or(&db)).unwrap();
                    known.entry(group).or_default().insert(db);
                }
                let expected: Vec<GroupName> = s.groups.iter()
                    .filter(|(name, g)| before.get(*name) != Some(&g.primary.is_some()))
                    .map(|(name, _)| name.clone())
                    .collect();
                prop_assert_eq!(update.primary_changed, expected);
                before = s.groups.iter().map(|(n, g)| (n.clone(), g.primary.is_some())).collect();
            }
        }
    }
}
