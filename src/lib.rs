//! Airlock: a forward HTTPS interception proxy that passes reversible API calls through and holds
//! irreversible ones until a human approves. See `docs/request-flow.md` for one request's path.

pub mod admin;
pub mod agents;
pub mod audit;
pub mod config;
pub mod credentials;
pub mod gate;
pub mod notify;
pub mod proxy;
pub mod rules;
#[cfg(target_os = "linux")]
pub mod sandbox;
pub mod server;
pub mod store;
pub mod tls;

/// Installs the process-wide rustls crypto provider (ring only). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
