//! Bounds on the admin listener, so that slow, oversized or flooding clients hold a bounded
//! number of sockets, tasks and bytes and cannot starve the proxy listener (which has its own
//! listener, semaphore and worker runtimes):
//!
//! - [`Gatekeeper::global_slot`] and [`Gatekeeper::client_slot`]: at most
//!   `admin.max_connections` connections, and `admin.per_ip_connections` from one client address.
//!   Over a cap, a connection waits for a slot while the connections holding it keep ending (a
//!   burst of quick calls is served); once none has ended for [`ADMIT_WAIT`] it gets 503 (global)
//!   or 429 (per client) with one non-blocking write and is closed. Waiting for a global slot
//!   happens before `accept`, in the kernel's listen backlog; a connection waiting for its
//!   client's slot holds a global one, so fds and tasks stay within `max_connections`.
//! - [`Gatekeeper::allow_unauthenticated`]: a token bucket per client address for requests made
//!   without credentials (sign-in, a one-click link whose signature does not verify, a missing
//!   or wrong token); 429 beyond. A validly signed link is not charged (`unauthenticated`).
//! - [`Watch`] and [`Watched`]: the body read deadline. A request's body must have arrived within
//!   `admin.body_read_timeout` of its head, whichever handler reads it (the admin API's JSON or
//!   the dashboard's forms); otherwise the request is answered 408 and the connection closes.
//! - [`read_body`]: the one capped body reader (413 beyond `MAX_ADMIN_BODY`, a declared
//!   `Content-Length` over the cap refused before a byte is read).
//! - [`Backoff`]: a failing `accept` (file descriptors exhausted) pauses, longer each time,
//!   instead of spinning.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::AdminConfig;

/// The body cap of every admin route (API JSON and dashboard forms alike).
pub(super) const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Client addresses whose request rate is remembered at once; beyond it idle ones are evicted,
/// and if none is idle a new address is refused (429) until one is.
const MAX_TRACKED_CLIENTS: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The unit a per-client limit counts: an IPv4 address, or an IPv6 /64 (what one host or one
/// customer typically holds; counting single IPv6 addresses would make the limit free to evade).
/// Every loopback address is one client: a local process may connect from any of 127.0.0.0/8.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    if ip.to_canonical().is_loopback() {
        return IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    }
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// How long a connection over a cap waits for a slot when no slot has been freed: connections
/// that make progress (a burst of quick calls) queue and are served, while a cap held by stuck or
/// slow clients refuses within this, and at once from then on.
pub(super) const ADMIT_WAIT: Duration = Duration::from_secs(2);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// `admin.max_connections` reached: 503.
    Full,
    /// `admin.per_ip_connections` reached for this client: 429.
    PerClient,
}

/// The admin listener's connection slots, per-client slots and request buckets.
pub(super) struct Gatekeeper {
    slots: Arc<Semaphore>,
    /// When a connection last ended (a slot was freed).
    released: Mutex<Instant>,
    per_ip_max: usize,
    /// Clients with a connection served or waiting; so bounded by `max_connections`.
    clients: Mutex<HashMap<IpAddr, Client>>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    rate: f64,
    burst: f64,
    pub(super) header_read_timeout: Duration,
    pub(super) body_read_timeout: Duration,
    refusals: AtomicU64,
}

struct Client {
    slots: Arc<Semaphore>,
    /// Connections served or waiting: the entry goes when the last one does.
    users: usize,
    released: Instant,
}

/// A connection's place in its client's entry (served or waiting); dropping it leaves.
struct ClientUse {
    key: IpAddr,
    gk: Arc<Gatekeeper>,
}

impl Drop for ClientUse {
    fn drop(&mut self) {
        let mut m = lock(&self.gk.clients);
        if let Some(c) = m.get_mut(&self.key) {
            c.users = c.users.saturating_sub(1);
            if c.users == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// A served connection's global and per-client slots; dropping it frees both.
pub(super) struct Slot {
    global: Option<OwnedSemaphorePermit>,
    client: Option<OwnedSemaphorePermit>,
    user: ClientUse,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = Instant::now();
        if let Some(c) = lock(&self.user.gk.clients).get_mut(&self.user.key) {
            c.released = now;
        }
        *lock(&self.user.gk.released) = now;
        // The permits go after the progress is recorded, so a woken waiter sees it.
        self.client.take();
        self.global.take();
    }
}

/// A permit from `sem`: at once if one is free; else waiting (in order) as long as permits keep
/// being freed, `None` once none has been for [`ADMIT_WAIT`] or at `give_up`.
async fn wait_for_progress(
    sem: Arc<Semaphore>,
    released: impl Fn() -> Instant,
    give_up: Option<Instant>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = sem.clone().try_acquire_owned() {
        return Some(p);
    }
    let acquire = sem.acquire_owned();
    tokio::pin!(acquire);
    loop {
        let mut until = released() + ADMIT_WAIT;
        if let Some(g) = give_up {
            until = until.min(g);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::select! {
            p = &mut acquire => return p.ok(),
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate).min(burst)
    }
}

impl Gatekeeper {
    pub(super) fn new(cfg: &AdminConfig) -> Arc<Gatekeeper> {
        Arc::new(Gatekeeper {
            slots: Arc::new(Semaphore::new(cfg.max_connections.max(1))),
            released: Mutex::new(Instant::now()),
            per_ip_max: cfg.per_ip_connections.max(1),
            clients: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            rate: f64::from(cfg.unauthenticated_rate.max(1)),
            burst: f64::from(cfg.unauthenticated_burst.max(1)),
            header_read_timeout: cfg.header_read_timeout,
            body_read_timeout: cfg.body_read_timeout,
            refusals: AtomicU64::new(0),
        })
    }

    /// A global slot for the next connection, taken before accepting it: while none is free,
    /// new connections wait in the kernel's listen backlog (no descriptor, no task here) as long
    /// as slots keep being freed. `None`: the listener has been full with none freed for
    /// [`ADMIT_WAIT`]; the next connection is to be refused.
    pub(super) async fn global_slot(&self) -> Option<OwnedSemaphorePermit> {
        wait_for_progress(self.slots.clone(), || *lock(&self.released), None).await
    }

    pub(super) fn try_global_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// The connection's slot among its client's (`ip`), holding `global` meanwhile: at once if
    /// free; else waiting as long as that client's connections keep ending (at most
    /// `header_read_timeout`), refused once none has for [`ADMIT_WAIT`].
    pub(super) async fn client_slot(
        self: &Arc<Self>,
        ip: IpAddr,
        global: OwnedSemaphorePermit,
    ) -> Result<Slot, Refused> {
        let key = client_key(ip);
        let sem = {
            let mut m = lock(&self.clients);
            let c = m.entry(key).or_insert_with(|| Client {
                slots: Arc::new(Semaphore::new(self.per_ip_max)),
                users: 0,
                released: Instant::now(),
            });
            c.users += 1;
            c.slots.clone()
        };
        let user = ClientUse {
            key,
            gk: self.clone(),
        };
        let released = || {
            lock(&self.clients)
                .get(&key)
                .map_or_else(Instant::now, |c| c.released)
        };
        let give_up = Instant::now() + self.header_read_timeout;
        match wait_for_progress(sem, released, Some(give_up)).await {
            Some(client) => Ok(Slot {
                global: Some(global),
                client: Some(client),
                user,
            }),
            None => Err(Refused::PerClient),
        }
    }

    /// Takes a token from `ip`'s bucket for a request made without credentials.
    pub(super) fn allow_unauthenticated(&self, ip: IpAddr) -> bool {
        let key = client_key(ip);
        let now = Instant::now();
        let (rate, burst) = (self.rate, self.burst);
        let mut m = lock(&self.buckets);
        if !m.contains_key(&key) && m.len() >= MAX_TRACKED_CLIENTS {
            // A full bucket is what a new client starts with: forgetting it loses nothing.
            m.retain(|_, b| b.refilled(now, rate, burst) < burst);
            if m.len() >= MAX_TRACKED_CLIENTS {
                return false;
            }
        }
        let b = m.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = b.refilled(now, rate, burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Answers a refused connection with one non-blocking write and closes it: no waiting, so a
    /// flood of refusals costs the listener nothing it has to keep.
    pub(super) fn refuse(&self, stream: TcpStream, why: Refused) {
        let n = self.refusals.fetch_add(1, Ordering::Relaxed) + 1;
        // Logged at 1, 2, 4, 8, ... refusals: visible, but a flood cannot flood the log.
        if n.is_power_of_two() {
            tracing::warn!(target: "airlock::admin", refused = n, reason = ?why, "admin listener refusing connections");
        }
        let (status, code, message) = match why {
            Refused::Full => (
                "503 Service Unavailable",
                "connection_limit",
                "the admin listener is at admin.max_connections; retry later",
            ),
            Refused::PerClient => (
                "429 Too Many Requests",
                "client_connection_limit",
                "too many connections from your address (admin.per_ip_connections); retry later",
            ),
        };
        let body =
            serde_json::json!({"error": code, "side": "client", "message": message}).to_string();
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.try_write(resp.as_bytes());
        // Closing over unread bytes sends a reset that can discard the answer: take what is
        // already there.
        let mut scratch = [0u8; 4096];
        let _ = stream.try_read(&mut scratch);
    }
}

/// One connection's body deadline. Armed while a request that has a body is being handled; it
/// expires when the deadline has passed and the connection is still waiting for body bytes.
///
/// The connection is served with hyper's `half_close(true)`, so hyper reads the socket during a
/// request only to fetch its body: once the body is complete it does not poll for EOF. A read
/// left pending past the deadline therefore means the body has not arrived, while a handler
/// that is busy after its body came (an approval executing upstream) is never cut short.
#[derive(Default)]
pub(super) struct Watch {
    state: Mutex<WatchState>,
    wake: Notify,
}

#[derive(Default)]
struct WatchState {
    deadline: Option<Instant>,
    read_pending: bool,
}

/// Disarms the [`Watch`] when the request's handling ends.
pub(super) struct Armed(Arc<Watch>);

impl Drop for Armed {
    fn drop(&mut self) {
        lock(&self.0.state).deadline = None;
    }
}

impl Watch {
    pub(super) fn arm(self: &Arc<Self>, timeout: Duration) -> Armed {
        lock(&self.state).deadline = Some(Instant::now() + timeout);
        self.wake.notify_one();
        Armed(self.clone())
    }

    fn read_polled(&self, pending: bool) {
        let mut s = lock(&self.state);
        s.read_pending = pending;
        if pending && s.deadline.is_some_and(|d| Instant::now() >= d) {
            self.wake.notify_one();
        }
    }

    /// Resolves once the armed deadline has passed with the body still not arrived.
    pub(super) async fn stalled(&self) {
        loop {
            // Created before the state is read: `notify_one` leaves a permit, nothing is missed.
            let notified = self.wake.notified();
            let (deadline, pending) = {
                let s = lock(&self.state);
                (s.deadline, s.read_pending)
            };
            match deadline {
                Some(d) if Instant::now() >= d => {
                    if pending {
                        return;
                    }
                    notified.await;
                }
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(d.into()) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// The admin connection's socket, reporting to its [`Watch`] whether a read is waiting.
pub(super) struct Watched<S> {
    inner: S,
    watch: Arc<Watch>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, watch: Arc<Watch>) -> Watched<S> {
        Watched { inner, watch }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.watch.read_polled(r.is_pending());
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the cap (declared or sent): 413.
    TooLarge,
    /// Malformed framing or a connection that broke mid-body: 400.
    Broken(String),
}

/// Whether a request declares a body longer than [`MAX_ADMIN_BODY`] (`Content-Length`), so it
/// can be refused before a byte of it is read.
pub(super) fn declared_over(body: &Incoming) -> bool {
    body.size_hint().lower() > MAX_ADMIN_BODY as u64
}

/// Whether a request may carry a body (hyper knows an empty one is empty).
pub(super) fn may_have_body(body: &Incoming) -> bool {
    !body.is_end_stream()
}

/// The one capped body reader on the admin listener, for every route: at most
/// [`MAX_ADMIN_BODY`] bytes, a declared length over it refused before reading. The time bound is
/// the connection's [`Watch`], armed for every request that has a body.
pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, BodyError> {
    if declared_over(&body) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, MAX_ADMIN_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Broken(e.to_string())),
    }
}

/// The next connection `accept` gives with its global slot, `None` in the slot when the
/// listener is full (refuse it); `None` once `shutdown` fires. The slot is waited for first:
/// while there is none, connections wait in the listen backlog, which costs this process
/// nothing (`None` once the listener has been stuck full). After a failed accept (EMFILE and
/// friends) it pauses, longer each time, instead of spinning.
pub(super) async fn next_connection<T, F, Fut>(
    gk: &Gatekeeper,
    mut accept: F,
    backoff: &mut Backoff,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<(T, Option<OwnedSemaphorePermit>)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let global = tokio::select! {
        g = gk.global_slot() => g,
        _ = shutdown.cancelled() => return None,
    };
    loop {
        let accepted = tokio::select! {
            a = accept() => a,
            _ = shutdown.cancelled() => return None,
        };
        match accepted {
            Ok(x) => {
                backoff.succeeded();
                // A slot may have been freed while this connection was awaited.
                return Some((x, global.or_else(|| gk.try_global_slot())));
            }
            Err(e) => {
                let pause = backoff.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

/// Pauses after failed accepts: 10 ms, doubling to 1 s; logged once per run of failures.
pub(super) struct Backoff {
    pause: Duration,
    failures: u64,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    pub(super) fn new() -> Backoff {
        Backoff {
            pause: Self::FIRST,
            failures: 0,
        }
    }

    /// Records a failure; returns how long to pause before accepting again.
    pub(super) fn failed(&mut self, e: &io::Error) -> Duration {
        self.failures += 1;
        if self.failures == 1 {
            tracing::warn!(target: "airlock::admin", error = %e, "admin accept failed (out of file descriptors?); backing off");
        } else {
            tracing::debug!(target: "airlock::admin", error = %e, failures = self.failures, "admin accept failed again");
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(Self::MAX);
        pause
    }

    pub(super) fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(target: "airlock::admin", failures = self.failures, "admin accept recovered");
            *self = Backoff::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max: usize, per_ip: usize, rate: u32, burst: u32) -> AdminConfig {
        AdminConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            listen_name: None,
            token_file: "t".into(),
            metrics_token_file: None,
            socket: crate::config::AdminSocket::Off,
            public_hosts: Vec::new(),
            may_approve: false,
            max_connections: max,
            per_ip_connections: per_ip,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            unauthenticated_rate: rate,
            unauthenticated_burst: burst,
        }
    }

    async fn take(gk: &Arc<Gatekeeper>, ip: IpAddr) -> Result<Slot, Refused> {
        let global = gk.global_slot().await.ok_or(Refused::Full)?;
        gk.client_slot(ip, global).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slots_wait_while_others_end_and_refuse_when_none_do() {
        let gk = Gatekeeper::new(&cfg(3, 2, 1, 1));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let a1 = take(&gk, a).await.expect("a1");
        let a2 = take(&gk, a).await.expect("a2");
        // A third from `a` waits, and is served when one of a's connections ends.
        let waiting = tokio::spawn({
            let gk = gk.clone();
            async move { take(&gk, a).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "waits for a slot");
        drop(a1);
        let a3 = waiting.await.expect("join").expect("served once a1 ended");
        // None ends: refused after ADMIT_WAIT, and at once from then on.
        let started = Instant::now();
        assert_eq!(take(&gk, a).await.err(), Some(Refused::PerClient));
        assert!(started.elapsed() >= ADMIT_WAIT - Duration::from_millis(300));
        let started = Instant::now();
        assert_eq!(take(&gk, a).await.err(), Some(Refused::PerClient));
        assert!(started.elapsed() < ADMIT_WAIT);
        // The last global slot; then the listener is full with none freed for long: refused.
        let b1 = take(&gk, b).await.expect("b1");
        assert!(gk.global_slot().await.is_none());
        // Entries go with their connections.
        drop((a2, a3, b1));
        assert!(lock(&gk.clients).is_empty());
        assert!(gk.global_slot().await.is_some());
    }

    #[test]
    fn one_client_is_an_ipv4_address_or_an_ipv6_64() {
        let k = |s: &str| client_key(s.parse().expect("ip"));
        assert_eq!(k("2001:db8::1"), k("2001:db8::ffff:2"));
        assert_ne!(k("2001:db8::1"), k("2001:db8:0:1::1"));
        assert_eq!(k("::ffff:10.0.0.9"), k("10.0.0.9"));
        assert_ne!(k("10.0.0.9"), k("10.0.0.10"));
        // Review of session 16: 127.0.0.2 .. 127.0.0.10 were nine clients, 32 connections each.
        assert_eq!(k("127.0.0.2"), k("127.0.0.1"));
        assert_eq!(k("127.255.0.9"), k("::1"));
        assert_eq!(k("::ffff:127.0.0.3"), k("127.0.0.1"));
    }

    #[tokio::test]
    async fn bucket_refills_and_stays_bounded() {
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let slow = Gatekeeper::new(&cfg(10, 10, 1, 3));
        let taken = (0..10).filter(|_| slow.allow_unauthenticated(a)).count();
        assert_eq!(taken, 3, "the burst, then refused");
        assert!(slow.allow_unauthenticated("10.0.0.2".parse().expect("ip")));
        let gk = Gatekeeper::new(&cfg(10, 10, 1000, 3));
        while gk.allow_unauthenticated(a) {}
        std::thread::sleep(Duration::from_millis(20));
        assert!(gk.allow_unauthenticated(a), "refilled");
        // Many clients: idle (refilled) buckets are evicted, the map never grows past the bound.
        for i in 0..(MAX_TRACKED_CLIENTS as u32 + 100) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            gk.allow_unauthenticated(ip);
            if i % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert!(lock(&gk.buckets).len() <= MAX_TRACKED_CLIENTS);
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut b = Backoff::new();
        let e = io::Error::other("EMFILE");
        let pauses: Vec<_> = (0..10).map(|_| b.failed(&e)).collect();
        assert_eq!(pauses[0], Backoff::FIRST);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*pauses.last().expect("last"), Backoff::MAX);
        b.succeeded();
        assert_eq!(b.failed(&e), Backoff::FIRST);
    }
}
