//! `ZkSession` against a real ZooKeeper: expected answers come back as typed outcomes, a lost
//! server as a retryable error, a bad address as a connect error; answered keep-alive pings
//! are reported with their send time; `answered` resolves on an answer and not without one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zgres_testkit::fault_proxy::{FaultProxy, ProxyMode};
use zgres_testkit::zookeeper::ZkCluster;
use zgres_zk::{ConnectFailure, CreateKind, Outcome, ZkError, ZkSession, ZkSettings};

fn settings(connect: &str) -> ZkSettings {
    ZkSettings::from_values(connect, "/zgres", Duration::from_secs(4)).unwrap()
}

#[tokio::test]
async fn expected_answers_are_outcomes_not_errors() {
    let zk = ZkCluster::standalone().await.unwrap();
    let session = ZkSession::connect(
        &settings(&zk.connect_string()),
        None,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    session.mkdir("/zgres/a").await.unwrap();
    session.mkdir("/zgres/a").await.unwrap(); // existing is fine

    assert_eq!(session.get("/zgres/a/x").await.unwrap(), None);
    assert_eq!(session.children("/zgres/none").await.unwrap(), None);
    assert_eq!(session.stat("/zgres/a/x").await.unwrap(), None);
    assert_eq!(
        session
            .create("/zgres/none/x", b"1", CreateKind::Persistent)
            .await
            .unwrap(),
        Outcome::NotFound
    );
    let created = session
        .create("/zgres/a/x", b"1", CreateKind::Ephemeral)
        .await
        .unwrap();
    assert!(created.is_done());
    assert_eq!(
        session
            .create("/zgres/a/x", b"2", CreateKind::Ephemeral)
            .await
            .unwrap(),
        Outcome::Exists
    );
    let (data, stat) = session.get("/zgres/a/x").await.unwrap().unwrap();
    assert_eq!(data, b"1");
    assert_eq!(stat.ephemeral_owner, session.session_id().0);
    assert_eq!(
        session
            .set("/zgres/a/x", b"3", Some(stat.version + 1))
            .await
            .unwrap(),
        Outcome::BadVersion
    );
    assert!(session
        .set("/zgres/a/x", b"3", Some(stat.version))
        .await
        .unwrap()
        .is_done());
    assert_eq!(
        session
            .delete("/zgres/a/x", Some(stat.version))
            .await
            .unwrap(),
        Outcome::BadVersion
    );
    assert!(session.delete("/zgres/a/x", None).await.unwrap().is_done());
    assert_eq!(
        session.delete("/zgres/a/x", None).await.unwrap(),
        Outcome::NotFound
    );
    assert_eq!(session.children("/zgres/a").await.unwrap(), Some(vec![]));
}

#[tokio::test]
async fn a_silent_server_is_a_retryable_timeout_and_the_session_survives_it() {
    let (_zk, proxy, session) = proxied_session(Duration::from_millis(300)).await;
    session.mkdir("/zgres").await.unwrap();
    proxy.set_mode(ProxyMode::Blackhole);
    let error = session.get("/zgres").await.unwrap_err();
    assert!(matches!(error, ZkError::Retryable(_)), "{error:?}");
    assert!(!error.session_ended());
    proxy.set_mode(ProxyMode::Pass);
    zgres_testkit::poll::until(
        "the session to answer again",
        Duration::from_secs(10),
        || async { session.get("/zgres").await.ok().flatten() },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error_naming_the_address() {
    let port = zgres_testkit::ports::free_port().unwrap();
    let connect = format!("127.0.0.1:{port}");
    let settings =
        ZkSettings::from_values(&connect, "/zgres", Duration::from_millis(1_000)).unwrap();
    let error = ZkSession::connect(&settings, None, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(error.connect, connect);
    assert!(
        matches!(
            error.failure,
            ConnectFailure::TimedOut(_) | ConnectFailure::Client(_)
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains(&connect), "{error}");
}

/// A session (without an answer observer) through a fault proxy to a new standalone server.
async fn proxied_session(request_timeout: Duration) -> (ZkCluster, FaultProxy, ZkSession) {
    let zk = ZkCluster::standalone().await.unwrap();
    let proxy = FaultProxy::start(zk.client_addr(0)).unwrap();
    let session = ZkSession::connect(&settings(&proxy.addr().to_string()), None, request_timeout)
        .await
        .unwrap();
    (zk, proxy, session)
}

/// A session through a fault proxy whose answer observer records every send time it is told.
async fn observed_session(
    request_timeout: Duration,
) -> (ZkCluster, FaultProxy, ZkSession, Arc<Mutex<Vec<Instant>>>) {
    let zk = ZkCluster::standalone().await.unwrap();
    let proxy = FaultProxy::start(zk.client_addr(0)).unwrap();
    let answered: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let record = answered.clone();
    let session = ZkSession::connect_observing_answers(
        &settings(&proxy.addr().to_string()),
        None,
        request_timeout,
        Arc::new(move |sent| record.lock().unwrap().push(sent)),
    )
    .await
    .unwrap();
    (zk, proxy, session, answered)
}

#[tokio::test]
async fn answered_pings_of_an_idle_session_are_reported_and_unanswered_ones_are_not() {
    let (_zk, proxy, session, answered) = observed_session(Duration::from_secs(2)).await;
    let connected = Instant::now();
    // Idle: no request of ours, so only the client's pings (every 1/5 of the 4 s timeout).
    zgres_testkit::poll::until("three answered pings", Duration::from_secs(10), || async {
        (answered.lock().unwrap().len() >= 3).then_some(())
    })
    .await
    .unwrap();
    let seen = answered.lock().unwrap().clone();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(
        seen.iter()
            .all(|sent| *sent >= connected - Duration::from_secs(1) && *sent <= Instant::now()),
        "send times are moments of this session's life"
    );

    proxy.set_mode(ProxyMode::Blackhole);
    let cut = Instant::now();
    let before = answered.lock().unwrap().len();
    // Longer than two ping periods: pings are sent, none is answered, none is reported.
    zgres_testkit::poll::until("two ping periods", Duration::from_secs(5), || async {
        (cut.elapsed() > Duration::from_millis(1_700)).then_some(())
    })
    .await
    .unwrap();
    let during: Vec<Instant> = answered.lock().unwrap()[before..].to_vec();
    assert!(
        during.iter().all(|sent| *sent < cut),
        "only pings sent before the cut may be answered: {during:?}"
    );
    proxy.set_mode(ProxyMode::Pass);
    drop(session);
}

/// Replies to requests confirm the session as pings do: a request postpones the client's next
/// ping, and before this the deadman's fence heartbeat filled that gap with a request of its
/// own (about one extra request every 15 s on an idle primary).
#[tokio::test]
async fn answered_requests_are_reported_with_a_send_time_before_they_were_queued() {
    let (_zk, proxy, session, answered) = observed_session(Duration::from_millis(500)).await;
    session.mkdir("/zgres/answers").await.unwrap();

    let first = Instant::now();
    let mut asked = Vec::new();
    for _ in 0..20 {
        asked.push(Instant::now());
        // An expected "no node" is an answer from the server too.
        assert!(session.get("/zgres/answers/none").await.unwrap().is_none());
    }
    let last = Instant::now();
    let seen: Vec<Instant> = answered
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|sent| *sent >= first && *sent <= last)
        .collect();
    // Pings could add at most one or two in these few milliseconds; twenty come from requests.
    assert!(seen.len() >= 20, "{} answers reported", seen.len());
    for moment in &asked {
        assert!(
            seen.iter().any(|sent| sent >= moment && *sent <= last),
            "the request asked at {moment:?} was reported with a time not before it was asked"
        );
    }

    proxy.set_mode(ProxyMode::Blackhole);
    let cut = Instant::now();
    assert!(session.get("/zgres/answers/none").await.is_err());
    assert!(
        answered.lock().unwrap().iter().all(|sent| *sent < cut),
        "an unanswered request (timed out) is not reported"
    );
    proxy.set_mode(ProxyMode::Pass);
    drop(session);
}

/// `answered` is the wake-up a periodic round shares: it resolves on the first answer (an idle
/// session's ping) at or after the moment given, also on a session opened without an answer
/// observer, and never while the server is silent.
#[tokio::test]
async fn answered_resolves_on_the_first_answer_from_a_moment_and_not_while_none_comes() {
    let (_zk, proxy, session) = proxied_session(Duration::from_secs(2)).await;
    let gap = session.idle_ping_gap();
    assert_eq!(
        gap,
        Duration::from_millis(800),
        "a fifth of the 4 s session"
    );

    // Idle: only pings are answered, one per gap; the first one from `from` on resolves it.
    let from = Instant::now() + gap / 2;
    tokio::time::timeout(gap * 4, session.answered(from))
        .await
        .expect("an idle session's ping is answered within a few ping gaps");
    assert!(Instant::now() >= from, "not before the moment given");

    // A request's answer counts too.
    let asked = Instant::now();
    let (get, ()) = tokio::join!(session.get("/zgres"), session.answered(asked));
    get.unwrap();

    // Silent server: pings go unanswered, and nothing resolves it (from a moment just after
    // the cut: an answer already past the proxy may still arrive).
    proxy.set_mode(ProxyMode::Blackhole);
    let after_cut = Instant::now() + Duration::from_millis(100);
    let silent = tokio::time::timeout(gap * 2, session.answered(after_cut)).await;
    assert!(silent.is_err(), "resolved with no answer from the server");
    proxy.set_mode(ProxyMode::Pass);
}

/// The client's sockets and timers run on the caller's tokio runtime: no reactor thread of its
/// own, which woke twice per ping and cost an idle deadman most of its CPU
/// (`vendor/zookeeper-client/PATCHES.md`, "Sockets and timers on tokio").
#[tokio::test]
async fn an_idle_session_lives_on_the_callers_runtime_alone() {
    let zk = ZkCluster::standalone().await.unwrap();
    let answered = Arc::new(Mutex::new(0u32));
    let count = answered.clone();
    let session = ZkSession::connect_observing_answers(
        &settings(&zk.connect_string()),
        None,
        Duration::from_secs(2),
        Arc::new(move |_| *count.lock().unwrap() += 1),
    )
    .await
    .unwrap();
    session.mkdir("/zgres/idle").await.unwrap();
    zgres_testkit::poll::until("two answered pings", Duration::from_secs(10), || async {
        (*answered.lock().unwrap() >= 2).then_some(())
    })
    .await
    .unwrap();
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    assert!(
        !threads.iter().any(|name| name.starts_with("async-io")),
        "a reactor thread besides the runtime: {threads:?}"
    );
    drop(session);
}

/// Regression (a CI failure of 2026-12-01): after a reconnect that kept the session, the server must still send
/// the events of every persistent watch. The client's watch reset sent only the classic watches
/// (`resend_watches` never raised its index past the data/exist/child kinds), so a deadman that
/// reconnected once never heard of the lock's deletion: a replica waited for its 120 s cache
/// resync before taking over (`vendor/zookeeper-client/PATCHES.md`, "Persistent watches after a
/// reconnect").
#[tokio::test]
async fn persistent_watches_still_fire_after_a_reconnect_that_kept_the_session() {
    let zk = ZkCluster::standalone().await.unwrap();
    let proxy = FaultProxy::start(zk.client_addr(0)).unwrap();
    let watching = ZkSession::connect(
        &settings(&proxy.addr().to_string()),
        None,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let writer = ZkSession::connect(
        &settings(&zk.connect_string()),
        None,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    writer.mkdir("/zgres").await.unwrap();
    let mut watcher = watching
        .watch("/zgres/lock", zgres_zk::client::AddWatchMode::Persistent)
        .await
        .unwrap();
    let session_id = watching.session_id();

    // Connection lost and re-established within the session timeout.
    proxy.set_mode(ProxyMode::Refuse);
    let lost = watcher.changed().await;
    assert_eq!(
        lost.session_state,
        zgres_zk::client::SessionState::Disconnected
    );
    proxy.set_mode(ProxyMode::Pass);
    let back = tokio::time::timeout(Duration::from_secs(10), watcher.changed())
        .await
        .expect("the reconnect is reported to the watcher");
    assert_eq!(
        back.session_state,
        zgres_zk::client::SessionState::SyncConnected
    );
    assert_eq!(watching.session_id(), session_id, "the session was kept");

    // A change made after the reconnect reaches the watcher.
    assert!(writer
        .create("/zgres/lock", b"x", CreateKind::Persistent)
        .await
        .unwrap()
        .is_done());
    let event = tokio::time::timeout(Duration::from_secs(5), watcher.changed())
        .await
        .expect("the persistent watch fires after the reconnect");
    assert_eq!(event.event_type, zgres_zk::client::EventType::NodeCreated);
    assert!(writer.delete("/zgres/lock", None).await.unwrap().is_done());
    let event = tokio::time::timeout(Duration::from_secs(5), watcher.changed())
        .await
        .expect("and keeps firing");
    assert_eq!(event.event_type, zgres_zk::client::EventType::NodeDeleted);
}
