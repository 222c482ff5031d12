//! Raw-byte clients for hostile-input tests: plain TCP to the proxy listener, a CONNECT tunnel
//! with TLS trusting Airlock's CA (any SNI), HTTP/1 response parsing that tells a refusal from a
//! closed connection, and minimal HTTP/2 frames (HPACK literals without indexing or Huffman) for
//! requests the `h2` crate refuses to build.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Anything we can write raw bytes to and read from.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON `error` code of an Airlock refusal, or the `outcome` of a verdict.
    pub fn code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        // On Stripe hosts `error` is Stripe's error object, its code `airlock_<code>`.
        let stripe = || v["error"]["code"].as_str()?.strip_prefix("airlock_");
        v["error"]
            .as_str()
            .or_else(|| v["outcome"].as_str())
            .or_else(stripe)
            .map(str::to_string)
    }
}

/// Everything read from one connection after writing the input.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub responses: Vec<Resp>,
    /// The peer closed (EOF or reset) before we gave up waiting.
    pub closed: bool,
    /// Bytes that did not parse as a response.
    pub junk: usize,
}

impl Exchange {
    pub fn first_status(&self) -> Option<u16> {
        self.responses.first().map(|r| r.status)
    }
}

/// Reads responses until the peer closes, or nothing arrives for `quiet`, or `limit` passes.
/// Input that ends its connection (`Connection: close`) is read until the server closes, however
/// long a held answer takes on a loaded machine (up to the limit); other input until `quiet`.
fn quiet_for(input: &[u8], quiet: Duration) -> Duration {
    let asks_close = input
        .windows(17)
        .any(|w| w.eq_ignore_ascii_case(b"connection: close"));
    if asks_close {
        Duration::from_secs(15)
    } else {
        quiet
    }
}

pub async fn read_exchange<S: AsyncRead + Unpin>(
    s: &mut S,
    quiet: Duration,
    limit: Duration,
) -> Exchange {
    let mut buf = Vec::new();
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + limit;
    let mut chunk = [0u8; 8192];
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        let wait = quiet.min(deadline - now);
        match tokio::time::timeout(wait, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            // Quiet: the answer is complete (or never started and the limit decides).
            Err(_) if buf.is_empty() => continue,
            Err(_) => break,
        }
    }
    let (responses, junk) = parse_responses(&buf);
    Exchange {
        responses,
        closed,
        junk,
    }
}

/// Parses back-to-back HTTP/1.1 responses (content-length or chunked bodies).
pub fn parse_responses(mut b: &[u8]) -> (Vec<Resp>, usize) {
    let mut out = Vec::new();
    while !b.is_empty() {
        let mut hdrs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hdrs);
        let Ok(httparse::Status::Complete(head_len)) = r.parse(b) else {
            break;
        };
        let status = r.code.unwrap_or(0);
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let rest = &b[head_len..];
        let (body, used) = if let Some(len) = get("content-length") {
            let len: usize = len.trim().parse().unwrap_or(0).min(rest.len());
            (rest[..len].to_vec(), len)
        } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            dechunk(rest)
        } else if status == 200 || status == 101 {
            // CONNECT 200 or upgrade: no body.
            (Vec::new(), 0)
        } else {
            (rest.to_vec(), rest.len())
        };
        out.push(Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        b = &rest[used..];
    }
    (out, b.len())
}

fn dechunk(mut b: &[u8]) -> (Vec<u8>, usize) {
    let start = b.len();
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        b = &b[eol + 2..];
        if size == 0 {
            b = b.strip_prefix(b"\r\n").unwrap_or(b);
            break;
        }
        let take = size.min(b.len());
        out.extend_from_slice(&b[..take]);
        b = &b[take..];
        b = b.strip_prefix(b"\r\n").unwrap_or(b);
    }
    (out, start - b.len())
}

/// Writes `input` to a fresh TCP connection to `addr` and reads what comes back.
pub async fn front(addr: SocketAddr, input: &[u8], quiet: Duration) -> Exchange {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(input).await;
    read_exchange(&mut s, quiet_for(input, quiet), Duration::from_secs(15)).await
}

/// `CONNECT host:443` through the proxy, then TLS with `sni`, trusting only `ca_pem` and
/// checking the certificate against `host` (so a mismatching SNI can be sent).
pub async fn tunnel(
    proxy: SocketAddr,
    host: &str,
    sni: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    tunnel_with(proxy, host, sni, ca_pem, alpn, "").await
}

/// [`tunnel`] with `extra` header lines (each ending in CRLF) on the CONNECT, such as the
/// agent's `Proxy-Authorization`.
pub async fn tunnel_with(
    proxy: SocketAddr,
    host: &str,
    sni: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
    extra: &str,
) -> TlsStream<TcpStream> {
    let mut tcp = TcpStream::connect(proxy).await.expect("connect");
    let connect = format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n{extra}\r\n");
    tcp.write_all(connect.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tcp.read(&mut byte).await.expect("read CONNECT answer");
        assert!(n == 1, "proxy closed during CONNECT");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "CONNECT {host}: {}",
        String::from_utf8_lossy(&head)
    );
    let mut cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedName::new(ca_pem, host)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = ServerName::try_from(sni.to_string()).expect("sni");
    conn.connect(name, tcp).await.expect("tls to airlock")
}

/// Opens `n` HTTP/2 streams on `tls` (a tunnel to api.github.com) for 4 MiB answers each, with
/// small windows, and never reads them: an agent that stopped reading. Returns the unread
/// bodies (dropping them resets the streams).
pub async fn stall_h2_streams(tls: TlsStream<TcpStream>, n: usize) -> Vec<h2::RecvStream> {
    let (mut h2c, conn) = h2::client::Builder::new()
        .initial_window_size(65_535)
        .handshake::<_, bytes::Bytes>(tls)
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let mut stalled = Vec::new();
    for i in 0..n {
        let req = http::Request::get(format!("https://api.github.com/bytes/{}", 4 << 20))
            .header("x-n", i.to_string())
            .body(())
            .expect("request");
        h2c = h2c.ready().await.expect("ready");
        let (resp, _) = h2c.send_request(req, true).expect("send");
        let resp = tokio::time::timeout(Duration::from_secs(20), resp)
            .await
            .expect("answer head")
            .expect("answer");
        assert_eq!(resp.status(), 200);
        stalled.push(resp.into_body());
    }
    // Let the upstream fill what windows it has.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stalled
}

/// Writes `input` inside an intercepted HTTP/1.1 tunnel to `host` and reads what comes back.
pub async fn in_tunnel(
    proxy: SocketAddr,
    host: &str,
    ca_pem: &str,
    input: &[u8],
    quiet: Duration,
) -> Exchange {
    let mut tls = tunnel(proxy, host, host, ca_pem, &[b"http/1.1"]).await;
    let _ = tls.write_all(input).await;
    let _ = tls.flush().await;
    read_exchange(&mut tls, quiet_for(input, quiet), Duration::from_secs(15)).await
}

/// Verifies Airlock's certificate for `host` (the CONNECT host), whatever SNI was sent.
#[derive(Debug)]
pub struct PinnedName {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    host: ServerName<'static>,
}

impl PinnedName {
    pub fn new(ca_pem: &str, host: &str) -> PinnedName {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("ca pem")).expect("add ca");
        }
        PinnedName {
            inner: rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
                .build()
                .expect("verifier"),
            host: ServerName::try_from(host.to_string()).expect("host"),
        }
    }
}

impl rustls::client::danger::ServerCertVerifier for PinnedName {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _sni: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.host, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

// ---- HTTP/2 by hand ----

pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types this module reads or writes.
pub mod frame {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const CONTINUATION: u8 = 9;
}

/// One frame: 9-byte header plus payload.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut n: usize) {
    let max = (1usize << prefix_bits) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header block of literal fields without indexing, new names, no Huffman: any bytes at all
/// (CR, LF, upper case, connection headers) go on the wire as given.
pub fn hpack_literals(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0x00, 7, name.len());
        out.extend_from_slice(name);
        hpack_int(&mut out, 0x00, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// What the server did with a hand-made HTTP/2 request on stream 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H2Outcome {
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
    /// A HEADERS frame answered the stream (its block is HPACK, not decoded here).
    Answered,
    /// Closed without any of the above.
    Closed,
    /// Nothing decisive within the time limit.
    Silent,
}

/// Sends the preface, empty SETTINGS, then `frames` (stream 1), and reports the first decisive
/// frame from the server.
pub async fn h2_raw<S: Stream>(s: &mut S, frames: &[Vec<u8>]) -> H2Outcome {
    let mut out = H2_PREFACE.to_vec();
    out.extend(h2_frame(frame::SETTINGS, 0, 0, &[]));
    for f in frames {
        out.extend_from_slice(f);
    }
    if s.write_all(&out).await.is_err() {
        return H2Outcome::Closed;
    }
    let _ = s.flush().await;
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if s.read_exact(&mut head).await.is_err() {
                return H2Outcome::Closed;
            }
            let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                return H2Outcome::Closed;
            }
            let code_at = |i: usize| {
                payload
                    .get(i..i + 4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(u32::MAX)
            };
            match kind {
                frame::SETTINGS if flags & 1 == 0 => {
                    let ack = h2_frame(frame::SETTINGS, 1, 0, &[]);
                    if s.write_all(&ack).await.is_err() {
                        return H2Outcome::Closed;
                    }
                }
                frame::RST_STREAM if stream == 1 => return H2Outcome::Reset(code_at(0)),
                frame::GOAWAY => return H2Outcome::GoAway(code_at(4)),
                frame::HEADERS if stream == 1 => return H2Outcome::Answered,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or(H2Outcome::Silent)
}
