//! One-click approve/reject links sent in notifications.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))` where the payload is
//! the JSON `{review_id, action, reviewer, rk, exp_ms, nonce}`. `rk` binds the link to the
//! reviewer's token as it was when the link was minted ([`LinkSigner::reviewer_key`]), so a
//! rotated token revokes her links as it ends her sessions. The key (32 random bytes) lives in
//! `<data dir>/link-key`, created 0600 on first run. Tokens are single use: redeeming one records
//! SHA-256(token) (hex) under `link:<review id>/<hex>` in [`Tree::Meta`] with a compare-and-swap
//! from absent, so a replay fails; the records go when retention prunes their review
//! ([`used_prefix`]). Tokens themselves are never stored or logged.
//!
//! A token only says "this reviewer was sent a link to do this"; the caller must still check that
//! the reviewer is configured with the token the link is bound to ([`LinkSigner::binds`]) and
//! allowed by the review's policy, and must decide only on a POST.
//! The dashboard follows the review's current deadline rather than `exp_ms` (a link works until
//! the review's deadline, extended or not, and not beyond it: [`LinkSigner::verify_signature`]),
//! and gives a link back ([`LinkSigner::release`]) when the decision it was used for is refused.

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError, Tree};

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted; anything longer is malformed.
const MAX_TOKEN_LEN: usize = 4096;
/// Key prefix of used-link records in [`Tree::Meta`].
pub const USED_PREFIX: &str = "link:";
/// [`Tree::Meta`] key naming the time (ms, decimal) before which no link works: links issued
/// before a restore was accepted (`airlock audit accept-restore`), whose used records the copy
/// may not hold. A link from before issue times were signed (no `iat_ms`) counts as issued
/// at 0.
pub const NOT_BEFORE_KEY: &[u8] = b"links-not-before";
/// Bytes of the HMAC kept as a link's reviewer key.
const REVIEWER_KEY_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("link token is malformed")]
    Malformed,
    #[error("link token signature is invalid")]
    BadSignature,
    #[error("link has expired")]
    Expired,
    #[error("link has already been used")]
    AlreadyUsed,
    #[error("link store: {0}")]
    Store(#[from] StoreError),
    #[error("link key file {path}: {message}")]
    KeyFile { path: String, message: String },
}

/// What a link lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkAction {
    Approve,
    Reject,
}

impl LinkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }
}

impl std::str::FromStr for LinkAction {
    type Err = LinkError;
    fn from_str(s: &str) -> Result<Self, LinkError> {
        match s {
            "approve" => Ok(Self::Approve),
            "reject" => Ok(Self::Reject),
            _ => Err(LinkError::Malformed),
        }
    }
}

/// The verified content of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    pub review_id: String,
    pub action: LinkAction,
    /// The configured reviewer the link was minted for.
    pub reviewer: String,
    /// [`LinkSigner::reviewer_key`] of her token when the link was minted.
    pub reviewer_key: String,
    pub exp_ms: u64,
    pub nonce: String,
    /// When it was minted (ms); 0 for a link minted before links said so.
    pub iat_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    review_id: String,
    action: String,
    reviewer: String,
    rk: String,
    exp_ms: u64,
    nonce: String,
    #[serde(default)]
    iat_ms: u64,
}

/// Mints and verifies link tokens with one HMAC key.
pub struct LinkSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

impl LinkSigner {
    pub fn new(key: [u8; 32]) -> LinkSigner {
        LinkSigner { key }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC zero-pads keys shorter than the block (64 bytes), so this is HMAC with the 32-byte
        // key, built without the fallible `new_from_slice`.
        let mut block = hmac::digest::Key::<HmacSha256>::default();
        block[..32].copy_from_slice(&self.key);
        <HmacSha256 as hmac::digest::KeyInit>::new(&block)
    }

    /// A token valid for `ttl` from now, for `reviewer` whose token has SHA-256 `token_sha256`.
    pub fn mint(
        &self,
        review_id: &str,
        action: LinkAction,
        reviewer: &str,
        token_sha256: &[u8; 32],
        ttl: Duration,
    ) -> String {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let exp_ms = crate::wall_clock::now_ms().saturating_add(ttl_ms);
        self.mint_until(review_id, action, reviewer, token_sha256, exp_ms)
    }

    /// A token valid until `exp_ms` (milliseconds since the epoch).
    pub fn mint_until(
        &self,
        review_id: &str,
        action: LinkAction,
        reviewer: &str,
        token_sha256: &[u8; 32],
        exp_ms: u64,
    ) -> String {
        let payload = serde_json::json!({
            "review_id": review_id,
            "action": action.as_str(),
            "reviewer": reviewer,
            "rk": self.reviewer_key(token_sha256),
            "exp_ms": exp_ms,
            "nonce": hex::encode(rand::random::<[u8; 16]>()),
            "iat_ms": crate::wall_clock::now_ms(),
        })
        .to_string();
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// What binds a link to a reviewer's token: HMAC(key, "rk" || SHA-256 of the token),
    /// shortened, hex. It names the token without revealing its digest.
    pub fn reviewer_key(&self, token_sha256: &[u8; 32]) -> String {
        let mut mac = self.mac();
        mac.update(b"rk");
        mac.update(token_sha256);
        hex::encode(&mac.finalize().into_bytes()[..REVIEWER_KEY_LEN])
    }

    /// Was the link of `claims` minted for the token whose SHA-256 is `token_sha256`? False once
    /// its reviewer's token has changed.
    pub fn binds(&self, claims: &LinkClaims, token_sha256: &[u8; 32]) -> bool {
        crate::secret_file::constant_time_eq(
            claims.reviewer_key.as_bytes(),
            self.reviewer_key(token_sha256).as_bytes(),
        )
    }

    /// Checks the signature (constant time), then the payload, then the expiry.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<LinkClaims, LinkError> {
        let claims = self.verify_signature(token)?;
        if now_ms >= claims.exp_ms {
            return Err(LinkError::Expired);
        }
        Ok(claims)
    }

    /// Checks the signature (constant time) and the payload, not `exp_ms`: for a caller that
    /// holds the link to a later deadline of its own (the review's current one).
    pub fn verify_signature(&self, token: &str) -> Result<LinkClaims, LinkError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(LinkError::Malformed);
        }
        let (p64, s64) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(p64)
            .map_err(|_| LinkError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(s64)
            .map_err(|_| LinkError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        let p: Payload = serde_json::from_slice(&payload).map_err(|_| LinkError::Malformed)?;
        let action = p.action.parse::<LinkAction>()?;
        Ok(LinkClaims {
            review_id: p.review_id,
            action,
            reviewer: p.reviewer,
            reviewer_key: p.rk,
            exp_ms: p.exp_ms,
            nonce: p.nonce,
            iat_ms: p.iat_ms,
        })
    }

    /// Marks `token` (whose verified claims are `claims`) used. Fails with
    /// [`LinkError::AlreadyUsed`] if it was used before. Call it after [`LinkSigner::verify`] and
    /// before acting on the claims (or use [`LinkSigner::redeem`]).
    pub fn consume(
        &self,
        store: &dyn Store,
        claims: &LinkClaims,
        token: &str,
    ) -> Result<(), LinkError> {
        let key = used_key(&claims.review_id, token);
        let record = serde_json::json!({ "used_at_ms": crate::wall_clock::now_ms() }).to_string();
        if store.compare_and_swap(Tree::Meta, key.as_bytes(), None, record.as_bytes())? {
            return Ok(());
        }
        // Given back after a refused decision: usable again, still by one caller at a time.
        match store.get(Tree::Meta, key.as_bytes())? {
            Some(old) if is_released(&old) => {
                if store.compare_and_swap(
                    Tree::Meta,
                    key.as_bytes(),
                    Some(&old),
                    record.as_bytes(),
                )? {
                    Ok(())
                } else {
                    Err(LinkError::AlreadyUsed)
                }
            }
            _ => Err(LinkError::AlreadyUsed),
        }
    }

    /// Gives a consumed `token` back: the decision it was used for was refused (not allowed,
    /// already decided, expired), so the link has not been used up.
    pub fn release(
        &self,
        store: &dyn Store,
        claims: &LinkClaims,
        token: &str,
    ) -> Result<(), LinkError> {
        let key = used_key(&claims.review_id, token);
        if let Some(old) = store.get(Tree::Meta, key.as_bytes())? {
            if !is_released(&old) {
                let record = serde_json::json!({ "released_at_ms": crate::wall_clock::now_ms() })
                    .to_string();
                store.compare_and_swap(
                    Tree::Meta,
                    key.as_bytes(),
                    Some(&old),
                    record.as_bytes(),
                )?;
            }
        }
        Ok(())
    }

    /// Was the link of `claims` issued before the store's [`NOT_BEFORE_KEY`] (a restore
    /// accepted since)? Then it is [`LinkError::Expired`]: the restored store may not hold its
    /// used record.
    pub fn check_not_before(
        &self,
        store: &dyn Store,
        claims: &LinkClaims,
    ) -> Result<(), LinkError> {
        let Some(v) = store.get(Tree::Meta, NOT_BEFORE_KEY)? else {
            return Ok(());
        };
        // Unreadable: every link is refused (fail closed).
        let not_before = std::str::from_utf8(&v)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        match claims.iat_ms < not_before {
            true => Err(LinkError::Expired),
            false => Ok(()),
        }
    }

    /// Has `token` been used (and not given back)?
    pub fn is_used(
        &self,
        store: &dyn Store,
        claims: &LinkClaims,
        token: &str,
    ) -> Result<bool, LinkError> {
        Ok(store
            .get(Tree::Meta, used_key(&claims.review_id, token).as_bytes())?
            .is_some_and(|v| !is_released(&v)))
    }

    /// [`LinkSigner::verify`] then [`LinkSigner::consume`]: the claims of a valid, unused token,
    /// which is now used.
    pub fn redeem(
        &self,
        store: &dyn Store,
        token: &str,
        now_ms: u64,
    ) -> Result<LinkClaims, LinkError> {
        let claims = self.verify(token, now_ms)?;
        self.check_not_before(store, &claims)?;
        self.consume(store, &claims, token)?;
        Ok(claims)
    }
}

/// A used-link record that was given back by [`LinkSigner::release`].
fn is_released(record: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(record)
        .is_ok_and(|v| v.get("released_at_ms").is_some())
}

/// SHA-256 of the token, hex: the only form in which a token is ever stored.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The prefix of the [`Tree::Meta`] keys recording the used links of review `review_id`: they
/// are removed with the review.
pub fn used_prefix(review_id: &str) -> String {
    format!("{USED_PREFIX}{review_id}/")
}

/// The [`Tree::Meta`] key recording that `token`, a link for review `review_id`, was used.
pub fn used_key(review_id: &str, token: &str) -> String {
    format!("{}{}", used_prefix(review_id), token_digest(token))
}

/// Reads the 32-byte link key (hex) at `path`, or creates it (0600, random) if absent. A key file
/// readable by group or others is refused.
pub fn load_or_create_key(path: &Path) -> Result<[u8; 32], LinkError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |message: String| LinkError::KeyFile {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "permissions {:o} are too open; expected 0600",
                    mode & 0o777
                )));
            }
            let bytes = hex::decode(text.trim())
                .map_err(|_| err("not a hex-encoded 32-byte key".into()))?;
            return <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| err("not a hex-encoded 32-byte key".into()));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e.to_string())),
        Err(_) => {}
    }
    let key = rand::random::<[u8; 32]>();
    match crate::secret_file::create_new(path, hex::encode(key).as_bytes()) {
        Ok(()) => Ok(key),
        // Another process created it meanwhile: its file is complete (secret_file gives a file its
        // name only once written), so load that key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LinkSigner {
        LinkSigner::new([7u8; 32])
    }

    /// Alice's token digest.
    const ALICE: [u8; 32] = [1; 32];

    #[test]
    fn valid_token_verifies() {
        let s = signer();
        let t = s.mint_until("r1", LinkAction::Approve, "alice", &ALICE, 2_000);
        let c = s.verify(&t, 1_000).map_err(|e| e.to_string());
        let c = c.as_ref().map(|c| {
            (
                c.review_id.as_str(),
                c.action,
                c.reviewer.as_str(),
                c.exp_ms,
            )
        });
        assert_eq!(c, Ok(("r1", LinkAction::Approve, "alice", 2_000)));
    }

    /// A link is bound to the token its reviewer had when it was minted, not only to her name.
    #[test]
    fn a_link_binds_its_reviewers_token() -> Result<(), LinkError> {
        let s = signer();
        let t = s.mint_until("r1", LinkAction::Approve, "alice", &ALICE, 2_000);
        let claims = s.verify_signature(&t)?;
        assert!(s.binds(&claims, &ALICE));
        assert!(!s.binds(&claims, &[2; 32]), "a rotated token");
        assert!(!LinkSigner::new([8; 32]).binds(&claims, &ALICE));
        assert!(!claims.reviewer_key.contains(&hex::encode(&ALICE[..8])));
        Ok(())
    }

    #[test]
    fn tampered_and_foreign_tokens_are_refused() {
        let s = signer();
        let t = s.mint_until("r1", LinkAction::Reject, "alice", &ALICE, 2_000);
        let (p, sig) = t.split_once('.').unwrap_or_default();
        // A different payload with the original signature.
        let forged = URL_SAFE_NO_PAD.encode(
            br#"{"review_id":"r1","action":"approve","reviewer":"alice","rk":"00","exp_ms":2000,"nonce":"00"}"#,
        );
        assert!(matches!(
            s.verify(&format!("{forged}.{sig}"), 1_000),
            Err(LinkError::BadSignature)
        ));
        // A flipped signature.
        let mut bad = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
        bad[0] ^= 1;
        let t2 = format!("{p}.{}", URL_SAFE_NO_PAD.encode(bad));
        assert!(matches!(s.verify(&t2, 1_000), Err(LinkError::BadSignature)));
        // Another key.
        assert!(matches!(
            LinkSigner::new([8; 32]).verify(&t, 1_000),
            Err(LinkError::BadSignature)
        ));
        for m in ["", "abc", "a.b.c", "!!!.???"] {
            assert!(
                matches!(s.verify(m, 1_000), Err(LinkError::Malformed)),
                "{m}"
            );
        }
    }

    #[test]
    fn expired_token_is_refused() {
        let s = signer();
        let t = s.mint_until("r1", LinkAction::Approve, "alice", &ALICE, 2_000);
        assert!(matches!(s.verify(&t, 2_000), Err(LinkError::Expired)));
        let t = s.mint("r1", LinkAction::Approve, "alice", &ALICE, Duration::ZERO);
        assert!(matches!(
            s.verify(&t, crate::wall_clock::now_ms() + 1),
            Err(LinkError::Expired)
        ));
    }

    /// A restore accepted since a link was issued (`links-not-before` after its `iat_ms`) makes
    /// it expired: the restored store may have lost the record of its use.
    #[test]
    fn a_link_issued_before_a_restore_is_expired() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = crate::store::open(crate::store::Backend::Redb, dir.path())?;
        let s = signer();
        let hour = Duration::from_secs(3600);
        let before = s.mint("r1", LinkAction::Approve, "alice", &ALICE, hour);
        let not_before = (crate::wall_clock::now_ms() + 1).to_string();
        store.compare_and_swap(Tree::Meta, NOT_BEFORE_KEY, None, not_before.as_bytes())?;
        assert!(matches!(
            s.redeem(store.as_ref(), &before, crate::wall_clock::now_ms()),
            Err(LinkError::Expired)
        ));
        std::thread::sleep(Duration::from_millis(5));
        let after = s.mint("r1", LinkAction::Approve, "alice", &ALICE, hour);
        assert_eq!(
            s.redeem(store.as_ref(), &after, crate::wall_clock::now_ms())?
                .review_id,
            "r1"
        );
        Ok(())
    }

    #[test]
    fn tokens_are_single_use_and_stored_hashed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = crate::store::open(crate::store::Backend::Redb, dir.path())?;
        let s = signer();
        let t = s.mint(
            "r1",
            LinkAction::Approve,
            "alice",
            &ALICE,
            Duration::from_secs(60),
        );
        let claims = s.redeem(store.as_ref(), &t, crate::wall_clock::now_ms())?;
        assert_eq!(claims.review_id, "r1");
        assert!(matches!(
            s.consume(store.as_ref(), &claims, &t),
            Err(LinkError::AlreadyUsed)
        ));
        assert!(matches!(
            s.redeem(store.as_ref(), &t, crate::wall_clock::now_ms()),
            Err(LinkError::AlreadyUsed)
        ));
        let keys: Vec<String> = store
            .scan(Tree::Meta)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .filter(|k| k.starts_with(USED_PREFIX))
            .collect();
        assert_eq!(keys, vec![used_key("r1", &t)]);
        assert!(keys[0].starts_with(&used_prefix("r1")));
        assert!(!keys[0].contains(&t));
        Ok(())
    }

    #[test]
    fn a_released_token_can_be_used_again_once() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = crate::store::open(crate::store::Backend::Redb, dir.path())?;
        let s = signer();
        let t = s.mint_until("r1", LinkAction::Approve, "alice", &ALICE, 2_000);
        let c = s.verify_signature(&t)?; // no expiry check
        assert!(!s.is_used(store.as_ref(), &c, &t)?);
        s.consume(store.as_ref(), &c, &t)?;
        assert!(s.is_used(store.as_ref(), &c, &t)?);
        s.release(store.as_ref(), &c, &t)?;
        assert!(!s.is_used(store.as_ref(), &c, &t)?);
        s.consume(store.as_ref(), &c, &t)?;
        assert!(matches!(
            s.consume(store.as_ref(), &c, &t),
            Err(LinkError::AlreadyUsed)
        ));
        Ok(())
    }

    #[test]
    fn key_file_is_created_0600_and_reloaded() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sub/link-key");
        let k1 = load_or_create_key(&path)?;
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create_key(&path)?, k1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        assert!(matches!(
            load_or_create_key(&path),
            Err(LinkError::KeyFile { .. })
        ));
        Ok(())
    }
}
