//! Test certificates (made with the `openssl` command) and HTTPS requests (made with `curl`),
//! for the servers that speak TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes a CA named `name` in `dir` and a certificate for 127.0.0.1 signed by it, written to
/// `api.crt` and `api.key` in `dir` (replacing earlier ones). Returns the CA certificate.
///
/// # Panics
/// When `openssl` fails.
pub fn issue(dir: &Path, name: &str) -> PathBuf {
    let ca = make_ca(dir, name);
    issue_leaf(dir, name, "api", "127.0.0.1");
    ca
}

/// Runs `openssl` with `args` in `dir`, panicking with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new P-256 key, unencrypted (PKCS#8 PEM, which ZooKeeper's PEM key store reads too).
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Makes a self-signed CA `name.crt` / `name.key` in `dir`. Returns the certificate's path.
///
/// # Panics
/// When `openssl` fails.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (ca_key, ca_crt) = (format!("{name}.key"), format!("{name}.crt"));
    let subject = format!("/CN={name}");
    let mut args = vec![
        "req", "-x509", "-days", "2", "-subj", &subject, "-keyout", &ca_key, "-out", &ca_crt,
    ];
    args.extend(EC_KEY);
    openssl(dir, &args);
    dir.join(ca_crt)
}

/// Issues `leaf.crt` / `leaf.key` in `dir`, for subject `CN=common_name` (also its IP
/// subject alternative name when it is an IP address), signed by the CA `ca` of
/// [`make_ca`]. Returns the certificate's and the key's paths.
///
/// # Panics
/// When `openssl` fails.
pub fn issue_leaf(dir: &Path, ca: &str, leaf: &str, common_name: &str) -> (PathBuf, PathBuf) {
    let (key, csr, crt) = (
        format!("{leaf}.key"),
        format!("{leaf}.csr"),
        format!("{leaf}.crt"),
    );
    let subject = format!("/CN={common_name}");
    let mut args = vec!["req", "-subj", &subject, "-keyout", &key, "-out", &csr];
    args.extend(EC_KEY);
    openssl(dir, &args);
    let san = match common_name.parse::<std::net::IpAddr>() {
        Ok(_) => format!("subjectAltName=IP:{common_name}\n"),
        Err(_) => format!("subjectAltName=DNS:{common_name}\n"),
    };
    let extensions = format!("{leaf}.cnf");
    std::fs::write(dir.join(&extensions), san).unwrap();
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extensions,
            "-out",
            &crt,
        ],
    );
    (dir.join(crt), dir.join(key))
}

/// curl's HTTP status for `url`, trusting `ca` (`000` when it cannot connect or verify).
pub fn curl_status(url: &str, ca: &Path) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
            "--cacert",
        ])
        .arg(ca)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
