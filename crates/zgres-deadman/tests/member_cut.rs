//! Fencing when the primary's ZooKeeper member is cut from the ensemble's leader: the member
//! goes on answering the primary's pings for `syncLimit` ticks while the leader expires its
//! session, so the new holder waits (the takeover wait), and a new session never confirms the
//! fence armed in the old one.

use std::time::{Duration, Instant};

use zgres_testkit::fault_proxy::ProxyMode;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;
use zgres_testkit::zookeeper::ZkCluster;

/// The primary's deadman reaches ZooKeeper through one member, a follower, and that member is
/// cut from the other two while the deadman still reaches it. The leader expires the primary's
/// session (the cut member's reports of it stop) and a replica on the majority side takes the
/// lock; the cut member notices the lost leader only after `syncLimit` ticks and answers the
/// old primary's pings and reads meanwhile. An idle primary writes nothing to ZooKeeper then
/// (a write pending on the cut member would hold back its pings and get it fenced at once):
/// once the new primary runs, the old one must refuse a write.
///
/// Before the takeover wait this failed every time (ZooKeeper `syncLimit` 20 × `tickTime`
/// 100 ms, session 2 s): the old primary committed a write 1.9 s after the cut, after the new
/// primary was promoted. Now the new holder waits out the cut member's `syncLimit` (declared in
/// `[zookeeper]`) beyond the fence margin before it promotes (`decision::takeover`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_primary_on_a_member_cut_from_its_leader_is_fenced_before_another_takes_writes() {
    let zk = ZkCluster::start_with_isolatable_follower().await.unwrap();
    assert_eq!(zk.mode(2).await.as_deref(), Some("follower"));
    let how = ProxyMode::Blackhole;
    primary_on_a_cut_member_is_fenced_before_another_takes_writes(zk, 2, how, "").await;
}

/// The same with the replica misconfigured as if ZooKeeper were a standalone server
/// (`ensemble_sync_limit = 0`: no wait of its own): it still waits the takeover wait the old
/// primary published in its `/state`, which follows from the old primary's own timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_declaring_no_ensemble_still_waits_the_old_primarys_published_takeover_wait() {
    let zk = ZkCluster::start_with_isolatable_follower().await.unwrap();
    assert_eq!(zk.mode(2).await.as_deref(), Some("follower"));
    let no_wait_of_its_own = "[zookeeper]\nensemble_sync_limit = 0\n";
    let how = ProxyMode::Blackhole;
    primary_on_a_cut_member_is_fenced_before_another_takes_writes(zk, 2, how, no_wait_of_its_own)
        .await;
}

/// The same with the leader cut from its followers: it answers its clients until it finds it
/// lost its quorum; the followers elect a new leader, which gives every session a fresh
/// timeout, so the old primary is fenced long before its replica takes over. The leader's
/// links are reset rather than silenced: with them half-open, the followers' election took
/// from 10 s to over two minutes (ZooKeeper's own behaviour, not what this test is about).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_primary_on_a_leader_cut_from_its_followers_is_fenced_before_another_takes_writes()
{
    let zk = ZkCluster::start_isolatable(3).await.unwrap();
    let mut leader = None;
    for m in 0..3 {
        if zk.mode(m).await.as_deref() == Some("leader") {
            leader = Some(m);
        }
    }
    let leader = leader.expect("a 3-member ensemble has a leader");
    let how = ProxyMode::Refuse;
    primary_on_a_cut_member_is_fenced_before_another_takes_writes(zk, leader, how, "").await;
}

/// Node 0, the primary, reaches ZooKeeper only through member `cut`; node 1 through the
/// others, with `replica_config` added to its config. Once node 0's state is published and
/// its WAL idle, `cut`'s links to its peers are set to `how`; after node 1 is promoted, a
/// write on node 0 must fail.
async fn primary_on_a_cut_member_is_fenced_before_another_takes_writes(
    zk: ZkCluster,
    cut: usize,
    how: ProxyMode,
    replica_config: &str,
) {
    let cut_member = zk.client_addr(cut).to_string();
    let majority: Vec<String> = (0..zk.size())
        .filter(|&m| m != cut)
        .map(|m| zk.client_addr(m).to_string())
        .collect();
    let majority = majority.join(",");
    // Production's refresh: an idle primary writes nothing to ZooKeeper for 30 s.
    let timing = Timing {
        state_refresh_ms: 30_000,
        ..Timing::default()
    };
    let mut group = Group::prepare_on(zk, 2, timing).await;
    group.nodes[0].zookeeper_via = Some(cut_member);
    group.nodes[1].zookeeper_via = Some(majority.clone());
    group.nodes[1].extra_config = replica_config.to_owned();
    let (old, client) = primary_with_table(&mut group, "after_the_cut", &majority).await;
    // Idle: the primary's last state is published and nothing moves its WAL.
    tokio::time::sleep(Duration::from_secs(2)).await;

    group.zk.set_member_links(cut, how);
    let started = Instant::now();
    poll::until("the replica to hold the lock", 2 * DEADLINE, || async {
        group.lock_holder(&client).await.filter(|&h| h == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    poll::until("the replica promoted", DEADLINE, || async {
        (group.nodes[1].is_primary().await == Some(true)).then_some(())
    })
    .await
    .unwrap();
    let promoted = started.elapsed();
    // The wait is visible: the new holder logged and published it before promoting.
    let new_log = group.nodes[1].log_text();
    assert!(
        new_log.contains("waits before promoting"),
        "no takeover wait in n1's log\n{new_log}"
    );
    let write = tokio::time::timeout(
        Duration::from_secs(1),
        old.execute("INSERT INTO after_the_cut VALUES (1)", &[]),
    )
    .await;
    let log = group.nodes[0].log_text();
    group.zk.isolate_member(cut, false);
    assert!(
        !matches!(write, Ok(Ok(_))),
        "the old primary committed a write {:.2} s after the cut, after the new primary was \
         promoted ({:.2} s after the cut)\n{log}",
        started.elapsed().as_secs_f64(),
        promoted.as_secs_f64()
    );
}

/// A primary whose PostgreSQL hangs while its ZooKeeper member is cut from the leader for
/// longer than its session (the simulator's case for `fence::SessionFence`): the leader
/// expires the session, the member drops node 0, whose deadman opens a new session through
/// another member, and the replica is promoted. The hung PostgreSQL, which no round can tell is
/// a primary, must have been fenced: thawed, it commits nothing. (In these runs the real
/// member stops answering pings well before it drops its clients, so the fence fires before
/// the new session; the unit test `an_armed_fence_is_confirmed_only_by_the_session_it_was_armed_in`
/// covers the order in which it would not.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_primary_whose_deadman_opens_a_new_session_is_still_fenced() {
    use zgres_testkit::fault_proxy::FaultProxy;
    use zgres_testkit::freeze::{freeze, thaw};

    // The cut member answers for 6 s (60 ticks of 100 ms), longer than the 4 s session.
    let zk = ZkCluster::start_with_isolatable_follower_answering_for(60)
        .await
        .unwrap();
    let cut = 2;
    assert_eq!(zk.mode(cut).await.as_deref(), Some("follower"));
    // Node 0 reaches the cut member until it is dropped, then another member.
    let via_cut = FaultProxy::start(zk.client_addr(cut)).unwrap();
    let via_other = FaultProxy::start(zk.client_addr(0)).unwrap();
    via_other.set_mode(ProxyMode::Refuse);
    // The leader expires the session before the member drops node 0, whose fence (3.5 s from
    // the member's last answer) is still running when its deadman opens a new session.
    let timing = Timing {
        session_timeout_ms: 4_000,
        fence_margin_ms: 500,
        state_refresh_ms: 30_000,
        ..Timing::default()
    };
    let mut group = Group::prepare_on(zk, 2, timing).await;
    group.nodes[0].zookeeper_via = Some(format!("{},{}", via_cut.addr(), via_other.addr()));
    let majority = format!("{},{}", group.zk.client_addr(0), group.zk.client_addr(1));
    group.nodes[1].zookeeper_via = Some(majority.clone());
    let (old, client) = primary_with_table(&mut group, "after_the_new_session", &majority).await;

    let frozen = freeze(group.nodes[0].postmaster_pid().expect("postgres runs"));
    group.zk.isolate_member(cut, true);
    // The member notices the cut (it stops following) and drops its clients: node 0's deadman
    // reconnects through the other member, where its session has expired.
    poll::until("the cut member to stop following", DEADLINE, || async {
        (group.zk.mode(cut).await.as_deref() != Some("follower")).then_some(())
    })
    .await
    .unwrap();
    via_cut.set_mode(ProxyMode::Refuse);
    via_other.set_mode(ProxyMode::Pass);
    poll::until("the replica to be promoted", 2 * DEADLINE, || async {
        let holds = group.lock_holder(&client).await == Some(1);
        (holds && group.nodes[1].is_primary().await == Some(true)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    thaw(&frozen);
    let write = tokio::time::timeout(
        Duration::from_secs(2),
        old.execute("INSERT INTO after_the_new_session VALUES (1)", &[]),
    )
    .await;
    group.zk.isolate_member(cut, false);
    let log = group.nodes[0].log_text();
    assert!(
        !matches!(write, Ok(Ok(_))),
        "the old primary, thawed, committed a write beside the new primary\n{log}"
    );
    assert!(
        log.contains("ZooKeeper session established")
            && log.matches("session established").count() >= 2,
        "node 0's deadman never opened a new session: the test did not reach its case\n{log}"
    );
}

/// Starts node 0, then node 1 following it; creates `table` on node 0. Returns a client of
/// node 0's PostgreSQL and one of ZooKeeper's `majority`: the test reads the lock from the
/// majority (a cut member answers stale reads), with a session that outlives the majority's
/// election of a new leader when the leader is cut (25-35 s here: the cut leader's links hold
/// their traffic rather than close).
async fn primary_with_table(
    group: &mut Group,
    table: &str,
    majority: &str,
) -> (tokio_postgres::Client, zookeeper_client::Client) {
    group.start(0);
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.start(1);
    group.wait_following(1, 0).await;
    let old = group.nodes[0].client().await.unwrap();
    old.batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .await
        .unwrap();
    let client = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(60))
        .connect(majority)
        .await
        .unwrap();
    (old, client)
}
