//! zgresctl against a real group run by deadmen: list, show, config get/set, pause/resume,
//! history, and clear errors.

mod e2e;
#[path = "../crates/zgres-deadman/tests/support/mod.rs"]
mod support;

use std::process::Output;

use e2e::binary;
use support::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

fn zgresctl(zookeeper: &str, args: &[&str]) -> Output {
    std::process::Command::new(binary("zgresctl"))
        .arg("--zookeeper")
        .arg(zookeeper)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zgresctl_shows_and_steers_a_group() {
    std::env::set_var("ZGRES_DEADMAN_BIN", binary("zgres-deadman"));
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all();
    assert_eq!(group.wait_primary(&[]).await, 0);
    let zk = group.zk.connect_string();
    let (primary, replica) = (group.nodes[0].node_id(), group.nodes[1].node_id());

    // Both nodes listed with their roles once the replica's state has caught up.
    let both_listed = || -> Option<serde_json::Value> {
        let out = zgresctl(&zk, &["list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).ok()?;
        let roles: Vec<String> = v[0]["nodes"]
            .as_array()?
            .iter()
            .map(|n| n["state"]["role"].as_str().unwrap_or_default().to_owned())
            .collect();
        (roles.len() == 2 && roles.iter().any(|r| r == "replica")).then_some(v)
    };
    let listed = poll::until("both nodes in zgresctl list", DEADLINE, || {
        std::future::ready(both_listed())
    })
    .await
    .unwrap();
    assert_eq!(listed[0]["group"], "main");
    assert_eq!(listed[0]["leader"], primary.as_str());
    let table = stdout(&zgresctl(&zk, &["list"]));
    assert!(table.contains("+ Group: main"), "{table}");
    for line in [
        format!("| {primary:<22} | primary"),
        format!("| {replica:<22} | replica"),
    ] {
        assert!(table.contains(&line), "{line:?} not in\n{table}");
    }

    let shown: serde_json::Value =
        serde_json::from_str(&stdout(&zgresctl(&zk, &["show", "main", &replica]))).unwrap();
    assert_eq!(shown["state"]["role"], "replica");
    assert_eq!(shown["leader"], false);

    let set = zgresctl(
        &zk,
        &[
            "config",
            "set",
            "main",
            "maximum_lag_on_failover_bytes=4096",
        ],
    );
    stdout(&set);
    let config: serde_json::Value =
        serde_json::from_str(&stdout(&zgresctl(&zk, &["config", "get", "main"]))).unwrap();
    assert_eq!(config["maximum_lag_on_failover_bytes"], 4096);
    stdout(&zgresctl(&zk, &["pause", "main"]));
    assert!(stdout(&zgresctl(&zk, &["list"])).contains("(PAUSED)"));
    stdout(&zgresctl(&zk, &["resume", "main"]));
    let config: serde_json::Value =
        serde_json::from_str(&stdout(&zgresctl(&zk, &["config", "get", "main"]))).unwrap();
    assert_eq!(config["paused"], false);
    assert_eq!(
        config["maximum_lag_on_failover_bytes"], 4096,
        "other keys kept"
    );
    assert!(stdout(&zgresctl(&zk, &["history", "main"])).contains("no promotions"));

    // Errors say what is wrong.
    let out = zgresctl(&zk, &["list", "nosuchgroup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no group named \"nosuchgroup\""));
    let out = zgresctl(&zk, &["show", "main", "10.9.9.9:1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no node 10.9.9.9:1"));
    let out = zgresctl(&zk, &["config", "set", "main", "bogus=1"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    let out = zgresctl("127.0.0.1:1", &["list"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach ZooKeeper at 127.0.0.1:1"));
}
