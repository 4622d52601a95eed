//! The health API over TLS (`[api] tls_cert_file`, `tls_key_file`): HTTPS only, verified
//! against the test's own CA; a certificate rotated under the same file names is taken by a
//! reload (SIGHUP) without a restart; a file that cannot be used is a configuration error
//! naming it.

use std::process::Command;

use nix::sys::signal::Signal;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;
use zgres_testkit::tls::{curl_status as curl, issue};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_only_and_takes_a_rotated_certificate_on_reload() {
    let certs = tempfile::tempdir().unwrap();
    let first_ca = issue(certs.path(), "first-ca");
    let mut group = Group::prepare(1, Timing::default()).await;
    group.nodes[0].extra_config = format!(
        "[api]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        certs.path().join("api.crt").display(),
        certs.path().join("api.key").display()
    );
    group.start_all().await;
    assert_eq!(group.wait_primary(&[]).await, 0);
    let port = group.nodes[0].api_port;
    let https = format!("https://127.0.0.1:{port}/primary");
    poll::until("HTTPS /primary to answer 200", DEADLINE, || {
        std::future::ready((curl(&https, &first_ca) == "200").then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    let plain = curl(&format!("http://127.0.0.1:{port}/primary"), &first_ca);
    assert_ne!(plain, "200", "plain HTTP must not be served");

    // Rotated under the same names, by another CA: taken at the next reload.
    let second_ca = issue(certs.path(), "second-ca");
    assert_eq!(
        curl(&https, &second_ca),
        "000",
        "the new certificate before the reload"
    );
    group.nodes[0]
        .deadman
        .as_ref()
        .unwrap()
        .signal(Signal::SIGHUP)
        .unwrap();
    poll::until("the rotated certificate after the reload", DEADLINE, || {
        std::future::ready((curl(&https, &second_ca) == "200").then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
    assert_eq!(
        curl(&https, &first_ca),
        "000",
        "the old CA no longer verifies it"
    );
}

#[test]
fn a_certificate_file_that_cannot_be_used_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/zgres-deadman.toml"
    );
    let garbage = dir.path().join("not-a-cert.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let config = std::fs::read_to_string(example).unwrap().replace(
        "listen = \"127.0.0.1:8008\"\n",
        &format!(
            "listen = \"127.0.0.1:8008\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            garbage.display(),
            garbage.display()
        ),
    );
    let file = dir.path().join("deadman.toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zgres-deadman"))
        .args(["--check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("api.tls_cert_file") && stderr.contains("not-a-cert.pem"),
        "{stderr}"
    );
}

#[test]
fn a_private_key_others_may_read_is_a_config_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    zgres_testkit::tls::issue(dir.path(), "key-ca");
    let (cert, key) = (dir.path().join("api.crt"), dir.path().join("api.key"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/zgres-deadman.toml"
    );
    let config = std::fs::read_to_string(example).unwrap().replace(
        "listen = \"127.0.0.1:8008\"\n",
        &format!(
            "listen = \"127.0.0.1:8008\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let file = dir.path().join("deadman.toml");
    std::fs::write(&file, config).unwrap();
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_zgres-deadman"))
            .args(["--check-config", file.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = check();
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("api.key") && stderr.contains("others may access"),
        "{stderr}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, stderr) = check();
    assert_ne!(code, Some(78), "a 0600 key is refused: {stderr}");
}
