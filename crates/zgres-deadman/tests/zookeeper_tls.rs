//! TLS to ZooKeeper, against a real ZooKeeper 3.8 that listens only on `secureClientPort`
//! (Netty, certificates made by the test): the deadmen bootstrap and clone a group, fail over,
//! and zgres-sync follows every change, all over TLS; zgresctl reaches it with its TLS
//! options; a wrong CA or a bad file is an error naming the file.

use std::path::Path;
use std::process::Command;

use zgres_testkit::artifacts::binary;
use zgres_testkit::group::checks::first_primary;
use zgres_testkit::group::{zookeeper_tls_keys, Group, Timing, DEADLINE};
use zgres_testkit::poll;
use zgres_testkit::process::ManagedProcess;
use zgres_testkit::zookeeper::ZkCluster;

/// Starts zgres-sync on `group`'s ZooKeeper with `tls_keys` in its `[zookeeper]` section;
/// returns it with its snapshot file's and log's paths.
fn start_sync(
    group: &Group,
    dir: &Path,
    tls_keys: &str,
) -> (ManagedProcess, std::path::PathBuf, std::path::PathBuf) {
    let snapshot = dir.join("snapshot.json");
    let config = dir.join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[zookeeper]\nconnect = \"{}\"\n{tls_keys}[sync]\nsnapshot_file = \"{}\"\n",
            group.zk.connect_string(),
            snapshot.display()
        ),
    )
    .unwrap();
    let log = dir.join("sync.log");
    let sync = ManagedProcess::spawn(
        "zgres-sync",
        binary("zgres-sync"),
        ["--config", config.to_str().unwrap()],
        &[],
        None,
        &log,
    )
    .unwrap();
    (sync, snapshot, log)
}

/// Waits until zgres-sync's snapshot names the node on `port` as the group's primary.
async fn wait_sync_primary(snapshot: &Path, log: &Path, port: u16) {
    poll::until("zgres-sync to name the primary", DEADLINE, || {
        let text = std::fs::read_to_string(snapshot).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        std::future::ready((value["groups"]["main"]["primary"]["port"] == port).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(log).unwrap_or_default()));
}

/// zgresctl with the TLS options for `zk` and then `args`; returns its exit code and output.
fn zgresctl(zk: &ZkCluster, ca: &Path, args: &[&str]) -> (i32, String) {
    let files = zk.client_tls().unwrap();
    let (ca, cert, key) = (
        ca.display().to_string(),
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let tls = [
        "--zk-tls-ca",
        &ca,
        "--zk-tls-cert",
        &cert,
        "--zk-tls-key",
        &key,
    ];
    let all: Vec<&str> = tls.iter().chain(args).copied().collect();
    zgres_testkit::zgresctl::run(&zk.connect_string(), &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_bootstraps_fails_over_and_is_followed_over_tls_only() {
    let zk = ZkCluster::standalone_tls().await.unwrap();
    let mut group = Group::prepare_empty_on(zk, 2, Timing::default());
    group.start_all().await;
    let primary = first_primary(&group).await;
    let replica = 1 - primary;
    group.wait_following(replica, primary).await;

    let dir = tempfile::tempdir().unwrap();
    let (_sync, snapshot, sync_log) =
        start_sync(&group, dir.path(), &zookeeper_tls_keys(&group.zk));
    wait_sync_primary(&snapshot, &sync_log, group.nodes[primary].port()).await;

    // zgresctl reaches the same server with its options.
    let ca = group.zk.client_tls().unwrap().ca.clone();
    let (code, out) = zgresctl(&group.zk, &ca, &["list"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("primary"), "{out}");

    group.kill_node(primary);
    assert_eq!(group.wait_primary(&[primary]).await, replica);
    wait_sync_primary(&snapshot, &sync_log, group.nodes[replica].port()).await;

    // A plain-text client gets nowhere: the server has no plain port.
    let plain = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        zookeeper_client::Client::connector()
            .with_session_timeout(std::time::Duration::from_secs(2))
            .connect(&group.zk.connect_string()),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a plain-text session was opened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_a_bad_tls_file_is_an_error_naming_the_file() {
    let zk = ZkCluster::standalone_tls().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other_ca = zgres_testkit::tls::make_ca(dir.path(), "not-the-zk-ca");

    // The server's certificate is not signed by the CA given: the handshake's reason and the
    // file are named, and zgresctl exits 69 (unreachable).
    let (code, out) = zgresctl(&zk, &other_ca, &["list"]);
    assert_eq!(code, 69, "{out}");
    assert!(out.contains(&other_ca.display().to_string()), "{out}");
    assert!(out.contains("UnknownIssuer"), "{out}");

    // A file that holds no certificate: a usage error naming the option and the file, before
    // any connection.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let (code, out) = zgresctl(&zk, &empty, &["list"]);
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("--zk-tls-ca") && out.contains(&empty.display().to_string()),
        "{out}"
    );

    // zgres-sync's --check-config names the key and the file, and exits 78.
    let config = dir.path().join("sync.toml");
    let missing = dir.path().join("missing-ca.pem");
    std::fs::write(
        &config,
        format!(
            "[zookeeper]\nconnect = \"{}\"\ntls_ca_file = \"{}\"\n[sync]\nsnapshot_file = \"{}\"\n",
            zk.connect_string(),
            missing.display(),
            dir.path().join("s.json").display()
        ),
    )
    .unwrap();
    let out = Command::new(binary("zgres-sync"))
        .args(["--check-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(
        text.contains("zookeeper.tls_ca_file") && text.contains(&missing.display().to_string()),
        "{text}"
    );

    // A running zgres-sync with the wrong CA says why in its log while it retries.
    let mut group = Group::prepare_empty_on(zk, 0, Timing::default());
    let wrong_keys = zookeeper_tls_keys(&group.zk).replace(
        &group.zk.client_tls().unwrap().ca.display().to_string(),
        &other_ca.display().to_string(),
    );
    let (_sync, _, log) = start_sync(&group, dir.path(), &wrong_keys);
    poll::until("zgres-sync to log why it cannot connect", DEADLINE, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        std::future::ready(
            (text.contains("UnknownIssuer") && text.contains("not-the-zk-ca.crt")).then_some(()),
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    group.nodes.clear();
}

/// A client of the TLS-only `zk` presenting the certificate `cert` / `key`.
async fn client_as(zk: &ZkCluster, cert: &Path, key: &Path) -> zookeeper_client::Client {
    let files = zk.client_tls().unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let options = zookeeper_client::TlsOptions::new()
        .with_pem_ca(&read(&files.ca))
        .unwrap()
        .with_pem_identity(&read(cert), &read(key))
        .unwrap();
    zookeeper_client::Client::connector()
        .with_tls(options)
        .secure_connect(&zk.connect_string())
        .await
        .unwrap()
}

/// x509 authentication: deadmen that present a writer certificate (and no digest user) own
/// every znode they create. A client with another certificate from the same CA can neither
/// change nor delete the lock, a state, a connection info or the database id, nor create in
/// any group directory; the reader certificate listed in `readers` reads but cannot write,
/// and zgres-sync follows the group with it; a writer commits on the primary throughout, the
/// lock never moves and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_identities_for_the_acl_policy() {
    use zgres_schema::{Dir, Znode};
    use zgres_testkit::group::checks::assert_cannot_write;
    use zgres_testkit::group::{missing_acks, Writer};
    use zookeeper_client as zk;

    let zk_cluster = ZkCluster::standalone_tls().await.unwrap();
    let (reader_cert, reader_key) = zk_cluster.issue_client_cert("zgres-sync");
    let (intruder_cert, intruder_key) = zk_cluster.issue_client_cert("intruder");
    let mut group = Group::prepare_on(zk_cluster, 2, Timing::default()).await;
    for node in &mut group.nodes {
        node.extra_config = "[zookeeper]\nreaders = [\"x509:CN=zgres-sync\"]\n".into();
    }
    group.start_all().await;
    let primary = group.wait_primary(&[]).await;
    let replica = 1 - primary;
    group.wait_following(replica, primary).await;
    let writer = Writer::start(&group);
    writer.wait_more_acks(primary, 10).await;

    let node = group.nodes[primary].node_id();
    let existing = [
        group.path(Znode::Lock),
        format!("{}/main_{node}", group.layout.dir(Dir::State)),
        format!("{}/main_{node}", group.layout.dir(Dir::Conn)),
        group.path(Znode::DatabaseId),
    ];
    let intruder = client_as(&group.zk, &intruder_cert, &intruder_key).await;
    let reader = client_as(&group.zk, &reader_cert, &reader_key).await;
    let dirs = [
        Dir::Lock,
        Dir::State,
        Dir::Conn,
        Dir::Config,
        Dir::Switchover,
        Dir::Static,
    ];
    for (who, attacker) in [("intruder", &intruder), ("reader", &reader)] {
        assert_cannot_write(&group, who, attacker, &existing, &dirs).await;
    }
    let lock = group.path(Znode::Lock);
    assert!(
        reader.get_data(&lock).await.is_ok(),
        "the reader cannot read the lock"
    );
    assert!(
        matches!(intruder.get_data(&lock).await, Err(zk::Error::NoAuth)),
        "another certificate of the same CA reads the lock"
    );
    let (acl, _) = group.zk_client().await.get_acl(&lock).await.unwrap();
    assert!(
        acl.iter()
            .any(|a| a.scheme() == "x509" && a.id() == "CN=zgres-client"),
        "the lock belongs to the writer certificate: {acl:?}"
    );

    // zgresctl acl apply, as the writer certificate, moves a znode created open to the
    // policy, and changes nothing the second time.
    let open = format!("{}/main", group.layout.dir(Dir::Config));
    group
        .zk_client()
        .await
        .create(
            &open,
            br#"{"v":1}"#,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    assert!(
        intruder.set_data(&open, b"{}", None).await.is_ok(),
        "created open"
    );
    let ca = group.zk.client_tls().unwrap().ca.clone();
    // The same readers as the deadmen's, or their read access would be taken away.
    let apply = ["--zk-reader", "x509:CN=zgres-sync", "acl", "apply", "--all"];
    let (code, out) = zgresctl(&group.zk, &ca, &apply);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 1 changed"), "{out}");
    let (code, out) = zgresctl(&group.zk, &ca, &apply);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 0 changed"), "not idempotent: {out}");
    assert!(
        matches!(
            intruder.set_data(&open, b"{}", None).await,
            Err(zk::Error::NoAuth)
        ),
        "the open znode is still open"
    );

    // zgres-sync follows the group with the reader certificate.
    let dir = tempfile::tempdir().unwrap();
    let ca = group.zk.client_tls().unwrap().ca.display().to_string();
    let keys = format!(
        "tls_ca_file = \"{ca}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        reader_cert.display(),
        reader_key.display()
    );
    let (_sync, snapshot, sync_log) = start_sync(&group, dir.path(), &keys);
    wait_sync_primary(&snapshot, &sync_log, group.nodes[primary].port()).await;

    writer.wait_more_acks(primary, 10).await;
    let owner = group.zk_client().await;
    assert_eq!(
        group.lock_holder(&owner).await,
        Some(primary),
        "the lock moved"
    );
    let acks = writer.finish().await;
    let missing = missing_acks(&group, &acks, primary).await;
    assert!(
        missing.is_empty(),
        "acknowledged writes lost: {}",
        missing.len()
    );
    assert!(
        !group.nodes[primary]
            .log_text()
            .contains("no ZooKeeper authentication"),
        "the deadman warned although its certificate authenticates it"
    );
}
