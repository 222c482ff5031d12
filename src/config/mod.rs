//! Configuration: one TOML file parsed into raw types, command-line overrides merged into
//! them ([`Overrides`]), then one check into [`Config`], which is never changed afterwards (the
//! shape of ripgrep's `LowArgs -> HiArgs`). Every field has a default, so Airlock runs with no
//! file at all. One file per section holds its raw form, its checked form and the check.

mod audit;
mod credentials;
mod egress;
mod exposure;
mod gate;
mod home;
mod people;
mod proxy;
mod rules;
mod store;
mod upstream;

pub use audit::AuditConfig;
pub use credentials::{default_git_hosts, default_service_hosts, CredentialConfig, SecretSource};
pub use egress::EgressConfig;
pub use exposure::admin_exposure;
pub use gate::GateConfig;
pub use home::{Found, Home, HOME_ENV};
pub use people::{
    agent_entry, check_agent_services, format_added, reviewer_entry, AgentConfig, ReviewerConfig,
};
pub use proxy::{auto_workers, ProxyConfig, UnknownHosts, AGENT_H2_MAX_STREAMS};
pub use rules::RulesConfig;
pub use store::{AdminConfig, AdminSocket, StoreConfig};
pub use upstream::{TlsConfig, UpstreamConfig};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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

// ---- raw, as written in the file ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    /// A TOML file of `[[agents]]` entries read with this one (`agents add` appends there):
    /// agents kept in a writable place while this file stays read-only. Absent: none yet.
    agents_file: Option<PathBuf>,
    proxy: proxy::RawProxy,
    upstream: upstream::RawUpstream,
    tls: upstream::RawTls,
    admin: store::RawAdmin,
    store: store::RawStore,
    gate: gate::RawGate,
    rules: rules::RawRules,
    egress: egress::RawEgress,
    audit: audit::RawAudit,
    agents: Vec<people::RawAgent>,
    reviewers: Vec<people::RawReviewer>,
    credentials: BTreeMap<String, credentials::RawCredential>,
    notify: crate::notify::RawNotify,
}

/// Settings given on the command line (`airlock serve --listen …`). They are merged into the
/// file's raw config before the one check, so a flag is checked exactly like the file's value
/// (`--listen` equal to `admin.listen` is refused, a bad `--inspect-host` names its field).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `IP:port` or `host:port`, as in the file.
    pub proxy_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub resolve: Vec<(String, SocketAddr)>,
    pub upstream_ca: Vec<PathBuf>,
    pub inspect_hosts: Vec<String>,
    pub unknown_hosts: Option<UnknownHosts>,
    pub ca_dir: Option<PathBuf>,
    /// `store.path`; the admin token follows it unless `admin.token_file` is set.
    pub data_dir: Option<PathBuf>,
    pub store: Option<Backend>,
    pub rules_dir: Option<PathBuf>,
}

impl Overrides {
    fn apply(self, raw: &mut RawConfig) {
        if let Some(l) = self.proxy_listen {
            raw.proxy.listen = l;
        }
        if let Some(l) = self.admin_listen {
            raw.admin.listen = l;
        }
        for (host, addr) in self.resolve {
            raw.upstream.resolve.insert(host, addr.to_string());
        }
        raw.upstream.extra_ca_files.extend(self.upstream_ca);
        raw.proxy.inspect_hosts.extend(self.inspect_hosts);
        if let Some(u) = self.unknown_hosts {
            raw.proxy.unknown_hosts = u;
        }
        if let Some(d) = self.ca_dir {
            raw.tls.ca_dir = d;
        }
        if let Some(d) = self.data_dir {
            raw.store.path = d;
        }
        if let Some(b) = self.store {
            raw.store.backend = b;
        }
        if let Some(d) = self.rules_dir {
            raw.rules.dir = Some(d);
        }
    }
}

// ---- checked ----

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from, if any (for messages).
    pub source: Option<PathBuf>,
    /// Where the config was looked for and where relative paths resolve.
    pub home: Home,
    /// `agents_file`: the `[[agents]]` file read with the config (resolved), if set.
    pub agents_file: Option<PathBuf>,
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

impl Config {
    /// The admin socket: `admin.socket`, else `<store.path>/admin.sock`; `None`: TCP only.
    pub fn admin_socket(&self) -> Option<PathBuf> {
        match &self.admin.socket {
            AdminSocket::InStore => Some(self.store.path.join("admin.sock")),
            AdminSocket::Off => None,
            AdminSocket::At(p) => Some(p.clone()),
        }
    }

    /// The audit signing key: `audit.key_file`, else `<tls.ca_dir>/audit-key.pem`.
    pub fn audit_key_file(&self) -> PathBuf {
        self.audit
            .key_file
            .clone()
            .unwrap_or_else(|| self.tls.ca_dir.join("audit-key.pem"))
    }

    /// Where reviewers decide, as (host, port): `admin.public_hosts` (on 443 and 80) and the
    /// host of `notify.base_url` (on its port). The proxy refuses them by name and address.
    pub fn decision_surfaces(&self) -> Vec<(String, u16)> {
        let mut out: Vec<(String, u16)> = Vec::new();
        for h in &self.admin.public_hosts {
            out.push((h.clone(), 443));
            out.push((h.clone(), 80));
        }
        let base = self
            .notify
            .base_url
            .as_deref()
            .and_then(|u| u.parse::<http::Uri>().ok());
        if let Some(uri) = base {
            if let Some(host) = uri.host().and_then(normalize_host) {
                let port = uri
                    .port_u16()
                    .unwrap_or(if uri.scheme_str() == Some("http") {
                        80
                    } else {
                        443
                    });
                out.push((host, port));
            }
        }
        out
    }

    /// The one-click link signing key: `<store.path>/link-key` (created 0600 on first run).
    pub fn link_key_file(&self) -> PathBuf {
        self.store.path.join("link-key")
    }

    /// Finds and loads the config ([`Home::find`]): explicit path (`--config`,
    /// `$AIRLOCK_CONFIG`), else `$AIRLOCK_HOME/airlock.toml`, else `./airlock.toml` if present,
    /// else the XDG config file; none found: built-in defaults. Relative paths resolve against
    /// the home directory. `overrides` (command-line settings) are merged in before the one check.
    pub fn discover(explicit: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let home = Home::find(explicit);
        match home.config_file.clone() {
            Some(path) => {
                if home.found == home::Found::WorkingDir {
                    not_planted(&path)?;
                }
                Self::load_in(&path, home, overrides)
            }
            None => Self::checked("<defaults>", "", overrides, home),
        }
    }
}

/// A config picked up from the working directory (never named by the caller) must be the
/// caller's own and writable by nobody else: it says where the CLI sends tokens and which files
/// `airlock run` hides, and another user could leave one in a shared or project directory.
fn not_planted(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt as _;
    let refuse = |why: String| {
        ConfigError::Read {
        file: path.display().to_string(),
        message: format!(
            "found in the working directory, but {why}: it was not taken (pass `--config {}` to use it anyway)",
            path.display()
        ),
    }
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(format!("cannot stat it: {e}")))?;
    // SAFETY: plain syscall.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(refuse(format!(
            "it belongs to uid {}, not to you (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "others may change it (mode {:o})",
            meta.mode() & 0o777
        )));
    }
    // A checkout makes every file the caller's own, whoever committed it (an agent's branch or
    // pull request): such a file could send the CLI's token to the committer's listener.
    if let Some(tree) = git_work_tree(path) {
        return Err(refuse(format!(
            "it is inside the git work tree {} (a file there may come from anyone's commit, an \
             agent's included)",
            tree.display()
        )));
    }
    Ok(())
}

/// The git work tree `path` lies in (the nearest ancestor holding `.git`), if any.
fn git_work_tree(path: &Path) -> Option<&Path> {
    path.ancestors()
        .skip(1)
        .find(|dir| dir.join(".git").symlink_metadata().is_ok())
}

impl Config {
    /// Loads the config file at `path` (relative paths in it resolve against `$AIRLOCK_HOME`,
    /// else its directory).
    pub fn load(path: &Path, overrides: Overrides) -> Result<Config, ConfigError> {
        Self::load_in(path, Home::find(Some(path)), overrides)
    }

    fn load_in(path: &Path, home: Home, overrides: Overrides) -> Result<Config, ConfigError> {
        crate::secret_file::check_policy(path).map_err(|message| ConfigError::Read {
            file: path.display().to_string(),
            message,
        })?;
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut c = Self::checked(&path.display().to_string(), &text, overrides, home)?;
        c.source = Some(path.to_path_buf());
        c.warn_readable_secrets(path);
        Ok(c)
    }

    /// Warns when the config file, readable by others than Airlock's user, holds a secret of
    /// its own: a database password in `store.url`, a webhook URL (Slack's is a bearer secret).
    fn warn_readable_secrets(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.permissions().mode() & 0o044 == 0 {
            return;
        }
        let mut held = Vec::new();
        if self.store.password_in_file {
            held.push("a database password (store.url)".to_string());
        }
        for (i, ch) in self.notify.channels.iter().enumerate() {
            if matches!(&ch.kind, crate::notify::ChannelKind::Webhook { url, .. } if url.source.is_none())
            {
                held.push(format!("a webhook URL (notify.channels[{i}].url)"));
            }
        }
        if !held.is_empty() {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the config file is readable by other users and holds {}: run `chmod 600` on it (the database URL may also come from AIRLOCK_DATABASE_URL, a webhook URL from url_file or url_env)",
                held.join(" and ")
            );
        }
    }

    /// Only the people of the config file at `path`: its `[[reviewers]]` (checked) and
    /// `[admin] may_approve`. A reload of the reviewers uses this, so that removing a reviewer
    /// takes effect even while another part of the file (say a notify channel still naming her)
    /// no longer checks.
    pub fn load_reviewers(path: &Path) -> Result<(Vec<ReviewerConfig>, bool), ConfigError> {
        // The config file alone: a broken agents file must not stop a reviewer's removal.
        let (file, raw) = Self::load_raw(path, false)?;
        let cx = Ctx { file: &file };
        // Entries sharing a token are left out (logged), not the whole reload refused: a
        // removal in the same edit must still take effect.
        let (listed, shared) = people::without_shared_tokens(&raw.reviewers);
        if let Some(why) = shared {
            tracing::error!(file = %file, "{why}");
        }
        let reviewers = people::check_reviewers(&listed).map_err(|m| cx.invalid("reviewers", m))?;
        Ok((reviewers, raw.admin.may_approve))
    }

    /// Only the `[[agents]]` of the config file at `path` (checked), for a reload of the agents
    /// (SIGHUP), for the same reason as [`Config::load_reviewers`].
    pub fn load_agents(path: &Path) -> Result<Vec<AgentConfig>, ConfigError> {
        let (file, raw) = Self::load_raw(path, true)?;
        let cx = Ctx { file: &file };
        people::check_agents(&raw.agents).map_err(|e| cx.invalid_agents(e))
    }

    /// The file at `path` parsed (its paths resolved, its agents file read if `agents_file`),
    /// not checked; its name for errors.
    fn load_raw(path: &Path, agents_file: bool) -> Result<(String, RawConfig), ConfigError> {
        let file = path.display().to_string();
        crate::secret_file::check_policy(path).map_err(|message| ConfigError::Read {
            file: file.clone(),
            message,
        })?;
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let raw = parse_raw(&file, &text, &Home::find(Some(path)), agents_file)?;
        Ok((file, raw))
    }

    /// Parses and checks TOML text; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Config, ConfigError> {
        Self::checked(file, text, Overrides::default(), Home::default())
    }

    fn checked(
        file: &str,
        text: &str,
        overrides: Overrides,
        home: Home,
    ) -> Result<Config, ConfigError> {
        let mut raw = parse_raw(file, text, &home, true)?;
        overrides.apply(&mut raw);
        let mut c = check(file, raw)?;
        c.home = home;
        Ok(c)
    }
}

/// Parses TOML text, resolves its relative paths against `home` and adds the agents of its
/// `agents_file`.
fn parse_raw(
    file: &str,
    text: &str,
    home: &Home,
    agents_file: bool,
) -> Result<RawConfig, ConfigError> {
    let mut raw: RawConfig = toml::from_str(text).map_err(|e| {
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
    if home.found != Found::Unset {
        resolve_paths(&mut raw, home);
    }
    if let Some(path) = raw.agents_file.as_ref().filter(|_| agents_file) {
        raw.agents.extend(people::read_agents_file(path)?);
    }
    Ok(raw)
}

/// Every path the file names, made absolute under the home directory.
fn resolve_paths(raw: &mut RawConfig, home: &Home) {
    let r = |p: &mut PathBuf| *p = home.resolve(p);
    r(&mut raw.tls.ca_dir);
    r(&mut raw.store.path);
    raw.store.ca_file.as_mut().map(r);
    raw.admin.token_file.as_mut().map(r);
    raw.admin.metrics_token_file.as_mut().map(r);
    raw.admin
        .socket
        .as_mut()
        .filter(|p| !p.as_os_str().is_empty())
        .map(r);
    raw.audit.key_file.as_mut().map(r);
    raw.rules.dir.as_mut().map(r);
    raw.agents_file.as_mut().map(r);
    raw.upstream.extra_ca_files.iter_mut().for_each(r);
    for c in raw.credentials.values_mut() {
        c.file.as_mut().map(r);
    }
    for ch in &mut raw.notify.channels {
        ch.signing_secret_file.as_mut().map(r);
        ch.url_file.as_mut().map(r);
    }
}

/// What every section's check needs: the file name for errors, and the common parsers.
pub(super) struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    pub(super) fn invalid(&self, field: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            field: field.to_string(),
            message,
        }
    }

    /// An `[[agents]]` entry that does not check, named in the file it came from (the
    /// config file or its `agents_file`).
    fn invalid_agents(&self, e: people::AgentsError) -> ConfigError {
        ConfigError::Invalid {
            file: e.file.unwrap_or_else(|| self.file.to_string()),
            field: "agents".to_string(),
            message: e.message,
        }
    }

    pub(super) fn addr(&self, field: &str, v: &str) -> Result<SocketAddr, ConfigError> {
        v.parse::<SocketAddr>()
            .map_err(|_| self.invalid(field, format!("{v:?} is not an IP:port socket address")))
    }

    /// A listener's address: `IP:port`, or `name:port` resolved once, here (a container's
    /// network alias, so a listener can sit on one network of several; `localhost`). The first
    /// IPv4 answer is taken, else the first answer.
    pub(super) fn listen_addr(&self, field: &str, v: &str) -> Result<SocketAddr, ConfigError> {
        let (host, port) = match listen_form(v) {
            Some(ListenForm::Ip(addr)) => return Ok(addr),
            Some(ListenForm::Name(host, port)) => (host, port),
            None => {
                return Err(self.invalid(
                    field,
                    format!("{v:?} is not an IP:port or host:port address"),
                ))
            }
        };
        let answers: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .map_err(|e| self.invalid(field, format!("{host:?} does not resolve: {e}")))?
            .collect();
        answers
            .iter()
            .find(|a| a.is_ipv4())
            .or(answers.first())
            .copied()
            .ok_or_else(|| self.invalid(field, format!("{host:?} resolves to no address")))
    }

    /// A duration, at most ten years (a clock reading plus a longer one can overflow and
    /// panic where it is used).
    pub(super) fn dur(&self, field: &str, v: &str) -> Result<Duration, ConfigError> {
        let d = humantime::parse_duration(v).map_err(|e| {
            self.invalid(field, format!("{v:?} is not a duration like \"10s\": {e}"))
        })?;
        if d > MAX_DURATION {
            return Err(self.invalid(field, format!("{v:?} is more than 10 years")));
        }
        Ok(d)
    }

    /// [`Ctx::dur`], above zero (a timeout of zero would fail every connection) and at most a
    /// day.
    pub(super) fn timeout(&self, field: &str, v: &str) -> Result<Duration, ConfigError> {
        let d = self.dur(field, v)?;
        if d.is_zero() {
            return Err(self.invalid(field, "must be above zero".into()));
        }
        if d > MAX_TIMEOUT {
            return Err(self.invalid(field, format!("{v:?} is more than a day")));
        }
        Ok(d)
    }
}

/// The longest duration any setting takes: ten years as `10y` counts them (365.25 days each).
const MAX_DURATION: Duration = Duration::from_secs(315_576_000);
/// The longest timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
/// The most connections a listener's limit may name.
pub(super) const MAX_CONNECTIONS: usize = 1_000_000;

/// The one check: raw (file plus overrides) to [`Config`].
fn check(file: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let cx = Ctx { file };
    let proxy = proxy::check(raw.proxy, &cx)?;
    let upstream = upstream::check(raw.upstream, &cx)?;
    let store = store::check_store(raw.store, &cx)?;
    let admin = store::check_admin(raw.admin, &store, &cx)?;
    if admin.listen == proxy.listen && admin.listen.port() != 0 {
        return Err(cx.invalid("admin.listen", "must differ from proxy.listen".into()));
    }
    let mut gate = gate::check(raw.gate, &cx)?;
    gate.retention = store.retention;
    let rules = rules::check(raw.rules, &cx)?;
    let egress = egress::check(&raw.egress).map_err(|m| cx.invalid("egress", m))?;
    let audit = audit::check(&raw.audit, &cx)?;
    let agents = people::check_agents(&raw.agents).map_err(|e| cx.invalid_agents(e))?;
    let reviewers =
        people::check_reviewers(&raw.reviewers).map_err(|m| cx.invalid("reviewers", m))?;
    let credentials =
        credentials::check(&raw.credentials).map_err(|m| cx.invalid("credentials", m))?;
    let notify =
        crate::notify::config::check(raw.notify).map_err(|e| cx.invalid(&e.field, e.message))?;
    for (i, ch) in notify.channels.iter().enumerate() {
        if let Some(r) = &ch.reviewer {
            if !reviewers.iter().any(|c| crate::person::same(&c.name, r)) {
                return Err(cx.invalid(
                    &format!("notify.channels[{i}].reviewer"),
                    format!("{r:?} is not a configured [[reviewers]] name"),
                ));
            }
        }
    }
    Ok(Config {
        notify,
        source: None,
        home: Home::default(),
        agents_file: raw.agents_file,
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
        rules,
    })
}

/// Lower-cases a host name and drops one trailing dot; `None` if empty or it has a port/slash.
/// A bracketed IPv6 literal (`[2001:db8::5]`, as a URL writes it) comes out bare and canonical,
/// as a proxy target names it, so that it matches.
pub fn normalize_host(h: &str) -> Option<String> {
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| ip.to_string());
    }
    let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    if h.is_empty() || h.contains(['/', ' ', '@', ':', '[', ']']) {
        return None;
    }
    Some(h)
}

/// A listen address as written: an `IP:port`, or a host name and port.
enum ListenForm<'a> {
    Ip(SocketAddr),
    Name(&'a str, u16),
}

fn listen_form(v: &str) -> Option<ListenForm<'_>> {
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Some(ListenForm::Ip(addr));
    }
    let (host, port) = v.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    normalize_host(host).map(|_| ListenForm::Name(host, port))
}

/// The host name of a `name:port` listen address (lowercase), none for an `IP:port`.
pub(super) fn listen_name(v: &str) -> Option<String> {
    match listen_form(v) {
        Some(ListenForm::Name(host, _)) => normalize_host(host),
        _ => None,
    }
}

/// Checks the form of a `--listen`/`--admin-listen` flag, `IP:port` or `host:port` (a name is
/// resolved with the rest of the config, not here).
pub fn parse_listen_flag(s: &str) -> Result<String, String> {
    listen_form(s)
        .map(|_| s.to_string())
        .ok_or_else(|| format!("{s:?}: expected IP:PORT or HOST:PORT"))
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
    /// Review of session 19: refusing two reviewers with one token on a reload kept every
    /// reviewer in force, so a removal made in the same edit did not take effect. The two are
    /// left out; the rest reload.
    #[test]
    fn a_reload_leaves_out_reviewers_sharing_a_token_and_applies_the_rest() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("airlock.toml");
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        std::fs::write(
            &path,
            format!(
                "[[reviewers]]\nname = \"alice\"\ntoken_sha256 = \"{a}\"\n\
                 [[reviewers]]\nname = \"carol\"\ntoken_sha256 = \"{}\"\n\
                 [[reviewers]]\nname = \"bob\"\ntoken_sha256 = \"{b}\"\n",
                a.to_uppercase()
            ),
        )
        .expect("write");
        let (reviewers, _) = Config::load_reviewers(&path).expect("reloads");
        let names: Vec<&str> = reviewers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["bob"]);
        // At a start (and in `config check`) the file is refused.
        let text = std::fs::read_to_string(&path).expect("read");
        let err = Config::from_toml("airlock.toml", &text).expect_err("refused");
        assert!(err.to_string().contains("same token_sha256"), "{err}");
    }

    use super::*;

    /// A config picked up from the working directory that others may change is not taken.
    #[test]
    fn a_working_directory_config_others_may_change_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("airlock.toml");
        std::fs::write(&file, "").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(not_planted(&file).is_ok());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let err = not_planted(&file)
            .expect_err("group/other writable")
            .to_string();
        assert!(
            err.contains("others may change it") && err.contains("--config"),
            "{err}"
        );
    }

    /// Review of session 22: an `airlock.toml` committed to a repository (an agent's branch) is
    /// the reviewer's own file once checked out, so it passed the owner and mode checks, and
    /// `airlock reviews list` run in the checkout sent her token to the `admin.listen` it named.
    /// A working-directory config inside a git work tree is not taken unless named.
    #[test]
    fn a_working_directory_config_inside_a_git_work_tree_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let file = sub.join("airlock.toml");
        std::fs::write(&file, "").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(not_planted(&file).is_ok());
        std::fs::create_dir(dir.path().join(".git")).expect("mkdir .git");
        let err = not_planted(&file).expect_err("in a work tree").to_string();
        assert!(
            err.contains("inside the git work tree") && err.contains("--config"),
            "{err}"
        );
    }
    use crate::rules::Action;

    /// A decision surface written as an IPv6 literal is refused under the name and address a
    /// proxy target carries (bare, canonical), not under its bracketed URL form.
    #[test]
    fn ipv6_decision_surfaces_are_bare_addresses() {
        let c = Config::from_toml(
            "t.toml",
            "[notify]\nbase_url = \"https://[2606:4700:0::1]:8443/\"\n[admin]\npublic_hosts = [\"[2001:DB8::5]\"]\n",
        )
        .expect("valid");
        let s = c.decision_surfaces();
        assert!(s.contains(&("2606:4700::1".to_string(), 8443)), "{s:?}");
        assert!(s.contains(&("2001:db8::5".to_string(), 443)), "{s:?}");
        assert_eq!(normalize_host("[::1"), None);
        assert_eq!(normalize_host("[nope]"), None);
        assert_eq!(normalize_host("Example.COM."), Some("example.com".into()));
    }

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
            (
                "[admin]\nlisten = \"reviewers.invalid:8081\"\n",
                "t.toml: admin.listen: \"reviewers.invalid\" does not resolve",
            ),
            (
                "[admin]\nlisten = \"bad host:8081\"\n",
                "admin.listen: \"bad host:8081\" is not an IP:port or host:port",
            ),
            (
                "[admin]\nlisten = \"localhost:http\"\n",
                "admin.listen: \"localhost:http\" is not",
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
                "[proxy]\nidle_timeout = \"0s\"\n",
                "t.toml: proxy.idle_timeout: must be above zero",
            ),
            (
                "[upstream]\nconnect_timeout = \"0s\"\n",
                "t.toml: upstream.connect_timeout: must be above zero",
            ),
            (
                "[proxy]\nmax_header_bytes = 4294967297\n",
                "t.toml: proxy.max_header_bytes: must be from 8192 to 1048576",
            ),
            (
                "[proxy]\nleaf_cache_size = 100000000\n",
                "t.toml: proxy.leaf_cache_size: must be at most 1000000",
            ),
            (
                "[proxy]\nmax_connections = 0\n",
                "t.toml: proxy.max_connections: must be at least 1",
            ),
            (
                "[proxy]\nmax_unauthenticated_connections = 0\n",
                "t.toml: proxy.max_unauthenticated_connections: must be from 1 to",
            ),
            (
                "[proxy]\nmax_unauthenticated_connections = 8\nunauthenticated_per_address = 9\n",
                "t.toml: proxy.unauthenticated_per_address: must be from 1 to proxy.max_unauthenticated_connections (8)",
            ),
            (
                "[proxy]\nfirst_request_timeout = \"0s\"\n",
                "t.toml: proxy.first_request_timeout: must be above zero",
            ),
            (
                "[proxy]\nlisten = \"0.0.0.0:8080\"\nallow_anonymous = true\n",
                "t.toml: proxy.allow_anonymous: only on a loopback listener",
            ),
            (
                "[gate]\nexecution_timeout = \"10s\"\nexecution_lease = \"10500ms\"\n",
                "t.toml: gate.execution_lease: must be at least 1s longer",
            ),
            (
                "[gate]\nmoney_budget_usd = -5\n",
                "t.toml: gate.money_budget_usd: must be a number of US dollars, 0 or more",
            ),
            (
                "[gate]\nmoney_budget_usd = nan\n",
                "t.toml: gate.money_budget_usd: must be a number of US dollars, 0 or more",
            ),
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
            (
                "[credentials.github]\nenv = \"T\"\n[credentials.mirror]\nenv = \"U\"\nhosts = [\"API.github.com\"]\n",
                Err("mirror: api.github.com is also a host of credentials.github"),
            ),
            (
                "[credentials.gitea]\nenv = \"T\"\nhosts = [\"a.test\"]\ngit_hosts = [\"github.com\"]\n[credentials.github]\nenv = \"U\"\n",
                Err("github: github.com is also a host of credentials.gitea"),
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
    fn command_line_overrides_are_checked_like_the_file() {
        let at = |s: &str| Some(s.to_string());
        let err = |o: Overrides| {
            Config::checked("t.toml", "", o, Home::default())
                .expect_err("invalid")
                .to_string()
        };
        // `serve --listen` on the admin listener's address is refused, as in the file.
        let e = err(Overrides {
            proxy_listen: at("127.0.0.1:8081"),
            ..Default::default()
        });
        assert!(
            e.contains("admin.listen: must differ from proxy.listen"),
            "{e}"
        );
        let e = err(Overrides {
            inspect_hosts: vec!["bad host".into()],
            ..Default::default()
        });
        assert!(e.contains("proxy.inspect_hosts"), "{e}");
        let c = Config::checked(
            "t.toml",
            "",
            Overrides {
                proxy_listen: at("127.0.0.1:9000"),
                data_dir: Some("/srv/airlock".into()),
                ..Default::default()
            },
            Home::default(),
        )
        .expect("valid");
        assert_eq!(c.proxy.listen.port(), 9000);
        // A name is resolved once, at the check: a listener can be bound to one network's
        // address by its alias (docker-compose binds the admin listener this way).
        let named = Config::checked(
            "t.toml",
            "",
            Overrides {
                admin_listen: Some("localhost:0".into()),
                ..Default::default()
            },
            Home::default(),
        )
        .expect("valid");
        assert!(
            named.admin.listen.ip().is_loopback(),
            "{}",
            named.admin.listen
        );
        assert_eq!(
            c.admin.token_file,
            PathBuf::from("/srv/airlock/admin-token")
        );
        // An explicit token file stays where the file put it.
        let c = Config::checked(
            "t.toml",
            "[admin]\ntoken_file = \"/etc/airlock/token\"\n",
            Overrides {
                data_dir: Some("/x".into()),
                ..Default::default()
            },
            Home::default(),
        )
        .expect("valid");
        assert_eq!(c.admin.token_file, PathBuf::from("/etc/airlock/token"));
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
