//! Giving a node its data directory: initdb for a new group, a base backup of the primary for
//! a new replica, pg_rewind for a former primary that must follow a new one.
//!
//! Every tool runs as the PostgreSQL OS user, without a shell, in its own process group and
//! with a timeout. A marker file next to the data directory
//! (`{data_dir}.zgres-provisioning`) exists while the directory is being filled: if the
//! deadman dies half-way, the next start knows the partial directory is its own and empties
//! it. Nothing else is ever deleted unless the operator allowed it
//! (`provisioning.reclone_on_rewind_failure`).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::time::Duration;
use zgres_process::CommandError;

use zgres_schema::{NodeId, Timeline};

use crate::config::{PostgresConfig, ProvisioningConfig};
use crate::conninfo;
use crate::data_dir::{self, give_to_owner};
use crate::postgres_client::connect_config;
use crate::postgres_process::setpriv_prefix;
use crate::postgres_tls::ConnectError;

/// Why provisioning failed. Retryable: the next round may try again.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    /// A tool failed, could not start or timed out.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// initdb's password file could not be created.
    #[error(transparent)]
    Secret(#[from] crate::passfile::PassfileError),
    /// The source could not be asked for its checkpoint timeline.
    #[error("asking {source_node} for its checkpoint timeline: {problem}")]
    Source {
        /// The node asked.
        source_node: NodeId,
        /// What went wrong.
        problem: SourceProblem,
    },
    /// A file or directory could not be prepared.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why the source of a clone or rewind could not tell its checkpoint timeline.
#[derive(Debug, thiserror::Error)]
pub enum SourceProblem {
    /// It did not answer within 10 s.
    #[error("no answer within 10s")]
    NoAnswer,
    /// The connection or query failed.
    #[error(transparent)]
    Query(#[from] ConnectError),
    /// The answer is not a timeline.
    #[error("not a timeline")]
    NotATimeline,
}

/// What pg_rewind did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindOutcome {
    /// The source's last checkpoint is not yet on its new timeline, so pg_rewind would take
    /// both for the same timeline and wrongly find nothing to rewind: try again shortly.
    SourceNotReady,
    /// The directory had diverged and was rewound to the fork point.
    Rewound,
    /// It had not diverged: it can simply follow.
    NotNeeded,
}

/// When the core may have a data directory wiped and cloned again, from `settings`.
pub fn reclone_rules(settings: &ProvisioningConfig) -> crate::decision::Reclone {
    crate::decision::Reclone {
        on_missing_wal: settings.reclone_on_missing_wal,
        on_rewind_failure: settings.reclone_on_rewind_failure,
    }
}

/// Runs the provisioning tools for one data directory.
#[derive(Debug, Clone)]
pub struct Provisioner {
    postgres: PostgresConfig,
    settings: ProvisioningConfig,
}

impl Provisioner {
    /// A provisioner for `postgres.data_dir`.
    pub fn new(postgres: PostgresConfig, settings: ProvisioningConfig) -> Self {
        Provisioner { postgres, settings }
    }

    fn marker(&self) -> PathBuf {
        let mut name = self.postgres.data_dir.as_os_str().to_owned();
        name.push(".zgres-provisioning");
        PathBuf::from(name)
    }

    /// Empties a data directory that an interrupted bootstrap or clone of ours left behind.
    ///
    /// # Errors
    /// [`ProvisioningError::Io`] when it cannot be emptied.
    pub fn recover_interrupted(&self) -> Result<(), ProvisioningError> {
        if self.marker().exists() {
            tracing::warn!(data_dir = %self.postgres.data_dir.display(), "an earlier bootstrap or clone was interrupted; emptying the partial data directory");
            self.empty_data_dir()?;
            remove_file(&self.marker())?;
        }
        Ok(())
    }

    /// Creates the group's database: the configured bootstrap command, or initdb with data
    /// checksums (so pg_rewind works later) plus the configured `pg_hba` lines.
    ///
    /// # Errors
    /// [`ProvisioningError`] when it fails; the partial directory is emptied again.
    /// Cancelling kills the tool; the marker makes the next start clean up.
    pub async fn bootstrap(&self) -> Result<(), ProvisioningError> {
        self.filling(async {
            if let Some((program, args)) = self.settings.bootstrap_command.split_first() {
                return self.run(Path::new(program), args, self.env(None)).await;
            }
            let mut args: Vec<OsString> = vec![
                "-D".into(),
                self.postgres.data_dir.clone().into(),
                "--data-checksums".into(),
                format!("--username={}", self.postgres.user).into(),
            ];
            // Created exclusively beside the data directory, removed when dropped.
            let pwfile = match &self.postgres.password {
                Some(password) => {
                    let file = crate::passfile::secret_file(&self.postgres, password.expose())?;
                    args.push(format!("--pwfile={}", file.path().display()).into());
                    args.push("--auth-host=scram-sha-256".into());
                    Some(file)
                }
                None => None,
            };
            args.extend(self.settings.initdb_args.iter().map(Into::into));
            let result = self
                .run(&self.postgres.bin_dir.join("initdb"), &args, self.env(None))
                .await;
            drop(pwfile);
            result?;
            if !self.settings.pg_hba.is_empty() {
                let path = self.postgres.data_dir.join("pg_hba.conf");
                let mut text = std::fs::read_to_string(&path).map_err(io(&path))?;
                text.push_str("\n# Added by zgres-deadman (provisioning.pg_hba)\n");
                for line in &self.settings.pg_hba {
                    text.push_str(line);
                    text.push('\n');
                }
                self.write_owned(&path, text.as_bytes(), 0o600)?;
            }
            Ok(())
        })
        .await
    }

    /// Copies `source`'s database with pg_basebackup (or the configured clone command).
    ///
    /// # Errors
    /// [`ProvisioningError`] when it fails; the partial directory is emptied again.
    pub async fn clone_from(&self, source: NodeId) -> Result<(), ProvisioningError> {
        self.filling(async {
            if let Some((program, args)) = self.settings.clone_command.split_first() {
                return self
                    .run(Path::new(program), args, self.env(Some(source)))
                    .await;
            }
            let args: Vec<OsString> = vec![
                "-D".into(),
                self.postgres.data_dir.clone().into(),
                "-h".into(),
                source.addr().ip().to_string().into(),
                "-p".into(),
                source.addr().port().to_string().into(),
                "-U".into(),
                self.postgres.user.clone().into(),
                "--wal-method=stream".into(),
                "--checkpoint=fast".into(),
                "--no-password".into(),
            ];
            self.run(
                &self.postgres.bin_dir.join("pg_basebackup"),
                &args,
                self.env(Some(source)),
            )
            .await
        })
        .await
    }

    /// Rewinds the stopped data directory to where it forked from `source`'s timeline. When
    /// the server did not stop cleanly (`clean_shutdown` false), crash recovery runs first
    /// (single-user mode), keeping the WAL pg_rewind needs.
    ///
    /// # Errors
    /// [`ProvisioningError`] when pg_rewind fails (the directory is left as pg_rewind left
    /// it; PostgreSQL refuses to start it half-rewound).
    pub async fn rewind(
        &self,
        source: NodeId,
        target_timeline: Timeline,
        clean_shutdown: bool,
    ) -> Result<RewindOutcome, ProvisioningError> {
        if self.source_checkpoint_timeline(source).await? <= target_timeline {
            return Ok(RewindOutcome::SourceNotReady);
        }
        if !clean_shutdown {
            // pg_rewind would run this recovery itself, but its end-of-recovery checkpoint
            // removes the WAL back to the last common checkpoint that pg_rewind then needs.
            // With archiving on and an archive command that always fails, no segment counts
            // as archived, so none is removed.
            let args: Vec<OsString> = vec![
                "--single".into(),
                "-F".into(),
                "-D".into(),
                self.postgres.data_dir.clone().into(),
                "-c".into(),
                "archive_mode=on".into(),
                "-c".into(),
                "archive_command=false".into(),
                "template1".into(),
            ];
            self.run(
                &self.postgres.bin_dir.join("postgres"),
                &args,
                self.env(None),
            )
            .await?;
        }
        let label = self.postgres.data_dir.join("backup_label");
        // pg_rewind changes the target in place past its "point of no return"; stopped after
        // it, the directory can neither start nor be rewound again. The marker says so to
        // every later round and start, unless pg_rewind is seen to stop before it.
        let marker = data_dir::rewind_marker(&self.postgres);
        std::fs::write(&marker, b"").map_err(io(&marker))?;
        let conninfo = format!(
            "host={} port={} user={} dbname={} connect_timeout=5",
            source.addr().ip(),
            source.addr().port(),
            conninfo::value(&self.postgres.user),
            conninfo::value(&self.postgres.dbname)
        );
        let args: Vec<OsString> = vec![
            format!("--target-pgdata={}", self.postgres.data_dir.display()).into(),
            format!("--source-server={conninfo}").into(),
        ];
        let rewound = self
            .run(
                &self.postgres.bin_dir.join("pg_rewind"),
                &args,
                self.env(Some(source)),
            )
            .await;
        match &rewound {
            Err(ProvisioningError::Command(CommandError::Failed { output, .. }))
                if !rewind_changed_files(output) => {}
            Err(_) => return rewound.map(|()| RewindOutcome::NotNeeded),
            Ok(()) => {}
        }
        remove_file(&marker)?;
        rewound?;
        // pg_rewind leaves a backup_label (recovery starts at the fork) only when it rewound.
        Ok(if label.exists() {
            RewindOutcome::Rewound
        } else {
            RewindOutcome::NotNeeded
        })
    }

    /// The timeline of `source`'s latest checkpoint (what pg_rewind compares).
    async fn source_checkpoint_timeline(
        &self,
        source: NodeId,
    ) -> Result<Timeline, ProvisioningError> {
        let fail = |problem| ProvisioningError::Source {
            source_node: source,
            problem,
        };
        let pg = connect_config(&self.postgres, source.addr());
        let query = async {
            let client = self.postgres.tls.connect(&pg).await?;
            client
                .query_one("SELECT timeline_id FROM pg_control_checkpoint()", &[])
                .await
                .map_err(ConnectError::from)
        };
        let row = tokio::time::timeout(Duration::from_secs(10), query)
            .await
            .map_err(|_| fail(SourceProblem::NoAnswer))?
            .map_err(|e| fail(SourceProblem::Query(e)))?;
        u32::try_from(row.get::<_, i32>(0))
            .ok()
            .and_then(|t| Timeline::new(t).ok())
            .ok_or_else(|| fail(SourceProblem::NotATimeline))
    }

    /// Deletes everything in the data directory (only after the operator allowed re-cloning,
    /// or for a directory our own interrupted provisioning left).
    ///
    /// # Errors
    /// [`ProvisioningError::Io`] when something cannot be removed.
    pub fn empty_data_dir(&self) -> Result<(), ProvisioningError> {
        let dir = &self.postgres.data_dir;
        remove_file(&data_dir::rewind_marker(&self.postgres))?;
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(dir)(e)),
        };
        for entry in entries {
            let path = entry.map_err(io(dir))?.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io(&path))?;
        }
        Ok(())
    }

    /// Runs `fill` with the marker in place and the data directory present, empty and owned
    /// by the PostgreSQL user; empties it again if `fill` fails.
    async fn filling(
        &self,
        fill: impl std::future::Future<Output = Result<(), ProvisioningError>>,
    ) -> Result<(), ProvisioningError> {
        let dir = &self.postgres.data_dir;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        self.chown(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        std::fs::write(self.marker(), b"").map_err(io(&self.marker()))?;
        // A damaged directory's marker outlives an operator's `rm -rf` of the directory; the
        // new copy is not damaged.
        remove_file(&data_dir::rewind_marker(&self.postgres))?;
        let result = fill.await;
        if result.is_err() {
            self.empty_data_dir()?;
        }
        remove_file(&self.marker())?;
        result
    }

    fn env(&self, source: Option<NodeId>) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "PGDATA".to_owned(),
                self.postgres.data_dir.display().to_string(),
            ),
            ("LC_ALL".to_owned(), "C".to_owned()),
            ("PGCONNECT_TIMEOUT".to_owned(), "5".to_owned()),
        ];
        if let Some(source) = source {
            env.push(("ZGRES_SOURCE_HOST".into(), source.addr().ip().to_string()));
            env.push(("ZGRES_SOURCE_PORT".into(), source.addr().port().to_string()));
            // libpq's TLS settings for pg_basebackup, pg_rewind and a clone command.
            let tls = &self.postgres.tls;
            env.push(("PGSSLMODE".into(), tls.mode.as_libpq().into()));
            for (name, file) in tls.files() {
                env.push((
                    format!("PG{}", name.to_uppercase()),
                    file.display().to_string(),
                ));
            }
        }
        // The password file, not the password: nothing in the environment of a tool (or of a
        // configured command) carries the secret itself.
        if self.postgres.password.is_some() {
            let passfile = crate::passfile::path(&self.postgres);
            env.push(("PGPASSFILE".into(), passfile.display().to_string()));
        }
        env
    }

    /// Runs a tool as the PostgreSQL OS user (through `setpriv` when we are root).
    async fn run(
        &self,
        program: &Path,
        args: &[impl AsRef<std::ffi::OsStr>],
        mut env: Vec<(String, String)>,
    ) -> Result<(), ProvisioningError> {
        let (prefix, user_env) = setpriv_prefix(&self.postgres);
        env.extend(user_env);
        let full: Vec<OsString> = prefix
            .into_iter()
            .map(OsString::from)
            .chain([OsString::from("--"), program.as_os_str().to_owned()])
            .chain(args.iter().map(|a| a.as_ref().to_owned()))
            .collect();
        tracing::info!(program = %program.display(), "running");
        zgres_process::run_with_env(Path::new("setpriv"), &full, env, self.settings.timeout)
            .await?;
        Ok(())
    }

    fn chown(&self, path: &Path) -> Result<(), ProvisioningError> {
        give_to_owner(&self.postgres, path).map_err(io(path))
    }

    fn write_owned(&self, path: &Path, data: &[u8], mode: u32) -> Result<(), ProvisioningError> {
        std::fs::write(path, data).map_err(io(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))?;
        self.chown(path)
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ProvisioningError + '_ {
    move |source| ProvisioningError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether a failed pg_rewind's `output` shows it began changing the target: it logs this line
/// right before its point of no return (PostgreSQL 15's `pg_rewind.c`), and nothing before
/// it writes to the target. A failure without it (no connection, no common ancestor, a source
/// not ready) left the directory as it was.
fn rewind_changed_files(output: &str) -> bool {
    output.contains("rewinding from last common checkpoint")
}

fn remove_file(path: &Path) -> Result<(), ProvisioningError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}
