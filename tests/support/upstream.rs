//! A fake provider API over TLS (its own test CA), h1 and/or h2, that records every request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::Notify;

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

#[derive(Clone)]
pub struct UpstreamOptions {
    /// ALPN protocols offered, in order (empty: none, which means HTTP/1.1).
    pub alpn: Vec<&'static str>,
    /// Serve a certificate from a CA that is NOT in `ca_file`.
    pub untrusted_cert: bool,
    /// Plain TCP, no TLS.
    pub plain: bool,
    /// Speak raw HTTP/1.1 and break the exchange this way after reading (recording) a request.
    pub misbehave: Option<Misbehave>,
}

/// How a misbehaving upstream breaks an exchange once it has read the whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehave {
    /// Reset the connection (RST).
    ResetAfterRead,
    /// Close cleanly without a byte of answer.
    CloseAfterRead,
    /// Close in the middle of the response head.
    CloseMidHead,
    /// Send the head and part of a declared body, then close.
    CloseMidBody,
    /// Speak h2 (ALPN must offer it); reset the request's stream once its body is read.
    H2ResetAfterRead,
    /// Speak h2; close the connection without an answer once the request's body is read.
    H2CloseAfterRead,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            alpn: vec!["h2", "http/1.1"],
            untrusted_cert: false,
            plain: false,
            misbehave: None,
        }
    }
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path_and_query: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub body_len: usize,
    /// Trailer fields after the body (HTTP/2 trailing HEADERS, HTTP/1.1 chunked trailers).
    pub trailers: Vec<(String, String)>,
    /// Which accepted connection carried it (1 for the first; 0 where not tracked).
    pub connection: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct State {
    pub requests: Mutex<Vec<Recorded>>,
    pub connections: AtomicUsize,
    /// Released by the test to let `/hold-stream` send the rest of its body.
    pub release: Notify,
    /// Signalled when `/upload-hold` has seen the first chunk of a request body.
    pub first_chunk_seen: Notify,
    /// While set, new connections are dropped before the TLS handshake (an upstream that is down).
    pub down: AtomicBool,
    /// Requests whose path contains `/stall` are recorded, then get no answer until this is
    /// notified (a slow upstream); unless `no_stall` is set.
    pub unstall: Notify,
    pub no_stall: AtomicBool,
    /// Notified by the test to drop every open connection at once (no GOAWAY, no answer).
    pub drop_connections: Notify,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    /// The CA that signed the upstream's certificate (what Airlock must trust).
    pub ca_file: PathBuf,
    pub state: Arc<State>,
    _dir: tempfile::TempDir,
}

impl FakeUpstream {
    pub async fn start(opts: UpstreamOptions) -> FakeUpstream {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, cert, key) = make_certs(opts.untrusted_cert);
        let ca_file = dir.path().join("upstream-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let tls = if opts.plain {
            None
        } else {
            let mut cfg = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(cert, key)
                .expect("server config");
            cfg.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
        };
        let st = state.clone();
        let broken = opts.misbehave;
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if st.down.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let connection = st.connections.fetch_add(1, Ordering::SeqCst) + 1;
                let st = st.clone();
                let tls = tls.clone();
                if let (Some(how), Some(acceptor)) = (broken, tls.clone()) {
                    tokio::spawn(misbehave(how, st, acceptor, stream));
                    continue;
                }
                tokio::spawn(async move {
                    let dropped = st.clone();
                    let dropped = dropped.drop_connections.notified();
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(respond(st, connection, req).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                tokio::select! {
                                    _ = builder.serve_connection(TokioIo::new(s), svc) => {}
                                    _ = dropped => {}
                                }
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        FakeUpstream {
            addr,
            ca_file,
            state,
            _dir: dir,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.state.requests.lock().expect("lock").len()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

/// A test CA (PEM) and a leaf for [`super::UPSTREAM_NAMES`] signed by it (or by another CA).
pub fn make_certs(
    untrusted: bool,
) -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Fake Upstream Test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let ca_pem = ca_cert.pem();
    let signer = if untrusted {
        let other_key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Some Other CA");
        Issuer::new(p, other_key)
    } else {
        Issuer::new(ca_params, ca_key)
    };
    let leaf_key = KeyPair::generate().expect("key");
    let names: Vec<String> = super::UPSTREAM_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let leaf = CertificateParams::new(names)
        .expect("params")
        .signed_by(&leaf_key, &signer)
        .expect("leaf");
    let key = PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
    (ca_pem, vec![leaf.der().clone()], key)
}

/// Reads one HTTP/1.1 request (head and Content-Length body), records it, then breaks the
/// exchange as `how` says.
async fn misbehave(
    how: Misbehave,
    st: Arc<State>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tls) = acceptor.accept(stream).await else {
        return;
    };
    if matches!(
        how,
        Misbehave::H2ResetAfterRead | Misbehave::H2CloseAfterRead
    ) {
        return misbehave_h2(how, st, tls).await;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_len, body_len) = loop {
        let Ok(n) = tls.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(len)) = req.parse(&buf) {
            let cl = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0usize);
            break (len, cl);
        }
    };
    while buf.len() < head_len + body_len {
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let _ = req.parse(&buf);
    st.requests.lock().expect("lock").push(Recorded {
        method: req.method.unwrap_or("").to_string(),
        path_and_query: req.path.unwrap_or("").to_string(),
        version: "HTTP/1.1".into(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: buf[head_len..].to_vec(),
        body_len,
        trailers: Vec::new(),
        connection: 0,
    });
    match how {
        Misbehave::ResetAfterRead => {
            let _ = tls.get_ref().0.set_zero_linger();
        }
        Misbehave::CloseAfterRead => {
            let _ = tls.shutdown().await;
        }
        Misbehave::CloseMidHead => {
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Ty").await;
            let _ = tls.shutdown().await;
        }
        Misbehave::H2ResetAfterRead | Misbehave::H2CloseAfterRead => {}
        Misbehave::CloseMidBody => {
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\":")
                .await;
            let _ = tls.flush().await;
            let _ = tls.shutdown().await;
        }
    }
    drop(tls);
}

/// [`misbehave`] in h2: reads one request whole, records it, then resets its stream or drops
/// the connection.
async fn misbehave_h2(
    how: Misbehave,
    st: Arc<State>,
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) {
    let Ok(mut conn) = h2::server::handshake(tls).await else {
        return;
    };
    let Some(Ok((req, mut respond))) = conn.accept().await else {
        return;
    };
    // Keep the connection driven while the request's body is read.
    let driver = tokio::spawn(async move {
        while let Some(Ok(_)) = conn.accept().await {}
        conn
    });
    let (parts, mut body) = req.into_parts();
    let mut got = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    let trailers = match body.trailers().await {
        Ok(Some(map)) => fields(&map),
        _ => Vec::new(),
    };
    st.requests.lock().expect("lock").push(Recorded {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        version: "HTTP/2.0".into(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_len: got.len(),
        body: got,
        trailers,
        connection: 0,
    });
    match how {
        Misbehave::H2ResetAfterRead => {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            driver.abort();
        }
        _ => driver.abort(),
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

async fn respond(st: Arc<State>, connection: usize, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let mut body = req.into_body();
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut first = true;
    let mut trailers = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(map) = frame.trailers_ref() {
            trailers.extend(fields(map));
        }
        if let Some(d) = frame.data_ref() {
            total += d.len();
            if kept.len() < 1 << 20 {
                kept.extend_from_slice(d);
            }
            if first && path == "/upload-hold" {
                st.first_chunk_seen.notify_one();
            }
            first = false;
        }
    }
    let rec = Recorded {
        method: method.clone(),
        path_and_query: pq.clone(),
        version: version.clone(),
        headers,
        body: kept,
        body_len: total,
        trailers,
        connection,
    };
    let authorization = rec.header("authorization").map(str::to_string);
    st.requests.lock().expect("lock").push(rec);
    if path.contains("/stall") && !st.no_stall.load(Ordering::SeqCst) {
        st.unstall.notified().await;
    }

    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        return stream_bytes(n);
    }
    if path == "/hold-stream" {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"first-chunk\n"))))
                .await;
            st.release.notified().await;
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"rest\n"))))
                .await;
        });
        let stream = tokio_stream_from(rx);
        return Response::new(StreamBody::new(stream).boxed_unsync());
    }
    if path.ends_with("/mint-token") {
        // A minted credential in the answer, as GitHub's installation tokens come.
        let text = "{\"token\":\"ghs_MintedByTheUpstream0123456789\",\"expires_at\":\"2026-12-06T00:00:00Z\"}";
        return Response::new(full(text));
    }
    if path == "/echo" {
        // Echoes the credential it received in a header and, split into small chunks, in the body.
        let auth = authorization.clone().unwrap_or_default();
        let text = format!("{{\"you_sent\":{:?}}}", auth);
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = text
            .as_bytes()
            .chunks(5)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let mut r =
            Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync());
        if let Ok(v) = http::HeaderValue::from_str(&auth) {
            r.headers_mut().insert("x-echoed-authorization", v);
        }
        return r;
    }
    if path.ends_with("/key-in-use") {
        // Stripe's answer while a request with the same Idempotency-Key is still in progress.
        let text = r#"{"error":{"type":"idempotency_error","code":"idempotency_key_in_use","message":"There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through)."}}"#;
        let mut r = Response::new(full(text));
        *r.status_mut() = StatusCode::CONFLICT;
        return r;
    }
    // `/status/NNN` answers NNN, also at the end of a longer path (a held route's).
    if let Some((_, code)) = path.rsplit_once("/status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = Response::new(full(format!("status {}", status.as_u16())));
        *r.status_mut() = status;
        return r;
    }
    let json = serde_json::json!({
        "method": method,
        "path": pq,
        "host": host,
        "version": version,
        "body_len": total,
        "authorization": authorization,
    });
    let echo = authorization.unwrap_or_default();
    let mut r = if pq.contains("respond_gzip=1") {
        // Compressed, although Airlock asks for `Accept-Encoding: identity`.
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.to_string().as_bytes()).expect("gzip");
        let mut r = Response::new(full(gz.finish().expect("gzip")));
        r.headers_mut()
            .insert("content-encoding", http::HeaderValue::from_static("gzip"));
        r
    } else if pq.contains("respond_trailer=1") {
        // The credential it received echoed in a trailer.
        let mut trailers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&echo) {
            trailers.insert("x-echoed-authorization", v);
        }
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from(json.to_string()))),
            Ok(Frame::trailers(trailers)),
        ];
        Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync())
    } else {
        Response::new(full(json.to_string()))
    };
    if pq.contains("respond_reason=1") {
        // The credential it received echoed in the HTTP/1.1 reason phrase.
        if let Ok(p) = hyper::ext::ReasonPhrase::try_from(format!("OK {echo}")) {
            r.extensions_mut().insert(p);
        }
    }
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    if pq.contains("respond_with_credentials=1") {
        // An answer that hands out credentials, as a login or token endpoint would.
        for (k, v) in [
            ("set-cookie", "session=upstreamCookieSecret; HttpOnly"),
            ("x-auth-token", "upstreamAuthTokenSecret"),
            ("private-token", "upstreamPrivateTokenSecret"),
            ("x-request-id", "req-visible-123"),
        ] {
            r.headers_mut().append(k, http::HeaderValue::from_static(v));
        }
    }
    r
}

fn stream_bytes(n: usize) -> Response<Body> {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        let mut left = n;
        while left > 0 {
            let take = left.min(CHUNK);
            if tx.send(Ok(Frame::data(chunk.slice(..take)))).await.is_err() {
                return;
            }
            left -= take;
        }
    });
    let mut r = Response::new(StreamBody::new(tokio_stream_from(rx)).boxed_unsync());
    r.headers_mut().insert(
        "content-length",
        http::HeaderValue::from_str(&n.to_string()).expect("len"),
    );
    r
}

/// Adapts an mpsc receiver into a `Stream` without pulling in tokio-stream.
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A header map as (name, value) pairs.
fn fields(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
