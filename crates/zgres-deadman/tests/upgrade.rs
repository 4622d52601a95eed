//! Upgrading the deadman without a failover: SIGUSR2 re-executes its binary, PostgreSQL keeps
//! running as its child, and the new image resumes the same ZooKeeper session.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nix::sys::signal::Signal;
use zgres_schema::Znode;
use zgres_testkit::fault_proxy::ProxyMode;
use zgres_testkit::group::{missing_acks, Group, Timing, Writer, DEADLINE};
use zgres_testkit::poll;

/// Waits until node 1's new image, a replica's, has published its state, then checks that it
/// still runs the postmaster `postmaster`, streaming from node 0, the primary.
async fn replica_carries_on_after_reexec(group: &Group, postmaster: i32) {
    poll::until("the replica's new image to publish", DEADLINE, || {
        let log = group.nodes[1].log_text();
        let published = log
            .split_once(RESUMED)
            .is_some_and(|(_, after)| after.contains("published node state role=Replica"));
        std::future::ready(published.then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));
    assert_eq!(group.nodes[1].postmaster_pid(), Some(postmaster));
    group.wait_following(1, 0).await;
    assert_eq!(group.wait_primary(&[]).await, 0);
}

/// SIGUSR2 to node `i`'s deadman, as the package's postinst sends it.
fn ask_to_reexecute(group: &Group, i: usize) {
    group.nodes[i]
        .deadman
        .as_ref()
        .expect("deadman running")
        .signal(Signal::SIGUSR2)
        .unwrap();
}

const RESUMED: &str = "re-executed: resuming the ZooKeeper session handed over";

/// Ten re-executions of the primary's deadman under a writer on every node: the lock keeps its
/// owner session and creation zxid, `/history` gets nothing, the postmaster keeps its pid, no
/// fence fires, and every acknowledged write is on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reexecuting_the_primarys_deadman_keeps_the_lock_and_postgres() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;
    let zk = group.zk_client().await;
    let lock = group.path(Znode::Lock);
    let history = group.path(Znode::History);
    let (_, lock_before) = zk.get_data(&lock).await.unwrap();
    let (history_before, _) = zk.get_data(&history).await.unwrap();
    let postmaster = group.nodes[0].postmaster_pid().unwrap();
    let deadman = group.nodes[0].deadman_pid();
    let writer = Writer::start(&group);
    writer.wait_more_acks(0, 20).await;

    for round in 1..=10 {
        ask_to_reexecute(&group, 0);
        poll::until(
            &format!("re-execution {round} to resume the session and publish"),
            DEADLINE,
            || {
                let log = group.nodes[0].log_text();
                let resumed = log.matches(RESUMED).count() >= round;
                // The new image's first round publishes the node's state again.
                let published = log
                    .rsplit(RESUMED)
                    .next()
                    .is_some_and(|after| after.contains("published node state"));
                std::future::ready((resumed && published).then_some(()))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(0))));
        writer.wait_more_acks(0, 5).await;
        assert_eq!(group.nodes[0].deadman_pid(), deadman, "the same process");
        assert_eq!(
            group.nodes[0].postmaster_pid(),
            Some(postmaster),
            "PostgreSQL was restarted\n{}",
            group.logs_with_first(Some(0))
        );
        let (_, lock_now) = zk.get_data(&lock).await.unwrap();
        assert_eq!(lock_now.czxid, lock_before.czxid, "the lock was recreated");
        assert_eq!(
            lock_now.ephemeral_owner, lock_before.ephemeral_owner,
            "the lock changed session"
        );
    }
    // The adopted keeper learns confirmations from its deadline board alone (no line after
    // the first): commits go on for more than three fence budgets (1.5 s) after the last
    // re-execution, and nothing fences (checked below).
    let since_last = std::time::Instant::now();
    while since_last.elapsed() < Duration::from_secs(5) {
        writer.wait_more_acks(0, 5).await;
    }

    let acks = writer.finish().await;
    let missing = missing_acks(&group, &acks, 0).await;
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    let (history_after, _) = zk.get_data(&history).await.unwrap();
    assert_eq!(history_after, history_before, "a promotion was recorded");
    let log = group.nodes[0].log_text();
    assert!(
        !log.contains("FENCING") && !log.contains("fence keeper:"),
        "a fence fired\n{}",
        group.logs_with_first(Some(0))
    );
    // The longest pause between two writes the primary acknowledged: a figure, not a limit.
    let mut on_primary: Vec<_> = acks.iter().filter(|a| a.node == 0).map(|a| a.at).collect();
    on_primary.sort();
    let gap = on_primary
        .windows(2)
        .filter_map(|w| w[1].duration_since(w[0]).ok())
        .max()
        .unwrap_or_default();
    println!(
        "10 re-executions of the primary's deadman: {} writes acknowledged by the primary, longest gap between two {:?}",
        on_primary.len(),
        gap
    );
}

/// A package upgrade that installed a binary which never gets going (here: one that hangs): the
/// new image cannot resume the session or feed the fence, and the fence keeper, which kept the
/// last deadline through the exec, kills PostgreSQL before the session can expire, so it is
/// gone before another node takes the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reexecuting_into_a_binary_that_hangs_still_fences_before_the_session_expires() {
    // Every deadman runs from a copy that the test can replace, as a package upgrade does.
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("zgres-deadman");
    std::fs::copy(zgres_testkit::artifacts::binary("zgres-deadman"), &binary).unwrap();
    std::env::set_var("ZGRES_DEADMAN_BIN", &binary);
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;

    let hanging = dir.path().join("new");
    std::fs::write(&hanging, "#!/bin/sh\nexec sleep 3600\n").unwrap();
    std::fs::set_permissions(&hanging, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&hanging, &binary).unwrap();
    ask_to_reexecute(&group, 0);

    let zk = group.zk_client().await;
    let new = poll::until("another node to take the lock", DEADLINE, || async {
        let holder = group.lock_holder(&zk).await;
        if holder != Some(0) {
            // Whenever the lock is no longer n0's, its PostgreSQL must already be dead.
            assert_eq!(
                group.nodes[0].postmaster_pid(),
                None,
                "n0's PostgreSQL still ran when its lock was gone\n{}",
                group.logs_with_first(Some(0))
            );
        }
        holder.filter(|&h| h != 0)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(0))));
    assert_ne!(new, 0);
    assert!(
        group.nodes[0]
            .log_text()
            .contains("zgres fence keeper: deadline passed"),
        "{}",
        group.logs_with_first(Some(0))
    );
}

/// A replica's deadman re-executed: its PostgreSQL keeps running and streaming, and the
/// primary does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reexecuting_a_replicas_deadman_keeps_it_streaming() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    let postmaster = group.nodes[1].postmaster_pid().unwrap();

    ask_to_reexecute(&group, 1);
    replica_carries_on_after_reexec(&group, postmaster).await;
}

/// A second upgrade request sent while the first re-execution is under way (a package
/// manager's hook run twice, an operator's second try) is held until the new image can handle
/// it, then carried out: nothing dies, PostgreSQL and the lock stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_request_during_a_reexecution_is_carried_out_after_it() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    let postmaster = group.nodes[0].postmaster_pid().unwrap();
    let deadman = group.nodes[0].deadman_pid();

    ask_to_reexecute(&group, 0);
    // Watched without pause, so that the second request lands while the new image starts.
    let until = std::time::Instant::now() + DEADLINE;
    while !group.nodes[0].log_text().contains("SIGUSR2: re-executing") {
        assert!(
            std::time::Instant::now() < until,
            "the first re-execution never started"
        );
    }
    ask_to_reexecute(&group, 0);
    // Landing before the exec, the second request is met by it; landing after, it is held and
    // carried out once the new image can. Either way the deadman lives and publishes.
    poll::until(
        "a new image to resume the session and publish",
        DEADLINE,
        || {
            let log = group.nodes[0].log_text();
            let published = log.rsplit(RESUMED).next().is_some_and(|after| {
                log.contains(RESUMED) && after.contains("published node state")
            });
            std::future::ready(published.then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(0))));
    let alive = std::fs::read_to_string(format!("/proc/{deadman}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    });
    assert!(
        alive,
        "the deadman died\n{}",
        group.logs_with_first(Some(0))
    );
    assert_eq!(group.nodes[0].postmaster_pid(), Some(postmaster));
    assert_eq!(group.wait_primary(&[]).await, 0);
}

/// A replica's deadman re-executed while it cannot reach ZooKeeper: the session it had given
/// up on is handed over, and once ZooKeeper is reachable the new image carries on, with the
/// same PostgreSQL still streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reexecuting_while_zookeeper_is_unreachable_carries_on_after() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.proxy_node(1);
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    let postmaster = group.nodes[1].postmaster_pid().unwrap();
    let proxy = group.nodes[1].proxy.as_ref().unwrap();

    proxy.set_mode(ProxyMode::Blackhole);
    poll::until("the replica to lose ZooKeeper", DEADLINE, || {
        let lost = group.nodes[1].log_text().contains("ZooKeeper unreachable");
        std::future::ready(lost.then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));
    ask_to_reexecute(&group, 1);
    poll::until("the new image to start", DEADLINE, || {
        let started = group.nodes[1].log_text().contains(RESUMED);
        std::future::ready(started.then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));
    group.nodes[1]
        .proxy
        .as_ref()
        .unwrap()
        .set_mode(ProxyMode::Pass);
    replica_carries_on_after_reexec(&group, postmaster).await;
}
