//! The cipher suites Airlock offers and, toward agents, picks: Mozilla's recommended order
//! (AES-128-GCM first). Its SHA-256 key schedule runs on the CPU's SHA extensions, where
//! SHA-384 (AES-256-GCM's) runs in portable code, and AES-128 does four fewer rounds per block.

use std::sync::Arc;

use rustls::crypto::ring::{cipher_suite as cs, default_provider};
use rustls::crypto::CryptoProvider;

/// ring with every suite it offers by default, in Airlock's order of preference.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..default_provider()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_the_same_suites_as_ring_by_default() {
        let ours = provider();
        let theirs = default_provider();
        assert_eq!(ours.cipher_suites.len(), theirs.cipher_suites.len());
        for suite in &theirs.cipher_suites {
            assert!(ours.cipher_suites.contains(suite), "{suite:?} missing");
        }
        assert_eq!(ours.cipher_suites[0], cs::TLS13_AES_128_GCM_SHA256);
    }
}
