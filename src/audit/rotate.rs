//! Rotating the checkpoint signing key (`airlock audit rotate-key`; `docs/audit.md`, "Rotating
//! the signing key"). The new key is made beside the old one (`<key>.next`); one store
//! transaction appends a `key_rotated` entry and a checkpoint the old key signs over it, moves
//! `audit-pubkey` to the new key and adds the old one to `audit-pubkeys-retired`; then `.next`
//! is renamed over the key file and the new key signs a checkpoint the anchor names. A run cut
//! short is finished, or refused with what to do, by the next `rotate-key` or `serve`
//! ([`finish_interrupted`]); a key file holding a retired key never opens the log again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::chain::KEY_ROTATED_KIND;
use super::with::With;
use super::{key, AuditError, AuditLog, AuditOptions, ONLY_ATTEMPTS, PUBKEY_META_KEY};
use crate::store::{Batch, Store, Tree};

/// `Tree::Meta` key holding the keys rotated out, a JSON array of [`RetiredKey`].
pub const RETIRED_META_KEY: &[u8] = b"audit-pubkeys-retired";

/// A key rotated out: it signs nothing after the handoff checkpoint of its rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredKey {
    /// Its hex public key.
    pub pubkey: String,
    /// The key that took over from it.
    pub successor: String,
    /// Seq of the `key_rotated` entry.
    pub rotation_seq: u64,
}

/// What [`AuditLog::rotate_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The key was rotated: the `key_rotated` entry's seq, and the new key's first checkpoint.
    Rotated {
        old_pubkey: String,
        new_pubkey: String,
        rotation_seq: u64,
        checkpoint_seq: u64,
    },
    /// A rotation cut short was finished (nothing else rotated): the key in force signed
    /// checkpoint `checkpoint_seq`.
    Finished {
        new_pubkey: String,
        rotation_seq: Option<u64>,
        checkpoint_seq: u64,
    },
}

/// The next key of the key at `key_path`: `<key file name>.next` beside it.
pub fn next_path_for(key_path: &Path) -> PathBuf {
    super::anchor::beside_key(key_path, ".next")
}

/// The keys `store` records as rotated out, oldest first.
pub fn retired(store: &dyn Store) -> Result<Vec<RetiredKey>, AuditError> {
    parse_retired(store.get(Tree::Meta, RETIRED_META_KEY)?.as_deref())
}

fn parse_retired(raw: Option<&[u8]>) -> Result<Vec<RetiredKey>, AuditError> {
    raw.map_or(Ok(Vec::new()), |raw| {
        serde_json::from_slice(raw).map_err(|e| {
            AuditError::Corrupt(format!("meta audit-pubkeys-retired is not a key list: {e}"))
        })
    })
}

fn key_err(path: &Path, reason: String) -> AuditError {
    AuditError::Key {
        path: path.display().to_string(),
        reason,
    }
}

/// The hex public key of the key file at `path`, `None` if there is none.
fn pubkey_of(path: &Path) -> Result<Option<String>, AuditError> {
    Ok(key::load(path)?.map(|k| key::public_key_hex(&k)))
}

/// Finishes a rotation whose store transaction landed but whose key file was not replaced:
/// the store names the key `<key>.next` holds, and the key file holds a retired key (or is
/// gone). Renames `.next` over it and fsyncs the directory; returns the key now in force.
/// Any other state is left as it is (opening the log reports it).
pub fn finish_interrupted(
    store: &dyn Store,
    key_path: &Path,
) -> Result<Option<String>, AuditError> {
    let Some(recorded) = store.get(Tree::Meta, PUBKEY_META_KEY)? else {
        return Ok(None);
    };
    let recorded = String::from_utf8_lossy(&recorded).into_owned();
    let next = next_path_for(key_path);
    // An unreadable `.next` finishes nothing; opening the log reports the key file's state.
    if pubkey_of(&next).ok().flatten().as_deref() != Some(recorded.as_str()) {
        return Ok(None);
    }
    // Only a retired key, or no file at all, is replaced; an unreadable one is left alone.
    let retired = retired(store)?;
    let superseded = match pubkey_of(key_path) {
        Ok(Some(k)) => retired.iter().any(|r| r.pubkey == k),
        Ok(None) => true,
        Err(_) => false,
    };
    if !superseded {
        return Ok(None);
    }
    crate::secret_file::rename_over(&next, key_path).map_err(|e| {
        key_err(
            key_path,
            format!(
                "finishing the key rotation: cannot rename {} over it: {e}",
                next.display()
            ),
        )
    })?;
    Ok(Some(recorded))
}

/// On open: a key file holding a retired key is refused, saying how to finish or repair the
/// rotation that retired it (`recorded`: the key the store names).
pub(super) fn refuse_retired(
    store: &dyn Store,
    key_path: &Path,
    pubkey_hex: &str,
    recorded: &str,
) -> Result<(), AuditError> {
    let retired = retired(store)?;
    let Some(r) = retired.iter().find(|r| r.pubkey == pubkey_hex) else {
        return Ok(());
    };
    let next = next_path_for(key_path);
    let reason = if pubkey_of(&next).ok().flatten().as_deref() == Some(recorded) {
        format!(
            "holds {pubkey_hex}, retired by the key rotation at seq {}, and {} holds the new key \
             {recorded}: the rotation was cut short; run `airlock audit rotate-key` (or start \
             `airlock serve`) to finish it",
            r.rotation_seq,
            next.display()
        )
    } else {
        format!(
            "holds {pubkey_hex}, retired by the key rotation at seq {} (to {}); a retired key \
             never signs again: put the file of the key in force, public key {recorded}, in its \
             place",
            r.rotation_seq, r.successor
        )
    };
    Err(key_err(key_path, reason))
}

impl AuditLog {
    /// `airlock audit rotate-key` (with Airlock stopped on an embedded store): finishes a
    /// rotation cut short if there is one ([`Rotation::Finished`], nothing else rotated); else
    /// opens the log (anchor checked), makes or reuses `<key>.next`, commits the rotation, renames
    /// `.next` over the key file, signs a checkpoint with the new key and anchors it.
    pub fn rotate_key(
        store: Arc<dyn Store>,
        key_path: &Path,
        origin: String,
        opts: AuditOptions,
    ) -> Result<Rotation, AuditError> {
        let renamed = finish_interrupted(store.as_ref(), key_path)?;
        let log = AuditLog::open(store.clone(), key_path, origin.clone(), opts.clone())?;
        if renamed.is_some() || log.handoff_unsigned()? {
            return log.finish_rotation();
        }
        let next = next_path_for(key_path);
        let (next_key, _) = key::load_or_create(&next, true)?;
        let new_pubkey = key::public_key_hex(&next_key);
        log.refuse_as_next(&next, &new_pubkey)?;
        let rotation_seq = log.commit_rotation(&new_pubkey)?;
        let old_pubkey = log.public_key_hex();
        drop(log);
        crate::secret_file::rename_over(&next, key_path).map_err(|e| {
            key_err(
                key_path,
                format!(
                    "the rotation is in the log (seq {rotation_seq}) but {} could not be renamed \
                     over it: {e}; run `airlock audit rotate-key` again to finish it",
                    next.display()
                ),
            )
        })?;
        let log = AuditLog::open(store, key_path, origin, opts)?;
        let checkpoint_seq = log.sign_with_new_key()?;
        Ok(Rotation::Rotated {
            old_pubkey,
            new_pubkey,
            rotation_seq,
            checkpoint_seq,
        })
    }

    /// The new key signs a checkpoint (also right after the old key's) and the anchor names it.
    fn sign_with_new_key(&self) -> Result<u64, AuditError> {
        let anchor = self.anchor_path.clone();
        self.sign_and_anchor(true, |e| {
            key_err(
                &anchor,
                format!("the key was rotated, but the audit anchor could not be written: {e}"),
            )
        })
    }

    /// The state after a rotation whose last step (the new key's checkpoint) was cut short.
    fn finish_rotation(&self) -> Result<Rotation, AuditError> {
        let checkpoint_seq = self.sign_with_new_key()?;
        let rotation_seq = retired(self.store.as_ref())?
            .iter()
            .rev()
            .find(|r| r.successor == self.public_key_hex)
            .map(|r| r.rotation_seq);
        Ok(Rotation::Finished {
            new_pubkey: self.public_key_hex(),
            rotation_seq,
            checkpoint_seq,
        })
    }

    /// Is the log's tail a rotation to this key whose handoff checkpoint (the old key's) is
    /// the last entry, so that this key has not signed yet?
    fn handoff_unsigned(&self) -> Result<bool, AuditError> {
        let next_seq = self.lock().next_seq;
        let Some(before) = next_seq.checked_sub(2) else {
            return Ok(false);
        };
        let kind = |v: &Value| v.get("kind").and_then(Value::as_str).map(str::to_string);
        let (_, last) = self.load(before + 1)?;
        let (_, rotated) = self.load(before)?;
        Ok(kind(&last).as_deref() == Some(super::CHECKPOINT_KIND)
            && kind(&rotated).as_deref() == Some(KEY_ROTATED_KIND)
            && rotated.get("new_pubkey").and_then(Value::as_str) == Some(&self.public_key_hex))
    }

    /// A next key that is the key in force or a retired one is refused.
    fn refuse_as_next(&self, next: &Path, new_pubkey: &str) -> Result<(), AuditError> {
        let retired = retired(self.store.as_ref())?;
        let why = if new_pubkey == self.public_key_hex {
            "the key in force"
        } else if retired.iter().any(|r| r.pubkey == new_pubkey) {
            "a retired key"
        } else {
            return Ok(());
        };
        Err(key_err(
            next,
            format!(
                "holds {new_pubkey}, {why}; remove it and run `airlock audit rotate-key` again"
            ),
        ))
    }

    /// One transaction: the `key_rotated` entry, a checkpoint this (the old) key signs over it,
    /// and the meta writes moving `audit-pubkey` to `new_pubkey` and retiring this key, both or
    /// neither. Returns the entry's seq.
    pub(super) fn commit_rotation(&self, new_pubkey: &str) -> Result<u64, AuditError> {
        let mut fields = Map::new();
        fields.insert("old_pubkey".into(), Value::String(self.public_key_hex()));
        fields.insert("new_pubkey".into(), Value::String(new_pubkey.to_string()));
        let items = [(KEY_ROTATED_KIND.to_string(), fields)];
        let mut head = self.lock();
        let _turn = self.turn(&mut head)?;
        for _ in 0..ONLY_ATTEMPTS {
            let with = With::Only(self.rotation_batch(new_pubkey, head.next_seq)?);
            match self.try_write_entries(&mut head, &items, vec![Some(with)], true)? {
                Some((seqs, _)) => {
                    return seqs.first().copied().flatten().ok_or_else(|| {
                        AuditError::Config(
                            "the audit key records changed during the rotation (another \
                             rotate-key?); nothing was rotated"
                                .into(),
                        )
                    })
                }
                None => {
                    self.catch_up(&mut head)?;
                }
            }
        }
        Err(AuditError::Conflict(head.next_seq))
    }

    /// The meta writes of a rotation whose entry gets `seq`, expecting the records as read.
    fn rotation_batch(&self, new_pubkey: &str, seq: u64) -> Result<Batch, AuditError> {
        let raw = self.store.get(Tree::Meta, RETIRED_META_KEY)?;
        let mut list = parse_retired(raw.as_deref())?;
        list.push(RetiredKey {
            pubkey: self.public_key_hex(),
            successor: new_pubkey.to_string(),
            rotation_seq: seq,
        });
        let json = serde_json::to_vec(&list)
            .map_err(|e| AuditError::Corrupt(format!("retired key list: {e}")))?;
        let mut b = Batch::default();
        b.expect(
            Tree::Meta,
            PUBKEY_META_KEY,
            Some(self.public_key_hex.as_bytes()),
        )
        .expect(Tree::Meta, RETIRED_META_KEY, raw.as_deref())
        .put(Tree::Meta, PUBKEY_META_KEY, new_pubkey.as_bytes())
        .put(Tree::Meta, RETIRED_META_KEY, &json);
        Ok(b)
    }
}
