//! Connections without credentials (`proxy.max_unauthenticated_connections`,
//! `proxy.unauthenticated_per_address`, `proxy.first_request_timeout`), through real sockets:
//! idle sockets opened by a client with no token cannot lock agents out.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{path_str, Airlock, FakeUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

struct Setup {
    airlock: Airlock,
    _up: FakeUpstream,
    token: String,
}

/// Airlock with one agent, `bot`, and a GitHub credential; `extra` appended to the config.
async fn setup(extra: &str) -> Setup {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let secret_file = dir.path().join("github-token");
    support::write_secret(&secret_file, "ghp_REALtokenFromAirlockConfig0123456789\n");
    let token = airlock::agents::generate_token();
    let toml = format!(
        "{}[credentials.github]\nfile = {:?}\n{extra}",
        airlock::agents::config_block("bot", &airlock::agents::token_digest(&token), &[], None),
        path_str(&secret_file),
    );
    let config = Airlock::config(&toml, dir.path(), &up, &["api.github.com"]);
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let airlock =
        Airlock::start_with_parts(config, dir, catalog, Arc::new(airlock::gate::SystemClock)).await;
    Setup {
        airlock,
        _up: up,
        token,
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

/// Reads until EOF (or `limit`); what was read and whether the peer closed.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Review: a client without credentials opened 10,000 idle sockets; each held a
/// `proxy.max_connections` slot for `header_read_timeout`, and agents got 503 `connection_limit`.
/// Now they hold places of the unauthenticated pool only, and a newer connection evicts the
/// oldest idle one: an agent's request still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_unauthenticated_sockets_do_not_lock_agents_out() {
    let s = setup(
        "[proxy]\nmax_connections = 8\nmax_unauthenticated_connections = 4\n\
         header_read_timeout = \"60s\"\nfirst_request_timeout = \"60s\"\n",
    )
    .await;
    let a = &s.airlock;
    let mut idle = Vec::new();
    for _ in 0..12 {
        let t = TcpStream::connect(a.addr).await.expect("connect");
        t.set_nodelay(true).expect("nodelay");
        idle.push(t);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = client_as(a, "bot", &s.token);
    for i in 0..3 {
        let r = client
            .get(format!("https://api.github.com/user?try={i}"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    // The oldest idle sockets were closed to make room.
    let (_, closed) = read_to_close(&mut idle[0], Duration::from_secs(2)).await;
    assert!(closed, "the oldest idle unauthenticated socket is closed");
}

/// A local non-loopback address of this host, to connect from (the per-address cap exempts
/// loopback); `None` if the host has none.
fn non_loopback_ip() -> Option<IpAddr> {
    let u = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    u.connect("192.0.2.1:9").ok()?;
    let ip = u.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

async fn connect_from(ip: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(ip, 0))?;
    let s = sock.connect(to).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One address holds at most `proxy.unauthenticated_per_address` unauthenticated connections:
/// past it the address's own oldest idle connection is closed for the new one (behind a load
/// balancer every agent shares one address, so idle sockets there must not refuse the others;
/// the 429 comes only when all of the address's connections are mid-request, see the unit
/// tests); other addresses' connections are untouched, and loopback peers are not capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_address_cap_closes_the_addresss_oldest_idle_connection() {
    let s = setup(
        "[proxy]\nmax_unauthenticated_connections = 16\nunauthenticated_per_address = 2\n\
         header_read_timeout = \"60s\"\nfirst_request_timeout = \"60s\"\n",
    )
    .await;
    let a = &s.airlock;
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped: this host has no non-loopback address to connect from");
        return;
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from(ip, a.addr).await.expect("connect"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut local = Vec::new();
    for _ in 0..4 {
        local.push(TcpStream::connect(a.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = connect_from(ip, a.addr).await.expect("connect");
    let (answer, closed) = read_to_close(&mut held[0], Duration::from_secs(5)).await;
    assert!(
        closed && answer.is_empty(),
        "the oldest idle one is closed unanswered: {answer}"
    );
    let (answer, closed) = read_to_close(&mut third, Duration::from_millis(300)).await;
    assert!(!closed, "the new connection is kept: {answer}");
    let (_, closed) = read_to_close(&mut held[1], Duration::from_millis(300)).await;
    assert!(!closed, "the address's newer connection stays open");
    let (_, closed) = read_to_close(&mut local[0], Duration::from_millis(300)).await;
    assert!(!closed, "loopback connections are not capped per address");
}

/// A connection that sends no request head is closed after `proxy.first_request_timeout`,
/// well before `header_read_timeout`; one that has made a request is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_unauthenticated_connection_closes_after_first_request_timeout() {
    let s = setup("[proxy]\nheader_read_timeout = \"60s\"\nfirst_request_timeout = \"1s\"\n").await;
    let a = &s.airlock;
    let started = Instant::now();
    let mut idle = TcpStream::connect(a.addr).await.expect("connect");
    let (answer, closed) = read_to_close(&mut idle, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(closed, "an idle connection is closed");
    assert!(answer.is_empty(), "closed unanswered: {answer}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // An authenticated tunnel outlives the first-request timeout.
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("bot:{}", s.token));
    let mut t = TcpStream::connect(a.addr).await.expect("connect");
    t.write_all(
        format!(
            "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\
             Proxy-Authorization: Basic {auth}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = [0u8; 256];
    let n = t.read(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_, closed) = read_to_close(&mut t, Duration::from_millis(1500)).await;
    assert!(
        !closed,
        "an authenticated tunnel is not closed by first_request_timeout"
    );
}
