//! The health API never lies: every node's `/primary` is sampled every 10 ms through a
//! partition of the primary from ZooKeeper, a SIGSTOP/SIGCONT of its deadman and a kill of its
//! node. Two nodes never answer 200 at once, and the old primary answers 503 before the new one
//! answers 200.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use zgres_testkit::fault_proxy::ProxyMode;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

/// The status code of `GET /primary` on `port`, or 0 when there is no answer within 50 ms (a
/// stopped deadman accepts connections but never answers).
async fn primary_code(port: u16) -> u16 {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /primary HTTP/1.0\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_millis(50), ask)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// One sweep over every node: when it started and each node's code.
type Sweep = (Instant, Vec<u16>);

/// Samples every node's `/primary` every 10 ms until `stop`.
fn start_sampler(ports: Vec<u16>, stop: CancellationToken) -> Arc<Mutex<Vec<Sweep>>> {
    let sweeps = Arc::new(Mutex::new(Vec::new()));
    let out = sweeps.clone();
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let at = Instant::now();
            let mut codes = Vec::with_capacity(ports.len());
            for &port in &ports {
                codes.push(primary_code(port).await);
            }
            out.lock().unwrap().push((at, codes));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    sweeps
}

/// Checks the sweeps since `from`: never two 200s in one sweep, and once `new` answered 200,
/// `old` never did again (its 503 came first). Returns how many sweeps were checked.
fn check_handover(sweeps: &[Sweep], from: Instant, old: usize, new: usize) -> usize {
    let mut new_seen = false;
    let mut checked = 0;
    for (at, codes) in sweeps.iter().filter(|(at, _)| *at >= from) {
        checked += 1;
        let primaries: Vec<usize> = (0..codes.len()).filter(|&i| codes[i] == 200).collect();
        assert!(
            primaries.len() <= 1,
            "two nodes answer /primary 200 at once at {at:?}: {codes:?}"
        );
        new_seen |= codes[new] == 200;
        assert!(
            !(new_seen && codes[old] == 200),
            "n{old} still answered 200 after n{new} did: {codes:?}"
        );
    }
    assert!(new_seen, "n{new} never answered /primary 200");
    checked
}

async fn wait_api_primary(sweeps: &Mutex<Vec<Sweep>>, i: usize, group: &Group) {
    poll::until(&format!("n{i} to answer /primary 200"), DEADLINE, || {
        let last = sweeps.lock().unwrap().last().cloned();
        std::future::ready(last.filter(|(_, codes)| codes[i] == 200).map(drop))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_endpoint_never_answers_200_on_two_nodes() {
    let mut group = Group::prepare(3, Timing::default()).await;
    group.proxy_node(0);
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    let stop = CancellationToken::new();
    let sweeps = start_sampler(
        group.nodes.iter().map(|n| n.api_port).collect(),
        stop.clone(),
    );
    let client = group.zk_client().await;
    wait_api_primary(&sweeps, 0, &group).await;

    // 1. The primary is cut from ZooKeeper.
    let from = Instant::now();
    group.nodes[0]
        .proxy
        .as_ref()
        .unwrap()
        .set_mode(ProxyMode::Blackhole);
    let new = group.wait_primary(&[0]).await;
    wait_api_primary(&sweeps, new, &group).await;
    let partition = check_handover(&sweeps.lock().unwrap(), from, 0, new);
    group.nodes[0]
        .proxy
        .as_ref()
        .unwrap()
        .set_mode(ProxyMode::Pass);
    group.wait_following(0, new).await;

    // 2. The new primary's deadman is stopped past its session, then continued.
    let old = new;
    let from = Instant::now();
    let deadman = group.nodes[old].deadman.as_ref().unwrap();
    deadman.signal(Signal::SIGSTOP).unwrap();
    let new = group.wait_primary(&[old]).await;
    wait_api_primary(&sweeps, new, &group).await;
    group.nodes[old]
        .deadman
        .as_ref()
        .unwrap()
        .signal(Signal::SIGCONT)
        .unwrap();
    group.wait_following(old, new).await;
    let stopped = check_handover(&sweeps.lock().unwrap(), from, old, new);

    // 3. The primary's node is killed.
    let old = new;
    let from = Instant::now();
    group.kill_node(old);
    let new = poll::until("a new lock holder", DEADLINE, || async {
        group.lock_holder(&client).await.filter(|&h| h != old)
    })
    .await
    .unwrap();
    wait_api_primary(&sweeps, new, &group).await;
    let killed = check_handover(&sweeps.lock().unwrap(), from, old, new);
    stop.cancel();
    println!(
        "sweeps checked: partition {partition}, SIGSTOP/SIGCONT {stopped}, node kill {killed}"
    );
}

/// `GET /patroni` carries Patroni's `server_version`: the running PostgreSQL's
/// `server_version_num`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_names_the_running_postgres_version() {
    let mut group = Group::prepare(1, Timing::default()).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    let client = group.nodes[0].client().await.unwrap();
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap();
    let running: i32 = row.get(0);
    assert!(running >= 150_000, "{running}");
    let api = group.nodes[0].api_port;
    let reported = poll::until("server_version in /patroni", DEADLINE, || {
        let body = zgres_testkit::http::get(api, "/patroni").unwrap_or_default();
        let json = body
            .split_once("\r\n\r\n")
            .map_or(body.as_str(), |(_, b)| b);
        let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        std::future::ready(value["server_version"].as_i64())
    })
    .await
    .unwrap();
    assert_eq!(reported, i64::from(running));
}
