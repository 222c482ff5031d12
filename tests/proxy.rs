//! End-to-end tests of the interception proxy (issue: core proxy): real sockets on 127.0.0.1,
//! real TLS on both sides, a fake upstream with its own CA, reqwest and curl as agents.

mod support;

use std::time::Duration;

use support::{curl, curl_args, Airlock, FakeUpstream, UpstreamOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INSPECT: &str = "[proxy]\ninspect_hosts = [\"api.github.com\", \"upstream.test\"]\n";

async fn setup(toml: &str, opts: UpstreamOptions) -> (FakeUpstream, Airlock) {
    support::init();
    let up = FakeUpstream::start(opts).await;
    let airlock = Airlock::start(
        toml,
        &up,
        &["api.github.com", "upstream.test", "unknown.test"],
    )
    .await;
    (up, airlock)
}

/// A fresh HTTP/1.1 client: its first request opens a new agent connection.
fn h1_client(airlock: &Airlock) -> reqwest::Client {
    airlock
        .client_builder()
        .http1_only()
        .build()
        .expect("client")
}

/// GETs `url`, expects 200 and reads the body to its end.
async fn get_ok(client: &reqwest::Client, url: impl reqwest::IntoUrl) {
    let resp = client.get(url).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");
}

/// Sends raw bytes to the proxy port and returns everything read until close or timeout.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n");
                    if let (Some(head_end), false) = (head_end, out.starts_with(b"HTTP/1.1 200")) {
                        // A refusal: head plus short body; read until its Content-Length is
                        // complete (or, without one, until the peer closes or goes quiet).
                        let head = String::from_utf8_lossy(&out[..head_end]).to_ascii_lowercase();
                        let want = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .map(|len| head_end + 4 + len);
                        while want.is_none_or(|want| out.len() < want) {
                            match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf))
                                .await
                            {
                                Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
                                _ => break,
                            }
                        }
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h1_agent_to_h1_and_h2_upstreams() {
    for (alpn, want_up) in [
        (vec!["http/1.1"], "HTTP/1.1"),
        (vec!["h2", "http/1.1"], "HTTP/2.0"),
    ] {
        let (up, airlock) = setup(
            INSPECT,
            UpstreamOptions {
                alpn,
                ..Default::default()
            },
        )
        .await;
        let client = h1_client(&airlock);
        let resp = client
            .get("https://api.github.com/repos/o/r?x=1")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), reqwest::Version::HTTP_11);
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["path"], "/repos/o/r?x=1");
        let seen = up.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].version, want_up);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h2_agent_with_keepalive_reuse_and_pooling() {
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    let client = airlock.client();
    for i in 0..20 {
        let resp = client
            .post(format!("https://api.github.com/echo/{i}"))
            .body(vec![b'a'; 1000])
            .send()
            .await
            .expect("send");
        assert_eq!(
            resp.version(),
            reqwest::Version::HTTP_2,
            "agent side speaks h2"
        );
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["body_len"], 1000);
    }
    assert_eq!(up.count(), 20);
    assert_eq!(
        up.connections(),
        1,
        "upstream connection is pooled and reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn curl_h1_and_h2_reuse_one_connection() {
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    for flag in ["--http1.1", "--http2"] {
        let args = curl_args(
            &airlock,
            &[
                "-v",
                flag,
                "https://api.github.com/a",
                "https://api.github.com/b",
                "https://api.github.com/c",
            ],
        );
        let (code, out, err) = curl(&args).await;
        assert_eq!(code, 0, "curl failed: {err}");
        assert!(
            out.contains("\"path\":\"/a\"") && out.contains("\"path\":\"/c\""),
            "{out}"
        );
        assert!(
            err.contains("Re-using existing") || err.contains("Reusing existing"),
            "curl {flag} did not reuse the connection:\n{err}"
        );
        assert_eq!(
            err.matches("CONNECT api.github.com:443").count(),
            1,
            "{err}"
        );
    }
    assert_eq!(up.count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn response_streams_before_upstream_finishes() {
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    let client = airlock.client();
    let mut resp = client
        .get("https://api.github.com/hold-stream")
        .send()
        .await
        .expect("send");
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("first bytes must arrive while the upstream still holds the rest")
        .expect("chunk")
        .expect("some");
    assert_eq!(&first[..], b"first-chunk\n");
    up.state.release.notify_one();
    let rest = resp.bytes().await.expect("rest");
    assert_eq!(&rest[..], b"rest\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_body_streams_before_agent_finishes() {
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    let client = airlock.client();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    }));
    let send = tokio::spawn(
        client
            .post("https://api.github.com/upload-hold")
            .body(body)
            .send(),
    );
    tx.send(Ok(bytes::Bytes::from_static(b"part one;")))
        .await
        .expect("send");
    tokio::time::timeout(Duration::from_secs(5), up.state.first_chunk_seen.notified())
        .await
        .expect("upstream must see the first chunk before the agent sends the rest");
    tx.send(Ok(bytes::Bytes::from_static(b"part two")))
        .await
        .expect("send");
    drop(tx);
    let resp = send.await.expect("join").expect("response");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["body_len"], 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_megabytes_stream_with_small_memory() {
    use futures_util::StreamExt;
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    let client = h1_client(&airlock);
    const SIZE: usize = 200 * 1024 * 1024;
    // Warm up so allocator pools exist before measuring.
    let _ = client
        .get("https://api.github.com/bytes/1048576")
        .send()
        .await
        .expect("warm")
        .bytes()
        .await;
    support::reset_peak_rss();
    let (before, _) = support::rss_kib();
    let resp = client
        .get(format!("https://api.github.com/bytes/{SIZE}"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("chunk").len();
    }
    assert_eq!(total, SIZE);
    // Upload the same amount.
    let chunks = futures_util::stream::iter(
        (0..SIZE / (64 * 1024))
            .map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 64 * 1024]))),
    );
    let resp = client
        .post("https://api.github.com/count")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("upload");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["body_len"], SIZE);
    let (_, peak) = support::rss_kib();
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!("200 MB down + 200 MB up: peak RSS growth {growth_mib} MiB");
    // Proxy, client and upstream share this process; buffering would add >= 200 MiB.
    assert!(
        growth_mib < 64,
        "peak RSS grew by {growth_mib} MiB: something buffers"
    );
    assert_eq!(up.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_host_denied_by_default_with_clear_403() {
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    let resp = raw(
        airlock.addr,
        b"CONNECT unknown.test:443 HTTP/1.1\r\nHost: unknown.test:443\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("airlock-reason: unknown_host_denied"),
        "{resp}"
    );
    assert!(resp.contains("\"error\":\"unknown_host_denied\""), "{resp}");
    // Plain HTTP goes through the same policy.
    let resp = raw(
        airlock.addr,
        b"GET http://unknown.test/x HTTP/1.1\r\nHost: unknown.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    // curl reports the refusal instead of hanging.
    let (code, _, err) = curl(&curl_args(&airlock, &["https://unknown.test/"])).await;
    assert_ne!(code, 0);
    assert!(err.contains("403"), "{err}");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_host_tunnelled_when_configured() {
    let toml = format!("{INSPECT}unknown_hosts = \"tunnel\"\n");
    let (up, airlock) = setup(&toml, UpstreamOptions::default()).await;
    // Blind tunnel: the agent sees the upstream's own certificate, not Airlock's.
    let args = vec![
        "-sS".to_string(),
        "--proxy".into(),
        airlock.proxy_url(),
        "--cacert".into(),
        support::path_str(&up.ca_file),
        "https://unknown.test/tunnelled".into(),
    ];
    let (code, out, err) = curl(&args).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/tunnelled"), "{out}");
    assert_eq!(up.count(), 1);
}

/// CONNECTs to `target` through Airlock, then speaks TLS (any certificate accepted) with `sni`
/// as its server name (`None`: an IP name, so no SNI) and asks for `/x` with `host`. `Err`: the
/// CONNECT's refusal, or why no answer came.
async fn through_tunnel(
    airlock: &Airlock,
    target: &str,
    sni: Option<&str>,
    host: &str,
) -> Result<String, String> {
    let mut tcp = TcpStream::connect(airlock.addr).await.expect("connect");
    let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    tcp.write_all(connect.as_bytes()).await.expect("write");
    let mut buf = [0u8; 2048];
    let n = tcp.read(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head);
    }
    let cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny))
        .with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let name = match sni {
        Some(n) => rustls::pki_types::ServerName::try_from(n.to_string()).expect("name"),
        None => {
            rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([192, 0, 2, 10]).into())
        }
    };
    let mut tls = conn
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    match String::from_utf8_lossy(&out).to_string() {
        o if o.is_empty() => Err("no answer".into()),
        o => Ok(o),
    }
}

/// Review of session 19: in tunnel mode, a provider dialled at its address (an inspected
/// host's) with no SNI or a benign one was talked to unjudged. The dial is refused now;
/// another address still tunnels, and without SNI too where `egress.allow` names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tunnel_to_an_inspected_hosts_address_refused() {
    support::init();
    let up = FakeUpstream::start(UpstreamOptions::default()).await;
    let other = FakeUpstream::start(UpstreamOptions::default()).await;
    let (p1, p2) = (up.addr.port(), other.addr.port());
    let toml = format!(
        "{INSPECT}unknown_hosts = \"tunnel\"\n[egress]\nallow = [\"127.0.0.0/8\"]\nports = [443, {p1}, {p2}]\n"
    );
    let airlock = Airlock::start(&toml, &up, &["api.github.com", "upstream.test"]).await;
    let provider = up.addr.to_string();
    for sni in [None, Some("benign.example")] {
        let refused = through_tunnel(&airlock, &provider, sni, "api.github.com")
            .await
            .expect_err("refused");
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
        assert!(refused.contains("inspected_host_address"), "{refused}");
    }
    assert_eq!(up.count(), 0, "nothing reached the provider");
    // Another address (not an inspected host's) still tunnels, with SNI or (allowed) without.
    for sni in [Some("unrelated.test"), None] {
        let out = through_tunnel(&airlock, &other.addr.to_string(), sni, "unrelated.test")
            .await
            .expect("tunnelled");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    assert_eq!(other.count(), 2);
}

/// Review of session 19: a ClientHello without SNI through a CONNECT to an IP address was
/// waved through; its destination cannot be judged, so it is refused unless `egress.allow`
/// names the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tunnel_without_sni_refused() {
    support::init();
    let up = FakeUpstream::start(UpstreamOptions::default()).await;
    let other = FakeUpstream::start(UpstreamOptions::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!("{INSPECT}unknown_hosts = \"tunnel\"\n");
    let mut config = Airlock::config(&toml, dir.path(), &up, &["api.github.com", "upstream.test"]);
    // An IP literal the operator maps to an unrelated upstream (not an inspected host's).
    config
        .upstream
        .resolve
        .insert("192.0.2.10".into(), other.addr);
    let airlock = Airlock::start_with(config, dir).await;
    let refused = through_tunnel(&airlock, "192.0.2.10:443", None, "api.github.com").await;
    assert!(refused.is_err(), "{refused:?}");
    // With a server name it is judged, and tunnels.
    let out = through_tunnel(&airlock, "192.0.2.10:443", Some("unrelated.test"), "x.test")
        .await
        .expect("tunnelled");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(other.count(), 1);
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_header_mismatch_refused() {
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    for flag in ["--http1.1", "--http2"] {
        let args = curl_args(
            &airlock,
            &[
                flag,
                "-i",
                "-H",
                "Host: upstream.test",
                "https://api.github.com/x",
            ],
        );
        let (code, out, err) = curl(&args).await;
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("HTTP/1.1 403") || out.contains("HTTP/2 403"),
            "{out}"
        );
        assert!(out.contains("authority_mismatch"), "{out}");
    }
    assert_eq!(up.count(), 0, "nothing forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sni_mismatch_refused() {
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    let mut tcp = TcpStream::connect(airlock.addr).await.expect("connect");
    tcp.write_all(b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The agent claims another name in SNI; it trusts the CA but does not check the name.
    let cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny))
        .with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from("upstream.test").expect("name");
    let mut tls = conn.connect(name, tcp).await.expect("tls");
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("sni_mismatch"), "{out}");
    assert_eq!(up.count(), 0);
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Checks that `resp` is Airlock's 502 for an upstream failure of kind `reason`; its body.
async fn upstream_refusal(resp: reqwest::Response, reason: &str) -> serde_json::Value {
    assert_eq!(resp.status(), 502);
    assert_eq!(
        resp.headers()
            .get("airlock-reason")
            .and_then(|v| v.to_str().ok()),
        Some(reason)
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["side"], "upstream");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_upstream_certificate_gives_502() {
    let (up, airlock) = setup(
        INSPECT,
        UpstreamOptions {
            untrusted_cert: true,
            ..Default::default()
        },
    )
    .await;
    let resp = airlock
        .client()
        .get("https://api.github.com/x")
        .send()
        .await
        .expect("send");
    let body = upstream_refusal(resp, "upstream_certificate").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("UnknownIssuer"),
        "{body}"
    );
    assert_eq!(
        up.count(),
        0,
        "the request never reached the untrusted server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_http_proxying() {
    let (up, airlock) = setup(
        INSPECT,
        UpstreamOptions {
            plain: true,
            ..Default::default()
        },
    )
    .await;
    let args = vec![
        "-sS".to_string(),
        "--proxy".into(),
        airlock.proxy_url(),
        "http://upstream.test/plain?q=1".into(),
    ];
    let (code, out, err) = curl(&args).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"path\":\"/plain?q=1\""), "{out}");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].header("proxy-connection").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_headers_get_431_and_bad_targets_400() {
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    let big = "a".repeat(100 * 1024);
    let req = format!(
        "GET http://upstream.test/ HTTP/1.1\r\nHost: upstream.test\r\nX-Big: {big}\r\n\r\n"
    );
    let resp = raw(airlock.addr, req.as_bytes()).await;
    assert!(
        resp.starts_with("HTTP/1.1 431"),
        "{}",
        &resp[..resp.len().min(200)]
    );
    let cases: &[(&str, &str)] = &[
        ("CONNECT api.github.com HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
        (
            "CONNECT api.github.com:0 HTTP/1.1\r\nHost: x\r\n\r\n",
            "400",
        ),
        (
            "CONNECT api.github.com:99999 HTTP/1.1\r\nHost: x\r\n\r\n",
            "400",
        ),
        (
            "GET /not-a-proxy-request HTTP/1.1\r\nHost: x\r\n\r\n",
            "400",
        ),
    ];
    for (req, status) in cases {
        let resp = raw(airlock.addr, req.as_bytes()).await;
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status}")),
            "{req:?} -> {resp}"
        );
    }
    // Still healthy.
    let resp = airlock
        .client()
        .get("https://api.github.com/ok")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_header_connection_is_closed() {
    let toml = format!("{INSPECT}header_read_timeout = \"1s\"\n");
    let (_up, airlock) = setup(&toml, UpstreamOptions::default()).await;
    let mut s = TcpStream::connect(airlock.addr).await.expect("connect");
    s.write_all(b"GET http://upstream.test/ HTTP/1.1\r\nHost: ups")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    match r {
        Ok(Ok(n)) => {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
        }
        Ok(Err(_)) => {}
        Err(_) => panic!("a client that never finishes its headers must be cut off"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_drains_in_flight_requests() {
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    let client = airlock.client();
    let mut resp = client
        .get("https://api.github.com/hold-stream")
        .send()
        .await
        .expect("send");
    let first = resp.chunk().await.expect("chunk").expect("some");
    assert_eq!(&first[..], b"first-chunk\n");
    airlock.shutdown();
    // No new connections are accepted (once the listener has seen the shutdown)...
    support::eventually("new connections to be refused", support::WAIT, || async {
        // A fresh client each time: a pooled connection would not test the listener.
        match airlock
            .client()
            .get("https://api.github.com/new")
            .send()
            .await
        {
            Err(_) => Ok(()),
            Ok(r) => Err(r.status()),
        }
    })
    .await;
    // ...but the in-flight response completes.
    up.state.release.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(5), resp.bytes())
        .await
        .expect("drained")
        .expect("rest");
    assert_eq!(&rest[..], b"rest\n");
}

/// Connections are spread over the worker runtimes, each with its own upstream pool, and a
/// warm upstream connection serves any worker: an agent connection's first request borrows it
/// when its own worker has none, and that worker then warms its own pool in the background,
/// so twelve fresh agent connections on three workers, one request each, and six more with
/// two requests each, open at most one upstream connection per worker (without the sharing,
/// each fresh connection on a cold worker dialled; before pools were per worker, one per agent
/// connection). The inline mode (`workers = 0`, one shared pool) serves the same over one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_spread_over_workers_sharing_warm_upstreams() {
    for workers in [3, 0] {
        let toml = format!("{INSPECT}workers = {workers}\n");
        let (up, airlock) = setup(&toml, UpstreamOptions::default()).await;
        assert_eq!(airlock.proxy.workers.count(), workers);
        let most = workers.max(1);
        for round in 0..2 {
            for i in 0..6 {
                // A fresh client is a fresh agent connection.
                get_ok(
                    &h1_client(&airlock),
                    format!("https://api.github.com/w/{round}/{i}"),
                )
                .await;
            }
        }
        assert_eq!(up.count(), 12, "workers = {workers}");
        assert!(
            up.connections() <= most,
            "workers = {workers}: at most one upstream connection per worker, got {}",
            up.connections()
        );
        for i in 0..6 {
            let client = h1_client(&airlock);
            get_ok(&client, format!("https://api.github.com/a/{i}")).await;
            get_ok(&client, format!("https://api.github.com/b/{i}")).await;
        }
        assert_eq!(up.count(), 24, "workers = {workers}");
        assert!(
            up.connections() <= most,
            "workers = {workers}: still at most one per worker, got {}",
            up.connections()
        );
        let live = airlock
            .proxy
            .upstream
            .live_connections("api.github.com", 443);
        assert!(
            live.iter().all(|n| *n <= 1),
            "workers = {workers}: {live:?}"
        );
    }
}

/// A worker whose agent connection borrowed another worker's upstream connection warms its
/// own pool in the background: that connection's next request, and the worker's later agent
/// connections, travel over the worker's own upstream connection (two upstream connections in
/// all for two workers, one live in each worker's pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_borrowed_warms_its_own_pool() {
    let toml = format!("{INSPECT}workers = 2\n");
    let (up, airlock) = setup(&toml, UpstreamOptions::default()).await;
    // The first agent connection stays open, so the second is served by the other worker.
    let (first, second) = (h1_client(&airlock), h1_client(&airlock));
    get_ok(&first, "https://api.github.com/one").await;
    get_ok(&second, "https://api.github.com/two").await;
    let mut open = airlock.proxy.workers.open_connections();
    open.sort();
    assert_eq!(open, [1, 1], "one agent connection on each worker");
    // The second's worker borrowed the first's upstream connection, then warms its own with
    // no further request.
    support::eventually(
        "the borrowing worker to dial its own",
        std::time::Duration::from_secs(5),
        || async {
            match up.connections() {
                n if n >= 2 => Ok(()),
                n => Err(format!("{n} upstream connections")),
            }
        },
    )
    .await;
    assert_eq!(up.connections(), 2, "the borrowing worker dialled its own");
    get_ok(&second, "https://api.github.com/three").await;
    get_ok(&h1_client(&airlock), "https://api.github.com/four").await;
    assert_eq!(up.count(), 4);
    assert_eq!(up.connections(), 2, "one per worker");
    let live = airlock
        .proxy
        .upstream
        .live_connections("api.github.com", 443);
    assert_eq!(
        live,
        [0, 1, 1, 0],
        "one live in each worker's pool (the last: approved calls')"
    );
    drop((first, second));
}

/// The pre-dial runs on another worker than the agent's connection (the two handshakes on two
/// cores); its socket then moves to the agent's worker, whose pool keeps it: three requests on
/// one agent connection travel over the one pre-dialled upstream connection. The agent
/// connection is opened by hand: a pooling client may open a second one when its next request
/// starts before the first connection is back in its pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_predial_made_on_another_worker_serves_the_agents_worker() {
    use http_body_util::{BodyExt, Empty};
    let toml = format!("{INSPECT}workers = 2\n");
    let (up, airlock) = setup(&toml, UpstreamOptions::default()).await;
    let host = "api.github.com";
    let tls = support::raw::tunnel(airlock.addr, host, host, &airlock.ca_pem, &[b"http/1.1"]).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("http/1.1 to airlock");
    tokio::spawn(conn);
    for i in 0..3 {
        send.ready().await.expect("agent connection still open");
        let req = http::Request::get(format!("/p/{i}"))
            .header("host", host)
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        let resp = send.send_request(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.expect("body");
    }
    assert_eq!(up.count(), 3);
    assert_eq!(up.connections(), 1, "all over the pre-dialled connection");
    let live = airlock.proxy.upstream.live_connections(host, 443);
    assert_eq!(live.iter().sum::<u32>(), 1, "{live:?}");
    assert_eq!(live[0], 0, "held by a worker's pool: {live:?}");
}

/// Concurrent first requests from one worker to a cold h2 upstream share one connection: one
/// dial per pool and target (the pre-dial), the other requests wait for it and multiplex.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_requests_share_one_h2_upstream_connection() {
    let toml = format!("{INSPECT}workers = 1\n");
    let (up, airlock) = setup(&toml, UpstreamOptions::default()).await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let client = h1_client(&airlock);
            tokio::spawn(async move {
                get_ok(&client, format!("https://api.github.com/c/{i}")).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("request task");
    }
    assert_eq!(up.count(), 12);
    assert_eq!(
        up.connections(),
        1,
        "twelve agent connections, one upstream"
    );
    let live = airlock
        .proxy
        .upstream
        .live_connections("api.github.com", 443);
    assert_eq!(live, [0, 1, 0], "the worker's own connection");
    let seen = up.requests();
    assert!(seen.iter().all(|r| r.version == "HTTP/2.0"), "{seen:?}");
}

/// Live upstream connections to api.github.com:443, all pools together.
fn live_github_connections(airlock: &Airlock) -> u32 {
    airlock
        .proxy
        .upstream
        .live_connections("api.github.com", 443)
        .iter()
        .sum()
}

/// Waits until no pool counts a live connection to api.github.com:443.
async fn no_live_github_connection(airlock: &Airlock, what: &str) {
    support::eventually(what, support::WAIT, || async {
        match live_github_connections(airlock) {
            0 => Ok(()),
            n => Err(format!("{n} live")),
        }
    })
    .await;
}

/// An h2 upstream connection unused for `upstream.pool_idle_timeout` is closed and stops
/// counting live; the next request dials a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_h2_upstream_connection_is_closed() {
    let toml = format!("{INSPECT}workers = 1\n[upstream]\npool_idle_timeout = \"300ms\"\n");
    let (up, airlock) = setup(&toml, UpstreamOptions::default()).await;
    let client = h1_client(&airlock);
    get_ok(&client, "https://api.github.com/before").await;
    assert_eq!(live_github_connections(&airlock), 1);
    no_live_github_connection(&airlock, "the idle connection to close").await;
    get_ok(&client, "https://api.github.com/after").await;
    assert_eq!(up.connections(), 2, "the next request dialled afresh");
    assert_eq!(live_github_connections(&airlock), 1);
}

/// An upstream that drops its h2 connection (no GOAWAY) costs nothing visible: the connection
/// leaves the pool and the next request dials a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_h2_upstream_connection_is_replaced() {
    let toml = format!("{INSPECT}workers = 1\n");
    let (up, airlock) = setup(&toml, UpstreamOptions::default()).await;
    let client = h1_client(&airlock);
    get_ok(&client, "https://api.github.com/one").await;
    up.state.drop_connections.notify_waiters();
    no_live_github_connection(&airlock, "the dropped connection to leave the pool").await;
    get_ok(&client, "https://api.github.com/two").await;
    // Which connections carried them, not how many were dialled: under load reqwest may open
    // a second agent connection beside the first (it races a new connection against its idle
    // pool), and that connection's pre-dial is a dial this test did not ask for.
    let carried: Vec<usize> = up.requests().iter().map(|r| r.connection).collect();
    assert_eq!(carried.len(), 2, "both requests reached the upstream");
    assert_ne!(
        carried[0], carried[1],
        "the second request went on a new connection, not the dropped one"
    );
    assert_eq!(
        live_github_connections(&airlock),
        1,
        "only the new one is live"
    );
}

/// The upstream connection is dialled while the agent's TLS handshake runs; when that dial
/// fails, the first request gets the same refusal as a failed dial at request time (502
/// `upstream_connect`, nothing sent), and the next connection dials afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_predial_is_the_first_requests_connect_error() {
    let (up, airlock) = setup(INSPECT, UpstreamOptions::default()).await;
    up.state
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let resp = airlock
        .client()
        .get("https://api.github.com/down")
        .send()
        .await
        .expect("send");
    upstream_refusal(resp, "upstream_connect").await;
    assert_eq!(up.count(), 0);
    up.state
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let resp = airlock
        .client()
        .get("https://api.github.com/up")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
    assert_eq!(
        live_github_connections(&airlock),
        1,
        "the connection that served it is counted live"
    );
}

/// Trailer fields an agent sends after a streamed body are not forwarded: no check reads them
/// (a method override or an account header there would go upstream unjudged).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_trailers_are_not_forwarded() {
    for alpn in ["h2", "http/1.1"] {
        trailers_not_forwarded_to(alpn).await;
    }
}

async fn trailers_not_forwarded_to(alpn: &'static str) {
    let (up, airlock) = setup(
        INSPECT,
        UpstreamOptions {
            alpn: vec![alpn],
            ..Default::default()
        },
    )
    .await;
    let tls = support::raw::tunnel(
        airlock.addr,
        "upstream.test",
        "upstream.test",
        &airlock.ca_pem,
        &[b"h2"],
    )
    .await;
    let (mut client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("GET")
        .uri("https://upstream.test/with-trailers")
        .header("trailer", "x-http-method-override")
        .body(())
        .expect("request");
    let (resp, mut stream) = client.send_request(req, false).expect("send");
    let mut trailers = http::HeaderMap::new();
    trailers.insert(
        "x-http-method-override",
        http::HeaderValue::from_static("DELETE"),
    );
    let sent = stream
        .send_data(bytes::Bytes::from_static(b"x"), false)
        .and_then(|()| stream.send_trailers(trailers));
    if let Err(e) = sent {
        // The stream ended before the body did: say what Airlock answered.
        let answer = match resp.await {
            Ok(r) => format!("{} {:?}", r.status(), r.headers()),
            Err(e) => e.to_string(),
        };
        panic!("{alpn}: the request's stream ended early ({e}); Airlock answered: {answer}");
    }
    let resp = resp.await.expect("response");
    assert_eq!(resp.status(), 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].trailers.is_empty(),
        "{alpn}: {:?}",
        seen[0].trailers
    );
}

/// Review of session 20: a header spelled with `_` went upstream as sent. Unicorn folds `_`
/// and `-` alike and joins the two spellings with a comma, so `Content_Type: <form>` beside
/// `Content-Type: application/json` read as a form upstream (`_method=DELETE` in a JSON
/// string became a method override) while Airlock judged JSON; `Transfer_Encoding` could
/// reframe the body behind the provider's edge. Such headers are no longer sent upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_spelled_with_underscores_are_not_sent_upstream() {
    let (up, a) = setup(INSPECT, UpstreamOptions::default()).await;
    for client in [h1_client(&a), a.client()] {
        let resp = client
            .post("https://api.github.com/repos/o/r/releases/1")
            .header("content_type", "application/x-www-form-urlencoded")
            .header("content-type", "application/json")
            .header("transfer_encoding", "chunked")
            .header("x_custom", "1")
            .header("x-kept", "yes")
            .body(r#"{"name":"x","z":"&_method=DELETE&"}"#)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert!(
            r.headers.iter().all(|(k, _)| !k.contains('_')),
            "{:?}",
            r.headers
        );
        assert_eq!(r.header("x-kept"), Some("yes"));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
}
