//! Live pages without a reload button: the list, history and detail pages carry the version of
//! the reviews they show (`data-version`, an instance nonce and the gate's change counter,
//! [`crate::gate::Gate::change_count`]); `/ui/live.js` (same-origin, so the CSP still allows no
//! inline script) asks `GET /ui/version` every few seconds with `If-None-Match`, which answers
//! `304` until something changed. Each poll costs one atomic read, whatever the history. When
//! the version moved the page reloads itself by GET, unless the reviewer is typing (then it
//! says the page changed).

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Dashboard;
use crate::admin::Admin;
use crate::wire::{empty, full, Body};

const SCRIPT: &str = include_str!("../templates/live.js");

impl Dashboard {
    /// The version of what a page rendered now shows (read before the page's data, so that a
    /// change in between makes the page look older, never newer).
    pub(super) fn version(&self, admin: &Admin) -> String {
        format!("{}-{}", self.boot, admin.gate.change_count())
    }
}

/// `GET /ui/version`: `304` while `If-None-Match` names the current version, else `200` with it.
pub(super) fn version(dash: &Dashboard, admin: &Admin, req: &Request<Incoming>) -> Response<Body> {
    let tag = format!("\"{}\"", dash.version(admin));
    let unchanged = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == tag);
    let mut r = if unchanged {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(full(format!("{{\"version\":{tag}}}\n")));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /ui/live.js`: the polling script (static; no session needed).
pub(super) fn script() -> Response<Body> {
    let mut r = Response::new(full(SCRIPT));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}
