//! Running the workspace's `zgresctl` binary from a test.

/// Runs `zgresctl --zookeeper ZOOKEEPER ARGS...` to completion; returns its exit code (-1 when
/// killed by a signal) and its standard output followed by its standard error.
///
/// # Panics
/// When the binary cannot be started.
pub fn run(zookeeper: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(crate::artifacts::binary("zgresctl"))
        .args(["--zookeeper", zookeeper])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
