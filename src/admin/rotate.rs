//! `POST /v1/admin-token/rotate`: the operator (the admin token, over TCP or the admin socket)
//! has a new admin token made ([`super::operator::OperatorToken::rotate`]). The old one stops
//! working at once on this instance; the answer names the token file, never the token. The
//! rotation is recorded in the audit log (a `policy` entry, `change: admin_token`, with who
//! asked and over which channel). Refused (409 `token_from_env`) while `AIRLOCK_ADMIN_TOKEN` is
//! in force.

use http::{Response, StatusCode};

use super::operator::{RotateError, SHARED_RECHECK};
use super::{err, Admin, Caller, Peer};
use crate::audit::{Event, PolicyChange, PolicyResult, PolicySubject};
use crate::wire::{json_response, Body};

pub(super) async fn rotate(admin: &Admin, caller: &Caller, peer: Peer) -> Response<Body> {
    if !matches!(caller, Caller::Operator) {
        return err(
            StatusCode::FORBIDDEN,
            "forbidden",
            "rotating the admin token needs the admin token",
        );
    }
    let operator = admin.operator.clone();
    let changed = match tokio::task::spawn_blocking(move || operator.rotate()).await {
        Ok(Ok(changed)) => changed,
        Ok(Err(e @ RotateError::FromEnv)) => {
            return err(StatusCode::CONFLICT, "token_from_env", &e.to_string())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "admin token rotation failed; the old token stays in force");
            return err(
                StatusCode::SERVICE_UNAVAILABLE,
                "rotation_failed",
                &format!("the admin token was not rotated (the old one still works): {e}"),
            );
        }
        Err(e) => {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rotation_failed",
                &e.to_string(),
            )
        }
    };
    let by = match peer {
        Peer::Socket => "admin token, over the admin socket".to_string(),
        Peer::Tcp(addr) => format!("admin token, from {addr}"),
    };
    tracing::info!(target: "airlock::admin", by = %by, "admin token rotated; the old one no longer works here");
    let recorded = record(admin, by).await;
    json_response(StatusCode::OK, &answer(admin, changed.file_error, recorded))
}

/// Appends the rotation's `policy` entry and waits for it; the error, if any, for the answer.
async fn record(admin: &Admin, by: String) -> Option<String> {
    let mut change = PolicyChange::new(
        PolicySubject::AdminToken,
        PolicyResult::Applied,
        "admin API",
        admin.gate.instance(),
    );
    change.by = Some(by);
    crate::metrics::policy_change(change.change.as_str(), change.result.as_str());
    let audit = admin.gate.audit().clone();
    let event = Event::Policy(Box::new(change));
    let failed = match tokio::task::spawn_blocking(move || audit.append(event)).await {
        Ok(Ok(_)) => return None,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(error = %failed, "an admin token rotation (it took effect) could not be written to the audit log");
    Some(failed)
}

/// What the answer says: where the new token is (never the token), and what went wrong after
/// the rotation took effect.
fn answer(
    admin: &Admin,
    file_error: Option<super::AdminError>,
    audit_error: Option<String>,
) -> serde_json::Value {
    let file = admin.operator.file().display().to_string();
    let mut message = match &file_error {
        None => format!("the admin token was rotated: the new one is in {file}; the old one no longer works here"),
        Some(e) => format!("the admin token was rotated in the shared database, but this host's token file could not be written ({e}): read the token from another instance's file"),
    };
    if admin.operator.is_shared() {
        message.push_str(&format!(
            "; other instances on the database take the new one within {}",
            humantime::format_duration(SHARED_RECHECK)
        ));
    }
    let mut v = serde_json::json!({
        "rotated": true,
        "tokenFile": file,
        "tokenFileWritten": file_error.is_none(),
        "message": message,
    });
    if let Some(e) = audit_error {
        v["auditError"] = e.into();
    }
    v
}
