//! Per-request phases inside an intercepted connection (or a plain-HTTP proxy request):
//! authority check -> route -> classify -> act (forward / refuse / hold) -> log.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::access_log::AccessLog;
use super::body_read::{self, BodyHead, Refused};
use super::policy::Route;
use super::Proxy;
use crate::audit::{AuditPath, Decision, Event, GateKind, Outcome};
use crate::rules::{Action, RequestHead, Verdict};
use crate::upstream::permit::{self, Permitted};
use crate::wire::{full, strip_hop_by_hop, Body, BoxError, Refusal, Target};

/// What the connection a request arrived on established.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// `https` inside an intercepted CONNECT, `http` for absolute-form proxy requests.
    pub scheme: &'static str,
    /// The CONNECT target (or the absolute-form URI's authority).
    pub target: Target,
    pub route: Route,
    /// The SNI the agent sent, when it disagreed with the CONNECT host.
    pub sni_mismatch: Option<String>,
    pub peer: SocketAddr,
    /// Who authenticated the CONNECT (or the plain-HTTP request).
    pub agent: Arc<crate::agents::Agent>,
    /// The upstream URI authority for `target` (port omitted when default); computed once per
    /// connection. `None` if the target cannot form one (requests then get 400 `bad_target`).
    pub authority: Option<http::uri::Authority>,
    /// Requests forwarded on this connection so far (the first may borrow another worker's
    /// warm upstream connection).
    pub forwarded: Arc<std::sync::atomic::AtomicU64>,
    /// The agent's own upstream HTTP/2 connections (agents never share one).
    pub partition: crate::upstream::Partition,
    /// The agent's share of allowed-request records in the audit log, looked up once.
    allow_share: std::sync::OnceLock<Arc<super::allow_audit::AgentShare>>,
    /// The agent's share of soft-gated requests, looked up once.
    soft_share: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>>,
    /// The agent's count of requests in flight, looked up once.
    in_flight: std::sync::OnceLock<Arc<std::sync::atomic::AtomicUsize>>,
}

impl ConnInfo {
    pub fn new(
        scheme: &'static str,
        target: Target,
        route: Route,
        peer: SocketAddr,
        agent: Arc<crate::agents::Agent>,
    ) -> ConnInfo {
        let default_port = if scheme == "https" { 443 } else { 80 };
        let authority = target.uri_authority(default_port).parse().ok();
        let partition = crate::upstream::Partition::of(&agent.name);
        ConnInfo {
            scheme,
            target,
            route,
            sni_mismatch: None,
            peer,
            agent,
            authority,
            forwarded: Default::default(),
            partition,
            allow_share: Default::default(),
            soft_share: Default::default(),
            in_flight: Default::default(),
        }
    }

    pub fn default_port(&self) -> u16 {
        if self.scheme == "https" {
            443
        } else {
            80
        }
    }
}

/// Serves one request; never fails (errors become refusals).
pub async fn handle(
    proxy: Arc<Proxy>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<Body> {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let mut log = AccessLog::new(conn.clone(), req.method(), &pq);
    let version = req.version();
    let req = req.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync());
    // Counted until the response body ends or is dropped (carried in it, below).
    let share = conn
        .in_flight
        .get_or_init(|| proxy.in_flight.share(&conn.agent.name));
    let (in_flight, outcome) = match proxy.in_flight.enter(share) {
        Ok(guard) => (Some(guard), phases(&proxy, &conn, req, &pq, &mut log).await),
        Err(refusal) => (None, Err(Refused::from(refusal))),
    };
    let resp = match outcome {
        Ok(r) => r,
        Err(mut refused) => {
            let refusal = refused.refusal.clone();
            if log.verdict == "none" {
                log.verdict = format!("refused:{}", refusal.code).into();
            }
            // In the language of the host's clients (Stripe's error object on Stripe). Nothing
            // was stored: a 5xx (an upstream failure, an audit log that could not record a
            // soft-gated call) is the library's to retry, as a network error would be.
            let host = &conn.target.host;
            let service = proxy.classifier.service_for_host(host);
            let family = super::dialect::Family::of(service.as_deref(), host);
            let answer = refused.answer.take().unwrap_or_else(|| {
                super::dialect::refusal(refusal, family, super::dialect::Retry::Harmless)
            });
            refused.finish(answer, version)
        }
    };
    log.status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, log.wrap(body, in_flight))
}

/// 407 for an agent removed (or changed) since it opened its connection.
fn agent_removed(agent: &crate::agents::Agent) -> Refused {
    crate::metrics::proxy_auth_failure("agent_removed");
    Refusal::client(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "agent_removed",
        format!(
            "agent {} is no longer configured (or its token or limits changed); reconnect",
            agent.name
        ),
    )
    .into()
}

async fn phases(
    proxy: &Arc<Proxy>,
    conn: &Arc<ConnInfo>,
    req: Request<Body>,
    pq: &str,
    log: &mut AccessLog,
) -> Result<Response<Body>, Refused> {
    check_header_size(req.headers(), proxy.config.max_header_bytes)?;
    // An agent removed (or changed) since it opened this connection sends nothing more on it:
    // 407, as a fresh connection with its old token gets.
    if !proxy.agents.still_admitted(&conn.agent) {
        return Err(agent_removed(&conn.agent));
    }
    check_authority(conn, &req)?;
    match conn.route {
        Route::Local => {
            log.verdict = "local".into();
            if let Some(page) = proxy.local.answer(req.method(), req.uri().path()) {
                return Ok(page);
            }
            let status = crate::gate::agent_api::serve_local(
                &proxy.gate,
                &conn.agent,
                req.method().clone(),
                req.uri().clone(),
            );
            // A status wait ends with the agent: removed while waiting, it hears nothing more.
            return tokio::select! {
                resp = status => Ok(resp),
                () = proxy.agents.until_removed(&conn.agent) => Err(agent_removed(&conn.agent)),
            };
        }
        Route::Deny => {
            return Err(Refusal::policy(
                "unknown_host_denied",
                format!(
                    "{} is not an inspected host and unknown_hosts = \"deny\"",
                    conn.target.host
                ),
            )
            .into())
        }
        Route::Tunnel => {
            log.verdict = "tunnel".into();
            let permitted = permit::check_tunnel(req, proxy.hosts.unknown_hosts)
                .ok_or_else(|| Refusal::policy("unknown_host_denied", "host is not inspected"))?;
            return Ok(forward(proxy, conn, permitted).await?);
        }
        Route::Inspect => {
            // The real credential must never travel in clear text.
            if conn.scheme != "https" && proxy.vault.service_for_host(&conn.target.host).is_some() {
                return Err(Refusal::policy(
                    "credential_over_http",
                    format!(
                        "{} has a configured credential; plain http:// requests to it are refused, use https://",
                        conn.target.host
                    ),
                ).into());
            }
        }
    }

    if let Some(name) = crate::wire::connection_names_end_to_end(req.headers()) {
        return Err(Refusal::client(
            StatusCode::BAD_REQUEST,
            "connection_header",
            format!(
                "the Connection header names `{name}`, which would be stripped before forwarding: \
                 the upstream would get another request than the one judged"
            ),
        )
        .into());
    }
    if let Some(te) = crate::wire::unusual_transfer_encoding(req.headers()) {
        return Err(Refused::closing(Refusal::client(
            StatusCode::BAD_REQUEST,
            "bad_transfer_encoding",
            format!(
                "Transfer-Encoding {te:?} is not one plain `chunked`: a coding besides chunking, \
                 or the header twice, could be framed or decoded otherwise upstream than here"
            ),
        )));
    }
    if let Some(key) = reserved_idempotency_key(req.headers()) {
        return Err(Refusal::client(
            StatusCode::BAD_REQUEST,
            "idempotency_key_reserved",
            format!(
                "Idempotency-Key {key:?} starts with \"airlock-\", which Airlock keeps for the \
                 calls it sends on approval (a request using one could make an approved call \
                 fail as a repeat); choose another key"
            ),
        )
        .into());
    }
    // Classify: read the body only if a rule needs it.
    let (parts, body) = req.into_parts();
    let head = RequestHead {
        method: parts.method.as_str(),
        host: &conn.target.host,
        port: conn.target.port,
        path_and_query: pq,
        headers: &parts.headers,
    };
    // One catalog for the whole request, whatever reload lands while its body is read.
    let classifier = proxy
        .classifier
        .snapshot()
        .unwrap_or_else(|| proxy.classifier.clone());
    let git_push = classifier.git_push(&head);
    let body_head = BodyHead::of(&parts);
    let limits = (proxy.max_buffered_body, proxy.config.body_read_timeout);
    // A slot of the agent's buffered requests, taken before any body byte is read, with the
    // bytes the body takes of `gate.max_buffered_bytes`.
    let mut buffering = None;
    if git_push || classifier.needs_body(&head) {
        take_slot(proxy, &conn.agent.name, &mut buffering)?;
    }
    let (verdict, body) = if git_push {
        // Only the ref commands decide; an allowed push's packfile then streams.
        let (read, rest) = within(
            proxy.config.body_read_timeout,
            super::git_push::read_commands(body, &parts.headers),
        )
        .await?;
        let reserved = take_slot(proxy, &conn.agent.name, &mut buffering)?;
        if let Err(full) = reserved.grow_to(read.len()) {
            return Err(body_read::unread(full, rest, body_head.polled(), read.len()).await);
        }
        (
            classifier.evaluate(&head, Some(&read)),
            Buffered::Prefix(read, rest),
        )
    } else if classifier.needs_body(&head) {
        let reserved = take_slot(proxy, &conn.agent.name, &mut buffering)?;
        let bytes = body_read::read_whole(
            Bytes::new(),
            body,
            body_head,
            limits,
            "inspection",
            reserved,
        )
        .await?;
        let v = classifier.evaluate(&head, Some(&bytes));
        (v, Buffered::Yes(bytes))
    } else {
        (classifier.evaluate(&head, None), Buffered::No(body))
    };
    let verdict = super::budget::apply(&proxy.gate, &conn.agent.name, verdict).await;
    log.verdict = verdict.action.as_str().into();
    // A tool only when a rule named it: a guard's tool can carry a name the agent chose (an
    // unknown GraphQL mutation), and labels must stay bounded.
    crate::metrics::request(
        verdict.action.as_str(),
        verdict.service.as_deref(),
        verdict.rule_id.as_ref().and(verdict.tool.as_deref()),
    );
    log.tool = verdict.tool.clone();
    // Only recorded or answered decisions need an id (plain pass-through does not).
    let unclassified = is_unclassified(&verdict);
    // The agent's share of the log (allowed and blocked requests' records).
    let allow_share = || {
        conn.allow_share
            .get_or_init(|| proxy.allow_audit.share(&conn.agent.name))
    };
    let recorded = || proxy.allow_audit.admit(allow_share());
    let decision_id = if verdict.action == Action::Allow
        && !unclassified
        && !(verdict.service.is_some() && sampled(proxy.audit_allow_sample) && recorded())
    {
        String::new()
    } else {
        crate::gate::new_id("dec")
    };
    match verdict.action {
        Action::Allow | Action::Notify => {
            if verdict.action == Action::Notify || unclassified {
                // Soft gate, or an unclassified write let through by `rules.unclassified_writes
                // = "allow"`: it goes through only once it is on the record, at the agent's rate.
                // A refused push is answered in a receive-pack report git shows (a bare error
                // reads `RPC failed` and a false `Everything up-to-date`), its pack unread.
                let push = match &body {
                    Buffered::Prefix(read, _) => {
                        Some(super::git_report::ReportRequest::of(&parts.headers, read))
                    }
                    _ => None,
                };
                let refuse = |refusal: Refusal| -> Refused {
                    let Some(report) = &push else {
                        return refusal.into();
                    };
                    let mut refused = Refused::closing(refusal);
                    if let Some(g) = report {
                        let reason = format!("not forwarded: {}", refused.refusal.code);
                        refused.answer =
                            super::git_outcome::not_held(g, &refused.refusal, &reason, &[]);
                    }
                    refused
                };
                let share = conn
                    .soft_share
                    .get_or_init(|| proxy.soft_gate_rate.share(&conn.agent.name));
                if !proxy.soft_gate_rate.admit(share) {
                    let rate = proxy.soft_gate_rate.per_second();
                    tracing::warn!(agent = %conn.agent.name, rate, "an agent's soft-gated requests are past audit.notify_per_agent; refusing one");
                    return Err(refuse(Refusal::client(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_soft_gated",
                        format!("this agent is sending recorded (soft-gated) requests faster than audit.notify_per_agent ({rate} a second, 30 seconds' worth at once); it was not forwarded or recorded: slow down, then retry"),
                    )
                    .retry_after("5")));
                }
                if let Err(e) = audit_decision(
                    proxy,
                    conn,
                    &verdict,
                    &decision_id,
                    parts.method.as_str(),
                    pq,
                )
                .await
                {
                    tracing::error!(error = %e, "could not audit a soft-gated request; refusing it (fail closed)");
                    return Err(refuse(
                        Refusal::internal(
                            "audit_unavailable",
                            "this request is recorded before it is forwarded, and the audit log cannot be written; it was not forwarded",
                        )
                        .retry_after(super::held::RETRY_UNAVAILABLE),
                    ));
                }
                tracing::info!(target: "airlock::notify", host = %conn.target.host, tool = verdict.tool.as_deref().unwrap_or("-"), "soft gate: forwarded and recorded");
            } else if !decision_id.is_empty() {
                audit_allowed_in_background(proxy, conn, &verdict, &decision_id, &parts.method, pq);
            }
            // What was read is sent on (streamed, for a push's pack): no longer held here.
            drop(buffering);
            let req = Request::from_parts(parts, body.into_body());
            match permit::check_verdict(req, verdict) {
                Ok(p) => Ok(forward(proxy, conn, p).await?),
                Err(_) => Err(Refusal::internal("policy_error", "verdict did not permit").into()),
            }
        }
        Action::Block => {
            // Refused whatever happens; recorded at the agent's share (`audit.block_per_agent`),
            // past it counted in an `audit_gap`.
            if !proxy.allow_audit.admit_block(allow_share()) {
                return Ok(block_response(&verdict, "", &conn.target.host));
            }
            if let Err(e) = audit_decision(
                proxy,
                conn,
                &verdict,
                &decision_id,
                parts.method.as_str(),
                pq,
            )
            .await
            {
                tracing::error!(error = %e, "could not audit a blocked request (it is refused anyway)");
            }
            Ok(block_response(&verdict, &decision_id, &conn.target.host))
        }
        Action::Escalate => {
            let reserved = take_slot(proxy, &conn.agent.name, &mut buffering)?;
            let purpose = "a held request";
            let bytes = match body {
                Buffered::Yes(b) => b,
                Buffered::No(b) => {
                    body_read::read_whole(Bytes::new(), b, body_head, limits, purpose, reserved)
                        .await?
                }
                Buffered::Prefix(read, rest) => {
                    // A push: its command section is read, so git can hear why it is refused.
                    let report = super::git_report::ReportRequest::of(&parts.headers, &read);
                    body_read::read_whole(read, rest, body_head.polled(), limits, purpose, reserved)
                        .await
                        .map_err(|r| {
                            push_too_large(r, report.as_ref(), limits.0, &conn.target.host)
                        })?
                }
            };
            // A git client that reads reports hears of the hold in one.
            let report = git_push
                .then(|| super::git_report::ReportRequest::of(&parts.headers, &bytes))
                .flatten();
            let held = crate::gate::HeldRequest {
                scheme: conn.scheme.to_string(),
                target: conn.target.clone(),
                method: parts.method.to_string(),
                path_and_query: pq.to_string(),
                headers: parts.headers.clone(),
                body: bytes,
                agent: conn.agent.name.clone(),
                agent_owner: conn.agent.owner.clone(),
                agent_added_ms: conn.agent.added_ms,
            };
            let family = super::dialect::Family::of(verdict.service.as_deref(), &conn.target.host);
            let gone = proxy.agents.until_removed(&conn.agent);
            let hold = proxy.gate.hold(held, verdict, gone).await;
            Ok(super::held::render(hold, report.as_ref(), family))
        }
    }
}

/// A held push refused for its size, answered with a receive-pack report when git reads one
/// (git shows nothing of a bare 413 but `RPC failed` and a false `Everything up-to-date`).
fn push_too_large(
    mut refused: Refused,
    report: Option<&super::git_report::ReportRequest>,
    cap: usize,
    host: &str,
) -> Refused {
    let (Some(g), "body_too_large") = (report, refused.refusal.code) else {
        return refused;
    };
    let hint = format!(
        "this push needs human review; nothing was stored or sent to {host}. Push the new \
         commits to a new branch first (one that is not held), then push this again with a \
         small pack, or ask the operator to raise gate.max_body_bytes."
    );
    let reason = format!("not held: push over gate.max_body_bytes, {cap} bytes");
    refused.answer = super::git_outcome::not_held(g, &refused.refusal, &reason, &[hint]);
    refused
}

enum Buffered {
    Yes(Bytes),
    No(Body),
    /// The leading bytes already read (a git push's command section) and the unread rest.
    Prefix(Bytes, Body),
}

impl Buffered {
    fn into_body(self) -> Body {
        match self {
            Buffered::Yes(b) => full(b),
            Buffered::No(b) => b,
            Buffered::Prefix(read, rest) => {
                super::git_push::PrefixedBody::new(read, rest).boxed_unsync()
            }
        }
    }
}

/// A request whose body Airlock reads (to judge or hold it): one of its agent's
/// `proxy.max_buffered_per_agent` slots and its bytes of `gate.max_buffered_bytes`, both given
/// back when dropped.
struct Buffering {
    _slot: crate::gate::AgentSlot,
    bytes: super::buffer_budget::Reservation,
}

/// The request's [`Buffering`], taken now if it was not yet; its bytes' reservation.
fn take_slot<'a>(
    proxy: &Proxy,
    agent: &str,
    buffering: &'a mut Option<Buffering>,
) -> Result<&'a mut super::buffer_budget::Reservation, Refusal> {
    if buffering.is_none() {
        let slot = proxy
            .buffering
            .enter(agent)
            .ok_or_else(|| too_many_buffered(proxy.buffering.max()))?;
        *buffering = Some(Buffering {
            _slot: slot,
            bytes: proxy.buffered_bytes.reserve(),
        });
    }
    buffering
        .as_mut()
        .map(|b| &mut b.bytes)
        .ok_or_else(|| Refusal::internal("policy_error", "no buffering slot"))
}

/// 429 for an agent with `max` requests whose bodies are being read or held already.
fn too_many_buffered(max: usize) -> Refusal {
    Refusal::client(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_buffered_requests",
        format!(
            "this agent already has {max} requests whose bodies Airlock is reading or holding \
             (proxy.max_buffered_per_agent); it was not forwarded: send fewer at once"
        ),
    )
}

/// A buffered body's read, bounded by `limit` (`proxy.body_read_timeout`): an agent that sends
/// a head and then too little of its body would otherwise keep the connection, its slot and
/// the bytes read so far for as long as it likes (the idle timeout waits for the request).
async fn within<T>(
    limit: std::time::Duration,
    read: impl std::future::Future<Output = Result<T, Refusal>>,
) -> Result<T, Refusal> {
    match tokio::time::timeout(limit, read).await {
        Ok(r) => r,
        Err(_) => Err(body_read::timed_out(limit)),
    }
}

/// Refuses a request whose header block exceeds `limit` bytes with 431. (hyper's own limit
/// applies to its read buffer, which a single large read can exceed unnoticed.)
pub fn check_header_size(headers: &HeaderMap, limit: usize) -> Result<(), Refusal> {
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > limit {
        return Err(Refusal::client(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "request headers are {size} bytes; the limit is {limit} (proxy.max_header_bytes)"
            ),
        ));
    }
    Ok(())
}

/// The CONNECT host, the SNI, and every request's authority must agree.
fn check_authority<B>(conn: &ConnInfo, req: &Request<B>) -> Result<(), Refusal> {
    if let Some(sni) = &conn.sni_mismatch {
        return Err(Refusal::policy(
            "sni_mismatch",
            format!(
                "TLS SNI {sni:?} does not match CONNECT host {}",
                conn.target.host
            ),
        ));
    }
    let mismatch = |what: &str, value: &str| {
        Refusal::policy(
            "authority_mismatch",
            format!(
                "{what} {value:?} does not match the connection's target {}",
                conn.target
            ),
        )
    };
    // Fast path: exactly the connection's own authority (the common case) needs no parsing.
    let own = conn.authority.as_ref().map(|a| a.as_str());
    let parse = |what: &str, value: &str| {
        if own == Some(value) {
            return Ok(conn.target.clone());
        }
        Target::parse_authority(value, conn.default_port()).map_err(|_| mismatch(what, value))
    };
    // The target must be origin-form as sent: HTTP/2's `:path` may be `*` or start with `?`
    // (read as path `/`), which an HTTP/1.1 upstream would then read its own way.
    if req.method() == Method::CONNECT {
        // Authority-form has no path (it would be judged as `/` and could be held, then
        // replayed as a CONNECT upstream): a tunnel inside a tunnel is refused.
        return Err(Refusal::client(
            StatusCode::BAD_REQUEST,
            "connect_in_tunnel",
            format!("CONNECT inside the connection to {}: open a new connection through the proxy instead", conn.target),
        ));
    }
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let origin_form = target.starts_with('/') || (target == "*" && req.method() == Method::OPTIONS);
    if !origin_form {
        return Err(Refusal::client(
            StatusCode::BAD_REQUEST,
            "bad_path",
            format!("request target {target:?} does not start with \"/\""),
        ));
    }
    let mut seen = false;
    if let Some(a) = req.uri().authority() {
        seen = true;
        if own != Some(a.as_str()) && parse("request authority", a.as_str())? != conn.target {
            return Err(mismatch("request authority", a.as_str()));
        }
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    if let Some(h) = hosts.next() {
        seen = true;
        if hosts.next().is_some() {
            return Err(Refusal::client(
                StatusCode::BAD_REQUEST,
                "duplicate_host",
                "more than one Host header",
            ));
        }
        let h = h.to_str().map_err(|_| mismatch("Host", "<non-ASCII>"))?;
        if own != Some(h) && parse("Host", h)? != conn.target {
            return Err(mismatch("Host", h));
        }
    }
    if !seen {
        return Err(Refusal::client(
            StatusCode::BAD_REQUEST,
            "missing_host",
            "request has neither :authority nor Host",
        ));
    }
    Ok(())
}

/// An `Idempotency-Key` the agent sent in Airlock's own namespace (`airlock-<reviewId>`, the
/// key of a held Stripe call's approved send), if any.
fn reserved_idempotency_key(headers: &http::HeaderMap) -> Option<String> {
    static IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");
    headers
        .get_all(&IDEMPOTENCY_KEY)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .find(|v| {
            v.trim_start()
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case("airlock-"))
        })
        .map(|v| v.into_owned())
}

/// Sends a permitted request upstream and streams the answer back.
pub async fn forward(
    proxy: &Proxy,
    conn: &ConnInfo,
    permitted: Permitted<Request<Body>>,
) -> Result<Response<Body>, Refusal> {
    let inspected = conn.route == Route::Inspect;
    let permitted =
        permitted.try_map(|req| to_upstream(req, conn.scheme, conn.authority.as_ref()))?;
    let first = conn
        .forwarded
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        == 0;
    let mut resp = proxy
        .upstream
        .send_from(permitted, conn.partition, first)
        .await
        .map_err(Refusal::from)?;
    // The request carried the injected credential: nothing the answer sets as a credential
    // reaches the agent, and neither does a body the scrubber cannot read.
    if inspected && proxy.vault.service_for_host(&conn.target.host).is_some() {
        if crate::credentials::scrub::is_encoded(resp.headers()) {
            tracing::warn!(target: "airlock::scrub", host = %conn.target.host, "a credentialed host's answer came encoded although Airlock asked for identity; withheld");
            return Err(encoded_refusal(&conn.target.host));
        }
        drop_secret_headers(&proxy.vault, resp.headers_mut());
    }
    Ok(match proxy.vault.scrubber() {
        Some(s) if inspected => scrub_response(&s, &conn.target.host, resp),
        _ => resp,
    })
}

/// 502 `upstream_encoding`: `host` answered with a `Content-Encoding` the scrubber cannot read.
fn encoded_refusal(host: &str) -> Refusal {
    Refusal::new(
        StatusCode::BAD_GATEWAY,
        crate::wire::Side::Upstream,
        crate::credentials::scrub::UPSTREAM_ENCODING,
        format!("{host}: {}", crate::credentials::scrub::ENCODED_WITHHELD),
    )
}

/// Removes the headers Airlock never shows ([`crate::credentials::Vault::is_secret_header`]:
/// `Set-Cookie` and the like), as it does from an executed review's answer.
fn drop_secret_headers(vault: &crate::credentials::Vault, headers: &mut HeaderMap) {
    let secret: Vec<header::HeaderName> = headers
        .keys()
        .filter(|k| vault.is_secret_header(k.as_str()))
        .cloned()
        .collect();
    for k in secret {
        headers.remove(k);
    }
}

/// Masks configured secrets in an upstream answer before the agent sees it.
fn scrub_response(
    scrubber: &crate::credentials::Scrubber,
    host: &str,
    resp: Response<Body>,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    if scrubber.scrub_headers(&mut parts.headers) > 0 {
        tracing::warn!(target: "airlock::scrub", host, "upstream response header contained a configured secret; masked");
    }
    Response::from_parts(parts, scrubber.wrap(body, host.to_string()))
}

/// Rewrites an agent's request for the upstream: absolute URI, HTTP/1.1 semantics (the pool
/// picks h2 when the upstream offers it), no hop-by-hop headers, Host from the URI.
pub fn to_upstream(
    req: Request<Body>,
    scheme: &str,
    authority: Option<&http::uri::Authority>,
) -> Result<Request<Body>, Refusal> {
    let bad = || {
        Refusal::client(
            StatusCode::BAD_REQUEST,
            "bad_target",
            "cannot form upstream URI",
        )
    };
    let (mut parts, body) = req.into_parts();
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(if scheme == "https" {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    uri.authority = Some(authority.ok_or_else(bad)?.clone());
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    parts.uri = Uri::from_parts(uri).map_err(|_| bad())?;
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    crate::wire::strip_underscored(&mut parts.headers);
    parts.headers.remove(header::HOST);
    Ok(Request::from_parts(parts, body))
}

/// True for a `rate` fraction of calls.
fn sampled(rate: f64) -> bool {
    rate >= 1.0 || (rate > 0.0 && rand::random::<f64>() < rate)
}

/// Records a catalog decision (allow, notify, block) in the audit log.
async fn audit_decision(
    proxy: &Proxy,
    conn: &ConnInfo,
    verdict: &Verdict,
    decision_id: &str,
    method: &str,
    pq: &str,
) -> Result<(), String> {
    let entry = decision_event(conn, verdict, decision_id, method, pq);
    match proxy
        .gate
        .spawn_blocking(move |g| g.audit().append(entry))
        .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("audit task failed: {e}")),
    }
}

/// The audit log's `decision` event for a catalog verdict (no headers, body or query string).
fn decision_event(
    conn: &ConnInfo,
    verdict: &Verdict,
    decision_id: &str,
    method: &str,
    pq: &str,
) -> Event {
    let (outcome, gate) = match verdict.action {
        Action::Allow if is_unclassified(verdict) => (Outcome::Allow, GateKind::Unclassified),
        Action::Allow => (Outcome::Allow, GateKind::None),
        Action::Notify => (Outcome::Notify, GateKind::Soft),
        Action::Block => (Outcome::Block, GateKind::Blocked),
        Action::Escalate => (Outcome::Escalate, GateKind::Hard),
    };
    Event::Decision(Box::new(Decision {
        decision_id: decision_id.to_string(),
        review_id: None,
        outcome,
        gate,
        agent: Some(conn.agent.name.clone()),
        service: verdict.service.clone(),
        tool: verdict.tool.clone(),
        rule_id: verdict.rule_id.clone(),
        reason_codes: verdict.reason_codes.clone(),
        method: method.to_string(),
        host: conn.target.host.clone(),
        path: AuditPath::new(pq),
        expires_at: None,
        joined: false,
    }))
}

/// A write no rule classifies (`unclassified_route`): allowed only by an operator's choice.
fn is_unclassified(verdict: &Verdict) -> bool {
    verdict
        .reason_codes
        .iter()
        .any(|c| c == "unclassified_route")
}

/// Queues an allowed request's `decision` record; the request does not wait for it.
fn audit_allowed_in_background(
    proxy: &Arc<Proxy>,
    conn: &Arc<ConnInfo>,
    verdict: &Verdict,
    decision_id: &str,
    method: &http::Method,
    pq: &str,
) {
    let entry = decision_event(conn, verdict, decision_id, method.as_str(), pq);
    proxy.allow_audit.record(entry);
}

/// The 403 of a blocked call; `decision_id` empty: not recorded (past
/// `audit.block_per_agent`), then none is named.
fn block_response(verdict: &Verdict, decision_id: &str, host: &str) -> Response<Body> {
    let mut body = serde_json::json!({
        "decisionId": (!decision_id.is_empty()).then_some(decision_id),
        "outcome": "BLOCK",
        "reasonCodes": verdict.reason_codes,
        "tool": verdict.tool,
        "message": verdict.explanation,
    });
    let stripe = super::dialect::dress_blocked(&mut body, verdict.service.as_deref(), host);
    let mut resp = crate::wire::json_response(StatusCode::FORBIDDEN, &body);
    if stripe {
        super::dialect::no_stripe_retry(resp.headers_mut());
    }
    resp.headers_mut().insert(
        crate::gate::OUTCOME_HEADER,
        http::HeaderValue::from_static("BLOCK"),
    );
    resp
}
