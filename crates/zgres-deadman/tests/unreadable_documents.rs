//! Unreadable zgres documents never weaken safety and are never overwritten: a bad `/config`
//! keeps the last valid config in force (or, before any, no automatic action); a bad `/sync`
//! lets nobody promote and leaves `synchronous_standby_names` alone; bad `/static`,
//! `/switchover` and `/history` are kept byte for byte, and a promotion is recorded beside an
//! unreadable history.

use std::time::{Duration, Instant};

use zgres_schema::documents::{GroupConfig, Promotion, SyncMode};
use zgres_schema::{decode, Znode};
use zgres_testkit::group::checks::{node_state, wait_synchronous_standby};
use zgres_testkit::group::{missing_acks, Group, Timing, Writer, DEADLINE};
use zgres_testkit::poll;
use zookeeper_client as zk;

/// Bad `/config` contents: not JSON, the wrong shape, a wrong field type, an unknown schema
/// version, and a valid document padded to 900 KiB; each with what its warning says.
fn bad_configs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("malformed JSON", b"\x00not json{".to_vec()),
        ("not a JSON object", b"[1, 2, 3]".to_vec()),
        (
            "field `synchronous_mode`",
            br#"{"v":1,"synchronous_mode":42}"#.to_vec(),
        ),
        (
            "unsupported schema version 7",
            br#"{"v":7,"synchronous_mode":"off"}"#.to_vec(),
        ),
        (
            "over the 65536-byte limit",
            format!(
                r#"{{"v":1,"synchronous_mode":"off","pad":"{}"}}"#,
                "x".repeat(900 * 1024)
            )
            .into_bytes(),
        ),
    ]
}

async fn put(client: &zk::Client, path: &str, data: &[u8]) {
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match client.create(path, data, &opts).await {
        Err(zk::Error::NodeExists) => {
            client.set_data(path, data, None).await.unwrap();
        }
        other => {
            other.unwrap();
        }
    }
}

/// Waits until node `i` publishes a warning containing `text`.
async fn wait_warning(group: &Group, client: &zk::Client, i: usize, text: &str) {
    poll::until(&format!("n{i} to warn about {text}"), DEADLINE, || async {
        let state = node_state(group, client, i).await?;
        state
            .warnings
            .iter()
            .any(|w| w.contains(text))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

async fn standby_names(group: &Group, i: usize) -> String {
    let client = group.nodes[i].client().await.expect("postgres answers");
    let row = client
        .query_one("SHOW synchronous_standby_names", &[])
        .await
        .unwrap();
    row.get(0)
}

/// Two nodes in synchronous mode `on`, with the standby in `/sync`: the group, its primary, its
/// standby and the primary's `synchronous_standby_names`.
async fn synchronous_group() -> (Group, usize, usize, String) {
    let mut group = Group::prepare(2, Timing::default()).await;
    group
        .set_group_config(&GroupConfig {
            synchronous_mode: SyncMode::On,
            ..GroupConfig::default()
        })
        .await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    let standby = wait_synchronous_standby(&group, primary).await;
    let names = standby_names(&group, primary).await;
    (group, primary, standby, names)
}

/// Synchronous mode on, then every kind of bad `/config`: `synchronous_standby_names` stays,
/// each is logged and published as a warning, and a primary kill afterwards loses no
/// acknowledged commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_config_keeps_synchronous_mode_in_force() {
    let (mut group, primary, standby, names) = synchronous_group().await;
    assert!(!names.is_empty());
    let writer = Writer::start(&group);
    let client = group.zk_client().await;
    let config_path = group.path(Znode::Config);

    for (what, data) in bad_configs() {
        put(&client, &config_path, &data).await;
        wait_warning(&group, &client, primary, what).await;
        // Observed for a while: the primary changes nothing.
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            assert_eq!(
                standby_names(&group, primary).await,
                names,
                "{what}: synchronous_standby_names changed\n{}",
                group.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = group.nodes[primary].log_text();
        assert!(
            log.lines().any(|l| l.contains(&config_path)
                && l.contains(what)
                && l.contains("behaviour unchanged")),
            "{what}: not logged\n{log}"
        );
    }

    group.kill_node(primary);
    let new = group.wait_primary(&[primary]).await;
    assert_eq!(new, standby, "only the synchronous standby is promoted");
    let acks = writer.finish().await;
    let missing = missing_acks(&group, &acks, new).await;
    assert!(
        missing.is_empty(),
        "{} acknowledged commits lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// A paused group, then a bad `/config`: the primary's PostgreSQL killed is not restarted, the
/// replica does not promote; and a deadman started while `/config` is bad (never having read a
/// valid one) starts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_config_never_lifts_a_pause() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    let replica = 1 - primary;
    let client = group.zk_client().await;
    let paused = GroupConfig {
        paused: true,
        ..GroupConfig::default()
    };
    group.set_group_config(&paused).await;
    poll::until("both deadmen to see the pause", DEADLINE, || {
        std::future::ready(
            group
                .nodes
                .iter()
                .all(|n| n.log_text().contains("the group is paused"))
                .then_some(()),
        )
    })
    .await
    .unwrap();
    let config_path = group.path(Znode::Config);
    put(&client, &config_path, b"{garbage").await;
    wait_warning(&group, &client, primary, &config_path).await;
    wait_warning(&group, &client, replica, &config_path).await;

    // Nothing is restarted or promoted.
    group.nodes[primary].kill_postgres();
    poll::until("the primary's postgres to be gone", DEADLINE, || {
        std::future::ready(
            group.nodes[primary]
                .postmaster_pid()
                .is_none()
                .then_some(()),
        )
    })
    .await
    .unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            group.nodes[primary].postmaster_pid().is_none(),
            "postgres restarted\n{}",
            group.logs()
        );
        assert_ne!(
            group.nodes[replica].is_primary().await,
            Some(true),
            "the replica promoted\n{}",
            group.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A deadman that never read a valid config takes no automatic action.
    group.kill_node(replica);
    group.start(replica);
    wait_warning(&group, &client, replica, "no automatic action").await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            group.nodes[replica].postmaster_pid().is_none(),
            "a deadman without a valid config started postgres\n{}",
            group.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Readable again: the pause is lifted by a valid config only.
    group.set_group_config(&GroupConfig::default()).await;
    group.wait_primary(&[]).await;
}

/// Garbage in `/static`, `/switchover` and `/history`: each is kept byte for byte, the
/// primary stays, a failover still happens, its promotion is recorded beside the unreadable
/// history, and `zgresctl history` shows the error and the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_documents_are_kept_as_found() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    let replica = 1 - primary;
    let client = group.zk_client().await;
    zgres_testkit::group::checks::wait_promotion_recorded(&group, primary).await;
    let garbage: Vec<(String, Vec<u8>)> = vec![
        (
            group.path(Znode::DatabaseId),
            b"{\"v\":1,\"system_id\":[]}".to_vec(),
        ),
        (
            group.path(Znode::Switchover),
            b"\xff\xfe switchover?".to_vec(),
        ),
        (
            group.path(Znode::History),
            b"{\"v\":1,\"entries\":\"lost\"}".to_vec(),
        ),
    ];
    for (path, data) in &garbage {
        put(&client, path, data).await;
    }
    let kept_as_found = |group: &Group| {
        let (client, garbage) = (&client, &garbage);
        let logs = group.logs();
        async move {
            for (path, data) in garbage {
                let (found, _) = client.get_data(path).await.unwrap();
                assert_eq!(&found, data, "{path} was overwritten\n{logs}");
            }
        }
    };
    wait_warning(&group, &client, primary, &garbage[0].0).await;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        kept_as_found(&group).await;
        assert_eq!(group.nodes[primary].is_primary().await, Some(true));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = group.nodes[primary].log_text();
    assert!(log.contains(&garbage[1].0), "/switchover not logged\n{log}");

    group.kill_node(primary);
    assert_eq!(group.wait_primary(&[primary]).await, replica);
    let history = group.path(Znode::History);
    let beside: Promotion = poll::until("a promotion beside the history", DEADLINE, || async {
        let children = client.list_children(&history).await.ok()?;
        let child = children.iter().find(|c| c.starts_with("promotion-"))?;
        let path = format!("{history}/{child}");
        let (data, _) = client.get_data(&path).await.ok()?;
        decode(&path, &data).ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    assert_eq!(
        beside.new_primary.to_string(),
        group.nodes[replica].node_id()
    );
    kept_as_found(&group).await;

    let out = std::process::Command::new(zgres_testkit::artifacts::binary("zgresctl"))
        .args(["--zookeeper", &group.zk.connect_string(), "history", "main"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("unreadable, kept as found: znode {history}"))
            && shown.contains("failover")
            && shown.contains(&group.nodes[replica].node_id()),
        "{shown}"
    );
}

/// Garbage in `/sync` while synchronous: the primary keeps `synchronous_standby_names` and does
/// not overwrite `/sync`; after a primary kill nobody promotes (the bad `/sync` may have named
/// anyone) until an operator deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_sync_lets_nobody_promote() {
    let (mut group, primary, standby, names) = synchronous_group().await;
    let client = group.zk_client().await;
    let sync_path = group.path(Znode::Sync);
    let garbage = b"{\"v\":1,\"primary\":\"nobody\"}".to_vec();
    put(&client, &sync_path, &garbage).await;
    wait_warning(&group, &client, primary, &sync_path).await;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(standby_names(&group, primary).await, names);
        let (found, _) = client.get_data(&sync_path).await.unwrap();
        assert_eq!(found, garbage, "/sync was overwritten\n{}", group.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    group.kill_node(primary);
    // The killed primary's lock lingers until its session expires; nobody else may take it.
    zgres_testkit::group::checks::assert_no_other_primary(
        &group,
        Some(primary),
        Duration::from_secs(6),
    )
    .await;
    client.delete(&sync_path, None).await.unwrap();
    assert_eq!(group.wait_primary(&[primary]).await, standby);
}
