//! Agent identity, credentials and egress (issue 4), end to end through real sockets:
//! 407 cases, credential stripping/injection, response scrubbing, per-agent limits, the gate
//! executing with the configured credential, and every egress-guard class.

mod support;

use std::sync::Arc;

use support::{curl, path_str, Airlock, FakeUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REAL_GITHUB: &str = "ghp_REALtokenFromAirlockConfig0123456789";

struct Setup {
    airlock: Airlock,
    up: FakeUpstream,
    token: String,
    limited_token: String,
}

/// Airlock with two agents (`bot`: any service; `gh-only`: github only), a GitHub credential
/// read from a file, and the shipped catalog.
async fn setup(extra: &str) -> Setup {
    setup_on(extra, Default::default()).await
}

/// [`setup`] with an upstream started with `opts`.
async fn setup_on(extra: &str, opts: support::UpstreamOptions) -> Setup {
    support::init();
    let up = FakeUpstream::start(opts).await;
    let dir = tempfile::tempdir().expect("dir");
    let secret_file = dir.path().join("github-token");
    support::write_secret(&secret_file, format!("{REAL_GITHUB}\n"));
    let token = airlock::agents::generate_token();
    let limited_token = airlock::agents::generate_token();
    let toml = format!(
        "{}{}[credentials.github]\nfile = {:?}\n{extra}",
        airlock::agents::config_block("bot", &airlock::agents::token_digest(&token), &[], None),
        airlock::agents::config_block(
            "gh-only",
            &airlock::agents::token_digest(&limited_token),
            &["github".into()],
            Some("alice")
        ),
        path_str(&secret_file),
    );
    let config = Airlock::config(
        &toml,
        dir.path(),
        &up,
        &["api.github.com", "api.stripe.com", "unknown.test"],
    );
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let airlock =
        Airlock::start_with_parts(config, dir, catalog, Arc::new(airlock::gate::SystemClock)).await;
    Setup {
        airlock,
        up,
        token,
        limited_token,
    }
}

fn client_as(a: &Airlock, name: &str, token: &str) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(a.ca_pem.as_bytes()).expect("ca");
    let proxy = reqwest::Proxy::all(format!("http://{name}:{token}@{}", a.addr)).expect("proxy");
    reqwest::Client::builder()
        .proxy(proxy)
        .tls_certs_only([cert])
        .build()
        .expect("client")
}

/// Sends one raw request head to the proxy and returns the response head and body text.
async fn raw(a: &Airlock, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(a.addr)
        .await
        .expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if let Some(end) = find(&out, b"\r\n\r\n") {
                        let text = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if out.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_or_wrong_proxy_credentials_get_407() {
    let s = setup("").await;
    let a = &s.airlock;
    let cases: Vec<(&str, String, &str)> = vec![
        ("no credentials", String::new(), "proxy_auth_required"),
        (
            "wrong token",
            format!(
                "Proxy-Authorization: Basic {}\r\n",
                basic("bot", "alk_wrong")
            ),
            "proxy_auth_rejected",
        ),
        (
            "unknown agent",
            format!(
                "Proxy-Authorization: Basic {}\r\n",
                basic("nobody", &s.token)
            ),
            "proxy_auth_rejected",
        ),
        (
            "another agent's token",
            format!(
                "Proxy-Authorization: Basic {}\r\n",
                basic("gh-only", &s.token)
            ),
            "proxy_auth_rejected",
        ),
        (
            "not basic",
            format!("Proxy-Authorization: Bearer {}\r\n", s.token),
            "proxy_auth_malformed",
        ),
        (
            "bad base64",
            "Proxy-Authorization: Basic %%%\r\n".into(),
            "proxy_auth_malformed",
        ),
    ];
    for (what, auth, code) in cases {
        for head in [
            format!(
                "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n{auth}\r\n"
            ),
            format!(
                "GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n{auth}\r\n"
            ),
        ] {
            let resp = raw(a, &head).await;
            assert!(resp.starts_with("HTTP/1.1 407"), "{what}: {resp}");
            let lower = resp.to_ascii_lowercase();
            assert!(
                lower.contains("proxy-authenticate: basic realm=\"airlock\""),
                "{what}: {resp}"
            );
            assert!(resp.contains(code), "{what}: want {code}: {resp}");
            assert!(!resp.contains(&s.token), "{what}: token echoed");
        }
    }
    assert_eq!(s.up.count(), 0, "nothing reached the upstream");

    // The right credentials work, with curl (userinfo in the proxy URL) and reqwest.
    let ca = a.ca_file();
    let (code, out, err) = curl(&[
        "-sS".into(),
        "--proxy".into(),
        format!("http://bot:{}@{}", s.token, a.addr),
        "--cacert".into(),
        path_str(&ca),
        "https://api.github.com/user".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"path\":\"/user\""), "{out}");
    let r = client_as(a, "bot", &s.token)
        .get("https://api.github.com/user")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_credentials_are_replaced_by_the_configured_one() {
    let s = setup("").await;
    let r = client_as(&s.airlock, "bot", &s.token)
        .get("https://api.github.com/user/repos")
        .header("authorization", "token ghp_AGENTS_OWN_BOGUS")
        .header("cookie", "session=agent")
        .header("x-github-token", "also-bogus")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let seen = s.up.requests();
    let last = seen.last().expect("one request");
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {REAL_GITHUB}").as_str())
    );
    assert_eq!(
        last.headers
            .iter()
            .filter(|(k, _)| k == "authorization")
            .count(),
        1
    );
    assert!(last.header("cookie").is_none());
    assert!(last.header("x-github-token").is_none());
    assert!(last.header("proxy-authorization").is_none());
    // The default echo body carries the authorization the upstream saw: masked for the agent.
    let text = r.text().await.expect("body");
    assert!(!text.contains(REAL_GITHUB), "{text}");
    assert!(text.contains("Bearer ****"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_echo_of_the_real_token_never_reaches_the_agent() {
    let s = setup("").await;
    let r = client_as(&s.airlock, "bot", &s.token)
        .get("https://api.github.com/echo")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let echoed = r
        .headers()
        .get("x-echoed-authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(echoed, format!("Bearer {}", "*".repeat(REAL_GITHUB.len())));
    let body = r.text().await.expect("body");
    assert!(!body.contains(REAL_GITHUB), "{body}");
    assert!(body.contains(&"*".repeat(REAL_GITHUB.len())), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_are_limited_to_their_services() {
    let s = setup("").await;
    let limited = client_as(&s.airlock, "gh-only", &s.limited_token);
    let ok = limited
        .get("https://api.github.com/user")
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    limited
        .get("https://api.stripe.com/v1/charges")
        .send()
        .await
        .expect_err("CONNECT refused");
    let resp = raw(
        &s.airlock,
        &format!(
            "CONNECT api.stripe.com:443 HTTP/1.1\r\nHost: api.stripe.com:443\r\nProxy-Authorization: Basic {}\r\n\r\n",
            basic("gh-only", &s.limited_token)
        ),
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 403") && resp.contains("agent_not_allowed"),
        "{resp}"
    );
    // Plain HTTP to a credentialed host would carry the real token in clear text: refused.
    let resp = raw(
        &s.airlock,
        &format!(
            "GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\nProxy-Authorization: Basic {}\r\n\r\n",
            basic("bot", &s.token)
        ),
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 403") && resp.contains("credential_over_http"),
        "{resp}"
    );
    // The unlimited agent may.
    let r = client_as(&s.airlock, "bot", &s.token)
        .get("https://api.stripe.com/v1/charges")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approved_execution_injects_the_credential_and_stores_none() {
    let s = setup("").await;
    let a = &s.airlock;
    let bot = client_as(a, "bot", &s.token);
    let r = bot
        .delete("https://api.github.com/repos/octo/demo")
        .header("authorization", "token ghp_AGENTS_OWN_BOGUS")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 423);
    let id = r
        .headers()
        .get("airlock-review-id")
        .and_then(|v| v.to_str().ok())
        .expect("review id")
        .to_string();
    assert_eq!(s.up.count(), 0);

    let (status, review) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(review["agent"], "bot");
    let text = review.to_string();
    assert!(
        !text.contains("ghp_AGENTS_OWN_BOGUS") && !text.contains(REAL_GITHUB),
        "{text}"
    );

    // Another agent cannot read it through airlock.local; its own agent can.
    let other = client_as(a, "gh-only", &s.limited_token)
        .get(format!("https://airlock.local/v1/reviews/{id}"))
        .send()
        .await
        .expect("send");
    assert_eq!(other.status(), 404);
    let mine = bot
        .get(format!("https://airlock.local/v1/reviews/{id}"))
        .send()
        .await
        .expect("send");
    assert_eq!(mine.status(), 200);

    let (status, done) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/approve"),
            Some(serde_json::json!({"comment": "ok"})),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "executed");
    let seen = s.up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {REAL_GITHUB}").as_str())
    );
    // The recorded upstream answer (which echoes the credential) is masked in the store.
    let (_, after) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert!(!after.to_string().contains(REAL_GITHUB), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn egress_guard_refuses_each_class_with_a_reason() {
    let s = setup("[proxy]\nunknown_hosts = \"tunnel\"\n").await;
    let a = &s.airlock;
    let auth = format!("Proxy-Authorization: Basic {}\r\n", basic("bot", &s.token));
    let cases: &[(&str, &str)] = &[
        ("127.0.0.1:443", "egress_loopback"),
        ("127.1:443", "egress_loopback"),
        ("0x7f.0.0.1:443", "egress_loopback"),
        ("2130706433:443", "egress_loopback"),
        ("0177.0.0.1:443", "egress_loopback"),
        ("localhost:443", "egress_loopback"),
        ("[::1]:443", "egress_loopback"),
        ("[::ffff:127.0.0.1]:443", "egress_loopback"),
        ("[::ffff:7f00:1]:443", "egress_loopback"),
        ("169.254.169.254:80", "egress_link_local"),
        ("[::ffff:169.254.169.254]:80", "egress_link_local"),
        ("[fe80::1]:443", "egress_link_local"),
        ("10.0.0.5:443", "egress_private"),
        ("172.16.1.1:443", "egress_private"),
        ("192.168.0.1:443", "egress_private"),
        ("[fd12::1]:443", "egress_private"),
        ("100.64.1.1:443", "egress_cgnat"),
        ("224.0.0.1:443", "egress_multicast"),
        ("[ff02::1]:443", "egress_multicast"),
        ("0.0.0.0:443", "egress_reserved"),
        ("[64:ff9b::7f00:1]:443", "egress_loopback"),
        ("[2002:a00:1::]:443", "egress_private"),
        ("unknown.test:22", "egress_port"),
        ("example.com:8443", "egress_port"),
    ];
    for (target, code) in cases {
        let resp = raw(
            a,
            &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n"),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 403"), "{target}: {resp}");
        assert!(
            resp.contains(&format!("airlock-reason: {code}")),
            "{target}: want {code}: {resp}"
        );
    }
    // Plain HTTP goes through the same guard.
    let resp = raw(
        a,
        &format!("GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n{auth}\r\n"),
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 403") && resp.contains("egress_link_local"),
        "{resp}"
    );
    // A mapped host (resolve override) still works in tunnel mode.
    let ok = raw(
        a,
        &format!("CONNECT unknown.test:443 HTTP/1.1\r\nHost: unknown.test:443\r\n{auth}\r\n"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn airlock_listeners_are_unreachable_through_the_proxy() {
    support::init();
    // Even with loopback allowed and the admin port on the port allowlist.
    let admin_port = support::spare_port();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        "[proxy]\nunknown_hosts = \"tunnel\"\n[egress]\nallow = [\"127.0.0.0/8\", \"::1\"]\nports = [443, 80, {admin_port}]\n"
    );
    let mut config = Airlock::config(&toml, dir.path(), &up, &["unknown.test"]);
    config.admin.listen = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let a = Airlock::start_with(config, dir).await;
    assert_eq!(a.admin_addr.port(), admin_port);
    for target in [
        format!("127.0.0.1:{admin_port}"),
        format!("localhost:{admin_port}"),
        format!("127.0.0.2:{admin_port}"),
        format!("[::ffff:127.0.0.1]:{admin_port}"),
        format!("2130706433:{admin_port}"),
    ] {
        let resp = raw(
            &a,
            &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        )
        .await;
        assert!(
            resp.starts_with("HTTP/1.1 403") && resp.contains("airlock_listener"),
            "{target}: {resp}"
        );
    }
    let resp = raw(
        &a,
        &format!("GET http://127.0.0.1:{admin_port}/v1/reviews HTTP/1.1\r\nHost: 127.0.0.1:{admin_port}\r\n\r\n"),
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 403") && resp.contains("airlock_listener"),
        "{resp}"
    );
    // The proxy's own port too (no loops).
    let p = a.addr.port();
    let resp = raw(
        &a,
        &format!("CONNECT 127.0.0.1:{p} HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_access_is_off_by_default() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut config = Airlock::config("", dir.path(), &up, &["api.github.com"]);
    config.proxy.allow_anonymous = false; // the harness turns it on for other suites
    assert!(
        !airlock::config::Config::from_toml("t", "")
            .expect("defaults")
            .proxy
            .allow_anonymous
    );
    let a = Airlock::start_with(config, dir).await;
    let resp = raw(
        &a,
        "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 407"), "{resp}");
}

// ---- the credential never reaches the agent in an answer's reason, trailers or encoding ----

/// An intercepted tunnel to `host` as agent `bot`, offering `alpn`.
async fn bot_tunnel(
    s: &Setup,
    host: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let auth = format!("Proxy-Authorization: Basic {}\r\n", basic("bot", &s.token));
    support::raw::tunnel_with(s.airlock.addr, host, host, &s.airlock.ca_pem, alpn, &auth).await
}

/// Every byte an HTTP/1.1 upstream's answer puts on the agent's connection (after TLS).
async fn h1_bytes(s: &Setup, path: &str) -> Vec<u8> {
    let mut tls = bot_tunnel(s, "api.github.com", &[b"http/1.1"]).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(support::WAIT, tls.read_to_end(&mut out)).await;
    out
}

/// A body as sent, or decompressed if it is gzip: what an agent's client could read of it.
fn readable(body: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match flate2::read::GzDecoder::new(body).read_to_end(&mut out) {
        Ok(_) => out,
        Err(_) => body.to_vec(),
    }
}

/// A credential an HTTP/1.1 upstream echoes in its reason phrase (`HTTP/1.1 200 OK Bearer …`)
/// is not written back to the agent: it gets the canonical reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reason_phrase_echoing_the_credential_never_reaches_the_agent() {
    let s = setup_on(
        "",
        support::UpstreamOptions {
            alpn: vec!["http/1.1"],
            ..Default::default()
        },
    )
    .await;
    let out = h1_bytes(&s, "/user?respond_reason=1").await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(s.up.count(), 1, "{text}");
    assert_eq!(
        s.up.requests()[0].header("authorization"),
        Some(format!("Bearer {REAL_GITHUB}").as_str())
    );
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(find(&out, REAL_GITHUB.as_bytes()).is_none(), "{text}");
}

/// A credential an upstream echoes in a trailer is masked there as in a header.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trailer_echoing_the_credential_is_masked() {
    use http_body_util::BodyExt;
    let s = setup("").await;
    let tls = bot_tunnel(&s, "api.github.com", &[b"h2"]).await;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::get("https://api.github.com/user?respond_trailer=1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = send.send_request(req).await.expect("answer");
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.expect("body");
    let trailers = got.trailers().cloned().unwrap_or_default();
    let body = got.to_bytes();
    assert!(find(&body, REAL_GITHUB.as_bytes()).is_none());
    let echoed = trailers
        .get("x-echoed-authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    assert_eq!(
        echoed,
        Some(format!("Bearer {}", "*".repeat(REAL_GITHUB.len()))),
        "{trailers:?}"
    );
}

/// Airlock asks a credentialed host for an uncompressed answer; one that comes compressed
/// anyway cannot be scrubbed, so it never reaches the agent: 502 `upstream_encoding`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compressed_answer_from_a_credentialed_host_is_withheld() {
    let s = setup("").await;
    let r = client_as(&s.airlock, "bot", &s.token)
        .get("https://api.github.com/user?respond_gzip=1")
        .send()
        .await
        .expect("send");
    let (status, headers) = (r.status(), r.headers().clone());
    let body = r.bytes().await.expect("body");
    assert_eq!(s.up.count(), 1);
    assert!(
        find(&readable(&body), REAL_GITHUB.as_bytes()).is_none(),
        "{status} {headers:?}"
    );
    assert_eq!(status, 502, "{headers:?}");
    assert_eq!(headers["airlock-reason"], "upstream_encoding");
}

/// [`a_compressed_answer_from_a_credentialed_host_is_withheld`] for an approved request: it
/// was sent, so it is `executed`, with the body withheld and the reason said; the agent
/// waiting for it gets 502 `upstream_encoding`, not the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compressed_answer_to_an_approved_request_is_withheld() {
    let s = setup("").await;
    let a = &s.airlock;
    let agent = client_as(a, "bot", &s.token);
    let waiting = tokio::spawn(async move {
        agent
            .delete("https://api.github.com/repos/octo/demo?respond_gzip=1")
            .header("airlock-wait", "30")
            .send()
            .await
            .expect("send")
    });
    let id = support::eventually("the held request", support::WAIT, || async {
        let pending =
            support::all_reviews(&a.gate, Some(airlock::gate::ReviewState::Pending)).await;
        pending.first().map(|r| r.id.clone())
    })
    .await;
    let (code, done) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(s.up.count(), 1);
    let resp = waiting.await.expect("agent");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.bytes().await.expect("body");
    assert!(
        find(&readable(&body), REAL_GITHUB.as_bytes()).is_none(),
        "{status} {headers:?}"
    );
    assert_eq!(done["state"], "executed", "it was sent: {done}");
    assert_eq!(done["result"]["status"], 200, "{done}");
    assert!(
        done["result"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("upstream_encoding")),
        "{done}"
    );
    assert_eq!(status, 502, "{headers:?}");
    assert_eq!(headers["airlock-outcome"], "EXECUTED");
    assert_eq!(headers["airlock-reason"], "upstream_encoding");
}

/// Cookies and other credentials a credentialed host sets in an answer to a request that
/// carried the injected credential are dropped before the agent sees it, as they are from an
/// executed review's answer; a host without a credential keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_cookie_from_a_credentialed_host_never_reaches_the_agent() {
    let s = setup("").await;
    let bot = client_as(&s.airlock, "bot", &s.token);
    let r = bot
        .get("https://api.github.com/user?respond_with_credentials=1")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    for h in ["set-cookie", "x-auth-token", "private-token"] {
        assert!(r.headers().get(h).is_none(), "{h}: {:?}", r.headers());
    }
    assert_eq!(r.headers()["x-request-id"], "req-visible-123");
    // Control: no credential for Stripe here, so nothing of Airlock's is at stake.
    let r = bot
        .get("https://api.stripe.com/v1/charges?respond_with_credentials=1")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_some(), "{:?}", r.headers());
}

// ---- issue 21 item 7: credential-like headers and secret query values are never shown ----

/// A JSON webhook sink: every POSTed body, in order.
async fn webhook_sink() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"ok"),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), rx)
}

/// Signs in to the dashboard with `token` and returns the HTML of each of `paths`.
async fn dashboard_pages(a: &Airlock, token: &str, paths: &[String]) -> Vec<String> {
    let base = format!("http://{}", a.admin_addr);
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client");
    let cookie_of = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                let (k, val) = v.split(';').next()?.split_once('=')?;
                (k == name && !val.is_empty()).then(|| val.to_string())
            })
    };
    let page = c.get(format!("{base}/ui/login")).send().await.expect("get");
    let login = cookie_of(&page, "airlock_login").expect("login cookie");
    let html = page.text().await.expect("html");
    let marker = "name=\"csrf\" value=\"";
    let csrf = html[html.find(marker).expect("csrf") + marker.len()..]
        .split('"')
        .next()
        .expect("csrf value")
        .to_string();
    let r = c
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("airlock_login={login}"))
        .body(format!("csrf={csrf}&token={token}"))
        .send()
        .await
        .expect("login");
    let session = cookie_of(&r, "airlock_session").expect("session cookie");
    let mut out = Vec::new();
    for p in paths {
        let r = c
            .get(format!("{base}{p}"))
            .header("cookie", format!("airlock_session={session}"))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200, "{p}");
        out.push(r.text().await.expect("html"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_request_secrets_never_shown_and_execution_gets_the_real_credential() {
    let reviewer_token = airlock::agents::generate_token();
    let (hook, mut hooks) = webhook_sink().await;
    let s = setup(&format!(
        "strip = [\"x-extra-credential\"]\n\
         [[reviewers]]\nname = \"dana\"\ntoken_sha256 = \"{}\"\n\
         [notify]\n[[notify.channels]]\nkind = \"webhook\"\nurl = \"{hook}\"\nformat = \"json\"\n",
        hex::encode(airlock::agents::token_digest(&reviewer_token))
    ))
    .await;
    let a = &s.airlock;
    // Every built-in name, a few pattern matches and the configured strip entry, each with its
    // own recognisable secret value.
    let secret_headers = [
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "Private-Token",
        "X-Auth-Token",
        "X-Access-Token",
        "Authentication",
        "X-Api-Key",
        "Api-Key",
        "X-GitHub-Token",
        "X-Amz-Security-Token",
        "X-Refresh-Token",
        "X-Client-Secret",
        "X-Password",
        "X-Partner-Apikey",
        "X-Request-Signature",
        "X-Credential-Id",
        "X-Extra-Credential",
    ];
    let mut req = client_as(a, "bot", &s.token)
        .delete("https://api.github.com/repos/octo/demo?access_token=sekritQueryToken&page=2")
        .header("x-benign", "visible-value");
    for (i, h) in secret_headers.iter().enumerate() {
        req = req.header(*h, format!("sekrit{i}Value"));
    }
    let r = req.send().await.expect("send");
    assert_eq!(r.status(), 423);
    let id = r.headers()["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string();
    assert_eq!(s.up.count(), 0);

    // The webhook notification.
    let note = tokio::time::timeout(std::time::Duration::from_secs(10), hooks.recv())
        .await
        .expect("notified")
        .expect("body");
    assert!(note.contains(&id), "{note}");
    assert!(
        !note.contains("sekrit"),
        "a secret in a notification: {note}"
    );

    // The admin API: list and full view.
    let (_, list) = a.admin("GET", "/v1/reviews?state=pending", None).await;
    assert!(!list.to_string().contains("sekrit"), "{list}");
    let (status, review) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(status, 200);
    let text = review.to_string();
    assert!(
        !text.contains("sekrit"),
        "a secret in the admin API: {text}"
    );
    assert!(
        review["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("?access_token=[redacted]&page=2")),
        "{review}"
    );
    let withheld: Vec<String> = review["request"]["redactedHeaders"]
        .as_array()
        .expect("redactedHeaders")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for h in secret_headers {
        if h != "Proxy-Authorization" {
            // (an HTTP client may keep proxy credentials off an origin request)
            assert!(
                withheld.contains(&h.to_ascii_lowercase()),
                "{h} not listed as withheld: {withheld:?}"
            );
        }
    }
    assert!(text.contains("visible-value"), "ordinary headers are kept");

    // The dashboard: pending list and detail page.
    let pages = dashboard_pages(
        a,
        &reviewer_token,
        &["/ui".to_string(), format!("/ui/reviews/{id}")],
    )
    .await;
    for html in &pages {
        assert!(
            !html.contains("sekrit"),
            "a secret in the dashboard: {html}"
        );
    }
    assert!(
        pages[1].contains("x-auth-token: [redacted]"),
        "{}",
        pages[1]
    );
    assert!(pages[1].contains("access_token=[redacted]"), "{}", pages[1]);

    // Approval executes with the real credential, the query as the agent sent it, and none of
    // the agent's credential-like headers.
    // (With reviewers configured, the admin token may not approve: dana does.)
    let (status, done) = airlock::admin::client::call(
        a.admin_addr,
        &reviewer_token,
        http::Method::POST,
        &format!("/v1/reviews/{id}/approve"),
        Some(serde_json::json!({"comment": "ok"})),
    )
    .await
    .expect("approve");
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "executed", "{done}");
    let seen = s.up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {REAL_GITHUB}").as_str())
    );
    assert_eq!(
        seen[0].path_and_query,
        "/repos/octo/demo?access_token=sekritQueryToken&page=2"
    );
    assert_eq!(seen[0].header("x-benign"), Some("visible-value"));
    for (k, v) in &seen[0].headers {
        assert!(!v.contains("sekrit"), "{k}: {v} reached the upstream");
    }
    // The fake upstream echoes the path (with the query) in its answer: masked when shown.
    let (_, after) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    let after = after.to_string();
    assert!(
        !after.contains("sekrit") && !after.contains(REAL_GITHUB),
        "{after}"
    );
    let pages = dashboard_pages(a, &reviewer_token, &[format!("/ui/reviews/{id}")]).await;
    assert!(!pages[0].contains("sekrit"), "{}", pages[0]);
}

/// Issue 21 item 7: the credentials an upstream hands out in the answer to an approved request
/// (`Set-Cookie`, `X-Auth-Token`, `Private-Token`) are redacted before the execution is stored,
/// not only when it is shown: the stored record holds `[redacted]`, the admin API and the
/// dashboard show no value, and the agent waiting for the answer gets neither the credential nor
/// its placeholder. Ordinary headers are kept; a secret-named query value stays masked wherever
/// the request or the answer's echo of it is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_credentials_in_an_executed_answer_are_redacted_before_storing() {
    let reviewer_token = airlock::agents::generate_token();
    let s = setup(&format!(
        "[[reviewers]]\nname = \"dana\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(airlock::agents::token_digest(&reviewer_token))
    ))
    .await;
    let a = &s.airlock;
    let agent = client_as(a, "bot", &s.token);
    let url =
        "https://api.github.com/repos/octo/demo?respond_with_credentials=1&token=sekritQueryToken";
    let waiting = tokio::spawn(async move {
        agent
            .delete(url)
            .header("airlock-wait", "30")
            .send()
            .await
            .expect("send")
    });
    let id = support::eventually(
        "the held request",
        std::time::Duration::from_secs(10),
        || async {
            let pending =
                support::all_reviews(&a.gate, Some(airlock::gate::ReviewState::Pending)).await;
            pending
                .first()
                .map(|r| r.id.clone())
                .ok_or_else(|| "none pending yet".to_string())
        },
    )
    .await;
    let (status, done) = airlock::admin::client::call(
        a.admin_addr,
        &reviewer_token,
        http::Method::POST,
        &format!("/v1/reviews/{id}/approve"),
        Some(serde_json::json!({})),
    )
    .await
    .expect("approve");
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "executed", "{done}");
    assert_eq!(s.up.count(), 1);

    // The stored record, as the gate reads it back from the store.
    let stored = a.gate.get(&id).await.expect("stored review");
    let exec = stored.execution.expect("execution");
    let header = |name: &str| {
        exec.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    for h in ["set-cookie", "x-auth-token", "private-token"] {
        assert_eq!(header(h), vec!["[redacted]"], "{h} in {:?}", exec.headers);
    }
    assert_eq!(header("x-request-id"), vec!["req-visible-123"]);
    let raw = format!("{:?}", exec.headers);
    assert!(!raw.contains("Secret"), "stored: {raw}");

    // Shown: the admin API and the dashboard.
    let (_, api) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    // Airlock's own field name aside (`sealedSecrets`: the query's secrets were erased once
    // the review was final).
    let api = api.to_string().replace("\"sealedSecrets\"", "");
    assert!(!api.contains("Secret") && !api.contains("sekrit"), "{api}");
    assert!(api.contains("req-visible-123"), "{api}");
    assert!(api.contains("token=[redacted]"), "{api}");
    let pages = dashboard_pages(a, &reviewer_token, &[format!("/ui/reviews/{id}")]).await;
    assert!(
        !pages[0].contains("Secret") && !pages[0].contains("sekrit"),
        "{}",
        pages[0]
    );

    // The agent's own answer (wait mode): the upstream's status and ordinary headers, none of
    // the credentials it set.
    let resp = waiting.await.expect("agent");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["airlock-outcome"], "EXECUTED");
    assert_eq!(resp.headers()["x-request-id"], "req-visible-123");
    for h in ["set-cookie", "x-auth-token", "private-token"] {
        assert!(resp.headers().get(h).is_none(), "{h}: {:?}", resp.headers());
    }
}

/// Issue 21 item 3: an agent's owner and the reviewers are compared by name normalized (Unicode
/// NFKC, case, surrounding blanks): an agent owned by " ＡＬＩＣＥ " is alice's, so alice may not
/// approve its requests, and the admin token (which names no person) may not either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_and_reviewer_names_compare_normalized() {
    let owned = airlock::agents::generate_token();
    let alice = airlock::agents::generate_token();
    let bob = airlock::agents::generate_token();
    let extra = format!(
        "{}[[reviewers]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n\
         [[reviewers]]\nname = \"bob\"\ntoken_sha256 = \"{}\"\n[admin]\nmay_approve = true\n",
        airlock::agents::config_block(
            "owned",
            &airlock::agents::token_digest(&owned),
            &[],
            Some(" ＡＬＩＣＥ ")
        ),
        hex::encode(airlock::agents::token_digest(&alice)),
        hex::encode(airlock::agents::token_digest(&bob)),
    );
    let s = setup(&extra).await;
    let a = &s.airlock;
    let r = client_as(a, "owned", &owned)
        .delete("https://api.github.com/repos/octo/normalized")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 423);
    let id = r.headers()["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string();
    let approve = |token: String| {
        let path = format!("/v1/reviews/{id}/approve");
        async move {
            airlock::admin::client::call(
                a.admin_addr,
                &token,
                http::Method::POST,
                &path,
                Some(serde_json::json!({})),
            )
            .await
            .expect("call")
        }
    };
    let (st, r) = approve(alice).await;
    assert_eq!(st, 403, "{r}");
    assert!(r.to_string().contains("self-approval"), "{r}");
    let (st, r) = approve(a.admin_token.clone()).await;
    assert_eq!(st, 403, "{r}");
    assert!(r.to_string().contains("names no person"), "{r}");
    assert_eq!(s.up.count(), 0);
    let (st, r) = approve(bob).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(s.up.count(), 1);
}

/// Review of session 19: a held call of an agent removed since (compromised, retired) could be
/// approved with nothing saying so. The review's JSON (`agentRemoved`), the dashboard and the
/// CLI now say so; approving still sends it as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_review_of_a_removed_agent_says_so() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let token = airlock::agents::generate_token();
    let toml =
        airlock::agents::config_block("bot", &airlock::agents::token_digest(&token), &[], None);
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a = Airlock::start_classified(&toml, &up, &["api.github.com"], catalog).await;
    let cert = reqwest::Certificate::from_pem(a.ca_pem.as_bytes()).expect("ca");
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://bot:{token}@{}", a.addr)).expect("proxy"))
        .tls_certs_only([cert])
        .build()
        .expect("client");
    let resp = client
        .delete("https://api.github.com/repos/acme/gone")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 423);
    let id = resp.json::<serde_json::Value>().await.expect("json")["reviewId"]
        .as_str()
        .expect("id")
        .to_string();
    let (_, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(r["agentRemoved"], false, "{r}");
    a.proxy.agents.replace(Vec::new());
    let (_, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(r["agentRemoved"], true, "{r}");
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["agentRemoved"], true, "{r}");
    assert_eq!(up.count(), 1, "approving still sends it");
}

/// The agents in force as `[[agents]]` blocks read back through the config parser: what a
/// reload of the file `airlock agents add` appends to hands the proxy.
fn agents_of(blocks: &str) -> Vec<airlock::config::AgentConfig> {
    airlock::config::Config::from_toml("agents.toml", blocks)
        .expect("agents parse")
        .agents
}

/// What `bot` reads at `https://airlock.local/v1/reviews/{id}` (optionally waiting): status and
/// body.
async fn agent_reads(c: &reqwest::Client, id: &str, wait: bool) -> (u16, serde_json::Value) {
    let url = match wait {
        true => format!("https://airlock.local/v1/reviews/{id}?wait=1"),
        false => format!("https://airlock.local/v1/reviews/{id}"),
    };
    let resp = c.get(url).send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// Held (423) once more by `c`: the review id.
async fn held_id(c: &reqwest::Client) -> String {
    let resp = c
        .delete("https://api.github.com/repos/acme/gone")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 423);
    resp.json::<serde_json::Value>().await.expect("json")["reviewId"]
        .as_str()
        .expect("id")
        .to_string()
}

/// Review of session 23: an agent's identity was only its name. `bot` removed (compromised)
/// and a new agent added as `bot` inherited its reviews: it read their status and results,
/// its identical requests joined them, and the dashboard's removed-agent warning vanished, so a
/// reviewer could approve the removed agent's call as the current one's. An entry now carries
/// when it was added, and a review created before that is another agent's. `agents rotate`
/// keeps the entry and its reviews.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_added_again_under_a_removed_ones_name_is_another_agent() {
    let s = setup("").await;
    let a = &s.airlock;
    let gh_only = airlock::agents::config_block(
        "gh-only",
        &airlock::agents::token_digest(&s.limited_token),
        &["github".into()],
        Some("alice"),
    );
    let id = held_id(&client_as(a, "bot", &s.token)).await;

    // Rotated (the entry's token line replaced, `added` kept): still its own review.
    let rotated = airlock::agents::generate_token();
    let mut agents = a.proxy.agents.current();
    let bot = agents.iter_mut().find(|x| x.name == "bot").expect("bot");
    assert!(bot.added_ms.is_some(), "config_block writes added");
    bot.token_sha256 = airlock::agents::token_digest(&rotated);
    a.proxy.agents.replace(agents);
    let bot = client_as(a, "bot", &rotated);
    let (code, r) = agent_reads(&bot, &id, false).await;
    assert_eq!((code, r["state"].as_str()), (200, Some("pending")), "{r}");
    assert_eq!(
        held_id(&bot).await,
        id,
        "a rotated agent's retry joins its review"
    );
    let (_, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(
        (&r["agentRemoved"], &r["agentReplaced"]),
        (&false.into(), &false.into()),
        "{r}"
    );

    // Removed, then a new agent added under the same name, with a token of its own.
    a.proxy.agents.replace(agents_of(&gh_only));
    let (_, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(
        (&r["agentRemoved"], &r["agentReplaced"]),
        (&true.into(), &false.into()),
        "{r}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let new_token = airlock::agents::generate_token();
    let new_bot_block =
        airlock::agents::config_block("bot", &airlock::agents::token_digest(&new_token), &[], None);
    a.proxy
        .agents
        .replace(agents_of(&format!("{new_bot_block}{gh_only}")));
    let new_bot = client_as(a, "bot", &new_token);

    // Its status and wait reads of the old review answer as for an unknown id.
    let nobody = "rev_00000000000000000000000000000000";
    let unknown = agent_reads(&new_bot, nobody, false).await;
    assert_eq!(unknown.0, 404, "{}", unknown.1);
    for wait in [false, true] {
        let (code, r) = agent_reads(&new_bot, &id, wait).await;
        let as_unknown = r.to_string().replace(&id, nobody);
        assert_eq!(
            (code, as_unknown),
            (unknown.0, unknown.1.to_string()),
            "wait={wait}: {r}"
        );
    }
    // Its identical request is held anew rather than joining the old review.
    let fresh = held_id(&new_bot).await;
    assert_ne!(
        fresh, id,
        "the new agent's request joined the removed agent's review"
    );
    let (code, r) = agent_reads(&new_bot, &fresh, false).await;
    assert_eq!((code, r["state"].as_str()), (200, Some("pending")), "{r}");
    assert_eq!(held_id(&new_bot).await, fresh, "its own retries still join");

    // Reviewers are told the old review's sender is gone; the new one's is in force.
    let (_, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(
        (&r["agentRemoved"], &r["agentReplaced"]),
        (&true.into(), &true.into()),
        "{r}"
    );
    let warned = r["summary"]["warnings"].to_string();
    assert!(
        warned.contains("is another entry (added since) and did not send it"),
        "{warned}"
    );
    let (_, r) = a.admin("GET", &format!("/v1/reviews/{fresh}"), None).await;
    assert_eq!(
        (&r["agentRemoved"], &r["agentReplaced"]),
        (&false.into(), &false.into()),
        "{r}"
    );
    let pages = dashboard_pages(a, &a.admin_token, &[format!("/ui/reviews/{id}")]).await;
    assert!(
        pages[0].contains("id=\"agent-removed\"")
            && pages[0].contains("is another entry (added since)"),
        "{}",
        pages[0]
    );
    assert_eq!(s.up.count(), 0, "nothing sent");
}

/// `airlock agents add` records when it added the entry, `rotate` keeps it (the same agent,
/// with its reviews), and adding a name in use is refused (remove it first: a new agent).
#[test]
fn agents_add_records_when_and_rotate_keeps_it() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(&cfg, "").expect("write");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .expect("run")
    };
    let entry = || {
        let c = airlock::config::Config::load(&cfg, Default::default()).expect("config");
        c.agents.into_iter().find(|a| a.name == "bot").expect("bot")
    };
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as u64;
    assert!(run(&["agents", "add", "bot"]).status.success());
    let added = entry();
    let at = added.added_ms.expect("added written");
    assert!(at >= before, "{at} < {before}");
    assert!(run(&["agents", "rotate", "bot"]).status.success());
    let rotated = entry();
    assert_ne!(rotated.token_sha256, added.token_sha256);
    assert_eq!(rotated.added_ms, Some(at), "rotate keeps the entry");
    let again = run(&["agents", "add", "bot"]);
    assert!(!again.status.success(), "a name in use is refused");
    assert_eq!(entry(), rotated);
    let list = String::from_utf8_lossy(&run(&["agents", "list"]).stdout).to_string();
    assert!(
        list.contains(&format!("added={}", airlock::config::format_added(at))),
        "{list}"
    );
}

/// Review of session 22: `airlock reviews reject-pending --agent Bot` (the agent is `bot`)
/// printed "rejected 0 pending review(s)" and exited 0, as if the agent had nothing pending.
/// Now a name neither configured nor on any review is refused (404 `unknown_agent`, naming it
/// and the agent it differs from only in case) and the CLI exits non-zero; an agent removed
/// since still has its pending reviews rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reject_pending_refuses_an_agent_nobody_configured() {
    let s = setup("").await;
    let a = &s.airlock;
    let client = client_as(a, "bot", &s.token);
    let resp = client
        .delete("https://api.github.com/repos/acme/gone")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 423);
    let cfg = a.dir.path().join("cli.toml");
    std::fs::write(
        &cfg,
        format!(
            "[admin]\nlisten = \"{}\"\ntoken_file = {:?}\n[proxy]\nlisten = \"127.0.0.1:1\"\n",
            a.admin_addr,
            path_str(&a.config.admin.token_file)
        ),
    )
    .expect("write");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--config")
            .arg(&cfg)
            .args(["reviews", "reject-pending", "--agent", "Bot"])
            .env_remove("AIRLOCK_ADMIN_TOKEN")
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("no agent \"Bot\"") && stderr.contains("did you mean \"bot\""),
        "{stderr}"
    );
    let reject = |agent: &str| {
        a.admin(
            "POST",
            "/v1/reviews/reject-pending",
            Some(serde_json::json!({ "agent": agent })),
        )
    };
    let (code, r) = reject("nobody").await;
    assert_eq!(
        (code, r["error"].as_str()),
        (404, Some("unknown_agent")),
        "{r}"
    );
    // Removed: its held call is still there to reject.
    a.proxy.agents.replace(Vec::new());
    let (code, r) = reject("bot").await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["rejected"].as_array().map(Vec::len), Some(1), "{r}");
    let (code, r) = reject("bot").await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["rejected"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(s.up.count(), 0, "nothing sent");
}

/// One agent that stops reading its HTTP/2 answers filled the flow-control window of the
/// upstream connection every agent on that worker shared (and could take all its stream slots),
/// so another agent's requests to the same host hung. Each agent now has HTTP/2 connections
/// of its own toward upstreams.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_stalling_its_streams_does_not_hold_up_another_agent() {
    let s = setup("").await;
    // `bot`, speaking HTTP/2 with small windows, never reads its answers.
    let tls = bot_tunnel(&s, "api.github.com", &[b"h2"]).await;
    let stalled = support::raw::stall_h2_streams(tls, 4).await;
    let other = client_as(&s.airlock, "gh-only", &s.limited_token);
    for _ in 0..3 {
        let resp = tokio::time::timeout(
            std::time::Duration::from_secs(15),
            other
                .get(format!("https://api.github.com/bytes/{}", 256 << 10))
                .send(),
        )
        .await
        .expect("the other agent's answer head arrives")
        .expect("send");
        assert_eq!(resp.status(), 200);
        let body = tokio::time::timeout(std::time::Duration::from_secs(15), resp.bytes())
            .await
            .expect("the other agent's answer arrives whole")
            .expect("body");
        assert_eq!(body.len(), 256 << 10);
    }
    drop(stalled);
}

/// Review of session 22: nothing bounded one agent's connections below `proxy.max_connections`
/// (40 tunnels to airlock.local locked every other agent out with 503s), and a 407 or a public
/// airlock.local page kept the connection open, so a client without credentials could hold
/// slots too. An agent holds at most `proxy.max_connections_per_agent` (503
/// `agent_connection_limit` past it, others unaffected), and those answers close the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_agent_cannot_take_every_connection() {
    let s = setup("[proxy]\nmax_connections = 20\nmax_connections_per_agent = 2\n").await;
    let a = &s.airlock;
    let connect = |name: &str, token: &str| {
        format!(
            "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\
             Proxy-Authorization: Basic {}\r\n\r\n",
            basic(name, token)
        )
    };
    // Two open tunnels of bot's: its share.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut t = tokio::net::TcpStream::connect(a.addr)
            .await
            .expect("connect");
        t.write_all(connect("bot", &s.token).as_bytes())
            .await
            .expect("write");
        let mut buf = [0u8; 256];
        let n = t.read(&mut buf).await.expect("read");
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(t);
    }
    let third = raw(a, &connect("bot", &s.token)).await;
    assert!(third.starts_with("HTTP/1.1 503"), "{third}");
    assert!(third.contains("agent_connection_limit"), "{third}");
    assert!(
        third.to_ascii_lowercase().contains("retry-after: 5"),
        "{third}"
    );
    // Another agent still connects.
    let other = raw(a, &connect("gh-only", &s.limited_token)).await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // A closed tunnel gives its slot back.
    drop(held.pop());
    support::eventually("bot's freed slot", support::WAIT, || async {
        let again = raw(a, &connect("bot", &s.token)).await;
        match again.starts_with("HTTP/1.1 200") {
            true => Ok(()),
            false => Err(again),
        }
    })
    .await;

    // A 407 and a public page end their connection: the peer reads its end.
    for head in [
        "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n",
        "GET http://airlock.local/ca.pem HTTP/1.1\r\nHost: airlock.local\r\n\r\n",
    ] {
        let mut t = tokio::net::TcpStream::connect(a.addr)
            .await
            .expect("connect");
        t.write_all(head.as_bytes()).await.expect("write");
        let mut all = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), t.read_to_end(&mut all)).await;
        assert!(matches!(read, Ok(Ok(_))), "{head}: still open");
        let text = String::from_utf8_lossy(&all).to_ascii_lowercase();
        assert!(text.contains("connection: close"), "{head}: {text}");
    }
}

/// Review of session 22: soft-gated calls each write an audit entry before they are forwarded,
/// with no per-agent bound (2,004 issue comments in 28 s added 2,024 entries, and entries are
/// never pruned). Past `audit.notify_per_agent` (a burst of 30 seconds' worth) one is refused
/// 429 `too_many_soft_gated`, neither forwarded nor recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soft_gated_calls_past_the_agents_rate_are_refused() {
    let s = setup("[audit]\nnotify_per_agent = 1\n").await;
    let client = client_as(&s.airlock, "bot", &s.token);
    let (mut sent, mut refused) = (0, 0);
    for i in 0..40 {
        let resp = client
            .post("https://api.github.com/repos/acme/app/issues/1/comments")
            .json(&serde_json::json!({"body": format!("comment {i}")}))
            .send()
            .await
            .expect("send");
        match resp.status().as_u16() {
            429 => {
                assert!(resp.headers().contains_key("retry-after"));
                let body = resp.text().await.unwrap_or_default();
                assert!(body.contains("too_many_soft_gated"), "{body}");
                refused += 1;
            }
            _ => sent += 1,
        }
    }
    assert!(refused >= 5, "sent {sent}, refused {refused}");
    assert_eq!(s.up.count(), sent, "only admitted calls reach the upstream");
    // Another agent's rate is its own.
    let other = client_as(&s.airlock, "gh-only", &s.limited_token);
    let resp = other
        .post("https://api.github.com/repos/acme/app/issues/1/comments")
        .json(&serde_json::json!({"body": "mine"}))
        .send()
        .await
        .expect("send");
    assert_ne!(resp.status(), 429);
}

/// Review of session 23: nothing bounded one agent's requests in flight across its
/// connections (256 streams each, up to 1,000 connections), and on an HTTP/1.1 upstream each
/// took an upstream connection of its own: one agent opened 2,015 and ran Airlock out of file
/// descriptors. Past `proxy.max_requests_in_flight_per_agent` a request gets 429
/// `too_many_requests_in_flight` with `Retry-After`, nothing sent; another agent is not
/// affected; a request counts until its response body ends or is dropped, read or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_has_a_bounded_number_of_requests_in_flight() {
    let opts = support::UpstreamOptions {
        alpn: vec!["http/1.1"],
        ..Default::default()
    };
    let s = setup_on("[proxy]\nmax_requests_in_flight_per_agent = 4\n", opts).await;
    let bot = client_as(&s.airlock, "bot", &s.token);
    // Four requests to a slow upstream path, on connections of their own.
    let stalled: Vec<_> = (0..4)
        .map(|i| {
            let bot = bot.clone();
            tokio::spawn(async move {
                let r = bot
                    .get(format!("https://api.github.com/stall/{i}"))
                    .send()
                    .await
                    .expect("send");
                (r.status().as_u16(), r.bytes().await.map(|b| b.len()).ok())
            })
        })
        .collect();
    support::eventually("four stalled upstream", support::WAIT, || async {
        match s.up.count() {
            4 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    let refused = bot
        .get("https://api.github.com/repos/o/r")
        .send()
        .await
        .expect("fifth");
    assert_eq!(refused.status(), 429);
    let retry = refused.headers().get("retry-after").cloned();
    assert!(retry.is_some(), "Retry-After");
    let text = refused.text().await.expect("text");
    assert!(text.contains("too_many_requests_in_flight"), "{text}");
    assert!(text.contains("documentation_url"), "GitHub's shape: {text}");
    assert_eq!(s.up.count(), 4, "the fifth was not sent");
    // Another agent is not affected.
    let other = client_as(&s.airlock, "gh-only", &s.limited_token);
    let r = other
        .get("https://api.github.com/repos/o/r")
        .send()
        .await
        .expect("other");
    assert_eq!(r.status(), 200);
    // The stalled ones finish; the agent sends again.
    s.up.state
        .no_stall
        .store(true, std::sync::atomic::Ordering::SeqCst);
    s.up.state.unstall.notify_waiters();
    for h in stalled {
        let (status, _) = tokio::time::timeout(support::WAIT, h)
            .await
            .expect("stalled ones finish")
            .expect("task");
        assert_eq!(status, 200);
    }
    let r = bot
        .get("https://api.github.com/repos/o/r")
        .send()
        .await
        .expect("again");
    assert_eq!(r.status(), 200, "the count came back");

    // Answers whose bodies are not read yet still count; dropped unread, they come back.
    // (Answers of a host with a credential are scrubbed: their first bytes wait for more.)
    let mut open = Vec::new();
    for _ in 0..4 {
        let fresh = client_as(&s.airlock, "bot", &s.token);
        // Larger than every buffer on the way: the answer's body cannot end unread.
        let r = fresh
            .get(format!("https://api.github.com/bytes/{}", 64 << 20))
            .send()
            .await
            .expect("large answer");
        assert_eq!(r.status(), 200);
        open.push((fresh, r));
    }
    let r = bot
        .get("https://api.github.com/repos/o/r")
        .send()
        .await
        .expect("while streaming");
    assert_eq!(r.status(), 429, "bodies still streaming count");
    drop(open);
    support::eventually(
        "dropped answers to give their count back",
        support::WAIT,
        || async {
            let r = bot
                .get("https://api.github.com/repos/o/r")
                .send()
                .await
                .map_err(|e| e.to_string())?;
            match r.status().as_u16() {
                200 => Ok(()),
                n => Err(n.to_string()),
            }
        },
    )
    .await;
}
