//! Policy's permit: [`Permitted`] is the only thing [`super::Upstream`] sends, and only the
//! check functions here mint one (the shape of linkerd2-proxy's `check_authorized`): a catalog
//! verdict that lets the request through, the operator's tunnel policy, or a review's durable
//! `approved → executing` claim. The constructor is private, so code elsewhere cannot build a
//! permit by hand. A permit can be read:
//!
//! ```
//! use airlock::upstream::permit::Permitted;
//! fn why<T>(p: &Permitted<T>) -> &'static str {
//!     p.decision().kind()
//! }
//! ```
//!
//! but not built, by struct literal or constructor:
//!
//! ```compile_fail
//! use airlock::upstream::permit::{Decision, Permitted};
//! let forged = Permitted { inner: (), decision: Decision::UnknownHostTunnel };
//! ```
//!
//! ```compile_fail
//! use airlock::upstream::permit::{Decision, Permitted};
//! let forged = Permitted::new((), Decision::UnknownHostTunnel);
//! ```

use std::future::Future;

use crate::config::UnknownHosts;
use crate::rules::{Action, Verdict};

/// Why a request may be forwarded.
// One per forwarded request, moved with it and never kept in bulk: boxing the verdict would add
// an allocation to every pass-through request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Decision {
    /// The catalog allowed it (or let it through under a soft gate).
    Verdict(Verdict),
    /// A host outside the catalog while `unknown_hosts = "tunnel"`.
    UnknownHostTunnel,
    /// A human approved the stored request of this review, and it was claimed for sending.
    Approved { review_id: String },
}

impl Decision {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Verdict(_) => "verdict",
            Decision::UnknownHostTunnel => "tunnel",
            Decision::Approved { .. } => "approved",
        }
    }
}

/// A request (or tunnel target) that policy has decided may go upstream.
pub struct Permitted<T> {
    inner: T,
    decision: Decision,
}

impl<T> Permitted<T> {
    fn new(inner: T, decision: Decision) -> Self {
        Self { inner, decision }
    }

    /// Transforms the permitted value (e.g. into its upstream form), keeping the decision.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Permitted<U>, E> {
        Ok(Permitted {
            inner: f(self.inner)?,
            decision: self.decision,
        })
    }

    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Taken apart only where it is sent.
    pub(super) fn into_parts(self) -> (T, Decision) {
        (self.inner, self.decision)
    }
}

/// Permits `inner` if the verdict lets it through (allow or notify); gives both back otherwise.
#[allow(clippy::result_large_err)] // the refused value is handed back whole, by design
pub fn check_verdict<T>(inner: T, verdict: Verdict) -> Result<Permitted<T>, (T, Verdict)> {
    match verdict.action {
        Action::Allow | Action::Notify => Ok(Permitted::new(inner, Decision::Verdict(verdict))),
        Action::Escalate | Action::Block => Err((inner, verdict)),
    }
}

/// Permits traffic to a host outside the catalog, if the operator chose to tunnel such hosts.
pub fn check_tunnel<T>(inner: T, unknown_hosts: UnknownHosts) -> Option<Permitted<T>> {
    (unknown_hosts == UnknownHosts::Tunnel)
        .then(|| Permitted::new(inner, Decision::UnknownHostTunnel))
}

/// Permits the stored request of an approved review. `claim` is the review's durable
/// `approved → executing` transition and yields the request to send only when it succeeded:
/// the permit cannot exist without the claim, and a lost race (already claimed, decided
/// otherwise) or a store error gives no permit.
pub async fn check_claim<T, E>(
    review_id: &str,
    claim: impl Future<Output = Result<T, E>>,
) -> Result<Permitted<T>, E> {
    let inner = claim.await?;
    Ok(Permitted::new(
        inner,
        Decision::Approved {
            review_id: review_id.to_string(),
        },
    ))
}
