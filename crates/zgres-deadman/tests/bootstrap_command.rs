//! `provisioning.bootstrap_command`: the group's first database is made by the operator's
//! command instead of initdb, and the other nodes clone it.

use std::os::unix::fs::PermissionsExt;

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

/// What the command leaves in the data directory, to show it ran (and that a clone copied
/// the database it made).
const MARKER: &str = "made-by-bootstrap-command";

/// A bootstrap command: initdb with data checksums (pg_rewind needs them), then a marker.
fn bootstrap_script() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("zgres-bootstrap-")
        .tempdir()
        .unwrap();
    // Runnable by the postgres user when the test runs as root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = dir.path().join("bootstrap.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\n\"$1/initdb\" -D \"$PGDATA\" --data-checksums --username=postgres >/dev/null\n\
             echo 'made by the bootstrap command' > \"$PGDATA/{MARKER}\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, script)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_command_makes_the_database_the_others_clone() {
    let (_dir, script) = bootstrap_script();
    let mut group = Group::prepare_empty(2, Timing::default()).await;
    group.nodes[0].extra_config = format!(
        "[provisioning]\nbootstrap_command = [\"{}\", \"{}\"]\n",
        script.display(),
        zgres_testkit::postgres::bindir().display()
    );
    group.start(0);
    poll::until("node 0 to bootstrap with the command", DEADLINE, || async {
        group.nodes[0].is_primary().await.filter(|p| *p).map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    group.start(1);
    group.wait_following(1, 0).await;

    assert!(
        group.nodes[0].log_text().contains("bootstrap done"),
        "{}",
        group.logs()
    );
    for i in 0..2 {
        assert!(
            group.nodes[i].pg.data_dir().join(MARKER).exists(),
            "n{i} has no database made by the command\n{}",
            group.logs()
        );
    }
    let client = group.nodes[0].client().await.unwrap();
    let checksums: String = client
        .query_one("SHOW data_checksums", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(checksums, "on");
}
