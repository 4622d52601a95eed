//! The local demo group: a ZooKeeper server and three PostgreSQL nodes (one primary, two
//! streaming replicas) on loopback ports, shown and then torn down.
//!
//! Automatic failover needs `zgres-deadman`, which is not implemented yet; until it is, the demo
//! stops after showing the group and says so.

use std::time::Duration;

use zgres_testkit::postgres::PgNode;
use zgres_testkit::zookeeper::ZkCluster;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("starting ZooKeeper...");
    let zookeeper = ZkCluster::standalone().await?;
    println!("  ZooKeeper serving on {}", zookeeper.connect_string());

    println!("starting PostgreSQL: one primary, two streaming replicas...");
    let primary = PgNode::init_primary("node1").await?;
    let replicas = [
        primary.clone_replica("node2").await?,
        primary.clone_replica("node3").await?,
    ];
    for replica in &replicas {
        replica.wait_streaming(Duration::from_secs(30)).await?;
    }

    println!(
        "\n{:<6} {:<16} {:<8} {:<9} {:<12}",
        "node", "address", "role", "timeline", "wal lsn"
    );
    for node in std::iter::once(&primary).chain(&replicas) {
        let role = if node.is_in_recovery().await? {
            "replica"
        } else {
            "primary"
        };
        let lsn = node
            .wal_lsn()
            .await?
            .map(|l| l.to_string())
            .unwrap_or_default();
        println!(
            "{:<6} 127.0.0.1:{:<6} {:<8} {:<9} {:<12}",
            node.name(),
            node.port(),
            role,
            node.timeline().await?,
            lsn
        );
    }
    println!(
        "\nzgres-deadman (automatic failover) and zgres-sync are not implemented yet: the demo \
         stops here and removes everything it started."
    );
    Ok(())
}
