//! `airlock ca`: create the interception CA, print its certificate, or rotate it.

use anyhow::{Context, Result};
use clap::Subcommand;

use airlock::config::Config;
use airlock::tls::{rotate, CertificateAuthority};

#[derive(Subcommand)]
pub(super) enum CaCommand {
    /// Create certs/ca.pem and certs/ca-key.pem if absent (`--ca-dir` names another directory).
    Init,
    /// Print the CA certificate (PEM) for clients to trust: with a next CA prepared
    /// (`ca rotate`), both certificates, the one in use first.
    Export,
    /// Prepare a new CA in certs/next (agents get both certificates from `ca export` meanwhile);
    /// with --finish, put it in place of the current one (then restart `airlock serve`).
    Rotate {
        /// Put the prepared CA in place; the old key is removed.
        #[arg(long)]
        finish: bool,
    },
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
            print!("{}", rotate::trust_bundle(&dir, &ca)?);
            if rotate::prepared(&dir) {
                eprintln!(
                    "note: a next CA is prepared ({}): both certificates were printed, the one in \
                     use first; agents should trust both until `airlock ca rotate --finish`",
                    rotate::next_dir(&dir).display()
                );
            }
            Ok(())
        }
        CaCommand::Rotate { finish: false } => {
            let dir = config.tls.ca_dir;
            rotate::prepare(&dir)?;
            println!(
                "next CA created in {}.\n\
                 1. Give every agent both certificates: `airlock ca export` prints them (a \
                 running serve's http://airlock.local/ca.pem does after a restart).\n\
                 2. Once all trust the bundle: `airlock ca rotate --finish`, then restart \
                 `airlock serve`.\n\
                 3. Later, give agents `airlock ca export` again (the new certificate alone).",
                rotate::next_dir(&dir).display()
            );
            Ok(())
        }
        CaCommand::Rotate { finish: true } => {
            let dir = config.tls.ca_dir;
            rotate::finish(&dir)?;
            println!(
                "the new CA is in place in {} (the old key removed, its certificate kept as {}); \
                 restart `airlock serve` to use it",
                dir.display(),
                dir.join(rotate::RETIRED_DIR)
                    .join(airlock::tls::CA_CERT_FILE)
                    .display()
            );
            Ok(())
        }
    }
}
