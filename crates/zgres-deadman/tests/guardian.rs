//! The postmaster guardian with the real deadman binary as guardian and a stand-in postmaster
//! (a shell script that sleeps): PostgreSQL's exit is seen at once, a detached guardian keeps it
//! for the next deadman, and a guardian's death takes it down.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use zgres_deadman::config::PostgresConfig;
use zgres_deadman::fence::FenceClock;
use zgres_deadman::postgres_process::PostgresProcess;

/// A "postmaster" that only sleeps, with `dir/data` as its data directory.
fn fake(dir: &Path) -> PostgresProcess {
    let program = dir.join("postgres");
    // Written once: a second deadman's `fake` on the same directory may come while the first
    // one's postmaster is still being exec'd, and writing a file under exec fails (ETXTBSY;
    // seen once in CI).
    if !program.exists() {
        std::fs::write(&program, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("postgresql.conf"), "").unwrap();
    let config = PostgresConfig {
        tls: Default::default(),
        data_dir: data,
        bin_dir: dir.to_owned(),
        port: 5432,
        run_as: None,
        user: "postgres".into(),
        dbname: "postgres".into(),
        password: None,
        probe_host: "127.0.0.1".parse().unwrap(),
        parameters: Default::default(),
    };
    PostgresProcess::new(config, Arc::new(FenceClock::new(Duration::from_secs(5))))
        .with_guardian_program(env!("CARGO_BIN_EXE_zgres-deadman"))
}

fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Regression (found by the failover bench: a crashed primary sometimes restarted a whole
/// loop interval late): an exit reaped in the middle of a round, by a later `is_running`,
/// still wakes the loop's wait; once a round observed it, it does not again.
#[tokio::test]
async fn an_exit_reaped_in_the_middle_of_a_round_still_wakes_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = fake(dir.path());
    process.start().unwrap();
    assert!(process.observe(), "running at the round's start");
    let pid = process.pid().unwrap();
    killpg(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    // Later in the same round something asks again and reaps it.
    wait_until("it exited", || !process.is_running());
    // The loop's wait: it must resolve (without the fix it never did).
    tokio::time::timeout(Duration::from_secs(10), process.exited())
        .await
        .expect("the exit reaped mid-round wakes the loop");
    // The next round sees it; after that the wait is for a new exit only.
    assert!(!process.observe());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), process.exited())
            .await
            .is_err(),
        "an exit already seen does not wake the loop again"
    );
}

/// A detached guardian keeps PostgreSQL past its deadman's end and hands it to the next one,
/// which stops it as its own.
#[tokio::test]
async fn a_detached_guardian_keeps_postgres_for_the_next_deadman() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = fake(dir.path());
    first.start().unwrap();
    let pid = first.pid().unwrap();
    let socket = dir.path().join("data.guardian");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only this user may connect");
    assert!(first.detach().await, "the guardian confirms the detach");
    drop(first);
    let mut next = fake(dir.path());
    let adopted = next.attach(None).expect("the guardian answers");
    assert_eq!(adopted, Some(pid), "the same postmaster is taken over");
    assert!(!gone(pid), "PostgreSQL ran on between the two deadmen");
    assert!(next.is_running());
    next.stop(false, Duration::from_secs(5)).await;
    assert!(gone(pid), "stopped by the deadman that took it over");
    assert!(!next.is_running());
    wait_until("the guardian removed its socket", || !socket.exists());
}

/// Without a detach, nothing is left for a next deadman: the guardian still serves the one it
/// has, and a guardian killed outright takes PostgreSQL with it (its parent-death signal), an
/// exit the deadman sees at once.
#[tokio::test]
async fn a_killed_guardian_takes_postgres_down_and_the_deadman_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = fake(dir.path());
    process.start().unwrap();
    let pid = process.pid().unwrap();
    let guardian = process.guardian_pid().expect("our child");
    kill(Pid::from_raw(guardian as i32), Signal::SIGKILL).unwrap();
    tokio::time::timeout(Duration::from_secs(10), process.exited())
        .await
        .expect("the deadman learns that PostgreSQL is gone");
    wait_until("the postmaster died with its guardian", || gone(pid));
    assert!(!process.observe());
}
