//! The agent-facing proxy. One request goes through these phases (see `docs/request-flow.md`):
//!
//! 1. **accept** (`front`): TCP accept, TCP_NODELAY, connection limit; the connection moves
//!    to one of the per-core runtimes (`workers`) for everything below. HTTP/1.1 with bounded
//!    headers (431), header-read timeout, idle timeout.
//! 2. **route** (`front`): `CONNECT host:port` or an absolute-form `http://` request; the host is
//!    inspected, tunnelled or refused (`policy::HostPolicy`).
//!    A plain-http GET of `airlock.local`'s public pages (`local`) is answered here, before
//!    proxy authentication.
//! 3. **intercept** (`mitm`): TLS terminated with a leaf minted for the CONNECT host; ALPN h2 or
//!    http/1.1; the SNI must equal the CONNECT host. Tunnelled hosts go to `tunnel` instead.
//! 4. **authority** (`handler`): each request's `:authority`/Host must equal the CONNECT target.
//! 5. **classify** (`handler`): the rules catalog gives a verdict (the body is read only when a
//!    rule needs it, with a cap).
//! 6. **act** (`handler`): allow/notify -> `Permitted` -> `forward` (streamed);
//!    block -> 403; escalate -> the gate holds it.
//! 7. **log** (`access_log`): one line when the response body ends.

pub mod access_log;
pub mod allow_audit;
mod body_read;
mod budget;
pub mod buffer_budget;
pub mod dialect;
pub mod front;
pub mod git_outcome;
pub mod git_push;
pub mod git_report;
pub mod handler;
pub mod held;
pub mod in_flight;
pub mod io;
pub mod local;
pub mod mitm;
pub mod policy;
pub mod preauth;
pub mod tunnel;
pub mod workers;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::gate::Gate;
use crate::rules::Classifier;
use crate::tls::{CertificateAuthority, LeafCache};
use crate::upstream::Upstream;
use policy::HostPolicy;
use workers::Workers;

/// Everything a connection needs, shared by all of them.
pub struct Proxy {
    pub config: crate::config::ProxyConfig,
    pub hosts: HostPolicy,
    pub classifier: Arc<dyn Classifier>,
    pub leaves: LeafCache,
    /// `airlock.local`'s public pages (the CA certificate and how to trust it).
    pub local: local::LocalPages,
    /// The only way upstream (pools per worker, egress guard, credential injection).
    pub upstream: Arc<Upstream>,
    /// The runtimes agent connections are served on.
    pub workers: Workers,
    pub gate: Arc<Gate>,
    /// The agents in force (swapped whole on a reload).
    pub agents: Arc<crate::agents::Agents>,
    pub vault: Arc<crate::credentials::Vault>,
    /// Fraction of allowed catalog requests recorded in the audit log.
    pub audit_allow_sample: f64,
    /// Largest body buffered to classify or hold a request.
    pub max_buffered_body: usize,
    /// Each agent's requests whose bodies are being read or held at once.
    pub(crate) buffering: crate::gate::AgentSlots,
    conn_limit: Arc<Semaphore>,
    /// Connections not authenticated yet (`proxy::preauth`), outside `conn_limit`.
    preauth: Arc<preauth::PreAuth>,
    /// Each agent's rate of soft-gated requests (`audit.notify_per_agent`).
    pub(crate) soft_gate_rate: allow_audit::SoftGateRate,
    /// Each agent's connections (`proxy.max_connections_per_agent`).
    agent_conns: crate::gate::AgentSlots,
    /// Each agent's requests in flight (`proxy.max_requests_in_flight_per_agent`).
    pub(crate) in_flight: in_flight::InFlight,
    /// Bytes of request bodies buffered to judge or hold them, all agents together
    /// (`gate.max_buffered_bytes`).
    pub buffered_bytes: buffer_budget::BufferBudget,
    /// Writes allowed-request audit records in the background (bounded queue).
    pub(crate) allow_audit: allow_audit::AllowRecorder,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("starting the connection worker threads: {0}")]
    Workers(std::io::Error),
    #[error(transparent)]
    Page(#[from] local::PageError),
}

/// Shutdown signal and the tracker of every task the proxy spawns, both owned by the caller.
#[derive(Clone, Default)]
pub struct Lifecycle {
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl Proxy {
    /// `agents` are the agents in force (the caller swaps them on a reload). `upstream` carries the egress guard and the credentials it injects; `vault` is kept for
    /// scrubbing answers and stripping agent credentials. Hosts with a credential are always
    /// intercepted (never tunnelled blind).
    pub fn new(
        config: &Config,
        agents: Arc<crate::agents::Agents>,
        ca: Arc<CertificateAuthority>,
        classifier: Arc<dyn Classifier>,
        gate: Arc<Gate>,
        upstream: Arc<Upstream>,
        vault: Arc<crate::credentials::Vault>,
    ) -> Result<Proxy, ProxyError> {
        let workers = Workers::start(config.proxy.workers).map_err(ProxyError::Workers)?;
        let mut inspect_hosts = config.proxy.inspect_hosts.clone();
        inspect_hosts.extend(vault.hosts());
        Ok(Proxy {
            config: config.proxy.clone(),
            hosts: HostPolicy {
                inspect_hosts,
                unknown_hosts: config.proxy.unknown_hosts,
            },
            agents,
            vault,
            audit_allow_sample: config.audit.allow_sample,
            allow_audit: allow_audit::AllowRecorder::new(
                config.audit.allow_per_agent,
                config.audit.block_per_agent,
            ),
            soft_gate_rate: allow_audit::SoftGateRate::new(config.audit.notify_per_agent),
            classifier,
            local: local::LocalPages::new(&ca)?,
            leaves: LeafCache::new(ca, config.proxy.leaf_cache_size),
            upstream,
            workers,
            gate,
            max_buffered_body: config.gate.max_body_bytes,
            buffering: crate::gate::AgentSlots::new(config.proxy.max_buffered_per_agent),
            conn_limit: Arc::new(Semaphore::new(config.proxy.max_connections)),
            preauth: preauth::PreAuth::new(
                config.proxy.max_unauthenticated_connections,
                config.proxy.unauthenticated_per_address,
            ),
            agent_conns: crate::gate::AgentSlots::new(config.proxy.max_connections_per_agent),
            in_flight: in_flight::InFlight::new(config.proxy.max_requests_in_flight_per_agent),
            buffered_bytes: buffer_budget::BufferBudget::new(config.gate.max_buffered_bytes),
        })
    }
}

/// Serves agents on `listener` until `life.shutdown` fires. In-flight work is tracked by
/// `life.tasks`; the caller waits on it to drain.
pub async fn run(listener: TcpListener, proxy: Arc<Proxy>, life: Lifecycle) {
    let recorder = proxy.clone();
    let stop = life.shutdown.clone();
    life.tasks
        .spawn(async move { recorder.allow_audit.run(recorder.gate.clone(), stop).await });
    let each = (proxy.clone(), life);
    proxy
        .workers
        .accept_on_each(listener, move |listener, seat| {
            front::accept_loop(listener, each.0.clone(), each.1.clone(), seat)
        })
        .await
}
