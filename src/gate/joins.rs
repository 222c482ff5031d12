//! Identical retries join the review already held. HTTP clients retry on their own: Octokit's
//! retry plugin resends a 423 three times, PyGithub resends a 5xx, stripe-python resends after
//! its timeout with the same `Idempotency-Key`. Each copy used to become a review of its own,
//! and a reviewer could approve a copy of a call that had already run.
//!
//! A held request carries a [`Join`]: its fingerprint (SHA-256 over a canonical encoding of
//! what would be sent: method, scheme, host, port, path and query, the stored headers but
//! those that change on every attempt by design, the body) and the identity its retries share:
//! the fingerprint, or on Stripe, when the agent sent an `Idempotency-Key`, that key (with the
//! host and the account headers): Stripe's own identity of a call. The index entry (agent,
//! identity, slot) -> review id is written in the review's own batch and removed by the
//! transition that ends it (`index.rs`). While that review can still be sent ([`joinable`]),
//! the agent's next request with the same identity finds it in one bounded read:
//! - the same fingerprint: the request joins it (the same 423, or a wait on that review);
//! - another fingerprint (a Stripe key reused for another call): refused, 400
//!   `idempotency_error`, nothing stored.
//!
//! A review created before the agent's entry was added is another agent's (an earlier one of
//! the same name, removed since: `crate::agents`): never joined; the request is held anew.
//!
//! Slots: an entry whose review can no longer be sent but has not ended (failed or
//! `outcome_unknown` past its deadline, until the sweeper closes it, which removes its entry)
//! is never overwritten, since its removal would then delete the newer review's entry. The next review of that identity takes the slot after the highest one read;
//! two concurrent holds read the same slots, expect the same next one absent, and one wins:
//! the other reads again and joins.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::index;
use super::review::{Review, ReviewState, StoredRequest};
use super::GateError;
use crate::store::{prefix_end, Store, Tree};

/// Headers whose value changes on every attempt by design (telemetry and tracing, a retry
/// counter): two attempts that differ only in them are the same call. Every other stored header
/// counts: two requests that differ in any other header are two calls.
const PER_ATTEMPT: &[&str] = &[
    "baggage",
    "date",
    "sentry-trace",
    "traceparent",
    "tracestate",
    "x-amzn-trace-id",
    "x-request-id",
    "x-retry-count",
    "x-stainless-retry-count",
    "x-stripe-client-telemetry",
];

/// The headers that, beside an agent's `Idempotency-Key`, name the call on Stripe: the
/// connected account it acts for.
const STRIPE_SCOPE: &[&str] = &["idempotency-key", "stripe-account", "stripe-context"];

/// At most this many entries of one identity are read: past them (an agent that repeated one
/// call that many times, each failed or unknown and past its deadline, within retention) a new
/// review is held without an entry of its own.
const MOST_READ: usize = 64;

/// What a held request's retries share, recorded on its review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Join {
    /// Hex SHA-256 of what identifies the call: the fingerprint, or the agent's Stripe key.
    pub identity: String,
    /// Hex SHA-256 of the request as it would be sent.
    pub fingerprint: String,
    /// Which of the identity's index entries is this review's.
    pub slot: u32,
    /// The identity is the agent's `Idempotency-Key` on Stripe (another request under it is
    /// refused rather than held).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keyed: bool,
}

impl Join {
    /// The join of `req` (its headers as stored, before Airlock adds a key of its own) with body
    /// `body`; `stripe`: it goes to Stripe, where an agent's `Idempotency-Key` names the call.
    pub fn of(req: &StoredRequest, body: &[u8], stripe: bool) -> Join {
        let fingerprint = hex::encode(fingerprint(req, body));
        let keyed = stripe && header_values(req, "idempotency-key").next().is_some();
        let identity = match keyed {
            true => hex::encode(stripe_identity(req)),
            false => fingerprint.clone(),
        };
        Join {
            identity,
            fingerprint,
            slot: 0,
            keyed,
        }
    }
}

/// Feeds length-prefixed fields to SHA-256: no two sequences of fields encode alike.
struct Canon(Sha256);

impl Canon {
    fn new(tag: &str) -> Canon {
        let mut c = Canon(Sha256::new());
        c.field(tag.as_bytes());
        c
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn target(&mut self, req: &StoredRequest) {
        self.field(req.scheme.as_bytes());
        self.field(req.host.to_ascii_lowercase().as_bytes());
        self.field(&req.port.to_be_bytes());
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

fn header_values<'a>(req: &'a StoredRequest, name: &'a str) -> impl Iterator<Item = &'a str> {
    req.headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// SHA-256 of the request's canonical encoding. Headers are sorted by name (the order of
/// different names means nothing; the values of one name keep theirs).
fn fingerprint(req: &StoredRequest, body: &[u8]) -> [u8; 32] {
    let mut c = Canon::new("airlock.join.request.v1");
    c.field(req.method.as_bytes());
    c.target(req);
    c.field(req.path_and_query.as_bytes());
    let mut headers: Vec<(String, &str)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .filter(|(k, _)| !PER_ATTEMPT.contains(&k.as_str()))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    c.field(&(headers.len() as u64).to_be_bytes());
    for (k, v) in &headers {
        c.field(k.as_bytes());
        c.field(v.as_bytes());
    }
    c.field(body);
    c.finish()
}

/// SHA-256 of what names a keyed Stripe call: the host and its key and account headers.
fn stripe_identity(req: &StoredRequest) -> [u8; 32] {
    let mut c = Canon::new("airlock.join.stripe-key.v1");
    c.target(req);
    for name in STRIPE_SCOPE {
        for v in header_values(req, name) {
            c.field(name.as_bytes());
            c.field(v.as_bytes());
        }
    }
    c.finish()
}

/// Whether a review of this state keeps its join entry: it may still be sent, time permitting
/// (a human may retry `failed` and `outcome_unknown` before the deadline).
pub(super) fn keeps_entry(state: ReviewState) -> bool {
    matches!(
        state,
        ReviewState::Pending
            | ReviewState::Approved
            | ReviewState::Executing
            | ReviewState::Failed
            | ReviewState::OutcomeUnknown
    )
}

/// Whether a retry arriving at `now_ms` joins `r`: it is being sent, or may still be (pending,
/// or retryable, before its deadline). A review past its deadline, or ended, is not joined: a
/// new identical request is a new call, held anew.
pub(super) fn joinable(r: &Review, now_ms: u64) -> bool {
    match r.state {
        ReviewState::Approved | ReviewState::Executing => true,
        ReviewState::Pending | ReviewState::Failed | ReviewState::OutcomeUnknown => {
            now_ms < r.expires_at_ms
        }
        ReviewState::Executed | ReviewState::Rejected | ReviewState::Expired => false,
    }
}

/// What a held request finds of its identity.
#[derive(Debug)]
pub(super) enum Found {
    /// A review of the same request that may still be sent, and its record as read: join it
    /// (only while the record is still as read).
    Same(Box<Review>, Vec<u8>),
    /// A review of another request under the same Stripe key that may still be sent.
    KeyReused(Box<Review>),
    /// None: hold a new review in this slot (`None`: without an entry, see [`MOST_READ`]).
    Vacant(Option<u32>),
}

/// Reads `agent`'s entries of `join`'s identity (one bounded range, and their reviews).
pub(super) fn find(
    store: &dyn Store,
    agent: &str,
    added_ms: Option<u64>,
    join: &Join,
    now_ms: u64,
) -> Result<Found, GateError> {
    let prefix = index::join_prefix(agent, &join.identity);
    let end = prefix_end(&prefix);
    let rows = store.range(Tree::Index, &prefix, end.as_deref(), MOST_READ)?;
    if rows.is_empty() {
        return Ok(Found::Vacant(Some(0)));
    }
    let ids: Vec<&[u8]> = rows.iter().map(|(_, id)| id.as_slice()).collect();
    let records = store.get_many(Tree::Reviews, &ids)?;
    let mut highest: Option<u32> = None;
    let mut live: Option<(Review, Vec<u8>)> = None;
    for ((key, id), record) in rows.iter().zip(records) {
        let slot = key
            .get(prefix.len()..)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map(u32::from_be_bytes);
        highest = highest.max(slot);
        let Some(bytes) = record else { continue };
        // An unreadable record is never joined (nor sent): its slot stays taken.
        let r = match super::decode_review(&String::from_utf8_lossy(id), &bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "an unreadable review is not joined by retries");
                continue;
            }
        };
        // Another entry of the same name, removed since, sent it: its slot stays taken, and
        // this request is held anew.
        let ours = crate::agents::same_entry(r.created_at_ms, r.agent_added_ms, added_ms);
        if r.agent.as_deref() == Some(agent) && ours && joinable(&r, now_ms) {
            live = Some((r, bytes));
        }
    }
    if let Some((r, record)) = live {
        let same = r.join.as_ref().map(|j| j.fingerprint.as_str()) == Some(&join.fingerprint);
        return Ok(match same {
            true => Found::Same(Box::new(r), record),
            false => Found::KeyReused(Box::new(r)),
        });
    }
    if rows.len() >= MOST_READ {
        tracing::warn!(
            agent,
            "{MOST_READ} or more earlier reviews of one call hold their retry entries; this one is held without"
        );
        return Ok(Found::Vacant(None));
    }
    Ok(Found::Vacant(match highest {
        Some(h) => h.checked_add(1),
        None => Some(0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> StoredRequest {
        StoredRequest {
            scheme: "https".into(),
            host: "api.stripe.com".into(),
            port: 443,
            method: "POST".into(),
            path_and_query: "/v1/refunds".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body_b64: String::new(),
        }
    }

    #[test]
    fn per_attempt_headers_and_header_order_do_not_make_another_call() {
        let a = req(&[("content-type", "a/b"), ("x-stripe-client-telemetry", "1")]);
        let b = req(&[("x-stripe-client-telemetry", "2"), ("content-type", "a/b")]);
        assert_eq!(Join::of(&a, b"x", false), Join::of(&b, b"x", false));
        let c = req(&[("content-type", "a/b"), ("stripe-version", "2024-06-20")]);
        assert_ne!(
            Join::of(&a, b"x", false).fingerprint,
            Join::of(&c, b"x", false).fingerprint
        );
        assert_ne!(
            Join::of(&a, b"x", false).fingerprint,
            Join::of(&a, b"y", false).fingerprint
        );
    }

    #[test]
    fn a_stripe_key_names_the_call_with_its_account() {
        let one = req(&[("idempotency-key", "k1")]);
        let other_body = Join::of(&one, b"amount=2", true);
        let first = Join::of(&one, b"amount=1", true);
        assert!(first.keyed);
        assert_eq!(first.identity, other_body.identity);
        assert_ne!(first.fingerprint, other_body.fingerprint);
        let account = req(&[("idempotency-key", "k1"), ("stripe-account", "acct_2")]);
        assert_ne!(
            Join::of(&account, b"amount=1", true).identity,
            first.identity
        );
        // Not Stripe: the key is one header among others.
        let plain = Join::of(&one, b"amount=1", false);
        assert!(!plain.keyed);
        assert_eq!(plain.identity, plain.fingerprint);
    }
}
