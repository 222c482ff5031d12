//! Upstream side: dialling (resolve override, connect timeout, TCP_NODELAY) and the pooled
//! HTTP client (TLS verified, h2 or http/1.1 as the upstream negotiates, keep-alive).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::egress::{literal_ip, EgressDenied, EgressGuard};
use super::policy::{Decision, Permitted};
use super::target::Target;
use http::{Request, Response};
use http_body_util::BodyExt;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type used on both sides of the proxy.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Opens TCP connections to upstreams, honouring the resolve override; every address is
/// checked by the egress guard right before it is dialled.
#[derive(Clone)]
pub struct Dialer {
    resolve: Arc<BTreeMap<String, SocketAddr>>,
    connect_timeout: Duration,
    guard: Arc<EgressGuard>,
}

impl Dialer {
    pub fn new(
        resolve: BTreeMap<String, SocketAddr>,
        connect_timeout: Duration,
        guard: Arc<EgressGuard>,
    ) -> Self {
        Self {
            resolve: Arc::new(resolve),
            connect_timeout,
            guard,
        }
    }

    pub fn guard(&self) -> &EgressGuard {
        &self.guard
    }

    /// The address the override maps `host` to, if any.
    pub fn overridden(&self, host: &str) -> Option<SocketAddr> {
        self.resolve.get(host).copied()
    }

    /// Checks what can be known before resolving: the port and literal IPs (any spelling).
    pub fn precheck(&self, target: &Target) -> Result<(), EgressDenied> {
        let mapped = self.overridden(&target.host);
        self.guard.check_port(target.port)?;
        if let Some(ip) = literal_ip(&target.host) {
            let addr = mapped.unwrap_or(SocketAddr::new(ip, target.port));
            self.guard
                .check_addr(&target.host, addr, mapped.is_some())?;
        }
        Ok(())
    }

    /// Resolves once, checks each address with the egress guard, and connects to the first
    /// allowed address that answers (the checked address is the one dialled: no rebinding).
    pub async fn dial(&self, target: &Target) -> io::Result<TcpStream> {
        let mapped = self.overridden(&target.host);
        self.guard
            .check_port(target.port)
            .map_err(|d| io::Error::new(io::ErrorKind::PermissionDenied, d))?;
        let addrs: Vec<SocketAddr> = match mapped {
            Some(a) => vec![a],
            None => match literal_ip(&target.host) {
                Some(ip) => vec![SocketAddr::new(ip, target.port)],
                None => tokio::net::lookup_host((target.host.as_str(), target.port))
                    .await?
                    .collect(),
            },
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
        for addr in addrs {
            if let Err(denied) = self.guard.check_addr(&target.host, addr, mapped.is_some()) {
                tracing::warn!(host = %target.host, %addr, code = denied.code, "egress refused");
                last = io::Error::new(io::ErrorKind::PermissionDenied, denied);
                continue;
            }
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect to {addr} timed out"),
                    )
                }
            }
        }
        Err(last)
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let default_port = if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            };
            let authority = uri
                .authority()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI has no host"))?;
            let target = Target::parse_authority(authority.as_str(), default_port)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            dialer.dial(&target).await.map(TokioIo::new)
        })
    }
}

/// The pooled upstream client.
pub type UpstreamClient = Client<HttpsConnector<Dialer>, Body>;

/// One upstream pool per connection worker (plus one for every other thread), so a request
/// reuses connections driven by its own worker's reactor, never another thread's.
pub struct UpstreamPools {
    pools: Vec<UpstreamClient>,
}

impl UpstreamPools {
    pub fn new(
        workers: usize,
        tls: &Arc<rustls::ClientConfig>,
        dialer: &Dialer,
        pool_idle_timeout: Duration,
    ) -> Self {
        Self {
            pools: (0..=workers)
                .map(|_| client(tls.clone(), dialer.clone(), pool_idle_timeout))
                .collect(),
        }
    }

    /// The pool of the worker running the calling thread.
    pub fn current(&self) -> &UpstreamClient {
        &self.pools[super::workers::Workers::current() % self.pools.len()]
    }
}

/// A pooled client: h2 where the upstream offers it, else HTTP/1.1.
pub fn client(
    tls: Arc<rustls::ClientConfig>,
    dialer: Dialer,
    pool_idle_timeout: Duration,
) -> UpstreamClient {
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

/// The only way a request reaches an upstream: it must carry policy's permission.
/// Hop-by-hop headers are stripped from the answer, whose body streams.
pub async fn send(
    client: &UpstreamClient,
    permitted: Permitted<Request<Body>>,
) -> Result<Response<Body>, UpstreamFailure> {
    let (req, decision) = permitted.into_parts();
    match client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            super::handler::strip_hop_by_hop(&mut parts.headers);
            let body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
            Ok(Response::from_parts(parts, body))
        }
        Err(e) => {
            let failure = UpstreamFailure::from_client_error(&e);
            tracing::warn!(failure = ?failure, decision = ?decision_kind(&decision), "upstream request failed");
            Err(failure)
        }
    }
}

fn decision_kind(d: &Decision) -> &'static str {
    match d {
        Decision::Verdict(_) => "verdict",
        Decision::UnknownHostTunnel => "tunnel",
        Decision::Approved { .. } => "approved",
    }
}

/// Why an upstream exchange failed, in words safe to show an agent, by where it failed: before
/// any request byte was written (connecting) or after (the exchange). Decided by hyper-util's
/// own signal ([`hyper_util::client::legacy::Error::is_connect`]: the connector, which
/// resolves, dials, passes the egress guard and completes TLS, failed), never by error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Not sent: the egress guard refused the destination.
    Egress(EgressDenied),
    /// Not sent: the upstream's certificate did not verify.
    Certificate(String),
    /// Not sent: resolving, connecting or the TLS handshake failed.
    Connect(String),
    /// Not sent: connecting took longer than `upstream.connect_timeout`.
    ConnectTimeout(String),
    /// Maybe sent: the connection was up and the request may have been written, then the
    /// exchange failed (reset, close, a malformed or missing answer).
    Exchange(String),
}

impl UpstreamFailure {
    pub fn from_client_error(err: &hyper_util::client::legacy::Error) -> Self {
        if !err.is_connect() {
            return Self::Exchange(error_chain(err));
        }
        Self::connect_failure(err)
    }

    /// The kind of a failure to connect (nothing was written).
    fn connect_failure(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut timed_out = false;
        while let Some(e) = cur {
            if let Some(denied) = e.downcast_ref::<EgressDenied>() {
                return Self::Egress(denied.clone());
            }
            if let Some(rustls::Error::InvalidCertificate(c)) = e.downcast_ref::<rustls::Error>() {
                return Self::Certificate(format!("upstream certificate rejected: {c:?}"));
            }
            if let Some(ioe) = e.downcast_ref::<io::Error>() {
                timed_out |= ioe.kind() == io::ErrorKind::TimedOut;
                if let Some(inner) = ioe.get_ref() {
                    cur = Some(inner);
                    continue;
                }
            }
            cur = e.source();
        }
        let text = error_chain(err);
        if timed_out {
            Self::ConnectTimeout(text)
        } else {
            Self::Connect(text)
        }
    }

    /// May any byte of the request have reached the upstream?
    pub fn maybe_sent(&self) -> bool {
        matches!(self, Self::Exchange(_))
    }

    /// The message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::Egress(d) => &d.message,
            Self::Certificate(m)
            | Self::Connect(m)
            | Self::ConnectTimeout(m)
            | Self::Exchange(m) => m,
        }
    }
}

/// `a: b: c` for an error and its sources.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
