//! SIGHUP (logrotate, `systemctl reload`, habit) never costs the primary: the deadman checks its
//! configuration file, says whether it is valid, and keeps running with the configuration it
//! has, PostgreSQL untouched, whether the file is valid or not.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_primary_whatever_the_config_file_says() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    group.wait_following(1 - primary, primary).await;
    let node = &group.nodes[primary];
    let deadman = node.deadman_pid();
    let postmaster = node.postmaster_pid().expect("a running postmaster");

    let cases = [
        (None, "SIGHUP: the configuration file is valid"),
        (
            Some("this is = not [valid"),
            "SIGHUP: the configuration file is not valid",
        ),
    ];
    for (content, said) in cases {
        if let Some(content) = content {
            std::fs::write(&node.config, content).unwrap();
        }
        kill(Pid::from_raw(deadman as i32), Signal::SIGHUP).unwrap();
        poll::until(&format!("the deadman to log {said:?}"), DEADLINE, || {
            std::future::ready(node.log_text().contains(said).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
        assert!(
            alive(deadman),
            "the deadman died of SIGHUP\n{}",
            group.logs()
        );
        assert_eq!(
            node.postmaster_pid(),
            Some(postmaster),
            "PostgreSQL was restarted"
        );
        assert_eq!(group.wait_primary(&[]).await, primary, "the primary moved");
    }
}
