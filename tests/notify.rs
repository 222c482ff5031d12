//! Notification tests against local sinks: a hyper webhook server recording bodies and a tiny
//! SMTP server recording messages. Covers per-event JSON with links, Slack text, email, digest
//! batching, rate limiting with hold-over, retries, a dead webhook, link redemption, and signed
//! webhooks (verified here as a receiver would, without Airlock's code) and their config errors.

mod support;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::gate::review::{Review, StoredRequest};
use airlock::notify::{
    Escalation, LinkAction, LinkError, LinkPolicy, LinkSigner, Mode, Notifier, NotifyConfig,
};
use airlock::rules::{Action, Verdict};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BASE: &str = "https://airlock.test";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn review(id: &str) -> Review {
    let verdict = Verdict {
        action: Action::Escalate,
        rule_id: Some("github.toml:1".into()),
        service: Some("github".into()),
        tool: Some("github.repos.delete".into()),
        class: None,
        reason_codes: vec!["rule_match".into()],
        explanation: "test".into(),
        params: [("owner".to_string(), "acme".to_string())].into(),
        expiry: None,
        wait: None,
        approval: None,
        spend_usd: None,
        also_tools: Vec::new(),
    };
    let req = StoredRequest {
        scheme: "https".into(),
        host: "api.github.com".into(),
        port: 443,
        method: "DELETE".into(),
        path_and_query: "/repos/acme/widgets?access_token=sekrit-query".into(),
        headers: vec![("authorization".into(), "Bearer sekrit-header".into())],
        body_b64: "c2Vrcml0LWJvZHk=".into(), // "sekrit-body"
    };
    let now = now_ms();
    let mut r = Review::new(
        id.into(),
        format!("d-{id}"),
        &verdict,
        req,
        now,
        now + 3_600_000,
    );
    r.agent = Some("bot-1".into());
    r
}

// ---- webhook sink ----

struct WebhookSink {
    url: String,
    bodies: mpsc::UnboundedReceiver<String>,
    /// Each request's headers, in the order of `bodies`.
    headers: mpsc::UnboundedReceiver<http::HeaderMap>,
}

/// Answers each request with the next status of `script` (then 200), recording bodies and
/// headers.
async fn webhook_sink(script: Vec<u16>) -> Result<WebhookSink, std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (head_tx, head_rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let head_tx = head_tx.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        let head_tx = head_tx.clone();
                        let script = script.clone();
                        async move {
                            let _ = head_tx.send(req.headers().clone());
                            let body = req.into_body().collect().await?.to_bytes();
                            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                            let status = script
                                .lock()
                                .ok()
                                .and_then(|mut s| s.pop_front())
                                .unwrap_or(200);
                            let mut resp =
                                hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(status).unwrap_or_default();
                            Ok::<_, hyper::Error>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(WebhookSink {
        url: format!("http://{addr}/hook"),
        bodies: rx,
        headers: head_rx,
    })
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, wait: Duration) -> Option<T> {
    tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
}

/// Everything received within `wait`.
async fn drain(rx: &mut mpsc::UnboundedReceiver<String>, wait: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    while let Ok(Some(b)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        out.push(b);
    }
    out
}

fn config(channel: &str) -> Result<NotifyConfig, Box<dyn std::error::Error>> {
    Ok(NotifyConfig::from_toml(&format!(
        "[notify]\n[[notify.channels]]\n{channel}"
    ))?)
}

/// [`config`] with its signing secrets read, as `serve` does at start.
fn config_with_secrets(channel: &str) -> Result<NotifyConfig, Box<dyn std::error::Error>> {
    let mut cfg = config(channel)?;
    cfg.read_secrets()?;
    Ok(cfg)
}

fn assert_no_secrets(body: &str) {
    assert!(!body.contains("sekrit"), "secret leaked: {body}");
    assert!(!body.contains("access_token"), "query leaked: {body}");
}

/// The SHA-256 of the reviewer's token that links are bound to.
const ALICE_TOKEN_SHA256: [u8; 32] = [3; 32];

/// Lets every channel's reviewer take every action (her token digest: [`ALICE_TOKEN_SHA256`]).
struct Everyone;

impl LinkPolicy for Everyone {
    fn may_link(&self, _: &Escalation, _: &str, _: LinkAction) -> Option<[u8; 32]> {
        Some(ALICE_TOKEN_SHA256)
    }
}

/// A notifier whose channels carry links signed by `signer`, under `base`.
fn with_links(cfg: NotifyConfig, signer: &Arc<LinkSigner>, base: &str) -> Arc<Notifier> {
    Notifier::start_with_policy(
        cfg,
        Some(signer.clone()),
        Some(base.into()),
        Some(Arc::new(Everyone)),
    )
}

fn token_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

// ---- SMTP sink ----

async fn smtp_sink() -> Result<(u16, mpsc::UnboundedReceiver<String>), std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink ESMTP\r\n").await?;
                let mut data: Option<String> = None;
                while let Some(line) = lines.next_line().await? {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            let _ = tx.send(std::mem::take(d));
                            data = None;
                            w.write_all(b"250 queued\r\n").await?;
                        } else {
                            d.push_str(line.strip_prefix('.').unwrap_or(&line));
                            d.push('\n');
                        }
                        continue;
                    }
                    let verb = line
                        .split(' ')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            w.write_all(b"221 bye\r\n").await?;
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    w.write_all(reply).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    Ok((port, rx))
}

/// Undoes quoted-printable soft line breaks and `=3D`.
fn unqp(s: &str) -> String {
    s.replace("=\n", "").replace("=3D", "=")
}

// ---- tests ----

#[tokio::test]
async fn per_event_webhook_gets_one_json_per_escalation_with_links() -> TestResult {
    let mut sink = webhook_sink(vec![]).await?;
    let cfg = config(&format!(
        "kind = \"webhook\"\nurl = \"{}\"\nreviewer = \"alice\"",
        sink.url
    ))?;
    let signer = Arc::new(LinkSigner::new([9; 32]));
    let n = with_links(cfg, &signer, &format!("{BASE}/"));
    n.escalated(review("r1").escalation());
    n.escalated(review("r2").escalation());
    let bodies = drain(&mut sink.bodies, Duration::from_secs(2)).await;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    for (b, id) in bodies.iter().zip(["r1", "r2"]) {
        assert_no_secrets(b);
        let v: serde_json::Value = serde_json::from_str(b)?;
        assert_eq!(v["event"], "review.escalated");
        assert_eq!(v["review_id"], id);
        assert_eq!(v["tool"], "github.repos.delete");
        assert_eq!(v["service"], "github");
        assert_eq!(v["agent"], "bot-1");
        assert_eq!(v["method"], "DELETE");
        assert_eq!(v["host"], "api.github.com");
        assert_eq!(v["path"], "/repos/acme/widgets");
        assert_eq!(v["reason_codes"], serde_json::json!(["rule_match"]));
        assert!(v["expires_at"].as_str().is_some_and(|s| s.ends_with('Z')));
        for (field, action) in [
            ("approve_url", LinkAction::Approve),
            ("reject_url", LinkAction::Reject),
        ] {
            let url = v[field].as_str().ok_or("no link")?;
            assert!(url.starts_with(&format!("{BASE}/ui/link/")), "{url}");
            let claims = signer.verify(token_of(url), now_ms())?;
            assert_eq!(
                (
                    claims.review_id.as_str(),
                    claims.action,
                    claims.reviewer.as_str()
                ),
                (id, action, "alice")
            );
            assert!(signer.binds(&claims, &ALICE_TOKEN_SHA256));
        }
    }
    Ok(())
}

#[tokio::test]
async fn no_links_without_reviewer_or_signer() -> TestResult {
    let mut sink = webhook_sink(vec![]).await?;
    let cfg = config(&format!("kind = \"webhook\"\nurl = \"{}\"", sink.url))?;
    let n = with_links(cfg, &Arc::new(LinkSigner::new([9; 32])), BASE);
    n.escalated(review("r1").escalation());
    let b = next(&mut sink.bodies, Duration::from_secs(2))
        .await
        .ok_or("nothing sent")?;
    assert!(
        !b.contains("approve_url") && !b.contains("/ui/link/"),
        "{b}"
    );
    // A reviewer but no policy: a link could not be bound to her token, so none is sent.
    let mut sink = webhook_sink(vec![]).await?;
    let cfg = config(&format!(
        "kind = \"webhook\"\nurl = \"{}\"\nreviewer = \"alice\"",
        sink.url
    ))?;
    let n = Notifier::start(
        cfg,
        Some(Arc::new(LinkSigner::new([9; 32]))),
        Some(BASE.into()),
    );
    n.escalated(review("r1").escalation());
    let b = next(&mut sink.bodies, Duration::from_secs(2))
        .await
        .ok_or("nothing sent")?;
    assert!(!b.contains("/ui/link/"), "{b}");
    Ok(())
}

#[tokio::test]
async fn slack_format_has_text() -> TestResult {
    let mut sink = webhook_sink(vec![]).await?;
    let cfg = config(&format!(
        "kind = \"webhook\"\nurl = \"{}\"\nformat = \"slack\"\nreviewer = \"alice\"",
        sink.url
    ))?;
    let n = with_links(cfg, &Arc::new(LinkSigner::new([9; 32])), BASE);
    n.escalated(review("r1").escalation());
    let b = next(&mut sink.bodies, Duration::from_secs(2))
        .await
        .ok_or("nothing sent")?;
    assert_no_secrets(&b);
    let v: serde_json::Value = serde_json::from_str(&b)?;
    let text = v["text"].as_str().ok_or("no text")?;
    assert!(
        text.contains("github.repos.delete") && text.contains("r1"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Approve: {BASE}/ui/link/")),
        "{text}"
    );
    Ok(())
}

/// Review: a notification named only the first of the rules that held a request (the agent
/// chooses their order); every tool is named, in the subject, the text and the JSON.
#[tokio::test]
async fn every_tied_rules_tool_is_named() -> TestResult {
    let (mut json, mut slack) = (webhook_sink(vec![]).await?, webhook_sink(vec![]).await?);
    let (port, mut mails) = smtp_sink().await?;
    let cfg = config(&format!(
        "kind = \"webhook\"\nurl = \"{}\"\nformat = \"json\"\n\
         [[notify.channels]]\nkind = \"webhook\"\nurl = \"{}\"\nformat = \"slack\"\n\
         [[notify.channels]]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
         starttls = false\nfrom = \"airlock@example.com\"\nto = [\"ops@example.com\"]\n",
        json.url, slack.url
    ))?;
    let n = with_links(cfg, &Arc::new(LinkSigner::new([9; 32])), BASE);
    let mut r = review("r1");
    r.also_tools = vec!["gh.b".into()];
    n.escalated(r.escalation());
    let wait = Duration::from_secs(5);
    let b = next(&mut json.bodies, wait).await.ok_or("no json")?;
    let v: serde_json::Value = serde_json::from_str(&b)?;
    assert_eq!(v["tool"], "github.repos.delete", "{v}");
    assert_eq!(v["also_tools"], serde_json::json!(["gh.b"]), "{v}");
    let b = next(&mut slack.bodies, wait).await.ok_or("no slack")?;
    let v: serde_json::Value = serde_json::from_str(&b)?;
    let text = v["text"].as_str().ok_or("no text")?;
    assert!(text.contains("github.repos.delete + gh.b"), "{text}");
    let m = unqp(&next(&mut mails, wait).await.ok_or("no mail")?);
    assert!(
        m.contains("Subject: Airlock: approval needed for github.repos.delete + gh.b (r1)"),
        "{m}"
    );
    Ok(())
}

#[tokio::test]
async fn email_arrives_with_tool_and_links() -> TestResult {
    let (port, mut mails) = smtp_sink().await?;
    let cfg = config(&format!(
        "kind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nstarttls = false\n\
         from = \"Airlock <airlock@example.com>\"\nto = [\"alice@example.com\", \"ops@example.com\"]\n\
         reviewer = \"alice\""
    ))?;
    let signer = Arc::new(LinkSigner::new([9; 32]));
    let n = with_links(cfg, &signer, BASE);
    n.escalated(review("r1").escalation());
    let raw = next(&mut mails, Duration::from_secs(5))
        .await
        .ok_or("no mail")?;
    assert_eq!(drain(&mut mails, Duration::from_millis(300)).await.len(), 0);
    let m = unqp(&raw);
    assert_no_secrets(&m);
    assert!(
        m.contains("Subject: Airlock: approval needed for github.repos.delete (r1)"),
        "{m}"
    );
    assert!(m.contains("To: alice@example.com, ops@example.com"), "{m}");
    assert!(
        m.contains("Request: DELETE api.github.com/repos/acme/widgets"),
        "{m}"
    );
    let approve = m
        .lines()
        .find_map(|l| l.strip_prefix("Approve: "))
        .ok_or("no approve link")?;
    assert!(approve.starts_with(&format!("{BASE}/ui/link/")));
    assert_eq!(
        signer.verify(token_of(approve), now_ms())?.action,
        LinkAction::Approve
    );
    Ok(())
}

#[tokio::test]
async fn digest_batches_escalations_into_one_message() -> TestResult {
    let mut sink = webhook_sink(vec![]).await?;
    let cfg = config(&format!(
        "kind = \"webhook\"\nurl = \"{}\"\nmode = \"digest\"\ndigest_interval = \"400ms\"",
        sink.url
    ))?;
    assert_eq!(
        cfg.channels[0].mode,
        Mode::Digest(Duration::from_millis(400))
    );
    let n = Notifier::start(cfg, None, None);
    for id in ["r1", "r2", "r3"] {
        n.escalated(review(id).escalation());
    }
    let bodies = drain(&mut sink.bodies, Duration::from_millis(1500)).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let v: serde_json::Value = serde_json::from_str(&bodies[0])?;
    assert_eq!(v["event"], "review.digest");
    assert_eq!(v["count"], 3);
    let ids: Vec<&str> = v["reviews"]
        .as_array()
        .ok_or("no reviews")?
        .iter()
        .filter_map(|r| r["review_id"].as_str())
        .collect();
    assert_eq!(ids, ["r1", "r2", "r3"]);
    Ok(())
}

#[tokio::test]
async fn digest_email_is_one_message() -> TestResult {
    let (port, mut mails) = smtp_sink().await?;
    let cfg = config(&format!(
        "kind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nstarttls = false\n\
         from = \"airlock@example.com\"\nto = [\"alice@example.com\"]\nmode = \"digest\"\n\
         digest_interval = \"300ms\""
    ))?;
    let n = Notifier::start(cfg, None, None);
    for id in ["r1", "r2", "r3"] {
        n.escalated(review(id).escalation());
    }
    let mails = drain(&mut mails, Duration::from_millis(1500)).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = unqp(&mails[0]);
    assert!(
        m.contains("Subject: Airlock: 3 requests need approval"),
        "{m}"
    );
    for id in ["r1", "r2", "r3"] {
        assert!(m.contains(&format!("Review {id} needs approval")), "{m}");
    }
    Ok(())
}

#[tokio::test]
async fn rate_limit_sends_the_allowed_number_and_holds_the_rest() -> TestResult {
    let mut sink = webhook_sink(vec![]).await?;
    let mut cfg = config(&format!(
        "kind = \"webhook\"\nurl = \"{}\"\nmax_per_minute = 2",
        sink.url
    ))?;
    // One "minute" lasts 1.5 s here so the hold-over can be observed.
    let window = Duration::from_millis(1500);
    cfg.channels[0].rate_window = window;
    let n = Notifier::start(cfg, None, None);
    let start = tokio::time::Instant::now();
    for i in 0..5 {
        n.escalated(review(&format!("r{i}")).escalation());
    }
    // Arrival times, not fixed drain windows: a loaded machine may shift a delivery by a few
    // hundred ms, but never lets three land within one window.
    let mut arrived = Vec::new();
    let mut bodies = Vec::new();
    while bodies.len() < 5 {
        let Ok(Some(b)) =
            tokio::time::timeout_at(start + Duration::from_secs(20), sink.bodies.recv()).await
        else {
            break;
        };
        arrived.push(start.elapsed());
        bodies.push(b);
    }
    assert_eq!(
        bodies.len(),
        5,
        "all five delivered (held over, not dropped): {arrived:?}"
    );
    assert!(arrived[1] < window, "the first two go at once: {arrived:?}");
    let slack = Duration::from_millis(300);
    for w in arrived.windows(3) {
        assert!(
            w[2] - w[0] + slack >= window,
            "at most 2 per window: {arrived:?}"
        );
    }
    assert!(
        arrived[2] + slack >= window && arrived[4] + slack >= 2 * window,
        "the rest wait for later windows: {arrived:?}"
    );
    let more = drain(&mut sink.bodies, Duration::from_millis(300)).await;
    assert!(more.is_empty(), "nothing beyond the five: {more:?}");
    let ids: Vec<String> = bodies
        .iter()
        .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .filter_map(|v| v["review_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        ids,
        ["r0", "r1", "r2", "r3", "r4"],
        "none dropped, in order"
    );
    assert_eq!(n.dropped(), 0);
    Ok(())
}

#[tokio::test]
async fn failing_webhook_is_retried_until_it_succeeds() -> TestResult {
    let mut sink = webhook_sink(vec![500, 500]).await?;
    let mut cfg = config(&format!("kind = \"webhook\"\nurl = \"{}\"", sink.url))?;
    assert_eq!(cfg.channels[0].retry.retries, 3);
    assert_eq!(cfg.channels[0].retry.backoff, Duration::from_millis(200));
    cfg.channels[0].retry.backoff = Duration::from_millis(20);
    let n = Notifier::start(cfg, None, None);
    n.escalated(review("r1").escalation());
    let bodies = drain(&mut sink.bodies, Duration::from_millis(1500)).await;
    assert_eq!(
        bodies.len(),
        3,
        "500, 500, then 200 and no more: {bodies:?}"
    );
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "same message each time"
    );
    Ok(())
}

// ---- signed webhooks (Standard Webhooks) ----

/// Writes `text` to `dir/name` with `mode`.
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(path)
}

/// What a receiver does, written here without Airlock's code: recomputes HMAC-SHA256 over
/// `{id}.{timestamp}.{body}` with the secret's key and checks the timestamp is within 5 minutes.
/// Returns the id and the timestamp.
fn verify_as_receiver(
    secret: &str,
    headers: &http::HeaderMap,
    body: &str,
) -> Result<(String, u64), String> {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or(format!("no {name} header"))
    };
    let (id, ts, sig) = (
        get("webhook-id")?,
        get("webhook-timestamp")?,
        get("webhook-signature")?,
    );
    let key = b64
        .decode(secret.trim().trim_start_matches("whsec_"))
        .map_err(|e| e.to_string())?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let want = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    if !sig.split(' ').any(|s| s == want) {
        return Err(format!("signature {sig} does not verify"));
    }
    let ts: u64 = ts.parse().map_err(|_| format!("timestamp {ts:?}"))?;
    if now_ms() / 1000 > ts + 300 || ts > now_ms() / 1000 + 300 {
        return Err(format!("timestamp {ts} is not within 5 minutes"));
    }
    Ok((id, ts))
}

const SIGNATURE_HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

#[tokio::test]
async fn signed_webhook_verifies_and_keeps_its_id_across_a_retry() -> TestResult {
    let dir = tempfile::tempdir()?;
    let secret = airlock::notify::WebhookSecret::generate();
    let file = secret_file(dir.path(), "hook-secret", &format!("{secret}\n"), 0o600)?;
    let mut sink = webhook_sink(vec![500]).await?;
    let mut cfg = config_with_secrets(&format!(
        "kind = \"webhook\"\nurl = \"{}\"\nsigning_secret_file = \"{}\"",
        sink.url,
        support::path_str(&file)
    ))?;
    // The retry comes over a second later, so its own timestamp differs.
    cfg.channels[0].retry.backoff = Duration::from_millis(1100);
    let n = Notifier::start(cfg, None, None);
    n.escalated(review("r1").escalation());
    let wait = Duration::from_secs(5);
    let mut got = Vec::new();
    for i in 0..3 {
        if i == 2 {
            n.escalated(review("r2").escalation());
        }
        let headers = next(&mut sink.headers, wait).await.ok_or("no request")?;
        let body = next(&mut sink.bodies, wait).await.ok_or("no body")?;
        let (id, ts) = verify_as_receiver(&secret, &headers, &body)?;
        assert!(
            !format!("{headers:?}{body}").contains(&secret[6..]),
            "secret sent"
        );
        got.push((id, ts, body));
    }
    let [(id1, ts1, body1), (id2, ts2, body2), (id3, _, body3)] = &got[..] else {
        return Err("three requests expected".into());
    };
    assert!(id1.starts_with("msg_"), "{id1}");
    assert_eq!(id1, id2, "a retry keeps the message's webhook-id");
    assert_eq!(body1, body2);
    assert!(ts2 > ts1, "each attempt is signed with its own timestamp");
    assert_ne!(id1, id3, "the next message has a new webhook-id");
    assert!(body3.contains("\"r2\""), "{body3}");
    Ok(())
}

#[tokio::test]
async fn only_channels_with_a_secret_sign_slack_included() -> TestResult {
    let dir = tempfile::tempdir()?;
    let secret = airlock::notify::WebhookSecret::generate();
    let file = secret_file(dir.path(), "slack-secret", &secret, 0o600)?;
    let (mut plain, mut slack) = (webhook_sink(vec![]).await?, webhook_sink(vec![]).await?);
    let mut cfg = NotifyConfig::from_toml(&format!(
        "[notify]\n[[notify.channels]]\nkind = \"webhook\"\nurl = \"{}\"\n\
         [[notify.channels]]\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\
         signing_secret_file = \"{}\"",
        plain.url,
        slack.url,
        support::path_str(&file)
    ))?;
    cfg.read_secrets()?;
    let n = Notifier::start(cfg, None, None);
    n.escalated(review("r1").escalation());
    let wait = Duration::from_secs(5);
    let headers = next(&mut plain.headers, wait)
        .await
        .ok_or("no plain request")?;
    for h in SIGNATURE_HEADERS {
        assert!(!headers.contains_key(h), "unsigned channel sent {h}");
    }
    let headers = next(&mut slack.headers, wait)
        .await
        .ok_or("no slack request")?;
    let body = next(&mut slack.bodies, wait).await.ok_or("no slack body")?;
    assert!(body.starts_with("{\"text\":"), "{body}");
    verify_as_receiver(&secret, &headers, &body)?;
    Ok(())
}

#[test]
fn signing_secret_errors_name_the_field_never_the_secret() -> TestResult {
    let dir = tempfile::tempdir()?;
    let good = airlock::notify::WebhookSecret::generate();
    let short = "whsec_c2hvcnQtc2hvcnQtc2hvcnQ="; // base64 of "short-short-short" (17 bytes)
    let file = |name: &str, text: &str, mode: u32| -> std::io::Result<String> {
        Ok(support::path_str(&secret_file(
            dir.path(),
            name,
            text,
            mode,
        )?))
    };
    let cases: Vec<(&str, String, &str, &str, &str)> = vec![
        // (what, channel lines, field, reason, secret text that must not be shown)
        (
            "prefix",
            format!(
                "signing_secret_file = \"{}\"",
                file("a", "sk_live_NOTSHOWN123", 0o600)?
            ),
            "signing_secret_file",
            "must start with \"whsec_\"",
            "NOTSHOWN",
        ),
        (
            "base64",
            format!(
                "signing_secret_file = \"{}\"",
                file("b", "whsec_NOT*SHOWN!", 0o600)?
            ),
            "signing_secret_file",
            "not base64",
            "NOT*SHOWN",
        ),
        (
            "short",
            format!("signing_secret_file = \"{}\"", file("c", short, 0o600)?),
            "signing_secret_file",
            "17 bytes; at least 24",
            &short[6..],
        ),
        (
            "readable by others",
            format!("signing_secret_file = \"{}\"", file("d", &good, 0o644)?),
            "signing_secret_file",
            "chmod 600",
            &good[6..],
        ),
        (
            "missing file",
            format!(
                "signing_secret_file = \"{}\"",
                support::path_str(&dir.path().join("none"))
            ),
            "signing_secret_file",
            "No such file",
            &good[6..],
        ),
        (
            "unset variable",
            "signing_secret_env = \"AIRLOCK_TEST_UNSET_WEBHOOK_SECRET\"".into(),
            "signing_secret_env",
            "AIRLOCK_TEST_UNSET_WEBHOOK_SECRET is not set",
            &good[6..],
        ),
        (
            "empty variable name",
            "signing_secret_env = \"\"".into(),
            "signing_secret_env",
            "must not be empty",
            &good[6..],
        ),
        (
            "both",
            format!(
                "signing_secret_file = \"{}\"\nsigning_secret_env = \"X\"",
                file("e", &good, 0o600)?
            ),
            "signing_secret_env",
            "not both",
            &good[6..],
        ),
    ];
    for (what, lines, field, reason, hidden) in &cases {
        let r = config_with_secrets(&format!(
            "kind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n{lines}"
        ));
        let err = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains(&format!("notify.channels[0].{field}")),
            "{what}: {err}"
        );
        assert!(err.contains(reason), "{what}: {err}");
        assert!(!err.contains(hidden), "{what}: the secret is shown: {err}");
    }
    // Email channels are not signed.
    let err = config(&format!(
        "kind = \"email\"\nsmtp_host = \"m\"\nfrom = \"a@b\"\nto = [\"c@d\"]\n\
         signing_secret_file = \"{}\"",
        file("f", &good, 0o600)?
    ))
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("signing_secret_file: does not apply"), "{err}");
    // In the main config file a relative path resolves against its directory.
    secret_file(dir.path(), "hook-secret", &good, 0o600)?;
    let toml = dir.path().join("airlock.toml");
    std::fs::write(
        &toml,
        "[[notify.channels]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\
         signing_secret_file = \"hook-secret\"\n",
    )?;
    // Only `serve` and `config check` read the secret: other commands load without it.
    std::fs::remove_file(dir.path().join("hook-secret"))?;
    let cfg = airlock::config::Config::load(&toml, Default::default())?;
    let airlock::notify::ChannelKind::Webhook { signing, .. } = &cfg.notify.channels[0].kind else {
        return Err("not a webhook".into());
    };
    assert_eq!(
        signing.as_ref().map(|s| &s.source),
        Some(&airlock::config::SecretSource::File(
            dir.path().join("hook-secret")
        ))
    );
    secret_file(dir.path(), "hook-secret", &good, 0o600)?;
    let mut notify = cfg.notify.clone();
    notify.read_secrets()?;
    let airlock::notify::ChannelKind::Webhook { signing, .. } = &notify.channels[0].kind else {
        return Err("not a webhook".into());
    };
    assert!(signing.as_ref().is_some_and(|s| s.secret.is_some()));
    assert!(
        !format!("{notify:?}").contains(&good[6..]),
        "Debug shows the secret"
    );
    Ok(())
}

#[tokio::test]
async fn dead_webhook_never_blocks_escalated() -> TestResult {
    let port = support::spare_port();
    let mut cfg = config(&format!(
        "kind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nmode = \"per_event\""
    ))?;
    cfg.queue_size = 64;
    let n = Notifier::start(cfg, None, None);
    let r = review("r1");
    let started = Instant::now();
    for _ in 0..1000 {
        n.escalated(r.escalation());
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "escalated() blocked: {took:?}"
    );
    assert!(n.dropped() > 0, "a full queue drops (and warns)");
    Ok(())
}

#[test]
fn escalated_without_runtime_or_channels_is_a_no_op() -> TestResult {
    let cfg = config("kind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"")?;
    let n = Notifier::start(cfg, None, None); // no Tokio runtime here
    n.escalated(review("r1").escalation());
    Notifier::start(NotifyConfig::default(), None, None).escalated(review("r1").escalation());
    Ok(())
}

#[tokio::test]
async fn link_tokens_verify_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = airlock::store::open(airlock::store::Backend::Redb, dir.path())?;
    let key = airlock::notify::load_or_create_key(&dir.path().join("link-key"))?;
    let s = LinkSigner::new(key);
    let t = s.mint(
        "r1",
        LinkAction::Approve,
        "alice",
        &ALICE_TOKEN_SHA256,
        Duration::from_secs(60),
    );
    let claims = s.verify(&t, now_ms())?;
    assert_eq!(claims.reviewer, "alice");
    let (p, sig) = t.split_once('.').ok_or("no dot")?;
    let mut tampered = sig.to_string();
    tampered.replace_range(..1, if sig.starts_with('A') { "B" } else { "A" });
    assert!(matches!(
        s.verify(&format!("{p}.{tampered}"), now_ms()),
        Err(LinkError::BadSignature)
    ));
    assert!(matches!(
        s.verify(&t, now_ms() + 61_000),
        Err(LinkError::Expired)
    ));
    s.consume(store.as_ref(), &claims, &t)?;
    assert!(matches!(
        s.consume(store.as_ref(), &claims, &t),
        Err(LinkError::AlreadyUsed)
    ));
    Ok(())
}

#[test]
fn config_is_checked() {
    let ok = NotifyConfig::from_toml(
        "[notify]\nbase_url = \"https://a.example/\"\n[[notify.channels]]\nkind = \"webhook\"\nurl = \"https://hooks.example/x\"\nmode = \"off\"",
    );
    assert!(
        ok.as_ref()
            .is_ok_and(|c| c.base_url.as_deref() == Some("https://a.example")),
        "{ok:?}"
    );
    for bad in [
        "kind = \"pager\"",
        "kind = \"webhook\"",
        "kind = \"webhook\"\nurl = \"ftp://x/\"",
        "kind = \"webhook\"\nurl = \"http://x/\"\nformat = \"xml\"",
        "kind = \"webhook\"\nurl = \"http://x/\"\nmode = \"sometimes\"",
        "kind = \"webhook\"\nurl = \"http://x/\"\nmax_per_minute = 0",
        "kind = \"webhook\"\nurl = \"http://x/\"\nsmtp_host = \"m\"",
        "kind = \"webhook\"\nurl = \"http://x/\"\ndigest_interval = \"1m\"",
        "kind = \"webhook\"\nurl = \"http://x/\"\nbogus = 1",
        "kind = \"email\"\nsmtp_host = \"m\"\nfrom = \"a@b\"",
        "kind = \"email\"\nsmtp_host = \"m\"\nfrom = \"not an address\"\nto = [\"a@b\"]",
    ] {
        let r = NotifyConfig::from_toml(&format!("[notify]\n[[notify.channels]]\n{bad}"));
        assert!(r.is_err(), "accepted: {bad}");
    }
}

#[test]
fn main_config_carries_notify_and_checks_reviewer_names() {
    use airlock::config::Config;
    assert!(Config::from_toml("t", "").is_ok_and(|c| c.notify.channels.is_empty()));
    let reviewer = format!(
        "[[reviewers]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n",
        "ab".repeat(32)
    );
    let channel = "[[notify.channels]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\n";
    let ok = Config::from_toml(
        "t",
        &format!("{reviewer}[notify]\nbase_url = \"https://airlock.example\"\n{channel}reviewer = \"alice\"\n"),
    );
    let ok = ok.map_err(|e| e.to_string());
    assert!(
        ok.as_ref().is_ok_and(|c| c.notify.channels.len() == 1
            && c.notify.base_url.as_deref() == Some("https://airlock.example")
            && c.link_key_file().ends_with("link-key")),
        "{ok:?}"
    );
    let err = Config::from_toml("t", &format!("{reviewer}{channel}reviewer = \"mallory\"\n"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("notify.channels[0].reviewer"), "{err}");
    let err = Config::from_toml("t", &format!("{channel}kind2 = 1\n"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("kind2"), "{err}");
}

#[test]
fn example_config_notify_block_parses() -> TestResult {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/airlock.example.toml"))?;
    let block: String = text
        .lines()
        .skip_while(|l| !l.starts_with("# [notify]"))
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
        .collect();
    let cfg = NotifyConfig::from_toml(&block)?;
    assert_eq!(cfg.channels.len(), 2);
    assert_eq!(cfg.channels[1].mode, Mode::Digest(Duration::from_secs(300)));
    Ok(())
}

/// The text of a mail as its reader sees it: the body after the blank line, decoded from
/// quoted-printable or base64 as its Content-Transfer-Encoding says.
fn mail_text(raw: &str) -> String {
    use base64::Engine;
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
    let encoding = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-transfer-encoding")
                .then(|| v.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    let bytes = match encoding.as_str() {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(body.split_whitespace().collect::<String>())
            .unwrap_or_default(),
        "quoted-printable" => {
            let b = body.replace("=\n", "");
            let b = b.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                    (b'=', Some(byte)) => {
                        out.push(byte);
                        i += 3;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            out
        }
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What an agent puts in a held request's path cannot forge a line of a Slack message or an
/// email: a line or paragraph separator, a bidi override (raw or percent-encoded) and a long
/// tail reach the review, and the text shows them percent-encoded, the request line clipped
/// (a Slack code span), with exactly one `Approve:` line, Airlock's, and a footer saying where
/// Airlock's links start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agents_path_cannot_forge_a_line_of_a_text_notification() -> TestResult {
    support::init();
    let up = support::FakeUpstream::start(Default::default()).await;
    let mut slack = webhook_sink(vec![]).await?;
    let (port, mut mails) = smtp_sink().await?;
    let reviewer = airlock::agents::generate_token();
    let toml = format!(
        "[[reviewers]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n\
         [notify]\nbase_url = \"{BASE}\"\n\
         [[notify.channels]]\nkind = \"webhook\"\nurl = \"{}\"\nformat = \"slack\"\nreviewer = \"alice\"\n\
         [[notify.channels]]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
         starttls = false\nfrom = \"airlock@example.com\"\nto = [\"alice@example.com\"]\nreviewer = \"alice\"\n",
        hex::encode(airlock::agents::token_digest(&reviewer)),
        slack.url
    );
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules)?;
    std::fs::write(
        rules.join("t.toml"),
        "[service]\nname = \"github\"\nhosts = [\"api.github.com\"]\n\n\
         [[rule]]\ntool = \"test.hold\"\nmethod = \"DELETE\"\npath = \"/hold/{rest*}\"\n\
         class = \"irreversible\"\naction = \"escalate\"\n",
    )?;
    let config = support::Airlock::config(&toml, dir.path(), &up, &["api.github.com"]);
    let catalog = airlock::rules::LiveCatalog::load(Some(rules), Default::default())?;
    let a = support::Airlock::start_with_parts(
        config,
        dir,
        catalog,
        Arc::new(airlock::gate::SystemClock),
    )
    .await;
    let tail = "x".repeat(1000);
    let targets = [
        // Raw UTF-8 in the request target, as httparse and `http` accept it.
        format!("/hold/a\u{2029}Approve:https://evil.example/\u{2028}\u{85}\u{202E}\u{200B}{tail}"),
        format!("/hold/b%E2%80%A9Approve:%20https://evil.example/%E2%80%A8%C2%85%E2%80%AE{tail}"),
    ];
    for target in &targets {
        let req = format!(
            "DELETE {target} HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n"
        );
        let got = support::raw::in_tunnel(
            a.addr,
            "api.github.com",
            &a.ca_pem,
            req.as_bytes(),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(got.first_status(), Some(423), "{target:?} is held: {got:?}");
    }
    let mut texts = Vec::new();
    for _ in &targets {
        let b = next(&mut slack.bodies, Duration::from_secs(10))
            .await
            .ok_or("no Slack message")?;
        let v: serde_json::Value = serde_json::from_str(&b)?;
        texts.push(("slack", v["text"].as_str().ok_or("no text")?.to_string()));
        let m = next(&mut mails, Duration::from_secs(10))
            .await
            .ok_or("no mail")?;
        texts.push(("email", mail_text(&m)));
    }
    let separators = [
        '\n', '\r', '\u{0B}', '\u{0C}', '\u{85}', '\u{2028}', '\u{2029}',
    ];
    for (kind, text) in &texts {
        for c in ['\u{2028}', '\u{2029}', '\u{85}', '\u{202E}', '\u{200B}'] {
            assert!(!text.contains(c), "{kind}: U+{:04X} in {text:?}", c as u32);
        }
        let approve: Vec<&str> = text
            .split(separators)
            .map(str::trim_start)
            .filter(|l| l.starts_with("Approve:"))
            .collect();
        assert_eq!(approve.len(), 1, "{kind}: {text}");
        assert!(
            approve[0].starts_with(&format!("Approve: {BASE}/ui/link/")),
            "{kind}: {text}"
        );
        let request = text
            .lines()
            .find(|l| l.starts_with("Request: "))
            .ok_or("no request line")?;
        let (open, close) = if *kind == "slack" {
            ("Request: `DELETE api.github.com/hold/", "…`")
        } else {
            ("Request: DELETE api.github.com/hold/", "…")
        };
        assert!(
            request.starts_with(open) && request.ends_with(close),
            "{kind}: {request}"
        );
        assert!(request.chars().count() < 260, "{kind}: clipped: {request}");
        assert!(request.contains("%E2%80%A9Approve:"), "{kind}: {request}");
        assert!(
            text.contains(&format!("links always start with {BASE}/ui/link/")),
            "{kind}: {text}"
        );
    }
    Ok(())
}

/// Review of session 21: `[notify] base_url = "http://airlock.example.com"` and a channel `url =
/// "http://hooks.example.com/x?token=…"` with `reviewer = "alice"` were accepted without a word,
/// and every link they carried lets whoever reads it on the way decide as alice. Now each is
/// refused, naming its key, unless `notify.allow_plaintext_links = true`; loopback stays allowed.
#[test]
fn one_click_links_in_clear_text_are_refused() {
    use airlock::config::Config;
    let reviewer = format!(
        "[[reviewers]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n",
        "ab".repeat(32)
    );
    let doc = |base: &str, url: &str, extra: &str| {
        format!(
            "{reviewer}[notify]\nbase_url = \"{base}\"\n{extra}\
             [[notify.channels]]\nkind = \"webhook\"\nurl = \"{url}\"\nreviewer = \"alice\"\n"
        )
    };
    let hook = "https://hooks.example.com/x?token=abc";
    for (base, url, key) in [
        ("http://airlock.example.com", hook, "notify.base_url"),
        (
            "https://airlock.example.com",
            "http://hooks.example.com/x?token=abc",
            "notify.channels[0].url",
        ),
    ] {
        let err = Config::from_toml("airlock.toml", &doc(base, url, ""))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("accepted {base} with {url}"));
        assert!(
            err.contains("airlock.toml") && err.contains(key) && err.contains("alice"),
            "{err}"
        );
        assert!(
            !err.contains("token=abc"),
            "the URL's secret in an error: {err}"
        );
        let allowed = doc(base, url, "allow_plaintext_links = true\n");
        assert!(
            Config::from_toml("airlock.toml", &allowed).is_ok(),
            "{allowed}"
        );
    }
    let mail = format!(
        "{reviewer}[notify]\nbase_url = \"https://airlock.example.com\"\n\
         [[notify.channels]]\nkind = \"email\"\nsmtp_host = \"mail.example.com\"\n\
         starttls = false\nfrom = \"a@example.com\"\nto = [\"alice@example.com\"]\nreviewer = \"alice\"\n"
    );
    let err = Config::from_toml("airlock.toml", &mail)
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("notify.channels[0].starttls")),
        "{err:?}"
    );
    // On this host, and without a reviewer, nothing changes.
    for ok in [
        doc("http://127.0.0.1:8081", "http://localhost:9/x", ""),
        doc("https://airlock.example.com", hook, ""),
        "[notify]\nbase_url = \"http://airlock.example.com\"\n[[notify.channels]]\n\
         kind = \"webhook\"\nurl = \"http://hooks.example.com/x\"\n"
            .to_string(),
    ] {
        let r = Config::from_toml("airlock.toml", &ok);
        assert!(r.is_ok(), "{ok}: {:?}", r.err().map(|e| e.to_string()));
    }
}
