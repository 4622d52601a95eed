//! The snapshot's cost at scale, without ZooKeeper: 10,000 groups × 3 nodes (30,000 `/conn`
//! and 10,000 `/lock` znodes) built from scratch, then 3,000 single-znode changes applied one by
//! one, each followed by a snapshot, as zgres-sync does after every refresh.
//!
//! Run: `cargo bench -p zgres-sync --bench snapshot`

use std::time::Instant;

use zgres_schema::documents::{ConnInfo, Lock, Tags};
use zgres_schema::{encode, GroupName, NodeId, Timeline, ZkLayout};
use zgres_sync::snapshot::{RawTree, SnapshotBuilder};

const GROUPS: usize = 10_000;
const CHANGES: usize = 3_000;

fn node(group: usize, i: usize) -> NodeId {
    format!("10.{}.{}.{}:5432", group / 250, group % 250, i + 1)
        .parse()
        .unwrap()
}

fn conn(node: NodeId, tag: bool) -> Vec<u8> {
    encode(&ConnInfo {
        role: None,
        api_port: None,
        host: node.addr().ip().to_string(),
        port: 5432,
        dbname: None,
        tags: Tags {
            noloadbalance: tag,
            ..Tags::default()
        },
    })
    .unwrap()
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let layout = ZkLayout::default();
    let mut tree = RawTree::new();
    for g in 0..GROUPS {
        let group = format!("g{g}");
        for i in 0..3 {
            let n = node(g, i);
            tree.insert(format!("/zgres/conn/{group}_{n}"), conn(n, false).into());
        }
        let lock = Lock {
            node: node(g, 0),
            timeline: Timeline::FIRST,
        };
        tree.insert(
            format!("/zgres/lock/{group}"),
            encode(&lock).unwrap().into(),
        );
    }
    println!(
        "snapshot benchmark: {GROUPS} groups x 3 nodes ({} znodes), {CHANGES} changes",
        tree.len()
    );
    let mut builder = SnapshotBuilder::new(layout.clone(), Vec::<GroupName>::new());
    let start = Instant::now();
    builder.reset(&tree);
    let groups = builder.snapshot().groups.len();
    println!(
        "full build of {groups} groups: {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    let mut worst = 0f64;
    let start = Instant::now();
    for c in 0..CHANGES {
        // Spread over the groups: a node's tags flip (its /conn rewritten).
        let g = (c * 7919) % GROUPS;
        let n = node(g, c % 3);
        let path = format!("/zgres/conn/g{g}_{n}");
        let data = conn(n, c % 2 == 0);
        let one = Instant::now();
        builder.update(&path, Some(&data.into()));
        let snapshot = builder.snapshot();
        assert_eq!(snapshot.groups.len(), GROUPS);
        worst = worst.max(one.elapsed().as_secs_f64());
    }
    let total = start.elapsed().as_secs_f64();
    println!(
        "{CHANGES} changes, each decoded and its group assembled: {:.1} ms in all, {:.1} µs mean, {:.1} µs worst",
        total * 1e3,
        total / CHANGES as f64 * 1e6,
        worst * 1e6
    );
    let start = Instant::now();
    let _ = zgres_sync::snapshot::build(&layout, &tree, &[]);
    println!(
        "for comparison, one full rebuild (what every refresh cost before): {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    println!("resident memory of this process: {:.1} MB", rss_mb());
}
