//! Accepting a restored store (`airlock audit accept-restore`, with Airlock stopped). A copy
//! taken before some calls were decided and sent holds them as they were then: `pending`,
//! `approved`, `failed`. Recovery sends a fresh `approved` review on start, and a reviewer
//! could approve a `pending` one again; either may send a call a second time. So accepting the
//! restore, before anything can send:
//!
//! - every `approved` and `executing` review becomes `outcome_unknown` (never sent again
//!   without a human retry), each with its `review` audit entry, in one write;
//! - every review a human may still send (`pending`, `failed`, `outcome_unknown`) carries a
//!   [`Restored`] mark that its views show as a warning;
//! - every one-click link issued before now stops working ([`links::NOT_BEFORE_KEY`]): the
//!   copy may have lost the record of its use;
//! - the `restore_accepted` entry records the counts, in the write that clears
//!   [`RESTORE_IN_PROGRESS_KEY`] (set first: until then `serve` refuses the store, so an
//!   interrupted run is run again, not half taken).
//!
//! Reviews are walked by the state index in chunks ([`CHUNK`] ids, [`CHUNK_BYTES`] of records),
//! so memory stays flat whatever the store holds.

use std::path::Path;
use std::sync::Arc;

use super::index;
use super::review::{rfc3339, Execution, Restored, Review, ReviewState};
use super::GateError;
use crate::audit::{AuditLog, AuditOptions, Landed, RestoreAccepted, RESTORE_IN_PROGRESS_KEY};
use crate::notify::links;
use crate::store::{get_within, Batch, Store, Tree};

/// Review ids read per chunk.
const CHUNK: usize = 1000;
/// A chunk stops reading records once they reach this many bytes (after at least one).
const CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// Why an `approved` review of a restored store is not sent.
const APPROVED_WHY: &str = "restored from a backup taken while this request was approved and \
     not yet sent: it may have been sent after the copy was taken, so it is not sent \
     automatically; check the upstream, and retry only if the call did not happen";
/// Why an `executing` review of a restored store is given up.
const EXECUTING_WHY: &str = "restored from a backup taken while this request was being sent: \
     it may or may not have reached the upstream and is not retried automatically; check the \
     upstream, and retry only if the call did not happen";

/// `airlock audit accept-restore`: opens the log of the store at hand without its anchor
/// check, marks the reviews (module docs), records the `restore_accepted` entry and points the
/// anchor at a new checkpoint. `declare`: the operator says the store was restored though the
/// anchor matches it (the anchor came back with the copy); without it, a matching anchor is
/// refused (nothing says there was a restore). Run with Airlock stopped.
pub fn accept(
    store: Arc<dyn Store>,
    key_path: &Path,
    origin: String,
    opts: AuditOptions,
    declare: bool,
    now_ms: u64,
) -> Result<RestoreAccepted, GateError> {
    let (log, mut accepted) =
        AuditLog::open_restored(store.clone(), key_path, origin, opts).map_err(audit)?;
    let interrupted = store.get(Tree::Meta, RESTORE_IN_PROGRESS_KEY)?.is_some();
    if !declare && !interrupted && log.anchor_matches(&accepted).map_err(audit)? {
        return Err(GateError::BadRequest(format!(
            "the audit anchor {} matches this store, so nothing says it was restored; if it \
             was (restored from a copy that held the anchor too), run `airlock audit \
             accept-restore --declare`",
            crate::audit::anchor_path_for(key_path).display()
        )));
    }
    index::ensure_built(store.as_ref())?;
    let copy_ends = match accepted.log_end_seq {
        Some(seq) => log.entry_time(seq).map_err(audit)?,
        None => None,
    };
    let mark = Restored::new(now_ms, copy_ends.as_deref());
    begin(store.as_ref(), now_ms)?;
    let mut unknown = 0;
    for state in [ReviewState::Approved, ReviewState::Executing] {
        unknown += walk(store.as_ref(), state, |chunk| {
            give_up_chunk(&log, chunk, &mark, now_ms)
        })?;
    }
    let mut marked = unknown;
    for state in [
        ReviewState::Pending,
        ReviewState::Failed,
        ReviewState::OutcomeUnknown,
    ] {
        marked += walk(store.as_ref(), state, |chunk| {
            mark_chunk(store.as_ref(), chunk, &mark)
        })?;
    }
    accepted.declared = declare;
    accepted.reviews_outcome_unknown = unknown;
    accepted.reviews_marked = marked;
    accepted.links_not_before = Some(rfc3339(now_ms));
    let mut done = Batch::default();
    done.delete(Tree::Meta, RESTORE_IN_PROGRESS_KEY);
    log.record_restore(accepted.clone(), done).map_err(audit)?;
    Ok(accepted)
}

fn audit(e: crate::audit::AuditError) -> GateError {
    match e {
        crate::audit::AuditError::Store(e) => GateError::Store(e),
        e => GateError::Audit(e.to_string()),
    }
}

/// Sets [`RESTORE_IN_PROGRESS_KEY`] and moves the links' not-before to `now_ms` (never back),
/// in one write, before any review changes.
fn begin(store: &dyn Store, now_ms: u64) -> Result<(), GateError> {
    let earlier = store
        .get(Tree::Meta, links::NOT_BEFORE_KEY)?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let started = serde_json::json!({ "started_at_ms": now_ms }).to_string();
    let mut b = Batch::default();
    b.put(Tree::Meta, RESTORE_IN_PROGRESS_KEY, started.as_bytes())
        .put(
            Tree::Meta,
            links::NOT_BEFORE_KEY,
            now_ms.max(earlier).to_string().as_bytes(),
        );
    store.apply(b)?;
    Ok(())
}

/// Runs `f` on every review in `state`, a chunk (id, stored bytes) at a time, in index order;
/// returns the sum of what `f` returns.
fn walk(
    store: &dyn Store,
    state: ReviewState,
    mut f: impl FnMut(Vec<(String, Vec<u8>)>) -> Result<u64, GateError>,
) -> Result<u64, GateError> {
    let mut n = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (found, last) = index::in_state(store, state, after.as_deref(), CHUNK)?;
        let keys: Vec<&[u8]> = found.iter().map(|(id, _)| id.as_bytes()).collect();
        let records = get_within(store, Tree::Reviews, &keys, CHUNK_BYTES)?;
        let used = records.len();
        let chunk = found
            .iter()
            .zip(records)
            .filter_map(|((id, _), bytes)| Some((id.clone(), bytes?)))
            .collect();
        n += f(chunk)?;
        after = super::recover::resume_key(&found, used, last);
        if after.is_none() {
            return Ok(n);
        }
    }
}

/// The review stored as `bytes`, if it is readable (an unreadable record is left as it is:
/// nothing can send it, recovery included).
fn readable(id: &str, bytes: &[u8]) -> Option<Review> {
    super::decode_review(id, bytes)
        .inspect_err(|e| {
            tracing::error!(review = %id, error = %e, "an unreadable review of a restored store is left as it is");
        })
        .ok()
}

/// A store write that did not land: something else writes the store.
fn changed() -> GateError {
    GateError::Changed(
        "a review changed while the restore was being accepted: is Airlock running? Stop it \
         and run `airlock audit accept-restore` again"
            .into(),
    )
}

/// Makes the `approved` and `executing` reviews of `chunk` `outcome_unknown`, marked, each with
/// its audit entry (both or neither). Any that does not land fails the run: it could be sent.
fn give_up_chunk(
    log: &AuditLog,
    chunk: Vec<(String, Vec<u8>)>,
    mark: &Restored,
    now_ms: u64,
) -> Result<u64, GateError> {
    let mut items = Vec::with_capacity(chunk.len());
    for (id, bytes) in chunk {
        let Some(old) = readable(&id, &bytes)
            .filter(|r| matches!(r.state, ReviewState::Approved | ReviewState::Executing))
        else {
            continue;
        };
        let mut next = old.clone();
        next.state = ReviewState::OutcomeUnknown;
        next.version = old.version + 1;
        next.updated_at_ms = now_ms;
        next.restored = Some(mark.clone());
        if old.state == ReviewState::Approved {
            // No attempt of its own on record: one may have begun right after the approval.
            if let Some(e) = next.execution.take() {
                next.attempts.push(e);
            }
            let mut e = Execution::started(old.updated_at_ms);
            e.finished_at_ms = Some(now_ms);
            e.error = Some(APPROVED_WHY.into());
            next.execution = Some(e);
        } else if let Some(e) = next.execution.as_mut() {
            e.error = Some(EXECUTING_WHY.into());
            e.finished_at_ms.get_or_insert(now_ms);
        }
        let mut b = replacing(&id, &bytes, &next)?;
        index::reindex(&mut b, Some(&old), Some(&next));
        items.push((super::events::transition_event(&old, &next), b));
    }
    let mut n = 0;
    for w in log.append_all_if(items) {
        match w.map_err(audit)? {
            Landed::Durable | Landed::Unflushed => n += 1,
            Landed::Changed => return Err(changed()),
        }
    }
    Ok(n)
}

/// A batch writing `next` over review `id`, only while its record is still `bytes`.
fn replacing(id: &str, bytes: &[u8], next: &Review) -> Result<Batch, GateError> {
    let new_bytes = next.encode().map_err(|e| GateError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })?;
    let mut b = Batch::default();
    b.expect(Tree::Reviews, id.as_bytes(), Some(bytes)).put(
        Tree::Reviews,
        id.as_bytes(),
        &new_bytes,
    );
    Ok(b)
}

/// Marks the reviews of `chunk` [`Restored`] (no state changes, nor any index), in one
/// commit; one already marked by this run (made `outcome_unknown` above) is left.
fn mark_chunk(
    store: &dyn Store,
    chunk: Vec<(String, Vec<u8>)>,
    mark: &Restored,
) -> Result<u64, GateError> {
    let mut batches = Vec::with_capacity(chunk.len());
    for (id, bytes) in chunk {
        let Some(old) = readable(&id, &bytes) else {
            continue;
        };
        // Closed for retries (past its deadline, sealed): nobody may send it any more.
        if old.restored.as_ref() == Some(mark) || old.retry_closed {
            continue;
        }
        let mut next = old.clone();
        next.version = old.version + 1;
        next.restored = Some(mark.clone());
        batches.push(replacing(&id, &bytes, &next)?);
    }
    if batches.is_empty() {
        return Ok(0);
    }
    let landed = store.commit(batches)?;
    if landed.iter().any(|ok| !ok) {
        return Err(changed());
    }
    Ok(landed.len() as u64)
}
