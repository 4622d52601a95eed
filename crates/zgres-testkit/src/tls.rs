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
    let run = |args: &[&str]| {
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
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca_key, ca_crt) = (format!("{name}.key"), format!("{name}.crt"));
    let subject = format!("/CN={name}");
    let mut args = vec![
        "req", "-x509", "-days", "2", "-subj", &subject, "-keyout", &ca_key, "-out", &ca_crt,
    ];
    args.extend(ec);
    run(&args);
    let mut args = vec![
        "req",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "api.key",
        "-out",
        "api.csr",
    ];
    args.extend(ec);
    run(&args);
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "api.csr",
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "api.crt",
    ]);
    dir.join(ca_crt)
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
