//! Chain and checkpoint verification, shared by the offline verifier (`verify_lines`, reading a
//! JSON Lines export) and `AuditLog::verify_live` (reading the store).
//!
//! Each line must be the canonical JSON of one entry; seqs must be consecutive; each `prev` must
//! be the SHA-256 of the previous line; each checkpoint's `size` must equal its own seq (the
//! entries it covers), its `head` must equal its `prev`, and its signature must verify. When a
//! `prev` link breaks, the verifier looks one line ahead to tell an altered entry (its successor's
//! successor still links) from an altered successor, and names the altered seq. Which key a
//! checkpoint must verify with, across `key_rotated` entries, is `signers`'s business.

use std::io::BufRead;

use base64::Engine as _;
use serde_json::Value;

use super::chain::{
    canonical_bytes, checkpoint_signing_text, entry_hash, CHECKPOINT_KIND, GENESIS_PREV,
    KEY_ROTATED_KIND,
};
use super::signers::{RawKey, Signers, TrustedKeys};

/// What a successful verification covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Lines verified, checkpoints included.
    pub entries: u64,
    /// Checkpoints among them (each signature verified).
    pub checkpoints: u64,
    /// Seq of the first line (0 for a full export).
    pub first_seq: u64,
    /// Seq of the last line (0 when there were no lines).
    pub last_seq: u64,
    /// Seq of the last checkpoint verified: lines after it are covered by no signature.
    pub last_signed_seq: Option<u64>,
    /// The public key that signed that checkpoint.
    pub signed_by: Option<RawKey>,
    /// Key rotations verified (each `key_rotated` entry with its handoff checkpoint).
    pub key_rotations: u64,
    /// The seq the log begins at when earlier entries were archived (`airlock audit archive`):
    /// the first line is that archive's cut checkpoint, named (seq and hash) by an `archived`
    /// entry a later checkpoint signs. `None`: the input does not say it begins at a cut.
    pub archived_before: Option<u64>,
}

impl VerifyReport {
    /// [`VerifyReport::signed_by`], hex.
    pub fn signed_by_hex(&self) -> Option<String> {
        self.signed_by.map(hex::encode)
    }
}

/// The first place the chain breaks: the seq (when known) and 1-based line, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub seq: Option<u64>,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(
                f,
                "broken at seq {seq} (line {}): {}",
                self.line, self.reason
            ),
            None => write!(f, "broken at line {}: {}", self.line, self.reason),
        }
    }
}

impl std::error::Error for VerifyError {}

fn fail(seq: Option<u64>, line: usize, reason: impl Into<String>) -> VerifyError {
    VerifyError {
        seq,
        line,
        reason: reason.into(),
    }
}

/// Verifies a JSON Lines audit export against the trusted hex Ed25519 public key(s) `keys`
/// (one, or several across key rotations: `docs/audit.md`).
pub fn verify_lines<K: TrustedKeys + ?Sized>(
    reader: impl BufRead,
    keys: &K,
) -> Result<VerifyReport, VerifyError> {
    verify_lines_seeing(reader, keys, |_, _, _| {})
}

/// [`verify_lines`], also checking that the file holds the entry the audit anchor (the file's
/// bytes) names, with the hash it names: an export cut before it, or rewritten, fails.
pub fn verify_lines_with_anchor<K: TrustedKeys + ?Sized>(
    reader: impl BufRead,
    keys: &K,
    anchor: &[u8],
) -> Result<VerifyReport, VerifyError> {
    let anchor = super::anchor::parse(anchor).map_err(|e| fail(None, 0, format!("anchor {e}")))?;
    let mut found = None;
    let report = verify_lines_seeing(reader, keys, |seq, bytes, line| {
        if seq == anchor.seq {
            found = Some((hex::encode(entry_hash(bytes)), line));
        }
    })?;
    match found {
        Some((hash, _)) if hash == anchor.hash => Ok(report),
        Some((_, line)) => Err(fail(
            Some(anchor.seq),
            line,
            "this entry's hash differs from the one the anchor names: the log was rewritten",
        )),
        None if report.entries > 0 && report.first_seq > anchor.seq => Err(fail(
            Some(report.first_seq),
            1,
            format!(
                "the file starts after seq {}, which the anchor names; export with --since {} \
                 or less",
                anchor.seq, anchor.seq
            ),
        )),
        None => Err(fail(
            Some(anchor.seq),
            report.entries as usize + 1,
            format!(
                "the anchor names seq {} but the file ends {}: the tail was cut",
                anchor.seq,
                match report.entries {
                    0 => "before any entry".to_string(),
                    _ => format!("at seq {}", report.last_seq),
                }
            ),
        )),
    }
}

/// [`verify_lines`], handing `seen` each verified entry's seq, bytes and 1-based line.
fn verify_lines_seeing<K: TrustedKeys + ?Sized>(
    reader: impl BufRead,
    keys: &K,
    seen: impl FnMut(u64, &[u8], usize),
) -> Result<VerifyReport, VerifyError> {
    let verifier = Verifier::new(&keys.hex_keys(), false)?;
    verify_with(verifier, reader, seen)
}

/// An archive file as `airlock audit archive` checks it before removing anything: as
/// [`verify_lines`], except that its last checkpoint may be signed with any of `keys` in
/// force there (an archive cut before a rotation ends on the retired key).
pub(crate) fn verify_archive_lines(
    reader: impl BufRead,
    keys: &[&str],
    seen: impl FnMut(u64, &[u8], usize),
) -> Result<VerifyReport, VerifyError> {
    let mut verifier = Verifier::new(keys, false)?;
    verifier.end_on_current = false;
    verify_with(verifier, reader, seen)
}

fn verify_with(
    mut verifier: Verifier,
    mut reader: impl BufRead,
    mut seen: impl FnMut(u64, &[u8], usize),
) -> Result<VerifyReport, VerifyError> {
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| fail(None, line_no + 1, format!("read error: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let seq = verifier.push(&buf, line_no)?;
        seen(seq, &buf, line_no);
    }
    verifier.finish()
}

struct Seen {
    seq: u64,
    hash_hex: String,
    line: usize,
}

/// A `prev` link that did not match; resolved by the next line (or end of input).
struct Pending {
    earlier_seq: u64,
    earlier_line: usize,
    later_seq: u64,
    later_line: usize,
}

/// Most `archived` entries one verification remembers (each names one cut).
const MOST_CUTS: usize = 4096;

/// Incremental verifier: feed it one entry's bytes at a time.
pub(crate) struct Verifier {
    signers: Signers,
    require_genesis: bool,
    /// The last checkpoint must be signed with the last key given.
    end_on_current: bool,
    /// The first entry's seq and hash, and the seq of an `archived` entry naming it as its cut.
    first: Option<(u64, String)>,
    archived_at: Option<u64>,
    /// Every `archived` entry seen (its cut's seq and hash, and its own seq), up to
    /// [`MOST_CUTS`]: the live log's recorded start must be one of them, signed.
    cuts: Vec<(u64, String, u64)>,
    last: Option<Seen>,
    pending: Option<Pending>,
    report: VerifyReport,
}

impl Verifier {
    /// `keys`: the trusted hex public keys. `require_genesis`: the first entry must be seq 0 (a
    /// full log, as in the live store).
    pub(crate) fn new(keys: &[&str], require_genesis: bool) -> Result<Verifier, VerifyError> {
        let signers = Signers::new(keys).map_err(|r| fail(None, 0, r))?;
        Ok(Verifier {
            signers,
            require_genesis,
            end_on_current: true,
            first: None,
            archived_at: None,
            cuts: Vec::new(),
            last: None,
            pending: None,
            report: VerifyReport::default(),
        })
    }

    /// Verifies one entry (without its newline) at 1-based `line`; returns its seq.
    pub(crate) fn push(&mut self, bytes: &[u8], line: usize) -> Result<u64, VerifyError> {
        let parsed: Result<Value, _> = serde_json::from_slice(bytes);

        if let Some(p) = self.pending.take() {
            // The link into `later` broke. If `later` itself is intact, this line's prev is its
            // hash and the altered entry is `earlier`; otherwise `later` was altered.
            let this_prev = parsed
                .as_ref()
                .ok()
                .and_then(|v| v.get("prev"))
                .and_then(Value::as_str);
            let later_hash = self.last.as_ref().map(|s| s.hash_hex.as_str());
            return Err(if this_prev.is_some() && this_prev == later_hash {
                altered_earlier(&p)
            } else {
                fail(
                    Some(p.later_seq),
                    p.later_line,
                    format!(
                        "entry was altered: its prev does not match the hash of seq {} and its \
                         own hash does not match the prev of the next line",
                        p.earlier_seq
                    ),
                )
            });
        }

        let expected = self.last.as_ref().and_then(|s| s.seq.checked_add(1));
        let value = parsed.map_err(|e| fail(None, line, format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| fail(expected, line, "not a JSON object"))?;
        let seq = obj
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| fail(expected, line, "missing or non-integer \"seq\""))?;
        let at = Some(seq);
        if canonical_bytes(&value) != bytes {
            return Err(fail(
                at,
                line,
                "not in canonical form (keys sorted, no whitespace): the line was edited",
            ));
        }
        let prev = obj
            .get("prev")
            .and_then(Value::as_str)
            .filter(|p| is_hash_hex(p))
            .ok_or_else(|| {
                fail(
                    at,
                    line,
                    "\"prev\" is not a 64-character lowercase hex hash",
                )
            })?;
        if !obj.get("ts").is_some_and(Value::is_string) {
            return Err(fail(at, line, "missing \"ts\""));
        }
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| fail(at, line, "missing \"kind\""))?;
        let is_checkpoint = kind == CHECKPOINT_KIND;

        // Sequence continuity.
        match &self.last {
            Some(last) if last.seq == u64::MAX => {
                return Err(fail(
                    None,
                    line,
                    format!("entry after seq {}, the largest possible seq", last.seq),
                ));
            }
            Some(last) if seq != last.seq + 1 => {
                let want = last.seq + 1;
                let reason = if seq <= last.seq {
                    format!(
                        "expected seq {want}, found seq {seq} after seq {}: entries reordered or \
                         duplicated",
                        last.seq
                    )
                } else if is_checkpoint {
                    format!(
                        "checkpoint at seq {seq} covers {seq} entries but the file holds entries \
                         only up to seq {}: entries {want}..={} were deleted (truncated)",
                        last.seq,
                        seq - 1
                    )
                } else {
                    format!(
                        "expected seq {want}, found seq {seq}: entries {want}..={} missing \
                         (deleted or reordered)",
                        seq - 1
                    )
                };
                return Err(fail(Some(want), line, reason));
            }
            Some(_) => {}
            None => {
                if self.require_genesis && seq != 0 {
                    return Err(fail(
                        Some(0),
                        line,
                        format!("log starts at seq {seq}, not 0"),
                    ));
                }
                if seq == 0 && prev != GENESIS_PREV {
                    return Err(fail(at, line, "first entry's prev is not 64 zeros"));
                }
                self.report.first_seq = seq;
            }
        }

        if is_checkpoint {
            let signer = self.check_checkpoint(obj, seq, prev, line)?;
            self.report.checkpoints += 1;
            self.report.last_signed_seq = Some(seq);
            self.report.signed_by = Some(signer);
            self.report.key_rotations = self.signers.rotations();
            if self.archived_at.is_some_and(|a| a < seq) {
                self.report.archived_before = self.first.as_ref().map(|f| f.0);
            }
        } else if kind == super::archive::ARCHIVED_KIND {
            let cut_seq = obj.get("cut_seq").and_then(Value::as_u64);
            let cut_hash = obj.get("cut_hash").and_then(Value::as_str);
            let names_first = self
                .first
                .as_ref()
                .is_some_and(|(s, h)| Some(*s) == cut_seq && Some(h.as_str()) == cut_hash);
            if names_first && self.archived_at.is_none() {
                self.archived_at = Some(seq);
            }
            if let (Some(cut), Some(hash), true) = (cut_seq, cut_hash, self.cuts.len() < MOST_CUTS)
            {
                self.cuts.push((cut, hash.to_string(), seq));
            }
        } else if kind == KEY_ROTATED_KIND {
            let key = |f: &str| obj.get(f).and_then(Value::as_str).unwrap_or_default();
            self.signers
                .rotated(key("old_pubkey"), key("new_pubkey"), seq)
                .map_err(|r| fail(at, line, r))?;
        }

        // The chain link to the previous line.
        if let Some(last) = &self.last {
            if prev != last.hash_hex {
                let p = Pending {
                    earlier_seq: last.seq,
                    earlier_line: last.line,
                    later_seq: seq,
                    later_line: line,
                };
                if is_checkpoint {
                    // The checkpoint is self-consistent (signature over head, head == prev), so
                    // the entry it signed over was altered.
                    return Err(altered_earlier(&p));
                }
                self.pending = Some(p);
            }
        }

        let hash_hex = hex::encode(entry_hash(bytes));
        if self.last.is_none() && is_checkpoint {
            self.first = Some((seq, hash_hex.clone()));
        }
        self.last = Some(Seen {
            seq,
            hash_hex,
            line,
        });
        self.report.entries += 1;
        self.report.last_seq = seq;
        Ok(seq)
    }

    /// Checks a checkpoint entry; returns the key that signed it.
    fn check_checkpoint(
        &mut self,
        obj: &serde_json::Map<String, Value>,
        seq: u64,
        prev: &str,
        line: usize,
    ) -> Result<RawKey, VerifyError> {
        let at = Some(seq);
        let origin = obj
            .get("origin")
            .and_then(Value::as_str)
            .filter(|o| !o.contains('\n'))
            .ok_or_else(|| fail(at, line, "checkpoint has no valid \"origin\""))?;
        let size = obj
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| fail(at, line, "checkpoint has no integer \"size\""))?;
        if size != seq {
            return Err(fail(
                at,
                line,
                format!(
                    "checkpoint size {size} does not match the {seq} entries before it \
                     (seq {seq})"
                ),
            ));
        }
        let head = obj
            .get("head")
            .and_then(Value::as_str)
            .filter(|h| is_hash_hex(h))
            .ok_or_else(|| fail(at, line, "checkpoint \"head\" is not a hex SHA-256"))?;
        let sig = obj
            .get("sig")
            .and_then(Value::as_str)
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .filter(|s| s.len() == 64)
            .ok_or_else(|| {
                fail(
                    at,
                    line,
                    "checkpoint \"sig\" is not a base64 Ed25519 signature",
                )
            })?;
        let text = checkpoint_signing_text(origin, size, head);
        let signer = self
            .signers
            .checkpoint(text.as_bytes(), &sig)
            .map_err(|r| fail(at, line, r))?;
        if head != prev {
            return Err(fail(
                at,
                line,
                "checkpoint's signed head differs from its prev: the entry was altered",
            ));
        }
        Ok(signer)
    }

    /// Ends the input; reports a link break that no later line could resolve.
    /// Whether a signed `archived` entry (one a checkpoint seen so far covers) names the cut
    /// at `seq` with entry hash `hash`.
    pub(crate) fn signed_cut(&self, seq: u64, hash: &str) -> bool {
        let signed = self.report.last_signed_seq;
        self.cuts
            .iter()
            .any(|(c, h, at)| *c == seq && h == hash && signed.is_some_and(|s| *at < s))
    }

    /// The seq of the first entry seen (0 before any).
    pub(crate) fn first_seq(&self) -> u64 {
        self.report.first_seq
    }

    pub(crate) fn finish(mut self) -> Result<VerifyReport, VerifyError> {
        if let Some(why) = self
            .report
            .signed_by
            .filter(|_| self.end_on_current)
            .and_then(|signer| self.signers.ends_off_current(signer))
        {
            return Err(fail(self.report.last_signed_seq, 0, why));
        }
        if let Some(p) = self.pending.take() {
            return Err(fail(
                Some(p.earlier_seq),
                p.earlier_line,
                format!(
                    "hash of seq {} does not match the prev of seq {} (the last line): one of \
                     them was altered",
                    p.earlier_seq, p.later_seq
                ),
            ));
        }
        Ok(self.report)
    }
}

fn altered_earlier(p: &Pending) -> VerifyError {
    fail(
        Some(p.earlier_seq),
        p.earlier_line,
        format!(
            "entry was altered: its hash does not match the prev recorded by seq {}",
            p.later_seq
        ),
    )
}

fn is_hash_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Verifies an export like [`verify_lines`], and also against a checkpoint line kept elsewhere
/// (e.g. printed earlier by `airlock audit checkpoint`): its signature must verify, and the file
/// must hold the entry it covers with the hash it signed. A file cut short before that entry
/// (tail truncation) fails here even when it is a valid prefix on its own.
pub fn verify_lines_with_checkpoint<K: TrustedKeys + ?Sized>(
    reader: impl BufRead,
    keys: &K,
    trusted_checkpoint: &[u8],
) -> Result<VerifyReport, VerifyError> {
    let cp: Value = serde_json::from_slice(trusted_checkpoint.trim_ascii())
        .map_err(|e| fail(None, 0, format!("trusted checkpoint is not JSON: {e}")))?;
    let obj = cp
        .as_object()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some(CHECKPOINT_KIND))
        .ok_or_else(|| fail(None, 0, "trusted checkpoint is not a checkpoint entry"))?;
    // Signed by any of the trusted keys.
    let mut checker = Verifier::new(&keys.hex_keys(), false)?;
    let seq = obj.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let prev = obj.get("prev").and_then(Value::as_str).unwrap_or_default();
    checker
        .check_checkpoint(obj, seq, prev, 0)
        .map_err(|e| fail(Some(seq), 0, format!("trusted checkpoint: {}", e.reason)))?;
    let size = seq;
    let head = prev.to_string();
    // One pass, one line in memory: the entry the checkpoint covers last is hashed as it goes by.
    let covered = size.checked_sub(1);
    let mut found: Option<(String, usize)> = None;
    let report = verify_lines_seeing(reader, keys, |seq, bytes, line| {
        if Some(seq) == covered {
            found = Some((hex::encode(entry_hash(bytes)), line));
        }
    })?;
    let Some(covered) = covered else {
        return Ok(report);
    };
    match found {
        Some((hash, line)) if hash != head => Err(fail(
            Some(covered),
            line,
            "this entry's hash differs from the one the trusted checkpoint signed: the log was rewritten",
        )),
        Some(_) => Ok(report),
        None => Err(fail(
            Some(report.last_seq + u64::from(report.entries > 0)),
            report.entries as usize,
            format!(
                "the trusted checkpoint covers {size} entries (through seq {covered}) but the file \
                 ends at seq {}: the tail was truncated",
                report.last_seq
            ),
        )),
    }
}
