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
        } else if head.path_and_query.starts_with("/both") {
            // Two rules' policies merged: one of group sre, and dave.
            ApprovalPolicy::strictest(
                Some(&ApprovalPolicy {
                    approvers: vec!["group:sre".into()],
                    ..Default::default()
                }),
                Some(&ApprovalPolicy {
                    approvers: vec!["dave".into()],
                    ..Default::default()
                }),
            )
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
            spend_usd: None,
            also_tools: Vec::new(),
        }
    }
}

struct Setup {
    a: Airlock,
    up: FakeUpstream,
    /// The store under Airlock, to make its audit writes fail.
    store: Arc<support::FaultyStore>,
    /// Agent name -> proxy token: `bot` (owner alice) and `loner` (no owner).
    agents: std::collections::HashMap<&'static str, String>,
    tokens: std::collections::HashMap<&'static str, String>,
    /// The config as written: the agents, then one block per reviewer.
    agents_toml: String,
    reviewer_toml: Vec<(&'static str, String)>,
}

const REVIEWERS: &[(&str, &str)] = &[
    ("alice", ""),
    ("bob", ""),
    ("carol", "\"sre\""),
    ("dave", ""),
];

async fn setup() -> Setup {
    setup_with("").await
}

/// Agents `bot` (owned by alice) and `loner`; reviewers alice, bob, carol (sre) and dave;
/// `extra` TOML goes first (e.g. an `[admin]` table).
async fn setup_with(extra: &str) -> Setup {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let mut agents = std::collections::HashMap::new();
    let mut agents_toml = format!("{extra}\n");
    for (name, owner) in [("bot", Some("alice")), ("loner", None)] {
        let t = airlock::agents::generate_token();
        agents_toml.push_str(&airlock::agents::config_block(
            name,
            &airlock::agents::token_digest(&t),
            &[],
            owner,
        ));
        agents.insert(name, t);
    }
    let mut tokens = std::collections::HashMap::new();
    let mut reviewer_toml = Vec::new();
    for (name, groups) in REVIEWERS {
        let t = airlock::agents::generate_token();
        reviewer_toml.push((
            *name,
            format!(
                "\n[[reviewers]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\ngroups = [{groups}]\n",
                hex::encode(airlock::agents::token_digest(&t))
            ),
        ));
        tokens.insert(*name, t);
    }
    let toml: String = std::iter::once(agents_toml.clone())
        .chain(reviewer_toml.iter().map(|(_, b)| b.clone()))
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let config = Airlock::config(&toml, dir.path(), &up, HOSTS);
    let store = support::FaultyStore::open(&config.store.path);
    let a = Airlock::start_on_store(config, dir, Arc::new(PolicyRules), store.clone()).await;
    Setup {
        a,
        up,
        store,
        agents,
        tokens,
        agents_toml,
        reviewer_toml,
    }
}

impl Setup {
    async fn hold(&self, path: &str) -> String {
        self.hold_as("bot", path).await
    }

    async fn hold_as(&self, agent: &str, path: &str) -> String {
        let cert = reqwest::Certificate::from_pem(self.a.ca_pem.as_bytes()).expect("ca");
        let client = reqwest::Client::builder()
            .proxy(
                reqwest::Proxy::all(format!(
                    "http://{agent}:{}@{}",
                    self.agents[agent], self.a.addr
                ))
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

    /// Rewrites the config file with only the reviewers in `keep` and reloads the reviewers
    /// from it, as `airlock serve` does on SIGHUP.
    fn reload_keeping(&self, keep: &[&str]) -> airlock::server::PeopleReload {
        let toml: String = std::iter::once(self.agents_toml.clone())
            .chain(
                self.reviewer_toml
                    .iter()
                    .filter(|(n, _)| keep.contains(n))
                    .map(|(_, b)| b.clone()),
            )
            .collect();
        let path = self.a.dir.path().join("airlock.toml");
        std::fs::write(&path, toml).expect("write config");
        airlock::server::reload_people(&self.a.gate, &path, &PolicyRules).expect("reload")
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
    // The operator token is no reviewer: once reviewers exist it may not approve at all
    // (`[admin] may_approve` is off), whatever name it gives.
    let (st, r) = s
        .as_reviewer(
            "operator",
            &id,
            "approve",
            serde_json::json!({"reviewer": "carol"}),
        )
        .await;
    assert_eq!(st, 403, "{r}");
    assert!(r.to_string().contains("may_approve"), "{r}");
    let (st, r) = s.as_reviewer("dave", &id, "approve", none.clone()).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(s.up.count(), 1);

    let id2 = s.hold("/quorum/other").await;
    let (st, _) = s.as_reviewer("bob", &id2, "approve", none.clone()).await;
    assert_eq!(st, 202);
    let (st, r) = s.as_reviewer("carol", &id2, "approve", none).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "executed");
    assert_eq!(s.up.count(), 2);
}

/// An approval answered "could not be recorded; not sent" (its audit entry failed) was not
/// recorded at all (the approval and its entry are one commit): it does not count toward the
/// quorum, a second reviewer's approval leaves the review pending, and bob may approve again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_the_audit_log_missed_does_not_count_toward_the_quorum() {
    use std::sync::atomic::Ordering::SeqCst;
    let s = setup().await;
    let id = s.hold("/quorum/repo").await;
    let none = serde_json::json!({});
    s.store.fail_audit.store(true, SeqCst);
    let (st, r) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 503, "{r}");
    assert!(r.to_string().contains("not sent"), "{r}");
    s.store.fail_audit.store(false, SeqCst);
    let (_, r) = s.as_reviewer("dave", &id, "approve", none.clone()).await;
    assert_eq!(r["state"], "pending", "{r}");
    assert_eq!(s.up.count(), 0, "sent without its quorum");
    let (_, r) = s.as_reviewer("bob", &id, "approve", none).await;
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(s.up.count(), 1);
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

/// Session 17: a request two rules held with different approver lists needed one of them
/// only. Each rule's quorum is now its own and all must be met: carol (sre) alone leaves it
/// pending, dave's approval then sends it; bob, on neither list, may not decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merged_policy_needs_every_rules_quorum() {
    let s = setup().await;
    let none = serde_json::json!({});
    let id = s.hold("/both/repo").await;
    let (st, r) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 403, "{r}");
    let (st, r) = s.as_reviewer("carol", &id, "approve", none.clone()).await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["state"], "pending", "{r}");
    assert_eq!(r["approvalProgress"], "0/1 (dave), 1/1 (group:sre)", "{r}");
    assert_eq!(s.up.count(), 0);
    let (st, r) = s.as_reviewer("dave", &id, "approve", none).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(s.up.count(), 1);
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
    assert!(after.get("message").is_none(), "{after}");
    // Past the 7-day ceiling the deadline stops there, and the answer says so (it was silent).
    let (st, capped) = s
        .as_reviewer("bob", &id, "extend", serde_json::json!({"by": "30d"}))
        .await;
    assert_eq!(st, 200, "{capped}");
    let note = capped["message"].as_str().unwrap_or_default();
    assert!(note.contains("at most 7days ahead of now"), "{capped}");
    let (st, _) = s
        .as_reviewer("bob", &id, "extend", serde_json::json!({"by": "soon"}))
        .await;
    assert_eq!(st, 400);
    // Extending follows the approval policy: the agent's owner may not keep her own agent's
    // request waiting, nor may the admin token while it may not approve.
    let (st, r) = s
        .as_reviewer("alice", &id, "extend", serde_json::json!({"by": "2h"}))
        .await;
    assert_eq!(st, 403, "{r}");
    assert!(r.to_string().contains("self-approval"), "{r}");
    let (st, r) = s
        .as_reviewer("operator", &id, "extend", serde_json::json!({"by": "2h"}))
        .await;
    assert_eq!(st, 403, "{r}");
    let (st, _) = s
        .as_reviewer("bob", &id, "reject", serde_json::json!({}))
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .as_reviewer("bob", &id, "extend", serde_json::json!({"by": "1h"}))
        .await;
    assert_eq!(st, 409, "a decided review cannot be extended");
    // A deadline beyond the 7-day ceiling (a rule's own expiry) is never moved earlier.
    let id = s.hold("/repos/far").await;
    let far = s.a.gate.get(&id).await.expect("get");
    let mut moved = far.clone();
    moved.expires_at_ms += 30 * 86_400_000;
    let mut b = airlock::store::Batch::default();
    b.put(
        airlock::store::Tree::Reviews,
        id.as_bytes(),
        &moved.encode().expect("encode"),
    );
    assert!(airlock::store::Store::apply(s.store.inner.as_ref(), b).expect("apply"));
    let (st, r) = s
        .as_reviewer("bob", &id, "extend", serde_json::json!({"by": "1h"}))
        .await;
    assert_eq!(st, 200, "{r}");
    let after = s.a.gate.get(&id).await.expect("get");
    assert_eq!(
        after.expires_at_ms, moved.expires_at_ms,
        "extending shortened it"
    );
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

/// Issue 21 item 3: the admin token is one approver whatever name it gives. With
/// `[admin] may_approve = true` it may approve under a rule that needs one approval, never
/// toward a quorum of two (a reviewer who also holds the token would meet it alone), and it
/// cannot approve a request of an agent that has an owner (it names no person, so it cannot
/// show it is not that owner). Rejecting is fail-safe: the admin token may always reject.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_token_counts_once_and_never_passes_a_self_approval_check() {
    let s = setup_with("[admin]\nmay_approve = true\n").await;
    let none = serde_json::json!({});
    let id = s.hold_as("loner", "/quorum/a").await;
    let (st, r) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 202, "one approval of two: {r}");
    let (st, r) = s
        .as_reviewer(
            "operator",
            &id,
            "approve",
            serde_json::json!({"reviewer": "x"}),
        )
        .await;
    assert_eq!(
        st, 403,
        "bob holding the admin token too is still one person: {r}"
    );
    assert!(r.to_string().contains("2 different people"), "{r}");
    assert_eq!(s.up.count(), 0);
    let (st, r) = s.as_reviewer("alice", &id, "approve", none.clone()).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "executed");
    assert_eq!(s.up.count(), 1);

    // A rule needing one approval: the admin token may approve it, recorded as the admin.
    let id = s.hold_as("loner", "/repos/single").await;
    let (st, r) = s
        .as_reviewer(
            "operator",
            &id,
            "approve",
            serde_json::json!({"reviewer": "x"}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(
        r["approvals"][0]["by"], "admin",
        "it names no reviewer: {r}"
    );
    assert_eq!(s.up.count(), 2);

    // bot's owner is alice: the admin token cannot approve for her.
    let id = s.hold("/repos/owned").await;
    let (st, r) = s
        .as_reviewer("operator", &id, "approve", none.clone())
        .await;
    assert_eq!(st, 403, "{r}");
    assert!(r.to_string().contains("names no person"), "{r}");
    let (st, r) = s.as_reviewer("operator", &id, "reject", none).await;
    assert_eq!(st, 200, "rejecting is fail-safe: {r}");
    assert_eq!(r["state"], "rejected");
    assert_eq!(s.up.count(), 2);
}

/// With no reviewers configured the admin token is the only credential, and still one approver:
/// naming "x" and then "y" does not make two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_reviewers_the_admin_token_is_still_one_approver() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let a = Airlock::start_classified("", &up, HOSTS, Arc::new(PolicyRules)).await;
    let r = a
        .client()
        .delete("https://api.github.com/quorum/x")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 423);
    let id = r.headers()["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string();
    let path = format!("/v1/reviews/{id}/approve");
    let (st, r) = a
        .admin("POST", &path, Some(serde_json::json!({"reviewer": "x"})))
        .await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["approvals"][0]["by"], "x", "the name given is recorded");
    let (st, r) = a
        .admin("POST", &path, Some(serde_json::json!({"reviewer": "y"})))
        .await;
    assert_eq!(st, 403, "{r}");
    let (_, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(r["state"], "pending", "{r}");
    assert_eq!(up.count(), 0);
}

/// Issue 21 item 5: a retry sends the request again, so it needs the rule's quorum afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_needs_the_quorum_afresh() {
    use std::sync::atomic::Ordering;
    let s = setup().await;
    let none = serde_json::json!({});
    s.up.state.down.store(true, Ordering::SeqCst);
    let id = s.hold("/quorum/retry").await;
    let (st, _) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 202);
    let (st, r) = s.as_reviewer("carol", &id, "approve", none.clone()).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "failed", "{r}");
    s.up.state.down.store(false, Ordering::SeqCst);
    let (st, r) = s.as_reviewer("bob", &id, "retry", none.clone()).await;
    assert_eq!(st, 202, "one retry approval of two: {r}");
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["retryApprovals"][0]["by"], "bob", "{r}");
    assert_eq!(s.up.count(), 0, "not sent below the quorum");
    let (st, r) = s.as_reviewer("bob", &id, "retry", none.clone()).await;
    assert_eq!(st, 403, "the same reviewer twice: {r}");
    let (st, r) = s.as_reviewer("alice", &id, "retry", none.clone()).await;
    assert_eq!(st, 403, "the owner: {r}");
    let (st, r) = s.as_reviewer("dave", &id, "retry", none).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(s.up.count(), 1);
    let retried: Vec<&str> = r["retries"]
        .as_array()
        .expect("retries")
        .iter()
        .filter_map(|d| d["by"].as_str())
        .collect();
    assert_eq!(retried, ["bob", "dave"], "{r}");
}

/// Issue 21 item 4: removing a reviewer (config reload, as on SIGHUP) takes effect at once: her
/// token is refused and her approval on a pending review no longer counts toward its quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_reviewer_is_refused_and_her_approvals_stop_counting() {
    let s = setup().await;
    let none = serde_json::json!({});
    let id = s.hold("/quorum/removal").await;
    let (st, _) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 202);
    let reload = s.reload_keeping(&["alice", "carol", "dave"]);
    assert_eq!(reload.removed, vec!["bob".to_string()]);
    let (st, _) = s.as_reviewer("bob", &id, "approve", none.clone()).await;
    assert_eq!(st, 401, "bob's token is refused at once");
    let (_, r) = s.a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(r["approvals"][0]["by"], "bob", "{r}");
    assert_eq!(r["approvals"][0]["counts"], false, "{r}");
    assert!(
        r["approvals"][0]["notCounted"]
            .as_str()
            .is_some_and(|w| w.contains("no longer a reviewer")),
        "{r}"
    );
    assert_eq!(r["approvalsCounted"], 0, "{r}");
    // carol's approval is the first that counts: still one short.
    let (st, r) = s.as_reviewer("carol", &id, "approve", none.clone()).await;
    assert_eq!(st, 202, "bob's approval no longer makes the quorum: {r}");
    assert_eq!(s.up.count(), 0);
    let (st, r) = s.as_reviewer("dave", &id, "approve", none).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "executed");
    assert_eq!(s.up.count(), 1);
    // A file that does not load keeps the reviewers in force.
    let path = s.a.dir.path().join("broken.toml");
    std::fs::write(&path, "[[reviewers]]\nname = \n").expect("write");
    assert!(airlock::server::reload_people(&s.a.gate, &path, &PolicyRules).is_err());
    assert!(s.a.gate.people().current().by_name("carol").is_some());
}

/// Reviewers alice (group sre) and bob, as config.
fn alice_and_bob() -> String {
    // Each her own token: two reviewers with one are a config error.
    [("alice", "\"sre\"", "ab"), ("bob", "", "cd")]
        .iter()
        .map(|(name, groups, digest)| {
            format!(
                "[[reviewers]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\ngroups = [{groups}]\n",
                digest.repeat(32)
            )
        })
        .collect()
}

/// A rules file whose one rule (at `t.toml:5`, tool `test.delete`) has approval `policy`.
fn policy_rule(policy: &str) -> String {
    format!(
        "[service]\nname = \"github\"\nhosts = [\"api.github.com\"]\n\n\
         [[rule]]\ntool = \"test.delete\"\nmethod = \"DELETE\"\npath = \"/repos/{{owner}}/{{repo}}\"\n\
         class = \"irreversible\"\naction = \"escalate\"\n{policy}\n"
    )
}

/// Issue 21 item 3: a rule whose quorum the configured reviewers can never meet, or whose
/// approver list names nobody who exists, stops Airlock at start with the rule's file:line and
/// tool; names are compared normalized, and names that collide are refused in the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsatisfiable_approval_rules_and_colliding_names_are_config_errors() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let reviewers = alice_and_bob();
    let rule = policy_rule;
    let cases = [
        ("approvals = 3", Some("approvals = 3, but only 2")),
        (
            "approvals = 2\napprovers = [\"group:SRE\"]",
            Some("approvals = 2, but only 1"),
        ),
        (
            "approvers = [\"carol\", \"group:ops\"]",
            Some("names nobody"),
        ),
        ("approvals = 2\napprovers = [\"ALICE \", \"Bob\"]", None),
    ];
    for (policy, want) in cases {
        let dir = tempfile::tempdir().expect("dir");
        let rules = dir.path().join("rules");
        std::fs::create_dir_all(&rules).expect("mkdir");
        std::fs::write(rules.join("t.toml"), rule(policy)).expect("write");
        let catalog = airlock::rules::LiveCatalog::load(Some(rules.clone()), Default::default())
            .expect("catalog");
        let config = Airlock::config(&reviewers, dir.path(), &up, HOSTS);
        let started =
            airlock::server::start(&config, catalog, Arc::new(airlock::gate::SystemClock)).await;
        match (started, want) {
            (Err(e), Some(want)) => {
                let e = e.to_string();
                assert!(e.contains(want), "{policy}: {e}");
                assert!(e.contains("t.toml:5: tool test.delete"), "{policy}: {e}");
            }
            (Ok(server), None) => server.shutdown(std::time::Duration::from_secs(1)).await,
            (Ok(_), Some(want)) => panic!("{policy}: started, want an error with {want:?}"),
            (Err(e), None) => panic!("{policy}: {e}"),
        }
    }
    // Names that are the same person once normalized.
    let twice = format!(
        "[[reviewers]]\nname = \"Alice\"\ntoken_sha256 = \"{}\"\n[[reviewers]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n",
        "ab".repeat(32),
        "cd".repeat(32)
    );
    let e = airlock::config::Config::from_toml("t.toml", &twice)
        .expect_err("collision")
        .to_string();
    assert!(e.contains("same person"), "{e}");
}

/// Issue 21 item 3, after start: reloaded rules (SIGHUP, or a changed rules file) are checked
/// against the reviewers in force, and a rule they could never approve keeps the old rules, the
/// error naming the rule; `airlock config check` runs the same check and exits non-zero, naming
/// the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsatisfiable_rules_are_refused_on_reload_and_by_config_check() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let reviewers = alice_and_bob();
    let dir = tempfile::tempdir().expect("dir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("mkdir");
    let file = rules.join("t.toml");
    std::fs::write(&file, policy_rule("approvals = 2")).expect("write");
    let catalog = airlock::rules::LiveCatalog::load(Some(rules.clone()), Default::default())
        .expect("catalog");
    let config = Airlock::config(&reviewers, dir.path(), &up, HOSTS);
    let server = airlock::server::start(
        &config,
        catalog.clone(),
        Arc::new(airlock::gate::SystemClock),
    )
    .await
    .expect("start");
    let required = || {
        catalog
            .approval_policies()
            .iter()
            .map(|p| p.policy.required)
            .collect::<Vec<_>>()
    };
    assert_eq!(required(), vec![2]);

    // Three approvals with two reviewers: refused, by the SIGHUP path and by the file watcher's.
    std::fs::write(&file, policy_rule("approvals = 3")).expect("write");
    let e = catalog
        .reload_rules()
        .expect("a rules directory reloads")
        .expect_err("refused");
    assert!(e.contains("approvals = 3, but only 2"), "{e}");
    assert!(e.contains("t.toml:5: tool test.delete"), "{e}");
    assert!(
        matches!(
            catalog.reload("test"),
            Err(airlock::rules::RulesError::Policy(_))
        ),
        "the file watcher's reload is checked too"
    );
    assert_eq!(required(), vec![2], "the old rules stay in force");
    // An approvers list naming nobody: refused the same way.
    std::fs::write(&file, policy_rule("approvers = [\"carol\"]")).expect("write");
    let e = catalog
        .reload_rules()
        .expect("reloads")
        .expect_err("refused");
    assert!(e.contains("names nobody"), "{e}");
    assert_eq!(required(), vec![2]);
    // Rules the reviewers can meet are taken.
    std::fs::write(&file, policy_rule("approvals = 1")).expect("write");
    assert_eq!(catalog.reload_rules(), Some(Ok(1)));
    assert_eq!(required(), vec![1]);
    server.shutdown(std::time::Duration::from_secs(1)).await;

    // `airlock config check` on the config file that names these rules.
    let check = |policy: &str| {
        std::fs::write(&file, policy_rule(policy)).expect("write");
        let cfg = dir.path().join("airlock.toml");
        std::fs::write(
            &cfg,
            format!(
                "[rules]\ndir = {:?}\n{reviewers}",
                support::path_str(&rules)
            ),
        )
        .expect("write config");
        std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--config")
            .arg(&cfg)
            .args(["config", "check"])
            .current_dir(dir.path())
            .env_remove("AIRLOCK_CONFIG")
            .output()
            .expect("run airlock")
    };
    let out = check("approvals = 3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("approval policies") && stderr.contains("approvals = 3, but only 2"),
        "{stderr}"
    );
    assert!(stderr.contains("t.toml:5: tool test.delete"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("config OK"));
    let out = check("approvals = 2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("config OK"));

    // The real signal: a running `airlock serve` sent SIGHUP after its rules changed to ones the
    // reviewers could never approve refuses them and logs why, naming the rule.
    std::fs::write(&file, policy_rule("approvals = 2")).expect("write");
    let (store, ca, log) = (
        dir.path().join("serve-data"),
        dir.path().join("serve-certs"),
        dir.path().join("serve.log"),
    );
    let cfg = dir.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [tls]\nca_dir = {:?}\n[store]\npath = {:?}\n[rules]\ndir = {:?}\n{reviewers}",
            support::path_str(&ca),
            support::path_str(&store),
            support::path_str(&rules),
        ),
    )
    .expect("write config");
    let serve = support::process::Serve::spawn(&cfg, &store, &ca, &log);
    std::fs::write(&file, policy_rule("approvals = 3")).expect("write");
    // SAFETY: plain syscall, signalling the child this test started.
    unsafe { libc::kill(serve.child.id() as libc::pid_t, libc::SIGHUP) };
    let refused = support::eventually_blocking(
        "the SIGHUP reload refused in serve's log",
        std::time::Duration::from_secs(10),
        || {
            std::fs::read_to_string(&log).ok().and_then(|text| {
                text.lines()
                    .find(|l| l.contains("rules reload refused"))
                    .map(str::to_string)
            })
        },
    );
    assert!(
        refused.contains("approvals = 3, but only 2") && refused.contains("t.toml:5"),
        "{refused}"
    );
    serve.stop();
}

/// Review of session 21: there was no `reviewers rotate` (there is `agents rotate`), so a
/// reviewer's leaked token could only be replaced by removing and adding her, which drops her
/// approvals on pending reviews. `airlock reviewers rotate alice` prints a new token once; a
/// running serve refuses the old one within a second, takes the new one, and alice's approval
/// given before still counts toward the quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_reviewers_token_keeps_her_approvals() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::write(rules.join("t.toml"), policy_rule("approvals = 2")).expect("write");
    let (cfg, store, ca) = support::process::write_config(
        dir.path(),
        "airlock.toml",
        "redb",
        &up,
        HOSTS,
        &format!("[rules]\ndir = {:?}\n", support::path_str(&rules)),
    );
    let mut tokens = std::collections::HashMap::new();
    for name in ["alice", "bob"] {
        let (ok, out, err) = support::process::cli(&cfg, &["reviewers", "add", name]);
        assert!(ok, "{err}");
        tokens.insert(name, out.trim().to_string());
    }
    let serve = support::process::Serve::spawn(&cfg, &store, &ca, &dir.path().join("serve.log"));
    let held = serve
        .client()
        .delete("https://api.github.com/repos/acme/app")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(held.status(), 423);
    let id = held.headers()["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string();
    let call = |token: String, method: http::Method, path: String| {
        let admin = serve.admin;
        async move {
            let body = (method == http::Method::POST).then(|| serde_json::json!({}));
            airlock::admin::client::call(admin, &token, method, &path, body)
                .await
                .expect("admin call")
        }
    };
    let approve = format!("/v1/reviews/{id}/approve");
    let (st, r) = call(tokens["alice"].clone(), http::Method::POST, approve.clone()).await;
    assert_eq!(st, 202, "one of two: {r}");

    let (ok, out, err) = support::process::cli(&cfg, &["reviewers", "rotate", "alice"]);
    assert!(ok, "{err}");
    let new = out.trim().to_string();
    assert!(new.starts_with("rvw_") && new != tokens["alice"], "{out}");
    let show = format!("/v1/reviews/{id}");
    let old = tokens["alice"].clone();
    support::eventually(
        "the old token refused",
        std::time::Duration::from_secs(10),
        || {
            let (old, show) = (old.clone(), show.clone());
            let call = &call;
            async move { (call(old, http::Method::GET, show).await.0 == 401).then_some(()) }
        },
    )
    .await;
    let (st, r) = call(new, http::Method::GET, show).await;
    assert_eq!(st, 200, "the new token works: {r}");
    assert_eq!(
        r["approvalsCounted"], 1,
        "alice's approval still counts: {r}"
    );
    let (st, r) = call(tokens["bob"].clone(), http::Method::POST, approve).await;
    assert_eq!(st, 200, "bob's approval makes the quorum with alice's: {r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(up.count(), 1);
    let (ok, _, err) = support::process::cli(&cfg, &["reviewers", "rotate", "nobody"]);
    assert!(!ok && err.contains("no reviewer named"), "{err}");
    serve.stop();
}
