//! `airlock agents`: add, list, remove and rotate the agents allowed to use the proxy. With an
//! embedded store they live in the config file (a running `airlock serve` notices the change
//! within a second); with a shared database (`[store] backend = "postgres"`) `add` changes the
//! database, and every running `airlock serve` on it follows at once. `remove` and `rotate`
//! change the entry where it is: the config file's (edited in place, `config_edit.rs`), the
//! database's, or both.

use anyhow::{bail, Result};
use clap::Subcommand;

use airlock::config::{AgentConfig, Config};

use super::config_edit::{self, Table};
use super::{append_config_block, shared_directory};

#[derive(Subcommand)]
pub(super) enum AgentsCommand {
    /// Create an agent and print its token once (only its SHA-256 is kept): in the shared
    /// database with `[store] backend = "postgres"`, else appended to the config file
    /// (--config, $AIRLOCK_CONFIG or ./airlock.toml, created if absent).
    Add {
        name: String,
        /// Services it may reach (e.g. github,stripe); default: no limit.
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Person responsible for this agent.
        #[arg(long)]
        owner: Option<String>,
    },
    /// List the agents: the config file's, and the shared database's (tokens are never kept,
    /// only their digests).
    List,
    /// Remove an agent: its token stops working, and so do the connections it has open (their
    /// next request gets 407). From the config file (its `[[agents]]` block) and from the
    /// shared database, wherever it is.
    Remove { name: String },
    /// Give an agent a new token and print it once; the old token stops working at once
    /// (its open connections get 407 on their next request).
    Rotate { name: String },
}

fn describe(a: &AgentConfig) -> String {
    format!(
        "{}\tservices={}\thosts={}\towner={}",
        a.name,
        if a.services.is_empty() {
            "*".into()
        } else {
            a.services.join(",")
        },
        a.hosts.join(","),
        a.owner.as_deref().unwrap_or("-")
    )
}

pub(super) fn agents_cmd(config: Config, cmd: AgentsCommand) -> Result<()> {
    let directory = shared_directory(&config)?;
    match cmd {
        AgentsCommand::List => {
            let stored = match &directory {
                Some(d) => {
                    let loaded = d.agents()?;
                    for why in &loaded.invalid {
                        eprintln!("warning: skipping {why}");
                    }
                    loaded.records
                }
                None => Vec::new(),
            };
            if config.agents.is_empty() && stored.is_empty() {
                println!(
                    "no agents configured (proxy.allow_anonymous = {})",
                    config.proxy.allow_anonymous
                );
            }
            let shared = directory.is_some();
            for a in &config.agents {
                match shared {
                    true => println!("{}\tsource=config", describe(a)),
                    false => println!("{}", describe(a)),
                }
            }
            for a in &stored {
                match config.agents.iter().any(|c| c.name == a.name) {
                    true => println!(
                        "{}\tsource=database (not in force: the config file's entry wins)",
                        describe(a)
                    ),
                    false => println!("{}\tsource=database", describe(a)),
                }
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
            let digest = airlock::agents::token_digest(&token);
            let place = match &directory {
                Some(d) => {
                    let agent = airlock::config::agent_entry(
                        &name,
                        &hex::encode(digest),
                        &services,
                        &[],
                        owner.as_deref(),
                    )
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                    if !d.add_agent(&agent)? {
                        bail!("agent {name:?} already exists in the database");
                    }
                    "the shared database".to_string()
                }
                None => {
                    let block =
                        airlock::agents::config_block(&name, &digest, &services, owner.as_deref());
                    append_config_block(&config, &block)?.display().to_string()
                }
            };
            eprintln!(
                "agent {name} added to {place} (only the token's SHA-256 is stored). Its token, shown once:"
            );
            println!("{token}");
            eprintln!(
                "use: HTTPS_PROXY=http://{name}:<token>@{} ({})",
                config.proxy.listen,
                match directory {
                    Some(_) => "every airlock serve on this database accepts it now",
                    None => "a running airlock serve loads it within a second",
                }
            );
            Ok(())
        }
        AgentsCommand::Remove { name } => {
            let path = config_edit::config_path(&config);
            let from_file = config_edit::remove(&path, Table::Agents, &name)?;
            let from_database = match &directory {
                Some(d) => d.remove_agent(&name)?,
                None => false,
            };
            if !from_file && !from_database {
                bail!("no agent named {name:?}");
            }
            if from_file {
                eprintln!(
                    "agent {name} removed from {}; a running airlock serve drops it within a second (its open connections get 407 on their next request)",
                    path.display()
                );
            }
            if from_database {
                eprintln!("agent {name} removed from the shared database; its token no longer works on any instance");
            }
            Ok(())
        }
        AgentsCommand::Rotate { name } => {
            let token = airlock::agents::generate_token();
            let digest = airlock::agents::token_digest(&token);
            let path = config_edit::config_path(&config);
            // The config file's entry is the one in force when both have the name.
            let place =
                if config_edit::set_token(&path, Table::Agents, &name, &hex::encode(digest))? {
                    format!(
                        "{} (a running airlock serve takes it within a second)",
                        path.display()
                    )
                } else {
                    match &directory {
                        Some(d) if d.set_agent_token(&name, &digest)? => {
                            "the shared database (every instance takes it at once)".to_string()
                        }
                        _ => bail!("no agent named {name:?}"),
                    }
                };
            eprintln!(
                "agent {name} has a new token in {place}; the old one no longer works. The new token, shown once:"
            );
            println!("{token}");
            Ok(())
        }
    }
}
