use super::*;
use crate::codec::{decode, encode, DecodeErrorKind, MAX_DOCUMENT_BYTES};
use proptest::prelude::*;
use std::collections::BTreeSet;

const PATH: &str = "/zgres/state/main_10.0.0.1:5432";

fn node() -> impl Strategy<Value = NodeId> {
    prop_oneof![
        (any::<[u8; 4]>(), 1u16..)
            .prop_map(|(ip, p)| format!("{}:{p}", std::net::Ipv4Addr::from(ip))),
        (any::<u128>(), 1u16..)
            .prop_map(|(ip, p)| format!("[{}]:{p}", std::net::Ipv6Addr::from(ip))),
    ]
    .prop_map(|s| s.parse().unwrap())
}

fn tags() -> impl Strategy<Value = Tags> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(
            |(nofailover, noloadbalance, nosync, clonefrom, priority)| Tags {
                nofailover,
                noloadbalance,
                nosync,
                clonefrom,
                priority,
                replicatefrom: (priority % 3 == 0)
                    .then(|| crate::NodeName::new(&format!("n{}", priority % 10)).unwrap()),
            },
        )
}

fn lsn() -> impl Strategy<Value = Option<Lsn>> {
    proptest::option::of(any::<u64>().prop_map(Lsn))
}

fn node_state() -> impl Strategy<Value = NodeState> {
    (
        node(),
        prop_oneof![
            Just(Role::Primary),
            Just(Role::Replica),
            Just(Role::Stopped),
            Just(Role::Unknown)
        ],
        proptest::collection::vec("\\PC{0,20}", 0..3),
        proptest::option::of((1u32..).prop_map(|t| Timeline::new(t).unwrap())),
        proptest::option::of(any::<u64>().prop_map(SystemId)),
        (lsn(), lsn(), lsn()),
        tags(),
        proptest::collection::btree_map("[a-z]{1,8}", any::<i64>().prop_map(Into::into), 0..3),
        any::<u64>(),
    )
        .prop_map(
            |(node, role, problems, timeline, system_id, (w, r, p), tags, meta, at)| NodeState {
                warnings: vec![],
                name: None,
                refresh_ms: None,
                takeover_wait_ms: None,
                node,
                role,
                problems,
                timeline,
                system_id,
                wal: WalPositions {
                    write: w,
                    receive: r,
                    replay: p,
                    oldest_kept: None,
                },
                upstream: None,
                tags,
                meta,
                slots: [(crate::SlotName::for_member(node), w)]
                    .into_iter()
                    .collect(),
                pending_restart: Vec::new(),
                updated_at_ms: at,
            },
        )
}

fn sample_state() -> NodeState {
    NodeState {
        warnings: vec!["a warning".into()],
        name: Some(NodeName::new("n0").unwrap()),
        refresh_ms: Some(10_000),
        takeover_wait_ms: None,
        node: "10.0.0.1:5432".parse().unwrap(),
        role: Role::Replica,
        problems: vec![],
        timeline: Some(Timeline::new(3).unwrap()),
        system_id: Some(SystemId(7_312_345_678_901_234_567)),
        wal: WalPositions {
            write: None,
            receive: Some("1/0".parse().unwrap()),
            replay: Some("0/FFFFFFFF".parse().unwrap()),
            oldest_kept: None,
        },
        upstream: Some("10.0.0.2:5432".parse().unwrap()),
        tags: Tags::default(),
        meta: BTreeMap::new(),
        slots: BTreeMap::new(),
        pending_restart: Vec::new(),
        updated_at_ms: 1_700_000_000_000,
    }
}

fn kind_of_error<T: Document + std::fmt::Debug>(data: &[u8]) -> DecodeErrorKind {
    let err = decode::<T>(PATH, data).unwrap_err();
    assert!(err.to_string().starts_with(&format!("znode {PATH}: ")));
    err.kind
}

#[test]
fn encoded_documents_carry_their_version_and_readable_values() {
    let text = String::from_utf8(encode(&sample_state()).unwrap()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["v"], 1);
    assert_eq!(value["wal"]["receive"], "1/0");
    assert_eq!(value["system_id"], "7312345678901234567");
    assert_eq!(value["role"], "replica");
}

#[test]
fn minimal_documents_take_defaults() {
    let config: GroupConfig = decode("/zgres/config/main", br#"{"v":1}"#).unwrap();
    assert_eq!(config, GroupConfig::default());
    let lock: Lock = decode(
        "/zgres/lock/main",
        br#"{"v":1,"node":"[::1]:5432","timeline":2,"extra":"ignored"}"#,
    )
    .unwrap();
    assert_eq!(lock.node.to_string(), "[::1]:5432");
}

#[test]
fn every_failure_names_path_and_reason() {
    assert!(matches!(
        kind_of_error::<Lock>(b"{"),
        DecodeErrorKind::Malformed { line: 1, .. }
    ));
    assert_eq!(
        kind_of_error::<Lock>(b"[1,2]"),
        DecodeErrorKind::NotAnObject
    );
    assert_eq!(
        kind_of_error::<Lock>(b"{\"node\":\"10.0.0.1:1\"}"),
        DecodeErrorKind::MissingVersion
    );
    assert!(matches!(
        kind_of_error::<Lock>(b"{\"v\":\"1\"}"),
        DecodeErrorKind::BadVersion { .. }
    ));
    assert_eq!(
        kind_of_error::<Lock>(b"{\"v\":2}"),
        DecodeErrorKind::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
    assert_eq!(
        kind_of_error::<Lock>(b"{\"v\":1,\"node\":\"x\xff\"}"),
        DecodeErrorKind::NotUtf8 { valid_up_to: 16 }
    );
    let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    assert!(matches!(
        kind_of_error::<Lock>(&huge),
        DecodeErrorKind::TooLarge { .. }
    ));
    // A valid config padded to 900 KiB is refused: only the history may be that large.
    let padded = format!(
        r#"{{"v":1,"paused":true,"pad":"{}"}}"#,
        "x".repeat(900 * 1024)
    );
    assert_eq!(
        kind_of_error::<GroupConfig>(padded.as_bytes()),
        DecodeErrorKind::TooLarge {
            size: padded.len(),
            limit: crate::codec::SMALL_DOCUMENT_BYTES
        }
    );
    let long_history = format!(
        r#"{{"v":1,"entries":[],"pad":"{}"}}"#,
        "x".repeat(900 * 1024)
    );
    assert!(decode::<History>(PATH, long_history.as_bytes()).is_ok());
    let deep = "[".repeat(10_000);
    assert!(matches!(
        kind_of_error::<NodeState>(deep.as_bytes()),
        DecodeErrorKind::Malformed { .. }
    ));
}

#[test]
fn field_errors_name_the_nested_field() {
    let bad_lsn = br#"{"v":1,"node":"10.0.0.1:5432","role":"replica","updated_at_ms":1,
        "wal":{"replay":"nonsense"}}"#;
    match kind_of_error::<NodeState>(bad_lsn) {
        DecodeErrorKind::Field { field, message } => {
            assert_eq!(field, "wal.replay");
            assert!(message.contains("invalid LSN"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let bad_entry = br#"{"v":1,"entries":[{"timeline":2,"lsn":"0/1","reason":"failover",
        "at_ms":1,"new_primary":"10.0.0.1:5432"},{"timeline":0}]}"#;
    match kind_of_error::<History>(bad_entry) {
        DecodeErrorKind::Field { field, .. } => assert_eq!(field, "entries[1].timeline"),
        other => panic!("unexpected {other:?}"),
    }
    match kind_of_error::<Lock>(br#"{"v":1,"timeline":1}"#) {
        DecodeErrorKind::Field { message, .. } => assert!(message.contains("`node`")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn oversized_documents_are_refused_when_encoding() {
    let history = History {
        entries: vec![
            Promotion {
                timeline: Timeline::FIRST,
                lsn: Lsn::ZERO,
                reason: PromotionReason::Failover,
                at_ms: 0,
                new_primary: "10.0.0.1:5432".parse().unwrap(),
                old_primary: None,
            };
            20_000
        ],
    };
    assert!(encode(&history).is_err());
}

fn round_trip<T: Document + PartialEq + std::fmt::Debug>(doc: &T) {
    let bytes = encode(doc).unwrap();
    assert_eq!(&decode::<T>("/x", &bytes).unwrap(), doc);
}

fn decode_all(data: &[u8]) {
    let _ = decode::<NodeState>(PATH, data);
    let _ = decode::<ConnInfo>(PATH, data);
    let _ = decode::<Lock>(PATH, data);
    let _ = decode::<DatabaseId>(PATH, data);
    let _ = decode::<History>(PATH, data);
    let _ = decode::<GroupConfig>(PATH, data);
    let _ = decode::<SyncState>(PATH, data);
    let _ = decode::<Switchover>(PATH, data);
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(Into::into),
        any::<i64>().prop_map(Into::into),
        any::<f64>().prop_map(Into::into),
        "\\PC{0,12}".prop_map(Into::into),
        Just("0/1".into()),
        Just("10.0.0.1:5432".into()),
        Just(1.into()),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Into::into),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("v".to_owned()),
                    Just("node".to_owned()),
                    Just("wal".to_owned()),
                    Just("timeline".to_owned()),
                    Just("entries".to_owned()),
                    "[a-z_]{1,10}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn node_states_round_trip(state in node_state()) {
        round_trip(&state);
    }

    #[test]
    fn small_documents_round_trip(
        n in node(), others in proptest::collection::btree_set(node(), 0..4),
        t in 1u32.., sys in any::<u64>(), at in any::<u64>(), tags in tags(),
    ) {
        let timeline = Timeline::new(t).unwrap();
        round_trip(&Lock { node: n, timeline });
        round_trip(&DatabaseId { system_id: SystemId(sys) });
        round_trip(&ConnInfo { role: None, host: n.addr().ip().to_string(), port: n.addr().port(), dbname: None, tags, api_port: (sys % 2 == 0).then_some(8008) });
        round_trip(&SyncState { primary: n, standbys: others.clone(), quorum: None });
        let quorum = (!others.is_empty()).then(|| (sys % others.len() as u64) as u32).filter(|q| *q as usize != others.len());
        round_trip(&SyncState { primary: n, standbys: others.clone(), quorum });
        round_trip(&History { entries: others.iter().map(|o| Promotion {
            timeline, lsn: Lsn(sys), reason: PromotionReason::Switchover, at_ms: at,
            new_primary: *o, old_primary: Some(n),
        }).collect() });
        round_trip(&Switchover { kind: SwitchoverKind::Failover, from: Some(n), to: None,
            scheduled_at_ms: Some(at), requested_at_ms: at, stopped_lsn: None });
        round_trip(&GroupConfig { synchronous_mode: SyncMode::Strict, maximum_lag_on_failover_bytes: sys,
            paused: true, synchronous_ack_timeout_ms: at, postgresql: cluster_postgres(at),
            member_slots: sys % 2 == 0, member_slots_ttl_ms: at, slots: permanent_slots(at),
            synchronous_node_count: std::num::NonZeroU32::new((sys % 5 + 1) as u32).unwrap(),
            synchronous_method: if sys % 2 == 0 { SyncMethod::Any } else { SyncMethod::First },
            standby_cluster: (sys % 3 == 0).then_some(StandbyOf::Node(n)) });
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&data);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        decode_all(value.to_string().as_bytes());
    }
}

/// A cluster-wide PostgreSQL section with values drawn from `n`.
fn cluster_postgres(n: u64) -> crate::pg_settings::ClusterPostgres {
    use crate::pg_settings::{HbaLine, ParameterName, ParameterValue};
    crate::pg_settings::ClusterPostgres {
        parameters: [(
            ParameterName::new("work_mem").unwrap(),
            ParameterValue::new("work_mem", &format!("{n}kB")).unwrap(),
        )]
        .into_iter()
        .collect(),
        pg_hba: vec![
            HbaLine::new(&format!("host all all 10.0.{}.0/24 scram-sha-256", n % 256)).unwrap(),
        ],
    }
}

fn permanent_slots(n: u64) -> crate::PermanentSlots {
    use crate::slots::{PermanentSlot, SlotIdentifier};
    let logical = PermanentSlot::Logical {
        plugin: SlotIdentifier::new("plugin", "pgoutput").unwrap(),
        database: SlotIdentifier::new("database", &format!("db{n}")).unwrap(),
    };
    crate::PermanentSlots::new(
        [
            (
                crate::SlotName::new("archiver").unwrap(),
                PermanentSlot::Physical,
            ),
            (
                crate::SlotName::new(&format!("app{}", n % 1000)).unwrap(),
                logical,
            ),
        ]
        .into_iter()
        .collect(),
    )
    .unwrap()
}

#[test]
fn sync_documents_stay_version_1_unless_they_claim_a_quorum() {
    let n: NodeId = "10.0.0.1:5432".parse().unwrap();
    let standbys: BTreeSet<NodeId> = ["10.0.0.2:5432", "10.0.0.3:5432"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let all = SyncState::all_of(n, standbys.clone());
    let text = String::from_utf8(encode(&all).unwrap()).unwrap();
    assert!(
        text.contains("\"v\":1") && !text.contains("quorum"),
        "{text}"
    );
    // A quorum equal to the set is "all of them", spelt the old way.
    let same = SyncState {
        quorum: Some(2),
        ..all.clone()
    };
    assert_eq!(encode(&same).unwrap(), encode(&all).unwrap());
    let one = SyncState {
        quorum: Some(1),
        ..all.clone()
    };
    let text = String::from_utf8(encode(&one).unwrap()).unwrap();
    assert!(
        text.contains("\"v\":2") && text.contains("\"quorum\":1"),
        "{text}"
    );
    assert_eq!(
        decode::<SyncState>(PATH, text.as_bytes())
            .unwrap()
            .holders(),
        1
    );
    assert_eq!(
        decode::<SyncState>(PATH, &encode(&all).unwrap())
            .unwrap()
            .holders(),
        2
    );
    // A quorum larger than the set is garbage, and so is a version from the future.
    let hostile = br#"{"v":2,"primary":"10.0.0.1:5432","standbys":["10.0.0.2:5432"],"quorum":2}"#;
    assert!(decode::<SyncState>(PATH, hostile).is_err());
    let future = br#"{"v":3,"primary":"10.0.0.1:5432","standbys":[]}"#;
    assert!(decode::<SyncState>(PATH, future).is_err());
    // synchronous_node_count 0 is refused.
    assert!(decode::<GroupConfig>(PATH, br#"{"v":1,"synchronous_node_count":0}"#).is_err());
}

#[test]
fn a_standby_cluster_names_a_valid_node_or_group_and_is_version_2() {
    let of_group: GroupConfig =
        decode(PATH, br#"{"v":2,"standby_cluster":{"group":"main"}}"#).unwrap();
    assert_eq!(
        of_group.standby_cluster,
        Some(StandbyOf::Group(GroupName::new("main").unwrap()))
    );
    let of_node: GroupConfig = decode(
        PATH,
        br#"{"v":2,"standby_cluster":{"node":"10.0.0.5:5432"}}"#,
    )
    .unwrap();
    assert_eq!(
        of_node.standby_cluster,
        Some(StandbyOf::Node("10.0.0.5:5432".parse().unwrap()))
    );
    // Hostile or malformed sources make the whole document unreadable.
    for hostile in [
        &br#"{"v":2,"standby_cluster":{"group":"main/../x"}}"#[..],
        br#"{"v":2,"standby_cluster":{"node":"evil.example:5432\nhost=x"}}"#,
        br#"{"v":2,"standby_cluster":{"node":"10.0.0.5:5432","group":"main"}}"#,
        br#"{"v":2,"standby_cluster":{"host":"10.0.0.5"}}"#,
        br#"{"v":2,"standby_cluster":"main"}"#,
    ] {
        assert!(
            decode::<GroupConfig>(PATH, hostile).is_err(),
            "{}",
            String::from_utf8_lossy(hostile)
        );
    }
    // Written as version 2 only when set, so older deadmen refuse a standby cluster's config
    // rather than promote in it, and keep reading a normal group's.
    let encoded = String::from_utf8(encode(&of_group).unwrap()).unwrap();
    assert!(encoded.contains(r#""v":2"#), "{encoded}");
    let normal = String::from_utf8(encode(&GroupConfig::default()).unwrap()).unwrap();
    assert!(normal.contains(r#""v":1"#), "{normal}");
    round_trip(&of_node);
}
