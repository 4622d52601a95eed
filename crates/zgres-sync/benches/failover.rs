//! Switchovers and node kills through a real pgbouncer that zgres-sync keeps (real deadmen,
//! ZooKeeper and PostgreSQL), with pgbouncer set as docs/sync.md recommends.
//!
//! A client connects to the writer database in a tight loop and writes a row each time. Per
//! event (a switchover, or a kill -9 of the primary's node whose deadman is then started again)
//! it prints the time from the request or kill to the first write through pgbouncer on the new
//! primary, the time from the lock change (the lock naming the new primary, seen by polling it
//! every 2 ms) to that write, the writes that reached a node in recovery (target 0), the
//! client's failed attempts, and the failed server connects pgbouncer logged; then p50, p99
//! and max of the lock-change figure.
//!
//! Run: `cargo bench -p zgres-sync --bench failover` (`ZGRES_BENCH_SWITCHOVERS`, default 10;
//! `ZGRES_BENCH_KILLS`, default 3; `ZGRES_BENCH_LOGIN_RETRY`, pgbouncer's
//! `server_login_retry`, default the recommended 1).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;
use zgres_schema::documents::Lock;
use zgres_testkit::artifacts::binary;
use zgres_testkit::figures::{percentiles, summary};
use zgres_testkit::group::checks::{request_switchover, wait_ready_to_take_over};
use zgres_testkit::group::{Group, Timing};
use zgres_testkit::pgbouncer::PgBouncer;
use zgres_testkit::poll;
use zgres_testkit::process::ManagedProcess;

const DEADLINE: Duration = Duration::from_secs(120);

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the looping client saw.
#[derive(Default)]
struct Seen {
    /// Writes acknowledged by a primary.
    written: AtomicU64,
    /// Connections that reached a node in recovery.
    in_recovery: AtomicU64,
    /// Attempts that failed (refused, disabled database, broken connection).
    failed: AtomicU64,
    /// The port of the last node a write succeeded on.
    last_port: AtomicU64,
    /// When a write first succeeded on a node other than the one before it.
    moved_at: std::sync::Mutex<Option<Instant>>,
}

/// One attempt: connect to the writer database, check the node, write a row.
async fn attempt(port: u16, seen: &Seen) {
    let conninfo =
        format!("host=127.0.0.1 port={port} user=postgres dbname=main connect_timeout=2");
    let Ok(Ok((client, connection))) = tokio::time::timeout(
        Duration::from_secs(3),
        tokio_postgres::connect(&conninfo, NoTls),
    )
    .await
    else {
        seen.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    tokio::spawn(connection);
    let Ok(row) = client
        .query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[])
        .await
    else {
        seen.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if row.get::<_, bool>(1) {
        seen.in_recovery.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match client
        .execute("INSERT INTO writes (node, seq) VALUES ('bench', 1)", &[])
        .await
    {
        Ok(_) => {
            let now = Instant::now();
            seen.written.fetch_add(1, Ordering::Relaxed);
            let port = u64::from(row.get::<_, i32>(0) as u32);
            if seen.last_port.swap(port, Ordering::Relaxed) != port {
                *seen.moved_at.lock().unwrap() = Some(now);
            }
        }
        Err(_) => {
            seen.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Polls the group's lock every 2 ms until it names `node`; returns when it first did.
async fn lock_names(zk: &zookeeper_client::Client, node: &str) -> Instant {
    loop {
        if let Ok((data, _)) = zk.get_data("/zgres/lock/main").await {
            if let Ok(lock) = zgres_schema::decode::<Lock>("/zgres/lock/main", &data) {
                if lock.node.to_string() == node {
                    return Instant::now();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn failed_server_connects(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" S-") && l.contains("closing because: connect failed"))
        .count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var("ZGRES_TEST_LOG", "info");
    let switchovers = env_count("ZGRES_BENCH_SWITCHOVERS", 10);
    let kills = env_count("ZGRES_BENCH_KILLS", 3);
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let mut primary = group.wait_primary(&[]).await;
    group.wait_following(1 - primary, primary).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let databases = dir.path().join("databases.ini");
    let login_retry = std::env::var("ZGRES_BENCH_LOGIN_RETRY")
        .unwrap_or_else(|_| zgres_testkit::pgbouncer::RECOMMENDED_LOGIN_RETRY.to_owned());
    let bouncer = PgBouncer::start_with_login_retry(dir.path(), &databases, &login_retry).unwrap();
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[zookeeper]\nconnect = \"{}\"\n[sync]\nsnapshot_file = \"{}\"\nretry_max_ms = 200\n\
             [pgbouncer]\ndatabases_file = \"{}\"\nadmin_conninfo = \"{}\"\n[log]\nlevel = \"warn\"\n",
            group.zk.connect_string(),
            dir.path().join("snapshot.json").display(),
            databases.display(),
            bouncer.admin_conninfo(),
        ),
    )
    .unwrap();
    let _sync = ManagedProcess::spawn(
        "zgres-sync",
        binary("zgres-sync"),
        ["--config", config.to_str().unwrap()],
        &[],
        None,
        &dir.path().join("sync.log"),
    )
    .unwrap();
    let port = bouncer.port();
    let seen = Arc::new(Seen::default());
    poll::until("writes through pgbouncer", DEADLINE, || {
        let seen = seen.clone();
        async move {
            attempt(port, &seen).await;
            (seen.written.load(Ordering::Relaxed) > 0).then_some(())
        }
    })
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let client = tokio::spawn({
        let (seen, stop) = (seen.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                attempt(port, &seen).await;
            }
        }
    });

    println!("zgres-sync through a real pgbouncer (server_login_retry = {login_retry}): {switchovers} switchovers, {kills} node kills; session timeout 2 s");
    let (mut switch_times, mut kill_times) = (Vec::new(), Vec::new());
    let (mut switch_from_lock, mut kill_from_lock) = (Vec::new(), Vec::new());
    let (mut failed_connects, mut client_failures) = (Vec::new(), Vec::new());
    for event in 0..switchovers + kills {
        let candidate = 1 - primary;
        group.wait_following(candidate, primary).await;
        // Right after a switchover the old primary needs a moment to reach the new timeline,
        // and a kill in that moment leaves the group waiting for the dead node.
        wait_ready_to_take_over(&group, candidate, primary).await;
        let zk = group.zk_client().await;
        let log_before = std::fs::read_to_string(bouncer.log())
            .unwrap_or_default()
            .len();
        let failed_before = seen.failed.load(Ordering::Relaxed);
        let target = u64::from(group.nodes[candidate].port());
        let is_kill = event >= switchovers;
        let lock_watch = tokio::spawn({
            let (zk, node) = (zk.clone(), group.nodes[candidate].node_id());
            async move { lock_names(&zk, &node).await }
        });
        let started = Instant::now();
        if is_kill {
            group.kill_node(primary);
        } else {
            request_switchover(&group, Some(candidate), None).await;
        }
        poll::until(
            "writes on the new primary through pgbouncer",
            DEADLINE,
            || {
                let done = seen.last_port.load(Ordering::Relaxed) == target;
                std::future::ready(done.then_some(()))
            },
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n{}\n{}",
                group.logs(),
                std::fs::read_to_string(bouncer.log()).unwrap_or_default()
            )
        });
        let took = started.elapsed().as_secs_f64();
        let lock_changed = lock_watch.await.unwrap();
        let first_write = seen.moved_at.lock().unwrap().expect("a write moved");
        let from_lock = first_write
            .saturating_duration_since(lock_changed)
            .as_secs_f64();
        let log = std::fs::read_to_string(bouncer.log()).unwrap_or_default();
        let connects = failed_server_connects(log.get(log_before..).unwrap_or_default());
        let client_failed = seen.failed.load(Ordering::Relaxed) - failed_before;
        println!(
            "  {} {event}: n{primary} -> n{candidate}: writes back after {took:.3} s ({from_lock:.3} s after the lock change); {connects} failed server connects, {client_failed} failed client attempts",
            if is_kill { "kill" } else { "switchover" },
        );
        if is_kill {
            kill_times.push(took);
            kill_from_lock.push(from_lock);
            group.start(primary);
        } else {
            switch_times.push(took);
            switch_from_lock.push(from_lock);
        }
        failed_connects.push(connects as f64);
        client_failures.push(client_failed as f64);
        primary = candidate;
    }
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    println!();
    summary(
        "switchover -> first write through pgbouncer on the new primary (s)",
        &switch_times,
    );
    summary(
        "node kill -> first write through pgbouncer on the new primary (s)",
        &kill_times,
    );
    if !switch_from_lock.is_empty() {
        percentiles(
            "switchover: lock change -> writer serving through pgbouncer",
            &switch_from_lock,
        );
    }
    if !kill_from_lock.is_empty() {
        percentiles(
            "node kill: lock change -> writer serving through pgbouncer",
            &kill_from_lock,
        );
    }
    summary("failed server connects per event", &failed_connects);
    summary("failed client attempts per event", &client_failures);
    println!(
        "writes acknowledged: {}; connections that reached a node in recovery: {} (target 0)",
        seen.written.load(Ordering::Relaxed),
        seen.in_recovery.load(Ordering::Relaxed)
    );
}
