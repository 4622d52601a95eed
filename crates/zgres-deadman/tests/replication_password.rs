//! With a password configured, the group bootstraps with password authentication on TCP, a
//! replica clones and streams, and the password is in no `primary_conninfo`: replicas use a
//! password file beside the data directory, mode 0600, written exclusively.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use zgres_testkit::group::{Group, Node, Timing, DEADLINE};
use zgres_testkit::poll;

const PASSWORD: &str = "s3cr:et\\pw";

/// A connection over the node's Unix socket (trusted locally, whatever TCP requires).
async fn local_client(node: &Node) -> Option<tokio_postgres::Client> {
    let conninfo = format!(
        "host={} port={} user=postgres dbname=postgres connect_timeout=1",
        node.pg.socket_dir().display(),
        node.port()
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stream_with_a_password_file_and_no_password_in_their_conninfo() {
    let mut group = Group::prepare_empty(2, Timing::default()).await;
    for node in &mut group.nodes {
        node.extra_config = "[postgres]\npassword_env = \"ZGRES_TEST_PG_PASSWORD\"\n".into();
        node.env
            .push(("ZGRES_TEST_PG_PASSWORD".into(), PASSWORD.into()));
    }
    group.start_all_at_once();
    let (primary, replica) =
        poll::until("one node bootstrapped, the other cloned", DEADLINE, || {
            let logs: Vec<String> = group.nodes.iter().map(Node::log_text).collect();
            let bootstrapped = logs.iter().position(|l| l.contains("bootstrap done"));
            let cloned = logs.iter().position(|l| l.contains("clone done"));
            std::future::ready(bootstrapped.zip(cloned))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));

    let primary_port = i32::from(group.nodes[primary].port());
    poll::until(
        "the replica streaming from the primary",
        DEADLINE,
        || async {
            let client = local_client(&group.nodes[replica]).await?;
            let row = client
                .query_opt("SELECT status, sender_port FROM pg_stat_wal_receiver", &[])
                .await
                .ok()??;
            (row.get::<_, String>(0) == "streaming" && row.get::<_, i32>(1) == primary_port)
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));

    // TCP needs the password: the replica's WAL receiver can only have used the file.
    assert!(
        group.nodes[primary].client().await.is_none(),
        "a TCP connection without the password was accepted: the test proves nothing"
    );
    let data_dir = group.nodes[replica].pg.data_dir();
    let auto = std::fs::read_to_string(data_dir.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("passfile="), "{auto}");
    assert!(
        !auto.contains("s3cr"),
        "the password is in primary_conninfo:\n{auto}"
    );
    let client = local_client(&group.nodes[replica]).await.unwrap();
    let conninfo: String = client
        .query_one("SHOW primary_conninfo", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!conninfo.contains("s3cr"), "{conninfo}");

    let passfile = data_dir.with_file_name(format!(
        "{}.pgpass",
        data_dir.file_name().unwrap().to_string_lossy()
    ));
    let meta = std::fs::metadata(&passfile).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{}",
        passfile.display()
    );
    let data_owner = std::fs::metadata(&data_dir).unwrap().uid();
    assert_eq!(meta.uid(), data_owner, "owned by PostgreSQL's user");
    let leftovers: Vec<String> = std::fs::read_dir(passfile.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".zgres-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary secret files left: {leftovers:?}"
    );

    // The deadman was given the password in its environment; PostgreSQL was not.
    for node in &group.nodes {
        let pid = node.postmaster_pid().expect("a running postmaster");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(
            !environ.contains("ZGRES_TEST_PG_PASSWORD") && !environ.contains("s3cr"),
            "{}'s postmaster inherited the password variable",
            node.name
        );
        assert!(environ.contains("PATH="), "{environ}");
    }
}
