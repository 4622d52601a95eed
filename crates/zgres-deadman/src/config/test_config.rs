//! A `[postgres]` section for unit tests: `dir` as data and binary directory, nothing else set.

use std::path::Path;

use super::PostgresConfig;

/// `postgres` user and database on port 5432, no password, plain defaults.
pub(crate) fn postgres_in(dir: &Path) -> PostgresConfig {
    PostgresConfig {
        tls: Default::default(),
        data_dir: dir.to_owned(),
        bin_dir: dir.to_owned(),
        port: 5432,
        run_as: None,
        user: "postgres".into(),
        dbname: "postgres".into(),
        password: None,
        probe_host: "127.0.0.1".parse().unwrap(),
        parameters: Default::default(),
    }
}
