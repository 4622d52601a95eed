//! What the local server accepts for each parameter (`pg_settings`), for checking the group's
//! cluster-wide parameters before they are written.

use std::collections::BTreeMap;

use zgres_schema::pg_settings::{PgSettingsCatalog, SettingSpec, VarType};

use super::{timed, ClientError, PostgresClient};

const CATALOG_SQL: &str = "
SELECT name, vartype, unit, min_val::float8, max_val::float8, enumvals, context,
       current_setting('server_version_num')::int
  FROM pg_settings";

impl PostgresClient {
    /// The server's `pg_settings` rows, as a catalog.
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL does not answer.
    pub async fn settings_catalog(&mut self) -> Result<PgSettingsCatalog, ClientError> {
        let client = self.client().await?;
        let rows = timed(client.query(CATALOG_SQL, &[])).await??;
        let mut settings = BTreeMap::new();
        let mut server_version_num = 0;
        for row in rows {
            let vartype = match row.get::<_, &str>(1) {
                "bool" => VarType::Bool,
                "integer" => VarType::Integer,
                "real" => VarType::Real,
                "enum" => VarType::Enum,
                _ => VarType::String,
            };
            server_version_num = u32::try_from(row.get::<_, i32>(7)).unwrap_or_default();
            settings.insert(
                row.get::<_, String>(0),
                SettingSpec {
                    vartype,
                    unit: row.get(2),
                    min: row.get(3),
                    max: row.get(4),
                    enumvals: row.get::<_, Option<Vec<String>>>(5).unwrap_or_default(),
                    context: row.get(6),
                },
            );
        }
        Ok(PgSettingsCatalog {
            server_version_num,
            settings,
        })
    }
}
