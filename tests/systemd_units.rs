//! The packaged systemd units stay hardened: `systemd-analyze security --offline=yes` rates each
//! at an exposure of 2.0 or less, and every `ReadWritePaths` entry that may not exist on a host
//! carries the `-` prefix (a missing path would otherwise fail the unit's start).

use std::path::PathBuf;
use std::process::Command;

fn unit(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/systemd")
        .join(name)
}

/// The overall exposure `systemd-analyze` prints for `unit`.
fn exposure(unit: &PathBuf) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
        .expect("systemd-analyze (package systemd; scripts/install-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"))
}

#[test]
fn both_units_expose_at_most_two() {
    for name in ["zgres-deadman.service", "zgres-sync.service"] {
        let level = exposure(&unit(name));
        assert!(level <= 2.0, "{name}: exposure {level}");
    }
}

#[test]
fn read_write_paths_that_may_be_missing_are_optional() {
    for name in ["zgres-deadman.service", "zgres-sync.service"] {
        let text = std::fs::read_to_string(unit(name)).unwrap();
        for line in text.lines().filter(|l| l.starts_with("ReadWritePaths=")) {
            for path in line["ReadWritePaths=".len()..].split_whitespace() {
                // The unit's own StateDirectory is created by systemd before the namespace.
                assert!(
                    path.starts_with('-') || path == "/var/lib/zgres",
                    "{name}: {path} fails the start where it does not exist"
                );
            }
        }
    }
}
