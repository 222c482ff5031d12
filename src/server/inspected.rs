//! Where inspected hosts are reached, kept fresh for the egress guard: a blind tunnel dialled to
//! one of those addresses is refused (`inspected_host_address`), so a provider cannot be reached
//! unjudged by its address or another name. The hosts are `proxy.inspect_hosts`, every
//! credentialed host and every host the rules in force name (wildcards cannot be resolved and
//! are left out). A host mapped by `upstream.resolve` counts at that address and port; a name
//! counts at every address it resolves to, on every port. Resolved at start and once a minute
//! (one bounded set of lookups, never per connection); a lookup that fails keeps what the host
//! resolved to before.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;
use crate::upstream::egress::{literal_ip, EgressGuard};

/// How long one round of lookups may take, all of them together.
const LOOKUP_TIME: Duration = Duration::from_secs(2);

/// Most addresses remembered per inspected host (its latest answers, newest last).
const MOST_PER_HOST: usize = 64;

/// What each name resolved to lately (kept when a later lookup fails).
type Resolved = BTreeMap<String, Vec<IpAddr>>;

/// The hosts to resolve now: inspected by config, by credential, or by the rules in force.
fn hosts(proxy: &Proxy) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = proxy.hosts.inspect_hosts.iter().cloned().collect();
    out.extend(proxy.classifier.inspected_hosts());
    out.retain(|h| !h.starts_with("*.") && !h.is_empty());
    out
}

/// Resolves every inspected host once and hands the guard where they are reached.
pub async fn refresh(
    guard: &EgressGuard,
    proxy: &Proxy,
    resolve: &BTreeMap<String, SocketAddr>,
    last: &mut Resolved,
) {
    let mut addrs: Vec<(IpAddr, Option<u16>)> = Vec::new();
    let mut lookups = tokio::task::JoinSet::new();
    let names = hosts(proxy);
    for host in &names {
        if let Some(a) = resolve.get(host) {
            addrs.push((a.ip(), Some(a.port())));
        } else if let Some(ip) = literal_ip(host) {
            addrs.push((ip, None));
        } else {
            let host = host.clone();
            let upstream = proxy.upstream.clone();
            let deadline = tokio::time::Instant::now() + LOOKUP_TIME;
            // On the resolver's threads (Airlock's own pool), never the store's.
            lookups.spawn(async move {
                let found = upstream
                    .dialer()
                    .resolver()
                    .resolve(&host, 443, None, deadline)
                    .await
                    .map(|f| f.into_iter().map(|a| a.ip()).collect::<Vec<_>>());
                (host, found)
            });
        }
    }
    let collect = async {
        while let Some(joined) = lookups.join_next().await {
            match joined {
                Ok((host, Ok(ips))) => {
                    // Added to what the name answered before (round-robin DNS gives a few
                    // addresses at a time), the newest kept, at most MOST_PER_HOST.
                    let known = last.entry(host).or_default();
                    known.retain(|ip| !ips.contains(ip));
                    known.extend(ips);
                    let extra = known.len().saturating_sub(MOST_PER_HOST);
                    known.drain(..extra);
                }
                Ok((host, Err(e))) => {
                    tracing::debug!(host, error = %e, "inspected host does not resolve; its last addresses stay refused to tunnels")
                }
                Err(e) => tracing::debug!(error = %e, "inspected host lookup failed"),
            }
        }
    };
    if tokio::time::timeout(LOOKUP_TIME, collect).await.is_err() {
        tracing::debug!(
            "inspected host lookups timed out; the last addresses stay refused to tunnels"
        );
    }
    lookups.abort_all();
    last.retain(|h, _| names.contains(h));
    addrs.extend(last.values().flatten().map(|ip| (*ip, None)));
    addrs.sort();
    addrs.dedup();
    guard.set_inspected_addrs(addrs);
}

/// Resolves the inspected hosts now (awaited: no tunnel is served before), then once a minute
/// until `stop`.
pub async fn follow(
    guard: Arc<EgressGuard>,
    proxy: Arc<Proxy>,
    resolve: BTreeMap<String, SocketAddr>,
    stop: CancellationToken,
) {
    let mut last = Resolved::new();
    refresh(&guard, &proxy, &resolve, &mut last).await;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => refresh(&guard, &proxy, &resolve, &mut last).await,
            }
        }
    });
}
