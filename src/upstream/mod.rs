//! The one way out. Every byte Airlock sends to a provider or any other upstream goes through
//! [`Upstream`], and only with a [`Permitted`] that the policy module ([`permit`]) minted:
//! forwarding without a decision does not compile. Credentials are injected here, at the last
//! moment, so nothing above ever holds a request with the real token in it.
//!
//! Pools: one hyper-util pool per connection worker (plus one for every other thread), so a
//! request reuses connections driven by its own worker's reactor. TLS is verified; h2 or
//! http/1.1 as the upstream negotiates.

mod dial;
pub mod egress;
mod failure;
pub mod permit;

pub use dial::Dialer;
pub use failure::UpstreamFailure;
pub use permit::{Decision, Permitted};

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;

use crate::credentials::Vault;
use crate::wire::{strip_hop_by_hop, Body, BoxError, Target};

type PooledClient = Client<HttpsConnector<Dialer>, Body>;

thread_local! {
    /// 1-based index of the connection worker this thread runs; 0 on any other thread.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as connection worker `index` (1-based) for pool selection.
pub fn enter_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// 1-based index of the worker running the calling thread, 0 outside every worker.
pub fn current_worker() -> usize {
    WORKER.with(|w| w.get())
}

/// The upstream side: pools, the dialer (with the egress guard) and the credential vault.
pub struct Upstream {
    pools: Vec<PooledClient>,
    dialer: Dialer,
    vault: Arc<Vault>,
}

impl Upstream {
    /// `workers`: how many connection workers will send (each gets its own pool).
    pub fn new(
        workers: usize,
        tls: &Arc<rustls::ClientConfig>,
        dialer: Dialer,
        pool_idle_timeout: Duration,
        vault: Arc<Vault>,
    ) -> Self {
        Self {
            pools: (0..=workers)
                .map(|_| pooled(tls.clone(), dialer.clone(), pool_idle_timeout))
                .collect(),
            dialer,
            vault,
        }
    }

    /// The dialer, for checks that send nothing (the egress pre-check at CONNECT).
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Sends a permitted request and streams the answer back (hop-by-hop headers stripped).
    /// The real credential for the request's host is injected here, except on plain HTTP to a
    /// host outside the catalog (a tunnel by policy, which never carries one).
    pub async fn send(
        &self,
        permitted: Permitted<Request<Body>>,
    ) -> Result<Response<Body>, UpstreamFailure> {
        let (mut req, decision) = permitted.into_parts();
        if !matches!(decision, Decision::UnknownHostTunnel) {
            // The normalised host (case, trailing dot), as the vault names it.
            let target = req
                .uri()
                .authority()
                .and_then(|a| Target::parse_authority(a.as_str(), 443).ok());
            if let Some(t) = target {
                self.vault.inject(&t.host, req.headers_mut());
            }
        }
        let pool = &self.pools[current_worker() % self.pools.len()];
        match pool.request(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
                Ok(Response::from_parts(parts, body))
            }
            Err(e) => {
                let failure = UpstreamFailure::from_client_error(&e);
                crate::metrics::upstream_error(failure.kind());
                tracing::warn!(failure = ?failure, decision = decision.kind(), "upstream request failed");
                Err(failure)
            }
        }
    }

    /// Opens a blind TCP connection for a permitted tunnel (`CONNECT` to a host outside the
    /// catalog while `unknown_hosts = "tunnel"`).
    pub async fn open_tunnel(
        &self,
        permitted: Permitted<Target>,
    ) -> Result<TcpStream, UpstreamFailure> {
        let (target, _) = permitted.into_parts();
        self.dialer.dial(&target).await.map_err(|e| {
            let failure = UpstreamFailure::from_dial_error(&e);
            crate::metrics::upstream_error(failure.kind());
            failure
        })
    }
}

/// A pooled client: h2 where the upstream offers it, else HTTP/1.1.
fn pooled(
    tls: Arc<rustls::ClientConfig>,
    dialer: Dialer,
    pool_idle_timeout: Duration,
) -> PooledClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(dialer);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(pool_idle_timeout)
        .pool_max_idle_per_host(256)
        .build(https)
}
