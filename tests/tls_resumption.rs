//! TLS toward agents: a reconnecting agent resumes its session (no certificate, no signature),
//! a session made for one host never opens another, even when a client offers it under the
//! other host's name, and Airlock picks the cipher suite from its own order.

mod support;

use std::sync::{Arc, Mutex};

use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;
use rustls::{CipherSuite, HandshakeKind, NamedGroup};
use support::raw::PinnedName;
use support::{Airlock, FakeUpstream, UpstreamOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const INSPECT: &str = "[proxy]\ninspect_hosts = [\"api.github.com\", \"upstream.test\"]\n";

async fn setup() -> (FakeUpstream, Airlock) {
    support::init();
    let up = FakeUpstream::start(UpstreamOptions::default()).await;
    let airlock = Airlock::start(INSPECT, &up, &["api.github.com", "upstream.test"]).await;
    (up, airlock)
}

/// A client config trusting Airlock's CA for `host`, keeping sessions in `store`.
fn client(
    airlock: &Airlock,
    host: &str,
    store: Arc<dyn ClientSessionStore>,
) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedName::new(&airlock.ca_pem, host)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = Resumption::store(store);
    Arc::new(cfg)
}

/// CONNECT `host`, TLS with SNI `host`, one GET read to the end (which also reads the session
/// tickets); returns how the handshake went.
async fn one_request(
    airlock: &Airlock,
    host: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> HandshakeKind {
    one_session(airlock, host, cfg).await.0
}

/// As `one_request`, also returning the negotiated cipher suite.
async fn one_session(
    airlock: &Airlock,
    host: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> (HandshakeKind, CipherSuite) {
    let mut tcp = TcpStream::connect(airlock.addr).await.expect("connect");
    let connect = format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n");
    tcp.write_all(connect.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            tcp.read(&mut byte).await.expect("read"),
            1,
            "closed during CONNECT"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let name = ServerName::try_from(host.to_string()).expect("name");
    let mut tls: TlsStream<TcpStream> = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("TLS to airlock (certificate verified for the host)");
    let kind = tls.get_ref().1.handshake_kind().expect("handshake done");
    let suite = tls.get_ref().1.negotiated_cipher_suite().expect("suite");
    let get = format!("GET /r HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(get.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    (kind, suite.suite())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnecting_agent_resumes_its_session() {
    let (_up, airlock) = setup().await;
    let store = Arc::new(rustls::client::ClientSessionMemoryCache::new(32));
    let cfg = client(&airlock, "api.github.com", store);
    assert_eq!(
        one_request(&airlock, "api.github.com", cfg.clone()).await,
        HandshakeKind::Full
    );
    assert_eq!(
        one_request(&airlock, "api.github.com", cfg).await,
        HandshakeKind::Resumed
    );
}

/// Hands out every ticket it was given, whatever name it is asked for (a client offering one
/// host's session to another).
#[derive(Debug, Default)]
struct AnyName(Mutex<Vec<Tls13ClientSessionValue>>);

impl ClientSessionStore for AnyName {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }
    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {}
    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.0.lock().expect("lock").push(value);
    }
    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.0.lock().expect("lock").pop()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_for_one_host_never_opens_another() {
    let (_up, airlock) = setup().await;
    let store = Arc::new(AnyName::default());
    let github = client(&airlock, "api.github.com", store.clone());
    assert_eq!(
        one_request(&airlock, "api.github.com", github.clone()).await,
        HandshakeKind::Full
    );
    assert_eq!(
        one_request(&airlock, "api.github.com", github).await,
        HandshakeKind::Resumed,
        "the store offers its tickets"
    );
    // The other host's connection is offered api.github.com's ticket: Airlock refuses to
    // resume and presents upstream.test's own certificate (verified by the client).
    let other = client(&airlock, "upstream.test", store);
    assert_eq!(
        one_request(&airlock, "upstream.test", other).await,
        HandshakeKind::Full
    );
}

/// A client that prefers AES-256-GCM (rustls' and OpenSSL's default order) gets AES-128-GCM,
/// Airlock's first choice; a client offering only AES-256-GCM still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn airlock_picks_the_suite_from_its_own_order() {
    let (_up, airlock) = setup().await;
    let store = Arc::new(rustls::client::ClientSessionMemoryCache::new(32));
    let cfg = client(&airlock, "api.github.com", store);
    assert_eq!(
        cfg.crypto_provider().cipher_suites[0].suite(),
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        "the client prefers AES-256"
    );
    let (_, suite) = one_session(&airlock, "api.github.com", cfg).await;
    assert_eq!(suite, CipherSuite::TLS13_AES_128_GCM_SHA256);

    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|s| s.suite() == CipherSuite::TLS13_AES_256_GCM_SHA384);
    let verifier = PinnedName::new(&airlock.ca_pem, "upstream.test");
    let mut only_256 = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("provider")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    only_256.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (_, suite) = one_session(&airlock, "upstream.test", Arc::new(only_256)).await;
    assert_eq!(suite, CipherSuite::TLS13_AES_256_GCM_SHA384);
}
