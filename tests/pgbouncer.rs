//! End to end: real deadmen fail a group over, zgres-sync rewrites a real pgbouncer's databases,
//! and clients connecting through pgbouncer write to the new primary.

mod e2e;
#[path = "../crates/zgres-deadman/tests/support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;

use e2e::{binary, shared_dir, start_sync, through};
use support::{Group, Timing, DEADLINE};
use zgres_testkit::os_user::OsUser;
use zgres_testkit::poll;
use zgres_testkit::ports::free_port;
use zgres_testkit::process::ManagedProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_through_pgbouncer_follow_a_failover() {
    std::env::set_var("ZGRES_DEADMAN_BIN", binary("zgres-deadman"));
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all();
    let old = group.wait_primary(&[]).await;

    // pgbouncer runs unprivileged and must read the files zgres-sync writes here.
    let dir = shared_dir();
    let databases = dir.path().join("databases.ini");
    let bouncer_port = free_port().unwrap();
    let (_sync, sync_log) = start_sync(
        &group.zk.connect_string(),
        dir.path(),
        &format!(
            "[pgbouncer]\ndatabases_file = \"{}\"\ndbname = \"postgres\"\n\
             admin_conninfo = \"host=127.0.0.1 port={bouncer_port} user=postgres dbname=pgbouncer connect_timeout=2\"\n",
            databases.display(),
        ),
    );
    let old_port = group.nodes[old].port();
    poll::until(
        "zgres-sync to write pgbouncer's databases",
        DEADLINE,
        || {
            let text = std::fs::read_to_string(&databases).unwrap_or_default();
            std::future::ready(
                text.contains(&format!("main = host=127.0.0.1 port={old_port}"))
                    .then_some(()),
            )
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(&sync_log).unwrap_or_default()
        )
    });

    // pgbouncer starts after the file exists; until then zgres-sync's RELOAD fails and retries.
    let ini = dir.path().join("pgbouncer.ini");
    let userlist = dir.path().join("userlist.txt");
    std::fs::write(&userlist, "\"postgres\" \"\"\n").unwrap();
    std::fs::write(
        &ini,
        format!(
            "%include {}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {bouncer_port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {}\nadmin_users = postgres\n\
             pool_mode = session\nserver_login_retry = 1\nserver_connect_timeout = 2\n\
             ignore_startup_parameters = extra_float_digits\n",
            databases.display(),
            userlist.display()
        ),
    )
    .unwrap();
    for f in [&ini, &userlist] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let run_as = OsUser::for_postgres().unwrap();
    let _pgbouncer = ManagedProcess::spawn(
        "pgbouncer",
        "/usr/sbin/pgbouncer",
        [ini.to_str().unwrap()],
        &[],
        run_as.as_ref(),
        &dir.path().join("pgbouncer.log"),
    )
    .unwrap();

    let reached = poll::until("a write through pgbouncer to the primary", DEADLINE, || {
        through(bouncer_port, "main", true)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(dir.path().join("pgbouncer.log")).unwrap_or_default()
        )
    });
    assert_eq!(reached, (i32::from(old_port), false));
    let (_, in_recovery) = poll::until(
        "a read through pgbouncer's read-only database",
        DEADLINE,
        || through(bouncer_port, "main-ro", false),
    )
    .await
    .unwrap();
    assert!(in_recovery, "main-ro is served by a replica");

    // The primary node dies; after the failover, new clients through pgbouncer reach the new one.
    let deadman = group.nodes[old].deadman.take().unwrap();
    group.nodes[old].kill_postgres();
    deadman.kill();
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
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(&sync_log).unwrap_or_default()
        )
    });
}
