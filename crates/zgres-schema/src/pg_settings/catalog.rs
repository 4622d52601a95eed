//! What a PostgreSQL server accepts for each parameter (its `pg_settings` rows), and the check
//! of a value against it, so that a value PostgreSQL would refuse (and refuse to start with)
//! never reaches a configuration file. Pure: the rows are read elsewhere.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::Document;

/// `pg_settings.vartype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    /// `on`/`off` and PostgreSQL's other spellings.
    Bool,
    /// A whole number, maybe with a unit.
    Integer,
    /// A number, maybe with a unit.
    Real,
    /// Free text.
    String,
    /// One of `enumvals`.
    Enum,
}

/// One `pg_settings` row, the parts a value check needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingSpec {
    /// Its type.
    pub vartype: VarType,
    /// Its base unit (`8kB`, `kB`, `ms`, `s`, `min`...), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Smallest value, in the base unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value, in the base unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The allowed values of an enum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enumvals: Vec<String>,
    /// When a change takes effect (`postmaster`: at restart; `sighup`, `user`...: at reload).
    pub context: String,
}

/// `/pg_settings/{GROUP}`: the parameters the group's primary accepts, published by its
/// deadman so that `zgresctl config set` can check values without a database connection.
/// Hostile input like every znode: the deadmen check again against their own server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgSettingsCatalog {
    /// `server_version_num` of the server the rows came from.
    pub server_version_num: u32,
    /// The rows, by parameter name.
    pub settings: BTreeMap<String, SettingSpec>,
}

impl Document for PgSettingsCatalog {
    const VERSION: u64 = 1;
    // 354 rows on a plain PostgreSQL 15 (about 45 KiB of JSON, measured), more with
    // extensions' parameters: up to what one znode holds.
    const MAX_BYTES: usize = crate::codec::MAX_DOCUMENT_BYTES;
}

/// Why PostgreSQL would refuse a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingValueError {
    /// No such parameter (and no `.` making it an extension's).
    #[error("{0}: unknown parameter")]
    Unknown(String),
    /// The value does not parse as the parameter's type.
    #[error("{name}: {value:?} is not {expected}")]
    Invalid {
        /// The parameter.
        name: String,
        /// The value.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// The value is outside the parameter's range.
    #[error("{name}: {value:?} is outside {min}..{max} {unit}")]
    OutOfRange {
        /// The parameter.
        name: String,
        /// The value.
        value: String,
        /// Smallest value.
        min: String,
        /// Largest value.
        max: String,
        /// The base unit.
        unit: String,
    },
}

impl PgSettingsCatalog {
    /// Checks `value` for `name` as PostgreSQL would when reading a configuration file.
    /// A name with a `.` that the server does not know is an extension's and is accepted.
    /// Returns the parameter's spec when known.
    ///
    /// # Errors
    /// [`SettingValueError`] saying why.
    pub fn check(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Option<&SettingSpec>, SettingValueError> {
        let Some(spec) = self.settings.get(name) else {
            return if name.contains('.') {
                Ok(None)
            } else {
                Err(SettingValueError::Unknown(name.to_owned()))
            };
        };
        let invalid = |expected: String| SettingValueError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            expected,
        };
        match spec.vartype {
            VarType::String => {}
            VarType::Bool => {
                parse_bool(value).ok_or_else(|| {
                    invalid("a boolean (on, off, true, false, yes, no, 1, 0)".into())
                })?;
            }
            VarType::Enum => {
                let known = spec
                    .enumvals
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(value.trim()));
                if !known {
                    return Err(invalid(format!("one of {}", spec.enumvals.join(", "))));
                }
            }
            VarType::Integer | VarType::Real => {
                let number = parse_number(value.trim(), spec.unit.as_deref()).ok_or_else(|| {
                    invalid(match &spec.unit {
                        Some(unit) => {
                            format!("a number, in {unit} or with a unit of the same kind")
                        }
                        None => "a number without a unit".into(),
                    })
                })?;
                let number = if spec.vartype == VarType::Integer {
                    number.round()
                } else {
                    number
                };
                let below = spec.min.is_some_and(|min| number < min);
                let above = spec.max.is_some_and(|max| number > max);
                if below || above {
                    let show = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
                    return Err(SettingValueError::OutOfRange {
                        name: name.to_owned(),
                        value: value.to_owned(),
                        min: show(spec.min),
                        max: show(spec.max),
                        unit: spec.unit.clone().unwrap_or_default(),
                    });
                }
            }
        }
        Ok(Some(spec))
    }
}

/// PostgreSQL's `parse_bool`: `on`, `off`, `1`, `0` and any prefix of `true`, `false`, `yes`,
/// `no` (`o` alone is ambiguous), case-insensitive.
pub fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    let prefix_of = |word: &str| !v.is_empty() && word.starts_with(v.as_str());
    match v.as_str() {
        "on" | "1" => Some(true),
        "of" | "off" | "0" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

/// Bytes in a memory unit, seconds in a time unit: (kind, factor).
fn unit_factor(unit: &str) -> Option<(char, f64)> {
    let memory = |f: f64| Some(('m', f));
    let time = |f: f64| Some(('t', f));
    match unit {
        "B" => memory(1.0),
        "kB" => memory(1024.0),
        "MB" => memory(1024.0 * 1024.0),
        "GB" => memory(1024.0 * 1024.0 * 1024.0),
        "TB" => memory(1024.0 * 1024.0 * 1024.0 * 1024.0),
        "us" => time(1e-6),
        "ms" => time(1e-3),
        "s" => time(1.0),
        "min" => time(60.0),
        "h" => time(3600.0),
        "d" => time(86400.0),
        _ => None,
    }
}

/// A base unit as `pg_settings` gives it, possibly with a multiplier (`8kB`, `16MB`).
fn base_unit(unit: &str) -> Option<(char, f64)> {
    let digits = unit.chars().take_while(char::is_ascii_digit).count();
    let multiplier: f64 = if digits == 0 {
        1.0
    } else {
        unit[..digits].parse().ok()?
    };
    let (kind, factor) = unit_factor(&unit[digits..])?;
    Some((kind, factor * multiplier))
}

/// `value` (a number with an optional unit) in `base` units, as PostgreSQL reads it.
fn parse_number(value: &str, base: Option<&str>) -> Option<f64> {
    if let Some(hex) = value.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|n| n as f64);
    }
    let split = value
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E' || c.is_whitespace())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    if !number.is_finite() {
        return None;
    }
    let unit = unit.trim();
    match (unit.is_empty(), base) {
        (true, _) => Some(number),
        (false, None) => None,
        (false, Some(base)) => {
            let (kind, factor) = unit_factor(unit)?;
            let (base_kind, base_factor) = base_unit(base)?;
            (kind == base_kind).then_some(number * factor / base_factor)
        }
    }
}
