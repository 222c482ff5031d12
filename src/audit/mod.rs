//! The tamper-evident audit log: an append-only, hash-chained sequence of JSON entries in
//! `Tree::Audit`, with periodic Ed25519-signed checkpoints, JSON Lines export and verification.
//! Format and offline verification: `docs/audit.md`.
//!
//! Secrets: the log stores exactly what callers pass and exports it verbatim. Callers must never
//! pass secrets (API keys, bearer tokens, cookies, request bodies that may hold credentials);
//! log identifiers, hashes and redacted summaries instead.
//!
//! Submodules: `chain` (entry format, hashing, signing text), `key` (signing key file),
//! `anchor` (the file beside the key naming the last checkpoint, against a cut tail),
//! `event` and `policy` (the entries callers append), `verify` (chain/checkpoint verification),
//! `signers` (which key a checkpoint must verify with, across rotations), `rotate` (signing
//! key rotation), `with` (the writes a caller commits with its entry), `archive` (moving the
//! oldest entries to a file: `airlock audit archive`).

mod anchor;
mod archive;
mod chain;
mod event;
mod key;
mod policy;
mod rotate;
mod signers;
mod verify;
mod with;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use ring::signature::Ed25519KeyPair;
use serde_json::{Map, Value};

use crate::store::{for_each_page, Batch, Store, StoreError, Tree};

pub use anchor::{path_for as anchor_path_for, Anchor, RESTORE_IN_PROGRESS_KEY};
pub use archive::{
    ArchiveError, ArchiveFile, ArchivePlan, LogStart, Needed, ARCHIVED_KIND, LOG_START_META_KEY,
};
pub use chain::{canonical_bytes, checkpoint_signing_text, CHECKPOINT_KIND, KEY_ROTATED_KIND};
pub use event::{
    Archive, AuditGap, AuditPath, Decision, Event, ExecutionEnd, GateKind, Outcome,
    RestoreAccepted, Transition,
};
pub use policy::{LoosenedTool, PolicyChange, PolicyResult, PolicySubject, RuleFile, SeqRange};
pub use rotate::{
    finish_interrupted as finish_interrupted_rotation, next_path_for as next_key_path_for,
    retired as retired_keys, RetiredKey, Rotation, RETIRED_META_KEY,
};
pub use signers::TrustedKeys;
pub use verify::{
    verify_lines, verify_lines_with_anchor, verify_lines_with_checkpoint, VerifyError, VerifyReport,
};

use chain::{entry_hash, now_rfc3339_ms, seq_key, GENESIS_PREV, RESERVED_FIELDS};
use with::With;

/// `Tree::Meta` key holding the hex public key that signs this store's checkpoints.
pub const PUBKEY_META_KEY: &[u8] = b"audit-pubkey";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store: {0}")]
    Store(#[from] StoreError),
    #[error("audit seq {0} already exists in the store (another writer?); refusing to overwrite")]
    Conflict(u64),
    #[error("audit signing key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("audit event rejected: {0}")]
    InvalidEvent(String),
    #[error("audit log configuration: {0}")]
    Config(String),
    #[error("audit log is corrupt: {0}")]
    Corrupt(String),
    #[error("audit export I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The store does not hold what the anchor beside the key names, or the anchor is unusable.
    #[error(
        "{0}; if you restored a backup on purpose, run `airlock audit accept-restore` \
         (with Airlock stopped)"
    )]
    Anchor(String),
    /// A checkpoint (and what was to be written with it) was refused: the store names another
    /// signing key than this log's (`airlock audit rotate-key` ran meanwhile).
    #[error(
        "the audit signing key was rotated: the store names {current}, not this instance's \
         {ours}, so nothing was written (a retired key signs no checkpoint); restart this \
         instance with the new key file"
    )]
    KeyRotated { ours: String, current: String },
}

impl AuditError {
    /// The same error for every waiter of a failed group commit.
    fn duplicate(&self) -> AuditError {
        match self {
            AuditError::Store(e) => AuditError::Store(e.clone()),
            AuditError::Conflict(seq) => AuditError::Conflict(*seq),
            AuditError::KeyRotated { ours, current } => AuditError::KeyRotated {
                ours: ours.clone(),
                current: current.clone(),
            },
            other => AuditError::Store(StoreError::Io(other.to_string())),
        }
    }
}

/// When checkpoints are written.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Write a checkpoint once at least this many entries have passed since the last one, after
    /// the group commit that crossed the mark (0: only on `checkpoint()`).
    pub checkpoint_every: u64,
    /// How often the timer (`spawn_checkpoint_timer`) calls `checkpoint()`.
    pub checkpoint_interval: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            checkpoint_every: 100,
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

/// Times one append chains after entries other instances stored first before giving up.
const CATCH_UP_ATTEMPTS: usize = 1000;

/// The chain position; guarded by the log's mutex so seq order equals chain order.
struct Head {
    /// Seq the next entry gets (= entries stored).
    next_seq: u64,
    /// Hex SHA-256 of entry `next_seq - 1` (64 zeros when empty).
    hash_hex: String,
    /// Entries (non-checkpoint or not) written since the last checkpoint.
    since_checkpoint: u64,
}

/// Where the next entry of a run being chained goes: its seq and the previous entry's hash.
struct Tail {
    next_seq: u64,
    prev: String,
}

impl Tail {
    /// Chains one entry into `batch` (with its by-review index key); returns its key and bytes.
    fn chain(
        &mut self,
        kind: &str,
        fields: &Map<String, Value>,
        batch: &mut Batch,
    ) -> ([u8; 8], Vec<u8>) {
        let seq = self.next_seq;
        let added = [
            ("seq", &Value::from(seq)),
            ("prev", &Value::String(std::mem::take(&mut self.prev))),
            ("ts", &Value::String(now_rfc3339_ms())),
            ("kind", &Value::String(kind.to_string())),
        ];
        if let Some(id) = fields.get("review_id").and_then(Value::as_str) {
            let key = match fields.get("joined") == Some(&Value::Bool(true)) {
                true => join_key(id, seq),
                false => review_key(id, seq),
            };
            batch.put(Tree::Index, &key, &[]);
        }
        let bytes = chain::canonical_with(fields, &added);
        self.prev = hex::encode(entry_hash(&bytes));
        self.next_seq += 1;
        let key = seq_key(seq);
        batch
            .expect(Tree::Audit, &key, None)
            .put(Tree::Audit, &key, &bytes);
        (key, bytes)
    }
}

/// What a caller gets if the group writer handed back fewer results than it was given entries
/// (never expected; fail closed rather than panic).
fn no_result() -> AuditError {
    AuditError::Store(StoreError::Io("the audit writer returned no result".into()))
}

/// Most entries one group commit writes in one transaction (a sweep's chunk of expiries fits
/// in one).
const MAX_BATCH: usize = 2048;

/// Most bytes of carried writes ([`With`]: a hold's review record, a transition's old and new
/// record) one group commit writes in one transaction, after at least one entry. A record
/// carries its request body (up to `gate.max_body_bytes`): 2,048 holds of 1 MiB bodies were one
/// transaction of about 3 GB, past PostgreSQL's 1 GiB limit on the values of one statement.
/// 64 MiB, as the store's own group commit (`store/group.rs`): a sweep chunk (16 MiB of
/// records, each expected and written) stays one transaction.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// How many of the queued entries the next transaction takes: at most [`MAX_BATCH`], and no
/// more than [`MAX_BATCH_BYTES`] of carried writes, but at least one.
fn group_size(items: &[Queued]) -> usize {
    let mut bytes = 0usize;
    for (i, item) in items.iter().enumerate().take(MAX_BATCH) {
        bytes = bytes.saturating_add(item.with.as_ref().map_or(0, With::bytes));
        if i > 0 && bytes > MAX_BATCH_BYTES {
            return i;
        }
    }
    items.len().min(MAX_BATCH)
}

/// Entries read per store range by exports and verification.
const EXPORT_PAGE: usize = 10_000;

/// [`Tree::Meta`] key recording that every entry is filed under the by-review index.
/// v2: resends that joined a review (`"joined": true`) are filed apart from its own entries.
const REVIEW_INDEX_BUILT: &[u8] = b"index:audit-by-review:v2";

/// The by-review index key of entry `seq` about review `id`: `a`, the id (length-prefixed),
/// the seq. (The gate's review indexes share [`Tree::Index`] under other first bytes.)
fn review_key(id: &str, seq: u64) -> Vec<u8> {
    index_key(b'a', id, seq)
}

/// The index key of entry `seq`, a `decision` of an identical request that joined review `id`:
/// `J`, the id, the seq. Apart from the review's own entries, which a send reads whole, so an
/// agent's resends cannot crowd them out.
fn join_key(id: &str, seq: u64) -> Vec<u8> {
    index_key(b'J', id, seq)
}

fn index_key(first: u8, id: &str, seq: u64) -> Vec<u8> {
    let mut k = vec![first];
    k.extend_from_slice(&(id.len() as u32).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// An append waiting for the group writer, with the caller's own batch to commit beside it.
struct Queued {
    ticket: u64,
    kind: String,
    fields: Map<String, Value>,
    with: Option<With>,
}

/// What became of the writes an append carried beside its entry ([`AuditLog::append_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beside {
    /// Committed with the entry (also: there were none).
    Applied,
    /// An expectation did not hold: nothing of them was written; the entry was.
    ExpectationFailed,
    /// The store refused the entry with them, then took the entry alone: the entry is durable,
    /// the caller's writes are not.
    StoreFailed(StoreError),
    /// Written with the entry, but the store reported the commit failed (both read back as
    /// written): they may not survive a crash (a flush that failed after the write).
    Unflushed,
}

/// What became of a both-or-neither append ([`AuditLog::append_if`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landed {
    /// The entry and the writes are durable.
    Durable,
    /// Both were written, but the store reported the commit failed (they read back): they may
    /// not survive a crash.
    Unflushed,
    /// An expectation did not hold (the record changed): nothing was written.
    Changed,
}

/// What an append came to: the entry's seq (`None`: not written, as the writes it needed to
/// land with no longer applied), and what became of the writes beside it.
type Written = Result<(Option<u64>, Beside), AuditError>;

/// A stored run of entries: each item's seq (checkpoints may sit between them; `None`: left
/// out) and what became of the writes beside it.
type Stored = (Vec<Option<u64>>, Vec<Beside>);

/// Times a run holding both-or-neither writes is chained again when a record one of them
/// expects changed between its read and the commit.
const ONLY_ATTEMPTS: usize = 16;

/// Appends not yet written, and results not yet collected by their callers.
#[derive(Default)]
struct Queue {
    items: Vec<Queued>,
    results: std::collections::HashMap<u64, Written>,
    next_ticket: u64,
    /// A caller is writing a batch right now.
    writing: bool,
}

/// Publishes a batch's results when dropped, also if writing it panicked (then every waiter of
/// the batch gets an error instead of waiting forever).
struct BatchGuard<'a> {
    log: &'a AuditLog,
    tickets: Vec<u64>,
    results: Option<Vec<(u64, Written)>>,
}

impl Drop for BatchGuard<'_> {
    fn drop(&mut self) {
        let results = self.results.take().unwrap_or_else(|| {
            self.tickets
                .iter()
                .map(|t| {
                    let e = StoreError::Io("the audit writer failed mid-batch".into());
                    (*t, Err(AuditError::Store(e)))
                })
                .collect()
        });
        let mut q = self.log.queue_lock();
        q.results.extend(results);
        q.writing = false;
        drop(q);
        self.log.queue_changed.notify_all();
    }
}

/// The live log's store could not be read while verifying it.
impl From<StoreError> for VerifyError {
    fn from(e: StoreError) -> VerifyError {
        VerifyError {
            seq: None,
            line: 0,
            reason: format!("cannot read the store: {e}"),
        }
    }
}

/// The audit log. `Send + Sync`; share it as `Arc<AuditLog>`.
pub struct AuditLog {
    store: Arc<dyn Store>,
    key: Ed25519KeyPair,
    public_key_hex: String,
    origin: String,
    opts: AuditOptions,
    head: Mutex<Head>,
    queue: Mutex<Queue>,
    queue_changed: std::sync::Condvar,
    /// The anchor file beside the key ([`anchor::path_for`]).
    anchor_path: PathBuf,
    /// The seq the anchor names, as this process knows it (it never moves back).
    anchored: Mutex<Option<u64>>,
}

impl AuditLog {
    /// Opens the log on `store`; loads or creates the Ed25519 signing key at `key_path` (PKCS#8
    /// DER or PEM; created as PEM with mode 0600, parent directory created; an existing key
    /// readable by group/others is refused); records the public key in `Tree::Meta` under
    /// `audit-pubkey` (a different recorded key is refused); recovers the seq and head hash from
    /// the last stored entry. If the anchor beside the key names an entry the store no longer
    /// holds (or holds with another hash), or cannot be read, it refuses ([`AuditError::Anchor`]);
    /// that costs one store read.
    pub fn open(
        store: Arc<dyn Store>,
        key_path: &Path,
        origin: String,
        opts: AuditOptions,
    ) -> Result<AuditLog, AuditError> {
        Self::open_with_anchor_check(store, key_path, origin, opts, true)
    }

    /// [`AuditLog::open`]; `check_anchor: false` skips the anchor (accepting a restore, or
    /// exporting what a store whose anchor does not match still holds).
    pub fn open_with_anchor_check(
        store: Arc<dyn Store>,
        key_path: &Path,
        origin: String,
        opts: AuditOptions,
        check_anchor: bool,
    ) -> Result<AuditLog, AuditError> {
        if origin.is_empty() || origin.contains('\n') {
            return Err(AuditError::Config(format!(
                "origin {origin:?} must be non-empty and single-line"
            )));
        }
        let recorded = store.get(Tree::Meta, PUBKEY_META_KEY)?;
        let (key, _created) = key::load_or_create(key_path, recorded.is_none())?;
        let public_key_hex = hex::encode(key::public_key_bytes(&key));
        let recorded = match recorded {
            Some(r) => r,
            None => {
                if store.compare_and_swap(
                    Tree::Meta,
                    PUBKEY_META_KEY,
                    None,
                    public_key_hex.as_bytes(),
                )? {
                    public_key_hex.clone().into_bytes()
                } else {
                    store.get(Tree::Meta, PUBKEY_META_KEY)?.unwrap_or_default()
                }
            }
        };
        let recorded_hex = String::from_utf8_lossy(&recorded).into_owned();
        rotate::refuse_retired(store.as_ref(), key_path, &public_key_hex, &recorded_hex)?;
        if recorded != public_key_hex.as_bytes() {
            return Err(AuditError::Key {
                path: key_path.display().to_string(),
                reason: format!(
                    "public key {public_key_hex} does not match the key this audit log was \
                     signed with ({recorded_hex}); restore the original key file. If this \
                     store was restored from a copy taken before `airlock audit rotate-key`, \
                     its log is still signed with the retired key: put that key file back \
                     (from the same copy), run `airlock audit accept-restore`, then \
                     `airlock audit rotate-key` again (the retired key may be known to \
                     whoever it was rotated away from)"
                ),
            });
        }

        let log = AuditLog {
            store,
            key,
            public_key_hex,
            origin,
            opts,
            head: Mutex::new(Head {
                next_seq: 0,
                hash_hex: GENESIS_PREV.to_string(),
                since_checkpoint: 0,
            }),
            queue: Mutex::new(Queue::default()),
            queue_changed: std::sync::Condvar::new(),
            anchor_path: anchor::path_for(key_path),
            anchored: Mutex::new(None),
        };
        // The anchor is read before the store: an instance sharing it may store a checkpoint
        // and move the anchor meanwhile, and the store is never behind an anchor read earlier.
        let anchor = match check_anchor {
            true => Some(log.read_anchor()?),
            false => None,
        };
        if check_anchor
            && log
                .store
                .get(Tree::Meta, RESTORE_IN_PROGRESS_KEY)?
                .is_some()
        {
            return Err(AuditError::Anchor(
                "an `airlock audit accept-restore` began marking this restored store's reviews \
                 and did not finish"
                    .into(),
            ));
        }
        let recovered = log.recover()?;
        let next_seq = recovered.next_seq;
        *log.lock() = recovered;
        if let Some(anchor) = anchor {
            log.check_anchor(anchor, next_seq)?;
        }
        log.ensure_review_index()?;
        Ok(log)
    }

    fn lock(&self) -> MutexGuard<'_, Head> {
        // The head only changes after a durable write, in plain assignments that cannot panic,
        // so a poisoned lock still holds a consistent head.
        self.head.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn exists(&self, seq: u64) -> Result<bool, AuditError> {
        Ok(self.store.get(Tree::Audit, &seq_key(seq))?.is_some())
    }

    /// Finds the stored length (seqs are dense from the first stored entry) with O(log n)
    /// lookups, then the head hash
    /// and the entries since the last checkpoint.
    fn recover(&self) -> Result<Head, AuditError> {
        let empty = Head {
            next_seq: 0,
            hash_hex: GENESIS_PREV.to_string(),
            since_checkpoint: 0,
        };
        // Seqs are dense from the first stored entry (0, or an archive's cut).
        let Some(first) = self.first_stored_seq()? else {
            return Ok(empty);
        };
        let exhausted = || AuditError::Corrupt("audit seq space exhausted".into());
        let (mut lo, mut step) = (first, 1u64); // lo exists; find an absent hi
        let mut hi = first.checked_add(step).ok_or_else(exhausted)?;
        while self.exists(hi)? {
            lo = hi;
            step = step.checked_mul(2).ok_or_else(exhausted)?;
            hi = first.checked_add(step).ok_or_else(exhausted)?;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.exists(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let last = lo;
        let (bytes, value) = self.load(last)?;
        if value.get("seq").and_then(Value::as_u64) != Some(last) {
            return Err(AuditError::Corrupt(format!(
                "entry stored under seq {last} has a different seq"
            )));
        }
        // Count entries since the last checkpoint, looking back at most `checkpoint_every`.
        let limit = self.opts.checkpoint_every.max(1);
        let mut since = 0u64;
        let mut seq = last;
        loop {
            let (_, v) = self.load(seq)?;
            if v.get("kind").and_then(Value::as_str) == Some(CHECKPOINT_KIND) {
                break;
            }
            since += 1;
            if since >= limit || seq <= first {
                break;
            }
            seq -= 1;
        }
        Ok(Head {
            next_seq: last + 1,
            hash_hex: hex::encode(entry_hash(&bytes)),
            since_checkpoint: since,
        })
    }

    fn load(&self, seq: u64) -> Result<(Vec<u8>, Value), AuditError> {
        let bytes = self
            .store
            .get(Tree::Audit, &seq_key(seq))?
            .ok_or_else(|| AuditError::Corrupt(format!("entry seq {seq} vanished")))?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| AuditError::Corrupt(format!("entry seq {seq} is not JSON: {e}")))?;
        Ok((bytes, value))
    }

    /// Appends one event. The log adds `seq`, `prev` (hex SHA-256 of the previous entry's
    /// canonical bytes), `ts` and `kind`. Durable when it returns; returns the seq. On any
    /// store error nothing advances and the error is returned (fail closed). When the event
    /// completes `checkpoint_every` entries, a signed checkpoint is chained right after it in the
    /// same transaction (both land or neither). [`Event`] has no room for a secret.
    pub fn append(&self, event: Event) -> Result<u64, AuditError> {
        let mut results = self.append_all(vec![event]);
        results.pop().unwrap_or_else(|| Err(no_result()))
    }

    /// Appends `event` and commits `with` (the caller's own writes, e.g. a held review) in the
    /// same durable transaction: one fsync for both, and `with` never lands without the entry.
    /// `Ok(_)`: the entry is durable; [`Beside`] says what became of `with`. If the store
    /// refuses the two together, the entry is tried alone, so an error means it is not written.
    pub fn append_with(&self, event: Event, with: Batch) -> Result<Beside, AuditError> {
        let kind = event.kind();
        let fields = Self::checked(kind, serde_json::to_value(event).unwrap_or(Value::Null))?;
        self.group_commit(vec![(kind.to_string(), fields, Some(With::Beside(with)))])
            .pop()
            .unwrap_or_else(|| Err(no_result()))
            .map(|(_, beside)| beside)
    }

    /// Appends `event` and commits `with` (e.g. a review's transition, swapped in only if the
    /// record is still as read) in one durable transaction, both or neither ([`Landed`]; on
    /// `Changed` the caller may read again). An error: nothing was written.
    pub fn append_if(&self, event: Event, with: Batch) -> Result<Landed, AuditError> {
        self.append_all_if(vec![(event, with)])
            .pop()
            .unwrap_or_else(|| Err(no_result()))
    }

    /// [`AuditLog::append_if`] for many (a sweep's chunk of expiries) through one wait: one
    /// result each, in order. Each lands or not on its own.
    pub fn append_all_if(&self, items: Vec<(Event, Batch)>) -> Vec<Result<Landed, AuditError>> {
        let items = items
            .into_iter()
            .map(|(event, with)| {
                let kind = event.kind();
                let value = serde_json::to_value(event).unwrap_or(Value::Null);
                (kind, value, Some(With::Only(with)))
            })
            .collect();
        self.append_checked(items)
            .into_iter()
            .map(|w| {
                w.map(|(_, beside)| match beside {
                    Beside::Applied => Landed::Durable,
                    Beside::Unflushed => Landed::Unflushed,
                    _ => Landed::Changed,
                })
            })
            .collect()
    }

    /// Appends several events through one wait: they join the group commit together, so a
    /// background recorder needs one thread, not one per event. Returns each event's seq or
    /// error, in order.
    pub fn append_all(&self, events: Vec<Event>) -> Vec<Result<u64, AuditError>> {
        let values = events
            .into_iter()
            .map(|e| {
                let kind = e.kind();
                (kind, serde_json::to_value(e).unwrap_or(Value::Null))
            })
            .collect();
        self.append_values(values)
    }

    /// One event as a JSON object (no reserved fields `seq`, `prev`, `ts`, `kind`; `kind` not
    /// "checkpoint").
    #[cfg(test)]
    fn append_value(&self, kind: &str, event: Value) -> Result<u64, AuditError> {
        let mut results = self.append_values(vec![(kind, event)]);
        results.pop().unwrap_or_else(|| Err(no_result()))
    }

    /// [`AuditLog::append_all`] on JSON objects; a value that is not an object is rejected.
    fn append_values(&self, events: Vec<(&str, Value)>) -> Vec<Result<u64, AuditError>> {
        let items = events.into_iter().map(|(k, v)| (k, v, None)).collect();
        self.append_checked(items)
            .into_iter()
            .map(|w| w.and_then(|(seq, _)| seq.ok_or_else(no_result)))
            .collect()
    }

    /// Checks each event (an invalid one gets its error and is not written), then writes the
    /// valid ones, each with its writes, through one group commit; one result each, in order.
    fn append_checked(&self, items: Vec<(&str, Value, Option<With>)>) -> Vec<Written> {
        let mut results: Vec<Option<Written>> = Vec::with_capacity(items.len());
        let mut valid = Vec::with_capacity(items.len());
        for (kind, event, with) in items {
            match Self::checked(kind, event) {
                Ok(fields) => {
                    valid.push((kind.to_string(), fields, with));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut written = self.group_commit(valid).into_iter();
        results
            .into_iter()
            .map(|r| {
                r.or_else(|| written.next())
                    .unwrap_or_else(|| Err(no_result()))
            })
            .collect()
    }

    /// An event's fields, if `kind` and the event are acceptable.
    fn checked(kind: &str, event: Value) -> Result<Map<String, Value>, AuditError> {
        if kind.is_empty() || kind == CHECKPOINT_KIND || kind == KEY_ROTATED_KIND {
            return Err(AuditError::InvalidEvent(format!(
                "kind {kind:?} is reserved or empty"
            )));
        }
        let Value::Object(fields) = event else {
            return Err(AuditError::InvalidEvent(
                "event must be a JSON object".into(),
            ));
        };
        if let Some(f) = RESERVED_FIELDS.iter().find(|f| fields.contains_key(**f)) {
            return Err(AuditError::InvalidEvent(format!(
                "event field {f:?} is reserved for the log"
            )));
        }
        Ok(fields)
    }

    /// Group commit: appends queue up; whoever finds no write in progress writes everything
    /// queued (up to [`MAX_BATCH`] entries and [`MAX_BATCH_BYTES`]) in one store transaction (one fsync) and hands each waiter
    /// its seq or the error. Under load this turns N fsyncs into one without reordering: seq
    /// order is queue order, and nobody returns before their entry is durable. Returns one
    /// result per entry, in order.
    fn group_commit(
        &self,
        entries: Vec<(String, Map<String, Value>, Option<With>)>,
    ) -> Vec<Written> {
        let started = std::time::Instant::now();
        let written = self.group_commit_untimed(entries);
        crate::metrics::audit_appended(started.elapsed());
        written
    }

    fn group_commit_untimed(
        &self,
        entries: Vec<(String, Map<String, Value>, Option<With>)>,
    ) -> Vec<Written> {
        let mut q = self.queue_lock();
        let mut tickets = Vec::with_capacity(entries.len());
        for (kind, fields, with) in entries {
            let ticket = q.next_ticket;
            q.next_ticket += 1;
            tickets.push(ticket);
            q.items.push(Queued {
                ticket,
                kind,
                fields,
                with,
            });
        }
        let mut out: Vec<Option<Written>> = (0..tickets.len()).map(|_| None).collect();
        let mut missing = tickets.len();
        loop {
            for (slot, t) in out.iter_mut().zip(&tickets) {
                if slot.is_none() {
                    if let Some(r) = q.results.remove(t) {
                        *slot = Some(r);
                        missing -= 1;
                    }
                }
            }
            if missing == 0 {
                return out.into_iter().flatten().collect();
            }
            if !q.writing {
                q.writing = true;
                let n = group_size(&q.items);
                let batch: Vec<Queued> = q.items.drain(..n).collect();
                drop(q);
                let mut guard = BatchGuard {
                    log: self,
                    tickets: batch.iter().map(|b| b.ticket).collect(),
                    results: None,
                };
                guard.results = Some(self.write_batch(batch));
                drop(guard);
                q = self.queue_lock();
                continue;
            }
            q = self.queue_wait(q);
        }
    }

    /// Chains and stores `batch` in one transaction, with a signed checkpoint after every
    /// `checkpoint_every` entries. Returns each queued entry's seq (or the shared error:
    /// nothing advanced).
    fn write_batch(&self, batch: Vec<Queued>) -> Vec<(u64, Written)> {
        let mut head = self.lock();
        let tickets: Vec<u64> = batch.iter().map(|b| b.ticket).collect();
        let (items, withs): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|b| ((b.kind, b.fields), b.with))
            .unzip();
        let carried: Vec<bool> = withs.iter().map(Option::is_some).collect();
        let only: Vec<bool> = withs
            .iter()
            .map(|w| w.as_ref().is_some_and(With::only))
            .collect();
        let written: Vec<Written> = match self.write_entries(&mut head, &items, withs) {
            Ok((seqs, beside)) => seqs.into_iter().zip(beside).map(Ok).collect(),
            // The store refused the entries with the callers' writes: the entries alone, so
            // that what is recorded is all that failed to be stored is the callers' part. An
            // entry that lands only with its writes fails with them.
            Err(AuditError::Store(e)) if carried.contains(&true) => {
                let alone: Vec<(String, Map<String, Value>)> = items
                    .iter()
                    .zip(&only)
                    .filter(|(_, o)| !**o)
                    .map(|(item, _)| item.clone())
                    .collect();
                match self.write_entries(&mut head, &alone, Vec::new()) {
                    Ok((seqs, _)) => {
                        let mut seqs = seqs.into_iter();
                        carried
                            .iter()
                            .zip(&only)
                            .map(|(c, o)| match (c, o) {
                                (_, true) => Err(AuditError::Store(e.clone())),
                                (true, false) => {
                                    Ok((seqs.next().flatten(), Beside::StoreFailed(e.clone())))
                                }
                                (false, false) => Ok((seqs.next().flatten(), Beside::Applied)),
                            })
                            .collect()
                    }
                    // An entry that was to land only with its writes keeps the first error:
                    // its fate is that commit's (one whose outcome is unknown stays so).
                    Err(again) => only
                        .iter()
                        .map(|o| match o {
                            true => Err(AuditError::Store(e.clone())),
                            false => Err(again.duplicate()),
                        })
                        .collect(),
                }
            }
            Err(e) => items.iter().map(|_| Err(e.duplicate())).collect(),
        };
        tickets.into_iter().zip(written).collect()
    }

    fn queue_lock(&self) -> MutexGuard<'_, Queue> {
        // Queue updates are plain pushes/removes; a poisoned lock still holds a usable queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue_wait<'a>(&self, q: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        self.queue_changed
            .wait(q)
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a checkpoint now if any entry arrived since the last one; returns its seq.
    pub fn checkpoint(&self) -> Result<Option<u64>, AuditError> {
        let mut head = self.lock();
        if head.since_checkpoint == 0 {
            return Ok(None);
        }
        self.write_checkpoint(&mut head).map(Some)
    }

    fn write_checkpoint(&self, head: &mut Head) -> Result<u64, AuditError> {
        let _turn = self.turn(head)?;
        let mut attempts = 0;
        loop {
            // Signs the position it will be stored at: after entries another instance stored
            // first, a new signature over the new head.
            match self.try_write_entries(head, &[], Vec::new(), true)? {
                Some(_) => return Ok(head.next_seq - 1),
                None if attempts < CATCH_UP_ATTEMPTS && self.catch_up(head)? > 0 => attempts += 1,
                None => return Err(AuditError::Conflict(head.next_seq)),
            }
        }
    }

    /// A checkpoint signing the chain up to `size` entries, whose last hashes to `head_hex`.
    fn checkpoint_fields(&self, size: u64, head_hex: &str) -> Map<String, Value> {
        let text = checkpoint_signing_text(&self.origin, size, head_hex);
        let sig = self.key.sign(text.as_bytes());
        let mut fields = Map::new();
        fields.insert("origin".into(), Value::String(self.origin.clone()));
        fields.insert("size".into(), Value::from(size));
        fields.insert("head".into(), Value::String(head_hex.to_string()));
        fields.insert(
            "sig".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(sig.as_ref())),
        );
        fields
    }

    /// Chains `items` after the head (with a checkpoint after every `checkpoint_every`
    /// entries), stores them all in one transaction (durably, never overwriting), with each
    /// item's own batch (`withs`, one per item) beside them, and only then advances the head.
    /// Returns, per item, its seq and what became of its batch.
    /// When other instances sharing the store took the next seqs, it chains after their
    /// entries and tries again: the log stays one linear chain whoever writes.
    fn write_entries(
        &self,
        head: &mut Head,
        items: &[(String, Map<String, Value>)],
        mut withs: Vec<Option<With>>,
    ) -> Result<Stored, AuditError> {
        withs.resize_with(items.len(), || None);
        let turn = self.turn(head)?;
        // Only on a store other instances share can the next seqs be taken, so that the
        // callers' writes are needed again: elsewhere they go to one attempt uncopied (and a
        // lost race, which only two logs on one embedded store could cause, is an error). Writes
        // that land only with their entries may find their record changed by a write from
        // elsewhere after it was read: they are kept for another attempt too.
        let only = withs.iter().any(|w| w.as_ref().is_some_and(With::only));
        let retry = turn.is_some() || only || withs.iter().all(Option::is_none);
        let mut withs = Some(withs);
        let mut attempts = 0;
        loop {
            let these = match retry {
                true => withs.clone(),
                false => withs.take(),
            };
            let Some(these) = these else {
                return Err(AuditError::Conflict(head.next_seq));
            };
            match self.try_write_entries(head, items, these, false)? {
                Some(written) => return Ok(written),
                // Another instance on a shared store appended first: chain after its entries.
                None if retry && attempts < CATCH_UP_ATTEMPTS && self.catch_up(head)? > 0 => {
                    attempts += 1
                }
                // A record a both-or-neither write expects changed after it was read: read
                // again (that item is then left out).
                None if only && attempts < ONLY_ATTEMPTS => attempts += 1,
                None => return Err(AuditError::Conflict(head.next_seq)),
            }
        }
    }

    /// On a store other instances share: waits for the appenders' turn and brings `head` up
    /// to the entries stored meanwhile, so the append that follows does not lose the race for
    /// its seqs (retrying after each loss made two busy instances ten times slower than one).
    fn turn(&self, head: &mut Head) -> Result<Option<crate::store::Turn>, AuditError> {
        let turn = self.store.exclusive_turn()?;
        if turn.is_some() {
            self.catch_up(head)?;
        }
        Ok(turn)
    }

    /// One attempt of [`AuditLog::write_entries`]: `None` when the seqs after `head` were taken.
    /// `checkpoint_now`: end with a checkpoint whatever the count.
    fn try_write_entries(
        &self,
        head: &mut Head,
        items: &[(String, Map<String, Value>)],
        mut withs: Vec<Option<With>>,
        checkpoint_now: bool,
    ) -> Result<Option<Stored>, AuditError> {
        let every = self.opts.checkpoint_every;
        // The items whose both-or-neither writes no longer apply are left out of the chain.
        let chainable = with::chainable(self.store.as_ref(), &withs)?;
        let mut tail = Tail {
            next_seq: head.next_seq,
            prev: head.hash_hex.clone(),
        };
        let mut since = head.since_checkpoint;
        let mut seqs = Vec::with_capacity(items.len());
        // Each entry, and its by-review index key, in one all-or-nothing batch.
        let mut batch = Batch::default();
        let mut first = None;
        // The last checkpoint chained (seq, hash): the anchor names it once the commit returned.
        let mut last_checkpoint = None;
        for (((kind, fields), with), chain) in items.iter().zip(&mut withs).zip(&chainable) {
            if !*chain {
                seqs.push(None);
                continue;
            }
            seqs.push(Some(tail.next_seq));
            let (key, bytes) = tail.chain(kind, fields, &mut batch);
            if first.is_none() {
                first = Some((key, bytes.clone()));
            }
            match with {
                // An item's own writes land only with its entry: they expect it stored, as the
                // entries' batch (applied just before them in the same transaction) stores it.
                Some(With::Beside(w)) => {
                    w.expect(Tree::Audit, &key, Some(&bytes));
                }
                // Both or neither: they join the entries' batch, expectations and all (checked
                // again there: a write from elsewhere since the read fails the whole batch,
                // which is then chained again).
                Some(With::Only(w)) => {
                    let w = std::mem::take(w);
                    batch.expect.extend(w.expect);
                    batch.writes.extend(w.writes);
                }
                None => {}
            }
            since += 1;
            if every > 0 && since >= every {
                let fields = self.checkpoint_fields(tail.next_seq, &tail.prev);
                tail.chain(CHECKPOINT_KIND, &fields, &mut batch);
                since = 0;
                last_checkpoint = Some((tail.next_seq - 1, tail.prev.clone()));
            }
        }
        if checkpoint_now && (since > 0 || items.is_empty()) {
            let fields = self.checkpoint_fields(tail.next_seq, &tail.prev);
            tail.chain(CHECKPOINT_KIND, &fields, &mut batch);
            since = 0;
            last_checkpoint = Some((tail.next_seq - 1, tail.prev.clone()));
        }
        if last_checkpoint.is_some() {
            // A key rotated out (on a store other instances share) signs nothing more.
            batch.expect(
                Tree::Meta,
                PUBKEY_META_KEY,
                Some(self.public_key_hex.as_bytes()),
            );
        }
        if first.is_none() && !checkpoint_now {
            // Nothing left to write: every item's writes no longer apply (or there were none).
            let beside = chainable
                .iter()
                .map(|c| match c {
                    true => Beside::Applied,
                    false => Beside::ExpectationFailed,
                })
                .collect();
            return Ok(Some((seqs, beside)));
        }
        let mut batches = vec![batch];
        let carried: Vec<bool> = withs
            .iter()
            .map(|w| matches!(w, Some(With::Beside(_))))
            .collect();
        let beside = withs.into_iter().filter_map(|w| match w {
            Some(With::Beside(b)) => Some(b),
            _ => None,
        });
        // Kept to read back after an error: a commit can fail after it landed (a connection
        // lost during COMMIT, a flush that failed after the write).
        let kept: Vec<Batch> = beside.collect();
        batches.extend(kept.iter().cloned());
        // A commit reported failed that landed may not be durable (a failed flush): the anchor
        // must never name it.
        let mut durable = true;
        let applied = match self.store.commit(batches) {
            Ok(applied) => applied,
            Err(e) => {
                durable = false;
                let landed = first.as_ref().is_some_and(
                    |(k, b)| matches!(self.store.get(Tree::Audit, k), Ok(Some(v)) if v == *b),
                );
                if !landed {
                    return Err(e.into());
                }
                // The entries are stored: never chain them twice. Each caller's writes count
                // as applied only if they read back as written.
                tracing::error!(error = %e, "the store reported a failed commit that landed; the audit log continues after it");
                let mut flags = vec![true];
                flags.extend(kept.iter().map(|b| self.reads_back(b)));
                flags
            }
        };
        let mut applied = applied.into_iter();
        if applied.next() != Some(true) {
            if last_checkpoint.is_some() {
                self.refuse_if_rotated()?;
            }
            return Ok(None);
        }
        let applied = carried
            .into_iter()
            .zip(&chainable)
            .map(
                |(c, chained)| match *chained && (!c || applied.next().unwrap_or(false)) {
                    true if durable => Beside::Applied,
                    true => Beside::Unflushed,
                    false => Beside::ExpectationFailed,
                },
            )
            .collect();
        head.next_seq = tail.next_seq;
        head.hash_hex = tail.prev;
        head.since_checkpoint = since;
        if let Some((seq, hash)) = last_checkpoint.filter(|_| durable) {
            self.advance_anchor(seq, hash);
        }
        Ok(Some((seqs, applied)))
    }

    /// [`AuditError::KeyRotated`] if the store no longer names this log's key.
    fn refuse_if_rotated(&self) -> Result<(), AuditError> {
        match self.store.get(Tree::Meta, PUBKEY_META_KEY)? {
            Some(k) if k == self.public_key_hex.as_bytes() => Ok(()),
            other => Err(AuditError::KeyRotated {
                ours: self.public_key_hex.clone(),
                current: String::from_utf8_lossy(&other.unwrap_or_default()).into_owned(),
            }),
        }
    }

    /// Does the store hold what `batch` writes (each put's value, each delete's absence)?
    /// Counters cannot be told apart from earlier adds and are not read.
    fn reads_back(&self, batch: &Batch) -> bool {
        batch.writes.iter().all(|w| match w {
            crate::store::Write::Put(t, k, v) => {
                matches!(self.store.get(*t, k), Ok(Some(got)) if got == *v)
            }
            crate::store::Write::Delete(t, k) => matches!(self.store.get(*t, k), Ok(None)),
            crate::store::Write::Add(..) => true,
        })
    }

    /// Moves `head` past the entries other writers stored after it (instances sharing one
    /// database), checking that each continues the chain; returns how many. An entry that does
    /// not (a foreign or damaged record) is a conflict: nothing is ever chained after it.
    fn catch_up(&self, head: &mut Head) -> Result<u64, AuditError> {
        let mut read = 0;
        loop {
            let rows = self
                .store
                .range(Tree::Audit, &seq_key(head.next_seq), None, 256)?;
            if rows.is_empty() {
                return Ok(read);
            }
            for (key, bytes) in rows {
                let seq = head.next_seq;
                let value: Value =
                    serde_json::from_slice(&bytes).map_err(|_| AuditError::Conflict(seq))?;
                let chained = key == seq_key(seq)
                    && value.get("seq").and_then(Value::as_u64) == Some(seq)
                    && value.get("prev").and_then(Value::as_str) == Some(head.hash_hex.as_str());
                if !chained {
                    return Err(AuditError::Conflict(seq));
                }
                head.next_seq = seq + 1;
                head.hash_hex = hex::encode(entry_hash(&bytes));
                head.since_checkpoint = match value.get("kind").and_then(Value::as_str) {
                    Some(CHECKPOINT_KIND) => 0,
                    _ => head.since_checkpoint + 1,
                };
                read += 1;
            }
        }
    }

    fn stored_since(&self, since: u64) -> Result<Vec<crate::store::Entry>, AuditError> {
        Ok(self.store.scan_from(Tree::Audit, &seq_key(since))?)
    }

    /// Writes up to `limit` entries (checkpoints included) from seq `since` as JSON Lines, one
    /// canonical JSON object per line. Returns the number written and, if the log goes on,
    /// the seq to ask for next.
    pub fn export_page(
        &self,
        since: u64,
        limit: usize,
        out: &mut dyn std::io::Write,
    ) -> Result<(u64, Option<u64>), AuditError> {
        let rows = self
            .store
            .range(Tree::Audit, &seq_key(since), None, limit.max(1))?;
        let mut next = None;
        for (key, value) in &rows {
            out.write_all(value)?;
            out.write_all(b"\n")?;
            next = <[u8; 8]>::try_from(key.as_slice())
                .ok()
                .map(|k| u64::from_be_bytes(k) + 1);
        }
        let full = rows.len() >= limit.max(1);
        Ok((rows.len() as u64, next.filter(|_| full)))
    }

    /// Writes every entry (checkpoints included) with seq >= `since` as JSON Lines, a page at
    /// a time (memory stays flat however long the log); returns the number of lines.
    pub fn export(&self, since: u64, out: &mut dyn std::io::Write) -> Result<u64, AuditError> {
        let (mut lines, mut from) = (0u64, Some(since));
        while let Some(since) = from {
            let (n, next) = self.export_page(since, EXPORT_PAGE, out)?;
            lines += n;
            from = next;
        }
        out.flush()?;
        Ok(lines)
    }

    /// The raw 32-byte Ed25519 public key that verifies checkpoints, hex-encoded.
    pub fn public_key_hex(&self) -> String {
        self.public_key_hex.clone()
    }

    /// The origin named in (and signed by) every checkpoint.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The entries (checkpoints included) with seq >= `since`, parsed.
    pub fn entries(&self, since: u64) -> Result<Vec<Value>, AuditError> {
        self.stored_since(since)?
            .into_iter()
            .map(|(key, value)| {
                serde_json::from_slice(&value).map_err(|e| {
                    AuditError::Corrupt(format!(
                        "entry under key {} is not JSON: {e}",
                        hex::encode(key)
                    ))
                })
            })
            .collect()
    }

    /// The entries after the last signed checkpoint, first and last seq, as the log stands
    /// (at open: the tail a stop left unsigned, a crash's; `first` is the earliest of the last
    /// `checkpoint_every` when the tail is longer). `None` when the last entry is a checkpoint.
    pub fn unsigned_tail(&self) -> Option<(u64, u64)> {
        let head = self.lock();
        (head.since_checkpoint > 0 && head.next_seq > 0).then(|| {
            (
                head.next_seq.saturating_sub(head.since_checkpoint),
                head.next_seq - 1,
            )
        })
    }

    /// Writes a checkpoint if anything arrived since the last one, and returns the latest
    /// checkpoint line (canonical JSON), to be kept outside Airlock for truncation checks.
    pub fn latest_checkpoint(&self) -> Result<Option<String>, AuditError> {
        let mut head = self.lock();
        if head.since_checkpoint > 0 {
            self.write_checkpoint(&mut head)?;
        }
        // With nothing since the last checkpoint, the newest entry is that checkpoint.
        let Some(last) = head.next_seq.checked_sub(1) else {
            return Ok(None);
        };
        let (bytes, value) = self.load(last)?;
        Ok(
            (value.get("kind").and_then(Value::as_str) == Some(CHECKPOINT_KIND))
                .then(|| String::from_utf8_lossy(&bytes).into_owned()),
        )
    }

    /// Up to `limit` entries about review `id`, oldest first, through the by-review index
    /// (only that review's entries are read).
    pub fn entries_for_review(&self, id: &str, limit: usize) -> Result<Vec<Value>, AuditError> {
        self.indexed_seqs(&review_key(id, 0), limit)?
            .into_iter()
            .map(|seq| Ok(self.load(seq)?.1))
            .collect()
    }

    /// The first `limit` `decision` entries of identical requests that joined review `id`
    /// (resends answered with it), oldest first; not among [`AuditLog::entries_for_review`].
    pub fn joins_of_review(&self, id: &str, limit: usize) -> Result<Vec<Value>, AuditError> {
        self.indexed_seqs(&join_key(id, 0), limit)?
            .into_iter()
            .map(|seq| Ok(self.load(seq)?.1))
            .collect()
    }

    /// How many requests joined review `id`, counted up to `limit` (index keys only).
    pub fn join_count(&self, id: &str, limit: usize) -> Result<usize, AuditError> {
        Ok(self.indexed_seqs(&join_key(id, 0), limit)?.len())
    }

    /// The seqs filed under an index key's prefix (`key` for seq 0), at most `limit`.
    fn indexed_seqs(&self, key: &[u8], limit: usize) -> Result<Vec<u64>, AuditError> {
        let prefix = &key[..key.len() - 8];
        let end = crate::store::prefix_end(prefix);
        let rows = self
            .store
            .range(Tree::Index, prefix, end.as_deref(), limit)?;
        Ok(rows
            .iter()
            .filter_map(|(k, _)| k.get(prefix.len()..))
            .filter_map(|s| <[u8; 8]>::try_from(s).ok())
            .map(u64::from_be_bytes)
            .collect())
    }

    /// Files every stored entry under the by-review index once (a log from before it, or from
    /// before resends were filed apart: they move from the review's own entries to its joins).
    fn ensure_review_index(&self) -> Result<(), AuditError> {
        if self.store.get(Tree::Meta, REVIEW_INDEX_BUILT)?.is_some() {
            return Ok(());
        }
        for_each_page(
            self.store.as_ref(),
            Tree::Audit,
            &seq_key(0),
            1000,
            |rows| {
                let mut batch = Batch::default();
                for (k, v) in rows {
                    let Ok(seq) = <[u8; 8]>::try_from(k.as_slice()) else {
                        continue;
                    };
                    let entry: Value = serde_json::from_slice(v).unwrap_or(Value::Null);
                    let Some(id) = entry.get("review_id").and_then(Value::as_str) else {
                        continue;
                    };
                    let seq = u64::from_be_bytes(seq);
                    if entry.get("joined") == Some(&Value::Bool(true)) {
                        batch.delete(Tree::Index, &review_key(id, seq));
                        batch.put(Tree::Index, &join_key(id, seq), &[]);
                    } else {
                        batch.put(Tree::Index, &review_key(id, seq), &[]);
                    }
                }
                self.store.apply(batch).map(drop)
            },
        )?;
        let mut batch = Batch::default();
        batch.put(Tree::Meta, REVIEW_INDEX_BUILT, b"1");
        self.store.apply(batch)?;
        Ok(())
    }

    /// Verifies the live store: the whole chain from seq 0 (or from the checkpoint the last
    /// archive cut at, which must be stored with the hash `audit:log-start` names), every checkpoint signature (with this
    /// log's key and the retired keys the store records, across their rotations), that each
    /// entry is stored under its own seq, and that the store still holds every entry this
    /// process has written (no tail truncation). Line numbers in errors count entries from 1.
    pub fn verify_live(&self) -> Result<VerifyReport, VerifyError> {
        let written = self.lock().next_seq;
        match self.store.get(Tree::Meta, PUBKEY_META_KEY) {
            Ok(Some(k)) if k == self.public_key_hex.as_bytes() => {}
            Ok(_) => {
                return Err(VerifyError {
                    seq: None,
                    line: 0,
                    reason: "the recorded audit-pubkey differs from the signing key (was the \
                             key rotated? restart with the new key file)"
                        .into(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        let retired = rotate::retired(self.store.as_ref()).map_err(|e| VerifyError {
            seq: None,
            line: 0,
            reason: e.to_string(),
        })?;
        // The retired keys, then this instance's own last: the chain must end on it (a key
        // added to the retired list signs nothing the current key has not signed over since).
        let mut keys: Vec<&str> = retired.iter().map(|r| r.pubkey.as_str()).collect();
        keys.push(self.public_key_hex.as_str());
        // Where the log must begin: seq 0, or the last archive's cut (with the hash it names;
        // while that archive's deletions are unfinished, some of the entries before it).
        let start = self.verified_start()?;
        let mut verifier = verify::Verifier::new(&keys, start.is_none())?;
        let mut line = 0usize;
        for_each_page(self.store.as_ref(), Tree::Audit, &[], EXPORT_PAGE, |page| {
            for (key, value) in page {
                line += 1;
                let seq = verifier.push(value, line)?;
                if key.as_slice() != seq_key(seq) {
                    return Err(VerifyError {
                        seq: Some(seq),
                        line,
                        reason: format!("stored under key {}, not its seq", hex::encode(key)),
                    });
                }
                if let Some(start) = start.as_ref().filter(|s| s.seq == seq) {
                    if hex::encode(entry_hash(value)) != start.hash {
                        return Err(VerifyError {
                            seq: Some(seq),
                            line,
                            reason: "this is not the checkpoint the last archive cut at (its hash \
                                     differs from audit:log-start's)"
                                .into(),
                        });
                    }
                }
            }
            Ok(())
        })?;
        // The recorded start is taken only if the log itself, signed, says an archive cut
        // there: a store writer could otherwise set audit:log-start and delete the head. (A
        // log still beginning at seq 0 lost nothing, whatever the record says.)
        if let Some(s) = start.as_ref().filter(|_| verifier.first_seq() > 0) {
            if !verifier.signed_cut(s.seq, &s.hash) {
                return Err(VerifyError {
                    seq: Some(s.seq),
                    line: 1,
                    reason: format!(
                        "audit:log-start says the log begins at the archive cut at seq {}, but no \
                         signed `archived` entry in the log names that cut: the head of the log \
                         may have been deleted",
                        s.seq
                    ),
                });
            }
        }
        let mut report = verifier.finish()?;
        if start.is_some() {
            report.archived_before = Some(report.first_seq).filter(|s| *s > 0);
        }
        let held = if report.entries == 0 {
            0
        } else {
            report.last_seq + 1
        };
        if held < written {
            return Err(VerifyError {
                seq: Some(held),
                line: line + 1,
                reason: format!(
                    "the store holds {held} entries but this log has written {written}: the tail \
                     was truncated"
                ),
            });
        }
        Ok(report)
    }

    /// The archive cut the live log begins at (`None`: never archived, it begins at seq 0),
    /// once the store's first entry is checked against it: entries missing after the cut, or
    /// a first entry past it, fail.
    fn verified_start(&self) -> Result<Option<LogStart>, VerifyError> {
        let fail = |seq, reason: String| VerifyError {
            seq,
            line: 1,
            reason,
        };
        let start = self.log_start().map_err(|e| fail(None, e.to_string()))?;
        let first = self
            .first_stored_seq()
            .map_err(|e| fail(None, e.to_string()))?;
        match (start, first) {
            (None, _) => Ok(None),
            (Some(s), Some(f)) if f <= s.seq => Ok(Some(s)),
            (Some(s), f) => Err(fail(
                Some(s.seq),
                format!(
                    "the last archive cut at seq {}, but the log {}: entries after the cut were \
                     deleted",
                    s.seq,
                    match f {
                        Some(f) => format!("begins at seq {f}"),
                        None => "is empty".into(),
                    }
                ),
            )),
        }
    }

    /// Spawns a tokio task calling `checkpoint()` every `checkpoint_interval` (on the blocking
    /// pool, since store writes fsync). It stops when the last `Arc` to the log is dropped.
    pub fn spawn_checkpoint_timer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let period = self.opts.checkpoint_interval.max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                let Some(log) = weak.upgrade() else { return };
                match tokio::task::spawn_blocking(move || log.checkpoint()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "audit checkpoint failed"),
                    Err(e) => tracing::warn!(error = %e, "audit checkpoint task failed"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
