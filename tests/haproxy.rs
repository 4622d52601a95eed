//! End to end: real deadmen fail a group over, zgres-sync's HAProxy plugin rewrites a real
//! HAProxy's backends and reloads it, and writes through the writer frontend reach the new
//! primary while the reader frontend serves replicas.

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;
use zgres_testkit::ports::free_port;
use zgres_tests::e2e::{read, shared_dir, start_haproxy, start_sync, through};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_backends_follow_a_failover() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    let old = group.wait_primary(&[]).await;

    let dir = shared_dir();
    let generated = dir.path().join("zgres.cfg");
    let pidfile = dir.path().join("haproxy.pid");
    // Reloads through the master CLI, which zgres-sync confirms one by one (signals can be
    // lost while HAProxy is still carrying out the previous reload).
    let socket = dir.path().join("master.sock");
    let (_sync, sync_log) = start_sync(
        &group.zk.connect_string(),
        dir.path(),
        &format!(
            "[haproxy]\nconfig_file = \"{}\"\n\
             master_socket = \"{}\"\n",
            generated.display(),
            socket.display()
        ),
    );
    let old_port = group.nodes[old].port();
    poll::until("zgres-sync to write the HAProxy backends", DEADLINE, || {
        std::future::ready(
            read(&generated)
                .contains(&format!("127.0.0.1:{old_port} check"))
                .then_some(()),
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&sync_log)));

    // The operator's own part: frontends using the generated backends.
    let (writer, reader) = (free_port().unwrap(), free_port().unwrap());
    let main_cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &main_cfg,
        format!(
            "global\n    maxconn 200\ndefaults\n    mode tcp\n    timeout connect 2s\n\
             timeout client 30s\n    timeout server 30s\n\
             frontend writer\n    bind 127.0.0.1:{writer}\n    default_backend main_primary\n\
             frontend reader\n    bind 127.0.0.1:{reader}\n    default_backend main_replicas\n"
        ),
    )
    .unwrap();
    let haproxy_log = dir.path().join("haproxy.log");
    let _haproxy = start_haproxy(
        &[&main_cfg, &generated],
        &pidfile,
        &["-S", socket.to_str().unwrap()],
        &haproxy_log,
    );

    let reached = poll::until("a write through HAProxy", DEADLINE, || {
        through(writer, "postgres", true)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&haproxy_log)));
    assert_eq!(reached, (i32::from(old_port), false));
    // Until the replicas' health checks pass, the backend's backup (the primary) answers.
    let (port, _) = poll::until(
        "a read through HAProxy's reader from a replica",
        DEADLINE,
        || async { through(reader, "postgres", false).await.filter(|(_, r)| *r) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", read(&sync_log), read(&haproxy_log)));
    assert_ne!(
        port,
        i32::from(old_port),
        "the reader frontend is served by a replica"
    );

    group.kill_node(old);
    let new = group.wait_primary(&[old]).await;
    let new_port = i32::from(group.nodes[new].port());
    poll::until(
        "a write through HAProxy to the new primary",
        DEADLINE,
        || async {
            let (port, in_recovery) = through(writer, "postgres", true).await?;
            (port == new_port && !in_recovery).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", read(&sync_log), read(&haproxy_log)));
    let (port, in_recovery) =
        poll::until("a read from the remaining replica", DEADLINE, || async {
            through(reader, "postgres", false).await.filter(|(_, r)| *r)
        })
        .await
        .unwrap();
    assert!(in_recovery && port != new_port);
}
