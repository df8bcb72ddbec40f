//! `pimsync target`: re-enable a target its receiver disabled (a webhook endpoint that
//! answered `410 Gone`), or disable one by hand. Works whether the daemon runs or not: a
//! running daemon notices within a second and resumes (or stops) delivery; changes for a
//! disabled target keep accumulating in the outbox meanwhile, so nothing is lost.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use pimsync::store::now_ms;

use super::{ConfigArg, age};

#[derive(Subcommand, Debug)]
pub enum TargetCommand {
    /// Let the dispatcher call a disabled target again; its pending changes go out.
    Enable {
        #[command(flatten)]
        config: ConfigArg,
        /// The target's name.
        name: String,
    },
    /// Stop calling a target until `pimsync target enable`; its changes keep accumulating.
    Disable {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
        /// Shown by `pimsync status` and the admin API.
        #[arg(long, default_value = "disabled by an operator")]
        reason: String,
    },
}

pub fn run(command: TargetCommand) -> anyhow::Result<ExitCode> {
    match command {
        TargetCommand::Enable { config, name } => {
            let config = super::load_config(&config.config)?;
            check_target(&config, &name)?;
            let was = super::with_store(&config, async |store| {
                store
                    .enable_target(name.clone())
                    .await
                    .context("enabling the target")
            })?;
            match was {
                Some(disabled) => {
                    super::emit(&format!(
                        "enabled {name} (disabled {} ago: {})\n",
                        age(now_ms() - disabled.at),
                        disabled.reason
                    ))?;
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    super::emit(&format!("{name} was not disabled\n"))?;
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        TargetCommand::Disable {
            config,
            name,
            reason,
        } => {
            let config = super::load_config(&config.config)?;
            check_target(&config, &name)?;
            let newly = super::with_store(&config, async |store| {
                store
                    .disable_target(name.clone(), reason.clone())
                    .await
                    .context("disabling the target")
            })?;
            let text = if newly {
                format!("disabled {name}; re-enable with `pimsync target enable {name}`\n")
            } else {
                format!("{name} was already disabled\n")
            };
            super::emit(&text)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check_target(config: &pimsync::config::Config, name: &str) -> anyhow::Result<()> {
    if config.targets.iter().any(|t| t.name == name) {
        return Ok(());
    }
    let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    anyhow::bail!(
        "unknown target \"{name}\" (configured: {})",
        names.join(", ")
    )
}
