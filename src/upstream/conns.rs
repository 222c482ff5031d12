//! What Airlock knows of its upstream connections, per target and pool: how many are live
//! (counted from the moment the connector hands one to a hyper-util pool, or an h2 connection
//! is made for a pool (see `h2conn`), until it is dropped),
//! and the pre-dialled ones waiting to be taken. From that, [`Conns::choose`] picks the pool a
//! request goes to: its own worker's when that has a connection (or a pre-dialled one ready),
//! else a worker's that has one (a warm connection is reused whichever worker the agent's
//! connection landed on), else its own (which dials). A pool whose request borrowed warms
//! itself in the background ([`Conns::warm_up`]), so its next request stays on its thread.
//!
//! A pre-dial ([`Conns::predial`]) is TCP + TLS only: no request byte is sent until a
//! permitted request takes the connection in the connector. It is owned by the agent
//! connection that caused it ([`PreDial`]): dropped with it (cancelled if still dialling), and
//! a ready one unused for [`PREDIAL_FRESH`] is dropped rather than used.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

/// A pre-dialled connection older than this is not used (the upstream may have closed it);
/// the request dials afresh instead.
pub const PREDIAL_FRESH: Duration = Duration::from_secs(10);

/// Which upstream: host (normalised) and port.
pub type Target = (String, u16);

/// The outcome of a pre-dial: when it ended, and the connection or why it failed.
pub type Dialled<C> = (Instant, io::Result<C>);

struct Waiting<C> {
    id: u64,
    pool: usize,
    ready: Arc<AtomicBool>,
    /// `None` once a request took it: the entry stays until that request counts the
    /// connection live, so the pool stays covered and no second dial starts meanwhile.
    rx: Option<oneshot::Receiver<Dialled<C>>>,
}

struct PerTarget<C> {
    live: Vec<u32>,
    waiting: Vec<Waiting<C>>,
}

/// Per host, then per port (looked up by `&str` without allocating).
type Targets<C> = HashMap<String, HashMap<u16, PerTarget<C>>>;

fn get<'a, C>(targets: &'a Targets<C>, (host, port): (&str, u16)) -> Option<&'a PerTarget<C>> {
    targets.get(host)?.get(&port)
}

fn get_mut<'a, C>(
    targets: &'a mut Targets<C>,
    (host, port): (&str, u16),
) -> Option<&'a mut PerTarget<C>> {
    targets.get_mut(host)?.get_mut(&port)
}

/// Live connections and waiting pre-dials, for `pools` pools.
pub struct Conns<C> {
    pools: usize,
    /// Pools `0..borrowable` lend their connections to other pools' first requests.
    borrowable: usize,
    targets: Mutex<Targets<C>>,
    next_id: AtomicU64,
}

impl<C: Send + 'static> Conns<C> {
    pub fn new(pools: usize, borrowable: usize) -> Arc<Self> {
        Arc::new(Self {
            pools: pools.max(1),
            borrowable,
            targets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// The pool a request from pool `own`'s worker to `target` goes to: its own if ready, else
    /// a lending pool with a live connection. `usable` says whether a pool's connections can
    /// serve the request (an h2 connection serves one agent only); it is asked outside the
    /// lock.
    pub fn choose(
        &self,
        own: usize,
        host: &str,
        port: u16,
        usable: impl Fn(usize) -> bool,
    ) -> usize {
        let own_live = {
            let Ok(targets) = self.targets.lock() else {
                return own;
            };
            let Some(t) = get(&targets, (host, port)) else {
                return own;
            };
            // A pre-dialled connection carries no request yet: it serves anyone.
            let predialled = t
                .waiting
                .iter()
                .any(|w| w.pool == own && w.ready.load(Ordering::Acquire));
            if predialled {
                return own;
            }
            t.live.get(own).copied().unwrap_or(0) > 0
        };
        if own_live && usable(own) {
            return own;
        }
        let lenders = self.lenders(&(host, port));
        lenders
            .into_iter()
            .find(|pool| *pool != own && usable(*pool))
            .unwrap_or(own)
    }

    /// The lending pools (not the approved calls') with a live connection to `target`.
    fn lenders(&self, target: &(&str, u16)) -> Vec<usize> {
        let Ok(targets) = self.targets.lock() else {
            return Vec::new();
        };
        let Some(t) = get(&targets, *target) else {
            return Vec::new();
        };
        let live = t.live.iter().take(self.borrowable).enumerate();
        live.filter(|(_, n)| **n > 0).map(|(p, _)| p).collect()
    }

    /// Counts a connection handed to pool `pool` until the returned guard is dropped.
    pub fn live(self: &Arc<Self>, pool: usize, target: &Target) -> Live<C> {
        if let Ok(mut targets) = self.targets.lock() {
            let t = self.entry(&mut targets, target);
            if let Some(n) = t.live.get_mut(pool) {
                *n += 1;
            }
        }
        Live {
            conns: self.clone(),
            pool,
            target: target.clone(),
        }
    }

    /// Whether pool `pool` has a live connection to `target` or a pre-dial under way for it.
    pub fn covered(&self, pool: usize, target: &Target) -> bool {
        let Ok(targets) = self.targets.lock() else {
            return true;
        };
        get(&targets, (&target.0, target.1)).is_some_and(|t| {
            t.live.get(pool).copied().unwrap_or(0) > 0 || t.waiting.iter().any(|w| w.pool == pool)
        })
    }

    /// Whether any pool that lends (not the approved calls') has a live connection to `target`
    /// that `usable` says can serve the request (asked outside the lock).
    pub fn warm_anywhere(&self, target: &Target, usable: impl Fn(usize) -> bool) -> bool {
        self.lenders(&(&target.0, target.1)).into_iter().any(usable)
    }

    /// Starts `dial` for pool `pool` unless the pool is already covered for `target`. The
    /// dial runs as a task on `on` (default: the current runtime); the guard cancels and
    /// forgets it.
    pub fn predial<F>(
        self: &Arc<Self>,
        pool: usize,
        target: Target,
        on: Option<&Handle>,
        dial: F,
    ) -> Option<PreDial<C>>
    where
        F: std::future::Future<Output = io::Result<C>> + Send + 'static,
    {
        let (id, ready, tx) = self.enlist(pool, &target)?;
        let task = async move {
            let outcome = dial.await;
            // Only a connection makes the pool ready; a failure waits for the pool's own turn.
            ready.store(outcome.is_ok(), Ordering::Release);
            let _ = tx.send((Instant::now(), outcome));
        };
        let task = match on {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        };
        Some(PreDial {
            conns: self.clone(),
            target,
            id,
            task: task.abort_handle(),
        })
    }

    /// Warms pool `pool` for `target` in the background, after one of its requests borrowed
    /// another pool's connection, so that its next one finds its own: `dial` runs on the
    /// current runtime unless the pool is covered. Owned by the pool, not by an agent
    /// connection: the connection waits for the pool's next request for [`PREDIAL_FRESH`],
    /// then is dropped; a failed dial is forgotten at once (no later request inherits its
    /// error). Returns whether a dial started.
    pub fn warm_up<F>(self: &Arc<Self>, pool: usize, target: Target, dial: F) -> bool
    where
        F: std::future::Future<Output = io::Result<C>> + Send + 'static,
    {
        let Some((id, ready, tx)) = self.enlist(pool, &target) else {
            return false;
        };
        let conns = self.clone();
        tokio::spawn(async move {
            match dial.await {
                Ok(c) => {
                    ready.store(true, Ordering::Release);
                    let _ = tx.send((Instant::now(), Ok(c)));
                    tokio::time::sleep(PREDIAL_FRESH).await;
                }
                Err(e) => tracing::debug!(error = %e, "warming an upstream pool failed"),
            }
            // Drops the connection with its channel if no request took it.
            conns.forget(&target, id);
        });
        true
    }

    /// Adds a waiting dial for pool `pool` unless the pool is covered for `target`.
    #[allow(clippy::type_complexity)]
    fn enlist(
        &self,
        pool: usize,
        target: &Target,
    ) -> Option<(u64, Arc<AtomicBool>, oneshot::Sender<Dialled<C>>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ready = Arc::new(AtomicBool::new(false));
        let (tx, rx) = oneshot::channel();
        let mut targets = self.targets.lock().ok()?;
        let t = self.entry(&mut targets, target);
        if t.live.get(pool).copied().unwrap_or(0) > 0 || t.waiting.iter().any(|w| w.pool == pool) {
            return None;
        }
        t.waiting.push(Waiting {
            id,
            pool,
            ready: ready.clone(),
            rx: Some(rx),
        });
        Some((id, ready, tx))
    }

    /// Removes waiting dial `id` (if no request took it) and tidies.
    fn forget(&self, target: &Target, id: u64) {
        if let Ok(mut targets) = self.targets.lock() {
            if let Some(t) = get_mut(&mut targets, (&target.0, target.1)) {
                t.waiting.retain(|w| w.id != id);
            }
            Conns::tidy(&mut targets, target);
        }
    }

    /// Takes pool `pool`'s pre-dial for `target`, if one is waiting, and its outcome once it
    /// ends (`None`: cancelled or too old to use). A connection comes counted live for the
    /// pool: the pool is covered from the pre-dial's start until that count ends, without a
    /// gap in which another pre-dial could start.
    pub async fn take(
        self: &Arc<Self>,
        pool: usize,
        target: &Target,
    ) -> Option<io::Result<(C, Live<C>)>> {
        let (id, rx) = {
            let mut targets = self.targets.lock().ok()?;
            let t = get_mut(&mut targets, (&target.0, target.1))?;
            let w = t
                .waiting
                .iter_mut()
                .find(|w| w.pool == pool && w.rx.is_some())?;
            (w.id, w.rx.take()?)
        };
        // Forgets the entry however the wait ends, including this future being dropped.
        let entry = Forget {
            conns: self,
            target,
            id,
        };
        let (ended, outcome) = rx.await.ok()?;
        if ended.elapsed() >= PREDIAL_FRESH {
            return None;
        }
        let conn = match outcome {
            Ok(conn) => conn,
            Err(e) => return Some(Err(e)),
        };
        let live = self.live(pool, target);
        drop(entry);
        Some(Ok((conn, live)))
    }

    fn entry<'a>(&self, targets: &'a mut Targets<C>, target: &Target) -> &'a mut PerTarget<C> {
        targets
            .entry(target.0.clone())
            .or_default()
            .entry(target.1)
            .or_insert_with(|| PerTarget {
                live: vec![0; self.pools],
                waiting: Vec::new(),
            })
    }

    /// Forgets a target with nothing live and nothing waiting.
    fn tidy(targets: &mut Targets<C>, (host, port): &Target) {
        let Some(ports) = targets.get_mut(host) else {
            return;
        };
        if ports
            .get(port)
            .is_some_and(|t| t.waiting.is_empty() && t.live.iter().all(|n| *n == 0))
        {
            ports.remove(port);
        }
        if ports.is_empty() {
            targets.remove(host);
        }
    }

    /// Live connections per pool to `target` (for tests and diagnostics).
    pub fn live_count(&self, target: &Target) -> Vec<u32> {
        self.targets
            .lock()
            .ok()
            .and_then(|t| get(&t, (&target.0, target.1)).map(|t| t.live.clone()))
            .unwrap_or_else(|| vec![0; self.pools])
    }
}

/// Forgets a taken pre-dial's entry when dropped.
struct Forget<'a, C: Send + 'static> {
    conns: &'a Conns<C>,
    target: &'a Target,
    id: u64,
}

impl<C: Send + 'static> Drop for Forget<'_, C> {
    fn drop(&mut self) {
        self.conns.forget(self.target, self.id);
    }
}

/// One live upstream connection, counted until dropped.
pub struct Live<C: Send + 'static> {
    conns: Arc<Conns<C>>,
    pool: usize,
    target: Target,
}

impl<C: Send + 'static> Drop for Live<C> {
    fn drop(&mut self) {
        if let Ok(mut targets) = self.conns.targets.lock() {
            if let Some(n) = get_mut(&mut targets, (&self.target.0, self.target.1))
                .and_then(|t| t.live.get_mut(self.pool))
            {
                *n = n.saturating_sub(1);
            }
            Conns::tidy(&mut targets, &self.target);
        }
    }
}

/// A pre-dial, owned by the agent connection that caused it: dropping it cancels the dial and
/// drops the connection if no request took it.
pub struct PreDial<C: Send + 'static> {
    conns: Arc<Conns<C>>,
    target: Target,
    id: u64,
    task: AbortHandle,
}

impl<C: Send + 'static> Drop for PreDial<C> {
    fn drop(&mut self) {
        self.task.abort();
        self.conns.forget(&self.target, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        ("api.example".to_string(), 443)
    }

    #[tokio::test]
    async fn a_request_takes_its_pools_predial_once() {
        let conns = Conns::<u32>::new(3, 3);
        let guard = conns
            .predial(1, target(), None, async { Ok(7) })
            .expect("started");
        assert!(
            conns.predial(1, target(), None, async { Ok(8) }).is_none(),
            "one pre-dial per pool and target"
        );
        assert!(conns.covered(1, &target()));
        assert!(!conns.covered(2, &target()));
        assert!(
            !conns.warm_anywhere(&target(), |_| true),
            "waiting is not live"
        );
        assert!(conns.take(2, &target()).await.is_none(), "another pool's");
        let (conn, live) = conns
            .take(1, &target())
            .await
            .expect("outcome")
            .expect("ok");
        assert_eq!(conn, 7);
        assert_eq!(conns.live_count(&target()), vec![0, 1, 0], "counted live");
        assert!(conns.take(1, &target()).await.is_none(), "taken once");
        drop(live);
        drop(guard);
        assert!(!conns.covered(1, &target()));
    }

    /// The approved calls' pool (past `borrowable`) lends nothing: an agent's stalled streams
    /// must never share its connection.
    #[tokio::test]
    async fn a_pool_past_the_borrowable_ones_is_never_lent() {
        let conns = Conns::<u32>::new(3, 2);
        let _guard = conns
            .predial(2, target(), None, async { Ok(7) })
            .expect("started");
        let (_, _live) = conns
            .take(2, &target())
            .await
            .expect("outcome")
            .expect("ok");
        assert_eq!(conns.live_count(&target()), vec![0, 0, 1]);
        assert_eq!(conns.choose(1, "api.example", 443, |_| true), 1, "not lent");
        assert!(
            !conns.warm_anywhere(&target(), |_| true),
            "no agent pool is warm: agents pre-dial"
        );
        let _other = conns
            .predial(0, target(), None, async { Ok(8) })
            .expect("started");
        let (_, _live0) = conns
            .take(0, &target())
            .await
            .expect("outcome")
            .expect("ok");
        assert_eq!(
            conns.choose(1, "api.example", 443, |_| true),
            0,
            "an agent pool lends"
        );
    }

    #[tokio::test]
    async fn a_dropped_predial_is_cancelled_and_forgotten() {
        let conns = Conns::<u32>::new(2, 2);
        let guard = conns
            .predial(0, target(), None, std::future::pending())
            .expect("started");
        drop(guard);
        assert!(!conns.covered(0, &target()));
        assert!(conns.take(0, &target()).await.is_none());
    }

    #[tokio::test]
    async fn a_failed_predial_hands_its_error_to_the_first_request() {
        let conns = Conns::<u32>::new(1, 1);
        let _guard = conns
            .predial(0, target(), None, async {
                Err(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"))
            })
            .expect("started");
        let got = conns.take(0, &target()).await.expect("outcome");
        assert_eq!(
            got.err().map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionRefused)
        );
    }

    #[test]
    fn a_predial_runs_on_the_runtime_it_is_given() {
        let other = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("other-runtime")
            .enable_all()
            .build()
            .expect("runtime");
        let here = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        here.block_on(async {
            let conns = Conns::<String>::new(1, 1);
            let _guard = conns
                .predial(0, target(), Some(other.handle()), async {
                    Ok(std::thread::current().name().unwrap_or("").to_string())
                })
                .expect("started");
            let ran_on = conns.take(0, &target()).await.map(|r| r.ok().map(|c| c.0));
            assert_eq!(ran_on, Some(Some("other-runtime".to_string())));
        });
    }

    /// A pool warmed after a borrow finds its own connection ready; a second warm-up of a
    /// covered pool does not dial; an unused one is dropped after PREDIAL_FRESH, a failed one
    /// at once (no later request inherits its error).
    #[tokio::test(start_paused = true)]
    async fn a_warm_up_belongs_to_the_pool_and_expires() {
        let conns = Conns::<u32>::new(2, 2);
        let _borrowed = conns.live(1, &target());
        assert!(conns.warm_up(0, target(), async { Ok(5) }));
        assert!(!conns.warm_up(0, target(), async { Ok(6) }), "covered");
        tokio::task::yield_now().await;
        assert_eq!(
            conns.choose(0, "api.example", 443, |_| true),
            0,
            "its own is ready"
        );
        assert_eq!(
            conns.take(0, &target()).await.map(|r| r.ok().map(|c| c.0)),
            Some(Some(5))
        );

        assert!(conns.warm_up(0, target(), async { Ok(7) }));
        tokio::time::sleep(PREDIAL_FRESH + Duration::from_millis(1)).await;
        assert!(!conns.covered(0, &target()), "unused: forgotten");
        assert!(conns.take(0, &target()).await.is_none());

        assert!(conns.warm_up(0, target(), async {
            Err(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"))
        }));
        tokio::task::yield_now().await;
        assert!(!conns.covered(0, &target()), "failed: forgotten at once");
        assert_eq!(
            conns.choose(0, "api.example", 443, |_| true),
            1,
            "borrows again"
        );
    }

    /// Regression: `take` removed the entry before the dial ended and the connection was
    /// counted live only after, so a CONNECT in between started a second dial to the target.
    #[tokio::test]
    async fn a_predial_being_taken_keeps_its_pool_covered() {
        let conns = Conns::<u32>::new(2, 2);
        let (finish, finished) = oneshot::channel::<()>();
        let _guard = conns
            .predial(1, target(), None, async move {
                let _ = finished.await;
                Ok(3)
            })
            .expect("started");
        let taking = tokio::spawn({
            let conns = conns.clone();
            async move { conns.take(1, &target()).await }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(conns.covered(1, &target()), "covered while it dials");
        assert!(
            conns.predial(1, target(), None, async { Ok(4) }).is_none(),
            "no second dial while one is being taken"
        );
        let _ = finish.send(());
        let got = taking.await.expect("task").expect("outcome").expect("ok");
        assert_eq!(got.0, 3);
        assert!(conns.covered(1, &target()), "covered by the live count");
        drop(got);
        assert!(!conns.covered(1, &target()));

        let _guard = conns
            .predial(0, target(), None, std::future::pending())
            .expect("started");
        let taking = tokio::spawn({
            let conns = conns.clone();
            async move { conns.take(0, &target()).await.is_some() }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(conns.covered(0, &target()));
        taking.abort();
        let _ = taking.await;
        assert!(!conns.covered(0, &target()), "an abandoned take forgets it");
    }

    #[test]
    fn requests_go_to_a_warm_pool_when_their_own_is_cold() {
        let conns = Conns::<u32>::new(3, 3);
        assert_eq!(
            conns.choose(1, "api.example", 443, |_| true),
            1,
            "nothing anywhere"
        );
        let live = conns.live(2, &target());
        assert!(conns.warm_anywhere(&target(), |_| true));
        assert_eq!(
            conns.choose(1, "api.example", 443, |_| true),
            2,
            "borrow the warm one"
        );
        assert_eq!(
            conns.choose(1, "api.example", 8443, |_| true),
            1,
            "another port"
        );
        let own = conns.live(1, &target());
        assert_eq!(
            conns.choose(1, "api.example", 443, |_| true),
            1,
            "own once warm"
        );
        drop((live, own));
        assert_eq!(conns.live_count(&target()), vec![0, 0, 0]);
        assert_eq!(conns.choose(1, "api.example", 443, |_| true), 1);
    }
}
