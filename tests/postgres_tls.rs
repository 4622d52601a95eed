//! PostgreSQL over TLS only: every server's `pg_hba.conf` takes TCP connections only over TLS
//! with a client certificate (`hostssl ... cert`), with a CA the test makes. The deadmen
//! bootstrap and clone the group (pg_basebackup), stream (`primary_conninfo`), probe, fail over
//! and rejoin the old primary (pg_rewind and its source check), and pgbouncer, kept by
//! zgres-sync, reaches the primary with `server_tls_sslmode = verify-full`, all with
//! `[postgres] sslmode = "verify-full"`.

use tokio_postgres::NoTls;
use zgres_testkit::group::checks::first_primary;
use zgres_testkit::group::{Group, Timing, TlsOnlyPostgres, DEADLINE};
use zgres_testkit::{poll, tls};
use zgres_tests::e2e::{through, BouncerWithSync};

/// Per node: (TLS connections, of which with the client certificate `CN=postgres`, all
/// connections) of `application_name`s matching `pattern`, as seen by the server.
async fn ssl_connections(group: &Group, i: usize, query: &str) -> (i64, i64) {
    let client = group.nodes[i].client().await.expect("node answers");
    let row = client.query_one(query, &[]).await.unwrap();
    (row.get(0), row.get(1))
}

const REPLICATION_OVER_TLS: &str =
    "SELECT count(*) FILTER (WHERE s.ssl AND s.client_dn = '/CN=postgres'), count(*)
       FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)";
const DEADMAN_OVER_TLS: &str =
    "SELECT count(*) FILTER (WHERE s.ssl AND s.client_dn = '/CN=postgres'), count(*)
       FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
      WHERE a.application_name = 'zgres-deadman'";

/// Waits until a write through pgbouncer's writer database lands on the primary at `port`.
async fn write_reaches(proxy: &BouncerWithSync, port: u16) {
    let bouncer = proxy.bouncer.port();
    poll::until(
        "a write through pgbouncer to the primary",
        DEADLINE,
        || async {
            let (reached, in_recovery) = through(bouncer, "main", true).await?;
            (reached == i32::from(port) && !in_recovery).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_on_tls_only_postgres_bootstraps_streams_fails_over_and_rejoins() {
    let files = TlsOnlyPostgres::make();
    let mut group = Group::prepare_empty(3, Timing::default()).await;
    files.apply(&mut group);
    group.start_all_at_once();
    let primary = first_primary(&group).await;
    let replicas: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
    for &i in &replicas {
        group.wait_following(i, primary).await;
    }
    // Both replicas stream over TLS with their certificate; the deadman probes over TLS too.
    assert_eq!(
        ssl_connections(&group, primary, REPLICATION_OVER_TLS).await,
        (2, 2)
    );
    let (tls, all) = ssl_connections(&group, primary, DEADMAN_OVER_TLS).await;
    assert!(
        all >= 1 && tls == all,
        "deadman connections: {tls} of {all} over TLS"
    );

    // The servers really take nothing else over TCP.
    let plain = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
            group.nodes[primary].port()
        ),
        NoTls,
    )
    .await
    .err()
    .expect("a plain-text connection is refused");
    assert!(
        format!("{plain:?}").contains("pg_hba.conf rejects connection"),
        "{plain:?}"
    );

    let proxy = BouncerWithSync::start_with_settings(
        &group.zk.connect_string(),
        &files.pgbouncer_settings(),
    );
    write_reaches(&proxy, group.nodes[primary].port()).await;

    group.kill_node(primary);
    let new = group.wait_primary(&[primary]).await;
    let other = replicas.iter().copied().find(|&i| i != new).unwrap();
    group.wait_following(other, new).await;
    write_reaches(&proxy, group.nodes[new].port()).await;

    // The old primary comes back: rewound (or found not to need it) over TLS, it follows.
    group.start(primary);
    group.wait_following(primary, new).await;
    assert_eq!(
        ssl_connections(&group, new, REPLICATION_OVER_TLS).await,
        (2, 2)
    );
    assert!(
        group.nodes[primary].log_text().contains("pg_rewind"),
        "the old primary's deadman ran pg_rewind\n{}",
        group.nodes[primary].log_text()
    );

    // A node configured with the wrong CA says so once, naming the CA file.
    let wrong_ca = tls::make_ca(files.dir(), "otherca");
    group.kill_node(other);
    group.nodes[other].extra_config = files.deadman_config(&wrong_ca);
    let wrong_ca = wrong_ca.display().to_string();
    group.start(other);
    let node = &group.nodes[other];
    poll::until("the wrong CA to be reported", DEADLINE, || async {
        node.log_text()
            .lines()
            .any(|l| {
                l.contains("cannot connect to PostgreSQL over TLS")
                    && l.contains("UnknownIssuer")
                    && l.contains(&format!("postgres.sslrootcert = {wrong_ca}"))
            })
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", node.log_text()));
    let warnings = node
        .log_text()
        .matches("cannot connect to PostgreSQL over TLS")
        .count();
    assert_eq!(warnings, 1, "warned once\n{}", node.log_text());
}
