//! The agent's answer to an escalated request, rendered from the gate's [`Hold`]: 423 with the
//! review id and where to poll for the outcome; the real answer when the agent waited and the
//! review was decided in time; or a refusal when it could not be held (then it was not
//! forwarded either).

use http::{HeaderValue, Response, StatusCode};

use crate::gate::agent_api::{self, LOCAL_HOST};
use crate::gate::review::{rfc3339, Review};
use crate::gate::{Hold, HoldRefusal, ESCALATE_STATUS, OUTCOME_HEADER, REVIEW_ID_HEADER};
use crate::wire::{json_response, Body, Refusal};

pub fn render(hold: Hold) -> Response<Body> {
    match hold {
        Hold::Held(review) => escalated(&review),
        Hold::Finished(review) => agent_api::final_response(&review),
        Hold::Refused(HoldRefusal::Unstorable(why)) => {
            Refusal::client(StatusCode::BAD_REQUEST, "unstorable_request", why).into_response()
        }
        Hold::Refused(HoldRefusal::AuditUnavailable) => Refusal::internal(
            "audit_unavailable",
            "this request needs human approval but the audit log cannot be written; it was not queued or forwarded",
        )
        .into_response(),
        Hold::Refused(HoldRefusal::StoreUnavailable) => Refusal::internal(
            "review_store_unavailable",
            "this request needs human approval but could not be queued; it was not forwarded",
        )
        .into_response(),
    }
}

/// The immediate non-2xx answer to an escalated request.
fn escalated(r: &Review) -> Response<Body> {
    let body = serde_json::json!({
        "decisionId": r.decision_id,
        "outcome": "ESCALATE",
        "reviewId": r.id,
        "reasonCodes": r.reason_codes,
        "tool": r.tool,
        "expiresAt": rfc3339(r.expires_at_ms),
        "message": "held for human review; it has not been sent. Poll statusUrl (through the proxy) for the outcome.",
        "statusUrl": format!("http://{LOCAL_HOST}/v1/reviews/{}", r.id),
    });
    let mut resp = json_response(ESCALATE_STATUS, &body);
    let h = resp.headers_mut();
    h.insert(OUTCOME_HEADER, HeaderValue::from_static("ESCALATE"));
    if let Ok(v) = HeaderValue::from_str(&r.id) {
        h.insert(REVIEW_ID_HEADER, v);
    }
    resp
}
