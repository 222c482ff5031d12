//! Per-host TLS server configurations for interception, minted on demand and kept in a bounded LRU.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::ca::LEAF_VALIDITY_DAYS;
use super::{CertificateAuthority, TlsError};

/// A cached leaf is re-minted once it is this old, long before it expires.
const REMINT_AFTER: Duration = Duration::from_secs(LEAF_VALIDITY_DAYS as u64 * 86_400 / 2);

struct Entry {
    config: Arc<ServerConfig>,
    minted: Instant,
}

/// Sessions remembered for TLS 1.2 resumption by session id, across every host.
const SESSION_CACHE_SIZE: usize = 4096;

/// Bounded cache of ready-to-use server configs, one per intercepted host.
pub struct LeafCache {
    ca: Arc<CertificateAuthority>,
    cache: Mutex<LruCache<String, Entry>>,
    /// Shared by every host's config so an agent's reconnect resumes its TLS session (one
    /// round trip and no signature). rustls resumes only under the SNI the session was made
    /// for, so a ticket for one host never opens another.
    resumption: Resumption,
}

#[derive(Clone)]
struct Resumption {
    tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
}

impl Resumption {
    fn new() -> Resumption {
        // Without a ticketer (it failed to start), TLS 1.3 resumes from the session cache.
        let tickets = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| tracing::warn!(error = %e, "no TLS session tickets toward agents"))
            .ok();
        Resumption {
            tickets,
            sessions: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
        }
    }
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl LeafCache {
    pub fn new(ca: Arc<CertificateAuthority>, capacity: NonZeroUsize) -> Self {
        Self {
            ca,
            cache: Mutex::new(LruCache::new(capacity)),
            resumption: Resumption::new(),
        }
    }

    /// The server config presenting a leaf for `host` (normalised lower-case, no port),
    /// offering ALPN h2 and http/1.1.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, TlsError> {
        if let Some(hit) = self.lookup(host) {
            return Ok(hit);
        }
        // Mint outside the lock; a racing duplicate mint is harmless.
        let key = Arc::new(self.ca.mint_leaf(host)?);
        let mut config = ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(key)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Our suite order, not the client's (most prefer AES-256-GCM with SHA-384).
        config.ignore_client_order = true;
        config.session_storage = self.resumption.sessions.clone();
        if let Some(t) = &self.resumption.tickets {
            config.ticketer = t.clone();
        }
        let config = Arc::new(config);
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(
                host.to_string(),
                Entry {
                    config: config.clone(),
                    minted: Instant::now(),
                },
            );
        }
        Ok(config)
    }

    fn lookup(&self, host: &str) -> Option<Arc<ServerConfig>> {
        let mut cache = self.cache.lock().ok()?;
        match cache.get(host) {
            Some(e) if e.minted.elapsed() < REMINT_AFTER => Some(e.config.clone()),
            _ => None,
        }
    }

    /// Number of cached hosts.
    pub fn len(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
