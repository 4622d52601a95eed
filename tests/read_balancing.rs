//! Reads spread over every replica whatever its port, within a lag limit: pgbouncer's
//! `main-ro` leads to a local HAProxy frontend (`[pgbouncer] readers_via`), whose
//! `main_replicas` backend zgres-sync writes with each server checked on its deadman's health
//! API (`[haproxy] replica_max_lag`, `GET /read-only?lag=`). A replica whose replay falls
//! behind the limit gets no reads until it catches up.

use std::collections::BTreeSet;

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::pgbouncer::PgBouncer;
use zgres_testkit::poll;
use zgres_testkit::ports::free_port;
use zgres_tests::e2e::{connect, read, shared_dir, start_haproxy, start_sync};

/// Clients held open at once: pgbouncer opens a server connection for each, and HAProxy
/// balances server connections, not queries.
const CLIENTS: usize = 4;

/// The ports that `CLIENTS` clients connected at the same time to pgbouncer's `main-ro` were
/// served by; `None` if any of them failed.
async fn ports_serving_reads(bouncer_port: u16) -> Option<BTreeSet<i32>> {
    let conninfo = format!(
        "host=127.0.0.1 port={bouncer_port} user=postgres dbname=main-ro connect_timeout=2"
    );
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(&conninfo).await?);
    }
    let mut ports = BTreeSet::new();
    for client in &clients {
        let row = client
            .query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[])
            .await
            .ok()?;
        assert!(row.get::<_, bool>(1), "a read reached the primary");
        ports.insert(row.get::<_, i32>(0));
    }
    Some(ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_reach_every_replica_on_its_own_port_within_the_lag_limit() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    let replicas: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
    for &r in &replicas {
        group.wait_following(r, primary).await;
    }
    let replica_ports: BTreeSet<i32> = replicas
        .iter()
        .map(|&r| i32::from(group.nodes[r].port()))
        .collect();
    assert_eq!(replica_ports.len(), 2, "replicas on different ports");

    let dir = shared_dir();
    let databases = dir.path().join("databases.ini");
    let generated = dir.path().join("zgres.cfg");
    let pidfile = dir.path().join("haproxy.pid");
    // Reloads through the master CLI, which zgres-sync confirms one by one (signals can be
    // lost while HAProxy is still carrying out the previous reload).
    let socket = dir.path().join("master.sock");
    let reader = free_port().unwrap();
    // Server connections are replaced after a second, as docs/sync.md recommends (with a
    // longer lifetime) for pgbouncer in front of a load balancer: otherwise its pool keeps
    // reusing connections to whichever replicas served it first.
    let bouncer = PgBouncer::start_with_server_lifetime(dir.path(), &databases, 1).unwrap();
    let (_sync, sync_log) = start_sync(
        &group.zk.connect_string(),
        dir.path(),
        &format!(
            "[pgbouncer]\ndatabases_file = \"{}\"\ndbname = \"postgres\"\nadmin_conninfo = \"{}\"\n\
             [pgbouncer.readers_via]\nmain = \"127.0.0.1:{reader}\"\n\
             [haproxy]\nconfig_file = \"{}\"\nreplica_max_lag = \"1MB\"\n\
             master_socket = \"{}\"\n",
            databases.display(),
            bouncer.admin_conninfo(),
            generated.display(),
            socket.display()
        ),
    );
    let api_ports: Vec<u16> = replicas.iter().map(|&r| group.nodes[r].api_port).collect();
    poll::until(
        "zgres-sync to write the lag-checked backend",
        DEADLINE,
        || {
            let text = read(&generated);
            std::future::ready(
                api_ports
                    .iter()
                    .all(|p| text.contains(&format!("rise 1 port {p}")))
                    .then_some(()),
            )
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&sync_log)));
    // pgbouncer's file is its own renderer's: written beside HAProxy's, not before it (seen in
    // CI on a loaded machine: HAProxy's backend was there, the `main-ro` line not yet).
    let read_only = format!("main-ro = host=127.0.0.1 port={reader} ");
    poll::until(
        "zgres-sync to write the read-only database",
        DEADLINE,
        || std::future::ready(read(&databases).contains(&read_only).then_some(())),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&databases)));

    // The operator's own part: a frontend on the generated backend.
    let main_cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &main_cfg,
        format!(
            "global\n    maxconn 200\ndefaults\n    mode tcp\n    timeout connect 2s\n\
             timeout client 30s\n    timeout server 30s\n    timeout check 2s\n\
             frontend main_ro\n    bind 127.0.0.1:{reader}\n    default_backend main_replicas\n"
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
    let logs = || {
        format!(
            "{}\n{}\n{}\n{}",
            read(&sync_log),
            read(bouncer.log()),
            read(&haproxy_log),
            read(&generated)
        )
    };

    // Every replica serves reads, whatever its port.
    poll::until(
        "reads through main-ro on both replicas",
        DEADLINE,
        || async {
            let ports = ports_serving_reads(bouncer.port()).await?;
            (ports == replica_ports).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));

    // One replica stops replaying while the primary writes well past the limit.
    let (lagging, current) = (replicas[0], replicas[1]);
    let lagging_client = group.nodes[lagging].client().await.unwrap();
    lagging_client
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    group.nodes[primary].bulk_write(40_000).await;
    let current_port = i32::from(group.nodes[current].port());
    poll::until(
        "reads only on the replica within the limit",
        DEADLINE,
        || async {
            let ports = ports_serving_reads(bouncer.port()).await?;
            (ports == BTreeSet::from([current_port])).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));

    // Caught up again, it gets reads again.
    lagging_client
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    poll::until("reads on both replicas again", DEADLINE, || async {
        let ports = ports_serving_reads(bouncer.port()).await?;
        (ports == replica_ports).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
}
