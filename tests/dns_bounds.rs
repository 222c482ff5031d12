//! Name resolution is bounded and kept apart from the gate's blocking work (review: with
//! `unknown_hosts = "tunnel"` an agent chose names that never resolved, its lookups filled the
//! worker's blocking pool, and another agent's held call waited seconds for its 423). With
//! lookups stuck, another agent's held call is answered, and the greedy agent's CONNECTs past
//! its cap are refused `agent_dns_busy`.

mod support;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use airlock::upstream::resolve::{Lookup, AGENT_LOOKUPS};
use futures_util::future::join_all;
use support::{Airlock, FakeUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOSTS: &[&str] = &["api.github.com"];

/// Names starting with `slow` block until released (a resolver that never answers).
#[derive(Default)]
struct Stuck {
    released: Mutex<bool>,
    wake: Condvar,
    entered: AtomicUsize,
}

impl Stuck {
    fn release(&self) {
        *self.released.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

impl Lookup for Stuck {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if host.starts_with("slow") {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let mut released = self.released.lock().unwrap_or_else(PoisonError::into_inner);
            while !*released {
                released = self
                    .wake
                    .wait(released)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        Err(io::Error::other(format!("{host}:{port} does not resolve")))
    }
}

/// Lets every stuck lookup go when the test ends, however it ends.
struct Release(Arc<Stuck>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release();
    }
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// `CONNECT host:443` as `agent`; the status line and body of the answer.
async fn connect(proxy: SocketAddr, host: String, auth: String) -> String {
    let mut tcp = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    let req = format!(
        "CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // The refusal closes the connection; a 200 would not, but none is expected here.
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") && out.trim_ascii_end().ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_lookups_do_not_delay_another_agents_held_call_and_the_excess_is_refused() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let (greedy, calm) = (
        airlock::agents::generate_token(),
        airlock::agents::generate_token(),
    );
    let mut toml = String::from(
        "[proxy]\nunknown_hosts = \"tunnel\"\nworkers = 1\n\n[upstream]\nconnect_timeout = \"2s\"\n",
    );
    for (name, token) in [("greedy", &greedy), ("calm", &calm)] {
        toml.push_str(&airlock::agents::config_block(
            name,
            &airlock::agents::token_digest(token),
            &[],
            None,
        ));
    }
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a = Airlock::start_classified(&toml, &up, HOSTS, catalog).await;
    let stuck = Arc::new(Stuck::default());
    let _release = Release(stuck.clone());
    a.proxy
        .upstream
        .dialer()
        .resolver()
        .set_lookup(stuck.clone());

    // The greedy agent asks for more names than it may look up at once.
    let excess = 4;
    let auth = basic("greedy", &greedy);
    let connects: Vec<_> = (0..AGENT_LOOKUPS + excess)
        .map(|i| tokio::spawn(connect(a.addr, format!("slow{i}.example"), auth.clone())))
        .collect();
    support::eventually(
        "the greedy agent's lookups to be stuck",
        Duration::from_secs(30),
        || async {
            let n = stuck.entered.load(Ordering::SeqCst);
            (n >= AGENT_LOOKUPS).then_some(()).ok_or(n)
        },
    )
    .await;

    // Another agent's held call is answered while those lookups are still stuck (they end
    // only when released below).
    let cert = reqwest::Certificate::from_pem(a.ca_pem.as_bytes()).expect("ca");
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://calm:{calm}@{}", a.addr)).expect("proxy"))
        .tls_certs_only([cert])
        .build()
        .expect("client");
    let held = tokio::time::timeout(
        Duration::from_secs(30),
        support::held_delete(&client, "https://api.github.com/repos/acme/widgets"),
    )
    .await;
    assert!(held.is_ok(), "the held call waited on the stuck lookups");

    let answers: Vec<String> = join_all(connects)
        .await
        .into_iter()
        .map(|r| r.expect("connect task"))
        .collect();
    let busy = answers
        .iter()
        .filter(|r| r.starts_with("HTTP/1.1 429") && r.contains("agent_dns_busy"))
        .count();
    assert_eq!(busy, excess, "{answers:#?}");
    assert_eq!(
        stuck.entered.load(Ordering::SeqCst),
        AGENT_LOOKUPS,
        "no lookup past the agent's cap started"
    );
    for r in answers.iter().filter(|r| !r.contains("agent_dns_busy")) {
        assert!(
            r.starts_with("HTTP/1.1 502")
                && r.contains("took longer than upstream.connect_timeout"),
            "{r}"
        );
    }
}
