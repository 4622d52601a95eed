//! Standby clusters (issue 14): a second group, `dr`, in the same ZooKeeper follows group
//! `main`'s primary (or a fixed address). Its lock holder is a standby leader streaming from
//! `main`'s primary (and following `main`'s failovers); its other member cascades from the
//! standby leader; losing the standby leader hands the lock to the member, which is not
//! promoted; one zgresctl command (`config unset dr standby_cluster`) promotes it.

use zgres_schema::documents::Lock;
use zgres_schema::{decode, GroupName, ZkLayout, Znode};
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::{poll, zgresctl};

/// Which of `nodes` holds `dr`'s lock, if one does.
async fn dr_lock_holder(
    group: &Group,
    zk: &zookeeper_client::Client,
    nodes: [usize; 2],
) -> Option<usize> {
    let path = ZkLayout::default().path(&Znode::Lock(GroupName::new("dr").unwrap()));
    let (data, _) = zk.get_data(&path).await.ok()?;
    let lock: Lock = decode(&path, &data).ok()?;
    nodes
        .into_iter()
        .find(|&i| group.nodes[i].node_id() == lock.node.to_string())
}

/// `pg_is_in_recovery()` on node `i`.
async fn in_recovery(group: &Group, i: usize) -> Option<bool> {
    let client = group.nodes[i].client().await?;
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .ok()
        .map(|row| row.get(0))
}

/// Waits until node `i` has the row `(node, 1)`.
async fn wait_row(group: &Group, i: usize, node: &str) {
    poll::until(
        &format!("n{i} to have the row {node}"),
        DEADLINE,
        || async {
            let client = group.nodes[i].client().await?;
            let row = client
                .query_one("SELECT count(*) FROM writes WHERE node = $1", &[&node])
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 1).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(i))));
}

/// Commits the row `(node, 1)` on node `i`.
async fn write_row(group: &Group, i: usize, node: &str) {
    let client = group.nodes[i].client().await.expect("the primary answers");
    client
        .execute("INSERT INTO writes (node, seq) VALUES ($1, 1)", &[&node])
        .await
        .unwrap();
}

fn http_code(port: u16, path: &str) -> String {
    let answer = zgres_testkit::http::get(port, path).unwrap_or_default();
    answer.get(9..12).unwrap_or_default().to_owned()
}

/// Group `main` (n0 primary, n1 its replica) plus two empty nodes in group `dr`, configured
/// (`zgresctl config set dr ... --create`) with `standby_cluster` = `source` and started.
/// Waits until one holds dr's lock and streams from n0 and the other cascades from it;
/// returns the group and dr's nodes as (standby leader, member).
async fn main_and_dr(source: impl FnOnce(&Group) -> String) -> (Group, usize, usize) {
    let mut group = Group::prepare(2, Timing::default()).await;
    // The standby cluster's members stream without slots.
    group.member_slots = false;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    let assignment = format!("standby_cluster={}", source(&group));
    let connect = group.zk.connect_string();
    let (code, out) = zgresctl::run(&connect, &["config", "set", "dr", &assignment, "--create"]);
    assert_eq!(code, 0, "{out}");
    let dr = [group.add_empty_node(), group.add_empty_node()];
    for i in dr {
        group.nodes[i].extra_config = "[node]\ngroup = \"dr\"\n".into();
        group.start(i);
    }
    let zk = group.zk_client().await;
    let leader = poll::until("a member to hold dr's lock", DEADLINE, || {
        dr_lock_holder(&group, &zk, dr)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(dr[0]))));
    let member = if leader == dr[0] { dr[1] } else { dr[0] };
    group.wait_following(leader, 0).await;
    group.wait_following(member, leader).await;
    (group, leader, member)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_cluster_follows_another_groups_primary_and_is_promoted_by_one_command() {
    // One member holds dr's lock and streams from main's primary; the other cascades from it.
    let (mut group, leader, member) = main_and_dr(|_| r#"{"group":"main"}"#.to_owned()).await;
    let connect = group.zk.connect_string();
    let zk = group.zk_client().await;
    let dr = [leader, member];
    write_row(&group, 0, "before-failover").await;
    wait_row(&group, member, "before-failover").await;
    assert_eq!(in_recovery(&group, leader).await, Some(true));
    let api = group.nodes[leader].api_port;
    poll::until(
        "the standby leader's /standby-leader to answer 200",
        DEADLINE,
        || std::future::ready((http_code(api, "/standby-leader") == "200").then_some(())),
    )
    .await
    .unwrap();
    assert_eq!(http_code(api, "/primary"), "503");
    let (code, listed) = zgresctl::run(&connect, &["list", "dr"]);
    assert_eq!(code, 0, "{listed}");
    assert!(listed.contains("standby leader"), "{listed}");
    assert_eq!(
        http_code(group.nodes[member].api_port, "/standby-leader"),
        "503"
    );

    // main fails over: the standby leader follows main's new primary.
    group.kill_node(0);
    assert_eq!(group.wait_primary(&[0]).await, 1);
    group.wait_following(leader, 1).await;
    write_row(&group, 1, "after-failover").await;
    wait_row(&group, member, "after-failover").await;

    // dr's standby leader dies: the member takes dr's lock and streams from main's primary,
    // still a standby; the old leader comes back cascading from it.
    group.kill_node(leader);
    poll::until("the member to hold dr's lock", DEADLINE, || async {
        (dr_lock_holder(&group, &zk, dr).await? == member).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(member))));
    group.wait_following(member, 1).await;
    assert_eq!(
        in_recovery(&group, member).await,
        Some(true),
        "a standby leader was promoted"
    );
    group.start(leader);
    group.wait_following(leader, member).await;

    // One command promotes dr: its lock holder accepts writes, its other member follows it,
    // and main's primary is untouched.
    let (code, out) = zgresctl::run(&connect, &["config", "unset", "dr", "standby_cluster"]);
    assert_eq!(code, 0, "{out}");
    poll::until("dr's lock holder to be promoted", DEADLINE, || async {
        (!in_recovery(&group, member).await?).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(member))));
    write_row(&group, member, "dr-promoted").await;
    wait_row(&group, leader, "dr-promoted").await;
    assert_eq!(in_recovery(&group, leader).await, Some(true));
    assert_eq!(group.wait_primary(&[]).await, 1, "main's primary changed");
    assert_eq!(in_recovery(&group, 1).await, Some(false));
}

/// The other source: a fixed address (here `main`'s primary, as a PostgreSQL outside zgres
/// would be). The standby leader streams from it; its member cascades from the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_cluster_follows_a_fixed_address() {
    let (group, leader, member) =
        main_and_dr(|group| format!(r#"{{"node":"{}"}}"#, group.nodes[0].node_id())).await;
    write_row(&group, 0, "from-the-address").await;
    wait_row(&group, member, "from-the-address").await;
    assert_eq!(in_recovery(&group, leader).await, Some(true));
    assert_eq!(in_recovery(&group, member).await, Some(true));
}
