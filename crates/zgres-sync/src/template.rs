//! The template plugin: renders a file from the snapshot with minijinja (Jinja2 syntax), writes
//! it only when the result changed (atomically, keeping mode and owner), then runs a command
//! (without a shell). The built-in HAProxy plugin is this plugin with a bundled template.
//!
//! The template sees the snapshot's JSON form: `groups` (name → `primary`, `replicas`),
//! `masters`, `conn_info`, `databases`. Undefined names are errors, so a typo fails loudly
//! instead of rendering an empty value. Filter `server_name` turns a node id into a name safe
//! for configuration files (`10.0.0.1:5432` → `10_0_0_1_5432`).

use std::path::PathBuf;
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};

use crate::snapshot::Snapshot;
use zgres_process as command;

/// Where a template comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file, read at every render so edits apply without a restart.
    File(PathBuf),
    /// Text given by zgres-sync itself (the bundled HAProxy configuration).
    Text(String),
}

/// One rendered file.
#[derive(Debug, Clone)]
pub struct TemplateConfig {
    /// A name for logs.
    pub name: String,
    /// The template.
    pub source: Source,
    /// The file written.
    pub destination: PathBuf,
    /// Run after the file changed (program and arguments); nothing when empty.
    pub command: Vec<String>,
    /// Instead of a command: HAProxy's master CLI socket, sent `reload` after the file changed.
    pub master_socket: Option<PathBuf>,
    /// The command is killed after this long.
    pub command_timeout: Duration,
    /// A run of the command starts at least this long after the previous one finished: a
    /// reload arriving while the previous one is still being carried out can be lost
    /// (HAProxy's master does that), so the last change must get a reload of its own.
    pub command_min_interval: Duration,
}

/// The plugin's state across snapshots.
#[derive(Debug)]
pub struct TemplatePlugin {
    config: TemplateConfig,
    /// The file changed but the command has not succeeded since.
    command_pending: bool,
    /// When the command last ran.
    last_command: Option<std::time::Instant>,
}

/// Why a template could not be applied. Retryable (the operator may fix the template).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template file could not be read.
    #[error("template {name}: cannot read {path}: {source}")]
    Read {
        /// The template's name.
        name: String,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Rendering failed (syntax, undefined name, ...).
    #[error("template {name}: {source:#}")]
    Render {
        /// The template's name.
        name: String,
        /// The engine's error, with its line.
        source: minijinja::Error,
    },
    /// The destination could not be written.
    #[error("template {name}: cannot write {path}: {source}")]
    Write {
        /// The template's name.
        name: String,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command failed.
    #[error("template {name}: {source}")]
    Command {
        /// The template's name.
        name: String,
        /// How it failed.
        source: command::CommandError,
    },
    /// HAProxy's master CLI did not take the reload.
    #[error("template {name}: {source}")]
    Reload {
        /// The template's name.
        name: String,
        /// How it failed.
        source: crate::haproxy::MasterCliError,
    },
}

/// Renders `source` with `snapshot` as the context. Every value written out is checked: one
/// holding a character that could start a directive of its own
/// ([`crate::safe_value::is_safe_config_value`]) fails
/// the rendering (the file keeps its last content). `/conn` documents are checked before they
/// reach a snapshot; this is the second line.
///
/// # Errors
/// The engine's error for bad syntax, undefined names or a refused value.
pub fn render(source: &str, snapshot: &Snapshot) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.set_formatter(|out, state, value| {
        if let Some(text) = value.as_str() {
            if !crate::safe_value::is_safe_config_value(text) {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("refusing to write the value {text:?}: it holds a control, space, comment or quote character"),
                ));
            }
        }
        minijinja::escape_formatter(out, state, value)
    });
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_filter("server_name", |node: String| -> String {
        node.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
            .trim_matches('_')
            .to_owned()
    });
    env.render_str(source, minijinja::Value::from_serialize(snapshot))
}

impl TemplatePlugin {
    /// A plugin for `config`.
    pub fn new(config: TemplateConfig) -> Self {
        TemplatePlugin {
            config,
            command_pending: false,
            last_command: None,
        }
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Renders, writes if changed, and runs the command if the file changed (or a previous run
    /// of it failed).
    ///
    /// # Errors
    /// [`TemplateError`]; the caller retries with the latest snapshot.
    pub async fn apply(&mut self, snapshot: &Snapshot) -> Result<(), TemplateError> {
        let name = self.config.name.clone();
        let text = match &self.config.source {
            Source::Text(text) => text.clone(),
            Source::File(path) => {
                std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
                    name: name.clone(),
                    path: path.display().to_string(),
                    source,
                })?
            }
        };
        let rendered = render(&text, snapshot).map_err(|source| TemplateError::Render {
            name: name.clone(),
            source,
        })?;
        let changed = crate::atomic_file::write_if_changed(&self.config.destination, &rendered)
            .map_err(|source| TemplateError::Write {
                name: name.clone(),
                path: self.config.destination.display().to_string(),
                source,
            })?;
        if changed {
            tracing::info!(template = %name, file = %self.config.destination.display(), "rendered");
            self.command_pending = true;
        }
        let reloads = self.config.master_socket.is_some() || !self.config.command.is_empty();
        if self.command_pending && reloads {
            if let Some(last) = self.last_command {
                let wait = self
                    .config
                    .command_min_interval
                    .saturating_sub(last.elapsed());
                tokio::time::sleep(wait).await;
            }
            let timeout = self.config.command_timeout;
            let result = if let Some(socket) = &self.config.master_socket {
                crate::haproxy::reload(socket, timeout)
                    .await
                    .map_err(|source| TemplateError::Reload { name, source })
            } else if let Some((program, args)) = self.config.command.split_first() {
                command::run(program.as_ref(), args, timeout)
                    .await
                    .map(|_output| ())
                    .map_err(|source| TemplateError::Command { name, source })
            } else {
                Ok(())
            };
            // Measured from the end of the run: by then the previous reload was signalled.
            self.last_command = Some(std::time::Instant::now());
            result?;
        }
        self.command_pending = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Endpoint, GroupSnapshot};
    use zgres_schema::documents::Tags;
    use zgres_schema::GroupName;

    fn endpoint(i: u8) -> Endpoint {
        Endpoint {
            node: format!("10.0.0.{i}:5432").parse().unwrap(),
            host: format!("10.0.0.{i}"),
            port: 5432,
            dbname: None,
            tags: Tags::default(),
            api_port: Some(8008),
        }
    }

    fn snapshot(primary: Option<u8>, replicas: &[u8]) -> Snapshot {
        let mut s = Snapshot::default();
        s.groups.insert(
            GroupName::new("main").unwrap(),
            GroupSnapshot {
                primary: primary.map(endpoint),
                replicas: replicas.iter().copied().map(endpoint).collect(),
            },
        );
        s
    }

    #[test]
    fn a_value_that_could_start_a_directive_fails_the_rendering() {
        let mut s = snapshot(Some(1), &[2]);
        let main = s.groups.values_mut().next().unwrap();
        main.replicas[0].host = "10.0.0.2:5432 check\n    server evil 10.9.9.9".into();
        let error = render(&crate::haproxy::template(None), &s).unwrap_err();
        assert!(error.to_string().contains("refusing to write"), "{error}");
    }

    #[test]
    fn haproxy_backends_follow_the_snapshot() {
        let text = render(&crate::haproxy::template(None), &snapshot(Some(1), &[2, 3])).unwrap();
        let primary = text.split("backend main_replicas").next().unwrap();
        assert!(
            primary.contains("server 10_0_0_1_5432 10.0.0.1:5432 check"),
            "{text}"
        );
        assert!(!primary.contains("10.0.0.2"), "{text}");
        let replicas = text.split("backend main_replicas").nth(1).unwrap();
        assert!(
            replicas.contains("server 10_0_0_2_5432 10.0.0.2:5432"),
            "{text}"
        );
        assert!(
            replicas.contains("10.0.0.1:5432 check inter 1s fall 2 rise 1 backup"),
            "{text}"
        );

        let leaderless = render(&crate::haproxy::template(None), &snapshot(None, &[2])).unwrap();
        let primary = leaderless.split("backend main_replicas").next().unwrap();
        assert!(
            !primary.contains("server "),
            "no primary, no server: {leaderless}"
        );
    }

    #[test]
    fn undefined_names_fail_loudly() {
        let err = render("{{ groups.main.primry }}", &snapshot(Some(1), &[])).unwrap_err();
        assert!(err.to_string().contains("undefined"), "{err}");
    }

    #[tokio::test]
    async fn writes_only_on_change_and_reruns_a_failed_command() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("out.txt");
        let marker = dir.path().join("ran");
        let config = TemplateConfig {
            name: "t".into(),
            source: Source::Text("primary={{ masters.main }}\n".into()),
            destination: destination.clone(),
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "echo x >> {}; test -e {}/ok",
                    marker.display(),
                    dir.path().display()
                ),
            ],
            command_timeout: Duration::from_secs(5),
            master_socket: None,
            command_min_interval: Duration::ZERO,
        };
        let mut plugin = TemplatePlugin::new(config);
        let mut s = snapshot(Some(1), &[]);
        s.masters
            .insert(GroupName::new("main").unwrap(), endpoint(1).node);
        assert!(
            plugin.apply(&s).await.is_err(),
            "command fails until ok exists"
        );
        assert_eq!(
            std::fs::read_to_string(&destination).unwrap(),
            "primary=10.0.0.1:5432\n"
        );
        std::fs::write(dir.path().join("ok"), "").unwrap();
        plugin.apply(&s).await.unwrap();
        plugin.apply(&s).await.unwrap();
        let runs = std::fs::read_to_string(&marker).unwrap().lines().count();
        assert_eq!(
            runs, 2,
            "retried once after failing, not again while unchanged"
        );
    }

    #[tokio::test]
    async fn back_to_back_changes_get_commands_at_least_the_interval_apart() {
        let dir = tempfile::tempdir().unwrap();
        let stamps = dir.path().join("stamps");
        let config = TemplateConfig {
            name: "t".into(),
            source: Source::Text("{{ masters.main }}\n".into()),
            destination: dir.path().join("out"),
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("date +%s%N >> {}", stamps.display()),
            ],
            command_timeout: Duration::from_secs(5),
            master_socket: None,
            command_min_interval: Duration::from_millis(300),
        };
        let mut plugin = TemplatePlugin::new(config);
        for i in [1, 2] {
            let mut s = snapshot(Some(i), &[]);
            s.masters
                .insert(GroupName::new("main").unwrap(), endpoint(i).node);
            plugin.apply(&s).await.unwrap();
        }
        let runs: Vec<u128> = std::fs::read_to_string(&stamps)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(runs.len(), 2, "each change got its own command run");
        assert!(
            runs[1] - runs[0] >= 300_000_000,
            "runs {} ns apart",
            runs[1] - runs[0]
        );
    }
}
