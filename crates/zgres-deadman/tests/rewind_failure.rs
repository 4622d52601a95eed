//! A former primary whose pg_rewind fails: re-cloned from the new primary when
//! `provisioning.reclone_on_rewind_failure` allows it, otherwise left stopped (no data deleted)
//! and tried again. The failure is real PostgreSQL tooling with one tool replaced: the node's
//! `postgres.bin_dir` holds the real binaries and a `pg_rewind` that always fails.

use std::os::unix::fs::PermissionsExt;

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

/// A copy of PostgreSQL's bin directory (symbolic links) whose `pg_rewind` always fails.
fn bin_dir_with_a_failing_pg_rewind() -> tempfile::TempDir {
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
        "#!/bin/sh\necho 'pg_rewind: failure injected by the test' >&2\nexit 1\n",
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
    let bin = bin_dir_with_a_failing_pg_rewind();
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
        log.contains("pg_rewind failed; deleting the data directory to clone it again"),
        "{}",
        group.logs_with_first(Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_primary_whose_rewind_fails_stays_stopped_and_tries_again() {
    let bin = bin_dir_with_a_failing_pg_rewind();
    let mut group = Group::prepare(2, Timing::default()).await;
    group.nodes[0].extra_config = format!("[postgres]\nbin_dir = \"{}\"\n", bin.path().display());
    fail_over_and_restart_the_old_primary(&mut group).await;
    let marker = group.nodes[0].pg.data_dir().join("PG_VERSION");

    // Tried again after the retry wait (1 s, then 2 s, ...), never deleting anything.
    let failed = "pg_rewind failed; this node stays stopped until it succeeds";
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
    assert_eq!(group.wait_primary(&[]).await, 1, "the new primary stays");
}
