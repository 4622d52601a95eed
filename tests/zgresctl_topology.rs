//! `zgresctl topology` and `zgresctl remove` against a real group.

use zgres_schema::{GroupName, Znode};
use zgres_testkit::group::DEADLINE;
use zgres_testkit::poll;
use zgres_tests::e2e::{running_pair, zgresctl};
use zookeeper_client as zk;

/// Topology shows the replica under the primary it streams from; remove refuses while a
/// deadman of the group runs, then deletes every znode of the group and nothing of another
/// group, and a second run deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zgresctl_topology_then_remove() {
    let mut group = running_pair().await;
    let zk = group.zk.connect_string();
    let (n0, n1) = (group.nodes[0].node_id(), group.nodes[1].node_id());

    let members = poll::until("the replica's upstream in topology", DEADLINE, || async {
        let out = zgresctl(&zk, &["--json", "topology", "main"]).await;
        let members: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let replica = members
            .as_array()?
            .iter()
            .find(|m| m["node"] == n1.as_str())?
            .clone();
        (replica["upstream"] == n0.as_str()).then_some(members)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    let primary = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node"] == n0.as_str())
        .unwrap();
    assert_eq!(primary["leader"], true);
    let text = zgresctl(&zk, &["topology", "main"]).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("└─ n1 ({n1}) replica")), "{text}");

    // The group's own config, to be removed with it.
    let set = zgresctl(
        &zk,
        &[
            "config",
            "set",
            "main",
            "maximum_lag_on_failover_bytes=1048576",
        ],
    )
    .await;
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    // Another group's config, which must survive.
    let client = group.zk_client().await;
    let other = group
        .layout
        .path(&Znode::Config(GroupName::new("other").unwrap()));
    client
        .create(
            &other,
            br#"{"v":1}"#,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();

    let refused = zgresctl(&zk, &["remove", "main", "--force"]).await;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("live deadman"), "{said}");
    let config = group.path(Znode::Config);
    let history = group.path(Znode::History);
    assert!(client.check_stat(&history).await.unwrap().is_some());

    group.kill_node(0);
    group.kill_node(1);
    let lock = group.path(Znode::Lock);
    let states = group.layout.dir(zgres_schema::Dir::State);
    poll::until("the deadmen's sessions to expire", DEADLINE, || async {
        let gone = client.check_stat(&lock).await.ok()?.is_none()
            && client.get_children(&states).await.ok()?.0.is_empty();
        gone.then_some(())
    })
    .await
    .unwrap();
    let out = zgresctl(&zk, &["--json", "remove", "main", "--force"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deleted: Vec<&str> = removed["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let db_id = group.path(Znode::DatabaseId);
    for path in [&history, &config, &db_id] {
        assert!(
            deleted.contains(&path.as_str()),
            "{path} not in {deleted:?}"
        );
        assert!(
            client.check_stat(path).await.unwrap().is_none(),
            "{path} left"
        );
    }
    assert!(
        client.check_stat(&other).await.unwrap().is_some(),
        "another group's config deleted"
    );
    let again = zgresctl(&zk, &["--json", "remove", "main", "--force"]).await;
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["deleted"], serde_json::json!([]));
}
