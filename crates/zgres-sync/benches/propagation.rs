//! zgres-sync benchmark against real ZooKeeper (and real pgbouncer and PostgreSQL).
//!
//! Prints:
//! - p50/p99 seconds from a lock change written to ZooKeeper to an executable hook running
//!   with the new snapshot;
//! - p50/p99 seconds from a lock change to pgbouncer routing new clients to the new primary;
//! - with 10,000 groups of 3 nodes (`ZGRES_BENCH_SCALE_GROUPS`) changing at 3,000 updates/s:
//!   the rate achieved, how long the daemon takes to reflect the final state after the load
//!   stops, its resident memory and CPU.
//!
//! Run: `cargo bench -p zgres-sync --bench propagation` (`ZGRES_BENCH_SAMPLES`, default 100;
//! `ZGRES_BENCH_ZK_SECURE=1`: ZooKeeper over TLS only, with x509 client authentication;
//! `ZGRES_BENCH_SKIP_SCALE=1`: without the 10,000-group run; `ZGRES_BENCH_ONLY_HOOK=1`: the
//! hook latency alone; `ZGRES_BENCH_HOOK_AB=1`: the hook latency alone, against a plain and a
//! TLS-only ZooKeeper side by side, interleaved, after `ZGRES_BENCH_WARM_UP` (500) samples of
//! each).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::NoTls;
use zgres_testkit::os_user::OsUser;
use zgres_testkit::ports::free_port;
use zgres_testkit::postgres::PgNode;
use zgres_testkit::process::ManagedProcess;
use zgres_testkit::znodes::{add_node, lock_doc, make_dirs, put};
use zgres_testkit::zookeeper::ZkCluster;
use zookeeper_client as zk;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// zgres-sync following `zookeeper` (over TLS, presenting the test client certificate, on a
/// TLS-only server), with `plugins` added to its `[sync]` section.
fn start_sync(dir: &Path, zookeeper: &ZkCluster, plugins: &str) -> ManagedProcess {
    let config = dir.join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[zookeeper]\nconnect = \"{}\"\n{}[sync]\nsnapshot_file = \"{}\"\n\
             retry_max_ms = 200\n{plugins}\n[log]\nlevel = \"warn\"\n",
            zookeeper.connect_string(),
            zgres_testkit::group::zookeeper_tls_keys(zookeeper),
            dir.join("snapshot.json").display()
        ),
    )
    .unwrap();
    ManagedProcess::spawn(
        "zgres-sync",
        env!("CARGO_BIN_EXE_zgres-sync"),
        ["--config", config.to_str().unwrap()],
        &[],
        None,
        &dir.join("sync.log"),
    )
    .unwrap()
}

/// `ZGRES_BENCH_ZK_SECURE=1`: ZooKeeper over TLS only, every client presenting a certificate
/// (x509 authentication), to compare with the plain figures.
fn secure() -> bool {
    std::env::var("ZGRES_BENCH_ZK_SECURE").as_deref() == Ok("1")
}

async fn start_zookeeper() -> ZkCluster {
    if secure() {
        ZkCluster::standalone_tls().await.unwrap()
    } else {
        ZkCluster::standalone().await.unwrap()
    }
}

fn percentiles(name: &str, samples: &mut [f64]) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<52} n={} p50={:.4}s p99={:.4}s max={:.4}s",
        samples.len(),
        at(0.5),
        at(0.99),
        samples[samples.len() - 1]
    );
}

async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "timed out");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Lock change → an executable hook runs with the new snapshot: one zgres-sync with a stamping
/// hook, following one ZooKeeper, measured one lock change at a time.
struct HookProbe {
    client: zk::Client,
    dir: tempfile::TempDir,
    _sync: ManagedProcess,
    changes: usize,
}

impl HookProbe {
    async fn start(zookeeper: &ZkCluster) -> HookProbe {
        let client = zookeeper.connect(zk::Client::connector()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let hooks = dir.path().join("hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        let hook = hooks.join("10-stamp");
        // The masters line is the only `"main": "IP:PORT"` line in the pretty-printed snapshot.
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\nt=$(date +%s%N)\np=$(sed -n 's/.*\"main\": \"127.0.0.1:\\([0-9]*\\)\".*/\\1/p' \"$1\" | head -1)\n\
                 echo $t > {d}/.s$p && mv {d}/.s$p {d}/stamp-$p\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        add_node(&client, "main", 7001).await;
        add_node(&client, "main", 7002).await;
        put(&client, "/zgres/lock/main", &lock_doc(7001)).await;
        let sync = start_sync(
            dir.path(),
            zookeeper,
            &format!("hooks_dir = \"{}\"\n", hooks.display()),
        );
        wait_for(|| dir.path().join("stamp-7001").exists().then_some(())).await;
        HookProbe {
            client,
            dir,
            _sync: sync,
            changes: 0,
        }
    }

    /// Moves the lock to the other node and returns the seconds until the hook ran with it.
    async fn sample(&mut self) -> f64 {
        let port = if self.changes % 2 == 0 { 7002 } else { 7001 };
        self.changes += 1;
        let stamp = self.dir.path().join(format!("stamp-{port}"));
        let _ = std::fs::remove_file(&stamp);
        let sent = now_ns();
        self.client
            .set_data("/zgres/lock/main", &lock_doc(port), None)
            .await
            .unwrap();
        let seen: u128 =
            wait_for(|| std::fs::read_to_string(&stamp).ok()?.trim().parse().ok()).await;
        (seen.saturating_sub(sent)) as f64 / 1e9
    }
}

async fn hook_latency(zookeeper: &ZkCluster, samples: usize) -> Vec<f64> {
    let mut probe = HookProbe::start(zookeeper).await;
    let mut latencies = Vec::new();
    for _ in 0..samples {
        latencies.push(probe.sample().await);
    }
    latencies
}

/// `ZGRES_BENCH_HOOK_AB=1`: the hook latency against a plain and a TLS-only ZooKeeper (x509
/// authentication) at the same time, samples interleaved (plain, TLS, TLS, plain, ...) so that
/// both see the same machine: on a small VM the spread between two runs of one kind exceeds
/// the difference looked for.
async fn hook_latency_side_by_side(samples: usize) {
    let plain_zookeeper = ZkCluster::standalone().await.unwrap();
    let tls_zookeeper = ZkCluster::standalone_tls().await.unwrap();
    for zookeeper in [&plain_zookeeper, &tls_zookeeper] {
        let client = zookeeper.connect(zk::Client::connector()).await.unwrap();
        make_dirs(&client).await;
    }
    let mut plain = HookProbe::start(&plain_zookeeper).await;
    let mut tls = HookProbe::start(&tls_zookeeper).await;
    // Both servers' JVMs compile their hot paths (TLS's among them) over the first few hundred
    // requests; the comparison is of the steady state.
    let warm_up: usize = std::env::var("ZGRES_BENCH_WARM_UP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    for _ in 0..warm_up {
        plain.sample().await;
        tls.sample().await;
    }
    let (mut plain_latencies, mut tls_latencies) = (Vec::new(), Vec::new());
    for i in 0..samples {
        if i % 2 == 0 {
            plain_latencies.push(plain.sample().await);
            tls_latencies.push(tls.sample().await);
        } else {
            tls_latencies.push(tls.sample().await);
            plain_latencies.push(plain.sample().await);
        }
    }
    println!(
        "zgres-sync hook latency, plain and TLS side by side ({samples} samples each, interleaved, after {warm_up} of each to warm up)"
    );
    percentiles(
        "lock change -> hook running, ZooKeeper plain",
        &mut plain_latencies.clone(),
    );
    percentiles(
        "lock change -> hook running, ZooKeeper TLS + x509",
        &mut tls_latencies.clone(),
    );
    // The two halves of each kind apart, to show the spread within one kind.
    let half = samples / 2;
    for (name, latencies) in [("plain", &plain_latencies), ("TLS", &tls_latencies)] {
        for (part, range) in [("first", 0..half), ("second", half..samples)] {
            let mut part_latencies = latencies[range].to_vec();
            percentiles(&format!("  {name}, {part} half"), &mut part_latencies);
        }
    }
}

/// Lock change → pgbouncer routes new clients to the new lock holder, while a client connects
/// through it continuously. pgbouncer runs with its defaults plus `ZGRES_BENCH_PGBOUNCER_EXTRA`
/// (e.g. `server_login_retry = 1`, as docs/sync.md recommends).
async fn pgbouncer_latency(zookeeper: &ZkCluster, samples: usize) -> Vec<f64> {
    let client = zookeeper.connect(zk::Client::connector()).await.unwrap();
    let a = PgNode::init_primary("bench-a").await.unwrap();
    let b = a.clone_replica("bench-b").await.unwrap();
    for n in [&a, &b] {
        add_node(&client, "db", n.port()).await;
    }
    put(&client, "/zgres/lock/db", &lock_doc(a.port())).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let databases = dir.path().join("databases.ini");
    let port = free_port().unwrap();
    let _sync = start_sync(
        dir.path(),
        zookeeper,
        &format!(
            "[pgbouncer]\ndatabases_file = \"{}\"\nadmin_conninfo = \"host=127.0.0.1 port={port} user=postgres dbname=pgbouncer\"\n",
            databases.display()
        ),
    );
    wait_for(|| databases.exists().then_some(())).await;
    let ini = dir.path().join("pgbouncer.ini");
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
    std::fs::write(
        &ini,
        format!(
            "%include {}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {}\nadmin_users = postgres\npool_mode = session\n{}",
            databases.display(),
            users.display(),
            std::env::var("ZGRES_BENCH_PGBOUNCER_EXTRA").unwrap_or_default().replace("\\n", "\n"),
        ),
    )
    .unwrap();
    for f in [&ini, &users] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let _bouncer = ManagedProcess::spawn(
        "pgbouncer",
        "/usr/sbin/pgbouncer",
        [ini.to_str().unwrap()],
        &[],
        OsUser::for_postgres().unwrap().as_ref(),
        &dir.path().join("pgbouncer.log"),
    )
    .unwrap();
    let backend_port = || async move {
        let conninfo =
            format!("host=127.0.0.1 port={port} user=postgres dbname=db connect_timeout=2");
        let (c, conn) = tokio_postgres::connect(&conninfo, NoTls).await.ok()?;
        tokio::spawn(conn);
        let row = c.query_one("SELECT inet_server_port()", &[]).await.ok()?;
        Some(row.get::<_, i32>(0))
    };
    let start = Instant::now();
    while backend_port().await != Some(i32::from(a.port())) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pgbouncer never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::new();
    for i in 0..samples {
        let target = if i % 2 == 0 { b.port() } else { a.port() };
        let sent = Instant::now();
        client
            .set_data("/zgres/lock/db", &lock_doc(target), None)
            .await
            .unwrap();
        loop {
            if backend_port().await == Some(i32::from(target)) {
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(60),
                "pgbouncer never followed"
            );
        }
        let took = sent.elapsed();
        if took > Duration::from_secs(1) {
            let log = std::fs::read_to_string(dir.path().join("pgbouncer.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            println!(
                "  slow sample {i}: {took:?}; pgbouncer log:\n    {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
            );
        }
        latencies.push(took.as_secs_f64());
    }
    latencies
}

fn proc_stat(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    (ticks, rss)
}

/// `ZGRES_BENCH_SCALE_GROUPS` groups (default 10,000) of 3 nodes, locks moving at 3,000
/// updates/s for 10 s.
async fn scale(zookeeper: &ZkCluster) {
    let groups: u16 = std::env::var("ZGRES_BENCH_SCALE_GROUPS")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(10_000);
    let client = Arc::new(zookeeper.connect(zk::Client::connector()).await.unwrap());
    let mut setup = Vec::new();
    for g in 0..groups {
        for n in 0..3u16 {
            let c = client.clone();
            setup.push(tokio::spawn(async move {
                add_node(&c, &format!("g{g}"), 10_000 + n).await
            }));
        }
        let c = client.clone();
        setup.push(tokio::spawn(async move {
            put(&c, &format!("/zgres/lock/g{g}"), &lock_doc(10_000)).await
        }));
    }
    for t in setup {
        t.await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let sync = start_sync(dir.path(), zookeeper, "");
    let snapshot = dir.path().join("snapshot.json");
    let masters = |path: &Path| -> Option<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        Some(v["masters"].clone())
    };
    wait_for(|| {
        masters(&snapshot).filter(|m| {
            m.as_object()
                .is_some_and(|o| o.len() == usize::from(groups))
        })
    })
    .await;
    let (t0, _) = proc_stat(sync.pid());

    let duration = Duration::from_secs(10);
    let rate_per_ms = 3;
    let start = Instant::now();
    let mut final_holder = vec![10_000u16; usize::from(groups)];
    let mut sent = 0u64;
    let mut inflight = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut rng = 0x2545F4914F6CDD1Du64;
    while start.elapsed() < duration {
        tick.tick().await;
        for _ in 0..rate_per_ms {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let g = (rng % u64::from(groups)) as usize;
            let port = 10_000 + ((rng >> 20) % 3) as u16;
            final_holder[g] = port;
            let c = client.clone();
            // Per group, ZooKeeper applies one client's requests in order: the last one wins.
            inflight.spawn(async move {
                c.set_data(&format!("/zgres/lock/g{g}"), &lock_doc(port), None)
                    .await
                    .unwrap();
            });
            sent += 1;
        }
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    let load_time = start.elapsed();
    let done = Instant::now();
    let expected: serde_json::Map<String, serde_json::Value> = final_holder
        .iter()
        .enumerate()
        .map(|(g, p)| {
            (
                format!("g{g}"),
                serde_json::Value::from(format!("127.0.0.1:{p}")),
            )
        })
        .collect();
    let expected = serde_json::Value::Object(expected);
    wait_for(|| (masters(&snapshot)? == expected).then_some(())).await;
    let caught_up = done.elapsed();
    let (t1, rss) = proc_stat(sync.pid());
    let window = start.elapsed().as_secs_f64();
    println!(
        "{:<52} {sent} lock updates in {:.1}s ({:.0}/s); final state in the snapshot {:.3}s after the last update",
        format!("{groups} groups x 3 nodes under load:"),
        load_time.as_secs_f64(),
        sent as f64 / load_time.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    println!(
        "{:<52} resident {:.1} MB, CPU {:.1}% of a core (averaged over {window:.1}s)",
        "zgres-sync under that load:",
        rss as f64 / 1024.0,
        (t1 - t0) as f64 / 100.0 / window * 100.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let samples: usize = std::env::var("ZGRES_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    if std::env::var("ZGRES_BENCH_HOOK_AB").as_deref() == Ok("1") {
        hook_latency_side_by_side(samples).await;
        return;
    }
    let zookeeper = start_zookeeper().await;
    let client = zookeeper.connect(zk::Client::connector()).await.unwrap();
    make_dirs(&client).await;
    println!(
        "zgres-sync propagation benchmark ({samples} samples, debounce 20 ms, ZooKeeper {})",
        if secure() {
            "over TLS with x509 authentication"
        } else {
            "plain"
        }
    );
    let only_scale = std::env::var_os("ZGRES_BENCH_ONLY_SCALE").is_some();
    if std::env::var_os("ZGRES_BENCH_ONLY_PGBOUNCER").is_none() && !only_scale {
        let mut hook = hook_latency(&zookeeper, samples).await;
        percentiles("lock change -> executable hook running", &mut hook);
    }
    let only_hook = std::env::var_os("ZGRES_BENCH_ONLY_HOOK").is_some();
    if !only_scale && !only_hook {
        let mut bouncer = pgbouncer_latency(&zookeeper, samples).await;
        percentiles(
            "lock change -> pgbouncer serving the new primary",
            &mut bouncer,
        );
    }
    if std::env::var_os("ZGRES_BENCH_SKIP_SCALE").is_some() || only_hook {
        return;
    }
    // A fresh ZooKeeper, so the scale run follows only its own groups.
    drop(client);
    drop(zookeeper);
    let zookeeper = start_zookeeper().await;
    let client = zookeeper.connect(zk::Client::connector()).await.unwrap();
    make_dirs(&client).await;
    scale(&zookeeper).await;
}
