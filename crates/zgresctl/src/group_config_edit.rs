//! Editing `/config/{GROUP}`: `key=value` assignments, `unset`, a whole edited document, and
//! the check of new PostgreSQL parameters against what the group's primary accepts
//! (`/pg_settings/{GROUP}`), so nothing PostgreSQL would refuse is written.

use zgres_schema::documents::GroupConfig;
use zgres_schema::pg_settings::{HbaLine, ParameterName, ParameterValue, PgSettingsCatalog};
use zgres_schema::slots::PermanentSlot;
use zgres_schema::SlotName;

use crate::error::ConfigInputError;

/// The prefix of a cluster-wide PostgreSQL parameter's key.
const PARAMETER_KEY: &str = "postgresql.parameters.";
/// The key of the cluster-wide `pg_hba` lines (a JSON array of strings).
const HBA_KEY: &str = "postgresql.pg_hba";
/// The prefix of a permanent slot's key (its value a JSON object: `{"type": "physical"}`).
const SLOT_KEY: &str = "slots.";
/// What a standby cluster follows (`{"group": "main"}` or `{"node": "10.0.0.5:5432"}`);
/// unsetting it promotes the group's standby leader.
const STANDBY_CLUSTER_KEY: &str = "standby_cluster";

/// Parses an edited config document: every key must be known, and values typed as in
/// `config set`; `postgresql` is an object of `parameters` and `pg_hba`. A stored document's
/// version key (`"v": 1`) may stay in it.
///
/// # Errors
/// [`ConfigInputError`] naming the first unknown key or bad value.
pub fn parse_config(text: &str) -> Result<GroupConfig, ConfigInputError> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(ConfigInputError::NotJson)?;
    let object = doc.as_object().ok_or(ConfigInputError::NotAnObject)?;
    let mut config = GroupConfig::default();
    for (key, value) in object {
        if key == "v" && (value == &serde_json::json!(1) || value == &serde_json::json!(2)) {
            continue;
        }
        let rejected = |source| ConfigInputError::Rejected {
            key: key.clone(),
            source,
        };
        if key == "postgresql" {
            config.postgresql = serde_json::from_value(value.clone()).map_err(rejected)?;
            continue;
        }
        if key == "slots" {
            config.slots = serde_json::from_value(value.clone()).map_err(rejected)?;
            continue;
        }
        if key == STANDBY_CLUSTER_KEY {
            config.standby_cluster = serde_json::from_value(value.clone()).map_err(rejected)?;
            continue;
        }
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        set_config_value(&mut config, &format!("{key}={text}"))?;
    }
    Ok(config)
}

/// Applies `key=value` to a config: a key of `/config/{GROUP}`,
/// `postgresql.parameters.NAME=VALUE`, or `postgresql.pg_hba=["line", ...]`.
///
/// # Errors
/// [`ConfigInputError`] naming the key for unknown keys or bad values.
pub fn set_config_value(
    config: &mut GroupConfig,
    assignment: &str,
) -> Result<(), ConfigInputError> {
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| ConfigInputError::NotAnAssignment(assignment.to_owned()))?;
    let setting = |source| ConfigInputError::Setting {
        key: key.to_owned(),
        source,
    };
    if let Some(name) = key.strip_prefix(PARAMETER_KEY) {
        let name = ParameterName::new(name).map_err(setting)?;
        let value = ParameterValue::new(key, value).map_err(setting)?;
        config.postgresql.parameters.insert(name, value);
        return config.postgresql.check().map_err(setting);
    }
    if let Some(name) = key.strip_prefix(SLOT_KEY) {
        let bad = |source| ConfigInputError::Slot {
            key: key.to_owned(),
            source,
        };
        let name = SlotName::new(name).map_err(bad)?;
        let slot: PermanentSlot =
            serde_json::from_str(value).map_err(|source| ConfigInputError::Rejected {
                key: key.to_owned(),
                source,
            })?;
        return config.slots.insert(name, slot).map_err(bad);
    }
    if key == STANDBY_CLUSTER_KEY {
        let source = serde_json::from_str(value).map_err(|source| ConfigInputError::Rejected {
            key: key.to_owned(),
            source,
        })?;
        config.standby_cluster = Some(source);
        return Ok(());
    }
    if key == HBA_KEY {
        let lines: Vec<String> =
            serde_json::from_str(value).map_err(|_| ConfigInputError::BadValue {
                key: key.to_owned(),
                value: value.to_owned(),
            })?;
        config.postgresql.pg_hba = lines
            .iter()
            .map(|l| HbaLine::new(l))
            .collect::<Result<_, _>>()
            .map_err(setting)?;
        return Ok(());
    }
    let rejected = |source| ConfigInputError::Rejected {
        key: key.to_owned(),
        source,
    };
    let mut doc = serde_json::to_value(&*config).map_err(rejected)?;
    let object = doc.as_object_mut().ok_or(ConfigInputError::NotAnObject)?;
    let Some(old) = object
        .get(key)
        .filter(|_| key != "postgresql" && key != "slots")
    else {
        let mut known: Vec<String> = object
            .keys()
            .filter(|k| *k != "postgresql" && *k != "slots")
            .cloned()
            .collect();
        known.extend([
            format!("{PARAMETER_KEY}NAME"),
            HBA_KEY.to_owned(),
            format!("{SLOT_KEY}NAME"),
            STANDBY_CLUSTER_KEY.to_owned(),
        ]);
        return Err(ConfigInputError::UnknownKey {
            key: key.to_owned(),
            known,
        });
    };
    // Numbers and booleans as JSON; anything else as a string (e.g. synchronous_mode=strict).
    let parsed: serde_json::Value = match old {
        serde_json::Value::String(_) => serde_json::Value::String(value.to_owned()),
        _ => serde_json::from_str(value).map_err(|_| ConfigInputError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
        })?,
    };
    object.insert(key.to_owned(), parsed);
    *config = serde_json::from_value(doc).map_err(rejected)?;
    Ok(())
}

/// Removes `postgresql.parameters.NAME` or `postgresql.pg_hba` (the other keys have defaults:
/// set them instead).
///
/// # Errors
/// [`ConfigInputError::UnknownKey`] for any other key.
pub fn unset_config_value(config: &mut GroupConfig, key: &str) -> Result<(), ConfigInputError> {
    if let Some(name) = key.strip_prefix(PARAMETER_KEY) {
        config
            .postgresql
            .parameters
            .retain(|n, _| n.as_str() != name);
        return Ok(());
    }
    if key == HBA_KEY {
        config.postgresql.pg_hba.clear();
        return Ok(());
    }
    if let Some(name) = key.strip_prefix(SLOT_KEY) {
        // The slot itself stays on the primary: zgres never drops a permanent slot.
        config.slots.remove(name);
        return Ok(());
    }
    if key == STANDBY_CLUSTER_KEY {
        config.standby_cluster = None;
        return Ok(());
    }
    Err(ConfigInputError::UnknownKey {
        key: key.to_owned(),
        known: vec![
            format!("{PARAMETER_KEY}NAME"),
            HBA_KEY.to_owned(),
            format!("{SLOT_KEY}NAME"),
            STANDBY_CLUSTER_KEY.to_owned(),
        ],
    })
}

/// The parameters that are new or changed from `old` to `new`, by name.
pub fn changed_parameters<'a>(
    old: &'a GroupConfig,
    new: &'a GroupConfig,
) -> impl Iterator<Item = (&'a ParameterName, &'a ParameterValue)> {
    new.postgresql
        .parameters
        .iter()
        .filter(|(name, value)| old.postgresql.parameters.get(*name) != Some(*value))
}

/// Checks the parameters that changed from `old` to `new` against `catalog`.
///
/// # Errors
/// [`ConfigInputError::PostgresRefuses`] for the first value the server would refuse.
pub fn check_parameters(
    old: &GroupConfig,
    new: &GroupConfig,
    catalog: &PgSettingsCatalog,
) -> Result<(), ConfigInputError> {
    for (name, value) in changed_parameters(old, new) {
        catalog
            .check(name.as_str(), value.as_str())
            .map_err(ConfigInputError::PostgresRefuses)?;
    }
    Ok(())
}

/// What `config set`/`edit` check before writing `new` over `old`: with `force`, nothing;
/// otherwise new or changed parameters against `catalog`, which must exist when any changed.
///
/// # Errors
/// [`ConfigInputError::PostgresRefuses`], or [`ConfigInputError::NoCatalog`] naming
/// `catalog_path`.
pub fn check_before_writing(
    old: &GroupConfig,
    new: &GroupConfig,
    catalog: Option<&PgSettingsCatalog>,
    force: bool,
    catalog_path: &str,
) -> Result<(), ConfigInputError> {
    if force {
        return Ok(());
    }
    match catalog {
        Some(catalog) => check_parameters(old, new, catalog),
        None if changed_parameters(old, new).next().is_some() => Err(ConfigInputError::NoCatalog {
            path: catalog_path.to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
