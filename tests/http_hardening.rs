//! HTTP hardening: hostile bytes over real sockets. Request smuggling (CL/TE, chunk framing,
//! obs-fold, hidden pipelined requests), HTTP/2 → HTTP/1 downgrade tricks (hand-made h2 frames
//! for what the `h2` crate refuses to send), oversized and too many headers, oversized gated
//! bodies, malformed CONNECT targets, slowloris, and the connection/tunnel limit. Every case
//! names its expected answer; after each one Airlock must still serve a normal request and the
//! HTTP/1-only fake upstream must not have seen a smuggled or gated request.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::raw::{self, frame, h2_frame, hpack_literals, Exchange, H2Outcome};
use support::{Airlock, FakeUpstream, UpstreamOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOSTS: &[&str] = &["api.github.com", "api.stripe.com"];
const QUIET: Duration = Duration::from_millis(400);

/// Real catalog; an HTTP/1.1-only TLS upstream for the catalog hosts and a plain-HTTP one for
/// `plain.test`; small limits so the cases run fast.
struct Env {
    up: FakeUpstream,
    plain: FakeUpstream,
    airlock: Airlock,
    healthy: usize,
}

async fn env(extra: &str) -> Env {
    env_with(extra, |_| {}).await
}

/// [`env`], its config changed by `tune` before the start.
async fn env_with(extra: &str, tune: impl FnOnce(&mut airlock::config::Config)) -> Env {
    support::init();
    let up = FakeUpstream::start(UpstreamOptions {
        alpn: vec!["http/1.1"],
        ..Default::default()
    })
    .await;
    let plain = FakeUpstream::start(UpstreamOptions {
        plain: true,
        ..Default::default()
    })
    .await;
    let toml = format!(
        "[proxy]\ninspect_hosts = [\"plain.test\"]\nheader_read_timeout = \"1s\"\nmax_header_bytes = 16384\n{extra}\n[gate]\nmax_body_bytes = 4096\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Airlock::config(&toml, dir.path(), &up, HOSTS);
    config
        .upstream
        .resolve
        .insert("plain.test".into(), plain.addr);
    tune(&mut config);
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let airlock =
        Airlock::start_with_parts(config, dir, catalog, Arc::new(airlock::gate::SystemClock)).await;
    Env {
        up,
        plain,
        airlock,
        healthy: 0,
    }
}

impl Env {
    /// A normal read still works, and neither upstream saw anything it should not have.
    async fn assert_healthy(&mut self, case: &str) {
        let resp = self
            .airlock
            .client()
            .get("https://api.github.com/healthz")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{case}: Airlock unhealthy afterwards: {e}"));
        assert_eq!(resp.status(), 200, "{case}: health check");
        self.healthy += 1;
        for (side, seen) in [
            ("upstream", self.up.requests()),
            ("plain", self.plain.requests()),
        ] {
            for r in &seen {
                assert!(
                    !r.path_and_query.contains("smuggled") && r.method != "DELETE",
                    "{case}: {side} received {} {}",
                    r.method,
                    r.path_and_query
                );
                assert!(
                    !String::from_utf8_lossy(&r.body).contains("smuggled")
                        || r.path_and_query.contains("carrier"),
                    "{case}: {side} received a smuggled body in {} {}",
                    r.method,
                    r.path_and_query
                );
            }
        }
        let health = self
            .up
            .requests()
            .iter()
            .filter(|r| r.path_and_query == "/healthz")
            .count();
        assert_eq!(health, self.healthy, "{case}: upstream health requests");
    }

    /// An HTTP/1.1 tunnel to `host` on which `bytes` (a request, or the start of one) went out;
    /// the test decides what follows, or that nothing does.
    async fn sent(&self, host: &str, bytes: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut tls = raw::tunnel(
            self.airlock.addr,
            host,
            host,
            &self.airlock.ca_pem,
            &[b"http/1.1"],
        )
        .await;
        tls.write_all(bytes).await.expect("request");
        tls.flush().await.expect("flush");
        tls
    }

    async fn pending_reviews(&self) -> usize {
        let (code, list) = self
            .airlock
            .admin("GET", "/v1/reviews?state=pending", None)
            .await;
        assert_eq!(code, 200);
        list["reviews"].as_array().map_or(0, Vec::len)
    }
}

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Responses in order: status and (when given) the JSON `error`/`outcome` code.
    Answers(&'static [(u16, Option<&'static str>)]),
    /// Like `Answers`, and then the connection is closed.
    Closes(&'static [(u16, Option<&'static str>)]),
    /// Refused with this status, or the connection closed without any answer.
    StatusOrClose(u16),
}

/// Where the raw bytes go.
#[derive(Debug, Clone, Copy)]
enum At {
    /// The proxy listener itself (CONNECT / absolute-form).
    Front,
    /// Inside an intercepted HTTP/1.1 tunnel to api.github.com.
    Github,
}

struct Case {
    name: &'static str,
    at: At,
    input: &'static str,
    expect: Expect,
    /// Reviews this case may leave pending (a hidden request that the catalog held).
    holds: usize,
}

const fn case(name: &'static str, at: At, input: &'static str, expect: Expect) -> Case {
    Case {
        name,
        at,
        input,
        expect,
        holds: 0,
    }
}

use At::{Front, Github};
use Expect::{Answers, Closes, StatusOrClose};

const HELD: (u16, Option<&str>) = (423, Some("ESCALATE"));
/// CL + TE: hyper reads the body by Transfer-Encoding, drops Content-Length and closes the
/// connection after the answer, so the tail is never parsed as a request.
const TE_WINS_HELD: Expect = Closes(&[HELD]);
const TE_WINS_FORWARDED: Expect = Closes(&[(200, None)]);

fn cases() -> Vec<Case> {
    let mut v = vec![
        // ---- smuggling inside the tunnel, on a gated route ----
        Case {
            holds: 1,
            ..case(
            "CL+TE together on a gated DELETE",
            Github,
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            TE_WINS_HELD,
        )
        },
        case(
            "TE+CL (TE first) on a soft-gated write",
            Github,
            "POST /repos/o/r/issues HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            TE_WINS_FORWARDED,
        ),
        case(
            "conflicting duplicate Content-Length",
            Github,
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "Content-Length list 0, 44",
            Github,
            "POST /carrier HTTP/1.1\r\nHost: api.github.com\r\nContent-Length: 0, 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "Content-Length with a sign",
            Github,
            "POST /carrier HTTP/1.1\r\nHost: api.github.com\r\nContent-Length: +44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "Transfer-Encoding: chunked, identity",
            Github,
            "POST /carrier HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            StatusOrClose(400),
        ),
        // Review of session 23: hyper takes off the chunking and forwards the rest; nginx and
        // Go refuse these.
        case(
            "Transfer-Encoding: gzip, chunked",
            Github,
            "POST /repos/o/r/issues HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "Transfer-Encoding given twice",
            Github,
            "POST /repos/o/r/issues HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "Transfer-Encoding: CHUNKED (case aside, one plain chunked) still passes",
            Github,
            "POST /repos/o/r/issues HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n",
            Answers(&[(200, None)]),
        ),
        case(
            "Transfer-Encoding: xchunked",
            Github,
            "POST /carrier HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "Transfer-Encoding obs-folded",
            Github,
            "POST /carrier HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "space before the colon of Transfer-Encoding",
            Github,
            "POST /carrier HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "obs-fold continuation line on another header",
            Github,
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nX-A: 1\r\n X-Smuggled: yes\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "chunk size not hex",
            Github,
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "chunk size overflows 64 bits",
            Github,
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000000005\r\nhello\r\n0\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "negative chunk size",
            Github,
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "chunk data without its CRLF",
            Github,
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "NUL in a header value",
            Github,
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nX-A: a\0b\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "two Host headers",
            Github,
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nHost: api.stripe.com\r\nConnection: close\r\n\r\n",
            Answers(&[(400, Some("duplicate_host"))]),
        ),
        case(
            "absolute-form for another host inside the tunnel",
            Github,
            "DELETE https://api.stripe.com/v1/customers/cus_1 HTTP/1.1\r\nHost: api.stripe.com\r\nConnection: close\r\n\r\n",
            Answers(&[(403, Some("authority_mismatch"))]),
        ),
        // Review of session 20: judged as `/`, held, and an approval would have replayed a
        // CONNECT upstream.
        case(
            "CONNECT inside the tunnel",
            Github,
            "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\nConnection: close\r\n\r\n",
            Answers(&[(400, Some("connect_in_tunnel"))]),
        ),
        // Review of session 20: Airlock's own key for an approved Stripe call; an agent that
        // used it first could make the approved send fail as a repeat.
        case(
            "an Idempotency-Key in Airlock's namespace",
            Github,
            "GET /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nIdempotency-Key: Airlock-rev_0123\r\nConnection: close\r\n\r\n",
            Answers(&[(400, Some("idempotency_key_reserved"))]),
        ),
        case(
            "too many headers",
            Github,
            "", // filled below
            StatusOrClose(431),
        ),
        case(
            "gated body over the cap (413, nothing held)",
            Github,
            "", // filled below
            Answers(&[(413, Some("body_too_large"))]),
        ),
        // ---- the same on the proxy listener ----
        case(
            "front: CL+TE on an absolute-form request",
            Front,
            "POST http://plain.test/carrier HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: plain.test\r\n\r\n",
            TE_WINS_FORWARDED,
        ),
        case(
            "front: conflicting Content-Length",
            Front,
            "POST http://plain.test/carrier HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 0\r\nContent-Length: 41\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: plain.test\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "front: obs-fold",
            Front,
            "GET http://plain.test/x HTTP/1.1\r\nHost: plain.test\r\nX-A: 1\r\n X-Smuggled: yes\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "front: absolute-form host differs from Host",
            Front,
            "GET http://plain.test/x HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n",
            Answers(&[(403, Some("authority_mismatch"))]),
        ),
        case(
            "front: too many headers",
            Front,
            "", // filled below
            StatusOrClose(431),
        ),
        // ---- malformed CONNECT targets ----
        case(
            "CONNECT without port",
            Front,
            "CONNECT api.github.com HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            Answers(&[(400, Some("bad_connect_target"))]),
        ),
        case(
            "CONNECT port 0",
            Front,
            "CONNECT api.github.com:0 HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(400, Some("bad_connect_target"))]),
        ),
        case(
            "CONNECT port 65536",
            Front,
            "CONNECT api.github.com:65536 HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(400, Some("bad_connect_target"))]),
        ),
        case(
            "CONNECT port letters",
            Front,
            "CONNECT api.github.com:https HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(400, Some("bad_connect_target"))]),
        ),
        case(
            "CONNECT port twice",
            Front,
            "CONNECT api.github.com:443:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "CONNECT empty host",
            Front,
            "CONNECT :443 HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(400, Some("bad_connect_target"))]),
        ),
        case(
            "CONNECT unbalanced IPv6 bracket",
            Front,
            "CONNECT [::1:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "CONNECT IPv6 loopback literal",
            Front,
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(403, Some("unknown_host_denied"))]),
        ),
        case(
            "CONNECT IPv4 literal of the upstream",
            Front,
            "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(403, Some("unknown_host_denied"))]),
        ),
        case(
            "CONNECT IDN in UTF-8",
            Front,
            "CONNECT b\u{fc}cher.example:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "CONNECT punycode host (unknown: denied)",
            Front,
            "CONNECT xn--bcher-kva.example:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(403, Some("unknown_host_denied"))]),
        ),
        case(
            "CONNECT punycode lookalike of api.github.com",
            Front,
            "CONNECT xn--pi-7ka.github.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(403, Some("unknown_host_denied"))]),
        ),
        case(
            "CONNECT userinfo in the authority",
            Front,
            "CONNECT user:pw@api.github.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(400, Some("bad_connect_target"))]),
        ),
        case(
            "CONNECT label over 63 bytes",
            Front,
            "CONNECT aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.github.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(400, Some("bad_connect_target"))]),
        ),
        case(
            "CONNECT with an absolute-form target",
            Front,
            "CONNECT https://api.github.com:443/ HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            Answers(&[(400, Some("bad_connect_target"))]),
        ),
        case(
            "CONNECT to a non-web port of a catalog host",
            Front,
            "CONNECT api.github.com:22 HTTP/1.1\r\nHost: x\r\n\r\n",
            Answers(&[(403, Some("egress_port"))]),
        ),
        case(
            "origin-form request to the proxy",
            Front,
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            Answers(&[(400, Some("not_a_proxy_request"))]),
        ),
        case(
            "https absolute-form to the proxy",
            Front,
            "DELETE https://api.github.com/repos/o/r HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
            Answers(&[(400, Some("unsupported_scheme"))]),
        ),
    ];
    // A second request hidden after a body whose Content-Length ends early: it is parsed as its
    // own request and classified (held), never forwarded as part of the first.
    v.push(Case {
        holds: 1,
        ..case(
            "pipelined gated request after a short body",
            Github,
            "POST /repos/o/carrier/issues/1/reactions HTTP/1.1\r\nHost: api.github.com\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhelloDELETE /repos/o/smuggled HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n",
            Answers(&[(200, None), HELD]),
        )
    });
    // A gated request inside a correctly framed body is only body bytes.
    v.push(case(
        "gated request as body bytes",
        Github,
        "POST /repos/o/carrier/issues/1/reactions HTTP/1.1\r\nHost: api.github.com\r\nContent-Type: application/json\r\nContent-Length: 58\r\nConnection: close\r\n\r\nDELETE /repos/o/smuggled HTTP/1.1\r\nHost: api.github.com\r\n\r\n",
        Answers(&[(200, None)]),
    ));
    v
}

fn many_headers(start: &str, n: usize) -> String {
    let mut s = start.to_string();
    for i in 0..n {
        s.push_str(&format!("X-H{i}: v\r\n"));
    }
    s.push_str("\r\n");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_http1_table() {
    let mut e = env("").await;
    let big_body = "x".repeat(5000);
    let mut failures = Vec::new();
    for c in cases() {
        let input: String = match c.name {
            "too many headers" => many_headers(
                "GET /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\n",
                200,
            ),
            "front: too many headers" => many_headers(
                "GET http://plain.test/x HTTP/1.1\r\nHost: plain.test\r\n",
                200,
            ),
            "gated body over the cap (413, nothing held)" => format!(
                "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big_body}",
                big_body.len()
            ),
            _ => c.input.to_string(),
        };
        let pending_before = e.pending_reviews().await;
        let got = match c.at {
            Front => raw::front(e.airlock.addr, input.as_bytes(), QUIET).await,
            Github => {
                raw::in_tunnel(
                    e.airlock.addr,
                    "api.github.com",
                    &e.airlock.ca_pem,
                    input.as_bytes(),
                    QUIET,
                )
                .await
            }
        };
        if let Err(why) = check(c.expect, &got) {
            failures.push(format!("{}: {why}", c.name));
        }
        let pending = e.pending_reviews().await;
        assert_eq!(
            pending,
            pending_before + c.holds,
            "{}: reviews left pending",
            c.name
        );
        e.assert_healthy(c.name).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check(expect: Expect, got: &Exchange) -> Result<(), String> {
    let statuses: Vec<(u16, Option<String>)> =
        got.responses.iter().map(|r| (r.status, r.code())).collect();
    let ok = match expect {
        Answers(want) | Closes(want) => {
            (got.closed || matches!(expect, Answers(_)))
                && statuses.len() == want.len()
                && statuses.iter().zip(want).all(|((s, c), (ws, wc))| {
                    s == ws && wc.is_none_or(|wc| c.as_deref() == Some(wc))
                })
        }
        StatusOrClose(want) => match statuses.as_slice() {
            [] => got.closed,
            [(s, _)] => *s == want && got.closed,
            _ => false,
        },
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "want {expect:?}, got {statuses:?} closed={}",
            got.closed
        ))
    }
}

// ---- HTTP/2 from the agent, HTTP/1.1 upstream ----

/// A hand-made h2 request on stream 1: `fields` in order (pseudo-headers included), END_HEADERS,
/// END_STREAM unless `body` is given (then one DATA frame ends the stream).
fn h2_request(fields: &[(&[u8], &[u8])], body: Option<&[u8]>) -> Vec<Vec<u8>> {
    let block = hpack_literals(fields);
    let end_stream = if body.is_none() { 0x1 } else { 0 };
    let mut frames = vec![h2_frame(frame::HEADERS, 0x4 | end_stream, 1, &block)];
    if let Some(b) = body {
        frames.push(h2_frame(frame::DATA, 0x1, 1, b));
    }
    frames
}

const GH: &[u8] = b"api.github.com";
const PROTOCOL_ERROR: u32 = 1;

fn base(method: &'static [u8], path: &'static [u8]) -> Vec<(&'static [u8], &'static [u8])> {
    vec![
        (b":method".as_slice(), method),
        (b":scheme".as_slice(), b"https".as_slice()),
        (b":authority".as_slice(), GH),
        (b":path".as_slice(), path),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_http2_frames_never_reach_the_http1_upstream() {
    let mut e = env("").await;
    type Fields = Vec<(&'static [u8], &'static [u8])>;
    let with = |extra: &[(&'static [u8], &'static [u8])]| -> Fields {
        let mut f = base(b"DELETE", b"/repos/o/r");
        f.extend_from_slice(extra);
        f
    };
    let cases: Vec<(&str, Fields, Option<&[u8]>)> = vec![
        (
            "transfer-encoding: chunked",
            with(&[(b"transfer-encoding", b"chunked")]),
            None,
        ),
        (
            "connection: keep-alive",
            with(&[(b"connection", b"keep-alive")]),
            None,
        ),
        (
            "keep-alive header",
            with(&[(b"keep-alive", b"timeout=5")]),
            None,
        ),
        ("upgrade header", with(&[(b"upgrade", b"h2c")]), None),
        (
            "proxy-connection",
            with(&[(b"proxy-connection", b"close")]),
            None,
        ),
        ("te: gzip", with(&[(b"te", b"gzip")]), None),
        (
            "CRLF in a header value (request splitting)",
            with(&[(
                b"x-inject",
                b"a\r\n\r\nDELETE /repos/o/smuggled HTTP/1.1\r\nHost: api.github.com",
            )]),
            None,
        ),
        (
            "LF in a header value",
            with(&[(b"x-inject", b"a\nx-smuggled: 1")]),
            None,
        ),
        (
            "CR in a header name",
            with(&[(b"x-a\r\nx-smuggled", b"1")]),
            None,
        ),
        ("upper-case header name", with(&[(b"X-Upper", b"1")]), None),
        ("colon in a header name", with(&[(b"x:y", b"1")]), None),
        (
            "pseudo-header after a regular header",
            {
                let mut f: Fields = vec![(b":method", b"DELETE"), (b"x-a", b"1")];
                f.extend_from_slice(&[
                    (b":scheme", b"https"),
                    (b":authority", GH),
                    (b":path", b"/repos/o/r"),
                ]);
                f
            },
            None,
        ),
        ("duplicate :method", with(&[(b":method", b"GET")]), None),
        ("duplicate :path", with(&[(b":path", b"/smuggled")]), None),
        ("unknown pseudo-header", with(&[(b":foo", b"bar")]), None),
        (
            ":path with spaces and CRLF",
            base(
                b"DELETE",
                b"/repos/o/r HTTP/1.1\r\nHost: api.github.com\r\n\r\nGET /smuggled",
            ),
            None,
        ),
        ("empty :path", base(b"DELETE", b""), None),
        (
            "missing :path",
            vec![
                (b":method", b"DELETE"),
                (b":scheme", b"https"),
                (b":authority", GH),
            ],
            None,
        ),
        (
            "content-length 0 with a body",
            with(&[(b"content-length", b"0")]),
            Some(b"GET /smuggled HTTP/1.1\r\n\r\n"),
        ),
        (
            "content-length larger than the body",
            with(&[(b"content-length", b"100")]),
            Some(b"short"),
        ),
    ];
    for (name, fields, body) in cases {
        let mut tls = raw::tunnel(
            e.airlock.addr,
            "api.github.com",
            "api.github.com",
            &e.airlock.ca_pem,
            &[b"h2"],
        )
        .await;
        let outcome = raw::h2_raw(&mut tls, &h2_request(&fields, body)).await;
        assert!(
            matches!(
                outcome,
                H2Outcome::Reset(PROTOCOL_ERROR) | H2Outcome::GoAway(PROTOCOL_ERROR)
            ),
            "{name}: want a PROTOCOL_ERROR reset, got {outcome:?}"
        );
        assert_eq!(e.pending_reviews().await, 0, "{name}: nothing held");
        e.assert_healthy(name).await;
    }
}

/// An `h2` crate response's status and JSON body (`null` if the body is not JSON).
async fn h2_answer(resp: h2::client::ResponseFuture) -> (u16, serde_json::Value) {
    let resp = resp.await.expect("response");
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// Legal h2 requests that try to name another host, sent with the `h2` crate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_authority_tricks_are_refused() {
    let mut e = env("").await;
    struct H2Case {
        name: &'static str,
        uri: &'static str,
        host: Option<&'static str>,
        status: u16,
        code: &'static str,
    }
    let cases = [
        H2Case {
            name: ":authority of another catalog host",
            uri: "https://api.stripe.com/v1/refunds",
            host: None,
            status: 403,
            code: "authority_mismatch",
        },
        H2Case {
            name: "host header differs from :authority",
            uri: "https://api.github.com/repos/o/r",
            host: Some("api.stripe.com"),
            status: 403,
            code: "authority_mismatch",
        },
        H2Case {
            name: ":authority with userinfo",
            uri: "https://user@api.github.com/repos/o/r",
            host: None,
            status: 403,
            code: "authority_mismatch",
        },
        H2Case {
            name: ":authority with another port",
            uri: "https://api.github.com:8443/repos/o/r",
            host: None,
            status: 403,
            code: "authority_mismatch",
        },
        H2Case {
            name: "upper-case :authority with trailing dot (same host: held)",
            uri: "https://API.GITHUB.COM./repos/o/r",
            host: None,
            status: 423,
            code: "ESCALATE",
        },
    ];
    for c in cases {
        let tls = raw::tunnel(
            e.airlock.addr,
            "api.github.com",
            "api.github.com",
            &e.airlock.ca_pem,
            &[b"h2"],
        )
        .await;
        let (mut client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
        tokio::spawn(conn);
        let mut req = http::Request::builder().method("DELETE").uri(c.uri);
        if let Some(h) = c.host {
            req = req.header("host", h);
        }
        let (resp, _) = client
            .send_request(req.body(()).expect("request"), true)
            .expect("send");
        let (status, json) = h2_answer(resp).await;
        let code = json
            .get("error")
            .or_else(|| json.get("outcome"))
            .and_then(|v| v.as_str())
            .unwrap_or("");
        assert_eq!((status, code), (c.status, c.code), "{}: {json}", c.name);
        e.assert_healthy(c.name).await;
    }
}

/// An HTTP/2 `:path` must be origin-form as sent. `?q` is read as path `/` but goes to an
/// HTTP/1.1 upstream as the target `?q`; `*` outside OPTIONS names no resource. (A full URL
/// as `:path` is already refused by the h2 crate as malformed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_path_that_is_not_origin_form_is_refused() {
    let mut e = env("").await;
    for path in ["?smuggled=1", "*"] {
        let tls = raw::tunnel(
            e.airlock.addr,
            "api.github.com",
            "api.github.com",
            &e.airlock.ca_pem,
            &[b"h2"],
        )
        .await;
        let (mut client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
        tokio::spawn(conn);
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTPS);
        parts.authority = Some(http::uri::Authority::from_static("api.github.com"));
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static(path));
        let uri = http::Uri::from_parts(parts).expect("uri");
        let req = http::Request::builder()
            .method("GET")
            .uri(uri)
            .body(())
            .expect("request");
        let (resp, _) = client.send_request(req, true).expect("send");
        let (status, json) = h2_answer(resp).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("bad_path")),
            "{path}: {json}"
        );
        e.assert_healthy(path).await;
    }
}

// ---- slowloris ----

/// Sends `bytes` one byte per `gap`; returns when the peer closes or answers (true), or after
/// every byte went out with no reaction (false).
async fn trickle<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    bytes: &[u8],
    gap: Duration,
) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    for b in bytes {
        if s.write_all(&[*b]).await.is_err() {
            return (true, got);
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(gap, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                // An answer (408): read to the close.
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
                return (true, got);
            }
            Err(_) => {}
        }
    }
    (false, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_is_cut_off_while_others_are_served() {
    let e = env("").await;
    // Twenty header bytes at one per 500 ms: 10 s, far beyond the 1 s header_read_timeout.
    let slow_front = async {
        let mut s = TcpStream::connect(e.airlock.addr).await.expect("connect");
        trickle(
            &mut s,
            b"GET http://plain.test/slow HTTP/1.1\r\nHost: plain.test\r\nX-Slow: aaaaaaaa",
            Duration::from_millis(500),
        )
        .await
    };
    let slow_tunnel = async {
        let mut tls = raw::tunnel(
            e.airlock.addr,
            "api.github.com",
            "api.github.com",
            &e.airlock.ca_pem,
            &[b"http/1.1"],
        )
        .await;
        trickle(
            &mut tls,
            b"DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nX-Slow: aaaaaaaa",
            Duration::from_millis(500),
        )
        .await
    };
    let slow = async { tokio::join!(slow_front, slow_tunnel) };
    let client = e.airlock.client();
    let others = async {
        let mut ok = 0;
        for _ in 0..5 {
            // Spread over the slow clients' lifetime: others are served while they trickle.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = client
                .get("https://api.github.com/others")
                .send()
                .await
                .expect("served meanwhile");
            assert_eq!(r.status(), 200);
            ok += 1;
        }
        ok
    };
    let (((front_cut, front_got), (tunnel_cut, tunnel_got)), ok) = tokio::join!(slow, others);
    assert_eq!(ok, 5, "other clients were served meanwhile");
    for (what, cut, got) in [
        ("front", front_cut, front_got),
        ("tunnel", tunnel_cut, tunnel_got),
    ] {
        let text = String::from_utf8_lossy(&got);
        assert!(cut, "{what}: a slowloris client was not cut off");
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{what}: {text}"
        );
    }
    assert!(e
        .up
        .requests()
        .iter()
        .all(|r| r.path_and_query == "/others"));
    assert_eq!(e.plain.count(), 0);
    assert_eq!(e.pending_reviews().await, 0);
}

// ---- agents that stop reading ----

/// An agent that asks for a large answer and stops reading cannot hold its connection (and a
/// `max_connections` slot) for good: once a write toward it has waited the idle timeout,
/// Airlock drops the connection and other agents are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_that_stops_reading_is_dropped_and_frees_its_slot() {
    let e = env("max_connections = 2\nidle_timeout = \"1s\"\n").await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let head = b"GET /bytes/268435456 HTTP/1.1\r\nHost: api.github.com\r\n\r\n";
        stalled.push(e.sent("api.github.com", head).await);
    }
    let ex = raw::front(
        e.airlock.addr,
        b"CONNECT api.github.com:443 HTTP/1.1\r\nhost: api.github.com:443\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(ex.first_status(), Some(503), "both slots held: {ex:?}");
    let client = e.airlock.client();
    let mut served = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(r) = client.get("https://api.github.com/after").send().await {
            if r.status() == 200 {
                served = true;
                break;
            }
        }
    }
    assert!(
        served,
        "the agents that stopped reading still hold every slot"
    );
    for mut tls in stalled {
        let mut sink = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(n) = tls.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "a connection that stopped reading was left open"
        );
    }
}

/// Review of session 19: a gated request whose head arrived and whose body stalls held its
/// connection (and a `max_connections` slot, and the bytes read so far) for good: the idle
/// timeout waits for the request, and the request waited for the body. A buffered body must
/// now arrive within `proxy.body_read_timeout`: 408, the connection closes, nothing is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buffered_body_that_stalls_is_refused_and_its_connection_closed() {
    let e = env("body_read_timeout = \"1s\"\nidle_timeout = \"60s\"\n").await;
    for (what, host, head) in [
        (
            "held body",
            "api.github.com",
            "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"a\":",
        ),
        (
            "inspected body",
            "api.github.com",
            "POST /graphql HTTP/1.1\r\nHost: api.github.com\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"query\":",
        ),
        (
            "git push commands",
            "github.com",
            "POST /o/r.git/git-receive-pack HTTP/1.1\r\nHost: github.com\r\ncontent-type: application/x-git-receive-pack-request\r\ncontent-length: 1000\r\n\r\n0094",
        ),
    ] {
        let mut tls = e.sent(host, head.as_bytes()).await;
        let mut got = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut got)).await;
        assert!(ended.is_ok(), "{what}: the stalled connection was left open");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{what}: {text}");
        assert!(text.contains("body_timeout"), "{what}: {text}");
    }
    assert_eq!(e.pending_reviews().await, 0);
    assert_eq!(e.up.count(), 0);
}

/// Review of session 19: an agent could have any number of gated requests' bodies read and held
/// in memory at once (256 streams per connection, 10,000 connections). Past
/// `proxy.max_buffered_per_agent` a request whose body would be read is refused at once, before
/// a byte of it is read; requests that need no body still pass, and the slots come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_has_a_bounded_number_of_bodies_read_at_once() {
    let e = env("body_read_timeout = \"3s\"\nmax_buffered_per_agent = 2\n").await;
    let stalled_head = "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{";
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(e.sent("api.github.com", stalled_head.as_bytes()).await);
    }
    let client = e.airlock.client();
    let refused = support::eventually("the third body to be refused", support::WAIT, || async {
        let r = client
            .post("https://api.github.com/graphql")
            .header("content-type", "application/json")
            .body(r#"{"query":"{ viewer { login } }"}"#)
            .send()
            .await
            .ok()?;
        (r.status() == 429).then_some(r)
    })
    .await;
    let text = refused.text().await.expect("text");
    assert!(text.contains("too_many_buffered_requests"), "{text}");
    reads_pass_then_stalled_bodies_give_back(&client, stalled).await;
    assert_eq!(e.pending_reviews().await, 0);
}

/// Review of session 23: each agent's buffered bodies were bounded
/// (`proxy.max_buffered_per_agent` x `gate.max_body_bytes`), all agents' together not at all.
/// Past `gate.max_buffered_bytes` a body to judge or hold is refused, 503 `buffer_full` with
/// `Retry-After`, before it is read: not held, stored or sent. The bytes come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_agents_have_a_bounded_number_of_bytes_buffered_at_once() {
    let e = env_with("body_read_timeout = \"3s\"\n", |c| {
        c.gate.max_buffered_bytes = 8192;
    })
    .await;
    // Two held bodies declared at 4096 bytes each, never sent whole: the budget is spent.
    let stalled_head = "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n{";
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(e.sent("api.github.com", stalled_head.as_bytes()).await);
    }
    let client = e.airlock.client();
    let refused = support::eventually("a third body to be refused", support::WAIT, || async {
        let r = client
            .delete("https://api.github.com/repos/o/r2")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .ok()?;
        (r.status() == 503).then_some(r)
    })
    .await;
    assert!(
        refused.headers().get("retry-after").is_some(),
        "Retry-After"
    );
    let text = refused.text().await.expect("text");
    assert!(text.contains("buffer_full"), "{text}");
    assert_eq!(e.pending_reviews().await, 0, "nothing held or stored");
    assert_eq!(e.up.count(), 0, "nothing sent");
    reads_pass_then_stalled_bodies_give_back(&client, stalled).await;
    assert_eq!(e.airlock.proxy.buffered_bytes.used(), 0, "all given back");
}

/// An idle HTTP/2 agent connection closes after the idle timeout although the agent answers
/// every PING (as h2 clients do by themselves): Airlock's own keep-alive pings, every 30 s,
/// made the answers bytes read and kept such a connection open for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_h2_agent_connection_closes_though_it_answers_pings() {
    let e = env("idle_timeout = \"31s\"\n").await;
    let mut tls = raw::tunnel(
        e.airlock.addr,
        "api.github.com",
        "api.github.com",
        &e.airlock.ca_pem,
        &[b"h2"],
    )
    .await;
    let mut hello = raw::H2_PREFACE.to_vec();
    hello.extend(h2_frame(frame::SETTINGS, 0, 0, &[]));
    tls.write_all(&hello).await.expect("preface");
    let opened = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(50), async {
        loop {
            let mut head = [0u8; 9];
            if tls.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
            let mut payload = vec![0u8; len];
            if tls.read_exact(&mut payload).await.is_err() {
                return;
            }
            let answer = match (head[3], head[4] & 1) {
                (frame::SETTINGS, 0) => h2_frame(frame::SETTINGS, 1, 0, &[]),
                (frame::PING, 0) => h2_frame(frame::PING, 1, 0, &payload),
                (frame::GOAWAY, _) => return,
                _ => continue,
            };
            if tls.write_all(&answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an idle h2 connection was still open after 50 s"
    );
    assert!(
        opened.elapsed() >= Duration::from_secs(30),
        "closed before the idle timeout: {:?}",
        opened.elapsed()
    );
}

// ---- connection and tunnel limits ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_limit_counts_open_tunnels_and_refuses_with_503() {
    let e = env("max_connections = 3\n").await;
    // Three intercepted tunnels, open and idle: they hold the three connection slots.
    let mut tunnels = Vec::new();
    for _ in 0..3 {
        tunnels.push(
            raw::tunnel(
                e.airlock.addr,
                "api.github.com",
                "api.github.com",
                &e.airlock.ca_pem,
                &[b"http/1.1"],
            )
            .await,
        );
    }
    let got = raw::front(
        e.airlock.addr,
        b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n",
        QUIET,
    )
    .await;
    let first = got.responses.first().expect("an answer, not a hang");
    assert_eq!(first.status, 503, "{got:?}");
    assert_eq!(first.code().as_deref(), Some("connection_limit"));
    assert_eq!(first.header("airlock-reason"), Some("connection_limit"));
    assert!(got.closed, "refused connection is closed");
    // The open tunnels still work.
    let t = tunnels.last_mut().expect("tunnel");
    t.write_all(b"GET /still-open HTTP/1.1\r\nHost: api.github.com\r\n\r\n")
        .await
        .expect("write");
    let got = raw::read_exchange(t, QUIET, Duration::from_secs(10)).await;
    assert_eq!(got.first_status(), Some(200), "{got:?}");
    // Closing one frees its slot.
    drop(tunnels.pop());
    support::eventually("a freed slot to be reused", support::WAIT, || async {
        let got = raw::front(
            e.airlock.addr,
            b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n",
            QUIET,
        )
        .await;
        if got.first_status() == Some(200) {
            Ok(())
        } else {
            Err(got)
        }
    })
    .await;
}

/// While bodies stall: a request with no body to read passes; the stalled bodies then time
/// out (408) and what they held comes back, so a request whose body is read passes again.
async fn reads_pass_then_stalled_bodies_give_back<S>(client: &reqwest::Client, stalled: Vec<S>)
where
    S: tokio::io::AsyncRead + Unpin,
{
    let r = client
        .get("https://api.github.com/repos/o/r")
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), 200, "a request with no body to read passes");
    for mut tls in stalled {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut got)).await;
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"));
    }
    let r = client
        .post("https://api.github.com/graphql")
        .header("content-type", "application/json")
        .body(r#"{"query":"{ viewer { login } }"}"#)
        .send()
        .await
        .expect("graphql");
    assert_eq!(r.status(), 200);
}
