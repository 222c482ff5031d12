//! Dialling an upstream: the resolve override, the bounded resolver ([`super::resolve`]: its
//! own threads, per-agent and global caps, a negative cache), the egress guard on every address
//! actually dialled (no rebinding between check and connect), the connect timeout, TCP_NODELAY.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::egress::{literal_ip, EgressDenied, EgressGuard};
use super::resolve::Resolver;
use crate::wire::Target;

/// Opens TCP connections to upstreams, honouring the resolve override; every address is
/// checked by the egress guard right before it is dialled.
#[derive(Clone)]
pub struct Dialer {
    resolve: Arc<BTreeMap<String, SocketAddr>>,
    connect_timeout: Duration,
    guard: Arc<EgressGuard>,
    resolver: Arc<Resolver>,
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
            resolver: Arc::new(Resolver::default()),
        }
    }

    /// The resolver every clone of this dialer shares.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// How long a TCP connect (and the TLS handshake after it) may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub fn guard(&self) -> &EgressGuard {
        &self.guard
    }

    /// The guard, shared (a tunnel keeps it for the look at its first flight).
    pub fn guard_arc(&self) -> Arc<EgressGuard> {
        self.guard.clone()
    }

    /// The address the override maps `host` to, if any.
    pub fn overridden(&self, host: &str) -> Option<SocketAddr> {
        self.resolve.get(host).copied()
    }

    /// Checks what can be known before resolving: the port and literal IPs (any spelling).
    pub fn precheck(&self, target: &Target) -> Result<(), EgressDenied> {
        let mapped = self.overridden(&target.host);
        self.guard.check_port(target.port)?;
        self.guard.check_host(&target.host)?;
        if let Some(ip) = literal_ip(&target.host) {
            let addr = mapped.unwrap_or(SocketAddr::new(ip, target.port));
            self.guard
                .check_addr(&target.host, addr, mapped.is_some())?;
        }
        Ok(())
    }

    /// Resolves once, checks each address with the egress guard, and connects to the first
    /// allowed address that answers (the checked address is the one dialled: no rebinding).
    /// Resolving and every attempt together take at most `upstream.connect_timeout`.
    pub async fn dial(&self, target: &Target) -> io::Result<TcpStream> {
        self.dial_looked_up(target, None, false).await
    }

    /// [`Dialer::dial`] for a blind tunnel of `agent` (its lookup counts against the agent's
    /// resolver cap too): an address an inspected host is reached at is refused too
    /// (`inspected_host_address`), unless the operator's resolve override maps this very
    /// name there.
    pub async fn dial_tunnel(&self, target: &Target, agent: Option<&str>) -> io::Result<TcpStream> {
        self.dial_looked_up(target, agent, true).await
    }

    /// Resolves `target` through the resolver (for `agent`, if any), then dials it.
    async fn dial_looked_up(
        &self,
        target: &Target,
        agent: Option<&str>,
        tunnel: bool,
    ) -> io::Result<TcpStream> {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let lookup = async {
            self.resolver
                .resolve(&target.host, target.port, agent, deadline)
                .await
                .map_err(|e| e.into_io())
        };
        self.dial_resolving(target, deadline, lookup, tunnel).await
    }

    /// [`Dialer::dial`] with the resolver's answer given as a future (tests stand in for DNS).
    async fn dial_resolving(
        &self,
        target: &Target,
        deadline: tokio::time::Instant,
        lookup: impl Future<Output = io::Result<Vec<SocketAddr>>>,
        tunnel: bool,
    ) -> io::Result<TcpStream> {
        let timed_out = |what: String| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} took longer than upstream.connect_timeout"),
            )
        };
        let mapped = self.overridden(&target.host);
        self.guard
            .check_port(target.port)
            .map_err(|d| io::Error::new(io::ErrorKind::PermissionDenied, d))?;
        let addrs: Vec<SocketAddr> = match mapped {
            Some(a) => vec![a],
            None => match literal_ip(&target.host) {
                Some(ip) => vec![SocketAddr::new(ip, target.port)],
                None => tokio::time::timeout_at(deadline, lookup)
                    .await
                    .map_err(|_| timed_out(format!("resolving {}", target.host)))??,
            },
        };
        // Every address is checked first: the refused ones take no share of the time, and a
        // refusal is the answer only when no address could be tried.
        let mut refused = None;
        let mut allowed = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let checked = self
                .guard
                .check_addr(&target.host, addr, mapped.is_some())
                .and_then(|()| {
                    if tunnel && mapped.is_none() {
                        self.guard.check_tunnel_addr(&target.host, addr)
                    } else {
                        Ok(())
                    }
                });
            match checked {
                Ok(()) => allowed.push(addr),
                Err(denied) => {
                    tracing::warn!(host = %target.host, %addr, code = denied.code, "egress refused");
                    refused = Some(io::Error::new(io::ErrorKind::PermissionDenied, denied));
                }
            }
        }
        let mut last = refused.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "host resolved to no address")
        });
        let count = allowed.len();
        for (i, addr) in allowed.into_iter().enumerate() {
            // An address that does not answer leaves half of what is left to the next ones.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let budget = if i + 1 == count { left } else { left / 2 };
            match tokio::time::timeout(budget, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = timed_out(format!("connecting to {addr}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dialer(timeout: Duration) -> Dialer {
        let guard = EgressGuard::new(Vec::new(), Vec::new(), vec![443]);
        Dialer::new(BTreeMap::new(), timeout, Arc::new(guard))
    }

    /// A resolver that never answers fails the dial as a connect timeout once
    /// `upstream.connect_timeout` has passed (it waited forever before).
    #[tokio::test(start_paused = true)]
    async fn a_resolver_that_never_answers_times_out() {
        let d = dialer(Duration::from_secs(10));
        let target = Target::parse_authority("api.example:443", 443).expect("target");
        let started = tokio::time::Instant::now();
        let deadline = started + d.connect_timeout();
        let err = d
            .dial_resolving(&target, deadline, std::future::pending(), false)
            .await
            .expect_err("no answer");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(matches!(
            crate::upstream::failure::UpstreamFailure::from_dial_error(&err),
            crate::upstream::failure::UpstreamFailure::ConnectTimeout(_)
        ));
    }
}
