//! Self-healing replicas (issue 14): a standby stopped while the primary recycled the WAL it
//! needs can never stream again. Its deadman notices within a bounded time (its position stays
//! before the primary's oldest kept segment, published in the primary's `/state`) and either
//! clones it again (`provisioning.reclone_on_missing_wal`) or reports it in `/state`, the
//! health API and `zgresctl list`.

use zgres_schema::documents::GroupConfig;
use zgres_testkit::group::checks::node_state;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

/// Two nodes keeping no extra WAL (`wal_keep_size = 0`, no member slots), node 1's deadman
/// with `extra`.
async fn group_with(extra: &str) -> Group {
    let mut group = Group::prepare(2, Timing::default()).await;
    for node in &mut group.nodes {
        node.extra_config = "[postgres.parameters]\nwal_keep_size = \"0\"\n".into();
    }
    group.nodes[1].extra_config.push_str(extra);
    group.member_slots = false;
    group
        .set_group_config(&GroupConfig {
            member_slots: false,
            ..GroupConfig::default()
        })
        .await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group
}

/// Kills node 1, then has the primary write and recycle several WAL segments, so the WAL node
/// 1 needs next is gone; starts node 1's deadman again.
async fn lose_the_replicas_wal(group: &mut Group) {
    group.kill_node(1);
    recycle_the_primarys_wal(group).await;
    group.start(1);
}

/// Has the primary write 4,000 filler rows and recycle several WAL segments.
async fn recycle_the_primarys_wal(group: &Group) {
    let primary = group.nodes[0].client().await.unwrap();
    for _ in 0..4 {
        primary
            .batch_execute(
                "INSERT INTO writes (node, seq) SELECT 'filler', g FROM generate_series(1, 1000) g;
                 SELECT pg_switch_wal(); CHECKPOINT;",
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_wal_is_gone_is_cloned_again_when_allowed() {
    let mut group = group_with("[provisioning]\nreclone_on_missing_wal = true\n").await;
    lose_the_replicas_wal(&mut group).await;
    wait_cloned_again(&group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_wal_is_gone_is_reported_and_kept_by_default() {
    let mut group = group_with("").await;
    lose_the_replicas_wal(&mut group).await;
    let zk = group.zk_client().await;
    poll::until("n1 to report its missing WAL", DEADLINE, || async {
        let state = node_state(&group, &zk, 1).await?;
        state
            .problems
            .iter()
            .any(|p| p.contains("gone from the primary") && p.contains("zgresctl reinit"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));

    // It stays reported while the standby keeps retrying (sampled over more than one of
    // PostgreSQL's 5 s retry intervals).
    let window = std::time::Instant::now();
    while window.elapsed() < std::time::Duration::from_secs(7) {
        let state = node_state(&group, &zk, 1)
            .await
            .expect("n1 publishes a state");
        assert!(
            state
                .problems
                .iter()
                .any(|p| p.contains("gone from the primary")),
            "the problem went away after {:?}: {state:?}",
            window.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The health API calls it unhealthy and says why. Polled: the API takes a round's state
    // at the end of the round, after `/state` was written (CI, 2026-12-01: read at once, it
    // still served the round before).
    let api = group.nodes[1].api_port;
    poll::until("the API to call n1 unhealthy and say why", DEADLINE, || {
        let replica = zgres_testkit::http::get(api, "/replica").unwrap_or_default();
        let status = zgres_testkit::http::get(api, "/patroni").unwrap_or_default();
        std::future::ready(
            (replica.starts_with("HTTP/1.1 503") && status.contains("gone from the primary"))
                .then_some(()),
        )
    })
    .await
    .unwrap();
    // zgresctl list shows it.
    let (code, listed) = zgres_testkit::zgresctl::run(&group.zk.connect_string(), &["list"]);
    assert_eq!(code, 0, "{listed}");
    assert!(listed.contains("gone from the primary"), "{listed}");
    // Nothing was deleted: the data directory is still there, and the deadman did not wipe it.
    assert!(group.nodes[1].pg.data_dir().join("PG_VERSION").exists());
    assert!(!group.nodes[1].log_text().contains("clone done"));
}

/// A replica that cannot even become consistent: its own WAL was lost while it was down (a
/// replaced disk, an operator's mistake) and the primary recycled what it needs, so PostgreSQL
/// runs but never answers. Its deadman sees it from the replica's `pg_wal` and `pg_control`
/// (nothing there reaches the primary's oldest kept WAL) and clones it again when allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_become_consistent_is_cloned_again_when_allowed() {
    let mut group = group_with("[provisioning]\nreclone_on_missing_wal = true\n").await;
    group.kill_node(1);
    let pg_wal = group.nodes[1].pg.data_dir().join("pg_wal");
    for entry in std::fs::read_dir(&pg_wal).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            std::fs::remove_file(&path).unwrap();
        }
    }
    recycle_the_primarys_wal(&group).await;
    group.start(1);
    wait_cloned_again(&group).await;
}

/// Waits until n1's deadman found its WAL gone and cloned it again, then until it streams
/// from n0 with every filler row the primary wrote while it was away.
async fn wait_cloned_again(group: &Group) {
    poll::until("n1 to be cloned again", DEADLINE, || {
        let log = group.nodes[1].log_text();
        std::future::ready(
            (log.contains("the WAL this standby needs is gone from the primary")
                && log.contains("clone done"))
            .then_some(()),
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));
    group.wait_following(1, 0).await;
    let replica = group.nodes[1].client().await.unwrap();
    let filler: i64 = replica
        .query_one("SELECT count(*) FROM writes WHERE node = 'filler'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(filler, 4000);
}
