//! Name resolution for dials, on Airlock's own threads and never on a runtime's blocking pool.
//!
//! getaddrinfo blocks, and with `unknown_hosts = "tunnel"` an agent chooses the names: a
//! resolver that never answers would keep a thread per name busy for as long as the system
//! resolver waits, whatever `upstream.connect_timeout` says (it stops the waiting, not the
//! thread). So each lookup runs on a short-lived thread of its own that holds two permits
//! until getaddrinfo returns: for a lookup an agent caused (a blind tunnel's name), one of
//! [`GLOBAL_LOOKUPS`] for all agents and one of [`AGENT_LOOKUPS`] for that agent; for Airlock's
//! own dials (the intercepted hosts, approved sends, pooled connections), one of
//! [`OWN_LOOKUPS`], a pool no agent's names can take. A dial waits for its permits no longer
//! than its `connect_timeout` and is then refused: `agent_dns_busy` (429) when its agent's
//! lookups are all taken, `dns_busy` (503) when the pool's are. A name an agent asked for that
//! failed to resolve is answered from a small negative cache for [`NEGATIVE_TTL`], so repeating
//! it does not start a new lookup; Airlock's own dials neither read nor fill it (one resolver
//! hiccup must not fail every send to a provider for seconds). The store's and audit's
//! blocking work never waits behind a lookup.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Lookups in flight in the whole process.
pub const GLOBAL_LOOKUPS: usize = 64;
/// Lookups in flight for one agent.
pub const AGENT_LOOKUPS: usize = 16;
/// Lookups in flight for Airlock's own dials (no agent's names among them).
pub const OWN_LOOKUPS: usize = 32;
/// How long a name that failed to resolve is answered from the negative cache.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Most names the negative cache holds (past it, new failures are not remembered).
const NEGATIVE_MAX: usize = 4096;

/// A blocking lookup: the addresses of `host` for `port`. The system's (getaddrinfo) unless a
/// test installs another.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// getaddrinfo, through the standard library.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map(Iterator::collect)
    }
}

/// Why a name was not resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Every lookup the agent may have in flight stayed taken until the deadline.
    #[error(
        "agent {agent} has {AGENT_LOOKUPS} DNS lookups in flight already (the most one agent \
         may have); retry later"
    )]
    AgentBusy { agent: String },
    /// Every lookup the process may have in flight stayed taken until the deadline.
    #[error("Airlock has as many DNS lookups in flight as it runs at once; retry later")]
    Busy,
    /// The name failed to resolve moments ago (answered from the negative cache).
    #[error("{host} did not resolve moments ago: {why}")]
    Cached { host: String, why: String },
    /// The lookup did not answer before the deadline (its thread still holds its permits).
    #[error("resolving {0} took longer than upstream.connect_timeout")]
    TimedOut(String),
    /// No lookup thread could be started.
    #[error("cannot start a DNS lookup: {0}")]
    Spawn(io::Error),
    /// The resolver answered with an error or with no address.
    #[error("cannot resolve {host}: {source}")]
    Failed { host: String, source: io::Error },
}

impl ResolveError {
    /// As the dialer's `io::Error`: the kind tells timeouts apart; the error itself stays
    /// inside for [`super::UpstreamFailure::from_dial_error`] to find.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            ResolveError::TimedOut(_) => io::ErrorKind::TimedOut,
            ResolveError::Failed { source, .. } => source.kind(),
            ResolveError::Cached { .. } => io::ErrorKind::NotFound,
            _ => io::ErrorKind::WouldBlock,
        };
        io::Error::new(kind, self)
    }
}

/// The failed names, each with when it failed and why.
type Negative = Mutex<HashMap<String, (Instant, String)>>;

/// Bounded, off-pool name resolution (see the module docs). Shared by every dialer clone.
pub struct Resolver {
    lookup: RwLock<Arc<dyn Lookup>>,
    global: Arc<Semaphore>,
    own: Arc<Semaphore>,
    agents: Mutex<HashMap<String, Arc<Semaphore>>>,
    negative: Arc<Negative>,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::with_lookup(Arc::new(SystemLookup))
    }
}

impl Resolver {
    pub fn with_lookup(lookup: Arc<dyn Lookup>) -> Self {
        Self {
            lookup: RwLock::new(lookup),
            global: Arc::new(Semaphore::new(GLOBAL_LOOKUPS)),
            own: Arc::new(Semaphore::new(OWN_LOOKUPS)),
            agents: Mutex::new(HashMap::new()),
            negative: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Replaces the lookup (tests stand in for DNS; the override and caps stay as they are).
    #[doc(hidden)]
    pub fn set_lookup(&self, lookup: Arc<dyn Lookup>) {
        *self.lookup.write().unwrap_or_else(PoisonError::into_inner) = lookup;
    }

    /// The addresses of `host` for `port`, looked up for `agent` (if known) on a thread of its
    /// own, waiting for permits and the answer until `deadline` at most.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        agent: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        let key = host.to_ascii_lowercase();
        if let Some(why) = agent.and_then(|_| self.failed_recently(&key)) {
            return Err(ResolveError::Cached { host: key, why });
        }
        let agent_permit = match agent {
            Some(name) => {
                let sem = self.agent_semaphore(name);
                match tokio::time::timeout_at(deadline, sem.acquire_owned()).await {
                    Ok(Ok(p)) => Some(p),
                    _ => {
                        return Err(ResolveError::AgentBusy {
                            agent: name.to_string(),
                        })
                    }
                }
            }
            None => None,
        };
        let pool = match agent {
            Some(_) => &self.global,
            None => &self.own,
        };
        let global_permit =
            match tokio::time::timeout_at(deadline, pool.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => return Err(ResolveError::Busy),
            };
        let remember = agent.is_some();
        let rx = self.start(key.clone(), port, (global_permit, agent_permit), remember)?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(addrs))) => Ok(addrs),
            Ok(Ok(Err(source))) => Err(ResolveError::Failed { host: key, source }),
            Ok(Err(_)) => Err(ResolveError::Failed {
                host: key,
                source: io::Error::other("the lookup thread ended without an answer"),
            }),
            Err(_) => Err(ResolveError::TimedOut(key)),
        }
    }

    /// Starts the lookup on its own thread, which keeps `permits` until getaddrinfo returns.
    fn start(
        &self,
        host: String,
        port: u16,
        permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
        remember: bool,
    ) -> Result<tokio::sync::oneshot::Receiver<io::Result<Vec<SocketAddr>>>, ResolveError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lookup = self
            .lookup
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let negative = self.negative.clone();
        std::thread::Builder::new()
            .name("airlock-dns".into())
            .spawn(move || {
                let answer = match lookup.lookup(&host, port) {
                    Ok(addrs) if addrs.is_empty() => Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "host resolved to no address",
                    )),
                    other => other,
                };
                if let (Err(e), true) = (&answer, remember) {
                    remember_failure(&negative, host, e.to_string());
                }
                drop(permits);
                let _ = tx.send(answer);
            })
            .map_err(ResolveError::Spawn)?;
        Ok(rx)
    }

    fn agent_semaphore(&self, agent: &str) -> Arc<Semaphore> {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sem) = agents.get(agent) {
            return sem.clone();
        }
        // Agents come and go with reloads: forget the idle ones before adding one.
        agents.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < AGENT_LOOKUPS);
        let sem = Arc::new(Semaphore::new(AGENT_LOOKUPS));
        agents.insert(agent.to_string(), sem.clone());
        sem
    }

    /// Why `host` failed, if it did less than [`NEGATIVE_TTL`] ago.
    fn failed_recently(&self, host: &str) -> Option<String> {
        let mut negative = self.negative.lock().unwrap_or_else(PoisonError::into_inner);
        match negative.get(host) {
            Some((at, why)) if at.elapsed() < NEGATIVE_TTL => Some(why.clone()),
            Some(_) => {
                negative.remove(host);
                None
            }
            None => None,
        }
    }
}

fn remember_failure(negative: &Negative, host: String, why: String) {
    let mut negative = negative.lock().unwrap_or_else(PoisonError::into_inner);
    if negative.len() >= NEGATIVE_MAX {
        negative.retain(|_, (at, _)| at.elapsed() < NEGATIVE_TTL);
    }
    if negative.len() < NEGATIVE_MAX {
        negative.insert(host, (Instant::now(), why));
    }
}

#[cfg(test)]
mod tests;
