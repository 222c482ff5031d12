//! `airlock agents`: add, list, remove and rotate the agents allowed to use the proxy. With an
//! embedded store they live in the config file or its `agents_file` (a running `airlock serve`
//! notices the change within a second); with a shared database (`[store] backend =
//! "postgres"`) `add` changes the database, and every running `airlock serve` on it follows at
//! once. `remove` and `rotate` change the entry where it is: a file's (edited in place,
//! `config_edit.rs`), the database's, or both.
//!
//! `add` records when the entry was added (`added`): an agent removed and added again under
//! the same name is a new agent, and the reviews the earlier one left are not its own. `rotate`
//! keeps the entry, `added` too, and so its reviews.

use anyhow::{bail, Result};
use clap::Subcommand;

use airlock::config::{AgentConfig, Config};

use super::config_edit::{self, Table};
use super::shared_directory;

#[derive(Subcommand)]
pub(super) enum AgentsCommand {
    /// Create an agent and print its token once (only its SHA-256 is kept): in the shared
    /// database with `[store] backend = "postgres"`, else appended to the config's
    /// `agents_file` if it names one, else to the config file (the one in force, else
    /// $AIRLOCK_HOME/airlock.toml or the XDG one, created if absent).
    Add {
        name: String,
        /// Services it may reach (e.g. github,stripe); default: no limit.
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Person responsible for this agent.
        #[arg(long)]
        owner: Option<String>,
        /// Write the token to DIR/NAME/token (directory 0700, file 0600) instead of printing
        /// it: mount DIR/NAME (a volume of its own) into the agent's container, and no agent
        /// sees another's token (docker-compose.yml sets DIR).
        #[arg(long, env = "AIRLOCK_AGENT_TOKEN_DIR", value_name = "DIR")]
        token_dir: Option<std::path::PathBuf>,
        /// With --token-dir: give the token file group GID and mode 0640 (DIR/NAME: 0750), so
        /// an agent running as its own uid in that group can read it. Numeric (a container
        /// may have no group database); neither 0 nor 4294967295. Airlock's user must be a
        /// member of GID (compose: `group_add`).
        #[arg(long, env = "AIRLOCK_AGENT_TOKEN_GROUP", value_name = "GID", value_parser = parse_gid)]
        token_group: Option<u32>,
    },
    /// List the agents: the config file's, and the shared database's (tokens are never kept,
    /// only their digests).
    List,
    /// Remove an agent: its token stops working, and so do the connections it has open (their
    /// next request gets 407). From the agents file, the config file (its `[[agents]]` block)
    /// and the shared database, wherever it is.
    Remove { name: String },
    /// Give an agent a new token and print it once; the old token stops working at once
    /// (its open connections get 407 on their next request). The agent stays the same one and
    /// keeps its reviews (removing it and adding it again makes a new agent, which does not).
    Rotate { name: String },
}

/// A group id for `--token-group`: numeric; not root's group (0), nor 4294967295 (-1, which
/// `chown` reads as "leave unchanged").
fn parse_gid(s: &str) -> Result<u32, String> {
    let gid: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a numeric group id"))?;
    match gid {
        0 => Err("group 0 (root) is refused: name the agent's own group".into()),
        u32::MAX => Err("4294967295 is not a group id".into()),
        gid => Ok(gid),
    }
}

fn describe(a: &AgentConfig) -> String {
    format!(
        "{}\tservices={}\thosts={}\towner={}\tadded={}",
        a.name,
        if a.services.is_empty() {
            "*".into()
        } else {
            a.services.join(",")
        },
        a.hosts.join(","),
        a.owner.as_deref().unwrap_or("-"),
        a.added_ms
            .map(airlock::config::format_added)
            .unwrap_or_else(|| "-".into())
    )
}

/// The files that may hold `[[agents]]` entries: the agents file (if any), then the config file.
fn agent_files(config: &Config) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = config.agents_file.iter().cloned().collect();
    files.push(config_edit::config_path(config));
    files
}

pub(super) fn agents_cmd(config: Config, cmd: AgentsCommand) -> Result<()> {
    let directory = shared_directory(&config)?;
    match cmd {
        AgentsCommand::List => {
            let stored = match &directory {
                Some(d) => {
                    let loaded = d.agents()?;
                    for why in &loaded.invalid {
                        super::warn(&format!("skipping {why}"));
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
            token_dir,
            token_group,
        } => {
            if token_group.is_some() && token_dir.is_none() {
                bail!("--token-group (AIRLOCK_AGENT_TOKEN_GROUP) needs --token-dir (AIRLOCK_AGENT_TOKEN_DIR)");
            }
            if config.agents.iter().any(|a| a.name == name) {
                bail!("agent {name:?} already exists in the config");
            }
            let token = airlock::agents::generate_token();
            let digest = airlock::agents::token_digest(&token);
            // The name is checked before it names a file.
            let entry = airlock::config::agent_entry(
                &name,
                &hex::encode(digest),
                &services,
                &[],
                owner.as_deref(),
                None,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            // A service the rules and credentials do not know would admit it nowhere; `serve`
            // refuses such an agent at start.
            if !services.is_empty() {
                let catalog = super::config::load_catalog(&config)?;
                super::config::check_agent_services(&config, &[entry], &catalog)?;
            }
            // The token is written aside first and takes its name only once the agent exists:
            // a refused add leaves an earlier token file as it was.
            let token_file = match &token_dir {
                Some(dir) => {
                    let dir = dir.join(&name);
                    let (file, pending) = (dir.join("token"), dir.join(".token.new"));
                    // Never through a link: DIR/NAME is the agent's own volume, or made here.
                    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                        bail!(
                            "{} is a symbolic link: refusing to write a token through it",
                            dir.display()
                        );
                    }
                    airlock::secret_file::create_private_dir(&dir)
                        .and_then(|()| match token_group {
                            Some(gid) => airlock::secret_file::share_dir_with_group(&dir, gid)
                                .and_then(|()| {
                                    airlock::secret_file::write_for_group(
                                        &pending,
                                        token.as_bytes(),
                                        gid,
                                    )
                                }),
                            None => airlock::secret_file::write(&pending, token.as_bytes()),
                        })
                        .map_err(|e| {
                            let hint = match (token_group, e.kind()) {
                                (Some(gid), std::io::ErrorKind::PermissionDenied) => format!(
                                    " (--token-group {gid}: Airlock's user must be a member of group {gid} and own {})",
                                    dir.display()
                                ),
                                _ => String::new(),
                            };
                            anyhow::anyhow!("writing the token to {}: {e}{hint}", pending.display())
                        })?;
                    Some((file, pending))
                }
                None => None,
            };
            let added = add_agent(
                &config,
                directory.as_ref(),
                &name,
                &digest,
                &services,
                owner.as_deref(),
            );
            let place = match added {
                Ok(place) => place,
                Err(e) => {
                    if let Some((_, pending)) = &token_file {
                        let _ = std::fs::remove_file(pending);
                    }
                    return Err(e);
                }
            };
            let token_file = match token_file {
                Some((file, pending)) => {
                    std::fs::rename(&pending, &file).map_err(|e| {
                        anyhow::anyhow!(
                            "agent {name} was added, but its token could not be moved from {} to {}: {e}",
                            pending.display(),
                            file.display()
                        )
                    })?;
                    Some(file)
                }
                None => None,
            };
            match &token_file {
                Some(file) => super::note(&format!(
                    "agent {name} added to {place} (only the token's SHA-256 is stored); its token is in {} ({})",
                    file.display(),
                    match token_group {
                        Some(gid) => format!("0640, group {gid}"),
                        None => "0600".into(),
                    }
                )),
                None => {
                    super::note(&format!(
                        "agent {name} added to {place} (only the token's SHA-256 is stored). Its token, shown once:"
                    ));
                    println!("{token}");
                }
            }
            super::note(&format!(
                "use: HTTPS_PROXY=http://{name}:<token>@{} ({})",
                config.proxy.listen,
                match (&directory, &config.source) {
                    (Some(_), _) => "every airlock serve on this database accepts it now",
                    (None, Some(_)) => "a running airlock serve loads it within a second",
                    // The file was created just now: a serve that started without a config
                    // file watches none.
                    (None, None) => {
                        "this config file is new: an airlock serve already running started \
                         without it and does not read it; restart it"
                    }
                }
            ));
            Ok(())
        }
        AgentsCommand::Remove { name } => {
            let mut removed_from = Vec::new();
            for path in agent_files(&config) {
                if config_edit::remove(&path, Table::Agents, &name)? {
                    removed_from.push(path.display().to_string());
                }
            }
            let from_database = match &directory {
                Some(d) => d.remove_agent(&name)?,
                None => false,
            };
            if removed_from.is_empty() && !from_database {
                bail!("no agent named {name:?}");
            }
            for place in removed_from {
                super::note(&format!(
                    "agent {name} removed from {place}; a running airlock serve drops it within a second (its open connections get 407 on their next request)"
                ));
            }
            if from_database {
                super::note(&format!("agent {name} removed from the shared database; its token no longer works on any instance"));
            }
            Ok(())
        }
        AgentsCommand::Rotate { name } => {
            let token = airlock::agents::generate_token();
            let digest = airlock::agents::token_digest(&token);
            let digest_hex = hex::encode(digest);
            // A file's entry is the one in force when the database has the name too.
            let mut place = None;
            for path in agent_files(&config) {
                if config_edit::set_token(&path, Table::Agents, &name, &digest_hex)? {
                    place = Some(format!(
                        "{} (a running airlock serve takes it within a second)",
                        path.display()
                    ));
                    break;
                }
            }
            let place = match (place, &directory) {
                (Some(p), _) => p,
                (None, Some(d)) if d.set_agent_token(&name, &digest)? => {
                    "the shared database (every instance takes it at once)".to_string()
                }
                _ => bail!("no agent named {name:?}"),
            };
            super::note(&format!(
                "agent {name} has a new token in {place}; the old one no longer works. The new token, shown once:"
            ));
            println!("{token}");
            Ok(())
        }
    }
}

/// Adds the agent to the shared database, else appends it to the agents file or the config
/// file, with `added` now; returns where.
fn add_agent(
    config: &Config,
    directory: Option<&airlock::directory::Directory>,
    name: &str,
    digest: &[u8; 32],
    services: &[String],
    owner: Option<&str>,
) -> Result<String> {
    let place = match directory {
        Some(d) => {
            let mut agent = airlock::config::agent_entry(
                name,
                &hex::encode(digest),
                services,
                &[],
                owner,
                None,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            // On the database's clock, which every instance's is checked against.
            agent.added_ms = Some(d.now_ms()?);
            if !d.add_agent(&agent)? {
                bail!("agent {name:?} already exists in the database");
            }
            "the shared database".to_string()
        }
        None => {
            // `added` on this host's clock, the one `airlock serve` here stamps reviews with.
            let block = airlock::agents::config_block(name, digest, services, owner);
            super::append_block(
                &config
                    .agents_file
                    .clone()
                    .unwrap_or_else(|| super::config_file_to_edit(config)),
                &block,
            )?
            .display()
            .to_string()
        }
    };
    Ok(place)
}
