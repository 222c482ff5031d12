//! Assembly of a running Airlock: CA, store, gate (with recovery and the expiry sweeper),
//! proxy listener and admin listener. Used by `airlock serve` and by the tests.
//!
//! Agents, reviewers and credentials reload on SIGHUP and when their files change (`watch.rs`).
//! On a shared store (`[store] backend = "postgres"`) the agents and reviewers kept in the
//! database join the config file's (`people.rs`), and the one-click link key and the admin
//! token are the database's, so every instance honours what another minted (and follows an
//! admin token rotation: `admin_token.rs`). What a start puts in force, and every reload, is
//! recorded in the audit log (`policy_log.rs`).

mod admin_token;
mod inspected;
mod people;
mod policy_log;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::{self, Admin, AdminError};
use crate::audit::{AuditLog, AuditOptions};
use crate::config::Config;
use crate::gate::{Clock, Gate, GateError, People, Roster};
use crate::proxy::{self, Lifecycle, Proxy};
use crate::rules::Classifier;
use crate::store::{self, StoreError};
use crate::tls::{CertificateAuthority, TlsError};
use crate::upstream::egress::EgressGuard;
use crate::upstream::{Dialer, Upstream};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("CA: {0}")]
    Tls(#[from] TlsError),
    #[error("upstream.extra_ca_files: {0}")]
    UpstreamCa(TlsError),
    #[error("proxy: {0}")]
    Proxy(#[from] crate::proxy::ProxyError),
    #[error("store at {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error("recovering reviews: {0}")]
    Recover(#[from] GateError),
    #[error("clock: {0}")]
    Clock(String),
    #[error("audit log: {0}")]
    Audit(String),
    #[error("one-click link key: {0}")]
    Links(String),
    #[error("notify: {0}")]
    Notify(String),
    #[error("{0}")]
    Credentials(#[from] crate::credentials::CredentialError),
    #[error("admin token: {0}")]
    Admin(#[from] AdminError),
    #[error("approval policies: {0}")]
    Policy(String),
    #[error("{0}")]
    AdminSocket(#[from] admin::socket::SocketError),
    #[error("{0}")]
    Peer(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running Airlock.
pub struct Server {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    pub gate: Arc<Gate>,
    pub ca_pem: String,
    pub admin_token: String,
    /// Signs and checks one-click links (the same key on every instance of a shared store).
    pub links: Arc<crate::notify::LinkSigner>,
    pub life: Lifecycle,
    /// On a shared database, this instance's hold on the instances lock (released at drop):
    /// `airlock audit accept-restore` cannot begin while it is held.
    serving: Option<store::ServingHold>,
}

/// How long `serve` waits for a store another process still holds (see `open_patiently`).
const STORE_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// A socket bound to its address but not yet listening (connections are refused).
struct Bound {
    socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl Bound {
    fn bind(addr: SocketAddr) -> Result<Bound, ServerError> {
        let fail = |source| ServerError::Bind { addr, source };
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(fail)?;
        socket.set_reuseaddr(true).map_err(fail)?;
        socket.bind(addr).map_err(fail)?;
        let addr = socket.local_addr().map_err(fail)?;
        Ok(Bound { socket, addr })
    }

    fn listen(self) -> Result<TcpListener, ServerError> {
        let addr = self.addr;
        self.socket
            .listen(1024)
            .map_err(|source| ServerError::Bind { addr, source })
    }
}

pub async fn start(
    config: &Config,
    classifier: Arc<dyn Classifier>,
    clock: Arc<dyn Clock>,
) -> Result<Server, ServerError> {
    // A config that cannot start stops before any state (store, CA) is created.
    upstream_tls(config)?;
    refuse_unshared_peer(config)?;
    // A process killed a moment ago may still hold the store's lock: wait for it, boundedly.
    let store = store::open_configured(
        config.store.backend,
        &config.store.path,
        config.store.url.as_ref().map(|u| u.expose()),
        STORE_LOCK_PATIENCE,
    )
    .map_err(|source| ServerError::Store {
        path: match config.store.backend {
            store::Backend::Postgres => "store.url".into(),
            _ => config.store.path.display().to_string(),
        },
        source,
    })?;
    start_with_store(config, classifier, clock, store).await
}

/// Several instances share a data directory only on a shared store (PostgreSQL). On redb or
/// sled, a live instance serving this config's admin socket, or another backend's store files in
/// `store.path`, stop the start before anything is created: each backend takes only its own
/// lock, so a second instance of the other backend would run beside the first unseen, its audit
/// chain apart, and the first's next start would find its anchor ahead of its store.
fn refuse_unshared_peer(config: &Config) -> Result<(), ServerError> {
    let backend = config.store.backend;
    if backend == store::Backend::Postgres {
        return Ok(());
    }
    let name = match backend {
        store::Backend::Redb => "redb",
        _ => "sled",
    };
    if let Some(socket) = config.admin_socket() {
        if admin::socket::served_by_live_peer(&socket) {
            return Err(ServerError::Peer(format!(
                "another airlock serve is running on this data directory (it serves the admin \
                 socket {}): on a {name} store one instance owns it (several need [store] \
                 backend = \"postgres\"); stop that one first, or give this one its own \
                 store.path",
                socket.display()
            )));
        }
    }
    let theirs = store::other_backend_files(backend, &config.store.path);
    if !theirs.is_empty() {
        let names: Vec<String> = theirs.iter().map(|p| p.display().to_string()).collect();
        return Err(ServerError::Peer(format!(
            "store.path {} holds another backend's store ({}) but this instance would open a \
             {name} store there: one directory holds one backend's store; run with the backend \
             that made it (--store), or move those files away (to switch backends, export and \
             start afresh)",
            config.store.path.display(),
            names.join(", ")
        )));
    }
    Ok(())
}

/// The upstream TLS client config: Mozilla's roots and `upstream.extra_ca_files` (each must
/// read as PEM certificates). `airlock config check` runs it too.
pub fn upstream_tls(config: &Config) -> Result<Arc<rustls::ClientConfig>, ServerError> {
    crate::tls::client_config(&config.upstream.extra_ca_files).map_err(ServerError::UpstreamCa)
}

/// Like [`start`], on a store the caller opened (tests wrap one to inject failures).
pub async fn start_with_store(
    config: &Config,
    classifier: Arc<dyn Classifier>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn crate::store::Store>,
) -> Result<Server, ServerError> {
    let tls = upstream_tls(config)?;
    // Before anything is read: a restore being accepted on a shared database refuses the start
    // (and cannot begin while this instance runs).
    let serving = store.hold_serving().map_err(|source| ServerError::Store {
        path: "store.url".into(),
        source,
    })?;
    // A store several instances share keeps agents, reviewers, the link key and the admin
    // token; its change feed is subscribed to before they are read, so no change is missed.
    let directory = (config.store.backend == store::Backend::Postgres)
        .then(|| crate::directory::Directory::new(store.clone()));
    let changes = directory
        .as_ref()
        .and_then(|_| store.watch(store::Tree::Meta));
    let store_error = |source| ServerError::Store {
        path: "store.url".into(),
        source,
    };
    let sources = people::Sources::at_start(config, directory.as_ref()).map_err(store_error)?;
    // The agents and reviewers in force, shared by the proxy, the admin listener, the gate and
    // the notifier; checked against the rules' approval policies before anything listens.
    let (agent_list, people) = sources.merged(true);
    let agents = Arc::new(crate::agents::Agents::new(
        agent_list,
        config.proxy.allow_anonymous,
    ));
    let people = Roster::new(people);
    check_people(
        &people.current(),
        &classifier.approval_policies(),
        &agents.current(),
    )
    .map_err(ServerError::Policy)?;
    warn_admin_may_approve(&people.current());
    // Every later rules reload (SIGHUP, a changed rules file) is checked against the people in
    // force then; rules that fail keep the old ones.
    let (roster, in_force) = (people.clone(), agents.clone());
    classifier.set_policy_check(Arc::new(move |rules| {
        check_people(&roster.current(), rules, &in_force.current())
    }));
    let (ca, created) = CertificateAuthority::load_or_create(&config.tls.ca_dir)?;
    if created {
        tracing::info!(dir = %config.tls.ca_dir.display(), "created a new interception CA; agents must trust ca.pem");
    }
    // With a next CA prepared (`airlock ca rotate`), agents are given both certificates.
    let ca_pem = crate::tls::rotate::trust_bundle(&config.tls.ca_dir, &ca)?;
    if crate::tls::rotate::prepared(&config.tls.ca_dir) {
        tracing::info!(dir = %crate::tls::rotate::next_dir(&config.tls.ca_dir).display(), "a next CA is prepared: airlock.local/ca.pem gives agents both certificates until `airlock ca rotate --finish` and a restart");
    }
    let vault = crate::credentials::Vault::load(&config.credentials)?;
    let vault_for_reload = vault.clone();
    // A key rotation cut short after its store transaction: the new key takes the key file's
    // place before the log opens (any other state is reported by the open).
    if let Some(pubkey) =
        crate::audit::finish_interrupted_rotation(store.as_ref(), &config.audit_key_file())
            .map_err(|e| ServerError::Audit(e.to_string()))?
    {
        tracing::warn!(%pubkey, "finished an interrupted `airlock audit rotate-key`: the audit key file now holds the new key");
    }
    let audit = Arc::new(
        AuditLog::open(
            store.clone(),
            &config.audit_key_file(),
            config.audit.origin.clone(),
            AuditOptions {
                checkpoint_every: config.audit.checkpoint_every,
                checkpoint_interval: config.audit.checkpoint_interval,
            },
        )
        .map_err(|e| ServerError::Audit(e.to_string()))?,
    );
    // The tail the last stop left unsigned (a crash or a kill), named in the startup entry. On
    // a shared store it is the other instances' latest entries, signed by their own timers.
    let unsigned_at_start = match store.watch(crate::store::Tree::Reviews) {
        Some(_) => None,
        None => audit.unsigned_tail(),
    };
    if let Some((first, last)) = unsigned_at_start {
        tracing::warn!(first_seq = first, last_seq = last, "audit entries the last stop left unsigned (it did not end cleanly) are signed only now; the startup policy entry names them (docs/audit.md)");
    }
    // Bound now (the addresses are known, and taken), listening only once the store is
    // recovered: until then a connection is refused, never accepted and left waiting.
    let proxy_socket = Bound::bind(config.proxy.listen)?;
    let admin_socket = Bound::bind(config.admin.listen)?;
    let (proxy_addr, admin_addr) = (proxy_socket.addr, admin_socket.addr);
    // The egress guard knows our own listeners, so no agent can reach them through the proxy.
    let guard = Arc::new(EgressGuard::new(
        config.egress.allow_nets.clone(),
        config.egress.allow_hosts.clone(),
        config.egress.ports.clone(),
    ));
    guard.set_own_listeners(&[proxy_addr, admin_addr]);
    // Where reviewers decide is refused by name and by address, whatever the tunnel mode;
    // the addresses are resolved again every minute.
    let surfaces = config.decision_surfaces();
    // Looked up on resolver threads, never on the pool the store and audit work runs on.
    let surface_resolver = Arc::new(crate::upstream::resolve::Resolver::default());
    refresh_decision_surfaces(&guard, &surfaces, &surface_resolver).await;

    let life = Lifecycle::default();
    let dialer = Dialer::new(
        config.upstream.resolve.clone(),
        config.upstream.connect_timeout,
        guard.clone(),
    );
    // One upstream side for the proxy's workers and the gate's executions.
    let upstream = Arc::new(Upstream::new(
        config.proxy.workers,
        &tls,
        dialer,
        config.upstream.pool_idle_timeout,
        vault.clone(),
    ));
    let link_key = match &directory {
        Some(_) => crate::directory::shared_link_key(store.as_ref())
            .map_err(|e| ServerError::Links(e.to_string()))?,
        None => crate::notify::load_or_create_key(&config.link_key_file())
            .map_err(|e| ServerError::Links(e.to_string()))?,
    };
    let links = Arc::new(crate::notify::LinkSigner::new(link_key));
    let mut notify = config.notify.clone();
    notify
        .read_secrets()
        .map_err(|e| ServerError::Notify(e.to_string()))?;
    let notifier = crate::notify::Notifier::start_with_policy(
        notify,
        Some(links.clone()),
        config.notify.base_url.clone(),
        Some(people.clone() as Arc<dyn crate::notify::LinkPolicy>),
    );
    let gate = Gate::new(
        store.clone(),
        upstream.clone(),
        vault.clone(),
        audit.clone(),
        notifier,
        people.clone(),
        config.gate.clone(),
        clock,
        life.tasks.clone(),
    );
    // Leases compare clocks across instances: refuse to run on one too far off the database's.
    gate.check_clock()
        .await
        .map_err(|e| ServerError::Clock(e.to_string()))?;
    // What this instance puts in force, in the log before anything it decides under it.
    let policy = policy_log::PolicyLog::start(
        audit.clone(),
        gate.instance().to_string(),
        &life.tasks,
        life.shutdown.clone(),
    );
    policy
        .record_now(startup_entry(
            &policy,
            classifier.as_ref(),
            &agents.current(),
            &people.current(),
            &vault.services(),
            unsigned_at_start,
        ))
        .await
        .map_err(|e| ServerError::Audit(format!("recording the policy in force: {e}")))?;
    let observer = policy.clone();
    classifier.set_reload_observer(Arc::new(move |trigger, reload| {
        observer.rules(trigger, reload)
    }));
    gate.recover().await?;
    let checkpoints = audit.spawn_checkpoint_timer();
    let stop = life.shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        checkpoints.abort();
    });
    // A CA's coming expiry is warned about daily, not only at start (a server may run for
    // months), and exported for alerts.
    let ca_expires = ca.expires_at_unix();
    crate::metrics::ca_expiry(ca_expires);
    let stop = life.shutdown.clone();
    tokio::spawn(async move {
        let mut day = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
        day.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = day.tick() => {
                    crate::tls::check_ca_expiry(ca_expires);
                }
            }
        }
    });
    if !surfaces.is_empty() {
        let (guard, stop) = (guard.clone(), life.shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => refresh_decision_surfaces(&guard, &surfaces, &surface_resolver).await,
                }
            }
        });
    }
    life.tasks
        .spawn(gate.clone().run_sweeper(life.shutdown.clone()));
    gate.follow_shared_store(life.shutdown.clone());

    let classifier_for_reload = classifier.clone();
    let proxy = Arc::new(Proxy::new(
        config,
        agents.clone(),
        Arc::new(ca),
        classifier,
        gate.clone(),
        upstream,
        vault,
    )?);
    // In tunnel mode, a blind tunnel to where an inspected host is reached is refused: those
    // addresses are resolved now and every minute.
    if config.proxy.unknown_hosts == crate::config::UnknownHosts::Tunnel {
        inspected::follow(
            guard.clone(),
            proxy.clone(),
            config.upstream.resolve.clone(),
            life.shutdown.clone(),
        )
        .await;
    }

    // Subscribed to before the shared token is read, so that no rotation in between is missed.
    let token_changes = directory
        .as_ref()
        .and_then(|_| store.watch(store::Tree::Meta));
    let (admin_token, operator) = admin_token::load(config, directory.as_ref().map(|_| &store))?;
    let metrics_token = match &config.admin.metrics_token_file {
        Some(path) => Some(admin::load_or_create_metrics_token(path)?),
        None => None,
    };
    if metrics_token.as_deref() == Some(admin_token.as_str()) {
        return Err(ServerError::Admin(AdminError::TokenFile {
            path: config
                .admin
                .metrics_token_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            message:
                "holds the admin token; the metrics token must be another (it reads only /metrics)"
                    .into(),
        }));
    }
    admin_token::follow(
        operator.clone(),
        token_changes,
        policy.clone(),
        life.shutdown.clone(),
    );
    let admin = Admin::new(
        gate.clone(),
        (operator, metrics_token.as_deref()),
        (admin_addr, proxy_addr),
        links.clone(),
        config.notify.base_url.as_deref(),
        config
            .admin
            .public_hosts
            .iter()
            .cloned()
            .chain(config.admin.listen_name.clone())
            .collect(),
        agents.clone(),
    );
    let proxy_listener = proxy_socket.listen()?;
    let admin_listener = admin_socket.listen()?;
    if let Some(path) = config.admin_socket() {
        admin::socket::start(
            path,
            matches!(config.admin.socket, crate::config::AdminSocket::At(_)),
            admin.clone(),
            &config.admin,
            life.shutdown.clone(),
            life.tasks.clone(),
        )?;
    }
    tokio::spawn(admin::run(
        admin_listener,
        admin,
        &config.admin,
        life.shutdown.clone(),
        life.tasks.clone(),
    ));
    let in_force = people::InForce::new(
        sources,
        config.source.clone(),
        directory,
        agents,
        gate.people().clone(),
        classifier_for_reload.clone(),
        vault_for_reload.clone(),
        policy.clone(),
    );
    in_force.clone().spawn_watch(changes, life.shutdown.clone());
    watch::spawn(
        config
            .source
            .iter()
            .chain(config.agents_file.iter())
            .cloned()
            .collect(),
        in_force.clone(),
        vault_for_reload.clone(),
        policy.clone(),
        life.shutdown.clone(),
    );
    spawn_reloader(
        in_force,
        classifier_for_reload,
        vault_for_reload,
        policy,
        life.shutdown.clone(),
    );
    tokio::spawn(proxy::run(proxy_listener, proxy.clone(), life.clone()));
    Ok(Server {
        proxy_addr,
        admin_addr,
        proxy,
        gate,
        ca_pem,
        admin_token,
        links,
        life,
        serving,
    })
}

/// The `policy` entry of a start: the rules in force (count, digest, files), how many agents
/// and reviewers, `[admin] may_approve`, the services that have a credential, and the audit
/// entries the last stop left unsigned.
fn startup_entry(
    policy: &policy_log::PolicyLog,
    classifier: &dyn Classifier,
    agents: &[crate::config::AgentConfig],
    people: &People,
    services: &[String],
    unsigned_at_start: Option<(u64, u64)>,
) -> crate::audit::PolicyChange {
    use crate::audit::{PolicyChange, PolicyResult, PolicySubject};
    let mut c = PolicyChange::new(
        PolicySubject::Startup,
        PolicyResult::Applied,
        "startup",
        policy.instance(),
    );
    if let Some(d) = classifier.catalog_digest() {
        c = policy_log::with_catalog(c, &d);
    }
    c.agents = Some(agents.len());
    c.reviewers = Some(people.reviewers().len());
    c.admin_may_approve = Some(people.may_approve_setting());
    c.services = Some(services.to_vec());
    c.unsigned_at_start = unsigned_at_start.map(|(first_seq, last_seq)| crate::audit::SeqRange {
        first_seq,
        last_seq,
    });
    c
}

/// Checks the rules' approval policies against the reviewers configured in `config`, as
/// `airlock serve` does at start (and on every rules reload, against the reviewers in force):
/// `Err` names each rule (`file:line` and tool) the reviewers could never approve. `airlock
/// config check` runs it too.
pub fn check_approval_policies(
    config: &Config,
    rules: &[crate::rules::RulePolicy],
) -> Result<(), String> {
    let people = People::new(config.reviewers.clone(), config.admin.may_approve);
    check_people(&people, rules, &config.agents)
}

/// Checks `rules`' approval policies against `people` (errors: rules that could never be
/// approved, once reviewers are configured) and logs the warnings.
fn check_people(
    people: &People,
    rules: &[crate::rules::RulePolicy],
    agents: &[crate::config::AgentConfig],
) -> Result<(), String> {
    let report = crate::gate::people::check_policies(people, rules, agents);
    for w in &report.warnings {
        tracing::warn!("approval policy: {w}");
    }
    if report.errors.is_empty() {
        Ok(())
    } else {
        Err(report.errors.join("; "))
    }
}

/// Warns, once reviewers exist, that the admin token may approve.
fn warn_admin_may_approve(people: &People) {
    if people.has_reviewers() && people.admin_may_approve() {
        tracing::warn!("[admin] may_approve = true: the admin token may approve, retry and extend reviews (as one approver, never for an agent that has an owner unless its rule allows self-approval); prefer reviewers' own tokens");
    }
}

/// What a reload of the reviewers changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeopleReload {
    /// Reviewers now in force.
    pub reviewers: usize,
    /// Reviewers no longer configured (or whose token changed): their tokens, dashboard
    /// sessions and one-click links stopped working, their approvals stopped counting.
    pub removed: Vec<String>,
    /// Rules the new reviewers can never approve (logged as errors; the reload still applies,
    /// so a removal always takes effect).
    pub policy_errors: Vec<String>,
    /// Why the rest of the file no longer checks, if it does not (the reviewers were reloaded
    /// anyway; the other sections are not reloaded and would stop the next start).
    pub config_error: Option<String>,
}

/// Re-reads `[[reviewers]]` and `[admin] may_approve` from the config file at `path` and swaps
/// them into `gate`'s shared set at once. A file that does not parse, or whose reviewers do not
/// check, keeps the reviewers in force; a problem elsewhere in the file does not stop the
/// reviewers reloading (it is reported in [`PeopleReload::config_error`]), so a removal always
/// takes effect. The config file's reviewers only: `airlock serve`'s SIGHUP also reloads the
/// agents, and the ones a shared database keeps (`server/people.rs`). Tests call it directly.
pub fn reload_people(
    gate: &Gate,
    path: &std::path::Path,
    classifier: &dyn Classifier,
) -> Result<PeopleReload, String> {
    let (reviewers, may_approve) = Config::load_reviewers(path).map_err(|e| e.to_string())?;
    let (agents, config_error) = match Config::load(path, crate::config::Overrides::default()) {
        Ok(c) => (c.agents, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let people = People::new(reviewers, may_approve);
    let policy_errors = match check_people(&people, &classifier.approval_policies(), &agents) {
        Ok(()) => Vec::new(),
        Err(e) => vec![e],
    };
    warn_admin_may_approve(&people);
    let reviewers = people.reviewers().len();
    let before = gate.people().current();
    let change = policy_log::reviewers_change(
        "reload",
        gate.instance(),
        (before.reviewers(), before.may_approve_setting()),
        (people.reviewers(), people.may_approve_setting()),
    );
    let removed = gate.people().replace(people);
    if let Some(change) = change {
        crate::metrics::policy_change(change.change.as_str(), change.result.as_str());
        let event = crate::audit::Event::Policy(Box::new(change));
        if let Err(e) = gate.audit().append(event) {
            tracing::error!(error = %e, "a reviewers reload (it took effect) could not be written to the audit log");
        }
    }
    Ok(PeopleReload {
        reviewers,
        removed,
        policy_errors,
        config_error,
    })
}

/// On every SIGHUP: reloads the agents and reviewers (the config file's, and a shared
/// database's), the credentials, then the rules (`classifier.reload_rules()`), checked against the reviewers now
/// in force: a rule the reviewers could never approve keeps the old rules, and the error is
/// logged. In that order, so that a new reviewer and a rule needing her arrive together.
fn spawn_reloader(
    in_force: Arc<people::InForce>,
    classifier: Arc<dyn Classifier>,
    vault: Arc<crate::credentials::Vault>,
    policy: Arc<policy_log::PolicyLog>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP; agents, reviewers, credentials and rules reload only on file change or restart");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            in_force.reload(people::Trigger::Signal).await;
            watch::reload_credentials(&vault, &policy, people::Trigger::Signal);
            match classifier.reload_rules() {
                None => {}
                Some(Ok(n)) => tracing::info!(rules = n, trigger = "SIGHUP", "rules reloaded"),
                Some(Err(e)) => {
                    tracing::error!(error = %e, trigger = "SIGHUP", "rules reload refused; keeping the rules in force")
                }
            }
        }
    });
}

/// Resolves each decision surface (host, port) and hands names and addresses to the guard. A
/// name that does not resolve is still refused by name.
async fn refresh_decision_surfaces(
    guard: &EgressGuard,
    surfaces: &[(String, u16)],
    resolver: &crate::upstream::resolve::Resolver,
) {
    let mut hosts = Vec::new();
    let mut addrs = Vec::new();
    for (host, port) in surfaces {
        if let Some(ip) = crate::upstream::egress::literal_ip(host) {
            addrs.push(SocketAddr::new(ip, *port));
            continue;
        }
        hosts.push(host.clone());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        match resolver.resolve(host, *port, None, deadline).await {
            Ok(found) => addrs.extend(found),
            Err(e) => {
                tracing::debug!(host, error = %e, "decision surface does not resolve; refused by name")
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    guard.set_decision_surfaces(&hosts, &addrs);
}

impl Server {
    /// Stops accepting, lets in-flight requests and executions finish for up to `grace`.
    /// Agents' waits (`?wait=`, `Airlock-Wait`) are answered at once with their review as it
    /// is (a wait that timed out answers the same), and connections still in their TLS
    /// handshake or idle are closed: what the drain waits for is real work (a forwarded
    /// request, an approved send), so a `docker compose stop` (10 s) is a clean stop.
    /// Resolves, with why, when this instance lost the shared database's instances lock and
    /// could not take it again (a restore began while its lock connection was down): it must
    /// stop. Never resolves on a store only this process opens.
    pub async fn instances_lock_lost(&self) -> String {
        if let Some(mut lost) = self.serving.as_ref().map(|h| h.lost()) {
            loop {
                if let Some(why) = lost.borrow_and_update().clone() {
                    return why;
                }
                if lost.changed().await.is_err() {
                    break;
                }
            }
        }
        std::future::pending().await
    }

    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.life.shutdown.cancel();
        self.gate.end_waits();
        self.life.tasks.close();
        if tokio::time::timeout(grace, self.life.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
        // The last entries signed (and the anchor moved) before the process stops: while it is
        // down, a cut or rolled-back tail would otherwise go unseen.
        let audit = self.gate.audit().clone();
        match tokio::task::spawn_blocking(move || audit.checkpoint()).await {
            Ok(Ok(Some(seq))) => tracing::info!(seq, "audit log checkpoint signed at shutdown"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not sign the audit log at shutdown"),
            Err(e) => tracing::error!(error = %e, "audit checkpoint task failed at shutdown"),
        }
    }
}
