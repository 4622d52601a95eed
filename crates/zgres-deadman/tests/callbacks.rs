//! Operator callbacks on the database node: called as `PROGRAM ACTION ROLE GROUP` on every change
//! of the local PostgreSQL, whoever made it; `pre_promote` vetoes a promotion; a hanging
//! callback is killed after its timeout and delays nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

/// Writes an executable shell script `name` in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_for_line(group: &Group, events: &Path, line: &str) {
    poll::until(&format!("the callback line {line:?}"), DEADLINE, || {
        std::future::ready(lines(events).iter().any(|l| l == line).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nevents: {:?}\n{}", lines(events), group.logs()));
}

/// Stops node `i`'s deadman as systemd would (SIGTERM): PostgreSQL stops, the lock goes.
fn stop_deadman(group: &mut Group, i: usize) {
    let deadman = group.nodes[i].deadman.take().expect("a running deadman");
    deadman.stop(Signal::SIGTERM, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_follow_every_change_of_postgres() {
    let mut group = Group::prepare(2, Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    let cb = script(
        dir.path(),
        "cb",
        &format!("echo \"$ZGRES_NODE $1 $2 $3\" >> {}", events.display()),
    );
    for node in &mut group.nodes {
        node.extra_config = format!(
            "[callbacks]\non_start = \"{c}\"\non_stop = \"{c}\"\non_role_change = \"{c}\"\n\
             on_reload = \"{c}\"\n",
            c = cb.display()
        );
    }
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    wait_for_line(&group, &events, "n0 on_start primary main").await;
    wait_for_line(&group, &events, "n1 on_start replica main").await;

    // The primary's deadman stops: its PostgreSQL stops, the replica is promoted.
    stop_deadman(&mut group, 0);
    wait_for_line(&group, &events, "n0 on_stop primary main").await;
    assert_eq!(group.wait_primary(&[0]).await, 1);
    wait_for_line(&group, &events, "n1 on_role_change primary main").await;

    // A reload that changes a parameter has PostgreSQL re-read its files.
    group.rewrite_config(
        1,
        &format!(
            "{}[postgres.parameters]\nwork_mem = \"5MB\"\n",
            group.nodes[1].extra_config
        ),
    );
    group.nodes[1]
        .deadman
        .as_ref()
        .unwrap()
        .signal(Signal::SIGHUP)
        .unwrap();
    wait_for_line(&group, &events, "n1 on_reload primary main").await;

    // Each node's own calls came in the order its PostgreSQL changed.
    let n1: Vec<String> = lines(&events)
        .into_iter()
        .filter(|l| l.starts_with("n1 "))
        .collect();
    assert_eq!(
        n1,
        [
            "n1 on_start replica main",
            "n1 on_role_change primary main",
            "n1 on_reload primary main"
        ],
        "{}",
        group.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_promote_vetoes_the_promotion_until_it_allows_it() {
    let mut group = Group::prepare(2, Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let allow = dir.path().join("allow");
    let gate = script(
        dir.path(),
        "gate",
        &format!(
            "echo \"$1 $2 $3\" >> {}\ntest -e {}",
            calls.display(),
            allow.display()
        ),
    );
    group.nodes[1].extra_config = format!("[callbacks]\npre_promote = \"{}\"\n", gate.display());
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;

    stop_deadman(&mut group, 0);
    poll::until("pre_promote to be asked", DEADLINE, || {
        std::future::ready((!lines(&calls).is_empty()).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    assert_eq!(lines(&calls)[0], "pre_promote replica main");
    // Vetoed: the lock is released and n1 stays a replica.
    let client = group.zk_client().await;
    poll::until("the vetoed node to release the lock", DEADLINE, || async {
        group.lock_holder(&client).await.is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    assert_eq!(group.nodes[1].is_primary().await, Some(false));
    let vetoed = group.nodes[1].log_text();
    assert!(vetoed.contains("pre_promote vetoed this node's promotion"));
    // Still a standby when it gave the lock up: the next holder need not wait.
    assert!(
        vetoed.contains("released the group lock, with nobody writing under it"),
        "{vetoed}"
    );

    std::fs::write(&allow, "").unwrap();
    assert_eq!(group.wait_primary(&[0]).await, 1);
    assert!(lines(&calls).len() >= 2, "asked again: {:?}", lines(&calls));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_callback_is_killed_and_delays_nothing() {
    let mut group = Group::prepare(2, Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // A marker no other process on the machine carries.
    let marker = format!("{}", 900_000 + std::process::id() % 99_999);
    let hang = script(dir.path(), "hang", &format!("sleep {marker}"));
    group.nodes[1].extra_config = format!(
        "[callbacks]\ntimeout_ms = 8000\non_start = \"{h}\"\non_role_change = \"{h}\"\n",
        h = hang.display()
    );
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;

    stop_deadman(&mut group, 0);
    assert_eq!(group.wait_primary(&[0]).await, 1);
    // n1's on_start has hung since it started: its promotion did not wait for it.
    assert!(
        sleeping(&marker),
        "the hanging callback ended before the promotion (or never ran)\n{}",
        group.logs()
    );
    poll::until("the hanging callbacks to be killed", DEADLINE, || {
        let log = group.nodes[1].log_text();
        let killed = log.matches("callback failed").count() >= 2;
        std::future::ready((killed && !sleeping(&marker)).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

/// Whether a process runs `sleep MARKER`.
fn sleeping(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"sleep"))
                && args.get(1).is_some_and(|a| *a == marker.as_bytes())
        })
    })
}
