//! A bootstrap or a clone that fails is tried again after a growing pause, not every round:
//! what makes them fail (a setting, a full disk, a primary refusing the connection) rarely
//! mends itself within a round, and each attempt costs the primary or ZooKeeper.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zgres_deadman::decision::{BOOTSTRAP_RETRY, CLONE_RETRY};
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

/// A command that records when it ran (ns since the epoch, one line each) and fails.
fn failing_command() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("zgres-provisioning-")
        .tempdir()
        .unwrap();
    // Writable by the postgres user when the test runs as root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = dir.path().join("fail.sh");
    let runs = dir.path().join("runs");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ndate +%s%N >> \"{}\"\necho 'refused by the test' >&2\nexit 1\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, script, runs)
}

/// The start times the failing command recorded.
fn runs_of(runs: &Path) -> Vec<u128> {
    std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits until the command ran `count` times; returns the pauses between its runs.
async fn pauses_between(group: &Group, runs: &Path, count: usize) -> Vec<Duration> {
    let times = poll::until(&format!("{count} attempts"), DEADLINE, || async {
        let times = runs_of(runs);
        (times.len() >= count).then_some(times)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    times
        .windows(2)
        .map(|w| Duration::from_nanos((w[1] - w[0]) as u64))
        .collect()
}

/// Waits until node `i` bootstrapped the group and runs as its primary.
async fn wait_bootstrapped(group: &Group, i: usize) {
    poll::until(
        &format!("node {i} to bootstrap the group"),
        DEADLINE,
        || async { group.nodes[i].is_primary().await.filter(|p| *p).map(|_| ()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

/// Less a little for the granularity of the two clocks (the script's and the deadman's).
const SLACK: Duration = Duration::from_millis(50);

/// A failing bootstrap (here the command; in life initdb's arguments or a full disk) gives the
/// lock up and is tried again only after a pause: it used to be retried at once, running the
/// command and taking and deleting the lock in ZooKeeper every few milliseconds. Meanwhile
/// another node bootstraps the group, and the failed one clones it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_bootstrap_is_tried_again_after_a_pause_and_another_node_bootstraps_the_group() {
    let (_dir, script, runs) = failing_command();
    let mut group = Group::prepare_empty(2, Timing::default()).await;
    group.nodes[0].extra_config = format!(
        "[provisioning]\nbootstrap_command = [\"{}\"]\n",
        script.display()
    );
    group.start(0);
    let pauses = pauses_between(&group, &runs, 2).await;
    // The retry comes BOOTSTRAP_RETRY after the first attempt failed, so at least that long
    // after it started.
    assert!(
        pauses[0] >= BOOTSTRAP_RETRY - SLACK,
        "tried again {:?} after the first attempt\n{}",
        pauses[0],
        group.logs()
    );
    assert!(
        group.nodes[0].log_text().contains("bootstrap failed"),
        "{}",
        group.logs()
    );
    group.start(1);
    wait_bootstrapped(&group, 1).await;
    group.wait_following(0, 1).await;
}

/// A failing clone is tried again after CLONE_RETRY, then twice that: it used to be tried
/// every round (here every 200 ms), each attempt copying what it could from the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_clone_is_tried_again_after_a_growing_pause() {
    let (_dir, script, runs) = failing_command();
    let mut group = Group::prepare_empty(2, Timing::default()).await;
    group.nodes[1].extra_config = format!(
        "[provisioning]\nclone_command = [\"{}\"]\n",
        script.display()
    );
    group.start(0);
    wait_bootstrapped(&group, 0).await;
    group.start(1);
    let pauses = pauses_between(&group, &runs, 3).await;
    assert!(
        pauses[0] >= CLONE_RETRY - SLACK && pauses[1] >= CLONE_RETRY * 2 - SLACK,
        "pauses between attempts: {pauses:?}\n{}",
        group.logs()
    );
    assert!(
        group.nodes[1]
            .log_text()
            .contains("clone failed; trying again after a pause"),
        "{}",
        group.logs()
    );
}
