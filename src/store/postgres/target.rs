//! Where the PostgreSQL store connects and how: the URL parsed by `tokio-postgres`, except the
//! TLS settings, which are ours. `sslmode` absent or `disable`: plain (a Unix socket, loopback or
//! a private network). `require`, `verify-ca` and `verify-full`: TLS, the server's certificate
//! chain verified against the CA file (`[store] ca_file`, given to the driver as libpq's
//! `sslrootcert`) and its name against the host, always (`verify-full` semantics; there is no
//! unverified mode). `prefer` and `allow`, which fall back to clear text, are refused.
//!
//! The URL may hold a password: nothing here shows it; [`Target::shown`] names host and
//! database only.

use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::{Host, SslMode};

/// The URL parameter naming the CA file (libpq's name for it).
const ROOT_CERT: &str = "sslrootcert";

/// Why a URL or its CA file cannot be used; [`TargetError::field`] names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("is not a PostgreSQL connection URL: {0}")]
    Url(String),
    #[error(
        "sslmode={0} falls back to clear text: choose sslmode=require (TLS verified against \
         store.ca_file) or sslmode=disable (a Unix socket, loopback or a private network)"
    )]
    Fallback(String),
    #[error(
        "store.url has sslmode={0}, which needs the CA that signed the server's certificate: \
         set [store] ca_file = \"/path/ca.pem\""
    )]
    NoCa(String),
    #[error(
        "is set but store.url does not ask for TLS: add sslmode=require to it (or remove ca_file)"
    )]
    CaWithoutTls,
    #[error("names a CA file ({ROOT_CERT}) and so does [store] ca_file: keep one")]
    TwoCas,
    #[error("{path}: {message}")]
    CaFile { path: String, message: String },
}

impl TargetError {
    /// The setting to change: `store.url` or `store.ca_file`.
    pub fn field(&self) -> &'static str {
        match self {
            TargetError::Url(_) | TargetError::Fallback(_) | TargetError::TwoCas => "store.url",
            TargetError::NoCa(_) | TargetError::CaWithoutTls | TargetError::CaFile { .. } => {
                "store.ca_file"
            }
        }
    }
}

/// How the connections are secured.
#[derive(Clone)]
pub enum Tls {
    Plain,
    Verified(tokio_postgres_rustls::MakeRustlsConnect),
}

/// A parsed connection target.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: Tls,
    /// Host, port and database, for messages: never the password.
    pub shown: String,
}

impl Target {
    /// Parses `url` (a `postgres://` URL or key=value string) and loads its CA file.
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let (rest, mode, ca) = take_tls_params(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| TargetError::Url(super::explain(&e)))?;
        let tls = match check_modes(mode.as_deref(), ca.is_some())? {
            false => {
                if mode.is_none() && !local_only(&config) {
                    tracing::warn!(
                        database = %describe(&config),
                        "connections to the database are not encrypted: the admin token, the link key and held requests (their bodies included) would cross the network in clear. Set sslmode=verify-full with store.ca_file, or sslmode=disable to say clear text is meant"
                    );
                }
                config.ssl_mode(SslMode::Disable);
                Tls::Plain
            }
            true => {
                config.ssl_mode(SslMode::Require);
                let ca = ca.ok_or(TargetError::CaWithoutTls)?;
                Tls::Verified(connector(Path::new(&ca))?)
            }
        };
        let shown = describe(&config);
        Ok(Target { config, tls, shown })
    }
}

/// Does `config` name only this machine (a Unix socket, `localhost`, a loopback address)?
/// Clear text to anything else crosses a network.
fn local_only(config: &tokio_postgres::Config) -> bool {
    use tokio_postgres::config::Host;
    let loopback = |h: &str| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let hosts = config.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => loopback(name),
        Host::Unix(_) => true,
    });
    hosts && config.get_hostaddrs().iter().all(|ip| ip.is_loopback())
}

/// Whether `mode` asks for TLS; refuses the clear-text fallbacks and TLS without a CA file
/// (and a CA file without TLS, which would suggest a protection that is not there).
fn check_modes(mode: Option<&str>, has_ca: bool) -> Result<bool, TargetError> {
    let tls = match mode {
        None | Some("disable") => false,
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(m @ ("prefer" | "allow")) => return Err(TargetError::Fallback(m.into())),
        Some(other) => {
            return Err(TargetError::Url(format!(
                "unknown sslmode {other:?} (disable, require, verify-ca or verify-full)"
            )))
        }
    };
    match (tls, has_ca) {
        (true, false) => Err(TargetError::NoCa(mode.unwrap_or_default().into())),
        (false, true) => Err(TargetError::CaWithoutTls),
        _ => Ok(tls),
    }
}

/// Checks `url` with `ca_file` as `[store]` would use them, for the config check (the URL parsed
/// as [`Target::parse`] parses it, so `config check` refuses what `serve` would); the URL the
/// store is then opened with (the CA file added as `sslrootcert`).
pub fn with_ca_file(url: &str, ca_file: Option<&Path>) -> Result<String, TargetError> {
    let (rest, mode, ca) = take_tls_params(url)?;
    rest.parse::<tokio_postgres::Config>()
        .map_err(|e| TargetError::Url(super::explain(&e)))?;
    if ca.is_some() && ca_file.is_some() {
        return Err(TargetError::TwoCas);
    }
    check_modes(mode.as_deref(), ca.is_some() || ca_file.is_some())?;
    let Some(path) = ca_file else {
        return Ok(url.to_string());
    };
    let path = path.to_str().ok_or_else(|| TargetError::CaFile {
        path: path.display().to_string(),
        message: "the path is not UTF-8".into(),
    })?;
    Ok(if is_uri(url) {
        let value = percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC);
        let joint = if query_start(url).is_some() { '&' } else { '?' };
        format!("{url}{joint}{ROOT_CERT}={value}")
    } else {
        let quoted = path.replace('\\', "\\\\").replace('\'', "\\'");
        format!("{url} {ROOT_CERT}='{quoted}'")
    })
}

/// A verifying TLS connector trusting the certificates of the PEM file at `path` only.
fn connector(path: &Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, TargetError> {
    let fail = |message: String| TargetError::CaFile {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no certificates found".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| fail(format!("unusable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn is_uri(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Where a URI's query begins (its `?`), read as `tokio-postgres` reads it: after the
/// credentials, which end at the first `@`.
fn query_start(url: &str) -> Option<usize> {
    let after_creds = url.find('@').map_or(0, |i| i + 1);
    url[after_creds..].find('?').map(|i| after_creds + i)
}

/// `url` without its `sslmode` and `sslrootcert` parameters, and their values.
type Taken = (String, Option<String>, Option<String>);

fn take_tls_params(url: &str) -> Result<Taken, TargetError> {
    let (mut mode, mut ca) = (None, None);
    let mut keep = |key: &str, value: String| -> bool {
        match key {
            "sslmode" => mode = Some(value),
            ROOT_CERT => ca = Some(value),
            _ => return true,
        }
        false
    };
    let rest = if is_uri(url) {
        match query_start(url) {
            None => url.to_string(),
            Some(q) => {
                let mut kept = Vec::new();
                for pair in url[q + 1..].split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let decode = |s: &str| {
                        percent_encoding::percent_decode_str(s)
                            .decode_utf8()
                            .map(|s| s.into_owned())
                            .map_err(|e| TargetError::Url(format!("parameter {k:?}: {e}")))
                    };
                    if keep(&decode(k)?, decode(v)?) {
                        kept.push(pair);
                    }
                }
                match kept.is_empty() {
                    true => url[..q].to_string(),
                    false => format!("{}?{}", &url[..q], kept.join("&")),
                }
            }
        }
    } else {
        let mut rest = String::with_capacity(url.len());
        for (key, value, text) in key_values(url)? {
            if keep(key, value) {
                rest.push_str(text);
                rest.push(' ');
            }
        }
        rest
    };
    Ok((rest, mode, ca))
}

/// The `key = value` pairs of a libpq key=value string (values unquoted and unescaped), each
/// with its text; read as `tokio-postgres` reads them.
fn key_values(s: &str) -> Result<Vec<(&str, String, &str)>, TargetError> {
    let bad = |why: &str| TargetError::Url(why.into());
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    loop {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = it.peek() else {
            return Ok(out);
        };
        while it
            .next_if(|(_, c)| !c.is_whitespace() && *c != '=')
            .is_some()
        {}
        let key_end = it.peek().map_or(s.len(), |(i, _)| *i);
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if it.next_if(|(_, c)| *c == '=').is_none() {
            return Err(bad("expected `=` after a parameter name"));
        }
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let quoted = it.next_if(|(_, c)| *c == '\'').is_some();
        loop {
            match it.peek().copied() {
                None if quoted => return Err(bad("unterminated quoted parameter value")),
                None => break,
                Some((_, '\'')) if quoted => {
                    it.next();
                    break;
                }
                Some((_, c)) if !quoted && c.is_whitespace() => break,
                Some((_, c)) => {
                    it.next();
                    if c == '\\' {
                        if let Some((_, escaped)) = it.next() {
                            value.push(escaped);
                        }
                    } else {
                        value.push(c);
                    }
                }
            }
        }
        if value.is_empty() && !quoted {
            return Err(bad("a parameter has no value"));
        }
        let end = it.peek().map_or(s.len(), |(i, _)| *i);
        out.push((&s[start..key_end], value, &s[start..end]));
    }
}

/// Where `config` points, without credentials.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_file_of(url: &str) -> Option<PathBuf> {
        take_tls_params(url)
            .ok()
            .and_then(|(_, _, ca)| ca.map(PathBuf::from))
    }

    /// Review of session 23: clear text to a database on another host was silent.
    #[test]
    fn only_this_machine_is_local() {
        let local = |url: &str| local_only(&url.parse().expect("url"));
        assert!(local("postgres://u@localhost/db"));
        assert!(local("postgres://u@127.0.0.1:5432/db"));
        assert!(local("postgres://u@[::1]/db"));
        assert!(local("host=/run/postgresql dbname=db"));
        assert!(!local("postgres://u@db.internal/db"));
        assert!(!local("postgres://u@10.0.0.5/db"));
        assert!(!local("host=localhost,db.internal dbname=db"));
        assert!(!local("host=localhost hostaddr=10.0.0.5 dbname=db"));
    }

    #[test]
    fn tls_parameters_are_taken_out_of_both_forms() {
        let (rest, mode, ca) = take_tls_params(
            "postgres://u:p@h:5/db?sslmode=require&application_name=a&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .expect("uri");
        assert_eq!(rest, "postgres://u:p@h:5/db?application_name=a");
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(ca.as_deref(), Some("/tmp/ca.pem"));
        let (rest, mode, ca) = take_tls_params("postgres://h/db?sslmode=disable").expect("uri");
        assert_eq!(
            (rest.as_str(), mode.as_deref(), ca),
            ("postgres://h/db", Some("disable"), None)
        );
        let (rest, mode, ca) = take_tls_params(
            "host=h  sslmode = 'verify-full' dbname=d sslrootcert='/a b/c\\'s.pem'",
        )
        .expect("key=value");
        assert_eq!(rest.trim(), "host=h dbname=d");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(ca.as_deref(), Some("/a b/c's.pem"));
        assert!(take_tls_params("host=h sslmode").is_err());
        assert!(take_tls_params("host='h").is_err());
    }

    #[test]
    fn modes_are_plain_or_verified_never_a_fallback() {
        for (url, words) in [
            (
                "postgres://h/db?sslmode=prefer",
                "sslmode=prefer falls back",
            ),
            ("host=h sslmode=allow", "sslmode=allow"),
            ("postgres://h/db?sslmode=require", "ca_file"),
            ("postgres://h/db?sslmode=verify-full", "ca_file"),
            ("postgres://h/db?sslmode=bogus", "unknown sslmode"),
            ("postgres://h/db?sslrootcert=%2Fx", "does not ask for TLS"),
            (
                "postgres://h/db?sslmode=require&sslrootcert=%2Fnonexistent",
                "/nonexistent: cannot read",
            ),
        ] {
            let e = Target::parse(url)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(words), "{url}: {e}");
        }
        let t = Target::parse("postgres://u:secret@h:6/db").expect("plain");
        assert!(matches!(t.tls, Tls::Plain));
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
        assert_eq!(t.shown, "postgres://h:6/db");
        assert!(!t.shown.contains("secret"));
    }

    #[test]
    fn the_ca_file_joins_the_url() {
        let p = Path::new("/etc/x y/ca.pem");
        let u = with_ca_file("postgres://h/db?sslmode=require", Some(p)).expect("uri");
        assert_eq!(ca_file_of(&u).as_deref(), Some(p));
        let u = with_ca_file("host=h sslmode=require", Some(p)).expect("kv");
        assert_eq!(ca_file_of(&u).as_deref(), Some(p));
        assert!(with_ca_file("postgres://h/db", Some(p)).is_err());
        assert!(with_ca_file("postgres://h/db?sslmode=require", None).is_err());
        assert_eq!(
            with_ca_file("postgres://h/db", None).expect("plain"),
            "postgres://h/db"
        );
    }

    /// Left from the nineteenth session: `config check` said OK for URLs `serve` refused.
    #[test]
    fn the_config_check_refuses_what_the_store_cannot_parse() {
        for url in [
            "postgres://u@[bad/db",
            "host=h port=x",
            "postgres://h:99999/db",
        ] {
            let served = Target::parse(url).err().map(|e| e.to_string());
            let checked = with_ca_file(url, None).err().map(|e| e.to_string());
            assert!(checked.is_some(), "{url}: config check took it");
            assert_eq!(checked, served, "{url}");
            assert!(
                checked
                    .unwrap_or_default()
                    .contains("is not a PostgreSQL connection URL"),
                "{url}"
            );
        }
    }
}
