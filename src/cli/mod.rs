//! The `airlock` subcommands: the parser, the dispatch, logging and shared helpers.

mod admin_token;
mod agents;
mod audit;
mod audit_archive;
mod audit_rotate;
mod ca;
mod config;
mod config_edit;
mod log_filter;
mod log_sink;
mod out_file;
mod output;
mod reviewers;
mod reviews;
mod rules;
#[cfg(target_os = "linux")]
mod run;
mod serve;
mod status;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use airlock::config::Config;

use admin_token::AdminTokenCommand;
use agents::AgentsCommand;
use audit::AuditCommand;
use ca::CaCommand;
use config::ConfigCommand;
use output::{announce, note, warn};
pub use output::{flush_logs, init_logging, report_error};
use reviewers::ReviewersCommand;
use reviews::ReviewsCommand;
use rules::RulesCommand;
#[cfg(target_os = "linux")]
use run::RunArgs;
use serve::ServeArgs;

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "HTTPS interception proxy that holds irreversible API calls for human approval"
)]
pub struct Cli {
    /// Config file (default: $AIRLOCK_CONFIG, else $AIRLOCK_HOME/airlock.toml, else ./airlock.toml
    /// if present, else $XDG_CONFIG_HOME/airlock/airlock.toml, else built-in defaults).
    #[arg(long, short, global = true, env = "AIRLOCK_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
    #[command(flatten)]
    paths: PathArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where the state lives, for every command: `serve --data-dir X` and then
/// `reviews list --data-dir X` find the same store, admin socket and token.
#[derive(clap::Args)]
struct PathArgs {
    /// Store directory (overrides store.path; the admin socket and token follow it unless
    /// configured elsewhere).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Directory holding ca.pem and ca-key.pem (overrides tls.ca_dir).
    #[arg(long, global = true)]
    ca_dir: Option<PathBuf>,
    /// Store backend: redb or sled (overrides store.backend).
    #[arg(long, global = true)]
    store: Option<airlock::store::Backend>,
    /// Rules directory (overrides rules.dir).
    #[arg(long, global = true)]
    rules_dir: Option<PathBuf>,
}

impl PathArgs {
    fn overrides(&self) -> airlock::config::Overrides {
        airlock::config::Overrides {
            data_dir: self.data_dir.clone(),
            ca_dir: self.ca_dir.clone(),
            store: self.store,
            rules_dir: self.rules_dir.clone(),
            ..Default::default()
        }
    }
}

impl Cli {
    /// What clap's `conflicts_with` cannot see: `--rules-dir` given before the subcommand (a
    /// global flag there lands in the parent's matches) with a rules command's own `--dir`,
    /// which would win silently. The same usage error clap gives when it comes after.
    pub fn check_conflicts(&self) -> Result<(), clap::Error> {
        if let (Some(_), Command::Rules { command }) = (&self.paths.rules_dir, &self.command) {
            if command.dir().is_some() {
                return Err(<Cli as clap::CommandFactory>::command().error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "the argument '--dir <DIR>' cannot be used with '--rules-dir <RULES_DIR>'",
                ));
            }
        }
        Ok(())
    }

    /// `serve` runs until stopped and logs a line per request: its logs go out in batches.
    pub(crate) fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (creates the CA on first run).
    Serve(ServeArgs),
    /// Manage the interception CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Check the rules catalog or test a request against it.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// List and decide held requests (talks to the running server's admin API).
    Reviews {
        /// Refused: a token on the command line is visible to every local user (ps,
        /// /proc/PID/cmdline). Use --token-file or $AIRLOCK_REVIEWER_TOKEN.
        #[arg(long, hide = true)]
        token: Option<String>,
        /// File holding a reviewer's own token (from `airlock reviewers add`), readable by you
        /// alone (mode 0600). Default: $AIRLOCK_REVIEWER_TOKEN, else the admin token.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        command: ReviewsCommand,
    },
    /// Export and verify the tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage the people who may decide reviews.
    Reviewers {
        #[command(subcommand)]
        command: ReviewersCommand,
    },
    /// Manage the agents allowed to use the proxy.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Manage the admin token (the operator's credential for the admin API and the CLI).
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
    /// Run COMMAND in a network namespace whose only way out is Airlock (Linux, needs root).
    #[cfg(target_os = "linux")]
    Run(RunArgs),
    /// Show where the config, CA, store and admin token are, and whether the server is ready
    /// (exits 1 when it is not).
    Status,
    /// Validate configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// Builds the checked config (with `serve`'s flags merged in) and runs the subcommand.
pub fn run(cli: Cli) -> Result<()> {
    #[cfg(target_os = "linux")]
    let long_running = matches!(cli.command, Command::Serve(_) | Command::Run(_));
    #[cfg(not(target_os = "linux"))]
    let long_running = matches!(cli.command, Command::Serve(_));
    if !long_running {
        quiet_on_closed_pipe();
    }
    // Command-line settings join the file's before the one check; the checked config is
    // never changed afterwards.
    let paths = cli.paths.overrides();
    let overrides = match &cli.command {
        Command::Serve(args) => args.overrides(paths),
        _ => paths,
    };
    let config = discover(&cli, overrides)?;
    match cli.command {
        Command::Agents { command } => agents::agents_cmd(config, command),
        Command::AdminToken { command } => admin_token::admin_token_cmd(config, command),
        Command::Reviewers { command } => reviewers::reviewers_cmd(config, command),
        Command::Audit { command } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(audit::audit_cmd(config, command))
        }
        Command::Serve(_) => serve::serve(config),
        #[cfg(target_os = "linux")]
        Command::Run(args) => {
            let code = run::run_cmd(config, args)?;
            std::process::exit(code)
        }
        Command::Ca { command } => ca::ca_cmd(config, command),
        Command::Rules { command } => rules::rules_cmd(config, command),
        Command::Reviews {
            token,
            token_file,
            command,
        } => {
            let token = reviews::reviewer_token(token, token_file.as_deref())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(reviews::reviews(config, token, command))
        }
        Command::Config { command } => config::config_cmd(config, command),
        Command::Status => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(status::status(config)),
    }
}

/// The config, found as [`Config::discover`] does. For `airlock run`, privilege it was not run
/// with as root is refused first, and root acting for another user (sudo) reads it with that
/// user's permissions: `--config` may name any file, and a parse error would quote it.
fn discover(cli: &Cli, overrides: airlock::config::Overrides) -> Result<Config> {
    let explicit = cli.config.as_deref();
    #[cfg(target_os = "linux")]
    if matches!(cli.command, Command::Run(_)) {
        airlock::sandbox::check_privilege().map_err(|e| anyhow::anyhow!("{e}"))?;
        return airlock::sandbox::Caller::find()
            .as_invoker(|| Config::discover(explicit, overrides))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .map_err(|e| anyhow::anyhow!("{e}"));
    }
    Config::discover(explicit, overrides).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A CLI command whose reader went away (`airlock reviews list | head`) ends quietly, as other
/// Unix tools do, instead of panicking on the failed print. Not for `serve` and `run`: their
/// sockets must see a closed peer as an error, not a signal that ends the process.
fn quiet_on_closed_pipe() {
    // SAFETY: restores the default disposition of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Appends a TOML block to `path` (a config file or the agents file; created if absent, with
/// its directory) after checking that the result still parses; fsyncs it.
pub(super) fn append_block(path: &std::path::Path, block: &str) -> Result<PathBuf> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let combined = format!("{existing}{block}");
    Config::from_toml(&path.display().to_string(), &combined)
        .map_err(|e| anyhow::anyhow!("refusing to write an invalid config: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(block.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// The config file that `add` commands append to: the one in force, else the home's
/// (`$AIRLOCK_HOME/airlock.toml` or the XDG one), never the working directory by chance.
pub(super) fn config_file_to_edit(config: &Config) -> PathBuf {
    config
        .source
        .clone()
        .unwrap_or_else(|| config.home.new_config_file.clone())
}

/// The admin token the CLI presents: `AIRLOCK_ADMIN_TOKEN`, else the token file `airlock serve`
/// wrote. Never creates one: a missing file means no server ran with this config.
pub(super) fn admin_token(config: &Config) -> Result<String> {
    let path = &config.admin.token_file;
    airlock::admin::read_token(path)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no admin token at {} (set AIRLOCK_ADMIN_TOKEN, or point --config / AIRLOCK_HOME at the config `airlock serve` uses; {})",
                path.display(),
                config.home.describe()
            )
        })
}

/// The agents and reviewers kept in the database, when the store is one several `airlock
/// serve` instances share (`[store] backend = "postgres"`); `None` otherwise (the config file
/// holds them: an embedded store is locked while `serve` runs).
pub(super) fn shared_directory(config: &Config) -> Result<Option<airlock::directory::Directory>> {
    Ok(shared_store(config)?.map(airlock::directory::Directory::new))
}

/// The store several `airlock serve` instances share (`[store] backend = "postgres"`), opened;
/// `None` for an embedded store.
pub(super) fn shared_store(
    config: &Config,
) -> Result<Option<std::sync::Arc<dyn airlock::store::Store>>> {
    if config.store.backend != airlock::store::Backend::Postgres {
        return Ok(None);
    }
    let store = airlock::store::open_configured(
        config.store.backend,
        &config.store.path,
        config.store.url.as_ref().map(|u| u.expose()),
        std::time::Duration::ZERO,
    )
    .map_err(|e| anyhow::anyhow!("opening the store (store.url): {e}"))?;
    Ok(Some(store))
}
