//! Archiving the log's oldest entries (`airlock audit archive`): the entries before a signed
//! checkpoint (the cut) go to a file and then leave the store, with their by-review index keys,
//! so the log stops growing without bound and keeps its tamper-evidence. The cut checkpoint is
//! both the file's last line and the log's first entry; [`LOG_START_META_KEY`] in the Meta tree
//! names it (seq and hash), and an `archived` entry in the chain records the cut, the count and
//! the file's SHA-256.
//!
//! Order, so that a crash anywhere leaves a log that verifies and a run again finishes the job:
//!
//! 1. the file is written under a temporary name beside its own, fsynced, verified (chain and
//!    checkpoint signatures) and linked into place, never over an existing file (one holding
//!    exactly this export is taken as the file of a run cut short);
//! 2. one commit appends the `archived` entry and moves [`LOG_START_META_KEY`] to the cut; a
//!    checkpoint signs it and the anchor names that checkpoint;
//! 3. the entries before the cut are deleted [`DELETE_BATCH`] at a time, each batch with the
//!    index keys of its entries ([`AuditLog::remove_archived`]): memory stays flat, and a run
//!    that finds this step unfinished finishes it first.
//!
//! Which entries are still needed (an open review's) is the gate's business: it passes the
//! first such seq as [`Needed`]. Docs: `docs/audit.md`, "Archiving".

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::chain::{entry_hash, seq_key, CHECKPOINT_KIND, KEY_ROTATED_KIND};
use super::event::{Archive, Event};
use super::verify::{verify_archive_lines, VerifyError};
use super::{join_key, review_key, AuditError, AuditLog, Landed};
use crate::store::{Batch, Tree};

/// Kind of the entry recording an archive.
pub const ARCHIVED_KIND: &str = "archived";
/// [`Tree::Meta`] key naming the checkpoint the log begins at after an archive ([`LogStart`]).
pub const LOG_START_META_KEY: &[u8] = b"audit:log-start";
/// Entries deleted per store commit.
const DELETE_BATCH: usize = 1000;
/// Entries read per step while looking back for the cut checkpoint.
const SCAN_WINDOW: u64 = 1024;
/// Entries read per store range while writing the file.
const WRITE_PAGE: usize = 10_000;

/// The checkpoint the log begins at since the last archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStart {
    pub seq: u64,
    /// Hex SHA-256 of the entry's bytes.
    pub hash: String,
}

impl From<crate::store::StoreError> for ArchiveError {
    fn from(e: crate::store::StoreError) -> ArchiveError {
        ArchiveError::Audit(AuditError::Store(e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Nothing was changed: why the archive cannot be made as asked.
    #[error("{0}")]
    Refused(String),
    #[error("the archive file did not verify, so nothing was removed: {0}")]
    Unverified(VerifyError),
    #[error("archive file {path}: {err}")]
    File { path: String, err: std::io::Error },
}

/// The first entry still needed by something that reads old entries (an open review's history,
/// which a send checks), and why: the cut may not pass it.
#[derive(Debug, Clone)]
pub struct Needed {
    pub seq: u64,
    pub why: String,
}

/// What an archive cuts: the entries `from_seq..cut_seq` leave the store; `cut_seq` stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePlan {
    pub from_seq: u64,
    pub cut_seq: u64,
    /// Hex SHA-256 of the cut checkpoint's bytes.
    pub cut_hash: String,
}

/// An archive file written and verified.
#[derive(Debug, Clone)]
pub struct ArchiveFile {
    pub path: PathBuf,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Lines (entries `from_seq..=cut_seq`).
    pub lines: u64,
    /// It was already there, byte for byte (a run cut short after writing it).
    pub adopted: bool,
}

/// Removes the temporary file unless it was linked into place.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |err| ArchiveError::File {
        path: path.display().to_string(),
        err,
    }
}

/// The seq of an audit store key.
fn key_seq(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

fn kind_of(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("kind").and_then(Value::as_str).map(str::to_string)
}

/// Hex SHA-256 of a file's bytes, read in pieces.
fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

impl AuditLog {
    /// The checkpoint the log begins at since the last archive (`None`: never archived).
    pub fn log_start(&self) -> Result<Option<LogStart>, AuditError> {
        let Some(bytes) = self.store.get(Tree::Meta, LOG_START_META_KEY)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AuditError::Corrupt(format!("audit:log-start is not readable: {e}")))
    }

    /// The seq of the first entry the store holds (`None`: the log is empty).
    pub fn first_stored_seq(&self) -> Result<Option<u64>, AuditError> {
        let rows = self.store.range(Tree::Audit, &[], None, 1)?;
        Ok(rows.first().and_then(|(k, _)| key_seq(k)))
    }

    /// The seq of the first entry about review `id` (its own or a resend's), if the store
    /// holds any: two index reads.
    pub fn first_seq_of_review(&self, id: &str) -> Result<Option<u64>, AuditError> {
        let own = self.indexed_seqs(&review_key(id, 0), 1)?;
        let joins = self.indexed_seqs(&join_key(id, 0), 1)?;
        Ok(own.into_iter().chain(joins).min())
    }

    /// An archive whose deletions did not finish: the first seq still stored, and the cut.
    pub fn unfinished_archive(&self) -> Result<Option<(u64, LogStart)>, AuditError> {
        let Some(start) = self.log_start()? else {
            return Ok(None);
        };
        Ok(match self.first_stored_seq()? {
            Some(first) if first < start.seq => Some((first, start)),
            _ => None,
        })
    }

    /// Picks the cut for `airlock audit archive --before SEQ`: the newest checkpoint at or
    /// before `before` after the log's first entry (not a key rotation's handoff checkpoint: the
    /// log could not say which key signs after it). Refused when there is none, when an
    /// earlier archive is unfinished, when it is past the anchor (not yet anchored), or past
    /// `needed`.
    pub fn plan_archive(
        &self,
        before: u64,
        needed: Option<&Needed>,
    ) -> Result<ArchivePlan, ArchiveError> {
        if let Some((first, start)) = self.unfinished_archive()? {
            return Err(ArchiveError::Refused(format!(
                "the archive cut at seq {} has not removed seq {first}.. yet; run `airlock audit \
                 archive` again to finish it first",
                start.seq
            )));
        }
        let Some(from) = self.first_stored_seq()? else {
            return Err(ArchiveError::Refused("the audit log is empty".into()));
        };
        let last = self.lock().next_seq.saturating_sub(1);
        let Some((cut, bytes)) = self.find_cut(from, before.min(last))? else {
            return Err(ArchiveError::Refused(format!(
                "no checkpoint at or before seq {before} after the log's first entry (seq \
                 {from}): nothing to archive (the cut must be a signed checkpoint; `airlock \
                 audit export` shows where they are)"
            )));
        };
        match *self.anchored_lock() {
            Some(anchor) if cut <= anchor => {}
            Some(anchor) => {
                return Err(ArchiveError::Refused(format!(
                    "the cut (checkpoint seq {cut}) is past the checkpoint the audit anchor names \
                     (seq {anchor}); archive up to seq {anchor} at most"
                )))
            }
            None => {
                return Err(ArchiveError::Refused(
                    "the audit anchor names no checkpoint yet: sign one first (`airlock audit \
                     checkpoint`)"
                        .into(),
                ))
            }
        }
        if let Some(n) = needed.filter(|n| cut > n.seq) {
            return Err(ArchiveError::Refused(format!(
                "the cut (checkpoint seq {cut}) would archive seq {}, which is still needed: {}; \
                 archive with --before {} or less (the cut is then the newest checkpoint before \
                 it, if there is one), or archive further once that review is decided",
                n.seq, n.why, n.seq
            )));
        }
        Ok(ArchivePlan {
            from_seq: from,
            cut_seq: cut,
            cut_hash: hex::encode(entry_hash(&bytes)),
        })
    }

    /// The newest checkpoint in `(from, hi]` not right after a `key_rotated` entry, with its
    /// bytes; read backwards a window at a time.
    fn find_cut(&self, from: u64, hi: u64) -> Result<Option<(u64, Vec<u8>)>, AuditError> {
        let mut hi = hi;
        while hi > from {
            let lo = hi.saturating_sub(SCAN_WINDOW).max(from);
            let end = seq_key(hi.saturating_add(1));
            let rows = self
                .store
                .range(Tree::Audit, &seq_key(lo), Some(&end), usize::MAX)?;
            for i in (0..rows.len()).rev() {
                let (key, bytes) = &rows[i];
                let Some(seq) = key_seq(key).filter(|s| *s > from) else {
                    continue;
                };
                if kind_of(bytes).as_deref() != Some(CHECKPOINT_KIND) {
                    continue;
                }
                let before = match i.checked_sub(1) {
                    Some(j) => kind_of(&rows[j].1),
                    None => kind_of(&self.load(seq - 1)?.0),
                };
                if before.as_deref() != Some(KEY_ROTATED_KIND) {
                    return Ok(Some((seq, bytes.clone())));
                }
            }
            hi = lo.saturating_sub(1);
            if lo == from {
                break;
            }
        }
        Ok(None)
    }

    /// Writes the entries `plan.from_seq..=plan.cut_seq` to `out` as `audit export` does (a
    /// temporary file beside it, fsynced, then linked into place, never over another file) and
    /// verifies it before anything is removed: the chain, every checkpoint's signature with
    /// this log's keys, and that it begins and ends where the plan says. A file already at
    /// `out` holding exactly these bytes (a run cut short) is taken as it is.
    pub fn write_archive(
        &self,
        plan: &ArchivePlan,
        out: &Path,
    ) -> Result<ArchiveFile, ArchiveError> {
        let (tmp, file) = crate::secret_file::temp_beside(out, 0o600).map_err(file_err(out))?;
        let tmp = TempFile(Some(tmp));
        let tmp_path = tmp.0.clone().unwrap_or_default();
        let mut w = BufWriter::new(file);
        let mut hasher = Sha256::new();
        let mut lines = 0u64;
        let end = seq_key(plan.cut_seq.saturating_add(1));
        let mut from = seq_key(plan.from_seq).to_vec();
        loop {
            let rows = self
                .store
                .range(Tree::Audit, &from, Some(&end), WRITE_PAGE)?;
            let Some((last, _)) = rows.last() else { break };
            from = [last.as_slice(), &[0]].concat();
            for (_, v) in &rows {
                w.write_all(v).map_err(file_err(out))?;
                w.write_all(b"\n").map_err(file_err(out))?;
                hasher.update(v);
                hasher.update(b"\n");
                lines += 1;
            }
        }
        w.flush().map_err(file_err(out))?;
        w.get_ref().sync_all().map_err(file_err(out))?;
        drop(w);
        let sha256 = hex::encode(hasher.finalize());
        self.verify_archive_file(plan, &tmp_path)?;

        if std::fs::symlink_metadata(out).is_ok() {
            let theirs = file_sha256(out).map_err(file_err(out))?;
            if theirs != sha256 {
                return Err(ArchiveError::Refused(format!(
                    "{} exists and is not this archive: nothing was overwritten or removed; \
                     choose another --out",
                    out.display()
                )));
            }
            return Ok(ArchiveFile {
                path: out.to_path_buf(),
                sha256,
                lines,
                adopted: true,
            });
        }
        match std::fs::hard_link(&tmp_path, out) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ArchiveError::Refused(format!(
                    "{} appeared meanwhile: nothing was overwritten or removed",
                    out.display()
                )))
            }
            Err(e) => return Err(file_err(out)(e)),
        }
        drop(tmp);
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(file_err(&dir))?;
        Ok(ArchiveFile {
            path: out.to_path_buf(),
            sha256,
            lines,
            adopted: false,
        })
    }

    /// Reads the archive file back and verifies it against the plan.
    fn verify_archive_file(&self, plan: &ArchivePlan, path: &Path) -> Result<(), ArchiveError> {
        let retired = super::rotate::retired(self.store.as_ref())?;
        let mut keys: Vec<&str> = retired.iter().map(|r| r.pubkey.as_str()).collect();
        keys.push(self.public_key_hex.as_str());
        let start = self.log_start()?;
        let f = std::fs::File::open(path).map_err(file_err(path))?;
        let (mut first_hash, mut cut_hash) = (None, None);
        let report = verify_archive_lines(BufReader::new(f), &keys, |seq, bytes, line| {
            if line == 1 {
                first_hash = Some(hex::encode(entry_hash(bytes)));
            }
            if seq == plan.cut_seq {
                cut_hash = Some(hex::encode(entry_hash(bytes)));
            }
        })
        .map_err(ArchiveError::Unverified)?;
        let unverified = |reason: String| {
            ArchiveError::Unverified(VerifyError {
                seq: None,
                line: 0,
                reason,
            })
        };
        if report.first_seq != plan.from_seq || report.last_seq != plan.cut_seq {
            return Err(unverified(format!(
                "it holds seq {}..={}, not {}..={}",
                report.first_seq, report.last_seq, plan.from_seq, plan.cut_seq
            )));
        }
        if report.last_signed_seq != Some(plan.cut_seq) || cut_hash.as_ref() != Some(&plan.cut_hash)
        {
            return Err(unverified("it does not end on the cut checkpoint".into()));
        }
        // A log that began at an earlier cut: the file begins at that checkpoint.
        if let Some(start) = start.filter(|s| s.seq == plan.from_seq) {
            if first_hash.as_ref() != Some(&start.hash) {
                return Err(unverified(format!(
                    "its first entry is not the checkpoint the log began at (seq {})",
                    start.seq
                )));
            }
        }
        Ok(())
    }

    /// Records the archive: the `archived` entry and the log's new start in one commit (both or
    /// neither), then a checkpoint signing it, which the anchor names. Nothing is removed yet.
    pub fn record_archive(
        &self,
        plan: &ArchivePlan,
        file: &ArchiveFile,
        by: String,
    ) -> Result<(), ArchiveError> {
        let old = self.store.get(Tree::Meta, LOG_START_META_KEY)?;
        let start = LogStart {
            seq: plan.cut_seq,
            hash: plan.cut_hash.clone(),
        };
        let start = serde_json::to_vec(&start)
            .map_err(|e| AuditError::Corrupt(format!("log start: {e}")))?;
        let mut with = Batch::default();
        with.expect(Tree::Meta, LOG_START_META_KEY, old.as_deref())
            .put(Tree::Meta, LOG_START_META_KEY, &start);
        let event = Event::Archived(Archive {
            cut_seq: plan.cut_seq,
            cut_hash: plan.cut_hash.clone(),
            from_seq: plan.from_seq,
            removed: plan.cut_seq - plan.from_seq,
            file_sha256: file.sha256.clone(),
            file: file.path.display().to_string(),
            by,
        });
        match self.append_if(event, with)? {
            Landed::Durable => {}
            Landed::Unflushed => {
                return Err(ArchiveError::Refused(
                    "the archive entry was written but the store could not confirm it durable; \
                     nothing was removed: run `airlock audit archive` again"
                        .into(),
                ))
            }
            Landed::Changed => {
                return Err(ArchiveError::Refused(
                    "the log's start changed meanwhile (another archive?); nothing was removed"
                        .into(),
                ))
            }
        }
        let anchor = self.anchor_path.display().to_string();
        self.sign_and_anchor(false, |e| {
            AuditError::Anchor(format!(
                "the archive is recorded, but the anchor {anchor} could not be written: {e}"
            ))
        })?;
        Ok(())
    }

    /// Deletes the entries before the log's start (the last archive's cut) and their index
    /// keys, [`DELETE_BATCH`] per commit, at most `max_batches` commits (`None`: all). Returns
    /// how many were deleted. The cut itself must be stored, with the hash the start names.
    pub fn remove_archived(&self, max_batches: Option<usize>) -> Result<u64, ArchiveError> {
        let Some(start) = self.log_start()? else {
            return Ok(0);
        };
        let stored = self.store.get(Tree::Audit, &seq_key(start.seq))?;
        if stored.map(|b| hex::encode(entry_hash(&b))).as_ref() != Some(&start.hash) {
            return Err(ArchiveError::Audit(AuditError::Corrupt(format!(
                "the archive cut (seq {}) is not stored as audit:log-start names it; nothing \
                 was removed",
                start.seq
            ))));
        }
        let end = seq_key(start.seq);
        let mut removed = 0u64;
        let mut batches = 0usize;
        while max_batches.is_none_or(|m| batches < m) {
            let rows = self
                .store
                .range(Tree::Audit, &[], Some(&end), DELETE_BATCH)?;
            if rows.is_empty() {
                break;
            }
            let mut batch = Batch::default();
            for (key, bytes) in &rows {
                let entry: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
                if let (Some(id), Some(seq)) =
                    (entry.get("review_id").and_then(Value::as_str), key_seq(key))
                {
                    batch.delete(Tree::Index, &review_key(id, seq));
                    batch.delete(Tree::Index, &join_key(id, seq));
                }
                batch.delete(Tree::Audit, key);
            }
            self.store.apply(batch)?;
            removed += rows.len() as u64;
            batches += 1;
        }
        Ok(removed)
    }
}
