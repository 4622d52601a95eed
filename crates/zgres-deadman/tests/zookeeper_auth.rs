//! With ZooKeeper authentication, every znode the deadmen create is theirs alone (and readable
//! by the configured readers): a client without credentials and a reader-identity client can
//! neither delete nor overwrite the lock, a state, a connection info, the config or the
//! database id, nor create anything in the group's directories, while a writer commits on the
//! primary throughout; the primary keeps its lock and no write is refused. zgres-sync follows
//! the group as the reader identity. Once with ZooKeeper's digest scheme, once with SASL
//! DIGEST-MD5 (identities `sasl:USER`, the password never sent).

use zgres_schema::Znode;
use zgres_testkit::artifacts::binary;
use zgres_testkit::group::checks::assert_cannot_write;
use zgres_testkit::group::{missing_acks, Group, Timing, Writer, DEADLINE};
use zgres_testkit::poll;
use zgres_testkit::process::ManagedProcess;
use zgres_testkit::zookeeper::ZkCluster;
use zookeeper_client as zk;

const WRITER: &str = "zgres";
const WRITER_PASSWORD: &str = "writer-secret";
const READER: &str = "monitor";
const READER_PASSWORD: &str = "reader-secret";

async fn client(group: &Group, credentials: Option<&str>) -> zk::Client {
    let connector =
        zgres_testkit::group::authenticate(zk::Client::connector(), credentials, group.zk_sasl);
    connector.connect(&group.zk.connect_string()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_writer_identity_can_change_the_group() {
    let zk = ZkCluster::standalone().await.unwrap();
    let reader_id = zgres_zk::digest_id(READER, READER_PASSWORD);
    writer_identity_owns_the_group(zk, false, &reader_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_writer_identity_can_change_the_group_with_sasl() {
    let zk = ZkCluster::standalone_sasl(&[(WRITER, WRITER_PASSWORD), (READER, READER_PASSWORD)])
        .await
        .unwrap();
    writer_identity_owns_the_group(zk, true, &format!("sasl:{READER}")).await;
}

async fn writer_identity_owns_the_group(zk: ZkCluster, sasl: bool, reader_id: &str) {
    let mut group = Group::prepare_on(zk, 2, Timing::default()).await;
    group.zk_sasl = sasl;
    for node in &mut group.nodes {
        node.extra_config = format!(
            "[zookeeper]\nuser = \"{WRITER}\"\npassword_env = \"ZGRES_TEST_ZK_PASSWORD\"\n\
             readers = [\"{reader_id}\"]\nsasl = {sasl}\n"
        );
        node.env
            .push(("ZGRES_TEST_ZK_PASSWORD".into(), WRITER_PASSWORD.into()));
    }
    group.zk_credentials = Some(format!("{WRITER}:{WRITER_PASSWORD}"));
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    let replica = 1 - primary;
    group.wait_following(replica, primary).await;
    let writer = Writer::start(&group);
    writer.wait_more_acks(primary, 10).await;

    // The writer identity may create the group's config; the others may not touch it.
    let owner = group.zk_client().await;
    let config_path = group.path(Znode::Config);
    owner
        .create(
            &config_path,
            br#"{"v":1}"#,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all()),
        )
        .await
        .unwrap();

    let node = group.nodes[primary].node_id();
    let existing = [
        group.path(Znode::Lock),
        format!("{}/main_{node}", group.layout.dir(zgres_schema::Dir::State)),
        format!("{}/main_{node}", group.layout.dir(zgres_schema::Dir::Conn)),
        group.path(Znode::DatabaseId),
        config_path.clone(),
    ];
    let dirs = [
        zgres_schema::Dir::Lock,
        zgres_schema::Dir::State,
        zgres_schema::Dir::Conn,
        zgres_schema::Dir::Config,
        zgres_schema::Dir::Switchover,
        zgres_schema::Dir::Sync,
        zgres_schema::Dir::Static,
        // A forged request would restart a node's PostgreSQL.
        zgres_schema::Dir::Request,
        // A forged catalog would make zgresctl accept values PostgreSQL refuses.
        zgres_schema::Dir::PgSettings,
        // A forged release record would spare a taker the takeover wait.
        zgres_schema::Dir::Released,
    ];
    let anonymous = client(&group, None).await;
    let reader = client(&group, Some(&format!("{READER}:{READER_PASSWORD}"))).await;
    for (who, attacker) in [("anonymous", &anonymous), ("reader", &reader)] {
        assert_cannot_write(&group, who, attacker, &existing, &dirs).await;
    }
    // The lock belongs to the writer identity of the mechanism in use.
    let (acl, _) = owner.get_acl(&group.path(Znode::Lock)).await.unwrap();
    let writer_scheme = if sasl { "sasl" } else { "digest" };
    assert!(
        acl.iter()
            .any(|a| a.scheme() == writer_scheme && a.id().split(':').next() == Some(WRITER)),
        "the lock's ACL does not name the {writer_scheme} writer: {acl:?}"
    );
    // Readers read; nobody else does.
    let lock = group.path(Znode::Lock);
    assert!(
        reader.get_data(&lock).await.is_ok(),
        "the reader cannot read the lock"
    );
    assert!(
        matches!(anonymous.get_data(&lock).await, Err(zk::Error::NoAuth)),
        "anyone can read the lock"
    );

    // zgres-sync follows the group as the reader identity.
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.json");
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[zookeeper]\nconnect = \"{}\"\nuser = \"{READER}\"\npassword_env = \"ZGRES_TEST_ZK_PASSWORD\"\n\
             sasl = {sasl}\n[sync]\nsnapshot_file = \"{}\"\n",
            group.zk.connect_string(),
            snapshot.display()
        ),
    )
    .unwrap();
    let sync_log = dir.path().join("sync.log");
    let _sync = ManagedProcess::spawn(
        "zgres-sync",
        binary("zgres-sync"),
        ["--config", config.to_str().unwrap()],
        &[("ZGRES_TEST_ZK_PASSWORD", READER_PASSWORD)],
        None,
        &sync_log,
    )
    .unwrap();
    let port = group.nodes[primary].port();
    poll::until(
        "zgres-sync, as the reader, to see the primary",
        DEADLINE,
        || {
            let text = std::fs::read_to_string(&snapshot).unwrap_or_default();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            std::future::ready((value["groups"]["main"]["primary"]["port"] == port).then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(&sync_log).unwrap_or_default()
        )
    });

    writer.wait_more_acks(primary, 10).await;
    assert_eq!(
        group.lock_holder(&owner).await,
        Some(primary),
        "the lock moved"
    );
    let acks = writer.finish().await;
    assert!(acks.iter().any(|a| a.node == primary));
    let missing = missing_acks(&group, &acks, primary).await;
    assert!(
        missing.is_empty(),
        "acknowledged writes lost: {}",
        missing.len()
    );
    let log = group.nodes[primary].log_text();
    assert!(
        !log.contains("no ZooKeeper authentication"),
        "the deadman warned although authenticated"
    );
}
