//! docs/sync.md's pgbouncer recipe, run as written: its pgbouncer.ini, userlist line and
//! sync.toml section (with this test's paths and ports) in front of a real group, then a
//! failover. If the recipe stops working, this fails.

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::pgbouncer::PgBouncer;
use zgres_testkit::poll;
use zgres_testkit::ports::free_port;
use zgres_tests::e2e::{read, recipe, shared_dir, start_sync, through_as};

/// Waits until database `db` through pgbouncer on `port`, as the recipe's client, is served
/// by the server on `backend`, in recovery or not as `in_recovery` says.
async fn wait_route(
    port: u16,
    db: &str,
    backend: i32,
    in_recovery: bool,
    logs: impl Fn() -> String,
) {
    let what = format!("{db} through the recipe's pgbouncer to port {backend}");
    poll::until(&what, DEADLINE, || async {
        let seen = through_as(port, db, "user=app password=app-password", false).await?;
        (seen == (backend, in_recovery)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pgbouncer_recipe_in_the_docs_routes_writes_and_reads_through_a_failover() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    let replica = 1 - primary;
    group.wait_following(replica, primary).await;
    // The servers' `app` user, which pgbouncer logs in as for the client.
    let admin = group.nodes[primary].client().await.unwrap();
    admin
        .batch_execute("CREATE ROLE app LOGIN SUPERUSER PASSWORD 'app-password'")
        .await
        .unwrap();

    let dir = shared_dir();
    let port = free_port().unwrap();
    let local = |text: String| {
        text.replace("/etc/pgbouncer/", &format!("{}/", dir.path().display()))
            .replace("6432", &port.to_string())
            .replace("unix_socket_dir = /var/run/postgresql", "unix_socket_dir =")
    };
    // Step 1: the databases file, with its header, before pgbouncer starts.
    let databases = dir.path().join("zgres-databases.ini");
    std::fs::write(&databases, "[databases]\n").unwrap();
    let ini = dir.path().join("pgbouncer.ini");
    std::fs::write(&ini, local(recipe("pgbouncer.ini"))).unwrap();
    let users = dir.path().join("userlist.txt");
    std::fs::write(
        &users,
        recipe("userlist.txt") + "\"app\" \"app-password\"\n",
    )
    .unwrap();
    let bouncer = PgBouncer::run(&ini, port, &[&users, &databases]).unwrap();
    let (_sync, sync_log) = start_sync(
        &group.zk.connect_string(),
        dir.path(),
        &local(recipe("sync.toml")),
    );
    let logs = || format!("{}\n{}", read(&sync_log), read(bouncer.log()));

    let primary_port = i32::from(group.nodes[primary].port());
    let replica_port = i32::from(group.nodes[replica].port());
    wait_route(port, "main", primary_port, false, logs).await;
    wait_route(port, "main-ro", replica_port, true, logs).await;

    group.kill_node(primary);
    assert_eq!(group.wait_primary(&[primary]).await, replica);
    wait_route(port, "main", replica_port, false, logs).await;
}
