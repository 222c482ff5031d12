//! End-to-end tests of the hold queue: escalated requests are stored and answered at once,
//! nothing reaches the upstream until a human approves, approval executes exactly once,
//! rejection and expiry never execute, state survives restarts.

mod support;

use std::sync::Arc;
use std::time::Duration;

use airlock::gate::{ManualClock, ReviewState};
use airlock::rules::Classifier;
use airlock::rules::{Action, RequestHead, Verdict};
use support::{curl, curl_args, Airlock, FakeUpstream};

const HOSTS: &[&str] = &["api.github.com", "api.stripe.com"];

/// A tiny stand-in catalog: DELETE and Stripe refunds escalate, /blocked is blocked, a Stripe
/// charge is soft-gated and spends $40.
struct TestRules;

impl Classifier for TestRules {
    fn inspects(&self, host: &str) -> bool {
        HOSTS.contains(&host)
    }
    fn needs_body(&self, _: &RequestHead<'_>) -> bool {
        false
    }
    fn evaluate(&self, head: &RequestHead<'_>, _: Option<&[u8]>) -> Verdict {
        let (action, tool, service) = if head.path_and_query.starts_with("/blocked") {
            (Action::Block, "test.block", "github")
        } else if head.method == "DELETE" {
            (Action::Escalate, "github.repos.delete", "github")
        } else if head.method == "POST" && head.path_and_query.starts_with("/v1/refunds") {
            (Action::Escalate, "stripe.refunds.create", "stripe")
        } else if head.method == "POST" && head.path_and_query.starts_with("/v1/charges") {
            (Action::Notify, "stripe.charges.create", "stripe")
        } else {
            (Action::Allow, "read", "github")
        };
        Verdict {
            action,
            rule_id: Some("test:1".into()),
            service: Some(service.into()),
            tool: Some(tool.into()),
            class: None,
            reason_codes: vec!["rule_match".into()],
            explanation: format!("test rule {tool}"),
            params: Default::default(),
            expiry: None,
            wait: None,
            approval: None,
            spend_usd: (tool == "stripe.charges.create").then_some(40.0),
            also_tools: Vec::new(),
        }
    }
}

async fn setup(toml: &str) -> (FakeUpstream, Airlock) {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let a = Airlock::start_classified(toml, &up, HOSTS, Arc::new(TestRules)).await;
    (up, a)
}

/// The review id a held answer names.
fn review_id(headers: &reqwest::header::HeaderMap) -> String {
    headers["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string()
}

/// Like `setup`, on a store whose writes a test can make fail.
async fn setup_on_faulty_store(toml: &str) -> (FakeUpstream, Airlock, Arc<support::FaultyStore>) {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = Airlock::config(toml, dir.path(), &up, HOSTS);
    let store = support::FaultyStore::open(&config.store.path);
    let a = Airlock::start_on_store(config, dir, Arc::new(TestRules), store.clone()).await;
    (up, a, store)
}

/// Approves review `id` from a task of its own (with the admin token) and returns once the
/// upstream has the request (one more than it had); the task answers when the send ends.
async fn approve_until_sent(
    a: &Airlock,
    up: &FakeUpstream,
    id: &str,
) -> tokio::task::JoinHandle<Result<(u16, serde_json::Value), airlock::admin::client::ClientError>>
{
    let (addr, token) = (a.admin_addr, a.admin_token.clone());
    let path = format!("/v1/reviews/{id}/approve");
    let before = up.count();
    let approving = tokio::spawn(async move {
        airlock::admin::client::call(addr, &token, http::Method::POST, &path, None).await
    });
    while up.count() == before {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    approving
}

/// Writes `bytes` as review `id`'s record, straight to the store under Airlock (a damaged
/// record, or another instance's write).
fn overwrite_review(store: &support::FaultyStore, id: &str, bytes: &[u8]) {
    let mut b = airlock::store::Batch::default();
    b.put(airlock::store::Tree::Reviews, id.as_bytes(), bytes);
    assert!(airlock::store::Store::apply(store.inner.as_ref(), b).expect("apply"));
}

/// When the tests on a manual clock start (seconds since the epoch).
const CLOCK_START_S: u64 = 1_700_000_000;

/// Like `setup`, on a manual clock set to `CLOCK_START_S`, with the store in a directory the
/// returned config names (to start Airlock again on it).
async fn setup_on_clock(
    toml: &str,
) -> (
    FakeUpstream,
    airlock::config::Config,
    Arc<ManualClock>,
    Airlock,
) {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = Airlock::config(toml, dir.path(), &up, HOSTS);
    let clock = Arc::new(ManualClock::default());
    clock.advance(Duration::from_secs(CLOCK_START_S));
    let a =
        Airlock::start_with_parts(config.clone(), dir, Arc::new(TestRules), clock.clone()).await;
    (up, config, clock, a)
}

async fn hold_delete(
    a: &Airlock,
    path: &str,
) -> (
    reqwest::StatusCode,
    reqwest::header::HeaderMap,
    serde_json::Value,
) {
    let resp = a
        .client()
        .delete(format!("https://api.github.com{path}"))
        .header("authorization", "Bearer agent-held-secret-123")
        .send()
        .await
        .expect("send");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.expect("json"))
}

/// Holds a DELETE of `path` with JSON `body`; the review's id.
async fn hold_json_delete(a: &Airlock, path: &str, body: &str) -> String {
    let resp = a
        .client()
        .delete(format!("https://api.github.com{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 423);
    review_id(resp.headers())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_delete_runs_once_on_approval() {
    let (up, a) = setup("").await;
    let (status, headers, body) = hold_delete(&a, "/repos/acme/widgets").await;
    assert_eq!(status, 423, "escalation is an immediate non-2xx answer");
    assert_eq!(headers["airlock-outcome"], "ESCALATE");
    let id = body["reviewId"].as_str().expect("reviewId").to_string();
    assert_eq!(headers["airlock-review-id"], id.as_str());
    assert_eq!(body["outcome"], "ESCALATE");
    assert_eq!(body["tool"], "github.repos.delete");
    assert!(body["decisionId"]
        .as_str()
        .is_some_and(|d| d.starts_with("dec_")));
    assert!(body["expiresAt"].as_str().is_some());
    assert_eq!(
        up.count(),
        0,
        "nothing reaches the upstream before approval"
    );

    let (code, list) = a.admin("GET", "/v1/reviews?state=pending", None).await;
    assert_eq!(code, 200);
    assert_eq!(list["reviews"].as_array().map(|v| v.len()), Some(1));

    let (code, r) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/approve"),
            Some(serde_json::json!({"reviewer": "alice", "comment": "ok"})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed");
    assert_eq!(r["result"]["status"], 200);
    assert_eq!(r["decision"]["by"], "alice");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "DELETE");
    assert_eq!(seen[0].path_and_query, "/repos/acme/widgets");
    assert!(
        seen[0].header("authorization").is_none(),
        "the agent's credential is never stored or replayed"
    );

    let (code, again) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 409, "{again}");
    assert_eq!(again["error"], "already_decided");
    let (code, _) = a
        .admin("POST", &format!("/v1/reviews/{id}/reject"), None)
        .await;
    assert_eq!(code, 409);
    assert_eq!(up.count(), 1, "exactly once");

    // The agent reads its outcome through the proxy, answered by Airlock itself.
    let agent_view: serde_json::Value = a
        .client()
        .get(format!("http://airlock.local/v1/reviews/{id}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(agent_view["state"], "executed");
    assert_eq!(agent_view["result"]["status"], 200);
}

/// A configured secret that `max_result_bytes` would cut in two is masked whole in the stored
/// answer: it is read a secret's length past the cap, scrubbed, then cut (it was cut first,
/// and the secret's head stored in clear).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_cut_by_the_result_cap_is_masked_whole() {
    const REAL: &str = "ghp_CAPtestCredential0123456789abcdefghij";
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("gh");
    support::write_secret(&secret, REAL);
    // `{"you_sent":"Bearer ` is 20 bytes: the cap falls inside the secret.
    let toml = format!(
        "[gate]\nmax_result_bytes = 50\n[credentials.github]\nfile = {:?}\n",
        support::path_str(&secret)
    );
    let (up, a) = setup(&toml).await;
    let (status, headers, _) = hold_delete(&a, "/echo").await;
    assert_eq!(status, 423);
    let id = review_id(&headers);
    let (code, body) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(up.count(), 1);
    let stored = body["result"]["body"].as_str().unwrap_or_default();
    assert_eq!(stored.len(), 50, "cut at the cap: {stored}");
    assert!(
        !stored.contains("ghp_CAP"),
        "part of the secret stored: {stored}"
    );
    assert!(stored.ends_with(&"*".repeat(30)), "{stored}");
}

/// One unreadable review record no longer fails every listing it falls in, nor recovery at
/// start (which lists the approved and executing reviews): it is left out and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_unreadable_review_does_not_fail_listings_or_recovery() {
    let (up, a, store) = setup_on_faulty_store("").await;
    let bad = review_id(&hold_delete(&a, "/repos/o/bad").await.1);
    let good = review_id(&hold_delete(&a, "/repos/o/good").await.1);
    overwrite_review(&store, &bad, b"{\"not\":\"a review\"}");
    let (code, list) = a.admin("GET", "/v1/reviews?state=pending", None).await;
    assert_eq!(code, 200, "{list}");
    let ids: Vec<&str> = list["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .filter_map(|r| r["reviewId"].as_str())
        .collect();
    assert_eq!(ids, [good.as_str()], "{list}");
    a.gate.recover().await.expect("recover");
    assert_eq!(up.count(), 0);
}

/// A plain-http request held before its host had a credential, approved after a restart that
/// configured one, is not sent: the credential would travel in clear text. The review fails
/// (`credential_over_http`) and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approved_plain_http_request_is_never_sent_with_the_credential() {
    support::init();
    let up = FakeUpstream::start(support::UpstreamOptions {
        plain: true,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let start = |toml: String, dir: tempfile::TempDir| {
        let config = Airlock::config(&toml, dir.path(), &up, HOSTS);
        Airlock::start_with_parts(
            config,
            dir,
            Arc::new(TestRules),
            Arc::new(airlock::gate::SystemClock),
        )
    };
    let a = start(String::new(), dir).await;
    let r = a
        .client()
        .delete("http://api.github.com/repos/acme/plain")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 423);
    let id = review_id(r.headers());
    let dir = a.stop().await;
    let secret = dir.path().join("gh");
    support::write_secret(&secret, "ghp_NEVERinCLEARtext0123456789");
    let toml = format!(
        "[credentials.github]\nfile = {:?}\n",
        support::path_str(&secret)
    );
    let a = start(toml, dir).await;
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "failed", "{r}");
    let why = r["result"]["error"].as_str().unwrap_or_default();
    assert!(why.contains("credential_over_http"), "{r}");
    assert_eq!(up.count(), 0, "nothing reached the upstream");
}

/// One unreadable review record past its deadline no longer stops the sweep for every other
/// review (it heads the deadline index of each sweep, and the whole sweep failed on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_unreadable_overdue_review_does_not_stop_expiry() {
    let (up, a, store) =
        setup_on_faulty_store("[gate]\nreview_expiry = \"1s\"\nsweep_interval = \"1h\"\n").await;
    let bad = review_id(&hold_delete(&a, "/repos/o/a").await.1);
    let good = review_id(&hold_delete(&a, "/repos/o/b").await.1);
    overwrite_review(&store, &bad, b"{\"not\":\"a review\"}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(a.gate.sweep().await.expect("sweep"), 1);
    let r = a.gate.get(&good).await.expect("get");
    assert_eq!(r.state, ReviewState::Expired);
    assert_eq!(up.count(), 0);
}

/// An agent waiting (`Airlock-Wait`) whose review is approved and still being sent when its
/// wait ends gets the upstream's answer once the send ends, not 423 "it has not been sent"
/// while the upstream already has the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_that_ends_during_the_send_gets_the_outcome() {
    let (up, a) = setup("[gate]\nexecution_timeout = \"20s\"\n").await;
    let client = a.client();
    let agent = tokio::spawn(async move {
        let r = client
            .delete("https://api.github.com/repos/octo/stall")
            .header("airlock-wait", "1")
            .send()
            .await
            .expect("send");
        (r.status(), r.text().await.expect("text"))
    });
    let id = loop {
        let pending = support::all_reviews(&a.gate, Some(ReviewState::Pending)).await;
        if let Some(r) = pending.first() {
            break r.id.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let approving = approve_until_sent(&a, &up, &id).await;
    // The wait (1 s) ends while the upstream holds the request.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !agent.is_finished(),
        "answered while the request was being sent"
    );
    up.state.unstall.notify_waiters();
    let (status, text) = agent.await.expect("agent");
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("not been sent"), "{text}");
    let _ = approving.await;
    assert_eq!(up.count(), 1);
}

/// A request that was sent and answered, whose outcome's audit entry then cannot be written,
/// is reported as sent with the upstream's status, not as "the gated action did not proceed".
/// The outcome and its entry are one commit (review of session 21: the outcome used to be
/// stored without its entry), so neither is stored: the review reads `outcome_unknown` once
/// the claim's lease lapses, with its entry, and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sent_request_whose_outcome_audit_failed_is_reported_as_sent() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, a, store) = setup_on_faulty_store(
        "[gate]\nexecution_timeout = \"2s\"\nexecution_lease = \"4s\"\nsweep_interval = \"1s\"\n",
    )
    .await;
    let (status, headers, _) = hold_delete(&a, "/repos/octo/stall").await;
    assert_eq!(status, 423);
    let id = review_id(&headers);
    let approving = approve_until_sent(&a, &up, &id).await;
    // Sent; the audit log fails before the answer comes back.
    store.fail_audit.store(true, SeqCst);
    up.state.unstall.notify_waiters();
    let (code, body) = approving.await.expect("join").expect("call");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"], "outcome_not_recorded", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("sent; the upstream answered 200")),
        "{body}"
    );
    assert!(!body.to_string().contains("did not proceed"), "{body}");
    assert_eq!(
        a.gate.get(&id).await.expect("get").state.as_str(),
        "executing"
    );
    store.fail_audit.store(false, SeqCst);
    support::eventually("the lapsed claim to be given up", support::WAIT, || async {
        let state = a.gate.get(&id).await.expect("get").state;
        (state.as_str() == "outcome_unknown")
            .then_some(())
            .ok_or(state.as_str())
    })
    .await;
    let trail: Vec<String> = a
        .gate
        .audit()
        .entries_for_review(&id, 100)
        .expect("entries")
        .iter()
        .filter_map(|e| e["to"].as_str().map(String::from))
        .collect();
    assert_eq!(trail, ["approved", "executing", "outcome_unknown"]);
    let (code, report) = a.admin("GET", "/v1/audit/verify", None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(up.count(), 1);
}

/// A claim that took so long to record that less than `execution_timeout` of its lease is
/// left is not sent: another instance could give it up as lapsed mid-send, and a retry would
/// then send it twice. It ends `failed` (not sent), and a retry sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_recorded_too_late_for_its_lease_is_not_sent() {
    let (up, a, store) =
        setup_on_faulty_store("[gate]\nexecution_timeout = \"1s\"\nexecution_lease = \"2s\"\n")
            .await;
    let (status, headers, _) = hold_delete(&a, "/repos/octo/slow-claim").await;
    assert_eq!(status, 423);
    let id = review_id(&headers);
    store
        .delay_claim_ms
        .store(1_500, std::sync::atomic::Ordering::SeqCst);
    let (code, body) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "failed", "{body}");
    assert!(
        body["result"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not sent") && e.contains("execution_lease")),
        "{body}"
    );
    assert_eq!(up.count(), 0, "nothing was sent");
    let (code, body) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "executed", "{body}");
    assert_eq!(up.count(), 1);
}

/// A send that ends after its claim was taken over (on a shared store: the lease lapsed, the
/// review was given up and claimed anew by another instance's retry) does not record its
/// outcome over the new claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_that_lost_its_claim_does_not_overwrite_the_new_one() {
    let (up, a, store) = setup_on_faulty_store("").await;
    let (_, headers, _) = hold_delete(&a, "/repos/octo/stall").await;
    let id = review_id(&headers);
    let approving = approve_until_sent(&a, &up, &id).await;
    // Another instance's claim replaces this one's while the upstream holds the request.
    let mut taken = a.gate.get(&id).await.expect("get");
    assert_eq!(taken.state, ReviewState::Executing);
    if let Some(e) = taken.execution.as_mut() {
        e.instance = Some("other-host:1".into());
    }
    overwrite_review(&store, &id, &taken.encode().expect("encode"));
    up.state.unstall.notify_waiters();
    let (code, body) = approving.await.expect("join").expect("call");
    assert_eq!(code, 200, "{body}");
    let now = a.gate.get(&id).await.expect("get");
    assert_eq!(
        now.state,
        ReviewState::Executing,
        "the new claim was overwritten"
    );
    assert_eq!(
        now.execution.and_then(|e| e.instance).as_deref(),
        Some("other-host:1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejection_never_executes_and_agent_sees_why() {
    let (up, a) = setup("").await;
    let (_, _, body) = hold_delete(&a, "/repos/acme/x").await;
    let id = body["reviewId"].as_str().expect("id").to_string();
    let (code, r) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/reject"),
            Some(serde_json::json!({"comment": "not today"})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(r["state"], "rejected");
    let (code, _) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 409, "a rejected review cannot be approved");
    // curl as the agent, through the proxy, with wait.
    let (rc, out, err) = curl(&curl_args(
        &a,
        &[&format!("http://airlock.local/v1/reviews/{id}?wait=1")],
    ))
    .await;
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["state"], "rejected");
    // The agent sees the outcome, never the reviewer's comment.
    assert!(v.get("decision").is_none(), "{v}");
    assert_eq!(v["outcome"], "REJECTED");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_is_rejection() {
    let (up, _, clock, a) = setup_on_clock("[gate]\nsweep_interval = \"1h\"\n").await;
    let (_, _, b1) = hold_delete(&a, "/repos/acme/one").await;
    let (_, _, b2) = hold_delete(&a, "/repos/acme/two").await;
    let (id1, id2) = (
        b1["reviewId"].as_str().expect("id").to_string(),
        b2["reviewId"].as_str().expect("id").to_string(),
    );
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    // Deciding after the deadline expires it instead.
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id1}/approve"), None)
        .await;
    assert_eq!(code, 409, "{r}");
    assert_eq!(r["error"], "expired");
    // The sweeper expires the other.
    assert_eq!(a.gate.sweep().await.expect("sweep"), 1);
    assert_eq!(
        a.gate.get(&id2).await.expect("get").state,
        ReviewState::Expired
    );
    let (code, _) = a
        .admin("POST", &format!("/v1/reviews/{id2}/approve"), None)
        .await;
    assert_eq!(code, 409);
    assert_eq!(up.count(), 0, "expired reviews never run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reviews_survive_restart_and_executing_becomes_outcome_unknown() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = Airlock::config("", dir.path(), &up, HOSTS);
    let a = Airlock::start_with_parts(
        config.clone(),
        dir,
        Arc::new(TestRules),
        Arc::new(airlock::gate::SystemClock),
    )
    .await;
    let (_, _, b1) = hold_delete(&a, "/repos/acme/keep").await;
    let (_, _, b2) = hold_delete(&a, "/repos/acme/crashed").await;
    let (id1, id2) = (
        b1["reviewId"].as_str().expect("id").to_string(),
        b2["reviewId"].as_str().expect("id").to_string(),
    );
    let dir = a.stop().await;

    // Simulate a crash in the middle of executing review 2.
    {
        let store = airlock::store::open(config.store.backend, &config.store.path).expect("open");
        let old = store
            .get(airlock::store::Tree::Reviews, id2.as_bytes())
            .expect("get")
            .expect("present");
        let before = airlock::gate::Review::decode(&old).expect("decode");
        let mut r = before.clone();
        r.state = ReviewState::Executing;
        let mut batch = airlock::store::Batch::default();
        batch
            .expect(airlock::store::Tree::Reviews, id2.as_bytes(), Some(&old))
            .put(
                airlock::store::Tree::Reviews,
                id2.as_bytes(),
                &r.encode().expect("enc"),
            );
        airlock::gate::index::reindex(&mut batch, Some(&before), Some(&r));
        assert!(store.apply(batch).expect("swap"));
    }

    let a = Airlock::start_with_parts(
        config,
        dir,
        Arc::new(TestRules),
        Arc::new(airlock::gate::SystemClock),
    )
    .await;
    let r2 = a.gate.get(&id2).await.expect("get");
    assert_eq!(
        r2.state,
        ReviewState::OutcomeUnknown,
        "never re-executed automatically"
    );
    let (code, _) = a
        .admin("POST", &format!("/v1/reviews/{id2}/approve"), None)
        .await;
    assert_eq!(code, 409);
    let (code, r1) = a
        .admin("POST", &format!("/v1/reviews/{id1}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r1}");
    assert_eq!(r1["state"], "executed");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/repos/acme/keep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wait_mode_returns_the_real_response_or_escalates_on_timeout() {
    let (up, a) = setup("").await;
    // Timeout: no decision within 1 s -> the ESCALATE answer.
    let resp = a
        .client()
        .delete("https://api.github.com/repos/acme/slow")
        .header("airlock-wait", "1")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 423);

    // Approved while the agent waits -> the upstream's own answer.
    let client = a.client();
    let waiting = tokio::spawn(async move {
        client
            .delete("https://api.github.com/status/204")
            .header("airlock-wait", "30")
            .send()
            .await
            .expect("send")
    });
    let id = loop {
        let list = support::all_reviews(&a.gate, Some(ReviewState::Pending)).await;
        if let Some(r) = list
            .iter()
            .find(|r| r.request.path_and_query == "/status/204")
        {
            break r.id.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (code, _) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200);
    let resp = waiting.await.expect("join");
    assert_eq!(
        resp.status(),
        204,
        "the agent gets the real upstream status"
    );
    assert_eq!(resp.headers()["airlock-outcome"], "EXECUTED");
    assert_eq!(resp.headers()["airlock-review-id"], id.as_str());
    assert_eq!(up.count(), 1);
}

/// Review of session 21: wait mode replayed a stored answer with every header but
/// Content-Length and Transfer-Encoding, so the connection-level ones a record holds
/// (`Connection`, `Keep-Alive`, `Upgrade`, `Trailer`, the names `Connection` lists: written by
/// another instance on a shared store that did not drop them) reached the agent, and on
/// HTTP/1.1 a replayed `Connection: close` closed the agent's connection. Replay drops them;
/// end-to-end headers stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_answer_carries_no_hop_by_hop_headers() {
    let (up, a) = setup("").await;
    let client = a.client_builder().http1_only().build().expect("client");
    let waiting = tokio::spawn(
        client
            .delete("https://api.github.com/repos/acme/hop")
            .header("airlock-wait", "2")
            .send(),
    );
    let id = loop {
        let list = support::all_reviews(&a.gate, Some(ReviewState::Pending)).await;
        if let Some(r) = list.first() {
            break r.id.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Executed meanwhile, its answer stored with the upstream's connection headers.
    let mut r = a.gate.get(&id).await.expect("review");
    let mut e = airlock::gate::review::Execution::started(r.created_at_ms);
    e.status = Some(200);
    e.body_b64 = airlock::gate::review::b64(b"{}");
    e.finished_at_ms = Some(r.created_at_ms);
    e.headers = [
        ("connection", "close, x-connection-only"),
        ("keep-alive", "timeout=5, max=100"),
        ("x-connection-only", "per-connection"),
        ("proxy-connection", "keep-alive"),
        ("upgrade", "h2c"),
        ("trailer", "x-checksum"),
        ("te", "trailers"),
        ("x-request-id", "req-visible-123"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    r.state = ReviewState::Executed;
    r.execution = Some(e);
    let mut batch = airlock::store::Batch::default();
    batch.put(
        airlock::store::Tree::Reviews,
        id.as_bytes(),
        &r.encode().expect("encode"),
    );
    a.gate.store().commit(vec![batch]).expect("store");

    let resp = waiting.await.expect("join").expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["airlock-outcome"], "EXECUTED");
    for name in [
        "connection",
        "keep-alive",
        "x-connection-only",
        "proxy-connection",
        "upgrade",
        "trailer",
        "te",
    ] {
        assert!(
            resp.headers().get(name).is_none(),
            "{name} replayed: {:?}",
            resp.headers()
        );
    }
    assert_eq!(resp.headers()["x-request-id"], "req-visible-123");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_approvals_execute_once() {
    let (up, a) = setup("").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let (_, _, b) = hold_delete(&a, &format!("/repos/acme/race{i}")).await;
        ids.push(b["reviewId"].as_str().expect("id").to_string());
    }
    let mut tasks = Vec::new();
    for id in &ids {
        for _ in 0..6 {
            let gate = a.gate.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                gate.approve(&id, &airlock::gate::Reviewer::named("racer"), None)
                    .await
                    .is_ok()
            }));
        }
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.expect("join") {
            wins += 1;
        }
    }
    assert_eq!(wins, 10, "exactly one approval per review succeeds");
    assert_eq!(up.count(), 10, "each held call executed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stripe_gets_an_idempotency_key_unless_the_agent_sent_one() {
    let (up, a) = setup("").await;
    let client = a.client();
    let mut ids = Vec::new();
    for key in [None, Some("agent-key-1")] {
        let mut req = client
            .post("https://api.stripe.com/v1/refunds")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("charge=ch_1&amount=5000");
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let body: serde_json::Value = req.send().await.expect("send").json().await.expect("json");
        ids.push(body["reviewId"].as_str().expect("id").to_string());
    }
    for id in &ids {
        let (code, _) = a
            .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
            .await;
        assert_eq!(code, 200);
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].header("idempotency-key"),
        Some(format!("airlock-{}", ids[0]).as_str())
    );
    assert_eq!(seen[1].header("idempotency-key"), Some("agent-key-1"));
    assert_eq!(seen[0].body, b"charge=ch_1&amount=5000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_gated_body_gets_413_and_nothing_is_stored() {
    let (up, a) = setup("[gate]\nmax_body_bytes = 1024\n").await;
    let resp = a
        .client()
        .delete("https://api.github.com/repos/acme/big")
        .body(vec![b'z'; 4096])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(
        body["message"].as_str().unwrap_or("").contains("1024"),
        "{body}"
    );
    assert!(support::all_reviews(&a.gate, None).await.is_empty());
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn block_and_admin_errors_are_clear() {
    let (up, a) = setup("").await;
    let resp = a
        .client()
        .get("https://api.github.com/blocked")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["airlock-outcome"], "BLOCK");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["outcome"], "BLOCK");
    assert_eq!(body["reasonCodes"][0], "rule_match");

    let (code, e) = a.admin("GET", "/v1/reviews/rev_nope", None).await;
    assert_eq!((code, e["error"].as_str()), (404, Some("unknown_review")));
    let (code, _) = a.admin("POST", "/v1/reviews/rev_nope/approve", None).await;
    assert_eq!(code, 404);
    let (code, e) = a.admin("GET", "/v1/reviews?state=bogus", None).await;
    assert_eq!((code, e["error"].as_str()), (400, Some("bad_state")));
    // Wrong token.
    let (code, _) = airlock::admin::client::call(
        a.admin_addr,
        "wrong",
        http::Method::GET,
        "/v1/reviews",
        None,
    )
    .await
    .expect("call");
    assert_eq!(code, 401);
    // DNS rebinding: a foreign Host is refused even with the token.
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://{}/v1/reviews", a.admin_addr))
        .header("host", "evil.example:8081")
        .bearer_auth(&a.admin_token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 421);
    // The admin port is not reachable through the proxy.
    let resp = a
        .client()
        .get(format!("http://{}/v1/reviews", a.admin_addr))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);
    assert_eq!(up.count(), 0);
}

/// A config file for the CLI to reach `a`'s admin API with its token.
fn cli_config(a: &Airlock) -> std::path::PathBuf {
    let cfg = a.dir.path().join("cli.toml");
    std::fs::write(
        &cfg,
        format!(
            "[admin]\nlisten = \"{}\"\ntoken_file = \"{}\"\n[proxy]\nlisten = \"127.0.0.1:1\"\n",
            a.admin_addr,
            a.config.admin.token_file.display()
        ),
    )
    .expect("write");
    cfg
}

/// Runs the airlock binary with `cfg` and `args`, off the runtime's threads.
async fn run_cli(cfg: std::path::PathBuf, args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--config")
            .arg(&cfg)
            .args(&args)
            .output()
            .expect("run")
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_lists_and_approves() {
    let (up, a) = setup("[gate]\nexecution_timeout = \"1s\"\n").await;
    let (_, _, b) = hold_delete(&a, "/repos/acme/cli").await;
    let id = b["reviewId"].as_str().expect("id").to_string();
    let cfg = cli_config(&a);
    let run = |args: Vec<String>| run_cli(cfg.clone(), args);
    // First, before any connection to the upstream exists: not sent (it refuses connections)
    // exits 3; a retry that may have been sent (read, never answered in time) exits 4.
    up.state
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Its repository is named like its secret-named query value (masked wherever it echoes):
    // the state `outcome_unknown` must still read as itself, and the echo be flagged.
    let (_, _, b) = hold_delete(
        &a,
        "/repos/acme/stall_outcome_unknown?token=outcome_unknown",
    )
    .await;
    let stalled = b["reviewId"].as_str().expect("id").to_string();
    let out = run(vec!["reviews".into(), "approve".into(), stalled.clone()]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.starts_with(&format!("{stalled}: failed, not sent: ")),
        "{text}"
    );
    up.state
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let out = run(vec!["reviews".into(), "retry".into(), stalled.clone()]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.starts_with(&format!(
            "{stalled}: outcome unknown, the request may have reached"
        )),
        "{text}"
    );
    assert_eq!(up.count(), 1, "the retry reached the upstream once");
    let out = run(vec!["reviews".into(), "show".into(), stalled.clone()]).await;
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(text.contains("\"state\": \"outcome_unknown\""), "{text}");
    assert!(text.contains("\"attemptCount\": 2"), "{text}");
    assert!(text.contains("\"maskedEcho\": true"), "{text}");
    assert!(
        text.contains("/repos/acme/stall_[redacted: same value as secret-named query parameter token]?token=[redacted]"),
        "{text}"
    );
    assert!(
        err.contains("warning: a masked value also appears elsewhere: the value of the secret-named query parameter token"),
        "{err}"
    );
    // A retry naming the attempt its reviewer read, after another was made: refused, not sent.
    let out = run(vec![
        "reviews".into(),
        "retry".into(),
        stalled.clone(),
        "--attempts".into(),
        "1".into(),
    ])
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another attempt was made meanwhile"), "{err}");
    assert_eq!(up.count(), 1, "not sent again");
    // An id an agent crafted so that rejecting it approves (`rev_X/approve?` made the path
    // `/v1/reviews/rev_X/approve?/reject`) is refused before any call.
    let out = run(vec![
        "reviews".into(),
        "reject".into(),
        format!("{id}/approve?"),
    ])
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not a review id"), "{err}");
    let out = run(vec!["reviews".into(), "list".into()]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&id) && text.contains("pending"),
        "{text}"
    );
    // Paged: one review per page, then where the next page starts; --all streams both.
    let page = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<String>>();
    let out = run(page(&["reviews", "list", "--limit", "1"])).await;
    let (text, more) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    let cursor = more
        .trim()
        .strip_prefix("more: airlock reviews list --cursor ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("where the next page starts: {more}"))
        .to_string();
    let out = run(page(&[
        "reviews", "list", "--limit", "1", "--cursor", &cursor,
    ]))
    .await;
    let second = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(second.lines().count(), 1, "{second}");
    assert_ne!(second, text, "the second page goes on from the first");
    let out = run(page(&["reviews", "list", "--limit", "1", "--all"])).await;
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(all.lines().count(), 2, "{all}");
    assert!(all.contains(&id) && all.contains(&stalled), "{all}");
    let out = run(vec![
        "reviews".into(),
        "approve".into(),
        id.clone(),
        "--comment".into(),
        "lgtm".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("{id}: executed, upstream answered HTTP 200\n{{")),
        "one summary line before the JSON: {text}"
    );
    assert!(text.contains("\"executed\""));
    let out = run(vec!["reviews".into(), "approve".into(), id.clone()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already executed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(vec!["reviews".into(), "show".into(), "rev_unknown".into()]).await;
    assert!(!out.status.success());
    assert_eq!(
        up.count(),
        2,
        "the retry and the approval each reached the upstream once"
    );
}

/// What an agent put in a held call reaches a CLI reviewer's terminal with its control and
/// invisible characters escaped: a C1 CSI (U+009B) in a path segment (a decoded rule
/// parameter in `reviews show`) could conceal `prod`. (`reviews list` shows the URL as stored,
/// percent-encoded; its escaping is a second line.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_output_escapes_what_would_act_on_a_terminal() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    // The shipped catalog names `{repo}`: its decoded value is among the review's parameters.
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a = Airlock::start_classified("", &up, HOSTS, catalog).await;
    let (_, _, b) = hold_delete(&a, "/repos/acme/%C2%9B8mprod%C2%9B28m-scratch").await;
    let id = b["reviewId"].as_str().expect("id").to_string();
    let cfg = cli_config(&a);
    let show = run_cli(
        cfg.clone(),
        vec!["reviews".into(), "show".into(), id.clone()],
    )
    .await;
    let text = String::from_utf8(show.stdout).expect("utf-8");
    assert!(show.status.success(), "{text}");
    assert!(!text.contains('\u{9b}'), "{text:?}");
    assert!(
        text.contains("\\u009b8mprod"),
        "the same JSON value, escaped: {text}"
    );
    let value: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
    assert!(value.to_string().contains("\u{9b}8mprod"), "{value}");
    let list = run_cli(cfg, vec!["reviews".into(), "list".into()]).await;
    let text = String::from_utf8(list.stdout).expect("utf-8");
    assert!(text.contains(&id) && !text.contains('\u{9b}'), "{text:?}");
}

/// Review: `airlock reviews show` printed none of the dashboard's warnings (a parameter read
/// two ways, a body spelled with `\u` escapes, a webhook host's user-info) nor its Arguments
/// and money line: a CLI-only reviewer lost them. The review JSON carries them (`summary`), and
/// `show` and `approve` print each warning first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_shows_the_dashboards_summary_and_warnings() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a = Airlock::start_classified("", &up, HOSTS, catalog).await;
    let held = |url: &'static str, content_type: &'static str, body: &'static [u8]| {
        let c = a.client();
        async move {
            let r = c
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 423, "{url}");
            r.headers()["airlock-review-id"]
                .to_str()
                .expect("id")
                .to_string()
        }
    };
    let refund = held(
        "https://api.stripe.com/v1/refunds",
        "application/x-www-form-urlencoded",
        b"charge=ch_cliSMALL&[charge]=ch_cliBIG",
    )
    .await;
    let transfer = held(
        "https://api.github.com/repos/acme/prod/transfer",
        "application/json",
        br#"{"description":"sandbox","\u006e\u0065\u0077_owner":"\u0065\u0076\u0069\u006c"}"#,
    )
    .await;
    let cfg = cli_config(&a);
    let show = |id: &str| {
        run_cli(
            cfg.clone(),
            vec!["reviews".into(), "show".into(), id.into()],
        )
    };
    let out = show(&refund).await;
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: charge read more than one way"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert!(
        v["summary"]["money"]
            .as_str()
            .is_some_and(|m| m.starts_with("full refund of ch_cliSMALL or ch_cliBIG")),
        "{v}"
    );
    assert!(v["summary"]["arguments"].is_array(), "{v}");
    let out = show(&transfer).await;
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        err.contains("warning: the JSON body is spelled with \\u escapes")
            && err.contains("new_owner=evil"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert!(
        v["request"]["bodyDecoded"]
            .as_str()
            .is_some_and(|b| b.contains(r#""new_owner":"evil""#)),
        "{v}"
    );
    assert!(
        v["summary"]["arguments"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "new_owner=evil")),
        "{v}"
    );
    let out = run_cli(
        cfg.clone(),
        vec!["reviews".into(), "approve".into(), transfer.clone()],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("new_owner=evil"), "approve warns too: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shipped_catalog_holds_a_repo_delete_end_to_end() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a = Airlock::start_classified("", &up, HOSTS, catalog).await;
    // Reads flow.
    let (rc, out, err) = curl(&curl_args(
        &a,
        &["https://api.github.com/repos/acme/widgets"],
    ))
    .await;
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("/repos/acme/widgets"), "{out}");
    // The delete is held (curl through the proxy).
    let (rc, out, _) = curl(&curl_args(
        &a,
        &[
            "-X",
            "DELETE",
            "-i",
            "https://api.github.com/repos/acme/widgets",
        ],
    ))
    .await;
    assert_eq!(rc, 0);
    assert!(
        out.contains(" 423")
            && out
                .to_ascii_lowercase()
                .contains("airlock-outcome: escalate"),
        "{out}"
    );
    assert!(out.contains("github.repos.delete"), "{out}");
    // A Stripe charge over $100 is held; one under passes with a soft gate.
    let client = a.client();
    let held = client
        .post("https://api.stripe.com/v1/charges")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("amount=25000&currency=usd&source=tok_visa")
        .send()
        .await
        .expect("send");
    assert_eq!(held.status(), 423);
    let small = client
        .post("https://api.stripe.com/v1/charges")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("amount=500&currency=usd&source=tok_visa")
        .send()
        .await
        .expect("send");
    assert_eq!(small.status(), 200);
    let seen = up.requests();
    assert_eq!(
        seen.len(),
        2,
        "one read and the small charge; nothing held reached the upstream"
    );
    assert_eq!(
        seen[1].body, b"amount=500&currency=usd&source=tok_visa",
        "the buffered body is forwarded intact"
    );
}

/// Issue 7: an upstream that is down when the approval fires -> `failed` with the reason, nothing
/// sent; a human retry once it is back sends the stored request exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_down_at_approval_fails_and_a_retry_sends_once() {
    let (up, a) = setup("").await;
    up.state
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, _, body) = hold_delete(&a, "/repos/acme/down").await;
    assert_eq!(status, 423);
    let id = body["reviewId"].as_str().expect("id").to_string();

    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "failed", "{r}");
    let why = r["result"]["error"].as_str().unwrap_or_default();
    assert!(!why.is_empty(), "the failure says why: {r}");
    assert_eq!(up.count(), 0, "nothing reached the upstream");

    // Not retryable: a review that is still pending, or an unknown one.
    let (code, _) = a.admin("POST", "/v1/reviews/rev_nope/retry", None).await;
    assert_eq!(code, 404);

    up.state
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (code, r) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/retry"),
            Some(serde_json::json!({"comment": "upstream is back"})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(r["result"]["status"], 200);
    assert_eq!(r["earlierAttempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(r["retries"][0]["comment"], "upstream is back");
    assert_eq!(up.count(), 1, "exactly one send");

    // An executed review is never retried.
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(code, 400, "{r}");
    assert_eq!(up.count(), 1);

    let text = a.audit_export().await;
    assert!(
        text.lines().any(|l| l.contains("\"retry_by\"")
            && l.contains(&id)
            && l.contains("\"to\":\"approved\"")),
        "the retry is on the audit record"
    );
}

/// A Stripe refund the upstream will read and not answer (`/stall`), held: its review id.
async fn hold_stalled_refund(a: &Airlock) -> String {
    let resp = a
        .client()
        .post("https://api.stripe.com/v1/refunds/stall")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("charge=ch_1&amount=5000")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 423);
    let body: serde_json::Value = resp.json().await.expect("json");
    body["reviewId"].as_str().expect("id").to_string()
}

/// Issue 7: a slow upstream -> `outcome_unknown` (never re-sent on its own); the human retry
/// carries the same Idempotency-Key, so Stripe can answer the duplicate with the first result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_upstream_is_outcome_unknown_and_retry_reuses_the_idempotency_key() {
    let (up, a) = setup("[gate]\nexecution_timeout = \"1s\"\n").await;
    let id = hold_stalled_refund(&a).await;

    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "outcome_unknown", "{r}");
    assert_eq!(
        up.count(),
        1,
        "it reached the upstream, which never answered"
    );

    up.state
        .no_stall
        .store(true, std::sync::atomic::Ordering::SeqCst);
    up.state.unstall.notify_waiters();
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    let key0 = seen[0].header("idempotency-key").map(str::to_string);
    assert!(key0.as_deref().is_some_and(|k| k.starts_with("airlock-")));
    assert_eq!(key0.as_deref(), seen[1].header("idempotency-key"));
}

/// A retry of a call that may have been sent relies on the upstream knowing its
/// Idempotency-Key; Stripe may forget one after 24 hours, so past that (from the first
/// attempt) the retry is refused with what to do, where it would have sent the call again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_past_the_idempotency_keys_lifetime_is_refused() {
    let (up, _config, clock, a) =
        setup_on_clock("[gate]\nexecution_timeout = \"1s\"\nreview_expiry = \"72h\"\n").await;
    let id = hold_stalled_refund(&a).await;
    let (_, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(r["state"], "outcome_unknown", "{r}");
    clock.advance(Duration::from_secs(25 * 3600));
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(code, 400, "{r}");
    assert!(r.to_string().contains("more than 24 hours"), "{r}");
    assert_eq!(up.count(), 1, "not sent again");
}

/// Like `setup_on_faulty_store`, on a test clock; also the config, to restart on the store.
async fn setup_on_faulty_store_at(
    toml: &str,
) -> (
    FakeUpstream,
    Airlock,
    Arc<support::FaultyStore>,
    Arc<ManualClock>,
    airlock::config::Config,
) {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = Airlock::config(toml, dir.path(), &up, HOSTS);
    let store = support::FaultyStore::open(&config.store.path);
    let clock = Arc::new(ManualClock::default());
    clock.advance(Duration::from_secs(CLOCK_START_S));
    let a = Airlock::start_on_store_at(
        config.clone(),
        dir,
        Arc::new(TestRules),
        store.clone(),
        clock.clone(),
    )
    .await;
    (up, a, store, clock, config)
}

/// A held Stripe refund approved on a faulty store and a test clock (reviews live 72 h), whose
/// send the upstream read and never answered: `outcome_unknown`. Also its review id.
async fn refund_left_outcome_unknown() -> (
    FakeUpstream,
    Airlock,
    Arc<support::FaultyStore>,
    Arc<ManualClock>,
    airlock::config::Config,
    String,
) {
    let (up, a, store, clock, config) =
        setup_on_faulty_store_at("[gate]\nexecution_timeout = \"1s\"\nreview_expiry = \"72h\"\n")
            .await;
    let id = hold_stalled_refund(&a).await;
    let (_, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(r["state"], "outcome_unknown", "{r}");
    (up, a, store, clock, config, id)
}

/// A retry whose approval cannot be audited changes nothing (it and its entry are one
/// commit): the call stays `outcome_unknown` as its first attempt left it, and nothing is
/// sent. The retry window still counts from the first attempt, which may have been sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unsent_retry_of_a_maybe_sent_call_stays_outcome_unknown() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, a, store, clock, _, id) = refund_left_outcome_unknown().await;
    let (_, before) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;

    store.fail_audit.store(true, SeqCst);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    store.fail_audit.store(false, SeqCst);
    assert_eq!(code, 503, "{r}");
    assert!(
        r.to_string()
            .contains("nothing changed and the request was not sent"),
        "{r}"
    );
    let (_, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(r["state"], "outcome_unknown", "{r}");
    assert_eq!(r["result"], before["result"], "{r}");
    assert_eq!(r["result"]["unsent"], false, "{r}");
    assert_eq!(up.count(), 1, "the retry sent nothing");

    clock.advance(Duration::from_secs(25 * 3600));
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(code, 400, "{r}");
    assert!(r.to_string().contains("more than 24 hours"), "{r}");
    assert_eq!(up.count(), 1, "not sent again");
}

/// A retry approved within the idempotency key's 24 hours but claimed after them (its claim
/// failed, and recovery after a restart found it `approved`) is not sent: the window is checked
/// again at the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_claimed_past_the_idempotency_keys_lifetime_is_not_sent() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, a, store, clock, config, id) = refund_left_outcome_unknown().await;

    clock.advance(Duration::from_secs(23 * 3600));
    store.fail_claims.store(1, SeqCst);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    // The retry is recorded; its send did not start (Airlock retries it while it is fresh).
    assert_eq!(code, 202, "{r}");
    let (_, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(r["state"], "approved", "the claim failed: {r}");

    let dir = a.stop().await;
    clock.advance(Duration::from_secs(2 * 3600));
    let a = Airlock::start_on_store_at(config, dir, Arc::new(TestRules), store, clock).await;
    // Recovery claims `approved` reviews in the background.
    let mut r = serde_json::Value::Null;
    for _ in 0..100 {
        r = a.admin("GET", &format!("/v1/reviews/{id}"), None).await.1;
        if r["state"] != "approved" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(r["state"], "outcome_unknown", "{r}");
    assert!(
        r["result"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not sent") && e.contains("more than 24 hours")),
        "{r}"
    );
    assert_eq!(up.count(), 1, "not sent again");
}

/// Storing a sent call's answer is tried again when the store refuses it: the answer is known
/// only to the sending instance, and a review left `executing` ends `outcome_unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_the_store_refused_once_is_stored_on_a_second_try() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, a, store) = setup_on_faulty_store("").await;
    let (_, headers, _) = hold_delete(&a, "/repos/octo/answer").await;
    let id = review_id(&headers);
    store.fail_answers.store(2, SeqCst);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(r["result"]["status"], 200, "{r}");
    assert_eq!(store.fail_answers.load(SeqCst), 0, "both refusals were met");
    assert_eq!(up.count(), 1);
}

/// The retry window counts from the first attempt that may have reached the upstream: an
/// earlier attempt that certainly sent nothing (its connection was refused) does not start it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_retry_window_starts_at_the_first_attempt_that_may_have_been_sent() {
    let (up, mut config, clock, a) =
        setup_on_clock("[gate]\nexecution_timeout = \"1s\"\nreview_expiry = \"72h\"\n").await;
    let reachable = config.upstream.resolve.clone();
    // A port nothing listens on: the approval's send is refused, certainly unsent.
    let dir = a.stop().await;
    config
        .upstream
        .resolve
        .insert("api.stripe.com".into(), support::spare_addr());
    let a =
        Airlock::start_with_parts(config.clone(), dir, Arc::new(TestRules), clock.clone()).await;
    let id = hold_stalled_refund(&a).await;
    let (_, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(up.count(), 0);

    // 20 hours later, on a reachable upstream: the retry may reach it (no answer comes).
    let dir = a.stop().await;
    config.upstream.resolve = reachable;
    let a = Airlock::start_with_parts(config, dir, Arc::new(TestRules), clock.clone()).await;
    clock.advance(Duration::from_secs(20 * 3600));
    let (_, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(r["state"], "outcome_unknown", "{r}");
    assert_eq!(up.count(), 1);

    // 25 hours after the first attempt, 5 after the one that may have been sent: allowed.
    clock.advance(Duration::from_secs(5 * 3600));
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(up.count(), 2, "sent again within the key's 24 hours");
}

/// A $40 Stripe charge through Airlock (TestRules soft-gates it, spending $40).
async fn charge_40_dollars(a: &Airlock) -> reqwest::Response {
    a.client()
        .post("https://api.stripe.com/v1/charges")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("amount=4000&currency=usd")
        .send()
        .await
        .expect("send")
}

/// Soft-gated money calls add up: once an agent's calls in the last 24 hours would pass
/// `gate.money_budget_usd`, the next one is held, and the budget frees up as hours leave the
/// window. Each call here is under the per-call limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_charges_past_the_daily_budget_are_held() {
    let (up, _config, clock, a) = setup_on_clock("[gate]\nmoney_budget_usd = 100\n").await;
    let charge = || charge_40_dollars(&a);
    assert_eq!(charge().await.status(), 200);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(charge().await.status(), 200);
    let held = charge().await;
    assert_eq!(held.status(), 423, "$120 in a day is past the $100 budget");
    let body: serde_json::Value = held.json().await.expect("json");
    assert!(
        body["reasonCodes"].to_string().contains("money_budget"),
        "{body}"
    );
    let id = body["reviewId"].as_str().expect("id");
    let (_, review) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert!(
        review["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("$80.00") && e.contains("money_budget_usd")),
        "the reviewer is told why: {review}"
    );
    assert_eq!(up.count(), 2, "the third charge was not sent");

    // A charge counts for 24 to 25 hours (by the hour): 25 hours after the first, its $40 has
    // left the window.
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(charge().await.status(), 200);
    assert_eq!(charge().await.status(), 423, "$40 + $40 + $40 again");
    assert_eq!(up.count(), 3);
}

/// Counters of hours ahead of this instance's clock (another instance's clock runs ahead, or
/// this one stepped back) still count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_money_budget_counts_hours_ahead_of_the_clock() {
    let (up, _config, clock, a) = setup_on_clock("[gate]\nmoney_budget_usd = 100\n").await;
    let charge = || async { charge_40_dollars(&a).await.status() };
    clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(charge().await, 200);
    assert_eq!(charge().await, 200);
    clock
        .0
        .fetch_sub(2 * 3600 * 1000, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(charge().await, 423, "the $80 two hours ahead counts");
    assert_eq!(up.count(), 2);
}

/// A money call whose spending cannot be counted (the store refuses) is not forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_money_call_the_budget_cannot_count_is_not_forwarded() {
    let (up, a, store) = setup_on_faulty_store("").await;
    store
        .fail_index
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = charge_40_dollars(&a).await;
    assert!(r.status() == 423 || r.status() == 503, "{}", r.status());
    assert_eq!(up.count(), 0, "not forwarded uncounted");
    // A read still flows.
    let r = a
        .client()
        .get("https://api.github.com/user")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
}

/// Issue 15: an approved request's failure is `failed` (certainly not sent) only when no byte
/// left; once the request may have been written, whatever breaks, it is `outcome_unknown`.
/// One case per failure, each against its own upstream; the upstream's count shows what
/// reached it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_failures_are_judged_by_whether_a_byte_was_sent() {
    use support::upstream::{Misbehave, UpstreamOptions};
    support::init();
    let h1 = || UpstreamOptions {
        alpn: vec!["http/1.1"],
        ..Default::default()
    };
    let broken = |how| UpstreamOptions {
        misbehave: Some(how),
        ..h1()
    };
    // (case, upstream options, upstream refuses connections, state, requests upstream saw)
    let cases: Vec<(&str, UpstreamOptions, bool, &str, usize)> = vec![
        (
            "reset after reading the request",
            broken(Misbehave::ResetAfterRead),
            false,
            "outcome_unknown",
            1,
        ),
        (
            "clean close after reading",
            broken(Misbehave::CloseAfterRead),
            false,
            "outcome_unknown",
            1,
        ),
        (
            "close in the middle of the response head",
            broken(Misbehave::CloseMidHead),
            false,
            "outcome_unknown",
            1,
        ),
        (
            "close in the middle of the body",
            broken(Misbehave::CloseMidBody),
            false,
            "outcome_unknown",
            1,
        ),
        (
            "h2: the request's stream reset after reading it",
            UpstreamOptions {
                misbehave: Some(Misbehave::H2ResetAfterRead),
                ..Default::default()
            },
            false,
            "outcome_unknown",
            1,
        ),
        (
            "h2: the connection closed after reading the request",
            UpstreamOptions {
                misbehave: Some(Misbehave::H2CloseAfterRead),
                ..Default::default()
            },
            false,
            "outcome_unknown",
            1,
        ),
        // `/stall` is recorded, then never answered: slower than the execution timeout.
        (
            "a response slower than the execution timeout",
            h1(),
            false,
            "outcome_unknown",
            1,
        ),
        ("connection refused", h1(), true, "failed", 0),
        (
            "a bad certificate",
            UpstreamOptions {
                untrusted_cert: true,
                ..h1()
            },
            false,
            "failed",
            0,
        ),
    ];
    let mut wrong = Vec::new();
    for (case, opts, refused, want, seen) in cases {
        let up = FakeUpstream::start(opts).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Airlock::config(
            "[gate]\nexecution_timeout = \"1s\"\n",
            dir.path(),
            &up,
            HOSTS,
        );
        if refused {
            // A port nothing listens on.
            let closed = support::spare_addr();
            config
                .upstream
                .resolve
                .insert("api.github.com".into(), closed);
        }
        let a = Airlock::start_with_parts(
            config,
            dir,
            Arc::new(TestRules),
            Arc::new(airlock::gate::SystemClock),
        )
        .await;
        let (status, _, body) = hold_delete(&a, "/repos/acme/stall").await;
        assert_eq!(status, 423, "{case}");
        let id = body["reviewId"].as_str().expect("id").to_string();
        let (code, r) = a
            .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
            .await;
        let error = r["result"]["error"].as_str().unwrap_or_default();
        if code != 200 || r["state"] != want || up.count() != seen || error.is_empty() {
            wrong.push(format!(
                "{case}: want {want} with {seen} upstream request(s) and an error, got HTTP {code} {} with {}: {r}",
                r["state"],
                up.count()
            ));
        }
        // Never re-sent on its own.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(up.count(), seen, "{case}: sent again");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Issue 21 item 7: on `airlock.local` an agent sees the state, the outcome and its request's
/// result, never who decided, their comments, the approval policy or the stored request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_view_has_no_reviewer_names_comments_or_decisions() {
    const FORBIDDEN_KEYS: &[&str] = &[
        "approvals",
        "decision",
        "comment",
        "retries",
        "policy",
        "agentOwner",
        "request",
        "earlierAttempts",
        "by",
    ];
    fn assert_agent_view(v: &serde_json::Value) {
        let text = v.to_string();
        for name in ["approver-anna", "rejecter-ron", "private remark"] {
            assert!(!text.contains(name), "{name} shown to the agent: {text}");
        }
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        for k in FORBIDDEN_KEYS {
            assert!(v.get(*k).is_none(), "{k} shown to the agent: {keys:?}");
        }
        assert!(v["reviewId"].as_str().is_some() && v["expiresAt"].as_str().is_some());
        assert!(v["updatedAt"].as_str().is_some(), "{text}");
    }
    let (up, a) = setup("").await;

    // Approved and executed: state, outcome and the result status.
    let (_, _, body) = hold_delete(&a, "/repos/acme/seen").await;
    let id = body["reviewId"].as_str().expect("id").to_string();
    let pending: serde_json::Value = a
        .client()
        .get(format!("http://airlock.local/v1/reviews/{id}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(pending["state"], "pending");
    assert_eq!(pending["outcome"], "ESCALATE");
    assert_agent_view(&pending);
    let (code, r) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/approve"),
            Some(serde_json::json!({"reviewer": "approver-anna", "comment": "private remark"})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        r["decision"]["by"], "approver-anna",
        "reviewers still see it"
    );
    let done: serde_json::Value = a
        .client()
        .get(format!("http://airlock.local/v1/reviews/{id}?wait=1"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(done["state"], "executed");
    assert_eq!(done["outcome"], "EXECUTED");
    assert_eq!(done["result"]["status"], 200);
    assert!(done["result"]["body"].as_str().is_some(), "{done}");
    assert!(done["result"].get("headers").is_none(), "{done}");
    assert_agent_view(&done);
    assert_eq!(up.count(), 1);

    // Rejected, read in wait mode (the 403 answer carries the same view).
    let resp = a
        .client()
        .delete("https://api.github.com/repos/acme/refused")
        .header("airlock-wait", "20")
        .send();
    let waiting = tokio::spawn(resp);
    let id = support::eventually("the waiting request to be held", support::WAIT, || async {
        let (_, list) = a.admin("GET", "/v1/reviews?state=pending", None).await;
        list["reviews"][0]["reviewId"].as_str().map(str::to_string)
    })
    .await;
    let (code, _) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/reject"),
            Some(serde_json::json!({"reviewer": "rejecter-ron", "comment": "private remark"})),
        )
        .await;
    assert_eq!(code, 200);
    let resp = waiting.await.expect("join").expect("send");
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["airlock-outcome"], "REJECTED");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["state"], "rejected");
    assert_eq!(v["outcome"], "REJECTED");
    assert_agent_view(&v);
    let polled: serde_json::Value = a
        .client()
        .get(format!("http://airlock.local/v1/reviews/{id}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(polled["outcome"], "REJECTED");
    assert_agent_view(&polled);
    assert_eq!(up.count(), 1, "the rejected DELETE never ran");
}

/// Issue 16: the listing is paged through indexes (pending soonest expiry first, history newest
/// first), filtered, counted; the sweeper expires only what is overdue; retention removes
/// finished reviews (their audit entries stay); `/readyz` answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_is_paged_filtered_counted_swept_and_pruned() {
    use std::collections::HashSet;
    let (up, _, clock, a) =
        setup_on_clock("[gate]\nsweep_interval = \"1h\"\nmax_pending_per_agent = 1000\n[store]\nretention = \"1h\"\n").await;
    let (code, ready) = a.admin("GET", "/readyz", None).await;
    assert_eq!((code, &ready["ready"]), (200, &serde_json::json!(true)));
    // 120 repo deletions then 30 refunds, one second apart.
    let mut order = Vec::new();
    for i in 0..150 {
        let resp = if i < 120 {
            hold_delete(&a, &format!("/repos/acme/r{i}")).await.2
        } else {
            a.client()
                .post("https://api.stripe.com/v1/refunds")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("charge=ch_{i}"))
                .send()
                .await
                .expect("refund")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        };
        order.push(resp["reviewId"].as_str().expect("held").to_string());
        clock.advance(Duration::from_secs(1));
    }

    // Pending: two pages, soonest expiry first, nothing twice, nothing missing.
    let (code, p1) = a.admin("GET", "/v1/reviews?state=pending", None).await;
    assert_eq!(code, 200, "{p1}");
    assert_eq!(p1["totals"]["pending"], 150);
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["reviews"]
            .as_array()
            .expect("reviews")
            .iter()
            .map(|r| r["reviewId"].as_str().expect("id").to_string())
            .collect()
    };
    assert_eq!(
        ids(&p1),
        order[..100],
        "default limit 100, soonest expiry first"
    );
    let cursor = p1["next_cursor"].as_str().expect("a second page");
    let (_, p2) = a
        .admin(
            "GET",
            &format!("/v1/reviews?state=pending&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(ids(&p2), order[100..]);
    assert!(p2["next_cursor"].is_null(), "last page");
    // History (any state) is newest first.
    let (_, h) = a.admin("GET", "/v1/reviews?limit=3", None).await;
    assert_eq!(
        ids(&h),
        order[147..].iter().rev().cloned().collect::<Vec<_>>()
    );
    // A tool filter, paged.
    let q = "/v1/reviews?state=pending&tool=stripe.refunds.create&limit=20";
    let (_, t1) = a.admin("GET", q, None).await;
    let c = t1["next_cursor"].as_str().expect("more refunds");
    let (_, t2) = a.admin("GET", &format!("{q}&cursor={c}"), None).await;
    let refunds: HashSet<String> = ids(&t1).into_iter().chain(ids(&t2)).collect();
    assert_eq!(refunds, order[120..].iter().cloned().collect());
    let (_, none) = a
        .admin("GET", "/v1/reviews?agent=nobody-by-that-name", None)
        .await;
    assert!(ids(&none).is_empty());
    // Bad paging input is refused clearly; a cursor only fits its own listing.
    for (path, code) in [
        ("/v1/reviews?limit=0", "bad_limit"),
        ("/v1/reviews?limit=5000", "bad_limit"),
        ("/v1/reviews?cursor=%%%", "bad_request"),
        (
            &format!("/v1/reviews?state=rejected&cursor={cursor}"),
            "bad_request",
        ),
    ] {
        let (status, e) = a.admin("GET", path, None).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some(code)),
            "{path}: {e}"
        );
    }

    // A rejection moves the counters.
    let (code, _) = a
        .admin("POST", &format!("/v1/reviews/{}/reject", order[140]), None)
        .await;
    assert_eq!(code, 200);
    let (_, r) = a.admin("GET", "/v1/reviews?state=rejected", None).await;
    assert_eq!(ids(&r), [order[140].clone()]);
    assert_eq!(r["totals"]["pending"], 149);
    assert_eq!(r["totals"]["rejected"], 1);

    // The sweeper expires exactly the overdue ones: the first ten (created t0..t0+9s).
    let since_start = Duration::from_secs(150);
    clock.advance(Duration::from_secs(24 * 3600 + 9) - since_start);
    assert_eq!(a.gate.sweep().await.expect("sweep"), 10);
    assert_eq!(
        a.gate.sweep().await.expect("sweep"),
        0,
        "nothing left overdue"
    );
    let (_, p) = a
        .admin("GET", "/v1/reviews?state=pending&limit=1", None)
        .await;
    assert_eq!(ids(&p), [order[10].clone()]);
    assert_eq!(p["totals"]["expired"], 10);
    assert_eq!(p["totals"]["pending"], 139);

    // Retention: an hour after they finished, finished reviews leave the store (the rejection,
    // a day old, now; the expiries, an hour later); their audit entries stay in the chain.
    assert_eq!(
        a.gate.prune().await.expect("prune"),
        1,
        "only the day-old rejection"
    );
    clock.advance(Duration::from_secs(3601));
    assert_eq!(a.gate.prune().await.expect("prune"), 10);
    let (code, _) = a
        .admin("GET", &format!("/v1/reviews/{}", order[0]), None)
        .await;
    assert_eq!(code, 404);
    let (_, p) = a.admin("GET", "/v1/reviews?limit=1", None).await;
    assert_eq!(p["totals"]["expired"], 0);
    assert_eq!(p["totals"]["rejected"], 0);
    assert_eq!(
        p["totals"]["pending"], 139,
        "pending reviews are never pruned"
    );
    let entries = a
        .gate
        .audit()
        .entries_for_review(&order[0], 100)
        .expect("audit");
    assert!(
        entries.len() >= 2,
        "escalation and expiry stay audited: {entries:?}"
    );
    assert_eq!(up.count(), 0);
}

/// A fresh database on the shared test cluster, an upstream, a directory and the config that
/// stores there; `None` (the reason printed) without PostgreSQL.
async fn on_postgres() -> Option<(
    String,
    FakeUpstream,
    tempfile::TempDir,
    airlock::config::Config,
)> {
    let cluster = support::postgres::Cluster::shared()?;
    let url = cluster.fresh_database();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let toml = format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n");
    let config = Airlock::config(&toml, dir.path(), &up, HOSTS);
    Some((url, up, dir, config))
}

/// Instances sharing a database tell a lapsed claim from a running send by comparing clocks:
/// one whose clock is a minute ahead of the database's (15 s allowed by default) refuses to
/// start, and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_whose_clock_is_far_from_the_databases_does_not_start() {
    support::init();
    let Some((_, _up, _dir, config)) = on_postgres().await else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as u64;
    let clock = Arc::new(ManualClock::default());
    clock
        .0
        .store(now + 60_000, std::sync::atomic::Ordering::SeqCst);
    let err = match airlock::server::start(&config, Arc::new(TestRules), clock.clone()).await {
        Ok(_) => panic!("started with its clock a minute ahead of the database's"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("clock") && err.contains("ahead of") && err.contains("NTP"),
        "{err}"
    );
    // Within the allowance it starts.
    clock
        .0
        .store(now + 2_000, std::sync::atomic::Ordering::SeqCst);
    assert!(airlock::server::start(&config, Arc::new(TestRules), clock)
        .await
        .is_ok());
}

/// The PostgreSQL backend end to end: a hold, its listing, an approval that sends once, a
/// restart that keeps it all, and an audit chain that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_backend_holds_approves_once_and_survives_restart() {
    support::init();
    let Some((url, up, dir, config)) = on_postgres().await else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    assert!(
        !format!("{config:?}").contains(&url),
        "the database URL never prints"
    );
    let clock = Arc::new(airlock::gate::SystemClock);
    let a =
        Airlock::start_with_parts(config.clone(), dir, Arc::new(TestRules), clock.clone()).await;
    let (status, _, held) = hold_delete(&a, "/repos/acme/pg").await;
    assert_eq!(status, 423);
    let id = held["reviewId"].as_str().expect("id").to_string();
    let (_, list) = a.admin("GET", "/v1/reviews?state=pending", None).await;
    assert_eq!(list["totals"]["pending"], 1, "{list}");
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!((code, r["state"].as_str()), (200, Some("executed")), "{r}");
    let (code, _) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 409, "approved once");
    let dir = a.stop().await;
    let a = Airlock::start_with_parts(config, dir, Arc::new(TestRules), clock).await;
    assert_eq!(
        a.gate.get(&id).await.expect("kept").state,
        ReviewState::Executed
    );
    let (code, report) = a.admin("GET", "/v1/audit/verify", None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(up.count(), 1, "sent exactly once");
}

/// Issue 16: a sweep of more reviews than one commit takes (its chunks are read, committed and
/// audited in overlapping stages) expires every overdue review once, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweep_of_many_chunks_expires_each_overdue_review_once() {
    use airlock::store::{Batch, Tree};
    let (up, config, clock, a) = setup_on_clock("[gate]\nsweep_interval = \"1h\"\n").await;
    let t0 = CLOCK_START_S * 1000;
    let (_, _, held) = hold_delete(&a, "/repos/acme/template").await;
    let template = held["reviewId"].as_str().expect("id").to_string();
    let dir = a.stop().await;

    // 5,000 overdue-to-be reviews (2.4 chunks) and 10 that stay pending, written as holds are.
    const OVERDUE: u64 = 5000;
    let mut ids = Vec::new();
    {
        let store = airlock::store::open(config.store.backend, &config.store.path).expect("open");
        let bytes = store
            .get(Tree::Reviews, template.as_bytes())
            .expect("get")
            .expect("present");
        let base = airlock::gate::Review::decode(&bytes).expect("decode");
        for chunk in (0..OVERDUE + 10).collect::<Vec<_>>().chunks(1000) {
            let mut b = Batch::default();
            for &i in chunk {
                let mut r = base.clone();
                r.created_at_ms = t0 + i;
                r.id = airlock::gate::new_review_id(r.created_at_ms);
                r.expires_at_ms = if i < OVERDUE {
                    t0 + 10_000 + i
                } else {
                    u64::MAX / 2
                };
                b.put(Tree::Reviews, r.id.as_bytes(), &r.encode().expect("encode"));
                airlock::gate::index::reindex(&mut b, None, Some(&r));
                ids.push(r.id);
            }
            assert!(store.apply(b).expect("apply"));
        }
    }
    let a = Airlock::start_with_parts(config, dir, Arc::new(TestRules), clock.clone()).await;
    clock.advance(Duration::from_secs(20));
    // The background sweeper's first tick (at start) may run meanwhile and take a share, its
    // audit entries landing just after: wait until everything is expired and audited.
    let audited = |i: usize| {
        a.gate
            .audit()
            .entries_for_review(&ids[i], 10)
            .expect("audit")
            .len()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let swept = a.gate.sweep().await.expect("sweep");
        assert!(swept <= OVERDUE as usize, "{swept}");
        let (_, p) = a
            .admin("GET", "/v1/reviews?state=pending&limit=1", None)
            .await;
        let done =
            p["totals"]["expired"] == OVERDUE && (0..OVERDUE as usize).all(|i| audited(i) > 0);
        if done || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, p) = a
        .admin("GET", "/v1/reviews?state=pending&limit=1", None)
        .await;
    assert_eq!(p["totals"]["expired"], OVERDUE);
    assert_eq!(p["totals"]["pending"], 11, "the template and the ten");
    for (i, id) in ids.iter().enumerate() {
        let overdue = (i as u64) < OVERDUE;
        let want = match overdue {
            true => ReviewState::Expired,
            false => ReviewState::Pending,
        };
        assert_eq!(a.gate.get(id).await.expect("kept").state, want, "#{i}");
        assert_eq!(audited(i), usize::from(overdue), "#{i}: expired once");
    }
    let (code, report) = a.admin("GET", "/v1/audit/verify", None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(up.count(), 0);
}

/// Review of session 16: nothing bounded how many reviews one agent could hold, and its flood
/// crowded other reviews' notifications out of the channels' queues. Past
/// `gate.max_pending_per_agent` a gated call is refused (429, not queued, not sent) until a
/// decision frees a place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_past_its_pending_reviews_cap_is_refused_not_queued() {
    let (up, a) = setup("[gate]\nmax_pending_per_agent = 2\n").await;
    let first = hold_delete(&a, "/repos/acme/one").await;
    assert_eq!(first.0, 423);
    assert_eq!(hold_delete(&a, "/repos/acme/two").await.0, 423);
    let (status, _, body) = hold_delete(&a, "/repos/acme/three").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "too_many_pending_reviews", "{body}");
    let (_, list) = a.admin("GET", "/v1/reviews?state=pending", None).await;
    assert_eq!(list["reviews"].as_array().map(Vec::len), Some(2), "{list}");
    // A decision frees a place.
    let id = first.2["reviewId"].as_str().expect("id");
    let (code, _) = a
        .admin("POST", &format!("/v1/reviews/{id}/reject"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(hold_delete(&a, "/repos/acme/three").await.0, 423);
    assert_eq!(up.count(), 0);
}

/// Review of session 21: a call refused because it could not be held (429 past
/// `gate.max_pending_per_agent`, 503 with the review store or the audit log unwritable) said
/// nothing about when to try again. Each carries `Retry-After` now: 60 s for a decision to free
/// a place, 30 s for the store or audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_to_hold_say_when_to_retry() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, a, store) = setup_on_faulty_store("[gate]\nmax_pending_per_agent = 1\n").await;
    let retry = |h: &reqwest::header::HeaderMap| {
        let reason = h["airlock-reason"].to_str().unwrap_or_default().to_string();
        let after = h.get("retry-after").and_then(|v| v.to_str().ok());
        (reason, after.map(str::to_string))
    };
    store.fail_reviews.store(true, SeqCst);
    let (status, headers, body) = hold_delete(&a, "/repos/acme/one").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        retry(&headers),
        ("review_store_unavailable".into(), Some("30".into()))
    );
    store.fail_reviews.store(false, SeqCst);
    store.fail_audit.store(true, SeqCst);
    let (status, headers, body) = hold_delete(&a, "/repos/acme/one").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        retry(&headers),
        ("audit_unavailable".into(), Some("30".into()))
    );
    store.fail_audit.store(false, SeqCst);
    assert_eq!(hold_delete(&a, "/repos/acme/one").await.0, 423);
    let (status, headers, body) = hold_delete(&a, "/repos/acme/two").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        retry(&headers),
        ("too_many_pending_reviews".into(), Some("60".into()))
    );
    assert_eq!(up.count(), 0);
}

/// Left from session 16: concurrent holds of one agent each read the count before any of
/// them was written, and all went past the cap. Now an agent's holds take turns while the
/// cap applies: twelve at once against a cap of three hold exactly three.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_holds_of_one_agent_stop_at_its_cap() {
    let (up, a) = setup("[gate]\nmax_pending_per_agent = 3\n").await;
    let a = Arc::new(a);
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { hold_delete(&a, &format!("/repos/acme/r{i}")).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("hold task").as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [[423; 3].as_slice(), &[429; 9]].concat());
    let (_, list) = a.admin("GET", "/v1/reviews?state=pending", None).await;
    assert_eq!(list["reviews"].as_array().map(Vec::len), Some(3), "{list}");
    assert_eq!(up.count(), 0);
}

/// Left from session 16: reviews past their deadline counted against the cap until a sweep
/// expired them. They no longer count, swept or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reviews_past_their_deadline_do_not_count_against_the_cap() {
    let (up, _config, clock, a) =
        setup_on_clock("[gate]\nsweep_interval = \"1h\"\nmax_pending_per_agent = 2\n").await;
    assert_eq!(hold_delete(&a, "/repos/acme/one").await.0, 423);
    assert_eq!(hold_delete(&a, "/repos/acme/two").await.0, 423);
    assert_eq!(hold_delete(&a, "/repos/acme/three").await.0, 429);
    clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(
        hold_delete(&a, "/repos/acme/three").await.0,
        423,
        "the two past their deadline (not yet swept) no longer count"
    );
    assert_eq!(up.count(), 0);
}

/// An agent keeps at most `MAX_WAITS_PER_AGENT` status waits open at once: each waiter reads its
/// review again on every change anyone makes, so more would multiply the store's reads. The
/// ones past the bound get 429 with `Retry-After` at once; the others end when the review does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_keeps_a_bounded_number_of_status_waits() {
    let max = airlock::gate::MAX_WAITS_PER_AGENT;
    let (up, a) = setup("").await;
    let (_, _, body) = hold_delete(&a, "/repos/acme/waited").await;
    let id = body["reviewId"].as_str().expect("id").to_string();
    let url = format!("http://airlock.local/v1/reviews/{id}?wait=60");
    let waits: Vec<_> = (0..max + 4)
        .map(|_| {
            let req = a.client().get(&url).send();
            tokio::spawn(async move {
                let resp = req.await.expect("send");
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                (resp.status().as_u16(), retry)
            })
        })
        .collect();
    support::eventually(
        "the waits past the bound to be refused",
        support::WAIT,
        || async { (waits.iter().filter(|w| w.is_finished()).count() >= 4).then_some(()) },
    )
    .await;
    // A poll without `wait` still answers.
    let poll = a
        .client()
        .get(format!("http://airlock.local/v1/reviews/{id}"))
        .send()
        .await
        .expect("send");
    assert_eq!(poll.status(), 200);
    let (code, r) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/approve"),
            Some(serde_json::json!({"reviewer": "approver-anna"})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    let mut answers = Vec::new();
    for w in waits {
        answers.push(w.await.expect("join"));
    }
    let refused = answers
        .iter()
        .filter(|(s, retry)| *s == 429 && retry.as_deref() == Some("1"))
        .count();
    let answered = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((refused, answered), (4, max), "{answers:?}");
    assert_eq!(up.count(), 1);
}

/// Held calls waiting with `Airlock-Wait` take from the agent's wait slots too: past the bound a
/// new hold is stored and answered 423 at once instead of waiting, and a status wait is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_calls_waiting_with_airlock_wait_count_against_the_wait_bound() {
    let max = airlock::gate::MAX_WAITS_PER_AGENT;
    let (up, a) = setup("").await;
    let waiting: Vec<_> = (0..max)
        .map(|i| {
            let req = a
                .client()
                .delete(format!("https://api.github.com/repos/acme/w{i}"))
                .header("airlock-wait", "120")
                .send();
            tokio::spawn(async move { req.await.expect("send").status().as_u16() })
        })
        .collect();
    support::eventually("every waiting hold stored", support::WAIT, || async {
        let (_, list) = a.admin("GET", "/v1/reviews?state=pending", None).await;
        (list["reviews"].as_array().map_or(0, Vec::len) == max).then_some(())
    })
    .await;
    // The slots are all taken: this hold does not wait (the 120 s it asks for would outlast
    // the test's limit), and a status wait on it is refused.
    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(60), async {
        let resp = a
            .client()
            .delete("https://api.github.com/repos/acme/one-more")
            .header("airlock-wait", "120")
            .send()
            .await
            .expect("send");
        let (status, headers) = (resp.status(), resp.headers().clone());
        (
            status,
            headers,
            resp.json::<serde_json::Value>().await.expect("json"),
        )
    })
    .await
    .expect("a hold past the wait bound is answered at once");
    assert_eq!(status, 423, "{body}");
    assert_eq!(headers["airlock-outcome"], "ESCALATE");
    let id = body["reviewId"].as_str().expect("id").to_string();
    let refused = a
        .client()
        .get(format!("http://airlock.local/v1/reviews/{id}?wait=60"))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 429);
    // Rejections end the waits, and their slots come back.
    let (_, list) = a.admin("GET", "/v1/reviews?state=pending", None).await;
    for r in list["reviews"].as_array().expect("reviews") {
        let rid = r["reviewId"].as_str().expect("id");
        let (code, body) = a
            .admin(
                "POST",
                &format!("/v1/reviews/{rid}/reject"),
                Some(serde_json::json!({"reviewer": "approver-anna"})),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    for w in waiting {
        assert_eq!(w.await.expect("join"), 403, "rejected while waiting");
    }
    let again = a
        .client()
        .get(format!("http://airlock.local/v1/reviews/{id}?wait=1"))
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), 200, "slots came back");
    assert_eq!(up.count(), 0);
}

/// Review of session 19: an approved call went on the same upstream HTTP/2 connection as agents'
/// requests (the lowest pool with a live connection). An agent that stops reading its answers
/// fills that connection's flow-control window, and the approved call's answer could not
/// arrive: it ran into the execution timeout and ended `outcome_unknown`. Approved calls now
/// have a pool of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_stalling_its_streams_does_not_hold_up_an_approved_call() {
    let (up, a) = setup("[gate]\nexecution_timeout = \"5s\"\n").await;
    // An agent speaking HTTP/2 with small windows, which never reads its answers.
    let tls = support::raw::tunnel(
        a.addr,
        "api.github.com",
        "api.github.com",
        &a.ca_pem,
        &[b"h2"],
    )
    .await;
    let stalled = support::raw::stall_h2_streams(tls, 4).await;
    let (status, headers, _) = hold_delete(&a, "/repos/acme/approved").await;
    assert_eq!(status, 423);
    let id = review_id(&headers);
    let (code, r) = tokio::time::timeout(
        Duration::from_secs(30),
        a.admin(
            "POST",
            &format!("/v1/reviews/{id}/approve"),
            Some(serde_json::json!({"reviewer": "approver-anna"})),
        ),
    )
    .await
    .expect("the approval answers");
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert!(up
        .requests()
        .iter()
        .any(|q| q.method == "DELETE" && q.path_and_query == "/repos/acme/approved"));
    drop(stalled);
}

/// Review (defect 1): a claim that failed after the approval landed (a store error) left the
/// review `approved`, the reviewer read "Not done", and on redb nothing claimed it again until
/// the next restart. Now the reviewer hears that the approval is recorded and the send did not
/// start yet, and the sweeper claims it again on every backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_that_failed_after_the_approval_is_retried_by_the_sweeper() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, a, store) = setup_on_faulty_store("[gate]\nsweep_interval = \"1s\"\n").await;
    let (status, headers, _) = hold_delete(&a, "/repos/octo/claim-fails").await;
    assert_eq!(status, 423);
    let id = review_id(&headers);
    store.fail_claims.store(1, SeqCst);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 202, "{r}");
    assert_eq!(r["state"], "approved", "{r}");
    let message = r["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("approved; the send did not start yet") && message.contains("retries"),
        "{r}"
    );
    assert_eq!(up.count(), 0);
    let state = support::eventually(
        "the sweeper to claim and send it",
        support::WAIT,
        || async {
            let state = a.gate.get(&id).await.expect("get").state;
            if state.as_str() == "executed" {
                Ok(state.as_str().to_string())
            } else {
                Err(state.as_str().to_string())
            }
        },
    )
    .await;
    assert_eq!(state, "executed", "the sweeper claimed and sent it");
    assert_eq!(up.count(), 1, "sent once");
}

/// Review (defect 1): an approval whose send did not start (its claim failed) was sent by the
/// next restart's recovery however late, past the review's deadline. An approval is sent only
/// before the deadline and within an hour of being given: later it ends `failed`, not sent,
/// saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_approval_is_not_sent_at_the_next_restart() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, a, store, clock, config) =
        setup_on_faulty_store_at("[gate]\nreview_expiry = \"72h\"\n").await;
    let (_, headers, _) = hold_delete(&a, "/repos/octo/stale").await;
    let id = review_id(&headers);
    store.fail_claims.store(1, SeqCst);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 202, "{r}");
    let dir = a.stop().await;
    clock.advance(Duration::from_secs(2 * 3600));
    let a = Airlock::start_on_store_at(config, dir, Arc::new(TestRules), store, clock).await;
    let r = support::eventually(
        "the stale approval to be settled",
        support::WAIT,
        || async {
            let r = a.admin("GET", &format!("/v1/reviews/{id}"), None).await.1;
            if r["state"] != "approved" {
                Ok(r)
            } else {
                Err(r.to_string())
            }
        },
    )
    .await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["result"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not sent: the approval went stale")),
        "{r}"
    );
    assert_eq!(r["result"]["unsent"], true, "{r}");
    assert_eq!(up.count(), 0, "never sent");
}

/// Review (defect 2): when the upstream answered and its outcome could not be stored, the
/// reviewer read "review store unavailable" and the status went nowhere. The answer says the
/// request was sent and names the status; once the claim's lease lapses the review reads
/// `outcome_unknown` (on redb too), never `executing` forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sent_request_whose_outcome_cannot_be_stored_says_it_was_sent() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, a, store) = setup_on_faulty_store(
        "[gate]\nexecution_timeout = \"1s\"\nexecution_lease = \"3s\"\nsweep_interval = \"1s\"\n",
    )
    .await;
    let (_, headers, _) = hold_delete(&a, "/status/201").await;
    let id = review_id(&headers);
    store.fail_answers.store(usize::MAX, SeqCst);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 503, "{r}");
    assert_eq!(r["error"], "outcome_not_recorded", "{r}");
    let message = r["message"].as_str().unwrap_or_default();
    assert!(
        message
            .starts_with("sent; the upstream answered 201 but the outcome could not be recorded"),
        "{r}"
    );
    assert_eq!(up.count(), 1);
    let state = support::eventually("the lapsed claim to be given up", support::WAIT, || async {
        let state = a.gate.get(&id).await.expect("get").state;
        if state.as_str() == "outcome_unknown" {
            Ok(state.as_str().to_string())
        } else {
            Err(state.as_str().to_string())
        }
    })
    .await;
    store.fail_answers.store(0, SeqCst);
    assert_eq!(state, "outcome_unknown", "given up once the lease lapsed");
    assert_eq!(up.count(), 1, "never re-sent");
}

/// Review (defect 3): when a held call's wait (`Airlock-Wait`) could not read its review, the
/// agent was answered with the snapshot taken at the hold: 423 "it has not been sent", while
/// the call had been approved and sent. The review is read once more (then the wait goes on
/// to the outcome); if that fails too, the answer says the state is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_that_cannot_read_its_review_never_says_not_sent() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, a, store) =
        setup_on_faulty_store("[gate]\nexecution_timeout = \"20s\"\nsweep_interval = \"1h\"\n")
            .await;
    for (fails, want) in [(1usize, 200u16), (2, 503)] {
        let before = up.count();
        let client = a.client();
        let agent = tokio::spawn(async move {
            let r = client
                .delete("https://api.github.com/repos/octo/stall")
                .header("airlock-wait", "2")
                .send()
                .await
                .expect("send");
            let headers = r.headers().clone();
            (r.status(), headers, r.text().await.expect("text"))
        });
        let id = loop {
            let pending = support::all_reviews(&a.gate, Some(ReviewState::Pending)).await;
            if let Some(r) = pending.first() {
                break r.id.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (addr, token) = (a.admin_addr, a.admin_token.clone());
        let path = format!("/v1/reviews/{id}/approve");
        let approving = tokio::spawn(async move {
            airlock::admin::client::call(addr, &token, http::Method::POST, &path, None).await
        });
        while up.count() == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Sent and stalled; the wait's read at its deadline fails.
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.fail_review_reads.store(fails, SeqCst);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        up.state.unstall.notify_waiters();
        let (status, headers, text) = agent.await.expect("agent");
        store.fail_review_reads.store(0, SeqCst);
        let _ = approving.await;
        assert_eq!(status.as_u16(), want, "{text}");
        assert!(!text.contains("not been sent"), "{text}");
        if want == 503 {
            assert_eq!(headers["airlock-reason"], "review_state_unknown", "{text}");
            assert_eq!(headers["retry-after"], "10", "poll the status URL then");
            assert_eq!(headers["airlock-review-id"], id.as_str());
            assert!(text.contains("may have been approved and sent"), "{text}");
        }
    }
}

/// Review (defect 8): a retry is tied to the attempt the reviewer saw: asked for with an
/// attempt count that another attempt has since changed, it is refused and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_for_an_attempt_no_longer_the_last_is_refused() {
    let (up, a) = setup("[gate]\nexecution_timeout = \"1s\"\n").await;
    up.state
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (_, headers, _) = hold_delete(&a, "/repos/octo/retry-seen").await;
    let id = review_id(&headers);
    let (_, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(r["state"], "failed", "{r}");
    // Another reviewer's retry: a second attempt.
    let (_, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(r["state"], "failed", "{r}");
    up.state
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (code, r) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/retry"),
            Some(serde_json::json!({"attempts": 1})),
        )
        .await;
    assert_eq!(code, 409, "{r}");
    assert_eq!(r["error"], "review_changed", "{r}");
    assert_eq!(up.count(), 0);
    // Given but unreadable: refused, never taken as not given (which would skip the check).
    for bad in [
        serde_json::json!("2"),
        serde_json::json!(2.0),
        serde_json::json!(-1),
    ] {
        let (code, r) = a
            .admin(
                "POST",
                &format!("/v1/reviews/{id}/retry"),
                Some(serde_json::json!({ "attempts": bad })),
            )
            .await;
        assert_eq!(code, 400, "{bad}: {r}");
        assert_eq!(r["error"], "bad_attempts", "{r}");
    }
    assert_eq!(up.count(), 0);
    let (code, r) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/retry"),
            Some(serde_json::json!({"attempts": 2})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(up.count(), 1);
}

/// Review (defect 7): `reviews approve` exited 0 for an approval whose send had not finished.
/// An approval recorded whose send did not start yet exits 5 and says Airlock retries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_approve_of_a_send_not_started_exits_5() {
    use std::sync::atomic::Ordering::SeqCst;
    let (_up, a, store) = setup_on_faulty_store("[gate]\nsweep_interval = \"1h\"\n").await;
    let (_, headers, _) = hold_delete(&a, "/repos/octo/cli-pending").await;
    let id = review_id(&headers);
    store.fail_claims.store(1, SeqCst);
    let out = run_cli(
        cli_config(&a),
        vec!["reviews".into(), "approve".into(), id.clone()],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(
        text.contains(&format!("{id}: approved; the send did not start yet")),
        "{text}"
    );
}

/// Review of session 19: an agent's status polls (without `wait`) had no bound: each decodes a
/// review on the blocking pool reviewers' approvals share. At most
/// `MAX_STATUS_READS_PER_AGENT` of one agent's reads run at once; the others wait their turn
/// and are answered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_has_a_bounded_number_of_status_reads_at_once() {
    use std::sync::atomic::Ordering::SeqCst;
    let max = airlock::gate::MAX_STATUS_READS_PER_AGENT;
    let (_up, a, store) = setup_on_faulty_store("").await;
    let (_, headers, _) = hold_delete(&a, "/repos/acme/polled").await;
    let id = review_id(&headers);
    let url = format!("http://airlock.local/v1/reviews/{id}");
    store.slow_review_reads_ms.store(300, SeqCst);
    let polls: Vec<_> = (0..max * 2 + 3)
        .map(|_| {
            let req = a.client().get(&url).send();
            tokio::spawn(async move { req.await.expect("send").status().as_u16() })
        })
        .collect();
    let mut codes = Vec::new();
    for p in polls {
        codes.push(p.await.expect("join"));
    }
    store.slow_review_reads_ms.store(0, SeqCst);
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let peak = store.slow_reads_peak.load(SeqCst);
    assert_eq!(peak, max, "reads at once (more were asked for)");
}

/// Review of session 20: an approved call's answer was stored and shown as it came, so a
/// credential the call minted (an installation token, a runner registration token, a webhook's
/// signing secret, a client secret) sat in the store and reached every reviewer, the CLI's
/// output and the agent. Secret-named fields are now masked before the answer is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_credential_an_approved_call_minted_is_masked_in_its_stored_answer() {
    const MINTED: &str = "ghs_MintedByTheUpstream0123456789";
    let (up, a) = setup("").await;
    let (status, headers, _) = hold_delete(&a, "/repos/acme/app/mint-token").await;
    assert_eq!(status, 423);
    let id = review_id(&headers);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(up.count(), 1);
    let (_, shown) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    let agent_view: serde_json::Value = a
        .client()
        .get(format!("http://airlock.local/v1/reviews/{id}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    for view in [&r, &shown, &agent_view] {
        let result = &view["result"];
        assert_eq!(result["secretsMasked"], 1, "{view}");
        let body = result["body"].as_str().expect("body");
        assert!(body.contains(r#""token":"[redacted]""#), "{body}");
        assert!(
            body.contains("2026-12-06T00:00:00Z"),
            "the rest is kept: {body}"
        );
        assert!(!view.to_string().contains(MINTED), "{view}");
    }
}

/// Review of session 20: a held request's headers spelled with `_` were stored and replayed on
/// approval (an upstream that folds `_` into `-` reads them as other headers). They are not
/// stored, so the approved call carries none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_requests_underscored_headers_are_not_replayed() {
    let (up, a) = setup("").await;
    let resp = a
        .client()
        .delete("https://api.github.com/repos/acme/underscored")
        .header("content_type", "application/x-www-form-urlencoded")
        .header("x-kept", "yes")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 423);
    let id = review_id(resp.headers());
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    let seen = up.requests();
    let sent = seen
        .iter()
        .find(|q| q.path_and_query == "/repos/acme/underscored")
        .expect("sent");
    assert_eq!(sent.header("x-kept"), Some("yes"));
    assert!(
        sent.headers.iter().all(|(k, _)| !k.contains('_')),
        "{:?}",
        sent.headers
    );
}

/// Review of session 22: a bulk rejection said `more: true` whenever exactly `limit` reviews were
/// processed, also when none was left; it now says so only when one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_rejection_of_exactly_what_is_left_says_no_more() {
    let (up, a) = setup("").await;
    let mut agent = String::new();
    for i in 0..2 {
        let (status, _, b) = hold_delete(&a, &format!("/repos/acme/exact-{i}")).await;
        assert_eq!(status, 423);
        let id = b["reviewId"].as_str().expect("id");
        let (_, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
        agent = r["agent"].as_str().expect("agent").to_string();
    }
    let (code, r) = a
        .admin(
            "POST",
            "/v1/reviews/reject-pending",
            Some(serde_json::json!({"agent": agent, "limit": 2})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["rejected"].as_array().map(Vec::len), Some(2), "{r}");
    assert_eq!(r["more"], false, "{r}");
    assert_eq!(up.count(), 0, "nothing sent");
}

/// An operator whose agent went wrong rejects all its pending reviews at once (API and CLI),
/// each rejected as one reject would (other agents' reviews untouched, nothing sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_pending_review_of_one_agent_is_rejected_at_once() {
    let (up, a) = setup("").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, _, b) = hold_delete(&a, &format!("/repos/acme/bulk-{i}")).await;
        assert_eq!(status, 423);
        ids.push(b["reviewId"].as_str().expect("id").to_string());
    }
    let (_, first) = a
        .admin("GET", &format!("/v1/reviews/{}", ids[0]), None)
        .await;
    let agent = first["agent"].as_str().expect("agent").to_string();
    let (code, r) = a
        .admin(
            "POST",
            "/v1/reviews/reject-pending",
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!((code, r["error"].as_str()), (400, Some("bad_agent")), "{r}");
    let (code, r) = a
        .admin(
            "POST",
            "/v1/reviews/reject-pending",
            Some(serde_json::json!({"agent": "someone-else"})),
        )
        .await;
    // No such agent, and no review names it: refused, not "rejected 0".
    assert_eq!(
        (code, r["error"].as_str()),
        (404, Some("unknown_agent")),
        "{r}"
    );
    let (code, r) = a
        .admin(
            "POST",
            "/v1/reviews/reject-pending",
            Some(serde_json::json!({"agent": agent, "limit": 2, "comment": "agent went wrong"})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["rejected"].as_array().map(Vec::len), Some(2), "{r}");
    assert_eq!(r["more"], true, "{r}");
    let out = run_cli(
        cli_config(&a),
        vec![
            "reviews".into(),
            "reject-pending".into(),
            "--agent".into(),
            agent.clone(),
        ],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("rejected 1 pending review(s)"), "{text}");
    for id in &ids {
        let (_, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
        assert_eq!(r["state"], "rejected", "{r}");
    }
    assert_eq!(up.count(), 0, "nothing sent");
}

/// Review of session 21: a final review kept what the agent sent as a secret (a password, a
/// card number, a `?token=`) in the store, in backups and in every reviewer's view until
/// retention removed it. Once executed, rejected or expired, those values and every echo of
/// them are erased from the record; the approved call was still sent with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_final_review_keeps_no_secret_the_agent_sent() {
    const TOKEN: &str = "qtoken_Agent0123456789";
    let body = format!(
        r#"{{"password":"pw1","card":{{"number":"4242424242424242","cvc":"123"}},"note":"see {TOKEN}"}}"#
    );
    let (up, _, clock, a) = setup_on_clock("[gate]\nsweep_interval = \"1h\"\n").await;
    let mut ids = Vec::new();
    for name in ["rejected", "executed", "expired"] {
        let resp = a
            .client()
            .delete(format!(
                "https://api.github.com/repos/acme/{name}?token={TOKEN}&per_page=1"
            ))
            .header("content-type", "application/json")
            .header("x-echo", TOKEN)
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 423);
        ids.push(review_id(resp.headers()));
    }
    // Pending: kept whole, since an approval sends it.
    let (_, pending) = a
        .admin("GET", &format!("/v1/reviews/{}", ids[0]), None)
        .await;
    assert!(pending.get("sealedSecrets").is_none(), "{pending}");
    let kept = pending["request"]["body"].as_str().expect("body");
    assert!(
        kept.contains(r#""password":"pw1""#) && kept.contains("4242424242424242"),
        "{kept}"
    );

    let (code, r) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{}/reject", ids[0]),
            Some(serde_json::json!({"comment": format!("no: {TOKEN}")})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{}/approve", ids[1]), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    assert_eq!(a.gate.sweep().await.expect("sweep"), 1);

    // The approved call went out with what the agent sent.
    let sent = up
        .requests()
        .into_iter()
        .find(|q| q.path_and_query.starts_with("/repos/acme/executed"))
        .expect("sent");
    assert_eq!(String::from_utf8_lossy(&sent.body), body);
    assert!(sent.path_and_query.contains(TOKEN));

    for (id, state) in ids.iter().zip(["rejected", "executed", "expired"]) {
        let (code, v) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["state"], state, "{v}");
        // password, card number, cvc and the query token.
        assert_eq!(v["sealedSecrets"], 4, "{v}");
        let stored = a
            .gate
            .store()
            .get(airlock::store::Tree::Reviews, id.as_bytes())
            .expect("read")
            .expect("there");
        let text = String::from_utf8_lossy(&stored).into_owned();
        let shown_body = v["request"]["body"].as_str().expect("body").to_string();
        for secret in [TOKEN, "pw1", "4242424242424242", "\"123\""] {
            for (what, t) in [
                ("stored", &text),
                ("shown", &v.to_string()),
                ("body", &shown_body),
            ] {
                assert!(!t.contains(secret), "{state}: {what} keeps {secret}: {t}");
            }
        }
        assert!(
            shown_body.contains(r#""password":"[redacted]""#),
            "{shown_body}"
        );
        // Review of session 23: the join's fingerprint hashed the request as sent, so a guess
        // at a short secret could be checked offline; the Content-Length told its length.
        assert!(!text.contains("fingerprint"), "{text}");
        assert!(
            !v["request"]["headers"]
                .to_string()
                .to_ascii_lowercase()
                .contains("content-length"),
            "{v}"
        );
        assert!(
            v["url"].as_str().expect("url").contains("per_page=1"),
            "{v}"
        );
        assert!(
            v["summary"]["warnings"]
                .to_string()
                .contains("erased from the record"),
            "{v}"
        );
    }
    // Review of session 23: the reviewer's comment quoting the token went into the audit log
    // as typed, and its entries are never erased.
    let export = a.audit_export().await;
    assert!(export.contains("\"comment\":\"no: [redacted"), "{export}");
    assert!(!export.contains(TOKEN), "{export}");
}

/// The audit log's `decision` entries naming review `id`, as exported.
async fn decisions_naming(a: &Airlock, id: &str) -> Vec<serde_json::Value> {
    a.audit_export()
        .await
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "decision" && e["review_id"] == id)
        .collect()
}

/// Review of session 21: Octokit's retry plugin resends a held 423 three times (PyGithub a 5xx
/// ten times), and each identical copy became a pending review of its own: a reviewer could
/// approve a copy of a call that had already run. An identical request of the same agent now
/// joins the review still pending: the same 423 naming the same review, one review, and a
/// `decision` entry of its own that says it joined. A different request is held apart, and once
/// the review is rejected the same request is a new call, held anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identical_retry_joins_the_pending_review() {
    let (up, a) = setup("").await;
    let (s1, h1, _) = hold_delete(&a, "/repos/octo/demo").await;
    let (s2, h2, b2) = hold_delete(&a, "/repos/octo/demo").await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (423, 423));
    let id = review_id(&h1);
    assert_eq!(review_id(&h2), id, "the retry names the first review");
    assert_eq!(b2["reviewId"], id.as_str(), "{b2}");
    assert_eq!(h2["airlock-outcome"], "ESCALATE");
    let (_, other, _) = hold_delete(&a, "/repos/octo/other").await;
    assert_ne!(review_id(&other), id, "another request is another review");
    let pending = support::all_reviews(&a.gate, Some(ReviewState::Pending)).await;
    assert_eq!(pending.len(), 2, "{pending:?}");

    let entries = decisions_naming(&a, &id).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries[0].get("joined").is_none(), "{entries:?}");
    assert_eq!(entries[1]["joined"], true, "{entries:?}");
    assert_ne!(entries[0]["decision_id"], entries[1]["decision_id"]);

    let (code, _) = a
        .admin("POST", &format!("/v1/reviews/{id}/reject"), None)
        .await;
    assert_eq!(code, 200);
    let (status, again, _) = hold_delete(&a, "/repos/octo/demo").await;
    assert_eq!(status, 423);
    assert_ne!(review_id(&again), id, "after a rejection it is held anew");
    let (_, v) = a
        .admin("GET", &format!("/v1/reviews/{}", review_id(&again)), None)
        .await;
    assert_eq!(v["state"], "pending", "{v}");
    assert_eq!(up.count(), 0);
}

/// A Stripe refund with `Idempotency-Key: key` and `body`, ready to send.
fn refund_with_key(a: &Airlock, key: &str, body: &str) -> reqwest::RequestBuilder {
    a.client()
        .post("https://api.stripe.com/v1/refunds")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("idempotency-key", key)
        .body(body.to_string())
}

/// Review of session 21: stripe-python with a timeout shorter than the hold's wait resent the
/// refund with the same library-made `Idempotency-Key`, and each copy became a pending review
/// (three seen). The same key with the same request now joins the review (its telemetry header,
/// which changes on every attempt, does not make another call); approved, it is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stripe_retry_with_its_idempotency_key_joins_the_review() {
    let (up, a) = setup("").await;
    let mut ids = Vec::new();
    for attempt in 0..3 {
        let resp = refund_with_key(&a, "stripe-py-key-1", "charge=ch_1&amount=5000")
            .header(
                "x-stripe-client-telemetry",
                format!("{{\"last_request_metrics\":{{\"request_duration_ms\":{attempt}}}}}"),
            )
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 423);
        ids.push(review_id(resp.headers()));
    }
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let pending = support::all_reviews(&a.gate, Some(ReviewState::Pending)).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{}/approve", ids[0]), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(up.count(), 1);
    assert_eq!(
        up.requests()[0].header("idempotency-key"),
        Some("stripe-py-key-1")
    );
}

/// Review of session 21: a Stripe `Idempotency-Key` reused for another request was held as a
/// second review beside the first, where Stripe refuses such a request. While the key's review
/// may still be sent, another body or path under it is answered as Stripe answers: 400 with
/// `error.type` `idempotency_error` (and `Stripe-Should-Retry: false`), and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stripe_key_reused_for_another_request_is_an_idempotency_error() {
    let (up, a) = setup("").await;
    let first = refund_with_key(&a, "key-2", "charge=ch_1&amount=5000")
        .send()
        .await
        .expect("send");
    assert_eq!(first.status(), 423);
    let id = review_id(first.headers());
    let before = a.audit_export().await.lines().count();
    for (path, body) in [
        ("/v1/refunds", "charge=ch_1&amount=9000"),
        ("/v1/refunds/other", "charge=ch_1&amount=5000"),
    ] {
        let resp = a
            .client()
            .post(format!("https://api.stripe.com{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("idempotency-key", "key-2")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400, "{path} {body}");
        assert_eq!(resp.headers()["stripe-should-retry"], "false");
        assert_eq!(resp.headers()["airlock-reason"], "idempotency_key_reused");
        let v: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["type"], "idempotency_error", "{v}");
        assert_eq!(v["reviewId"], id.as_str(), "{v}");
    }
    let all = support::all_reviews(&a.gate, None).await;
    assert_eq!(all.len(), 1, "nothing else stored: {all:?}");
    assert_eq!(a.audit_export().await.lines().count(), before);
    // Another key is another call.
    let other = refund_with_key(&a, "key-3", "charge=ch_1&amount=9000")
        .send()
        .await
        .expect("send");
    assert_eq!(other.status(), 423);
    assert_ne!(review_id(other.headers()), id);
    assert_eq!(up.count(), 0);
}

/// Review of session 21: a retry that waited (`Airlock-Wait`, or a rule's `wait`) became a
/// review of its own, so approving the first never answered it: its wait ran out with a 423
/// naming the copy. The retry's wait now attaches to the review it joined and returns that
/// review's outcome: the upstream's own answer once it is approved and sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_retry_gets_the_outcome_of_the_review_it_joined() {
    let (up, a) = setup("").await;
    let first = a
        .client()
        .delete("https://api.github.com/status/204")
        .send()
        .await
        .expect("send");
    assert_eq!(first.status(), 423);
    let id = review_id(first.headers());
    let client = a.client();
    let waiting = tokio::spawn(async move {
        client
            .delete("https://api.github.com/status/204")
            .header("airlock-wait", "20")
            .send()
            .await
            .expect("send")
    });
    support::eventually("the retry to join the review", support::WAIT, || async {
        (decisions_naming(&a, &id).await.len() == 2).then_some(())
    })
    .await;
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    let resp = waiting.await.expect("join");
    assert_eq!(resp.status(), 204, "the upstream's own answer");
    assert_eq!(resp.headers()["airlock-outcome"], "EXECUTED");
    assert_eq!(review_id(resp.headers()), id);
    assert_eq!(up.count(), 1, "sent once");
}

/// Review of session 21: each retry counted against `gate.max_pending_per_agent`, so at the cap
/// an agent's retry of a call it had held was refused 429 as if it were a new call. A retry
/// joins its review before the cap is read: the cap counts reviews, not retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_at_the_pending_cap_joins_its_review() {
    let (up, a) = setup("[gate]\nmax_pending_per_agent = 1\n").await;
    let (s1, h1, _) = hold_delete(&a, "/repos/acme/one").await;
    let (s2, h2, b2) = hold_delete(&a, "/repos/acme/one").await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (423, 423), "{b2}");
    assert_eq!(review_id(&h2), review_id(&h1));
    let (s3, _, b3) = hold_delete(&a, "/repos/acme/two").await;
    assert_eq!(s3, 429, "{b3}");
    assert_eq!(up.count(), 0);
}

/// Review of session 21 (what a retry joins): an agent's resend of a call whose send ended
/// `outcome_unknown` became a new pending review, which a reviewer could approve while the call
/// may already have run, and a human retry of the first could send it a third time. While the
/// review may still be retried (before its deadline) the resend joins it and hears its
/// outcome; past the deadline it is a new call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_of_a_call_whose_outcome_is_unknown_joins_it_until_its_deadline() {
    let (up, _config, clock, a) = setup_on_clock("[gate]\nexecution_timeout = \"1s\"\n").await;
    let id = hold_stalled_refund(&a).await;
    let (_, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(r["state"], "outcome_unknown", "{r}");
    let resend = || {
        a.client()
            .post("https://api.stripe.com/v1/refunds/stall")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("charge=ch_1&amount=5000")
            .send()
    };
    let resp = resend().await.expect("send");
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["airlock-outcome"], "OUTCOME_UNKNOWN");
    assert_eq!(review_id(resp.headers()), id);
    assert_eq!(support::all_reviews(&a.gate, None).await.len(), 1);

    clock.advance(Duration::from_secs(24 * 3600 + 1));
    let resp = resend().await.expect("send");
    assert_eq!(resp.status(), 423);
    assert_ne!(review_id(resp.headers()), id);
    assert_eq!(up.count(), 1, "sent once, by the approval");
}

/// Review of session 22: each identical resend joined the review with a `decision` entry filed
/// under it, and the send read all of a review's entries: 10,000 resends in 10 s made the
/// approved call fail "not sent" for good, and nothing bounded the log's growth. Resends are
/// filed apart from the review's own entries, and past `MOST_JOINS` a resend is refused (429,
/// nothing recorded); the approval still sends the call once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resends_past_the_limit_are_refused_and_the_review_still_sends() {
    let (up, a) = setup("").await;
    let (s1, h1, _) = hold_delete(&a, "/repos/acme/loop").await;
    assert_eq!(s1, 423);
    let id = review_id(&h1);
    for _ in 0..airlock::gate::MOST_JOINS {
        let (s, h, b) = hold_delete(&a, "/repos/acme/loop").await;
        assert_eq!(s, 423, "{b}");
        assert_eq!(review_id(&h), id);
    }
    let (s, h, b) = hold_delete(&a, "/repos/acme/loop").await;
    assert_eq!(s, 429, "{b}");
    assert!(h.contains_key("retry-after"));
    assert_eq!(b["error"], "too_many_resends", "{b}");
    assert!(b["message"].as_str().unwrap_or("").contains(&id), "{b}");

    let audit = a.gate.audit().clone();
    let rid = id.clone();
    let (own, joins) = tokio::task::spawn_blocking(move || {
        (
            audit.entries_for_review(&rid, 10_000).expect("own"),
            audit.join_count(&rid, 10_000).expect("joins"),
        )
    })
    .await
    .expect("join");
    assert_eq!(joins, airlock::gate::MOST_JOINS);
    assert!(own.iter().all(|e| e["joined"] != true), "{own:?}");

    let (_, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(up.count(), 1);
}

#[path = "gate/sends.rs"]
mod sends;

#[path = "gate/bounded.rs"]
mod bounded;

/// Review of session 23: a `failed` or `outcome_unknown` review past its deadline can never be
/// retried, yet kept what the agent sent as a secret in clear in the store until retention
/// removed it (90 days by default, never with `retention = "forever"`). Once its deadline
/// passes, the sweeper closes it and seals it as a final review is, with an audit entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_review_past_its_deadline_keeps_no_secret() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = Airlock::config("[gate]\nsweep_interval = \"1h\"\n", dir.path(), &up, HOSTS);
    // A port nothing listens on: the approved call fails, nothing sent.
    config
        .upstream
        .resolve
        .insert("api.github.com".into(), support::spare_addr());
    let clock = Arc::new(ManualClock::default());
    clock.advance(Duration::from_secs(CLOCK_START_S));
    let a = Airlock::start_with_parts(config, dir, Arc::new(TestRules), clock.clone()).await;
    let body = r#"{"password":"hunter2pw","card":{"number":"4000056655665556"}}"#;
    let id = hold_json_delete(&a, "/repos/acme/gone", body).await;
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "failed", "{r}");
    // Before its deadline a retry sends it: kept whole, and nothing to close.
    let (_, v) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert!(
        v["request"]["body"].to_string().contains("hunter2pw"),
        "{v}"
    );
    assert_eq!(a.gate.close_retry_windows().await.expect("close"), 0);

    clock.advance(Duration::from_secs(24 * 3600 + 1));
    assert_eq!(a.gate.close_retry_windows().await.expect("close"), 1);
    assert_eq!(
        a.gate.close_retry_windows().await.expect("again"),
        0,
        "once"
    );
    let (_, v) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["sealedSecrets"], 2, "{v}");
    for secret in ["hunter2pw", "4000056655665556"] {
        assert!(!v.to_string().contains(secret), "kept {secret}: {v}");
    }
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(code, 409, "past its deadline no retry: {r}");
    // Nor once this clock steps back before the deadline (or another instance's clock is
    // behind the one that closed it): what is stored is sealed, not the call the agent made.
    clock
        .0
        .fetch_sub(2 * 3600 * 1000, std::sync::atomic::Ordering::SeqCst);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(code, 409, "a sealed review is never retried: {r}");
    assert_eq!(v["retryClosed"], true, "{v}");
    let closed: Vec<serde_json::Value> = a
        .audit_export()
        .await
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["review_id"] == id.as_str() && e["from"] == "failed" && e["to"] == "failed")
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["by"], "expiry", "{closed:?}");
    assert_eq!(up.count(), 0, "nothing sent");
}

#[path = "gate/wakeups.rs"]
mod wakeups;

/// Review of session 23: a credential inside a URL the agent sent (a webhook's `?token=`, a
/// `user:pass@`) stayed whole in a sealed review: its body, arguments and explanation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_final_review_keeps_no_credential_inside_a_url() {
    let (_up, _, _clock, a) = setup_on_clock("[gate]\nsweep_interval = \"1h\"\n").await;
    let body = r#"{"config":{"url":"https://hook.example/in?token=HOOKURLTOKEN_ddd&x=1"},"mirror":"https://me:PASSW0RD_99@git.example/r.git"}"#;
    let id = hold_json_delete(&a, "/repos/acme/hooked", body).await;
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/reject"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    let (_, v) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(v["sealedSecrets"], 2, "{v}");
    let shown = v.to_string();
    for secret in ["HOOKURLTOKEN_ddd", "PASSW0RD_99"] {
        assert!(!shown.contains(secret), "kept {secret}: {shown}");
    }
    assert!(
        shown.contains("hook.example/in?token=[redacted]&x=1"),
        "{shown}"
    );
}

/// Review of session 24: a resend read the review to join, then wrote its `decision` entry
/// whatever became of the review meanwhile, and was answered "held, not sent" from what it
/// read, although the review had been rejected (or executed) in between. The join now lands
/// only while the review is as read; else the resend reads again and is held anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_does_not_join_a_review_decided_while_it_looked() {
    let (up, a, store) = setup_on_faulty_store("").await;
    let (_, h1, _) = hold_delete(&a, "/repos/octo/demo").await;
    let id = review_id(&h1);
    let inner = store.inner.clone();
    let decided = id.clone();
    *store.after_join_read.lock().expect("hook") = Some(Box::new(move || {
        use airlock::store::{Batch, Tree};
        let record = inner
            .get(Tree::Reviews, decided.as_bytes())
            .expect("read")
            .expect("the review");
        let text = String::from_utf8(record).expect("json");
        let rejected = text.replace("\"state\":\"pending\"", "\"state\":\"rejected\"");
        assert_ne!(rejected, text, "the record names its state");
        let mut batch = Batch::default();
        batch.put(Tree::Reviews, decided.as_bytes(), rejected.as_bytes());
        inner.commit(vec![batch]).expect("write");
    }));
    let (status, h2, body) = hold_delete(&a, "/repos/octo/demo").await;
    assert_eq!(status, 423, "{body}");
    assert!(
        store.after_join_read.lock().expect("hook").is_none(),
        "the hook ran"
    );
    let again = review_id(&h2);
    assert_ne!(again, id, "held anew, not joined to the rejected review");
    let (_, v) = a.admin("GET", &format!("/v1/reviews/{again}"), None).await;
    assert_eq!(v["state"], "pending", "{v}");
    assert!(
        decisions_naming(&a, &id)
            .await
            .iter()
            .all(|e| e.get("joined").is_none()),
        "no join entry names the decided review"
    );
    assert_eq!(up.count(), 0);
}

/// Review of session 24: a claim's lease is set by this host's clock, checked against the
/// database's only at start and every ten minutes, so a clock stepped in between set leases
/// the other instances misjudged (one could give up a running send as lapsed, and a retry
/// send it again). A step is now noticed before a claim (the wall clock against the monotonic
/// one), the clock checked again, and a clock far off claims nothing until it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clock_stepped_after_start_claims_nothing_until_it_is_back() {
    support::init();
    let Some((_, up, dir, config)) = on_postgres().await else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    /// The system's clocks, the wall one stepped by hand by `offset` ms.
    #[derive(Default)]
    struct Stepped {
        offset: std::sync::atomic::AtomicI64,
    }
    impl airlock::gate::Clock for Stepped {
        fn now_ms(&self) -> u64 {
            let real = airlock::gate::SystemClock.now_ms() as i64;
            (real + self.offset.load(std::sync::atomic::Ordering::SeqCst)) as u64
        }
        fn monotonic_ms(&self) -> u64 {
            airlock::gate::SystemClock.monotonic_ms()
        }
    }
    let clock = Arc::new(Stepped::default());
    let a = Airlock::start_with_parts(config, dir, Arc::new(TestRules), clock.clone()).await;
    let (status, _, held) = hold_delete(&a, "/repos/acme/stepped").await;
    assert_eq!(status, 423);
    let id = held["reviewId"].as_str().expect("id").to_string();
    // Stepped a minute back (15 s allowed): the approval lands, the send waits.
    clock
        .offset
        .store(-60_000, std::sync::atomic::Ordering::SeqCst);
    let (_, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_ne!(r["state"], "executed", "{r}");
    assert_eq!(up.count(), 0, "nothing sent by a clock a minute off");
    // Back in step: the sweeper's next check finds it, and the approved call is sent once.
    clock.offset.store(0, std::sync::atomic::Ordering::SeqCst);
    support::eventually("the approved call to be sent", support::WAIT, || async {
        (up.count() == 1).then_some(()).ok_or(up.count())
    })
    .await;
}
