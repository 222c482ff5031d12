//! Issue 17, shared state: several `airlock serve` instances on one PostgreSQL database share
//! their agents, reviewers, link key and admin token. Two in-process servers on one database:
//! an agent (and a reviewer) added with the real `airlock` binary is accepted by both without a
//! restart, and refused by both once removed; a link minted by one instance is honoured once by
//! either; both use one admin token. Skipped (with the reason printed) without PostgreSQL,
//! unless `AIRLOCK_REQUIRE_POSTGRES=1`.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use airlock::rules::{Action, Classifier, RequestHead, Verdict};
use support::{Airlock, FakeUpstream};

const HOSTS: &[&str] = &["api.github.com"];
/// How long a change made on one instance may take to reach the others (they wait for the
/// database's notification; nothing polls).
const PROPAGATION: Duration = Duration::from_secs(5);

/// DELETE is held, everything else allowed.
struct TestRules;

impl Classifier for TestRules {
    fn inspects(&self, host: &str) -> bool {
        HOSTS.contains(&host)
    }
    fn needs_body(&self, _: &RequestHead<'_>) -> bool {
        false
    }
    fn evaluate(&self, head: &RequestHead<'_>, _: Option<&[u8]>) -> Verdict {
        let (action, tool) = match head.method {
            "DELETE" => (Action::Escalate, "github.repos.delete"),
            _ => (Action::Allow, "read"),
        };
        Verdict {
            action,
            rule_id: Some("test:1".into()),
            service: Some("github".into()),
            tool: Some(tool.into()),
            class: None,
            reason_codes: vec!["rule_match".into()],
            explanation: format!("test rule {tool}"),
            params: Default::default(),
            expiry: None,
            wait: None,
            approval: None,
            spend_usd: None,
            also_tools: Vec::new(),
        }
    }
}

/// Two instances' configs on database `url`: their own directories (CA, token file), one audit
/// signing key (the audit log is shared), agents required. Also writes the config file the CLI
/// is given.
struct Setup {
    up: FakeUpstream,
    url: String,
    shared: tempfile::TempDir,
    cli_config: std::path::PathBuf,
}

/// A reviewer and an agent in the config file, so that both sources are exercised.
fn file_people(reviewer_token: &str, agent_token: &str) -> String {
    format!(
        "[[reviewers]]\nname = \"carol\"\ntoken_sha256 = \"{}\"\n\
         [[agents]]\nname = \"file-bot\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(airlock::agents::token_digest(reviewer_token)),
        hex::encode(airlock::agents::token_digest(agent_token)),
    )
}

impl Setup {
    async fn new(url: String, people: &str) -> Setup {
        support::init();
        let up = FakeUpstream::start(Default::default()).await;
        let shared = tempfile::tempdir().expect("tmp");
        let cli_config = shared.path().join("airlock.toml");
        std::fs::write(&cli_config, config_text(&url, people)).expect("write config");
        Setup {
            up,
            url,
            shared,
            cli_config,
        }
    }

    async fn start(&self, people: &str) -> Airlock {
        start_in(self, people, tempfile::tempdir().expect("tmp")).await
    }

    /// Runs `airlock --config <cli_config> ARGS`: (success, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        support::process::cli(&self.cli_config, args)
    }
}

fn config_text(url: &str, people: &str) -> String {
    format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n{people}")
}

/// A client through `a` signed in as `name:token`, on a fresh connection pool.
fn client_as(a: &Airlock, name: &str, token: &str) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(a.ca_pem.as_bytes()).expect("ca");
    reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(a.proxy_url())
                .expect("proxy")
                .basic_auth(name, token),
        )
        .tls_certs_only([cert])
        .build()
        .expect("client")
}

/// The status of a read through `a` as `name:token` (a refused CONNECT is `None`).
async fn read_status(client: &reqwest::Client) -> Option<u16> {
    client
        .get("https://api.github.com/user")
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// The status of `GET /v1/reviews` on `a`'s admin API with `token`.
async fn admin_status(a: &Airlock, token: &str) -> u16 {
    airlock::admin::client::call(a.admin_addr, token, http::Method::GET, "/v1/reviews", None)
        .await
        .map(|(status, _)| status)
        .unwrap_or(0)
}

fn token_file(a: &Airlock) -> std::path::PathBuf {
    a.config.admin.token_file.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_and_reviewers_added_with_the_cli_reach_every_instance_and_removals_too() {
    let Some(cluster) = support::postgres::Cluster::shared() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let (carol, file_bot) = (
        airlock::agents::generate_token(),
        airlock::agents::generate_token(),
    );
    let people = file_people(&carol, &file_bot);
    let s = Setup::new(cluster.fresh_database(), &people).await;
    let a = s.start(&people).await;
    let b = s.start(&people).await;
    assert_eq!(read_status(&client_as(&a, "bot", "alk_nope")).await, None);

    // (a) An agent added with the CLI: accepted by both running instances, no restart.
    let (ok, token, err) = s.cli(&["agents", "add", "bot"]);
    assert!(ok, "agents add: {err}");
    let token = token.trim().to_string();
    assert!(token.starts_with("alk_"), "{token}");
    assert!(err.contains("shared database"), "{err}");
    for (who, x) in [("A", &a), ("B", &b)] {
        support::eventually(&format!("bot accepted by {who}"), PROPAGATION, || async {
            (read_status(&client_as(x, "bot", &token)).await == Some(200)).then_some(())
        })
        .await;
    }
    // The config file's agent works too, and the database holds only the digest.
    assert_eq!(
        read_status(&client_as(&b, "file-bot", &file_bot)).await,
        Some(200)
    );
    let store = airlock::store::open_postgres(&s.url).expect("store");
    let record = store
        .get(airlock::store::Tree::Meta, b"agent/bot")
        .expect("get")
        .expect("stored");
    let record = String::from_utf8_lossy(&record);
    assert!(
        !record.contains(&token),
        "a token is never stored: {record}"
    );
    assert!(
        record.contains(&hex::encode(airlock::agents::token_digest(&token))),
        "{record}"
    );
    let (ok, list, err) = s.cli(&["agents", "list"]);
    assert!(ok, "{err}");
    assert!(
        list.contains("bot\t") && list.contains("source=database"),
        "{list}"
    );
    assert!(
        list.contains("file-bot\t") && list.contains("source=config"),
        "{list}"
    );
    let (ok, _, err) = s.cli(&["agents", "add", "bot"]);
    assert!(!ok && err.contains("already exists"), "{err}");

    // A reviewer added with the CLI signs in on both admin APIs.
    let (ok, alice, err) = s.cli(&["reviewers", "add", "alice"]);
    assert!(ok, "reviewers add: {err}");
    let alice = alice.trim().to_string();
    for (who, x) in [("A", &a), ("B", &b)] {
        support::eventually(&format!("alice accepted by {who}"), PROPAGATION, || async {
            (admin_status(x, &alice).await == 200).then_some(())
        })
        .await;
    }
    // Each instance records the reviewer it took in: one `policy` entry each in the shared
    // log, both started with a `startup` entry; no token or digest in any of them.
    support::eventually("each instance's reviewers entry", PROPAGATION, || async {
        let entries = a.gate.audit().entries(0).expect("entries");
        let policy: Vec<_> = entries.iter().filter(|e| e["kind"] == "policy").collect();
        let added = policy
            .iter()
            .filter(|e| {
                e["change"] == "reviewers"
                    && e["trigger"] == "database"
                    && e["added"] == serde_json::json!(["alice"])
            })
            .count();
        let starts = policy.iter().filter(|e| e["change"] == "startup").count();
        let text = serde_json::to_string(&entries).expect("json");
        assert!(
            !text.contains(&alice)
                && !text.contains(&hex::encode(airlock::agents::token_digest(&alice)))
        );
        (added == 2 && starts == 2)
            .then_some(())
            .ok_or((added, starts))
    })
    .await;

    // (b) Removed: refused by both, on a connection opened before the removal too.
    let open = client_as(&a, "bot", &token);
    assert_eq!(read_status(&open).await, Some(200));
    let (ok, _, err) = s.cli(&["agents", "remove", "bot"]);
    assert!(ok, "agents remove: {err}");
    for (who, x) in [("A", &a), ("B", &b)] {
        support::eventually(&format!("bot refused by {who}"), PROPAGATION, || async {
            (read_status(&client_as(x, "bot", &token)).await.is_none()).then_some(())
        })
        .await;
    }
    assert_ne!(
        read_status(&open).await,
        Some(200),
        "the connection bot opened before its removal carries nothing more"
    );
    let (ok, _, err) = s.cli(&["reviewers", "remove", "alice"]);
    assert!(ok, "reviewers remove: {err}");
    for (who, x) in [("A", &a), ("B", &b)] {
        support::eventually(&format!("alice refused by {who}"), PROPAGATION, || async {
            (admin_status(x, &alice).await == 401).then_some(())
        })
        .await;
    }
    // Config-file entries are removed from the file the CLI is given (each `airlock serve`
    // reads its own file again when it changes: tests/hot_reload.rs); unknown names are errors.
    assert_eq!(
        read_status(&client_as(&a, "file-bot", &file_bot)).await,
        Some(200),
        "the config file's agent works"
    );
    let (ok, _, err) = s.cli(&["agents", "remove", "file-bot"]);
    assert!(ok && err.contains("removed from"), "{err}");
    let (ok, _, err) = s.cli(&["reviewers", "remove", "carol"]);
    assert!(ok && err.contains("removed from"), "{err}");
    let text = std::fs::read_to_string(&s.cli_config).expect("config");
    assert!(
        !text.contains("file-bot") && !text.contains("carol") && text.contains("postgres"),
        "{text}"
    );
    let (ok, _, err) = s.cli(&["agents", "remove", "nobody"]);
    assert!(!ok && err.contains("no agent"), "{err}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_share_the_admin_token_and_the_link_key() {
    let Some(cluster) = support::postgres::Cluster::shared() else {
        return;
    };
    let (carol, file_bot) = (
        airlock::agents::generate_token(),
        airlock::agents::generate_token(),
    );
    let people = file_people(&carol, &file_bot);
    let s = Setup::new(cluster.fresh_database(), &people).await;
    let a = s.start(&people).await;
    // Hold a DELETE on A before B starts (B reads the audit chain's head at start).
    let r = client_as(&a, "file-bot", &file_bot)
        .delete("https://api.github.com/repos/acme/shared")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 423);
    let held: serde_json::Value = r.json().await.expect("json");
    let id = held["reviewId"].as_str().expect("review id").to_string();

    // B's token file holds some other token: replaced by the shared one.
    let dir = tempfile::tempdir().expect("tmp");
    let stale = dir.path().join("data").join("admin-token");
    airlock::secret_file::write(&stale, b"an-old-local-token").expect("write");
    let b = start_in(&s, &people, dir).await;
    assert_eq!(a.admin_token, b.admin_token, "one admin token");
    for x in [&a, &b] {
        let file = std::fs::read_to_string(token_file(x)).expect("token file");
        assert_eq!(file.trim(), a.admin_token, "each instance's token file");
        assert_eq!(mode(&token_file(x)), 0o600);
        assert_eq!(admin_status(x, &a.admin_token).await, 200);
        assert!(
            !x.config.store.path.join("link-key").exists(),
            "the link key is the database's"
        );
    }
    assert_eq!(admin_status(&b, "an-old-local-token").await, 401);

    // A link A's signer minted is redeemed once, on B; A then refuses it.
    let link = a.links.mint(
        &id,
        airlock::notify::LinkAction::Approve,
        "carol",
        &airlock::agents::token_digest(&carol),
        Duration::from_secs(600),
    );
    let web = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let r = web
        .post(format!("http://{}/ui/link/{link}", b.admin_addr))
        .send()
        .await
        .expect("post");
    let status = r.status();
    let page = r.text().await.expect("html");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("executed"), "{page}");
    assert_eq!(s.up.count(), 1);
    let r = web
        .post(format!("http://{}/ui/link/{link}", a.admin_addr))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("html").contains("already used"));
    assert_eq!(s.up.count(), 1, "sent once");
    a.stop().await;
    b.stop().await;
}

/// A wait on one instance sleeps through another instance's changes of other reviews (the
/// database's notices name the reviews written) and wakes as soon as that instance decides its
/// own review, well before the wait's fallback re-check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_hears_of_its_own_review_decided_on_another_instance_and_of_no_other() {
    let Some(cluster) = support::postgres::Cluster::shared() else {
        return;
    };
    let (carol, file_bot) = (
        airlock::agents::generate_token(),
        airlock::agents::generate_token(),
    );
    let people = file_people(&carol, &file_bot);
    let s = Setup::new(cluster.fresh_database(), &people).await;
    let a = s.start(&people).await;
    let b = s.start(&people).await;
    let agent = client_as(&a, "file-bot", &file_bot);
    let mut ids = Vec::new();
    for i in 0..11 {
        let r = agent
            .delete(format!("https://api.github.com/repos/acme/w{i}"))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 423);
        let held: serde_json::Value = r.json().await.expect("json");
        ids.push(held["reviewId"].as_str().expect("review id").to_string());
    }
    let mine = ids.remove(0);
    let waiting = {
        let (gate, id) = (a.gate.clone(), mine.clone());
        tokio::spawn(async move { gate.wait_final(&id, Duration::from_secs(120)).await })
    };
    support::eventually("the wait to read", PROPAGATION, || async {
        (a.gate.wait_reads() >= 1 && a.gate.waited_on() == 1).then_some(())
    })
    .await;
    // The notice of its own hold may still be on its way (one more read).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reads = a.gate.wait_reads();

    let carol = airlock::gate::Reviewer::named("carol");
    let before = a.gate.change_count();
    for id in &ids {
        b.gate
            .extend(id, &carol, Duration::from_secs(3600))
            .await
            .expect("extend");
        b.gate.reject(id, &carol, None).await.expect("reject");
    }
    // A hears of B's 20 changes (its dashboard's version moves), but no wait reads.
    support::eventually("A to hear of B's changes", PROPAGATION, || async {
        (a.gate.change_count() > before).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        a.gate.wait_reads(),
        reads,
        "other reviews' changes woke no wait"
    );

    let asked = std::time::Instant::now();
    b.gate.reject(&mine, &carol, None).await.expect("reject");
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken by B's decision, not by the fallback re-check")
        .expect("task")
        .expect("wait");
    assert_eq!(r.state, airlock::gate::ReviewState::Rejected);
    assert!(asked.elapsed() < airlock::gate::WAIT_RECHECK);
    assert_eq!(a.gate.waited_on(), 0);
    a.stop().await;
    b.stop().await;
}

/// An instance of `s` in `dir`.
async fn start_in(s: &Setup, people: &str, dir: tempfile::TempDir) -> Airlock {
    let mut config = Airlock::config(&config_text(&s.url, people), dir.path(), &s.up, HOSTS);
    config.proxy.allow_anonymous = false;
    config.audit.key_file = Some(s.shared.path().join("audit-key.pem"));
    Airlock::start_with_parts(
        config,
        dir,
        Arc::new(TestRules),
        Arc::new(airlock::gate::SystemClock),
    )
    .await
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Removing a stored reviewer after which a rule could never be approved (here `approvals = 2`
/// with one other reviewer) would stop every instance's next start: refused without `--force`.
#[test]
fn a_reviewer_removal_that_strands_a_rule_needs_force() {
    let Some(cluster) = support::postgres::Cluster::shared() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::write(
        rules.join("t.toml"),
        "[service]\nname = \"github\"\nhosts = [\"api.github.com\"]\n\n\
         [[rule]]\ntool = \"test.delete\"\nmethod = \"DELETE\"\npath = \"/repos/{owner}/{repo}\"\n\
         class = \"irreversible\"\naction = \"escalate\"\napprovals = 2\n",
    )
    .expect("write rules");
    let cfg = dir.path().join("airlock.toml");
    let people = file_people(
        &airlock::agents::generate_token(),
        &airlock::agents::generate_token(),
    );
    std::fs::write(
        &cfg,
        format!(
            "{}[rules]\ndir = {:?}\n",
            config_text(&cluster.fresh_database(), &people),
            rules
        ),
    )
    .expect("write config");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .expect("run airlock");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = cli(&["reviewers", "add", "Alice"]);
    assert!(ok, "{err}");
    let (ok, err) = cli(&["reviewers", "add", "alice"]);
    assert!(!ok && err.contains("already exists"), "one person: {err}");
    let (ok, err) = cli(&["reviewers", "remove", "alice"]);
    assert!(!ok && err.contains("could never be approved"), "{err}");
    assert!(err.contains("--force"), "{err}");
    let (ok, err) = cli(&["reviewers", "remove", "alice", "--force"]);
    assert!(ok, "{err}");
    let (ok, err) = cli(&["reviewers", "remove", "alice", "--force"]);
    assert!(!ok && err.contains("no reviewer"), "{err}");
}

/// With an embedded store `agents add` appends to the config file, `agents remove` takes the
/// block out again, and no record is kept in the store.
#[test]
fn with_redb_the_cli_still_writes_the_config_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        format!("[store]\npath = {:?}\n", dir.path().join("data")),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(&cfg)
        .args(["agents", "add", "bot"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&cfg).expect("config");
    assert!(
        text.contains("[[agents]]") && text.contains("name = \"bot\""),
        "{text}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "the store was not opened"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(&cfg)
        .args(["agents", "remove", "bot"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&cfg).expect("config");
    assert!(!text.contains("name = \"bot\""), "{text}");
}
