//! Deadman plugins: extra metadata for the node's state (an availability zone, say) and health
//! vetoes that take the node's `/conn` away.
//!
//! A plugin is an executable (`command`, given the path of a JSON file) or a shared library
//! (`library`, through the zgres plugin ABI, given the JSON itself). The JSON is
//! `{"v": 1, "group": ..., "node": ..., "state": <the node's last state>}`; the answer is
//! `{"meta": {...}, "veto": "reason"}`, both optional. Plugins run in their own task every
//! `timing.plugin_interval_ms`, so a slow one never delays a decision. A plugin that fails,
//! times out or answers with something else vetoes the node (fail closed): an operator who asks
//! a check to guard the node's availability does not want it ignored when it breaks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zgres_plugin::LoadedPlugin;

/// One configured plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSpec {
    /// An executable and its arguments; the input file's path is appended.
    Command(Vec<String>, Duration),
    /// A shared library speaking the zgres plugin ABI.
    Library(PathBuf, Duration),
}

/// What all plugins said last time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginOutcome {
    /// Metadata to merge into the node's state (later plugins win on equal keys).
    pub meta: BTreeMap<String, serde_json::Value>,
    /// Why the node must not count as healthy; empty when no plugin objects.
    pub vetoes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    #[serde(default)]
    meta: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    veto: Option<String>,
}

/// Why a plugin could not start. Permanent.
#[derive(Debug, thiserror::Error)]
pub enum PluginSetupError {
    /// A library could not be loaded or speaks another ABI.
    #[error(transparent)]
    Library(#[from] zgres_plugin::PluginError),
    /// A library or command others may write.
    #[error(transparent)]
    Untrusted(#[from] zgres_process::UntrustedFile),
}

enum Loaded {
    Command(Vec<String>, Duration),
    Library(Arc<LoadedPlugin>, Duration),
}

impl Loaded {
    fn name(&self) -> String {
        match self {
            Loaded::Command(argv, _) => argv.first().cloned().unwrap_or_default(),
            Loaded::Library(p, _) => p.name().to_owned(),
        }
    }
}

/// The plugin task's handle: its latest outcome, and where to send the latest state.
#[derive(Debug)]
pub struct Plugins {
    /// The latest outcome (default until the first round).
    pub outcome: watch::Receiver<PluginOutcome>,
    /// The latest input document.
    pub input: watch::Sender<Option<Vec<u8>>>,
}

/// Loads the libraries (checking their ABI) and starts the plugin task; `None` when no plugin
/// is configured.
///
/// # Errors
/// [`PluginSetupError`] for a library that cannot be used; the daemon refuses to start.
pub fn start(
    specs: &[PluginSpec],
    interval: Duration,
    shutdown: CancellationToken,
) -> Result<Option<Plugins>, PluginSetupError> {
    if specs.is_empty() {
        return Ok(None);
    }
    let mut loaded = Vec::new();
    for spec in specs {
        loaded.push(match spec {
            PluginSpec::Command(argv, timeout) => {
                if let Some(program) = argv.first() {
                    zgres_process::check_trusted(std::path::Path::new(program))?;
                }
                Loaded::Command(argv.clone(), *timeout)
            }
            PluginSpec::Library(path, timeout) => {
                zgres_process::check_trusted(path)?;
                let plugin = LoadedPlugin::load(path)?;
                tracing::info!(plugin = plugin.name(), library = %path.display(), "loaded plugin");
                Loaded::Library(Arc::new(plugin), *timeout)
            }
        });
    }
    let (outcome_tx, outcome) = watch::channel(PluginOutcome::default());
    let (input, mut input_rx) = watch::channel::<Option<Vec<u8>>>(None);
    tokio::spawn(async move {
        loop {
            let current = input_rx.borrow_and_update().clone();
            if let Some(document) = current {
                let mut outcome = PluginOutcome::default();
                for plugin in &loaded {
                    match run_one(plugin, &document).await {
                        Ok(answer) => {
                            outcome.meta.extend(answer.meta);
                            if let Some(reason) = answer.veto {
                                outcome
                                    .vetoes
                                    .push(format!("vetoed by plugin {}: {reason}", plugin.name()));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(plugin = %plugin.name(), error = %e, "plugin failed; counting it as a veto");
                            outcome
                                .vetoes
                                .push(format!("plugin {} failed: {e}", plugin.name()));
                        }
                    }
                }
                outcome_tx.send_if_modified(|old| {
                    let changed = *old != outcome;
                    *old = outcome;
                    changed
                });
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
    Ok(Some(Plugins { outcome, input }))
}

/// Why a plugin gave no usable answer (the node then counts as vetoed).
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// Its input file could not be created or written.
    #[error("cannot hand it its input: {0}")]
    Input(std::io::Error),
    /// The configured command is empty (config validation prevents this).
    #[error("empty command")]
    EmptyCommand,
    /// The command failed, timed out or could not start.
    #[error(transparent)]
    Command(#[from] zgres_process::CommandError),
    /// The library call did not return in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The library call's thread failed.
    #[error("the call did not finish: {0}")]
    Crashed(#[from] tokio::task::JoinError),
    /// The library refused or failed.
    #[error(transparent)]
    Library(#[from] zgres_plugin::PluginError),
    /// The answer is not the documented JSON.
    #[error("answer is not {{\"meta\": {{...}}, \"veto\": \"...\"}}: {error} (got {shown:?})")]
    BadAnswer {
        /// The parser's complaint.
        error: serde_json::Error,
        /// The start of the answer.
        shown: String,
    },
}

async fn run_one(plugin: &Loaded, document: &[u8]) -> Result<Answer, RunError> {
    let output = match plugin {
        Loaded::Command(argv, timeout) => {
            // One file per run, removed when the run ends: nothing is left behind unless the
            // deadman is killed during the run itself.
            let mut input_file = tempfile::Builder::new()
                .prefix("zgres-deadman-plugin-input-")
                .suffix(".json")
                .tempfile()
                .map_err(RunError::Input)?;
            std::io::Write::write_all(&mut input_file, document).map_err(RunError::Input)?;
            let (program, args) = argv.split_first().ok_or(RunError::EmptyCommand)?;
            let args = args
                .iter()
                .map(std::ffi::OsStr::new)
                .chain([input_file.path().as_os_str()]);
            zgres_process::run(program.as_ref(), args, *timeout).await?
        }
        Loaded::Library(library, timeout) => {
            let library = library.clone();
            let document = document.to_vec();
            let call = tokio::task::spawn_blocking(move || library.call(&document));
            match tokio::time::timeout(*timeout, call).await {
                Err(_) => return Err(RunError::TimedOut(*timeout)),
                Ok(joined) => joined??,
            }
        }
    };
    let text = String::from_utf8_lossy(&output);
    if text.trim().is_empty() {
        return Ok(Answer {
            meta: BTreeMap::new(),
            veto: None,
        });
    }
    serde_json::from_str(text.trim()).map_err(|error| RunError::BadAnswer {
        error,
        shown: text.chars().take(200).collect(),
    })
}
