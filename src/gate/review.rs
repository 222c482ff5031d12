//! The review record: one held request, its state, the human decision and the execution result.
//! Stored as JSON (the record codec) under its id in the `reviews` tree.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::people::{self, People};
use super::Reviewer;
pub use crate::rules::ApprovalPolicy;
use crate::rules::{Class, Verdict};

/// Lifecycle:
/// `pending -> approved -> executing -> executed | failed`,
/// `pending -> rejected | expired`, and `executing -> outcome_unknown` after a crash or an
/// ambiguous upstream failure (never re-executed automatically).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Pending,
    Approved,
    Executing,
    Executed,
    Failed,
    Rejected,
    Expired,
    OutcomeUnknown,
}

impl ReviewState {
    pub const ALL: [ReviewState; 8] = [
        Self::Pending,
        Self::Approved,
        Self::Executing,
        Self::Executed,
        Self::Failed,
        Self::Rejected,
        Self::Expired,
        Self::OutcomeUnknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Executing => "executing",
            Self::Executed => "executed",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::OutcomeUnknown => "outcome_unknown",
        }
    }

    /// Nothing further happens on its own (a human may still retry `failed` and
    /// `outcome_unknown`).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Executed | Self::Failed | Self::Rejected | Self::Expired | Self::OutcomeUnknown
        )
    }

    /// The only transitions the gate ever makes.
    pub fn can_become(self, next: ReviewState) -> bool {
        use ReviewState::*;
        matches!(
            (self, next),
            (Pending, Pending)
                | (Pending, Approved)
                | (Pending, Rejected)
                | (Pending, Expired)
                | (Approved, Executing)
                | (Approved, Failed)
                // A retry stopped before sending, after an earlier attempt that may have
                // reached the upstream: the call's outcome is still unknown.
                | (Approved, OutcomeUnknown)
                | (Executing, Executed)
                | (Executing, Failed)
                | (Executing, OutcomeUnknown)
                // A human retry of a send that failed or whose outcome is unknown: recorded
                // below the quorum, sent once the quorum is reached.
                | (Failed, Failed)
                | (OutcomeUnknown, OutcomeUnknown)
                | (Failed, Approved)
                | (OutcomeUnknown, Approved)
        )
    }
}

impl std::str::FromStr for ReviewState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown review state {s:?}"))
    }
}

/// The request as it will be replayed on approval. Credential-like headers are never part of it
/// (`hold.rs` drops them); the query string is kept as sent, because it is what executes, and
/// its secret-named values are masked wherever it is shown (`credentials::redact`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRequest {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    /// Base64 (standard) of the body.
    pub body_b64: String,
}

impl StoredRequest {
    pub fn body(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.body_b64)
    }

    pub fn url(&self) -> String {
        let default = if self.scheme == "https" { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            format!("{}://{}{}", self.scheme, host, self.path_and_query)
        } else {
            format!(
                "{}://{}:{}{}",
                self.scheme, host, self.port, self.path_and_query
            )
        }
    }
}

/// A reviewer's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub by: String,
    pub at_ms: u64,
    pub comment: Option<String>,
    /// Given with the operator's admin token (one approver whatever `by` says).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin_token: bool,
}

impl Decision {
    /// Who decided, as the quorum rules see it now.
    fn decider(&self) -> super::Reviewer {
        if self.admin_token || self.by == "admin" {
            super::Reviewer::admin_token(&self.by)
        } else {
            super::Reviewer::named(&self.by)
        }
    }
}

/// What happened when the approved request was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body_b64: String,
    pub body_truncated: bool,
    pub error: Option<String>,
    /// The instance that claimed it (`host/pid`), when it was claimed by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Until when the claim holds (ms): past it, with no outcome recorded, the claiming
    /// instance is taken to have died mid-send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until_ms: Option<u64>,
    /// Why the answer's body was not kept, when it was not (`upstream_encoding`: compressed, so
    /// it could not be checked for the credential). The request was sent and answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
    /// Certainly not sent: no byte of this attempt left (refused before a connection was up,
    /// or stopped before sending). An attempt without it may have reached the upstream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsent: bool,
    /// How many secret-named values of the answer's body were masked before storing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub secrets_masked: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Execution {
    /// An execution that began at `at_ms` and has no answer yet.
    pub fn started(at_ms: u64) -> Execution {
        Execution {
            started_at_ms: at_ms,
            finished_at_ms: None,
            status: None,
            headers: Vec::new(),
            body_b64: String::new(),
            body_truncated: false,
            error: None,
            instance: None,
            lease_until_ms: None,
            withheld: None,
            unsent: false,
            secrets_masked: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    pub id: String,
    pub decision_id: String,
    pub state: ReviewState,
    /// Bumped on every transition.
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub expires_at_ms: u64,
    pub service: Option<String>,
    pub tool: Option<String>,
    /// The tools of the other rules that held the request at the same level
    /// ([`crate::rules::Verdict::also_tools`]): shown beside `tool`, which the agent may have
    /// chosen by ordering its request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_tools: Vec<String>,
    pub rule_id: Option<String>,
    pub class: Option<Class>,
    pub reason_codes: Vec<String>,
    pub explanation: String,
    pub params: BTreeMap<String, String>,
    pub agent: Option<String>,
    /// The person responsible for the agent (self-approval checks).
    #[serde(default)]
    pub agent_owner: Option<String>,
    /// The quorum and approver list this review needs.
    #[serde(default)]
    pub policy: ApprovalPolicy,
    /// Approvals so far (distinct reviewers); the review executes when they reach the quorum.
    #[serde(default)]
    pub approvals: Vec<Decision>,
    pub request: StoredRequest,
    /// Names of the credential-like headers the agent sent that were dropped before the request
    /// was stored (see `hold.rs`): shown as redacted, never stored, never sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted_headers: Vec<String>,
    pub decision: Option<Decision>,
    pub execution: Option<Execution>,
    /// Earlier sends of this review that failed or had an unknown outcome, oldest first; each
    /// human retry moves the last execution here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Execution>,
    /// Who asked for a retry that was sent, in order (the approvals of each retry that reached
    /// the quorum).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<Decision>,
    /// Approvals of the next retry so far: a retry needs the review's quorum afresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_approvals: Vec<Decision>,
    /// How many secret-named values of the stored request were erased when the review was
    /// executed, rejected or expired (`seal.rs`); the request kept is no longer what was sent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sealed_secrets: usize,
    /// A `failed` or `outcome_unknown` review whose deadline passed: no retry may send it any
    /// more, so it was sealed as a final review is (`seal.rs`), by the sweep.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_closed: bool,
    /// The `added` time of the agent entry that sent it (`crate::agents::same_entry`): which of
    /// the agents of its name it belongs to. `None`: held before, or by an entry without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_added_ms: Option<u64>,
    /// What the agent's identical retries share (`joins.rs`): they join this review while it
    /// may still be sent. `None` on reviews held before, or without an entry of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<super::joins::Join>,
    /// Set by `airlock audit accept-restore` on every review of a restored store that a human
    /// may still send (`super::restore`): the copy may predate its decision and send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<Restored>,
}

/// A review found in a store restored from a copy: when the restore was accepted, and the
/// warning every view of the review shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    pub at_ms: u64,
    pub warning: String,
}

impl Restored {
    /// The mark of a restore accepted at `at_ms`; `copy_ends_at`: when the copy's audit log's
    /// last entry was written (RFC 3339), if it holds one.
    pub fn new(at_ms: u64, copy_ends_at: Option<&str>) -> Restored {
        let ends = copy_ends_at
            .map(|t| format!(" (its audit log ends at {t})"))
            .unwrap_or_default();
        Restored {
            at_ms,
            warning: format!(
                "restored from a backup taken before {}{ends}: this request may already have \
                 been decided and sent; check upstream before approving",
                rfc3339(at_ms)
            ),
        }
    }
}

/// How long Stripe keeps an idempotency key (it may remove it after 24 hours).
const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// How long an approval stays good for sending: a send that did not start within an hour of
/// the approval (its claim failed, and the sweeper or a restart found it later) is not made.
pub const APPROVAL_FRESH_MS: u64 = 3600 * 1000;
/// An approval given in a review's last minute may still be sent for a minute past the
/// deadline (its claim may land a moment after it, or need a sweep to try again).
pub const APPROVAL_DEADLINE_GRACE_MS: u64 = 60 * 1000;

impl Review {
    /// How many sends were attempted: the earlier ones and the last.
    pub fn attempt_count(&self) -> usize {
        self.attempts.len() + usize::from(self.execution.is_some())
    }

    /// Whether the stored request goes to Stripe.
    pub fn is_stripe(&self) -> bool {
        self.service.as_deref() == Some("stripe") || self.request.host == "api.stripe.com"
    }

    /// Whether the stored request is one whose `Idempotency-Key` the service honours (Stripe,
    /// on POST only: a duplicate gets the first result), and carries one. Stripe ignores the
    /// key on GET and DELETE, and GitHub ignores the header: there a key protects nothing.
    pub fn idempotency_honoured(&self) -> bool {
        self.is_stripe()
            && self.request.method.eq_ignore_ascii_case("POST")
            && self
                .request
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
    }

    /// Why an `approved` review's send may no longer start at `now_ms`, if so. It became
    /// `approved` at `updated_at_ms` (the approval, or a retry's quorum: nothing else changes an
    /// approved review before its claim). A send starts only before the review's deadline (an
    /// approval given in its last minute keeps a minute, [`APPROVAL_DEADLINE_GRACE_MS`]) and
    /// within [`APPROVAL_FRESH_MS`] of the approval.
    pub fn approval_stale(&self, now_ms: u64) -> Option<String> {
        let approved = self.updated_at_ms;
        let send_by = self
            .expires_at_ms
            .max(approved.saturating_add(APPROVAL_DEADLINE_GRACE_MS))
            .min(approved.saturating_add(APPROVAL_FRESH_MS));
        (now_ms >= send_by).then(|| {
            format!(
                "the approval went stale: it was given at {} and its send had not started by {} (an approval is sent only before the review's deadline, {}, and within an hour of being given); a retry before the deadline sends it",
                rfc3339(approved),
                rfc3339(send_by),
                rfc3339(self.expires_at_ms)
            )
        })
    }

    /// When the first attempt that may have reached the upstream began, if any did: an
    /// attempt not known to be unsent (recorded before attempts said so, too).
    pub fn first_maybe_sent_ms(&self) -> Option<u64> {
        self.attempts
            .iter()
            .chain(self.execution.as_ref())
            .filter(|e| !e.unsent)
            .map(|e| e.started_at_ms)
            .min()
    }

    /// Whether a retry that may reach the upstream as late as `send_by_ms` may be sent (callers
    /// pass now plus `gate.execution_lease`: a claim's send can end that late). A call that
    /// may have been sent is safe to send again only while the upstream still knows its
    /// `Idempotency-Key` (Stripe answers a duplicate with the first result for 24 hours). Past
    /// that, counted from the first attempt that may have reached it, a retry could act twice:
    /// refused, with what to do. Checked when a retry is asked for and again when it is
    /// claimed for sending.
    pub fn retry_window(&self, send_by_ms: u64) -> Result<(), String> {
        // A key the service ignores (GitHub) protects nothing at any age: such a retry is
        // the reviewers' call, as for a call without a key (the dashboard says so).
        let keyed = self.idempotency_honoured();
        match self.first_maybe_sent_ms() {
            Some(first) if keyed && send_by_ms.saturating_sub(first) >= IDEMPOTENCY_WINDOW_MS => {
                Err(format!(
                    "review {} was first sent at {}, and a retry could reach the upstream more than 24 hours after that: the upstream may have forgotten its Idempotency-Key, so a retry could act twice; check the upstream for its outcome and, if it did not happen, make the call anew",
                    self.id,
                    rfc3339(first)
                ))
            }
            _ => Ok(()),
        }
    }

    /// Ends this review's current attempt as certainly not sent, at `at_ms`, with `error`. The
    /// review is `failed` unless an earlier attempt may have reached the upstream: then the
    /// call's outcome is still unknown, and the error says so.
    pub fn end_unsent(&mut self, at_ms: u64, error: String) {
        let exec = self
            .execution
            .get_or_insert_with(|| Execution::started(at_ms));
        exec.finished_at_ms = Some(at_ms);
        exec.unsent = true;
        exec.error = Some(error);
        if self.first_maybe_sent_ms().is_none() {
            self.state = ReviewState::Failed;
            return;
        }
        self.state = ReviewState::OutcomeUnknown;
        if let Some(e) = self.execution.as_mut().and_then(|e| e.error.as_mut()) {
            e.push_str(
                "; an earlier attempt may have reached the upstream, so the call's outcome is unknown",
            );
        }
    }

    /// Every tool the review was held under, as shown (`a + b`): [`crate::rules::tool_names`].
    pub fn tools_shown(&self) -> Option<String> {
        crate::rules::tool_names(self.tool.as_deref(), &self.also_tools)
    }

    /// What a notification may say about this review: no headers, body, query or parameters.
    pub fn escalation(&self) -> crate::notify::Escalation {
        let pq = &self.request.path_and_query;
        // Bytes a reader cannot see as themselves (controls, bidi overrides, any non-ASCII)
        // percent-encoded: the same request target, in every channel's format alike.
        let path = pq
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .bytes()
            .map(|b| {
                if b.is_ascii_graphic() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        crate::notify::Escalation {
            review_id: self.id.clone(),
            tool: self.tool.clone(),
            also_tools: self.also_tools.clone(),
            service: self.service.clone(),
            agent: self.agent.clone(),
            method: self.request.method.clone(),
            host: self.request.host.clone(),
            path,
            reason_codes: self.reason_codes.clone(),
            expires_at: rfc3339(self.expires_at_ms),
            expires_at_ms: self.expires_at_ms,
            agent_owner: self.agent_owner.clone(),
            approval: self.policy.clone(),
        }
    }

    pub fn new(
        id: String,
        decision_id: String,
        verdict: &Verdict,
        request: StoredRequest,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Review {
        Review {
            id,
            decision_id,
            state: ReviewState::Pending,
            version: 0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            expires_at_ms,
            service: verdict.service.clone(),
            tool: verdict.tool.clone(),
            also_tools: verdict.also_tools.clone(),
            rule_id: verdict.rule_id.clone(),
            class: verdict.class,
            reason_codes: verdict.reason_codes.clone(),
            explanation: verdict.explanation.clone(),
            params: verdict.params.clone(),
            agent: None,
            agent_owner: None,
            policy: ApprovalPolicy::default(),
            approvals: Vec::new(),
            request,
            redacted_headers: Vec::new(),
            decision: None,
            execution: None,
            attempts: Vec::new(),
            retries: Vec::new(),
            retry_approvals: Vec::new(),
            sealed_secrets: 0,
            retry_closed: false,
            agent_added_ms: None,
            join: None,
            restored: None,
        }
    }

    /// May `who` reject this review (the approver list; the admin token always may)?
    pub fn may_reject(&self, who: &Reviewer, people: &People) -> Result<(), String> {
        people.may_reject(&self.policy, &people.effective(who))
    }

    /// May `who` cause this review's request to be sent, by approving it (`verb` = "approve"),
    /// retrying it or extending its deadline? The approver list, the self-approval rule and the
    /// admin token's limits (`people.rs`).
    pub fn may_send(&self, who: &Reviewer, people: &People, verb: &str) -> Result<(), String> {
        people.may_send(
            &self.policy,
            self.agent_owner.as_deref(),
            &people.effective(who),
            verb,
        )
    }

    /// For each approval in `list` (`approvals`, or `retry_approvals`): does it count toward
    /// the quorum with the people in force now, and if not, why. An approval stops counting
    /// when its reviewer is removed or no longer on the approver list, when the admin token may
    /// no longer approve, and when its decider already counted (the admin token is one
    /// approver whatever names it gave).
    pub fn standing(&self, list: &[Decision], people: &People) -> Vec<Result<(), String>> {
        self.standing_reviewers(list, people)
            .into_iter()
            .map(|s| s.map(|_| ()))
            .collect()
    }

    /// Do the approvals in `list` that stand now meet every quorum of the review's policy?
    pub fn quorum_met(&self, list: &[Decision], people: &People) -> bool {
        let standing: Vec<super::Reviewer> = self
            .standing_reviewers(list, people)
            .into_iter()
            .flatten()
            .collect();
        let who: Vec<(&str, &[String])> = standing
            .iter()
            .map(|r| (r.name.as_str(), r.groups.as_slice()))
            .collect();
        self.policy.met_by(&who)
    }

    /// The approvals in `list` that stand toward the quorum: `1/2`; with several quorums (a
    /// request several rules held), toward each: `1/1 (group:sre), 0/1 (dave)`.
    pub fn quorum_progress(&self, list: &[Decision], people: &People) -> String {
        let standing: Vec<super::Reviewer> = self
            .standing_reviewers(list, people)
            .into_iter()
            .flatten()
            .collect();
        let quorums = self.policy.quorums();
        if quorums.len() < 2 {
            return format!("{}/{}", standing.len(), self.policy.most_required());
        }
        quorums
            .iter()
            .map(|q| {
                let n = standing
                    .iter()
                    .filter(|r| q.admits(&r.name, &r.groups))
                    .count();
                let who = match q.approvers.is_empty() {
                    true => "anyone".to_string(),
                    false => q.approvers.join(", "),
                };
                format!("{n}/{} ({who})", q.required.max(1))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// [`Review::standing`], with the reviewer each standing approval is by.
    fn standing_reviewers(
        &self,
        list: &[Decision],
        people: &People,
    ) -> Vec<Result<super::Reviewer, String>> {
        let mut counted: Vec<String> = Vec::new();
        list.iter()
            .map(|d| {
                let who = d.decider();
                let who = if who.admin_token {
                    who
                } else {
                    people
                        .by_name(&d.by)
                        .ok_or_else(|| format!("{} is no longer a reviewer", d.by))?
                };
                self.may_send(&who, people, "approve")?;
                let id = people::identity(&who);
                if counted.contains(&id) {
                    return Err(if who.admin_token {
                        "the admin token already counts once".to_string()
                    } else {
                        format!("{} already counts once", d.by)
                    });
                }
                counted.push(id);
                Ok(who)
            })
            .collect()
    }

    /// How many approvals in `list` count toward the quorum now.
    pub fn counted(&self, list: &[Decision], people: &People) -> usize {
        self.standing(list, people)
            .iter()
            .filter(|s| s.is_ok())
            .count()
    }

    /// Has `who` already approved (in `list`)? Names compare normalized; the admin token is
    /// one decider whatever name it gave.
    pub fn already(&self, list: &[Decision], who: &Reviewer, people: &People) -> bool {
        let id = people::identity(&people.effective(who));
        list.iter().any(|d| people::identity(&d.decider()) == id)
    }

    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Review, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// A pending review of one request, for tests: id `r1`, created and expiring at 0.
    #[cfg(test)]
    pub(crate) fn sample(
        method: &str,
        host: &str,
        pq: &str,
        tool: Option<&str>,
        body: &[u8],
    ) -> Review {
        let verdict = Verdict {
            action: crate::rules::Action::Escalate,
            rule_id: None,
            service: None,
            tool: tool.map(str::to_string),
            class: None,
            reason_codes: Vec::new(),
            explanation: String::new(),
            params: Default::default(),
            expiry: None,
            wait: None,
            approval: None,
            spend_usd: None,
            also_tools: Vec::new(),
        };
        let request = StoredRequest {
            scheme: "https".into(),
            host: host.into(),
            port: 443,
            method: method.into(),
            path_and_query: pq.into(),
            headers: Vec::new(),
            body_b64: b64(body),
        };
        Review::new("r1".into(), "d1".into(), &verdict, request, 0, 0)
    }
}

/// Milliseconds to an RFC 3339 UTC timestamp.
pub fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review of session 16: a bidi override in the path reached JSON webhooks raw (the Slack
    /// and email formats encoded it); every channel now gets the path percent-encoded.
    #[test]
    fn notifications_get_the_path_with_hidden_bytes_encoded() {
        let r = Review::sample(
            "DELETE",
            "api.github.com",
            "/repos/acme/\u{202E}hctarcs/x y?q=1",
            None,
            b"",
        );
        assert_eq!(r.escalation().path, "/repos/acme/%E2%80%AEhctarcs/x%20y");
    }

    /// Review (defect 1): an approval whose send did not start was sent whenever a claim next
    /// came, days late. It is sent only before the deadline (an approval in the last minute
    /// keeps a minute) and within an hour of being given.
    #[test]
    fn an_approval_goes_stale_at_the_deadline_or_after_an_hour() {
        const H: u64 = 3600 * 1000;
        let mut r = Review::sample("DELETE", "api.github.com", "/repos/o/r", None, b"");
        r.state = ReviewState::Approved;
        // (approved at, deadline, now, stale)
        let cases = [
            (10 * H, 20 * H, 10 * H + 1000, false),
            (10 * H, 20 * H, 11 * H - 1, false),
            (10 * H, 20 * H, 11 * H, true),
            (10 * H, 10 * H + 60_000, 10 * H + 60_000, true),
            (10 * H, 10 * H + 1000, 10 * H + 30_000, false),
            (10 * H, 10 * H + 1000, 10 * H + 60_000, true),
            (10 * H, 30 * H, 40 * H, true),
        ];
        for (approved, deadline, now, stale) in cases {
            r.updated_at_ms = approved;
            r.expires_at_ms = deadline;
            let why = r.approval_stale(now);
            assert_eq!(why.is_some(), stale, "{approved} {deadline} {now}: {why:?}");
            if let Some(why) = why {
                assert!(why.starts_with("the approval went stale"), "{why}");
            }
        }
    }

    /// Review (defect 6): a retry's key counted as protection whatever the service; GitHub
    /// ignores `Idempotency-Key`. Only Stripe's is honoured, and only on POST.
    #[test]
    fn only_stripe_honours_the_idempotency_key() {
        for (method, host, key, honoured) in [
            ("POST", "api.stripe.com", true, true),
            ("POST", "api.stripe.com", false, false),
            ("DELETE", "api.stripe.com", true, false),
            ("POST", "api.github.com", true, false),
        ] {
            let mut r = Review::sample(method, host, "/x", None, b"");
            if key {
                r.request
                    .headers
                    .push(("Idempotency-Key".into(), "k-1".into()));
            }
            assert_eq!(r.idempotency_honoured(), honoured, "{method} {host} {key}");
        }
    }
}
