//! Helpers for the end-to-end tests: workspace binaries, zgres-sync, and connecting through a
//! proxy to see which backend answers.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::NoTls;
pub use zgres_testkit::artifacts::binary;
use zgres_testkit::process::ManagedProcess;

/// A temp dir that an unprivileged proxy can read.
pub fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Starts zgres-sync following `zookeeper`, with `plugins` (TOML sections) appended to its
/// config. Returns the process and its log.
pub fn start_sync(zookeeper: &str, dir: &Path, plugins: &str) -> (ManagedProcess, PathBuf) {
    let config = dir.join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[zookeeper]\nconnect = \"{zookeeper}\"\n[sync]\nsnapshot_file = \"{}\"\n\
             retry_max_ms = 500\n{plugins}\n[log]\nlevel = \"debug\"\n",
            dir.join("snapshot.json").display(),
        ),
    )
    .unwrap();
    let log = dir.join("sync.log");
    let process = ManagedProcess::spawn(
        "zgres-sync",
        binary("zgres-sync"),
        ["--config", config.to_str().unwrap()],
        &[],
        None,
        &log,
    )
    .unwrap();
    (process, log)
}

/// Through a proxy on `port` to database `db`: the backend's port and whether it is in
/// recovery; with `write`, also inserts a row. `None` when any step fails.
pub async fn through(port: u16, db: &str, write: bool) -> Option<(i32, bool)> {
    through_as(port, db, "user=postgres", write).await
}

/// As [`through`], logging in with `credentials` (`user=... password=...`).
pub async fn through_as(
    port: u16,
    db: &str,
    credentials: &str,
    write: bool,
) -> Option<(i32, bool)> {
    let client = connect(&format!(
        "host=127.0.0.1 port={port} {credentials} dbname={db} connect_timeout=2"
    ))
    .await?;
    let row = client
        .query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[])
        .await
        .ok()?;
    if write {
        client
            .execute(
                "INSERT INTO writes (node, seq) VALUES ('via-proxy', 1)",
                &[],
            )
            .await
            .ok()?;
    }
    Some((row.get(0), row.get(1)))
}

/// A file's text, or "" (for failure messages).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A real pgbouncer whose databases zgres-sync keeps (its pgbouncer plugin), both following
/// `zookeeper`. Holds the processes and the directory they share.
pub struct BouncerWithSync {
    /// pgbouncer.
    pub bouncer: zgres_testkit::pgbouncer::PgBouncer,
    /// zgres-sync.
    pub sync: ManagedProcess,
    /// zgres-sync's log.
    pub sync_log: PathBuf,
    /// Their files (kept while they run).
    pub dir: tempfile::TempDir,
}

impl BouncerWithSync {
    /// Starts both; pgbouncer runs unprivileged and reads the files zgres-sync writes.
    pub fn start(zookeeper: &str) -> BouncerWithSync {
        Self::start_with_settings(zookeeper, "")
    }

    /// As [`BouncerWithSync::start`], with `settings` added to pgbouncer's `[pgbouncer]`
    /// section (e.g. `server_tls_*`).
    pub fn start_with_settings(zookeeper: &str, settings: &str) -> BouncerWithSync {
        let dir = shared_dir();
        let databases = dir.path().join("databases.ini");
        let bouncer = zgres_testkit::pgbouncer::PgBouncer::start_with_settings(
            dir.path(),
            &databases,
            settings,
        )
        .unwrap();
        let (sync, sync_log) = start_sync(
            zookeeper,
            dir.path(),
            &format!(
                "[pgbouncer]\ndatabases_file = \"{}\"\ndbname = \"postgres\"\nadmin_conninfo = \"{}\"\n",
                databases.display(),
                bouncer.admin_conninfo(),
            ),
        );
        BouncerWithSync {
            bouncer,
            sync,
            sync_log,
            dir,
        }
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!("{}\n{}", read(&self.sync_log), read(self.bouncer.log()))
    }
}

/// The fenced block that follows `<!-- recipe: NAME -->` in docs/sync.md, unindented.
pub fn recipe(name: &str) -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/sync.md"))
            .expect("docs/sync.md");
    let marker = format!("<!-- recipe: {name} -->");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("docs/sync.md has no {marker}"))
        .1;
    let mut lines = after
        .lines()
        .map(str::trim_start)
        .skip_while(|l| !l.starts_with("```"));
    lines.next();
    let block: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    assert!(!block.is_empty(), "the {name} block is empty");
    block.join("\n") + "\n"
}

/// A client connected with `conninfo` (its connection driven by a task), or `None` when that
/// fails or takes over 3 s.
pub async fn connect(conninfo: &str) -> Option<tokio_postgres::Client> {
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(3),
        tokio_postgres::connect(conninfo, NoTls),
    )
    .await
    .ok()?
    .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(client)
}

/// Starts HAProxy in master-worker mode, in the foreground, on the configuration files
/// `configs`, writing its pid to `pidfile` (for reloads), with `extra` arguments after them.
pub fn start_haproxy(
    configs: &[&Path],
    pidfile: &Path,
    extra: &[&str],
    log: &Path,
) -> ManagedProcess {
    let mut args: Vec<String> = vec!["-W".into(), "-db".into()];
    for config in configs {
        args.extend(["-f".to_owned(), config.display().to_string()]);
    }
    args.extend(["-p".to_owned(), pidfile.display().to_string()]);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    ManagedProcess::spawn("haproxy", "/usr/sbin/haproxy", &args, &[], None, log).unwrap()
}

/// Runs zgresctl against `zookeeper` with `args`, off the runtime's threads (a command that
/// waits for a restart would hold one of them).
pub async fn zgresctl(zookeeper: &str, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(binary("zgresctl"));
    command.arg("--zookeeper").arg(zookeeper).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// A 2-node group with default timing, running: node 0 the primary, node 1 streaming from it.
pub async fn running_pair() -> zgres_testkit::group::Group {
    use zgres_testkit::group::{Group, Timing};
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group
}
