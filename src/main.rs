//! `airlock` command line: serve the proxy, manage the CA, check config.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    airlock::install_crypto_provider();
    let cli = cli::Cli::parse();
    cli::init_logging(&cli.log_format);
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the causes joined, never a backtrace (whatever RUST_BACKTRACE says).
            let message = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            cli::report_error(&message);
            ExitCode::FAILURE
        }
    }
}
