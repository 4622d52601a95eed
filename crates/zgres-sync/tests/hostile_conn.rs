//! ZooKeeper content is hostile input: `/conn` documents with a newline-injected host, a
//! foreign host, an oversized database name, or written as a persistent znode never reach
//! pgbouncer's databases file or the HAProxy configuration. Each is ignored with a log line
//! naming its znode and counted, and the daemon keeps running.

use std::time::Duration;

use zgres_schema::documents::{ConnInfo, Tags};
use zgres_schema::encode;
use zgres_testkit::poll;
use zgres_testkit::process::ManagedProcess;
use zgres_testkit::znodes;
use zgres_testkit::zookeeper::ZkCluster;
use zookeeper_client as zk;

const DEADLINE: Duration = Duration::from_secs(30);

/// `GET /metrics` from the daemon; `None` when it does not answer.
fn scrape(port: u16) -> Option<String> {
    zgres_testkit::http::get(port, "/metrics")
}

fn conn(host: &str, port: u16, dbname: Option<String>) -> Vec<u8> {
    encode(&ConnInfo {
        role: None,
        api_port: None,
        host: host.into(),
        port,
        dbname,
        tags: Tags::default(),
    })
    .unwrap()
}

#[tokio::test]
async fn hostile_connection_info_leaves_the_proxy_configuration_untouched() {
    let zk_cluster = ZkCluster::standalone().await.unwrap();
    let client = zk::Client::connect(&zk_cluster.connect_string())
        .await
        .unwrap();
    znodes::make_dirs(&client).await;
    znodes::add_node(&client, "main", 5101).await;
    znodes::add_node(&client, "main", 5102).await;
    znodes::set_lock(&client, "main", 5101).await;

    let dir = tempfile::tempdir().unwrap();
    let databases = dir.path().join("databases.ini");
    let haproxy = dir.path().join("haproxy.cfg");
    let metrics_port = zgres_testkit::ports::free_port().unwrap();
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[zookeeper]\nconnect = \"{}\"\n\
             [sync]\nsnapshot_file = \"{}\"\nretry_max_ms = 500\ndebounce_ms = 20\n\
             metrics_listen = \"127.0.0.1:{metrics_port}\"\n\
             [pgbouncer]\ndatabases_file = \"{}\"\n\
             [haproxy]\nconfig_file = \"{}\"\nreload_command = [\"/bin/true\"]\n\
             [log]\nlevel = \"debug\"\n",
            zk_cluster.connect_string(),
            dir.path().join("snapshot.json").display(),
            databases.display(),
            haproxy.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("sync.log");
    let sync = ManagedProcess::spawn(
        "zgres-sync",
        env!("CARGO_BIN_EXE_zgres-sync"),
        ["--config", config.to_str().unwrap()],
        &[],
        None,
        &log,
    )
    .unwrap();
    let read = |path: &std::path::Path| std::fs::read(path).unwrap_or_default();
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();
    poll::until(
        "both files naming the primary and the replica",
        DEADLINE,
        || {
            let pgbouncer = String::from_utf8_lossy(&read(&databases)).into_owned();
            let proxy = String::from_utf8_lossy(&read(&haproxy)).into_owned();
            std::future::ready(
                (pgbouncer.contains("main = host=127.0.0.1 port=5101")
                    && pgbouncer.contains("main-ro = host=127.0.0.1 port=5102")
                    && proxy.contains("127.0.0.1:5102"))
                .then_some(()),
            )
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", show_log()));
    let (pgbouncer_before, haproxy_before) = (read(&databases), read(&haproxy));

    let hostile = [
        (5103, conn("127.0.0.1\nlisten_addr = *", 5103, None)),
        (5104, conn("10.9.9.9", 5104, None)),
        (5105, conn("127.0.0.1", 5105, Some("d".repeat(10_000)))),
    ];
    for (port, data) in &hostile {
        znodes::put(&client, &format!("/zgres/conn/main_127.0.0.1:{port}"), data).await;
    }
    // Valid content, but persistent: it would outlive any deadman.
    client
        .create(
            "/zgres/conn/main_127.0.0.1:5106",
            &conn("127.0.0.1", 5106, None),
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();

    for port in [5103, 5104, 5105, 5106] {
        let znode = format!("/zgres/conn/main_127.0.0.1:{port}");
        poll::until(&format!("{znode} to be reported"), DEADLINE, || {
            std::future::ready(
                show_log()
                    .lines()
                    .any(|l| l.contains("ignoring unusable znode") && l.contains(&znode))
                    .then_some(()),
            )
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", show_log()));
    }
    let text = show_log();
    for rule in [
        "is not an IP address or a valid DNS name",
        "10.9.9.9 is not the address of node",
        "is not 1 to 63 characters",
        "not ephemeral",
    ] {
        assert!(text.contains(rule), "no log line says {rule:?}:\n{text}");
    }
    let metrics = poll::until("the daemon to answer with four counted", DEADLINE, || {
        std::future::ready(
            scrape(metrics_port).filter(|m| m.contains("zgres_sync_unreadable_znodes_total 4")),
        )
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n{}",
            scrape(metrics_port).unwrap_or_default(),
            show_log()
        )
    });
    assert!(metrics.contains("zgres_sync_unreadable_znodes_total 4"));
    assert_eq!(
        String::from_utf8_lossy(&read(&databases)),
        String::from_utf8_lossy(&pgbouncer_before),
        "pgbouncer's databases file changed"
    );
    assert_eq!(
        String::from_utf8_lossy(&read(&haproxy)),
        String::from_utf8_lossy(&haproxy_before),
        "the HAProxy configuration changed"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{}", sync.pid())).exists(),
        "zgres-sync exited:\n{text}"
    );
    drop(client);
}
