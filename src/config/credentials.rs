//! `[credentials.SERVICE]`: the real provider credentials Airlock injects (never the agent's).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::normalize_host;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCredential {
    pub(super) env: Option<String>,
    pub(super) file: Option<PathBuf>,
    pub(super) hosts: Vec<String>,
    pub(super) header: Option<String>,
    pub(super) format: Option<String>,
    pub(super) strip: Vec<String>,
    pub(super) git_hosts: Option<Vec<String>>,
}

pub use crate::secret_file::SecretSource;

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

pub(super) fn check(
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
        // One host, one credential: which of two would be injected must not depend on the
        // order of service names.
        for other in &out {
            let CredentialConfig {
                service: o,
                hosts: oh,
                git_hosts: og,
                ..
            } = other;
            if let Some(h) = hosts
                .iter()
                .chain(&git_hosts)
                .find(|h| oh.contains(h) || og.contains(h))
            {
                return Err(format!(
                    "{service}: {h} is also a host of credentials.{o}; a host takes one credential"
                ));
            }
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
