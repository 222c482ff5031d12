//! Connections that have not authenticated yet (`proxy.max_unauthenticated_connections`,
//! `proxy.unauthenticated_per_address`, `proxy.first_request_timeout`).
//!
//! Every connection starts here and holds no `proxy.max_connections` slot: it takes that slot
//! (and its agent's) at its first request with valid credentials, and leaves this pool then.
//! So clients without credentials cannot lock agents out of `max_connections`:
//!
//! - The pool is bounded. When it is full, a new connection evicts the oldest one that has not
//!   sent a request head yet (closed unanswered): idle sockets cannot keep a connection that
//!   sends its request at once from being served. Only if every pooled connection is in the
//!   middle of a request is the new one refused (503 `unauthenticated_connection_limit`).
//! - One peer address (an IPv6 /64 counts as one, as on the admin listener) holds at most
//!   `unauthenticated_per_address`: past it, its own oldest idle connection is evicted, and
//!   only if all of its are mid-request is the new one refused (429). Loopback peers are
//!   exempt: `airlock run`'s relay and a local load balancer bring every agent from one
//!   loopback address.
//! - A connection that sends no request head within `first_request_timeout` is closed.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every pooled connection is mid-request: 503.
    Full,
    /// `unauthenticated_per_address` reached for this peer: 429.
    PerAddress,
}

struct Entry {
    key: Option<IpAddr>,
    /// No request head seen yet: may be evicted for a newer connection.
    evictable: bool,
    evict: CancellationToken,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Pooled connections, oldest first.
    live: BTreeMap<u64, Entry>,
    per_address: HashMap<IpAddr, usize>,
}

impl State {
    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let e = self.live.remove(&seq)?;
        if let Some(k) = e.key {
            if let Some(n) = self.per_address.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_address.remove(&k);
                }
            }
        }
        Some(e)
    }
}

/// The pool of unauthenticated connections.
pub struct PreAuth {
    max: usize,
    per_address: usize,
    state: Mutex<State>,
    /// Evictions not yet logged (see [`Throttle`]).
    evictions: Throttle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a per-address cap counts for `peer`; `None` (not counted) for loopback.
fn address_key(peer: IpAddr) -> Option<IpAddr> {
    if peer.to_canonical().is_loopback() {
        return None;
    }
    Some(crate::admin::limits::client_key(peer))
}

impl PreAuth {
    pub fn new(max: usize, per_address: usize) -> Arc<PreAuth> {
        Arc::new(PreAuth {
            max: max.max(1),
            per_address: per_address.max(1),
            state: Mutex::new(State::default()),
            evictions: Throttle::new("unauthenticated connections closed for newer ones (proxy.max_unauthenticated_connections reached)"),
        })
    }

    /// A place in the pool for a connection from `peer`, evicting the oldest idle one if full.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refused> {
        let key = address_key(peer);
        let mut st = lock(&self.state);
        if let Some(k) = key {
            // Its own oldest idle one makes room (behind a load balancer every agent shares
            // one address: idle sockets there must not refuse the others).
            if st.per_address.get(&k).copied().unwrap_or(0) >= self.per_address
                && !self.evict_oldest(&mut st, Some(k))
            {
                return Err(Refused::PerAddress);
            }
        }
        if st.live.len() >= self.max && !self.evict_oldest(&mut st, None) {
            return Err(Refused::Full);
        }
        let seq = st.next;
        st.next += 1;
        let evict = CancellationToken::new();
        st.live.insert(
            seq,
            Entry {
                key,
                evictable: true,
                evict: evict.clone(),
            },
        );
        if let Some(k) = key {
            *st.per_address.entry(k).or_insert(0) += 1;
        }
        Ok(Ticket {
            pool: self.clone(),
            seq,
            evict,
        })
    }

    /// Closes the oldest connection that has sent no request head (from address `from`, if
    /// given); whether there was one.
    fn evict_oldest(&self, st: &mut State, from: Option<IpAddr>) -> bool {
        let oldest = st
            .live
            .iter()
            .find(|(_, e)| e.evictable && (from.is_none() || e.key == from))
            .map(|(s, _)| *s);
        let Some(e) = oldest.and_then(|s| st.remove(s)) else {
            return false;
        };
        e.evict.cancel();
        self.evictions.note();
        true
    }

    /// Connections in the pool now.
    pub fn len(&self) -> usize {
        lock(&self.state).live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection's place in the pool; dropping it leaves.
pub struct Ticket {
    pool: Arc<PreAuth>,
    seq: u64,
    evict: CancellationToken,
}

impl Ticket {
    /// The connection sent a request head: it is no longer evicted for newer ones (marked
    /// under the pool's lock, so no eviction can come after it).
    pub fn head_seen(&self) {
        if let Some(e) = lock(&self.pool.state).live.get_mut(&self.seq) {
            e.evictable = false;
        }
    }

    /// Cancelled when a newer connection took this one's place.
    pub fn evicted(&self) -> CancellationToken {
        self.evict.clone()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.pool.state).remove(self.seq);
    }
}

/// A WARN line that repeats at most once per [`Throttle::EVERY`], with the count since the last.
pub struct Throttle {
    what: &'static str,
    last: Mutex<Option<Instant>>,
    count: AtomicU64,
}

impl Throttle {
    pub const EVERY: Duration = Duration::from_secs(10);

    pub const fn new(what: &'static str) -> Throttle {
        Throttle {
            what,
            last: Mutex::new(None),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one event; logs the count if the last line is older than [`Self::EVERY`].
    pub fn note(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut last = lock(&self.last);
        if last.is_some_and(|t| now.duration_since(t) < Self::EVERY) {
            return;
        }
        *last = Some(now);
        drop(last);
        let n = self.count.swap(0, Ordering::Relaxed);
        tracing::warn!(count = n, "{} ({n} in the last 10 s at most)", self.what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn full_pool_evicts_the_oldest_idle_connection() {
        let p = PreAuth::new(2, 2);
        let a = p.admit(ip("127.0.0.1")).ok();
        let b = p.admit(ip("127.0.0.1")).ok();
        let (Some(a), Some(b)) = (a, b) else {
            panic!("two admitted")
        };
        a.head_seen();
        let c = p.admit(ip("127.0.0.1"));
        assert!(c.is_ok());
        assert!(!a.evicted().is_cancelled(), "a request in progress is kept");
        assert!(b.evicted().is_cancelled(), "the oldest idle one goes");
        assert_eq!(p.len(), 2);
        // Only connections mid-request: refused.
        if let Ok(c) = &c {
            c.head_seen();
        }
        assert_eq!(p.admit(ip("127.0.0.1")).err(), Some(Refused::Full));
        drop(b);
        assert_eq!(p.len(), 2, "an evicted ticket was counted out already");
        drop(a);
        assert!(p.admit(ip("127.0.0.1")).is_ok());
    }

    #[test]
    fn per_address_cap_counts_a_v6_64_and_skips_loopback() {
        let p = PreAuth::new(100, 2);
        let held: Vec<_> = ["2001:db8::1", "2001:db8::2"]
            .iter()
            .filter_map(|a| p.admit(ip(a)).ok())
            .collect();
        assert_eq!(held.len(), 2);
        // Idle: the address's oldest makes room for the new one.
        let newer = p
            .admit(ip("2001:db8::ffff"))
            .expect("the oldest idle one evicted");
        assert!(held[0].evicted().is_cancelled() && !held[1].evicted().is_cancelled());
        // Mid-request: refused.
        held[1].head_seen();
        newer.head_seen();
        assert_eq!(
            p.admit(ip("2001:db8::ffff")).err(),
            Some(Refused::PerAddress)
        );
        assert!(p.admit(ip("2001:db9::1")).is_ok());
        let v4: Vec<_> = (0..2)
            .filter_map(|_| p.admit(ip("192.0.2.7")).ok())
            .collect();
        assert_eq!(v4.len(), 2);
        v4.iter().for_each(Ticket::head_seen);
        assert_eq!(p.admit(ip("192.0.2.7")).err(), Some(Refused::PerAddress));
        let local: Vec<_> = (0..10)
            .filter_map(|_| p.admit(ip("127.0.0.1")).ok())
            .collect();
        assert_eq!(local.len(), 10, "loopback is not capped per address");
        drop(held);
        drop(newer);
        assert!(
            p.admit(ip("2001:db8::3")).is_ok(),
            "a closed one frees its place"
        );
    }
}
