//! TLS: Airlock's certificate authority, per-host leaf minting with a bounded cache, and the
//! client configuration used to verify upstream servers.

mod ca;
mod leaf;
pub mod rotate;
mod suites;
mod upstream;

pub use ca::{check_expiry as check_ca_expiry, CertificateAuthority, CA_CERT_FILE, CA_KEY_FILE};
pub use leaf::LeafCache;
pub use suites::provider;
pub use upstream::client_config;

/// Errors from the TLS layer. None of them carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("invalid host name for a certificate: {0:?}")]
    BadHost(String),
    #[error("TLS configuration error: {0}")]
    Config(String),
}
