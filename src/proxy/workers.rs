//! Per-core connection runtimes. Accepted agent connections are spread round-robin over
//! `proxy.workers` single-threaded Tokio runtimes, one OS thread each, with no work stealing
//! (the model of nginx, Envoy and pingora's no-steal runtime). A connection, every task it
//! spawns (interception, tunnels), its timers and its upstream pool stay on one thread, so the
//! request path has no cross-thread wake-ups. `workers = 0` serves connections on the
//! caller's runtime instead.
//!
//! The price: a request's CPU work (rule evaluation of a buffered body, leaf minting) delays
//! the other connections of its worker until it yields. Store, audit and fsync work never runs
//! here; it goes to the blocking pool (`spawn_blocking`).
//!
//! The worker threads stop when the owning [`Workers`] is dropped (the last `Proxy` handle);
//! graceful shutdown drains through `Lifecycle::tasks` before that happens.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    /// 1-based index of the worker this thread runs; 0 on any other thread.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The set of worker runtimes (empty: connections run on the caller's runtime).
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
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
                    WORKER.with(|w| w.set(i + 1));
                    rt.block_on(stopped.cancelled());
                    // Dropping the runtime here drops whatever tasks were still on it.
                })?;
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    /// No worker threads: everything runs on the caller's runtime.
    pub fn inline() -> Workers {
        Workers {
            handles: Vec::new(),
            next: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// 1-based index of the worker running the calling thread, 0 outside every worker.
    pub fn current() -> usize {
        WORKER.with(|w| w.get())
    }

    /// Serves an accepted connection on the next worker (round-robin). The socket is moved
    /// out of the accepting runtime's reactor and registered with the worker's own.
    pub fn serve<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.handles.is_empty() {
            tokio::spawn(serve(stream));
            return;
        }
        let std = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand a connection to a worker; closed");
                return;
            }
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(async move {
            match TcpStream::from_std(std) {
                Ok(s) => serve(s).await,
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

/// The worker count when `proxy.workers` is unset: one per core this process may run on.
pub fn auto_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_run_on_the_workers_round_robin() {
        let workers = Workers::start(2).expect("workers");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            workers.serve(server, |mut s| async move {
                let me = Workers::current() as u8;
                let _ = s.write_all(&[me]).await;
            });
            let mut b = [0u8; 1];
            client.read_exact(&mut b).await.unwrap();
            seen.push(b[0]);
        }
        assert_eq!(seen, vec![1, 2, 1, 2]);
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
