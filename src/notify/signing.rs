//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): a signed delivery carries
//! `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>`, the base64 of
//! HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with the bytes of a `whsec_<base64>` secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// Shortest key accepted, in bytes (Standard Webhooks recommends 24 to 64).
pub const MIN_KEY_BYTES: usize = 24;
/// Key length of secrets made by [`WebhookSecret::generate`].
const NEW_KEY_BYTES: usize = 32;

/// Why a signing secret was refused. Never includes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    #[error("the secret must start with \"whsec_\"")]
    Prefix,
    #[error("the secret is not base64 after \"whsec_\"")]
    Base64,
    #[error("the secret's key is {0} bytes; at least {MIN_KEY_BYTES} are needed")]
    TooShort(usize),
}

/// A webhook signing key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64 key>` (surrounding whitespace, such as a file's newline, ignored).
    pub fn parse(text: &str) -> Result<WebhookSecret, SecretFormatError> {
        let encoded = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretFormatError::Prefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretFormatError::Base64)?;
        if key.len() < MIN_KEY_BYTES {
            return Err(SecretFormatError::TooShort(key.len()));
        }
        Ok(WebhookSecret { key })
    }

    /// A new random secret, `whsec_` and the base64 of 32 random bytes.
    pub fn generate() -> String {
        let key: [u8; NEW_KEY_BYTES] = rand::random();
        format!("{PREFIX}{}", STANDARD.encode(key))
    }

    /// The `webhook-signature` value for one attempt: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        // HMAC takes a key of any length: this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// A new `webhook-id`: `msg_` and 128 random bits in hex. One per message, kept across retries.
pub fn new_message_id() -> String {
    format!("msg_{}", hex::encode(rand::random::<[u8; 16]>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known-answer test of the Standard Webhooks reference Rust library
    /// (standard-webhooks/standard-webhooks, libraries/rust/src/lib.rs, `test_sign`).
    #[test]
    fn signs_the_reference_library_vector() -> Result<(), SecretFormatError> {
        let s = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?;
        assert_eq!(
            s.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        Ok(())
    }

    /// The vector the Svix and Standard Webhooks libraries of other languages test against.
    #[test]
    fn signs_the_svix_vector() -> Result<(), SecretFormatError> {
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")?;
        assert_eq!(
            s.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        Ok(())
    }

    #[test]
    fn refuses_malformed_secrets() {
        let short = format!("whsec_{}", STANDARD.encode([7u8; 16]));
        for (text, want) in [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                SecretFormatError::Prefix,
            ),
            ("whsec_not*base64!", SecretFormatError::Base64),
            (short.as_str(), SecretFormatError::TooShort(16)),
            ("", SecretFormatError::Prefix),
        ] {
            assert_eq!(WebhookSecret::parse(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn generated_secrets_parse_and_differ() -> Result<(), SecretFormatError> {
        let (a, b) = (WebhookSecret::generate(), WebhookSecret::generate());
        assert_ne!(a, b);
        assert_eq!(WebhookSecret::parse(&a)?.key.len(), NEW_KEY_BYTES);
        assert_eq!(
            format!("{:?}", WebhookSecret::parse(&a)?),
            "WebhookSecret(<redacted>)"
        );
        Ok(())
    }

    #[test]
    fn message_ids_are_fresh() {
        let id = new_message_id();
        assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
        assert_ne!(id, new_message_id());
    }
}
