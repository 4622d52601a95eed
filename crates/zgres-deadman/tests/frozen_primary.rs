//! A primary whose PostgreSQL freezes with a write in flight (storage that hangs; here SIGSTOP
//! of every process of the instance), then thaws after another node took over.

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

    // Busy for 3 s (so it does not notice its postmaster's death), then a write.
    let writer = group.nodes[0].client().await.unwrap();
    let backend: i32 = writer
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let write = tokio::spawn(async move {
        writer
            .batch_execute(
                "DO $$ BEGIN
                   WHILE clock_timestamp() < statement_timestamp() + interval '3 s' LOOP END LOOP;
                   INSERT INTO writes (node, seq) VALUES ('frozen', 1);
                 END $$",
            )
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
    drop(observer);

    let frozen = freeze_instance(postmaster);
    assert!(frozen.contains(&backend), "the writing backend is frozen");
    assert_eq!(group.wait_primary(&[0]).await, 1);
    for pid in &frozen {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
    }

    let outcome = tokio::time::timeout(DEADLINE, write)
        .await
        .expect("the long write to end")
        .unwrap();
    assert!(
        outcome.is_err(),
        "the frozen primary acknowledged a write after node 1 was promoted\n{}",
        group.logs()
    );
    let new = group.nodes[1].client().await.unwrap();
    let row = new
        .query_one("SELECT count(*) FROM writes WHERE node = 'frozen'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "the write reached no primary");
    let log = group.nodes[0].log_text();
    assert!(
        log.contains("outside the postmaster's group"),
        "the deadman says it killed the backends too\n{log}"
    );
}

/// SIGSTOPs postmaster `pid` (it forks no more), then every process it started; returns them all.
fn freeze_instance(pid: i32) -> Vec<i32> {
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    let mut frozen = vec![pid];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, then the parent's pid.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if parent == Some(pid) && kill(Pid::from_raw(child), Signal::SIGSTOP).is_ok() {
            frozen.push(child);
        }
    }
    frozen
}
