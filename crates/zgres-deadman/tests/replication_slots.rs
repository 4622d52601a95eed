//! Physical replication slots (issue 14): the primary keeps one per member, replicas stream
//! with theirs and keep copies of the primary's, so a replica that was down while the
//! primary wrote far more WAL than `wal_keep_size` resumes streaming without a re-clone —
//! from the same primary, and from a new one after a failover. Permanent slots from
//! `/config` are kept on every primary; an absent member's slot is dropped after
//! `member_slots_ttl_ms`.

use std::collections::BTreeMap;

use zgres_schema::documents::GroupConfig;
use zgres_schema::slots::{PermanentSlot, SlotIdentifier};
use zgres_schema::SlotName;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

/// Little kept WAL, and logical decoding for the permanent logical slot.
const PARAMETERS: &str =
    "[postgres.parameters]\nwal_keep_size = \"16MB\"\nwal_level = \"logical\"\n";
/// Segments written while a replica is away: 6 × 16 MB, over three times `wal_keep_size`.
const SEGMENTS: usize = 6;
/// Left in a replica's data directory while it is down: a re-clone would remove it.
const MARKER: &str = "zgres-test-not-recloned";

fn member_slot(group: &Group, i: usize) -> SlotName {
    SlotName::for_member(group.nodes[i].node_id().parse().unwrap())
}

/// The slots of node `i`'s PostgreSQL: name → (type, active).
async fn slots_on(group: &Group, i: usize) -> Option<BTreeMap<String, (String, bool)>> {
    let client = group.nodes[i].client().await?;
    let rows = client
        .query(
            "SELECT slot_name::text, slot_type, active FROM pg_replication_slots",
            &[],
        )
        .await
        .ok()?;
    Some(
        rows.iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect(),
    )
}

/// Waits until node `i` has `slot` (of type `kind`), active when `active` says so.
async fn wait_slot(group: &Group, i: usize, slot: &str, kind: &str, active: Option<bool>) {
    poll::until(
        &format!("slot {slot} on {}", group.nodes[i].name),
        DEADLINE,
        || async {
            let slots = slots_on(group, i).await?;
            let (t, a) = slots.get(slot)?;
            (t == kind && active.map_or(true, |want| *a == want)).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(i))));
}

/// Writes and recycles `SEGMENTS` WAL segments on node `i` (the primary); returns how far
/// its WAL moved, in bytes.
async fn write_segments(group: &Group, i: usize) -> u64 {
    let primary = group.nodes[i].client().await.unwrap();
    let position = |c: tokio_postgres::Client| async move {
        let row = c
            .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
            .await
            .unwrap();
        (row.get::<_, i64>(0) as u64, c)
    };
    let (start, primary) = position(primary).await;
    for _ in 0..SEGMENTS {
        primary
            .batch_execute(
                "INSERT INTO writes (node, seq) SELECT 'filler', g FROM generate_series(1, 1000) g;
                 SELECT pg_switch_wal(); CHECKPOINT;",
            )
            .await
            .unwrap();
    }
    let (end, _) = position(primary).await;
    end - start
}

/// Node `i` streams from `primary` again, with its slot, and was not cloned again.
async fn assert_resumed_without_reclone(group: &Group, i: usize, primary: usize, filler: i64) {
    group.wait_following(i, primary).await;
    let slot = member_slot(group, i);
    wait_slot(group, primary, slot.as_str(), "physical", Some(true)).await;
    assert!(
        group.nodes[i].pg.data_dir().join(MARKER).exists(),
        "{} was cloned again\n{}",
        group.nodes[i].name,
        group.logs_with_first(Some(i))
    );
    let replica = group.nodes[i].client().await.unwrap();
    poll::until("the filler rows on the replica", DEADLINE, || async {
        let row = replica
            .query_one("SELECT count(*) FROM writes WHERE node = 'filler'", &[])
            .await
            .ok()?;
        (row.get::<_, i64>(0) == filler).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_down_past_wal_keep_size_resume_with_their_slots_before_and_after_a_failover() {
    let mut group = Group::prepare(3, Timing::default()).await;
    for node in &mut group.nodes {
        node.extra_config = PARAMETERS.into();
    }
    let mut config = GroupConfig::default();
    config
        .slots
        .insert(
            SlotName::new("app").unwrap(),
            PermanentSlot::Logical {
                plugin: SlotIdentifier::new("plugin", "pgoutput").unwrap(),
                database: SlotIdentifier::new("database", "postgres").unwrap(),
            },
        )
        .unwrap();
    group.set_group_config(&config).await;
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    group.wait_following(1, 0).await;
    group.wait_following(2, 0).await;

    // The primary keeps a slot per member, in use by its standby; and the permanent one.
    for i in [1, 2] {
        wait_slot(
            &group,
            0,
            member_slot(&group, i).as_str(),
            "physical",
            Some(true),
        )
        .await;
    }
    wait_slot(&group, 0, "app", "logical", None).await;
    // Each replica keeps a copy of the other's slot, for when it is promoted.
    wait_slot(
        &group,
        1,
        member_slot(&group, 2).as_str(),
        "physical",
        Some(false),
    )
    .await;
    wait_slot(
        &group,
        2,
        member_slot(&group, 1).as_str(),
        "physical",
        Some(false),
    )
    .await;

    // n1 is down while the primary writes three times wal_keep_size and checkpoints.
    std::fs::write(group.nodes[1].pg.data_dir().join(MARKER), b"").unwrap();
    group.kill_node(1);
    let written = write_segments(&group, 0).await;
    assert!(
        written > 3 * 16 * 1024 * 1024,
        "only {written} bytes of WAL"
    );
    // The primary's metrics show what n1's slot holds back.
    let series = format!(
        "zgres_replication_slot_retained_bytes{{group=\"main\",node=\"{}\",slot=\"{}\"}} ",
        group.nodes[0].node_id(),
        member_slot(&group, 1)
    );
    poll::until("the slot's retention in the metrics", DEADLINE, || {
        let metrics =
            zgres_testkit::http::get(group.nodes[0].api_port, "/metrics").unwrap_or_default();
        let retained = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok());
        std::future::ready(retained.filter(|r| *r >= written).map(|_| ()))
    })
    .await
    .unwrap();
    group.start(1);
    assert_resumed_without_reclone(&group, 1, 0, (SEGMENTS * 1000) as i64).await;

    // n2 is down, the primary fails, n1 takes over and writes as much again: n2 resumes
    // from the new primary, which had kept a copy of n2's slot as a replica.
    std::fs::write(group.nodes[2].pg.data_dir().join(MARKER), b"").unwrap();
    group.kill_node(2);
    group.kill_node(0);
    assert_eq!(group.wait_primary(&[0, 2]).await, 1);
    // A new primary keeps the permanent logical slot too (created afresh: see the docs).
    wait_slot(&group, 1, "app", "logical", None).await;
    let written = write_segments(&group, 1).await;
    assert!(
        written > 3 * 16 * 1024 * 1024,
        "only {written} bytes of WAL"
    );
    group.start(2);
    assert_resumed_without_reclone(&group, 2, 1, (2 * SEGMENTS * 1000) as i64).await;

    // A member absent longer than member_slots_ttl_ms loses its slot; the permanent slot
    // stays.
    let n2_slot = member_slot(&group, 2);
    group.kill_node(2);
    group
        .set_group_config(&GroupConfig {
            member_slots_ttl_ms: 1_000,
            ..config
        })
        .await;
    poll::until("n2's slot to be dropped on n1", DEADLINE, || async {
        (!slots_on(&group, 1).await?.contains_key(n2_slot.as_str())).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));
    // The warning is written once the drop has returned, so it may trail the catalog.
    poll::until("n1 to log why it dropped n2's slot", DEADLINE, || {
        std::future::ready(
            group.nodes[1]
                .log_text()
                .contains("dropped the slot of a member absent longer than member_slots_ttl_ms")
                .then_some(()),
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs_with_first(Some(1))));
    let slots = slots_on(&group, 1).await.unwrap();
    assert!(slots.contains_key("app"), "{slots:?}");
}
