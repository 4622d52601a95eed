//! docs/sync.md's HAProxy recipe, run as written: the unit drop-in's options (master socket,
//! backends file), the frontends under Debian-like defaults, and the `[haproxy]` section of
//! sync.toml (with this test's paths and ports), in front of a real group, then a failover that
//! zgres-sync must get HAProxy to follow through the master socket. If the recipe stops
//! working, this fails.

use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;
use zgres_testkit::ports::free_port;
use zgres_tests::e2e::{read, recipe, shared_dir, start_haproxy, start_sync, through};

/// What Debian's /etc/haproxy/haproxy.cfg holds before the recipe's frontends, less what
/// needs root and a system layout (chroot, user, daemon, logging to /dev/log, error pages).
const DEBIAN_HEAD: &str = "global\n    maxconn 200\n\
    defaults\n    mode http\n    option httplog\n    option dontlognull\n\
    timeout connect 5000\n    timeout client 50000\n    timeout server 50000\n";

/// Waits until a connection through HAProxy on `port` is served by `backend`, in recovery or
/// not as `in_recovery` says (with a write when not).
async fn wait_route(port: u16, backend: u16, in_recovery: bool, logs: impl Fn() -> String) {
    let what = format!("127.0.0.1:{port} through the recipe's HAProxy to port {backend}");
    poll::until(&what, DEADLINE, || async {
        let seen = through(port, "postgres", !in_recovery).await?;
        (seen == (i32::from(backend), in_recovery)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_haproxy_recipe_in_the_docs_routes_writes_and_reads_through_a_failover() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    let replica = 1 - primary;
    group.wait_following(replica, primary).await;

    let dir = shared_dir();
    let socket = dir.path().join("haproxy-master.sock");
    let (writer, reader) = (free_port().unwrap(), free_port().unwrap());
    let as_root = nix::unistd::geteuid().is_root();
    let local = |text: String| {
        let text = text
            .replace("/var/lib/zgres/", &format!("{}/", dir.path().display()))
            .replace("/run/haproxy-master.sock", socket.to_str().unwrap())
            .replace("127.0.0.1:5000", &format!("127.0.0.1:{writer}"))
            .replace("127.0.0.1:5001", &format!("127.0.0.1:{reader}"));
        // Only root may hand the socket to another group; the test's processes share a user.
        if as_root {
            text
        } else {
            text.replace(",group,postgres", "")
        }
    };

    // Step 1: the backends file exists before HAProxy starts, with empty backends (the
    // recipe's printf; its install and chown need root and a postgres user).
    let backends = dir.path().join("haproxy.cfg");
    let printf = local(recipe("haproxy-backends.sh"))
        .lines()
        .find(|l| l.starts_with("printf"))
        .expect("the recipe writes the backends file with printf")
        .to_owned();
    let wrote = std::process::Command::new("/bin/sh")
        .args(["-c", &printf])
        .status()
        .unwrap();
    assert!(wrote.success(), "{printf}");
    assert!(read(&backends).contains("backend main_primary"));
    // Step 2: the drop-in's options, as the unit passes them after `-f $CONFIG -p $PIDFILE`.
    let dropin = local(recipe("haproxy.service.d"));
    let extraopts = dropin
        .split_once("EXTRAOPTS=")
        .expect("the drop-in sets EXTRAOPTS")
        .1
        .trim()
        .trim_end_matches('"')
        .to_owned();
    // Step 3: the frontends after Debian's global and defaults.
    let config = dir.path().join("operator.cfg");
    std::fs::write(
        &config,
        format!("{DEBIAN_HEAD}{}", local(recipe("haproxy.cfg"))),
    )
    .unwrap();
    let pidfile = dir.path().join("haproxy.pid");
    let haproxy_log = dir.path().join("haproxy.log");
    // The unit's -Ws is -W plus systemd readiness, which needs systemd.
    let extra: Vec<&str> = extraopts.split_whitespace().collect();
    let _haproxy = start_haproxy(&[&config], &pidfile, &extra, &haproxy_log);
    // Step 4: zgres-sync with the recipe's section.
    let (_sync, sync_log) = start_sync(
        &group.zk.connect_string(),
        dir.path(),
        &local(recipe("sync-haproxy.toml")),
    );
    let logs = || {
        format!(
            "{}\n{}\n{}",
            read(&sync_log),
            read(&haproxy_log),
            read(&backends)
        )
    };

    let (primary_port, replica_port) = (group.nodes[primary].port(), group.nodes[replica].port());
    wait_route(writer, primary_port, false, logs).await;
    wait_route(reader, replica_port, true, logs).await;

    group.kill_node(primary);
    assert_eq!(group.wait_primary(&[primary]).await, replica);
    wait_route(writer, replica_port, false, logs).await;
    assert!(
        read(&sync_log).contains("plugin applied the snapshot plugin=template haproxy"),
        "{}",
        logs()
    );
}
