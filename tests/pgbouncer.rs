//! End to end: real deadmen fail a group over, zgres-sync rewrites a real pgbouncer's databases,
//! and clients connecting through pgbouncer write to the new primary.

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::pgbouncer::PgBouncer;
use zgres_testkit::poll;
use zgres_tests::e2e::{read, shared_dir, start_sync, through};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_through_pgbouncer_follow_a_failover() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    let old = group.wait_primary(&[]).await;

    // pgbouncer runs unprivileged and must read the files zgres-sync writes here.
    let dir = shared_dir();
    let databases = dir.path().join("databases.ini");
    let bouncer = PgBouncer::start(dir.path(), &databases).unwrap();
    let bouncer_port = bouncer.port();
    let (_sync, sync_log) = start_sync(
        &group.zk.connect_string(),
        dir.path(),
        &format!(
            "[pgbouncer]\ndatabases_file = \"{}\"\ndbname = \"postgres\"\nadmin_conninfo = \"{}\"\n",
            databases.display(),
            bouncer.admin_conninfo(),
        ),
    );
    let old_port = group.nodes[old].port();
    let reached = poll::until("a write through pgbouncer to the primary", DEADLINE, || {
        through(bouncer_port, "main", true)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", read(&sync_log), read(bouncer.log())));
    assert_eq!(reached, (i32::from(old_port), false));
    // Until a replica is healthy and in the snapshot, main-ro falls back to the primary.
    let (port, _) = poll::until(
        "a read through pgbouncer's read-only database from a replica",
        DEADLINE,
        || async {
            through(bouncer_port, "main-ro", false)
                .await
                .filter(|(_, in_recovery)| *in_recovery)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", read(&sync_log), read(bouncer.log())));
    assert_ne!(port, i32::from(old_port), "main-ro is served by a replica");

    // The primary node dies; after the failover, new clients through pgbouncer reach the new one.
    group.kill_node(old);
    let new = group.wait_primary(&[old]).await;
    let new_port = i32::from(group.nodes[new].port());
    poll::until(
        "a write through pgbouncer to the new primary",
        DEADLINE,
        || async {
            let (port, in_recovery) = through(bouncer_port, "main", true).await?;
            (port == new_port && !in_recovery).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", read(&sync_log), read(bouncer.log())));
}
