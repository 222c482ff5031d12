//! The review indexes, kept in [`Tree::Index`] and written in the same batch as the review
//! record they describe, so they are never out of step with it:
//!
//! - `c` listing: (all | agent | tool, value, state | any, newest first, id);
//! - `p` deadline: (all | agent | tool, value, expiry, id), pending reviews only;
//! - `f` finished: (finished at, id), for retention;
//! - `n` counters: reviews per state.
//!
//! (`a`, audit entries by review, belongs to the audit log.) Every read here is a bounded
//! range: listing a page, finding what is overdue or past retention, costs what it returns.

use std::collections::HashMap;

use base64::Engine;

use super::review::{Review, ReviewState};
use super::GateError;
use crate::store::{counter_value, for_each_page, prefix_end, Batch, Store, StoreError, Tree};

const LISTED: u8 = b'c';
const DEADLINE: u8 = b'p';
const FINISHED: u8 = b'f';
const COUNT: u8 = b'n';
/// [`Tree::Meta`] key recording that every review has its index entries.
const BUILT_KEY: &[u8] = b"index:reviews:v1";

/// A page holds at most this many reviews.
pub const MAX_LIMIT: usize = 1000;
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

/// One page of a listing: pending reviews soonest expiry first, others newest first.
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

/// Every index key of `r` (values are empty).
fn keys(r: &Review) -> Vec<Vec<u8>> {
    let newest_first = (u64::MAX - r.created_at_ms).to_be_bytes();
    let mut out = Vec::new();
    for (dim, value) in dims(r) {
        for state in [Some(r.state), None] {
            let mut k = listed_prefix(dim, value, state);
            k.extend_from_slice(&newest_first);
            k.extend_from_slice(r.id.as_bytes());
            out.push(k);
        }
        if r.state == ReviewState::Pending {
            let mut k = deadline_prefix(dim, value);
            k.extend_from_slice(&r.expires_at_ms.to_be_bytes());
            k.extend_from_slice(r.id.as_bytes());
            out.push(k);
        }
    }
    if r.state.is_final() {
        let mut k = vec![FINISHED];
        k.extend_from_slice(&r.updated_at_ms.to_be_bytes());
        k.extend_from_slice(r.id.as_bytes());
        out.push(k);
    }
    out
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
    let Some(bytes) = store.get(Tree::Reviews, id)? else {
        return Ok(None); // removed by retention between the index read and this one
    };
    Review::decode(&bytes)
        .map(Some)
        .map_err(|e| GateError::Corrupt {
            id: String::from_utf8_lossy(id).into_owned(),
            message: e.to_string(),
        })
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
    loop {
        let want = (limit - reviews.len()).min(budget);
        let rows = store.range(Tree::Index, &start, end.as_deref(), want)?;
        let exhausted = rows.len() < want;
        for (key, _) in rows {
            budget -= 1;
            let id = key.get(prefix.len() + 8..).unwrap_or_default();
            if let Some(r) = load(store, id)? {
                if also_tool.is_none_or(|t| r.tool.as_deref() == Some(t)) {
                    reviews.push(r);
                }
            }
            start = key.clone();
            start.push(0);
            last = Some(key);
        }
        if exhausted {
            return Ok(Page {
                reviews,
                next_cursor: None,
            });
        }
        if reviews.len() >= limit || budget == 0 {
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

/// Ids of up to `limit` pending reviews whose deadline is at or before `now_ms`.
pub fn overdue(store: &dyn Store, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
    let prefix = deadline_prefix(b'*', "");
    let mut end = prefix.clone();
    end.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
    ids_in(store, &prefix, &end, limit)
}

/// Ids of up to `limit` finished reviews whose last change was before `cutoff_ms`.
pub fn finished_before(
    store: &dyn Store,
    cutoff_ms: u64,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let prefix = [FINISHED];
    let mut end = prefix.to_vec();
    end.extend_from_slice(&cutoff_ms.to_be_bytes());
    ids_in(store, &prefix, &end, limit)
}

fn ids_in(
    store: &dyn Store,
    prefix: &[u8],
    end: &[u8],
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    Ok(store
        .range(Tree::Index, prefix, Some(end), limit)?
        .into_iter()
        .filter_map(|(k, _)| {
            k.get(prefix.len() + 8..)
                .map(|id| String::from_utf8_lossy(id).into_owned())
        })
        .collect())
}

/// Files every review under the indexes once (a store from before them); a no-op after.
/// Runs before the listeners open, so nothing changes a review meanwhile; rerunning after an
/// interruption is harmless (index writes are idempotent, counters are set at the end).
pub fn ensure_built(store: &dyn Store) -> Result<u64, GateError> {
    if store.get(Tree::Meta, BUILT_KEY)?.is_some() {
        return Ok(0);
    }
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
    store.apply(b)?;
    Ok(n)
}
