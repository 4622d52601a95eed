//! A child gets the allowed part of the daemon's environment and what the caller passes,
//! never a secret the daemon itself was given.

use std::path::Path;
use std::time::Duration;

#[tokio::test]
async fn children_get_only_the_allowed_environment_and_what_is_passed() {
    // Set before any child is spawned; this test binary runs no other test.
    std::env::set_var("ZGRES_PG_PASSWORD", "s3cret");
    std::env::set_var("LC_MESSAGES", "C");
    let out = zgres_process::run_with_env(
        Path::new("/usr/bin/env"),
        std::iter::empty::<&str>(),
        [("ZGRES_SOURCE_PORT", "5432")],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let env = String::from_utf8(out).unwrap();
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(
        !env.contains("s3cret"),
        "the secret reached the child:\n{env}"
    );
    assert!(names.contains(&"PATH"), "{env}");
    assert!(names.contains(&"LC_MESSAGES"), "{env}");
    assert!(names.contains(&"ZGRES_SOURCE_PORT"), "{env}");
    for name in names {
        assert!(
            zgres_process::ALLOWED_ENV.contains(&name)
                || name.starts_with("LC_")
                || name == "ZGRES_SOURCE_PORT",
            "{name} is not allowed:\n{env}"
        );
    }
}
