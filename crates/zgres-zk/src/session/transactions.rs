//! Writes of several znodes in one ZooKeeper transaction (`multi`): every one happens, or none.

use zookeeper_client as zk;

use super::{CreateKind, Outcome, ZkSession};
use crate::error::ZkError;

impl ZkSession {
    /// Replaces the znode at `path`, if its version is `version`, with a new one of `kind`
    /// holding `data`, in one transaction: nobody ever sees the path empty. Used to turn an
    /// ephemeral znode into a persistent one and back.
    ///
    /// # Errors
    /// [`ZkError`]; [`Outcome::NotFound`] / [`Outcome::BadVersion`] when the znode is gone or
    /// changed (nothing was written).
    pub async fn replace(
        &self,
        path: &str,
        version: i32,
        data: &[u8],
        kind: CreateKind,
    ) -> Result<Outcome<()>, ZkError> {
        let options = kind.options(&self.acls);
        self.commit("replace", path, |writer| {
            writer.add_delete(path, Some(version))?;
            writer.add_create(path, data, &options)
        })
        .await
    }

    /// Deletes the znode at `path` if its version is `version` and, in the same transaction,
    /// writes `record` to the persistent znode `record_path` (created if absent): nobody ever
    /// sees the deletion without the record. Used to release the group lock with a record of
    /// how it was released.
    ///
    /// # Errors
    /// [`ZkError`]; [`Outcome::NotFound`] / [`Outcome::BadVersion`] when the znode at `path`
    /// is gone or changed: nothing was written.
    pub async fn delete_recording(
        &self,
        path: &str,
        version: i32,
        record_path: &str,
        record: &[u8],
    ) -> Result<Outcome<()>, ZkError> {
        let options = CreateKind::Persistent.options(&self.acls);
        let mut record_exists = self.stat(record_path).await?.is_some();
        // A second try only when the record appeared or vanished between the look and the
        // transaction.
        for _ in 0..2 {
            let outcome = self
                .commit("delete", path, |writer| {
                    writer.add_delete(path, Some(version))?;
                    if record_exists {
                        writer.add_set_data(record_path, record, None)
                    } else {
                        writer.add_create(record_path, record, &options)
                    }
                })
                .await?;
            match outcome {
                Outcome::Exists => record_exists = true,
                Outcome::NotFound if record_exists && self.stat(path).await?.is_some() => {
                    record_exists = false
                }
                outcome => return Ok(outcome),
            }
        }
        Ok(Outcome::NotFound)
    }

    /// Commits the writes `stage` adds, as one transaction with the request timeout; the
    /// first failed write's expected answer is the [`Outcome`].
    async fn commit(
        &self,
        operation: &'static str,
        path: &str,
        stage: impl FnOnce(&mut zk::MultiWriter<'_>) -> Result<(), zk::Error>,
    ) -> Result<Outcome<()>, ZkError> {
        let mut writer = self.client.new_multi_writer();
        if let Err(e) = stage(&mut writer) {
            return Err(ZkError::classify(e, operation, path));
        }
        // An async block sends nothing until it is polled, inside `timed`.
        let commit = async {
            writer.commit().await.map(|_| ()).map_err(|e| match e {
                zk::MultiWriteError::OperationFailed { source, .. } => source,
                zk::MultiWriteError::RequestFailed { source } => source,
            })
        };
        self.timed(operation, path, || commit).await
    }
}
