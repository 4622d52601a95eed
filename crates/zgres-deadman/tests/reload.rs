//! Reloading the deadman's configuration (SIGHUP, `systemctl reload`) never costs the primary:
//! live settings apply with PostgreSQL, the lock and the session untouched; settings that need a
//! restart keep their running values and are published as pending; an invalid file changes
//! nothing.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zgres_schema::documents::NodeState;
use zgres_schema::Znode;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::{http, poll, ports};

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

async fn show(group: &Group, i: usize, name: &str) -> Option<String> {
    let client = group.nodes[i].client().await?;
    let row = client.query_one(&format!("SHOW {name}"), &[]).await.ok()?;
    Some(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_live_settings_and_publishes_the_rest_as_pending_restart() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    group.wait_following(1 - primary, primary).await;
    let deadman = group.nodes[primary].deadman_pid();
    let postmaster = group.nodes[primary].postmaster_pid().expect("a postmaster");
    let zk = group.zk_client().await;
    let lock_path = group.path(Znode::Lock);
    let (_, lock_before) = zk.get_data(&lock_path).await.unwrap();
    let old_api = group.nodes[primary].api_port;
    let new_api = ports::free_port().unwrap();
    assert_ne!(
        show(&group, primary, "work_mem").await.as_deref(),
        Some("7MB")
    );

    // Live: tags, a sighup-context parameter, the API address. Restart-only: the session
    // timeout (the deadman's) and max_connections (PostgreSQL's).
    let edited = format!(
        "[tags]\npriority = 7\n\
         [postgres.parameters]\nwork_mem = \"7MB\"\nmax_connections = \"150\"\n\
         [zookeeper]\nsession_timeout_ms = 6000\n\
         [api]\nlisten = \"127.0.0.1:{new_api}\"\n"
    );
    group.rewrite_config(primary, &edited);
    kill(Pid::from_raw(deadman as i32), Signal::SIGHUP).unwrap();

    let status = poll::until(
        "the API at its new address to list both pending restarts",
        DEADLINE,
        || {
            let text = http::get(new_api, "/patroni").unwrap_or_default();
            std::future::ready(
                (text.contains("zookeeper.session_timeout_ms")
                    && text.contains("postgresql.max_connections"))
                .then_some(text),
            )
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(primary))));
    assert!(status.contains("\"pending_restart\":true"), "{status}");
    assert!(status.contains("\"priority\":7"), "{status}");
    poll::until("the old API address to close", DEADLINE, || {
        std::future::ready(http::get(old_api, "/patroni").is_none().then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(
        show(&group, primary, "work_mem").await.as_deref(),
        Some("7MB")
    );
    assert_ne!(
        show(&group, primary, "max_connections").await.as_deref(),
        Some("150"),
        "a postmaster-level parameter changes only with a restart"
    );

    // The published state says the same.
    let state_path = format!("/zgres/state/main_{}", group.nodes[primary].node_id());
    let (data, _) = zk.get_data(&state_path).await.unwrap();
    let state: NodeState = zgres_schema::decode(&state_path, &data).unwrap();
    assert_eq!(state.tags.priority, 7);
    assert!(state
        .pending_restart
        .contains(&"zookeeper.session_timeout_ms".to_owned()));
    assert!(state
        .pending_restart
        .contains(&"postgresql.max_connections".to_owned()));

    // Nothing moved: the same deadman, postmaster and lock znode (not deleted and recreated).
    assert!(alive(deadman));
    assert_eq!(group.nodes[primary].postmaster_pid(), Some(postmaster));
    let (_, lock_after) = zk.get_data(&lock_path).await.unwrap();
    assert_eq!(
        lock_after.czxid, lock_before.czxid,
        "the lock was recreated"
    );
    assert_eq!(group.wait_primary(&[]).await, primary, "the primary moved");

    // An invalid file is refused with the --check-config messages; the running settings stay.
    group.rewrite_config(
        primary,
        &format!(
            "{}[timing]\nloop_interval_ms = 1\n",
            edited.replace("7MB", "9MB")
        ),
    );
    kill(Pid::from_raw(deadman as i32), Signal::SIGHUP).unwrap();
    let said = "SIGHUP: the configuration file is not valid";
    poll::until(&format!("the deadman to log {said:?}"), DEADLINE, || {
        let log = group.nodes[primary].log_text();
        std::future::ready(
            (log.contains(said) && log.contains("timing.loop_interval_ms")).then_some(()),
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    assert_eq!(
        show(&group, primary, "work_mem").await.as_deref(),
        Some("7MB")
    );
    assert!(http::get(new_api, "/patroni").is_some());
    assert!(alive(deadman), "the deadman died of SIGHUP");
    assert_eq!(group.nodes[primary].postmaster_pid(), Some(postmaster));
    assert_eq!(group.wait_primary(&[]).await, primary, "the primary moved");
}

/// A file that cannot be parsed at all is refused the same way, with the deadman and its
/// PostgreSQL left as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_file_keeps_the_primary() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    let node = &group.nodes[primary];
    let deadman = node.deadman_pid();
    let postmaster = node.postmaster_pid().expect("a running postmaster");
    std::fs::write(&node.files.config, "this is = not [valid").unwrap();
    kill(Pid::from_raw(deadman as i32), Signal::SIGHUP).unwrap();
    let said = "SIGHUP: the configuration file is not valid";
    poll::until(&format!("the deadman to log {said:?}"), DEADLINE, || {
        std::future::ready(node.log_text().contains(said).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    assert!(alive(deadman), "the deadman died of SIGHUP");
    assert_eq!(
        node.postmaster_pid(),
        Some(postmaster),
        "PostgreSQL was restarted"
    );
    assert_eq!(group.wait_primary(&[]).await, primary, "the primary moved");
}
