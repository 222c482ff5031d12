//! The audit anchor: a small file beside the signing key naming the last signed checkpoint this
//! instance stored (its seq and entry hash). Whoever can write the store can cut its tail or put
//! an older copy back, and the chain left still verifies; the anchor lives outside the store, so
//! on open the entry it names must still be there, with the same hash.

use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};

use serde::{Deserialize, Serialize};

use super::chain::{entry_hash, now_rfc3339_ms, seq_key};
use super::event::{Event, RestoreAccepted};
use super::{AuditError, AuditLog, AuditOptions};
use crate::secret_file::{read_owned, OwnedFileError};
use crate::store::{Store, Tree};

/// [`Tree::Meta`] key present while an `airlock audit accept-restore` marks the reviews of a
/// restored store: `serve` refuses to open the log until a run completes (and removes it in
/// the write of its `restore_accepted` entry).
pub const RESTORE_IN_PROGRESS_KEY: &[u8] = b"restore:in-progress";

/// What the anchor file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// Seq of the checkpoint entry.
    pub seq: u64,
    /// Hex SHA-256 of that entry's canonical bytes.
    pub hash: String,
    /// When this instance wrote the anchor (RFC 3339); informational.
    pub written_at: String,
}

/// Why the anchor file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Refused(String),
    #[error("malformed: {0}")]
    Malformed(String),
}

/// The anchor of the log signed with the key at `key_path`: `<key file name>.anchor` beside it.
pub fn path_for(key_path: &Path) -> PathBuf {
    beside_key(key_path, ".anchor")
}

/// `<key file name><suffix>` beside the key at `key_path`.
pub(super) fn beside_key(key_path: &Path, suffix: &str) -> PathBuf {
    let mut name = key_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "audit-key".into());
    name.push(suffix);
    key_path.with_file_name(name)
}

/// Reads the anchor; `None` if there is none. It must be a regular file of ours that nobody
/// else may change (it is not secret, but only Airlock may move it).
pub fn read(path: &Path) -> Result<Option<Anchor>, AnchorError> {
    let bytes = match read_owned(path, 0o022) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(OwnedFileError::Io(e)) => return Err(AnchorError::Io(e)),
        Err(OwnedFileError::Refused(reason)) => return Err(AnchorError::Refused(reason)),
    };
    parse(&bytes).map(Some)
}

/// An anchor file's contents.
pub fn parse(bytes: &[u8]) -> Result<Anchor, AnchorError> {
    let anchor: Anchor =
        serde_json::from_slice(bytes).map_err(|e| AnchorError::Malformed(e.to_string()))?;
    let hex_ok = anchor.hash.len() == 64 && anchor.hash.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_ok {
        return Err(AnchorError::Malformed(format!(
            "hash {:?} is not 64 hex digits",
            anchor.hash
        )));
    }
    Ok(anchor)
}

/// Replaces the anchor atomically (temporary file in the same directory, fsynced, renamed;
/// mode 0600).
pub fn write(path: &Path, anchor: &Anchor) -> std::io::Result<()> {
    let mut json = serde_json::to_vec(anchor).map_err(std::io::Error::other)?;
    json.push(b'\n');
    crate::secret_file::write(path, &json)
}

impl AuditLog {
    pub(super) fn anchored_lock(&self) -> MutexGuard<'_, Option<u64>> {
        // Only ever assigned a seq: a poisoned lock still holds one that was written.
        self.anchored.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// On open: the entry the anchor names must be stored, with its hash (one store read;
    /// none when the log ends before it). No anchor: nothing to check (a fresh log, or one from
    /// before anchors); the next checkpoint writes it. Over a log that holds entries that is
    /// said, as a warning: a deleted anchor turns the check off unseen otherwise.
    pub(super) fn check_anchor(
        &self,
        anchor: Option<Anchor>,
        next_seq: u64,
    ) -> Result<(), AuditError> {
        let path = self.anchor_path.display();
        let Some(anchor) = anchor else {
            if next_seq > 0 {
                tracing::warn!(
                    anchor = %path,
                    entries = next_seq,
                    "the audit anchor is missing while the audit log holds entries: a cut tail or \
                     an older copy of the store put back goes undetected until the next \
                     checkpoint writes the anchor (normal for a log from before anchors, or one \
                     no checkpoint has signed yet; otherwise restore the anchor from a backup)"
                );
            }
            return Ok(());
        };
        if anchor.seq >= next_seq {
            let ends = match next_seq.checked_sub(1) {
                Some(last) => format!("audit log ends at seq {last}"),
                None => "audit log is empty".to_string(),
            };
            return Err(AuditError::Anchor(format!(
                "{ends} but its anchor ({path}) names seq {}: the log was cut or restored from \
                 an older copy",
                anchor.seq
            )));
        }
        let stored = self.store.get(Tree::Audit, &seq_key(anchor.seq))?;
        let found = match stored {
            Some(bytes) => hex::encode(entry_hash(&bytes)),
            None => "missing".to_string(),
        };
        if found != anchor.hash {
            return Err(AuditError::Anchor(format!(
                "audit entry seq {} is {found} but its anchor ({path}) names {}: the log was \
                 rewritten or restored from another copy",
                anchor.seq, anchor.hash
            )));
        }
        *self.anchored_lock() = Some(anchor.seq);
        Ok(())
    }

    /// The anchor file's contents, `None` if there is none; unreadable is an error.
    pub(super) fn read_anchor(&self) -> Result<Option<Anchor>, AuditError> {
        read(&self.anchor_path).map_err(|e| {
            AuditError::Anchor(format!("audit anchor {}: {e}", self.anchor_path.display()))
        })
    }

    /// After a commit with checkpoint `seq` (hash `hash`) returned Ok: points the anchor at it,
    /// unless it already names that seq or a later one. A failed write is logged; the store
    /// commit stands, and the next checkpoint tries again.
    pub(super) fn advance_anchor(&self, seq: u64, hash: String) {
        let mut anchored = self.anchored_lock();
        if anchored.is_some_and(|a| a >= seq) {
            return;
        }
        if let Err(e) = self.write_anchor(&mut anchored, seq, hash) {
            tracing::warn!(
                path = %self.anchor_path.display(),
                error = %e,
                "could not write the audit anchor; the next checkpoint tries again"
            );
        }
    }

    fn write_anchor(
        &self,
        anchored: &mut Option<u64>,
        seq: u64,
        hash: String,
    ) -> std::io::Result<()> {
        let anchor = Anchor {
            seq,
            hash,
            written_at: now_rfc3339_ms(),
        };
        write(&self.anchor_path, &anchor)?;
        *anchored = Some(seq);
        Ok(())
    }

    /// Where the anchor of this log lives.
    pub fn anchor_path(&self) -> &Path {
        &self.anchor_path
    }

    /// The log's part of `airlock audit accept-restore` alone (the reviews are
    /// `gate::restore`'s): for the log's own tests.
    #[cfg(test)]
    pub(crate) fn accept_restore(
        store: Arc<dyn Store>,
        key_path: &Path,
        origin: String,
        opts: AuditOptions,
    ) -> Result<RestoreAccepted, AuditError> {
        let (log, accepted) = AuditLog::open_restored(store, key_path, origin, opts)?;
        log.record_restore(accepted.clone(), crate::store::Batch::default())?;
        Ok(accepted)
    }

    /// Opens the log of a restored store without checking its anchor (and despite an
    /// interrupted accept-restore), for `airlock audit accept-restore`; with what the restore
    /// entry will say of the old anchor and the log's end (its counts left at zero). Whether
    /// the anchor matched is [`AuditLog::anchor_matches`]'s to say.
    pub fn open_restored(
        store: Arc<dyn Store>,
        key_path: &Path,
        origin: String,
        opts: AuditOptions,
    ) -> Result<(AuditLog, RestoreAccepted), AuditError> {
        let old = read(&path_for(key_path));
        let log = AuditLog::open_with_anchor_check(store, key_path, origin, opts, false)?;
        let log_end_seq = log.lock().next_seq.checked_sub(1);
        let (anchor_seq, anchor_hash, anchor_unreadable) = match old {
            Ok(Some(a)) => (Some(a.seq), Some(a.hash), None),
            Ok(None) => (None, None, None),
            Err(e) => (None, None, Some(e.to_string())),
        };
        let accepted = RestoreAccepted {
            anchor_seq,
            anchor_hash,
            anchor_unreadable,
            log_end_seq,
            declared: false,
            reviews_outcome_unknown: 0,
            reviews_marked: 0,
            links_not_before: None,
        };
        Ok((log, accepted))
    }

    /// Does the old anchor of `accepted` name an entry this store holds, with its hash (the
    /// check `serve` makes would pass)?
    pub fn anchor_matches(&self, accepted: &RestoreAccepted) -> Result<bool, AuditError> {
        let (Some(seq), Some(hash)) = (accepted.anchor_seq, &accepted.anchor_hash) else {
            return Ok(false);
        };
        let stored = self.store.get(Tree::Audit, &seq_key(seq))?;
        Ok(stored.is_some_and(|b| hex::encode(entry_hash(&b)) == *hash))
    }

    /// When the log's entry `seq` was written (its `ts`), if it holds one.
    pub fn entry_time(&self, seq: u64) -> Result<Option<String>, AuditError> {
        let Some(bytes) = self.store.get(Tree::Audit, &seq_key(seq))? else {
            return Ok(None);
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| AuditError::Corrupt(format!("entry seq {seq} is not JSON: {e}")))?;
        Ok(v.get("ts").and_then(|t| t.as_str()).map(str::to_string))
    }

    /// Appends the `restore_accepted` entry `accepted`, committing `with` (the caller's own
    /// writes: clearing [`RESTORE_IN_PROGRESS_KEY`]) in the same transaction, signs a
    /// checkpoint and points the anchor at it, even if that is before the old one.
    pub fn record_restore(
        &self,
        accepted: RestoreAccepted,
        with: crate::store::Batch,
    ) -> Result<(), AuditError> {
        match self.append_with(Event::RestoreAccepted(accepted), with)? {
            super::Beside::Applied => {}
            _ => {
                return Err(AuditError::Corrupt(
                    "the restore entry was written, but not the writes that go with it; run `airlock audit accept-restore` again"
                        .into(),
                ))
            }
        }
        // The entry may have completed a count, and so already be followed by a checkpoint.
        let anchor = self.anchor_path.display().to_string();
        self.sign_and_anchor(false, |e| {
            AuditError::Anchor(format!(
                "the restore is accepted in the log, but its anchor {anchor} could not be \
                 written: {e}"
            ))
        })?;
        Ok(())
    }

    /// Signs a checkpoint now (unless the last entry is one and not `force`) and points the
    /// anchor at it; a failed anchor write is `anchor_failed`'s error. Returns its seq.
    pub(super) fn sign_and_anchor(
        &self,
        force: bool,
        anchor_failed: impl FnOnce(std::io::Error) -> AuditError,
    ) -> Result<u64, AuditError> {
        let mut head = self.lock();
        let seq = match (head.since_checkpoint, head.next_seq.checked_sub(1)) {
            (0, Some(last)) if !force => last,
            _ => self.write_checkpoint(&mut head)?,
        };
        let mut anchored = self.anchored_lock();
        if *anchored != Some(seq) {
            self.write_anchor(&mut anchored, seq, head.hash_hex.clone())
                .map_err(anchor_failed)?;
        }
        Ok(seq)
    }
}
