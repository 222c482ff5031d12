//! `airlock` command line: serve the proxy, manage the CA, check config.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use airlock::config::{self, Config, UnknownHosts};
use airlock::rules::{Action, Catalog, CatalogOptions, LiveCatalog};
use airlock::tls::CertificateAuthority;

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "HTTPS interception proxy that holds irreversible API calls for human approval"
)]
struct Cli {
    /// Config file (default: $AIRLOCK_CONFIG, else ./airlock.toml if present, else built-in defaults).
    #[arg(long, short, global = true, env = "AIRLOCK_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
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
        /// A reviewer's own token (from `airlock reviewers add`); default: the admin token.
        #[arg(long, env = "AIRLOCK_REVIEWER_TOKEN", hide_env_values = true)]
        token: Option<String>,
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
    /// Run COMMAND in a network namespace whose only way out is Airlock (Linux, needs root).
    #[cfg(target_os = "linux")]
    Run(RunArgs),
    /// Validate configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Agent-facing listen address (overrides proxy.listen).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Map a host to an address instead of DNS, e.g. api.github.com=127.0.0.1:9443 (repeatable).
    #[arg(long = "resolve", value_parser = config::parse_resolve_flag)]
    resolve: Vec<(String, std::net::SocketAddr)>,
    /// Extra CA file trusted for upstream TLS (repeatable).
    #[arg(long = "upstream-ca")]
    upstream_ca: Vec<PathBuf>,
    /// Host to intercept in addition to the catalog's (repeatable).
    #[arg(long = "inspect-host")]
    inspect_host: Vec<String>,
    /// What to do with hosts that are not inspected.
    #[arg(long)]
    unknown_hosts: Option<UnknownHosts>,
    /// Directory holding ca.pem and ca-key.pem (overrides tls.ca_dir).
    #[arg(long)]
    ca_dir: Option<PathBuf>,
    /// Admin API listen address (overrides admin.listen).
    #[arg(long)]
    admin_listen: Option<std::net::SocketAddr>,
    /// Store directory (overrides store.path).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Store backend: redb or sled (overrides store.backend).
    #[arg(long)]
    store: Option<airlock::store::Backend>,
    /// Rules directory (overrides rules.dir).
    #[arg(long)]
    rules_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// The flags as config overrides, merged before the config is checked.
    fn overrides(&self) -> config::Overrides {
        config::Overrides {
            proxy_listen: self.listen,
            admin_listen: self.admin_listen,
            resolve: self.resolve.clone(),
            upstream_ca: self.upstream_ca.clone(),
            inspect_hosts: self.inspect_host.clone(),
            unknown_hosts: self.unknown_hosts,
            ca_dir: self.ca_dir.clone(),
            data_dir: self.data_dir.clone(),
            store: self.store,
            rules_dir: self.rules_dir.clone(),
        }
    }
}

#[cfg(target_os = "linux")]
#[derive(clap::Args)]
#[command(
    after_help = "The agent token is read from $AIRLOCK_AGENT_TOKEN or --token-file, never \
from the command line. See docs/run.md."
)]
struct RunArgs {
    /// Agent name for the proxy credentials (token: $AIRLOCK_AGENT_TOKEN or --token-file).
    #[arg(long)]
    agent: Option<String>,
    /// File holding the agent's token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Airlock proxy address in the host namespace (default: proxy.listen).
    #[arg(long)]
    proxy: Option<std::net::SocketAddr>,
    /// CA certificate COMMAND must trust (default: <tls.ca_dir>/ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Run COMMAND as UID[:GID] or user name (default: $SUDO_UID:$SUDO_GID, else 65534:65534).
    #[arg(long)]
    user: Option<String>,
    /// Allow COMMAND to run as root, which can leave the namespace: weak isolation.
    #[arg(long)]
    allow_root: bool,
    /// No namespace: only set the proxy variables (nothing enforces them).
    #[arg(long)]
    weak: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<std::ffi::OsString>,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create certs/ca.pem and certs/ca-key.pem if absent.
    Init {
        #[arg(long)]
        ca_dir: Option<PathBuf>,
    },
    /// Print the CA certificate (PEM) for clients to trust.
    Export {
        #[arg(long)]
        ca_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate every rule file; errors name file:line:column.
    Check {
        /// Rules directory (default: rules.dir, else the embedded catalog).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Count the published GitHub and Stripe routes and mutations per bucket and list any the
    /// catalog does not classify explicitly (exit status 1 if there is one).
    Coverage {
        /// Print every route with its bucket, tool and reason.
        #[arg(long)]
        routes: bool,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the verdict (bucket) for a request and which rule matched and why.
    Test {
        method: String,
        url: String,
        /// Request body file.
        #[arg(long)]
        body: Option<PathBuf>,
        /// Extra header, e.g. "content-type: application/json" (repeatable).
        #[arg(long)]
        header: Vec<String>,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReviewsCommand {
    /// List reviews, newest first.
    List {
        /// Only reviews in this state (pending, approved, executing, executed, failed, rejected, expired, outcome_unknown).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one review with its stored request.
    Show { id: String },
    /// Approve a pending review; Airlock then sends the stored request once. Prints one summary
    /// line, then the review as JSON. Exit status: 0 executed (or still waiting for more
    /// approvals), 3 failed (not sent), 4 outcome_unknown (may have been sent), 1 an error.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        /// Name recorded as the approver (default: $USER).
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
    },
    /// Reject a pending review.
    Reject {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
    },
    /// Send a failed (or outcome_unknown) review's stored request again, with the same
    /// Idempotency-Key; only before the review's deadline. Summary line and exit status as
    /// for approve: 0 executed, 3 failed (not sent), 4 outcome_unknown, 1 an error.
    Retry {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
    },
    /// Give a pending review more time before it expires.
    Extend {
        id: String,
        /// How much longer, e.g. 2h.
        #[arg(long)]
        by: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Write the log (entries and signed checkpoints) as JSON Lines.
    Export {
        /// First sequence number to include.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Output file (default: stdout).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Verify an exported file offline (needs --pubkey), or the live log when no FILE is given.
    Verify {
        file: Option<PathBuf>,
        /// Checkpoint public key, hex (from `airlock audit pubkey`).
        #[arg(long)]
        pubkey: Option<String>,
        /// A checkpoint line kept elsewhere (from `airlock audit checkpoint`); the file must
        /// contain everything it covers, so a truncated tail is detected.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Sign a checkpoint now and print the latest one; keep it outside Airlock.
    Checkpoint,
    /// Print the checkpoint signing public key (hex).
    Pubkey,
}

#[derive(Subcommand)]
enum ReviewersCommand {
    /// Create a reviewer: appends it (token stored only as SHA-256) to the config file and
    /// prints its token once (for the dashboard login and `reviews --token`).
    Add {
        name: String,
        /// Groups it belongs to (rules may require `group:NAME`).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Create an agent: appends it (token stored only as SHA-256) to the config file
    /// (--config, $AIRLOCK_CONFIG or ./airlock.toml, created if absent) and prints its token once.
    Add {
        name: String,
        /// Services it may reach (e.g. github,stripe); default: no limit.
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Person responsible for this agent.
        #[arg(long)]
        owner: Option<String>,
    },
    /// List configured agents (tokens are never stored, only their digests).
    List,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and check the config file; print the effective settings.
    Check,
}

fn main() -> Result<()> {
    airlock::install_crypto_provider();
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    // Command-line settings join the file's before the one check; the checked config is
    // never changed afterwards.
    let overrides = match &cli.command {
        Command::Serve(args) => args.overrides(),
        _ => config::Overrides::default(),
    };
    let config =
        Config::discover(cli.config.as_deref(), overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
    match cli.command {
        Command::Agents { command } => agents_cmd(config, command),
        Command::Reviewers {
            command: ReviewersCommand::Add { name, groups },
        } => {
            if config.reviewers.iter().any(|r| r.name == name) {
                bail!("reviewer {name:?} already exists in the config");
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
        Command::Audit { command } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(audit_cmd(config, command))
        }
        Command::Serve(_) => serve(config),
        #[cfg(target_os = "linux")]
        Command::Run(args) => {
            let code = run_cmd(config, args)?;
            std::process::exit(code)
        }
        Command::Ca { command } => match command {
            CaCommand::Init { ca_dir } => {
                let dir = ca_dir.unwrap_or(config.tls.ca_dir);
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
            CaCommand::Export { ca_dir } => {
                let dir = ca_dir.unwrap_or(config.tls.ca_dir);
                let ca = CertificateAuthority::load(&dir)
                    .with_context(|| "no CA yet: run `airlock ca init` or `airlock serve` first")?;
                print!("{}", ca.cert_pem());
                Ok(())
            }
        },
        Command::Rules { command } => rules_cmd(config, command),
        Command::Reviews { token, command } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(reviews(config, token, command))
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
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

/// Where `airlock audit` reads the live log: the running server's admin API, or, when none is
/// running, the store directly.
enum AuditSource {
    Admin(std::net::SocketAddr, String),
    Local(Box<airlock::audit::AuditLog>),
}

async fn audit_source(config: &Config) -> Result<AuditSource> {
    let token = airlock::admin::load_or_create_token(&config.admin.token_file).ok();
    if let Some(token) = token {
        let addr = config.admin.listen;
        if airlock::admin::client::call(addr, &token, http::Method::GET, "/healthz", None)
            .await
            .is_ok()
        {
            return Ok(AuditSource::Admin(addr, token));
        }
    }
    let store = airlock::store::open(config.store.backend, &config.store.path).map_err(|e| {
        anyhow::anyhow!("opening the store at {}: {e}", config.store.path.display())
    })?;
    let log = airlock::audit::AuditLog::open(
        store,
        &config.audit_key_file(),
        config.audit.origin.clone(),
        Default::default(),
    )
    .map_err(|e| anyhow::anyhow!("opening the audit log: {e}"))?;
    Ok(AuditSource::Local(Box::new(log)))
}

async fn audit_cmd(config: Config, cmd: AuditCommand) -> Result<()> {
    use airlock::admin::client::call;
    use http::Method;
    match cmd {
        AuditCommand::Verify {
            file: Some(file),
            pubkey,
            checkpoint,
        } => {
            let key = pubkey.context(
                "--pubkey HEX is required to verify a file (see `airlock audit pubkey`)",
            )?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let reader = std::io::BufReader::new(f);
            let result = match checkpoint {
                Some(cp) => {
                    let trusted =
                        std::fs::read(&cp).with_context(|| format!("reading {}", cp.display()))?;
                    airlock::audit::verify_lines_with_checkpoint(reader, &key, &trusted)
                }
                None => airlock::audit::verify_lines(reader, &key),
            };
            match result {
                Ok(r) => {
                    println!(
                        "OK: {} entries (seq {}..={}), {} checkpoints verified",
                        r.entries, r.first_seq, r.last_seq, r.checkpoints
                    );
                    Ok(())
                }
                Err(e) => bail!("audit log verification FAILED: {e}"),
            }
        }
        AuditCommand::Verify { file: None, .. } => match audit_source(&config).await? {
            AuditSource::Admin(addr, token) => {
                let (status, json) =
                    call(addr, &token, Method::GET, "/v1/audit/verify", None).await?;
                if status == 200 {
                    println!("OK: {json}");
                    Ok(())
                } else {
                    bail!("audit log verification FAILED: {json}")
                }
            }
            AuditSource::Local(log) => match log.verify_live() {
                Ok(r) => {
                    println!(
                        "OK: {} entries (seq {}..={}), {} checkpoints verified",
                        r.entries, r.first_seq, r.last_seq, r.checkpoints
                    );
                    Ok(())
                }
                Err(e) => bail!("audit log verification FAILED: {e}"),
            },
        },
        AuditCommand::Checkpoint => {
            match audit_source(&config).await? {
                AuditSource::Admin(addr, token) => {
                    let (status, bytes) = airlock::admin::client::call_raw(
                        addr,
                        &token,
                        Method::POST,
                        "/v1/audit/checkpoint",
                        None,
                    )
                    .await?;
                    let text = String::from_utf8_lossy(&bytes);
                    if status != 200 {
                        bail!("checkpoint failed: {text}");
                    }
                    print!("{text}");
                }
                AuditSource::Local(log) => match log
                    .latest_checkpoint()
                    .map_err(|e| anyhow::anyhow!("checkpoint failed: {e}"))?
                {
                    Some(line) => println!("{line}"),
                    None => bail!("the audit log is empty"),
                },
            }
            Ok(())
        }
        AuditCommand::Pubkey => {
            match audit_source(&config).await? {
                AuditSource::Admin(addr, token) => {
                    let (_, json) =
                        call(addr, &token, Method::GET, "/v1/audit/pubkey", None).await?;
                    println!("{}", json["pubkey"].as_str().unwrap_or_default());
                }
                AuditSource::Local(log) => println!("{}", log.public_key_hex()),
            }
            Ok(())
        }
        AuditCommand::Export { since, out } => {
            let text = match audit_source(&config).await? {
                AuditSource::Admin(addr, token) => {
                    let (status, bytes) = airlock::admin::client::call_raw(
                        addr,
                        &token,
                        Method::GET,
                        &format!("/v1/audit?since={since}"),
                        None,
                    )
                    .await?;
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if status != 200 {
                        bail!("export failed: {text}");
                    }
                    text
                }
                AuditSource::Local(log) => {
                    let mut buf = Vec::new();
                    log.export(since, &mut buf)
                        .map_err(|e| anyhow::anyhow!("export failed: {e}"))?;
                    String::from_utf8(buf)?
                }
            };
            match out {
                Some(p) => {
                    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?
                }
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}

#[cfg(target_os = "linux")]
fn run_cmd(config: Config, args: RunArgs) -> Result<i32> {
    use airlock::sandbox::{AgentCredentials, RunAs, RunOptions};
    let token = match &args.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("AIRLOCK_AGENT_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    };
    let agent = match (args.agent, token) {
        (Some(name), Some(token)) => Some(AgentCredentials { name, token }),
        (Some(name), None) => {
            bail!("--agent {name}: no token (set $AIRLOCK_AGENT_TOKEN or pass --token-file)")
        }
        (None, Some(_)) => bail!("a token was given but no --agent NAME"),
        (None, None) => None,
    };
    let run_as = match &args.user {
        Some(spec) => RunAs::parse(spec).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => RunAs::default_from_env(),
    };
    let opts = RunOptions {
        proxy: args.proxy.unwrap_or(config.proxy.listen),
        ca_file: args
            .ca
            .unwrap_or_else(|| config.tls.ca_dir.join(airlock::tls::CA_CERT_FILE)),
        agent,
        run_as,
        allow_root: args.allow_root,
        weak: args.weak,
        command: args.command,
    };
    airlock::sandbox::run(opts).map_err(|e| anyhow::anyhow!("{e}"))
}

fn agents_cmd(config: Config, cmd: AgentsCommand) -> Result<()> {
    match cmd {
        AgentsCommand::List => {
            if config.agents.is_empty() {
                println!(
                    "no agents configured (proxy.allow_anonymous = {})",
                    config.proxy.allow_anonymous
                );
            }
            for a in &config.agents {
                println!(
                    "{}\tservices={}\thosts={}\towner={}",
                    a.name,
                    if a.services.is_empty() {
                        "*".into()
                    } else {
                        a.services.join(",")
                    },
                    a.hosts.join(","),
                    a.owner.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        AgentsCommand::Add {
            name,
            services,
            owner,
        } => {
            if config.agents.iter().any(|a| a.name == name) {
                bail!("agent {name:?} already exists in the config");
            }
            let token = airlock::agents::generate_token();
            let block = airlock::agents::config_block(
                &name,
                &airlock::agents::token_digest(&token),
                &services,
                owner.as_deref(),
            );
            let path = append_config_block(&config, &block)?;
            eprintln!(
                "agent {name} added to {} (only the token's SHA-256 is stored). Its token, shown once:",
                path.display()
            );
            println!("{token}");
            eprintln!(
                "use: HTTPS_PROXY=http://{name}:<token>@{} (restart airlock serve to load it)",
                config.proxy.listen
            );
            Ok(())
        }
    }
}

/// Appends a TOML block to the config file (`--config`, `$AIRLOCK_CONFIG` or ./airlock.toml,
/// created if absent) after checking that the result still parses; fsyncs it.
fn append_config_block(config: &Config, block: &str) -> Result<PathBuf> {
    let path = config
        .source
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_FILE));
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let combined = format!("{existing}{block}");
    Config::from_toml(&path.display().to_string(), &combined)
        .map_err(|e| anyhow::anyhow!("refusing to write an invalid config: {e}"))?;
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(block.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn serve(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_async(config))
}

async fn serve_async(config: Config) -> Result<()> {
    let catalog = LiveCatalog::load(config.rules.dir.clone(), catalog_options(&config))
        .map_err(|e| anyhow::anyhow!("rules: {e}"))?;
    tracing::info!(rules = catalog.current().rule_count(), hosts = ?catalog.current().hosts(), "rules catalog loaded");
    if config.rules.unclassified_writes == Action::Allow {
        tracing::warn!("rules.unclassified_writes = \"allow\": writes no rule classifies are forwarded (each is audited as unclassified); the closed world is off");
    }
    let classifier: Arc<dyn airlock::rules::Classifier> = catalog.clone();
    let server =
        airlock::server::start(&config, classifier, Arc::new(airlock::gate::SystemClock)).await?;
    println!("airlock: proxy listening on {}", server.proxy_addr);
    println!(
        "airlock: admin API on http://{} (token in {})",
        server.admin_addr,
        config.admin.token_file.display()
    );
    tracing::info!(proxy = %server.proxy_addr, admin = %server.admin_addr, unknown_hosts = ?config.proxy.unknown_hosts, "Airlock running");
    catalog.spawn_watcher(server.life.shutdown.clone());
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    server.shutdown(config.proxy.shutdown_grace).await;
    Ok(())
}

fn catalog_options(config: &Config) -> CatalogOptions {
    CatalogOptions {
        default_action: config.rules.default_action,
        unclassified_writes: config.rules.unclassified_writes,
    }
}

fn rules_cmd(config: Config, cmd: RulesCommand) -> Result<()> {
    let dir = match &cmd {
        RulesCommand::Check { dir }
        | RulesCommand::Test { dir, .. }
        | RulesCommand::Coverage { dir, .. } => dir.clone().or(config.rules.dir.clone()),
    };
    let catalog = match &dir {
        Some(d) => Catalog::load_dir(d, &catalog_options(&config)),
        None => Catalog::embedded(&catalog_options(&config)),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    match cmd {
        RulesCommand::Check { .. } => {
            let src = dir
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "<embedded catalog>".into());
            println!(
                "rules OK: {src}: {} rules for {}",
                catalog.rule_count(),
                catalog.hosts().join(", ")
            );
        }
        RulesCommand::Coverage { routes, .. } => {
            if !rules_coverage(&catalog, routes) {
                std::process::exit(1);
            }
        }
        RulesCommand::Test {
            method,
            url,
            body,
            header,
            ..
        } => {
            let uri: http::Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
            let host = uri.host().context("URL needs a host")?.to_string();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("http") {
                    80
                } else {
                    443
                });
            let pq = uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .to_string();
            let mut headers = http::HeaderMap::new();
            for h in header {
                let (k, v) = h
                    .split_once(':')
                    .with_context(|| format!("--header {h:?}: expected NAME: VALUE"))?;
                headers.append(
                    http::HeaderName::from_bytes(k.trim().as_bytes())?,
                    http::HeaderValue::from_str(v.trim())?,
                );
            }
            let body = body
                .map(|p| std::fs::read(&p).with_context(|| format!("reading {}", p.display())))
                .transpose()?;
            let head = airlock::rules::RequestHead {
                method: &method,
                host: &host,
                port,
                path_and_query: &pq,
                headers: &headers,
            };
            if !catalog.inspects(&host) {
                println!("note: {host} is named by no service; the proxy applies proxy.unknown_hosts / inspect_hosts");
            }
            let needs = catalog.needs_body(&head);
            if needs && body.is_none() {
                println!("note: a rule needs the body; without --body the gate fails closed");
            }
            println!("{}", catalog.evaluate(&head, body.as_deref()));
        }
    }
    Ok(())
}

/// Prints the coverage report; `false` when a listed route or mutation is unclassified.
fn rules_coverage(catalog: &Catalog, list_routes: bool) -> bool {
    use airlock::rules::coverage;
    use std::fmt::Write as _;
    let mut out = String::new();
    let routes = coverage::routes(catalog);
    if list_routes {
        for r in &routes {
            let what = match r.method {
                Some(m) => format!("{} {m} {}", r.service, r.name),
                None => format!("{} mutation {}", r.service, r.name),
            };
            match &r.base {
                Some(b) => {
                    let mut line =
                        format!("{:<8} {what}  [{}] {}", b.action.as_str(), b.tool, b.reason);
                    for c in &r.stricter {
                        line.push_str(&format!(
                            "; {} when [{}] {}",
                            c.action.as_str(),
                            c.tool,
                            c.reason
                        ));
                    }
                    let _ = writeln!(out, "{line}");
                }
                None => {
                    let _ = writeln!(out, "{:<8} {what}", "NONE");
                }
            }
        }
        out.push('\n');
    }
    let mut ok = true;
    for ((service, kind), t) in coverage::tally(&routes) {
        let buckets = [
            Action::Allow,
            Action::Notify,
            Action::Escalate,
            Action::Block,
        ]
        .iter()
        .map(|a| format!("{} {}", a.as_str(), t.buckets.get(a).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
        let _ = writeln!(
            out,
            "{service} {}: {} listed: {buckets}; {} stricter under conditions; {} unclassified",
            kind.as_str(),
            t.listed,
            t.conditional,
            t.unclassified.len()
        );
        for u in &t.unclassified {
            let _ = writeln!(out, "  unclassified: {u}");
            ok = false;
        }
        for d in &t.duplicated {
            let _ = writeln!(out, "  more than one base entry: {d}");
        }
    }
    if ok {
        out.push_str("every listed route and mutation is classified explicitly\n");
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    ok
}

async fn reviews(config: Config, token: Option<String>, cmd: ReviewsCommand) -> Result<()> {
    use airlock::admin::client::call;
    use http::Method;
    let token = match token {
        Some(t) => t,
        None => airlock::admin::load_or_create_token(&config.admin.token_file)
            .context("reading the admin token (set AIRLOCK_ADMIN_TOKEN or run from the directory `airlock serve` uses)")?,
    };
    let addr = config.admin.listen;
    let (method, path, body) = match &cmd {
        ReviewsCommand::List { state } => (
            Method::GET,
            match state {
                Some(s) => format!("/v1/reviews?state={s}"),
                None => "/v1/reviews".to_string(),
            },
            None,
        ),
        ReviewsCommand::Show { id } => (Method::GET, format!("/v1/reviews/{id}"), None),
        ReviewsCommand::Approve {
            id,
            comment,
            reviewer,
        } => (
            Method::POST,
            format!("/v1/reviews/{id}/approve"),
            Some(serde_json::json!({"comment": comment, "reviewer": reviewer})),
        ),
        ReviewsCommand::Reject {
            id,
            comment,
            reviewer,
        } => (
            Method::POST,
            format!("/v1/reviews/{id}/reject"),
            Some(serde_json::json!({"comment": comment, "reviewer": reviewer})),
        ),
        ReviewsCommand::Retry {
            id,
            comment,
            reviewer,
        } => (
            Method::POST,
            format!("/v1/reviews/{id}/retry"),
            Some(serde_json::json!({"comment": comment, "reviewer": reviewer})),
        ),
        ReviewsCommand::Extend { id, by } => (
            Method::POST,
            format!("/v1/reviews/{id}/extend"),
            Some(serde_json::json!({ "by": by })),
        ),
    };
    let (status, json) = call(addr, &token, method, &path, body).await?;
    if !(200..300).contains(&status) {
        let msg = json
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("request failed");
        bail!("{msg} (HTTP {status})");
    }
    match cmd {
        ReviewsCommand::List { .. } => {
            let items = json["reviews"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no reviews");
            }
            for r in items {
                println!(
                    "{}  {:<16} {:<28} {} {}  expires {}",
                    r["reviewId"].as_str().unwrap_or("?"),
                    r["state"].as_str().unwrap_or("?"),
                    r["tool"].as_str().unwrap_or("-"),
                    r["method"].as_str().unwrap_or("?"),
                    r["url"].as_str().unwrap_or("?"),
                    r["expiresAt"].as_str().unwrap_or("?"),
                );
            }
        }
        ReviewsCommand::Approve { .. } | ReviewsCommand::Retry { .. } => {
            let (line, exit) = execution_summary(&json);
            println!("{line}");
            println!("{}", serde_json::to_string_pretty(&json)?);
            if exit != 0 {
                std::process::exit(exit);
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&json)?),
    }
    Ok(())
}

/// `reviews approve|retry` exit status when the execution ended `failed`: nothing was sent.
const EXIT_NOT_SENT: i32 = 3;
/// `reviews approve|retry` exit status when the execution ended `outcome_unknown`: the request
/// may have reached the upstream; check there before any retry.
const EXIT_OUTCOME_UNKNOWN: i32 = 4;

/// One human line for an approve/retry answer, and the exit status it calls for.
fn execution_summary(review: &serde_json::Value) -> (String, i32) {
    let id = review["reviewId"].as_str().unwrap_or("?");
    let state = review["state"].as_str().unwrap_or("?");
    let error = review["result"]["error"].as_str().unwrap_or("no detail");
    match state {
        "executed" => {
            let status = review["result"]["status"]
                .as_u64()
                .map_or_else(|| "?".to_string(), |s| s.to_string());
            (format!("{id}: executed, upstream answered HTTP {status}"), 0)
        }
        "failed" => (
            format!("{id}: failed, not sent: {error}"),
            EXIT_NOT_SENT,
        ),
        "outcome_unknown" => (
            format!(
                "{id}: outcome unknown, the request may have reached the upstream: {error}; check there before retrying"
            ),
            EXIT_OUTCOME_UNKNOWN,
        ),
        other => (format!("{id}: {other}"), 0),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
