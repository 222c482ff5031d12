//! Per-core connection runtimes: `proxy.workers` single-threaded Tokio runtimes, one OS thread
//! each, with no work stealing (the model of nginx, Envoy and pingora's no-steal runtime). Every
//! worker accepts from the one listening socket (its own descriptor of it, in its own reactor),
//! so a new connection is taken by the first worker free to; it stays there unless that worker
//! serves more connections than another, which then gets it. A connection, every task it
//! spawns (interception, tunnels), its timers and its upstream pool stay on one thread, so the
//! request path has no cross-thread wake-ups.
//! `workers = 0` serves connections on the caller's runtime instead.
//!
//! The price: a request's CPU work (rule evaluation of a buffered body, leaf minting) delays
//! the other connections of its worker until it yields. Store, audit and fsync work never runs
//! here, nor on a worker's blocking pool: it goes to the gate's (`Gate::spawn_blocking`, the
//! main runtime's pool of `airlock serve`), which no worker feeds. Name lookups run on the
//! resolver's own capped threads (`upstream::resolve`), never on a blocking pool. So a
//! worker's own blocking pool has no known user; it is capped at [`WORKER_BLOCKING_THREADS`]
//! all the same, instead of tokio's 512.
//!
//! The worker threads stop when the owning [`Workers`] is dropped (the last `Proxy` handle);
//! graceful shutdown drains through `Lifecycle::tasks` before that happens.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Blocking threads a worker runtime may start (nothing Airlock does should need them: see
/// the module docs).
pub const WORKER_BLOCKING_THREADS: usize = 8;

/// How often a worker's anchor timer fires (see [`keep_a_timer_due`]).
const ANCHOR_TICK: std::time::Duration = std::time::Duration::from_millis(500);

/// Keeps a timer due within [`ANCHOR_TICK`] in the worker's timer wheel. Tokio wakes its own
/// driver (an eventfd write, then an extra `epoll_wait`) whenever a timer is registered while
/// no earlier one is due; hyper registers a header-read timer for every request head, so on a
/// busy worker with no other timer that cost two system calls per request. Two wake-ups a
/// second per idle worker is the price.
async fn keep_a_timer_due() {
    let mut tick = tokio::time::interval(ANCHOR_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// The set of worker runtimes (empty: connections run on the caller's runtime).
pub struct Workers {
    workers: Arc<[Worker]>,
    stop: CancellationToken,
}

/// One worker: its runtime and how many connections it is serving.
struct Worker {
    handle: Handle,
    open: Arc<AtomicUsize>,
}

/// Counts a connection against its worker for as long as it is served: the serving code holds
/// it, including past an upgrade (a CONNECT's interception or tunnel outlives the front
/// connection that [`Seat::serve`] started). `None` without workers.
pub struct Open(Option<Arc<AtomicUsize>>);

impl Open {
    fn on(worker: &Worker) -> Open {
        worker.open.fetch_add(1, Ordering::Relaxed);
        Open(Some(worker.open.clone()))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(open) = &self.0 {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Workers {
    /// Starts `count` worker threads, each driving its own current-thread runtime. On an
    /// error the threads already started stop again.
    pub fn start(count: usize) -> io::Result<Workers> {
        let stop = CancellationToken::new();
        let started = stop.clone().drop_guard();
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            // The runtime is built on its own thread, never dropped on the caller's (tokio
            // panics when a runtime is dropped inside another, as a failed spawn would do).
            let (built, handle) = std::sync::mpsc::sync_channel(1);
            let stopped = stop.clone();
            std::thread::Builder::new()
                .name(format!("airlock-worker-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .max_blocking_threads(WORKER_BLOCKING_THREADS)
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = built.send(Err(e));
                            return;
                        }
                    };
                    if built.send(Ok(rt.handle().clone())).is_err() {
                        return;
                    }
                    crate::upstream::enter_worker(i + 1);
                    rt.block_on(async {
                        tokio::select! {
                            _ = stopped.cancelled() => {}
                            _ = keep_a_timer_due() => {}
                        }
                    });
                    // Dropping the runtime here drops whatever tasks were still on it.
                })?;
            let handle = handle
                .recv()
                .map_err(|_| io::Error::other("a worker thread ended before its runtime ran"))??;
            workers.push(Worker {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
            });
        }
        started.disarm();
        Ok(Workers {
            workers: workers.into(),
            stop,
        })
    }

    /// No worker threads: everything runs on the caller's runtime.
    pub fn inline() -> Workers {
        Workers {
            workers: Arc::new([]),
            stop: CancellationToken::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// Connections each worker is serving now.
    pub fn open_connections(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .collect()
    }

    /// The least busy worker other than the calling thread's, for side work that should run
    /// beside this worker's (a pre-dial's TLS handshake beside the agent's). `None` with
    /// fewer than two workers.
    pub fn other(&self) -> Option<&Handle> {
        if self.workers.len() < 2 {
            return None;
        }
        let me = Self::current();
        self.workers
            .iter()
            .enumerate()
            .filter(|(i, _)| i + 1 != me)
            .min_by_key(|(_, w)| w.open.load(Ordering::Relaxed))
            .map(|(_, w)| &w.handle)
    }

    /// 1-based index of the worker running the calling thread, 0 outside every worker.
    pub fn current() -> usize {
        crate::upstream::current_worker()
    }

    /// Runs `accept` on every worker, each over its own descriptor of the one listening socket,
    /// registered with that worker's reactor: a new connection is taken by whichever worker gets
    /// to it first (an idle one ahead of a busy one), with no second wake-up, and is served
    /// there unless that worker serves more connections than another ([`Seat::serve`]).
    /// Without workers `accept` runs on the caller's runtime. Returns when every loop has ended.
    pub async fn accept_on_each<F, Fut>(&self, listener: TcpListener, accept: F)
    where
        F: Fn(TcpListener, Seat) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.workers.is_empty() {
            return accept(listener, Seat::inline()).await;
        }
        // Out of this runtime's reactor: its thread would otherwise wake for every connection.
        let shared = match listener.into_std() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "could not hand the listener to the workers; not accepting");
                return;
            }
        };
        let mut loops = Vec::with_capacity(self.workers.len());
        for (i, worker) in self.workers.iter().enumerate() {
            let own = match shared.try_clone() {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "a worker could not share the listener; it accepts nothing");
                    continue;
                }
            };
            let seat = Seat {
                workers: self.workers.clone(),
                mine: i,
            };
            let accept = accept.clone();
            loops.push(worker.handle.spawn(async move {
                match TcpListener::from_std(own) {
                    Ok(l) => accept(l, seat).await,
                    Err(e) => tracing::error!(error = %e, "a worker could not register the listener; it accepts nothing"),
                }
            }));
        }
        for l in loops {
            // A loop ends on shutdown, or is dropped with its worker's runtime.
            let _ = l.await;
        }
    }
}

/// Where an accept loop runs: on one of the workers, or on the caller's runtime (no workers).
pub struct Seat {
    workers: Arc<[Worker]>,
    mine: usize,
}

impl Seat {
    fn inline() -> Seat {
        Seat {
            workers: Arc::new([]),
            mine: 0,
        }
    }

    /// Serves a connection accepted here: on this worker, unless it serves more connections
    /// than the least busy one, which then gets it (the socket moves to that worker's reactor).
    /// A burst of long-lived connections thus spreads evenly, while a connection accepted by a
    /// worker no busier than the rest never leaves it. `serve` gets the connection's [`Open`]
    /// count and keeps it for as long as the connection, or what it became, is served.
    pub fn serve<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream, Open) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(mine) = self.workers.get(self.mine) else {
            tokio::spawn(serve(stream, Open(None)));
            return;
        };
        let load = |w: &Worker| w.open.load(Ordering::Relaxed);
        let target = self
            .workers
            .iter()
            .min_by_key(|w| load(w))
            .filter(|w| load(w) < load(mine))
            .unwrap_or(mine);
        let open = Open::on(target);
        if std::ptr::eq(target, mine) {
            tokio::spawn(serve(stream, open));
            return;
        }
        let std = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand a connection to another worker; closed");
                return;
            }
        };
        target.handle.spawn(async move {
            match TcpStream::from_std(std) {
                Ok(s) => serve(s, open).await,
                Err(e) => tracing::warn!(error = %e, "worker could not register a connection"),
            }
        });
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An accept loop for the tests: each connection is told the 1-based index of the worker
    /// serving it; a client that then sends `b` blocks that worker's thread for a while, any
    /// other byte or a close ends the connection.
    async fn tell_worker(listener: TcpListener, seat: Seat) {
        while let Ok((s, _)) = listener.accept().await {
            seat.serve(s, |mut s, open| async move {
                let _open = open;
                let _ = s.write_all(&[Workers::current() as u8]).await;
                let mut b = [0u8; 1];
                if let Ok(1) = s.read(&mut b).await {
                    if b[0] == b'b' {
                        std::thread::sleep(std::time::Duration::from_millis(600));
                    }
                }
            });
        }
    }

    /// Runs `test` against a loopback listener that `workers` accept on ([`tell_worker`]);
    /// the accept loops must outlive it.
    async fn while_accepting<T>(workers: &Workers, test: impl FnOnce(std::net::SocketAddr) -> T)
    where
        T: Future<Output = ()>,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::select! {
            _ = workers.accept_on_each(listener, tell_worker) => panic!("the accept loops ended"),
            _ = test(addr) => {}
        }
    }

    async fn worker_of(addr: std::net::SocketAddr) -> (tokio::net::TcpStream, u8) {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut b = [0u8; 1];
        client.read_exact(&mut b).await.unwrap();
        (client, b[0])
    }

    /// While one worker's thread is busy, a new connection is accepted and served by another;
    /// each counts the connections it serves.
    #[tokio::test]
    async fn a_busy_worker_leaves_new_connections_to_another() {
        let workers = &Workers::start(2).expect("workers");
        while_accepting(workers, |addr| async move {
            let (mut first, busy) = worker_of(addr).await;
            assert!(busy == 1 || busy == 2, "served by worker {busy}");
            first.write_all(b"b").await.unwrap();
            // Give the worker time to start its blocking wait.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let (_other_conn, other) = worker_of(addr).await;
            assert_eq!(other, 3 - busy, "the busy worker cannot have accepted it");
            assert_eq!(workers.open_connections(), [1, 1], "each serves its own");
            drop(first);
            assert_eq!(Workers::current(), 0, "the test's own thread is no worker");
        })
        .await;
    }

    /// Long-lived connections opened one after another spread evenly: a worker that serves
    /// more than another hands the new one over.
    #[tokio::test]
    async fn connections_spread_evenly_over_the_workers() {
        let workers = &Workers::start(2).expect("workers");
        while_accepting(workers, |addr| async move {
            let mut held = Vec::new();
            for k in 1..=3 {
                for _ in 0..2 {
                    held.push(worker_of(addr).await);
                }
                assert_eq!(workers.open_connections(), [k, k]);
            }
            let mut served: Vec<u8> = held.iter().map(|(_, w)| *w).collect();
            served.sort();
            assert_eq!(served, [1, 1, 1, 2, 2, 2]);
        })
        .await;
    }

    /// Side work asked for from one worker runs on the other; with fewer than two workers
    /// there is no other.
    #[tokio::test]
    async fn side_work_goes_to_another_worker() {
        assert!(Workers::inline().other().is_none());
        assert!(Workers::start(1).expect("one worker").other().is_none());
        let workers = Arc::new(Workers::start(2).expect("workers"));
        for first in 0..2 {
            let w = workers.clone();
            let ran_on = workers.workers[first]
                .handle
                .spawn(async move {
                    let other = w.other().expect("another worker").clone();
                    other.spawn(async { Workers::current() }).await
                })
                .await
                .expect("spawned")
                .expect("ran");
            assert_eq!(ran_on, 2 - first, "asked from worker {}", first + 1);
        }
    }

    #[tokio::test]
    async fn inline_workers_accept_on_the_callers_runtime() {
        while_accepting(&Workers::inline(), |addr| async move {
            let (_c, w) = worker_of(addr).await;
            assert_eq!(w, 0);
        })
        .await;
    }
}
