//! PostgreSQL write-ahead-log positions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A position in PostgreSQL's write-ahead log: a 64-bit byte offset.
///
/// Its text form is PostgreSQL's `X/X` (upper and lower 32 bits in hex, e.g. `16/B374D848`), and
/// that is also how it is stored in JSON, so documents stay readable and carry no precision
/// problems for JSON tools that hold numbers as doubles. Ordering and arithmetic use the full
/// 64-bit value, so `1/0` sorts after `0/FFFFFFFF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid/zero position PostgreSQL prints as `0/0`.
    pub const ZERO: Lsn = Lsn(0);

    /// Bytes of WAL from `other` up to `self`, or 0 when `other` is ahead.
    pub fn bytes_after(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

/// Why a string is not a valid `X/X` LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid LSN {input:?}: expected two hex numbers of at most 8 digits, like \"16/B374D848\""
)]
pub struct LsnParseError {
    /// The rejected text (truncated to 64 characters).
    pub input: String,
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError {
            input: s.chars().take(64).collect(),
        };
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u32::from_str_radix(part, 16).map_err(|_| err())
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Through `pad` so table columns (`{:<12}`) line up.
        f.pad(&format!("{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_postgres_text_form() {
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn::ZERO);
        assert_eq!("16/B374D848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!("16/b374d848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0/0/0",
            "g/0",
            "0/123456789",
            "-1/0",
            "0x1/0",
            " 1/0",
            "1/0 ",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn orders_across_the_4_gib_boundary() {
        let below: Lsn = "0/FFFFFFFF".parse().unwrap();
        let above: Lsn = "1/0".parse().unwrap();
        assert!(above > below);
        assert_eq!(above.bytes_after(below), 1);
        assert_eq!(below.bytes_after(above), 0);
    }

    proptest! {
        #[test]
        fn text_round_trips(v in any::<u64>()) {
            let lsn = Lsn(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
        }

        #[test]
        fn order_matches_high_then_low_halves(a in any::<u64>(), b in any::<u64>()) {
            let split = |v: u64| (v >> 32, v & 0xFFFF_FFFF);
            prop_assert_eq!(Lsn(a).cmp(&Lsn(b)), split(a).cmp(&split(b)));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Lsn>();
        }
    }
}
