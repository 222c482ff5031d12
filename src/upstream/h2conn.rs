//! Airlock's own HTTP/2 connections to upstreams that negotiate h2: one per pool (worker),
//! target and [`Partition`] (agent), carrying every request of that agent in that pool. Agents
//! never share one: an agent that stops reading its answers fills its connection's
//! flow-control window and takes its stream slots, and only its own requests wait. A request goes from its own task straight into
//! the `h2` crate: no channel into a dispatch task, no task per request and no oneshot back,
//! which is what a request through hyper's h2 client costs (three tasks per request where the
//! agent and the upstream use one each). Request bodies stream under h2 flow control in a task
//! of their own; response bodies release their window as the agent's side reads them.
//!
//! Connections come from where the hyper-util pools' come from (a pre-dial, a warm-up, or a
//! dial: see [`super::conns`]) and are counted live the same way, one dial per pool and target
//! at a time. One idle for `pool_idle_timeout` (no request in flight, none started) is closed;
//! one that ends (GOAWAY, close, error) or is replaced leaves the table, and closes once the
//! responses still streaming on it are done. A target whose ALPN answer is not h2 is left to
//! hyper-util for the same idle time, then asked again.
//!
//! Failures keep the exactly-once executor's distinction: [`SendError::Closed`] and
//! [`SendError::NotSent`] happen before any byte of the request was handed to the connection;
//! [`SendError::MaybeSent`] after.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{header, HeaderValue, Method, Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::wire::{Body, BoxError};

/// Largest h2 DATA frame Airlock accepts from upstreams (the protocol's default is 16 KiB):
/// fewer frames, and fewer writes toward the agent, per streamed byte.
pub const MAX_FRAME: u32 = 256 * 1024;

/// The idle check runs no more often than this (`pool_idle_timeout` may be zero).
const IDLE_CHECK_FLOOR: Duration = Duration::from_millis(100);

/// Whose requests may share an HTTP/2 connection: one partition per agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partition(u64);

impl Partition {
    /// Calls Airlock makes itself (approved calls, on a pool of their own).
    pub const AIRLOCK: Partition = Partition(0);

    /// The partition of the agent named `name` (a hash: names are never stored twice).
    pub fn of(name: &str) -> Partition {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hasher = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
        Partition(hasher.hash_one(name) | 1)
    }
}

/// Which upstream and whose: host (normalised), port and partition.
type Key = (String, u16, Partition);

/// The same, borrowed.
pub type Spot<'a> = (&'a str, u16, Partition);

/// Per host, then per port and partition (looked up by `&str` without allocating).
type Targets = HashMap<String, HashMap<(u16, Partition), Entry>>;

/// The entry for `spot`, made if missing (off the hot path: it copies the host).
fn entry<'a>(targets: &'a mut Targets, (host, port, part): Spot) -> &'a mut Entry {
    targets
        .entry(host.to_string())
        .or_default()
        .entry((port, part))
        .or_default()
}

fn spot(key: &Key) -> Spot<'_> {
    (&key.0, key.1, key.2)
}

#[derive(Default)]
struct Entry {
    conn: Option<Conn>,
    /// The target's ALPN answer was not h2: hyper-util's pool serves it until then.
    http1_until: Option<Instant>,
    /// Held while dialling, so concurrent first requests share one connection.
    dialing: Arc<tokio::sync::Mutex<()>>,
}

struct Conn {
    id: u64,
    send: SendRequest<Bytes>,
    in_flight: Arc<AtomicUsize>,
    last_use: Instant,
}

/// A connection checked out for one request; the request counts as in flight until the
/// response body is done with (or the request failed).
pub struct Checked {
    id: u64,
    send: SendRequest<Bytes>,
    in_flight: InFlight,
}

struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// One more holder of the same connection (a request body still being sent).
    fn another(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::Acquire);
        InFlight(self.0.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// What a pool has for a target.
pub enum Checkout {
    Ready(Checked),
    /// The target speaks HTTP/1.1: send through hyper-util's pool.
    Http1,
    /// Nothing yet: dial while holding this lock, then look again. `true`: the target spoke
    /// HTTP/1.1 until just now (ask again only if hyper-util's pool has no connection to it).
    Cold(Arc<tokio::sync::Mutex<()>>, bool),
}

/// Why a request did not get a response head.
pub enum SendError {
    /// The connection was found closed before anything was sent; the request comes back.
    Closed(u64, Box<Request<Body>>),
    /// h2 refused to open the stream: nothing of the request was handed to the connection.
    NotSent(h2::Error),
    /// The stream was opened: the request may have reached the upstream.
    MaybeSent(h2::Error),
}

/// Every pool's h2 connections.
pub struct H2Conns {
    pools: Vec<Mutex<Targets>>,
    idle: Duration,
    next_id: AtomicU64,
}

impl H2Conns {
    pub fn new(pools: usize, idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            pools: (0..pools.max(1)).map(|_| Mutex::default()).collect(),
            idle,
            next_id: AtomicU64::new(0),
        })
    }

    fn targets(&self, pool: usize) -> Option<std::sync::MutexGuard<'_, Targets>> {
        self.pools.get(pool)?.lock().ok()
    }

    /// Whether pool `pool` would send to `spot` without dialling: it has a connection, or the
    /// target speaks HTTP/1.1 (hyper-util's pool, which agents may share, serves it).
    pub fn warm(&self, pool: usize, (host, port, part): Spot) -> bool {
        let Some(targets) = self.targets(pool) else {
            return false;
        };
        targets
            .get(host)
            .and_then(|ports| ports.get(&(port, part)))
            .is_some_and(|e| {
                e.conn.is_some() || e.http1_until.is_some_and(|until| Instant::now() < until)
            })
    }

    /// Pool `pool`'s connection to `spot`, or what to do without one.
    pub fn checkout(&self, pool: usize, spot @ (host, port, part): Spot) -> Checkout {
        let Some(mut targets) = self.targets(pool) else {
            return Checkout::Http1;
        };
        if let Some(entry) = targets
            .get_mut(host)
            .and_then(|ports| ports.get_mut(&(port, part)))
        {
            if let Some(c) = &mut entry.conn {
                c.last_use = Instant::now();
                c.in_flight.fetch_add(1, Ordering::Acquire);
                return Checkout::Ready(Checked {
                    id: c.id,
                    send: c.send.clone(),
                    in_flight: InFlight(c.in_flight.clone()),
                });
            }
            let was_http1 = match entry.http1_until {
                Some(until) if Instant::now() < until => return Checkout::Http1,
                Some(_) => entry.http1_until.take().is_some(),
                None => false,
            };
            return Checkout::Cold(entry.dialing.clone(), was_http1);
        }
        Checkout::Cold(entry(&mut targets, spot).dialing.clone(), false)
    }

    /// Sends pool `pool`'s requests to `key` through hyper-util for the idle time. A mark
    /// nobody asked about for another idle time after it lapsed is forgotten, so the table
    /// follows the targets in use, not every HTTP/1.1 host ever seen.
    pub fn mark_http1(self: &Arc<Self>, pool: usize, key: &Key) {
        // An idle time past any clock (a huge `pool_idle_timeout`): nothing to mark.
        let Some(until) = Instant::now().checked_add(self.idle) else {
            return;
        };
        if let Some(mut targets) = self.targets(pool) {
            entry(&mut targets, spot(key)).http1_until = Some(until);
        }
        let Some(forget_at) = until.checked_add(self.idle) else {
            return;
        };
        let me = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(forget_at).await;
            me.forget_lapsed_http1(pool, &key);
        });
    }

    fn forget_lapsed_http1(&self, pool: usize, key: &Key) {
        if let Some(mut targets) = self.targets(pool) {
            let entry = targets
                .get_mut(&key.0)
                .and_then(|p| p.get_mut(&(key.1, key.2)));
            if let Some(entry) = entry {
                if entry.http1_until.is_some_and(|u| u <= Instant::now()) {
                    entry.http1_until = None;
                }
            }
        }
        self.forget(pool, spot(key), None);
    }

    /// Runs the h2 handshake on `io` and makes it pool `pool`'s connection to `key`, driven by
    /// a task on the current runtime that holds `live` until the connection ends.
    pub async fn connect<T, L>(
        self: &Arc<Self>,
        pool: usize,
        key: Key,
        io: T,
        live: L,
    ) -> Result<Checked, h2::Error>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        L: Send + 'static,
    {
        let (send, connection) = builder().handshake::<T, Bytes>(io).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let in_flight = Arc::new(AtomicUsize::new(1));
        let idle_key = key.clone();
        if let Some(mut targets) = self.targets(pool) {
            entry(&mut targets, spot(&key)).conn = Some(Conn {
                id,
                send: send.clone(),
                in_flight: in_flight.clone(),
                last_use: Instant::now(),
            });
        }
        let me = self.clone();
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
            drop(live);
            me.forget(pool, spot(&key), Some(id));
        });
        // The idle check runs beside the connection, not in its task: the connection's task is
        // polled for every frame it reads, and a timer polled with it would cost on each.
        let me = self.clone();
        let key = idle_key;
        let streams = in_flight.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(me.idle.max(IDLE_CHECK_FLOOR)).await;
                if driver.is_finished() {
                    return;
                }
                if me.close_if_idle(pool, &key, id, &streams) {
                    driver.abort();
                    me.forget(pool, spot(&key), None);
                    return;
                }
            }
        });
        Ok(Checked {
            id,
            send,
            in_flight: InFlight(in_flight),
        })
    }

    /// Whether connection `id` may close: the table's connection once nothing used it for the
    /// idle time (it leaves the table); one the table no longer holds (it ended, or a newer one
    /// replaced it) once its last stream is done, since nothing new can start on it. A response
    /// still streaming on a replaced connection is never cut.
    fn close_if_idle(&self, pool: usize, key: &Key, id: u64, streams: &AtomicUsize) -> bool {
        let drained = || streams.load(Ordering::Acquire) == 0;
        let Some(mut targets) = self.targets(pool) else {
            return drained();
        };
        let Some(entry) = targets
            .get_mut(&key.0)
            .and_then(|p| p.get_mut(&(key.1, key.2)))
        else {
            return drained();
        };
        match &entry.conn {
            Some(c) if c.id == id => {
                let idle = drained() && c.last_use.elapsed() >= self.idle;
                if idle {
                    entry.conn = None;
                }
                idle
            }
            _ => drained(),
        }
    }

    /// Removes connection `id` (if given and still there: a request that found it closed
    /// dials anew), then the target's entry if nothing is left in it.
    pub fn forget(&self, pool: usize, (host, port, part): Spot, id: Option<u64>) {
        let Some(mut targets) = self.targets(pool) else {
            return;
        };
        let Some(ports) = targets.get_mut(host) else {
            return;
        };
        if let Some(entry) = ports.get_mut(&(port, part)) {
            if id.is_some() && entry.conn.as_ref().map(|c| c.id) == id {
                entry.conn = None;
            }
            let unused = entry.conn.is_none()
                && entry.http1_until.is_none()
                && Arc::strong_count(&entry.dialing) == 1;
            if unused {
                ports.remove(&(port, part));
            }
        }
        if ports.is_empty() {
            targets.remove(host);
        }
    }
}

/// The settings hyper's h2 client uses, with larger frames accepted from upstreams.
fn builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_max_send_streams(100)
        .initial_window_size(2 * 1024 * 1024)
        .initial_connection_window_size(5 * 1024 * 1024)
        .max_header_list_size(16 * 1024)
        .max_send_buffer_size(1024 * 1024)
        .max_local_error_reset_streams(Some(1024))
        .max_frame_size(MAX_FRAME)
        .enable_push(false);
    b
}

/// Sends `req` on a checked-out connection and waits for the response head. The body (if any)
/// streams from a task of its own; the response body holds the connection in flight.
pub async fn send(checked: Checked, req: Request<Body>) -> Result<Response<Body>, SendError> {
    let Checked {
        id,
        send,
        in_flight,
    } = checked;
    let mut send = match send.ready().await {
        Ok(send) => send,
        Err(_) => return Err(SendError::Closed(id, Box::new(req))),
    };
    let (parts, body) = req.into_parts();
    let mut head = Request::from_parts(parts, ());
    if let Some(len) = body.size_hint().exact() {
        let has_payload = !matches!(
            *head.method(),
            Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
        );
        if len != 0 || has_payload {
            head.headers_mut()
                .entry(header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(len));
        }
    }
    let eos = body.is_end_stream();
    let (response, stream) = send.send_request(head, eos).map_err(SendError::NotSent)?;
    if !eos {
        tokio::spawn(pipe(body, stream, in_flight.another()));
    }
    let response = response.await.map_err(SendError::MaybeSent)?;
    let (parts, recv) = response.into_parts();
    let remaining = if recv.is_end_stream() {
        Some(0)
    } else {
        parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    };
    let body = ResponseBody {
        recv,
        data_done: false,
        remaining,
        _in_flight: in_flight,
    };
    Ok(Response::from_parts(parts, body.boxed_unsync()))
}

/// Streams a request body into its h2 stream (the connection counts as in flight until it is
/// sent, even if the response finished first); a failure resets the stream.
async fn pipe(mut body: Body, mut tx: h2::SendStream<Bytes>, _in_flight: InFlight) {
    if let Err(e) = pipe_frames(&mut body, &mut tx).await {
        tracing::debug!(error = %e, "request body to upstream ended early");
        tx.send_reset(h2::Reason::CANCEL);
    }
}

async fn pipe_frames(body: &mut Body, tx: &mut h2::SendStream<Bytes>) -> Result<(), BoxError> {
    loop {
        let frame = {
            let mut next = body.frame();
            poll_fn(|cx| {
                if let Poll::Ready(reset) = tx.poll_reset(cx) {
                    return Poll::Ready(Err(reset_error(reset)));
                }
                Pin::new(&mut next).poll(cx).map(Ok)
            })
            .await?
        };
        let frame = match frame {
            None => return Ok(tx.send_data(Bytes::new(), true)?),
            Some(frame) => frame?,
        };
        match frame.into_data() {
            Ok(data) => {
                let eos = body.is_end_stream();
                if !data.is_empty() {
                    // A claim of one byte, as hyper makes: h2 buffers the chunk and sends it
                    // as the window allows, without pinning window for a body that stalls.
                    tx.reserve_capacity(1);
                    poll_fn(|cx| loop {
                        if let Poll::Ready(reset) = tx.poll_reset(cx) {
                            return Poll::Ready(Err(reset_error(reset)));
                        }
                        if tx.capacity() > 0 {
                            return Poll::Ready(Ok(()));
                        }
                        match tx.poll_capacity(cx) {
                            Poll::Ready(Some(Ok(_))) => continue,
                            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                            Poll::Ready(None) => {
                                return Poll::Ready(Err("upstream stream closed".into()))
                            }
                            Poll::Pending => return Poll::Pending,
                        }
                    })
                    .await?;
                }
                tx.send_data(data, eos)?;
                if eos {
                    return Ok(());
                }
            }
            Err(frame) => {
                // The agent's trailers end the body but are not forwarded: nothing judges
                // them (a method override or an account header there would pass unread).
                if frame.is_trailers() {
                    tx.reserve_capacity(0);
                    tx.send_data(Bytes::new(), true)?;
                    return Ok(());
                }
            }
        }
    }
}

fn reset_error(reset: Result<h2::Reason, h2::Error>) -> BoxError {
    match reset {
        Ok(reason) => format!("upstream reset the stream: {reason}").into(),
        Err(e) => e.into(),
    }
}

/// A response body read from an h2 stream, releasing flow-control window as it is read.
struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
    /// What Content-Length says is left (as hyper's own body reports it).
    remaining: Option<u64>,
    _in_flight: InFlight,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let me = self.get_mut();
        if !me.data_done {
            match me.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = me.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut me.remaining {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => me.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        match me.recv.poll_trailers(cx) {
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Partition = Partition::AIRLOCK;

    /// A target that answered http/1.1 stays with hyper-util for the idle time, in that pool
    /// only, and is then asked again once.
    #[tokio::test(start_paused = true)]
    async fn an_http1_target_is_asked_again_after_the_idle_time() {
        let h2 = H2Conns::new(2, Duration::from_secs(90));
        h2.mark_http1(1, &("api.example".to_string(), 443, P));
        assert!(matches!(
            h2.checkout(1, ("api.example", 443, P)),
            Checkout::Http1
        ));
        assert!(
            matches!(
                h2.checkout(0, ("api.example", 443, P)),
                Checkout::Cold(_, false)
            ),
            "another pool's"
        );
        tokio::time::advance(Duration::from_secs(91)).await;
        assert!(matches!(
            h2.checkout(1, ("api.example", 443, P)),
            Checkout::Cold(_, true)
        ));
        assert!(
            matches!(
                h2.checkout(1, ("api.example", 443, P)),
                Checkout::Cold(_, false)
            ),
            "asked again once"
        );
    }

    /// A target marked HTTP/1.1 and not asked about again leaves the table an idle time after
    /// its mark lapsed (memory follows the targets in use, not every host ever seen); one asked
    /// again and marked anew stays.
    #[tokio::test(start_paused = true)]
    async fn lapsed_http1_marks_leave_the_table() {
        let h2 = H2Conns::new(1, Duration::from_secs(90));
        for i in 0..1000 {
            h2.mark_http1(0, &(format!("b{i}.example"), 443, P));
        }
        let len = |h2: &H2Conns| h2.pools[0].lock().map(|t| t.len()).ok();
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(len(&h2), Some(1000), "lapsed, not yet forgotten");
        // b0 is asked about after its mark lapsed and marked again, as `dial_h2` does when
        // hyper-util's pool still has a connection to it.
        assert!(matches!(
            h2.checkout(0, ("b0.example", 443, P)),
            Checkout::Cold(_, true)
        ));
        h2.mark_http1(0, &("b0.example".to_string(), 443, P));
        tokio::time::sleep(Duration::from_secs(85)).await;
        assert_eq!(len(&h2), Some(1), "only the target marked anew");
        assert!(matches!(
            h2.checkout(0, ("b0.example", 443, P)),
            Checkout::Http1
        ));
        tokio::time::sleep(Duration::from_secs(180)).await;
        assert_eq!(len(&h2), Some(0));
    }

    /// An agent's connection is its own: another agent's checkout finds nothing to share and
    /// dials (one agent's stalled streams cannot fill a window or take stream slots another
    /// agent's requests need).
    #[tokio::test]
    async fn agents_do_not_share_a_connection() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            if let Ok(mut conn) = h2::server::handshake(server_io).await {
                while let Some(Ok(_)) = conn.accept().await {}
            }
        });
        let (a, b) = (Partition::of("bot"), Partition::of("other-bot"));
        assert_ne!(a, b);
        assert_ne!(a, Partition::AIRLOCK);
        let h2 = H2Conns::new(1, Duration::from_secs(30));
        let _checked = h2
            .connect(0, ("up.example".to_string(), 443, a), client_io, ())
            .await
            .expect("h2 handshake");
        assert!(h2.warm(0, ("up.example", 443, a)));
        assert!(!h2.warm(0, ("up.example", 443, b)));
        assert!(matches!(
            h2.checkout(0, ("up.example", 443, a)),
            Checkout::Ready(_)
        ));
        assert!(matches!(
            h2.checkout(0, ("up.example", 443, b)),
            Checkout::Cold(..)
        ));
    }

    /// Concurrent first requests wait on one dial; a target with nothing left leaves the table
    /// (memory follows the live connections, not the hosts ever seen).
    #[test]
    fn cold_checkouts_share_one_dial_and_leave_nothing_behind() {
        let h2 = H2Conns::new(1, Duration::from_secs(90));
        let (Checkout::Cold(a, _), Checkout::Cold(b, _)) = (
            h2.checkout(0, ("h.example", 443, P)),
            h2.checkout(0, ("h.example", 443, P)),
        ) else {
            panic!("both cold");
        };
        assert!(Arc::ptr_eq(&a, &b), "one dial lock per pool and target");
        h2.forget(0, ("h.example", 443, P), None);
        assert_eq!(
            h2.pools[0].lock().map(|t| t.len()).ok(),
            Some(1),
            "still dialling"
        );
        drop((a, b));
        h2.forget(0, ("h.example", 443, P), None);
        assert_eq!(h2.pools[0].lock().map(|t| t.len()).ok(), Some(0));
    }

    /// A request with a body larger than the upstream's window goes through a connection made
    /// by `connect`, and the answer's body is read to its end; unused for the idle time, the
    /// connection closes, leaves the table and drops its live guard.
    #[tokio::test(start_paused = true)]
    async fn a_connection_carries_a_body_then_closes_when_idle() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(server_io).await else {
                return;
            };
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                tokio::spawn(async move {
                    let mut body = req.into_body();
                    let mut n = 0;
                    while let Some(Ok(chunk)) = body.data().await {
                        n += chunk.len();
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    if let Ok(mut tx) = respond.send_response(Response::new(()), false) {
                        let _ = tx.send_data(Bytes::from(n.to_string()), true);
                    }
                });
            }
        });
        let h2 = H2Conns::new(1, Duration::from_secs(30));
        let live = Arc::new(());
        let key = ("up.example".to_string(), 443, P);
        let checked = h2
            .connect(0, key, client_io, live.clone())
            .await
            .expect("h2 handshake");
        // Five times the protocol's initial 64 KiB window.
        let body = http_body_util::Full::new(Bytes::from(vec![b'x'; 320 * 1024]))
            .map_err(|never| -> BoxError { match never {} })
            .boxed_unsync();
        let req = Request::post("https://up.example/count")
            .body(body)
            .expect("request");
        let Ok(resp) = send(checked, req).await else {
            panic!("no response");
        };
        let got = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&got[..], b"327680");
        assert!(matches!(
            h2.checkout(0, ("up.example", 443, P)),
            Checkout::Ready(_)
        ));
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(matches!(
            h2.checkout(0, ("up.example", 443, P)),
            Checkout::Cold(..)
        ));
        assert_eq!(Arc::strong_count(&live), 1, "the live guard went with it");
    }
    /// A send given up (an execution's timeout drops it) while its body waits for the upstream's
    /// window stops sending and resets the stream, although the body's pipe task still holds
    /// the stream (h2 cancels a stream whose response is no longer awaited): the rest of the
    /// body never reaches the upstream after the outcome was recorded as unknown.
    #[tokio::test]
    async fn a_send_given_up_stops_its_body_and_resets_the_stream() {
        let (client_io, server_io) = tokio::io::duplex(1024 * 1024);
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<(usize, bool)>();
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(server_io).await else {
                return;
            };
            let Some(Ok((req, _respond))) = conn.accept().await else {
                return;
            };
            let serve = tokio::spawn(async move { while conn.accept().await.is_some() {} });
            // Reads what the first window allows, then stops granting window.
            let mut body = req.into_body();
            let mut n = 0;
            let reset = loop {
                match body.data().await {
                    Some(Ok(chunk)) => n += chunk.len(),
                    Some(Err(e)) => break e.is_reset(),
                    None => break false,
                }
            };
            let _ = seen_tx.send((n, reset));
            serve.abort();
        });
        let h2 = H2Conns::new(1, Duration::from_secs(30));
        let checked = h2
            .connect(
                0,
                ("up.example".to_string(), 443, P),
                client_io,
                Arc::new(()),
            )
            .await
            .expect("h2 handshake");
        let body = http_body_util::Full::new(Bytes::from(vec![b'x'; 320 * 1024]))
            .map_err(|never| -> BoxError { match never {} })
            .boxed_unsync();
        let req = Request::post("https://up.example/slow")
            .body(body)
            .expect("request");
        let gave_up = tokio::time::timeout(Duration::from_millis(200), send(checked, req)).await;
        assert!(gave_up.is_err(), "no answer comes");
        let (n, reset) = tokio::time::timeout(Duration::from_secs(5), seen_rx)
            .await
            .expect("the upstream sees the stream end")
            .expect("seen");
        assert!(reset, "reset, not ended as a whole body");
        assert!(n < 320 * 1024, "the rest of the body was not sent: {n}");
    }

    /// A connection that leaves the table while a response streams on it (a newer connection
    /// to the target took its place, or a request found it closed after a GOAWAY) keeps that
    /// response past its idle checks, then closes once the stream is done.
    #[tokio::test(start_paused = true)]
    async fn a_replaced_connection_finishes_the_response_streaming_on_it() {
        let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
        let (a_client, a_server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(a_server).await else {
                return;
            };
            let Some(Ok((_req, mut respond))) = conn.accept().await else {
                return;
            };
            let Ok(mut tx) = respond.send_response(Response::new(()), false) else {
                return;
            };
            tokio::spawn(async move {
                let _ = finish_rx.await;
                let _ = tx.send_data(Bytes::from_static(b"done"), true);
            });
            while let Some(Ok(_)) = conn.accept().await {}
        });
        let (b_client, b_server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(b_server).await else {
                return;
            };
            while let Some(Ok(_)) = conn.accept().await {}
        });
        let h2 = H2Conns::new(1, Duration::from_secs(30));
        let live = Arc::new(());
        let key = ("up.example".to_string(), 443, P);
        let checked = h2
            .connect(0, key.clone(), a_client, live.clone())
            .await
            .expect("first h2 handshake");
        let req = Request::get("https://up.example/slow")
            .body(crate::wire::empty())
            .expect("request");
        let Ok(resp) = send(checked, req).await else {
            panic!("no response head");
        };
        let newer = h2
            .connect(0, key, b_client, ())
            .await
            .expect("second h2 handshake");
        drop(newer);
        // Three idle checks of the first connection while its response waits for its body.
        tokio::time::sleep(Duration::from_secs(95)).await;
        finish_tx
            .send(())
            .expect("the upstream still waits to finish");
        let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect()).await;
        let got = body.ok().and_then(|b| b.ok()).map(|b| b.to_bytes());
        assert_eq!(
            got.as_deref(),
            Some(&b"done"[..]),
            "the streaming response was cut"
        );
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(
            Arc::strong_count(&live),
            1,
            "the replaced connection closed once its stream was done"
        );
    }
}
