//! Socket helpers: TCP_NODELAY and an activity-tracking IO wrapper used for idle timeouts and
//! for peers that stop reading.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Last time bytes moved on a connection, and since when a write toward the peer has been
/// waiting for it to read; shared between the IO wrapper and its watchdog.
#[derive(Clone)]
pub struct Activity {
    origin: Instant,
    state: Arc<State>,
}

struct State {
    last_ms: AtomicU64,
    /// Milliseconds since `origin`, plus one, when a write found the peer not reading; 0 while
    /// writes go through.
    stuck_since: AtomicU64,
}

/// Why a connection's watchdog fired.
#[derive(Debug, PartialEq, Eq)]
pub enum Quiet {
    /// No byte moved either way for the limit.
    Idle,
    /// A write toward the peer has waited the limit for it to read.
    Stuck,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            state: Arc::new(State {
                last_ms: AtomicU64::new(0),
                stuck_since: AtomicU64::new(0),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.state.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn wrote(&self) {
        self.touch();
        self.unstuck();
    }

    /// The peer took what was waiting (a flush that had to wait went through).
    fn unstuck(&self) {
        if self.state.stuck_since.load(Ordering::Relaxed) != 0 {
            self.state.stuck_since.store(0, Ordering::Relaxed);
        }
    }

    fn write_waits(&self) {
        if self.state.stuck_since.load(Ordering::Relaxed) == 0 {
            self.state
                .stuck_since
                .store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// Time since bytes last moved.
    pub fn idle_for(&self) -> Duration {
        let last = self.state.last_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }

    /// How long the current write toward the peer has waited for it to read (zero if none).
    fn stuck_for(&self) -> Duration {
        match self.state.stuck_since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis((self.now_ms() + 1).saturating_sub(since)),
        }
    }

    /// Resolves once the connection has been idle for `limit`.
    pub async fn idle(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }

    /// Resolves once no byte moved for `limit`, or a write toward the peer waited that long
    /// (a peer that stopped reading while it still sends).
    pub async fn quiet(&self, limit: Duration) -> Quiet {
        loop {
            let (idle, stuck) = (self.idle_for(), self.stuck_for());
            if stuck >= limit {
                return Quiet::Stuck;
            }
            if idle >= limit {
                return Quiet::Idle;
            }
            tokio::time::sleep(limit - idle.max(stuck)).await;
        }
    }

    /// Resolves once a write toward the peer has waited `limit` for it to read.
    pub async fn stuck(&self, limit: Duration) {
        loop {
            let stuck = self.stuck_for();
            if stuck >= limit {
                return;
            }
            tokio::time::sleep(limit - stuck).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// Wraps a stream and records activity on every successful read or write.
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Activity) -> Self {
        activity.touch();
        Self { inner, activity }
    }

    /// Records a write's result: bytes taken, or the peer not reading (`Pending`).
    fn saw_write(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.wrote(),
            Poll::Pending => self.activity.write_waits(),
            Poll::Ready(_) => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.saw_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.saw_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        match &r {
            Poll::Pending => self.activity.write_waits(),
            Poll::Ready(Ok(())) => self.activity.unstuck(),
            Poll::Ready(Err(_)) => {}
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A write that has to wait for the peer marks the connection stuck; once the peer reads
    /// and a flush goes through, it no longer is, so a later quiet spell (an approval awaited)
    /// reads as idle, never as a peer that stopped reading.
    #[tokio::test]
    async fn a_write_that_waited_is_forgotten_once_the_peer_reads() {
        let (near, mut far) = tokio::io::duplex(16);
        let activity = Activity::new();
        let mut t = Tracked::new(near, activity.clone());
        let stuck = |a: &Activity| a.state.stuck_since.load(Ordering::Relaxed) != 0;
        t.write_all(&[0u8; 16]).await.expect("fill the pipe");
        assert!(!stuck(&activity));
        let waited = tokio::time::timeout(Duration::from_millis(50), t.write_all(&[1u8; 8])).await;
        assert!(waited.is_err(), "the pipe is full: the write waits");
        assert!(stuck(&activity));
        let mut buf = [0u8; 16];
        far.read_exact(&mut buf).await.expect("the peer reads");
        t.flush().await.expect("flush");
        assert!(!stuck(&activity), "a flush that went through clears it");
        assert_eq!(activity.stuck_for(), Duration::ZERO);
    }
}
