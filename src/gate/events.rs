//! The gate's audit events: one per review transition, one per held request.

use super::review::{self, Review, ReviewState};
use crate::audit::{self, AuditPath, Event, ExecutionEnd, GateKind, Outcome, Transition};

/// The audit event of one review transition: names and states only, nothing secret.
pub(super) fn transition_event(old: &Review, next: &Review) -> Event {
    let mut t = Transition {
        review_id: next.id.clone(),
        decision_id: next.decision_id.clone(),
        from: old.state.as_str(),
        to: next.state.as_str(),
        gate: GateKind::Hard,
        tool: next.tool.clone(),
        service: next.service.clone(),
        agent: next.agent.clone(),
        method: next.request.method.clone(),
        host: next.request.host.clone(),
        path: AuditPath::new(&next.request.path_and_query),
        approval_by: None,
        approvals: None,
        required: None,
        expires_at: None,
        retry_by: None,
        attempt: None,
        by: None,
        comment: None,
        approved_by: None,
        admin_token: None,
        execution: None,
    };
    if next.approvals.len() > old.approvals.len() {
        if let Some(d) = next.approvals.last() {
            t.admin_token = d.admin_token.then_some(true);
            t.approval_by = Some(d.by.clone());
            t.approvals = Some(next.approvals.len());
            t.required = Some(next.policy.most_required());
        }
    }
    if next.expires_at_ms != old.expires_at_ms {
        t.expires_at = Some(review::rfc3339(next.expires_at_ms));
    }
    if next.retries.len() > old.retries.len() {
        if let Some(d) = next.retries.last() {
            t.admin_token = d.admin_token.then_some(true);
            t.retry_by = Some(d.by.clone());
            t.comment = d.comment.clone();
            t.attempt = Some(next.attempts.len() + 1);
        }
    } else if next.retry_approvals.len() > old.retry_approvals.len() {
        // A retry approval below the quorum: recorded, nothing sent.
        if let Some(d) = next.retry_approvals.last() {
            t.admin_token = d.admin_token.then_some(true);
            t.retry_by = Some(d.by.clone());
            t.comment = d.comment.clone();
            t.approvals = Some(next.retry_approvals.len());
            t.required = Some(next.policy.most_required());
        }
    }
    if next.state == ReviewState::Expired || (next.retry_closed && !old.retry_closed) {
        t.by = Some("expiry".into());
    } else if let (Some(d), ReviewState::Approved | ReviewState::Rejected) =
        (&next.decision, next.state)
    {
        t.by = Some(d.by.clone());
        t.comment = d.comment.clone();
        if d.admin_token {
            t.admin_token = Some(true);
        }
    }
    if let Some(x) = &next.execution {
        if next.state == ReviewState::Executing {
            // The approval this execution rests on, repeated so one row says who said yes.
            t.approved_by = next.decision.as_ref().map(|d| d.by.clone());
        } else {
            t.execution = Some(ExecutionEnd {
                upstream_status: x.status,
                duration_ms: x.finished_at_ms.map(|f| f.saturating_sub(x.started_at_ms)),
                error: x.error.clone(),
            });
        }
    }
    t.comment = t.comment.map(|c| super::seal::masked_comment(next, &c));
    Event::Review(Box::new(t))
}

/// The `decision` event of a held request.
pub(super) fn escalation_event(r: &Review) -> Event {
    Event::Decision(Box::new(escalation(r)))
}

/// The `decision` event of a request that joined `held`, the review of an identical one:
/// the request's own decision (its id, the rules' verdict), naming the review it joined.
pub(super) fn joined_event(request: &Review, held: &Review) -> Event {
    let mut d = escalation(request);
    d.review_id = Some(held.id.clone());
    d.expires_at = Some(review::rfc3339(held.expires_at_ms));
    d.joined = true;
    Event::Decision(Box::new(d))
}

fn escalation(r: &Review) -> audit::Decision {
    audit::Decision {
        decision_id: r.decision_id.clone(),
        review_id: Some(r.id.clone()),
        outcome: Outcome::Escalate,
        gate: GateKind::Hard,
        agent: r.agent.clone(),
        service: r.service.clone(),
        tool: r.tool.clone(),
        rule_id: r.rule_id.clone(),
        reason_codes: r.reason_codes.clone(),
        method: r.request.method.clone(),
        host: r.request.host.clone(),
        path: AuditPath::new(&r.request.path_and_query),
        expires_at: Some(review::rfc3339(r.expires_at_ms)),
        joined: false,
    }
}
