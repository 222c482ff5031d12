//! `airlock reviewers`: add a person who may decide reviews.

use anyhow::{bail, Result};
use clap::Subcommand;

use airlock::config::Config;

use super::append_config_block;

#[derive(Subcommand)]
pub(super) enum ReviewersCommand {
    /// Create a reviewer: appends it (token stored only as SHA-256) to the config file and
    /// prints its token once (for the dashboard login and `reviews --token`).
    Add {
        name: String,
        /// Groups it belongs to (rules may require `group:NAME`).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
    },
}

pub(super) fn reviewers_cmd(config: Config, cmd: ReviewersCommand) -> Result<()> {
    match cmd {
        ReviewersCommand::Add { name, groups } => {
            if let Some(r) = config
                .reviewers
                .iter()
                .find(|r| airlock::person::same(&r.name, &name))
            {
                bail!(
                    "reviewer {:?} already exists in the config (names are compared without case)",
                    r.name
                );
            }
            let token = airlock::agents::generate_token().replacen("alk_", "rvw_", 1);
            let mut block = format!(
                "\n[[reviewers]]\nname = {}\ntoken_sha256 = \"{}\"\n",
                toml::Value::String(name.clone()),
                hex::encode(airlock::agents::token_digest(&token))
            );
            if !groups.is_empty() {
                let list: Vec<String> = groups
                    .iter()
                    .map(|g| toml::Value::String(g.clone()).to_string())
                    .collect();
                block.push_str(&format!("groups = [{}]\n", list.join(", ")));
            }
            let path = append_config_block(&config, &block)?;
            eprintln!(
                "reviewer {name} added to {} (only the token's SHA-256 is stored). Its token, shown once:",
                path.display()
            );
            println!("{token}");
            Ok(())
        }
    }
}
