//! `zgresctl config get|set|unset|edit`: the group's `/config`, with new PostgreSQL
//! parameters checked against the group's published `pg_settings` before anything is written.

use zgres_schema::documents::GroupConfig;
use zgresctl::group_config_edit::{
    check_before_writing, parse_config, set_config_value, unset_config_value,
};
use zgresctl::inventory::{CtlError, Inventory, Usage};
use zgresctl::prompts::edit_file;

use crate::cli::ConfigAction;
use crate::print_json;

/// Carries out one `config` action.
///
/// # Errors
/// [`CtlError`]: ZooKeeper, a refused value, a conflicting concurrent edit, the editor.
pub(crate) async fn config_command(
    inventory: &Inventory,
    action: ConfigAction,
) -> Result<(), CtlError> {
    match action {
        ConfigAction::Get { group } => {
            let name = inventory.groups(Some(&group)).await?.remove(0).group;
            print_json(&inventory.config(&name).await?.0);
        }
        ConfigAction::Set {
            group,
            assignments,
            force,
            create,
        } => {
            let name = if create {
                inventory.group_name(&group)?
            } else {
                inventory.groups(Some(&group)).await?.remove(0).group
            };
            let (catalog, catalog_path) = inventory.pg_settings(&name).await?;
            let config = inventory
                .update_config(&group, create, |config| {
                    let old = config.clone();
                    for assignment in &assignments {
                        set_config_value(config, assignment)?;
                    }
                    Ok(check_before_writing(
                        &old,
                        config,
                        catalog.as_ref(),
                        force,
                        &catalog_path,
                    )?)
                })
                .await?;
            print_json(&config);
        }
        ConfigAction::Unset { group, keys } => {
            let config = inventory
                .update_config(&group, false, |config| {
                    Ok(keys
                        .iter()
                        .try_for_each(|key| unset_config_value(config, key))?)
                })
                .await?;
            print_json(&config);
        }
        ConfigAction::Edit { group, force } => {
            let name = inventory.groups(Some(&group)).await?.remove(0).group;
            // An unreadable document is edited as stored: the way out of a broken or hostile
            // one (every parameter in it is then checked, as if new).
            let (config, version, original) = match inventory.config(&name).await {
                Ok((config, version)) => {
                    let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
                    (config, version, text)
                }
                Err(CtlError::Decode(e)) => {
                    eprintln!("zgresctl: {e}\nzgresctl: editing the document as stored");
                    match inventory.config_text(&name).await? {
                        Some((text, version)) => (GroupConfig::default(), Some(version), text),
                        None => (GroupConfig::default(), None, "{}\n".to_owned()),
                    }
                }
                Err(e) => return Err(e),
            };
            let path = std::env::temp_dir().join(format!(
                "zgresctl-config-{group}-{}.json",
                std::process::id()
            ));
            let edit_file_error = |source| Usage::EditFile {
                path: path.clone(),
                source,
            };
            std::fs::write(&path, &original).map_err(edit_file_error)?;
            let edited = async {
                edit_file(&path).await?;
                std::fs::read_to_string(&path).map_err(|e| CtlError::from(edit_file_error(e)))
            }
            .await;
            let _ = std::fs::remove_file(&path);
            let edited = edited?;
            if edited == original {
                outln!("no changes");
                return Ok(());
            }
            let edited_config = parse_config(&edited)?;
            let (catalog, catalog_path) = inventory.pg_settings(&name).await?;
            check_before_writing(
                &config,
                &edited_config,
                catalog.as_ref(),
                force,
                &catalog_path,
            )?;
            let config = edited_config;
            inventory.write_config(&name, &config, version).await?;
            print_json(&config);
        }
    }
    Ok(())
}
