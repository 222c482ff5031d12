//! `airlock agents`: add and list the agents allowed to use the proxy.

use anyhow::{bail, Result};
use clap::Subcommand;

use airlock::config::Config;

use super::append_config_block;

#[derive(Subcommand)]
pub(super) enum AgentsCommand {
    /// Create an agent: appends it (token stored only as SHA-256) to the config file
    /// (--config, $AIRLOCK_CONFIG or ./airlock.toml, created if absent) and prints its token once.
    Add {
        name: String,
        /// Services it may reach (e.g. github,stripe); default: no limit.
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Person responsible for this agent.
        #[arg(long)]
        owner: Option<String>,
    },
    /// List configured agents (tokens are never stored, only their digests).
    List,
}

pub(super) fn agents_cmd(config: Config, cmd: AgentsCommand) -> Result<()> {
    match cmd {
        AgentsCommand::List => {
            if config.agents.is_empty() {
                println!(
                    "no agents configured (proxy.allow_anonymous = {})",
                    config.proxy.allow_anonymous
                );
            }
            for a in &config.agents {
                println!(
                    "{}\tservices={}\thosts={}\towner={}",
                    a.name,
                    if a.services.is_empty() {
                        "*".into()
                    } else {
                        a.services.join(",")
                    },
                    a.hosts.join(","),
                    a.owner.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        AgentsCommand::Add {
            name,
            services,
            owner,
        } => {
            if config.agents.iter().any(|a| a.name == name) {
                bail!("agent {name:?} already exists in the config");
            }
            let token = airlock::agents::generate_token();
            let block = airlock::agents::config_block(
                &name,
                &airlock::agents::token_digest(&token),
                &services,
                owner.as_deref(),
            );
            let path = append_config_block(&config, &block)?;
            eprintln!(
                "agent {name} added to {} (only the token's SHA-256 is stored). Its token, shown once:",
                path.display()
            );
            println!("{token}");
            eprintln!(
                "use: HTTPS_PROXY=http://{name}:<token>@{} (restart airlock serve to load it)",
                config.proxy.listen
            );
            Ok(())
        }
    }
}
