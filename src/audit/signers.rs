//! Which public key a checkpoint must verify with while a chain is verified, across key
//! rotations. The key in force is the trusted key that verifies the first checkpoint (or, when a
//! `key_rotated` entry comes first, its `old_pubkey`, which must be trusted). At a `key_rotated`
//! entry whose old key is the key in force, the next checkpoint must verify with that old key
//! (the handoff: the old key vouches for the new one); from then on only the new key does, and
//! the old one is retired. The last checkpoint must be signed with the current key, the last
//! trusted key given: whoever holds an earlier (perhaps leaked) key could write a log that ends
//! on it. Memory grows with rotations, never with entries.

use ring::signature::{UnparsedPublicKey, ED25519};

/// A raw 32-byte Ed25519 public key.
pub type RawKey = [u8; 32];

/// The public keys a verification trusts, hex: one (`str`, `String`) or several (`[&str]`,
/// `[String]`, `Vec<String>`).
pub trait TrustedKeys {
    fn hex_keys(&self) -> Vec<&str>;
}

impl TrustedKeys for str {
    fn hex_keys(&self) -> Vec<&str> {
        vec![self]
    }
}

impl TrustedKeys for String {
    fn hex_keys(&self) -> Vec<&str> {
        vec![self.as_str()]
    }
}

impl TrustedKeys for [&str] {
    fn hex_keys(&self) -> Vec<&str> {
        self.to_vec()
    }
}

impl TrustedKeys for [String] {
    fn hex_keys(&self) -> Vec<&str> {
        self.iter().map(String::as_str).collect()
    }
}

impl TrustedKeys for Vec<String> {
    fn hex_keys(&self) -> Vec<&str> {
        self.as_slice().hex_keys()
    }
}

impl<const N: usize> TrustedKeys for [&str; N] {
    fn hex_keys(&self) -> Vec<&str> {
        self.to_vec()
    }
}

/// A hex public key, if it is one.
pub fn parse_key(hex_key: &str) -> Option<RawKey> {
    hex::decode(hex_key.trim()).ok()?.try_into().ok()
}

/// A rotation whose handoff checkpoint has not come yet.
struct Handoff {
    new: RawKey,
    seq: u64,
}

/// The keys of one verification and where it stands.
pub(crate) struct Signers {
    trusted: Vec<RawKey>,
    in_force: Option<RawKey>,
    handoff: Option<Handoff>,
    retired: Vec<RawKey>,
    rotations: u64,
}

impl Signers {
    pub(crate) fn new(keys: &[&str]) -> Result<Signers, String> {
        let trusted = keys
            .iter()
            .map(|k| parse_key(k))
            .collect::<Option<Vec<_>>>()
            .filter(|t| !t.is_empty())
            .ok_or("public key must be 64 hex characters (raw 32-byte Ed25519 key)")?;
        Ok(Signers {
            trusted,
            in_force: None,
            handoff: None,
            retired: Vec::new(),
            rotations: 0,
        })
    }

    /// Handoffs completed so far.
    pub(crate) fn rotations(&self) -> u64 {
        self.rotations
    }

    /// A checkpoint's signature `sig` over `text`: the key that signed it, or why it fails.
    pub(crate) fn checkpoint(&mut self, text: &[u8], sig: &[u8]) -> Result<RawKey, String> {
        let signs = |k: &RawKey| {
            UnparsedPublicKey::new(&ED25519, k)
                .verify(text, sig)
                .is_ok()
        };
        let Some(key) = self.in_force else {
            let key = self.trusted.iter().copied().find(|k| signs(k));
            let key = key.ok_or_else(|| self.unverified(None))?;
            self.in_force = Some(key);
            return Ok(key);
        };
        if signs(&key) {
            if let Some(h) = self.handoff.take() {
                self.retired.push(key);
                self.in_force = Some(h.new);
                self.rotations += 1;
            }
            return Ok(key);
        }
        if let Some(h) = self.handoff.as_ref().filter(|h| signs(&h.new)) {
            return Err(format!(
                "the first checkpoint after the key rotation at seq {} is signed with the new \
                 key; it must be signed with the old key {} (the handoff)",
                h.seq,
                hex::encode(key)
            ));
        }
        if let Some(old) = self.retired.iter().find(|k| signs(k)) {
            return Err(format!(
                "checkpoint signed with a retired key ({}): a key signs nothing after the \
                 handoff checkpoint of its rotation",
                hex::encode(old)
            ));
        }
        if let Some(other) = self.trusted.iter().find(|k| signs(k)) {
            return Err(format!(
                "checkpoint signed with {}, a given key, but the key in force is {} and no \
                 key_rotated entry hands over to it (an export must start at or before the \
                 key_rotated entry, or after its handoff checkpoint)",
                hex::encode(other),
                hex::encode(key)
            ));
        }
        Err(self.unverified(Some(key)))
    }

    /// Why a chain whose last checkpoint `signer` signed does not end on the current key (the
    /// last trusted key given), if it does not.
    pub(crate) fn ends_off_current(&self, signer: RawKey) -> Option<String> {
        let current = *self.trusted.last()?;
        (signer != current).then(|| {
            format!(
                "the last checkpoint is signed with {}, not with the current key {} (the last \
                 key given): whoever holds an earlier key could have written a log that ends on \
                 it; give every key oldest first and the key in force now last, or verify an \
                 export taken after the new key signed",
                hex::encode(signer),
                hex::encode(current)
            )
        })
    }

    /// A `key_rotated` entry at `seq`: `old` hands over to `new` at the next checkpoint.
    pub(crate) fn rotated(&mut self, old: &str, new: &str, seq: u64) -> Result<(), String> {
        let (Some(old), Some(new)) = (parse_key(old), parse_key(new)) else {
            return Err(
                "key_rotated entry's old_pubkey and new_pubkey are not 64-hex-character keys"
                    .into(),
            );
        };
        if let Some(h) = &self.handoff {
            return Err(format!(
                "a second key_rotated entry before the handoff checkpoint of the rotation at \
                 seq {}",
                h.seq
            ));
        }
        match self.in_force {
            None if self.trusted.contains(&old) => self.in_force = Some(old),
            None => {
                return Err(format!(
                    "key_rotated retires {}, which is not a given public key",
                    hex::encode(old)
                ))
            }
            Some(k) if k != old => {
                return Err(format!(
                    "key_rotated retires {} but the key in force is {}",
                    hex::encode(old),
                    hex::encode(k)
                ))
            }
            Some(_) => {}
        }
        if new == old || self.retired.contains(&new) {
            return Err(format!(
                "key_rotated hands over to {}, the key in force or a retired one",
                hex::encode(new)
            ));
        }
        self.handoff = Some(Handoff { new, seq });
        Ok(())
    }

    /// Why a checkpoint verifies with no key it may be signed with (`in_force`: the one it must).
    fn unverified(&self, in_force: Option<RawKey>) -> String {
        match in_force {
            Some(k) if self.rotations > 0 || self.trusted != [k] => format!(
                "checkpoint signature does not verify with the key in force ({})",
                hex::encode(k)
            ),
            None if self.trusted.len() > 1 => {
                "checkpoint signature verifies with none of the given public keys".into()
            }
            _ => "checkpoint signature does not verify with the given public key".into(),
        }
    }
}
