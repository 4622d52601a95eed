//! A former primary whose pg_rewind fails: re-cloned from the new primary when
//! `provisioning.reclone_on_rewind_failure` allows it, otherwise left stopped (no data deleted)
//! and tried again — unless pg_rewind stopped after it began changing files, which leaves a
//! directory no second pg_rewind can repair: never started, reported until re-cloned. The
//! failure is real PostgreSQL tooling with one tool wrapped: the node's `postgres.bin_dir`
//! holds the real binaries and a `pg_rewind` script.

use std::os::unix::fs::PermissionsExt;

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

use zgres_testkit::group::checks::node_state;

/// `pg_rewind` that fails at once, changing nothing.
const FAILS_AT_ONCE: &str = "echo 'pg_rewind: failure injected by the test' >&2\nexit 1\n";

/// `pg_rewind` that runs the real one, then fails as one whose source went away half-way
/// would: after it changed the data directory (found by CI, 2026-12-02: a new primary fenced
/// under load while a former primary rewound from it, whose history files were left empty).
const FAILS_AFTER_CHANGING_FILES: &str =
    "\"$REAL/pg_rewind\" \"$@\"\necho 'pg_rewind: error: stopped by the test' >&2\nexit 1\n";

/// A copy of PostgreSQL's bin directory (symbolic links) whose `pg_rewind` is a shell script
/// with `body` (`$REAL` is the real bin directory).
fn bin_dir_with_pg_rewind(body: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("zgres-bin-")
        .tempdir()
        .unwrap();
    // Readable by the postgres user when the test runs as root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(zgres_testkit::postgres::bindir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "pg_rewind" {
            std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let fake = dir.path().join("pg_rewind");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nREAL='{}'\n{body}",
            zgres_testkit::postgres::bindir().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Kills node 0 (the primary), waits for node 1 to take over and commit a row, then starts
/// node 0's deadman again: it finds a former primary's data directory to rewind.
async fn fail_over_and_restart_the_old_primary(group: &mut Group) {
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.kill_node(0);
    assert_eq!(group.wait_primary(&[0]).await, 1);
    let new = group.nodes[1]
        .client()
        .await
        .expect("the new primary answers");
    new.execute(
        "INSERT INTO writes (node, seq) VALUES ('after-failover', 1)",
        &[],
    )
    .await
    .unwrap();
    group.start(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_primary_whose_rewind_fails_is_cloned_again_when_allowed() {
    let bin = bin_dir_with_pg_rewind(FAILS_AT_ONCE);
    let mut group = Group::prepare(2, Timing::default()).await;
    group.nodes[0].extra_config = format!(
        "[postgres]\nbin_dir = \"{}\"\n[provisioning]\nreclone_on_rewind_failure = true\n",
        bin.path().display()
    );
    fail_over_and_restart_the_old_primary(&mut group).await;

    poll::until(
        "node 0 to have the new primary's commit, cloned again",
        DEADLINE,
        || async {
            let client = group.nodes[0].client().await?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM writes WHERE node = 'after-failover'",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 1).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(0))));
    group.wait_following(0, 1).await;
    let log = group.nodes[0].log_text();
    assert!(
        log.contains("pg_rewind failed: emptying the data directory to clone it again"),
        "{}",
        group.logs_with_first(Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_primary_whose_rewind_fails_stays_stopped_and_tries_again() {
    let bin = bin_dir_with_pg_rewind(FAILS_AT_ONCE);
    let mut group = Group::prepare(2, Timing::default()).await;
    group.nodes[0].extra_config = format!(
        "[postgres]\nbin_dir = \"{}\"\n[provisioning]\nreclone_on_rewind_failure = false\n",
        bin.path().display()
    );
    fail_over_and_restart_the_old_primary(&mut group).await;
    let marker = group.nodes[0].pg.data_dir().join("PG_VERSION");

    // Tried again after the retry wait (1 s, then 2 s, ...), never deleting anything.
    let failed = "pg_rewind failed before changing anything; it is tried again";
    poll::until("node 0 to try pg_rewind a third time", DEADLINE, || {
        let tries = group.nodes[0].log_text().matches(failed).count();
        std::future::ready((tries >= 3).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(0))));
    assert!(marker.exists(), "the data directory was emptied");
    assert_eq!(
        group.nodes[0].postmaster_pid(),
        None,
        "started although it was never rewound"
    );
    // Reported where an operator looks: its /state, the health API, zgresctl list.
    let zk = group.zk_client().await;
    poll::until("n0 to report the failed pg_rewind", DEADLINE, || async {
        let state = node_state(&group, &zk, 0).await?;
        state
            .problems
            .iter()
            .any(|p| p.contains("pg_rewind failed") && p.contains("zgresctl reinit"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(0))));
    let status = zgres_testkit::http::get(group.nodes[0].api_port, "/patroni").unwrap_or_default();
    assert!(status.contains("pg_rewind failed"), "{status}");
    let (code, listed) = zgres_testkit::zgresctl::run(&group.zk.connect_string(), &["list"]);
    assert_eq!(code, 0, "{listed}");
    assert!(listed.contains("pg_rewind failed"), "{listed}");
    assert_eq!(group.wait_primary(&[]).await, 1, "the new primary stays");
}

/// Whether n0's `/state` names its damaged data directory and the way out.
async fn reports_damage(group: &Group, zk: &zookeeper_client::Client) -> Option<()> {
    let state = node_state(group, zk, 0).await?;
    state
        .problems
        .iter()
        .any(|p| p.contains("interrupted pg_rewind") && p.contains("zgresctl reinit"))
        .then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_stopped_after_it_changed_files_is_never_started_and_reported_until_reinit() {
    let bin = bin_dir_with_pg_rewind(FAILS_AFTER_CHANGING_FILES);
    let mut group = Group::prepare(2, Timing::default()).await;
    group.nodes[0].extra_config = format!(
        "[postgres]\nbin_dir = \"{}\"\n[provisioning]\nreclone_on_rewind_failure = false\n",
        bin.path().display()
    );
    fail_over_and_restart_the_old_primary(&mut group).await;
    let zk = group.zk_client().await;
    poll::until("n0 to report its damaged data directory", DEADLINE, || {
        reports_damage(&group, &zk)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(0))));

    // Never rewound again nor started, sampled over several of the retry waits (1 s, 2 s).
    let window = std::time::Instant::now();
    while window.elapsed() < std::time::Duration::from_secs(4) {
        assert_eq!(
            group.nodes[0].postmaster_pid(),
            None,
            "a damaged directory was started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let log = group.nodes[0].log_text();
    assert_eq!(
        log.matches("pg_rewind stopped after it began changing the data directory")
            .count(),
        1,
        "pg_rewind was run on the damaged directory again\n{}",
        group.logs_with_first(Some(0))
    );

    // It stays damaged across a restart of the deadman (the marker is on disk).
    group.kill_node(0);
    group.start(0);
    poll::until("n0 to report it again after a restart", DEADLINE, || {
        reports_damage(&group, &zk)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(0))));
    assert_eq!(group.nodes[0].postmaster_pid(), None);

    // The operator's reinit clones it again, and it follows with the new primary's commit.
    let (code, out) = zgres_testkit::zgresctl::run(
        &group.zk.connect_string(),
        &["reinit", "main", "n0", "--force"],
    );
    assert_eq!(code, 0, "{out}\n{}", group.logs_with_first(Some(0)));
    group.wait_following(0, 1).await;
    let client = group.nodes[0].client().await.expect("n0 answers");
    let row = client
        .query_one(
            "SELECT count(*) FROM writes WHERE node = 'after-failover'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    // Polled: the state is republished after the round that saw it streaming (CI run 18
    // read it in between and found none).
    poll::until(
        "n0 to publish a state with no problem",
        DEADLINE,
        || async {
            node_state(&group, &zk, 0)
                .await
                .filter(|state| state.problems.is_empty())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(0))));
}
