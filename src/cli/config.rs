//! `airlock config check`: parse and check the config file and the rules it names (the rules'
//! approval policies against the configured reviewers, as `airlock serve` checks them), print
//! the effective settings.

use anyhow::Result;
use clap::Subcommand;

use airlock::config::{AgentConfig, Config};
use airlock::rules::Catalog;

use super::serve::catalog_options;

#[derive(Subcommand)]
pub(super) enum ConfigCommand {
    /// Parse and check the config file and its rules; print the effective settings.
    Check,
}

/// The rules catalog `serve` would load with `config`.
pub(super) fn load_catalog(config: &Config) -> Result<Catalog> {
    match &config.rules.dir {
        Some(d) => Catalog::load_dir(d, &catalog_options(config)),
        None => Catalog::embedded(&catalog_options(config)),
    }
    .map_err(|e| anyhow::anyhow!("rules: {e}"))
}

/// Refuses an agent whose `services` names no service of `catalog` nor of a credential (a
/// typo such as `githb` would admit it nowhere), as `serve` does at start.
pub(super) fn check_agent_services(
    config: &Config,
    agents: &[AgentConfig],
    catalog: &Catalog,
) -> Result<()> {
    let mut known = catalog.service_names();
    known.extend(config.credentials.iter().map(|c| c.service.clone()));
    airlock::config::check_agent_services(agents, &known)
        .map_err(|e| anyhow::anyhow!("agents: {e}"))
}

pub(super) fn config_cmd(config: Config, cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Check => {
            airlock::credentials::Vault::load(&config.credentials)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            airlock::server::upstream_tls(&config)?;
            config
                .notify
                .clone()
                .read_secrets()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // The rules `serve` would load, and their approval policies against the reviewers:
            // a rule the reviewers could never approve stops `serve`, so it fails the check.
            let catalog = load_catalog(&config)?;
            check_agent_services(&config, &config.agents, &catalog)?;
            let policies = catalog.approval_policies();
            airlock::server::check_approval_policies(&config, &policies)
                .map_err(|e| anyhow::anyhow!("approval policies: {e}"))?;
            let source = config
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "<built-in defaults>".into());
            if let Some(w) =
                airlock::config::admin_exposure(config.admin.listen, config.proxy.listen)
            {
                super::warn(&w);
            }
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
            println!(
                "  rules               = {} ({} with an approval policy; {} reviewer(s))",
                catalog.rule_count(),
                policies.len(),
                config.reviewers.len()
            );
            for c in &config.credentials {
                println!(
                    "  credentials.{:<7} = {:?} for {:?}",
                    c.service, c.source, c.hosts
                );
            }
            Ok(())
        }
    }
}
