//! `airlock config check`: parse and check the config file, print the effective settings.

use anyhow::Result;
use clap::Subcommand;

use airlock::config::Config;

#[derive(Subcommand)]
pub(super) enum ConfigCommand {
    /// Parse and check the config file; print the effective settings.
    Check,
}

pub(super) fn config_cmd(config: Config, cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Check => {
            let source = config
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "<built-in defaults>".into());
            println!("config OK: {source}");
            println!("  proxy.listen        = {}", config.proxy.listen);
            println!("  proxy.unknown_hosts = {:?}", config.proxy.unknown_hosts);
            println!("  admin.listen        = {}", config.admin.listen);
            println!("  tls.ca_dir          = {}", config.tls.ca_dir.display());
            println!(
                "  store               = {:?} at {}",
                config.store.backend,
                config.store.path.display()
            );
            println!(
                "  agents              = {} (allow_anonymous = {})",
                config.agents.len(),
                config.proxy.allow_anonymous
            );
            for c in &config.credentials {
                println!(
                    "  credentials.{:<7} = {:?} for {:?}",
                    c.service, c.source, c.hosts
                );
            }
            airlock::credentials::Vault::load(&config.credentials)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
    }
}
