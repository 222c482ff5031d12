//! What agents see of reviews: `GET https://airlock.local/v1/reviews/{id}?wait=30` through the
//! proxy (answered by Airlock itself, never forwarded), and the final answer in wait mode.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode};

use super::review::{rfc3339, Execution, Review, ReviewState};
use super::{Gate, GateError, OUTCOME_HEADER, REVIEW_ID_HEADER};
use crate::credentials::echo::QueryEchoes;
use crate::credentials::redact::{self, REDACTED};
use crate::wire::{full, json_response, Body, Refusal};

/// Host name under which Airlock answers agents itself, through the proxy (never forwarded).
pub const LOCAL_HOST: &str = "airlock.local";

/// Where an agent polls review `id`, through the proxy: https, which an agent that names only
/// `HTTPS_PROXY` sends through it (it trusts Airlock's CA already); plain http works too.
pub fn status_url(id: &str) -> String {
    format!("https://{LOCAL_HOST}/v1/reviews/{id}")
}

/// JSON view of a review for the admin API. `full` adds the stored request. Credential-like
/// headers are never stored from a request (`hold.rs`), and an upstream answer's (`Set-Cookie`)
/// are stored as `[redacted]` (`execute.rs`); any that an older record holds are shown as
/// `[redacted]`. Secret-named query values and parameters are masked in the URL, in `params`;
/// their echoes in the request and in an answer read `[redacted: same value as …]`, and
/// `maskedEcho` (with `maskedEchoFields`) says the request holds one ([`echoed_fields`]).
/// Agents get [`agent_review_json`] instead.
pub fn review_json(r: &Review, full: bool) -> serde_json::Value {
    let decision = r
        .decision
        .as_ref()
        .map(|d| serde_json::json!({"by": d.by, "at": rfc3339(d.at_ms), "comment": d.comment, "adminToken": d.admin_token}));
    let result = r.execution.as_ref().map(execution_json);
    let url = shown_url(r);
    let params: serde_json::Map<String, serde_json::Value> = r
        .params
        .iter()
        .map(|(k, v)| (k.clone(), redact::shown_param(k, v).into()))
        .collect();
    let mut v = serde_json::json!({
        "reviewId": r.id,
        "decisionId": r.decision_id,
        "state": r.state.as_str(),
        "tool": r.tool,
        // The tools of the other rules that held it too (`tool` is the first's).
        "alsoTools": r.also_tools,
        "service": r.service,
        "class": r.class,
        "ruleId": r.rule_id,
        "reasonCodes": r.reason_codes,
        "explanation": r.explanation,
        "params": params,
        "agent": r.agent,
        "agentOwner": r.agent_owner,
        "policy": r.policy,
        "approvals": r.approvals.iter().map(|d| serde_json::json!({"by": d.by, "at": rfc3339(d.at_ms), "comment": d.comment, "adminToken": d.admin_token})).collect::<Vec<_>>(),
        "createdAt": rfc3339(r.created_at_ms),
        "expiresAt": rfc3339(r.expires_at_ms),
        "updatedAt": rfc3339(r.updated_at_ms),
        "decision": decision,
        "result": result,
        "earlierAttempts": r.attempts.iter().map(execution_json).collect::<Vec<_>>(),
        // Send attempts so far: what a retry names (`attempts`) to be refused if another is made.
        "attemptCount": r.attempt_count(),
        "retries": r.retries.iter().map(|d| serde_json::json!({"by": d.by, "at": rfc3339(d.at_ms), "comment": d.comment, "adminToken": d.admin_token})).collect::<Vec<_>>(),
        "method": r.request.method,
        "url": url,
    });
    // Secret-named values erased from the stored request once it became final (absent: none).
    if r.sealed_secrets > 0 {
        v["sealedSecrets"] = r.sealed_secrets.into();
    }
    // A failed or outcome_unknown review whose deadline passed: closed and sealed.
    if r.retry_closed {
        v["retryClosed"] = true.into();
    }
    if let Some(m) = &r.restored {
        v["restored"] = serde_json::json!({"at": rfc3339(m.at_ms), "warning": m.warning});
    }
    if full {
        // `headers` is what executes; `redactedHeaders` names what the agent sent and Airlock
        // withheld (never stored, never sent).
        v["request"] = serde_json::json!({
            "method": r.request.method,
            "url": url,
            "headers": shown_headers(&r.request.headers),
            "redactedHeaders": r.redacted_headers,
            "bodyBase64": r.request.body_b64,
        });
        // The body as text too, whole, when it is UTF-8: what a reviewer reads in the CLI.
        if let Some(text) = r
            .request
            .body()
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|t| !t.is_empty())
        {
            v["request"]["body"] = serde_json::Value::String(text);
        }
    }
    // Echoes of secret-named query values are masked in the agent's text and the upstream's,
    // never in Airlock's own fields (`state`, `tool`, ids, times: a value `outcome_unknown`
    // must not turn the state into a marker), and said to be there.
    let echoes = QueryEchoes::of(&r.request.path_and_query);
    let echoed = echoed_fields(r, &echoes);
    v["maskedEcho"] = (!echoed.is_empty()).into();
    v["maskedEchoFields"] = echoed
        .iter()
        .map(|n| echoes.shown_name(n))
        .collect::<Vec<_>>()
        .into();
    if !echoes.is_empty() {
        for key in [
            "explanation",
            "params",
            "url",
            "request",
            "result",
            "earlierAttempts",
        ] {
            if let Some(x) = v.get_mut(key) {
                mask_strings(x, &echoes);
            }
        }
        for key in ["approvals", "retries", "decision"] {
            let comments: Vec<&mut serde_json::Value> = match v.get_mut(key) {
                Some(serde_json::Value::Array(a)) => a.iter_mut().collect(),
                Some(d @ serde_json::Value::Object(_)) => vec![d],
                _ => Vec::new(),
            };
            for c in comments.into_iter().filter_map(|d| d.get_mut("comment")) {
                mask_strings(c, &echoes);
            }
        }
    }
    v
}

/// The secret-named query parameters of `r` whose values show in the request outside their own
/// field (the URL with that field masked, a header, a withheld header's name, the body, the
/// rule's explanation or parameters): there they are masked, so whoever reads the request must
/// be told (the agent chose the value; what it hides may be what matters).
pub fn echoed_fields(r: &Review, echoes: &QueryEchoes) -> Vec<String> {
    if echoes.is_empty() {
        return Vec::new();
    }
    let url = shown_url(r);
    let headers = r
        .request
        .headers
        .iter()
        .filter(|(k, _)| !redact::is_credential_header(k))
        .map(|(k, v)| format!("{k}: {v}"));
    let body = r.request.body().unwrap_or_default();
    let body = String::from_utf8_lossy(&body);
    let params = r
        .params
        .iter()
        .map(|(k, v)| format!("{k}={}", redact::shown_param(k, v)));
    let texts: Vec<String> = [url, r.explanation.clone(), body.into_owned()]
        .into_iter()
        .chain(headers)
        .chain(r.redacted_headers.iter().cloned())
        .chain(params)
        .collect();
    echoes.found_in(texts.iter().map(String::as_str))
}

/// What an agent sees of its own review on `airlock.local`: the ids and timestamps it needs to
/// poll, the state, the outcome, and the result of its own request (status, and the upstream's
/// answer, which wait mode returns anyway). No approver names, comments, decisions, policy or
/// stored request.
pub fn agent_review_json(r: &Review) -> serde_json::Value {
    let result = r.execution.as_ref().map(|e| {
        let mut v = serde_json::json!({
            "status": e.status,
            "bodyTruncated": e.body_truncated,
            "bodyWithheld": e.withheld,
            "secretsMasked": e.secrets_masked,
            "error": agent_error(e, r.state),
        });
        set_body(&mut v, e);
        v
    });
    serde_json::json!({
        "reviewId": r.id,
        "decisionId": r.decision_id,
        "state": r.state.as_str(),
        "outcome": outcome_of(r.state),
        "createdAt": rfc3339(r.created_at_ms),
        "updatedAt": rfc3339(r.updated_at_ms),
        "expiresAt": rfc3339(r.expires_at_ms),
        "result": result,
    })
}

/// What the agent sees of an attempt's error for the agent. Airlock's own refusals to send
/// (`not sent: …`: an approval or retry the audit log does not show, named by its reviewer; an
/// audit or store error with its detail) are the reviewers' to read (the admin API and the
/// dashboard show them whole): the agent learns only that this attempt was not sent, and, on a
/// review whose outcome is unknown (an earlier attempt may have reached the upstream), that
/// too. The upstream's failures (a connection refused, an answer cut short) are its own
/// call's, and pass.
fn agent_error(e: &Execution, state: ReviewState) -> Option<&str> {
    let error = e.error.as_deref()?;
    Some(match error.starts_with("not sent:") {
        true if state == ReviewState::OutcomeUnknown => AGENT_NOT_SENT_EARLIER_MAYBE,
        true => AGENT_NOT_SENT,
        false => error,
    })
}

/// [`agent_error`] for Airlock's own refusals to send.
pub const AGENT_NOT_SENT: &str =
    "not sent: Airlock did not send this attempt; the reviewers can see why";
/// [`agent_error`] for Airlock's own refusal to send a retry after an attempt that may have
/// reached the upstream: the call's outcome is still unknown.
pub const AGENT_NOT_SENT_EARLIER_MAYBE: &str =
    "not sent: Airlock did not send this attempt, but an earlier attempt may have reached the upstream, so the call's outcome is unknown; the reviewers can see why";

/// On a wait-mode answer that is the upstream's own: its body was cut at
/// `gate.max_result_bytes` when it was stored, so what the agent gets is not the whole answer.
pub const BODY_TRUNCATED_HEADER: &str = "airlock-body-truncated";

/// On an executed call's answer: how many secret-named values of its body were masked.
pub const SECRETS_MASKED_HEADER: &str = "airlock-secrets-masked";

/// The `Airlock-Outcome` word for a review state: `ESCALATE` while it is still held.
fn outcome_of(state: ReviewState) -> &'static str {
    match state {
        ReviewState::Pending | ReviewState::Approved | ReviewState::Executing => "ESCALATE",
        ReviewState::Executed => "EXECUTED",
        ReviewState::Rejected => "REJECTED",
        ReviewState::Expired => "EXPIRED",
        ReviewState::Failed => "FAILED",
        ReviewState::OutcomeUnknown => "OUTCOME_UNKNOWN",
    }
}

/// The stored request's URL with secret-named query values masked.
fn shown_url(r: &Review) -> String {
    let mut shown = r.request.clone();
    shown.path_and_query = redact::mask_query(&r.request.path_and_query);
    shown.url()
}

/// Headers as shown: credential-like ones keep their name and lose their value.
fn shown_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            if redact::is_credential_header(k) {
                (k.clone(), REDACTED.to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

/// Masks every echo in the strings of `v`, but for a body given as base64 (masking would
/// corrupt it, and it spells no value) and the method.
fn mask_strings(v: &mut serde_json::Value, echoes: &QueryEchoes) {
    match v {
        serde_json::Value::String(s) => *s = echoes.mask(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| mask_strings(x, echoes)),
        serde_json::Value::Object(m) => m
            .iter_mut()
            .filter(|(k, _)| !matches!(k.as_str(), "bodyBase64" | "method"))
            .for_each(|(_, x)| mask_strings(x, echoes)),
        _ => {}
    }
}

fn set_body(v: &mut serde_json::Value, e: &Execution) {
    let body = base64::engine::general_purpose::STANDARD
        .decode(&e.body_b64)
        .unwrap_or_default();
    match String::from_utf8(body) {
        Ok(text) => v["body"] = serde_json::Value::String(text),
        Err(_) => v["bodyBase64"] = serde_json::Value::String(e.body_b64.clone()),
    }
}

fn execution_json(e: &Execution) -> serde_json::Value {
    let mut v = serde_json::json!({
        "status": e.status,
        "headers": shown_headers(&e.headers),
        "bodyTruncated": e.body_truncated,
        "bodyWithheld": e.withheld,
        // Secret-named values of the body (a minted token) masked before it was stored.
        "secretsMasked": e.secrets_masked,
        "error": e.error,
        // Certainly not sent; false: this attempt may have reached the upstream.
        "unsent": e.unsent,
        "startedAt": rfc3339(e.started_at_ms),
        "finishedAt": e.finished_at_ms.map(rfc3339),
    });
    set_body(&mut v, e);
    v
}

/// How long a status read waits for one of its agent's turns before a 429.
const STATUS_READ_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Serves `airlock.local` for `agent`, which sees only its own reviews (anonymous callers,
/// allowed only in development, see those of anonymous callers): not those an earlier agent
/// of its name, removed since, left.
pub async fn serve_local(
    gate: &Arc<Gate>,
    agent: &crate::agents::Agent,
    method: Method,
    uri: http::Uri,
) -> Response<Body> {
    let max_wait = gate.config().max_wait;
    let path = uri.path();
    let Some(id) = path.strip_prefix("/v1/reviews/") else {
        return Refusal::client(
            StatusCode::NOT_FOUND,
            "not_found",
            "known endpoints: GET / (how to trust Airlock's CA), GET /ca.pem, GET /v1/reviews/{id}?wait=SECONDS",
        )
        .into_response();
    };
    if method != Method::GET {
        return Refusal::client(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET",
        )
        .into_response();
    }
    let wait = uri
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "wait"))
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(max_wait));
    // Each read decodes a whole review on the blocking pool reviewers' work shares: one
    // agent's reads at once are bounded, the rest wait their turn, for a while (a store that
    // hangs must not park the agent's later reads for good).
    let Ok(turn) =
        tokio::time::timeout(STATUS_READ_QUEUE_WAIT, gate.status_read_turn(&agent.name)).await
    else {
        return Refusal::retry_later(
            "too_many_status_reads",
            format!(
                "this agent's {} status reads at once are all still running; try again",
                super::MAX_STATUS_READS_PER_AGENT
            ),
            "1",
        );
    };
    let first = match gate.get_in_turn(id, turn).await {
        // Another agent's review reads as an unknown id: an earlier agent of the same name,
        // removed since, is another agent ([`crate::agents::Agent::sent`]).
        Ok(r) if agent.sent(r.agent.as_deref(), r.created_at_ms, r.agent_added_ms) => r,
        Ok(_) => return agent_error_response(&super::GateError::NotFound(id.to_string())),
        Err(e) => return agent_error_response(&e),
    };
    let result = match wait {
        Some(w) if !w.is_zero() => {
            let Some(_slot) = gate.wait_slot(&agent.name) else {
                return Refusal::retry_later(
                    "too_many_waits",
                    format!(
                        "this agent already waits on {} reviews; wait on fewer at once, or poll \
                         without ?wait",
                        super::MAX_WAITS_PER_AGENT
                    ),
                    "1",
                );
            };
            gate.wait_final(id, w).await
        }
        _ => Ok(first),
    };
    match result {
        Ok(r) => json_response(StatusCode::OK, &agent_review_json(&r)),
        Err(e) => agent_error_response(&e),
    }
}

/// Maps gate errors to clear HTTP answers, for reviewers (the admin API): the detail says
/// what failed. Agents get [`agent_error_response`].
pub fn gate_error_response(e: &GateError) -> Response<Body> {
    let (status, code) = status_of(e);
    let side = if status.is_server_error() {
        crate::wire::Side::Internal
    } else {
        crate::wire::Side::Client
    };
    Refusal::new(status, side, code, e.to_string()).into_response()
}

/// A gate error as an agent reads it on `airlock.local`: the status and code only, with a
/// generic message (an unknown id is its own). The detail (a store's paths and errors, a
/// reviewer's name) is logged for the operator, never sent to the agent.
pub fn agent_error_response(e: &GateError) -> Response<Body> {
    let (status, code) = status_of(e);
    if let GateError::NotFound(_) = e {
        return Refusal::client(status, code, e.to_string()).into_response();
    }
    tracing::warn!(target: "airlock::gate", error = %e, "an agent's review lookup failed");
    let (side, message) = if status.is_server_error() {
        (
            crate::wire::Side::Internal,
            "Airlock could not read the review just now; try again later",
        )
    } else {
        (
            crate::wire::Side::Client,
            "the review cannot be read this way",
        )
    };
    Refusal::new(status, side, code, message).into_response()
}

/// The HTTP status and error code of a gate error.
fn status_of(e: &GateError) -> (StatusCode, &'static str) {
    match e {
        GateError::NotFound(_) => (StatusCode::NOT_FOUND, "unknown_review"),
        GateError::AlreadyDecided { .. } => (StatusCode::CONFLICT, "already_decided"),
        GateError::Expired { .. } => (StatusCode::CONFLICT, "expired"),
        GateError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        GateError::Contention(_) => (StatusCode::CONFLICT, "contention"),
        GateError::Store(_) | GateError::Corrupt { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
        }
        GateError::Audit(_) => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
        GateError::Forbidden(_) => (StatusCode::FORBIDDEN, "not_allowed"),
        GateError::Changed(_) => (StatusCode::CONFLICT, "review_changed"),
        GateError::SendPending(_) => (StatusCode::SERVICE_UNAVAILABLE, "send_pending"),
        GateError::Unrecorded(_) => (StatusCode::SERVICE_UNAVAILABLE, "outcome_not_recorded"),
    }
}

/// In wait mode, the answer once a review is final: the real upstream response if it executed,
/// otherwise a non-2xx JSON naming the outcome. An executed review whose answer's body was
/// withheld (`upstream_encoding`) gets 502 JSON with outcome `EXECUTED` and the reason in
/// `Airlock-Reason` and `reason`: it was sent, but its answer is not passed on.
pub fn final_response(r: &Review) -> Response<Body> {
    final_response_with(r, |_, _| {})
}

/// [`final_response`]; `dress` may add fields to the JSON answer (given its outcome word) when
/// it is not the upstream's.
pub fn final_response_with(
    r: &Review,
    dress: impl FnOnce(&mut serde_json::Value, &'static str),
) -> Response<Body> {
    let withheld = r.execution.as_ref().and_then(|e| e.withheld.as_deref());
    if let (ReviewState::Executed, Some(e), None) = (r.state, &r.execution, withheld) {
        if let Some(status) = e.status.and_then(|s| StatusCode::from_u16(s).ok()) {
            let body = base64::engine::general_purpose::STANDARD
                .decode(&e.body_b64)
                .unwrap_or_default();
            let mut resp = Response::new(full(body));
            *resp.status_mut() = status;
            let h = resp.headers_mut();
            // A credential the upstream set (`Set-Cookie`) was redacted before storing: the
            // agent gets neither it nor its placeholder.
            let kept = e
                .headers
                .iter()
                .filter(|(k, v)| !redact::is_credential_header(k) && v != REDACTED);
            for (k, v) in kept {
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    if k != http::header::CONTENT_LENGTH {
                        h.append(k, v);
                    }
                }
            }
            // The upstream connection's own headers (`Connection` and what it lists,
            // `Keep-Alive`, `Transfer-Encoding`, …) are not the agent's: a replayed
            // `Connection: close` would close its connection. Whoever stored the record.
            crate::wire::strip_hop_by_hop(h);
            h.insert(OUTCOME_HEADER, HeaderValue::from_static("EXECUTED"));
            if let Ok(v) = HeaderValue::from_str(&r.id) {
                h.insert(REVIEW_ID_HEADER, v);
            }
            // The upstream's own Content-Length (dropped above) would name the whole body;
            // the one sent is the kept part's. Say that it is only a part.
            if e.body_truncated {
                h.insert(BODY_TRUNCATED_HEADER, HeaderValue::from_static("true"));
            }
            // Secret-named values the stored answer masked (a minted token): the body is not
            // the upstream's word for word.
            if e.secrets_masked > 0 {
                h.insert(SECRETS_MASKED_HEADER, HeaderValue::from(e.secrets_masked));
            }
            return resp;
        }
    }
    let (status, outcome) = match r.state {
        ReviewState::Executed if withheld.is_some() => (StatusCode::BAD_GATEWAY, "EXECUTED"),
        ReviewState::Rejected => (StatusCode::FORBIDDEN, "REJECTED"),
        ReviewState::Expired => (StatusCode::FORBIDDEN, "EXPIRED"),
        ReviewState::Failed => (StatusCode::BAD_GATEWAY, "FAILED"),
        _ => (StatusCode::BAD_GATEWAY, "OUTCOME_UNKNOWN"),
    };
    let mut body = agent_review_json(r);
    body["outcome"] = serde_json::Value::String(outcome.into());
    if let Some(reason) = withheld {
        body["reason"] = serde_json::Value::String(reason.into());
    }
    dress(&mut body, outcome);
    let mut resp = json_response(status, &body);
    let h = resp.headers_mut();
    h.insert(OUTCOME_HEADER, HeaderValue::from_static(outcome));
    if let Some(v) = withheld.and_then(|w| HeaderValue::from_str(w).ok()) {
        h.insert(crate::wire::REASON_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&r.id) {
        h.insert(REVIEW_ID_HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// Security review: a store error reached the agent verbatim (data paths, the database's
    /// own words), and so did a refusal naming a reviewer. The agent gets the code and a
    /// generic message; an unknown id is its own.
    #[tokio::test]
    async fn agents_read_no_store_detail_and_no_reviewer() {
        let cases: &[(GateError, u16, &[&str])] = &[
            (
                GateError::Store(crate::store::StoreError::Io(
                    "/var/lib/airlock/data/reviews.redb: disk I/O error".into(),
                )),
                503,
                &["/var/lib", "redb", "disk I/O"],
            ),
            (
                GateError::Corrupt {
                    id: "rev_1".into(),
                    message: "EOF at line 1 column 7 in /srv/airlock".into(),
                },
                503,
                &["/srv/airlock", "EOF"],
            ),
            (
                GateError::Audit("/var/lib/airlock/audit: no space".into()),
                503,
                &["/var/lib", "no space"],
            ),
            (
                GateError::Forbidden("alice may not approve".into()),
                403,
                &["alice"],
            ),
        ];
        for (e, status, hidden) in cases {
            let resp = agent_error_response(e);
            assert_eq!(resp.status().as_u16(), *status, "{e}");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let text = String::from_utf8_lossy(&body);
            for h in *hidden {
                assert!(!text.contains(h), "{h:?} in {text}");
            }
            // The admin API, for reviewers, still says what failed.
            let admin = gate_error_response(e).into_body().collect().await;
            let admin = admin.expect("body").to_bytes();
            assert!(String::from_utf8_lossy(&admin).contains(hidden[0]), "{e}");
        }
        let unknown = agent_error_response(&GateError::NotFound("rev_mine".into()));
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let body = unknown
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("rev_mine"));
    }

    /// Security review: an approval the audit log missed failed the review with "not sent:
    /// bob's approval is not in the audit log", which the agent's view returned; README says
    /// the agent's view never names approvers. Reviewers still read it whole.
    #[test]
    fn the_agents_view_of_an_error_names_no_reviewer() {
        let cases: &[(&str, &str)] = &[
            (
                "not sent: bob's approval is not in the audit log",
                AGENT_NOT_SENT,
            ),
            (
                "not sent: the approval could not be written to the audit log (/var/lib/x: full)",
                AGENT_NOT_SENT,
            ),
            (
                "connection refused (os error 111)",
                "connection refused (os error 111)",
            ),
        ];
        for (stored, agent_sees) in cases {
            let mut r = Review::sample("DELETE", "api.github.com", "/repos/o/r", None, b"");
            r.end_unsent(1, stored.to_string());
            let agent = agent_review_json(&r);
            assert_eq!(agent["result"]["error"], *agent_sees, "{agent}");
            let admin = review_json(&r, true);
            assert_eq!(admin["result"]["error"], *stored, "{admin}");
        }
    }
}

#[cfg(test)]
mod truth_tests {
    use super::*;

    /// Review (defect 5): an unsent retry of a call whose earlier attempt may have reached
    /// the upstream (`outcome_unknown`) read "did not send this request" to the agent.
    #[test]
    fn an_unsent_retry_after_a_maybe_sent_attempt_does_not_say_not_sent() {
        let mut r = Review::sample("DELETE", "api.github.com", "/repos/o/r", None, b"");
        r.attempts.push(Execution::started(1));
        r.end_unsent(2, "not sent: bob's retry is not in the audit log".into());
        assert_eq!(r.state, ReviewState::OutcomeUnknown);
        let agent = agent_review_json(&r);
        let error = agent["result"]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("this attempt")
                && error.contains("earlier attempt may have reached the upstream"),
            "{agent}"
        );
        assert!(!error.contains("bob"), "{agent}");
    }

    /// Review (defect 4): wait mode handed the agent a body cut at `gate.max_result_bytes` as
    /// if it were the whole answer. It says so in `Airlock-Body-Truncated`, and carries no
    /// Content-Length of the upstream's.
    #[test]
    fn a_cut_body_is_marked_truncated() {
        for truncated in [true, false] {
            let mut r = Review::sample("DELETE", "api.github.com", "/repos/o/r", None, b"");
            r.state = ReviewState::Executed;
            let mut e = Execution::started(1);
            e.status = Some(200);
            e.headers = vec![("content-length".into(), "999999".into())];
            e.body_b64 = super::super::review::b64(b"{\"partial\":");
            e.body_truncated = truncated;
            r.execution = Some(e);
            let resp = final_response(&r);
            assert_eq!(resp.status(), 200);
            let h = resp.headers();
            assert_eq!(
                h.get(BODY_TRUNCATED_HEADER).is_some_and(|v| v == "true"),
                truncated
            );
            assert!(h
                .get(http::header::CONTENT_LENGTH)
                .is_none_or(|v| v != "999999"));
        }
    }
}

#[cfg(test)]
mod echo_tests {
    use super::*;

    /// Security review: a secret-named query value was masked as a plain `[redacted]` in every
    /// string of the review JSON, so `?metadata[token]=acct_1EvilAcct` hid the
    /// `Stripe-Account` header the approval sends, with no flag; `?token=outcome_unknown` even
    /// turned the state into `[redacted]`. Echoes now name their parameter, `maskedEcho` says
    /// they are there, and Airlock's own fields are never masked.
    #[test]
    fn an_echo_is_flagged_and_fixed_fields_are_never_masked() {
        let marker =
            |n: &str| format!("[redacted: same value as secret-named query parameter {n}]");
        /// (query, `Stripe-Account`, body, the fields flagged, the header as shown)
        type Case<'a> = (&'a str, &'a str, &'a [u8], &'a [&'a str], String);
        let cases: &[Case] = &[
            (
                "/v1/payouts?metadata%5Btoken%5D=acct_1EvilAcct",
                "acct_1EvilAcct",
                b"amount=500000&currency=usd",
                &["metadata[token]"],
                marker("metadata[token]"),
            ),
            (
                "/v1/payouts?token=tok_1234567",
                "acct_1EvilAcct",
                b"amount=500000&currency=usd&description=tok_1234567",
                &["token"],
                "acct_1EvilAcct".into(),
            ),
            (
                "/v1/payouts?x=acct_1EvilAcct&token=outcome_unknown",
                "acct_1EvilAcct",
                b"amount=500000&currency=usd",
                &[],
                "acct_1EvilAcct".into(),
            ),
        ];
        for (pq, account, body, flagged, header) in cases {
            let mut r = Review::sample(
                "POST",
                "api.stripe.com",
                pq,
                Some("stripe.payouts.create"),
                body,
            );
            r.request
                .headers
                .push(("stripe-account".into(), (*account).into()));
            r.state = ReviewState::OutcomeUnknown;
            r.agent = Some("outcome_unknown".into());
            let v = review_json(&r, true);
            assert_eq!(v["maskedEcho"], !flagged.is_empty(), "{pq}: {v}");
            assert_eq!(v["maskedEchoFields"], serde_json::json!(flagged), "{pq}");
            assert_eq!(v["request"]["headers"][0][1], header.as_str(), "{pq}");
            for (k, want) in [
                ("state", "outcome_unknown"),
                ("agent", "outcome_unknown"),
                ("tool", "stripe.payouts.create"),
                ("method", "POST"),
                ("reviewId", "r1"),
            ] {
                assert_eq!(v[k], want, "{pq}: {k}");
            }
            assert!(!v["url"].to_string().contains("outcome_unknown\""), "{pq}");
        }
    }
}
