//! Reviewer dashboard: server-rendered HTML (minijinja) on the admin listener.
//!
//! Routes (all under `/ui`, behind the admin listener's strict Host check):
//! - `GET  /ui/login`, `POST /ui/login`   sign in with a reviewer token (or the admin token)
//! - `POST /ui/logout`
//! - `GET  /ui`                           pending reviews
//! - `GET  /ui/history[?state=&tool=&agent=]` every review, filtered
//! - `GET  /ui/reviews/{id}`              one review: stored request, result, audit entries
//! - `POST /ui/reviews/{id}/decide`       form `action=approve|reject|retry`, `comment`, `csrf`
//! - `GET  /ui/link/{token}`              one-click link from a notification: a confirmation page
//!   only (mail scanners prefetch GET links); `POST /ui/link/{token}` from that page decides, once
//!
//! Sessions live in memory (random 256-bit id in an HttpOnly, SameSite=Strict cookie, 12 h).
//! Every POST carries the session's CSRF token (login: a pre-session token bound to a cookie),
//! and a cross-site `Origin` is refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use minijinja::{context, Environment};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Admin, Caller};
use crate::gate::{review::rfc3339, Review, ReviewState, Reviewer};
use crate::wire::{full, Body};

const SESSION_COOKIE: &str = "airlock_session";
const LOGIN_COOKIE: &str = "airlock_login";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const MAX_FORM: usize = 64 * 1024;

struct Session {
    reviewer: Reviewer,
    csrf: String,
    expires: Instant,
}

/// Templates and signed-in sessions.
pub struct Dashboard {
    env: Environment<'static>,
    /// SHA-256(session id) -> session; the raw id exists only in the browser's cookie.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

impl Dashboard {
    pub fn new() -> Dashboard {
        let mut env = Environment::new();
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("list.html", include_str!("templates/list.html")),
            ("detail.html", include_str!("templates/detail.html")),
        ] {
            // The templates are compiled in; a syntax error is caught by the tests.
            if let Err(e) = env.add_template(name, text) {
                tracing::error!(template = name, error = %e, "dashboard template does not parse");
            }
        }
        Dashboard {
            env,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Response<Body> {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => html_response(StatusCode::OK, html),
            Err(e) => {
                tracing::error!(template = name, error = %e, "dashboard render failed");
                html_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<h1>Dashboard error</h1><p>The page could not be rendered; see the server log.</p>".into(),
                )
            }
        }
    }

    fn session(&self, req: &Request<Incoming>) -> Option<(Reviewer, String)> {
        let id = cookie(req, SESSION_COOKIE)?;
        let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions
            .get(&key)
            .map(|s| (s.reviewer.clone(), s.csrf.clone()))
    }
}

impl Default for Dashboard {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves one `/ui` request.
pub async fn route(admin: &Admin, req: Request<Incoming>) -> Response<Body> {
    let dash = &admin.dashboard;
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if method == Method::POST && !same_origin(&req, admin.public_origin()) {
        return html_response(
            StatusCode::FORBIDDEN,
            "<h1>Cross-site request refused</h1>".into(),
        );
    }
    if path == "/ui/login" {
        return match method {
            Method::GET => login_page(dash, None),
            Method::POST => login(admin, req).await,
            _ => method_not_allowed(),
        };
    }
    if let Some(token) = path.strip_prefix("/ui/link/") {
        let token = token.to_string();
        return match method {
            Method::GET => link_page(admin, &token),
            Method::POST => link_decide(admin, &token).await,
            _ => method_not_allowed(),
        };
    }
    let Some((reviewer, csrf)) = dash.session(&req) else {
        return redirect("/ui/login");
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::POST, ["ui", "logout"]) => {
            let session_id = cookie(&req, SESSION_COOKIE).unwrap_or_default();
            let form = match read_form(req).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            if form.get("csrf") != Some(&csrf) {
                return csrf_refused();
            }
            logout(dash, &session_id);
            let mut r = redirect("/ui/login");
            set_cookie(&mut r, SESSION_COOKIE, "", 0);
            r
        }
        (Method::GET, ["ui"]) => {
            let list = admin.gate.list(Some(ReviewState::Pending)).await;
            list_page(dash, admin, "Pending reviews", list, None, &reviewer, &csrf)
        }
        (Method::GET, ["ui", "history"]) => {
            let q = query_map(req.uri().query());
            let state = q.get("state").and_then(|s| s.parse::<ReviewState>().ok());
            let list = admin.gate.list(state).await;
            list_page(dash, admin, "History", list, Some(q), &reviewer, &csrf)
        }
        (Method::GET, ["ui", "reviews", id]) => {
            let id = id.to_string();
            detail_page(dash, admin, &id, &reviewer, &csrf, None).await
        }
        (Method::POST, ["ui", "reviews", id, "decide"]) => {
            let id = id.to_string();
            let form = match read_form(req).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            if form.get("csrf") != Some(&csrf) {
                return csrf_refused();
            }
            let comment = form
                .get("comment")
                .map(|c| c.trim().chars().take(4096).collect::<String>())
                .filter(|c| !c.is_empty());
            let result = match form.get("action").map(String::as_str) {
                Some("approve") => admin.gate.approve(&id, &reviewer, comment).await,
                Some("reject") => admin.gate.reject(&id, &reviewer, comment).await,
                Some("retry") => admin.gate.retry(&id, &reviewer, comment).await,
                _ => {
                    return html_response(StatusCode::BAD_REQUEST, "<h1>Unknown action</h1>".into())
                }
            };
            let message = match result {
                Ok(r) if r.state == ReviewState::Pending => format!(
                    "Approval recorded: {} of {} needed.",
                    r.approvals.len(),
                    r.policy.required
                ),
                Ok(r) => format!("Review is now {}.", r.state.as_str()),
                Err(e) => format!("Not done: {e}"),
            };
            detail_page(dash, admin, &id, &reviewer, &csrf, Some(message)).await
        }
        _ => html_response(StatusCode::NOT_FOUND, "<h1>Not found</h1>".into()),
    }
}

fn link_message(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    html_response(
        status,
        format!(
            "<!doctype html><title>Airlock</title><h1 id=\"title\">{}</h1><p id=\"text\">{}</p>",
            html_escape(title),
            html_escape(text)
        ),
    )
}

fn link_error(e: &crate::notify::LinkError) -> Response<Body> {
    use crate::notify::LinkError;
    let (title, text) = match e {
        LinkError::Expired => (
            "Link expired",
            "This link has expired; open the dashboard instead.",
        ),
        LinkError::AlreadyUsed => (
            "Link already used",
            "Each link works once; open the dashboard to see the review.",
        ),
        LinkError::Malformed | LinkError::BadSignature => {
            ("Invalid link", "This link is not valid.")
        }
        _ => (
            "Link unavailable",
            "The link could not be checked; try the dashboard.",
        ),
    };
    link_message(StatusCode::FORBIDDEN, title, text)
}

/// GET: shows what the link would do; never decides.
fn link_page(admin: &Admin, token: &str) -> Response<Body> {
    let claims = match admin.links.verify(token, admin.gate.now_ms()) {
        Ok(c) => c,
        Err(e) => return link_error(&e),
    };
    let action = match claims.action {
        crate::notify::LinkAction::Approve => "approve",
        crate::notify::LinkAction::Reject => "reject",
    };
    html_response(
        StatusCode::OK,
        format!(
            "<!doctype html><title>Airlock</title><h1 id=\"title\">Confirm: {action} review {id}</h1>\
             <p>As reviewer <b>{who}</b>. Nothing happens until you press the button.</p>\
             <form method=\"post\" action=\"/ui/link/{token}\"><button id=\"confirm\">{action}</button></form>\
             <p><a href=\"/ui/reviews/{id}\">Open the review in the dashboard</a></p>",
            action = action,
            id = html_escape(&claims.review_id),
            who = html_escape(&claims.reviewer),
            token = html_escape(token),
        ),
    )
}

/// POST from the confirmation page: redeems the single-use token and decides as its reviewer.
async fn link_decide(admin: &Admin, token: &str) -> Response<Body> {
    let store = admin.gate.store().clone();
    let links = admin.links.clone();
    let now = admin.gate.now_ms();
    let t = token.to_string();
    let claims =
        match tokio::task::spawn_blocking(move || links.redeem(store.as_ref(), &t, now)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return link_error(&e),
            Err(_) => {
                return link_message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Link unavailable",
                    "Try the dashboard.",
                )
            }
        };
    let Some(r) = admin.reviewers.iter().find(|r| r.name == claims.reviewer) else {
        return link_message(
            StatusCode::FORBIDDEN,
            "Invalid link",
            "Its reviewer is no longer configured.",
        );
    };
    let reviewer = Reviewer {
        name: r.name.clone(),
        groups: r.groups.clone(),
    };
    let comment = Some("decided via one-click link".to_string());
    let result = match claims.action {
        crate::notify::LinkAction::Approve => {
            admin
                .gate
                .approve(&claims.review_id, &reviewer, comment)
                .await
        }
        crate::notify::LinkAction::Reject => {
            admin
                .gate
                .reject(&claims.review_id, &reviewer, comment)
                .await
        }
    };
    match result {
        Ok(r) if r.state == ReviewState::Pending => link_message(
            StatusCode::OK,
            "Approval recorded",
            &format!(
                "{} of {} approvals so far.",
                r.approvals.len(),
                r.policy.required
            ),
        ),
        Ok(r) => link_message(
            StatusCode::OK,
            "Done",
            &format!("The review is now {}.", r.state.as_str()),
        ),
        Err(e) => link_message(StatusCode::CONFLICT, "Not done", &e.to_string()),
    }
}

fn login_page(dash: &Dashboard, message: Option<String>) -> Response<Body> {
    // Login CSRF: a random token in a cookie and in the form must match.
    let token = random_token();
    let mut r = dash.render(
        "login.html",
        context! { title => "Sign in", csrf => token, message => message },
    );
    set_cookie(&mut r, LOGIN_COOKIE, &token, 600);
    r
}

async fn login(admin: &Admin, req: Request<Incoming>) -> Response<Body> {
    let dash = &admin.dashboard;
    let pre = cookie(&req, LOGIN_COOKIE);
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if pre.is_none() || form.get("csrf") != pre.as_ref() {
        return login_page(dash, Some("The sign-in form expired; try again.".into()));
    }
    let reviewer = match form.get("token").and_then(|t| admin.caller_for_token(t)) {
        Some(Caller::Reviewer(r)) => r,
        Some(Caller::Operator) => admin.acting_reviewer(&Caller::Operator, None),
        None => {
            tracing::info!(target: "airlock::admin", "dashboard sign-in refused");
            return login_page(dash, Some("Unknown token.".into()));
        }
    };
    let id = random_token();
    let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
    if let Ok(mut s) = dash.sessions.lock() {
        s.insert(
            key,
            Session {
                reviewer: reviewer.clone(),
                csrf: random_token(),
                expires: Instant::now() + SESSION_TTL,
            },
        );
    }
    tracing::info!(target: "airlock::admin", reviewer = %reviewer.name, "dashboard sign-in");
    let mut r = redirect("/ui");
    set_cookie(&mut r, SESSION_COOKIE, &id, SESSION_TTL.as_secs());
    set_cookie(&mut r, LOGIN_COOKIE, "", 0);
    r
}

fn logout(dash: &Dashboard, session_id: &str) {
    let key: [u8; 32] = Sha256::digest(session_id.as_bytes()).into();
    if let Ok(mut s) = dash.sessions.lock() {
        s.remove(&key);
    }
}

#[derive(Serialize)]
struct Row {
    id: String,
    state: &'static str,
    tool: String,
    service: String,
    agent: String,
    method: String,
    host: String,
    path: String,
    url: String,
    args: Vec<String>,
    money: Option<String>,
    reasons: String,
    age: String,
    created: String,
    expires: String,
    expires_in: String,
    approvals: String,
    approval_list: Vec<String>,
    agent_owner: Option<String>,
    rule_id: String,
    explanation: String,
    decision: Option<String>,
    request_text: String,
    result_text: Option<String>,
}

fn row(r: &Review, now_ms: u64) -> Row {
    let body = r.request.body().unwrap_or_default();
    let (money, mut args) = arguments(r, &body);
    args.extend(r.params.iter().map(|(k, v)| format!("{k}={v}")));
    let mut request_text = format!("{} {}\n", r.request.method, r.request.url());
    for (k, v) in &r.request.headers {
        request_text.push_str(&format!("{k}: {v}\n"));
    }
    if !body.is_empty() {
        request_text.push('\n');
        request_text.push_str(&String::from_utf8_lossy(&body[..body.len().min(16 * 1024)]));
    }
    let result_text = r.execution.as_ref().map(|e| {
        let mut t = format!(
            "status: {}\n",
            e.status.map_or("-".to_string(), |s| s.to_string())
        );
        if let Some(err) = &e.error {
            t.push_str(&format!("error: {err}\n"));
        }
        let b = base64::engine::general_purpose::STANDARD
            .decode(&e.body_b64)
            .unwrap_or_default();
        t.push_str(&String::from_utf8_lossy(&b[..b.len().min(16 * 1024)]));
        t
    });
    Row {
        id: r.id.clone(),
        state: r.state.as_str(),
        tool: r.tool.clone().unwrap_or_default(),
        service: r.service.clone().unwrap_or_default(),
        agent: r.agent.clone().unwrap_or_default(),
        method: r.request.method.clone(),
        host: r.request.host.clone(),
        path: r
            .request
            .path_and_query
            .split('?')
            .next()
            .unwrap_or("")
            .to_string(),
        url: r.request.url(),
        args,
        money,
        reasons: r.reason_codes.join(", "),
        age: human(now_ms.saturating_sub(r.created_at_ms)),
        created: rfc3339(r.created_at_ms),
        expires: rfc3339(r.expires_at_ms),
        expires_in: if r.state == ReviewState::Pending {
            if now_ms >= r.expires_at_ms {
                "expiring".into()
            } else {
                format!("in {}", human(r.expires_at_ms - now_ms))
            }
        } else {
            "-".into()
        },
        approvals: format!("{}/{}", r.approvals.len(), r.policy.required.max(1)),
        approval_list: r
            .approvals
            .iter()
            .map(|d| format!("{} at {}", d.by, rfc3339(d.at_ms)))
            .collect(),
        agent_owner: r.agent_owner.clone(),
        rule_id: r.rule_id.clone().unwrap_or_default(),
        explanation: r.explanation.clone(),
        decision: r.decision.as_ref().map(|d| {
            format!(
                "{} by {} at {}{}",
                if r.state == ReviewState::Rejected {
                    "rejected"
                } else {
                    "approved"
                },
                d.by,
                rfc3339(d.at_ms),
                d.comment
                    .as_ref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            )
        }),
        request_text,
        result_text,
    }
}

/// Money (Stripe `amount` + `currency`, shown in major units) and other notable body fields.
fn arguments(r: &Review, body: &[u8]) -> (Option<String>, Vec<String>) {
    let mut fields: HashMap<String, String> = HashMap::new();
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(body) {
        for (k, v) in m {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            fields.insert(k, text);
        }
    } else {
        for (k, v) in form_urlencoded::parse(body) {
            fields.insert(k.into_owned(), v.into_owned());
        }
    }
    if let Some(q) = r.request.path_and_query.split_once('?').map(|x| x.1) {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            fields.entry(k.into_owned()).or_insert(v.into_owned());
        }
    }
    let money = match (fields.get("amount"), fields.get("currency")) {
        (Some(a), Some(c)) => a.parse::<u64>().ok().map(|minor| {
            let c = c.to_ascii_lowercase();
            match crate::rules::money::exponent(&c) {
                Some(e) => format!(
                    "{:.*} {}",
                    e as usize,
                    minor as f64 / 10f64.powi(e as i32),
                    c.to_uppercase()
                ),
                None => format!("{minor} (minor units, unknown currency {c})"),
            }
        }),
        _ => None,
    };
    let mut args: Vec<String> = Vec::new();
    for key in [
        "customer",
        "charge",
        "payment_intent",
        "destination",
        "visibility",
        "force",
        "sha",
        "ref",
    ] {
        if let Some(v) = fields.get(key) {
            args.push(format!("{key}={}", v.chars().take(80).collect::<String>()));
        }
    }
    (money, args)
}

fn list_page(
    dash: &Dashboard,
    admin: &Admin,
    title: &str,
    list: Result<Vec<Review>, crate::gate::GateError>,
    filters: Option<HashMap<String, String>>,
    reviewer: &Reviewer,
    csrf: &str,
) -> Response<Body> {
    let now = admin.gate.now_ms();
    let (rows, message): (Vec<Row>, Option<String>) = match list {
        Ok(list) => (
            list.iter()
                .filter(|r| match &filters {
                    Some(f) => {
                        f.get("tool").is_none_or(|t| {
                            t.is_empty()
                                || r.tool.as_deref().is_some_and(|x| x.contains(t.as_str()))
                        }) && f
                            .get("agent")
                            .is_none_or(|a| a.is_empty() || r.agent.as_deref() == Some(a.as_str()))
                    }
                    None => true,
                })
                .take(500)
                .map(|r| row(r, now))
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(format!("Reviews unavailable: {e}"))),
    };
    let f = filters.unwrap_or_default();
    let show_filters = title == "History";
    dash.render(
        "list.html",
        context! {
            title => title,
            reviews => rows,
            reviewer => reviewer.name,
            csrf => csrf,
            message => message,
            filters => if show_filters { Some(context! {
                state => f.get("state").cloned().unwrap_or_default(),
                tool => f.get("tool").cloned().unwrap_or_default(),
                agent => f.get("agent").cloned().unwrap_or_default(),
            }) } else { None },
            states => ["pending", "approved", "executing", "executed", "failed", "rejected", "expired", "outcome_unknown"],
        },
    )
}

async fn detail_page(
    dash: &Dashboard,
    admin: &Admin,
    id: &str,
    reviewer: &Reviewer,
    csrf: &str,
    message: Option<String>,
) -> Response<Body> {
    let review = match admin.gate.get(id).await {
        Ok(r) => r,
        Err(e) => {
            return html_response(
                StatusCode::NOT_FOUND,
                format!("<h1>{}</h1>", html_escape(&e.to_string())),
            )
        }
    };
    let audit = admin.gate.audit().clone();
    let rid = id.to_string();
    let entries = tokio::task::spawn_blocking(move || audit.entries(0))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    #[derive(Serialize)]
    struct AuditRow {
        seq: u64,
        ts: String,
        kind: String,
        what: String,
    }
    let audit_rows: Vec<AuditRow> = entries
        .iter()
        .filter(|e| e.get("review_id").and_then(|v| v.as_str()) == Some(rid.as_str()))
        .map(|e| AuditRow {
            seq: e.get("seq").and_then(|v| v.as_u64()).unwrap_or(0),
            ts: e
                .get("ts")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            kind: e
                .get("kind")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            what: summary(e),
        })
        .collect();
    dash.render(
        "detail.html",
        context! {
            title => review.tool.clone().unwrap_or_else(|| review.id.clone()),
            r => row(&review, admin.gate.now_ms()),
            audit => audit_rows,
            reviewer => reviewer.name,
            csrf => csrf,
            message => message,
        },
    )
}

fn summary(e: &serde_json::Value) -> String {
    let s = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("");
    match s("kind") {
        "decision" => format!(
            "{} ({} gate) by rule {}",
            s("outcome"),
            s("gate"),
            s("rule_id")
        ),
        "review" => {
            let mut t = format!("{} → {}", s("from"), s("to"));
            for k in ["by", "approval_by", "comment", "error"] {
                if !s(k).is_empty() {
                    t.push_str(&format!(", {k}: {}", s(k)));
                }
            }
            if let Some(st) = e.get("upstream_status").and_then(|v| v.as_u64()) {
                t.push_str(&format!(", upstream status {st}"));
            }
            t
        }
        other => other.to_string(),
    }
}

fn human(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(resp: &mut Response<Body>, name: &str, value: &str, max_age: u64) {
    let v = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if let Ok(h) = HeaderValue::from_str(&v) {
        resp.headers_mut().append(header::SET_COOKIE, h);
    }
}

/// A POST must not come from another origin (the Host check already pins the listener): the
/// Origin is `http://{Host}` or the public origin of `notify.base_url`.
fn same_origin(req: &Request<Incoming>, public_origin: Option<&str>) -> bool {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return true; // non-browser clients; the CSRF token still applies
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin.eq_ignore_ascii_case(&format!("http://{host}"))
        || public_origin.is_some_and(|p| origin.eq_ignore_ascii_case(p))
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    q.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

async fn read_form(req: Request<Incoming>) -> Result<HashMap<String, String>, Response<Body>> {
    let bytes: Bytes = match Limited::new(req.into_body(), MAX_FORM).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(html_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "<h1>Form too large</h1>".into(),
            ))
        }
    };
    Ok(form_urlencoded::parse(&bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

fn html_response(status: StatusCode, html: String) -> Response<Body> {
    let mut r = Response::new(full(html));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    r
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut r = html_response(StatusCode::SEE_OTHER, String::new());
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn csrf_refused() -> Response<Body> {
    html_response(
        StatusCode::FORBIDDEN,
        "<h1>Form expired</h1><p>Reload the page and try again.</p>".into(),
    )
}

fn method_not_allowed() -> Response<Body> {
    html_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "<h1>Method not allowed</h1>".into(),
    )
}
