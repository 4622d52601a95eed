//! `zgresctl`: parse arguments, run one command against ZooKeeper, print the result.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use zgresctl::inventory::{set_config_value, CtlError, Inventory};
use zgresctl::render;

use zgres_config::EXIT_USAGE;

/// Exit status when ZooKeeper cannot be reached (`EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: u8 = 69;

/// Look at and steer zgres groups (reads and writes ZooKeeper only).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// ZooKeeper ensemble, host:port,...
    #[arg(long, env = "ZGRES_ZOOKEEPER", default_value = "127.0.0.1:2181")]
    zookeeper: String,
    /// Root of the zgres znodes.
    #[arg(long, env = "ZGRES_ROOT", default_value = "/zgres")]
    root: String,
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
    },
    /// The full state of one node.
    Show {
        /// The group.
        group: String,
        /// The node id (IP:PORT).
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
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("zgresctl: {e}"),
    }
}

async fn run(args: Args) -> Result<(), CtlError> {
    let inventory = Inventory::connect(&args.zookeeper, &args.root, Duration::from_secs(5)).await?;
    match args.command {
        Command::List { group } => {
            let groups = inventory.groups(group.as_deref()).await?;
            if args.json {
                print_json(&groups);
            } else {
                print!("{}", render::groups(&groups));
            }
        }
        Command::Show { group, node } => print_json(&inventory.node(&group, &node).await?),
        Command::History { group } => {
            let history = inventory.history(&group).await?;
            if args.json {
                print_json(&history);
            } else {
                print!("{}", render::history(&history));
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
                        .try_for_each(|a| set_config_value(config, a))
                })
                .await?;
            print_json(&config);
        }
        Command::Pause { group } => {
            inventory
                .update_config(&group, |c| {
                    c.paused = true;
                    Ok(())
                })
                .await?;
            println!("group {group} paused: deadmen take no automatic action");
        }
        Command::Resume { group } => {
            inventory
                .update_config(&group, |c| {
                    c.paused = false;
                    Ok(())
                })
                .await?;
            println!("group {group} resumed");
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
            match e {
                CtlError::Unreachable { .. } => ExitCode::from(EXIT_UNAVAILABLE),
                CtlError::Usage(_) => ExitCode::from(EXIT_USAGE),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
