//! The one way out. Every byte Airlock sends to a provider or any other upstream goes through
//! [`Upstream`], and only with a [`Permitted`] that the policy module ([`permit`]) minted:
//! forwarding without a decision does not compile. Credentials are injected here, at the last
//! moment, so nothing above ever holds a request with the real token in it.
//!
//! Pools: one per connection worker (plus one for every other thread), so a request reuses
//! connections driven by its own worker's reactor. An HTTPS upstream that negotiates h2 is
//! served by Airlock's own h2 connections, a request sent from its own task ([`h2conn`]);
//! HTTP/1.1 and plain HTTP by a hyper-util pool. Agents never share an h2 connection (each
//! has its own per worker and target: [`Partition`]), so one that stops reading its answers
//! stalls only itself. A worker with no connection
//! to a target borrows another worker's warm one ([`conns`]); an intercepted CONNECT pre-dials
//! (TCP + TLS, no request byte) while the agent's own TLS handshake runs ([`Upstream::predial`]),
//! on another worker, whose finished socket then moves to the taking worker ([`socket`]).
//! TLS is verified; h2 or http/1.1 as the upstream negotiates; sessions resume.

mod connect;
pub mod conns;
mod dial;
pub mod egress;
mod failure;
mod h2conn;
pub mod permit;
mod read_buffer;
pub mod resolve;
mod socket;

pub use dial::Dialer;
pub use failure::UpstreamFailure;
pub use h2conn::Partition;
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
use crate::wire::{error_chain, strip_hop_by_hop, Body, BoxError, Target};

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

/// Which pool a request goes on.
#[derive(Clone, Copy)]
enum Pool {
    /// The calling worker's.
    Own,
    /// The worker's, or another agent pool's warm connection when the worker has none.
    OwnOrBorrowed,
    /// The approved calls' own.
    Approved,
}

/// The upstream side: pools, the dialer (with the egress guard) and the credential vault.
pub struct Upstream {
    pools: Vec<PooledClient>,
    dialer: Dialer,
    tls: tokio_rustls::TlsConnector,
    conns: Arc<conns::Conns<connect::Ready>>,
    h2: Arc<h2conn::H2Conns>,
    vault: Arc<Vault>,
}

/// How a request went on the h2 path.
enum Lane {
    /// Sent (or failed) on one of Airlock's own h2 connections.
    Done(Result<Response<Body>, UpstreamFailure>),
    /// The target speaks HTTP/1.1: the request goes through hyper-util's pool.
    Http1(Request<Body>),
}

/// What a cold pool's dial gave.
enum Dialled {
    H2(h2conn::Checked),
    Http1,
    Failed(UpstreamFailure),
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
        // Pools 0..=workers for agent connections (0: any thread outside the workers), and one
        // more for approved calls, which agents' requests never borrow.
        let conns = conns::Conns::new(workers + 2, workers + 1);
        Self {
            pools: (0..=workers + 1)
                .map(|pool| {
                    let c =
                        connect::Connector::new(dialer.clone(), tls.clone(), conns.clone(), pool);
                    pooled(c, pool_idle_timeout)
                })
                .collect(),
            dialer,
            tls,
            conns,
            h2: h2conn::H2Conns::new(workers + 2, pool_idle_timeout),
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
    pub fn predial(
        &self,
        target: &Target,
        part: Partition,
        on: Option<&Handle>,
    ) -> Option<PreDial> {
        let pool = current_worker() % self.pools.len();
        let key = (target.host.clone(), target.port);
        if self
            .conns
            .warm_anywhere(&key, |p| self.h2.warm(p, (&target.host, target.port, part)))
        {
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

    /// Sends a permitted request and streams the answer back (hop-by-hop headers and any
    /// non-standard HTTP/1.1 reason phrase stripped). The real credential for the request's
    /// host is injected here, except on plain HTTP to a host outside the catalog (a tunnel by
    /// policy, which never carries one); a request to a credentialed host over plain HTTP is
    /// refused here, before a byte is sent ([`UpstreamFailure::CredentialOverHttp`]), whatever
    /// permitted it.
    ///
    /// For approved calls: they go on a pool of their own, which no agent request borrows, so
    /// an agent that stalls its streams on a shared HTTP/2 connection (it stops reading, and
    /// the connection's flow-control window fills) cannot hold up a call a human approved.
    pub async fn send_approved(
        &self,
        permitted: Permitted<Request<Body>>,
    ) -> Result<Response<Body>, UpstreamFailure> {
        self.send_on(permitted, Pool::Approved, Partition::AIRLOCK)
            .await
    }

    /// Sends a permitted request from an agent connection, on the agent's own h2 connections
    /// (`part`). Its first request may borrow another worker's warm connection when its own
    /// worker has none (no dial, no handshake); later ones use the worker's own pool, which
    /// then dials once and stays warm, so a busy connection's requests never cross threads.
    pub async fn send_from(
        &self,
        permitted: Permitted<Request<Body>>,
        part: Partition,
        may_borrow: bool,
    ) -> Result<Response<Body>, UpstreamFailure> {
        let pool = if may_borrow {
            Pool::OwnOrBorrowed
        } else {
            Pool::Own
        };
        self.send_on(permitted, pool, part).await
    }

    async fn send_on(
        &self,
        permitted: Permitted<Request<Body>>,
        choice: Pool,
        part: Partition,
    ) -> Result<Response<Body>, UpstreamFailure> {
        let (mut req, decision) = permitted.into_parts();
        let approved = self.pools.len() - 1;
        let own = match choice {
            Pool::Approved => approved,
            // Agents' threads: a worker's own pool (never the approved calls' one).
            _ => current_worker() % approved,
        };
        let may_borrow = matches!(choice, Pool::OwnOrBorrowed);
        let mut pool = own;
        let mut h2_target = None;
        if !matches!(decision, Decision::UnknownHostTunnel) {
            // The normalised host (case, trailing dot), as the vault names it.
            let https = req.uri().scheme_str() != Some("http");
            let default_port = if https { 443 } else { 80 };
            let target = req
                .uri()
                .authority()
                .and_then(|a| Target::parse_authority(a.as_str(), default_port).ok());
            if let Some(t) = target {
                if !https && self.vault.service_for_host(&t.host).is_some() {
                    let failure = UpstreamFailure::CredentialOverHttp(format!(
                        "not sent: {} has a configured credential, which never travels over \
                         plain http:// (credential_over_http); use https://",
                        t.host
                    ));
                    return Err(failed(failure, &decision));
                }
                self.vault.inject(&t.host, req.headers_mut());
                if may_borrow {
                    // Only a pool where this agent would not dial: another agent's h2
                    // connection is no use to it.
                    pool = self.conns.choose(own, &t.host, t.port, |p| {
                        !https || self.h2.warm(p, (&t.host, t.port, part))
                    });
                    if pool != own && https {
                        // Borrowed across threads (about 0.1 ms more than its own pool's):
                        // the next agent connection on this worker finds its own.
                        self.warm_up(own, t.clone());
                    }
                }
                if https {
                    h2_target = Some(t);
                }
            }
        }
        if let Some(t) = h2_target {
            match self.send_h2(pool, (&t, part), req).await {
                Lane::Done(Ok(resp)) => return Ok(strip_response(resp)),
                Lane::Done(Err(failure)) => return Err(failed(failure, &decision)),
                Lane::Http1(back) => req = back,
            }
        }
        match self.pools[pool].request(req).await {
            Ok(resp) => {
                let resp =
                    resp.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync());
                Ok(strip_response(resp))
            }
            Err(e) => Err(failed(UpstreamFailure::from_client_error(&e), &decision)),
        }
    }

    /// Sends on pool `pool`'s h2 connection to `t` for partition `part`, dialling one if the
    /// pool has none; a connection found closed before anything was sent is replaced once.
    async fn send_h2(
        &self,
        pool: usize,
        (t, part): (&Target, Partition),
        mut req: Request<Body>,
    ) -> Lane {
        let mut replaced = false;
        loop {
            let checked = match self.h2.checkout(pool, (&t.host, t.port, part)) {
                h2conn::Checkout::Ready(c) => c,
                h2conn::Checkout::Http1 => return Lane::Http1(req),
                // Boxed: the dial's futures (TCP, TLS, h2 handshake) are large, and inline they
                // would make every request's future as large (it is moved whole per request).
                h2conn::Checkout::Cold(dialing, was_http1) => {
                    match Box::pin(self.dial_h2(pool, (t, part), dialing, was_http1)).await {
                        Dialled::H2(c) => c,
                        Dialled::Http1 => return Lane::Http1(req),
                        Dialled::Failed(f) => return Lane::Done(Err(f)),
                    }
                }
            };
            let not_sent = |e: h2::Error| {
                UpstreamFailure::Connect(format!("request not sent to {t}: {}", error_chain(&e)))
            };
            return match h2conn::send(checked, req).await {
                Ok(resp) => Lane::Done(Ok(resp)),
                Err(h2conn::SendError::Closed(id, back)) if !replaced => {
                    self.h2.forget(pool, (&t.host, t.port, part), Some(id));
                    replaced = true;
                    req = *back;
                    continue;
                }
                Err(h2conn::SendError::Closed(..)) => Lane::Done(Err(UpstreamFailure::Connect(
                    format!("request not sent to {t}: the connection closed before it"),
                ))),
                Err(h2conn::SendError::NotSent(e)) => Lane::Done(Err(not_sent(e))),
                Err(h2conn::SendError::MaybeSent(e)) => {
                    Lane::Done(Err(UpstreamFailure::Exchange(error_chain(&e))))
                }
            };
        }
    }

    /// Gives pool `pool` a connection to `t`: its pre-dial or warm-up if one is waiting, else a
    /// dial. One dial per pool and target at a time (`dialing`); a request that waited for
    /// another's dial uses its connection. A connection whose ALPN answer is not h2 goes to
    /// hyper-util's pool, which takes it as it would a pre-dial. A target that spoke HTTP/1.1
    /// is asked again only once hyper-util's pool has no connection to it.
    async fn dial_h2(
        &self,
        pool: usize,
        (t, part): (&Target, Partition),
        dialing: Arc<tokio::sync::Mutex<()>>,
        was_http1: bool,
    ) -> Dialled {
        let _dialing = dialing.lock().await;
        let spot = (t.host.as_str(), t.port, part);
        match self.h2.checkout(pool, spot) {
            h2conn::Checkout::Ready(c) => return Dialled::H2(c),
            h2conn::Checkout::Http1 => return Dialled::Http1,
            h2conn::Checkout::Cold(..) => {}
        }
        let key = (t.host.clone(), t.port);
        if was_http1
            && self
                .conns
                .live_count(&key)
                .get(pool)
                .is_some_and(|n| *n > 0)
        {
            self.h2.mark_http1(pool, &(t.host.clone(), t.port, part));
            return Dialled::Http1;
        }
        let io = match self.conns.take(pool, &key).await {
            Some(Ok((mut tls, live))) => tls.get_mut().0.get_mut().attach().map(|()| (tls, live)),
            Some(Err(e)) => Err(e),
            None => connect::handshake(&self.dialer, &self.tls, t)
                .await
                .map(|tls| (tls, self.conns.live(pool, &key))),
        };
        let (io, live) = match io {
            Ok(io) => io,
            Err(e) => {
                drop(_dialing);
                drop(dialing);
                self.h2.forget(pool, spot, None);
                return Dialled::Failed(UpstreamFailure::from_dial_error(&e));
            }
        };
        if io.get_ref().1.alpn_protocol() != Some(b"h2") {
            self.h2.mark_http1(pool, &(t.host.clone(), t.port, part));
            // hyper-util's pool takes it as a pre-dial, and counts it live itself.
            drop(live);
            self.conns.warm_up(pool, key, async move { Ok(io) });
            return Dialled::Http1;
        }
        let h2_key = (t.host.clone(), t.port, part);
        match self.h2.connect(pool, h2_key, io, live).await {
            Ok(c) => Dialled::H2(c),
            Err(e) => {
                drop(_dialing);
                drop(dialing);
                self.h2.forget(pool, spot, None);
                Dialled::Failed(UpstreamFailure::Connect(format!(
                    "HTTP/2 handshake with {t} failed: {}",
                    error_chain(&e)
                )))
            }
        }
    }

    /// Opens a blind TCP connection for a permitted tunnel (`CONNECT` to a host outside the
    /// catalog while `unknown_hosts = "tunnel"`), for `agent` (its lookups count against its
    /// own resolver cap: [`resolve`]).
    pub async fn open_tunnel(
        &self,
        permitted: Permitted<Target>,
        agent: &str,
    ) -> Result<TcpStream, UpstreamFailure> {
        let (target, _) = permitted.into_parts();
        self.dialer
            .dial_tunnel(&target, Some(agent))
            .await
            .map_err(|e| {
                let failure = UpstreamFailure::from_dial_error(&e);
                crate::metrics::upstream_error(failure.kind());
                failure
            })
    }
}

/// A response with hop-by-hop headers stripped, and without the upstream's HTTP/1.1 reason
/// phrase when it was not the standard one (hyper keeps it, and the agent's HTTP/1.1 side would
/// write it back unscrubbed): the agent gets the canonical reason.
fn strip_response(mut resp: Response<Body>) -> Response<Body> {
    strip_hop_by_hop(resp.headers_mut());
    resp.extensions_mut().remove::<hyper::ext::ReasonPhrase>();
    resp
}

/// Counts and logs an upstream failure.
fn failed(failure: UpstreamFailure, decision: &Decision) -> UpstreamFailure {
    crate::metrics::upstream_error(failure.kind());
    tracing::warn!(failure = ?failure, decision = decision.kind(), "upstream request failed");
    failure
}

/// A pooled client: h2 where the upstream offers it, else HTTP/1.1.
///
/// hyper-util's legacy pool caps only idle connections per host: on an HTTP/1.1 upstream each
/// request in flight gets a connection of its own. What bounds them is the cap on each agent's
/// requests in flight (`proxy.max_requests_in_flight_per_agent`, counted until the response
/// body ends or is dropped), not a semaphore per pool and host here: one would queue agents
/// behind each other's slow requests, where the per-agent cap refuses only the agent that
/// holds too many. The start's open-files check counts that bound
/// (`ProxyConfig::upstream_connections_bound`).
fn pooled(connector: connect::Connector, pool_idle_timeout: Duration) -> PooledClient {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(pool_idle_timeout)
        .pool_max_idle_per_host(256)
        .http2_max_frame_size(h2conn::MAX_FRAME)
        .build(connector)
}
