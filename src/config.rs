//! Configuration: one TOML file parsed into raw types, then checked into [`Config`] before use.
//! Every field has a default, so Airlock runs with no file at all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::rules::Action;
use crate::store::Backend;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "AIRLOCK_CONFIG";
/// File looked for in the working directory when neither flag nor env names one.
pub const DEFAULT_FILE: &str = "airlock.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {message}")]
    Read { file: String, message: String },
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

/// What to do with CONNECT / proxy requests for hosts nobody asked to inspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownHosts {
    /// Blind TCP tunnel (plain HTTP: forwarded unchanged).
    Tunnel,
    /// Refuse with 403.
    Deny,
}

impl std::str::FromStr for UnknownHosts {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tunnel" => Ok(Self::Tunnel),
            "deny" => Ok(Self::Deny),
            other => Err(format!("expected \"tunnel\" or \"deny\", got {other:?}")),
        }
    }
}

// ---- raw, as written in the file ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    proxy: RawProxy,
    upstream: RawUpstream,
    tls: RawTls,
    admin: RawAdmin,
    store: RawStore,
    gate: RawGate,
    rules: RawRules,
    egress: RawEgress,
    audit: RawAudit,
    agents: Vec<RawAgent>,
    reviewers: Vec<RawReviewer>,
    credentials: BTreeMap<String, RawCredential>,
    notify: crate::notify::RawNotify,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReviewer {
    name: String,
    token_sha256: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEgress {
    allow: Vec<String>,
    ports: Vec<u16>,
}

impl Default for RawEgress {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            ports: vec![443, 80],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    key_file: Option<PathBuf>,
    origin: String,
    checkpoint_every: u64,
    checkpoint_interval: String,
    allow_sample: f64,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            key_file: None,
            origin: "airlock".into(),
            checkpoint_every: 100,
            checkpoint_interval: "60s".into(),
            allow_sample: 1.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    token_sha256: String,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCredential {
    env: Option<String>,
    file: Option<PathBuf>,
    hosts: Vec<String>,
    header: Option<String>,
    format: Option<String>,
    strip: Vec<String>,
    git_hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProxy {
    listen: String,
    unknown_hosts: UnknownHosts,
    inspect_hosts: Vec<String>,
    max_header_bytes: usize,
    header_read_timeout: String,
    idle_timeout: String,
    shutdown_grace: String,
    leaf_cache_size: usize,
    max_connections: usize,
    allow_anonymous: bool,
    workers: Option<usize>,
}

impl Default for RawProxy {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            unknown_hosts: UnknownHosts::Deny,
            inspect_hosts: Vec::new(),
            max_header_bytes: 64 * 1024,
            header_read_timeout: "10s".into(),
            idle_timeout: "90s".into(),
            shutdown_grace: "30s".into(),
            leaf_cache_size: 1024,
            max_connections: 10_000,
            allow_anonymous: false,
            workers: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    extra_ca_files: Vec<PathBuf>,
    resolve: BTreeMap<String, String>,
    connect_timeout: String,
    pool_idle_timeout: String,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            extra_ca_files: Vec::new(),
            resolve: BTreeMap::new(),
            connect_timeout: "10s".into(),
            pool_idle_timeout: "90s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    ca_dir: PathBuf,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            ca_dir: "certs".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    listen: String,
    token_file: Option<PathBuf>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            token_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    backend: Backend,
    path: PathBuf,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: Backend::Redb,
            path: "data".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawGate {
    review_expiry: String,
    max_body_bytes: usize,
    max_wait: String,
    sweep_interval: String,
    max_result_bytes: usize,
    execution_timeout: String,
}

impl Default for RawGate {
    fn default() -> Self {
        Self {
            review_expiry: "24h".into(),
            max_body_bytes: 1024 * 1024,
            max_wait: "5m".into(),
            sweep_interval: "5s".into(),
            max_result_bytes: 256 * 1024,
            execution_timeout: "120s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRules {
    dir: Option<PathBuf>,
    default_action: Action,
    unclassified_writes: Action,
}

impl Default for RawRules {
    fn default() -> Self {
        Self {
            dir: None,
            default_action: Action::Allow,
            unclassified_writes: Action::Escalate,
        }
    }
}

// ---- checked ----

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from, if any (for messages).
    pub source: Option<PathBuf>,
    pub proxy: ProxyConfig,
    pub upstream: UpstreamConfig,
    pub tls: TlsConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub gate: GateConfig,
    pub rules: RulesConfig,
    pub egress: EgressConfig,
    pub audit: AuditConfig,
    pub agents: Vec<AgentConfig>,
    pub reviewers: Vec<ReviewerConfig>,
    pub credentials: Vec<CredentialConfig>,
    /// `[notify]`: where escalations are announced (default: nowhere).
    pub notify: crate::notify::NotifyConfig,
}

/// A person who may decide reviews; the token is kept only as a SHA-256 digest.
#[derive(Debug, Clone)]
pub struct ReviewerConfig {
    pub name: String,
    pub token_sha256: [u8; 32],
    pub groups: Vec<String>,
}

/// Destinations agents may reach beyond the public internet, and the allowed ports.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub allow_nets: Vec<ipnet::IpNet>,
    pub allow_hosts: Vec<String>,
    pub ports: Vec<u16>,
}

/// The tamper-evident audit log.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Ed25519 checkpoint signing key (created 0600 on first run); `None`: see [`Config::audit_key_file`].
    pub key_file: Option<PathBuf>,
    /// Names this log in signed checkpoints.
    pub origin: String,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    /// Fraction (0.0-1.0) of allowed requests to catalog hosts that are recorded. Escalations,
    /// blocks, soft gates, review transitions and executions are always recorded.
    pub allow_sample: f64,
}

/// One agent allowed to use the proxy. Its token is kept only as a SHA-256 digest.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    pub token_sha256: [u8; 32],
    /// Services (rules/credential service names) it may reach; empty: no service limit.
    pub services: Vec<String>,
    /// Extra hosts it may reach; with `services` empty and this empty, any host.
    pub hosts: Vec<String>,
    /// The person responsible for it (reviewer policies use this).
    pub owner: Option<String>,
}

/// Where a service's real credential comes from (never from the agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// A provider credential Airlock injects for a service's hosts.
#[derive(Debug, Clone)]
pub struct CredentialConfig {
    pub service: String,
    pub source: SecretSource,
    pub hosts: Vec<String>,
    pub header: http::HeaderName,
    /// Header value with `{token}` where the secret goes.
    pub format: String,
    /// Agent headers removed on these hosts, beyond the built-in credential headers.
    pub strip: Vec<http::HeaderName>,
    /// Git smart-HTTP hosts: they get `Authorization: Basic base64("x-access-token:" + token)`
    /// (what git hosting accepts for a token) instead of `header`/`format`.
    pub git_hosts: Vec<String>,
}

/// Git hosts a known service's credential applies to when config names none.
pub fn default_git_hosts(service: &str) -> &'static [&'static str] {
    match service {
        "github" => &["github.com"],
        _ => &[],
    }
}

/// Hosts a known service's credential applies to when config names none.
pub fn default_service_hosts(service: &str) -> &'static [&'static str] {
    match service {
        "github" => &["api.github.com", "uploads.github.com"],
        "stripe" => &["api.stripe.com", "files.stripe.com"],
        _ => &[],
    }
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub unknown_hosts: UnknownHosts,
    /// Hosts intercepted in addition to those the rules catalog names (lower-case).
    pub inspect_hosts: Vec<String>,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub leaf_cache_size: NonZeroUsize,
    pub max_connections: usize,
    /// Accept agents without `Proxy-Authorization` (local development only).
    pub allow_anonymous: bool,
    /// Connection runtimes, one thread each (`proxy::workers`); 0: the caller's runtime.
    pub workers: usize,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub extra_ca_files: Vec<PathBuf>,
    /// Host (lower-case) -> address dialled instead of DNS.
    pub resolve: BTreeMap<String, SocketAddr>,
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub ca_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Where the admin bearer token lives (created 0600 on first run). Default `<store.path>/admin-token`.
    pub token_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: Backend,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct GateConfig {
    pub review_expiry: Duration,
    /// Largest request body a gated call may have (it is buffered and stored); larger: 413.
    pub max_body_bytes: usize,
    /// Ceiling on `Airlock-Wait` and `?wait=`.
    pub max_wait: Duration,
    pub sweep_interval: Duration,
    /// Upstream response body kept on an executed review.
    pub max_result_bytes: usize,
    /// Longest an approved request may take upstream; past it the outcome is `outcome_unknown`.
    pub execution_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// `None`: the catalog compiled into the binary (`rules/*.toml` at build time).
    pub dir: Option<PathBuf>,
    /// Verdict for inspected hosts that no service in the catalog names.
    pub default_action: Action,
    /// Verdict for a write to a catalog host that no rule classifies (escalate, block or
    /// allow; default escalate: the closed world).
    pub unclassified_writes: Action,
}

impl Config {
    /// The audit signing key: `audit.key_file`, else `<tls.ca_dir>/audit-key.pem`.
    pub fn audit_key_file(&self) -> PathBuf {
        self.audit
            .key_file
            .clone()
            .unwrap_or_else(|| self.tls.ca_dir.join("audit-key.pem"))
    }

    /// The one-click link signing key: `<store.path>/link-key` (created 0600 on first run).
    pub fn link_key_file(&self) -> PathBuf {
        self.store.path.join("link-key")
    }

    /// Finds and loads the config: explicit path, else `$AIRLOCK_CONFIG`, else `./airlock.toml`
    /// if present, else built-in defaults.
    pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(p) = explicit {
            return Self::load(p);
        }
        if let Some(p) = std::env::var_os(CONFIG_ENV) {
            return Self::load(Path::new(&p));
        }
        let local = Path::new(DEFAULT_FILE);
        if local.exists() {
            return Self::load(local);
        }
        Self::from_toml("<defaults>", "").map(|mut c| {
            c.source = None;
            c
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut c = Self::from_toml(&path.display().to_string(), &text)?;
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    /// Parses and checks TOML text; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| crate::text_pos::line_col(text, s.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                file: file.to_string(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        check(file, raw)
    }
}

/// The worker count when `proxy.workers` is unset: one per core this process may run on.
pub fn auto_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Upper bound on `proxy.workers` (threads are not free; more than the cores only costs).
const MAX_WORKERS: usize = 1024;

fn check(file: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        file: file.to_string(),
        field: field.to_string(),
        message,
    };
    let addr = |field: &str, v: &str| {
        v.parse::<SocketAddr>()
            .map_err(|_| invalid(field, format!("{v:?} is not an IP:port socket address")))
    };
    let dur = |field: &str, v: &str| {
        humantime::parse_duration(v)
            .map_err(|e| invalid(field, format!("{v:?} is not a duration like \"10s\": {e}")))
    };
    let p = raw.proxy;
    if p.max_header_bytes < 8192 {
        return Err(invalid(
            "proxy.max_header_bytes",
            "must be at least 8192".into(),
        ));
    }
    let workers = match p.workers {
        None => auto_workers(),
        Some(n) if n <= MAX_WORKERS => n,
        Some(n) => {
            return Err(invalid(
                "proxy.workers",
                format!("{n} is more than {MAX_WORKERS}; leave it unset for one per core"),
            ))
        }
    };
    let unclassified_writes = match raw.rules.unclassified_writes {
        Action::Notify => {
            return Err(invalid(
                "rules.unclassified_writes",
                "must be \"escalate\", \"block\" or \"allow\" (a soft gate would forward what no rule understands)".into(),
            ))
        }
        a => a,
    };
    let leaf_cache_size = NonZeroUsize::new(p.leaf_cache_size)
        .ok_or_else(|| invalid("proxy.leaf_cache_size", "must be at least 1".into()))?;
    let mut inspect_hosts = Vec::new();
    for h in &p.inspect_hosts {
        inspect_hosts.push(
            normalize_host(h).ok_or_else(|| {
                invalid("proxy.inspect_hosts", format!("{h:?} is not a host name"))
            })?,
        );
    }
    let proxy = ProxyConfig {
        listen: addr("proxy.listen", &p.listen)?,
        unknown_hosts: p.unknown_hosts,
        inspect_hosts,
        max_header_bytes: p.max_header_bytes,
        header_read_timeout: dur("proxy.header_read_timeout", &p.header_read_timeout)?,
        idle_timeout: dur("proxy.idle_timeout", &p.idle_timeout)?,
        shutdown_grace: dur("proxy.shutdown_grace", &p.shutdown_grace)?,
        leaf_cache_size,
        max_connections: p.max_connections.max(1),
        allow_anonymous: p.allow_anonymous,
        workers,
    };
    let u = raw.upstream;
    let mut resolve = BTreeMap::new();
    for (host, target) in &u.resolve {
        let h = normalize_host(host)
            .ok_or_else(|| invalid("upstream.resolve", format!("{host:?} is not a host name")))?;
        resolve.insert(h, addr(&format!("upstream.resolve.{host}"), target)?);
    }
    let upstream = UpstreamConfig {
        extra_ca_files: u.extra_ca_files,
        resolve,
        connect_timeout: dur("upstream.connect_timeout", &u.connect_timeout)?,
        pool_idle_timeout: dur("upstream.pool_idle_timeout", &u.pool_idle_timeout)?,
    };
    let store = StoreConfig {
        backend: raw.store.backend,
        path: raw.store.path,
    };
    let admin = AdminConfig {
        listen: addr("admin.listen", &raw.admin.listen)?,
        token_file: raw
            .admin
            .token_file
            .unwrap_or_else(|| store.path.join("admin-token")),
    };
    if admin.listen == proxy.listen && admin.listen.port() != 0 {
        return Err(invalid(
            "admin.listen",
            "must differ from proxy.listen".into(),
        ));
    }
    let g = raw.gate;
    let gate = GateConfig {
        review_expiry: dur("gate.review_expiry", &g.review_expiry)?,
        max_body_bytes: g.max_body_bytes,
        max_wait: dur("gate.max_wait", &g.max_wait)?,
        sweep_interval: dur("gate.sweep_interval", &g.sweep_interval)?,
        max_result_bytes: g.max_result_bytes,
        execution_timeout: dur("gate.execution_timeout", &g.execution_timeout)?,
    };
    if gate.sweep_interval.is_zero() {
        return Err(invalid("gate.sweep_interval", "must be above zero".into()));
    }
    if gate.execution_timeout.is_zero() {
        return Err(invalid(
            "gate.execution_timeout",
            "must be above zero".into(),
        ));
    }
    let egress = check_egress(&raw.egress).map_err(|m| invalid("egress", m))?;
    let a = &raw.audit;
    if !(0.0..=1.0).contains(&a.allow_sample) {
        return Err(invalid(
            "audit.allow_sample",
            "must be between 0.0 and 1.0".into(),
        ));
    }
    if a.origin.is_empty() || a.origin.contains('\n') {
        return Err(invalid("audit.origin", "must be one non-empty line".into()));
    }
    let audit = AuditConfig {
        key_file: a.key_file.clone(),
        origin: a.origin.clone(),
        checkpoint_every: a.checkpoint_every,
        checkpoint_interval: dur("audit.checkpoint_interval", &a.checkpoint_interval)?,
        allow_sample: a.allow_sample,
    };
    let agents = check_agents(&raw.agents).map_err(|m| invalid("agents", m))?;
    let reviewers = check_reviewers(&raw.reviewers).map_err(|m| invalid("reviewers", m))?;
    let credentials = check_credentials(&raw.credentials).map_err(|m| invalid("credentials", m))?;
    let notify =
        crate::notify::config::check(raw.notify).map_err(|e| invalid(&e.field, e.message))?;
    for (i, ch) in notify.channels.iter().enumerate() {
        if let Some(r) = &ch.reviewer {
            if !reviewers.iter().any(|c| &c.name == r) {
                return Err(invalid(
                    &format!("notify.channels[{i}].reviewer"),
                    format!("{r:?} is not a configured [[reviewers]] name"),
                ));
            }
        }
    }
    Ok(Config {
        notify,
        source: None,
        egress,
        audit,
        agents,
        reviewers,
        credentials,
        proxy,
        upstream,
        tls: TlsConfig {
            ca_dir: raw.tls.ca_dir,
        },
        admin,
        store,
        gate,
        rules: RulesConfig {
            dir: raw.rules.dir,
            default_action: raw.rules.default_action,
            unclassified_writes,
        },
    })
}

fn check_egress(raw: &RawEgress) -> Result<EgressConfig, String> {
    let mut allow_nets = Vec::new();
    let mut allow_hosts = Vec::new();
    for a in &raw.allow {
        if let Ok(net) = a.parse::<ipnet::IpNet>() {
            allow_nets.push(net);
        } else if let Ok(ip) = a.parse::<std::net::IpAddr>() {
            allow_nets.push(ipnet::IpNet::from(ip));
        } else {
            allow_hosts.push(
                normalize_host(a)
                    .ok_or_else(|| format!("allow: {a:?} is neither a CIDR, an IP nor a host"))?,
            );
        }
    }
    if raw.ports.is_empty() || raw.ports.contains(&0) {
        return Err("ports: list at least one port, none of them 0".into());
    }
    Ok(EgressConfig {
        allow_nets,
        allow_hosts,
        ports: raw.ports.clone(),
    })
}

/// Agent and reviewer names: 1-64 of letters, digits, '-', '_', '.'.
fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn digest_hex(what: &str, name: &str, hex_text: &str) -> Result<[u8; 32], String> {
    hex::decode(hex_text)
        .ok()
        .and_then(|d| <[u8; 32]>::try_from(d).ok())
        .ok_or_else(|| {
            format!(
                "{what} {name:?}: token_sha256 must be 64 hex digits (use `airlock {what}s add`)"
            )
        })
}

fn check_reviewers(raw: &[RawReviewer]) -> Result<Vec<ReviewerConfig>, String> {
    let mut out: Vec<ReviewerConfig> = Vec::new();
    for r in raw {
        if !name_ok(&r.name) || r.name == "admin" {
            return Err(format!(
                "reviewer name {:?} must be 1-64 characters of letters, digits, '-', '_', '.' (and not \"admin\")",
                r.name
            ));
        }
        if out.iter().any(|o| o.name == r.name) {
            return Err(format!("reviewer {:?} is listed twice", r.name));
        }
        out.push(ReviewerConfig {
            name: r.name.clone(),
            token_sha256: digest_hex("reviewer", &r.name, &r.token_sha256)?,
            groups: r.groups.clone(),
        });
    }
    Ok(out)
}

fn check_agents(raw: &[RawAgent]) -> Result<Vec<AgentConfig>, String> {
    let mut out: Vec<AgentConfig> = Vec::new();
    for a in raw {
        if !name_ok(&a.name) {
            return Err(format!(
                "agent name {:?} must be 1-64 characters of letters, digits, '-', '_', '.'",
                a.name
            ));
        }
        if out.iter().any(|o| o.name == a.name) {
            return Err(format!("agent {:?} is listed twice", a.name));
        }
        let digest = digest_hex("agent", &a.name, &a.token_sha256)?;
        let mut hosts = Vec::new();
        for h in &a.hosts {
            hosts.push(
                normalize_host(h)
                    .ok_or_else(|| format!("agent {:?}: {h:?} is not a host", a.name))?,
            );
        }
        out.push(AgentConfig {
            name: a.name.clone(),
            token_sha256: digest,
            services: a.services.clone(),
            hosts,
            owner: a.owner.clone(),
        });
    }
    Ok(out)
}

fn check_credentials(
    raw: &BTreeMap<String, RawCredential>,
) -> Result<Vec<CredentialConfig>, String> {
    let mut out = Vec::new();
    for (service, c) in raw {
        let source = match (&c.env, &c.file) {
            (Some(e), None) if !e.is_empty() => SecretSource::Env(e.clone()),
            (None, Some(f)) => SecretSource::File(f.clone()),
            _ => {
                return Err(format!(
                    "{service}: set exactly one of env = \"VAR\" or file = \"path\""
                ))
            }
        };
        let mut hosts = Vec::new();
        for h in &c.hosts {
            hosts.push(normalize_host(h).ok_or_else(|| format!("{service}: {h:?} is not a host"))?);
        }
        if hosts.is_empty() {
            hosts = default_service_hosts(service)
                .iter()
                .map(|h| h.to_string())
                .collect();
        }
        if hosts.is_empty() {
            return Err(format!(
                "{service}: hosts = [...] is required (Airlock knows defaults only for github and stripe)"
            ));
        }
        let header_name = c.header.as_deref().unwrap_or("authorization");
        let header = http::HeaderName::from_bytes(header_name.as_bytes())
            .map_err(|_| format!("{service}: header {header_name:?} is not a header name"))?;
        let format = c.format.clone().unwrap_or_else(|| "Bearer {token}".into());
        if !format.contains("{token}") {
            return Err(format!("{service}: format must contain {{token}}"));
        }
        let mut strip = Vec::new();
        for h in &c.strip {
            strip.push(
                http::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("{service}: strip: {h:?} is not a header name"))?,
            );
        }
        let git_hosts = match &c.git_hosts {
            None => default_git_hosts(service)
                .iter()
                .map(|h| h.to_string())
                .collect(),
            Some(list) => list
                .iter()
                .map(|h| {
                    normalize_host(h)
                        .ok_or_else(|| format!("{service}: git_hosts: {h:?} is not a host"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if let Some(h) = git_hosts.iter().find(|h| hosts.contains(h)) {
            return Err(format!("{service}: {h} is in both hosts and git_hosts"));
        }
        out.push(CredentialConfig {
            service: service.clone(),
            source,
            hosts,
            header,
            format,
            strip,
            git_hosts,
        });
    }
    Ok(out)
}

/// Lower-cases a host name and drops one trailing dot; `None` if empty or it has a port/slash.
pub fn normalize_host(h: &str) -> Option<String> {
    let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    if h.is_empty() || h.contains(['/', ' ', '@']) || (h.contains(':') && !h.starts_with('[')) {
        return None;
    }
    Some(h)
}

/// Parses a `HOST=IP:PORT` resolve override from the command line.
pub fn parse_resolve_flag(s: &str) -> Result<(String, SocketAddr), String> {
    let (host, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected HOST=IP:PORT"))?;
    let host = normalize_host(host).ok_or_else(|| format!("{s:?}: bad host name"))?;
    let addr = addr
        .parse()
        .map_err(|_| format!("{s:?}: {addr:?} is not an IP:port address"))?;
    Ok((host, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("t.toml", "").expect("defaults");
        assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.proxy.unknown_hosts, UnknownHosts::Deny);
        assert_eq!(c.gate.review_expiry, Duration::from_secs(86_400));
        assert_eq!(c.proxy.workers, auto_workers());
        let inline = Config::from_toml("t.toml", "[proxy]\nworkers = 0\n").expect("0 is valid");
        assert_eq!(inline.proxy.workers, 0);
        assert_eq!(c.rules.unclassified_writes, Action::Escalate);
        for (text, want) in [("allow", Action::Allow), ("block", Action::Block)] {
            let toml = format!("[rules]\nunclassified_writes = \"{text}\"\n");
            let c = Config::from_toml("t.toml", &toml).expect("valid");
            assert_eq!(c.rules.unclassified_writes, want);
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            (
                "[proxy]\nlisten = \"x\"\n",
                "t.toml: proxy.listen: \"x\" is not",
            ),
            ("[proxy]\nunknown_hosts = \"open\"\n", "t.toml:2:17:"),
            (
                "\n\n[proxy]\nlisen = \"1.2.3.4:1\"\n",
                "t.toml:4:1: unknown field `lisen`",
            ),
            ("[gate]\nreview_expiry = \"soon\"\n", "gate.review_expiry"),
            (
                "[upstream.resolve]\n\"a.b\" = \"nope\"\n",
                "upstream.resolve.a.b",
            ),
            ("[proxy\n", "t.toml:1:"),
            (
                "[proxy]\nworkers = 5000\n",
                "t.toml: proxy.workers: 5000 is more than 1024",
            ),
            ("[proxy]\nworkers = -1\n", "t.toml:2:11:"),
            (
                "[rules]\nunclassified_writes = \"notify\"\n",
                "t.toml: rules.unclassified_writes: must be \"escalate\", \"block\" or \"allow\"",
            ),
            (
                "[rules]\nunclassified_writes = \"forward\"\n",
                "t.toml:2:23:",
            ),
        ];
        for (text, want) in cases {
            let err = Config::from_toml("t.toml", text)
                .expect_err(text)
                .to_string();
            assert!(
                err.starts_with(want) || err.contains(want),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn credential_git_hosts() {
        // (credentials table, git_hosts it gives, or the error's words)
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            ("[credentials.github]\nenv = \"T\"\n", Ok(&["github.com"])),
            ("[credentials.github]\nenv = \"T\"\ngit_hosts = []\n", Ok(&[])),
            (
                "[credentials.gitea]\nenv = \"T\"\nhosts = [\"api.gitea.test\"]\ngit_hosts = [\"Gitea.test.\"]\n",
                Ok(&["gitea.test"]),
            ),
            ("[credentials.stripe]\nenv = \"T\"\n", Ok(&[])),
            (
                "[credentials.github]\nenv = \"T\"\ngit_hosts = [\"api.github.com\"]\n",
                Err("both hosts and git_hosts"),
            ),
            (
                "[credentials.github]\nenv = \"T\"\ngit_hosts = [\"a/b\"]\n",
                Err("git_hosts: \"a/b\" is not a host"),
            ),
        ];
        for (text, want) in cases {
            match (Config::from_toml("t.toml", text), want) {
                (Ok(c), Ok(hosts)) => assert_eq!(c.credentials[0].git_hosts, *hosts, "{text}"),
                (Err(e), Err(words)) => assert!(e.to_string().contains(words), "{text}: {e}"),
                (got, _) => panic!(
                    "{text}: {:?}",
                    got.map(|c| c.credentials[0].git_hosts.clone())
                ),
            }
        }
    }

    #[test]
    fn resolve_flag() {
        assert_eq!(
            parse_resolve_flag("API.GitHub.com.=127.0.0.1:9443").expect("ok"),
            (
                "api.github.com".to_string(),
                "127.0.0.1:9443".parse().expect("addr")
            )
        );
        assert!(parse_resolve_flag("nohost").is_err());
        assert!(parse_resolve_flag("a=b").is_err());
    }
}
