//! The deadman's health API serves the HAProxy configuration of the Patroni walkthrough
//! unchanged (`option httpchk OPTIONS/master`, `http-check expect status 200`, `check port` on
//! each node's API; only addresses and ports differ, everything runs on one host): writes sent
//! through HAProxy reach the new primary after a failover, reads reach a replica. A backend
//! with a bare `option httpchk` (which checks `OPTIONS /`) sends connections to the primary
//! only: `/` is a primary check, as in Patroni.

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;
use zgres_testkit::ports::free_port;
use zgres_testkit::process::ManagedProcess;
use zgres_tests::e2e::{read, shared_dir, through};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_health_checks_follow_a_failover() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    let old = group.wait_primary(&[]).await;

    let servers: String = group
        .nodes
        .iter()
        .map(|n| {
            format!(
                "server dc1-psql-{} 127.0.0.1:{} maxconn 100 check port {}\n",
                n.name,
                n.port(),
                n.api_port
            )
        })
        .collect();
    let (writer, reader, bare) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    // The walkthrough's blocks, verbatim but for the binds and servers.
    let config = format!(
        "global\n    maxconn 100\n\
         defaults\n    mode tcp\n    timeout connect 4s\n    timeout client 30m\n    timeout server 30m\n    timeout check 5s\n\
         listen production\nbind 127.0.0.1:{writer}\noption httpchk OPTIONS/master\n\
         http-check expect status 200\n\
         default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions\n{servers}\
         listen standby\nbind 127.0.0.1:{reader}\noption httpchk OPTIONS/replica\n\
         http-check expect status 200\n\
         default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions\n{servers}\
         listen bare\nbind 127.0.0.1:{bare}\noption httpchk\n\
         http-check expect status 200\n\
         default-server inter 500ms fall 1 rise 1 on-marked-down shutdown-sessions\n{servers}"
    );
    let dir = shared_dir();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, config).unwrap();
    let log = dir.path().join("haproxy.log");
    let _haproxy = ManagedProcess::spawn(
        "haproxy",
        "/usr/sbin/haproxy",
        ["-db", "-f", cfg.to_str().unwrap()],
        &[],
        None,
        &log,
    )
    .unwrap();

    let old_port = i32::from(group.nodes[old].port());
    poll::until(
        "writes through HAProxy on the primary",
        DEADLINE,
        || async {
            let (port, in_recovery) = through(writer, "postgres", true).await?;
            (port == old_port && !in_recovery).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&log)));
    // Round robin over every server the checks keep up: ten connections in a row on the
    // primary means the replicas are down for `OPTIONS /` (before, they answered 200).
    poll::until(
        "ten connections in a row through the bare-httpchk backend on the primary",
        DEADLINE,
        || async {
            for _ in 0..10 {
                let (port, in_recovery) = through(bare, "postgres", false).await?;
                if port != old_port || in_recovery {
                    return None;
                }
            }
            Some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&log)));
    poll::until("reads through HAProxy on a replica", DEADLINE, || async {
        let (_, in_recovery) = through(reader, "postgres", false).await?;
        in_recovery.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&log)));

    group.kill_node(old);
    let new = group.wait_primary(&[old]).await;
    let new_port = i32::from(group.nodes[new].port());
    poll::until(
        "writes through HAProxy on the new primary",
        DEADLINE,
        || async {
            let (port, in_recovery) = through(writer, "postgres", true).await?;
            (port == new_port && !in_recovery).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", read(&log), group.logs()));
}
