//! Reviewer dashboard: server-rendered HTML (minijinja) on the admin listener.
//!
//! Routes (all under `/ui`, behind the admin listener's strict Host check):
//! - `GET  /ui/login`, `POST /ui/login`   sign in with a reviewer token (or the admin token)
//! - `POST /ui/logout`
//! - `GET  /ui`                           pending reviews
//! - `GET  /ui/history[?state=&tool=&agent=]` every review, filtered
//! - `GET  /ui/reviews/{id}`              one review: stored request, result, audit entries
//! - `POST /ui/reject-pending`            form `agent`, `comment`, `csrf`, `dk`: rejects every
//!   pending review of that agent (shown on the pending list filtered by agent)
//! - `POST /ui/reviews/{id}/decide`       form `action=approve|reject|retry`, `comment`, `csrf`,
//!   `dk` (the session's decision key, `session.rs`)
//! - `GET  /ui/version`                   the reviews' version, `304` while `If-None-Match` names
//!   it (`live.rs`; `401` without a session)
//! - `GET  /ui/live.js`                   the script that keeps the decision key and fills the
//!   forms with it, and polls the version and reloads a changed page
//! - `GET  /ui/link/{token}`              one-click link from a notification: a confirmation page
//!   only (mail scanners prefetch GET links), or the review's state when the link can no longer
//!   decide; `POST /ui/link/{token}` from that page decides as the link's reviewer, once
//!   (`…/reject`: an approve link whose page withholds the body rejects instead)
//!
//! Sign-in, sessions and CSRF live in `session.rs`, the one-click link pages in `links.rs`, the
//! list, detail and history pages in `views.rs`; this file routes and holds the shared helpers.

mod arguments;
mod duplicates;
mod escapes;
mod links;
mod live;
mod session;
mod show;
mod views;
mod warnings;

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use minijinja::Environment;

use super::{closing, limits, Admin, BULK_REJECT_MOST};
use crate::gate::ReviewState;
use crate::wire::{full, Body};
use links::{link_decide, link_page};
use session::{
    csrf_matches, csrf_refused, decision_key_refused, login, login_page, logout, same_origin,
    set_cookie, Session, SESSION_COOKIE,
};
use views::{detail_page, list_page};
pub(crate) use warnings::SenderGone;

/// A JSON body spelled with `\u` escapes of characters that need none, for the admin API (what
/// `airlock reviews show` prints): its decoded reading, the agent's text (unmasked). `None` for
/// any other body, and a git push's.
pub(crate) fn body_decoded(r: &crate::gate::Review, body: &[u8]) -> Option<String> {
    if views::is_git_push(r) {
        return None;
    }
    escapes::escaped(body).map(|e| e.decoded)
}

/// What the detail page sums up of review `r`, for the admin API (`summary`, which `airlock
/// reviews show` prints): `arguments` (the page's Arguments), `money` (its Amount line) and
/// `warnings` (every warning it shows, as lines: `warnings.rs`); `gone`: its agent is no longer
/// the one configured under its name. Masked and escaped as on the page.
pub(crate) fn review_summary(
    r: &crate::gate::Review,
    gone: Option<SenderGone>,
) -> serde_json::Value {
    let body = r.request.body().unwrap_or_default();
    let s = views::sum_up(r, &body);
    let warnings = warnings::lines(r, &s, &body, gone);
    serde_json::json!({
        "arguments": s.args,
        "money": s.money,
        "warnings": warnings,
    })
}

/// Templates and signed-in sessions.
pub struct Dashboard {
    env: Environment<'static>,
    /// SHA-256(session id) -> session; the raw id exists only in the browser's cookie.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    /// Random per start, so that a restarted instance's change counter never matches a
    /// version a page got from the one before.
    boot: String,
}

impl Dashboard {
    pub fn new() -> Dashboard {
        let mut env = Environment::new();
        for (name, text) in [
            ("base.html", include_str!("../templates/base.html")),
            ("login.html", include_str!("../templates/login.html")),
            ("list.html", include_str!("../templates/list.html")),
            ("detail.html", include_str!("../templates/detail.html")),
            (
                "signed_in.html",
                include_str!("../templates/signed_in.html"),
            ),
        ] {
            // The templates are compiled in; a syntax error is caught by the tests.
            if let Err(e) = env.add_template(name, text) {
                tracing::error!(template = name, error = %e, "dashboard template does not parse");
            }
        }
        Dashboard {
            env,
            sessions: Mutex::new(HashMap::new()),
            boot: hex::encode(rand::random::<[u8; 8]>()),
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
            Method::GET => login_page(admin, None),
            Method::POST => login(admin, req).await,
            _ => method_not_allowed(),
        };
    }
    if let Some(rest) = path.strip_prefix("/ui/link/") {
        // `/ui/link/{token}/reject`: the reject an approve link offers when its page withholds
        // the body. In the path, not the query: an instance that knows no such route refuses
        // the token (its signature fails) instead of approving.
        let (token, reject) = match rest.strip_suffix("/reject") {
            Some(t) => (t.to_string(), true),
            None => (rest.to_string(), false),
        };
        // Whoever is signed in here only changes what the page says: a link decides as its own
        // reviewer.
        let signed_in = dash.session(admin, &req).map(|s| s.reviewer);
        return match method {
            Method::GET => link_page(admin, &token, signed_in.as_ref()).await,
            Method::POST => link_decide(admin, &token, reject, signed_in.as_ref()).await,
            _ => method_not_allowed(),
        };
    }
    if path == "/ui/live.js" {
        return match method {
            Method::GET => live::script(),
            _ => method_not_allowed(),
        };
    }
    let Some(signed_in) = dash.session(admin, &req) else {
        if path == "/ui/version" {
            // A script asks: no redirect to a page it cannot show.
            return html_response(StatusCode::UNAUTHORIZED, "<h1>Not signed in</h1>".into());
        }
        return redirect("/ui/login");
    };
    let (reviewer, csrf) = (&signed_in.reviewer, &signed_in.csrf);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::POST, ["ui", "logout"]) => {
            let form = match read_form(req).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            if !csrf_matches(form.get("csrf"), Some(csrf)) {
                return csrf_refused();
            }
            logout(dash, &signed_in);
            let mut r = redirect("/ui/login");
            set_cookie(admin, &mut r, SESSION_COOKIE, "", 0);
            r
        }
        (Method::GET, ["ui"]) => {
            let mut listing = crate::admin::listing::parse(req.uri().query());
            if let Ok(l) = listing.as_mut() {
                l.query.state = Some(ReviewState::Pending);
            }
            list_page(dash, admin, "/ui", listing, reviewer, csrf, None).await
        }
        (Method::GET, ["ui", "version"]) => live::version(dash, admin, &req),
        (Method::GET, ["ui", "history"]) => {
            let listing = crate::admin::listing::parse(req.uri().query());
            list_page(dash, admin, "/ui/history", listing, reviewer, csrf, None).await
        }
        (Method::GET, ["ui", "reviews", id]) => {
            let id = id.to_string();
            detail_page(dash, admin, &id, reviewer, csrf, None).await
        }
        (Method::POST, ["ui", "reject-pending"]) => {
            let (form, comment) = match decision_form(req, &signed_in).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            let Some(agent) = form.get("agent").filter(|a| !a.is_empty()) else {
                return html_response(StatusCode::BAD_REQUEST, "<h1>No agent named</h1>".into());
            };
            let note = match admin
                .gate
                .reject_pending(agent, reviewer, comment, BULK_REJECT_MOST)
                .await
            {
                Ok(done) => {
                    let mut note = format!(
                        "Rejected {} pending review(s) of agent {agent}.",
                        done.rejected.len()
                    );
                    if !done.failed.is_empty() {
                        note.push_str(&format!(
                            " Not rejected: {} (open each to see why).",
                            done.failed.len()
                        ));
                    }
                    if done.more {
                        note.push_str(" More are pending: submit again.");
                    }
                    note
                }
                Err(e) => format!("Not done: {e}"),
            };
            let listing = Ok(crate::admin::listing::Listing::pending_of(agent));
            list_page(dash, admin, "/ui", listing, reviewer, csrf, Some(note)).await
        }
        (Method::POST, ["ui", "reviews", id, "decide"]) => {
            let id = id.to_string();
            let (form, comment) = match decision_form(req, &signed_in).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            let result = match form.get("action").map(String::as_str) {
                Some("approve") => admin.gate.approve(&id, reviewer, comment).await,
                Some("reject") => admin.gate.reject(&id, reviewer, comment).await,
                // Tied to the attempt the page showed: a retry asked for after another
                // attempt was made (another reviewer's retry) is refused.
                Some("retry") => {
                    let Some(seen) = form.get("attempts").and_then(|n| n.parse::<usize>().ok())
                    else {
                        return html_response(
                            StatusCode::BAD_REQUEST,
                            "<h1>Reload the review</h1><p>This retry form does not say which attempt it retries; reload the review's page and retry from there.</p>".into(),
                        );
                    };
                    admin
                        .gate
                        .retry_seen(&id, reviewer, comment, Some(seen))
                        .await
                }
                _ => {
                    return html_response(StatusCode::BAD_REQUEST, "<h1>Unknown action</h1>".into())
                }
            };
            let people = admin.gate.people().current();
            let message = match result {
                Ok(r) if r.state == ReviewState::Pending => format!(
                    "Approval recorded; approvals toward the quorum: {}.",
                    r.quorum_progress(&r.approvals, &people)
                ),
                Ok(r) if !r.retry_approvals.is_empty() => format!(
                    "Retry approval recorded; approvals toward the quorum: {} (it is sent once met).",
                    r.quorum_progress(&r.retry_approvals, &people)
                ),
                Ok(r) => format!("Review is now {}.", r.state.as_str()),
                Err(e) => decision_error(&e),
            };
            detail_page(dash, admin, &id, reviewer, csrf, Some(message)).await
        }
        _ => html_response(StatusCode::NOT_FOUND, "<h1>Not found</h1>".into()),
    }
}

/// A decision's form, once its CSRF token and the session's decision key match, with its
/// comment (trimmed, at most 4096 characters, none if blank).
async fn decision_form(
    req: Request<Incoming>,
    signed_in: &session::SignedIn,
) -> Result<(HashMap<String, String>, Option<String>), Response<Body>> {
    let form = read_form(req).await?;
    if !csrf_matches(form.get("csrf"), Some(&signed_in.csrf)) {
        return Err(csrf_refused());
    }
    if !csrf_matches(form.get("dk"), Some(&signed_in.decision_key)) {
        return Err(decision_key_refused());
    }
    let comment = form
        .get("comment")
        .map(|c| c.trim().chars().take(4096).collect::<String>())
        .filter(|c| !c.is_empty());
    Ok((form, comment))
}

/// The dashboard's line for a decision that returned an error: "Not done" only when nothing
/// was done. A recorded approval whose send did not start yet, and a sent request whose
/// outcome could not be stored, say so.
fn decision_error(e: &crate::gate::GateError) -> String {
    use crate::gate::GateError;
    match e {
        GateError::SendPending(_) | GateError::Unrecorded(_) => {
            let text = e.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => text,
            }
        }
        _ => format!("Not done: {e}"),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A form body, read by the admin listener's one body reader (its cap and its read deadline,
/// `limits.rs`); a refused body closes the connection, as on the API routes.
async fn read_form(req: Request<Incoming>) -> Result<HashMap<String, String>, Response<Body>> {
    let bytes: Bytes = match limits::read_body(req.into_body()).await {
        Ok(b) => b,
        Err(limits::BodyError::TooLarge) => {
            return Err(closing(html_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "<h1>Form too large</h1>".into(),
            )))
        }
        Err(limits::BodyError::Broken(_)) => {
            return Err(closing(html_response(
                StatusCode::BAD_REQUEST,
                "<h1>Malformed form</h1>".into(),
            )))
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
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
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

fn method_not_allowed() -> Response<Body> {
    html_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "<h1>Method not allowed</h1>".into(),
    )
}
