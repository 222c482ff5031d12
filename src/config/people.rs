//! `[[agents]]` and `[[reviewers]]`: who may use the proxy and who may decide; tokens are kept only as SHA-256 digests.

use serde::Deserialize;

use super::normalize_host;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) name: String,
    token_sha256: String,
    #[serde(default)]
    pub(super) services: Vec<String>,
    #[serde(default)]
    pub(super) hosts: Vec<String>,
    #[serde(default)]
    pub(super) owner: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReviewer {
    pub(super) name: String,
    token_sha256: String,
    #[serde(default)]
    pub(super) groups: Vec<String>,
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

/// A person who may decide reviews; the token is kept only as a SHA-256 digest.
#[derive(Debug, Clone)]
pub struct ReviewerConfig {
    pub name: String,
    pub token_sha256: [u8; 32],
    pub groups: Vec<String>,
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

/// Reviewer names are compared normalized ([`crate::person::key`]): two that normalize alike
/// are one person listed twice, and are refused.
pub(super) fn check_reviewers(raw: &[RawReviewer]) -> Result<Vec<ReviewerConfig>, String> {
    let mut out: Vec<ReviewerConfig> = Vec::new();
    for r in raw {
        if !name_ok(&r.name) || crate::person::same(&r.name, "admin") {
            return Err(format!(
                "reviewer name {:?} must be 1-64 characters of letters, digits, '-', '_', '.' (and not \"admin\")",
                r.name
            ));
        }
        if let Some(o) = out.iter().find(|o| crate::person::same(&o.name, &r.name)) {
            return Err(if o.name == r.name {
                format!("reviewer {:?} is listed twice", r.name)
            } else {
                format!(
                    "reviewers {:?} and {:?} are the same person (names are compared without case)",
                    o.name, r.name
                )
            });
        }
        out.push(ReviewerConfig {
            name: r.name.clone(),
            token_sha256: digest_hex("reviewer", &r.name, &r.token_sha256)?,
            groups: r.groups.clone(),
        });
    }
    Ok(out)
}

pub(super) fn check_agents(raw: &[RawAgent]) -> Result<Vec<AgentConfig>, String> {
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
        if a.owner
            .as_deref()
            .is_some_and(|o| crate::person::key(o).is_empty())
        {
            return Err(format!("agent {:?}: owner is blank", a.name));
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
