//! The audit log end to end (issue 5) and fail-closed store behaviour: decisions, transitions
//! and executions land in a verifiable chain; tampered exports fail `airlock audit verify`
//! naming where; when the audit log or the review store cannot be written, gated calls get 503
//! while allowed reads keep flowing.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use support::{path_str, Airlock, FakeUpstream, FaultyStore};

const HOSTS: &[&str] = &["api.github.com", "api.stripe.com"];
const REAL_GITHUB: &str = "ghp_AUDITtestCredential987654321";

async fn start(extra: &str) -> (Airlock, FakeUpstream, Arc<FaultyStore>) {
    start_with("", extra).await
}

/// [`start`] with more `[audit]` settings.
async fn start_with(audit: &str, extra: &str) -> (Airlock, FakeUpstream, Arc<FaultyStore>) {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("gh");
    support::write_secret(&secret, REAL_GITHUB);
    let toml = format!(
        "[audit]\ncheckpoint_every = 4\n{audit}[credentials.github]\nfile = {:?}\n{extra}",
        path_str(&secret)
    );
    let config = Airlock::config(&toml, dir.path(), &up, HOSTS);
    let store = FaultyStore::open(&config.store.path);
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a = Airlock::start_on_store(config, dir, catalog, store.clone()).await;
    (a, up, store)
}

/// An allowed read through Airlock; returns its status.
async fn read(client: &reqwest::Client, url: &str) -> u16 {
    client
        .get(url)
        .send()
        .await
        .expect("read")
        .status()
        .as_u16()
}

/// A DELETE the catalog holds; returns its review id.
async fn held_delete(client: &reqwest::Client) -> String {
    support::held_delete(client, "https://api.github.com/repos/octo/demo").await
}

async fn export(a: &Airlock) -> String {
    a.audit_export().await
}

fn entries(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn verify_cli(file: &std::path::Path, pubkey: &str) -> (bool, String) {
    verify_cli_with(file, pubkey, &[])
}

/// `airlock audit verify FILE --pubkey KEY EXTRA...`: (success, stdout + stderr).
fn verify_cli_with(file: &std::path::Path, pubkey: &str, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "verify"])
        .arg(file)
        .args(["--pubkey", pubkey])
        .args(extra)
        .output()
        .expect("run airlock");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_transitions_and_executions_form_a_verifiable_chain() {
    let (a, up, _store) = start("").await;
    let client = a.client();
    // An allowed read, a held delete (approved), a held delete (rejected), a blocked-or-held charge.
    assert_eq!(
        read(
            &client,
            "https://api.github.com/repos/octo/demo?access_token=SHOULD_NOT_BE_LOGGED"
        )
        .await,
        200
    );
    let mut ids = Vec::new();
    for repo in ["one", "two"] {
        let r = client
            .delete(format!("https://api.github.com/repos/octo/{repo}"))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 423);
        ids.push(
            r.headers()["airlock-review-id"]
                .to_str()
                .expect("id")
                .to_string(),
        );
    }
    let (s, _) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{}/approve", ids[0]),
            Some(serde_json::json!({"reviewer": "alice", "comment": "expected cleanup"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = a
        .admin(
            "POST",
            &format!("/v1/reviews/{}/reject", ids[1]),
            Some(serde_json::json!({"reviewer": "bob", "comment": "no"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(up.count(), 2, "the read and the approved delete");
    // The background allow entry is written asynchronously: wait until it is on the record.
    let text = support::eventually(
        "the ALLOW entry in the audit log",
        support::WAIT,
        || async {
            let text = export(&a).await;
            let logged = entries(&text)
                .iter()
                .any(|e| e["kind"] == "decision" && e["outcome"] == "ALLOW");
            if logged {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert!(!text.contains(REAL_GITHUB), "credential in the audit log");
    assert!(
        !text.contains("SHOULD_NOT_BE_LOGGED"),
        "query string in the audit log"
    );
    let all = entries(&text);
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| all.iter().find(|e| pred(e)).cloned();
    let allow = find(&|e| e["kind"] == "decision" && e["outcome"] == "ALLOW").expect("allow entry");
    assert_eq!(allow["gate"], "none");
    assert_eq!(allow["path"], "/repos/octo/demo");
    let esc = find(&|e| e["kind"] == "decision" && e["review_id"] == ids[0].as_str())
        .expect("escalate entry");
    assert_eq!(esc["outcome"], "ESCALATE");
    assert_eq!(esc["gate"], "hard");
    assert_eq!(esc["tool"], "github.repos.delete");
    let approved = find(&|e| e["review_id"] == ids[0].as_str() && e["to"] == "approved")
        .expect("approval entry");
    assert_eq!(approved["by"], "alice");
    assert_eq!(approved["comment"], "expected cleanup");
    let executing = find(&|e| e["review_id"] == ids[0].as_str() && e["to"] == "executing")
        .expect("executing entry");
    assert_eq!(executing["approved_by"], "alice");
    let executed = find(&|e| e["review_id"] == ids[0].as_str() && e["to"] == "executed")
        .expect("execution entry");
    assert_eq!(executed["upstream_status"], 200);
    assert!(executed["duration_ms"].is_u64());
    let rejected = find(&|e| e["review_id"] == ids[1].as_str() && e["to"] == "rejected")
        .expect("rejection entry");
    assert_eq!(rejected["by"], "bob");
    assert!(
        all.iter().any(|e| e["kind"] == "checkpoint"),
        "checkpoint_every = 4"
    );

    // The untouched export verifies offline; the live log verifies too.
    let (_, pk) = a.admin("GET", "/v1/audit/pubkey", None).await;
    let pubkey = pk["pubkey"].as_str().expect("pubkey").to_string();
    let file = a.dir.path().join("audit.jsonl");
    std::fs::write(&file, &text).expect("write");
    let (ok, out) = verify_cli(&file, &pubkey);
    assert!(ok, "{out}");
    let (s, live) = a.admin("GET", "/v1/audit/verify", None).await;
    assert_eq!(s, 200, "{live}");

    // Tampering is detected and located.
    let lines: Vec<&str> = text.lines().collect();
    let last_cp = lines
        .iter()
        .rposition(|l| l.contains("\"kind\":\"checkpoint\""))
        .expect("a checkpoint");
    let edited = text.replacen("\"by\":\"alice\"", "\"by\":\"alicf\"", 1);
    let deleted: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let mut swapped_lines = lines.clone();
    swapped_lines.swap(1, 2);
    let swapped: String = swapped_lines.iter().map(|l| format!("{l}\n")).collect();
    // Keep the checkpoint but cut entries it covers.
    let truncated: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < last_cp.saturating_sub(2) || *i == last_cp)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let other_key = "00".repeat(32);
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("one edited byte", edited, pubkey.clone(), "seq"),
        ("deleted entry", deleted, pubkey.clone(), "seq"),
        ("reordered entries", swapped, pubkey.clone(), "seq"),
        (
            "truncated before a checkpoint",
            truncated,
            pubkey.clone(),
            "seq",
        ),
        ("wrong key", text.clone(), other_key, "seq"),
        (
            "first entries cut off",
            lines[3..].iter().map(|l| format!("{l}\n")).collect(),
            pubkey.clone(),
            "starts at seq 3, not at seq 0",
        ),
        ("empty file", String::new(), pubkey.clone(), "no entries"),
    ];
    for (what, content, key, want) in cases {
        std::fs::write(&file, content).expect("write");
        let (ok, out) = verify_cli(&file, &key);
        assert!(!ok, "{what}: verified but should fail: {out}");
        assert!(
            out.contains("FAILED") && out.contains(want),
            "{what}: {out}"
        );
    }

    // Tail truncation: a cut-off export is a valid prefix on its own, but not against a
    // checkpoint kept outside Airlock.
    let (status, cp) = airlock::admin::client::call_raw(
        a.admin_addr,
        &a.admin_token,
        http::Method::POST,
        "/v1/audit/checkpoint",
        None,
    )
    .await
    .expect("checkpoint");
    assert_eq!(status, 200);
    let cp_file = a.dir.path().join("trusted-checkpoint.json");
    std::fs::write(&cp_file, &cp).expect("write");
    let full = export(&a).await;
    let full_lines: Vec<&str> = full.lines().collect();
    let cut: String = full_lines[..full_lines.len() - 3]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, &cut).expect("write");
    let (ok, out) = verify_cli(&file, &pubkey);
    assert!(ok, "a prefix verifies on its own: {out}");
    let cp_arg = cp_file.to_string_lossy().into_owned();
    let with_cp = |f: &std::path::Path| verify_cli_with(f, &pubkey, &["--checkpoint", &cp_arg]);
    let (ok, out) = with_cp(&file);
    assert!(!ok && out.contains("truncated"), "{out}");
    std::fs::write(&file, &full).expect("write");
    let (ok, out) = with_cp(&file);
    assert!(ok, "{out}");
    // An export made with --since N verifies with --since N.
    let from_3: String = full_lines[3..].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, &from_3).expect("write");
    let (ok, out) = verify_cli_with(&file, &pubkey, &["--since", "3"]);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_unavailable_refuses_gated_calls_with_503() {
    let (a, up, store) = start("").await;
    let client = a.client();
    store.fail_audit.store(true, SeqCst);
    let r = client
        .delete("https://api.github.com/repos/octo/demo")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["airlock-reason"], "audit_unavailable");
    // Nothing was queued.
    let (_, list) = a.admin("GET", "/v1/reviews", None).await;
    assert_eq!(list["reviews"].as_array().map(Vec::len), Some(0));
    // Allowed reads keep flowing (their audit is best effort).
    assert_eq!(
        read(&client, "https://api.github.com/repos/octo/demo").await,
        200
    );
    assert_eq!(up.count(), 1);

    // A review held while the log worked cannot execute once it fails: the approval is
    // refused; the upstream never sees the delete.
    store.fail_audit.store(false, SeqCst);
    let id = held_delete(&client).await;
    store.fail_audit.store(true, SeqCst);
    let (s, body) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(s, 503, "{body}");
    assert!(
        body.to_string()
            .contains("nothing changed and the request was not sent"),
        "{body}"
    );
    assert_eq!(up.count(), 1, "the delete was not sent");
    // The approval and its entry are one commit: neither landed, the review is as it was,
    // and approving it once the log works sends it once.
    store.fail_audit.store(false, SeqCst);
    let (_, review) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(review["state"], "pending", "{review}");
    let (s, review) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!((s, &review["state"]), (200, &"executed".into()), "{review}");
    assert_eq!(up.count(), 2);
}

/// Review of session 21: a transition was stored, then its audit entry appended separately,
/// so a full disk (or a crash) between the two left a decision on the record of the store but
/// not of the log. Now they are one commit: a rejection, an extension or an approval whose
/// entry cannot be written changes nothing, and the log and the store agree throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decision_the_audit_log_cannot_take_changes_nothing() {
    let (a, up, store) = start("").await;
    let id = held_delete(&a.client()).await;
    let trail = |a: &Airlock, id: &str| {
        a.gate
            .audit()
            .entries_for_review(id, 100)
            .expect("entries")
            .iter()
            .map(|e| {
                let kind = e["kind"].as_str().unwrap_or("");
                format!("{kind}:{}", e["to"].as_str().unwrap_or("-"))
            })
            .collect::<Vec<_>>()
    };
    let held = trail(&a, &id);
    assert_eq!(held, ["decision:-"], "{held:?}");
    store.fail_audit.store(true, SeqCst);
    for (action, body) in [
        ("reject", None),
        ("extend", Some(serde_json::json!({"by": "1h"}))),
        ("approve", None),
    ] {
        let (s, r) = a
            .admin("POST", &format!("/v1/reviews/{id}/{action}"), body)
            .await;
        assert_eq!(s, 503, "{action}: {r}");
    }
    store.fail_audit.store(false, SeqCst);
    let (_, review) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(review["state"], "pending", "{review}");
    assert_eq!(trail(&a, &id), held, "no entry for what did not happen");
    assert_eq!(up.count(), 0);
    // Once the log takes writes, the decision lands with its entry.
    let (s, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/reject"), None)
        .await;
    assert_eq!((s, &r["state"]), (200, &"rejected".into()), "{r}");
    assert_eq!(trail(&a, &id), ["decision:-", "review:rejected"]);
}

/// An expiry sweep the audit log cannot take expires nothing (each expiry and its entry are
/// one commit; they used to be committed apart, so a failure between left expiries on the
/// store's record only); the next sweep does, with the entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expiry_the_audit_log_cannot_take_waits_for_the_next_sweep() {
    let (a, up, store) = start("[gate]\nreview_expiry = \"1s\"\nsweep_interval = \"1h\"\n").await;
    let client = a.client();
    // Two calls (an identical second one would join the first's review).
    let ids = [
        held_delete(&client).await,
        support::held_delete(&client, "https://api.github.com/repos/octo/other").await,
    ];
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    store.fail_audit.store(true, SeqCst);
    assert!(a.gate.sweep().await.is_err());
    store.fail_audit.store(false, SeqCst);
    let kinds = |id: &str| -> Vec<String> {
        a.gate
            .audit()
            .entries_for_review(id, 100)
            .expect("entries")
            .iter()
            .map(|e| e["to"].as_str().unwrap_or("held").to_string())
            .collect()
    };
    for id in &ids {
        assert_eq!(a.gate.get(id).await.expect("get").state.as_str(), "pending");
        assert_eq!(kinds(id), ["held"]);
    }
    assert_eq!(a.gate.sweep().await.expect("sweep"), 2);
    for id in &ids {
        assert_eq!(a.gate.get(id).await.expect("get").state.as_str(), "expired");
        assert_eq!(kinds(id), ["held", "expired"]);
    }
    assert_eq!(up.count(), 0);
    let (code, report) = a.admin("GET", "/v1/audit/verify", None).await;
    assert_eq!(code, 200, "{report}");
}

/// The approval lands with its entry, then the disk fills: the claim that starts the send
/// cannot be written, and the reviewer hears that the send has not started. After a restart
/// with space freed, the approval (on the record) is sent, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_whose_claim_met_a_full_disk_is_sent_once_after_a_restart() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = Airlock::config("", dir.path(), &up, HOSTS);
    let store = FaultyStore::open(&config.store.path);
    let catalog = || airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a = Airlock::start_on_store(config.clone(), dir, catalog(), store.clone()).await;
    let id = held_delete(&a.client()).await;
    store.trip.store(true, SeqCst);
    let (s, body) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(s, 202, "{body}");
    assert!(body.to_string().contains("send did not start"), "{body}");
    let (_, review) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(review["state"], "approved", "{review}");
    assert_eq!(up.count(), 0);

    store.fail_audit.store(false, SeqCst);
    store.fail_reviews.store(false, SeqCst);
    let dir = a.stop().await;
    let a = Airlock::start_on_store(config, dir, catalog(), store.clone()).await;
    let mut review = serde_json::Value::Null;
    for _ in 0..100 {
        review = a.admin("GET", &format!("/v1/reviews/{id}"), None).await.1;
        if review["state"] == "executed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(review["state"], "executed", "{review}");
    assert_eq!(up.count(), 1, "sent once");
    let (code, report) = a.admin("GET", "/v1/audit/verify", None).await;
    assert_eq!(code, 200, "{report}");
}

/// An `approved` review whose approval the audit log does not show (written to the store by
/// something other than Airlock, or by a version that stored the two apart) is never sent: its
/// claim fails it, naming the approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_the_audit_log_does_not_show_is_never_sent() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = Airlock::config("", dir.path(), &up, HOSTS);
    let store = FaultyStore::open(&config.store.path);
    let catalog = || airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a = Airlock::start_on_store(config.clone(), dir, catalog(), store.clone()).await;
    let id = held_delete(&a.client()).await;
    let dir = a.stop().await;
    // Approved behind the log's back.
    use airlock::store::{Batch, Store, Tree};
    let bytes = store
        .get(Tree::Reviews, id.as_bytes())
        .expect("get")
        .expect("held");
    let mut r = airlock::gate::Review::decode(&bytes).expect("review");
    r.state = airlock::gate::ReviewState::Approved;
    r.approvals.push(airlock::gate::review::Decision {
        by: "mallory".into(),
        at_ms: r.created_at_ms,
        comment: None,
        admin_token: false,
    });
    r.decision = r.approvals.last().cloned();
    let mut b = Batch::default();
    b.put(Tree::Reviews, id.as_bytes(), &r.encode().expect("encode"));
    airlock::gate::index::reindex(
        &mut b,
        Some(&airlock::gate::Review::decode(&bytes).expect("review")),
        Some(&r),
    );
    store.inner.commit(vec![b]).expect("write");

    let a = Airlock::start_on_store(config, dir, catalog(), store.clone()).await;
    let mut review = serde_json::Value::Null;
    for _ in 0..100 {
        review = a.admin("GET", &format!("/v1/reviews/{id}"), None).await.1;
        if review["state"] != "approved" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(review["state"], "failed", "{review}");
    assert!(
        review
            .to_string()
            .contains("approval is not in the audit log"),
        "{review}"
    );
    assert_eq!(
        up.count(),
        0,
        "sent on an approval the audit log does not show"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disk_refuses_gated_calls_and_keeps_reads_flowing() {
    let (a, up, store) = start("").await;
    let client = a.client();
    store.fail_reviews.store(true, SeqCst);
    let r = client
        .delete("https://api.github.com/repos/octo/demo")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["airlock-reason"], "review_store_unavailable");
    let body = r.text().await.expect("body");
    assert!(body.contains("not forwarded"), "{body}");
    let r = client
        .post("https://api.stripe.com/v1/refunds")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("charge=ch_1")
        .send()
        .await
        .expect("refund");
    assert_eq!(r.status(), 503);
    assert_eq!(read(&client, "https://api.github.com/user").await, 200);
    assert_eq!(up.count(), 1, "only the read reached the upstream");
    // Once space is back, holding works again.
    store.fail_reviews.store(false, SeqCst);
    let r = client
        .delete("https://api.github.com/repos/octo/demo")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 423);
}

/// Allowed reads keep flowing while the audit store fails; their records are counted, and
/// the first write that succeeds afterwards puts an `audit_gap` with that count on the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_allow_records_become_an_audit_gap() {
    let (a, up, store) = start("").await;
    let client = a.client();
    store.fail_audit.store(true, SeqCst);
    for _ in 0..3 {
        let status = read(&client, "https://api.github.com/user").await;
        assert_eq!(
            status, 200,
            "reads flow while the audit log cannot be written"
        );
    }
    assert_eq!(up.count(), 3);
    // Wait until the recorder has tried (and failed) at least one write, then recover.
    support::eventually("the recorder to try a write", support::WAIT, || async {
        (store.refused.load(SeqCst) > 0).then_some(())
    })
    .await;
    store.fail_audit.store(false, SeqCst);
    assert_eq!(read(&client, "https://api.github.com/user").await, 200);
    // Every one of the 4 reads is either on the record or counted in a gap, and some gap is.
    support::eventually(
        "all 4 reads written or counted in an audit_gap (some gap)",
        support::WAIT,
        || async {
            let all = entries(&export(&a).await);
            let written = all
                .iter()
                .filter(|e| {
                    e["kind"] == "decision" && e["outcome"] == "ALLOW" && e["path"] == "/user"
                })
                .count();
            let gapped = all
                .iter()
                .filter(|e| e["kind"] == "audit_gap")
                .filter_map(|e| e["skipped_allow_records"].as_u64())
                .sum::<u64>() as usize;
            if written + gapped == 4 && gapped > 0 {
                Ok(())
            } else {
                Err(format!("written {written}, counted {gapped}"))
            }
        },
    )
    .await;
}

/// An agent looping on cheap reads grew the log (and the disk every gated call needs) as fast
/// as it could send. Past its share (`audit.allow_per_agent` a second, 30 seconds' worth at
/// once) its allowed reads are counted, not written one by one: the count lands in an
/// `audit_gap` naming the agent, and the reads still flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agents_allowed_reads_past_its_share_are_counted_not_written() {
    let (a, up, _) = start_with("allow_per_agent = 1\n", "").await;
    let client = a.client();
    for _ in 0..45 {
        assert_eq!(read(&client, "https://api.github.com/user").await, 200);
    }
    assert_eq!(up.count(), 45, "every read flows");
    written_or_counted(&a, "every read", "skipped_allow_records", |e| {
        e["outcome"] == "ALLOW" && e["path"] == "/user"
    })
    .await;
}

/// Waits until each of 45 requests of one agent is either written as a `decision` entry that
/// `is_one` picks, or counted in an agent's `audit_gap` under `gap_field`, the written ones
/// being the agent's share: 30 seconds at one a second (one or two more for the time the loop
/// took).
async fn written_or_counted(
    a: &Airlock,
    what: &str,
    gap_field: &str,
    is_one: impl Fn(&serde_json::Value) -> bool,
) {
    let what = format!("{what} written or counted for its agent");
    support::eventually(&what, support::WAIT, || async {
        let all = entries(&export(a).await);
        let written = all
            .iter()
            .filter(|e| e["kind"] == "decision" && is_one(e))
            .count();
        let counted: u64 = all
            .iter()
            .filter(|e| e["kind"] == "audit_gap" && e["agent"].is_string())
            .filter_map(|e| e[gap_field].as_u64())
            .sum();
        if (30..=32).contains(&written) && written as u64 + counted == 45 {
            Ok(())
        } else {
            Err(format!("written {written}, counted {counted}"))
        }
    })
    .await;
}

/// Review of session 24: every blocked request was written to the audit log, at no rate, so
/// an agent looping on a blocked call (`rules.unclassified_writes = "block"`, or an operator's
/// `block` rule) grew the log as fast as it could send. Past its share
/// (`audit.block_per_agent`) each is still refused, and counted in an `audit_gap` naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agents_blocked_calls_past_its_share_are_refused_and_counted() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = Airlock::config("[audit]\nblock_per_agent = 1\n", dir.path(), &up, HOSTS);
    let store = FaultyStore::open(&config.store.path);
    let options = airlock::rules::CatalogOptions {
        unclassified_writes: airlock::rules::Action::Block,
        ..Default::default()
    };
    let catalog = airlock::rules::LiveCatalog::load(None, options).expect("catalog");
    let a = Airlock::start_on_store(config, dir, catalog, store).await;
    let client = a.client();
    let mut named = 0;
    for _ in 0..45 {
        let resp = client
            .post("https://api.github.com/an/unknown/write")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 403);
        let body: serde_json::Value = resp.json().await.expect("json");
        if body["decisionId"].is_string() {
            named += 1;
        }
    }
    assert!(
        (30..=32).contains(&named),
        "only recorded blocks name a decision: {named}"
    );
    assert_eq!(up.count(), 0, "nothing blocked goes upstream");
    written_or_counted(&a, "every block", "skipped_block_records", |e| {
        e["outcome"] == "BLOCK"
    })
    .await;
}

/// A store whose tail was cut (entries deleted through the store, checkpoint and all) is
/// refused by `airlock audit verify`, as by `serve`, naming the anchor; an export cut before the
/// anchor fails `verify --anchor`; `airlock audit accept-restore` refuses a store in use, then
/// records the restore in the log, after which the log opens and verifies.
#[test]
fn a_cut_tail_is_caught_by_the_anchor_until_the_restore_is_accepted() {
    use airlock::audit::{AuditGap, AuditLog, AuditOptions, Event};
    use airlock::store::{Backend, Batch, Tree};
    let dir = tempfile::tempdir().expect("dir");
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\npath = {:?}\n[tls]\nca_dir = {:?}\n[audit]\ncheckpoint_every = 4\n",
            path_str(&data),
            path_str(&certs)
        ),
    )
    .expect("config");
    let key = certs.join("audit-key.pem");
    let opts = AuditOptions {
        checkpoint_every: 4,
        ..AuditOptions::default()
    };
    let store = airlock::store::open(Backend::Redb, &data).expect("store");
    let log = AuditLog::open(store.clone(), &key, "airlock".into(), opts.clone()).expect("log");
    for n in 0..10 {
        let gap = AuditGap {
            skipped_allow_records: n,
            skipped_block_records: 0,
            reason: "test",
            agent: None,
        };
        log.append(Event::AuditGap(gap)).expect("append");
    }
    // 0..=3, checkpoint 4, 5..=8, checkpoint 9, 10, 11.
    let full = dir.path().join("full.jsonl");
    let mut text = Vec::new();
    log.export(0, &mut text).expect("export");
    std::fs::write(&full, &text).expect("write export");
    let pubkey = log.public_key_hex();
    drop(log);
    let anchor = airlock::audit::anchor_path_for(&key);
    assert_eq!(anchor, certs.join("audit-key.pem.anchor"));
    let anchor_copy = dir.path().join("anchor-copy");
    std::fs::copy(&anchor, &anchor_copy).expect("copy anchor");

    // Offline: the whole export holds the anchor's entry; one cut before it does not.
    let anchor_arg = path_str(&anchor_copy);
    let (ok, out) = verify_cli_with(&full, &pubkey, &["--anchor", &anchor_arg]);
    assert!(ok, "{out}");
    let cut = dir.path().join("cut.jsonl");
    let lines: Vec<&str> = std::str::from_utf8(&text).expect("utf8").lines().collect();
    std::fs::write(&cut, format!("{}\n", lines[..6].join("\n"))).expect("write cut");
    assert!(
        verify_cli(&cut, &pubkey).0,
        "the cut export verifies on its own"
    );
    let (ok, out) = verify_cli_with(&cut, &pubkey, &["--anchor", &anchor_arg]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the anchor names seq 9 but the file ends at seq 5"),
        "{out}"
    );

    // The store's tail cut back before the last checkpoint.
    let mut batch = Batch::default();
    for seq in 6u64..=11 {
        batch.delete(Tree::Audit, &seq.to_be_bytes());
    }
    assert!(store.apply(batch).expect("cut"));
    drop(store);
    let (ok, _, err) = support::process::cli(&cfg, &["audit", "verify"]);
    assert!(!ok);
    assert!(err.contains("audit log ends at seq 5"), "{err}");
    assert!(
        err.contains(&format!("anchor ({}) names seq 9", anchor.display())),
        "{err}"
    );
    assert!(err.contains("airlock audit accept-restore"), "{err}");
    // What is left can still be exported and examined, with a warning.
    let (ok, out, err) = support::process::cli(&cfg, &["audit", "export"]);
    assert!(ok, "{err}");
    assert!(err.contains("warning: audit log ends at seq 5"), "{err}");
    assert_eq!(entries(&out).len(), 6);

    // While the store is held (as by a running Airlock), accept-restore says so.
    let store = airlock::store::open(Backend::Redb, &data).expect("store");
    let (ok, _, err) = support::process::cli(&cfg, &["audit", "accept-restore"]);
    assert!(!ok);
    assert!(err.contains("in use by a running Airlock"), "{err}");
    drop(store);

    let (ok, out, err) = support::process::cli(&cfg, &["audit", "accept-restore"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("restore accepted: the log ended at seq 5, the old anchor named seq 9"),
        "{out}"
    );
    let (ok, out, err) = support::process::cli(&cfg, &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = support::process::cli(&cfg, &["audit", "export"]);
    assert!(ok, "{err}");
    let all = entries(&out);
    assert_eq!(all[6]["kind"], "restore_accepted");
    assert_eq!(all[6]["anchor_seq"], 9);
    assert_eq!(all[6]["log_end_seq"], 5);
    assert_eq!(all[7]["kind"], "checkpoint");
}

/// Review of session 21: entries after the last checkpoint when `serve` was killed were signed
/// at the next start without a word, so whoever could write the store meanwhile could change
/// them unseen. The next start's `policy` entry now names them (`unsigned_at_start`), with a
/// warning; a clean stop signs its tail, and the start after it names nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_after_a_kill_names_the_entries_the_kill_left_unsigned() {
    use support::process::{cli, write_config, Serve};
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("airlock.log");
    let (cfg, store, ca) = write_config(
        dir.path(),
        "airlock.toml",
        "redb",
        &up,
        &["api.github.com"],
        "[audit]\ncheckpoint_every = 1000\ncheckpoint_interval = \"1h\"\n",
    );
    Serve::spawn(&cfg, &store, &ca, &log).kill9();
    Serve::spawn(&cfg, &store, &ca, &log).stop();
    Serve::spawn(&cfg, &store, &ca, &log).stop();
    let (ok, out, err) = cli(&cfg, &["audit", "export"]);
    assert!(ok, "{err}");
    let startups: Vec<serde_json::Value> = entries(&out)
        .into_iter()
        .filter(|e| e["kind"] == "policy" && e["change"] == "startup")
        .collect();
    assert_eq!(startups.len(), 3, "{out}");
    assert!(startups[0].get("unsigned_at_start").is_none(), "{out}");
    let after_kill = startups[1]["seq"].as_u64().expect("seq");
    assert_eq!(
        startups[1]["unsigned_at_start"],
        serde_json::json!({"first_seq": 0, "last_seq": after_kill - 1}),
        "{out}"
    );
    assert!(startups[2].get("unsigned_at_start").is_none(), "{out}");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert_eq!(logged.matches("left unsigned").count(), 1, "{logged}");
}

/// The files in `dir`, by name, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Review of session 22: `airlock audit export --out FILE` truncated FILE before anything
/// could fail, so an export that failed (no server and no store, a token the server refused)
/// left an earlier good export empty, and one that failed midway left a partial file that
/// `audit verify` then passed. Now the export is written to a temporary file beside FILE and
/// put in its place only once complete; on failure FILE is as it was and nothing is left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_leaves_the_earlier_file_as_it_was() {
    use support::process::{cli, write_config, Serve};
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let exports = dir.path().join("exports");
    std::fs::create_dir(&exports).expect("mkdir");
    let out = exports.join("audit.jsonl");
    let out_arg = path_str(&out);
    let export = || cli(&cfg, &["audit", "export", "--out", &out_arg]);
    std::fs::write(&out, "earlier\n").expect("write");
    // Neither a server nor a store.
    let (ok, _, err) = export();
    assert!(!ok && err.contains("no running server"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "earlier\n");
    assert_eq!(names_in(&exports), ["audit.jsonl"]);

    let s = Serve::spawn(&cfg, &store, &ca, &dir.path().join("serve.log"));
    let (ok, _, err) = export();
    assert!(ok, "{err}");
    let good = std::fs::read_to_string(&out).expect("read");
    assert!(!good.is_empty() && !good.contains("earlier"), "{good}");
    // A token the server does not take (the file replaced while it runs).
    support::write_secret(&store.join("admin-token"), "0f".repeat(32));
    let (ok, _, err) = export();
    assert!(!ok, "{err}");
    assert_eq!(std::fs::read_to_string(&out).expect("read"), good);
    assert_eq!(names_in(&exports), ["audit.jsonl"]);
    s.stop();
}

/// Review of session 22: with a token the server refuses (a stale token file while the server
/// runs with AIRLOCK_ADMIN_TOKEN), `airlock audit pubkey` printed an empty line and exited 0,
/// and live `audit verify` reported the 401 as "audit log verification FAILED", which reads as
/// tampering. Now both exit non-zero saying the token was refused; "verification FAILED" is
/// only ever a broken chain or signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_not_reported_as_a_key_or_a_broken_log() {
    use support::process::{cli, write_config, Serve};
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let s = Serve::spawn(&cfg, &store, &ca, &dir.path().join("serve.log"));
    let (ok, key, err) = cli(&cfg, &["audit", "pubkey"]);
    assert!(ok, "{err}");
    assert_eq!(key.trim().len(), 64, "{key}");
    let (ok, _, err) = cli(&cfg, &["audit", "verify"]);
    assert!(ok, "{err}");

    support::write_secret(&store.join("admin-token"), "0f".repeat(32));
    let (ok, printed, err) = cli(&cfg, &["audit", "pubkey"]);
    assert!(!ok, "exit 0 with {printed:?}");
    assert!(printed.trim().is_empty(), "{printed}");
    assert!(
        err.contains("refused the admin token") && err.contains("HTTP 401"),
        "{err}"
    );
    let (ok, _, err) = cli(&cfg, &["audit", "verify"]);
    assert!(!ok, "{err}");
    assert!(!err.contains("verification FAILED"), "{err}");
    assert!(err.contains("refused the admin token"), "{err}");
    s.stop();
}

/// Review of session 22: a missing audit anchor (`audit-key.pem.anchor`) was accepted without a
/// word even over a log holding checkpoints, so deleting it turned off the check that catches
/// a cut tail or an older copy of the store put back. It is still accepted (logs from before
/// anchors have none) but `serve` now warns at start, naming the anchor, when the log holds
/// entries; a fresh log starts without the warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_anchor_over_a_log_with_entries_is_warned_about() {
    use support::process::{write_config, Serve};
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("serve.log");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let s = Serve::spawn(&cfg, &store, &ca, &log);
    let (code, _) = s.admin("POST", "/v1/audit/checkpoint", None).await;
    assert_eq!(code, 200);
    s.stop();
    let first = std::fs::read_to_string(&log).expect("log");
    assert!(!first.contains("anchor is missing"), "{first}");
    let anchor = ca.join("audit-key.pem.anchor");
    std::fs::remove_file(&anchor).expect("the checkpoint wrote the anchor");
    Serve::spawn(&cfg, &store, &ca, &log).stop();
    let logged = std::fs::read_to_string(&log).expect("log");
    let second = &logged[first.len()..];
    let warning = second
        .lines()
        .find(|l| l.contains("anchor is missing"))
        .unwrap_or_else(|| panic!("no warning: {second}"));
    assert!(
        warning.contains("WARN") && warning.contains(&path_str(&anchor)),
        "{warning}"
    );
}
