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
