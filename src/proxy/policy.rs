//! Policy: which hosts are intercepted, tunnelled or refused, how an intercepted request is
//! classified, and [`Permitted`], the only proof the forwarding code accepts.

use crate::config::UnknownHosts;
use crate::rules::{Action, RequestHead, Verdict};

/// Host name under which Airlock answers agents itself (never forwarded).
pub const LOCAL_HOST: &str = "airlock.local";

/// Classifies intercepted requests. Implemented by the rules catalog; tests may supply their own.
pub trait Classifier: Send + Sync + 'static {
    /// Does the catalog name this (normalised) host?
    fn inspects(&self, host: &str) -> bool;
    /// Must the body be read before a verdict can be given?
    fn needs_body(&self, head: &RequestHead<'_>) -> bool;
    fn evaluate(&self, head: &RequestHead<'_>, body: Option<&[u8]>) -> Verdict;
    /// Is this a git push whose verdict needs only the command section at the start of its body
    /// (`rules::git`)? The handler then reads just that much and streams the rest when allowed.
    fn git_push(&self, _head: &RequestHead<'_>) -> bool {
        false
    }
    /// The service whose rules name this (normalised) host, if any.
    fn service_for_host(&self, _host: &str) -> Option<String> {
        None
    }
}

/// What happens to a connection or plain-HTTP request for a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Terminate TLS and classify every request.
    Inspect,
    /// Pass bytes through unseen.
    Tunnel,
    /// Refuse (403).
    Deny,
    /// Airlock's own agent API.
    Local,
}

/// Host routing: the configured inspect list plus every host the catalog names.
pub struct HostPolicy {
    pub inspect_hosts: Vec<String>,
    pub unknown_hosts: UnknownHosts,
}

impl HostPolicy {
    pub fn route(&self, host: &str, classifier: &dyn Classifier) -> Route {
        if host == LOCAL_HOST {
            Route::Local
        } else if self.inspect_hosts.iter().any(|h| h == host) || classifier.inspects(host) {
            Route::Inspect
        } else {
            match self.unknown_hosts {
                UnknownHosts::Tunnel => Route::Tunnel,
                UnknownHosts::Deny => Route::Deny,
            }
        }
    }
}

/// Why a request may be forwarded.
#[derive(Debug, Clone)]
pub enum Decision {
    /// The catalog allowed it (or let it through under a soft gate).
    Verdict(Verdict),
    /// Plain HTTP to a host outside the catalog while `unknown_hosts = "tunnel"`.
    UnknownHostTunnel,
    /// A human approved the stored request of this review.
    Approved { review_id: String },
}

/// A request that policy has decided may go upstream. Only this module builds one.
pub struct Permitted<T> {
    inner: T,
    decision: Decision,
}

impl<T> Permitted<T> {
    /// Permits `inner` if the verdict lets it through (allow or notify); gives it back otherwise.
    #[allow(clippy::result_large_err)] // the refused value is handed back whole, by design
    pub fn by_verdict(inner: T, verdict: Verdict) -> Result<Self, (T, Verdict)> {
        match verdict.action {
            Action::Allow | Action::Notify => Ok(Self {
                inner,
                decision: Decision::Verdict(verdict),
            }),
            Action::Escalate | Action::Block => Err((inner, verdict)),
        }
    }

    /// Permits plain HTTP to a host the operator chose to tunnel.
    pub fn by_tunnel_policy(inner: T, policy: &HostPolicy) -> Option<Self> {
        (policy.unknown_hosts == UnknownHosts::Tunnel).then_some(Self {
            inner,
            decision: Decision::UnknownHostTunnel,
        })
    }

    /// Permits the stored request of a review a human approved. Only the gate's executor calls this,
    /// after it durably moved the review to `executing`.
    pub fn by_approval(inner: T, review_id: String) -> Self {
        Self {
            inner,
            decision: Decision::Approved { review_id },
        }
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

    pub fn into_parts(self) -> (T, Decision) {
        (self.inner, self.decision)
    }
}

/// A classifier that inspects nothing and allows everything: used when no catalog is loaded.
pub struct AllowAll;

impl Classifier for AllowAll {
    fn inspects(&self, _host: &str) -> bool {
        false
    }
    fn needs_body(&self, _head: &RequestHead<'_>) -> bool {
        false
    }
    fn evaluate(&self, _head: &RequestHead<'_>, _body: Option<&[u8]>) -> Verdict {
        Verdict {
            action: Action::Allow,
            rule_id: None,
            service: None,
            tool: None,
            class: None,
            reason_codes: vec!["no_catalog".into()],
            explanation: "no rules catalog loaded".into(),
            params: Default::default(),
            expiry: None,
            wait: None,
            approval: None,
        }
    }
}
