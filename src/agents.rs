//! Agent identity: who is calling through the proxy. Agents authenticate with
//! `Proxy-Authorization: Basic base64(name:token)`; config keeps only each token's SHA-256.
//! An agent may be limited to services (by rules/credential service name) and hosts.
//!
//! The set in force is swapped whole ([`Agents::replace`]) when the agents are reloaded (SIGHUP,
//! or another instance changed the ones kept in a shared database). A removed agent's token is
//! refused at once, and so are the next requests on connections it opened before
//! ([`Agents::still_admitted`], one atomic load while nothing was removed); a blind tunnel, whose
//! requests Airlock cannot see, is closed ([`Agents::until_removed`]).
//!
//! An agent is its entry, not only its name: an entry carries when it was added
//! (`AgentConfig::added_ms`), each review records the `added` of the entry that sent it, and a
//! review recording another (or, recording none, created before it) was sent by an earlier
//! agent of the same name, removed since ([`same_entry`], [`Agent::sent`],
//! [`Agents::sender_in_force`]). `airlock agents
//! rotate` keeps the entry (and its reviews); remove and add makes a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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
    /// When its entry was added (ms since the epoch); `None`: an entry from before `added`.
    pub added_ms: Option<u64>,
    /// The digest its token matched, and the generation of the set it was found in.
    token_sha256: [u8; 32],
    generation: u64,
}

impl Agent {
    fn anonymous() -> Self {
        Self {
            name: ANONYMOUS.into(),
            services: Vec::new(),
            hosts: Vec::new(),
            owner: None,
            anonymous: true,
            added_ms: None,
            token_sha256: [0; 32],
            generation: 0,
        }
    }

    /// Is `config` still this agent, with the same token and limits?
    fn is(&self, config: &AgentConfig) -> bool {
        config.name == self.name
            && crate::secret_file::constant_time_eq(&config.token_sha256, &self.token_sha256)
            && config.services == self.services
            && config.hosts == self.hosts
            && config.owner == self.owner
            && config.added_ms == self.added_ms
    }

    /// Did this agent send a review recorded under `agent` (`None`: anonymous), created at
    /// `created_at_ms` by the entry added at `entry_added_ms` (what the review recorded)? Not if
    /// another entry of the same name, removed since, sent it ([`same_entry`]).
    pub fn sent(
        &self,
        agent: Option<&str>,
        created_at_ms: u64,
        entry_added_ms: Option<u64>,
    ) -> bool {
        agent.unwrap_or(ANONYMOUS) == self.name
            && same_entry(created_at_ms, entry_added_ms, self.added_ms)
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

/// Was a review created at `created_at_ms`, which recorded the `added` of the entry that sent
/// it (`recorded`: `None` on reviews from before, or sent by an entry without one), sent by the
/// entry in force, added at `added_ms`? Compared exactly when recorded: `added` may come from
/// the database's clock or another host's, reviews from the instance's, and a few seconds'
/// difference must neither disown a new agent's reviews nor give it the last ones of the agent
/// removed before it. Otherwise by time: created before the entry was added, another's.
pub fn same_entry(created_at_ms: u64, recorded: Option<u64>, added_ms: Option<u64>) -> bool {
    match recorded {
        Some(stamp) => added_ms == Some(stamp),
        None => added_ms.is_none_or(|added| created_at_ms >= added),
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

/// The agents in force, by name.
type AgentSet = HashMap<String, AgentConfig>;

/// What [`Agents::replace`] changed (names only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentsChange {
    /// Agents that were not in force before.
    pub added: Vec<String>,
    /// Agents no longer in force, or whose token or limits changed: their earlier
    /// authentication no longer counts.
    pub removed: Vec<String>,
}

impl AgentsChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The agents in force, swappable while requests are served.
#[derive(Debug, Default)]
pub struct Agents {
    set: RwLock<Arc<AgentSet>>,
    /// Bumped after every swap that removed or changed an agent.
    generation: AtomicU64,
    /// Told the new generation after each such swap (blind tunnels wait on it).
    removals: tokio::sync::watch::Sender<u64>,
    allow_anonymous: bool,
}

fn to_set(list: Vec<AgentConfig>) -> AgentSet {
    list.into_iter().map(|a| (a.name.clone(), a)).collect()
}

impl Agents {
    pub fn new(list: Vec<AgentConfig>, allow_anonymous: bool) -> Self {
        Self {
            set: RwLock::new(Arc::new(to_set(list))),
            generation: AtomicU64::new(0),
            removals: tokio::sync::watch::Sender::new(0),
            allow_anonymous,
        }
    }

    /// Runs `f` on the set in force, under the read lock (held only for `f`).
    fn with_set<T>(&self, f: impl FnOnce(&AgentSet) -> T) -> T {
        // A swap is one plain assignment: a poisoned lock still holds a whole set.
        match self.set.read() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Is `name` an agent in force (or the anonymous caller, where anonymous agents are
    /// allowed)? A review of an agent that is not was sent by one since removed.
    pub fn knows(&self, name: &str) -> bool {
        (name == ANONYMOUS && self.allow_anonymous) || self.with_set(|s| s.contains_key(name))
    }

    /// Is the agent in force under `name` the one that sent a review recorded under it,
    /// created at `created_at_ms` by the entry added at `entry_added_ms`? Not when no agent of
    /// that name is in force (removed since), nor when the one in force is another entry
    /// ([`same_entry`]: removed, and another added under the same name).
    pub fn sender_in_force(
        &self,
        name: &str,
        created_at_ms: u64,
        entry_added_ms: Option<u64>,
    ) -> bool {
        (name == ANONYMOUS && self.allow_anonymous)
            || self.with_set(|s| {
                s.get(name)
                    .is_some_and(|a| same_entry(created_at_ms, entry_added_ms, a.added_ms))
            })
    }

    /// The agents in force, by name.
    pub fn current(&self) -> Vec<AgentConfig> {
        let mut list: Vec<AgentConfig> = self.with_set(|s| s.values().cloned().collect());
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Swaps in `list` (names must be unique; a later duplicate replaces an earlier one).
    pub fn replace(&self, list: Vec<AgentConfig>) -> AgentsChange {
        let fresh = Arc::new(to_set(list));
        let old = match self.set.write() {
            Ok(mut s) => std::mem::replace(&mut *s, fresh.clone()),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), fresh.clone()),
        };
        let mut change = AgentsChange::default();
        for (name, was) in old.iter() {
            if fresh.get(name) != Some(was) {
                change.removed.push(name.clone());
            }
        }
        for (name, now) in fresh.iter() {
            if old.get(name) != Some(now) {
                change.added.push(name.clone());
            }
        }
        change.added.sort();
        change.removed.sort();
        if !change.removed.is_empty() {
            // After the swap: an agent authenticated under the old generation is checked again.
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            self.removals.send_replace(generation);
        }
        change
    }

    /// Is `agent` (authenticated earlier, e.g. by a CONNECT) still in force with the same token
    /// and limits? One atomic load while no agent was removed or changed since.
    pub fn still_admitted(&self, agent: &Agent) -> bool {
        if agent.anonymous || self.generation.load(Ordering::Acquire) == agent.generation {
            return true;
        }
        self.with_set(|set| set.get(&agent.name).is_some_and(|c| agent.is(c)))
    }

    /// Returns once `agent` is no longer in force (removed, or its token or limits changed):
    /// for a connection whose requests Airlock cannot see (a blind tunnel). Never returns for
    /// an agent that stays.
    pub async fn until_removed(&self, agent: &Agent) {
        // Subscribed before the check, so a swap in between is still seen.
        let mut swaps = self.removals.subscribe();
        loop {
            if !self.still_admitted(agent) {
                return;
            }
            if swaps.changed().await.is_err() {
                return std::future::pending().await;
            }
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
        // The generation before the set: a swap in between makes the agent look older than
        // it is (checked again later), never newer.
        let generation = self.generation.load(Ordering::Acquire);
        let agent = self.with_set(|set| {
            let found = set
                .get(name)
                .filter(|a| crate::secret_file::constant_time_eq(&a.token_sha256, &digest))?;
            Some(Agent {
                name: found.name.clone(),
                services: found.services.clone(),
                hosts: found.hosts.clone(),
                owner: found.owner.clone(),
                anonymous: false,
                added_ms: found.added_ms,
                token_sha256: found.token_sha256,
                generation,
            })
        });
        agent.map(Arc::new).ok_or(AuthError::Rejected)
    }
}

/// SHA-256 of an agent token (tokens carry 256 random bits, so a fast hash is enough).
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random agent token: `alk_` + 43 base64url characters (256 bits).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "alk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The `[[agents]]` block `airlock agents add` appends to the config file, `added` now (this
/// host's wall clock, the one reviews are stamped with).
pub fn config_block(
    name: &str,
    digest: &[u8; 32],
    services: &[String],
    owner: Option<&str>,
) -> String {
    let now = crate::wall_clock::now_ms();
    config_block_added(name, digest, services, owner, now)
}

/// [`config_block`] with `added` at `added_ms`.
pub fn config_block_added(
    name: &str,
    digest: &[u8; 32],
    services: &[String],
    owner: Option<&str>,
    added_ms: u64,
) -> String {
    let mut s = format!(
        "\n[[agents]]\nname = {}\ntoken_sha256 = \"{}\"\nadded = {}\n",
        toml_str(name),
        hex::encode(digest),
        toml_str(&crate::config::format_added(added_ms))
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
            added_ms: None,
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

    #[tokio::test]
    async fn until_removed_returns_once_the_agent_is_gone_and_not_before() {
        let (a, token) = agents();
        let bot = a.authenticate(&basic(&format!("bot:{token}"))).expect("ok");
        let mut waiting = Box::pin(a.until_removed(&bot));
        // An unrelated change wakes it, and it keeps waiting.
        let mut list = a.current();
        list.push(AgentConfig {
            name: "other".into(),
            token_sha256: [7; 32],
            services: Vec::new(),
            hosts: Vec::new(),
            owner: None,
            added_ms: None,
        });
        a.replace(list.clone());
        a.replace(
            a.current()
                .into_iter()
                .filter(|c| c.name == "bot")
                .collect(),
        );
        assert!(
            futures_util::FutureExt::now_or_never(waiting.as_mut()).is_none(),
            "bot is still in force"
        );
        a.replace(Vec::new());
        waiting.await;
    }

    #[test]
    fn a_swap_refuses_removed_agents_at_once_and_keeps_the_others() {
        let (a, token) = agents();
        let header = basic(&format!("bot:{token}"));
        let bot = a.authenticate(&header).expect("ok");
        let other_token = generate_token();
        let other = AgentConfig {
            name: "other".into(),
            token_sha256: token_digest(&other_token),
            services: Vec::new(),
            hosts: Vec::new(),
            owner: None,
            added_ms: None,
        };
        let mut both = a.current();
        both.push(other.clone());
        let change = a.replace(both.clone());
        assert_eq!(change.added, vec!["other".to_string()]);
        assert!(change.removed.is_empty());
        assert!(
            a.still_admitted(&bot),
            "an addition changes nothing for bot"
        );
        let o = a
            .authenticate(&basic(&format!("other:{other_token}")))
            .expect("added agent accepted");
        // bot removed: its token is refused, and so is its earlier authentication.
        let change = a.replace(vec![other.clone()]);
        assert_eq!(change.removed, vec!["bot".to_string()]);
        assert_eq!(a.authenticate(&header).err(), Some(AuthError::Rejected));
        assert!(!a.still_admitted(&bot));
        assert!(a.still_admitted(&o), "other is unchanged");
        // Limits changed under the same token: authenticated again, with the new limits.
        let mut widened = other;
        widened.services = vec!["stripe".into()];
        assert_eq!(a.replace(vec![widened]).removed, vec!["other".to_string()]);
        assert!(!a.still_admitted(&o));
        let o = a
            .authenticate(&basic(&format!("other:{other_token}")))
            .expect("ok");
        assert_eq!(o.services, vec!["stripe".to_string()]);
        assert!(a.still_admitted(&o));
        assert!(
            a.replace(a.current()).is_empty(),
            "the same set changes nothing"
        );
    }

    #[test]
    fn block_parses_back() {
        let token = generate_token();
        assert!(token.starts_with("alk_") && token.len() == 47);
        let block = config_block_added(
            "bot",
            &token_digest(&token),
            &["github".into()],
            Some("alice"),
            1_750_000_000_123,
        );
        let c = crate::config::Config::from_toml("t.toml", &block).expect("parses");
        assert_eq!(c.agents[0].token_sha256, token_digest(&token));
        assert_eq!(c.agents[0].added_ms, Some(1_750_000_000_123));
        assert_eq!(c.agents[0].owner.as_deref(), Some("alice"));
        assert!(!block.contains(&token));
    }

    #[test]
    fn a_review_from_before_the_entry_was_added_is_not_the_agents() {
        let token = generate_token();
        let cfg = AgentConfig {
            name: "bot".into(),
            token_sha256: token_digest(&token),
            services: Vec::new(),
            hosts: Vec::new(),
            owner: None,
            added_ms: Some(1_000),
        };
        let a = Agents::new(vec![cfg.clone()], false);
        let bot = a.authenticate(&basic(&format!("bot:{token}"))).expect("ok");
        assert!(
            !bot.sent(Some("bot"), 999, None),
            "before the entry: another agent's"
        );
        assert!(bot.sent(Some("bot"), 1_000, None) && bot.sent(Some("bot"), 5_000, None));
        assert!(!bot.sent(Some("other"), 5_000, None) && !bot.sent(None, 5_000, None));
        assert!(!a.sender_in_force("bot", 999, None));
        assert!(a.sender_in_force("bot", 1_000, None));
        assert!(!a.sender_in_force("other", 1_000, None));
        // Review of session 23: `added` and a review's creation come from different clocks.
        // A review that recorded its entry's `added` is compared by it, not by time: the new
        // entry's review stamped a moment "before" it (a clock behind) is its own, and the
        // removed entry's review stamped "after" it (a clock ahead) is not.
        assert!(bot.sent(Some("bot"), 990, Some(1_000)));
        assert!(a.sender_in_force("bot", 990, Some(1_000)));
        assert!(!bot.sent(Some("bot"), 1_010, Some(400)));
        assert!(!a.sender_in_force("bot", 1_010, Some(400)));
        // An entry without `added` owns every review of its name, as before.
        let old = AgentConfig {
            added_ms: None,
            ..cfg
        };
        let a = Agents::new(vec![old], false);
        let bot = a.authenticate(&basic(&format!("bot:{token}"))).expect("ok");
        assert!(bot.sent(Some("bot"), 0, None) && a.sender_in_force("bot", 0, None));
        assert!(
            !bot.sent(Some("bot"), 0, Some(5)),
            "a review of an entry with `added`"
        );
    }
}
