//! The agent's answer to an escalated request, rendered from the gate's [`Hold`]: 423 with the
//! review id and where to poll for the outcome; the real answer when the agent waited and the
//! review was decided in time; or a refusal when it could not be held (then it was not
//! forwarded either).
//!
//! The 423 speaks each client's language on top of Airlock's own fields (`reviewId`,
//! `statusUrl`, …, always present): its `message` names the review and the status URL (what
//! curl users, gh and most libraries print); on Stripe it also carries Stripe's error object
//! (`error.type`, `error.code = "airlock_held"`, `error.message`) so Stripe's libraries raise an
//! error naming the review; on GitHub `documentation_url`, which Octokit appends. A git push
//! that asked for a report gets one instead (`git_report`). Answers after a wait that did not
//! execute, and refusals to hold, are dressed the same way (`dialect.rs`).

use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::dialect::{self, no_stripe_retry, stripe_error, Family, Retry, HELD_DOC_URL};
use super::git_outcome;
use super::git_report::ReportRequest;
use crate::gate::agent_api;
use crate::gate::review::{rfc3339, Review, ReviewState};
use crate::gate::{Hold, HoldRefusal, ESCALATE_STATUS, OUTCOME_HEADER, REVIEW_ID_HEADER};
use crate::wire::{json_response, Body, Refusal};

/// Header with the URL an agent polls for a held request's outcome.
pub const STATUS_URL_HEADER: &str = "airlock-status-url";
/// `error.code` of a held Stripe request.
pub const STRIPE_HELD_CODE: &str = "airlock_held";
/// `Retry-After` past the pending-reviews cap: a person has to decide one first.
pub const RETRY_PENDING: &str = "60";
/// `Retry-After` while the review store or the audit log cannot be written.
pub const RETRY_UNAVAILABLE: &str = "30";
/// `Retry-After` of a wait whose review could not be read: when to poll its status URL (not to
/// resend it).
pub const RETRY_STATE_UNKNOWN: &str = "10";

/// The agent's answer to `hold`; `git`: what a git push asked to hear back, if it reads reports
/// (then every ending is a report, `git_outcome.rs`); `family`: the client's language for a
/// refusal (a held review carries its own).
pub fn render(hold: Hold, git: Option<&ReportRequest>, family: Family) -> Response<Body> {
    match hold {
        Hold::Held(review) => git
            .and_then(|g| git_outcome::held(g, &review))
            .unwrap_or_else(|| escalated(&review)),
        Hold::Finished(review) => git
            .and_then(|g| git_outcome::finished(g, &review))
            .unwrap_or_else(|| finished(&review)),
        Hold::Unknown(review) => git
            .and_then(|g| git_outcome::unknown(g, &review))
            .unwrap_or_else(|| state_unknown(&review)),
        Hold::AgentGone(review) => dialect::refusal(agent_gone(&review), family, Retry::Never),
        Hold::Refused(HoldRefusal::KeyReused { key, review }) => key_reused(&key, &review),
        Hold::Refused(why) => {
            let (refusal, reason) = refusal_of(why);
            // A refused hold may have been stored after all (a commit the store reported as
            // failed), and a library's retry would queue another review: never by itself.
            git.and_then(|g| git_outcome::not_held(g, &refusal, &reason, &[]))
                .unwrap_or_else(|| dialect::refusal(refusal, family, Retry::Never))
        }
    }
}

/// A held call's agent was removed (or changed) while it waited: 407, as its next request
/// would get, naming the review (it stays for a reviewer) and nothing of its outcome.
fn agent_gone(r: &Review) -> Refusal {
    let agent = r.agent.as_deref().unwrap_or(crate::agents::ANONYMOUS);
    Refusal::client(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "agent_removed",
        format!(
            "agent {agent} is no longer configured (or its token or limits changed) while its \
             request waited; the request stays held as review {} for a reviewer, and its \
             outcome is not answered to this agent",
            r.id
        ),
    )
}

/// Why a call was not held: the refusal, and its reason in a few words (a git report's).
fn refusal_of(why: HoldRefusal) -> (Refusal, String) {
    match why {
        HoldRefusal::Unstorable(why) => (
            Refusal::client(StatusCode::BAD_REQUEST, "unstorable_request", why),
            "not held: it cannot be stored as sent".into(),
        ),
        HoldRefusal::AuditUnavailable => (
            Refusal::internal(
                "audit_unavailable",
                "this request needs human approval but the audit log cannot be written; it was not queued or forwarded",
            )
            .retry_after(RETRY_UNAVAILABLE),
            "not held: Airlock's audit log cannot be written".into(),
        ),
        HoldRefusal::TooManyPending(cap) => (
            Refusal::client(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_pending_reviews",
                format!(
                    "this request needs human approval, but this agent already has {cap} reviews pending (gate.max_pending_per_agent); it was not queued or forwarded: wait for decisions, then retry"
                ),
            )
            .retry_after(RETRY_PENDING),
            format!("not held: too many reviews pending, gate.max_pending_per_agent = {cap}"),
        ),
        // Answered by `key_reused` in `render`; here for a report's few words.
        HoldRefusal::KeyReused { key, review } => (
            Refusal::client(
                StatusCode::BAD_REQUEST,
                KEY_REUSED,
                format!("Idempotency-Key {key:?} already names another request, held for human review as {review}; nothing was stored or sent"),
            ),
            format!("not held: its Idempotency-Key names another request ({review})"),
        ),
        HoldRefusal::TooManyResends { review, most } => {
            let url = agent_api::status_url(&review);
            (
                Refusal::client(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_resends",
                    format!(
                        "this request is identical to one held for human review as {review}, which has been sent again {most} times; it was not sent, stored or recorded again: poll {url} (through the proxy) for the outcome instead of resending"
                    ),
                )
                .retry_after(RETRY_PENDING),
                format!("not held again: resent {most} times; see {url}"),
            )
        }
        HoldRefusal::StoreUnavailable => (
            Refusal::internal(
                "review_store_unavailable",
                "this request needs human approval but could not be queued; it was not forwarded",
            )
            .retry_after(RETRY_UNAVAILABLE),
            "not held: Airlock's review store is unavailable".into(),
        ),
    }
}

fn family(r: &Review) -> Family {
    Family::of(r.service.as_deref(), &r.request.host)
}

/// The sentence every client shows: the review id and where to poll.
pub fn held_message(r: &Review) -> String {
    let (id, url) = (&r.id, agent_api::status_url(&r.id));
    if sending(r) {
        return format!(
            "Approved as {id} and being sent; it may already have reached the upstream. Poll {url} (through the proxy) for the outcome."
        );
    }
    format!(
        "Held for human review as {id}; it has not been sent. Poll {url} (through the proxy) for the outcome."
    )
}

/// Approved and not yet answered: bytes may have left.
pub(super) fn sending(r: &Review) -> bool {
    matches!(r.state, ReviewState::Approved | ReviewState::Executing)
}

/// The immediate non-2xx answer to an escalated request.
fn escalated(r: &Review) -> Response<Body> {
    let status_url = agent_api::status_url(&r.id);
    let message = held_message(r);
    let mut body = serde_json::json!({
        "decisionId": r.decision_id,
        "outcome": "ESCALATE",
        "reviewId": r.id,
        "reasonCodes": r.reason_codes,
        "tool": r.tool,
        "expiresAt": rfc3339(r.expires_at_ms),
        "message": message,
        "statusUrl": status_url,
    });
    let family = family(r);
    match family {
        // Stripe's error object: its libraries raise an error carrying `message` and `code`.
        Family::Stripe => {
            let mut error = stripe_error("api_error", STRIPE_HELD_CODE, &message, HELD_DOC_URL);
            error["review_id"] = r.id.clone().into();
            error["status_url"] = status_url.into();
            body["error"] = error;
        }
        Family::GitHub => body["documentation_url"] = HELD_DOC_URL.into(),
        Family::Other => {}
    }
    let mut resp = json_response(ESCALATE_STATUS, &body);
    let h = resp.headers_mut();
    review_headers(h, r, "ESCALATE");
    if family == Family::Stripe {
        no_stripe_retry(h);
    }
    resp
}

/// A review that ended while the agent waited (`Airlock-Wait`): the upstream's answer if it
/// executed; otherwise the outcome as JSON, with a `message` and the client's error fields.
fn finished(r: &Review) -> Response<Body> {
    let family = family(r);
    let mut resp = agent_api::final_response_with(r, |body, outcome| {
        let message = final_message(r, outcome);
        match family {
            Family::Stripe => {
                let code = format!("airlock_{}", outcome.to_ascii_lowercase());
                let mut error = stripe_error("api_error", &code, &message, HELD_DOC_URL);
                error["review_id"] = r.id.clone().into();
                error["status_url"] = agent_api::status_url(&r.id).into();
                body["error"] = error;
            }
            Family::GitHub => body["documentation_url"] = HELD_DOC_URL.into(),
            Family::Other => {}
        }
        body["message"] = message.into();
    });
    if family == Family::Stripe && !resp.status().is_success() {
        no_stripe_retry(resp.headers_mut());
    }
    resp
}

/// `Airlock-Reason` of a Stripe request whose `Idempotency-Key` names another held request.
pub const KEY_REUSED: &str = "idempotency_key_reused";

/// The answer to a Stripe request whose `Idempotency-Key` already names another request of
/// the agent's (another method, path, body or header) in review `review`, which may still be
/// sent: 400 with Stripe's `idempotency_error`, as Stripe answers a key reused with other
/// parameters. Nothing was stored; Stripe's libraries are told not to retry.
fn key_reused(key: &str, review: &str) -> Response<Body> {
    let message = format!(
        "Keys for idempotent requests can only be used with the same parameters they were first used with: Idempotency-Key {key:?} already names another request, held for human review as {review}. Nothing was stored or sent; use another key for another request."
    );
    let body = serde_json::json!({
        "error": {
            "type": "idempotency_error",
            "message": message,
            "doc_url": HELD_DOC_URL,
            "review_id": review,
        },
        "side": "client",
        "message": message,
        "reviewId": review,
    });
    let mut resp = json_response(StatusCode::BAD_REQUEST, &body);
    let h = resp.headers_mut();
    h.insert(
        crate::wire::REASON_HEADER,
        HeaderValue::from_static(KEY_REUSED),
    );
    no_stripe_retry(h);
    resp
}

/// `Airlock-Reason` (and `error`) of a wait that could not read what became of its review.
pub const STATE_UNKNOWN: &str = "review_state_unknown";

/// The answer to a held call whose wait (`Airlock-Wait`) could not read its review at the end:
/// 503, no outcome (it may have been approved and sent meanwhile, so neither "held, not sent"
/// nor a result is true), the review id and where to poll. Stripe's libraries are told not to
/// retry (a retry would queue a second review).
fn state_unknown(r: &Review) -> Response<Body> {
    let (id, url) = (&r.id, agent_api::status_url(&r.id));
    let message = format!(
        "Held for human review as {id}, but Airlock could not read what became of it when the wait ended: it may have been approved and sent meanwhile. Poll {url} (through the proxy) for the outcome; do not resend it blindly."
    );
    let mut body = serde_json::json!({
        "error": STATE_UNKNOWN,
        "side": "internal",
        "message": message,
        "reviewId": id,
        "decisionId": r.decision_id,
        "statusUrl": url,
    });
    let family = family(r);
    match family {
        Family::Stripe => {
            let mut error =
                stripe_error("api_error", "airlock_state_unknown", &message, HELD_DOC_URL);
            error["review_id"] = id.clone().into();
            error["status_url"] = url.clone().into();
            body["error"] = error;
        }
        Family::GitHub => body["documentation_url"] = HELD_DOC_URL.into(),
        Family::Other => {}
    }
    let mut resp = json_response(StatusCode::SERVICE_UNAVAILABLE, &body);
    let h = resp.headers_mut();
    h.insert(
        crate::wire::REASON_HEADER,
        HeaderValue::from_static(STATE_UNKNOWN),
    );
    h.insert(
        http::header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_STATE_UNKNOWN),
    );
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert(REVIEW_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&url) {
        h.insert(STATUS_URL_HEADER, v);
    }
    if family == Family::Stripe {
        no_stripe_retry(h);
    }
    resp
}

/// What became of a review whose answer the agent does not get, in a sentence naming it.
pub(super) fn final_message(r: &Review, outcome: &str) -> String {
    let (id, url) = (&r.id, agent_api::status_url(&r.id));
    match outcome {
        "REJECTED" => format!("Review {id} was rejected; the request was not sent."),
        "EXPIRED" => format!("Review {id} expired undecided; the request was not sent."),
        "FAILED" => format!(
            "Review {id} was approved but the request could not be sent, so it did not reach the provider; a reviewer may retry the send, and {url} shows what becomes of it."
        ),
        "EXECUTED" => format!(
            "Review {id} was approved and the request was sent, but the provider's answer came compressed and cannot be checked for Airlock's credential, so it is withheld; see {url}."
        ),
        _ => format!(
            "Review {id} was approved, but whether the request reached the provider is unknown; do not resend it blindly, see {url}."
        ),
    }
}

/// `Airlock-Outcome`, `Airlock-Review-Id` and `Airlock-Status-Url` on an answer about `r`.
pub fn review_headers(h: &mut HeaderMap, r: &Review, outcome: &'static str) {
    h.insert(OUTCOME_HEADER, HeaderValue::from_static(outcome));
    if let Ok(v) = HeaderValue::from_str(&r.id) {
        h.insert(REVIEW_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&agent_api::status_url(&r.id)) {
        h.insert(STATUS_URL_HEADER, v);
    }
}
