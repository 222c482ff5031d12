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
    let admin_addr = support::spare_addr();
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
    let (shared_addr, received) = counting_server().await;
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
        let admin_addr = support::spare_addr();
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

/// A TCP server counting the bytes it is sent (on every connection).
async fn counting_server() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
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
    (addr, received)
}

/// With `unknown_hosts = "tunnel"`, a tunnel to an uninspected address whose first flight
/// names a host Airlock inspects (a provider reached by its address or another name, which
/// would be talked to unjudged) or answers itself, or that Airlock cannot read to its end
/// (a server might read it otherwise), is closed before a byte of it is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_never_carries_an_inspected_host_or_an_unreadable_head() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let (shared_addr, received) = counting_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Airlock::config(
        "[proxy]\nunknown_hosts = \"tunnel\"\ninspect_hosts = [\"api.github.com\"]\n",
        dir.path(),
        &up,
        &["api.github.com"],
    );
    config
        .upstream
        .resolve
        .insert("shared.test".into(), shared_addr);
    let a = Airlock::start_with(config, dir).await;
    let connect = b"CONNECT shared.test:443 HTTP/1.1\r\nHost: shared.test:443\r\n\r\n";
    let padded = format!(
        "GET / HTTP/1.1\r\nHost: shared.test\r\n{}\r\n",
        "X-Pad: 1\r\n".repeat(64)
    );
    let firsts: Vec<(&str, Vec<u8>)> = vec![
        (
            "ClientHello naming a provider",
            raw_client_hello("api.github.com"),
        ),
        (
            "ClientHello naming airlock.local",
            raw_client_hello("airlock.local"),
        ),
        (
            "Host naming a provider",
            b"DELETE /repos/o/r HTTP/1.1\r\nHost: API.GitHub.com\r\n\r\n".to_vec(),
        ),
        (
            "absolute-form target naming a provider",
            b"DELETE https://api.github.com/repos/o/r HTTP/1.1\r\nHost: shared.test\r\n\r\n"
                .to_vec(),
        ),
        ("65 headers", padded.into_bytes()),
        (
            "a header name Airlock's parser rejects",
            b"GET / HTTP/1.1\r\nx@y: 1\r\nHost: shared.test\r\n\r\n".to_vec(),
        ),
    ];
    for (name, first) in firsts {
        let mut s = tokio::net::TcpStream::connect(a.addr)
            .await
            .expect("connect");
        s.write_all(connect).await.expect("write");
        connect_answer(&mut s).await;
        let _ = s.write_all(&first).await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{name}: the tunnel is closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            received.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{name}: nothing reached the shared host"
        );
    }
    // An ordinary first flight still goes through.
    let mut s = tokio::net::TcpStream::connect(a.addr)
        .await
        .expect("connect");
    s.write_all(connect).await.expect("write");
    connect_answer(&mut s).await;
    let ordinary = b"GET / HTTP/1.1\r\nHost: shared.test\r\n\r\n";
    s.write_all(ordinary).await.expect("write");
    support::eventually("the ordinary tunnel's bytes", support::WAIT, || async {
        let n = received.load(std::sync::atomic::Ordering::SeqCst);
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(up.requests().len(), 0, "the provider saw nothing");
    drop(s);
    a.stop().await;
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

// ---- issue 21 item 6: links are honest ----

/// A webhook sink recording (path, body): one channel per reviewer, told apart by path.
async fn webhook_paths() -> (String, mpsc::UnboundedReceiver<(String, String)>) {
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
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await?.to_bytes();
                            let _ = tx.send((path, String::from_utf8_lossy(&body).into_owned()));
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
    (format!("http://{addr}"), rx)
}

const LINK_REVIEWERS: &[&str] = &["alice", "bob", "carol", "dave"];

/// Airlock with agent `bot` (owner alice), reviewers alice, bob, carol and dave, a rule holding
/// DELETE /repos/{owner}/{repo} for approvers alice, bob and dave (not carol), and one webhook
/// channel per reviewer (`/hook/NAME`) with one-click links.
struct LinkSetup {
    a: Airlock,
    up: FakeUpstream,
    agent_token: String,
    tokens: std::collections::HashMap<&'static str, String>,
    catalog: Arc<airlock::rules::LiveCatalog>,
    hooks: mpsc::UnboundedReceiver<(String, String)>,
    /// The config without its reviewer blocks, and each reviewer's block.
    base_toml: String,
    reviewer_toml: Vec<(&'static str, String)>,
}

async fn link_setup(clock: Arc<dyn airlock::gate::Clock>) -> LinkSetup {
    link_setup_with(clock, "").await
}

/// [`link_setup`] with `extra` in the config file (`[store]`, say), and a rule holding Stripe
/// refunds (`POST /v1/refunds`) for the same approvers.
async fn link_setup_with(clock: Arc<dyn airlock::gate::Clock>, extra: &str) -> LinkSetup {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let (hook, hooks) = webhook_paths().await;
    let admin_addr = support::spare_addr();
    let agent_token = airlock::agents::generate_token();
    let mut base_toml = airlock::agents::config_block(
        "bot",
        &airlock::agents::token_digest(&agent_token),
        &[],
        Some("alice"),
    );
    base_toml.push_str(&format!("[notify]\nbase_url = \"http://{admin_addr}\"\n"));
    base_toml.push_str(extra);
    for name in LINK_REVIEWERS {
        base_toml.push_str(&format!(
            "[[notify.channels]]\nkind = \"webhook\"\nurl = \"{hook}/hook/{name}\"\nformat = \"json\"\nreviewer = \"{name}\"\n"
        ));
    }
    let mut tokens = std::collections::HashMap::new();
    let mut reviewer_toml = Vec::new();
    for name in LINK_REVIEWERS {
        let t = airlock::agents::generate_token();
        reviewer_toml.push((
            *name,
            format!(
                "[[reviewers]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\n",
                hex::encode(airlock::agents::token_digest(&t))
            ),
        ));
        tokens.insert(*name, t);
    }
    let dir = tempfile::tempdir().expect("dir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::write(
        rules.join("t.toml"),
        "[service]\nname = \"github\"\nhosts = [\"api.github.com\"]\n\n\
         [[rule]]\ntool = \"test.delete\"\nmethod = \"DELETE\"\npath = \"/repos/{owner}/{repo}\"\n\
         class = \"irreversible\"\naction = \"escalate\"\napprovers = [\"alice\", \"bob\", \"dave\"]\n",
    )
    .expect("rules");
    std::fs::write(
        rules.join("s.toml"),
        "[service]\nname = \"stripe\"\nhosts = [\"api.stripe.com\"]\n\n\
         [[rule]]\ntool = \"stripe.refunds.create\"\nmethod = \"POST\"\npath = \"/v1/refunds\"\n\
         class = \"money\"\naction = \"escalate\"\napprovers = [\"alice\", \"bob\", \"dave\"]\n",
    )
    .expect("rules");
    let toml: String = std::iter::once(base_toml.clone())
        .chain(reviewer_toml.iter().map(|(_, b)| b.clone()))
        .collect();
    let mut config = Airlock::config(
        &toml,
        dir.path(),
        &up,
        &["api.github.com", "api.stripe.com"],
    );
    config.admin.listen = admin_addr;
    let catalog =
        airlock::rules::LiveCatalog::load(Some(rules), Default::default()).expect("catalog");
    let a = Airlock::start_with_parts(config, dir, catalog.clone(), clock).await;
    LinkSetup {
        a,
        up,
        agent_token,
        tokens,
        catalog,
        hooks,
        base_toml,
        reviewer_toml,
    }
}

impl LinkSetup {
    /// Holds a DELETE from `bot`; returns the review id and each reviewer's links
    /// (approve, reject), as notified.
    async fn hold(
        &mut self,
        path: &str,
    ) -> (
        String,
        std::collections::HashMap<String, (Option<String>, Option<String>)>,
    ) {
        let url = format!("https://api.github.com{path}");
        self.hold_request(|c| c.delete(url)).await
    }

    /// Holds the request `build` makes with `bot`'s client; as [`LinkSetup::hold`].
    async fn hold_request(
        &mut self,
        build: impl FnOnce(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> (
        String,
        std::collections::HashMap<String, (Option<String>, Option<String>)>,
    ) {
        let cert = reqwest::Certificate::from_pem(self.a.ca_pem.as_bytes()).expect("ca");
        let client = reqwest::Client::builder()
            .proxy(
                reqwest::Proxy::all(format!("http://bot:{}@{}", self.agent_token, self.a.addr))
                    .expect("proxy"),
            )
            .tls_certs_only([cert])
            .build()
            .expect("client");
        let r = build(&client).send().await.expect("send");
        assert_eq!(r.status(), 423);
        let id = r.headers()["airlock-review-id"]
            .to_str()
            .expect("id")
            .to_string();
        let mut out = std::collections::HashMap::new();
        while out.len() < LINK_REVIEWERS.len() {
            let (hook_path, body) =
                tokio::time::timeout(Duration::from_secs(10), self.hooks.recv())
                    .await
                    .expect("notified")
                    .expect("body");
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(v["review_id"], id.as_str(), "{body}");
            let who = hook_path.trim_start_matches("/hook/").to_string();
            let url = |k: &str| v[k].as_str().map(str::to_string);
            out.insert(who, (url("approve_url"), url("reject_url")));
        }
        (id, out)
    }

    async fn call(
        &self,
        who: &str,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        airlock::admin::client::call(self.a.admin_addr, &self.tokens[who], method, path, body)
            .await
            .expect("admin call")
    }

    /// Review `id` as the admin API shows it to dave: (status, JSON).
    async fn review(&self, id: &str) -> (u16, serde_json::Value) {
        self.call(
            "dave",
            http::Method::GET,
            &format!("/v1/reviews/{id}"),
            None,
        )
        .await
    }

    /// Rewrites the config file with only the reviewers in `keep` and reloads them (SIGHUP).
    fn reload_keeping(&self, keep: &[&str]) {
        self.reload(
            self.reviewer_toml
                .iter()
                .filter(|(n, _)| keep.contains(n))
                .map(|(_, b)| b.clone()),
        );
    }

    /// Rewrites the config file with these `[[reviewers]]` blocks and reloads them (SIGHUP).
    fn reload(&self, reviewers: impl Iterator<Item = String>) {
        let toml: String = std::iter::once(self.base_toml.clone())
            .chain(reviewers)
            .collect();
        let path = self.a.dir.path().join("airlock.toml");
        std::fs::write(&path, toml).expect("write config");
        airlock::server::reload_people(&self.a.gate, &path, self.catalog.as_ref()).expect("reload");
    }

    /// Signs `who` in to the dashboard; returns the session cookie.
    async fn sign_in(&self, who: &str) -> String {
        let c = plain();
        let base = format!("http://{}", self.a.admin_addr);
        let page = c.get(format!("{base}/ui/login")).send().await.expect("get");
        let login = set_cookie(&page, "airlock_login").expect("login cookie");
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
            .body(format!("csrf={csrf}&token={}", self.tokens[who]))
            .send()
            .await
            .expect("login");
        set_cookie(&r, "airlock_session").expect("session cookie")
    }
}

fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client")
}

/// Bob's approve link of a held review, opened with no session: the page, which must be 200.
async fn bobs_approve_page(
    c: &reqwest::Client,
    links: &std::collections::HashMap<String, (Option<String>, Option<String>)>,
) -> String {
    let approve = links["bob"].0.clone().expect("bob's approve link");
    let (st, html) = page(c, http::Method::GET, &approve, None).await;
    assert_eq!(st, 200, "{html}");
    html
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (k, val) = v.split(';').next()?.split_once('=')?;
            (k == name && !val.is_empty()).then(|| val.to_string())
        })
}

async fn page(
    c: &reqwest::Client,
    method: http::Method,
    url: &str,
    cookie: Option<&str>,
) -> (u16, String) {
    let mut req = c.request(method, url);
    if let Some(s) = cookie {
        req = req.header("cookie", format!("airlock_session={s}"));
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("html"))
}

/// Links go only to people who may take their action: the agent's owner gets a reject link
/// but no approve link, a reviewer outside the rule's approvers gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_are_minted_only_for_people_who_may_decide() {
    let mut s = link_setup(Arc::new(airlock::gate::SystemClock)).await;
    let (_, links) = s.hold("/repos/octo/minted").await;
    let has = |who: &str| {
        let (approve, reject) = &links[who];
        (approve.is_some(), reject.is_some())
    };
    assert_eq!(has("alice"), (false, true), "the owner may only reject");
    assert_eq!(has("bob"), (true, true));
    assert_eq!(has("dave"), (true, true));
    assert_eq!(has("carol"), (false, false), "not among the approvers");
}

/// A link follows the review's deadline (after `extend`, a link minted before still works until
/// the new deadline and not beyond), and a GET or POST on a link of a decided or expired review
/// shows that state instead of a confirmation, without using the link up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_follow_the_deadline_and_show_the_reviews_state() {
    let clock = Arc::new(airlock::gate::ManualClock::default());
    clock.advance(Duration::from_secs(1_700_000_000));
    let mut s = link_setup(clock.clone()).await;
    let c = plain();
    let (id, links) = s.hold("/repos/octo/deadline").await;
    let approve = links["bob"].0.clone().expect("bob's approve link");
    let (st, r) = s
        .call(
            "dave",
            http::Method::POST,
            &format!("/v1/reviews/{id}/extend"),
            Some(serde_json::json!({"by": "2h"})),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    // Past the deadline the link was minted with, within the extended one.
    clock.advance(Duration::from_secs(25 * 3600));
    let (st, html) = page(&c, http::Method::GET, &approve, None).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("Confirm: approve"), "{html}");
    // Past the extended deadline.
    clock.advance(Duration::from_secs(2 * 3600));
    let (_, html) = page(&c, http::Method::GET, &approve, None).await;
    assert!(
        !html.contains("Confirm") && html.contains("expired"),
        "{html}"
    );
    let (_, html) = page(&c, http::Method::POST, &approve, None).await;
    assert!(html.contains("expired"), "{html}");
    assert_eq!(s.up.count(), 0);

    // A decided review: its links show the state, on GET and POST, and are not used up.
    let (id, links) = s.hold("/repos/octo/decided").await;
    let approve = links["bob"].0.clone().expect("bob's approve link");
    let (st, _) = s
        .call(
            "dave",
            http::Method::POST,
            &format!("/v1/reviews/{id}/reject"),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(st, 200);
    for method in [http::Method::GET, http::Method::POST, http::Method::GET] {
        let (st, html) = page(&c, method.clone(), &approve, None).await;
        assert_eq!(st, 409, "{method}: {html}");
        assert!(
            html.contains("Review already rejected") && html.contains("dave"),
            "{method}: {html}"
        );
        assert!(
            !html.contains("Confirm") && !html.contains("already used"),
            "{html}"
        );
    }
    assert_eq!(s.up.count(), 0);
}

/// A removed reviewer's link is revoked at once; a refused POST does not use the link up (it
/// works once the reviewer is back); and someone signed in as another reviewer is told whose
/// link it is, and the link decides as its own reviewer only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_link_is_not_used_up_and_decides_only_as_its_reviewer() {
    let mut s = link_setup(Arc::new(airlock::gate::SystemClock)).await;
    let c = plain();
    let (id, links) = s.hold("/repos/octo/revoked").await;
    let approve = links["bob"].0.clone().expect("bob's approve link");
    s.reload_keeping(&["alice", "carol", "dave"]);
    for method in [http::Method::GET, http::Method::POST] {
        let (st, html) = page(&c, method.clone(), &approve, None).await;
        assert_eq!(st, 403, "{method}: {html}");
        assert!(html.contains("Link revoked"), "{method}: {html}");
    }
    assert_eq!(s.up.count(), 0);

    // bob is back; carol is signed in to the dashboard in this browser.
    s.reload_keeping(LINK_REVIEWERS);
    let carol = s.sign_in("carol").await;
    let (st, html) = page(&c, http::Method::GET, &approve, Some(&carol)).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("Confirm: approve"), "{html}");
    assert!(
        html.contains("This link is bob&#x27;s") || html.contains("This link is bob's"),
        "{html}"
    );
    assert!(html.contains("signed in as carol"), "{html}");
    let (st, html) = page(&c, http::Method::POST, &approve, Some(&carol)).await;
    assert_eq!(st, 200, "the refused POST did not use the link up: {html}");
    assert!(
        html.contains("executed") && html.contains("Decided as bob"),
        "{html}"
    );
    assert_eq!(s.up.count(), 1);
    let (_, r) = s.review(&id).await;
    assert_eq!(r["decision"]["by"], "bob", "{r}");
    assert_eq!(r["approvals"].as_array().map(Vec::len), Some(1), "{r}");
    let (st, html) = page(&c, http::Method::POST, &approve, Some(&carol)).await;
    assert_eq!(st, 403);
    assert!(html.contains("already used"), "{html}");
    assert_eq!(s.up.count(), 1);
}

// ---- a link's page shows what it decides; a link follows its reviewer's token; used links
// leave with their review ----

/// A link's page shows what the review asks to send, as the review's detail page sums it up:
/// two held refunds on the same path with different bodies read differently, amounts as the
/// detail page shows them (every reading of one read two ways, with a warning), secret query
/// values masked, invisible characters as escapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_links_page_shows_what_the_review_asks_to_send() {
    let mut s = link_setup(Arc::new(airlock::gate::SystemClock)).await;
    let c = plain();
    let refund = |query: &'static str, body: &'static str| {
        move |c: &reqwest::Client| {
            c.post(format!("https://api.stripe.com/v1/refunds{query}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        }
    };
    let (big, big_links) = s
        .hold_request(refund(
            "?access_token=hidden-in-query",
            "charge=ch_linkpageBIG&amount=123456&currency=usd",
        ))
        .await;
    let (small, small_links) = s
        .hold_request(refund(
            "",
            "charge=ch_linkpageSMALL%E2%80%AEevil&amount=777&currency=usd",
        ))
        .await;
    let big_money = "refund of 1234.56 USD from ch_linkpageBIG";
    let small_money = "refund of 7.77 USD from ch_linkpageSMALL\\u{202E}evil";

    let html = bobs_approve_page(&c, &big_links).await;
    assert!(
        html.contains(&format!("Confirm: approve review {big}")),
        "{html}"
    );
    assert!(html.contains(big_money), "{html}");
    assert!(html.contains("charge=ch_linkpageBIG"), "{html}");
    assert!(
        html.contains("POST https://api.stripe.com/v1/refunds?access_token=[redacted]"),
        "{html}"
    );
    assert!(
        !html.contains("hidden-in-query") && !html.contains("ch_linkpageSMALL"),
        "{html}"
    );

    let html = bobs_approve_page(&c, &small_links).await;
    assert!(
        html.contains(&format!("Confirm: approve review {small}")),
        "{html}"
    );
    assert!(html.contains(small_money), "{html}");
    assert!(
        !html.contains('\u{202E}'),
        "the override is shown, not applied: {html}"
    );
    assert!(!html.contains("ch_linkpageBIG"), "{html}");

    // A charge read two ways (`[charge]`: Rack 2 reads it as `charge`): both, and a warning.
    let (_, two_links) = s
        .hold_request(refund("", "charge=ch_linkpageONE&[charge]=ch_linkpageTWO"))
        .await;
    let html = bobs_approve_page(&c, &two_links).await;
    assert!(
        html.contains("full refund of ch_linkpageONE or ch_linkpageTWO"),
        "{html}"
    );
    assert!(html.contains("id=\"ambiguous\""), "{html}");
    let html = bobs_approve_page(&c, &big_links).await;
    assert!(!html.contains("id=\"ambiguous\""), "{html}");

    // Headers that change what the call does, and why it was held, are on the page too
    // (the summary alone showed neither; the detail page did).
    let (_, acct_links) = s
        .hold_request(|c: &reqwest::Client| {
            c.post("https://api.stripe.com/v1/refunds")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("stripe-account", "acct_linkpageOTHER")
                .body("charge=ch_linkpageACCT")
        })
        .await;
    let html = bobs_approve_page(&c, &acct_links).await;
    assert!(
        html.contains("stripe-account: acct_linkpageOTHER"),
        "{html}"
    );
    assert!(html.contains("id=\"stored-request\""), "{html}");
    assert!(html.contains("Held: stripe."), "{html}");
    let html = bobs_approve_page(&c, &big_links).await;
    assert!(
        !html.contains("hidden-in-query"),
        "the stored request masks it too: {html}"
    );

    // A link's bearer sees no secret-named body field (a mail scanner may prefetch the page);
    // where the value shows elsewhere, it is masked there too and the page says so.
    let (_, secret_links) = s
        .hold_request(|c: &reqwest::Client| {
            c.post("https://api.stripe.com/v1/refunds")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("charge=ch_linkpageSEKRIT&metadata[api_secret]=whsec%2FlinkpageSEKRIT%3D%3D")
        })
        .await;
    let html = bobs_approve_page(&c, &secret_links).await;
    assert!(
        !html.contains("whsec%2FlinkpageSEKRIT") && !html.contains("whsec/linkpageSEKRIT"),
        "neither raw nor decoded: {html}"
    );
    assert!(html.contains("charge=ch_linkpageSEKRIT"), "{html}");
    assert!(!html.contains("id=\"masked-echo\""), "{html}");
    let (_, echo_links) = s
        .hold_request(|c: &reqwest::Client| {
            c.post("https://api.stripe.com/v1/refunds")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("charge=ch_linkpageECHO1&metadata[token]=ch_linkpageECHO1")
        })
        .await;
    let html = bobs_approve_page(&c, &echo_links).await;
    assert!(!html.contains("ch_linkpageECHO1"), "{html}");
    assert!(html.contains("id=\"masked-echo\""), "{html}");

    // More secret-named fields than a page masks one by one: the body is not shown at all.
    let many: String = (0..40)
        .map(|i| format!("&metadata[k{i}_token]=manysecret{i:04}"))
        .collect();
    let body: &'static str = Box::leak(format!("charge=ch_linkpageMANY{many}").into_boxed_str());
    let (_, many_links) = s
        .hold_request(move |c: &reqwest::Client| {
            c.post("https://api.stripe.com/v1/refunds")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        })
        .await;
    let html = bobs_approve_page(&c, &many_links).await;
    assert!(!html.contains("manysecret"), "{html}");
    assert!(html.contains("body not shown"), "{html}");

    // The detail page says the same.
    let session = s.sign_in("dave").await;
    let base = format!("http://{}", s.a.admin_addr);
    for (id, money) in [(&big, big_money), (&small, small_money)] {
        let (st, html) = page(
            &c,
            http::Method::GET,
            &format!("{base}/ui/reviews/{id}"),
            Some(&session),
        )
        .await;
        assert_eq!(st, 200, "{html}");
        assert!(html.contains(money), "{html}");
    }
    assert_eq!(s.up.count(), 0, "GET never decides");
}

/// A link is bound to its reviewer's token: once her token changes (as her dashboard sessions
/// end), the links she was sent before are revoked, on GET and POST, and decide nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_is_revoked_when_its_reviewers_token_changes() {
    let mut s = link_setup(Arc::new(airlock::gate::SystemClock)).await;
    let c = plain();
    let (id, links) = s.hold("/repos/octo/rotated").await;
    let reject = links["alice"].1.clone().expect("alice's reject link");
    let (st, html) = page(&c, http::Method::GET, &reject, None).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("Confirm: reject"), "{html}");

    // alice's token is rotated: same name, a new token.
    let rotated = airlock::agents::generate_token();
    s.reload(s.reviewer_toml.iter().map(|(name, block)| {
        if *name == "alice" {
            format!(
                "[[reviewers]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n",
                hex::encode(airlock::agents::token_digest(&rotated))
            )
        } else {
            block.clone()
        }
    }));
    let (st, html) = page(&c, http::Method::GET, &reject, None).await;
    assert_eq!(st, 403, "{html}");
    assert!(html.contains("Link revoked"), "{html}");
    assert!(!html.contains("Confirm"), "{html}");
    let (st, html) = page(&c, http::Method::POST, &reject, None).await;
    assert_eq!(st, 403, "{html}");
    assert!(html.contains("Link revoked"), "{html}");
    let (st, r) = s.review(&id).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "pending", "{r}");
    assert_eq!(s.up.count(), 0);
}

/// The record that a link was used goes when retention prunes its review, and only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn used_link_records_leave_with_their_review() {
    let clock = Arc::new(airlock::gate::ManualClock::default());
    clock.advance(Duration::from_secs(1_700_000_000));
    let mut s = link_setup_with(clock.clone(), "[store]\nretention = \"1h\"\n").await;
    let c = plain();
    let link_keys = |s: &LinkSetup| -> Vec<String> {
        s.a.gate
            .store()
            .scan(airlock::store::Tree::Meta)
            .expect("scan")
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .filter(|k| k.starts_with(airlock::notify::links::USED_PREFIX))
            .collect()
    };
    // Two reviews rejected by link, the first two hours before the second.
    let mut ids = Vec::new();
    for path in ["/repos/octo/pruned", "/repos/octo/kept"] {
        if !ids.is_empty() {
            clock.advance(Duration::from_secs(2 * 3600));
        }
        let (id, links) = s.hold(path).await;
        let reject = links["bob"].1.clone().expect("bob's reject link");
        let (st, html) = page(&c, http::Method::POST, &reject, None).await;
        assert_eq!(st, 200, "{html}");
        assert!(html.contains("rejected"), "{html}");
        let keys = link_keys(&s);
        assert!(keys.iter().any(|k| k.contains(&id)), "{keys:?}");
        ids.push(id);
    }
    // Only the first is past the hour of retention: it goes, with its link's record (the
    // background pruner may have got there first).
    s.a.gate.prune().await.expect("prune");
    let left = link_keys(&s);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].contains(&ids[1]),
        "the kept review's record stays: {left:?}"
    );
    clock.advance(Duration::from_secs(2 * 3600));
    s.a.gate.prune().await.expect("prune");
    assert!(link_keys(&s).is_empty(), "{:?}", link_keys(&s));
    let (st, _) = s
        .call(
            "dave",
            http::Method::GET,
            &format!("/v1/reviews/{}", ids[1]),
            None,
        )
        .await;
    assert_eq!(st, 404, "the review is gone too");
}

/// Security review: an approve link whose page withholds the body (JSON with a key given
/// twice, more secret-named values than a page masks) offered Approve, so its reviewer approved
/// arguments she never saw (`{"a":1,"a":1,"permission":"admin"}`). Its page now offers Reject
/// and the dashboard instead; a POST that approves is refused (and does not use the link up),
/// one that rejects decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_whose_page_withholds_the_body_cannot_approve() {
    let mut s = link_setup(Arc::new(airlock::gate::SystemClock)).await;
    let c = plain();
    let many: String = (0..40)
        .map(|i| format!("&metadata[k{i}_token]=unseen{i:04}"))
        .collect();
    let many: &'static str = Box::leak(format!("charge=ch_unseen{many}").into_boxed_str());
    type Build = Box<dyn FnOnce(&reqwest::Client) -> reqwest::RequestBuilder>;
    let cases: Vec<(&str, Build)> = vec![
        (
            "JSON with a key given twice",
            Box::new(|c: &reqwest::Client| {
                c.delete("https://api.github.com/repos/octo/unseen")
                    .header("content-type", "application/json")
                    .body(r#"{"a":1,"a":1,"permission":"admin"}"#)
            }),
        ),
        (
            "more secret-named values than a page masks",
            Box::new(move |c: &reqwest::Client| {
                c.post("https://api.stripe.com/v1/refunds")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(many)
            }),
        ),
    ];
    for (what, build) in cases {
        let (id, links) = s.hold_request(build).await;
        let approve = links["bob"].0.clone().expect("bob's approve link");
        let (st, html) = page(&c, http::Method::GET, &approve, None).await;
        assert_eq!(st, 200, "{what}: {html}");
        assert!(html.contains("body not shown"), "{what}: {html}");
        assert!(
            !html.contains("id=\"confirm\"") && !html.contains("Confirm: approve"),
            "{what}: no approve button: {html}"
        );
        assert!(html.contains("id=\"approve-unseen\""), "{what}: {html}");
        assert!(
            html.contains(&format!("href=\"/ui/reviews/{id}\"")),
            "{what}: {html}"
        );
        assert!(html.contains("/reject\""), "{what}: {html}");
        // A POST that approves (as the old page's form did) decides nothing, and the link
        // is not used up.
        let (st, html) = page(&c, http::Method::POST, &approve, None).await;
        assert_eq!(st, 409, "{what}: {html}");
        assert!(html.contains("Approve in the dashboard"), "{what}: {html}");
        let (_, r) = s.review(&id).await;
        assert_eq!(r["state"], "pending", "{what}: {r}");
        assert_eq!(s.up.count(), 0, "{what}");
        // Reject, as its page offers.
        let (st, html) = page(&c, http::Method::POST, &format!("{approve}/reject"), None).await;
        assert_eq!(st, 200, "{what}: {html}");
        assert!(html.contains("rejected"), "{what}: {html}");
        let (_, r) = s.review(&id).await;
        assert_eq!(r["state"], "rejected", "{what}: {r}");
        assert_eq!(r["decision"]["by"], "bob", "{what}: {r}");
    }
    // `/reject` on any approve link rejects, never approves (review of session 18: the flag was
    // read only when the body was withheld, and approved otherwise).
    let (_, links) = s.hold("/repos/octo/shown-but-rejected").await;
    let approve = links["bob"].0.clone().expect("bob's approve link");
    let (st, html) = page(&c, http::Method::POST, &format!("{approve}/reject"), None).await;
    assert_eq!(st, 200, "{html}");
    let (_, list) = s
        .call(
            "dave",
            http::Method::GET,
            "/v1/reviews?state=rejected",
            None,
        )
        .await;
    assert!(
        list["reviews"]
            .as_array()
            .is_some_and(|l| l.iter().any(|r| r["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/shown-but-rejected")))),
        "{list}"
    );
    assert_eq!(s.up.count(), 0);
    // A link whose page shows the body still approves.
    let (_, links) = s.hold("/repos/octo/seen").await;
    let approve = links["bob"].0.clone().expect("bob's approve link");
    let html = bobs_approve_page(&c, &links).await;
    assert!(html.contains("id=\"confirm\""), "{html}");
    let (st, html) = page(&c, http::Method::POST, &approve, None).await;
    assert_eq!(st, 200, "{html}");
    assert_eq!(s.up.count(), 1);
}

/// Review: a JSON body spelled with `\u` escapes of characters that need none reads otherwise
/// than its bytes (`"\u006e\u0065\u0077_owner"` is `new_owner`): a link's page shows the decoded
/// reading and a warning naming each pair so spelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_links_page_shows_a_body_spelled_with_escapes_decoded() {
    let mut s = link_setup(Arc::new(airlock::gate::SystemClock)).await;
    let c = plain();
    let (_, links) = s
        .hold_request(|c: &reqwest::Client| {
            c.delete("https://api.github.com/repos/octo/escaped")
                .header("content-type", "application/json")
                .body(r#"{"note":"tidy up","\u006e\u0065\u0077_owner":"\u0065\u0076\u0069\u006c\u002d\u006f\u0072\u0067"}"#)
        })
        .await;
    let html = bobs_approve_page(&c, &links).await;
    assert!(html.contains("id=\"escapes\""), "{html}");
    assert!(html.contains("new_owner=evil-org"), "{html}");
    assert!(html.contains("id=\"request-decoded\""), "{html}");
    assert!(
        html.contains("&quot;new_owner&quot;:&quot;evil-org&quot;"),
        "{html}"
    );
    let (_, plain_links) = s.hold("/repos/octo/plain").await;
    let html = bobs_approve_page(&c, &plain_links).await;
    assert!(!html.contains("id=\"escapes\""), "{html}");
}

/// Review: a content-encoded body (held as `body_encoded`: its fields cannot be read as sent)
/// could still be approved from a link's page, which showed its bytes, not what the service
/// reads. The link offers Reject and the dashboard instead, as for a body it withholds, and the
/// dashboard warns of the encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_cannot_approve_a_content_encoded_body() {
    let mut s = link_setup(Arc::new(airlock::gate::SystemClock)).await;
    let c = plain();
    let (id, links) = s
        .hold_request(|c: &reqwest::Client| {
            c.delete("https://api.github.com/repos/octo/encoded")
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03".to_vec())
        })
        .await;
    let approve = links["bob"].0.clone().expect("bob's approve link");
    let (st, html) = page(&c, http::Method::GET, &approve, None).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("id=\"encoded\""), "{html}");
    assert!(html.contains("id=\"approve-unseen\""), "{html}");
    assert!(!html.contains("id=\"confirm\""), "{html}");
    let (st, html) = page(&c, http::Method::POST, &approve, None).await;
    assert_eq!(st, 409, "{html}");
    let (_, r) = s.review(&id).await;
    assert_eq!(r["state"], "pending", "{r}");
    assert!(
        r["summary"]["warnings"]
            .as_array()
            .is_some_and(|l| l.iter().any(|w| w
                .as_str()
                .is_some_and(|w| w.starts_with("the body is content-encoded (gzip)")))),
        "{r}"
    );
    let session = s.sign_in("dave").await;
    let base = format!("http://{}", s.a.admin_addr);
    let (st, html) = page(
        &c,
        http::Method::GET,
        &format!("{base}/ui/reviews/{id}"),
        Some(&session),
    )
    .await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("id=\"encoded\""), "{html}");
    assert_eq!(s.up.count(), 0);
}
