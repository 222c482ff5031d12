//! `airlock reviewers`: add, list and remove the people who may decide reviews. With an
//! embedded store they live in the config file; with a shared database (`[store] backend =
//! "postgres"`) `add` and `remove` change the database, and every running `airlock serve` on it
//! follows at once (config-file reviewers still count, and are edited in the file).

use anyhow::{bail, Result};
use clap::Subcommand;

use airlock::config::{Config, ReviewerConfig};
use airlock::directory::Directory;

use super::shared_directory;

#[derive(Subcommand)]
pub(super) enum ReviewersCommand {
    /// Create a reviewer and print its token once (for the dashboard login and `reviews
    /// --token`; only its SHA-256 is kept): in the shared database with `[store] backend =
    /// "postgres"`, else appended to the config file.
    Add {
        name: String,
        /// Groups it belongs to (rules may require `group:NAME`).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
    },
    /// List the reviewers: the config file's, and the shared database's.
    List,
    /// Remove a reviewer kept in the shared database (her token, sessions and links stop working
    /// at once on every instance); config-file reviewers are removed by editing the file.
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
                "reviewer {name} added to {place} (only the token's SHA-256 is stored). Its token, shown once:"
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
        ReviewersCommand::Remove { name, force } => {
            let file_entry = in_file(&config, &name).is_some();
            let Some(d) = &directory else {
                if file_entry {
                    bail!("reviewer {name:?} is in the config file: remove its [[reviewers]] block there, then send airlock serve SIGHUP");
                }
                bail!("no reviewer named {name:?}");
            };
            let stored = stored_reviewers(Some(d))?;
            if !stored.iter().any(|r| airlock::person::same(&r.name, &name)) {
                if file_entry {
                    bail!("reviewer {name:?} is in the config file, not the database: remove its [[reviewers]] block there, then send airlock serve SIGHUP on every instance");
                }
                bail!("no reviewer named {name:?}");
            }
            if !force {
                check_without(&config, d, &stored, &name)?;
            }
            if !d.remove_reviewer(&name)? {
                bail!("no reviewer named {name:?}");
            }
            super::note(&format!("reviewer {name} removed from the shared database; her token, sessions and links no longer work on any instance"));
            if file_entry {
                super::note("the config file still lists a reviewer of that name (and that entry is in force): remove it there too");
            }
            Ok(())
        }
    }
}

/// Refuses a removal after which some rule could never be approved (as `serve` checks at
/// start, with this host's rules): every instance would refuse its next start.
fn check_without(
    config: &Config,
    d: &Directory,
    stored: &[ReviewerConfig],
    name: &str,
) -> Result<()> {
    let mut remaining = config.clone();
    for r in stored {
        if !airlock::person::same(&r.name, name) && in_file(config, &r.name).is_none() {
            remaining.reviewers.push(r.clone());
        }
    }
    for a in d.agents()?.records {
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
