//! `[store]` and `[admin]`: where durable state lives, and the admin listener and its token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{normalize_host, ConfigError, Ctx};
use crate::store::Backend;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub(super) backend: Backend,
    pub(super) path: PathBuf,
    pub(super) retention: String,
    pub(super) url: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: Backend::Redb,
            path: "data".into(),
            retention: "90d".into(),
            url: None,
            ca_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    pub(super) listen: String,
    pub(super) token_file: Option<PathBuf>,
    pub(super) metrics_token_file: Option<PathBuf>,
    pub(super) socket: Option<PathBuf>,
    pub(super) public_hosts: Vec<String>,
    pub(super) may_approve: bool,
    pub(super) max_connections: usize,
    pub(super) per_ip_connections: usize,
    pub(super) header_read_timeout: String,
    pub(super) body_read_timeout: String,
    pub(super) unauthenticated_rate: u32,
    pub(super) unauthenticated_burst: u32,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            token_file: None,
            metrics_token_file: None,
            socket: None,
            public_hosts: Vec::new(),
            may_approve: false,
            max_connections: 256,
            per_ip_connections: 32,
            header_read_timeout: "10s".into(),
            body_read_timeout: "10s".into(),
            unauthenticated_rate: 10,
            unauthenticated_burst: 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: Backend,
    pub path: PathBuf,
    /// Finished reviews older than this are removed from the review store (their audit
    /// entries stay in the chain). `None` (`retention = "forever"`): kept.
    pub retention: Option<Duration>,
    /// `backend = "postgres"`: the database (`store.url`, else `AIRLOCK_DATABASE_URL`), with
    /// `store.ca_file` (the CA that signed the server's certificate, for `sslmode=require`)
    /// added as libpq's `sslrootcert`.
    pub url: Option<DatabaseUrl>,
    /// The config file itself holds a database password (`store.url` with one).
    pub password_in_file: bool,
}

/// A PostgreSQL connection URL. It may carry a password, so it never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl([redacted])")
    }
}

pub(super) fn check_store(raw: RawStore, cx: &Ctx) -> Result<StoreConfig, ConfigError> {
    let retention = match raw.retention.trim() {
        "forever" => None,
        other => {
            let d = cx.dur("store.retention", other)?;
            if d < Duration::from_secs(3600) {
                return Err(cx.invalid(
                    "store.retention",
                    "must be at least \"1h\" (or \"forever\")".into(),
                ));
            }
            Some(d)
        }
    };
    let password_in_file = raw.url.as_deref().is_some_and(has_password);
    let url = match (raw.backend, raw.url) {
        (Backend::Postgres, Some(u)) => Some(u),
        (Backend::Postgres, None) => std::env::var("AIRLOCK_DATABASE_URL").ok(),
        (_, Some(_)) => {
            return Err(cx.invalid("store.url", "is for backend = \"postgres\" only".into()))
        }
        (_, None) => None,
    };
    if raw.ca_file.is_some() && raw.backend != Backend::Postgres {
        return Err(cx.invalid("store.ca_file", "is for backend = \"postgres\" only".into()));
    }
    let url = match url {
        Some(u) if !u.trim().is_empty() => {
            let u = crate::store::with_ca_file(&u, raw.ca_file.as_deref())
                .map_err(|e| cx.invalid(e.field(), e.to_string()))?;
            Some(DatabaseUrl(u))
        }
        _ if raw.backend == Backend::Postgres => {
            return Err(cx.invalid(
                "store.url",
                "backend = \"postgres\" needs store.url or AIRLOCK_DATABASE_URL (postgres://user@host/db)"
                    .into(),
            ))
        }
        _ => None,
    };
    Ok(StoreConfig {
        backend: raw.backend,
        path: raw.path,
        retention,
        url,
        password_in_file,
    })
}

/// Does the connection string carry a password (`postgres://user:pw@…`, or `password=` in the
/// key=value form)?
fn has_password(url: &str) -> bool {
    let url = url.trim();
    match url.split_once("://") {
        Some((_, rest)) => {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            let query = rest.split_once('?').map_or("", |(_, q)| q);
            authority
                .rsplit_once('@')
                .is_some_and(|(userinfo, _)| userinfo.contains(':'))
                || query
                    .split('&')
                    .any(|kv| kv.to_ascii_lowercase().starts_with("password="))
        }
        None => url
            .split_whitespace()
            .any(|kv| kv.trim_start().to_ascii_lowercase().starts_with("password")),
    }
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// The host name `admin.listen` was written with (`airlock-admin` in `airlock-admin:8081`),
    /// if a name: accepted by the Host check with the listener's port, as clients on that
    /// network call it.
    pub listen_name: Option<String>,
    /// Where the admin bearer token lives (created 0600 on first run). Default `<store.path>/admin-token`.
    pub token_file: PathBuf,
    /// A token that reads `/metrics` and nothing else (created 0600 if absent), for a scraper
    /// that should not hold the admin token. `None`: only the admin token reads metrics.
    pub metrics_token_file: Option<PathBuf>,
    /// The admin API's Unix socket, for the CLI run as Airlock's user (peer credentials checked,
    /// so the token never goes to an impostor on the TCP port): see [`super::Config::admin_socket`].
    pub socket: AdminSocket,
    /// Names under which reviewers reach the admin listener (a reverse proxy, a tunnel): with
    /// the host of `notify.base_url`, never reachable through the proxy.
    pub public_hosts: Vec<String>,
    /// May the admin token approve (and retry, and extend) once `[[reviewers]]` exist? Off by
    /// default: it is an operator credential, not a person. Even on, it counts as one approver
    /// at most and cannot approve a request of an agent that has an owner (unless the rule allows
    /// self-approval): it names no person, so it cannot show it is not that owner.
    pub may_approve: bool,
    /// Connections served at once; beyond it a connection is answered 503 and closed.
    pub max_connections: usize,
    /// Connections served at once from one client address (an IPv6 /64 counts as one).
    pub per_ip_connections: usize,
    /// A request's head must arrive within this (also how long an idle connection is kept).
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this of its head; else 408 and the connection closes.
    pub body_read_timeout: Duration,
    /// Token bucket per client address for requests made without credentials (sign-in, links,
    /// a wrong token): refilled at this many per second, up to `unauthenticated_burst`; 429 beyond.
    pub unauthenticated_rate: u32,
    pub unauthenticated_burst: u32,
}

/// `admin.socket`: `<store.path>/admin.sock` (unset), none (`""`), or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminSocket {
    InStore,
    Off,
    At(PathBuf),
}

/// Ceiling for the admin listener's read timeouts: they bound how long a silent client holds a
/// connection slot.
const MAX_ADMIN_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) fn check_admin(
    raw: RawAdmin,
    store: &StoreConfig,
    cx: &Ctx,
) -> Result<AdminConfig, ConfigError> {
    let mut public_hosts = Vec::new();
    for h in &raw.public_hosts {
        public_hosts.push(normalize_host(h).ok_or_else(|| {
            cx.invalid("admin.public_hosts", format!("{h:?} is not a host name"))
        })?);
    }
    if raw.max_connections == 0 {
        return Err(cx.invalid("admin.max_connections", "must be at least 1".into()));
    }
    if raw.max_connections > super::MAX_CONNECTIONS {
        return Err(cx.invalid(
            "admin.max_connections",
            format!("must be at most {}", super::MAX_CONNECTIONS),
        ));
    }
    if raw.per_ip_connections == 0 || raw.per_ip_connections > raw.max_connections {
        return Err(cx.invalid(
            "admin.per_ip_connections",
            format!(
                "{} must be between 1 and admin.max_connections ({}); set it to max_connections to leave one address unlimited",
                raw.per_ip_connections, raw.max_connections
            ),
        ));
    }
    let timeout = |field: &str, v: &str| {
        let d = cx.dur(field, v)?;
        if d.is_zero() || d > MAX_ADMIN_TIMEOUT {
            return Err(cx.invalid(field, format!("{v:?} must be more than 0 and at most 1h")));
        }
        Ok(d)
    };
    let header_read_timeout = timeout("admin.header_read_timeout", &raw.header_read_timeout)?;
    let body_read_timeout = timeout("admin.body_read_timeout", &raw.body_read_timeout)?;
    if raw.unauthenticated_rate == 0 {
        return Err(cx.invalid(
            "admin.unauthenticated_rate",
            "must be at least 1 (requests per second per client address)".into(),
        ));
    }
    if raw.unauthenticated_burst == 0 {
        return Err(cx.invalid("admin.unauthenticated_burst", "must be at least 1".into()));
    }
    Ok(AdminConfig {
        max_connections: raw.max_connections,
        per_ip_connections: raw.per_ip_connections,
        header_read_timeout,
        body_read_timeout,
        unauthenticated_rate: raw.unauthenticated_rate,
        unauthenticated_burst: raw.unauthenticated_burst,
        public_hosts,
        may_approve: raw.may_approve,
        listen: cx.listen_addr("admin.listen", &raw.listen)?,
        listen_name: super::listen_name(&raw.listen),
        token_file: raw
            .token_file
            .unwrap_or_else(|| store.path.join("admin-token")),
        metrics_token_file: raw.metrics_token_file,
        socket: match raw.socket {
            Some(p) if p.as_os_str().is_empty() => AdminSocket::Off,
            Some(p) => AdminSocket::At(p),
            None => AdminSocket::InStore,
        },
    })
}

#[cfg(test)]
mod tests {
    /// Review of session 23: a password in the config file's `store.url` was not noticed.
    #[test]
    fn a_password_in_the_url_is_noticed() {
        for (url, has) in [
            ("postgres://airlock:pw@db.internal/airlock", true),
            (
                "postgresql://airlock@db.internal/airlock?sslmode=require",
                false,
            ),
            ("postgres://db.internal/airlock?user=a%3Ab", false),
            (
                "postgres://u@db.internal/airlock?sslmode=disable&password=pw",
                true,
            ),
            ("host=db.internal user=airlock password=pw dbname=a", true),
            ("host=db.internal user=airlock dbname=a", false),
        ] {
            assert_eq!(super::has_password(url), has, "{url}");
        }
    }

    use std::time::Duration;

    use crate::config::Config;

    #[test]
    fn postgres_tls_settings_are_checked() {
        let store = |text: &str| Config::from_toml("t.toml", &format!("[store]\n{text}\n"));
        let c = store(
            "backend = \"postgres\"\nurl = \"postgres://u:pw@db.internal/airlock?sslmode=verify-full\"\nca_file = \"/etc/airlock/pg-ca.pem\"",
        )
        .expect("valid");
        let url = c.store.url.expect("url");
        assert_eq!(
            url.expose(),
            "postgres://u:pw@db.internal/airlock?sslmode=verify-full&sslrootcert=%2Fetc%2Fairlock%2Fpg%2Dca%2Epem"
        );
        assert!(!format!("{url:?}").contains("pw"));
        for (text, words) in [
            (
                "url = \"postgres://h/db?sslmode=require\"",
                "t.toml: store.ca_file: store.url has sslmode=require, which needs the CA",
            ),
            (
                "url = \"postgres://h/db?sslmode=prefer\"",
                "t.toml: store.url: sslmode=prefer falls back to clear text",
            ),
            (
                "url = \"host=h dbname=d\"\nca_file = \"/ca.pem\"",
                "t.toml: store.ca_file: is set but store.url does not ask for TLS",
            ),
            (
                "url = \"postgres://h/db?sslmode=require&sslrootcert=/a.pem\"\nca_file = \"/ca.pem\"",
                "store.url: names a CA file (sslrootcert) and so does [store] ca_file",
            ),
            // Parsed as the store parses it: `config check` said OK for these.
            (
                "url = \"postgres://u@[bad/db\"",
                "t.toml: store.url: is not a PostgreSQL connection URL",
            ),
            (
                "url = \"host=h port=x\"",
                "t.toml: store.url: is not a PostgreSQL connection URL",
            ),
        ] {
            let e = store(&format!("backend = \"postgres\"\n{text}"))
                .expect_err(text)
                .to_string();
            assert!(e.contains(words), "{text}: {e}");
        }
        let e = store("ca_file = \"/ca.pem\"")
            .expect_err("redb")
            .to_string();
        assert!(
            e.contains("store.ca_file: is for backend = \"postgres\" only"),
            "{e}"
        );
    }

    #[test]
    fn admin_limits_defaults_and_checks() {
        let c = Config::from_toml("t.toml", "").expect("defaults");
        assert_eq!(c.admin.max_connections, 256);
        assert_eq!(c.admin.per_ip_connections, 32);
        assert_eq!(c.admin.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.admin.body_read_timeout, Duration::from_secs(10));
        assert_eq!(
            (c.admin.unauthenticated_rate, c.admin.unauthenticated_burst),
            (10, 20)
        );
        let c = Config::from_toml(
            "t.toml",
            "[admin]\nmax_connections = 8\nper_ip_connections = 8\nbody_read_timeout = \"1s\"\n",
        )
        .expect("valid");
        assert_eq!(c.admin.per_ip_connections, 8);
        assert_eq!(c.admin.body_read_timeout, Duration::from_secs(1));
        for (text, words) in [
            (
                "max_connections = 0",
                "admin.max_connections: must be at least 1",
            ),
            ("per_ip_connections = 0", "admin.per_ip_connections"),
            (
                "max_connections = 4\nper_ip_connections = 5",
                "between 1 and admin.max_connections (4)",
            ),
            ("header_read_timeout = \"0s\"", "admin.header_read_timeout"),
            ("body_read_timeout = \"soon\"", "admin.body_read_timeout"),
            ("body_read_timeout = \"2h\"", "at most 1h"),
            ("unauthenticated_rate = 0", "admin.unauthenticated_rate"),
            ("unauthenticated_burst = 0", "admin.unauthenticated_burst"),
        ] {
            let e = Config::from_toml("t.toml", &format!("[admin]\n{text}\n"))
                .expect_err(text)
                .to_string();
            assert!(e.contains(words), "{text}: {e}");
        }
    }
}
