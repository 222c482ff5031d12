//! `airlock` command line: serve the proxy, manage the CA, check config.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Large blocks cache-line aligned: see `airlock::aligned_alloc` (copies into misaligned
/// buffers run twenty times slower on some CPUs).
#[global_allocator]
static ALLOCATOR: airlock::aligned_alloc::LineAligned = airlock::aligned_alloc::LineAligned;

fn main() -> ExitCode {
    if let Err(e) = airlock::hardening::forbid_inspection() {
        cli::report_error(&format!(
            "cannot make this process private (non-dumpable): {e}"
        ));
        return ExitCode::FAILURE;
    }
    airlock::install_crypto_provider();
    let cli = match cli::Cli::try_parse().and_then(|cli| cli.check_conflicts().map(|()| cli)) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if let Err(why) = cli::init_logging(&cli.log_format, cli.is_serve()) {
        cli::report_error(&why);
        return ExitCode::FAILURE;
    }
    let result = cli::run(cli);
    cli::flush_logs();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the causes joined, never a backtrace (whatever RUST_BACKTRACE says). A
            // cause its parent already ends with ("CA: {0}" over its own error) is said once.
            let mut message = String::new();
            for cause in e.chain().map(|c| c.to_string()) {
                if message.ends_with(&cause) {
                    continue;
                }
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&cause);
            }
            cli::report_error(&message);
            ExitCode::FAILURE
        }
    }
}

/// A command line clap refused (or `--help`, `--version`): as clap prints it, or, when the
/// arguments ask for `--log-format json`, its first line as one JSON error record.
fn usage_error(e: clap::Error) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let json = args
        .windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json");
    if !json || !e.use_stderr() {
        e.exit();
    }
    // Logging only carries this error: a bad AIRLOCK_LOG must not hide it.
    let _ = cli::init_logging("json", false);
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    cli::report_error(first.trim_start_matches("error: "));
    ExitCode::from(2)
}
