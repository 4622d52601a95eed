//! Fencing and local faults on the primary: a ZooKeeper partition, a stopped deadman, a crashed
//! PostgreSQL.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use zgres_testkit::fault_proxy::ProxyMode;
use zgres_testkit::group::{missing_acks, Ack, Group, Timing, Writer, DEADLINE};
use zgres_testkit::poll;

/// Watches for `window` that node `i` never answers as a primary and never holds the lock.
async fn assert_never_primary(group: &Group, i: usize, window: Duration) {
    let client = group.zk_client().await;
    let until = Instant::now() + window;
    while Instant::now() < until {
        assert_ne!(
            group.nodes[i].is_primary().await,
            Some(true),
            "node {i} acts as primary\n{}",
            group.logs()
        );
        assert_ne!(
            group.lock_holder(&client).await,
            Some(i),
            "node {i} holds the lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The primary's deadman loses ZooKeeper (blackholed) while clients write continuously to every
/// node. Its PostgreSQL must stop taking writes before any other node starts: the old primary's
/// last acknowledged commit precedes the new primary's first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_primary_is_fenced_before_another_takes_writes() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.proxy_node(0);
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;

    let writer = Writer::start(&group);
    let client = group.zk_client().await;
    group.wait_own_writes(0, 50).await;

    group.nodes[0]
        .proxy
        .as_ref()
        .unwrap()
        .set_mode(ProxyMode::Blackhole);
    let new = poll::until("another node to hold the lock", DEADLINE, || async {
        group.lock_holder(&client).await.filter(|&h| h != 0)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    group.wait_own_writes(new, 50).await;
    let acks = writer.finish().await;

    let old_last = acks
        .iter()
        .filter(|a| a.node == 0)
        .map(|a| a.at)
        .max()
        .unwrap();
    let new_first = acks
        .iter()
        .filter(|a| a.node == new)
        .map(|a| a.at)
        .min()
        .unwrap();
    let margin = new_first.duration_since(old_last).unwrap_or_else(|e| {
        panic!(
            "two primaries accepted writes at once: the old one {:?} after the new one's first",
            e.duration()
        )
    });
    println!(
        "fencing margin: old primary's last acknowledged write {:.3}s before the new primary's first",
        margin.as_secs_f64()
    );
    assert_ne!(
        group.nodes[0].is_primary().await,
        Some(true),
        "the old primary was fenced"
    );

    // Healing the partition must not bring the old primary back as a primary.
    group.nodes[0]
        .proxy
        .as_ref()
        .unwrap()
        .set_mode(ProxyMode::Pass);
    assert_never_primary(&group, 0, Duration::from_secs(5)).await;
    // Fenced: by the graceful fast shutdown, or by the SIGKILL backstop.
    let log = group.nodes[0].log_text();
    assert!(
        log.contains("FENCING: ZooKeeper session not confirmed; fast shutdown")
            || log.contains("FENCED"),
        "{log}"
    );
}

/// The old primary's last acknowledged write must precede the new primary's first.
fn fencing_margin(acks: &[Ack], old: usize, new: usize, since: std::time::SystemTime) -> Duration {
    let old_last = acks
        .iter()
        .filter(|a| a.node == old && a.at >= since)
        .map(|a| a.at)
        .max()
        .expect("the old primary took writes");
    let new_first = acks
        .iter()
        .filter(|a| a.node == new && a.at >= since)
        .map(|a| a.at)
        .min()
        .expect("the new primary took writes");
    new_first.duration_since(old_last).unwrap_or_else(|e| {
        panic!(
            "two primaries accepted writes at once: the old one {:?} after the new one's first",
            e.duration()
        )
    })
}

/// Graceful fencing, 20 times: the primary is cut from ZooKeeper while clients write to every
/// node and its replicas stream from it (asynchronous mode). Its fence first asks PostgreSQL for
/// a fast shutdown, whose walsenders ship every acknowledged commit to the standbys, so none is
/// lost when the old primary rejoins (pg_rewind) behind the new one; and the old primary stops
/// taking writes before any other node starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_primary_loses_no_acknowledged_commit_over_twenty_partitions() {
    let mut group = Group::prepare(3, Timing::default()).await;
    for i in 0..3 {
        group.proxy_node(i);
    }
    group.start_all().await;
    let mut primary = group.wait_primary(&[]).await;
    let writer = Writer::start(&group);
    let client = group.zk_client().await;
    let mut margins = Vec::new();
    for round in 1..=20 {
        for i in (0..3).filter(|&i| i != primary) {
            group.wait_following(i, primary).await;
        }
        writer.wait_more_acks(primary, 20).await;
        let since = std::time::SystemTime::now();
        let proxy = group.nodes[primary].proxy.as_ref().unwrap();
        proxy.set_mode(ProxyMode::Blackhole);
        let new = poll::until("another node to hold the lock", DEADLINE, || async {
            group.lock_holder(&client).await.filter(|&h| h != primary)
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}
{}",
                group.logs()
            )
        });
        poll::until("writes on the new primary", DEADLINE, || async {
            let acks = writer.acks().await;
            (acks
                .iter()
                .filter(|a| a.node == new && a.at >= since)
                .count()
                > 20)
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
        group.nodes[primary]
            .proxy
            .as_ref()
            .unwrap()
            .set_mode(ProxyMode::Pass);
        let acks = writer.acks().await;
        let margin = fencing_margin(&acks, primary, new, since);
        margins.push(margin.as_secs_f64());
        let missing = missing_acks(&group, &acks, new).await;
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged commits are missing on the new primary n{new}: {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            group.logs()
        );
        println!(
            "round {round}: n{primary} cut off, n{new} promoted {:.3}s after its last write, {} acknowledged commits all present",
            margin.as_secs_f64(),
            acks.len()
        );
        primary = new;
    }
    writer.finish().await;
    zgres_testkit::figures::summary("fencing margin (s)", &margins);
    assert!(group.logs().contains("fast shutdown of PostgreSQL"));
}

/// SIGSTOP of the primary's deadman for longer than the session timeout: the fence keeper (a
/// separate process) kills PostgreSQL in time, a replica takes over, and after SIGCONT the old
/// node does not act as primary. The keeper first gets the signals meant for the deadman
/// (`systemctl kill` without `--kill-who=main` sends them to the whole unit): none ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_deadman_is_fenced_by_its_keeper() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    let old_postmaster = group.nodes[0].postmaster_pid().unwrap();
    let keeper =
        zgres_testkit::proc_usage::child_with_arg(group.nodes[0].deadman_pid(), "--fence-keeper")
            .expect("the primary's fence keeper");
    for signal in [
        Signal::SIGHUP,
        Signal::SIGUSR2,
        Signal::SIGUSR1,
        Signal::SIGINT,
        Signal::SIGTERM,
    ] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(keeper as i32), signal).unwrap();
    }

    signal_deadman(&group, 0, Signal::SIGSTOP);
    wait_killed(&group, old_postmaster).await;
    assert_eq!(group.wait_primary(&[0]).await, 1);

    signal_deadman(&group, 0, Signal::SIGCONT);
    assert_never_primary(&group, 0, Duration::from_secs(5)).await;
}

/// Waits until the frozen primary's postmaster `pid` is dead (gone or a zombie).
async fn wait_killed(group: &Group, pid: i32) {
    poll::until(
        "the frozen primary's PostgreSQL to be killed",
        DEADLINE,
        || async {
            let gone = !std::path::Path::new(&format!("/proc/{pid}/stat")).exists();
            (gone || is_zombie(pid as u32)).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

/// The primary's fence keeper killed with SIGKILL (by hand, by the OOM killer): the deadman
/// starts a new one, which fences PostgreSQL when the deadman is then frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_fence_keeper_is_replaced_and_still_fences() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    let postmaster = group.nodes[0].postmaster_pid().unwrap();
    let deadman = group.nodes[0].deadman_pid();
    let keeper = zgres_testkit::proc_usage::child_with_arg(deadman, "--fence-keeper")
        .expect("the primary's fence keeper");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(keeper as i32), Signal::SIGKILL).unwrap();
    poll::until("a new fence keeper", DEADLINE, || {
        let new = zgres_testkit::proc_usage::child_with_arg(deadman, "--fence-keeper")
            .filter(|&k| k != keeper && !is_zombie(k));
        std::future::ready(new)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(0))));

    signal_deadman(&group, 0, Signal::SIGSTOP);
    wait_killed(&group, postmaster).await;
    assert_eq!(group.wait_primary(&[0]).await, 1);
    signal_deadman(&group, 0, Signal::SIGCONT);
}

/// Sends `signal` to node `i`'s deadman.
fn signal_deadman(group: &Group, i: usize, signal: Signal) {
    group.nodes[i]
        .deadman
        .as_ref()
        .expect("deadman running")
        .signal(signal)
        .unwrap();
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
}

/// PostgreSQL on the primary crashes while its deadman lives: it is restarted in place and the
/// node keeps the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_primary_postgres_is_restarted_in_place() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    let before = group.nodes[0].postmaster_pid().unwrap();
    group.nodes[0].kill_postgres();
    poll::until("a new postmaster on node 0", DEADLINE, || async {
        group.nodes[0].postmaster_pid().filter(|&p| p != before)
    })
    .await
    .unwrap();
    assert_eq!(group.wait_primary(&[]).await, 0);
}

/// A crashed primary whose PostgreSQL cannot start again (here: a broken configuration) gives
/// up the lock after its restart bound, and a replica takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_primary_past_its_restart_bound_hands_over() {
    let group = primary_past_its_restart_bound_gives_up("").await;
    assert!(group.nodes[0]
        .log_text()
        .contains("released the group lock"));
}

/// The same with the replica declaring an ensemble whose takeover wait (82.4 s here) is longer
/// than the test's deadline for a new primary: the old primary's PostgreSQL was down when it
/// released the lock, and it recorded so with the deletion, so the replica promotes without
/// the wait (before, it waited it out, as for a lock that expired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_gives_up_its_lock_spares_the_next_the_takeover_wait() {
    let long_wait = "[zookeeper]\nensemble_tick_ms = 2000\nensemble_sync_limit = 40\n";
    let group = primary_past_its_restart_bound_gives_up(long_wait).await;
    let old = group.nodes[0].log_text();
    assert!(
        old.contains("released the group lock, with nobody writing under it"),
        "{old}"
    );
    let taker = group.nodes[1].log_text();
    assert!(
        taker.contains("the lock was released with nobody writing under it: no takeover wait"),
        "{taker}"
    );
    assert!(
        !taker.contains(zgres_deadman::decision::WAITING_TO_PROMOTE),
        "the replica waited before promoting\n{taker}"
    );
}

/// A 2-node group, node 1's deadman restarted with `replica_config` once it follows, whose
/// primary's PostgreSQL crashes and cannot start again: node 1 must become the primary and
/// node 0 never again.
async fn primary_past_its_restart_bound_gives_up(replica_config: &str) -> Group {
    let timing = Timing {
        primary_restart_timeout_ms: 2_000,
        ..Timing::default()
    };
    let mut group = Group::prepare(2, timing).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    if !replica_config.is_empty() {
        let deadman = group.nodes[1].deadman.take().unwrap();
        let status = deadman.stop(Signal::SIGTERM, Duration::from_secs(30));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        group.nodes[1].extra_config = replica_config.to_owned();
        group.start(1);
        group.wait_following(1, 0).await;
    }
    // The running server does not reread this file; a restart does, and fails.
    let auto_conf = group.nodes[0].pg.data_dir().join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto_conf).unwrap();
    text.push_str("this is not a setting\n");
    std::fs::write(&auto_conf, text).unwrap();
    group.nodes[0].kill_postgres();
    assert_eq!(group.wait_primary(&[0]).await, 1);
    assert_never_primary(&group, 0, Duration::from_secs(3)).await;
    group
}

/// The fence takes its confirmations from every answer ZooKeeper gives the session, not only
/// from the client's keep-alive pings. Each request postpones the client's next ping, so a
/// primary that talks to ZooKeeper (here: its state republished every 250 ms) leaves gaps
/// between pings; before, its heartbeat filled each with a request of its own (`exists` on
/// the lock), about once every 15 s on an idle production-timed primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_busy_with_requests_needs_no_fencing_heartbeat() {
    let mut group = Group::prepare(
        1,
        Timing {
            loop_interval_ms: 250,
            state_refresh_ms: 250,
            ..Timing::default()
        },
    )
    .await;
    let counter = zgres_testkit::zk_counter::RequestCounter::start(group.zk.client_addr(0))
        .await
        .unwrap();
    group.nodes[0].zookeeper_via = Some(counter.addr().to_string());
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);

    let of_kind = |prefix: &str| -> u64 {
        counter
            .by_request()
            .iter()
            .filter(|(request, _)| request.starts_with(prefix))
            .map(|(_, count)| count)
            .sum()
    };
    let (writes_before, heartbeats_before) = (of_kind("setData"), of_kind("exists"));
    // Twenty republications: each one's request keeps the client from pinging for a while.
    poll::until("twenty state writes", DEADLINE, || async {
        (of_kind("setData") >= writes_before + 20).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        of_kind("exists") - heartbeats_before,
        0,
        "heartbeat requests while the primary's own requests were answered: {:?}",
        counter.by_request()
    );
    assert_eq!(group.nodes[0].is_primary().await, Some(true));
}
