//! Assertions and requests that read or write a group's znodes.

use std::time::{Duration, Instant};

use zgres_schema::documents::{History, Promotion, Switchover, SwitchoverKind, SyncState};
use zgres_schema::{decode, encode, Znode};
use zookeeper_client as zk;

use super::{Group, DEADLINE};
use crate::poll;

/// Watches for `window` that no node other than `allowed` holds the lock or answers as a
/// primary (nodes without a deadman are not asked).
pub async fn assert_no_other_primary(group: &Group, allowed: Option<usize>, window: Duration) {
    let client = group.zk_client().await;
    let until = Instant::now() + window;
    while Instant::now() < until {
        let holder = group.lock_holder(&client).await;
        assert!(
            holder.is_none() || holder == allowed,
            "node {holder:?} holds the lock\n{}",
            group.logs()
        );
        for (i, node) in group.nodes.iter().enumerate() {
            if Some(i) != allowed && node.deadman.is_some() {
                assert_ne!(
                    node.is_primary().await,
                    Some(true),
                    "node {i} acts as primary"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a switchover request to `/switchover/{GROUP}` (as `zgresctl switchover` would).
pub async fn request_switchover(group: &Group, to: Option<usize>, scheduled_at_ms: Option<u64>) {
    let client = group.zk_client().await;
    let request = Switchover {
        kind: SwitchoverKind::Switchover,
        from: None,
        to: to.map(|i| group.nodes[i].node_id().parse().unwrap()),
        scheduled_at_ms,
        requested_at_ms: 0,
        stopped_lsn: None,
    };
    client
        .create(
            &group.path(Znode::Switchover),
            &encode(&request).unwrap(),
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
}

/// Waits until `/history/{GROUP}` ends with a promotion of node `i`; returns it.
pub async fn wait_promotion_recorded(group: &Group, i: usize) -> Promotion {
    let client = group.zk_client().await;
    let path = group.path(Znode::History);
    let promoted = group.nodes[i].node_id();
    poll::until("the promotion to be in /history", DEADLINE, || async {
        let (data, _) = client.get_data(&path).await.ok()?;
        let history: History = decode(&path, &data).ok()?;
        history
            .entries
            .last()
            .filter(|p| p.new_primary.to_string() == promoted)
            .cloned()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()))
}

/// Waits until `/sync/{GROUP}` names `primary` and claims one synchronous standby holding
/// every acknowledged commit (a settled `FIRST 1` claim); returns the standby.
pub async fn wait_synchronous_standby(group: &Group, primary: usize) -> usize {
    wait_sync_claim(group, primary, 1, 1).await[0]
}

/// Polls `/sync/{GROUP}` until it names `primary` and `settled` accepts it; what `settled`
/// returns. Panics with the group's logs after [`DEADLINE`].
async fn wait_for_sync<T>(
    group: &Group,
    primary: usize,
    what: &str,
    settled: impl Fn(&SyncState) -> Option<T>,
) -> T {
    let client = group.zk_client().await;
    let path = group.path(Znode::Sync);
    let primary_id = group.nodes[primary].node_id();
    poll::until(
        &format!("/sync of n{primary} to {what}"),
        DEADLINE,
        || async {
            let (data, _) = client.get_data(&path).await.ok()?;
            let sync: SyncState = decode(&path, &data).ok()?;
            (sync.primary.to_string() == primary_id)
                .then(|| settled(&sync))
                .flatten()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()))
}

/// Tries a write on each candidate every 10 ms until one is acknowledged; returns the node and
/// the time since `start`.
pub async fn first_write(group: &Group, candidates: &[usize], start: Instant) -> (usize, Duration) {
    loop {
        for &i in candidates {
            let attempt = async {
                let client = group.nodes[i].client().await?;
                client
                    .execute("INSERT INTO writes (node, seq) VALUES ('bench', 0)", &[])
                    .await
                    .ok()
            };
            if tokio::time::timeout(Duration::from_millis(500), attempt)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return (i, start.elapsed());
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no write accepted in 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `candidate` publishes itself a healthy replica on the timeline `primary`
/// publishes: what a switchover needs of its target, and what a failover needs of the only
/// replica (one still on the previous timeline is not promoted: it may lack WAL).
pub async fn wait_ready_to_take_over(group: &Group, candidate: usize, primary: usize) {
    let zk = group.zk_client().await;
    let state_of = |i: usize| {
        let zk = &zk;
        let path = format!("/zgres/state/main_{}", group.nodes[i].node_id());
        async move {
            let (data, _) = zk.get_data(&path).await.ok()?;
            decode::<zgres_schema::documents::NodeState>(&path, &data).ok()
        }
    };
    poll::until(
        "the candidate to publish itself a healthy replica on the primary's timeline",
        DEADLINE,
        || async {
            let (mine, theirs) = (state_of(candidate).await?, state_of(primary).await?);
            (mine.role == zgres_schema::documents::Role::Replica
                && mine.is_healthy()
                && mine.timeline == theirs.timeline)
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

/// Node `i`'s published `/state`, if it exists and decodes.
pub async fn node_state(
    group: &Group,
    client: &zk::Client,
    i: usize,
) -> Option<zgres_schema::documents::NodeState> {
    let path = format!(
        "{}/main_{}",
        group.layout.dir(zgres_schema::Dir::State),
        group.nodes[i].node_id()
    );
    let (data, _) = client.get_data(&path).await.ok()?;
    decode(&path, &data).ok()
}

/// Asserts that `attacker` (named `who` in failures) can neither set nor delete any of
/// `existing`, nor create a child in any of `dirs` of `group`: each attempt gets `NoAuth` (or,
/// for a create, finds the znode already there).
pub async fn assert_cannot_write(
    group: &Group,
    who: &str,
    attacker: &zk::Client,
    existing: &[String],
    dirs: &[zgres_schema::Dir],
) {
    for path in existing {
        let set = attacker.set_data(path, b"{}", None).await;
        assert!(
            matches!(set, Err(zk::Error::NoAuth)),
            "{who} set {path}: {set:?}"
        );
        let delete = attacker.delete(path, None).await;
        assert!(
            matches!(delete, Err(zk::Error::NoAuth)),
            "{who} deleted {path}: {delete:?}"
        );
    }
    for dir in dirs {
        let child = format!("{}/main", group.layout.dir(*dir));
        let create = attacker
            .create(
                &child,
                b"{}",
                &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            )
            .await;
        assert!(
            matches!(create, Err(zk::Error::NoAuth | zk::Error::NodeExists)),
            "{who} created {child}: {create:?}"
        );
    }
}

/// The node that bootstrapped an empty group, once it runs as primary, with the table the
/// testkit's write probes ([`Group::wait_primary`], the writer) use created on it.
///
/// # Panics
/// When no node runs as primary within [`DEADLINE`], or the table cannot be created.
pub async fn first_primary(group: &Group) -> usize {
    let client = group.zk_client().await;
    let primary = poll::until("the lock holder to run as primary", DEADLINE, || async {
        let holder = group.lock_holder(&client).await?;
        (group.nodes[holder].is_primary().await == Some(true)).then_some(holder)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    group.nodes[primary]
        .client()
        .await
        .unwrap()
        .execute(
            "CREATE TABLE writes (node text NOT NULL, seq bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())",
            &[],
        )
        .await
        .unwrap();
    primary
}

/// Waits until `/sync/{GROUP}` names `primary` and claims exactly `standbys` nodes with
/// `holders` of them holding each acknowledged commit (a settled claim); returns the listed
/// nodes.
pub async fn wait_sync_claim(
    group: &Group,
    primary: usize,
    standbys: usize,
    holders: usize,
) -> Vec<usize> {
    let what = format!("claim {holders} of {standbys} standbys");
    wait_for_sync(group, primary, &what, |sync| {
        if sync.standbys.len() != standbys || sync.holders() != holders {
            return None;
        }
        sync.standbys
            .iter()
            .map(|s| {
                let id = s.to_string();
                group.nodes.iter().position(|n| n.node_id() == id)
            })
            .collect()
    })
    .await
}

/// Waits until `/sync/{GROUP}` names `primary` and claims at least one standby holding every
/// acknowledged commit (some standby may be promoted again).
pub async fn wait_promotable_again(group: &Group, primary: usize) {
    wait_for_sync(group, primary, "claim a holder", |sync| {
        (sync.holders() >= 1).then_some(())
    })
    .await
}

/// Waits until node `i` of `group`, a standby, has replayed WAL up to `lsn`.
pub async fn wait_replayed(group: &Group, i: usize, lsn: zgres_schema::Lsn) {
    let what = format!("{} to replay up to {lsn}", group.nodes[i].name);
    poll::until(&what, DEADLINE, || async {
        let client = group.nodes[i].client().await?;
        let row = client
            .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
            .await
            .ok()?;
        let replayed: zgres_schema::Lsn = row.get::<_, Option<String>>(0)?.parse().ok()?;
        (replayed >= lsn).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(i))));
}
