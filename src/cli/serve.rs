//! `airlock serve`: run the proxy and the admin API until a shutdown signal.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use airlock::config::{self, Config, UnknownHosts};
use airlock::rules::{Action, CatalogOptions, LiveCatalog};

#[derive(clap::Args, Default)]
pub(super) struct ServeArgs {
    /// Agent-facing listen address, IP:port or host:port (overrides proxy.listen).
    #[arg(long, value_parser = config::parse_listen_flag)]
    listen: Option<String>,
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
    /// Admin API listen address, IP:port or host:port, e.g. a network alias only reviewers'
    /// network has (overrides admin.listen).
    #[arg(long, value_parser = config::parse_listen_flag)]
    admin_listen: Option<String>,
}

impl ServeArgs {
    /// The flags as config overrides (with the global path flags already in `paths`),
    /// merged before the config is checked.
    pub(super) fn overrides(&self, paths: config::Overrides) -> config::Overrides {
        config::Overrides {
            proxy_listen: self.listen.clone(),
            admin_listen: self.admin_listen.clone(),
            resolve: self.resolve.clone(),
            upstream_ca: self.upstream_ca.clone(),
            inspect_hosts: self.inspect_host.clone(),
            unknown_hosts: self.unknown_hosts,
            ..paths
        }
    }
}

/// Blocking threads (store and audit work, from every proxy worker too: `Gate::spawn_blocking`
/// sends it here): commits are grouped, so more threads would only wait on the same fsync
/// while each keeps its own stack and allocator arena. Name lookups never run here (the
/// resolver has its own capped threads).
const MAX_BLOCKING_THREADS: usize = 64;

pub(super) fn serve(config: Config) -> Result<()> {
    limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_async(config))
}

/// glibc gives each thread that allocates an arena of its own (up to 8 per core), and freed
/// memory stays in its arena: a burst over many blocking threads leaves resident memory behind.
/// Two arenas keep the resident set near what is in use (`MALLOC_ARENA_MAX` still overrides).
/// Also fixes the mmap and trim thresholds for streaming (below; glibc's environment knobs
/// still override).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread
        // exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
    // Streaming allocates and frees frame-sized buffers (16-256 KiB) all the time. glibc's
    // defaults hand big ones to mmap and give freed memory back at once, so every frame paid
    // page faults and zeroing (a quarter of a stream's CPU). Fixed thresholds keep them in
    // the heap: peak RSS is unchanged (18-23 MB for a 1 GiB stream), the speed 1.5x.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none()
        && std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none()
        && std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none()
    {
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        }
    }
}

/// Raises the open-files limit as far as allowed, and warns when even that cannot hold the
/// connection limits: one descriptor per agent and reviewer connection, one per upstream
/// connection the agent side can make ([`airlock::config::ProxyConfig::upstream_connections_bound`]:
/// a tunnel's, one per request in flight under `proxy.max_requests_in_flight_per_agent`), and
/// some for the store, the log and approved calls' sends.
fn check_open_files(config: &Config) {
    let agents = config.agents.len();
    let needed = (config.proxy.max_connections as u64)
        .saturating_add(config.proxy.max_unauthenticated_connections as u64)
        .saturating_add(config.proxy.upstream_connections_bound(agents))
        .saturating_add(config.admin.max_connections as u64)
        .saturating_add(512);
    match airlock::hardening::raise_open_files() {
        Ok(limit) if limit < needed => tracing::warn!(
            target: "airlock",
            limit,
            needed,
            "the open-files limit is below what proxy.max_connections, proxy.max_unauthenticated_connections, the upstream connections they may make (proxy.max_requests_in_flight_per_agent for each agent configured at start) and admin.max_connections need; raise the hard limit (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=) or lower them"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(target: "airlock", error = %e, "could not read or raise the open-files limit")
        }
    }
}

// Events keep the `airlock` target (the binary's crate root) they had in main.rs.
async fn serve_async(config: Config) -> Result<()> {
    // Before anything is announced: a SIGTERM right after the address lines is a graceful
    // shutdown (logs flushed), not the default action's instant death.
    let mut signals = Signals::install();
    // A refused AIRLOCK_ADMIN_TOKEN stops the start before any state is created.
    airlock::admin::env_token().map_err(|e| anyhow::anyhow!("admin token: {e}"))?;
    check_open_files(&config);
    if let Some(w) = config::admin_exposure(config.admin.listen, config.proxy.listen) {
        tracing::warn!(target: "airlock", "{w}");
    }
    let catalog = LiveCatalog::load(config.rules.dir.clone(), catalog_options(&config))
        .map_err(|e| anyhow::anyhow!("rules: {e}"))?;
    tracing::info!(target: "airlock", rules = catalog.current().rule_count(), hosts = ?catalog.current().hosts(), "rules catalog loaded");
    super::config::check_agent_services(&config, &config.agents, &catalog.current())?;
    if config.rules.unclassified_writes == Action::Allow {
        tracing::warn!(target: "airlock", "rules.unclassified_writes = \"allow\": writes no rule classifies are forwarded (each is audited as unclassified); the closed world is off");
    }
    if config.source.is_none() {
        tracing::info!(target: "airlock", rules_dir_followed = config.rules.dir.is_some(), "no config file: built-in defaults and flags; no agents, reviewers or credentials file to follow (create a config file, then restart, to add them)");
    }
    let classifier: Arc<dyn airlock::rules::Classifier> = catalog.clone();
    // A signal while starting (a store lock or a database still awaited) ends it there.
    let server = tokio::select! {
        started = airlock::server::start(&config, classifier, Arc::new(airlock::gate::SystemClock)) => started?,
        _ = signals.recv() => {
            tracing::info!(target: "airlock", "signal received while starting; not started");
            return Ok(());
        }
    };
    // Logged before the address lines: whoever reads those finds this line written.
    tracing::info!(target: "airlock", proxy = %server.proxy_addr, admin = %server.admin_addr, unknown_hosts = ?config.proxy.unknown_hosts, "Airlock running");
    super::announce(
        &format!("airlock: proxy listening on {}", server.proxy_addr),
        &[("proxy", server.proxy_addr.to_string())],
    );
    announce_admin(&config, server.admin_addr);
    catalog.spawn_watcher(server.life.shutdown.clone());
    let lost = tokio::select! {
        _ = signals.recv() => None,
        why = server.instances_lock_lost() => Some(why),
    };
    if let Some(why) = &lost {
        tracing::error!(target: "airlock", error = %why, "lost the database's instances lock; stopping");
    }
    tracing::info!(target: "airlock", "shutting down: no new connections, draining in-flight requests");
    server.shutdown(config.proxy.shutdown_grace).await;
    match lost {
        Some(why) => Err(anyhow::anyhow!("{why}")),
        None => Ok(()),
    }
}

/// The admin API's address line, naming where its token comes from: the token file, or
/// `AIRLOCK_ADMIN_TOKEN` (then a token file holding another token is stale, and said so).
fn announce_admin(config: &Config, admin: std::net::SocketAddr) {
    let file = config.admin.token_file.display().to_string();
    let from_env = matches!(airlock::admin::env_token(), Ok(Some(_)));
    let (source, fields) = if from_env {
        (
            format!("token from {}", airlock::admin::TOKEN_ENV),
            ("token_source", airlock::admin::TOKEN_ENV.to_string()),
        )
    } else {
        (format!("token in {file}"), ("token_file", file.clone()))
    };
    if from_env && airlock::admin::stale_file(&config.admin.token_file) {
        tracing::warn!(target: "airlock", file = %file, "AIRLOCK_ADMIN_TOKEN overrides the admin token file, which holds another, stale token: whatever reads the file (a CLI without the variable, a Prometheus scrape) is refused; remove the file or write the variable's token to it");
    }
    super::announce(
        &format!("airlock: admin API on http://{admin} ({source})"),
        &[("admin", admin.to_string()), fields],
    );
}

pub(super) fn catalog_options(config: &Config) -> CatalogOptions {
    CatalogOptions {
        default_action: config.rules.default_action,
        unclassified_writes: config.rules.unclassified_writes,
        credentialed_hosts: config
            .credentials
            .iter()
            .flat_map(|c| {
                c.hosts
                    .iter()
                    .chain(&c.git_hosts)
                    .map(|h| (airlock::rules::normalize::host(h), c.service.clone()))
            })
            .collect(),
    }
}

/// SIGINT and SIGTERM, registered at once (a signal that arrives before anyone waits is kept).
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for either (Ctrl-C alone where these cannot be registered).
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            if self.int.is_none() && self.term.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                _ = next(&mut self.int) => {}
                _ = next(&mut self.term) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
