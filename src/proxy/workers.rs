//! Per-core connection runtimes. Each accepted agent connection goes to the least busy of
//! `proxy.workers` single-threaded Tokio runtimes (fewest open connections, ties in turn), one
//! OS thread each, with no work stealing (the model of nginx, Envoy and pingora's no-steal
//! runtime). A connection, every task it spawns (interception, tunnels), its timers and its
//! upstream pool stay on one thread, so the request path has no cross-thread wake-ups.
//! `workers = 0` serves connections on the caller's runtime instead.
//!
//! The price: a request's CPU work (rule evaluation of a buffered body, leaf minting) delays
//! the other connections of its worker until it yields. Store, audit and fsync work never runs
//! here; it goes to the blocking pool (`spawn_blocking`).
//!
//! The worker threads stop when the owning [`Workers`] is dropped (the last `Proxy` handle);
//! graceful shutdown drains through `Lifecycle::tasks` before that happens.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The set of worker runtimes (empty: connections run on the caller's runtime).
pub struct Workers {
    workers: Vec<Worker>,
    next: AtomicUsize,
    stop: CancellationToken,
}

/// One worker: its runtime and how many connections it is serving.
struct Worker {
    handle: Handle,
    open: Arc<AtomicUsize>,
}

/// Counts a connection against its worker for as long as it is served (dropped on any exit).
struct Open(Arc<AtomicUsize>);

impl Open {
    fn on(worker: &Worker) -> Open {
        worker.open.fetch_add(1, Ordering::Relaxed);
        Open(worker.open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `count` worker threads, each driving its own current-thread runtime. On an
    /// error the threads already started stop again.
    pub fn start(count: usize) -> io::Result<Workers> {
        let mut workers = Workers::inline();
        for i in 0..count {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let stopped = workers.stop.clone();
            std::thread::Builder::new()
                .name(format!("airlock-worker-{i}"))
                .spawn(move || {
                    crate::upstream::enter_worker(i + 1);
                    rt.block_on(stopped.cancelled());
                    // Dropping the runtime here drops whatever tasks were still on it.
                })?;
            workers.workers.push(Worker {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
            });
        }
        Ok(workers)
    }

    /// No worker threads: everything runs on the caller's runtime.
    pub fn inline() -> Workers {
        Workers {
            workers: Vec::new(),
            next: AtomicUsize::new(0),
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

    /// 1-based index of the worker running the calling thread, 0 outside every worker.
    pub fn current() -> usize {
        crate::upstream::current_worker()
    }

    /// Serves an accepted connection on the worker with the fewest open connections (ties go
    /// round-robin). The socket is moved out of the accepting runtime's reactor and registered
    /// with the worker's own.
    pub fn serve<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(worker) = self.least_busy() else {
            tokio::spawn(serve(stream));
            return;
        };
        let std = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand a connection to a worker; closed");
                return;
            }
        };
        let open = Open::on(worker);
        worker.handle.spawn(async move {
            let _open = open;
            match TcpStream::from_std(std) {
                Ok(s) => serve(s).await,
                Err(e) => tracing::warn!(error = %e, "worker could not register a connection"),
            }
        });
    }

    /// The worker with the fewest open connections, searched from a rotating start so ties
    /// take turns; `None` without workers.
    fn least_busy(&self) -> Option<&Worker> {
        let n = self.workers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        (0..n)
            .map(|k| &self.workers[(start + k) % n])
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
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

    /// Accepts one connection on `listener` and serves it on `workers`: the server writes the
    /// 1-based worker index, then holds the connection until the client closes it.
    async fn one(workers: &Workers, listener: &tokio::net::TcpListener) -> (TcpStream, u8) {
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        workers.serve(server, |mut s| async move {
            let me = Workers::current() as u8;
            let _ = s.write_all(&[me]).await;
            let _ = s.read(&mut [0u8; 1]).await;
        });
        let mut b = [0u8; 1];
        client.read_exact(&mut b).await.unwrap();
        (client, b[0])
    }

    /// Waits until the workers serve exactly `want` connections each.
    async fn settle(workers: &Workers, want: &[usize]) {
        for _ in 0..500 {
            if workers.open_connections() == want {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!(
            "open connections {:?}, want {want:?}",
            workers.open_connections()
        );
    }

    #[tokio::test]
    async fn connections_go_to_the_least_busy_worker() {
        let workers = Workers::start(2).expect("workers");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Idle workers take turns.
        let (long, first) = one(&workers, &listener).await;
        let (c2, second) = one(&workers, &listener).await;
        assert_eq!((first, second), (1, 2));
        settle(&workers, &[1, 1]).await;
        drop(c2);
        settle(&workers, &[1, 0]).await;
        // While the first connection stays open, new ones go to the other worker.
        for _ in 0..3 {
            let (c, w) = one(&workers, &listener).await;
            assert_eq!(w, 2, "the busy worker is skipped");
            drop(c);
            settle(&workers, &[1, 0]).await;
        }
        drop(long);
        settle(&workers, &[0, 0]).await;
        assert_eq!(Workers::current(), 0, "the test's own thread is no worker");
    }

    #[tokio::test]
    async fn inline_workers_serve_on_the_callers_runtime() {
        let workers = Workers::inline();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        workers.serve(server, |mut s| async move {
            let _ = s.write_all(&[Workers::current() as u8]).await;
        });
        let mut b = [9u8; 1];
        client.read_exact(&mut b).await.unwrap();
        assert_eq!(b[0], 0);
    }
}
