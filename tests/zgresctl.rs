//! zgresctl against a real group run by deadmen: list, show, config get/set/edit,
//! pause/resume, history, switchover/failover, and clear errors.

use std::process::Output;

use zgres_schema::documents::LockRelease;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;
use zgres_testkit::znodes::put;
use zgres_tests::e2e::binary;

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
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
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
        format!("| n0       | {primary:<22} | primary"),
        format!("| n1       | {replica:<22} | replica"),
    ] {
        assert!(table.contains(&line), "{line:?} not in\n{table}");
    }

    let shown: serde_json::Value =
        serde_json::from_str(&stdout(&zgresctl(&zk, &["show", "main", &replica]))).unwrap();
    assert_eq!(shown["state"]["role"], "replica");
    assert_eq!(shown["leader"], false);
    // A node's configured name works wherever its id does.
    let by_name: serde_json::Value =
        serde_json::from_str(&stdout(&zgresctl(&zk, &["show", "main", "n1"]))).unwrap();
    assert_eq!(by_name["node"], replica.as_str());
    assert_eq!(by_name["state"]["name"], "n1");

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
    let history = stdout(&zgresctl(&zk, &["history", "main"]));
    assert!(
        history.contains("bootstrap") && history.contains(&primary),
        "{history}"
    );

    // config edit: the editor is a program that rewrites the file (no shell involved).
    let dir = tempfile::tempdir().unwrap();
    let editor = dir.path().join("editor");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/\"maximum_lag_on_failover_bytes\": 4096/\"maximum_lag_on_failover_bytes\": 8192/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edit = std::process::Command::new(binary("zgresctl"))
        .args(["--zookeeper", &zk, "config", "edit", "main"])
        .env("VISUAL", &editor)
        .output()
        .unwrap();
    stdout(&edit);
    let config: serde_json::Value =
        serde_json::from_str(&stdout(&zgresctl(&zk, &["config", "get", "main"]))).unwrap();
    assert_eq!(config["maximum_lag_on_failover_bytes"], 8192);
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/\"paused\"/\"pausd\"/' \"$1\"\n",
    )
    .unwrap();
    let bad = std::process::Command::new(binary("zgresctl"))
        .args(["--zookeeper", &zk, "config", "edit", "main"])
        .env("VISUAL", &editor)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("pausd"));

    // Switchover needs confirmation: without a terminal, --force.
    let refused = zgresctl(&zk, &["switchover", "main"]);
    assert_eq!(refused.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    let out = zgresctl(&zk, &["switchover", "main", "--to", &primary, "--force"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already the primary"));
    // A scheduled one waits, and can be cancelled.
    let out = zgresctl(
        &zk,
        &[
            "switchover",
            "main",
            "--to",
            &replica,
            "--scheduled",
            "+1h",
            "--force",
        ],
    );
    stdout(&out);
    let pending = zgresctl(&zk, &["switchover", "main", "--force"]);
    assert!(String::from_utf8_lossy(&pending.stderr).contains("already pending"));
    assert!(stdout(&zgresctl(&zk, &["switchover", "--cancel", "main"])).contains("cancelled"));
    // Now at once: the replica becomes the primary, the old one follows it.
    let done = stdout(&zgresctl(
        &zk,
        &["switchover", "main", "--to", &replica, "--force"],
    ));
    assert!(
        done.contains(&format!("{replica} is the primary now")),
        "{done}"
    );
    group.wait_following(0, 1).await;
    poll::until(
        "the old primary to publish itself as a replica",
        DEADLINE,
        || {
            let shown = zgresctl(&zk, &["show", "main", &primary]);
            let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap_or_default();
            std::future::ready(
                (v["state"]["role"] == "replica"
                    && v["state"]["problems"] == serde_json::json!([]))
                .then_some(()),
            )
        },
    )
    .await
    .unwrap();
    // And a forced failover back, naming the node by its configured name.
    let out = zgresctl(&zk, &["failover", "main", "--to", "n0", "--force"]);
    let done = stdout(&out);
    assert!(
        done.contains(&format!("{primary} is the primary now")),
        "{done}"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("n0 ({primary}, matched by name)")),
        "{said}"
    );
    group.wait_following(1, 0).await;
    let history = stdout(&zgresctl(&zk, &["history", "main"]));
    assert!(
        history.contains("switchover") && history.contains("manualfailover"),
        "{history}"
    );

    // list --watch refreshes until interrupted (JSON: one snapshot per line).
    let mut watch = std::process::Command::new(binary("zgresctl"))
        .args(["--zookeeper", &zk, "--json", "list", "--watch", "0.2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    for _ in 0..2 {
        let line = lines.next().unwrap().unwrap();
        let snapshot: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(snapshot[0]["group"], "main");
    }
    watch.kill().unwrap();
    watch.wait().unwrap();

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

    // The history says when the lock was last given up with nobody writing under it
    // (`/released`, written here as a deadman writes it), and an unreadable record as such.
    let client = group.zk_client().await;
    let record = zgres_schema::encode(&LockRelease {
        lock_czxid: 7,
        node: primary.parse().unwrap(),
    })
    .unwrap();
    put(&client, "/zgres/released/main", &record).await;
    let history = stdout(&zgresctl(&zk, &["history", "main"]));
    assert!(
        history.contains(&format!(
            "last lock given up with nobody writing under it: by {primary}"
        )),
        "{history}"
    );
    put(&client, "/zgres/released/main", b"{\"v\":1,\"node\":\"x\"}").await;
    let history = stdout(&zgresctl(&zk, &["history", "main"]));
    assert!(
        history.contains("! unreadable, kept as found: znode /zgres/released/main")
            && !history.contains("nobody writing under it"),
        "{history}"
    );
}

/// A root with no group is an error that says where zgresctl looked; options work before or
/// after the subcommand; a closed standard output ends zgresctl quietly with status 141.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zgresctl_says_when_nothing_is_there_and_handles_a_closed_pipe() {
    let zk = zgres_testkit::zookeeper::ZkCluster::standalone()
        .await
        .unwrap();
    let hosts = zk.connect_string();
    for args in [
        vec!["--zookeeper", hosts.as_str(), "list"],
        vec![
            "list",
            "--zookeeper",
            hosts.as_str(),
            "--root",
            "/elsewhere",
        ],
    ] {
        let out = std::process::Command::new(binary("zgresctl"))
            .args(&args)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains("no group under /") && said.contains(&hosts),
            "{args:?}: {said}"
        );
        assert!(out.stdout.is_empty());
    }

    // A group's config makes the root non-empty; `--json list` then writes into a closed pipe.
    let client = zookeeper_client::Client::connect(&hosts).await.unwrap();
    let opts =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    client.mkdir("/zgres/config", &opts).await.unwrap();
    for i in 0..200 {
        client
            .create(&format!("/zgres/config/g{i}"), b"{\"v\":1}", &opts)
            .await
            .unwrap();
    }
    // A state its deadman stopped refreshing (written long ago, 1 s refresh) is marked stale.
    client.mkdir("/zgres/state", &opts).await.unwrap();
    client
        .create(
            "/zgres/state/g0_127.0.0.1:5999",
            br#"{"v":1,"node":"127.0.0.1:5999","name":"n9","role":"primary","updated_at_ms":1000,"refresh_ms":1000}"#,
            &zookeeper_client::CreateMode::Ephemeral.with_acls(zookeeper_client::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let table = stdout(&zgresctl(&hosts, &["list", "g0"]));
    assert!(
        table.contains("| n9       | 127.0.0.1:5999         | primary (no lock!)")
            && table.contains("stale: no update for"),
        "{table}"
    );

    let mut child = std::process::Command::new(binary("zgresctl"))
        .args(["list", "--json", "--zookeeper", &hosts])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}

/// `zgresctl dsn`: a connection string that leads to the primary, and with `--replica` to the
/// replicas (libpq checks `target_session_attrs`); an unknown group is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zgresctl_dsn_leads_to_the_primary_and_to_the_replicas() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    let replica = 1 - primary;
    group.wait_following(replica, primary).await;
    let zk = group.zk.connect_string();

    let dsn = |args: &'static [&'static str]| {
        let zk = zk.clone();
        async move {
            let out = zgresctl(&zk, args);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
    };
    let writer = poll::until("zgresctl dsn main", DEADLINE, || dsn(&["dsn", "main"]))
        .await
        .unwrap();
    assert_eq!(
        writer,
        format!("host=127.0.0.1 port={}", group.nodes[primary].port())
    );
    let reader = poll::until("zgresctl dsn main --replica", DEADLINE, || {
        dsn(&["dsn", "main", "--replica"])
    })
    .await
    .unwrap();
    assert_eq!(
        reader,
        format!(
            "host=127.0.0.1 port={} target_session_attrs=standby",
            group.nodes[replica].port()
        )
    );
    // psql, as libpq is the client these strings are for (tokio-postgres knows no
    // `target_session_attrs=standby`).
    let psql = zgres_testkit::postgres::bindir().join("psql");
    for (text, in_recovery) in [(&writer, "f"), (&reader, "t")] {
        let conninfo = format!("{text} user=postgres dbname=postgres connect_timeout=5");
        let out = std::process::Command::new(&psql)
            .args(["-d", &conninfo, "-Atc", "SELECT pg_is_in_recovery()"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            in_recovery,
            "{conninfo}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&zgresctl(&zk, &["dsn", "main", "--json"]))).unwrap();
    assert_eq!(json["nodes"][0], group.nodes[primary].node_id().as_str());

    let unknown = zgresctl(&zk, &["dsn", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no group named \"nosuch\""),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

/// In synchronous mode a failover may only name a node `/sync` lists (any other may lack
/// acknowledged commits, and its deadman drops such a request): zgresctl refuses it, says why,
/// and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zgresctl_refuses_a_failover_to_a_node_outside_sync() {
    let zk = zgres_testkit::zookeeper::ZkCluster::standalone()
        .await
        .unwrap();
    let hosts = zk.connect_string();
    let client = zookeeper_client::Client::connect(&hosts).await.unwrap();
    let open = zookeeper_client::Acls::anyone_all();
    let persistent = zookeeper_client::CreateMode::Persistent.with_acls(open);
    for dir in ["/zgres/config", "/zgres/state", "/zgres/sync"] {
        client.mkdir(dir, &persistent).await.unwrap();
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    client
        .create(
            "/zgres/config/s0",
            br#"{"v":1,"synchronous_mode":"on"}"#,
            &persistent,
        )
        .await
        .unwrap();
    let ephemeral = zookeeper_client::CreateMode::Ephemeral.with_acls(open);
    for (node, name) in [("127.0.0.1:5997", "a"), ("127.0.0.1:5998", "b")] {
        let state = format!(
            r#"{{"v":1,"node":"{node}","name":"{name}","role":"replica","updated_at_ms":{now_ms},"refresh_ms":60000}}"#
        );
        client
            .create(
                &format!("/zgres/state/s0_{node}"),
                state.as_bytes(),
                &ephemeral,
            )
            .await
            .unwrap();
    }
    client
        .create(
            "/zgres/sync/s0",
            br#"{"v":1,"primary":"127.0.0.1:5996","standbys":["127.0.0.1:5997"]}"#,
            &persistent,
        )
        .await
        .unwrap();

    // Bounded: were the request written, zgresctl would wait for a failover that never comes.
    let run = tokio::process::Command::new(binary("zgresctl"))
        .args([
            "--zookeeper",
            &hosts,
            "failover",
            "s0",
            "--to",
            "b",
            "--force",
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("zgresctl did not refuse: it wrote the request and waited for it")
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("127.0.0.1:5998 is not in /sync") && said.contains("On"),
        "{said}"
    );
    assert!(
        client
            .check_stat("/zgres/switchover/s0")
            .await
            .unwrap()
            .is_none(),
        "a refused request was written"
    );
}
