//! One-click links end to end (issue 6): an escalation notifies a webhook with signed links;
//! GET on a link only shows a confirmation page (mail scanners prefetch); the POST from that
//! page decides as the link's reviewer; a replayed or tampered link is refused.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::{Airlock, FakeUpstream};
use tokio::sync::mpsc;

async fn webhook_sink() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
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
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
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

fn links_in(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if s.contains("/ui/link/") => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| links_in(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| links_in(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notified_link_confirms_on_get_and_decides_once_on_post() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let (hook, mut bodies) = webhook_sink().await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin_addr = free.local_addr().expect("addr");
    drop(free);
    let token = airlock::agents::generate_token();
    let toml = format!(
        "[[reviewers]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n\
         [notify]\nbase_url = \"http://{admin_addr}\"\n\
         [[notify.channels]]\nkind = \"webhook\"\nurl = \"{hook}\"\nformat = \"json\"\nreviewer = \"alice\"\n",
        hex::encode(airlock::agents::token_digest(&token))
    );
    let dir = tempfile::tempdir().expect("dir");
    let mut config = Airlock::config(&toml, dir.path(), &up, &["api.github.com"]);
    config.admin.listen = admin_addr;
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a =
        Airlock::start_with_parts(config, dir, catalog, Arc::new(airlock::gate::SystemClock)).await;

    let r = a
        .client()
        .delete("https://api.github.com/repos/octo/demo?access_token=hidden")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 423);
    let body = tokio::time::timeout(Duration::from_secs(10), bodies.recv())
        .await
        .expect("notified")
        .expect("body");
    assert!(body.contains("github.repos.delete"), "{body}");
    assert!(
        !body.contains("hidden"),
        "query string in a notification: {body}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let mut links = Vec::new();
    links_in(&json, &mut links);
    assert_eq!(links.len(), 2, "approve and reject links: {body}");

    let c = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut approve = None;
    for l in &links {
        // GET (what a mail scanner does) decides nothing.
        let page = c
            .get(l)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("html");
        assert!(page.contains("Confirm:"), "{page}");
        if page.contains("Confirm: approve") {
            approve = Some(l.clone());
        }
    }
    assert_eq!(up.count(), 0, "GET never decides");
    let approve = approve.expect("an approve link");

    // A tampered link is refused.
    let mut tampered = approve.clone();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let r = c.post(&tampered).send().await.expect("post");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("html").contains("Invalid link"));
    assert_eq!(up.count(), 0);

    let r = c.post(&approve).send().await.expect("post");
    let status = r.status();
    let page = r.text().await.expect("html");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("executed"), "{page}");
    assert_eq!(up.count(), 1);
    // Replay: refused, nothing sent again.
    let r = c.post(&approve).send().await.expect("post");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("html").contains("already used"));
    assert_eq!(up.count(), 1);
    let (_, list) = a.admin("GET", "/v1/reviews", None).await;
    assert_eq!(list["reviews"][0]["decision"]["by"], "alice");
}

/// Issue 21: no decision surface is reachable through the proxy, whatever the name, the address
/// or the tunnel mode. `airlock.example.com` is `notify.base_url`'s host and, by the resolve
/// override, the admin listener's address; `alias.test` is another name for that address;
/// `shared.test` is a third-party address an agent could tunnel to with the dashboard's name in
/// its TLS ClientHello or HTTP Host. Nothing reaches the admin listener or the shared host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_decision_surface_is_reachable_through_the_proxy() {
    use support::raw;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    // A "third-party" host behind a shared address: counts the bytes it is sent.
    let shared = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shared_addr = shared.local_addr().expect("addr");
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = shared.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    for mode in ["deny", "tunnel"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Airlock::config(
            &format!(
                "[proxy]\nunknown_hosts = \"{mode}\"\n[admin]\npublic_hosts = [\"review.example.org\"]\n\
                 [notify]\nbase_url = \"https://airlock.example.com\"\n"
            ),
            dir.path(),
            &up,
            &["api.github.com"],
        );
        // Bind the admin listener first so the override can point at it.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let admin_addr = probe.local_addr().expect("addr");
        drop(probe);
        config.admin.listen = admin_addr;
        for name in ["airlock.example.com", "alias.test", "review.example.org"] {
            config.upstream.resolve.insert(name.into(), admin_addr);
        }
        config
            .upstream
            .resolve
            .insert("shared.test".into(), shared_addr);
        config.egress.ports.push(admin_addr.port());
        let a = Airlock::start_with(config, dir).await;
        let quiet = Duration::from_millis(300);
        let connect = |host: String| format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let refused = [
            ("airlock.example.com:443".to_string(), "decision_surface"),
            ("review.example.org:443".to_string(), "decision_surface"),
            (
                format!("alias.test:{}", admin_addr.port()),
                "airlock_listener",
            ),
            (format!("{admin_addr}"), "airlock_listener"),
        ];
        for (target, code) in refused {
            let got = raw::front(a.addr, connect(target.clone()).as_bytes(), quiet).await;
            let first = got.responses.first();
            let ok = first.is_some_and(|r| {
                r.status == 403 && (mode == "deny" || r.code().as_deref() == Some(code))
            });
            assert!(
                ok,
                "[{mode}] CONNECT {target}: want 403 {code}, got {got:?}"
            );
        }
        // Absolute-form plain HTTP to the dashboard's name.
        let got = raw::front(
            a.addr,
            b"GET http://airlock.example.com/ui HTTP/1.1\r\nHost: airlock.example.com\r\n\r\n",
            quiet,
        )
        .await;
        assert_eq!(
            got.first_status(),
            Some(403),
            "[{mode}] absolute-form: {got:?}"
        );
        if mode == "tunnel" {
            // A tunnel to a shared address whose first flight names the dashboard.
            for first in [
                raw_client_hello("airlock.example.com"),
                b"GET /ui HTTP/1.1\r\nHost: Airlock.Example.com\r\n\r\n".to_vec(),
            ] {
                let mut s = tokio::net::TcpStream::connect(a.addr)
                    .await
                    .expect("connect");
                s.write_all(connect("shared.test:443".into()).as_bytes())
                    .await
                    .expect("write");
                connect_answer(&mut s).await;
                let _ = s.write_all(&first).await;
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
                    .await
                    .expect("the tunnel is closed");
            }
            // The same tunnel with an ordinary first flight goes through.
            let mut s = tokio::net::TcpStream::connect(a.addr)
                .await
                .expect("connect");
            s.write_all(connect("shared.test:443".into()).as_bytes())
                .await
                .expect("write");
            connect_answer(&mut s).await;
            let ordinary = b"GET / HTTP/1.1\r\nHost: shared.test\r\n\r\n";
            s.write_all(ordinary).await.expect("write");
            support::eventually("the ordinary tunnel's bytes", support::WAIT, || async {
                let n = received.load(std::sync::atomic::Ordering::SeqCst);
                (n > 0).then_some(n)
            })
            .await;
            assert_eq!(
                received.load(std::sync::atomic::Ordering::SeqCst),
                ordinary.len(),
                "only the ordinary request reached the shared host"
            );
        }
        a.stop().await;
    }
}

/// Reads the proxy's answer to CONNECT up to its blank line; it must be 200.
async fn connect_answer(s: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.expect("read CONNECT answer");
        assert_eq!(n, 1, "proxy closed during CONNECT");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

/// A TLS ClientHello for `sni`, as rustls' client writes it.
fn raw_client_hello(sni: &str) -> Vec<u8> {
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("sni");
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("hello");
    hello
}
