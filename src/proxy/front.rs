//! Agent-facing listener: accepts TCP, speaks HTTP/1.1, and routes `CONNECT` and absolute-form
//! requests to interception, a tunnel, or a refusal.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::handler::{self, ConnInfo};
use super::io::{Activity, Tracked};
use super::policy::Route;
use super::preauth::{Refused, Throttle, Ticket};
use super::workers::{Open, Seat};
use super::{mitm, tunnel, Lifecycle, Proxy};
use crate::agents::Agent;
use crate::upstream::{permit, UpstreamFailure};
use crate::wire::{empty, Body, Refusal, Target};

/// Accepts agents' connections on `listener` (on a worker, or on the main runtime: `seat`)
/// and serves each where it was accepted, until shutdown.
pub(super) async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    life: Lifecycle,
    seat: Seat,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = life.shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ticket = match proxy.preauth.admit(peer.ip()) {
            Ok(t) => t,
            Err(why) => {
                life.tasks.spawn(refuse_unauthenticated(stream, why));
                continue;
            }
        };
        let served = proxy.clone();
        let life2 = life.clone();
        let tracked = life.tasks.token();
        seat.serve(stream, move |stream, open| async move {
            // The slot is held by the connection and, after a CONNECT, by its tunnel: hyper
            // finishes the front connection at the upgrade, the tunnel task keeps a clone.
            let evicted = ticket.evicted();
            let slot = Arc::new(ConnSlot {
                _open: open,
                preauth: Mutex::new(Some(ticket)),
                head_seen: CancellationToken::new(),
                admitted: std::sync::OnceLock::new(),
            });
            serve_front(stream, peer, served, life2, slot, evicted).await;
            drop(tracked);
        });
    }
}

static OVER_LIMIT: Throttle =
    Throttle::new("connection limit reached (proxy.max_connections); refusing connections");
static OVER_PREAUTH: Throttle = Throttle::new(
    "unauthenticated connections refused (proxy.max_unauthenticated_connections full of requests in progress)",
);
static OVER_ADDRESS: Throttle = Throttle::new(
    "unauthenticated connections refused (proxy.unauthenticated_per_address reached)",
);

fn connection_limit_refusal() -> Response<Body> {
    OVER_LIMIT.note();
    closing(
        Refusal::internal(
            "connection_limit",
            "Airlock is at its connection limit; retry later",
        )
        .into_response(),
    )
}

/// Answers a connection refused a place among unauthenticated ones, with one bounded write.
async fn refuse_unauthenticated(mut stream: TcpStream, why: Refused) {
    let (status, code, message) = match why {
        Refused::Full => {
            OVER_PREAUTH.note();
            (
                "503 Service Unavailable",
                "unauthenticated_connection_limit",
                "Airlock has too many connections that have not authenticated yet; retry later",
            )
        }
        Refused::PerAddress => {
            OVER_ADDRESS.note();
            ("429 Too Many Requests", "unauthenticated_per_address", "too many connections from this address have not authenticated yet (proxy.unauthenticated_per_address); retry later")
        }
    };
    let body = format!(r#"{{"error":"{code}","side":"internal","message":"{message}"}}"#);
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nairlock-reason: {code}\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(resp.as_bytes())).await;
}

/// One slot of `proxy.max_connections` and the count of its worker's connections, shared by a
/// connection and the interception or tunnel it opens.
type Slot = Arc<ConnSlot>;

struct ConnSlot {
    _open: Open,
    /// Its place among unauthenticated connections, until the first authenticated request.
    preauth: Mutex<Option<Ticket>>,
    /// Cancelled at the first request head (ends `proxy.first_request_timeout`).
    head_seen: CancellationToken,
    /// Its `proxy.max_connections` slot and its slot among its agent's connections, taken by
    /// the first authenticated request.
    admitted: std::sync::OnceLock<(OwnedSemaphorePermit, crate::gate::AgentSlot)>,
}

impl ConnSlot {
    fn saw_head(&self) {
        if !self.head_seen.is_cancelled() {
            // Not evictable first, then the first-request wait ends: an eviction in between
            // would close a connection whose request already runs.
            if let Some(t) = self
                .preauth
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                t.head_seen();
            }
            self.head_seen.cancel();
        }
    }

    fn authenticated(&self) -> bool {
        self.admitted.get().is_some()
    }
}

async fn serve_front(
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    life: Lifecycle,
    slot: Slot,
    evicted: CancellationToken,
) {
    let activity = Activity::new();
    let first_request = proxy.config.first_request_timeout;
    let head_seen = slot.head_seen.clone();
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let service = FrontService {
        proxy: proxy.clone(),
        life: life.clone(),
        peer,
        slot,
    };
    let conn = http1_builder(&proxy)
        .serve_connection(io, service)
        .with_upgrades();
    let served = async { drive!(conn, activity, proxy.config.idle_timeout, life) };
    // Before its first request head, the connection may be closed unanswered: too slow, or
    // its place in the pool taken by a newer connection.
    let waited = async {
        tokio::select! {
            biased;
            _ = head_seen.cancelled() => std::future::pending::<()>().await,
            _ = evicted.cancelled() => tracing::debug!(%peer, "an idle unauthenticated connection closed for a newer one"),
            _ = tokio::time::sleep(first_request) => tracing::debug!(%peer, "no request head within proxy.first_request_timeout; connection closed"),
        }
    };
    tokio::select! {
        _ = served => {}
        _ = waited => {}
    }
}

/// Boxed response future: a named type keeps the spawned futures provably `Send`.
pub(super) type RespFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

#[derive(Clone)]
struct FrontService {
    proxy: Arc<Proxy>,
    life: Lifecycle,
    peer: SocketAddr,
    slot: Slot,
}

impl hyper::service::Service<Request<Incoming>> for FrontService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RespFuture;

    fn call(&self, req: Request<Incoming>) -> RespFuture {
        let s = self.clone();
        s.slot.saw_head();
        Box::pin(async move {
            let unauthenticated = !s.slot.authenticated();
            let resp = front_request(s.proxy, s.life, s.peer, s.slot.clone(), req).await;
            // A connection that has not authenticated does not stay open after an answer
            // (a refusal, a 407, a public airlock.local page).
            Ok(if unauthenticated && !s.slot.authenticated() {
                closing(resp)
            } else {
                resp
            })
        })
    }
}

pub(super) fn http1_builder(proxy: &Proxy) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(proxy.config.header_read_timeout)
        .max_buf_size(proxy.config.max_header_bytes)
        .keep_alive(true);
    b
}

pub(super) fn http2_builder(proxy: &Proxy) -> http2::Builder<TokioExecutor> {
    // Pings only once the idle timeout has passed: a peer's answers are bytes read, and sooner
    // pings would keep an idle connection from ever timing out. They still find a vanished
    // peer while a long request (an approval awaited) is in flight.
    let ping_after = proxy
        .config
        .idle_timeout
        .saturating_add(Duration::from_secs(1));
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(proxy.config.max_header_bytes as u32)
        // 100 streams (the common default); requests in flight are capped per agent across
        // its connections as well (`proxy.max_requests_in_flight_per_agent`).
        .max_concurrent_streams(crate::config::AGENT_H2_MAX_STREAMS)
        .keep_alive_interval(Some(ping_after.min(Duration::from_secs(86_400))));
    b
}

/// Runs a served connection until it ends; on shutdown or idle timeout asks it to finish its
/// in-flight requests and close. In-flight requests may take long (an approval awaited, a slow
/// upstream), but a peer that stopped reading cannot be waited for: once a write toward it has
/// waited the idle timeout, the connection is dropped (with its slot and upstream stream).
/// (A macro: hyper's connection types share no usable trait.)
macro_rules! drive {
    ($conn:expr, $activity:expr, $idle:expr, $life:expr) => {{
        let conn = $conn;
        let mut conn = std::pin::pin!(conn);
        let drain = tokio::select! {
            _ = conn.as_mut() => false,
            _ = $life.shutdown.cancelled() => true,
            quiet = $activity.quiet($idle) => quiet == $crate::proxy::io::Quiet::Idle,
        };
        if drain {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = $activity.stuck($idle) => {}
            }
        }
    }};
}
pub(super) use drive;

async fn front_request(
    proxy: Arc<Proxy>,
    life: Lifecycle,
    peer: SocketAddr,
    slot: Slot,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Err(refusal) = handler::check_header_size(req.headers(), proxy.config.max_header_bytes) {
        return refusal.into_response();
    }
    let is_proxy_request =
        req.method() == Method::CONNECT || req.uri().scheme_str() == Some("http");
    if !is_proxy_request {
        return not_a_proxy_request(&req);
    }
    // airlock.local's CA certificate and instructions: public, for clients not set up yet.
    // The connection closes after it, as after a 407: an unauthenticated client cannot keep
    // one of the connection slots agents need.
    if let Some(resp) = proxy.local.public(&req) {
        tracing::info!(target: "airlock::access", method = %req.method(), host = crate::gate::agent_api::LOCAL_HOST, path = req.uri().path(), status = 200, verdict = "local_public", "served a public airlock.local page");
        return closing(resp);
    }
    let agent = match proxy.agents.authenticate(req.headers()) {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(target: "airlock::access", method = %req.method(), status = 407, reason = e.code(), "proxy authentication failed");
            crate::metrics::proxy_auth_failure(e.code());
            // `into_response` adds `Proxy-Authenticate` to every 407.
            return closing(
                Refusal::client(
                    StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                    e.code(),
                    e.to_string(),
                )
                .into_response(),
            );
        }
    };
    if !slot.authenticated() {
        // Leaves the unauthenticated pool for a `max_connections` slot and its agent's.
        let Ok(global) = proxy.conn_limit.clone().try_acquire_owned() else {
            return connection_limit_refusal();
        };
        let Some(mine) = proxy.agent_conns.enter(&agent.name) else {
            let max = proxy.agent_conns.max();
            tracing::warn!(agent = %agent.name, max, "an agent's connection limit reached; refusing a connection");
            return closing(
                Refusal::internal(
                    "agent_connection_limit",
                    format!("this agent already holds {max} connections to Airlock (proxy.max_connections_per_agent); close some, then retry"),
                )
                .retry_after("5")
                .into_response(),
            );
        };
        let _ = slot.admitted.set((global, mine));
        drop(
            slot.preauth
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }
    if req.method() == Method::CONNECT {
        return connect(proxy, life, peer, agent, slot, req)
            .await
            .unwrap_or_else(Refusal::into_response);
    }
    plain_http(proxy, peer, agent, req).await
}

/// `resp` with `Connection: close`: hyper ends the connection once it is written.
fn closing(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}

fn not_a_proxy_request(req: &Request<Incoming>) -> Response<Body> {
    if req.uri().scheme().is_some() {
        return Refusal::client(
            StatusCode::BAD_REQUEST,
            "unsupported_scheme",
            "only http:// absolute-form requests and CONNECT are proxied; use CONNECT for https",
        )
        .into_response();
    }
    Refusal::client(
        StatusCode::BAD_REQUEST,
        "not_a_proxy_request",
        "Airlock is a forward proxy: send CONNECT host:port or an absolute-form http:// request",
    )
    .into_response()
}

/// Egress guard and the agent's own limits, for a destination about to be served.
fn admit(proxy: &Proxy, agent: &Agent, target: &Target, route: Route) -> Result<(), Refusal> {
    if route == Route::Local {
        return Ok(());
    }
    proxy
        .upstream
        .dialer()
        .precheck(target)
        .map_err(|d| Refusal::policy(d.code, d.message))?;
    let service = proxy
        .vault
        .service_for_host(&target.host)
        .map(str::to_string)
        .or_else(|| proxy.classifier.service_for_host(&target.host));
    if !agent.may_reach(&target.host, service.as_deref()) {
        return Err(Refusal::policy(
            "agent_not_allowed",
            format!(
                "agent {} may not reach {} (service {}); see its services/hosts in airlock.toml",
                agent.name,
                target.host,
                service.as_deref().unwrap_or("none")
            ),
        ));
    }
    Ok(())
}

async fn plain_http(
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    agent: Arc<Agent>,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(authority) = req.uri().authority() else {
        return Refusal::client(
            StatusCode::BAD_REQUEST,
            "bad_target",
            "request URI has no host",
        )
        .into_response();
    };
    let target = match Target::parse_authority(authority.as_str(), 80) {
        Ok(t) => t,
        Err(e) => {
            return Refusal::client(StatusCode::BAD_REQUEST, "bad_target", e.to_string())
                .into_response()
        }
    };
    let route = proxy.hosts.route(&target.host, proxy.classifier.as_ref());
    if let Err(refusal) = admit(&proxy, &agent, &target, route) {
        return refusal.into_response();
    }
    let conn = ConnInfo::new("http", target, route, peer, agent);
    handler::handle(proxy, Arc::new(conn), req).await
}

async fn connect(
    proxy: Arc<Proxy>,
    life: Lifecycle,
    peer: SocketAddr,
    agent: Arc<Agent>,
    slot: Slot,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    // Authority-form only (RFC 9110 9.3.6): `CONNECT https://host:443/` is refused, not guessed.
    if req.uri().scheme().is_some() || req.uri().path_and_query().is_some() {
        return Err(Refusal::client(
            StatusCode::BAD_REQUEST,
            "bad_connect_target",
            format!("CONNECT needs host:port, got {:?}", req.uri().to_string()),
        ));
    }
    let authority = req.uri().authority().map(|a| a.as_str()).unwrap_or("");
    let target = Target::parse_connect(authority).map_err(|e| {
        Refusal::client(StatusCode::BAD_REQUEST, "bad_connect_target", e.to_string())
    })?;
    let route = proxy.hosts.route(&target.host, proxy.classifier.as_ref());
    if route != Route::Deny {
        admit(&proxy, &agent, &target, route)?;
    }
    match route {
        Route::Deny => {
            tracing::info!(target: "airlock::access", host = %target.host, method = "CONNECT", status = 403, verdict = "deny", "refused unknown host");
            Err(Refusal::policy(
                "unknown_host_denied",
                format!(
                    "{} is not an inspected host and unknown_hosts = \"deny\"; add it to proxy.inspect_hosts or set proxy.unknown_hosts = \"tunnel\"",
                    target.host
                ),
            ))
        }
        Route::Tunnel => {
            let permitted = permit::check_tunnel(target.clone(), proxy.hosts.unknown_hosts)
                .ok_or_else(|| Refusal::policy("unknown_host_denied", "host is not inspected"))?;
            let upstream = proxy
                .upstream
                .open_tunnel(permitted, &agent.name)
                .await
                .map_err(|f| {
                    let failure = match f {
                        UpstreamFailure::Connect(m) | UpstreamFailure::ConnectTimeout(m) => {
                            UpstreamFailure::Connect(format!("cannot connect to {target}: {m}"))
                        }
                        other => other,
                    };
                    Refusal::from(failure)
                })?;
            let idle = proxy.config.idle_timeout;
            let guard = proxy.upstream.dialer().guard_arc();
            let agents = proxy.agents.clone();
            let routes = proxy.clone();
            life.tasks.spawn(async move {
                // Airlock sees no request in a blind tunnel: a removed agent's is closed.
                let revoked = agents.until_removed(&agent);
                // A first flight naming a host Airlock inspects (or answers) is not tunnelled.
                let inspected = |name: &str| {
                    // An address (`2001:db8::1`) is routed as written; a name normalised first.
                    let host = match crate::upstream::egress::literal_ip(name) {
                        Some(_) => Some(name.to_string()),
                        None => crate::config::normalize_host(name),
                    };
                    host.is_none_or(|h| {
                        routes.hosts.route(&h, routes.classifier.as_ref()) != Route::Tunnel
                    })
                };
                match hyper::upgrade::on(req).await {
                    Ok(up) => {
                        tunnel::splice(up, upstream, idle, target.host, guard, inspected, revoked)
                            .await
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
                drop(slot);
            });
            Ok(Response::new(empty()))
        }
        route @ (Route::Inspect | Route::Local) => {
            // Dial the upstream while the leaf is minted, the 200 goes out and the agent's TLS
            // handshake runs (the egress pre-check and the agent's limits passed above), on
            // another worker so the two handshakes use two cores. Held for the connection's
            // life (a refusal below drops it); no request byte is sent until a permitted
            // request takes it.
            let predial = (route == Route::Inspect)
                .then(|| {
                    let part = crate::upstream::Partition::of(&agent.name);
                    proxy.upstream.predial(&target, part, proxy.workers.other())
                })
                .flatten();
            // Mint before answering 200 so a failure is a clear HTTP error, not a TLS one.
            let tls = proxy
                .leaves
                .server_config(&target.host)
                .map_err(|e| Refusal::internal("certificate_mint_failed", e.to_string()))?;
            let life2 = life.clone();
            life.tasks.spawn(async move {
                match hyper::upgrade::on(req).await {
                    Ok(up) => {
                        let conn = ConnInfo::new("https", target, route, peer, agent);
                        mitm::serve(up, tls, conn, proxy, life2).await
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
                drop(predial);
                drop(slot);
            });
            Ok(Response::new(empty()))
        }
    }
}
