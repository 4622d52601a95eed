//! `zgresctl`: parse arguments, run one command against ZooKeeper, print the result.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

mod cli;

use cli::{AclCommand, Args, Command};
use zgres_schema::documents::{NodeAction, SwitchoverKind};
use zgresctl::inventory::{resolve_node, CtlError, HandOver, Inventory, NodeMatch, Usage};
use zgresctl::node_requests::{self, RunOptions};
use zgresctl::prompts::{confirm, parse_scheduled};
use zgresctl::{credentials, render};

use zgres_config::EXIT_USAGE;

/// Writes to standard output. A reader that went away (`zgresctl list | head`) ends the
/// program quietly with the status a shell expects after SIGPIPE (128 + 13).
fn write_stdout(text: std::fmt::Arguments) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_BROKEN_PIPE.into());
        }
        eprintln!("zgresctl: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

macro_rules! out {
    ($($arg:tt)*) => { $crate::write_stdout(format_args!($($arg)*)) };
}

macro_rules! outln {
    () => { $crate::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

mod config_commands;
mod node_commands;
use config_commands::config_command;
use node_commands::{node_requests, restart, Output};

/// Exit status after standard output was closed (128 + SIGPIPE).
const EXIT_BROKEN_PIPE: u8 = 141;

/// Exit status when ZooKeeper cannot be reached (`EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: u8 = 69;

async fn set_paused(
    inventory: &Inventory,
    group: &str,
    pause: bool,
    json: bool,
) -> Result<(), CtlError> {
    let config = inventory
        .update_config(group, false, |c| {
            c.paused = pause;
            Ok(())
        })
        .await?;
    if json {
        print_json(&config);
    } else if pause {
        outln!("group {group} paused: deadmen take no automatic action");
    } else {
        outln!("group {group} resumed");
    }
    Ok(())
}

async fn hand_over(
    inventory: &Inventory,
    group: &str,
    request: HandOver,
    force: bool,
    json: bool,
) -> Result<(), CtlError> {
    // Say which node a name or id matched before asking for confirmation.
    let target = match &request.to {
        Some(to) => {
            let view = inventory.groups(Some(group)).await?.remove(0);
            let (node, matched) = resolve_node(&view, to)?;
            let how = match matched {
                NodeMatch::Id => "id",
                NodeMatch::Name => "name",
            };
            match node.name() {
                Some(name) => format!("{name} ({}, matched by {how})", node.node),
                None => format!("{} (matched by {how})", node.node),
            }
        }
        None => "the best replica".into(),
    };
    if !json {
        eprintln!("target: {target}");
    }
    let verb = match request.kind {
        SwitchoverKind::Switchover => "Switch over",
        SwitchoverKind::Failover => "Fail over",
    };
    if !force {
        confirm(&format!("{verb} group {group} to {target}?"))?;
    }
    let (doc, old) = inventory.request_hand_over(group, &request).await?;
    if doc.scheduled_at_ms.is_some() {
        if json {
            print_json(&doc);
        } else {
            outln!("{verb} of group {group} to {target} scheduled; `zgresctl switchover --cancel {group}` cancels it");
        }
        return Ok(());
    }
    let new = inventory
        .wait_hand_over(group, old, Duration::from_secs(120))
        .await?;
    if json {
        print_json(&serde_json::json!({"group": group, "old_primary": old, "new_primary": new}));
    } else {
        outln!(
            "group {group}: {new} is the primary now (was {})",
            old.map_or("none".into(), |o| o.to_string())
        );
    }
    Ok(())
}

async fn watch_list(
    inventory: &Inventory,
    group: Option<&str>,
    every: f64,
    json: bool,
) -> Result<(), CtlError> {
    let every = Duration::try_from_secs_f64(every)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or(Usage::Watch)?;
    loop {
        let groups = inventory.groups(group).await?;
        if json {
            outln!("{}", serde_json::to_string(&groups).unwrap_or_default());
        } else {
            // Clear the screen and go home, as watch(1) does.
            out!(
                "\x1b[2J\x1b[H{}  (every {every:?}; Ctrl-C to stop)\n{}",
                humantime::format_rfc3339_seconds(SystemTime::now()),
                render::groups(&groups)
            );
        }
        let _ = std::io::stdout().flush();
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => eprintln!("zgresctl: {e}"),
    }
}

async fn run(args: Args) -> Result<(), CtlError> {
    if let Command::Digest {
        user,
        password_file,
    } = &args.command
    {
        outln!("{}", credentials::digest_of(user, password_file)?);
        return Ok(());
    }
    let auth = credentials::from_options(
        args.zk_user.as_deref(),
        args.zk_password_file.as_deref(),
        args.zk_sasl,
    )?;
    let tls = credentials::tls_from_options(
        args.zk_tls_ca.as_deref(),
        args.zk_tls_cert.as_deref(),
        args.zk_tls_key.as_deref(),
    )?;
    let certified = tls.as_ref().is_some_and(zgres_zk::ZkTls::has_identity);
    if matches!(args.command, Command::Acl { .. }) && auth.is_none() && !certified {
        return Err(Usage::AclNeedsIdentity.into());
    }
    let inventory = Inventory::connect(
        &args.zookeeper,
        &args.root,
        (auth, tls),
        &args.zk_readers,
        Duration::from_secs(5),
    )
    .await?;
    match args.command {
        Command::List {
            group,
            watch: Some(every),
        } => watch_list(&inventory, group.as_deref(), every, args.json).await?,
        Command::List { group, watch: None } => {
            let groups = inventory.groups(group.as_deref()).await?;
            if args.json {
                print_json(&groups);
            } else {
                out!("{}", render::groups(&groups));
            }
        }
        Command::Show { group, node } => print_json(&inventory.node(&group, &node).await?),
        Command::Dsn { group, replica } => {
            let dsn = inventory.dsn(&group, replica).await?;
            if args.json {
                print_json(&dsn);
            } else {
                outln!("{}", dsn.dsn);
            }
        }
        Command::Unlock { group, force } => {
            if !force {
                confirm(&format!(
                    "Release group {group}'s lock left at a paused shutdown? Once resumed, the group elects a new primary: make sure the old one no longer runs."
                ))?;
            }
            let named = inventory.unlock_group(&group).await?;
            let named = named.unwrap_or_else(|| "an unreadable node".to_owned());
            if args.json {
                print_json(&serde_json::json!({"group": group, "released": named}));
            } else {
                outln!("group {group}: released the lock left by {named}");
            }
        }
        Command::Remove { group, force } => {
            if !force {
                confirm(&format!(
                    "Delete everything group {group} keeps in ZooKeeper (its config, history and database id)?"
                ))?;
            }
            let deleted = inventory.remove_group(&group).await?;
            if args.json {
                print_json(&serde_json::json!({"group": group, "deleted": deleted}));
            } else if deleted.is_empty() {
                outln!("group {group}: nothing left to delete");
            } else {
                outln!("group {group}: deleted {}", deleted.join(", "));
            }
        }
        Command::Topology { group } => {
            let view = inventory.groups(Some(&group)).await?.remove(0);
            if args.json {
                let members: Vec<_> = view
                    .nodes
                    .iter()
                    .map(|n| {
                        serde_json::json!({
                            "node": n.node,
                            "name": n.name(),
                            "role": n.state.as_ref().map(|s| s.role),
                            "leader": n.leader,
                            "upstream": n.state.as_ref().and_then(|s| s.upstream),
                            "lag_bytes": n.lag_bytes,
                        })
                    })
                    .collect();
                print_json(&members);
            } else {
                out!("{}", render::topology(&view));
            }
        }
        Command::History { group } => {
            let history = inventory.history(&group).await?;
            if args.json {
                print_json(&history);
            } else {
                out!("{}", render::history(&history));
            }
        }
        Command::Config { action } => config_command(&inventory, action).await?,
        Command::Switchover {
            group,
            cancel: true,
            ..
        } => {
            if inventory.cancel_hand_over(&group).await? {
                outln!("pending request for group {group} cancelled");
            } else {
                outln!("group {group} has no pending request");
            }
        }
        Command::Switchover {
            group,
            to,
            scheduled,
            force,
            cancel: false,
        } => {
            let scheduled_at_ms = scheduled.as_deref().map(parse_scheduled).transpose()?;
            let request = HandOver {
                kind: SwitchoverKind::Switchover,
                to,
                scheduled_at_ms,
            };
            hand_over(&inventory, &group, request, force, args.json).await?;
        }
        Command::Failover { group, to, force } => {
            let request = HandOver {
                kind: SwitchoverKind::Failover,
                to: Some(to),
                scheduled_at_ms: None,
            };
            hand_over(&inventory, &group, request, force, args.json).await?;
        }
        Command::Restart(restart_args) => restart(&inventory, restart_args, args.json).await?,
        Command::Reinit { group, node, force } => {
            let nodes = node_requests::targets(&inventory, &group, Some(&node), false).await?;
            let options = RunOptions {
                force,
                switchover: false,
            };
            let output = Output {
                json: args.json,
                named: true,
            };
            node_requests(
                &inventory,
                &group,
                &nodes,
                NodeAction::Reinit,
                options,
                output,
            )
            .await?
        }
        Command::Reload { group, node, force } => {
            let nodes = node_requests::targets(&inventory, &group, node.as_deref(), false).await?;
            let options = RunOptions {
                force,
                switchover: false,
            };
            let output = Output {
                json: args.json,
                named: node.is_some(),
            };
            node_requests(
                &inventory,
                &group,
                &nodes,
                NodeAction::Reload,
                options,
                output,
            )
            .await?
        }
        Command::Pause { group } => set_paused(&inventory, &group, true, args.json).await?,
        Command::Resume { group } => set_paused(&inventory, &group, false, args.json).await?,
        // Answered before connecting.
        Command::Digest { .. } => {}
        Command::Acl {
            action:
                AclCommand::Apply {
                    group,
                    all,
                    drop_readers,
                },
        } => {
            if group.is_none() && !all {
                return Err(Usage::AclScope.into());
            }
            let report = inventory.apply_acls(group.as_deref(), drop_readers).await?;
            if args.json {
                print_json(&report);
            } else {
                outln!(
                    "{} znodes checked, {} changed{}",
                    report.checked,
                    report.changed,
                    if report.conflicts.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; changed by someone else meanwhile (run again): {}",
                            report.conflicts.join(", ")
                        )
                    }
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Args = match zgres_config::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zgresctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zgresctl: {e}");
            exit_code(&e)
        }
    }
}

/// The exit code for each kind of failure: 64 for what the operator must fix on the command
/// line, 69 when ZooKeeper cannot be reached, 1 for everything the group's state or a
/// concurrent change explains.
fn exit_code(e: &CtlError) -> ExitCode {
    match e {
        CtlError::Unreachable(_) => ExitCode::from(EXIT_UNAVAILABLE),
        CtlError::Usage(_) => ExitCode::from(EXIT_USAGE),
        CtlError::ZooKeeper(_)
        | CtlError::UnknownGroup(_)
        | CtlError::NoGroups { .. }
        | CtlError::UnknownNode { .. }
        | CtlError::Decode(_)
        | CtlError::Encode(_)
        | CtlError::Conflict(_)
        | CtlError::Refused(_)
        | CtlError::Pending { .. }
        | CtlError::RequestPending { .. }
        | CtlError::RequestTimeout { .. }
        | CtlError::HandOverTimeout { .. } => ExitCode::FAILURE,
    }
}
