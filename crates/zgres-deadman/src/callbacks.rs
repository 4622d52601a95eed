//! Operator callbacks on the database node, called as Patroni calls them:
//! `PROGRAM ACTION ROLE GROUP` (e.g. `/etc/zgres/vip on_role_change primary main`), with
//! `ZGRES_GROUP` and `ZGRES_NODE` in a cleared environment.
//!
//! Which callback is due is the core's decision ([`crate::callbacks_due`]); this module runs
//! them. `on_*` callbacks run one at a time, in order, in their own task, each killed (with its
//! process group) after `callbacks.timeout_ms`: they never delay a round, the lock or the
//! fence (which has its own thread). `pre_promote` runs before a promotion and is awaited,
//! bounded by the same timeout; a non-zero exit or a timeout vetoes the promotion.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zgres_process::{CommandError, UntrustedFile};

use crate::callbacks_due::{CallbackAction, CallbackRole};
use crate::config::CallbacksConfig;

/// One queued call.
struct Call {
    program: PathBuf,
    args: [&'static str; 2],
    timeout: Duration,
}

/// The callback runner.
pub struct Callbacks {
    config: CallbacksConfig,
    /// The group argument.
    group: String,
    /// `ZGRES_GROUP` and `ZGRES_NODE`.
    env: Vec<(&'static str, String)>,
    /// `None` once [`Callbacks::finish`] ran.
    queue: Option<mpsc::UnboundedSender<Call>>,
    runner: JoinHandle<()>,
}

impl Callbacks {
    /// Checks the configured programs and starts the runner task.
    ///
    /// # Errors
    /// [`UntrustedFile`] for a program others may write (the deadman refuses to start).
    pub fn start(config: CallbacksConfig, group: &str, node: &str) -> Result<Self, UntrustedFile> {
        check(&config)?;
        let (queue, mut calls) = mpsc::unbounded_channel::<Call>();
        let env = vec![
            ("ZGRES_GROUP", group.to_owned()),
            ("ZGRES_NODE", node.to_owned()),
        ];
        let (runner_env, group_arg) = (env.clone(), group.to_owned());
        let runner = tokio::spawn(async move {
            while let Some(call) = calls.recv().await {
                let [action, role] = call.args;
                let args = [action, role, group_arg.as_str()];
                match run_trusted(&call.program, args, &runner_env, call.timeout).await {
                    Ok(()) => tracing::info!(
                        callback = action,
                        role,
                        program = %call.program.display(),
                        "callback done"
                    ),
                    Err(e) => {
                        tracing::error!(callback = action, role, error = %e, "callback failed")
                    }
                }
            }
        });
        Ok(Callbacks {
            config,
            group: group.to_owned(),
            env,
            queue: Some(queue),
            runner,
        })
    }

    /// Replaces the programs and timeout (a reload). Calls already queued keep theirs.
    ///
    /// # Errors
    /// [`UntrustedFile`] for a program others may write; the running configuration stays.
    pub fn set_config(&mut self, config: CallbacksConfig) -> Result<(), UntrustedFile> {
        check(&config)?;
        self.config = config;
        Ok(())
    }

    /// Queues the `action` callback with `role`, if one is configured. Returns at once.
    pub fn fire(&self, action: CallbackAction, role: CallbackRole) {
        let c = &self.config;
        let program = match action {
            CallbackAction::OnStart => &c.on_start,
            CallbackAction::OnStop => &c.on_stop,
            CallbackAction::OnReload => &c.on_reload,
            CallbackAction::OnRoleChange => &c.on_role_change,
        };
        if let (Some(program), Some(queue)) = (program, &self.queue) {
            let _ = queue.send(Call {
                program: program.clone(),
                args: [action.name(), role.name()],
                timeout: c.timeout,
            });
        }
    }

    /// Runs `pre_promote` (as `PROGRAM pre_promote replica GROUP`), if configured, and waits
    /// for it, at most the callback timeout. Cancelling the future kills it.
    ///
    /// # Errors
    /// [`CommandError`] when it exits non-zero, times out, cannot start or is not trusted:
    /// the promotion is vetoed.
    pub async fn pre_promote(&self) -> Result<(), CommandError> {
        let Some(program) = &self.config.pre_promote else {
            return Ok(());
        };
        let args = [
            "pre_promote",
            CallbackRole::Replica.name(),
            self.group.as_str(),
        ];
        run_trusted(program, args, &self.env, self.config.timeout).await
    }

    /// Lets the queued callbacks finish (an `on_stop` at shutdown, say), at most one timeout
    /// longer; what is still running then is killed.
    /// Later calls to [`Callbacks::fire`] do nothing.
    pub async fn finish(&mut self) {
        if self.queue.take().is_none() {
            return;
        }
        let bound = self.config.timeout + Duration::from_secs(1);
        if tokio::time::timeout(bound, &mut self.runner).await.is_err() {
            self.runner.abort();
            tracing::warn!("callbacks still queued at shutdown were dropped");
        }
    }
}

/// Runs `program` with `args` if it is still trusted (it may have changed since the start).
async fn run_trusted(
    program: &Path,
    args: [&str; 3],
    env: &[(&'static str, String)],
    timeout: Duration,
) -> Result<(), CommandError> {
    zgres_process::check_trusted(program)?;
    zgres_process::run_with_env(program, args, env.iter().cloned(), timeout)
        .await
        .map(drop)
}

fn check(config: &CallbacksConfig) -> Result<(), UntrustedFile> {
    for program in [
        &config.on_start,
        &config.on_stop,
        &config.on_reload,
        &config.on_role_change,
        &config.pre_promote,
    ]
    .into_iter()
    .flatten()
    {
        zgres_process::check_trusted(program)?;
    }
    Ok(())
}
