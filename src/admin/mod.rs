//! Admin API for reviewers, on its own listener (default 127.0.0.1:8081), never reachable
//! through the proxy port. Every route but `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>`.
//!
//! Routes:
//! - `GET  /healthz`                      liveness, no auth, any Host header
//! - `GET  /readyz`                       readiness, no auth, any Host header: 200 once the
//!   store is open and recovered (the listeners only open then) and while it answers reads
//!   (with `"claimsPaused": true` while this instance's clock is too far off the shared
//!   database's to claim sends); 503 otherwise
//! - `GET  /metrics`                      Prometheus metrics (OpenMetrics text), admin or metrics token
//!
//! Every route but the two probes checks the Host header (a DNS-rebinding guard).
//! - `/ui/...`                            the reviewer dashboard (see `dashboard/`; session login)
//! - `GET  /v1/reviews?state=&agent=&tool=&limit=&cursor=` one page of reviews (`limit`
//!   default 100, at most 1000): pending ones soonest expiry first, others newest first; the
//!   answer has `next_cursor` (absent on the last page) and per-state `totals`
//! - `GET  /v1/reviews/{id}`              one review, with its stored request (no credentials),
//!   `request.bodyDecoded` for a JSON body spelled with needless `\u` escapes, and `summary`:
//!   the dashboard's Arguments, money line and every warning its detail page shows
//! - `POST /v1/reviews/{id}/approve`      body `{"reviewer": "...", "comment": "..."}` (both optional
//!   strings; another key, another type or a comment over 4096 characters: 400 `bad_request`);
//!   executes the stored request and answers with the review after execution (200); 202 below
//!   the quorum, and 202 with `message` when the approval is recorded but the claim that starts
//!   the send failed (the review stays `approved`; the sweeper claims it again); 503
//!   `outcome_not_recorded` when the request was sent but its outcome could not be stored (the
//!   message names the upstream's status)
//! - `POST /v1/reviews/{id}/reject`       same body
//! - `POST /v1/reviews/reject-pending`    body `{"agent": "...", "reviewer", "comment", "limit"}`:
//!   rejects that agent's pending reviews (at most `limit`, default and most 1000), each as its
//!   own reject; answers `rejected` (ids), `failed` (id and why) and `more`; 404
//!   `unknown_agent` for a name neither configured nor on any review (a removed agent's
//!   reviews can still be rejected)
//! - `POST /v1/reviews/{id}/extend`       body `{"by": "2h"}`: moves a pending review's deadline
//!   (at most 7 days ahead of now; cut short there, the answer's `message` says so)
//! - `POST /v1/reviews/{id}/retry`        same body as approve, plus optional `"attempts": N`
//!   (the send attempts the caller saw; 409 `review_changed` if another was made since):
//!   re-sends a `failed` or `outcome_unknown` review's stored request (same Idempotency-Key),
//!   within its deadline (a Stripe POST that may have been sent within 24 h of its first
//!   attempt)
//!
//! Reviewers (`[[reviewers]]`, `airlock reviewers add`) use their own tokens; decisions are
//! recorded under their names and checked against the rule's approver list and quorum. The
//! admin token is the operator's: it may name a reviewer only while none are configured, and it
//! is one approver whatever name it gives. Once reviewers exist it may reject but not approve,
//! retry or extend unless `[admin] may_approve = true` (`gate/people.rs`). The reviewers are read
//! on every request from the gate's shared set, so a reload revokes a removed reviewer at once.
//! Review JSON marks each approval with `counts` (and `notCounted`, why not) and gives
//! `approvalsCounted`: an approval by someone no longer a reviewer stops counting;
//! `approvalProgress` (and `retryApprovalProgress`) count toward each quorum (`1/2`, or
//! `1/1 (group:sre), 0/1 (dave)` when several rules held the request).
//! - `GET  /v1/audit[?since=SEQ&limit=N]`  the audit log as JSON Lines, checkpoints included, at
//!   most `limit` entries (default 10000, at most 100000); `Airlock-Next-Since` says where the
//!   next page starts when there is more
//! - `GET  /v1/audit/verify`              checks the live chain and every checkpoint signature
//!   (one at a time: 429 `verify_in_progress` while one runs)
//! - `GET  /v1/audit/pubkey`              the checkpoint public key (hex)
//! - `POST /v1/audit/checkpoint`          signs a checkpoint now; answers the latest one (JSON line)
//! - `POST /v1/admin-token/rotate`        the admin token only: a new admin token in the token
//!   file (and the shared database); the old one stops working at once (`rotate.rs`)

pub mod client;
pub mod dashboard;
pub(crate) mod limits;
pub mod listing;
pub mod operator;
mod rotate;
pub mod socket;
mod token;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gate::agent_api::{gate_error_response, review_json};
use crate::gate::{Gate, ReviewState, Reviewer};
use crate::wire::{json_response, Body, Refusal};

pub use operator::{OperatorToken, TokenSource};
pub use token::{
    adopt_shared_token, env_token, load_or_create_metrics_token, load_or_create_token, new_token,
    read_token, stale_file, write_token_file, MIN_TOKEN_CHARS, TOKEN_ENV,
};

/// Longest decision comment the admin API takes, in characters (a longer one is refused).
pub const MAX_COMMENT_CHARS: usize = 4096;

/// Most reviews one `POST /v1/reviews/reject-pending` rejects (`more` says if any are left).
pub(crate) const BULK_REJECT_MOST: usize = 1000;

/// On a page of `GET /v1/audit`: the `since` of the next page (absent on the last).
pub const NEXT_SINCE_HEADER: &str = "airlock-next-since";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{path}: {message}")]
    TokenFile { path: String, message: String },
}

pub struct Admin {
    gate: Arc<Gate>,
    /// The admin token in force (swapped at once by a rotation).
    operator: Arc<OperatorToken>,
    /// `admin.metrics_token_file`'s token, digested: it reads `/metrics` and nothing else.
    metrics_digest: Option<[u8; 32]>,
    listen: SocketAddr,
    /// The proxy listener's bound address, told on `/readyz` over the admin socket only.
    proxy_listen: SocketAddr,
    dashboard: dashboard::Dashboard,
    links: Arc<crate::notify::LinkSigner>,
    /// `notify.base_url` as an origin (`https://airlock.example.com`) and its authority: the
    /// public name reviewers reach the listener by (behind a reverse proxy), accepted by the
    /// Host and Origin checks besides the listener's own address.
    public: Option<(String, String)>,
    /// Host names reviewers reach the listener by, on any port: `admin.public_hosts` and the
    /// name `admin.listen` was written with (lowercase; IPv6 without brackets).
    names: Vec<String>,
    /// The agents in force: a review whose agent is no longer among them says so.
    agents: Arc<crate::agents::Agents>,
    /// One full-chain verification at a time: each reads every audit entry, so callers may not
    /// stack them up.
    verifying: Arc<tokio::sync::Semaphore>,
}

/// Who is calling the admin API.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The operator's admin token.
    Operator,
    /// A configured reviewer's own token.
    Reviewer(Reviewer),
}

impl Admin {
    pub fn new(
        gate: Arc<Gate>,
        (operator, metrics_token): (Arc<OperatorToken>, Option<&str>),
        (listen, proxy_listen): (SocketAddr, SocketAddr),
        links: Arc<crate::notify::LinkSigner>,
        public_url: Option<&str>,
        names: Vec<String>,
        agents: Arc<crate::agents::Agents>,
    ) -> Arc<Admin> {
        Arc::new(Admin {
            gate,
            operator,
            metrics_digest: metrics_token.map(token_digest),
            listen,
            proxy_listen,
            dashboard: dashboard::Dashboard::new(),
            links,
            public: public_url.and_then(parse_public_url),
            names,
            agents,
            verifying: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    /// The public origin from `notify.base_url`, if configured.
    pub(crate) fn public_origin(&self) -> Option<&str> {
        self.public.as_ref().map(|(origin, _)| origin.as_str())
    }

    /// Identifies a bearer token: the admin token or a reviewer's.
    pub fn caller_for_token(&self, token: &str) -> Option<Caller> {
        self.caller_for_digest(&token_digest(token))
    }

    /// Whether `req` carries the metrics token (`admin.metrics_token_file`).
    fn is_metrics_token(&self, req: &Request<Incoming>) -> bool {
        let Some(want) = &self.metrics_digest else {
            return false;
        };
        bearer(req).is_some_and(|t| &token_digest(t) == want)
    }

    /// Identifies a token by its SHA-256 ([`token_digest`]) against the reviewers in force now
    /// (a dashboard session keeps only this digest, so removing its reviewer ends it).
    pub(crate) fn caller_for_digest(&self, digest: &[u8; 32]) -> Option<Caller> {
        if self.operator.is(digest) {
            return Some(Caller::Operator);
        }
        self.gate
            .people()
            .current()
            .by_digest(digest)
            .map(Caller::Reviewer)
    }

    /// The reviewer a decision is recorded under. The operator may name one (for the CLI) only
    /// while no reviewers are configured; otherwise it acts as `admin`. Either way it decides
    /// with the admin token: one approver, whatever name it gives.
    /// Who decides (see [`Admin::acting_reviewer`]) and the comment, from a decision's JSON
    /// body. `accepted`: the keys the route reads; any other is refused (400 `bad_request`
    /// naming it), as is a `reviewer` or `comment` that is neither a string nor null, and a
    /// comment over [`MAX_COMMENT_CHARS`] characters: a mistyped field is never dropped
    /// silently.
    fn decision_input(
        &self,
        caller: &Caller,
        body: &serde_json::Value,
        accepted: &[&str],
    ) -> Result<(Reviewer, Option<String>), String> {
        only_keys(body, accepted)?;
        let reviewer = optional_string(body, "reviewer")?;
        let comment = optional_string(body, "comment")?;
        if let Some(n) = comment
            .map(|c| c.chars().count())
            .filter(|n| *n > MAX_COMMENT_CHARS)
        {
            return Err(format!(
                "\"comment\" is {n} characters; at most {MAX_COMMENT_CHARS}"
            ));
        }
        Ok((
            self.acting_reviewer(caller, reviewer),
            comment.map(str::to_string),
        ))
    }

    fn acting_reviewer(&self, caller: &Caller, named: Option<&str>) -> Reviewer {
        match caller {
            Caller::Reviewer(r) => r.clone(),
            Caller::Operator => match named {
                Some(n) if !self.gate.people().current().has_reviewers() => {
                    Reviewer::admin_token(&n.chars().take(128).collect::<String>())
                }
                _ => Reviewer::admin_token("admin"),
            },
        }
    }

    /// Was `r` sent by an agent no longer configured (removed since: compromised, retired)?
    /// So it was too when an agent of the same name is configured now but is another entry
    /// ([`crate::agents::Agents::sender_in_force`]): that one is another agent.
    pub(crate) fn agent_removed(&self, r: &crate::gate::Review) -> bool {
        r.agent.as_deref().is_some_and(|a| {
            !self
                .agents
                .sender_in_force(a, r.created_at_ms, r.agent_added_ms)
        })
    }

    /// Was `r`'s agent removed, and another added under its name since ([`Self::agent_removed`]
    /// with the name in force)? The warnings say so.
    pub(crate) fn agent_replaced(&self, r: &crate::gate::Review) -> bool {
        self.sender_gone(r) == Some(dashboard::SenderGone::Replaced)
    }

    /// Why `r`'s agent is not the one configured under its name now, if it is not.
    pub(crate) fn sender_gone(&self, r: &crate::gate::Review) -> Option<dashboard::SenderGone> {
        if !self.agent_removed(r) {
            return None;
        }
        Some(
            match r.agent.as_deref().is_some_and(|a| self.agents.knows(a)) {
                true => dashboard::SenderGone::Replaced,
                false => dashboard::SenderGone::Removed,
            },
        )
    }

    /// A review as the admin API shows it: [`review_json`], with each approval marked as
    /// counting toward the quorum or not (and why) with the reviewers in force now.
    pub fn review_view(&self, r: &crate::gate::Review, full: bool) -> serde_json::Value {
        let mut v = review_json(r, full);
        v["agentRemoved"] = self.agent_removed(r).into();
        v["agentReplaced"] = self.agent_replaced(r).into();
        if full {
            // A body spelled with needless `\u` escapes reads otherwise to every parser: its
            // decoded reading, masked as the rest of the request is.
            let body = r.request.body().unwrap_or_default();
            if let Some(decoded) = dashboard::body_decoded(r, &body) {
                let echoes = crate::credentials::echo::QueryEchoes::of(&r.request.path_and_query);
                v["request"]["bodyDecoded"] = echoes.mask(&decoded).into();
            }
            // What the dashboard's detail page sums up and warns of.
            v["summary"] = dashboard::review_summary(r, self.sender_gone(r));
        }
        let people = self.gate.people().current();
        let approvals = r.standing(&r.approvals, &people);
        if let Some(list) = v.get_mut("approvals").and_then(|a| a.as_array_mut()) {
            for (item, standing) in list.iter_mut().zip(&approvals) {
                item["counts"] = serde_json::Value::Bool(standing.is_ok());
                if let Err(why) = standing {
                    item["notCounted"] = serde_json::Value::String(why.clone());
                }
            }
        }
        v["approvalsCounted"] = approvals.iter().filter(|s| s.is_ok()).count().into();
        // Toward each quorum (a request several rules held has one per rule).
        v["approvalProgress"] = r.quorum_progress(&r.approvals, &people).into();
        v["retryApprovalProgress"] = r.quorum_progress(&r.retry_approvals, &people).into();
        let retry = r.standing(&r.retry_approvals, &people);
        v["retryApprovals"] = r
            .retry_approvals
            .iter()
            .zip(&retry)
            .map(|(d, standing)| {
                let mut item = serde_json::json!({
                    "by": d.by,
                    "at": crate::gate::review::rfc3339(d.at_ms),
                    "comment": d.comment,
                    "counts": standing.is_ok(),
                });
                if let Err(why) = standing {
                    item["notCounted"] = serde_json::Value::String(why.clone());
                }
                item
            })
            .collect::<Vec<_>>()
            .into();
        v
    }

    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }
}

/// Serves the admin API until `shutdown`, within the `[admin]` limits (see `limits.rs`):
/// connection caps at accept, header and body read deadlines, a capped body, a request budget for
/// unauthenticated clients, and a paced retry when `accept` fails.
pub fn run(
    listener: TcpListener,
    admin: Arc<Admin>,
    config: &crate::config::AdminConfig,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let gk = limits::Gatekeeper::new(config);
    accept_loop(listener, admin, gk, shutdown, tasks)
}

async fn accept_loop(
    listener: TcpListener,
    admin: Arc<Admin>,
    gk: Arc<limits::Gatekeeper>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let mut backoff = limits::Backoff::new();
    loop {
        let Some(((stream, peer), global)) =
            limits::next_connection(&gk, || listener.accept(), &mut backoff, &shutdown).await
        else {
            return;
        };
        let Some(global) = global else {
            gk.refuse(stream, limits::Refused::Full);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (admin, gk, shutdown) = (admin.clone(), gk.clone(), shutdown.clone());
        tasks.spawn(async move {
            // Bounded by the global slot it holds; waits only while this client's others end.
            let slot = tokio::select! {
                s = gk.client_slot(peer.ip(), global) => s,
                _ = shutdown.cancelled() => return,
            };
            match slot {
                Ok(slot) => {
                    serve_connection(stream, Peer::Tcp(peer), admin, gk, Some(slot), shutdown).await
                }
                Err(why) => gk.refuse(stream, why),
            }
        });
    }
}

/// Who is at the other end of an admin connection.
#[derive(Debug, Clone, Copy)]
enum Peer {
    Tcp(SocketAddr),
    /// The admin socket: Airlock's own user (or root), its credentials checked at accept. No
    /// browser reaches it, so the DNS-rebinding Host check does not apply.
    Socket,
}

impl Peer {
    /// The address limits count by: the socket's peers share one that no TCP peer has.
    fn ip(self) -> std::net::IpAddr {
        match self {
            Peer::Tcp(a) => a.ip(),
            Peer::Socket => std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Socket => f.write_str("admin socket"),
        }
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: Peer,
    admin: Arc<Admin>,
    gk: Arc<limits::Gatekeeper>,
    slot: Option<limits::Slot>,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::new(limits::Watch::default());
    let io = TokioIo::new(limits::Watched::new(stream, watch.clone()));
    let header_read_timeout = gk.header_read_timeout;
    let svc = hyper::service::service_fn(move |req| {
        let (admin, gk, watch) = (admin.clone(), gk.clone(), watch.clone());
        async move { Ok::<_, Infallible>(serve_request(&admin, &gk, &watch, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Also bounds an idle keep-alive connection: hyper starts it when it waits for a head.
        .header_read_timeout(header_read_timeout)
        // Reads during a request are then only for its body (see `limits::Watch`).
        .half_close(true)
        .max_buf_size(limits::MAX_ADMIN_BODY)
        .serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
    }
    drop(slot);
}

/// The listener-wide checks around [`route`]: the body cap, the unauthenticated request budget,
/// and the body read deadline.
async fn serve_request(
    admin: &Admin,
    gk: &limits::Gatekeeper,
    watch: &Arc<limits::Watch>,
    peer: Peer,
    req: Request<Incoming>,
) -> Response<Body> {
    if limits::declared_over(req.body()) {
        return closing(body_too_large());
    }
    if unauthenticated(admin, &req) && !gk.allow_unauthenticated(peer.ip()) {
        return Refusal::retry_later(
            "rate_limited",
            "too many unauthenticated requests from your address; retry later",
            "1",
        );
    }
    if !limits::may_have_body(req.body()) {
        return route(admin, req, peer).await;
    }
    let _armed = watch.arm(gk.body_read_timeout);
    tokio::select! {
        biased;
        r = route(admin, req, peer) => r,
        _ = watch.stalled() => {
            tracing::info!(target: "airlock::admin", %peer, "admin request body not received in time");
            closing(err(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive within admin.body_read_timeout",
            ))
        }
    }
}

/// Requests that present no credential: sign-in, one-click links whose signature does not
/// verify, and any API call without a valid token. `/healthz` (monitoring), session pages (they
/// redirect or check the session) and validly signed links are not counted: behind a reverse
/// proxy every client shares one address, and reviewers following the links they were sent
/// must not find the budget an agent drained (checking an HMAC costs less than the budget saves).
fn unauthenticated(admin: &Admin, req: &Request<Incoming>) -> bool {
    let path = req.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return false;
    }
    if path == "/ui/login" {
        return true;
    }
    if let Some(token) = path.strip_prefix("/ui/link/") {
        return admin.links.verify_signature(token).is_err();
    }
    if path == "/ui" || path.starts_with("/ui/") {
        return false;
    }
    authorized(admin, req).is_none()
}

/// Marks a response as the connection's last (its request was not read to the end).
fn closing(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    r
}

fn body_too_large() -> Response<Body> {
    err(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "admin request body over 64 KiB",
    )
}

fn err(status: StatusCode, code: &'static str, msg: &str) -> Response<Body> {
    Refusal::client(status, code, msg).into_response()
}

async fn route(admin: &Admin, req: Request<Incoming>, peer: Peer) -> Response<Body> {
    let local = matches!(peer, Peer::Socket);
    let path = req.uri().path().to_string();
    // Probes answer whatever the Host: a tunnel, a remapped port or a Kubernetes probe names
    // the listener otherwise, and they reveal nothing and change nothing.
    if path == "/healthz" {
        return json_response(StatusCode::OK, &serde_json::json!({"ok": true}));
    }
    if path == "/readyz" {
        return match admin.gate.totals().await {
            // Still ready when claims are paused (a clock too far off): it holds and serves,
            // and other instances send its approvals. Which it is, not why, is said here.
            // Over the admin socket (its peer is Airlock's user or root), also the addresses
            // this server listens on, which `--listen` flags may have moved from the config's:
            // `airlock status` prints them. Over TCP a probe reveals nothing more.
            Ok(_) => {
                let mut ready = serde_json::json!({"ready": true});
                if admin.gate.claims_paused().is_some() {
                    ready["claimsPaused"] = serde_json::Value::Bool(true);
                }
                if local {
                    ready["listen"] = serde_json::json!({
                        "proxy": admin.proxy_listen.to_string(),
                        "admin": admin.listen.to_string(),
                    });
                }
                json_response(StatusCode::OK, &ready)
            }
            Err(e) => {
                // Unauthenticated: the detail (a path, a database address) goes to the log.
                tracing::warn!(error = %e, "readiness check: the review store does not answer");
                err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "the review store does not answer (details in Airlock's log)",
                )
            }
        };
    }
    if !local && !host_ok(admin, &req) {
        return err(
            StatusCode::MISDIRECTED_REQUEST,
            "bad_host",
            "Host header does not name this admin listener",
        );
    }
    if path == "/ui" || path.starts_with("/ui/") {
        return dashboard::route(admin, req).await;
    }
    if path == "/metrics" && admin.is_metrics_token(&req) {
        return metrics(admin, &Caller::Operator).await;
    }
    let Some(caller) = authorized(admin, &req) else {
        let mut r = err(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    };
    if path == "/metrics" {
        return metrics(admin, &caller).await;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["v1", "reviews"]) => {
            let listing = match listing::parse(req.uri().query()) {
                Ok(l) => l,
                Err((code, message)) => return err(StatusCode::BAD_REQUEST, code, &message),
            };
            let page = admin
                .gate
                .list_page(listing.query, listing.limit, listing.cursor)
                .await;
            let totals = admin.gate.totals().await;
            match page.and_then(|p| totals.map(|t| (p, t))) {
                Ok((page, totals)) => {
                    let items: Vec<_> = page
                        .reviews
                        .iter()
                        .map(|r| admin.review_view(r, false))
                        .collect();
                    json_response(
                        StatusCode::OK,
                        &serde_json::json!({
                            "reviews": items,
                            "next_cursor": page.next_cursor,
                            "totals": listing::totals_json(&totals),
                        }),
                    )
                }
                Err(e) => gate_error_response(&e),
            }
        }
        (Method::GET, ["v1", "audit"]) => {
            let since = req
                .uri()
                .query()
                .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "since"))
                .map(|(_, v)| v.parse::<u64>());
            let since = match since {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    return err(
                        StatusCode::BAD_REQUEST,
                        "bad_since",
                        "since must be a sequence number",
                    )
                }
            };
            let limit = req
                .uri()
                .query()
                .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "limit"))
                .map(|(_, v)| {
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=100_000).contains(n))
                });
            let limit = match limit {
                None => 10_000,
                Some(Some(n)) => n,
                Some(None) => {
                    return err(
                        StatusCode::BAD_REQUEST,
                        "bad_limit",
                        "limit must be a number from 1 to 100000",
                    )
                }
            };
            let audit = admin.gate.audit().clone();
            let out = tokio::task::spawn_blocking(move || {
                let mut buf = Vec::new();
                audit
                    .export_page(since, limit, &mut buf)
                    .map(|(_, next)| (buf, next))
            })
            .await;
            match out {
                Ok(Ok((buf, next))) => {
                    let mut r = typed_response(buf, "application/jsonl");
                    if let Some(next) = next {
                        r.headers_mut()
                            .insert(NEXT_SINCE_HEADER, http::HeaderValue::from(next));
                    }
                    r
                }
                Ok(Err(e)) => audit_unavailable(e),
                Err(e) => audit_unavailable(e),
            }
        }
        (Method::GET, ["v1", "audit", "pubkey"]) => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "pubkey": admin.gate.audit().public_key_hex(),
                "origin": admin.gate.audit().origin(),
            }),
        ),
        (Method::POST, ["v1", "audit", "checkpoint"]) => {
            let audit = admin.gate.audit().clone();
            match tokio::task::spawn_blocking(move || audit.latest_checkpoint()).await {
                Ok(Ok(Some(line))) => typed_response(format!("{line}\n"), "application/json"),
                Ok(Ok(None)) => err(
                    StatusCode::NOT_FOUND,
                    "no_checkpoint",
                    "the audit log is empty",
                ),
                Ok(Err(e)) => audit_unavailable(e),
                Err(e) => audit_unavailable(e),
            }
        }
        (Method::GET, ["v1", "audit", "verify"]) => {
            // Kept by the blocking task: a caller that goes away does not free it early.
            let Ok(one) = admin.verifying.clone().try_acquire_owned() else {
                return Refusal::retry_later(
                    "verify_in_progress",
                    "a verification of the whole audit log is already running; retry when it ends",
                    "5",
                );
            };
            let audit = admin.gate.audit().clone();
            let verify = move || {
                let report = audit.verify_live();
                drop(one);
                report
            };
            match tokio::task::spawn_blocking(verify).await {
                Ok(Ok(r)) => json_response(
                    StatusCode::OK,
                    &serde_json::json!({
                        "ok": true,
                        "entries": r.entries,
                        "checkpoints": r.checkpoints,
                        "first_seq": r.first_seq,
                        "last_seq": r.last_seq,
                        "signed_by": r.signed_by_hex(),
                        "key_rotations": r.key_rotations,
                        "archived_before": r.archived_before,
                    }),
                ),
                Ok(Err(e)) => json_response(
                    StatusCode::CONFLICT,
                    &serde_json::json!({
                        "ok": false,
                        "broken_seq": e.seq,
                        "line": e.line,
                        "error": e.to_string(),
                    }),
                ),
                Err(e) => audit_unavailable(e),
            }
        }
        (Method::GET, ["v1", "reviews", id]) => match admin.gate.get(id).await {
            Ok(r) => json_response(StatusCode::OK, &admin.review_view(&r, true)),
            Err(e) => gate_error_response(&e),
        },
        (Method::POST, ["v1", "reviews", "reject-pending"]) => {
            let body = match read_json(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(agent) = body.get("agent").and_then(|v| v.as_str()) else {
                return err(
                    StatusCode::BAD_REQUEST,
                    "bad_agent",
                    "body must name the agent: {\"agent\": \"name\"}",
                );
            };
            let most = match body.get("limit") {
                None | Some(serde_json::Value::Null) => BULK_REJECT_MOST,
                Some(v) => match v
                    .as_u64()
                    .filter(|n| (1..=BULK_REJECT_MOST as u64).contains(n))
                {
                    Some(n) => n as usize,
                    None => {
                        return err(
                            StatusCode::BAD_REQUEST,
                            "bad_limit",
                            &format!("limit must be a number from 1 to {BULK_REJECT_MOST}"),
                        )
                    }
                },
            };
            let (reviewer, comment) = match admin.decision_input(
                &caller,
                &body,
                &["agent", "reviewer", "comment", "limit"],
            ) {
                Ok(input) => input,
                Err(why) => return bad_request(&why),
            };
            // A name neither configured nor on any review (a typo, another case: "Bot" for
            // `bot`) would reject nothing and say so as a success. An agent removed since
            // still has its reviews to reject.
            if !admin.agents.knows(agent) {
                let any = crate::gate::index::Query {
                    state: None,
                    agent: Some(agent.to_string()),
                    tool: None,
                };
                match admin.gate.list_page(any, 1, None).await {
                    Ok(page) if page.reviews.is_empty() => {
                        return err(
                            StatusCode::NOT_FOUND,
                            "unknown_agent",
                            &unknown_agent(&admin.agents, agent),
                        )
                    }
                    Ok(_) => {}
                    Err(e) => return gate_error_response(&e),
                }
            }
            match admin
                .gate
                .reject_pending(agent, &reviewer, comment, most)
                .await
            {
                Ok(done) => json_response(
                    StatusCode::OK,
                    &serde_json::json!({
                        "agent": agent,
                        "rejected": done.rejected,
                        "failed": done
                            .failed
                            .iter()
                            .map(|(id, why)| serde_json::json!({"id": id, "error": why}))
                            .collect::<Vec<_>>(),
                        "more": done.more,
                    }),
                ),
                Err(e) => gate_error_response(&e),
            }
        }
        (Method::POST, ["v1", "reviews", id, action @ ("approve" | "reject" | "retry")]) => {
            let id = id.to_string();
            let action = action.to_string();
            let body = match read_json(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let accepted: &[&str] = match action.as_str() {
                "retry" => &["reviewer", "comment", "attempts"],
                _ => &["reviewer", "comment"],
            };
            let (reviewer, comment) = match admin.decision_input(&caller, &body, accepted) {
                Ok(input) => input,
                Err(why) => return bad_request(&why),
            };
            let result = match action.as_str() {
                "approve" => admin.gate.approve(&id, &reviewer, comment).await,
                // `attempts` (optional): the attempt count the caller saw; refused with 409
                // `review_changed` if another attempt was made since.
                "retry" => {
                    let seen = match body.get("attempts") {
                        None | Some(serde_json::Value::Null) => None,
                        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                            Some(n) => Some(n),
                            // Given but unreadable: refused, not taken as "not given" (which
                            // would skip the very check the caller asked for).
                            None => {
                                return err(
                                    StatusCode::BAD_REQUEST,
                                    "bad_attempts",
                                    "\"attempts\" must be a whole number: the send attempts the caller saw",
                                )
                            }
                        },
                    };
                    admin.gate.retry_seen(&id, &reviewer, comment, seen).await
                }
                _ => admin.gate.reject(&id, &reviewer, comment).await,
            };
            match result {
                // Below the quorum: recorded, still pending (or, for a retry, still failed).
                Ok(r) if r.state == ReviewState::Pending || !r.retry_approvals.is_empty() => {
                    json_response(StatusCode::ACCEPTED, &admin.review_view(&r, true))
                }
                Ok(r) => json_response(StatusCode::OK, &admin.review_view(&r, true)),
                // The decision is recorded and the send did not start: 202 with the review as
                // it now is (`approved`) and `message` saying that Airlock retries it.
                Err(e @ crate::gate::GateError::SendPending(_)) => {
                    match admin.gate.get(&id).await {
                        Ok(r) => {
                            let mut v = admin.review_view(&r, true);
                            v["message"] = e.to_string().into();
                            json_response(StatusCode::ACCEPTED, &v)
                        }
                        Err(_) => gate_error_response(&e),
                    }
                }
                Err(e) => gate_error_response(&e),
            }
        }
        (Method::POST, ["v1", "reviews", id, "extend"]) => {
            let id = id.to_string();
            let body = match read_json(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            if let Err(why) = only_keys(&body, &["by"]) {
                return bad_request(&why);
            }
            let Some(by) = body
                .get("by")
                .and_then(|v| v.as_str())
                .and_then(|t| humantime::parse_duration(t).ok())
            else {
                return err(
                    StatusCode::BAD_REQUEST,
                    "bad_duration",
                    "body must be {\"by\": \"2h\"}",
                );
            };
            let reviewer = admin.acting_reviewer(&caller, None);
            match admin.gate.extend(&id, &reviewer, by).await {
                Ok((r, capped)) => {
                    let mut v = admin.review_view(&r, true);
                    if capped {
                        v["message"] = format!(
                            "extended less than asked: a deadline moves at most {} ahead of now; it is now {}",
                            humantime::format_duration(crate::gate::MAX_EXTEND_AHEAD),
                            crate::gate::review::rfc3339(r.expires_at_ms)
                        )
                        .into();
                    }
                    json_response(StatusCode::OK, &v)
                }
                Err(e) => gate_error_response(&e),
            }
        }
        (Method::POST, ["v1", "admin-token", "rotate"]) => {
            rotate::rotate(admin, &caller, peer).await
        }
        (_, ["v1", "reviews", ..]) => err(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "see the admin API routes in the README",
        ),
        _ => err(StatusCode::NOT_FOUND, "not_found", "unknown admin route"),
    }
}

/// 400 `bad_request` for a body field the route cannot use.
fn bad_request(why: &str) -> Response<Body> {
    err(StatusCode::BAD_REQUEST, "bad_request", why)
}

/// Refuses a JSON body with a key the route does not read (a misspelt `coment` would be
/// dropped unseen): 400 `bad_request` naming it and the keys taken.
fn only_keys(body: &serde_json::Value, accepted: &[&str]) -> Result<(), String> {
    let unknown = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !accepted.contains(&k.as_str())));
    match unknown {
        None => Ok(()),
        Some(k) => Err(format!(
            "unknown field {:?}: this body takes {}",
            crate::visible::escaped(k),
            accepted.join(", ")
        )),
    }
}

/// A body's optional string field: absent or null is `None`; any other type is refused
/// (400 `bad_request` naming it).
fn optional_string<'b>(
    body: &'b serde_json::Value,
    field: &str,
) -> Result<Option<&'b str>, String> {
    match body.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!(
            "{field:?} must be a string, not {}",
            json_type(other)
        )),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Why `POST /v1/reviews/reject-pending` names no agent: `name` is neither configured nor on
/// any review; a configured name that differs only in case is suggested.
fn unknown_agent(agents: &crate::agents::Agents, name: &str) -> String {
    let near = agents
        .current()
        .into_iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| {
            format!(
                " (agent names are case-sensitive: did you mean {:?}?)",
                a.name
            )
        })
        .unwrap_or_default();
    format!("no agent {name:?} is configured and no review names it{near}")
}

/// 503 for an audit log that could not be read or written (or whose task failed).
/// `GET /metrics`: the Prometheus metrics, for the admin token or the metrics token (a
/// reviewer's token is a person's, not a monitoring system's).
async fn metrics(admin: &Admin, caller: &Caller) -> Response<Body> {
    if !matches!(caller, Caller::Operator) {
        return err(
            StatusCode::FORBIDDEN,
            "forbidden",
            "/metrics needs the admin token",
        );
    }
    let pending = match admin.gate.totals().await {
        Ok(t) => t
            .iter()
            .find(|(s, _)| *s == ReviewState::Pending)
            .map(|(_, n)| *n)
            .or(Some(0)),
        Err(_) => None,
    };
    typed_response(
        crate::metrics::encode(pending),
        crate::metrics::CONTENT_TYPE,
    )
}

fn audit_unavailable(e: impl std::fmt::Display) -> Response<Body> {
    err(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        &e.to_string(),
    )
}

/// 200 with `body` as `content_type` (JSON Lines exports, checkpoint lines).
fn typed_response(body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(crate::wire::full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// SHA-256 of a token (surrounding blanks trimmed): the only form in which tokens are compared.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

fn authorized(admin: &Admin, req: &Request<Incoming>) -> Option<Caller> {
    admin.caller_for_token(bearer(req)?)
}

/// The bearer token of `req`'s `Authorization` header.
fn bearer(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?
        .strip_prefix("Bearer ")
}

/// `base_url` (the admin listener's public URL, e.g. behind a TLS reverse proxy) as
/// (origin, authority); `None` unless it is an http(s) URL with a host.
fn parse_public_url(base_url: &str) -> Option<(String, String)> {
    let uri = base_url.trim_end_matches('/').parse::<http::Uri>().ok()?;
    let scheme = uri.scheme_str().filter(|s| *s == "http" || *s == "https")?;
    let authority = uri.authority()?.as_str().to_ascii_lowercase();
    Some((format!("{scheme}://{authority}"), authority))
}

/// DNS-rebinding guard: the Host must be the listener's own address, localhost, the
/// authority of `notify.base_url`, or one of the operator's names for the listener
/// (`admin.public_hosts`, the name in `admin.listen`) on any port (a tunnel or reverse proxy
/// may change it; the name is what a rebinding attacker cannot choose).
fn host_ok(admin: &Admin, req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| {
            host_allowed(
                admin.listen,
                admin
                    .public
                    .as_ref()
                    .map(|(_, authority)| authority.as_str()),
                &admin.names,
                host,
            )
        })
}

fn host_allowed(
    listen: SocketAddr,
    public_authority: Option<&str>,
    names: &[String],
    host: &str,
) -> bool {
    let port = listen.port();
    let allowed = [
        listen.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    allowed.iter().any(|a| a.eq_ignore_ascii_case(host))
        || public_authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
        || host
            .parse::<http::uri::Authority>()
            .ok()
            .and_then(|a| crate::config::normalize_host(a.host()))
            .is_some_and(|name| names.contains(&name))
}

async fn read_json(req: Request<Incoming>) -> Result<serde_json::Value, Response<Body>> {
    let bytes: Bytes = match limits::read_body(req.into_body()).await {
        Ok(b) => b,
        Err(limits::BodyError::TooLarge) => return Err(closing(body_too_large())),
        Err(limits::BodyError::Broken(e)) => {
            return Err(closing(err(StatusCode::BAD_REQUEST, "bad_body", &e)))
        }
    };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(serde_json::json!({}));
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        _ => Err(err(
            StatusCode::BAD_REQUEST,
            "bad_json",
            "body must be a JSON object",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn the_host_check_accepts_the_listeners_own_names_and_nothing_else() {
        let listen = "10.0.0.5:8081".parse().expect("addr");
        let names = vec!["airlock-admin".to_string(), "2001:db8::5".to_string()];
        let public = Some("review.example.org:8443");
        let cases = [
            ("10.0.0.5:8081", true),
            ("localhost:8081", true),
            ("LOCALHOST:8081", true),
            ("127.0.0.1:8081", true),
            ("[::1]:8081", true),
            ("review.example.org:8443", true),
            // The listen name and public_hosts, on any port (a tunnel, a reverse proxy).
            ("airlock-admin:8081", true),
            ("Airlock-Admin", true),
            ("airlock-admin.:9000", true),
            ("[2001:db8::5]:443", true),
            // A rebinding attacker's name, or ours with more around it.
            ("localhost:9999", false),
            ("evil.example:8081", false),
            ("airlock-admin.evil.example:8081", false),
            ("review.example.org", false),
            ("airlock-admin:8081@evil", false),
            ("", false),
        ];
        for (host, want) in cases {
            assert_eq!(host_allowed(listen, public, &names, host), want, "{host:?}");
        }
    }
}
