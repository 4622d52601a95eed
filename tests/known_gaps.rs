//! Reproductions of known gaps that need a decision before they can be fixed. Each test
//! asserts the behaviour users would want and is ignored, with the reason, until then:
//! `cargo nextest run -p zgres-tests --test known_gaps --run-ignored only`.

use std::time::Duration;

use zgres_testkit::group::checks::request_switchover;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

/// A two-node group whose new primary dies ~0.1 s after a switchover promoted it: the old
/// primary stopped cleanly at the switch point, so its WAL is a prefix of the new timeline,
/// but it has not replayed the timeline switch yet, and the core refuses a replica behind the
/// group's timeline (`Ineligible::TimelineBehind`). The group stays without a primary until
/// the dead node returns. Found by the zgres-sync failover bench (one run in six hung).
/// Killed at once (before `/history` names the new timeline) or after 0.3 s (the old primary
/// already follows it), the old primary takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known gap: a replica behind the group's timeline is never promoted, even one that stopped at the switch point; needs a decision on the safety rule"]
async fn a_new_primary_killed_just_after_a_switchover_is_replaced_by_the_old_one() {
    let mut group = Group::prepare(2, Timing::default()).await;
    group.start_all().await;
    let old = group.wait_primary(&[]).await;
    let new = 1 - old;
    group.wait_following(new, old).await;
    // The old primary hands over only to a replica whose state says it is healthy.
    tokio::time::sleep(Duration::from_secs(2)).await;
    request_switchover(&group, Some(new), None).await;
    poll::until("the candidate promoted", DEADLINE, || async {
        (group.nodes[new].is_primary().await == Some(true)).then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    group.kill_node(new);
    assert_eq!(group.wait_primary(&[new]).await, old, "{}", group.logs());
}
