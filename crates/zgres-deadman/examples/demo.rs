//! The local demo: ZooKeeper, three PostgreSQL nodes with their deadmen, zgres-sync driving a
//! pgbouncer, then a failover to watch. Run through `scripts/demo` (which builds the binaries
//! first).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;
use zgres_testkit::group::{Group, Timing};
use zgres_testkit::pgbouncer::PgBouncer;
use zgres_testkit::process::ManagedProcess;

/// The port of the server pgbouncer's database `main` leads to, if a write there succeeds.
async fn through_pgbouncer(port: u16) -> Option<i32> {
    let conninfo =
        format!("host=127.0.0.1 port={port} user=postgres dbname=main connect_timeout=2");
    let (client, connection) = tokio_postgres::connect(&conninfo, NoTls).await.ok()?;
    tokio::spawn(connection);
    client
        .execute("INSERT INTO writes (node, seq) VALUES ('demo', 0)", &[])
        .await
        .ok()?;
    let row = client
        .query_one("SELECT inet_server_port()", &[])
        .await
        .ok()?;
    Some(row.get(0))
}

async fn wait_pgbouncer_at(port: u16, backend: u16) {
    let start = Instant::now();
    while through_pgbouncer(port).await != Some(i32::from(backend)) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pgbouncer never reached {backend}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the lock holder has published itself as primary and every other live node as
/// a replica on the same timeline.
async fn settled(group: &Group, bin_dir: &std::path::Path) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let out = std::process::Command::new(bin_dir.join("zgresctl"))
            .args(["--zookeeper", &group.zk.connect_string(), "list", "--json"])
            .output()
            .expect("zgresctl runs");
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let roles_settled = listed[0]["nodes"].as_array().is_some_and(|nodes| {
            nodes.iter().all(|n| {
                matches!(
                    (n["leader"].as_bool(), n["state"]["role"].as_str()),
                    (Some(true), Some("primary")) | (Some(false), Some("replica"))
                )
            })
        });
        let timelines: std::collections::BTreeSet<String> = listed[0]["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| n["state"]["timeline"].to_string())
                    .collect()
            })
            .unwrap_or_default();
        if roles_settled && timelines.len() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs zgresctl against the group and prints what it says, as an operator would see it.
fn zgresctl(group: &Group, bin_dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(bin_dir.join("zgresctl"))
        .args(["--zookeeper", &group.zk.connect_string()])
        .args(args)
        .output()
        .expect("zgresctl runs");
    print!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Prints `zgresctl list` for the group.
fn show(group: &Group, bin_dir: &std::path::Path, title: &str) {
    println!("\n== {title}: zgresctl list");
    zgresctl(group, bin_dir, &["list"]);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var("ZGRES_TEST_LOG", "info");
    let exe = std::env::current_exe().unwrap();
    let bin_dir = exe.parent().and_then(|p| p.parent()).unwrap().to_owned();
    std::env::set_var("ZGRES_DEADMAN_BIN", bin_dir.join("zgres-deadman"));
    println!(
        "Starting ZooKeeper and three PostgreSQL 15 nodes (n0 primary, n1 and n2 replicas)..."
    );
    let timing = Timing {
        session_timeout_ms: 4_000,
        fence_margin_ms: 1_000,
        primary_restart_timeout_ms: 10_000,
        loop_interval_ms: 1_000,
        ..Timing::default()
    };
    let mut group = Group::prepare(3, timing).await;
    println!(
        "ZooKeeper at {}; starting a zgres-deadman beside each node...",
        group.zk.connect_string()
    );
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    group.wait_following(1, primary).await;
    group.wait_following(2, primary).await;
    settled(&group, &bin_dir).await;
    show(&group, &bin_dir, "the group");

    // An application host: pgbouncer, kept pointed at the primary by zgres-sync.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let databases = dir.path().join("databases.ini");
    let bouncer = PgBouncer::start(dir.path(), &databases).unwrap();
    let sync_config = dir.path().join("sync.toml");
    std::fs::write(
        &sync_config,
        format!(
            "[zookeeper]\nconnect = \"{}\"\n[sync]\nsnapshot_file = \"{}\"\n\
             [pgbouncer]\ndatabases_file = \"{}\"\nadmin_conninfo = \"{}\"\n",
            group.zk.connect_string(),
            dir.path().join("snapshot.json").display(),
            databases.display(),
            bouncer.admin_conninfo()
        ),
    )
    .unwrap();
    let _sync = ManagedProcess::spawn(
        "zgres-sync",
        bin_dir.join("zgres-sync"),
        ["--config", sync_config.to_str().unwrap()],
        &[],
        None,
        &dir.path().join("sync.log"),
    )
    .unwrap();
    let primary_port = group.nodes[primary].port();
    wait_pgbouncer_at(bouncer.port(), primary_port).await;
    println!(
        "\npgbouncer on 127.0.0.1:{}: database \"main\" writes to n{primary} (port {primary_port}), kept so by zgres-sync",
        bouncer.port()
    );

    println!("\nKilling n{primary}'s deadman and PostgreSQL with kill -9 (session timeout 4 s)...");
    let deadman_process = group.nodes[primary].deadman.take().unwrap();
    let start = Instant::now();
    group.nodes[primary].kill_postgres();
    deadman_process.kill();
    let new = group.wait_primary(&[primary]).await;
    println!(
        "n{new} holds the lock and accepted a write {:.1} s after the kill",
        start.elapsed().as_secs_f64()
    );
    let other = (0..3).find(|&i| i != primary && i != new).unwrap();
    group.wait_following(other, new).await;
    println!(
        "n{other} streams from n{new} ({:.1} s after the kill)",
        start.elapsed().as_secs_f64()
    );
    let new_port = group.nodes[new].port();
    wait_pgbouncer_at(bouncer.port(), new_port).await;
    println!(
        "pgbouncer's \"main\" now writes to n{new} (port {new_port}), {:.1} s after the kill",
        start.elapsed().as_secs_f64()
    );
    settled(&group, &bin_dir).await;
    show(&group, &bin_dir, "after the failover");

    println!("\nStarting n{primary}'s deadman again: it rewinds its data directory to n{new}'s timeline and follows it...");
    let start = Instant::now();
    group.start(primary);
    group.wait_following(primary, new).await;
    println!(
        "n{primary} streams from n{new} ({:.1} s after its deadman started)",
        start.elapsed().as_secs_f64()
    );
    settled(&group, &bin_dir).await;
    show(&group, &bin_dir, "after the rejoin");

    println!(
        "\nPlanned switchover back to n{primary}: zgresctl switchover main --to {} --force",
        group.nodes[primary].node_id()
    );
    let to = group.nodes[primary].node_id();
    zgresctl(
        &group,
        &bin_dir,
        &["switchover", "main", "--to", &to, "--force"],
    );
    wait_pgbouncer_at(bouncer.port(), primary_port).await;
    println!("pgbouncer's \"main\" writes to n{primary} (port {primary_port}) again");
    settled(&group, &bin_dir).await;
    show(&group, &bin_dir, "after the switchover");
    println!("\n== zgresctl history main");
    zgresctl(&group, &bin_dir, &["history", "main"]);
    println!("\nLogs were in temp dirs; everything is removed now.");
}
