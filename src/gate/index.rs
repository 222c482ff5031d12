//! The review indexes, kept in [`Tree::Index`] and written in the same batch as the review
//! record they describe, so they are never out of step with it:
//!
//! - `c` listing: (all | agent | tool, value, state | any, newest first, id), for every state
//!   but pending;
//! - `p` deadline: (all | agent | tool, value, expiry, id), pending reviews only: the pending
//!   listing (soonest expiry first) and the sweeper both read it;
//! - `f` finished: (finished at, id), for retention;
//! - `n` counters: reviews per state;
//! - `j` joins: (agent, identity, slot) -> review id, while the review may still be sent: what
//!   an identical retry of the agent joins (`joins.rs`);
//! - `u` retry deadline: (expiry, id), `failed` and `outcome_unknown` reviews a retry may still
//!   send: the sweeper closes and seals each once its deadline passes.
//!
//! (`a`, audit entries by review, belongs to the audit log.) Every read here is a bounded
//! range: listing a page, finding what is overdue or past retention, costs what it returns.

use std::collections::HashMap;

use base64::Engine;

use super::review::{Review, ReviewState};
use super::GateError;
use crate::store::{
    counter_value, for_each_page, get_within, prefix_end, Batch, Store, StoreError, Tree,
};

const LISTED: u8 = b'c';
const DEADLINE: u8 = b'p';
const FINISHED: u8 = b'f';
const COUNT: u8 = b'n';
const JOIN: u8 = b'j';
const RETRY_DEADLINE: u8 = b'u';
/// [`Tree::Meta`] key recording that every review has its index entries.
const BUILT_KEY: &[u8] = b"index:reviews:v1";
/// [`Tree::Meta`] key recording that pending reviews have no `c` entry of their own state any
/// more (stores indexed before kept one, which nothing read; each hold and each decision
/// wrote three index keys fewer once it went).
const NO_PENDING_LISTED_KEY: &[u8] = b"index:reviews:v2";
/// [`Tree::Meta`] key recording that `failed` and `outcome_unknown` reviews have their `u`
/// entry (stores indexed before kept their secrets until retention removed them).
const RETRY_DEADLINES_KEY: &[u8] = b"index:reviews:v3";

/// A page holds at most this many reviews.
pub const MAX_LIMIT: usize = 1000;
/// A page stops adding reviews once their records' bytes reach this (after at least one), and
/// hands back a cursor, as a filtered page does past its read budget: a record carries its
/// request body (up to `gate.max_body_bytes`, base64) and its answer, so 1,000 of them could be
/// a few GB. 16 MiB holds a full page of the usual few-KB records; with 1 MiB bodies, about 12.
pub const PAGE_BYTES: usize = 16 * 1024 * 1024;
pub const DEFAULT_LIMIT: usize = 100;

fn push_str(k: &mut Vec<u8>, s: &str) {
    k.extend_from_slice(&(s.len() as u32).to_be_bytes());
    k.extend_from_slice(s.as_bytes());
}

/// Which reviews a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub state: Option<ReviewState>,
    pub agent: Option<String>,
    pub tool: Option<String>,
}

/// One page of a listing: pending reviews soonest expiry first, others newest first. It may
/// hold fewer than asked for and still have a next page (its records reached [`PAGE_BYTES`], or
/// a filtered page read its share of the index).
#[derive(Debug, Clone)]
pub struct Page {
    pub reviews: Vec<Review>,
    /// Pass back as `cursor` for the next page; `None`: this was the last.
    pub next_cursor: Option<String>,
}

/// The index dimension a review is filed under: everything, its agent, its tool.
fn dims(r: &Review) -> Vec<(u8, &str)> {
    let mut d = vec![(b'*', "")];
    if let Some(a) = &r.agent {
        d.push((b'a', a.as_str()));
    }
    if let Some(t) = &r.tool {
        d.push((b't', t.as_str()));
    }
    d
}

fn listed_prefix(dim: u8, value: &str, state: Option<ReviewState>) -> Vec<u8> {
    let mut k = vec![LISTED, dim];
    push_str(&mut k, value);
    push_str(&mut k, state.map_or("*", ReviewState::as_str));
    k
}

/// The `c` key filing `r` under `state` (`None`: any state) of one dimension.
fn listed_key(dim: u8, value: &str, state: Option<ReviewState>, r: &Review) -> Vec<u8> {
    let mut k = listed_prefix(dim, value, state);
    k.extend_from_slice(&(u64::MAX - r.created_at_ms).to_be_bytes()); // newest first
    k.extend_from_slice(r.id.as_bytes());
    k
}

fn deadline_prefix(dim: u8, value: &str) -> Vec<u8> {
    let mut k = vec![DEADLINE, dim];
    push_str(&mut k, value);
    k
}

fn count_key(state: ReviewState) -> Vec<u8> {
    let mut k = vec![COUNT];
    k.extend_from_slice(state.as_str().as_bytes());
    k
}

/// The prefix of `agent`'s join entries of one identity (`joins.rs`), before the slot.
pub(super) fn join_prefix(agent: &str, identity: &str) -> Vec<u8> {
    let mut k = vec![JOIN];
    push_str(&mut k, agent);
    push_str(&mut k, identity);
    k
}

/// `r`'s join entry key, while it keeps one (its value is the review id).
fn join_key(r: &Review) -> Option<Vec<u8>> {
    let join = r
        .join
        .as_ref()
        .filter(|_| super::joins::keeps_entry(r.state) && !r.retry_closed)?;
    let mut k = join_prefix(r.agent.as_deref()?, &join.identity);
    k.extend_from_slice(&join.slot.to_be_bytes());
    Some(k)
}

/// Every index key of `r` (values are empty).
fn keys(r: &Review) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (dim, value) in dims(r) {
        // Pending reviews are listed by the deadline keys instead (soonest expiry first).
        let own_state = (r.state != ReviewState::Pending).then_some(Some(r.state));
        for state in own_state.into_iter().chain([None]) {
            out.push(listed_key(dim, value, state, r));
        }
        if r.state == ReviewState::Pending {
            let mut k = deadline_prefix(dim, value);
            k.extend_from_slice(&r.expires_at_ms.to_be_bytes());
            k.extend_from_slice(r.id.as_bytes());
            out.push(k);
        }
    }
    if let Some(k) = retry_deadline_key(r) {
        out.push(k);
    }
    if r.state.is_final() {
        let mut k = vec![FINISHED];
        k.extend_from_slice(&r.updated_at_ms.to_be_bytes());
        k.extend_from_slice(r.id.as_bytes());
        out.push(k);
    }
    out
}

/// `r`'s `u` key, while a retry may still send it.
fn retry_deadline_key(r: &Review) -> Option<Vec<u8>> {
    let open = matches!(r.state, ReviewState::Failed | ReviewState::OutcomeUnknown);
    (open && !r.retry_closed).then(|| {
        let mut k = vec![RETRY_DEADLINE];
        k.extend_from_slice(&r.expires_at_ms.to_be_bytes());
        k.extend_from_slice(r.id.as_bytes());
        k
    })
}

/// Adds to `b` the index changes for a review going from `old` to `new` (`None`: absent).
pub fn reindex(b: &mut Batch, old: Option<&Review>, new: Option<&Review>) {
    let old_keys = old.map(keys).unwrap_or_default();
    let new_keys = new.map(keys).unwrap_or_default();
    for k in old_keys.iter().filter(|k| !new_keys.contains(k)) {
        b.delete(Tree::Index, k);
    }
    for k in new_keys.iter().filter(|k| !old_keys.contains(k)) {
        b.put(Tree::Index, k, &[]);
    }
    let (was, is) = (old.and_then(join_key), new.and_then(join_key));
    if was != is {
        if let Some(k) = was {
            b.delete(Tree::Index, &k);
        }
        if let (Some(k), Some(r)) = (is, new) {
            b.put(Tree::Index, &k, r.id.as_bytes());
        }
    }
    let (from, to) = (old.map(|r| r.state), new.map(|r| r.state));
    if from != to {
        if let Some(s) = from {
            b.add(Tree::Index, &count_key(s), -1);
        }
        if let Some(s) = to {
            b.add(Tree::Index, &count_key(s), 1);
        }
    }
}

/// How many reviews are in each state (kept as counters: no scan).
pub fn totals(store: &dyn Store) -> Result<Vec<(ReviewState, u64)>, StoreError> {
    let mut out = Vec::new();
    for s in ReviewState::ALL {
        let n = store
            .get(Tree::Index, &count_key(s))?
            .map_or(0, |v| counter_value(&v));
        out.push((s, n));
    }
    Ok(out)
}

fn load(store: &dyn Store, id: &[u8]) -> Result<Option<Review>, GateError> {
    decode(id, store.get(Tree::Reviews, id)?)
}

/// The review stored as `bytes` under `id`; `None`: removed by retention between the index
/// read and this one.
fn decode(id: &[u8], bytes: Option<Vec<u8>>) -> Result<Option<Review>, GateError> {
    bytes
        .map(|b| super::decode_review(&String::from_utf8_lossy(id), &b))
        .transpose()
}

/// One page of `q`, starting after `cursor` (from an earlier page of the same query).
pub fn page(
    store: &dyn Store,
    q: &Query,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page, GateError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    // The narrowest index; a second filter (agent and tool both) is checked on the record.
    let (dim, value, also_tool) = match (&q.agent, &q.tool) {
        (Some(a), t) => (b'a', a.as_str(), t.as_deref()),
        (None, Some(t)) => (b't', t.as_str(), None),
        (None, None) => (b'*', "", None),
    };
    let prefix = if q.state == Some(ReviewState::Pending) {
        deadline_prefix(dim, value)
    } else {
        listed_prefix(dim, value, q.state)
    };
    let mut start = match cursor {
        None => prefix.clone(),
        Some(c) => {
            let mut k = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .filter(|k| k.len() > prefix.len() + 8 && k.starts_with(&prefix))
                .ok_or_else(|| {
                    GateError::BadRequest(
                        "cursor does not belong to this listing; start again without it".into(),
                    )
                })?;
            k.push(0); // strictly after the last key returned
            k
        }
    };
    let end = prefix_end(&prefix);
    let mut reviews = Vec::new();
    // A filtered page reads a bounded number of index entries, then hands back a cursor.
    let mut budget = limit.saturating_mul(10).max(1000);
    let mut last: Option<Vec<u8>> = None;
    let mut bytes = 0;
    loop {
        let want = (limit - reviews.len()).min(budget);
        let rows = store.range(Tree::Index, &start, end.as_deref(), want)?;
        let exhausted = rows.len() < want;
        let ids: Vec<&[u8]> = rows
            .iter()
            .map(|(key, _)| key.get(prefix.len() + 8..).unwrap_or_default())
            .collect();
        // Records read up to the page's byte budget; each decoded (and its bytes dropped) in
        // turn.
        let records = get_within(store, Tree::Reviews, &ids, PAGE_BYTES - bytes)?;
        let read = records.len();
        for (id, record) in ids.into_iter().zip(records) {
            budget -= 1;
            bytes += record.as_ref().map_or(0, Vec::len);
            // One unreadable record (damaged, hand-edited) must not hide every other review,
            // nor stop recovery at start: it is skipped, and never sent.
            let decoded = decode(id, record).unwrap_or_else(|e| {
                tracing::error!(error = %e, "an unreadable review record is left out of a listing");
                None
            });
            if let Some(r) = decoded {
                if also_tool.is_none_or(|t| r.tool.as_deref() == Some(t)) {
                    reviews.push(r);
                }
            }
        }
        // The next read, and the cursor, start after the last key whose record was read.
        if let Some((key, _)) = read.checked_sub(1).and_then(|i| rows.get(i)) {
            start = key.clone();
            start.push(0);
            last = Some(key.clone());
        }
        // Stopped by bytes: the rest of these rows are the next page's.
        if read < rows.len() {
            break;
        }
        if exhausted {
            return Ok(Page {
                reviews,
                next_cursor: None,
            });
        }
        if reviews.len() >= limit || budget == 0 || bytes >= PAGE_BYTES {
            break;
        }
    }
    // A full page whose range ends right here has no next page (one key more tells).
    if store
        .range(Tree::Index, &start, end.as_deref(), 1)?
        .is_empty()
    {
        last = None;
    }
    let next_cursor = last.map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k));
    Ok(Page {
        reviews,
        next_cursor,
    })
}

/// How many reviews `agent` has pending with their deadline after `now_ms` (those at or past
/// it are the sweep's to expire), counted up to `limit` (one bounded index read).
pub fn pending_of_agent(
    store: &dyn Store,
    agent: &str,
    now_ms: u64,
    limit: usize,
) -> Result<usize, StoreError> {
    let prefix = deadline_prefix(b'a', agent);
    let end = prefix_end(&prefix);
    let mut start = prefix;
    start.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
    Ok(store
        .range(Tree::Index, &start, end.as_deref(), limit)?
        .len())
}

/// Up to `limit` pending reviews whose deadline is at or before `now_ms`, soonest first, after
/// the index key `after` (`None`: from the start), each as its id and index key (to pass as
/// `after` to go on from it); and the last key read, to pass as `after` for the next ones.
pub fn overdue(
    store: &dyn Store,
    now_ms: u64,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<Indexed>, Option<Vec<u8>>), StoreError> {
    let prefix = deadline_prefix(b'*', "");
    let end = until(&prefix, now_ms.saturating_add(1));
    ids_in(store, &prefix, after, &end, limit)
}

/// Up to `limit` `failed` or `outcome_unknown` reviews a retry may still send whose deadline is
/// at or before `now_ms`, soonest first, after the index key `after`, as [`overdue`] gives them;
/// and the last key read.
pub fn retry_overdue(
    store: &dyn Store,
    now_ms: u64,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<Indexed>, Option<Vec<u8>>), StoreError> {
    let prefix = [RETRY_DEADLINE];
    let end = until(&prefix, now_ms.saturating_add(1));
    ids_in(store, &prefix, after, &end, limit)
}

/// Deletes the `u` entries of `found` (from [`retry_overdue`]) whose review is gone or no longer
/// one a retry may send (an older build on a shared store retried it without removing the
/// entry; retention then removed the record): each only while the record is as read, so a
/// review the sweep just closed, or one that changed meanwhile, is left alone. Without this a
/// stale entry would be read again on every tick, for ever.
pub fn drop_stale_retry_deadlines(store: &dyn Store, found: &[Indexed]) -> Result<(), StoreError> {
    let ids: Vec<&[u8]> = found.iter().map(|(id, _)| id.as_bytes()).collect();
    let mut batches = Vec::new();
    for ((id, key), bytes) in found.iter().zip(store.get_many(Tree::Reviews, &ids)?) {
        let current = match &bytes {
            None => None,
            Some(b) => match super::decode_review(id, b) {
                Ok(r) => retry_deadline_key(&r),
                Err(_) => continue, // unreadable: left, and logged where it is read
            },
        };
        if current.as_deref() != Some(key.as_slice()) {
            let mut b = Batch::default();
            b.expect(Tree::Reviews, id.as_bytes(), bytes.as_deref())
                .delete(Tree::Index, key);
            batches.push(b);
        }
    }
    if !batches.is_empty() {
        store.commit(batches)?;
    }
    Ok(())
}

/// Up to `limit` finished reviews whose last change was before `cutoff_ms`, oldest first, after
/// the index key `after` (`None`: from the start), as [`overdue`] gives them; and the last key
/// read.
pub fn finished_before(
    store: &dyn Store,
    cutoff_ms: u64,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<Indexed>, Option<Vec<u8>>), StoreError> {
    let prefix = [FINISHED];
    let end = until(&prefix, cutoff_ms);
    ids_in(store, &prefix, after, &end, limit)
}

/// Up to `limit` reviews in `state`, in index order (pending: soonest deadline first; others:
/// newest first), after the index key `after` (`None`: from the start), as [`overdue`] gives
/// them; and the last key read. A review that leaves `state` leaves this range, so a walk
/// that changes states goes on from `after` as well.
pub fn in_state(
    store: &dyn Store,
    state: ReviewState,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<Indexed>, Option<Vec<u8>>), StoreError> {
    let prefix = match state {
        ReviewState::Pending => deadline_prefix(b'*', ""),
        s => listed_prefix(b'*', "", Some(s)),
    };
    let end = prefix_end(&prefix).unwrap_or_else(|| vec![u8::MAX; prefix.len() + 1]);
    ids_in(store, &prefix, after, &end, limit)
}

/// A review id and the index key it was found under.
pub type Indexed = (String, Vec<u8>);

/// The end of `prefix`'s keys whose 8-byte time is before `ms`.
fn until(prefix: &[u8], ms: u64) -> Vec<u8> {
    [prefix, &ms.to_be_bytes()].concat()
}

/// The review ids of up to `limit` keys of the form `prefix`, 8-byte time, id, strictly after
/// the key `after` (`None`: from the first) and before `end`, with their keys; and the last key
/// read.
fn ids_in(
    store: &dyn Store,
    prefix: &[u8],
    after: Option<&[u8]>,
    end: &[u8],
    limit: usize,
) -> Result<(Vec<Indexed>, Option<Vec<u8>>), StoreError> {
    let start = match after {
        Some(k) => [k, &[0]].concat(), // strictly after
        None => prefix.to_vec(),
    };
    let rows = store.range(Tree::Index, &start, Some(end), limit)?;
    let last = rows.last().map(|(k, _)| k.clone());
    let ids = rows
        .into_iter()
        .filter_map(|(k, _)| {
            let id = String::from_utf8_lossy(k.get(prefix.len() + 8..)?).into_owned();
            Some((id, k))
        })
        .collect();
    Ok((ids, last))
}

/// Files every review under the indexes once (a store from before them), or drops what an
/// earlier index version kept and no longer reads; a no-op after. Runs before the listeners
/// open, so nothing changes a review meanwhile; rerunning after an interruption is harmless
/// (index writes are idempotent, counters are set at the end). Returns the reviews indexed.
pub fn ensure_built(store: &dyn Store) -> Result<u64, GateError> {
    if store.get(Tree::Meta, BUILT_KEY)?.is_none() {
        return build_all(store);
    }
    if store.get(Tree::Meta, NO_PENDING_LISTED_KEY)?.is_none() {
        let n = drop_pending_listed(store)?;
        tracing::info!(
            reviews = n,
            "dropped the pending reviews' index entries an earlier version kept"
        );
    }
    if store.get(Tree::Meta, RETRY_DEADLINES_KEY)?.is_none() {
        let n = add_retry_deadlines(store)?;
        tracing::info!(
            reviews = n,
            "filed the failed and outcome-unknown reviews under their retry deadline"
        );
    }
    Ok(0)
}

/// Files every `failed` and `outcome_unknown` review under its retry deadline (`u`), walking
/// those two states' listings (cost: those reviews, not the history).
fn add_retry_deadlines(store: &dyn Store) -> Result<u64, GateError> {
    let mut n = 0u64;
    for state in [ReviewState::Failed, ReviewState::OutcomeUnknown] {
        let prefix = listed_prefix(b'*', "", Some(state));
        let end = prefix_end(&prefix);
        let mut start = prefix.clone();
        loop {
            let rows = store.range(Tree::Index, &start, end.as_deref(), 32)?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            start = last.clone();
            start.push(0);
            let ids: Vec<&[u8]> = rows
                .iter()
                .map(|(k, _)| k.get(prefix.len() + 8..).unwrap_or_default())
                .collect();
            // Filed as read: a write another instance makes meanwhile that keeps the entry
            // writes none of its own (its old and new records share it), and a stale one (the
            // review moved on) is dropped by the sweep that finds it.
            let mut batches = Vec::new();
            for (id, bytes) in ids.iter().zip(store.get_many(Tree::Reviews, &ids)?) {
                let Ok(Some(r)) = decode(id, bytes) else {
                    continue;
                };
                if let Some(k) = retry_deadline_key(&r) {
                    let mut b = Batch::default();
                    b.put(Tree::Index, &k, &[]);
                    batches.push(b);
                }
            }
            if !batches.is_empty() {
                n += store.commit(batches)?.into_iter().filter(|ok| *ok).count() as u64;
            }
        }
    }
    let mut b = Batch::default();
    b.put(Tree::Meta, RETRY_DEADLINES_KEY, b"1");
    store.apply(b)?;
    Ok(n)
}

fn build_all(store: &dyn Store) -> Result<u64, GateError> {
    let mut counts: HashMap<ReviewState, u64> = HashMap::new();
    let mut n = 0u64;
    for_each_page(store, Tree::Reviews, &[], 1000, |rows| {
        let mut b = Batch::default();
        for (key, bytes) in rows {
            match Review::decode(bytes) {
                Ok(r) => {
                    for k in keys(&r) {
                        b.put(Tree::Index, &k, &[]);
                    }
                    if let Some(k) = join_key(&r) {
                        b.put(Tree::Index, &k, r.id.as_bytes());
                    }
                    *counts.entry(r.state).or_default() += 1;
                    n += 1;
                }
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(key), error = %e, "unreadable review record not indexed")
                }
            }
        }
        store.apply(b).map(drop)
    })
    .map_err(GateError::Store)?;
    let mut b = Batch::default();
    for s in ReviewState::ALL {
        let c = counts.get(&s).copied().unwrap_or(0);
        b.put(Tree::Index, &count_key(s), &c.to_be_bytes());
    }
    b.put(Tree::Meta, BUILT_KEY, b"1");
    b.put(Tree::Meta, NO_PENDING_LISTED_KEY, b"1");
    b.put(Tree::Meta, RETRY_DEADLINES_KEY, b"1");
    store.apply(b)?;
    Ok(n)
}

/// Deletes the `c` entries of pending reviews' own state that index v1 kept, walking the
/// deadline index (cost: the pending reviews, not the history).
fn drop_pending_listed(store: &dyn Store) -> Result<u64, GateError> {
    let prefix = deadline_prefix(b'*', "");
    let end = prefix_end(&prefix);
    let mut start = prefix.clone();
    let mut n = 0u64;
    loop {
        let rows = store.range(Tree::Index, &start, end.as_deref(), 1000)?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        start = last.clone();
        start.push(0);
        let mut b = Batch::default();
        for (key, _) in &rows {
            let id = key.get(prefix.len() + 8..).unwrap_or_default();
            let Some(r) = load(store, id)? else { continue };
            if r.state != ReviewState::Pending {
                continue;
            }
            for (dim, value) in dims(&r) {
                b.delete(
                    Tree::Index,
                    &listed_key(dim, value, Some(ReviewState::Pending), &r),
                );
            }
            n += 1;
        }
        store.apply(b)?;
    }
    let mut b = Batch::default();
    b.put(Tree::Meta, NO_PENDING_LISTED_KEY, b"1");
    store.apply(b)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(id: &str, created: u64, state: ReviewState) -> Review {
        let mut r = Review::sample("DELETE", "api.github.com", "/repos/a/b", Some("t"), b"");
        r.id = id.into();
        r.agent = Some("bot".into());
        r.created_at_ms = created;
        r.expires_at_ms = created + 1000;
        r.state = state;
        r
    }

    fn file(store: &dyn Store, r: &Review) {
        let mut b = Batch::default();
        b.put(Tree::Reviews, r.id.as_bytes(), &r.encode().expect("encode"));
        reindex(&mut b, None, Some(r));
        assert!(store.apply(b).expect("apply"));
    }

    fn index_keys(store: &dyn Store) -> Vec<Vec<u8>> {
        let rows = store.range(Tree::Index, &[], None, 10_000).expect("range");
        rows.into_iter().map(|(k, _)| k).collect()
    }

    fn ids(store: &dyn Store, state: Option<ReviewState>) -> Vec<String> {
        let q = Query {
            state,
            ..Query::default()
        };
        let p = page(store, &q, 10, None).expect("page");
        p.reviews.into_iter().map(|r| r.id).collect()
    }

    #[test]
    fn a_pending_review_is_listed_by_its_deadline_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open(crate::store::Backend::Redb, dir.path()).expect("open");
        let pending = review("rev_p", 10, ReviewState::Pending);
        let own_state = listed_prefix(b'*', "", Some(ReviewState::Pending));
        assert!(keys(&pending).iter().all(|k| !k.starts_with(&own_state)));
        // Three dimensions (all, agent, tool): "any state" and deadline entries for each.
        assert_eq!(keys(&pending).len(), 6);
        let mut expired = pending.clone();
        expired.state = ReviewState::Expired;
        // Own state and any state per dimension, and the finished key.
        assert_eq!(keys(&expired).len(), 7);

        file(store.as_ref(), &pending);
        assert_eq!(ids(store.as_ref(), Some(ReviewState::Pending)), ["rev_p"]);
        assert_eq!(
            overdue(store.as_ref(), 2000, None, 10)
                .expect("overdue")
                .0
                .into_iter()
                .map(|(id, _)| id)
                .collect::<Vec<_>>(),
            ["rev_p"]
        );
        let mut b = Batch::default();
        b.put(Tree::Reviews, b"rev_p", &expired.encode().expect("encode"));
        reindex(&mut b, Some(&pending), Some(&expired));
        assert!(store.apply(b).expect("apply"));
        assert!(ids(store.as_ref(), Some(ReviewState::Pending)).is_empty());
        assert_eq!(ids(store.as_ref(), Some(ReviewState::Expired)), ["rev_p"]);
        assert_eq!(ids(store.as_ref(), None), ["rev_p"]);
        assert!(overdue(store.as_ref(), 2000, None, 10)
            .expect("overdue")
            .0
            .is_empty());
    }

    #[test]
    fn a_join_entry_lives_while_its_review_may_be_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open(crate::store::Backend::Redb, dir.path()).expect("open");
        let mut r = review("rev_j", 10, ReviewState::Pending);
        r.join = Some(super::super::joins::Join::of(&r.request, b"", false));
        let prefix = join_prefix("bot", &r.join.as_ref().expect("join").identity);
        let entries = |store: &dyn Store| {
            store
                .range(Tree::Index, &prefix, None, 10)
                .expect("range")
                .into_iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
        };
        file(store.as_ref(), &r);
        assert_eq!(entries(store.as_ref()), [b"rev_j".to_vec()]);
        let mut last = r.clone();
        for (state, kept) in [
            (ReviewState::Approved, true),
            (ReviewState::Executing, true),
            (ReviewState::OutcomeUnknown, true),
            (ReviewState::Approved, true),
            (ReviewState::Executing, true),
            (ReviewState::Executed, false),
        ] {
            let mut next = last.clone();
            next.state = state;
            let mut b = Batch::default();
            reindex(&mut b, Some(&last), Some(&next));
            assert!(store.apply(b).expect("apply"));
            assert_eq!(
                entries(store.as_ref()).len(),
                usize::from(kept),
                "{state:?}"
            );
            last = next;
        }
        // A failed review keeps its entry until retention removes it with the review.
        let mut failed = r.clone();
        failed.state = ReviewState::Failed;
        let mut b = Batch::default();
        reindex(&mut b, None, Some(&failed));
        assert!(store.apply(b).expect("apply"));
        assert_eq!(entries(store.as_ref()).len(), 1);
        let mut b = Batch::default();
        reindex(&mut b, Some(&failed), None);
        assert!(store.apply(b).expect("apply"));
        assert!(entries(store.as_ref()).is_empty());
    }

    #[test]
    fn a_store_indexed_by_v1_loses_its_pending_listing_entries_and_lists_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open(crate::store::Backend::Redb, dir.path()).expect("open");
        assert_eq!(ensure_built(store.as_ref()).expect("build"), 0);
        let pending = review("rev_p", 10, ReviewState::Pending);
        let rejected = review("rev_r", 20, ReviewState::Rejected);
        file(store.as_ref(), &pending);
        file(store.as_ref(), &rejected);
        let v2 = index_keys(store.as_ref());
        // What index v1 also wrote for a pending review, and a store v1 built.
        let mut b = Batch::default();
        for (dim, value) in dims(&pending) {
            let k = listed_key(dim, value, Some(ReviewState::Pending), &pending);
            b.put(Tree::Index, &k, &[]);
        }
        b.delete(Tree::Meta, NO_PENDING_LISTED_KEY);
        assert!(store.apply(b).expect("apply"));
        assert_eq!(index_keys(store.as_ref()).len(), v2.len() + 3);

        assert_eq!(ensure_built(store.as_ref()).expect("migrate"), 0);
        assert_eq!(index_keys(store.as_ref()), v2);
        assert!(store
            .get(Tree::Meta, NO_PENDING_LISTED_KEY)
            .expect("get")
            .is_some());
        assert_eq!(ids(store.as_ref(), Some(ReviewState::Pending)), ["rev_p"]);
        assert_eq!(ids(store.as_ref(), None), ["rev_r", "rev_p"]);
    }

    /// Review of session 23: failed and outcome-unknown reviews were never sealed. A store
    /// indexed before files them under their retry deadline at start, once, and a closed one
    /// leaves it.
    #[test]
    fn retry_deadlines_are_filed_once_and_leave_when_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open(crate::store::Backend::Redb, dir.path()).expect("open");
        assert_eq!(ensure_built(store.as_ref()).expect("build"), 0);
        let failed = review("rev_f", 10, ReviewState::Failed);
        let unknown = review("rev_u", 20, ReviewState::OutcomeUnknown);
        let executed = review("rev_e", 30, ReviewState::Executed);
        let mut closed = review("rev_c", 40, ReviewState::Failed);
        closed.retry_closed = true;
        for r in [&failed, &unknown, &executed, &closed] {
            file(store.as_ref(), r);
        }
        let due = |now| -> Vec<String> {
            retry_overdue(store.as_ref(), now, None, 10)
                .expect("retry_overdue")
                .0
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        };
        assert_eq!(
            due(1010),
            ["rev_f"],
            "at its deadline, not before the other's"
        );
        assert_eq!(due(5000), ["rev_f", "rev_u"]);
        let filed = index_keys(store.as_ref());
        // A store from before: no `u` entry, no marker.
        let mut b = Batch::default();
        for r in [&failed, &unknown] {
            b.delete(Tree::Index, &retry_deadline_key(r).expect("open"));
        }
        b.delete(Tree::Meta, RETRY_DEADLINES_KEY);
        assert!(store.apply(b).expect("apply"));
        assert!(due(5000).is_empty());
        assert_eq!(ensure_built(store.as_ref()).expect("migrate"), 0);
        assert_eq!(index_keys(store.as_ref()), filed);
        assert_eq!(due(5000), ["rev_f", "rev_u"]);
        // Closed: its entry goes with the transition.
        let mut b = Batch::default();
        let mut now_closed = failed.clone();
        now_closed.retry_closed = true;
        reindex(&mut b, Some(&failed), Some(&now_closed));
        assert!(store.apply(b).expect("apply"));
        assert_eq!(due(5000), ["rev_u"]);

        // Stale entries (an older build retried one without removing its entry; retention
        // then removed another's record) are dropped; a live one stays.
        let mut retried = unknown.clone();
        retried.state = ReviewState::Executed;
        let mut b = Batch::default();
        b.put(Tree::Reviews, b"rev_u", &retried.encode().expect("encode"))
            .put(Tree::Index, &retry_deadline_key(&failed).expect("key"), &[])
            .delete(Tree::Reviews, b"rev_f");
        let live = review("rev_l", 50, ReviewState::Failed);
        assert!(store.apply(b).expect("apply"));
        file(store.as_ref(), &live);
        let (found, _) = retry_overdue(store.as_ref(), 5000, None, 10).expect("found");
        assert_eq!(found.len(), 3);
        drop_stale_retry_deadlines(store.as_ref(), &found).expect("drop");
        assert_eq!(due(5000), ["rev_l"]);
    }
}
