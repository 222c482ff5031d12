//! The LangGraph example (`examples/langgraph/agent.py`) end to end, offline: an in-process
//! Airlock with the shipped catalog, one agent and GitHub/Stripe credentials, the fake upstream
//! counting calls, and the example's scripted (non-LLM) model in separate Python processes
//! sharing a SQLite checkpoint. The held call pauses the graph with `interrupt()`; nothing
//! reaches the upstream until a reviewer decides in Airlock; a resumed run reads the outcome
//! from `airlock.local` and the approved call reaches the upstream exactly once.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::{path_str, Airlock, FakeUpstream};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/langgraph/agent.py");
const GITHUB_SECRET: &str = "ghp_LANGGRAPHexampleRealToken0000000";
const STRIPE_SECRET: &str = "sk_test_LANGGRAPHexampleRealKey00000";
const AGENT: &str = "lg-agent";

struct Setup {
    airlock: Airlock,
    up: FakeUpstream,
    token: String,
}

/// Fails (never skips) when the example's Python packages are missing.
fn require_langgraph() {
    let probe = std::process::Command::new("python3")
        .args([
            "-c",
            "import langgraph, langgraph.checkpoint.sqlite, langchain_core, requests",
        ])
        .output();
    let ok = matches!(&probe, Ok(o) if o.status.success());
    assert!(
        ok,
        "the LangGraph example needs its packages: \
         python3 -m pip install -r examples/langgraph/requirements.txt (.ci/run installs them); {}",
        probe
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_else(|e| format!("python3: {e}"))
    );
}

async fn setup() -> Setup {
    support::init();
    require_langgraph();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let secret = |name: &str, value: &str| {
        let p = dir.path().join(name);
        support::write_secret(&p, value);
        path_str(&p)
    };
    let token = airlock::agents::generate_token();
    let toml = format!(
        "{}[credentials.github]\nfile = {:?}\n[credentials.stripe]\nfile = {:?}\n",
        airlock::agents::config_block(AGENT, &airlock::agents::token_digest(&token), &[], None),
        secret("github-token", GITHUB_SECRET),
        secret("stripe-key", STRIPE_SECRET),
    );
    let config = Airlock::config(
        &toml,
        dir.path(),
        &up,
        &["api.github.com", "api.stripe.com"],
    );
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let airlock =
        Airlock::start_with_parts(config, dir, catalog, Arc::new(airlock::gate::SystemClock)).await;
    Setup { airlock, up, token }
}

/// Runs the example with the scripted model; returns its exit code and JSON-line events.
async fn agent(s: &Setup, script: &str, args: &[&str]) -> (i32, Vec<Value>) {
    let db = s.airlock.dir.path().join("checkpoints.sqlite");
    let out = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .args(["--scripted", "--script", script, "--db", &path_str(&db)])
        .args(["--thread", script])
        .args(args)
        .env(
            "HTTPS_PROXY",
            format!("http://{AGENT}:{}@{}", s.token, s.airlock.addr),
        )
        .env("REQUESTS_CA_BUNDLE", s.airlock.ca_file())
        .env("NO_PROXY", "")
        .env("no_proxy", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("agent finished")
        .expect("python3 runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    for secret in [GITHUB_SECRET, STRIPE_SECRET] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stderr}")))
        .collect();
    (out.status.code().unwrap_or(-1), events)
}

fn find<'a>(events: &'a [Value], event: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == event).collect()
}

fn count(up: &FakeUpstream, method: &str, path: &str) -> usize {
    up.requests()
        .iter()
        .filter(|r| r.method == method && r.path_and_query == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_delete_pauses_the_graph_and_runs_once_after_approval() {
    let s = setup().await;
    let a = &s.airlock;

    // Phase 1: read passes, the delete is held, the graph pauses in interrupt().
    let (code, ev) = agent(&s, "github", &["run", "--repo", "octo/demo"]).await;
    assert_eq!(code, 0, "{ev:?}");
    let read = find(&ev, "tool_result");
    assert_eq!(read.len(), 1, "{ev:?}");
    assert_eq!(read[0]["tool"], "github_get_repo");
    assert_eq!(read[0]["status"], 200);
    let last = ev.last().expect("events");
    assert_eq!(last["event"], "interrupt", "{ev:?}");
    assert_eq!(last["tool"], "github_delete_repo");
    assert_eq!(last["airlockTool"], "github.repos.delete");
    let id = last["reviewId"].as_str().expect("reviewId").to_string();
    assert!(id.starts_with("rev_"), "{id}");
    assert!(last["question"].as_str().is_some_and(|q| q.contains(&id)));
    assert_eq!(find(&ev, "held")[0]["reviewId"], id.as_str());

    let (code, review) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(code, 200);
    assert_eq!(review["state"], "pending");
    assert_eq!(review["agent"], AGENT);
    assert_eq!(count(&s.up, "GET", "/repos/octo/demo"), 1);
    assert_eq!(count(&s.up, "DELETE", "/repos/octo/demo"), 0, "held");

    // Resumed before anyone decided: still pending, so the graph asks again.
    let (code, ev) = agent(&s, "github", &["--wait", "1", "resume"]).await;
    assert_eq!(code, 0, "{ev:?}");
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["event"], "interrupt");
    assert_eq!(ev[0]["reviewId"], id.as_str());
    assert_eq!(ev[0]["lastCheck"]["state"], "pending");
    assert_eq!(count(&s.up, "DELETE", "/repos/octo/demo"), 0, "still held");

    let (code, r) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/approve"),
            Some(serde_json::json!({"comment": "scratch repo"})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed");
    let deletes: Vec<_> =
        s.up.requests()
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].header("authorization"),
        Some(format!("Bearer {GITHUB_SECRET}").as_str()),
        "Airlock injected the credential the agent never had"
    );

    // Phase 2: the resumed run reads the outcome from Airlock and finishes.
    let (code, ev) = agent(&s, "github", &["--wait", "5", "resume"]).await;
    assert_eq!(code, 0, "{ev:?}");
    let outcome = find(&ev, "review_outcome");
    assert_eq!(outcome.len(), 1, "{ev:?}");
    assert_eq!(outcome[0]["reviewId"], id.as_str());
    assert_eq!(outcome[0]["state"], "executed");
    assert_eq!(outcome[0]["upstreamStatus"], 200);
    assert_eq!(outcome[0]["outcome"], "EXECUTED", "{ev:?}");
    assert!(
        outcome[0].get("decision").is_none() && !outcome[0].to_string().contains("scratch repo"),
        "the agent never sees who decided or their comments: {ev:?}"
    );
    assert!(find(&ev, "interrupt").is_empty(), "{ev:?}");
    assert_eq!(ev.last().expect("events")["event"], "answer");
    assert_eq!(
        count(&s.up, "DELETE", "/repos/octo/demo"),
        1,
        "exactly once"
    );

    // Resuming or re-running the finished thread sends nothing.
    let (code, ev) = agent(&s, "github", &["resume"]).await;
    assert_eq!((code, ev.len()), (0, 1), "{ev:?}");
    assert_eq!(ev[0]["event"], "nothing_to_resume");
    let (code, ev) = agent(&s, "github", &["run"]).await;
    assert_eq!(code, 2, "{ev:?}");
    assert_eq!(
        count(&s.up, "DELETE", "/repos/octo/demo"),
        1,
        "exactly once"
    );
    let (_, all) = a.admin("GET", "/v1/reviews", None).await;
    assert_eq!(
        all["reviews"].as_array().map(Vec::len),
        Some(1),
        "no new review"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_refund_is_reported_and_never_sent() {
    let s = setup().await;
    let (code, ev) = agent(&s, "stripe", &["run", "--charge", "ch_123"]).await;
    assert_eq!(code, 0, "{ev:?}");
    assert_eq!(find(&ev, "tool_result")[0]["status"], 200, "{ev:?}");
    let last = ev.last().expect("events");
    assert_eq!(last["event"], "interrupt", "{ev:?}");
    assert_eq!(last["airlockTool"], "stripe.refunds.create");
    let id = last["reviewId"].as_str().expect("reviewId").to_string();

    let (code, r) = s
        .airlock
        .admin(
            "POST",
            &format!("/v1/reviews/{id}/reject"),
            Some(serde_json::json!({"comment": "no refunds today"})),
        )
        .await;
    assert_eq!(code, 200, "{r}");

    let (code, ev) = agent(&s, "stripe", &["--wait", "5", "resume"]).await;
    assert_eq!(code, 0, "{ev:?}");
    let outcome = find(&ev, "review_outcome");
    assert_eq!(outcome.len(), 1, "{ev:?}");
    assert_eq!(outcome[0]["state"], "rejected");
    assert_eq!(outcome[0]["outcome"], "REJECTED", "{ev:?}");
    assert_eq!(outcome[0]["upstreamStatus"], Value::Null);
    assert!(
        !outcome[0].to_string().contains("no refunds today"),
        "the reviewer's comment stays in Airlock: {ev:?}"
    );
    assert_eq!(count(&s.up, "GET", "/v1/charges/ch_123"), 1);
    assert_eq!(count(&s.up, "POST", "/v1/refunds"), 0, "never sent");
}
