//! Issue 13, point 4: a deadman stopped while its group is paused leaves PostgreSQL running
//! under its guardian, and the next start takes it over. A primary's lock is left persistent
//! meanwhile, so nobody takes over even after the group is resumed.

use std::time::Duration;

use nix::sys::signal::Signal;
use zgres_schema::documents::GroupConfig;
use zgres_schema::Znode;
use zgres_testkit::group::checks::assert_no_other_primary;
use zgres_testkit::group::{missing_acks, Group, Timing, Writer, DEADLINE};
use zgres_testkit::poll;

/// Waits until the primary, n0, acknowledges 20 more writes (with every log on failure).
async fn more_writes_on_the_primary(group: &Group, writer: &Writer) {
    let before = writer.acks().await.len();
    poll::until("20 more commits on n0", DEADLINE, || async {
        let acks = writer.acks().await;
        let more = acks[before.min(acks.len())..]
            .iter()
            .filter(|a| a.node == 0);
        (more.count() > 20).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

async fn pause(group: &Group, paused: bool) {
    let config = GroupConfig {
        paused,
        ..GroupConfig::default()
    };
    group.set_group_config(&config).await;
}

/// Primary and replica deadmen stopped (SIGTERM) in a paused group, the group resumed, then
/// both deadmen started again, under a writer on the primary: both postmasters keep their pids
/// throughout; the lock keeps its content, persistent while no deadman watches the primary and
/// back to an ephemeral of the new session after; nobody else becomes primary, `/history` gets
/// nothing, and no acknowledged write is lost. A port changed in the file meanwhile waits for
/// a restart: the server left running keeps its own. The PostgreSQL taken over is guarded
/// again: kill -9 of its new deadman, even after a re-execution, takes it down.
///
/// Regression: the guardian first cleared the parent-death signal from the thread that read
/// `detach`, but the kernel keeps that signal per thread and sends the main thread's: the
/// primary died with the deadman it had been detached from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadman_stopped_in_a_paused_group_leaves_postgres_for_the_next_one() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;
    let zk = group.zk_client().await;
    let lock = group.path(Znode::Lock);
    let history = group.path(Znode::History);
    let (lock_content, _) = zk.get_data(&lock).await.unwrap();
    let (history_before, _) = zk.get_data(&history).await.unwrap();
    pause(&group, true).await;
    poll::until("every deadman to see the pause", DEADLINE, || async {
        let all = group
            .nodes
            .iter()
            .all(|n| n.log_text().contains("the group is paused"));
        all.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    let writer = Writer::start(&group);
    more_writes_on_the_primary(&group, &writer).await;
    let postmasters = [0, 1].map(|i| group.nodes[i].postmaster_pid().unwrap());

    for i in [0, 1] {
        let deadman = group.nodes[i].deadman.take().unwrap();
        let status = deadman.stop(Signal::SIGTERM, Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "n{i}'s deadman stops cleanly: {status:?}\n{}",
            group.logs()
        );
        assert_eq!(
            group.nodes[i].postmaster_pid(),
            Some(postmasters[i]),
            "n{i}'s PostgreSQL is left running\n{}",
            group.logs()
        );
    }
    assert!(group.nodes[0]
        .log_text()
        .contains("the lock is left persistent for the primary left running"));
    let (content, stat) = zk.get_data(&lock).await.unwrap();
    assert_eq!(content, lock_content, "the lock keeps its content");
    assert_eq!(stat.ephemeral_owner, 0, "the lock is persistent meanwhile");
    more_writes_on_the_primary(&group, &writer).await;

    pause(&group, false).await;
    poll::until("n2 to see the group resumed", DEADLINE, || async {
        group.nodes[2]
            .log_text()
            .contains("the group is resumed")
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    assert_no_other_primary(&group, Some(0), Duration::from_secs(3)).await;
    let (_, stat) = zk.get_data(&lock).await.unwrap();
    assert_eq!(
        stat.ephemeral_owner, 0,
        "nobody took the lock left unattended"
    );

    // n1's file now names another port: the server left running keeps its own.
    let other_port = zgres_testkit::ports::free_port().unwrap();
    group.nodes[1].extra_config = format!("[postgres]\nport = {other_port}\n");
    group.start(0);
    group.start(1);
    poll::until(
        "n0's new deadman to take the lock back",
        DEADLINE,
        || async {
            let (_, stat) = zk.get_data(&lock).await.ok()?;
            (stat.ephemeral_owner != 0).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    let (content, _) = zk.get_data(&lock).await.unwrap();
    assert_eq!(content, lock_content, "the same lock, taken back");
    assert!(group.nodes[1]
        .log_text()
        .contains("the running PostgreSQL keeps its own until it is restarted"));
    group.wait_following(1, 0).await;
    for i in [0, 1] {
        assert_eq!(
            group.nodes[i].postmaster_pid(),
            Some(postmasters[i]),
            "n{i}'s PostgreSQL was taken over, not restarted\n{}",
            group.logs()
        );
        assert!(group.nodes[i]
            .log_text()
            .contains("took over the running postgres from its guardian"));
    }
    more_writes_on_the_primary(&group, &writer).await;
    let acks = writer.finish().await;
    let missing = missing_acks(&group, &acks, 0).await;
    assert!(missing.is_empty(), "lost acknowledged writes: {missing:?}");
    let (history_after, _) = zk.get_data(&history).await.unwrap();
    assert_eq!(history_after, history_before, "no promotion was recorded");

    // Re-executing the deadman that took PostgreSQL over (not the guardian's parent) connects
    // to the guardian again, as for a guardian it started.
    let took_over = "took over the running postgres from its guardian";
    group.nodes[1]
        .deadman
        .as_ref()
        .unwrap()
        .signal(Signal::SIGUSR2)
        .unwrap();
    poll::until(
        "n1's re-executed deadman to take PostgreSQL over again",
        DEADLINE,
        || {
            let again = group.nodes[1].log_text().matches(took_over).count() == 2;
            std::future::ready(again.then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    assert_eq!(group.nodes[1].postmaster_pid(), Some(postmasters[1]));

    let postmaster = postmasters[1];
    group.nodes[1].deadman.take().unwrap().kill();
    poll::until(
        "n1's PostgreSQL to die with its new deadman",
        DEADLINE,
        || {
            let gone = group.nodes[1].postmaster_pid() != Some(postmaster);
            std::future::ready(gone.then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

/// A primary whose deadman never comes back: `zgresctl list` names the lock left unattended,
/// `zgresctl unlock` refuses a lock a live deadman holds and releases the one left, and the
/// resumed group then elects the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zgresctl_unlock_releases_a_lock_left_unattended_and_only_that() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    let zk = group.zk.connect_string();
    let (code, out) = zgres_testkit::zgresctl::run(&zk, &["unlock", "main", "--force"]);
    assert_ne!(code, 0, "a live deadman's lock is not released: {out}");
    assert!(out.contains("held by 127.0.0.1:"), "{out}");

    pause(&group, true).await;
    poll::until("n0 to see the pause", DEADLINE, || async {
        group.nodes[0]
            .log_text()
            .contains("the group is paused")
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    let postmaster = group.nodes[0].postmaster_pid().unwrap();
    let deadman = group.nodes[0].deadman.take().unwrap();
    assert!(deadman
        .stop(Signal::SIGTERM, Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    assert_eq!(group.nodes[0].postmaster_pid(), Some(postmaster));
    let (code, listed) = zgres_testkit::zgresctl::run(&zk, &["list"]);
    assert_eq!(code, 0, "{listed}");
    let left = format!(
        "! lock left by {} at a paused shutdown",
        group.nodes[0].node_id()
    );
    assert!(listed.contains(&left), "{listed}");

    // The node is gone for good: its PostgreSQL is stopped, then the lock released.
    group.nodes[0].kill_postgres();
    let (code, out) = zgres_testkit::zgresctl::run(&zk, &["unlock", "main", "--force"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("released the lock left by 127.0.0.1:"),
        "{out}"
    );
    let (code, out) = zgres_testkit::zgresctl::run(&zk, &["unlock", "main", "--force"]);
    assert_ne!(code, 0, "nothing left to release: {out}");
    pause(&group, false).await;
    assert_eq!(group.wait_primary(&[0]).await, 1);
}
