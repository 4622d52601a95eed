//! `zgresctl acl apply` moves a tree created open to the writer's ACL policy: for one group,
//! then for everything; running it again changes nothing; it refuses to run without an
//! identity, and to take read access from the tree's readers unless told to.

use zgres_testkit::znodes;
use zgres_testkit::zookeeper::ZkCluster;
use zookeeper_client as zk;

fn zgresctl(connect: &str, args: &[&str]) -> (i32, String) {
    zgres_testkit::zgresctl::run(connect, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_apply_moves_an_open_tree_to_the_policy_and_is_idempotent() {
    let cluster = ZkCluster::standalone().await.unwrap();
    let connect = cluster.connect_string();
    let open = zk::Client::connect(&connect).await.unwrap();
    znodes::make_dirs(&open).await;
    znodes::add_node(&open, "main", 5001).await;
    znodes::set_lock(&open, "main", 5001).await;
    znodes::set_lock(&open, "other", 5002).await;

    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("zk.password");
    std::fs::write(&password, "writer-secret\n").unwrap();
    let reader_id = zgres_zk::digest_id("monitor", "reader-secret");
    let identity = [
        "--zk-user",
        "zgres",
        "--zk-password-file",
        password.to_str().unwrap(),
        "--zk-reader",
        &reader_id,
    ];

    let (code, text) = zgresctl(&connect, &["acl", "apply", "main"]);
    assert_eq!(code, 64, "{text}");
    assert!(text.contains("acl apply needs an identity"), "{text}");

    let args: Vec<&str> = identity
        .iter()
        .copied()
        .chain(["acl", "apply", "main"])
        .collect();
    let (code, text) = zgresctl(&connect, &args);
    assert_eq!(code, 0, "{text}");
    // The root, /lock, /conn, the lock and the conn of main.
    assert!(text.contains("5 znodes checked, 5 changed"), "{text}");

    let anonymous = zk::Client::connect(&connect).await.unwrap();
    let main_lock = "/zgres/lock/main";
    assert!(
        matches!(
            anonymous.set_data(main_lock, b"{}", None).await,
            Err(zk::Error::NoAuth)
        ),
        "main's lock is still open"
    );
    assert!(
        anonymous.get_data("/zgres/lock/other").await.is_ok(),
        "another group's lock was changed by `acl apply main`"
    );
    let reader = zk::Client::connector()
        .with_auth("digest", b"monitor:reader-secret")
        .connect(&connect)
        .await
        .unwrap();
    assert!(
        reader.get_data(main_lock).await.is_ok(),
        "the reader cannot read"
    );

    let (code, text) = zgresctl(&connect, &args);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("5 znodes checked, 0 changed"),
        "not idempotent: {text}"
    );

    let all: Vec<&str> = identity
        .iter()
        .copied()
        .chain(["acl", "apply", "--all"])
        .collect();
    let (code, text) = zgresctl(&connect, &all);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("6 znodes checked, 1 changed"), "{text}");
    assert!(
        matches!(
            anonymous.get_data("/zgres/lock/other").await,
            Err(zk::Error::NoAuth)
        ),
        "--all left another group's lock open"
    );

    // Run without the readers, it refuses rather than lock them out, naming them...
    let without_readers: Vec<&str> = identity[..4]
        .iter()
        .copied()
        .chain(["acl", "apply", "--all"])
        .collect();
    let (code, text) = zgresctl(&connect, &without_readers);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains(&format!("readers {reader_id} would lose read access")),
        "{text}"
    );
    assert!(text.contains("--drop-readers"), "{text}");
    assert!(reader.get_data(main_lock).await.is_ok(), "changed anyway");
    // ...unless told to drop them.
    let dropping: Vec<&str> = without_readers
        .iter()
        .copied()
        .chain(["--drop-readers"])
        .collect();
    let (code, text) = zgresctl(&connect, &dropping);
    assert_eq!(code, 0, "{text}");
    assert!(
        matches!(reader.get_data(main_lock).await, Err(zk::Error::NoAuth)),
        "the reader still reads after --drop-readers"
    );
    drop(open);
}
