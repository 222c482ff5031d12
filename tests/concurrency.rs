//! Concurrency (issue 7): 200 signed-in agents at once, mixed allowed and gated traffic, while
//! two reviewers approve and reject the same reviews concurrently. Every allowed call is
//! answered, every gated call ends executed (exactly once upstream) or rejected (never sent),
//! and the whole run finishes (no deadlock) within a generous bound.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use support::{Airlock, FakeUpstream};

const AGENTS: usize = 200;
const READS_PER_AGENT: usize = 5;
const HOLDS_PER_AGENT: usize = 2;
const HOSTS: &[&str] = &["api.github.com"];

fn agent_client(a: &Airlock, name: &str, token: &str) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(a.ca_pem.as_bytes()).expect("ca");
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{name}:{token}@{}", a.addr)).expect("proxy"))
        .tls_certs_only([cert])
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// One agent: reads (must be answered 200) and deletes (must be held, 423). Returns the held
/// review ids by path.
async fn agent(client: reqwest::Client, n: usize) -> Vec<(String, String)> {
    let mut held = Vec::new();
    for i in 0..READS_PER_AGENT.max(HOLDS_PER_AGENT) {
        if i < READS_PER_AGENT {
            let resp = client
                .get(format!("https://api.github.com/repos/acme/a{n}-{i}"))
                .send()
                .await
                .expect("read answered");
            assert_eq!(resp.status(), 200, "allowed read of agent {n}");
            let body: serde_json::Value = resp.json().await.expect("json");
            assert_eq!(body["path"], format!("/repos/acme/a{n}-{i}"));
        }
        if i < HOLDS_PER_AGENT {
            let path = format!("/repos/acme/del-{n}-{i}");
            let resp = client
                .delete(format!("https://api.github.com{path}"))
                .send()
                .await
                .expect("delete answered");
            assert_eq!(resp.status(), 423, "delete of agent {n} is held");
            let body: serde_json::Value = resp.json().await.expect("json");
            held.push((path, body["reviewId"].as_str().expect("id").to_string()));
        }
    }
    held
}

/// A reviewer that keeps deciding pending reviews until `stop`: `approve_even` picks the verdict
/// from the id's last hex digit, so two reviewers disagree on about half of them and race.
async fn reviewer(a: Arc<Airlock>, name: &'static str, approve_even: bool, stop: Arc<AtomicBool>) {
    loop {
        let (code, list) = a.admin("GET", "/v1/reviews?state=pending", None).await;
        assert_eq!(code, 200);
        let ids: Vec<String> = list["reviews"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|r| r["reviewId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() && stop.load(Ordering::SeqCst) {
            return;
        }
        let decisions = ids.iter().map(|id| {
            let even = id
                .chars()
                .last()
                .and_then(|c| c.to_digit(16))
                .is_some_and(|d| d % 2 == 0);
            let action = if even == approve_even {
                "approve"
            } else {
                "reject"
            };
            let a = a.clone();
            let id = id.clone();
            async move {
                let (code, r) = a
                    .admin(
                        "POST",
                        &format!("/v1/reviews/{id}/{action}"),
                        Some(serde_json::json!({ "reviewer": name })),
                    )
                    .await;
                assert!(
                    code == 200 || code == 409,
                    "{name} {action} {id}: {code} {r}"
                );
            }
        });
        join_all(decisions).await;
        // Pacing, not synchronisation: a reviewer re-reads the queue a few times per second.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_agents_and_racing_reviewers() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let tokens: Vec<String> = (0..AGENTS)
        .map(|_| airlock::agents::generate_token())
        .collect();
    let toml: String = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            airlock::agents::config_block(
                &format!("agent{i}"),
                &airlock::agents::token_digest(t),
                &[],
                None,
            )
        })
        .collect();
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a = Arc::new(Airlock::start_classified(&toml, &up, HOSTS, catalog).await);

    let stop = Arc::new(AtomicBool::new(false));
    let reviewers = [
        tokio::spawn(reviewer(a.clone(), "alice", true, stop.clone())),
        tokio::spawn(reviewer(a.clone(), "bob", false, stop.clone())),
    ];
    let run = async {
        let agents = tokens.iter().enumerate().map(|(n, t)| {
            let client = agent_client(&a, &format!("agent{n}"), t);
            tokio::spawn(agent(client, n))
        });
        let held: Vec<(String, String)> = join_all(agents)
            .await
            .into_iter()
            .flat_map(|r| r.expect("agent task"))
            .collect();
        stop.store(true, Ordering::SeqCst);
        for r in reviewers {
            r.await.expect("reviewer task");
        }
        held
    };
    let held = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("no deadlock: the run finished");
    assert_eq!(held.len(), AGENTS * HOLDS_PER_AGENT);
    assert_eq!(
        held.iter().map(|(_, id)| id).collect::<HashSet<_>>().len(),
        held.len()
    );

    let mut sent: HashMap<String, usize> = HashMap::new();
    let mut reads = 0;
    for r in up.requests() {
        match r.method.as_str() {
            "DELETE" => *sent.entry(r.path_and_query).or_insert(0) += 1,
            "GET" => reads += 1,
            _ => {}
        }
    }
    assert_eq!(
        reads,
        AGENTS * READS_PER_AGENT,
        "every allowed read reached the upstream once"
    );
    let (executed, rejected) = (
        support::all_reviews(&a.gate, Some(airlock::gate::ReviewState::Executed)).await,
        support::all_reviews(&a.gate, Some(airlock::gate::ReviewState::Rejected)).await,
    );
    assert_eq!(
        executed.len() + rejected.len(),
        held.len(),
        "every review was decided one way"
    );
    let executed_ids: HashSet<&str> = executed.iter().map(|r| r.id.as_str()).collect();
    for (path, id) in &held {
        let n = sent.get(path).copied().unwrap_or(0);
        if executed_ids.contains(id.as_str()) {
            assert_eq!(n, 1, "{path} executed exactly once");
        } else {
            assert_eq!(n, 0, "rejected {path} never sent");
        }
    }
    assert!(
        !executed.is_empty() && !rejected.is_empty(),
        "both verdicts happened"
    );
    for r in &executed {
        assert!(r.agent.as_deref().is_some_and(|n| n.starts_with("agent")));
    }
}

/// Review of session 21: identical requests of one agent at once (a client's retries racing its
/// first attempt) each became a review. Eight identical DELETEs at once, without a pending cap
/// (so no per-agent turn puts them in line: only the join entry's compare-and-swap, in the
/// review's own batch, decides), hold one review, and all eight answers name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_holds_at_once_make_one_review() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a =
        Airlock::start_classified("[gate]\nmax_pending_per_agent = 0\n", &up, HOSTS, catalog).await;
    let sends = (0..8).map(|_| {
        // A connection each, so the eight are read by different workers.
        let client = a.client();
        tokio::spawn(async move {
            let resp = client
                .delete("https://api.github.com/repos/octo/demo")
                .send()
                .await
                .expect("send");
            let id = resp
                .headers()
                .get("airlock-review-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (resp.status().as_u16(), id)
        })
    });
    let answers: Vec<(u16, Option<String>)> = join_all(sends)
        .await
        .into_iter()
        .map(|r| r.expect("send task"))
        .collect();
    assert!(answers.iter().all(|(s, _)| *s == 423), "{answers:?}");
    let ids: HashSet<_> = answers.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids.len(), 1, "one review named: {answers:?}");
    let all = support::all_reviews(&a.gate, None).await;
    assert_eq!(all.len(), 1, "one review stored: {all:?}");
    assert_eq!(Some(all[0].id.clone()), answers[0].1);
    assert_eq!(up.count(), 0);
}
