//! The resolver's bounds: its lookups stay off the runtime's blocking pool, the per-agent and
//! global caps refuse the excess (and count a lookup until its thread ends, not until its
//! caller stops waiting), and a failed name is answered from the negative cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::*;
use crate::upstream::UpstreamFailure;
use crate::wire::Refusal;

/// Names starting with `slow` block until released; `bad` names fail; others answer.
#[derive(Default)]
struct Hook {
    released: Mutex<bool>,
    wake: Condvar,
    entered: AtomicUsize,
    calls: AtomicUsize,
}

impl Hook {
    fn release(&self) {
        *self.released.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

impl Lookup for Hook {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if host.starts_with("bad") {
            return Err(io::Error::other("no such name"));
        }
        if host.starts_with("slow") {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let mut released = self.released.lock().unwrap_or_else(PoisonError::into_inner);
            while !*released {
                released = self
                    .wake
                    .wait(released)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }
}

/// Lets the hook go whatever the test's outcome, so no lookup thread outlives it blocked.
struct Release(Arc<Hook>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release();
    }
}

fn setup() -> (Arc<Resolver>, Arc<Hook>, Release) {
    let hook = Arc::new(Hook::default());
    let resolver = Arc::new(Resolver::with_lookup(hook.clone()));
    (resolver, hook.clone(), Release(hook))
}

fn soon(ms: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_millis(ms)
}

async fn until_entered(hook: &Hook, n: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while hook.entered.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "only {:?} lookups started", hook.entered);
}

/// Review: getaddrinfo ran on the worker runtime's blocking pool, so slow names an agent chose
/// filled the pool the store and audit work waits on. On a runtime with one blocking thread,
/// many stuck lookups leave that thread free.
#[test]
fn stuck_lookups_leave_the_runtime_blocking_pool_free() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build();
    let Ok(rt) = rt else {
        panic!("runtime");
    };
    rt.block_on(async {
        let (resolver, hook, _release) = setup();
        let mut stuck = Vec::new();
        for i in 0..20 {
            let r = resolver.clone();
            stuck.push(tokio::spawn(async move {
                r.resolve(&format!("slow{i}.test"), 443, None, soon(60_000))
                    .await
            }));
        }
        until_entered(&hook, 20).await;
        let store_work = tokio::task::spawn_blocking(|| 7);
        let done = tokio::time::timeout(Duration::from_secs(10), store_work).await;
        assert!(
            matches!(done, Ok(Ok(7))),
            "the blocking pool waited: {done:?}"
        );
        assert!(
            stuck.iter().all(|t| !t.is_finished()),
            "the lookups were still stuck when the blocking work ran"
        );
        hook.release();
        for t in stuck {
            assert!(matches!(t.await, Ok(Ok(_))));
        }
    });
}

/// An agent with [`AGENT_LOOKUPS`] lookups stuck is refused another (429 `agent_dns_busy`),
/// even after it stopped waiting for them; another agent still resolves.
#[tokio::test]
async fn an_agent_past_its_cap_is_refused_and_another_agent_is_not() {
    let (resolver, hook, _release) = setup();
    let mut waits = Vec::new();
    for i in 0..AGENT_LOOKUPS {
        let r = resolver.clone();
        waits.push(tokio::spawn(async move {
            r.resolve(&format!("slow{i}.test"), 443, Some("greedy"), soon(300))
                .await
        }));
    }
    until_entered(&hook, AGENT_LOOKUPS).await;
    for w in waits {
        assert!(matches!(w.await, Ok(Err(ResolveError::TimedOut(_)))));
    }
    // Its callers gave up; the stuck threads still count.
    let refused = resolver
        .resolve("slow-more.test", 443, Some("greedy"), soon(100))
        .await;
    let Err(err) = refused else {
        panic!("an agent past its cap was not refused");
    };
    assert!(matches!(err, ResolveError::AgentBusy { .. }), "{err}");
    let failure = UpstreamFailure::from_dial_error(&err.into_io());
    assert_eq!(failure.kind(), "agent_dns_busy");
    let refusal = Refusal::from(failure);
    assert_eq!(refusal.status, http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refusal.code, "agent_dns_busy");
    assert_eq!(hook.entered.load(Ordering::SeqCst), AGENT_LOOKUPS);
    let other = resolver
        .resolve("fine.test", 443, Some("other"), soon(5_000))
        .await;
    assert!(other.is_ok(), "{other:?}");
}

/// Past [`GLOBAL_LOOKUPS`] stuck lookups in the process, the next is refused (503
/// `dns_busy`).
#[tokio::test]
async fn past_the_global_cap_a_lookup_is_refused() {
    let (resolver, hook, _release) = setup();
    let mut waits = Vec::new();
    for i in 0..GLOBAL_LOOKUPS {
        let r = resolver.clone();
        let agent = format!("agent{}", i % (GLOBAL_LOOKUPS / AGENT_LOOKUPS));
        waits.push(tokio::spawn(async move {
            r.resolve(&format!("slow{i}.test"), 443, Some(&agent), soon(300))
                .await
        }));
    }
    until_entered(&hook, GLOBAL_LOOKUPS).await;
    for w in waits {
        assert!(matches!(w.await, Ok(Err(ResolveError::TimedOut(_)))));
    }
    let refused = resolver
        .resolve("fine.test", 443, Some("quiet"), soon(100))
        .await;
    let Err(err) = refused else {
        panic!("a lookup past the global cap was not refused");
    };
    assert!(matches!(err, ResolveError::Busy), "{err}");
    let refusal = Refusal::from(UpstreamFailure::from_dial_error(&err.into_io()));
    assert_eq!(refusal.status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refusal.code, "dns_busy");
    // Airlock's own dials (no agent) have a pool of their own: agents' names cannot take it.
    let own = resolver.resolve("fine.test", 443, None, soon(300)).await;
    assert!(
        !matches!(own, Err(ResolveError::Busy)),
        "an own dial was refused: {own:?}"
    );
    // Once the stuck ones end, lookups run again.
    hook.release();
    let again = resolver
        .resolve("fine.test", 443, Some("quiet"), soon(5_000))
        .await;
    assert!(again.is_ok(), "{again:?}");
}

/// A name that failed is answered from the negative cache: no new lookup.
#[tokio::test]
async fn a_failed_name_is_not_looked_up_again_at_once() {
    let (resolver, hook, _release) = setup();
    let first = resolver
        .resolve("bad.test", 443, Some("bot"), soon(5_000))
        .await;
    assert!(
        matches!(first, Err(ResolveError::Failed { .. })),
        "{first:?}"
    );
    let second = resolver
        .resolve("BAD.test", 443, Some("bot"), soon(5_000))
        .await;
    assert!(
        matches!(second, Err(ResolveError::Cached { .. })),
        "{second:?}"
    );
    assert_eq!(hook.calls.load(Ordering::SeqCst), 1);
    // Airlock's own dials neither read nor fill the cache: one resolver hiccup must not fail
    // every send to a provider for seconds.
    for _ in 0..2 {
        let own = resolver.resolve("bad.test", 443, None, soon(5_000)).await;
        assert!(matches!(own, Err(ResolveError::Failed { .. })), "{own:?}");
    }
    assert_eq!(
        hook.calls.load(Ordering::SeqCst),
        3,
        "each own lookup asked"
    );
}
