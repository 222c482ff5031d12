//! One-click links from notifications: a GET shows a confirmation page only (mail scanners
//! prefetch links); the POST from that page redeems the single-use token and decides.

use http::{Response, StatusCode};

use super::{html_escape, html_response};
use crate::admin::Admin;
use crate::gate::{ReviewState, Reviewer};
use crate::wire::Body;

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
pub(super) fn link_page(admin: &Admin, token: &str) -> Response<Body> {
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
pub(super) async fn link_decide(admin: &Admin, token: &str) -> Response<Body> {
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
