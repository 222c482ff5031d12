//! Restoring a store from a copy (README, "Backups"), with the real binary on a real store:
//! `airlock audit accept-restore` makes what the copy held in flight safe before `serve` runs
//! again. An `approved` review the copy caught before its send (and which was sent after the
//! copy was taken) is not sent a second time by recovery; a `pending` one warns it may have
//! been decided already; a one-click link issued before the restore no longer works; and a
//! restore whose anchor came back with it is accepted with `--declare`.

mod support;

use std::path::Path;
use std::time::Duration;

use airlock::store::{Backend, Batch, Tree};
use support::process::{cli, write_config, Serve};
use support::FakeUpstream;

const HOSTS: &[&str] = &["api.github.com"];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// Sends `DELETE path` through Airlock; it is held: the review id.
async fn hold(s: &Serve, path: &str) -> String {
    let r = s
        .client()
        .delete(format!("https://api.github.com{path}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 423);
    r.headers()["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string()
}

/// Review `id` in the store at `data` made `approved` now, with its audit entry, its send not
/// begun: what a copy taken between an approval and its send holds (Airlock stopped).
fn approve_in_store(data: &Path, key: &Path, id: &str) {
    use airlock::audit::{AuditLog, AuditPath, Event, GateKind, Transition};
    let store = airlock::store::open(Backend::Redb, data).expect("store");
    let bytes = store
        .get(Tree::Reviews, id.as_bytes())
        .expect("get")
        .expect("held");
    let old = airlock::gate::Review::decode(&bytes).expect("review");
    let mut next = old.clone();
    next.state = airlock::gate::ReviewState::Approved;
    next.version += 1;
    next.updated_at_ms = airlock::gate::Clock::now_ms(&airlock::gate::SystemClock);
    next.decision = Some(airlock::gate::review::Decision {
        by: "admin".into(),
        at_ms: next.updated_at_ms,
        comment: None,
        admin_token: true,
    });
    next.approvals = next.decision.clone().into_iter().collect();
    let mut b = Batch::default();
    b.expect(Tree::Reviews, id.as_bytes(), Some(&bytes)).put(
        Tree::Reviews,
        id.as_bytes(),
        &next.encode().expect("encode"),
    );
    airlock::gate::index::reindex(&mut b, Some(&old), Some(&next));
    let entry = Transition {
        review_id: id.into(),
        decision_id: next.decision_id.clone(),
        from: "pending",
        to: "approved",
        gate: GateKind::Hard,
        tool: next.tool.clone(),
        service: next.service.clone(),
        agent: next.agent.clone(),
        method: next.request.method.clone(),
        host: next.request.host.clone(),
        path: AuditPath::new(&next.request.path_and_query),
        approval_by: Some("admin".into()),
        approvals: Some(1),
        required: Some(1),
        expires_at: None,
        retry_by: None,
        attempt: None,
        by: Some("admin".into()),
        comment: None,
        approved_by: None,
        admin_token: Some(true),
        execution: None,
    };
    let log = AuditLog::open(store, key, "airlock".into(), Default::default()).expect("log");
    let landed = log.append_if(Event::Review(Box::new(entry)), b);
    assert!(
        matches!(landed, Ok(airlock::audit::Landed::Durable)),
        "{landed:?}"
    );
    log.checkpoint().expect("checkpoint");
}

async fn state_of(s: &Serve, id: &str) -> serde_json::Value {
    let (code, v) = s.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(code, 200, "{v}");
    v
}

/// The reviewer's scenario: a copy holds review A approved (not yet sent) and review B pending,
/// with a one-click link issued for B. After the copy, A is sent. The copy is put back over
/// `data/` (the anchor stays: `serve` refuses), the restore is accepted, and `serve` starts:
/// A is `outcome_unknown` with the reason, not sent again; B warns it was restored; B's old
/// link answers as expired, while one issued after the restore works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_review_of_a_restored_store_is_not_sent_again() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("serve.log");
    let token = airlock::agents::generate_token();
    let digest = airlock::agents::token_digest(&token);
    let reviewers = format!(
        "[[reviewers]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(digest)
    );
    let (cfg, data, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, &reviewers);
    let s = Serve::spawn(&cfg, &data, &ca, &log);
    let sent = hold(&s, "/repos/octo/sent-after-the-copy").await;
    let pending = hold(&s, "/repos/octo/still-pending").await;
    s.stop();

    approve_in_store(&data, &ca.join("audit-key.pem"), &sent);
    let key = airlock::notify::load_or_create_key(&data.join("link-key")).expect("link key");
    let signer = airlock::notify::LinkSigner::new(key);
    let hour = Duration::from_secs(3600);
    let approve = airlock::notify::LinkAction::Approve;
    let old_link = signer.mint(&pending, approve, "alice", &digest, hour);
    let backup = dir.path().join("backup-data");
    copy_dir(&data, &backup);

    // The live host goes on: recovery sends the approved call.
    let s = Serve::spawn(&cfg, &data, &ca, &log);
    for _ in 0..100 {
        if up.count() == 1 && state_of(&s, &sent).await["state"] == "executed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(up.count(), 1, "the approved call is sent once");
    s.stop();

    // The copy is put back over data/ (the anchor, in certs/, stays the live one).
    std::fs::remove_dir_all(&data).expect("rm data");
    copy_dir(&backup, &data);
    let (ok, _, err) = cli(&cfg, &["audit", "verify"]);
    assert!(!ok, "the live anchor catches the older copy");
    assert!(err.contains("accept-restore"), "{err}");
    let (ok, out, err) = cli(&cfg, &["audit", "accept-restore"]);
    assert!(ok, "{out}{err}");

    let s = Serve::spawn(&cfg, &data, &ca, &log);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(up.count(), 1, "recovery sent the restored approval again");
    assert!(
        out.contains("1 approved or executing review(s) are now outcome_unknown"),
        "{out}"
    );
    assert!(out.contains("2 review(s) are marked restored"), "{out}");
    let a = state_of(&s, &sent).await;
    assert_eq!(a["state"], "outcome_unknown", "{a}");
    assert!(
        a.to_string()
            .contains("restored from a backup taken while this request was approved"),
        "{a}"
    );
    let b = state_of(&s, &pending).await;
    assert_eq!(b["state"], "pending", "{b}");
    let warning = b["restored"]["warning"].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("restored from a backup taken before")
            && warning.contains("check upstream before approving"),
        "{b}"
    );
    let warnings = b["summary"]["warnings"].to_string();
    assert!(warnings.contains("restored from a backup"), "{warnings}");
    let (ok, out, err) = cli(&cfg, &["reviews", "show", &pending]);
    assert!(ok, "{err}");
    assert!(out.contains("restored from a backup taken before"), "{out}");

    // The link issued before the restore answers as expired; one issued now works.
    let c = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let page = |t: String| {
        let c = c.clone();
        let url = format!("http://{}/ui/link/{t}", s.admin);
        async move {
            let r = c.get(url).send().await.expect("get");
            (r.status().as_u16(), r.text().await.expect("html"))
        }
    };
    let (code, html) = page(old_link).await;
    assert_eq!(code, 403, "{html}");
    assert!(html.contains("Link expired"), "{html}");
    let new_link = signer.mint(&pending, approve, "alice", &digest, hour);
    let (code, html) = page(new_link).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("Confirm:"), "{html}");
    assert!(html.contains("restored from a backup"), "{html}");
    assert_eq!(up.count(), 1);
    s.stop();
}

/// A copy restored with its anchor (a whole-host restore) passes the anchor check: nothing
/// told the operator. `accept-restore` refuses a matching anchor unless told `--declare`; with
/// it, the restore is marked and recorded as declared. A run cut short (its in-progress mark
/// left) keeps the log from opening until it is run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_anchor_came_back_is_declared() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("serve.log");
    let (cfg, data, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let s = Serve::spawn(&cfg, &data, &ca, &log);
    hold(&s, "/repos/octo/held").await;
    s.stop();

    let (ok, out, err) = cli(&cfg, &["audit", "accept-restore"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("matches this store") && err.contains("accept-restore --declare"),
        "{err}"
    );
    let (ok, out, err) = cli(&cfg, &["audit", "accept-restore", "--declare"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("restore accepted (declared)"), "{out}");
    assert!(out.contains("1 review(s) are marked restored"), "{out}");
    let (ok, out, err) = cli(&cfg, &["audit", "export"]);
    assert!(ok, "{err}");
    let entry: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["kind"] == "restore_accepted")
        .expect("a restore_accepted entry");
    assert_eq!(entry["declared"], true, "{entry}");
    assert_eq!(entry["reviews_marked"], 1, "{entry}");
    assert_eq!(entry["reviews_outcome_unknown"], 0, "{entry}");
    let (ok, out, err) = cli(&cfg, &["audit", "verify"]);
    assert!(ok, "{out}{err}");

    // A run cut short: the log refuses to open until one completes.
    let store = airlock::store::open(Backend::Redb, &data).expect("store");
    let mut b = Batch::default();
    b.put(Tree::Meta, airlock::audit::RESTORE_IN_PROGRESS_KEY, b"{}");
    assert!(store.apply(b).expect("apply"));
    drop(store);
    let (ok, _, err) = cli(&cfg, &["audit", "verify"]);
    assert!(!ok);
    assert!(err.contains("did not finish"), "{err}");
    let (ok, out, err) = cli(&cfg, &["audit", "accept-restore"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(&cfg, &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    Serve::spawn(&cfg, &data, &ca, &log).stop();
}

/// Left from session 23: on PostgreSQL `accept-restore` found running instances only by their
/// change listeners, so one whose listener was reconnecting went unseen. Every `serve` holds
/// the database's instances lock: `accept-restore` refuses at once while one runs (its
/// listener cut, so that only the lock tells), and succeeds once it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_restore_on_postgres_refuses_while_an_instance_serves() {
    support::init();
    let Some(cluster) = support::postgres::Cluster::shared() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let url = cluster.fresh_database();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let (cfg, data, ca) = write_config(
        dir.path(),
        "airlock.toml",
        "postgres",
        &up,
        HOSTS,
        &format!("url = {url:?}\n"),
    );
    let s = Serve::spawn(&cfg, &data, &ca, &dir.path().join("serve.log"));
    hold(&s, "/repos/octo/held").await;
    // Its change listener gone, as while it reconnects.
    support::postgres::psql(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = 'LISTEN airlock_changes' AND datname = current_database()",
    );
    let (ok, out, err) = cli(&cfg, &["audit", "accept-restore", "--declare"]);
    assert!(!ok, "accepted beside a running instance: {out}");
    assert!(
        err.contains("other Airlock instances are running on this database"),
        "{err}"
    );
    s.stop();
    let (ok, out, err) = cli(&cfg, &["audit", "accept-restore", "--declare"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("restore accepted (declared)"), "{out}");
}
