//! The last check before a value from ZooKeeper is written into a configuration file.
//!
//! `/conn` documents are checked before they reach a snapshot
//! ([`zgres_schema::documents::ConnInfo::check`]); renderers check again, so that no future
//! field or path can carry a newline or a separator into pgbouncer's or HAProxy's files.

/// Whether `value` may be written into a configuration file: no control characters, white
/// space, or the comment and quoting characters of common formats (`#`, `;`, quotes,
/// backslash, braces), any of which would let a value start a directive of its own.
pub fn is_safe_config_value(value: &str) -> bool {
    !value.chars().any(|c| {
        c.is_control()
            || c.is_whitespace()
            || matches!(c, '#' | ';' | '"' | '\'' | '\\' | '{' | '}')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_pass_and_directive_starters_do_not() {
        for ok in [
            "10.0.0.1",
            "db-1.example.com",
            "[::1]:5432",
            "app_1",
            "main-ro",
        ] {
            assert!(is_safe_config_value(ok), "{ok}");
        }
        for bad in [
            "a\nb", "a b", "a#b", "a;b", "a\"b", "a\tb", "a\u{0}b", "a}b",
        ] {
            assert!(!is_safe_config_value(bad), "{bad:?}");
        }
    }
}
