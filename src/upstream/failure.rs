//! Upstream failures, classified by where they happened (nothing written yet, or the exchange
//! was under way), and the refusal an agent sees for each.

use crate::wire::error_chain;
use std::io;

use http::StatusCode;

use super::egress::EgressDenied;
use super::resolve::ResolveError;
use crate::wire::{Refusal, Side};

/// Why an upstream exchange failed, in words safe to show an agent, by where it failed: before
/// any request byte was written (connecting) or after (the exchange). Decided by hyper-util's
/// own signal ([`hyper_util::client::legacy::Error::is_connect`]: the connector, which
/// resolves, dials, passes the egress guard and completes TLS, failed), never by error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Not sent: the egress guard refused the destination.
    Egress(EgressDenied),
    /// Not sent: the upstream's certificate did not verify.
    Certificate(String),
    /// Not sent: resolving, connecting or the TLS handshake failed.
    Connect(String),
    /// Not sent: connecting took longer than `upstream.connect_timeout`.
    ConnectTimeout(String),
    /// Not sent: the process's DNS lookups were all taken until the deadline (`dns_busy`).
    DnsBusy(String),
    /// Not sent: the agent's DNS lookups were all taken until the deadline
    /// (`agent_dns_busy`).
    AgentDnsBusy(String),
    /// Not sent: the host has a credential and the request is plain `http://`, so the
    /// credential would travel in clear text (`credential_over_http`).
    CredentialOverHttp(String),
    /// Maybe sent: the connection was up and the request may have been written, then the
    /// exchange failed (reset, close, a malformed or missing answer).
    Exchange(String),
}

impl UpstreamFailure {
    pub fn from_client_error(err: &hyper_util::client::legacy::Error) -> Self {
        if !err.is_connect() {
            return Self::Exchange(error_chain(err));
        }
        Self::connect_failure(err)
    }

    /// A failed dial (nothing was written).
    pub fn from_dial_error(err: &io::Error) -> Self {
        Self::connect_failure(err)
    }

    /// The kind of a failure to connect (nothing was written).
    fn connect_failure(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut timed_out = false;
        while let Some(e) = cur {
            if let Some(denied) = e.downcast_ref::<EgressDenied>() {
                return Self::Egress(denied.clone());
            }
            match e.downcast_ref::<ResolveError>() {
                Some(busy @ ResolveError::Busy) => return Self::DnsBusy(busy.to_string()),
                Some(busy @ ResolveError::AgentBusy { .. }) => {
                    return Self::AgentDnsBusy(busy.to_string())
                }
                _ => {}
            }
            if let Some(rustls::Error::InvalidCertificate(c)) = e.downcast_ref::<rustls::Error>() {
                return Self::Certificate(format!("upstream certificate rejected: {c:?}"));
            }
            if let Some(ioe) = e.downcast_ref::<io::Error>() {
                timed_out |= ioe.kind() == io::ErrorKind::TimedOut;
                if let Some(inner) = ioe.get_ref() {
                    cur = Some(inner);
                    continue;
                }
            }
            cur = e.source();
        }
        let text = error_chain(err);
        if timed_out {
            Self::ConnectTimeout(text)
        } else {
            Self::Connect(text)
        }
    }

    /// May any byte of the request have reached the upstream?
    pub fn maybe_sent(&self) -> bool {
        matches!(self, Self::Exchange(_))
    }

    /// The message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::Egress(d) => &d.message,
            Self::Certificate(m)
            | Self::Connect(m)
            | Self::ConnectTimeout(m)
            | Self::DnsBusy(m)
            | Self::AgentDnsBusy(m)
            | Self::CredentialOverHttp(m)
            | Self::Exchange(m) => m,
        }
    }
}

impl UpstreamFailure {
    /// The failure's kind, for metrics: `egress`, `certificate`, `connect`, `timeout`,
    /// `dns_busy`, `agent_dns_busy`, `credential_over_http` or `exchange`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamFailure::Egress(_) => "egress",
            UpstreamFailure::Certificate(_) => "certificate",
            UpstreamFailure::Connect(_) => "connect",
            UpstreamFailure::ConnectTimeout(_) => "timeout",
            UpstreamFailure::DnsBusy(_) => "dns_busy",
            UpstreamFailure::AgentDnsBusy(_) => "agent_dns_busy",
            UpstreamFailure::CredentialOverHttp(_) => "credential_over_http",
            UpstreamFailure::Exchange(_) => "exchange",
        }
    }
}

impl From<UpstreamFailure> for Refusal {
    fn from(failure: UpstreamFailure) -> Refusal {
        let upstream = |status, code, m| Refusal::new(status, Side::Upstream, code, m);
        match failure {
            UpstreamFailure::Egress(d) => Refusal::policy(d.code, d.message),
            UpstreamFailure::CredentialOverHttp(m) => Refusal::policy("credential_over_http", m),
            UpstreamFailure::Certificate(m) => {
                upstream(StatusCode::BAD_GATEWAY, "upstream_certificate", m)
            }
            UpstreamFailure::Connect(m) => upstream(StatusCode::BAD_GATEWAY, "upstream_connect", m),
            UpstreamFailure::ConnectTimeout(m) => {
                upstream(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", m)
            }
            UpstreamFailure::DnsBusy(m) => Refusal::internal("dns_busy", m).retry_after("1"),
            UpstreamFailure::AgentDnsBusy(m) => {
                Refusal::client(StatusCode::TOO_MANY_REQUESTS, "agent_dns_busy", m).retry_after("1")
            }
            UpstreamFailure::Exchange(m) => {
                upstream(StatusCode::BAD_GATEWAY, "upstream_protocol", m)
            }
        }
    }
}
