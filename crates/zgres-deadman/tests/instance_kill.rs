//! Killing PostgreSQL takes the whole instance. Every process a postmaster starts leads a
//! process group of its own, so a kill of the postmaster's group left its backends running; a
//! busy one finished its statement and committed it, its client told so, after another node had
//! been promoted. Here with a write in flight on a primary whose PostgreSQL freezes (storage that
//! hangs), and on one whose deadman is killed.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

/// The frozen primary's deadman gives up after its restart bound, kills PostgreSQL and hands
/// over; the replica is promoted and takes a write; then what is left of the old instance
/// thaws. Every process a postmaster starts leads a process group of its own, so a kill of the
/// postmaster's group alone left the backend running: thawed, it finished its statement and
/// committed it, and its client was told so, after the new primary took writes (this test
/// failed that way). The kill takes every process of the instance: the write fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primarys_write_in_flight_is_not_acknowledged_after_the_handover() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    let postmaster = group.nodes[0].postmaster_pid().unwrap();

    let (backend, write) = start_long_write(&group, 3).await;

    let frozen = zgres_testkit::freeze::freeze(postmaster);
    assert!(frozen.contains(&backend), "the writing backend is frozen");
    assert_eq!(group.wait_primary(&[0]).await, 1);
    for pid in &frozen {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
    }

    assert_not_acknowledged(&group, write).await;
    let log = group.nodes[0].log_text();
    assert!(
        log.contains("outside the postmaster's group"),
        "the deadman says it killed the backends too\n{log}"
    );
}

/// The primary's deadman is killed (kill -9, the OOM killer) with a 10 s write in flight. Its
/// guardian dies with it and the kernel kills the postmaster; the fence keeper, seeing the
/// deadman gone while armed, kills PostgreSQL at once: the whole instance, the busy backend
/// included, from the data directory it learned while the postmaster lived. The replica takes
/// over; the write fails instead of committing 10 s later beside the new primary's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_deadmans_write_in_flight_is_not_acknowledged_after_the_handover() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    let (_, write) = start_long_write(&group, 10).await;

    kill(
        Pid::from_raw(group.nodes[0].deadman_pid() as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(group.wait_primary(&[0]).await, 1);
    assert_not_acknowledged(&group, write).await;
}

/// The primary's deadman and its fence keeper killed together (the OOM killer taking both)
/// with a 10 s write in flight: the kernel kills the guardian and the postmaster, and nothing is
/// left to kill the busy backend. The deadman, started again (systemd's `Restart=`), kills it
/// before anything else, and its write fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_deadman_kills_the_backends_a_dead_instance_left() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    let (backend, write) = start_long_write(&group, 10).await;

    let postmaster = group.nodes[0].postmaster_pid().unwrap();
    let deadman = group.nodes[0].deadman_pid();
    let keeper = zgres_testkit::proc_usage::child_with_arg(deadman, "--fence-keeper")
        .expect("the primary's fence keeper");
    // Stopped first: a running deadman that sees its keeper die starts a new one at once, and
    // that one kills the backend itself (seen on a loaded CI machine between the two kills).
    kill(Pid::from_raw(deadman as i32), Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(keeper as i32), Signal::SIGKILL).unwrap();
    kill(Pid::from_raw(deadman as i32), Signal::SIGKILL).unwrap();
    poll::until(
        "the postmaster to die with its guardian",
        DEADLINE,
        || async {
            let state = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).ok();
            let dead =
                state.is_none_or(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
            dead.then_some(())
        },
    )
    .await
    .unwrap();
    assert!(
        std::path::Path::new(&format!("/proc/{backend}")).exists(),
        "the busy backend outlived its postmaster"
    );

    group.start(0);
    assert_not_acknowledged(&group, write).await;
    let log = group.nodes[0].log_text();
    assert!(
        log.contains("left running by a postmaster that died"),
        "the restarted deadman says what it killed\n{log}"
    );
}

type LongWrite = tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>;

/// Starts, on node 0, a statement that is busy for `secs` seconds (so it does not notice its
/// postmaster's death), then inserts `('late', 1)` into `writes`; returns its backend's pid once
/// it runs.
async fn start_long_write(group: &Group, secs: u32) -> (i32, LongWrite) {
    let writer = group.nodes[0].client().await.unwrap();
    let backend: i32 = writer
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let write = tokio::spawn(async move {
        writer
            .batch_execute(&format!(
                "DO $$ BEGIN
                   WHILE clock_timestamp() < statement_timestamp() + interval '{secs} s' LOOP END LOOP;
                   INSERT INTO writes (node, seq) VALUES ('late', 1);
                 END $$"
            ))
            .await
    });
    let observer = group.nodes[0].client().await.unwrap();
    poll::until("the long write to run", DEADLINE, || async {
        let row = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                &[&backend],
            )
            .await
            .ok()?;
        (row.get::<_, i64>(0) == 1).then_some(())
    })
    .await
    .unwrap();
    (backend, write)
}

/// The long write on the old primary ended in an error, and node 1 (the new primary) has no row
/// of it.
async fn assert_not_acknowledged(group: &Group, write: LongWrite) {
    let outcome = tokio::time::timeout(DEADLINE, write)
        .await
        .expect("the long write to end")
        .unwrap();
    assert!(
        outcome.is_err(),
        "the old primary acknowledged a write after node 1 was promoted\n{}\n{}",
        group.logs(),
        group.nodes[0].log_text()
    );
    let new = group.nodes[1].client().await.unwrap();
    let row = new
        .query_one("SELECT count(*) FROM writes WHERE node = 'late'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "the write reached no primary");
}
