//! The checkpoint signing key: loads an Ed25519 PKCS#8 key (DER or PEM; a regular file of ours
//! that nobody else may read or write, read by [`crate::secret_file::read_owned`]), or creates
//! one (PEM, mode 0600, written by [`crate::secret_file::create_new`]: never partially written,
//! never replacing a key another process created meanwhile).

use std::path::Path;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use super::AuditError;
use crate::secret_file::OwnedFileError;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

fn key_err(path: &Path, reason: impl Into<String>) -> AuditError {
    AuditError::Key {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Loads the key at `path`; if the file does not exist and `may_create`, generates and stores a
/// new one. Returns the key pair and whether it was created.
pub fn load_or_create(path: &Path, may_create: bool) -> Result<(Ed25519KeyPair, bool), AuditError> {
    match read_key_file(path) {
        Ok(bytes) => Ok((parse(path, &bytes)?, false)),
        Err(e) if e.is_not_found() => {
            if !may_create {
                return Err(key_err(
                    path,
                    "missing, but the audit log already records a public key; restore the \
                     original key file (a new key would not match the existing checkpoints)",
                ));
            }
            Ok((create(path)?, true))
        }
        Err(e) => Err(key_err(path, unreadable(e))),
    }
}

/// Loads the key at `path`; `None` if there is no such file (a rotation's next key).
pub fn load(path: &Path) -> Result<Option<Ed25519KeyPair>, AuditError> {
    match read_key_file(path) {
        Ok(bytes) => Ok(Some(parse(path, &bytes)?)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(key_err(path, unreadable(e))),
    }
}

/// The key file's bytes, if it is a regular file of ours that nobody else may read or write.
fn read_key_file(path: &Path) -> Result<Vec<u8>, OwnedFileError> {
    crate::secret_file::read_owned(path, 0o077)
}

/// Why the key file was not read, for [`key_err`].
fn unreadable(e: OwnedFileError) -> String {
    match e {
        OwnedFileError::Io(e) => format!("cannot read: {e}"),
        OwnedFileError::Refused(reason) => reason,
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Ed25519KeyPair, AuditError> {
    let der = if bytes.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(bytes).map_err(|_| key_err(path, "PEM is not UTF-8"))?;
        let start = text
            .find(PEM_BEGIN)
            .ok_or_else(|| key_err(path, "PEM is not a \"PRIVATE KEY\" (PKCS#8) block"))?;
        let body = &text[start + PEM_BEGIN.len()..];
        let end = body
            .find(PEM_END)
            .ok_or_else(|| key_err(path, "PEM has no END line"))?;
        let b64: String = body[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| key_err(path, format!("PEM body is not base64: {e}")))?
    } else {
        bytes.to_vec()
    };
    // Accepts PKCS#8 v1 (as written by `openssl genpkey -algorithm ed25519`) and v2 (ring).
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|e| key_err(path, format!("not an Ed25519 PKCS#8 private key: {e}")))
}

fn create(path: &Path) -> Result<Ed25519KeyPair, AuditError> {
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|e| key_err(path, format!("key generation failed: {e}")))?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
        .map_err(|e| key_err(path, format!("generated key does not parse: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let mut pem = String::new();
    pem.push_str(PEM_BEGIN);
    pem.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');

    // Never replaces: if another process created the key since we found none, use its key (its
    // file is complete; secret_file names a file only once written), so both sign with the key
    // on disk.
    match crate::secret_file::create_new(path, pem.as_bytes()) {
        Ok(()) => Ok(pair),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = read_key_file(path).map_err(|e| key_err(path, unreadable(e)))?;
            parse(path, &bytes)
        }
        Err(e) => Err(key_err(path, format!("cannot write: {e}"))),
    }
}

/// The raw 32-byte public key.
pub fn public_key_bytes(pair: &Ed25519KeyPair) -> Vec<u8> {
    pair.public_key().as_ref().to_vec()
}

/// The raw public key, hex-encoded (as `audit-pubkey` records it).
pub fn public_key_hex(pair: &Ed25519KeyPair) -> String {
    hex::encode(pair.public_key().as_ref())
}
