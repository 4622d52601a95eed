//! A standby that diverged while running — it received WAL on the old timeline past the point
//! where the promoted replica's timeline forked — is stopped, rewound and streams from the new
//! primary. Found by the simulator (`zgres-sim`): before, it retried for ever. The group's
//! history shows where the new timeline began, so it is stopped at once.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zgres_testkit::group::{checks, Group, Timing, DEADLINE};
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
    checks::wait_replayed(&group, 2, ahead).await;

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

/// The one value `sql` returns on node `i`; panics when it does not answer.
async fn one_value<T: tokio_postgres::types::FromSqlOwned>(
    group: &Group,
    i: usize,
    sql: &str,
) -> T {
    let client = group.nodes[i]
        .client()
        .await
        .unwrap_or_else(|| panic!("n{i} answers\n{}", group.logs_with_first(Some(i))));
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Continues a stopped process when dropped, so a failing test leaves no frozen postmaster.
struct Continue(Pid);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// A standby that followed a new primary's timeline and then crashed (kill -9 of the node) is
/// not mistaken for a diverged one when it comes back: until its first restartpoint on the new
/// timeline its checkpoint still names the old one, and until its WAL receiver streams again
/// nothing else names the new one. It was stopped for a rewind it did not need (seen in the
/// chaos smoke, where the stop and rewind cost seconds of replication). Its WAL files name the
/// timeline it replays. The new primary's postmaster is held stopped meanwhile, so the
/// restarted standby cannot stream and its deadman decides on what the data directory shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_on_the_new_timeline_is_not_taken_for_diverged_after_a_crash() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;

    group.kill_node(0);
    let primary = group.wait_primary(&[0]).await;
    let standby = 3 - primary;
    // `/history` records where timeline 2 began exactly: where the new primary's own
    // timeline history file says it switched.
    let promotion = checks::wait_promotion_recorded(&group, primary).await;
    let history_file: String = one_value(
        &group,
        primary,
        "SELECT pg_read_file('pg_wal/00000002.history')",
    )
    .await;
    let switched_at = history_file
        .lines()
        .find_map(|line| line.strip_prefix("1\t")?.split('\t').next())
        .expect("timeline 2's history file names where timeline 1 ended");
    assert_eq!(promotion.timeline.get(), 2);
    assert_eq!(promotion.lsn.to_string(), switched_at, "{history_file}");
    group.wait_following(standby, primary).await;
    // The standby replays WAL of timeline 2 past where it began.
    let past_fork = group.nodes[primary].bulk_write(100).await;
    checks::wait_replayed(&group, standby, past_fork).await;
    let checkpoint_timeline: i32 = one_value(
        &group,
        standby,
        "SELECT timeline_id FROM pg_control_checkpoint()",
    )
    .await;
    assert_eq!(
        checkpoint_timeline, 1,
        "the case needs a standby whose last restartpoint is still on timeline 1"
    );

    let postmaster = Pid::from_raw(group.nodes[primary].postmaster_pid().expect("primary runs"));
    kill(postmaster, Signal::SIGSTOP).unwrap();
    let _continue = Continue(postmaster);
    group.kill_node(standby);
    let restarted_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let log_before = group.nodes[standby].log_text().len();
    group.start(standby);

    let zk = group.zk_client().await;
    let state = poll::until(
        "the restarted standby's deadman to publish it as a replica",
        DEADLINE,
        || async {
            let state = checks::node_state(&group, &zk, standby).await?;
            (state.role == zgres_schema::documents::Role::Replica
                && state.updated_at_ms >= restarted_ms)
                .then_some(state)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(standby))));
    assert_eq!(
        state.timeline.map(|t| t.get()),
        Some(2),
        "the restarted standby replays timeline 2\n{}",
        group.logs_with_first(Some(standby))
    );

    drop(_continue);
    group.wait_following(standby, primary).await;
    let log = group.nodes[standby].log_text();
    assert!(
        !log[log_before..].contains("stopping it to rewind it"),
        "the standby was stopped for a rewind it did not need\n{}",
        group.logs_with_first(Some(standby))
    );
}
