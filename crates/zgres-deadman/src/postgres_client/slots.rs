//! The local server's replication slots: read with the probe, and the steps of the slot plan
//! ([`crate::slots`]) carried out.

use zgres_schema::slots::SlotKind;
use zgres_schema::{Lsn, SlotName};

use super::{timed, ClientError, PostgresClient};
use crate::slots::{LocalSlot, SlotStep};

/// Parses the probe's slots column (`slots_column!`); a row that does not parse is left out (it cannot be one of ours).
pub(super) fn parse_slots(text: &str) -> Vec<LocalSlot> {
    text.split(',')
        .filter_map(|row| {
            let mut fields = row.split(' ');
            let name = SlotName::new(fields.next()?).ok()?;
            let kind = match fields.next()? {
                "physical" => SlotKind::Physical,
                "logical" => SlotKind::Logical,
                _ => return None,
            };
            let active = fields.next()? == "true";
            let restart_lsn = match fields.next()? {
                "-" => None,
                lsn => Some(lsn.parse::<Lsn>().ok()?),
            };
            Some(LocalSlot {
                name,
                kind,
                active,
                restart_lsn,
            })
        })
        .collect()
}

impl PostgresClient {
    /// This node's slot on its upstream (`primary_slot_name` when it streams with one).
    pub fn member_slot(&self) -> &SlotName {
        &self.member_slot
    }

    /// The slots the last successful probe saw.
    pub fn slots(&self) -> &[LocalSlot] {
        &self.slots
    }

    /// Carries out one step of the slot plan.
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL refuses (e.g. `max_replication_slots` reached) or does
    /// not answer; a logical slot's database may refuse the connection.
    pub async fn apply_slot_step(&mut self, step: &SlotStep) -> Result<(), ClientError> {
        // Names are checked ([a-z0-9_]) and identifiers too, but they go in as parameters
        // all the same.
        match step {
            SlotStep::CreatePhysical { name } => {
                let client = self.client().await?;
                timed(client.execute(
                    "SELECT pg_create_physical_replication_slot($1, true)",
                    &[&name.as_str()],
                ))
                .await??;
            }
            SlotStep::CreateLogical {
                name,
                plugin,
                database,
            } => {
                // A logical slot belongs to the database it is created in.
                let mut config = self.connect_config();
                config.dbname(database.as_str());
                let client = timed(self.config.tls.connect(&config)).await??;
                timed(client.execute(
                    "SELECT pg_create_logical_replication_slot($1, $2)",
                    &[&name.as_str(), &plugin.as_str()],
                ))
                .await??;
            }
            SlotStep::Advance { name, to } => {
                let client = self.client().await?;
                timed(client.execute(
                    "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                    &[&name.as_str(), &to.to_string()],
                ))
                .await??;
            }
            SlotStep::Drop { name, .. } => {
                let client = self.client().await?;
                timed(client.execute("SELECT pg_drop_replication_slot($1)", &[&name.as_str()]))
                    .await??;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slots_column_parses_and_skips_what_is_not_a_slot() {
        let slots = parse_slots(
            "zgres_10_0_0_1_5432 physical false 0/3000060,app logical true 0/2000000,\
             empty physical false -,Bad physical false 0/1,x other false 0/1,short",
        );
        assert_eq!(
            slots,
            vec![
                LocalSlot {
                    name: SlotName::new("zgres_10_0_0_1_5432").unwrap(),
                    kind: SlotKind::Physical,
                    active: false,
                    restart_lsn: Some("0/3000060".parse().unwrap()),
                },
                LocalSlot {
                    name: SlotName::new("app").unwrap(),
                    kind: SlotKind::Logical,
                    active: true,
                    restart_lsn: Some("0/2000000".parse().unwrap()),
                },
                LocalSlot {
                    name: SlotName::new("empty").unwrap(),
                    kind: SlotKind::Physical,
                    active: false,
                    restart_lsn: None,
                },
            ]
        );
        assert_eq!(parse_slots(""), vec![]);
    }
}
