//! `postgres.parameters` as a file PostgreSQL includes, so that a reload can change them.
//!
//! The deadman writes `zgres.parameters.conf` in the data directory before every start and on
//! every reload, and keeps one `include_if_exists` line for it at the end of
//! `postgresql.conf`. PostgreSQL's own precedence then holds: this file overrides what comes
//! before it in `postgresql.conf`, and `ALTER SYSTEM` (`postgresql.auto.conf`, read last)
//! overrides this file. Parameters on the command line would override both, silently.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cluster_settings::raise_to_floors;
use crate::config::PostgresConfig;
use crate::data_dir::{self, DataDirError};

/// The file's name, in the data directory.
pub const FILE_NAME: &str = "zgres.parameters.conf";

/// The line `postgresql.conf` must contain (it is appended when missing).
const INCLUDE: &str = "include_if_exists = 'zgres.parameters.conf'";

/// How long a standby waits before asking again for WAL it could not get, unless the
/// parameters say otherwise. A standby whose primary restarted in place reconnects in a fifth
/// of a second instead of PostgreSQL's 5 s default (a synchronous primary waits meanwhile).
pub const WAL_RETRIEVE_RETRY_INTERVAL: &str = "200ms";

/// Writes the parameters file for `config` (after the group's `cluster` parameters, which
/// the local ones override) and makes sure `postgresql.conf` includes it.
/// Returns whether the file's contents changed. The file is replaced atomically, so a reload
/// of PostgreSQL never reads half of it.
///
/// # Errors
/// [`DataDirError::Io`] naming the file that cannot be read or written (e.g. no
/// `postgresql.conf` in the data directory).
pub fn write(
    config: &PostgresConfig,
    cluster: &BTreeMap<String, String>,
    standby_floors: &[(&'static str, u64)],
) -> Result<bool, DataDirError> {
    let path = config.data_dir.join(FILE_NAME);
    let text = render(config, cluster, standby_floors);
    let changed = std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str());
    if changed {
        let staged = config.data_dir.join(format!("{FILE_NAME}.new"));
        data_dir::write_owned(config, &staged, text.as_bytes())?;
        std::fs::rename(&staged, &path).map_err(|source| DataDirError::Io {
            path: path.clone(),
            source,
        })?;
    }
    ensure_included(config, &config.data_dir.join("postgresql.conf"))?;
    Ok(changed)
}

/// The file's contents: a header, the retry-interval default, then the cluster's parameters
/// merged with the node's own (which win), each once, raised to `standby_floors`
/// ([`raise_to_floors`]).
fn render(
    config: &PostgresConfig,
    cluster: &BTreeMap<String, String>,
    standby_floors: &[(&'static str, u64)],
) -> String {
    let mut text = String::from(
        "# Written by zgres-deadman from /config postgresql.parameters (the group's) and\n\
         # postgres.parameters in its configuration file (the node's, which win); edits here\n\
         # are overwritten. ALTER SYSTEM (postgresql.auto.conf) overrides this file.\n",
    );
    let set = |name: &str| config.parameters.contains_key(name) || cluster.contains_key(name);
    if !set("wal_retrieve_retry_interval") {
        text.push_str(&format!(
            "wal_retrieve_retry_interval = {}\n",
            data_dir::config_file_literal(WAL_RETRIEVE_RETRY_INTERVAL)
        ));
    }
    let mut merged = cluster.clone();
    merged.extend(config.parameters.clone());
    for name in raise_to_floors(&mut merged, standby_floors) {
        text.push_str(&format!(
            "# {name}: this standby's primary runs more; raised to it (hot standby needs it)\n"
        ));
    }
    for (name, value) in &merged {
        text.push_str(&format!(
            "{name} = {}\n",
            data_dir::config_file_literal(value)
        ));
    }
    text
}

fn ensure_included(config: &PostgresConfig, conf: &Path) -> Result<(), DataDirError> {
    let io = |source| DataDirError::Io {
        path: conf.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(conf).map_err(io)?;
    if text.lines().any(|l| l.trim_start().starts_with(INCLUDE)) {
        return Ok(());
    }
    let mut text = text;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "\n# Added by zgres-deadman: its postgres.parameters (keep this line last).\n{INCLUDE}\n"
    ));
    data_dir::write_owned(config, conf, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, parameters: &[(&str, &str)]) -> PostgresConfig {
        PostgresConfig {
            parameters: parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..crate::config::test_config::postgres_in(dir)
        }
    }

    #[test]
    fn parameters_are_quoted_and_included_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("postgresql.conf"), "port = 5432").unwrap();
        let c = config(
            dir.path(),
            &[("work_mem", "8MB"), ("search_path", r"'a\b'")],
        );
        assert!(write(&c, &BTreeMap::new(), &[]).unwrap());
        assert!(
            !write(&c, &BTreeMap::new(), &[]).unwrap(),
            "unchanged parameters rewrite nothing"
        );
        let file = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(file.contains("work_mem = '8MB'\n"), "{file}");
        assert!(file.contains(r"search_path = '''a\\b'''"), "{file}");
        assert!(file.contains("wal_retrieve_retry_interval = '200ms'"));
        let conf = std::fs::read_to_string(dir.path().join("postgresql.conf")).unwrap();
        assert!(conf.starts_with("port = 5432\n"));
        assert_eq!(conf.matches(INCLUDE).count(), 1, "{conf}");
    }

    #[test]
    fn the_operator_may_set_the_retry_interval() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("postgresql.conf"), "").unwrap();
        write(
            &config(dir.path(), &[("wal_retrieve_retry_interval", "1s")]),
            &BTreeMap::new(),
            &[],
        )
        .unwrap();
        let file = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(file.matches("wal_retrieve_retry_interval").count(), 1);
        assert!(file.contains("wal_retrieve_retry_interval = '1s'"));
    }

    #[test]
    fn a_data_directory_without_postgresql_conf_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = write(&config(dir.path(), &[]), &BTreeMap::new(), &[]).unwrap_err();
        assert!(e.to_string().contains("postgresql.conf"), "{e}");
    }

    #[test]
    fn the_group_parameters_come_first_and_the_node_own_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("postgresql.conf"), "").unwrap();
        let cluster: BTreeMap<String, String> = [("work_mem", "4MB"), ("max_connections", "200")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let floors = [("max_connections", 300)];
        write(
            &config(dir.path(), &[("work_mem", "16MB")]),
            &cluster,
            &floors,
        )
        .unwrap();
        let file = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(file.matches("work_mem").count(), 1, "{file}");
        assert!(file.contains("work_mem = '16MB'"), "{file}");
        assert!(file.contains("max_connections = '300'"), "{file}");
        assert_eq!(file.matches("max_connections = ").count(), 1, "{file}");
    }
}
