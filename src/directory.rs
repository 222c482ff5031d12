//! Agents, reviewers and the shared secrets kept in the store, for Airlock instances that share
//! one database (`[store] backend = "postgres"`): an agent added on one is accepted by all.
//!
//! Records live in [`Tree::Meta`]: `agent/<name>` and `reviewer/<normalized name>` hold JSON of
//! the same fields as `[[agents]]` / `[[reviewers]]` in the config file, token digests only
//! (never a token). They are read with bounded [`Store::range`]s over their prefix. A record that
//! no longer checks is skipped and reported, never fatal: the others stay in force.
//!
//! The one-click link key (`link-key`, 32 random bytes) and the admin token (`admin-token`) are
//! created once, by whichever instance starts first (`insert_new`); the others read them. The
//! admin token is replaced by a rotation ([`rotate_shared_admin_token`]), which every instance
//! follows.
//!
//! Every backend can hold these records, but only `serve` and the CLI on a shared store use
//! them (with redb or sled the CLI cannot open the store while `serve` runs).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{AgentConfig, ReviewerConfig};
use crate::store::{prefix_end, Batch, Store, StoreError, Tree};

/// Key prefix of agent records in [`Tree::Meta`].
pub const AGENT_PREFIX: &str = "agent/";
/// Key prefix of reviewer records in [`Tree::Meta`].
pub const REVIEWER_PREFIX: &str = "reviewer/";
/// [`Tree::Meta`] key of the shared one-click link key (32 raw bytes).
pub const LINK_KEY: &[u8] = b"link-key";
/// [`Tree::Meta`] key of the shared admin token.
pub const ADMIN_TOKEN_KEY: &[u8] = b"admin-token";

/// Records read per [`Store::range`] call.
const PAGE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// An agent as stored (the fields of `[[agents]]`).
#[derive(Debug, Serialize, Deserialize)]
struct AgentRecord {
    name: String,
    token_sha256: String,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    owner: Option<String>,
    /// When the agent was added (RFC 3339); absent on records from before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    added: Option<String>,
}

/// A reviewer as stored (the fields of `[[reviewers]]`).
#[derive(Debug, Serialize, Deserialize)]
struct ReviewerRecord {
    name: String,
    token_sha256: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// What a read of the records found: the ones that check, and why the others were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded<T> {
    pub records: Vec<T>,
    pub invalid: Vec<String>,
}

/// The stored agents and reviewers.
#[derive(Clone)]
pub struct Directory {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Directory(..)")
    }
}

fn agent_key(name: &str) -> Vec<u8> {
    format!("{AGENT_PREFIX}{name}").into_bytes()
}

/// Reviewers are keyed by their normalized name, so two names for one person cannot both be
/// stored.
fn reviewer_key(name: &str) -> Vec<u8> {
    format!("{REVIEWER_PREFIX}{}", crate::person::key(name)).into_bytes()
}

impl Directory {
    pub fn new(store: Arc<dyn Store>) -> Directory {
        Directory { store }
    }

    /// The stored agents, in name order.
    pub fn agents(&self) -> Result<Loaded<AgentConfig>, StoreError> {
        self.read(AGENT_PREFIX, |key, value| {
            let r: AgentRecord = serde_json::from_slice(value).map_err(|e| e.to_string())?;
            if agent_key(&r.name) != key {
                return Err(format!("holds agent {:?}", r.name));
            }
            crate::config::agent_entry(
                &r.name,
                &r.token_sha256,
                &r.services,
                &r.hosts,
                r.owner.as_deref(),
                r.added.as_deref(),
            )
        })
    }

    /// The stored reviewers, in (normalized) name order.
    pub fn reviewers(&self) -> Result<Loaded<ReviewerConfig>, StoreError> {
        self.read(REVIEWER_PREFIX, |key, value| {
            let r: ReviewerRecord = serde_json::from_slice(value).map_err(|e| e.to_string())?;
            if reviewer_key(&r.name) != key {
                return Err(format!("holds reviewer {:?}", r.name));
            }
            crate::config::reviewer_entry(&r.name, &r.token_sha256, &r.groups)
        })
    }

    /// Every record under `prefix`, page by page, checked by `check`.
    fn read<T>(
        &self,
        prefix: &str,
        check: impl Fn(&[u8], &[u8]) -> Result<T, String>,
    ) -> Result<Loaded<T>, StoreError> {
        let end = prefix_end(prefix.as_bytes());
        let mut start = prefix.as_bytes().to_vec();
        let mut out = Loaded {
            records: Vec::new(),
            invalid: Vec::new(),
        };
        loop {
            let rows = self.store.range(Tree::Meta, &start, end.as_deref(), PAGE)?;
            for (key, value) in &rows {
                match check(key, value) {
                    Ok(r) => out.records.push(r),
                    Err(why) => out.invalid.push(format!(
                        "stored record {:?}: {why}",
                        String::from_utf8_lossy(key)
                    )),
                }
            }
            match rows.last() {
                Some((last, _)) if rows.len() == PAGE => {
                    start = last.clone();
                    start.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    /// Stores `agent`; `Ok(false)` if an agent of that name is stored already.
    pub fn add_agent(&self, agent: &AgentConfig) -> Result<bool, DirectoryError> {
        let record = AgentRecord {
            name: agent.name.clone(),
            token_sha256: hex::encode(agent.token_sha256),
            services: agent.services.clone(),
            hosts: agent.hosts.clone(),
            owner: agent.owner.clone(),
            added: agent.added_ms.map(crate::config::format_added),
        };
        // Checked as it will be read back, so nothing unreadable is ever stored.
        crate::config::agent_entry(
            &record.name,
            &record.token_sha256,
            &record.services,
            &record.hosts,
            record.owner.as_deref(),
            record.added.as_deref(),
        )
        .map_err(DirectoryError::Invalid)?;
        self.insert(&agent_key(&agent.name), &record)
    }

    /// Stores `reviewer`; `Ok(false)` if a reviewer of that (normalized) name is stored already.
    pub fn add_reviewer(&self, reviewer: &ReviewerConfig) -> Result<bool, DirectoryError> {
        let record = ReviewerRecord {
            name: reviewer.name.clone(),
            token_sha256: hex::encode(reviewer.token_sha256),
            groups: reviewer.groups.clone(),
        };
        crate::config::reviewer_entry(&record.name, &record.token_sha256, &record.groups)
            .map_err(DirectoryError::Invalid)?;
        self.insert(&reviewer_key(&reviewer.name), &record)
    }

    fn insert(&self, key: &[u8], record: &impl Serialize) -> Result<bool, DirectoryError> {
        let json =
            serde_json::to_vec(record).map_err(|e| DirectoryError::Invalid(e.to_string()))?;
        Ok(self.store.insert_new(Tree::Meta, &[(key, &json)])?)
    }

    /// Removes the stored agent `name`; `Ok(false)` if none is stored.
    pub fn remove_agent(&self, name: &str) -> Result<bool, StoreError> {
        self.remove(&agent_key(name))
    }

    /// Removes the stored reviewer `name` (compared normalized); `Ok(false)` if none is stored.
    pub fn remove_reviewer(&self, name: &str) -> Result<bool, StoreError> {
        self.remove(&reviewer_key(name))
    }

    /// Now on the clock every instance sharing this store is kept near (the database's; this
    /// host's where the store has none): what `airlock agents add` records as `added`, which
    /// reviews' creation times are compared with.
    pub fn now_ms(&self) -> Result<u64, StoreError> {
        match self.store.clock_ms() {
            Some(now) => now,
            None => Ok(crate::wall_clock::now_ms()),
        }
    }

    /// Gives the stored agent `name` a new token digest (its old token stops working on every
    /// instance; its entry, `added` too, is kept); `Ok(false)` if none is stored.
    pub fn set_agent_token(&self, name: &str, digest: &[u8; 32]) -> Result<bool, DirectoryError> {
        self.set_token(
            &agent_key(name),
            &format!("agent {name:?}"),
            |r: &mut AgentRecord| r.token_sha256 = hex::encode(digest),
        )
    }

    /// Gives the stored reviewer `name` the token whose SHA-256 is `digest` (her groups, and
    /// her approvals, which count by name, are kept); `Ok(false)` when none is stored.
    pub fn set_reviewer_token(
        &self,
        name: &str,
        digest: &[u8; 32],
    ) -> Result<bool, DirectoryError> {
        let what = format!("reviewer {name:?}");
        self.set_token(&reviewer_key(name), &what, |r: &mut ReviewerRecord| {
            r.token_sha256 = hex::encode(digest)
        })
    }

    /// Rewrites the record at `key` (`what` names it in errors) with `set` applied.
    fn set_token<R: Serialize + serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &str,
        set: impl Fn(&mut R),
    ) -> Result<bool, DirectoryError> {
        // A record replaced between the read and the write is read again.
        loop {
            let Some(current) = self.store.get(Tree::Meta, key)? else {
                return Ok(false);
            };
            let mut record: R = serde_json::from_slice(&current)
                .map_err(|e| DirectoryError::Invalid(format!("stored {what}: {e}")))?;
            set(&mut record);
            let json =
                serde_json::to_vec(&record).map_err(|e| DirectoryError::Invalid(e.to_string()))?;
            let mut b = Batch::default();
            b.expect(Tree::Meta, key, Some(&current))
                .put(Tree::Meta, key, &json);
            if self.store.apply(b)? {
                return Ok(true);
            }
        }
    }

    fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        // A record replaced between the read and the delete is read again.
        loop {
            let Some(current) = self.store.get(Tree::Meta, key)? else {
                return Ok(false);
            };
            let mut b = Batch::default();
            b.expect(Tree::Meta, key, Some(&current))
                .delete(Tree::Meta, key);
            if self.store.apply(b)? {
                return Ok(true);
            }
        }
    }
}

/// The value at `key`, created as `fresh()` by the first caller (`insert_new`): every caller
/// gets the same bytes, whoever wins a race to create them.
fn create_once(
    store: &dyn Store,
    key: &[u8],
    fresh: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    if let Some(v) = store.get(Tree::Meta, key)? {
        return Ok(v);
    }
    let value = fresh();
    if store.insert_new(Tree::Meta, &[(key, &value)])? {
        return Ok(value);
    }
    store
        .get(Tree::Meta, key)?
        .ok_or_else(|| StoreError::Io(format!("{} vanished", String::from_utf8_lossy(key))))
}

/// The one-click link signing key every instance on this store uses, created on first use.
pub fn shared_link_key(store: &dyn Store) -> Result<[u8; 32], DirectoryError> {
    let bytes = create_once(store, LINK_KEY, || rand::random::<[u8; 32]>().to_vec())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| DirectoryError::Invalid("the stored link key is not 32 bytes".into()))
}

/// The admin token every instance on this store accepts, created on first use (64 hex digits,
/// as a token file holds).
pub fn shared_admin_token(store: &dyn Store) -> Result<String, DirectoryError> {
    let bytes = create_once(store, ADMIN_TOKEN_KEY, || {
        crate::secret_file::random_token().into_bytes()
    })?;
    admin_token_text(bytes)
}

/// The stored admin token (one Meta read); `None` while none is stored.
pub fn stored_admin_token(store: &dyn Store) -> Result<Option<String>, DirectoryError> {
    store
        .get(Tree::Meta, ADMIN_TOKEN_KEY)?
        .map(admin_token_text)
        .transpose()
}

/// Rotations that may lose a race to another before one gives up.
const ROTATE_ATTEMPTS: usize = 8;

/// Replaces the stored admin token with a new random one, compare-and-swap against the value
/// read (two rotations at once both apply, one after the other); returns the new token. Every
/// instance follows it (`server/admin_token.rs`). Refused while none is stored (the first
/// instance to start creates it).
pub fn rotate_shared_admin_token(store: &dyn Store) -> Result<String, DirectoryError> {
    for _ in 0..ROTATE_ATTEMPTS {
        let Some(current) = store.get(Tree::Meta, ADMIN_TOKEN_KEY)? else {
            return Err(DirectoryError::Invalid(
                "no admin token is stored yet (the first airlock serve on this database creates it)"
                    .into(),
            ));
        };
        let token = crate::secret_file::random_token();
        let mut b = Batch::default();
        b.expect(Tree::Meta, ADMIN_TOKEN_KEY, Some(&current)).put(
            Tree::Meta,
            ADMIN_TOKEN_KEY,
            token.as_bytes(),
        );
        if store.apply(b)? {
            return Ok(token);
        }
    }
    Err(DirectoryError::Invalid(
        "the stored admin token kept changing during the rotation; try again".into(),
    ))
}

fn admin_token_text(bytes: Vec<u8>) -> Result<String, DirectoryError> {
    match String::from_utf8(bytes) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => Err(DirectoryError::Invalid(
            "the stored admin token is empty or not text".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("dir");
        let s = crate::store::open(crate::store::Backend::Redb, &dir.path().join("data"))
            .expect("store");
        (dir, s)
    }

    fn agent(name: &str) -> AgentConfig {
        AgentConfig {
            name: name.into(),
            token_sha256: [7; 32],
            services: vec!["github".into()],
            hosts: vec!["example.com".into()],
            owner: Some("alice".into()),
            added_ms: Some(1_750_000_000_123),
        }
    }

    #[test]
    fn agents_round_trip_add_once_and_remove() {
        let (_d, s) = store();
        let d = Directory::new(s.clone());
        assert!(d.add_agent(&agent("bot")).expect("add"));
        assert!(!d.add_agent(&agent("bot")).expect("again"), "added once");
        assert!(d.add_agent(&agent("bot-2")).expect("add"));
        let got = d.agents().expect("read");
        assert_eq!(got.records, vec![agent("bot"), agent("bot-2")]);
        assert!(got.invalid.is_empty());
        let raw = s
            .get(Tree::Meta, b"agent/bot")
            .expect("get")
            .expect("stored");
        assert!(String::from_utf8_lossy(&raw).contains(&hex::encode([7u8; 32])));
        // A new token keeps the entry, `added` too (a rotated agent keeps its reviews).
        assert!(d.set_agent_token("bot", &[9; 32]).expect("rotate"));
        let rotated = d.agents().expect("read").records.remove(0);
        assert_eq!(rotated.token_sha256, [9; 32]);
        assert_eq!(rotated.added_ms, agent("bot").added_ms);
        assert!(d.remove_agent("bot").expect("remove"));
        assert!(!d.remove_agent("bot").expect("gone"));
        assert_eq!(d.agents().expect("read").records, vec![agent("bot-2")]);
        let bad = AgentConfig {
            name: "no spaces".into(),
            ..agent("x")
        };
        assert!(d.add_agent(&bad).is_err(), "checked before it is stored");
    }

    #[test]
    fn reviewers_are_keyed_normalized_and_bad_records_are_skipped() {
        let (_d, s) = store();
        let d = Directory::new(s.clone());
        let alice = ReviewerConfig {
            name: "Alice".into(),
            token_sha256: [1; 32],
            groups: vec!["ops".into()],
        };
        assert!(d.add_reviewer(&alice).expect("add"));
        let other = ReviewerConfig {
            name: "alice".into(),
            ..alice.clone()
        };
        assert!(!d.add_reviewer(&other).expect("same person"));
        s.insert_new(Tree::Meta, &[(b"reviewer/zed", b"not json")])
            .expect("insert");
        s.insert_new(
            Tree::Meta,
            &[(
                b"reviewer/mallory",
                br#"{"name":"bob","token_sha256":"00"}"#,
            )],
        )
        .expect("insert");
        // Keys just outside the prefix are not read.
        s.insert_new(Tree::Meta, &[(b"reviewer.", b"x"), (b"reviewes", b"x")])
            .expect("insert");
        let got = d.reviewers().expect("read");
        assert_eq!(got.records, vec![alice]);
        assert_eq!(got.invalid.len(), 2, "{:?}", got.invalid);
        assert!(d.remove_reviewer("ALICE").expect("remove"));
    }

    #[test]
    fn many_records_are_read_page_by_page() {
        let (_d, s) = store();
        let d = Directory::new(s);
        for i in 0..(PAGE * 2 + 3) {
            assert!(d.add_agent(&agent(&format!("a{i:04}"))).expect("add"));
        }
        assert_eq!(d.agents().expect("read").records.len(), PAGE * 2 + 3);
    }

    #[test]
    fn shared_secrets_are_created_once() {
        let (_d, s) = store();
        let k = shared_link_key(s.as_ref()).expect("key");
        assert_eq!(shared_link_key(s.as_ref()).expect("again"), k);
        let t = shared_admin_token(s.as_ref()).expect("token");
        assert_eq!(t.len(), 64);
        assert_eq!(shared_admin_token(s.as_ref()).expect("again"), t);
    }

    #[test]
    fn a_rotation_replaces_the_stored_admin_token() {
        let (_d, s) = store();
        assert_eq!(stored_admin_token(s.as_ref()).expect("read"), None);
        assert!(
            rotate_shared_admin_token(s.as_ref()).is_err(),
            "none to rotate"
        );
        let old = shared_admin_token(s.as_ref()).expect("token");
        let new = rotate_shared_admin_token(s.as_ref()).expect("rotate");
        assert_ne!(new, old);
        assert_eq!(new.len(), 64);
        assert_eq!(
            stored_admin_token(s.as_ref()).expect("read"),
            Some(new.clone())
        );
        assert_eq!(shared_admin_token(s.as_ref()).expect("again"), new);
    }
}
