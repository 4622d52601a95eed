//! The local demo: ZooKeeper, three PostgreSQL nodes with their deadmen, then a failover to
//! watch. Run through `scripts/demo` (which builds `zgres-deadman` first).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{Group, Timing};
use zgres_schema::decode;
use zgres_schema::documents::NodeState;

async fn show(group: &Group, title: &str) {
    let client = group.zk_client().await;
    let holder = group.lock_holder(&client).await;
    println!("\n== {title}");
    println!(
        "{:<5} {:<17} {:<8} {:<9} {:<12} {:<12} {:<6}",
        "node", "address", "role", "timeline", "write lsn", "replay lsn", "lock"
    );
    for (i, node) in group.nodes.iter().enumerate() {
        let path = format!("{}/main_{}", group.layout.dir("state"), node.node_id());
        let state: Option<NodeState> = match client.get_data(&path).await {
            Ok((data, _)) => decode(&path, &data).ok(),
            Err(_) => None,
        };
        let cell = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        match state {
            Some(s) => println!(
                "{:<5} {:<17} {:<8} {:<9} {:<12} {:<12} {:<6}",
                node.name,
                node.node_id(),
                format!("{:?}", s.role).to_lowercase(),
                cell(s.timeline.map(|t| t.to_string())),
                cell(s.wal.write.map(|l| l.to_string())),
                cell(s.wal.replay.map(|l| l.to_string())),
                if holder == Some(i) { "held" } else { "" }
            ),
            None => println!(
                "{:<5} {:<17} (no state in ZooKeeper: node down)",
                node.name,
                node.node_id()
            ),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var("ZGRES_TEST_LOG", "info");
    let exe = std::env::current_exe().unwrap();
    let deadman = exe
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .join("zgres-deadman");
    std::env::set_var("ZGRES_DEADMAN_BIN", &deadman);
    println!(
        "Starting ZooKeeper and three PostgreSQL 15 nodes (n0 primary, n1 and n2 replicas)..."
    );
    let timing = Timing {
        session_timeout_ms: 4_000,
        fence_margin_ms: 1_000,
        primary_restart_timeout_ms: 10_000,
        loop_interval_ms: 1_000,
    };
    let mut group = Group::prepare(3, timing).await;
    println!(
        "ZooKeeper at {}; starting a zgres-deadman beside each node...",
        group.zk.connect_string()
    );
    group.start_all();
    let primary = group.wait_primary(&[]).await;
    group.wait_following(1, primary).await;
    group.wait_following(2, primary).await;
    show(&group, "the group, as zgres publishes it in ZooKeeper").await;

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
    tokio::time::sleep(Duration::from_millis(1_500)).await; // let states refresh for the table
    show(&group, "after the failover").await;
    println!(
        "\nDeadman logs were in a temp dir; everything is removed now. zgres-sync (pgbouncer/HAProxy) \
         and zgresctl are not implemented yet."
    );
}
