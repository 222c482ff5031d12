//! `airlock` command line: serve the proxy, manage the CA, check config.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    airlock::install_crypto_provider();
    let cli = cli::Cli::parse();
    cli::init_logging(&cli.log_format);
    cli::run(cli)
}
