//! The one way out. Every byte Airlock sends to a provider or any other upstream goes through
//! [`Upstream`], and only with a [`Permitted`] that the policy module ([`permit`]) minted:
//! forwarding without a decision does not compile. Credentials are injected here, at the last
//! moment, so nothing above ever holds a request with the real token in it.
//!
//! Pools: one hyper-util pool per connection worker (plus one for every other thread), so a
//! request reuses connections driven by its own worker's reactor. A worker with no connection
//! to a target borrows another worker's warm one ([`conns`]); an intercepted CONNECT pre-dials
//! (TCP + TLS, no request byte) while the agent's own TLS handshake runs ([`Upstream::predial`]),
//! on another worker, whose finished socket then moves to the taking worker ([`socket`]).
//! TLS is verified; h2 or http/1.1 as the upstream negotiates; sessions resume.

mod connect;
pub mod conns;
mod dial;
pub mod egress;
mod failure;
pub mod permit;
mod socket;

pub use dial::Dialer;
pub use failure::UpstreamFailure;
pub use permit::{Decision, Permitted};

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;
use tokio::runtime::Handle;

use crate::credentials::Vault;
use crate::wire::{strip_hop_by_hop, Body, BoxError, Target};

type PooledClient = Client<connect::Connector, Body>;

/// A pre-dialled upstream connection, owned by the agent connection that caused it.
pub type PreDial = conns::PreDial<connect::Ready>;

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
    tls: tokio_rustls::TlsConnector,
    conns: Arc<conns::Conns<connect::Ready>>,
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
        let mut tls = (**tls).clone();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tls = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let conns = conns::Conns::new(workers + 1);
        Self {
            pools: (0..=workers)
                .map(|pool| {
                    let c =
                        connect::Connector::new(dialer.clone(), tls.clone(), conns.clone(), pool);
                    pooled(c, pool_idle_timeout)
                })
                .collect(),
            dialer,
            tls,
            conns,
            vault,
        }
    }

    /// Starts TCP + TLS to an intercepted CONNECT's `target` for the calling worker's pool,
    /// unless a pool has a connection to it (the first request borrows that one) or this pool
    /// has a pre-dial under way. Call only once the egress pre-check and the agent's limits
    /// passed; no request byte is sent until a permitted request takes the connection.
    /// Dropping the guard cancels the dial, or drops the connection if no request took it.
    ///
    /// `on`: the runtime to dial on, e.g. another worker's, so the upstream handshake's CPU
    /// runs beside the agent's handshake instead of after it; `None`: the calling one. The
    /// finished connection's socket is detached for the taking worker to attach.
    pub fn predial(&self, target: &Target, on: Option<&Handle>) -> Option<PreDial> {
        let pool = current_worker() % self.pools.len();
        let key = (target.host.clone(), target.port);
        if self.conns.warm_anywhere(&key) {
            return None;
        }
        let (dialer, tls, target) = (self.dialer.clone(), self.tls.clone(), target.clone());
        self.conns.predial(pool, key, on, async move {
            let mut ready = connect::handshake(&dialer, &tls, &target).await?;
            ready.get_mut().0.get_mut().detach()?;
            Ok(ready)
        })
    }

    /// Dials TCP + TLS to `target` for pool `pool` in the background, unless it is covered
    /// (see [`conns::Conns::warm_up`]). It runs on the pool's own worker, so its socket stays
    /// where it is (the connector's attach leaves a registered socket alone).
    fn warm_up(&self, pool: usize, target: Target) {
        let key = (target.host.clone(), target.port);
        let (dialer, tls) = (self.dialer.clone(), self.tls.clone());
        self.conns.warm_up(pool, key, async move {
            connect::handshake(&dialer, &tls, &target).await
        });
    }

    /// Live upstream connections per pool to `host:port` (pool 0 serves non-worker threads).
    pub fn live_connections(&self, host: &str, port: u16) -> Vec<u32> {
        self.conns.live_count(&(host.to_string(), port))
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
        self.send_from(permitted, true).await
    }

    /// [`Upstream::send`] for a request on an agent connection. Its first request may borrow
    /// another worker's warm connection when its own worker has none (no dial, no handshake);
    /// later ones use the worker's own pool, which then dials once and stays warm, so a busy
    /// connection's requests never cross threads.
    pub async fn send_from(
        &self,
        permitted: Permitted<Request<Body>>,
        may_borrow: bool,
    ) -> Result<Response<Body>, UpstreamFailure> {
        let (mut req, decision) = permitted.into_parts();
        let own = current_worker() % self.pools.len();
        let mut pool = own;
        if !matches!(decision, Decision::UnknownHostTunnel) {
            // The normalised host (case, trailing dot), as the vault names it.
            let default_port = if req.uri().scheme_str() == Some("http") {
                80
            } else {
                443
            };
            let target = req
                .uri()
                .authority()
                .and_then(|a| Target::parse_authority(a.as_str(), default_port).ok());
            if let Some(t) = target {
                self.vault.inject(&t.host, req.headers_mut());
                if may_borrow {
                    pool = self.conns.choose(own, &t.host, t.port);
                    if pool != own && default_port == 443 {
                        // Borrowed across threads (about 0.1 ms more than its own pool's):
                        // the next agent connection on this worker finds its own.
                        self.warm_up(own, t);
                    }
                }
            }
        }
        let pool = &self.pools[pool];
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

/// Largest h2 DATA frame Airlock accepts from upstreams (the protocol's default is 16 KiB).
const H2_MAX_FRAME: u32 = 256 * 1024;

/// A pooled client: h2 where the upstream offers it, else HTTP/1.1.
fn pooled(connector: connect::Connector, pool_idle_timeout: Duration) -> PooledClient {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(pool_idle_timeout)
        .pool_max_idle_per_host(256)
        // Larger h2 DATA frames from upstreams that send them: fewer frames, and fewer writes
        // toward the agent, per streamed byte.
        .http2_max_frame_size(H2_MAX_FRAME)
        .build(connector)
}
