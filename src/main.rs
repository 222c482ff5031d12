//! `airlock` command line: serve the proxy, manage the CA, check config.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use airlock::config::{self, Config, UnknownHosts};
use airlock::proxy::{self, Lifecycle, Proxy};
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
enum ConfigCommand {
    /// Parse and check the config file; print the effective settings.
    Check,
}

fn main() -> Result<()> {
    airlock::install_crypto_provider();
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let config = Config::discover(cli.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    match cli.command {
        Command::Serve(args) => serve(config, args),
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
            Ok(())
        }
    }
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

fn serve(mut config: Config, args: ServeArgs) -> Result<()> {
    if let Some(l) = args.listen {
        config.proxy.listen = l;
    }
    config.upstream.resolve.extend(args.resolve);
    config.upstream.extra_ca_files.extend(args.upstream_ca);
    for h in args.inspect_host {
        match config::normalize_host(&h) {
            Some(h) => config.proxy.inspect_hosts.push(h),
            None => bail!("--inspect-host {h:?}: not a host name"),
        }
    }
    if let Some(u) = args.unknown_hosts {
        config.proxy.unknown_hosts = u;
    }
    if let Some(d) = args.ca_dir {
        config.tls.ca_dir = d;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_async(config))
}

async fn serve_async(config: Config) -> Result<()> {
    let (ca, created) = CertificateAuthority::load_or_create(&config.tls.ca_dir)?;
    if created {
        tracing::info!(dir = %config.tls.ca_dir.display(), "created a new interception CA; clients must trust ca.pem");
    }
    let classifier: Arc<dyn proxy::policy::Classifier> = Arc::new(proxy::policy::AllowAll);
    let proxy = Arc::new(Proxy::new(&config, Arc::new(ca), classifier, None)?);
    let listener = tokio::net::TcpListener::bind(config.proxy.listen)
        .await
        .with_context(|| format!("binding proxy listener {}", config.proxy.listen))?;
    let addr = listener.local_addr()?;
    println!("airlock: proxy listening on {addr}");
    tracing::info!(%addr, unknown_hosts = ?config.proxy.unknown_hosts, "proxy listening");

    let life = Lifecycle::default();
    let server = tokio::spawn(proxy::run(listener, proxy, life.clone()));
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    life.shutdown.cancel();
    let _ = server.await;
    life.tasks.close();
    if tokio::time::timeout(config.proxy.shutdown_grace, life.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
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
