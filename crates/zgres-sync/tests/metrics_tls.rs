//! zgres-sync's metrics endpoint over TLS (`[sync] metrics_tls_cert_file`,
//! `metrics_tls_key_file`): HTTPS only, verified against the test's own CA. The endpoint
//! serves before ZooKeeper answers, so none is needed here.

use std::time::Duration;

use zgres_testkit::poll;
use zgres_testkit::ports::free_port;
use zgres_testkit::process::ManagedProcess;
use zgres_testkit::tls::{curl_status, issue};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = issue(dir.path(), "metrics-ca");
    let port = free_port().unwrap();
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[zookeeper]\nconnect = \"127.0.0.1:{}\"\n[sync]\nsnapshot_file = \"{}\"\n\
             metrics_listen = \"127.0.0.1:{port}\"\nmetrics_tls_cert_file = \"{}\"\n\
             metrics_tls_key_file = \"{}\"\n",
            free_port().unwrap(),
            dir.path().join("snapshot.json").display(),
            dir.path().join("api.crt").display(),
            dir.path().join("api.key").display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("sync.log");
    let _sync = ManagedProcess::spawn(
        "zgres-sync",
        env!("CARGO_BIN_EXE_zgres-sync"),
        ["--config", config.to_str().unwrap()],
        &[],
        None,
        &log,
    )
    .unwrap();
    let https = format!("https://127.0.0.1:{port}/metrics");
    poll::until(
        "HTTPS /metrics to answer 200",
        Duration::from_secs(30),
        || std::future::ready((curl_status(&https, &ca) == "200").then_some(())),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    let plain = curl_status(&format!("http://127.0.0.1:{port}/metrics"), &ca);
    assert_ne!(plain, "200", "plain HTTP must not be served");
}
