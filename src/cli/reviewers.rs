//! `airlock reviewers`: add, list, rotate and remove the people who may decide reviews. With an
//! embedded store they live in the config file (a running `airlock serve` notices the change
//! within a second); with a shared database (`[store] backend = "postgres"`) `add` changes the
//! database, and every running `airlock serve` on it follows at once. `remove` removes the
//! entry wherever it is: the config file's (edited in place, `config_edit.rs`), the
//! database's, or both.

use anyhow::{bail, Result};
use clap::Subcommand;

use airlock::config::{Config, ReviewerConfig};
use airlock::directory::Directory;

use super::config_edit::{self, Table};
use super::shared_directory;

#[derive(Subcommand)]
pub(super) enum ReviewersCommand {
    /// Create a reviewer and print its token once (for the dashboard login and `reviews
    /// --token-file` or $AIRLOCK_REVIEWER_TOKEN; only its SHA-256 is kept): in the shared database with `[store] backend =
    /// "postgres"`, else appended to the config file.
    Add {
        name: String,
        /// Groups it belongs to (rules may require `group:NAME`).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
    },
    /// List the reviewers: the config file's, and the shared database's.
    List,
    /// Give a reviewer a new token and print it once; the old one, her dashboard sessions and
    /// her one-click links stop working, her approvals on pending reviews still count (unlike
    /// remove and add again).
    Rotate { name: String },
    /// Remove a reviewer (her token, dashboard sessions and links stop working, her approvals
    /// stop counting): from the config file and from the shared database, wherever she is.
    Remove {
        name: String,
        /// Remove her even if some rule could then never be approved (every `airlock serve`
        /// would refuse to start until that is fixed).
        #[arg(long)]
        force: bool,
    },
}

fn stored_reviewers(directory: Option<&Directory>) -> Result<Vec<ReviewerConfig>> {
    let Some(d) = directory else {
        return Ok(Vec::new());
    };
    let loaded = d.reviewers()?;
    for why in &loaded.invalid {
        super::warn(&format!("skipping {why}"));
    }
    Ok(loaded.records)
}

fn in_file<'a>(config: &'a Config, name: &str) -> Option<&'a ReviewerConfig> {
    config
        .reviewers
        .iter()
        .find(|r| airlock::person::same(&r.name, name))
}

pub(super) fn reviewers_cmd(config: Config, cmd: ReviewersCommand) -> Result<()> {
    let directory = shared_directory(&config)?;
    match cmd {
        ReviewersCommand::Add { name, groups } => {
            if let Some(r) = in_file(&config, &name) {
                bail!(
                    "reviewer {:?} already exists in the config (names are compared without case)",
                    r.name
                );
            }
            let token = airlock::agents::generate_token().replacen("alk_", "rvw_", 1);
            let digest = hex::encode(airlock::agents::token_digest(&token));
            let place = match &directory {
                Some(d) => {
                    let reviewer = airlock::config::reviewer_entry(&name, &digest, &groups)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    if !d.add_reviewer(&reviewer)? {
                        bail!("reviewer {name:?} already exists in the database (names are compared without case)");
                    }
                    "the shared database".to_string()
                }
                None => {
                    let mut block = format!(
                        "\n[[reviewers]]\nname = {}\ntoken_sha256 = \"{digest}\"\n",
                        toml::Value::String(name.clone()),
                    );
                    if !groups.is_empty() {
                        let list: Vec<String> = groups
                            .iter()
                            .map(|g| toml::Value::String(g.clone()).to_string())
                            .collect();
                        block.push_str(&format!("groups = [{}]\n", list.join(", ")));
                    }
                    super::append_block(&super::config_file_to_edit(&config), &block)?
                        .display()
                        .to_string()
                }
            };
            super::note(&format!(
                "reviewer {name} added to {place} (only the token's SHA-256 is stored; a running airlock serve accepts her within a second). Her token, shown once:"
            ));
            println!("{token}");
            Ok(())
        }
        ReviewersCommand::List => {
            let stored = stored_reviewers(directory.as_ref())?;
            if config.reviewers.is_empty() && stored.is_empty() {
                println!("no reviewers configured (the admin token decides)");
            }
            for r in &config.reviewers {
                println!("{}\tgroups={}\tsource=config", r.name, r.groups.join(","));
            }
            for r in &stored {
                let shadowed = match in_file(&config, &r.name) {
                    Some(_) => " (not in force: the config file's entry wins)",
                    None => "",
                };
                println!(
                    "{}\tgroups={}\tsource=database{shadowed}",
                    r.name,
                    r.groups.join(",")
                );
            }
            Ok(())
        }
        ReviewersCommand::Rotate { name } => rotate(&config, directory.as_ref(), &name),
        ReviewersCommand::Remove { name, force } => {
            let path = config_edit::config_path(&config);
            let stored = stored_reviewers(directory.as_ref())?;
            let in_database = stored.iter().any(|r| airlock::person::same(&r.name, &name));
            if in_file(&config, &name).is_none() && !in_database {
                bail!("no reviewer named {name:?}");
            }
            if !force {
                check_without(&config, directory.as_ref(), &stored, &name)?;
            }
            let from_file = config_edit::remove(&path, Table::Reviewers, &name)?;
            let from_database = match &directory {
                Some(d) if in_database => d.remove_reviewer(&name)?,
                _ => false,
            };
            if !from_file && !from_database {
                bail!("no reviewer named {name:?}");
            }
            if from_file {
                super::note(&format!("reviewer {name} removed from {}; a running airlock serve drops her within a second (her token, sessions and links stop working)", path.display()));
            }
            if from_database {
                super::note(&format!("reviewer {name} removed from the shared database; her token, sessions and links no longer work on any instance"));
            }
            Ok(())
        }
    }
}

/// A new token for reviewer `name`, where her entry in force is (the config file's wins over
/// the database's), printed once as `agents rotate` prints an agent's.
fn rotate(config: &Config, directory: Option<&Directory>, name: &str) -> Result<()> {
    let token = airlock::agents::generate_token().replacen("alk_", "rvw_", 1);
    let digest = airlock::agents::token_digest(&token);
    let path = config_edit::config_path(config);
    let place = if config_edit::set_token(&path, Table::Reviewers, name, &hex::encode(digest))? {
        format!(
            "{} (a running airlock serve takes it within a second)",
            path.display()
        )
    } else {
        match directory {
            Some(d) if d.set_reviewer_token(name, &digest)? => {
                "the shared database (every instance takes it at once)".to_string()
            }
            _ => bail!("no reviewer named {name:?}"),
        }
    };
    super::note(&format!(
        "reviewer {name} has a new token in {place}; the old one, her dashboard sessions and her one-click links no longer work (her approvals still count). The new token, shown once:"
    ));
    println!("{token}");
    Ok(())
}

/// Refuses a removal after which some rule could never be approved (as `serve` checks at
/// start, with this host's rules): every instance would refuse its next start.
fn check_without(
    config: &Config,
    d: Option<&Directory>,
    stored: &[ReviewerConfig],
    name: &str,
) -> Result<()> {
    let mut remaining = config.clone();
    remaining
        .reviewers
        .retain(|r| !airlock::person::same(&r.name, name));
    for r in stored {
        if !airlock::person::same(&r.name, name) && in_file(config, &r.name).is_none() {
            remaining.reviewers.push(r.clone());
        }
    }
    let stored_agents = match d {
        Some(d) => d.agents()?.records,
        None => Vec::new(),
    };
    for a in stored_agents {
        if !config.agents.iter().any(|c| c.name == a.name) {
            remaining.agents.push(a);
        }
    }
    let policies = super::config::load_catalog(config)?.approval_policies();
    if let Err(e) = airlock::server::check_approval_policies(&remaining, &policies) {
        bail!("without {name:?} some rules could never be approved, and every airlock serve would refuse to start: {e} (--force removes her anyway)");
    }
    Ok(())
}
