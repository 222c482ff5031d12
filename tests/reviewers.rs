//! Approval policies (issue 6): reviewers with their own tokens, quorum of distinct reviewers,
//! approver groups, no self-approval by the agent's owner, extending a deadline, and the
//! operator's admin token unable to impersonate reviewers once reviewers exist.

mod support;

use std::sync::Arc;

use airlock::rules::Classifier;
use airlock::rules::{Action, ApprovalPolicy, RequestHead, Verdict};
use support::{Airlock, FakeUpstream};

const HOSTS: &[&str] = &["api.github.com"];

/// DELETE /quorum/… needs two reviewers; DELETE /sre/… needs group sre; others: one reviewer.
struct PolicyRules;

impl Classifier for PolicyRules {
    fn inspects(&self, host: &str) -> bool {
        HOSTS.contains(&host)
    }
    fn needs_body(&self, _: &RequestHead<'_>) -> bool {
        false
    }
    fn evaluate(&self, head: &RequestHead<'_>, _: Option<&[u8]>) -> Verdict {
        let approval = if head.path_and_query.starts_with("/quorum") {
            Some(ApprovalPolicy {
                required: 2,
                ..Default::default()
            })
        } else if head.path_and_query.starts_with("/sre") {
            Some(ApprovalPolicy {
                approvers: vec!["group:sre".into()],
                ..Default::default()
            })
        } else {
            None
        };
        Verdict {
            action: if head.method == "DELETE" {
                Action::Escalate
            } else {
                Action::Allow
            },
            rule_id: Some("test:1".into()),
            service: Some("github".into()),
            tool: Some("test.delete".into()),
            class: None,
            reason_codes: vec!["rule_match".into()],
            explanation: "test".into(),
            params: Default::default(),
            expiry: None,
            wait: None,
            approval,
        }
    }
}

struct Setup {
    a: Airlock,
    up: FakeUpstream,
    agent_token: String,
    tokens: std::collections::HashMap<&'static str, String>,
}

async fn setup() -> Setup {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let agent_token = airlock::agents::generate_token();
    let mut toml = airlock::agents::config_block(
        "bot",
        &airlock::agents::token_digest(&agent_token),
        &[],
        Some("alice"),
    );
    let mut tokens = std::collections::HashMap::new();
    for (name, groups) in [("alice", ""), ("bob", ""), ("carol", "\"sre\"")] {
        let t = airlock::agents::generate_token();
        toml.push_str(&format!(
            "\n[[reviewers]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\ngroups = [{groups}]\n",
            hex::encode(airlock::agents::token_digest(&t))
        ));
        tokens.insert(name, t);
    }
    let dir = tempfile::tempdir().expect("dir");
    let config = Airlock::config(&toml, dir.path(), &up, HOSTS);
    let a = Airlock::start_with_parts(
        config,
        dir,
        Arc::new(PolicyRules) as Arc<dyn Classifier>,
        Arc::new(airlock::gate::SystemClock),
    )
    .await;
    Setup {
        a,
        up,
        agent_token,
        tokens,
    }
}

impl Setup {
    async fn hold(&self, path: &str) -> String {
        let cert = reqwest::Certificate::from_pem(self.a.ca_pem.as_bytes()).expect("ca");
        let client = reqwest::Client::builder()
            .proxy(
                reqwest::Proxy::all(format!("http://bot:{}@{}", self.agent_token, self.a.addr))
                    .expect("proxy"),
            )
            .tls_certs_only([cert])
            .build()
            .expect("client");
        let r = client
            .delete(format!("https://api.github.com{path}"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 423);
        r.headers()["airlock-review-id"]
            .to_str()
            .expect("id")
            .to_string()
    }

    async fn as_reviewer(
        &self,
        who: &str,
        id: &str,
        action: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let token = if who == "operator" {
            self.a.admin_token.clone()
        } else {
            self.tokens[who].clone()
        };
        airlock::admin::client::call(
            self.a.admin_addr,
            &token,
            http::Method::POST,
            &format!("/v1/reviews/{id}/{action}"),
            Some(body),
        )
        .await
        .expect("admin call")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quorum_of_two_needs_two_distinct_reviewers() {
    let s = setup().await;
    let id = s.hold("/quorum/repo").await;
    let none = serde_json::json!({});
    let (st, r) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["state"], "pending");
    assert_eq!(s.up.count(), 0);
    let (st, r) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 403, "same reviewer twice: {r}");
    // The operator token cannot pose as another reviewer once reviewers exist.
    let (st, _) = s
        .as_reviewer(
            "operator",
            &id,
            "approve",
            serde_json::json!({"reviewer": "bob"}),
        )
        .await;
    assert_eq!(st, 200, "counted as 'admin', a second distinct approver");
    let (_, review) = s.a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(review["state"], "executed", "{review}");
    assert_eq!(s.up.count(), 1);

    let id2 = s.hold("/quorum/other").await;
    let (st, _) = s.as_reviewer("bob", &id2, "approve", none.clone()).await;
    assert_eq!(st, 202);
    let (st, r) = s.as_reviewer("carol", &id2, "approve", none).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "executed");
    assert_eq!(s.up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_cannot_approve_its_own_agent_and_groups_are_enforced() {
    let s = setup().await;
    let none = serde_json::json!({});
    let id = s.hold("/repos/x").await;
    let (st, r) = s.as_reviewer("alice", &id, "approve", none.clone()).await;
    assert_eq!(st, 403, "{r}");
    assert!(r.to_string().contains("self-approval"), "{r}");
    let (st, _) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 200);
    assert_eq!(s.up.count(), 1);

    let id = s.hold("/sre/db").await;
    let (st, r) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 403, "{r}");
    let (st, _) = s.as_reviewer("bob", &id, "reject", none.clone()).await;
    assert_eq!(st, 403, "not an approver: may not reject either");
    let (st, r) = s.as_reviewer("carol", &id, "approve", none).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(s.up.count(), 2);
    let (st, _) = airlock::admin::client::call(
        s.a.admin_addr,
        "rvw_not_a_token",
        http::Method::GET,
        "/v1/reviews",
        None,
    )
    .await
    .expect("call");
    assert_eq!(st, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extending_a_deadline() {
    let s = setup().await;
    let id = s.hold("/repos/slow").await;
    let (_, before) = s.a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    let (st, after) = s
        .as_reviewer("bob", &id, "extend", serde_json::json!({"by": "2h"}))
        .await;
    assert_eq!(st, 200, "{after}");
    assert!(
        after["expiresAt"].as_str() > before["expiresAt"].as_str(),
        "{before} {after}"
    );
    let (st, _) = s
        .as_reviewer("bob", &id, "extend", serde_json::json!({"by": "soon"}))
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .as_reviewer("bob", &id, "reject", serde_json::json!({}))
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .as_reviewer("bob", &id, "extend", serde_json::json!({"by": "1h"}))
        .await;
    assert_eq!(st, 409, "a decided review cannot be extended");
}

/// A retry sends the request, so it is held to the approval rules: the agent's owner may not
/// retry a failed review of its own agent; an approver may (regression: one check for both).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_cannot_retry_its_own_agent_either() {
    use std::sync::atomic::Ordering;
    let s = setup().await;
    let none = serde_json::json!({});
    s.up.state.down.store(true, Ordering::SeqCst);
    let id = s.hold("/repos/retry").await;
    let (st, r) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "failed", "{r}");
    s.up.state.down.store(false, Ordering::SeqCst);
    let (st, r) = s.as_reviewer("alice", &id, "retry", none.clone()).await;
    assert_eq!(st, 403, "{r}");
    assert!(r.to_string().contains("self-approval"), "{r}");
    assert_eq!(s.up.count(), 0);
    let (st, r) = s.as_reviewer("bob", &id, "retry", none).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(s.up.count(), 1);
}
