//! `airlock ca`: create the interception CA or print its certificate.

use anyhow::{Context, Result};
use clap::Subcommand;

use airlock::config::Config;
use airlock::tls::CertificateAuthority;

#[derive(Subcommand)]
pub(super) enum CaCommand {
    /// Create certs/ca.pem and certs/ca-key.pem if absent (`--ca-dir` names another directory).
    Init,
    /// Print the CA certificate (PEM) for clients to trust.
    Export,
}

pub(super) fn ca_cmd(config: Config, command: CaCommand) -> Result<()> {
    match command {
        CaCommand::Init => {
            let dir = config.tls.ca_dir;
            let (_, created) = CertificateAuthority::load_or_create(&dir)?;
            let verb = if created {
                "created"
            } else {
                "already present"
            };
            println!(
                "CA {verb}: {}",
                dir.join(airlock::tls::CA_CERT_FILE).display()
            );
            Ok(())
        }
        CaCommand::Export => {
            let dir = config.tls.ca_dir;
            let ca = CertificateAuthority::load(&dir).with_context(|| {
                format!(
                    "no CA in {}: run `airlock ca init` or `airlock serve` first ({})",
                    dir.display(),
                    config.home.describe()
                )
            })?;
            print!("{}", ca.cert_pem());
            Ok(())
        }
    }
}
