//! A standby that diverged while running — it received WAL on the old timeline past the point
//! where the promoted replica's timeline forked — is stopped, rewound and streams from the new
//! primary. Found by the simulator (`zgres-sim`): before, it retried for ever.

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_ahead_of_the_promoted_replica_is_rewound_and_follows() {
    let mut group = Group::prepare(3, Timing::default()).await;
    // Node 2 cannot be promoted, so node 1 wins the election although node 2 is ahead.
    group.nodes[2].extra_config = "[tags]\nnofailover = true\n".into();
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;

    // Node 1 stops receiving (it still names node 0 as its primary, under its own
    // application_name, so its deadman leaves it be: the user cannot log in); node 2 receives
    // more commits (within the lag limit). Without the application_name the deadman took the
    // setting for someone else's and pointed node 1 back at node 0 (a CI flake).
    let n1 = group.nodes[1].client().await.expect("node 1 answers");
    let conninfo = format!(
        "host=127.0.0.1 port={} user=no_such_user application_name={} connect_timeout=2",
        group.nodes[0].port(),
        group.nodes[1].node_id()
    );
    n1.batch_execute(&format!("ALTER SYSTEM SET primary_conninfo = '{conninfo}'"))
        .await
        .unwrap();
    n1.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    poll::until("node 1 to stop streaming", DEADLINE, || async {
        group.nodes[1].wal_receiver().await.is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    let ahead = group.nodes[0].bulk_write(2000).await;
    poll::until(
        "node 2 to receive the commits node 1 lacks",
        DEADLINE,
        || async {
            let client = group.nodes[2].client().await?;
            let row = client
                .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
                .await
                .ok()?;
            let replayed: zgres_schema::Lsn = row.get::<_, String>(0).parse().ok()?;
            (replayed >= ahead).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));

    group.kill_node(0);
    assert_eq!(group.wait_primary(&[0]).await, 1);

    // Before it is rewound (10 s without progress), node 2's state says why it does not
    // follow, so `zgresctl list` and the API show it.
    let zk = group.zk_client().await;
    let n2_state = format!("/zgres/state/main_{}", group.nodes[2].node_id());
    poll::until(
        "node 2 to publish that it cannot follow",
        DEADLINE,
        || async {
            let (data, _) = zk.get_data(&n2_state).await.ok()?;
            let state: zgres_schema::documents::NodeState =
                zgres_schema::decode(&n2_state, &data).ok()?;
            state
                .warnings
                .iter()
                .any(|w| w.contains("cannot follow the primary's timeline"))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(2))));

    // Node 2 has WAL on timeline 1 that node 1's timeline 2 forked off before: it gets what
    // the new primary writes only once it is rewound. (Its WAL receiver connects and says
    // "streaming" for a moment on each retry meanwhile, so data is the proof, not its status.)
    let primary = group.nodes[1]
        .client()
        .await
        .expect("the new primary answers");
    primary
        .execute(
            "INSERT INTO writes (node, seq) VALUES ('after-rewind', 1)",
            &[],
        )
        .await
        .unwrap();
    poll::until(
        "node 2 to have the new primary's commit",
        DEADLINE,
        || async {
            let client = group.nodes[2].client().await?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM writes WHERE node = 'after-rewind'",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 1).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(2))));
    let log = group.nodes[2].log_text();
    assert!(
        log.contains("cannot follow the primary's timeline"),
        "node 2 follows without having been rewound: was it ever diverged?\n{}",
        group.logs_with_first(Some(2))
    );
    group.wait_following(2, 1).await;
}
