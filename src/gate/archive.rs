//! `airlock audit archive` (Airlock stopped), the gate's part: which audit entries must stay.
//! A send checks the review's whole audit history (every approval and retry in its record must
//! have its entry: `execute.rs`), and a resend counts the entries that joined it; so the cut may
//! not pass the first entry of any review that can still be sent: `pending`, `approved`,
//! `executing`, and `failed` or `outcome_unknown` while a retry may still send them (the `u`
//! index). Finished reviews' histories may go: their views then say the entries were archived.
//! The walk reads review ids from the state indexes in chunks and one index key per review,
//! never a record: it costs what is open, not what the store holds.
//!
//! The archive itself (file, verification, the `archived` entry, deletion) is the audit log's
//! (`audit/archive.rs`).

use std::path::Path;

use super::index;
use super::review::ReviewState;
use crate::audit::{ArchiveError, ArchiveFile, ArchivePlan, AuditLog, Needed};
use crate::store::Store;

/// Review ids read per index range.
const CHUNK: usize = 1000;

/// What a run did.
#[derive(Debug)]
pub enum Outcome {
    /// An earlier run was cut short after recording its archive (cut at `cut_seq`): its
    /// deletions were finished, and nothing else was done.
    Finished { cut_seq: u64, removed: u64 },
    /// The entries before `plan.cut_seq` are in `file` and left the store.
    Archived {
        plan: ArchivePlan,
        file: ArchiveFile,
        removed: u64,
    },
}

/// Archives the log's entries before the newest checkpoint at or before `before` to `out`
/// (`audit/archive.rs` says how), unless an earlier run is unfinished: then that one is
/// finished ([`Outcome::Finished`]). `by` names who asked.
pub fn run(
    store: &dyn Store,
    log: &AuditLog,
    before: u64,
    out: &Path,
    by: String,
) -> Result<Outcome, ArchiveError> {
    if let Some((_, start)) = log.unfinished_archive()? {
        let removed = log.remove_archived(None)?;
        return Ok(Outcome::Finished {
            cut_seq: start.seq,
            removed,
        });
    }
    index::ensure_built(store)
        .map_err(|e| ArchiveError::Refused(format!("indexing the reviews: {e}")))?;
    let needed = still_needed(store, log)?;
    let plan = log.plan_archive(before, needed.as_ref())?;
    let file = log.write_archive(&plan, out)?;
    log.record_archive(&plan, &file, by)?;
    let removed = log.remove_archived(None)?;
    Ok(Outcome::Archived {
        plan,
        file,
        removed,
    })
}

/// The first audit entry of a review that can still be sent (module docs), if any.
pub fn still_needed(store: &dyn Store, log: &AuditLog) -> Result<Option<Needed>, ArchiveError> {
    let mut first: Option<Needed> = None;
    let mut consider = |ids: Vec<index::Indexed>, what: &str| -> Result<(), ArchiveError> {
        for (id, _) in ids {
            if let Some(seq) = log.first_seq_of_review(&id)? {
                if first.as_ref().is_none_or(|f| seq < f.seq) {
                    first = Some(Needed {
                        seq,
                        why: format!("review {id} is {what} and a send checks its history"),
                    });
                }
            }
        }
        Ok(())
    };
    for state in [
        ReviewState::Pending,
        ReviewState::Approved,
        ReviewState::Executing,
    ] {
        let mut after = None;
        loop {
            let (ids, last) = index::in_state(store, state, after.as_deref(), CHUNK)?;
            consider(ids, state.as_str())?;
            match last {
                Some(k) => after = Some(k),
                None => break,
            }
        }
    }
    let mut after = None;
    loop {
        let (ids, last) = index::retry_overdue(store, u64::MAX - 1, after.as_deref(), CHUNK)?;
        consider(ids, "failed or outcome_unknown (a retry may still send it)")?;
        match last {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    Ok(first)
}
