//! Sign-in with a reviewer (or admin) token, session cookies, CSRF and the same-origin check.
//!
//! Sessions live in memory (random 256-bit id in an HttpOnly, SameSite=Strict cookie, 12 h;
//! `Secure` too when `notify.base_url` is https, i.e. reviewers arrive through TLS).
//! Every POST carries the session's CSRF token (login: a pre-session token bound to a cookie),
//! and a cross-site `Origin` is refused. A decision also carries the session's decision key: the
//! sign-in response alone holds it, and the dashboard's script keeps it in the origin's storage,
//! which another port on the same host cannot read, though the browser sends it the cookie
//! (cookies are not kept apart by port): a page the agent serves on `localhost:3000` can collect
//! the cookie and read pages with it, never decide. A session keeps only the SHA-256 of the token it signed
//! in with and resolves it against the reviewers in force on every request: removing a reviewer
//! (config reload) ends her sessions at once, and group changes apply at once.

use std::time::{Duration, Instant};

use base64::Engine;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use minijinja::context;
use sha2::{Digest, Sha256};

use super::{html_response, read_form, Dashboard};
use crate::admin::{Admin, Caller};
use crate::gate::Reviewer;
use crate::wire::Body;

pub(super) const SESSION_COOKIE: &str = "airlock_session";
const LOGIN_COOKIE: &str = "airlock_login";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

pub(super) struct Session {
    /// SHA-256 of the token signed in with (never the token).
    token_digest: [u8; 32],
    csrf: String,
    /// Shown once, in the sign-in response; every decision must carry it.
    decision_key: String,
    expires: Instant,
}

/// A request's live session: who, and what its forms must carry.
pub(super) struct SignedIn {
    pub(super) reviewer: Reviewer,
    pub(super) csrf: String,
    pub(super) decision_key: String,
    /// SHA-256 of the session id (the map's key), to end this session.
    id_digest: [u8; 32],
}

impl Dashboard {
    /// The signed-in reviewer (as configured now) and the session's tokens. Every cookie of the
    /// session's name is tried: another port on the host can plant one under a longer path,
    /// which browsers send first. A session whose token no longer belongs to anyone (a removed
    /// reviewer) is ended.
    pub(super) fn session(&self, admin: &Admin, req: &Request<Incoming>) -> Option<SignedIn> {
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        for id in cookies(req, SESSION_COOKIE) {
            let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
            let Some(s) = sessions.get(&key) else {
                continue;
            };
            let reviewer = match admin.caller_for_digest(&s.token_digest) {
                Some(Caller::Reviewer(r)) => r,
                Some(Caller::Operator) => admin.acting_reviewer(&Caller::Operator, None),
                None => {
                    sessions.remove(&key);
                    tracing::info!(target: "airlock::admin", "dashboard session ended: its reviewer is no longer configured");
                    continue;
                }
            };
            return Some(SignedIn {
                reviewer,
                csrf: s.csrf.clone(),
                decision_key: s.decision_key.clone(),
                id_digest: key,
            });
        }
        None
    }
}

/// The sign-in page, with its pre-session cookie (login CSRF).
pub(super) fn login_page(admin: &Admin, message: Option<String>) -> Response<Body> {
    // Login CSRF: a random token in a cookie and in the form must match.
    let token = random_token();
    let mut r = admin.dashboard.render(
        "login.html",
        context! { title => "Sign in", csrf => token, message => message },
    );
    set_cookie(admin, &mut r, LOGIN_COOKIE, &token, 600);
    r
}

/// Do the dashboard's cookies get `Secure`? When `notify.base_url` is https: reviewers reach
/// the dashboard through TLS (a reverse proxy), so the browser must never send the session over
/// plain HTTP. (Current Chromium and Firefox also accept `Secure` cookies from
/// `http://localhost`, e.g. through an SSH tunnel; other plain-HTTP names then cannot sign in.)
fn secure_cookies(admin: &Admin) -> bool {
    admin
        .public_origin()
        .is_some_and(|o| o.to_ascii_lowercase().starts_with("https://"))
}

pub(super) async fn login(admin: &Admin, req: Request<Incoming>) -> Response<Body> {
    let dash = &admin.dashboard;
    // Every cookie of the name: one planted from another port must not block the sign-in.
    let pre: Vec<String> = cookies(&req, LOGIN_COOKIE).collect();
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !pre.iter().any(|p| csrf_matches(form.get("csrf"), Some(p))) {
        return login_page(admin, Some("The sign-in form expired; try again.".into()));
    }
    let token_digest = form
        .get("token")
        .map(|t| crate::admin::token_digest(t))
        .unwrap_or_default();
    let reviewer = match form.get("token").and_then(|t| admin.caller_for_token(t)) {
        Some(Caller::Reviewer(r)) => r,
        Some(Caller::Operator) => admin.acting_reviewer(&Caller::Operator, None),
        None => {
            tracing::info!(target: "airlock::admin", "dashboard sign-in refused");
            return login_page(admin, Some("Unknown token.".into()));
        }
    };
    let id = random_token();
    let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
    let decision_key = random_token();
    if let Ok(mut s) = dash.sessions.lock() {
        s.insert(
            key,
            Session {
                token_digest,
                csrf: random_token(),
                decision_key: decision_key.clone(),
                expires: Instant::now() + SESSION_TTL,
            },
        );
    }
    tracing::info!(target: "airlock::admin", reviewer = %reviewer.name, "dashboard sign-in");
    // The page's script stores the key and goes on to `/ui` (a POST's answer: never cached,
    // never fetched by anyone but the browser that signed in).
    let mut r = dash.render(
        "signed_in.html",
        context! { title => "Signed in", name => reviewer.name, decision_key => decision_key },
    );
    set_cookie(admin, &mut r, SESSION_COOKIE, &id, SESSION_TTL.as_secs());
    set_cookie(admin, &mut r, LOGIN_COOKIE, "", 0);
    r
}

pub(super) fn logout(dash: &Dashboard, signed_in: &SignedIn) {
    if let Ok(mut s) = dash.sessions.lock() {
        s.remove(&signed_in.id_digest);
    }
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Every value of the cookies named `name`, in the order the browser sent them.
fn cookies<'r>(req: &'r Request<Incoming>, name: &'r str) -> impl Iterator<Item = String> + 'r {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Sets a dashboard cookie: HttpOnly, SameSite=Strict, path `/ui`, and `Secure` when
/// [`secure_cookies`]. Every cookie the dashboard sets (sign-in page, session, logout) goes
/// through here.
pub(super) fn set_cookie(
    admin: &Admin,
    resp: &mut Response<Body>,
    name: &str,
    value: &str,
    max_age: u64,
) {
    let secure = if secure_cookies(admin) {
        "; Secure"
    } else {
        ""
    };
    let v =
        format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    if let Ok(h) = HeaderValue::from_str(&v) {
        resp.headers_mut().append(header::SET_COOKIE, h);
    }
}

/// A POST must not come from another origin (the Host check already pins the listener): the
/// Origin is `http://{Host}`, `https://{Host}` (a TLS reverse proxy in front) or the public
/// origin of `notify.base_url`.
pub(super) fn same_origin(req: &Request<Incoming>, public_origin: Option<&str>) -> bool {
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
        || origin.eq_ignore_ascii_case(&format!("https://{host}"))
        || public_origin.is_some_and(|p| origin.eq_ignore_ascii_case(p))
}

/// Does the form's CSRF token equal the expected one (compared in constant time; no token
/// expected never matches)?
pub(super) fn csrf_matches(given: Option<&String>, expected: Option<&String>) -> bool {
    match (given, expected) {
        (Some(g), Some(e)) => crate::secret_file::constant_time_eq(g.as_bytes(), e.as_bytes()),
        _ => false,
    }
}

/// A decision without the session's decision key: the browser has none (JavaScript or storage
/// off, another browser) or the request does not come from the browser that signed in.
pub(super) fn decision_key_refused() -> Response<Body> {
    html_response(
        StatusCode::FORBIDDEN,
        "<h1>No decision key</h1><p>Deciding needs the key your browser received when it signed \
         in, kept by the dashboard's script (JavaScript and site storage must be on). \
         <a href=\"/ui/login\">Sign in again</a> in this browser, or decide with the CLI or a \
         notification link.</p>"
            .into(),
    )
}

pub(super) fn csrf_refused() -> Response<Body> {
    html_response(
        StatusCode::FORBIDDEN,
        "<h1>Form expired</h1><p>Reload the page and try again.</p>".into(),
    )
}
