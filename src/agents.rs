//! Agent identity: who is calling through the proxy. Agents authenticate with
//! `Proxy-Authorization: Basic base64(name:token)`; config keeps only each token's SHA-256.
//! An agent may be limited to services (by rules/credential service name) and hosts.

use std::sync::Arc;

use base64::Engine;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::AgentConfig;

/// Name recorded for requests when `proxy.allow_anonymous = true` and no credentials were sent.
pub const ANONYMOUS: &str = "anonymous";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    pub services: Vec<String>,
    pub hosts: Vec<String>,
    pub owner: Option<String>,
    pub anonymous: bool,
}

impl Agent {
    fn anonymous() -> Self {
        Self {
            name: ANONYMOUS.into(),
            services: Vec::new(),
            hosts: Vec::new(),
            owner: None,
            anonymous: true,
        }
    }

    /// May this agent reach `host`, which belongs to `service` (if any service claims it)?
    pub fn may_reach(&self, host: &str, service: Option<&str>) -> bool {
        if self.services.is_empty() && self.hosts.is_empty() {
            return true;
        }
        self.hosts.iter().any(|h| h == host)
            || service.is_some_and(|s| self.services.iter().any(|a| a == s))
    }
}

/// Why a caller was not accepted (answered with 407).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("proxy authentication required: send Proxy-Authorization: Basic base64(agent:token) (e.g. HTTPS_PROXY=http://AGENT:TOKEN@host:port)")]
    Missing,
    #[error("Proxy-Authorization must be Basic base64(agent:token)")]
    Malformed,
    #[error("unknown agent or wrong token")]
    Rejected,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "proxy_auth_required",
            AuthError::Malformed => "proxy_auth_malformed",
            AuthError::Rejected => "proxy_auth_rejected",
        }
    }
}

/// The configured agents.
#[derive(Debug, Default)]
pub struct Agents {
    list: Vec<AgentConfig>,
    allow_anonymous: bool,
}

impl Agents {
    pub fn new(list: Vec<AgentConfig>, allow_anonymous: bool) -> Self {
        Self {
            list,
            allow_anonymous,
        }
    }

    /// Authenticates a request from its `Proxy-Authorization` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Agent>, AuthError> {
        let mut values = headers.get_all(http::header::PROXY_AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return if self.allow_anonymous {
                Ok(Arc::new(Agent::anonymous()))
            } else {
                Err(AuthError::Missing)
            };
        };
        if values.next().is_some() {
            return Err(AuthError::Malformed);
        }
        let text = value.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, b64) = text.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(AuthError::Malformed);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| AuthError::Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
        let (name, token) = decoded.split_once(':').ok_or(AuthError::Malformed)?;
        let digest = token_digest(token);
        let found = self
            .list
            .iter()
            .find(|a| a.name == name && constant_time_eq(&a.token_sha256, &digest))
            .ok_or(AuthError::Rejected)?;
        Ok(Arc::new(Agent {
            name: found.name.clone(),
            services: found.services.clone(),
            hosts: found.hosts.clone(),
            owner: found.owner.clone(),
            anonymous: false,
        }))
    }
}

/// SHA-256 of an agent token (tokens carry 256 random bits, so a fast hash is enough).
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random agent token: `alk_` + 43 base64url characters (256 bits).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "alk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The `[[agents]]` block `airlock agents add` appends to the config file.
pub fn config_block(
    name: &str,
    digest: &[u8; 32],
    services: &[String],
    owner: Option<&str>,
) -> String {
    let mut s = format!(
        "\n[[agents]]\nname = {}\ntoken_sha256 = \"{}\"\n",
        toml_str(name),
        hex::encode(digest)
    );
    if !services.is_empty() {
        let list: Vec<String> = services.iter().map(|x| toml_str(x)).collect();
        s.push_str(&format!("services = [{}]\n", list.join(", ")));
    }
    if let Some(o) = owner {
        s.push_str(&format!("owner = {}\n", toml_str(o)));
    }
    s
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn agents() -> (Agents, String) {
        let token = generate_token();
        let cfg = AgentConfig {
            name: "bot".into(),
            token_sha256: token_digest(&token),
            services: vec!["github".into()],
            hosts: Vec::new(),
            owner: None,
        };
        (Agents::new(vec![cfg], false), token)
    }

    fn basic(user_pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        );
        h.insert(
            http::header::PROXY_AUTHORIZATION,
            HeaderValue::from_str(&v).expect("header"),
        );
        h
    }

    #[test]
    fn authentication_cases() {
        let (a, token) = agents();
        let ok = a.authenticate(&basic(&format!("bot:{token}"))).expect("ok");
        assert_eq!(ok.name, "bot");
        let cases: Vec<(HeaderMap, AuthError)> = vec![
            (HeaderMap::new(), AuthError::Missing),
            (basic("bot:wrong"), AuthError::Rejected),
            (basic(&format!("other:{token}")), AuthError::Rejected),
            (basic("no-colon"), AuthError::Malformed),
            (
                {
                    let mut h = HeaderMap::new();
                    h.insert(
                        http::header::PROXY_AUTHORIZATION,
                        HeaderValue::from_static("Bearer abc"),
                    );
                    h
                },
                AuthError::Malformed,
            ),
            (
                {
                    let mut h = HeaderMap::new();
                    h.insert(
                        http::header::PROXY_AUTHORIZATION,
                        HeaderValue::from_static("Basic !!!"),
                    );
                    h
                },
                AuthError::Malformed,
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(a.authenticate(&headers).err(), Some(want));
        }
        let anon = Agents::new(Vec::new(), true);
        assert!(
            anon.authenticate(&HeaderMap::new())
                .expect("anon")
                .anonymous
        );
    }

    #[test]
    fn limits() {
        let (a, token) = agents();
        let bot = a.authenticate(&basic(&format!("bot:{token}"))).expect("ok");
        assert!(bot.may_reach("api.github.com", Some("github")));
        assert!(!bot.may_reach("api.stripe.com", Some("stripe")));
        assert!(!bot.may_reach("example.com", None));
    }

    #[test]
    fn block_parses_back() {
        let token = generate_token();
        assert!(token.starts_with("alk_") && token.len() == 47);
        let block = config_block(
            "bot",
            &token_digest(&token),
            &["github".into()],
            Some("alice"),
        );
        let c = crate::config::Config::from_toml("t.toml", &block).expect("parses");
        assert_eq!(c.agents[0].token_sha256, token_digest(&token));
        assert_eq!(c.agents[0].owner.as_deref(), Some("alice"));
        assert!(!block.contains(&token));
    }
}
