//! A standby that diverged while running — it received WAL on the old timeline past the point
//! where the promoted replica's timeline forked — is stopped, rewound and streams from the new
//! primary. Found by the simulator (`zgres-sim`): before, it retried for ever. The group's
//! history shows where the new timeline began, so it is stopped at once.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
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

    // Node 1 stops receiving: its WAL receiver is held stopped, so nothing looks wrong to its
    // deadman (a changed primary_conninfo was the way before, but the deadman rightly
    // re-points a standby whose conninfo it did not write: a CI flake). Node 2 receives more
    // commits (within the lag limit).
    let n1 = group.nodes[1].client().await.expect("node 1 answers");
    let receiver: i32 = n1
        .query_one("SELECT pid FROM pg_stat_wal_receiver", &[])
        .await
        .expect("node 1 has a WAL receiver")
        .get(0);
    let receiver = Pid::from_raw(receiver);
    kill(receiver, Signal::SIGSTOP).unwrap();
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
    // What node 0 sent but the stopped receiver never wrote goes with it: PostgreSQL
    // restarts node 1 after a crash and recovers from its own WAL alone.
    kill(receiver, Signal::SIGKILL).unwrap();
    assert_eq!(group.wait_primary(&[0]).await, 1);

    // Node 1's promotion is in `/history` with the position its timeline 2 began at; node 2
    // is on timeline 1 past it, so its deadman stops it for a rewind at once (it used to wait
    // for 10 s without progress), and says why.
    poll::until(
        "node 2's deadman to stop it for a rewind, from the history",
        DEADLINE,
        || {
            let log = group.nodes[2].log_text();
            std::future::ready(
                log.contains("has WAL past the point where the next timeline began")
                    .then_some(()),
            )
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
        !log.contains("cannot follow the primary's timeline"),
        "the 10 s wait was not needed: the history showed it\n{}",
        group.logs_with_first(Some(2))
    );
    group.wait_following(2, 1).await;
}
