//! Issue 14, point 4: a replica tagged `replicatefrom` streams from that member while it is a
//! healthy replica of the primary, falls back to the primary when it is gone, and goes back
//! to it when it returns; `zgresctl topology` shows the tree.

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicatefrom_replica_cascades_falls_back_to_the_primary_and_returns() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.nodes[2].extra_config = "[tags]\nreplicatefrom = \"n1\"\n".into();
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 1).await;

    // The tree, as the deadmen publish it (n2's state follows its re-pointing within a round).
    let middle = group.nodes[1].node_id();
    let zk = group.zk.connect_string();
    poll::until("topology to show n2 under n1", DEADLINE, || async {
        let (code, out) = zgres_testkit::zgresctl::run(&zk, &["--json", "topology", "main"]);
        // The JSON document on stdout (anything zgresctl wrote to stderr follows it).
        let topology: serde_json::Value = serde_json::Deserializer::from_str(&out)
            .into_iter()
            .next()?
            .ok()?;
        let n2 = topology
            .as_array()?
            .iter()
            .find(|m| m["node"] == group.nodes[2].node_id())?;
        (code == 0 && n2["upstream"] == serde_json::json!(middle)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));

    // The middle replica dies: n2 follows the primary; it comes back: n2 cascades again.
    group.kill_node(1);
    group.wait_following(2, 0).await;
    group.start(1);
    group.wait_following(1, 0).await;
    group.wait_following(2, 1).await;
}
