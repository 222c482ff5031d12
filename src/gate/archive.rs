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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::{AuditOptions, AuditPath, Event, GateKind, Transition};
    use crate::gate::review::Review;
    use crate::store::{Backend, Batch, Tree};

    fn entry(id: &str) -> Event {
        Event::Review(Box::new(Transition {
            review_id: id.into(),
            decision_id: format!("dec_{id}"),
            from: "pending",
            to: "pending",
            gate: GateKind::Hard,
            tool: None,
            service: None,
            agent: None,
            method: "DELETE".into(),
            host: "api.github.com".into(),
            path: AuditPath::new("/repos/o/r"),
            approval_by: None,
            approvals: None,
            required: None,
            expires_at: None,
            retry_by: None,
            attempt: None,
            by: None,
            comment: None,
            approved_by: None,
            admin_token: None,
            execution: None,
        }))
    }

    /// Stores `review` (as `old` was) with its index keys.
    fn put(store: &dyn Store, old: Option<&Review>, review: &Review) {
        let mut b = Batch::default();
        b.put(
            Tree::Reviews,
            review.id.as_bytes(),
            &review.encode().expect("encode"),
        );
        index::reindex(&mut b, old, Some(review));
        assert!(store.apply(b).expect("put"));
    }

    /// The cut never passes the first entry of a review that can still be sent; once the
    /// review is finished its history may go.
    #[test]
    fn the_cut_stops_before_an_open_reviews_first_entry() {
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn Store> =
            crate::store::open(Backend::Redb, &dir.path().join("db")).expect("store");
        let opts = AuditOptions {
            checkpoint_every: 4,
            ..AuditOptions::default()
        };
        let key = dir.path().join("audit.key");
        let log = AuditLog::open(store.clone(), &key, "t".into(), opts).expect("log");
        let mut review = Review::sample("DELETE", "api.github.com", "/x", None, b"");
        review.id = "rev_open".into();
        review.expires_at_ms = u64::MAX / 2;
        put(store.as_ref(), None, &review);
        // Seq 0..=3, checkpoint 4, 5..=8, checkpoint 9, then seq 10 is the review's.
        for i in 0..8 {
            log.append(entry(&format!("rev_done_{i}"))).expect("append");
        }
        log.append(entry("rev_open")).expect("append");
        for i in 8..20 {
            log.append(entry(&format!("rev_done_{i}"))).expect("append");
        }
        log.checkpoint().expect("checkpoint");
        assert_eq!(log.first_seq_of_review("rev_open").expect("seq"), Some(10));

        let out = dir.path().join("a.jsonl");
        let refused = run(store.as_ref(), &log, 20, &out, "t".into()).expect_err("refused");
        let said = refused.to_string();
        assert!(
            said.contains("seq 10, which is still needed: review rev_open is pending"),
            "{said}"
        );
        assert!(!out.exists(), "nothing written");
        assert_eq!(log.first_stored_seq().expect("first"), Some(0));

        // Up to the checkpoint before it is fine.
        run(store.as_ref(), &log, 10, &out, "t".into()).expect("archived");
        assert_eq!(log.first_stored_seq().expect("first"), Some(9));

        // Rejected: nothing sends it any more, its history may be archived.
        let mut done = review.clone();
        done.state = crate::gate::ReviewState::Rejected;
        done.version += 1;
        put(store.as_ref(), Some(&review), &done);
        let out = dir.path().join("b.jsonl");
        run(store.as_ref(), &log, 20, &out, "t".into()).expect("archived");
        assert_eq!(log.first_stored_seq().expect("first"), Some(19));
        assert_eq!(log.first_seq_of_review("rev_open").expect("seq"), None);
        log.verify_live().expect("verifies");
    }
}
