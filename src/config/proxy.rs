//! `[proxy]`: the agent-facing listener, its limits and its worker threads.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

use super::{normalize_host, ConfigError, Ctx};

/// What to do with CONNECT / proxy requests for hosts nobody asked to inspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownHosts {
    /// Blind TCP tunnel (plain HTTP: forwarded unchanged).
    Tunnel,
    /// Refuse with 403.
    Deny,
}

impl std::str::FromStr for UnknownHosts {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tunnel" => Ok(Self::Tunnel),
            "deny" => Ok(Self::Deny),
            other => Err(format!("expected \"tunnel\" or \"deny\", got {other:?}")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawProxy {
    pub(super) listen: String,
    pub(super) unknown_hosts: UnknownHosts,
    pub(super) inspect_hosts: Vec<String>,
    pub(super) max_header_bytes: usize,
    pub(super) header_read_timeout: String,
    pub(super) body_read_timeout: String,
    pub(super) idle_timeout: String,
    pub(super) shutdown_grace: String,
    pub(super) leaf_cache_size: usize,
    pub(super) max_connections: usize,
    pub(super) max_buffered_per_agent: usize,
    pub(super) max_connections_per_agent: Option<usize>,
    pub(super) max_unauthenticated_connections: Option<usize>,
    pub(super) unauthenticated_per_address: Option<usize>,
    pub(super) first_request_timeout: String,
    pub(super) max_requests_in_flight_per_agent: usize,
    pub(super) allow_anonymous: bool,
    pub(super) workers: Option<usize>,
}

impl Default for RawProxy {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            unknown_hosts: UnknownHosts::Deny,
            inspect_hosts: Vec::new(),
            max_header_bytes: 64 * 1024,
            header_read_timeout: "10s".into(),
            body_read_timeout: "30s".into(),
            idle_timeout: "90s".into(),
            shutdown_grace: "30s".into(),
            leaf_cache_size: 1024,
            max_connections: 10_000,
            max_buffered_per_agent: 64,
            max_connections_per_agent: None,
            max_unauthenticated_connections: None,
            unauthenticated_per_address: None,
            first_request_timeout: "3s".into(),
            max_requests_in_flight_per_agent: 256,
            allow_anonymous: false,
            workers: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub unknown_hosts: UnknownHosts,
    /// Hosts intercepted in addition to those the rules catalog names (lower-case).
    pub inspect_hosts: Vec<String>,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    /// A body Airlock buffers (to judge or hold a request, a git push's command section) must
    /// arrive whole within this of the request's head: 408 and the connection closes.
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub leaf_cache_size: NonZeroUsize,
    pub max_connections: usize,
    /// Requests of one agent whose bodies Airlock reads at once (to judge or hold them), each
    /// up to `gate.max_body_bytes`; past it 429 `too_many_buffered_requests`, nothing read.
    pub max_buffered_per_agent: usize,
    /// Connections (and tunnels) one agent holds at once; past it 503 `agent_connection_limit`,
    /// so one agent cannot take every slot of `max_connections`. Default a tenth of it (all of
    /// it up to 100).
    pub max_connections_per_agent: usize,
    /// Connections that have not authenticated yet (no request with valid credentials), held
    /// apart from `max_connections` (`proxy::preauth`). Default a tenth of `max_connections`,
    /// at least 64 (all of it below that), at most 1024.
    pub max_unauthenticated_connections: usize,
    /// Of those, from one peer address (an IPv6 /64 counts as one); loopback peers are exempt
    /// (`airlock run`'s relay, a local load balancer). Default 64 (at most the pool).
    pub unauthenticated_per_address: usize,
    /// A new connection's first request head must arrive within this, or it is closed.
    pub first_request_timeout: Duration,
    /// Requests one agent has in flight at once across all its connections, each from its
    /// admission until its response body ends or is dropped; past it 429
    /// `too_many_requests_in_flight`, nothing read or sent. It also bounds the upstream
    /// connections one agent makes (an HTTP/1.1 upstream takes one per request in flight).
    /// 0: no cap.
    pub max_requests_in_flight_per_agent: usize,
    /// Accept agents without `Proxy-Authorization` (local development only).
    pub allow_anonymous: bool,
    /// Connection runtimes, one thread each (`proxy::workers`); 0: the caller's runtime.
    pub workers: usize,
}

/// Streams one agent-facing HTTP/2 connection may have open at once (the common servers'
/// default).
pub const AGENT_H2_MAX_STREAMS: u32 = 100;

impl ProxyConfig {
    /// The most upstream connections the agent side can make open at once, for `agents`
    /// agents: with `unknown_hosts = "tunnel"`, a blind tunnel each per agent connection (an
    /// intercepted connection uses the pools), plus one per request in flight (an
    /// HTTP/1.1 upstream carries one request per connection; hyper-util's pool has no cap per
    /// host, so the per-agent in-flight cap is what bounds them). Without that cap, every
    /// stream of every connection.
    pub fn upstream_connections_bound(&self, agents: usize) -> u64 {
        let conns = self.max_connections as u64;
        let streams = conns.saturating_mul(u64::from(AGENT_H2_MAX_STREAMS));
        let requests = match self.max_requests_in_flight_per_agent {
            0 => streams,
            cap => (agents.max(1) as u64)
                .saturating_mul(cap as u64)
                .min(streams),
        };
        let tunnels = match self.unknown_hosts {
            UnknownHosts::Tunnel => conns,
            _ => 0,
        };
        tunnels.saturating_add(requests)
    }
}

/// The worker count when `proxy.workers` is unset: one per core this process may run on.
pub fn auto_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Upper bound on `proxy.workers` (threads are not free; more than the cores only costs).
const MAX_WORKERS: usize = 1024;
/// Upper bound on `proxy.max_header_bytes` (1 MiB).
const MAX_HEADER_BYTES: usize = 1 << 20;
/// Upper bound on `proxy.max_requests_in_flight_per_agent` (each may take an upstream
/// connection).
const MAX_IN_FLIGHT_PER_AGENT: usize = 100_000;
/// Upper bound on `proxy.leaf_cache_size` (the cache is allocated up front).
const MAX_LEAF_CACHE: usize = 1_000_000;

pub(super) fn check(p: RawProxy, cx: &Ctx) -> Result<ProxyConfig, ConfigError> {
    if !(8192..=MAX_HEADER_BYTES).contains(&p.max_header_bytes) {
        return Err(cx.invalid(
            "proxy.max_header_bytes",
            format!(
                "must be from 8192 to {MAX_HEADER_BYTES} (each connection may buffer this much)"
            ),
        ));
    }
    if p.leaf_cache_size > MAX_LEAF_CACHE {
        return Err(cx.invalid(
            "proxy.leaf_cache_size",
            format!("must be at most {MAX_LEAF_CACHE}"),
        ));
    }
    if p.max_connections == 0 {
        return Err(cx.invalid("proxy.max_connections", "must be at least 1".into()));
    }
    if p.max_connections > super::MAX_CONNECTIONS {
        return Err(cx.invalid(
            "proxy.max_connections",
            format!("must be at most {}", super::MAX_CONNECTIONS),
        ));
    }
    let workers = match p.workers {
        None => auto_workers(),
        Some(n) if n <= MAX_WORKERS => n,
        Some(n) => {
            return Err(cx.invalid(
                "proxy.workers",
                format!("{n} is more than {MAX_WORKERS}; leave it unset for one per core"),
            ))
        }
    };
    let leaf_cache_size = NonZeroUsize::new(p.leaf_cache_size)
        .ok_or_else(|| cx.invalid("proxy.leaf_cache_size", "must be at least 1".into()))?;
    let mut inspect_hosts = Vec::new();
    for h in &p.inspect_hosts {
        inspect_hosts.push(normalize_host(h).ok_or_else(|| {
            cx.invalid("proxy.inspect_hosts", format!("{h:?} is not a host name"))
        })?);
    }
    let (max_unauthenticated_connections, unauthenticated_per_address) = preauth_limits(&p, cx)?;
    let listen = cx.listen_addr("proxy.listen", &p.listen)?;
    if p.allow_anonymous && !listen.ip().is_loopback() {
        return Err(cx.invalid(
            "proxy.allow_anonymous",
            format!(
                "only on a loopback listener: on {listen} anyone who can reach the port would \
                 have requests sent with the configured credentials; give each agent a token \
                 (airlock agents add)"
            ),
        ));
    }
    Ok(ProxyConfig {
        listen,
        unknown_hosts: p.unknown_hosts,
        inspect_hosts,
        max_header_bytes: p.max_header_bytes,
        header_read_timeout: cx.timeout("proxy.header_read_timeout", &p.header_read_timeout)?,
        body_read_timeout: cx.timeout("proxy.body_read_timeout", &p.body_read_timeout)?,
        idle_timeout: cx.timeout("proxy.idle_timeout", &p.idle_timeout)?,
        shutdown_grace: cx.dur("proxy.shutdown_grace", &p.shutdown_grace)?,
        leaf_cache_size,
        max_connections: p.max_connections,
        max_buffered_per_agent: match p.max_buffered_per_agent {
            0 => {
                return Err(cx.invalid("proxy.max_buffered_per_agent", "must be at least 1".into()))
            }
            n => n,
        },
        max_connections_per_agent: match p.max_connections_per_agent {
            None => (p.max_connections / 10).max(p.max_connections.min(100)),
            Some(n) if (1..=p.max_connections).contains(&n) => n,
            Some(_) => {
                return Err(cx.invalid(
                    "proxy.max_connections_per_agent",
                    format!(
                        "must be from 1 to proxy.max_connections ({})",
                        p.max_connections
                    ),
                ))
            }
        },
        max_unauthenticated_connections,
        unauthenticated_per_address,
        first_request_timeout: cx
            .timeout("proxy.first_request_timeout", &p.first_request_timeout)?,
        max_requests_in_flight_per_agent: match p.max_requests_in_flight_per_agent {
            n if n <= MAX_IN_FLIGHT_PER_AGENT => n,
            _ => {
                return Err(cx.invalid(
                    "proxy.max_requests_in_flight_per_agent",
                    format!(
                        "must be at most {MAX_IN_FLIGHT_PER_AGENT} (each request in flight may \
                         hold an upstream connection), or 0 for no cap"
                    ),
                ))
            }
        },
        allow_anonymous: p.allow_anonymous,
        workers,
    })
}

/// `proxy.max_unauthenticated_connections` and `proxy.unauthenticated_per_address`.
fn preauth_limits(p: &RawProxy, cx: &Ctx) -> Result<(usize, usize), ConfigError> {
    let pool = match p.max_unauthenticated_connections {
        // Room for a burst of agents connecting at once even under a small max_connections.
        None => (p.max_connections / 10)
            .max(p.max_connections.min(64))
            .clamp(1, 1024),
        Some(n) if (1..=super::MAX_CONNECTIONS).contains(&n) => n,
        Some(_) => {
            return Err(cx.invalid(
                "proxy.max_unauthenticated_connections",
                format!("must be from 1 to {}", super::MAX_CONNECTIONS),
            ))
        }
    };
    let per_address = match p.unauthenticated_per_address {
        None => pool.min(64),
        Some(n) if (1..=pool).contains(&n) => n,
        Some(_) => {
            return Err(cx.invalid(
                "proxy.unauthenticated_per_address",
                format!(
                    "must be from 1 to proxy.max_unauthenticated_connections ({pool}); set it to \
                     that to leave one address unlimited"
                ),
            ))
        }
    };
    Ok((pool, per_address))
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::time::Duration;

    fn pre(toml: &str) -> (usize, usize, Duration) {
        let c = Config::from_toml("t.toml", toml).expect("config");
        (
            c.proxy.max_unauthenticated_connections,
            c.proxy.unauthenticated_per_address,
            c.proxy.first_request_timeout,
        )
    }

    #[test]
    fn unauthenticated_defaults_follow_max_connections() {
        let three = Duration::from_secs(3);
        assert_eq!(pre(""), (1000, 64, three));
        assert_eq!(
            pre("[proxy]\nmax_connections = 1000000\n"),
            (1024, 64, three)
        );
        assert_eq!(pre("[proxy]\nmax_connections = 100\n"), (64, 64, three));
        assert_eq!(pre("[proxy]\nmax_connections = 8\n"), (8, 8, three));
        assert_eq!(
            pre("[proxy]\nmax_unauthenticated_connections = 5\nfirst_request_timeout = \"1s\"\n"),
            (5, 5, Duration::from_secs(1))
        );
    }

    #[test]
    fn upstream_connections_are_bounded_by_the_in_flight_cap() {
        let c = |text: &str| Config::from_toml("t.toml", text).map(|c| c.proxy);
        let capped = c("[proxy]\nmax_connections = 1000\nmax_requests_in_flight_per_agent = 10\n");
        let capped = capped.map(|p| p.upstream_connections_bound(3)).ok();
        assert_eq!(capped, Some(30), "3 agents x 10, no blind tunnels");
        let tunnels = c(
            "[proxy]\nmax_connections = 1000\nmax_requests_in_flight_per_agent = 10\n\
                         unknown_hosts = \"tunnel\"\n",
        );
        let tunnels = tunnels.map(|p| p.upstream_connections_bound(3)).ok();
        assert_eq!(tunnels, Some(1000 + 30), "tunnels plus 3 agents x 10");
        let open = c("[proxy]\nmax_connections = 1000\nmax_requests_in_flight_per_agent = 0\n");
        let open = open.map(|p| p.upstream_connections_bound(3)).ok();
        assert_eq!(open, Some(1000 * 100), "every stream of every connection");
    }
}
