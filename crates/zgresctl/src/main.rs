//! `zgresctl`: parse arguments, run one command against ZooKeeper, print the result.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use zgres_schema::documents::SwitchoverKind;
use zgresctl::inventory::{
    parse_config, resolve_node, set_config_value, CtlError, HandOver, Inventory, NodeMatch, Usage,
};
use zgresctl::prompts::{confirm, edit_file, parse_scheduled};
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
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

macro_rules! outln {
    () => { write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Exit status after standard output was closed (128 + SIGPIPE).
const EXIT_BROKEN_PIPE: u8 = 141;

/// Exit status when ZooKeeper cannot be reached (`EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: u8 = 69;

/// Look at and steer zgres groups (reads and writes ZooKeeper only).
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Exit status: 0 done; 1 refused or failed (the message says why); 64 usage \
error; 69 ZooKeeper unreachable; 141 standard output was closed (e.g. `| head`)."
)]
struct Args {
    /// ZooKeeper ensemble, host:port,...
    #[arg(
        long,
        global = true,
        env = "ZGRES_ZOOKEEPER",
        default_value = "127.0.0.1:2181"
    )]
    zookeeper: String,
    /// Root of the zgres znodes.
    #[arg(long, global = true, env = "ZGRES_ROOT", default_value = "/zgres")]
    root: String,
    /// ZooKeeper digest user (the deadmen's writer identity), with --zk-password-file.
    #[arg(long, global = true, env = "ZGRES_ZK_USER")]
    zk_user: Option<String>,
    /// File whose first line is the ZooKeeper digest password.
    #[arg(long, global = true, env = "ZGRES_ZK_PASSWORD_FILE")]
    zk_password_file: Option<std::path::PathBuf>,
    /// ACL id granted read access to what zgresctl creates or `acl apply` sets (repeatable;
    /// the deadmen's `readers`).
    #[arg(long = "zk-reader", global = true)]
    zk_readers: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A table per group: members, roles, state, timeline, lag.
    List {
        /// Only this group.
        group: Option<String>,
        /// Refresh every SECONDS (default 2) until interrupted.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<f64>,
    },
    /// The full state of one node.
    Show {
        /// The group.
        group: String,
        /// The node: its id (IP:PORT) or its configured name (e.g. n1).
        node: String,
    },
    /// The group's promotions.
    History {
        /// The group.
        group: String,
    },
    /// The group's dynamic configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Planned switchover: the primary stops writes, the candidate catches up fully and is
    /// promoted, the old primary follows it.
    Switchover {
        /// The group.
        group: String,
        /// The replica to promote, by id (IP:PORT) or configured name (e.g. n1); default: the
        /// best one.
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
        /// Not before this time: RFC 3339 (`2026-11-22T03:00:00Z`) or `+10m`-style from now.
        #[arg(long, value_name = "TIME")]
        scheduled: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
        /// Cancel the pending switchover or failover instead.
        #[arg(long, conflicts_with_all = ["to", "scheduled"])]
        cancel: bool,
    },
    /// Forced failover to a named replica, even when the primary is gone.
    Failover {
        /// The group.
        group: String,
        /// The replica to promote, by id (IP:PORT) or configured name (e.g. n1).
        #[arg(long, value_name = "NODE")]
        to: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Stop automatic actions (failover) in the group.
    Pause {
        /// The group.
        group: String,
    },
    /// Resume automatic actions in the group.
    Resume {
        /// The group.
        group: String,
    },
    /// ZooKeeper ACLs of the zgres tree.
    Acl {
        #[command(subcommand)]
        action: AclCommand,
    },
    /// Print the ZooKeeper ACL id of a digest identity (for `[zookeeper] readers`), from the
    /// password in `--password-file`. Needs no ZooKeeper.
    Digest {
        /// The user.
        user: String,
        /// File whose first line is the password.
        #[arg(long)]
        password_file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AclCommand {
    /// Put the ACL policy of --zk-user (all rights; read for each --zk-reader; nothing for
    /// anyone else) on existing znodes: the root, the directories and GROUP's znodes, or
    /// everything with --all. Znodes already carrying it are left alone.
    Apply {
        /// The group.
        group: Option<String>,
        /// Every znode under the root.
        #[arg(long, conflicts_with = "group")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print it.
    Get {
        /// The group.
        group: String,
    },
    /// Change keys: `zgresctl config set main maximum_lag_on_failover_bytes=1048576`.
    Set {
        /// The group.
        group: String,
        /// `key=value` pairs.
        #[arg(required = true)]
        assignments: Vec<String>,
    },
    /// Edit it in $VISUAL / $EDITOR; written back only if unchanged meanwhile.
    Edit {
        /// The group.
        group: String,
    },
}

async fn set_paused(
    inventory: &Inventory,
    group: &str,
    pause: bool,
    json: bool,
) -> Result<(), CtlError> {
    let config = inventory
        .update_config(group, |c| {
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
    let auth =
        credentials::from_options(args.zk_user.as_deref(), args.zk_password_file.as_deref())?;
    if matches!(args.command, Command::Acl { .. }) && auth.is_none() {
        return Err(Usage::AclNeedsIdentity.into());
    }
    let inventory = Inventory::connect(
        &args.zookeeper,
        &args.root,
        auth,
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
        Command::History { group } => {
            let history = inventory.history(&group).await?;
            if args.json {
                print_json(&history);
            } else {
                out!("{}", render::history(&history));
            }
        }
        Command::Config {
            action: ConfigAction::Get { group },
        } => {
            let name = inventory.groups(Some(&group)).await?.remove(0).group;
            print_json(&inventory.config(&name).await?.0);
        }
        Command::Config {
            action: ConfigAction::Set { group, assignments },
        } => {
            let config = inventory
                .update_config(&group, |config| {
                    assignments
                        .iter()
                        .try_for_each(|a| set_config_value(config, a).map_err(CtlError::from))
                })
                .await?;
            print_json(&config);
        }
        Command::Config {
            action: ConfigAction::Edit { group },
        } => {
            let name = inventory.groups(Some(&group)).await?.remove(0).group;
            let (config, version) = inventory.config(&name).await?;
            let original = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
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
            let config = parse_config(&edited)?;
            inventory.write_config(&name, &config, version).await?;
            print_json(&config);
        }
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
        Command::Pause { group } => set_paused(&inventory, &group, true, args.json).await?,
        Command::Resume { group } => set_paused(&inventory, &group, false, args.json).await?,
        // Answered before connecting.
        Command::Digest { .. } => {}
        Command::Acl {
            action: AclCommand::Apply { group, all },
        } => {
            if group.is_none() && !all {
                return Err(Usage::AclScope.into());
            }
            let report = inventory.apply_acls(group.as_deref()).await?;
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
        | CtlError::HandOverTimeout { .. } => ExitCode::FAILURE,
    }
}
