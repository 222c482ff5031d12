//! Each agent's requests in flight across all its connections (`proxy.
//! max_requests_in_flight_per_agent`). A request is counted from when it is admitted (before
//! anything of it is judged) until its response body ends or is dropped: the [`InFlightGuard`]
//! travels in the response body (the access-log wrapper). Past the cap: 429
//! `too_many_requests_in_flight` with `Retry-After`, nothing read, judged or sent.
//!
//! The cap also bounds upstream connections: an HTTP/1.1 upstream carries one request per
//! connection, so one agent can make at most this many at once (plus idle ones in the pool).
//!
//! Each agent's counter is looked up once per connection ([`InFlight::share`]) and kept there;
//! admitting a request is then one atomic update, no lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;

use crate::wire::Refusal;

/// Every agent's count of requests in flight, at most `max` each.
pub struct InFlight {
    /// The cap per agent; `usize::MAX` when the configuration says 0 (no cap).
    max: usize,
    counts: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl InFlight {
    /// `max` per agent; 0: no cap.
    pub fn new(max: usize) -> InFlight {
        InFlight {
            max: if max == 0 { usize::MAX } else { max },
            counts: Mutex::default(),
        }
    }

    /// Agent `name`'s counter (one per agent name, shared by all its connections).
    pub fn share(&self, name: &str) -> Arc<AtomicUsize> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.entry(name.to_string()).or_default().clone()
    }

    /// One more request of the agent whose counter is `share`, or the refusal when it has
    /// the cap in flight already.
    pub fn enter(&self, share: &Arc<AtomicUsize>) -> Result<InFlightGuard, Refusal> {
        let max = self.max;
        share
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| InFlightGuard(share.clone()))
            .map_err(|_| too_many(max))
    }
}

/// One request in flight; given back when dropped.
pub struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// 429 for an agent with `max` requests in flight already.
fn too_many(max: usize) -> Refusal {
    Refusal::client(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests_in_flight",
        format!(
            "this agent already has {max} requests in flight through Airlock, across all its \
             connections (proxy.max_requests_in_flight_per_agent); it was not forwarded: wait \
             for some to finish (read or close their responses), then retry"
        ),
    )
    .retry_after("1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_agent_has_its_own_cap_and_requests_come_back() {
        let flight = InFlight::new(2);
        let a = flight.share("a");
        let held: Vec<_> = (0..2).filter_map(|_| flight.enter(&a).ok()).collect();
        assert_eq!(held.len(), 2);
        let refused = flight.enter(&flight.share("a")).err();
        assert_eq!(refused.map(|r| r.code), Some("too_many_requests_in_flight"));
        assert!(flight.enter(&flight.share("b")).is_ok(), "another agent");
        drop(held);
        assert!(flight.enter(&a).is_ok(), "released when dropped");
    }

    #[test]
    fn zero_is_no_cap() {
        let flight = InFlight::new(0);
        let a = flight.share("a");
        let held: Vec<_> = (0..1000).filter_map(|_| flight.enter(&a).ok()).collect();
        assert_eq!(held.len(), 1000);
    }
}
