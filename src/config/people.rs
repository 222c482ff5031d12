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
    #[serde(default)]
    pub(super) added: Option<String>,
    /// The `agents_file` it was read from; `None`: the config file.
    #[serde(skip)]
    pub(super) from: Option<String>,
}

/// An agent entry that does not check, and the file it came from (`None`: the config file).
#[derive(Debug)]
pub(super) struct AgentsError {
    pub(super) file: Option<String>,
    pub(super) message: String,
}

/// An `agents_file`: `[[agents]]` entries only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAgentsFile {
    agents: Vec<RawAgent>,
}

/// The `[[agents]]` of the agents file at `path`; none while it does not exist.
pub(super) fn read_agents_file(
    path: &std::path::Path,
) -> Result<Vec<RawAgent>, super::ConfigError> {
    let file = path.display().to_string();
    crate::secret_file::check_policy(path).map_err(|message| super::ConfigError::Read {
        file: file.clone(),
        message,
    })?;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(super::ConfigError::Read {
                file,
                message: e.to_string(),
            })
        }
    };
    let parsed: RawAgentsFile = toml::from_str(&text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| crate::text_pos::line_col(&text, s.start))
            .unwrap_or((1, 1));
        super::ConfigError::Parse {
            file: file.clone(),
            line,
            column,
            message: e.message().to_string(),
        }
    })?;
    let mut agents = parsed.agents;
    for a in &mut agents {
        a.from = Some(file.clone());
    }
    Ok(agents)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReviewer {
    pub(super) name: String,
    token_sha256: String,
    #[serde(default)]
    pub(super) groups: Vec<String>,
}

/// One agent allowed to use the proxy. Its token is kept only as a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub name: String,
    pub token_sha256: [u8; 32],
    /// Services (rules/credential service names) it may reach; empty: no service limit.
    pub services: Vec<String>,
    /// Extra hosts it may reach; with `services` empty and this empty, any host.
    pub hosts: Vec<String>,
    /// The person responsible for it (reviewer policies use this).
    pub owner: Option<String>,
    /// When this entry was added (`added`, ms since the epoch; `airlock agents add` writes it,
    /// `rotate` keeps it): reviews created before it were sent by an earlier agent of the same
    /// name, removed since, and are not this one's. `None` (entries from before `added`
    /// existed): every review of the name is its own.
    pub added_ms: Option<u64>,
}

/// A person who may decide reviews; the token is kept only as a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
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
/// are one person listed twice, and are refused. So are two reviewers with one token: it would
/// sign in as the first, and a quorum would count one person as two.
pub(super) fn check_reviewers(raw: &[RawReviewer]) -> Result<Vec<ReviewerConfig>, String> {
    let mut out: Vec<ReviewerConfig> = Vec::new();
    for r in raw {
        let checked = reviewer_entry(&r.name, &r.token_sha256, &r.groups)?;
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
        if let Some(o) = out.iter().find(|o| o.token_sha256 == checked.token_sha256) {
            return Err(format!(
                "reviewers {:?} and {:?} have the same token_sha256: each reviewer needs a token of her own (`airlock reviewers add` makes one)",
                o.name, r.name
            ));
        }
        out.push(checked);
    }
    Ok(out)
}

/// For a reload: `raw` without the entries whose `token_sha256` another entry shares (the token
/// would sign in as the first alone), and what was left out. Refusing the whole list would keep
/// every reviewer in force, a removal made in the same edit too.
pub(super) fn without_shared_tokens(raw: &[RawReviewer]) -> (Vec<RawReviewer>, Option<String>) {
    let key = |r: &RawReviewer| r.token_sha256.trim().to_ascii_lowercase();
    let shared: Vec<&RawReviewer> = raw
        .iter()
        .filter(|r| raw.iter().filter(|o| key(o) == key(r)).count() > 1)
        .collect();
    if shared.is_empty() {
        return (raw.to_vec(), None);
    }
    let names: Vec<&str> = shared.iter().map(|r| r.name.as_str()).collect();
    let kept = raw
        .iter()
        .filter(|r| !shared.iter().any(|o| key(o) == key(r)))
        .cloned()
        .collect();
    (
        kept,
        Some(format!(
            "reviewers {} share a token_sha256; they are left out until each has a token of her own",
            names.join(", ")
        )),
    )
}

/// One reviewer, checked as a `[[reviewers]]` entry is (its name, its digest in hex): for
/// records kept elsewhere (the database, `crate::directory`).
pub fn reviewer_entry(
    name: &str,
    token_sha256: &str,
    groups: &[String],
) -> Result<ReviewerConfig, String> {
    if !name_ok(name) || crate::person::same(name, "admin") {
        return Err(format!(
            "reviewer name {name:?} must be 1-64 characters of letters, digits, '-', '_', '.' (and not \"admin\")"
        ));
    }
    Ok(ReviewerConfig {
        name: name.to_string(),
        token_sha256: digest_hex("reviewer", name, token_sha256)?,
        groups: groups.to_vec(),
    })
}

/// The agents of the config file and its `agents_file`, checked; an error names the file the
/// entry came from.
pub(super) fn check_agents(raw: &[RawAgent]) -> Result<Vec<AgentConfig>, AgentsError> {
    let mut out: Vec<AgentConfig> = Vec::new();
    for a in raw {
        let failed = |message: String| AgentsError {
            file: a.from.clone(),
            message,
        };
        if out.iter().any(|o| o.name == a.name) {
            return Err(failed(format!("agent {:?} is listed twice", a.name)));
        }
        out.push(
            agent_entry(
                &a.name,
                &a.token_sha256,
                &a.services,
                &a.hosts,
                a.owner.as_deref(),
                a.added.as_deref(),
            )
            .map_err(failed)?,
        );
    }
    Ok(out)
}

/// Refuses an agent whose `services` names a service nothing knows (`known`: the rules
/// catalog's services and the credentials'): `"githb"` would admit it nowhere, silently.
/// The catalog is known only where rules are loaded (`config check`, `serve`), so the config's
/// own check cannot run this.
pub fn check_agent_services(agents: &[AgentConfig], known: &[String]) -> Result<(), String> {
    for a in agents {
        if let Some(s) = a.services.iter().find(|s| !known.contains(s)) {
            let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            return Err(format!(
                "agent {:?}: services names {s:?}, which is no service (known: {})",
                a.name,
                names.join(", ")
            ));
        }
    }
    Ok(())
}

/// An agent entry's `added` as written: RFC 3339 in UTC, to the millisecond
/// (`2025-06-01T12:00:00.000Z`).
pub fn format_added(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// An agent entry's `added` (RFC 3339 in UTC, `Z`), as ms since the epoch.
fn parse_added(name: &str, text: &str) -> Result<u64, String> {
    humantime::parse_rfc3339(text.trim())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            format!(
                "agent {name:?}: added must be an RFC 3339 time in UTC such as \"2025-06-01T12:00:00.000Z\" (got {text:?})"
            )
        })
}

/// One agent, checked as an `[[agents]]` entry is (its name, owner, hosts, its digest in
/// hex, `added` in RFC 3339): for records kept elsewhere (the database, `crate::directory`).
pub fn agent_entry(
    name: &str,
    token_sha256: &str,
    services: &[String],
    hosts: &[String],
    owner: Option<&str>,
    added: Option<&str>,
) -> Result<AgentConfig, String> {
    if !name_ok(name) {
        return Err(format!(
            "agent name {name:?} must be 1-64 characters of letters, digits, '-', '_', '.'"
        ));
    }
    if name.eq_ignore_ascii_case("anonymous") {
        // What requests without Proxy-Authorization are called under `allow_anonymous`.
        return Err(format!("agent name {name:?} is reserved"));
    }
    if owner.is_some_and(|o| crate::person::key(o).is_empty()) {
        return Err(format!("agent {name:?}: owner is blank"));
    }
    let digest = digest_hex("agent", name, token_sha256)?;
    let added_ms = added.map(|a| parse_added(name, a)).transpose()?;
    let mut normalized = Vec::new();
    for h in hosts {
        normalized
            .push(normalize_host(h).ok_or_else(|| format!("agent {name:?}: {h:?} is not a host"))?);
    }
    Ok(AgentConfig {
        name: name.to_string(),
        token_sha256: digest,
        services: services.to_vec(),
        hosts: normalized,
        owner: owner.map(str::to_string),
        added_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviewer(name: &str, digest: &str) -> RawReviewer {
        RawReviewer {
            name: name.into(),
            token_sha256: digest.into(),
            groups: Vec::new(),
        }
    }

    /// Left from the nineteenth session: two reviewers with one token were taken (it signed in
    /// as the first, and a quorum counted both).
    #[test]
    fn two_reviewers_with_one_token_are_refused_naming_both() {
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        assert!(check_reviewers(&[reviewer("alice", &a), reviewer("bob", &b)]).is_ok());
        let e = check_reviewers(&[reviewer("alice", &a), reviewer("bob", &a.to_uppercase())])
            .expect_err("one token");
        assert!(
            e.contains("\"alice\" and \"bob\" have the same token_sha256"),
            "{e}"
        );
    }

    /// Left from the nineteenth session: `services = ["githb"]` was taken (the agent could reach
    /// no service, and nothing said why).
    #[test]
    fn an_unknown_service_is_refused_with_the_known_ones() {
        let agent = |services: &[&str]| {
            let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
            agent_entry("bot", &"ab".repeat(32), &services, &[], None, None).expect("agent")
        };
        let known = ["stripe".to_string(), "github".to_string()];
        assert!(check_agent_services(&[agent(&["github"]), agent(&[])], &known).is_ok());
        let e = check_agent_services(&[agent(&["github", "githb"])], &known).expect_err("typo");
        assert!(
            e.contains("agent \"bot\": services names \"githb\"")
                && e.contains("known: github, stripe"),
            "{e}"
        );
    }

    #[test]
    fn added_reads_back_and_a_bad_one_is_refused() {
        let ms = 1_750_000_000_123;
        let text = format_added(ms);
        assert_eq!(text, "2025-06-15T15:06:40.123Z");
        let a = agent_entry("bot", &"ab".repeat(32), &[], &[], None, Some(&text)).expect("ok");
        assert_eq!(a.added_ms, Some(ms));
        let e = agent_entry("bot", &"ab".repeat(32), &[], &[], None, Some("yesterday"))
            .expect_err("not a time");
        assert!(e.contains("added must be an RFC 3339 time"), "{e}");
    }
}
