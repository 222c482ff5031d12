//! git over HTTPS through Airlock, end to end: a real `git` client (proxy + Airlock's CA) against
//! a fake `github.com` running the real `git http-backend` on a bare repository. Clone and new
//! branches pass (a pack larger than the held-body cap streams through); deleting a branch and
//! force-pushing `main` are held (423) with nothing sent upstream; approving executes the stored
//! push exactly once. git reads a held push as a report naming the review (`! [remote rejected]
//! … (held for review rev_…)`), and so a push too large to hold. Also a gzip'd push body, a
//! malformed one and a raw client that asks for a report.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use support::git_http::GitServer;
use support::{path_str, Airlock};

const REAL_TOKEN: &str = "ghp_realGitToken0123456789";
/// Small, so a pack that streams through proves the push was not buffered whole.
const MAX_HELD_BODY: usize = 256 * 1024;

struct Fixture {
    git: GitServer,
    airlock: Airlock,
    agent_token: String,
    /// HOME and scratch space for the git client.
    home: tempfile::TempDir,
}

fn expected_authorization() -> String {
    let b =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{REAL_TOKEN}"));
    format!("Basic {b}")
}

/// Runs git with an isolated HOME and no system config; returns (success, stdout + stderr).
fn git_raw(home: &Path, cwd: &Path, args: &[&str]) -> (bool, String) {
    git_raw_env(home, cwd, args, &[])
}

/// [`git_raw`] with `env` added to git's (otherwise cleared) environment.
fn git_raw_env(home: &Path, cwd: &Path, args: &[&str], env: &[(String, String)]) -> (bool, String) {
    let out = std::process::Command::new("git")
        .current_dir(cwd)
        .env_clear()
        // GIT_TRACE_CURL=1 etc. pass through, for debugging.
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("GIT_TRACE")))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Agent")
        .env("GIT_AUTHOR_EMAIL", "agent@example.test")
        .env("GIT_COMMITTER_NAME", "Agent")
        .env("GIT_COMMITTER_EMAIL", "agent@example.test")
        .envs(env.iter().cloned())
        .args(["-c", "init.defaultBranch=main", "-c", "protocol.version=2"])
        .args(args)
        .output()
        .expect("git must be installed (apt-get install git)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn git_ok(home: &Path, cwd: &Path, args: &[&str]) -> String {
    let (ok, text) = git_raw(home, cwd, args);
    assert!(ok, "git {args:?} failed: {text}");
    text
}

/// The object id `name` points at in `repo`, if the ref exists.
fn ref_oid(home: &Path, repo: &Path, name: &str) -> Option<String> {
    let (ok, text) = git_raw(home, repo, &["rev-parse", "--verify", "--quiet", name]);
    ok.then(|| text.trim().to_string())
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_with("").await
    }

    /// [`Fixture::start`] with `gate` added to the config's `[gate]` section.
    async fn start_with(gate: &str) -> Fixture {
        support::init();
        let git = GitServer::start(Some(expected_authorization())).await;
        let home = tempfile::tempdir().expect("home");
        // The upstream: a bare octo/demo.git with `main` and `scratch`, seeded over the file system.
        let bare = git.repo("octo", "demo");
        std::fs::create_dir_all(&bare).expect("repo dir");
        let h = home.path();
        git_ok(h, &bare, &["init", "--bare", "-q", "-b", "main"]);
        git_ok(h, &bare, &["config", "http.receivepack", "true"]);
        let seed = h.join("seed");
        std::fs::create_dir_all(&seed).expect("seed");
        git_ok(h, &seed, &["init", "-q", "-b", "main"]);
        std::fs::write(seed.join("README"), "hello from main\n").expect("write");
        git_ok(h, &seed, &["add", "README"]);
        git_ok(h, &seed, &["commit", "-q", "-m", "first"]);
        let bare_url = path_str(&bare);
        git_ok(h, &seed, &["push", "-q", &bare_url, "main", "main:scratch"]);

        let dir = tempfile::tempdir().expect("dir");
        let token_file = dir.path().join("github-token");
        support::write_secret(&token_file, REAL_TOKEN);
        let agent_token = airlock::agents::generate_token();
        let toml = format!(
            "{}[credentials.github]\nfile = {:?}\n[gate]\nmax_body_bytes = {MAX_HELD_BODY}\n{gate}\n",
            airlock::agents::config_block(
                "coder",
                &airlock::agents::token_digest(&agent_token),
                &["github".into()],
                None
            ),
            path_str(&token_file),
        );
        let config = git.airlock_config(&toml, dir.path());
        let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
        let airlock =
            Airlock::start_with_parts(config, dir, catalog, Arc::new(airlock::gate::SystemClock))
                .await;
        Fixture {
            git,
            airlock,
            agent_token,
            home,
        }
    }

    fn bare(&self) -> PathBuf {
        self.git.repo("octo", "demo")
    }

    fn upstream_ref(&self, name: &str) -> Option<String> {
        ref_oid(self.home.path(), &self.bare(), name)
    }

    /// git through Airlock as agent `coder` (blocking: run it off the runtime).
    async fn git(&self, cwd: &Path, args: &[&str]) -> (bool, String) {
        let proxy = format!(
            "http.proxy=http://coder:{}@{}",
            self.agent_token, self.airlock.addr
        );
        let ca = format!("http.sslCAInfo={}", path_str(&self.airlock.ca_file()));
        let mut all: Vec<String> = vec!["-c".into(), proxy, "-c".into(), ca];
        all.extend(args.iter().map(|s| s.to_string()));
        let (home, cwd) = (self.home.path().to_path_buf(), cwd.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            git_raw(&home, &cwd, &refs)
        })
        .await
        .expect("join")
    }

    async fn pending(&self, tool: &str) -> Vec<serde_json::Value> {
        let (code, list) = self
            .airlock
            .admin("GET", "/v1/reviews?state=pending", None)
            .await;
        assert_eq!(code, 200, "{list}");
        list["reviews"]
            .as_array()
            .expect("reviews")
            .iter()
            .filter(|r| r["tool"] == tool)
            .cloned()
            .collect()
    }

    async fn approve(&self, id: &str) -> (u16, serde_json::Value) {
        self.airlock
            .admin(
                "POST",
                &format!("/v1/reviews/{id}/approve"),
                Some(serde_json::json!({"comment": "ok"})),
            )
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn git_push_is_gated_by_ref_commands() {
    let f = Fixture::start().await;
    let url = "https://github.com/octo/demo.git";
    let h = f.home.path().to_path_buf();

    // Clone (info/refs + upload-pack) is a read: allowed.
    let (ok, text) = f.git(&h, &["clone", "-q", url, "work"]).await;
    assert!(ok, "clone through Airlock: {text}");
    let work = h.join("work");
    assert_eq!(
        std::fs::read_to_string(work.join("README")).expect("cloned file"),
        "hello from main\n"
    );
    assert!(
        f.git.seen().iter().all(|s| s.status != 401),
        "every upstream request carried the injected credential: {:?}",
        f.git.seen()
    );

    // The README's trust table for git: the variables alone (no git config) work too.
    let env = vec![
        (
            "HTTPS_PROXY".to_string(),
            format!("http://coder:{}@{}", f.agent_token, f.airlock.addr),
        ),
        ("GIT_SSL_CAINFO".to_string(), path_str(&f.airlock.ca_file())),
    ];
    let (home, cwd) = (h.clone(), h.clone());
    let (ok, text) = tokio::task::spawn_blocking(move || {
        git_raw_env(&home, &cwd, &["clone", "-q", url, "by-env"], &env)
    })
    .await
    .expect("join");
    assert!(ok, "clone with HTTPS_PROXY and GIT_SSL_CAINFO: {text}");
    assert!(h.join("by-env/README").exists());

    // A new branch whose pack (1 MiB of random bytes) is 4x the held-body cap: allowed and
    // streamed (were it buffered, Airlock would refuse it with 413).
    git_ok(&h, &work, &["checkout", "-q", "-b", "feature"]);
    let mut big = std::fs::File::create(work.join("blob.bin")).expect("create");
    let mut noise = vec![0u8; 1 << 20];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut noise);
    big.write_all(&noise).expect("write");
    drop(big);
    git_ok(&h, &work, &["add", "blob.bin"]);
    git_ok(&h, &work, &["commit", "-q", "-m", "big blob"]);
    // HTTP/1.1 for this one: git 2.47 on libcurl 7.88 stalls streaming a >1 MiB push over HTTP/2
    // to a hyper h2 server, Airlock or not (reproduced against the fake server directly).
    let (ok, text) = f
        .git(
            &work,
            &[
                "-c",
                "http.version=HTTP/1.1",
                "push",
                "-q",
                "origin",
                "feature",
            ],
        )
        .await;
    assert!(ok, "pushing a new branch is allowed: {text}");
    let feature = ref_oid(&h, &work, "HEAD").expect("local head");
    assert_eq!(f.upstream_ref("refs/heads/feature"), Some(feature));
    let biggest = f
        .git
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/git-receive-pack"))
        .map(|s| s.body_len)
        .max()
        .unwrap_or(0);
    assert!(
        biggest > 4 * MAX_HELD_BODY,
        "the pack went through whole: {biggest} bytes"
    );

    // Deleting `scratch` is held: git reads a report rejecting the ref with the review id (and
    // the status URL on `remote:`), fails, and nothing reaches the upstream.
    let scratch = f
        .upstream_ref("refs/heads/scratch")
        .expect("scratch exists");
    let posts = f.git.receive_pack_posts();
    let (ok, text) = f
        .git(&work, &["push", "origin", "--delete", "scratch"])
        .await;
    assert!(!ok, "the held delete fails on the client: {text}");
    assert_eq!(
        f.git.receive_pack_posts(),
        posts,
        "nothing reached the upstream"
    );
    assert_eq!(f.upstream_ref("refs/heads/scratch"), Some(scratch.clone()));

    let held = f.pending("github.git.delete-ref").await;
    assert_eq!(held.len(), 1, "one delete-ref review: {held:?}");
    let review = &held[0];
    let id = review["reviewId"].as_str().expect("reviewId").to_string();
    assert_held_report(&text, "scratch", &id);
    assert!(
        review["reasonCodes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "git_ref_delete")),
        "{review}"
    );

    // Approval sends the stored push once; the branch is gone.
    let (code, r) = f.approve(&id).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(r["result"]["status"], 200, "{r}");
    assert_eq!(f.git.receive_pack_posts(), posts + 1, "sent exactly once");
    assert_eq!(
        f.upstream_ref("refs/heads/scratch"),
        None,
        "scratch deleted"
    );
    let (code, _) = f.approve(&id).await;
    assert_eq!(code, 409, "a second approval is refused");
    assert_eq!(f.git.receive_pack_posts(), posts + 1, "still once");
    let last = f.git.seen().into_iter().last().expect("seen");
    assert_eq!(
        last.authorization.as_deref(),
        Some(expected_authorization().as_str())
    );

    // A force push to `main` (protected) is held too; main is untouched.
    let main = f.upstream_ref("refs/heads/main").expect("main");
    git_ok(&h, &work, &["checkout", "-q", "main"]);
    git_ok(
        &h,
        &work,
        &["commit", "-q", "--amend", "-m", "rewritten history"],
    );
    let posts = f.git.receive_pack_posts();
    let (ok, text) = f.git(&work, &["push", "--force", "origin", "main"]).await;
    assert!(!ok, "force push to main is held: {text}");
    assert_eq!(
        f.git.receive_pack_posts(),
        posts,
        "nothing reached the upstream"
    );
    assert_eq!(f.upstream_ref("refs/heads/main"), Some(main));
    let held = f.pending("github.git.push-protected-ref").await;
    assert_eq!(held.len(), 1);
    let id = held[0]["reviewId"].as_str().expect("reviewId");
    assert_held_report(&text, "main", id);
}

/// What git printed for a held push of `branch`: the ref rejected with the review id, the status
/// URL on a `remote:` line, and no "Everything up-to-date" or bare HTTP error.
fn assert_held_report(text: &str, branch: &str, id: &str) {
    let rejected = format!("[remote rejected] {branch} (held for review {id})");
    let rejected_update = format!("[remote rejected] {branch} -> {branch} (held for review {id})");
    assert!(
        text.contains(&rejected) || text.contains(&rejected_update),
        "git names the rejected ref and the review: {text}"
    );
    assert!(
        text.contains(&format!(
            "remote: Airlock: poll https://airlock.local/v1/reviews/{id}"
        )),
        "git shows the status URL: {text}"
    );
    assert!(!text.contains("Everything up-to-date"), "{text}");
    assert!(!text.contains("RPC failed"), "{text}");
}

fn pkt(payload: &str) -> String {
    format!("{:04x}{payload}", payload.len() + 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raw_push_bodies_gzip_and_malformed() {
    let f = Fixture::start().await;
    let scratch = f.upstream_ref("refs/heads/scratch").expect("scratch");
    let zero = "0".repeat(40);
    let section = format!(
        "{}0000",
        pkt(&format!(
            "{scratch} {zero} refs/heads/scratch\0report-status"
        ))
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(section.as_bytes()).expect("gzip");
    let gzipped = gz.finish().expect("gzip");

    let cert = reqwest::Certificate::from_pem(f.airlock.ca_pem.as_bytes()).expect("ca");
    let proxy = reqwest::Proxy::all(format!("http://coder:{}@{}", f.agent_token, f.airlock.addr))
        .expect("proxy");
    let client = reqwest::Client::builder()
        .proxy(proxy)
        .tls_certs_only([cert])
        .build()
        .expect("client");
    let push = |body: Vec<u8>, gzip: bool| {
        let mut rb = client
            .post("https://github.com/octo/demo.git/git-receive-pack")
            .header("content-type", "application/x-git-receive-pack-request")
            .body(body);
        if gzip {
            rb = rb.header("content-encoding", "gzip");
        }
        rb.send()
    };

    // gzip'd delete: decoded, judged, held.
    let resp = push(gzipped, true).await.expect("send");
    assert_eq!(resp.status(), 423);
    let held: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(held["tool"], "github.git.delete-ref", "{held}");
    assert_eq!(f.git.receive_pack_posts(), 0);

    // The same delete from a client that reads reports (git's Accept, `report-status`, no
    // side-band): a 200 receive-pack report rejecting the ref with the review id; the review
    // headers are there too.
    let resp = client
        .post("https://github.com/octo/demo.git/git-receive-pack")
        .header("content-type", "application/x-git-receive-pack-request")
        .header("accept", "application/x-git-receive-pack-result")
        .body(section.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        header("content-type"),
        "application/x-git-receive-pack-result"
    );
    assert_eq!(header("airlock-outcome"), "ESCALATE");
    let report_id = header("airlock-review-id");
    assert!(report_id.starts_with("rev_"), "{report_id}");
    assert_eq!(
        header("airlock-status-url"),
        format!("https://airlock.local/v1/reviews/{report_id}")
    );
    let report = resp.text().await.expect("report");
    assert_eq!(
        report,
        format!(
            "{}{}0000",
            pkt("unpack ok\n"),
            pkt(&format!(
                "ng refs/heads/scratch held for review {report_id}\n"
            ))
        )
    );
    let (code, r) = f
        .airlock
        .admin("GET", &format!("/v1/reviews/{report_id}"), None)
        .await;
    assert_eq!((code, r["state"].as_str()), (200, Some("pending")), "{r}");
    assert_eq!(f.git.receive_pack_posts(), 0);

    // Malformed command section: held (fail closed), never forwarded.
    let resp = push(b"00zzgarbage".to_vec(), false).await.expect("send");
    assert_eq!(resp.status(), 423);
    let bad: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(bad["reasonCodes"][0], "git_pktline_malformed", "{bad}");

    // Approving the gzip'd delete sends it as stored; git http-backend inflates and applies it.
    let id = held["reviewId"].as_str().expect("id");
    let (code, r) = f.approve(id).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["result"]["status"], 200, "{r}");
    let seen = f.git.seen();
    let sent = seen.last().expect("sent");
    assert_eq!(sent.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(f.git.receive_pack_posts(), 1);
    assert_eq!(
        f.upstream_ref("refs/heads/scratch"),
        None,
        "scratch deleted"
    );
    assert!(f.upstream_ref("refs/heads/main").is_some());
}

/// A push sent with `Airlock-Wait` and rejected while git waits: git reads a report naming the
/// rejection; nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_rejected_while_git_waits_reads_as_rejected() {
    let f = Fixture::start().await;
    let h = f.home.path().to_path_buf();
    let (ok, text) = f
        .git(
            &h,
            &["clone", "-q", "https://github.com/octo/demo.git", "work"],
        )
        .await;
    assert!(ok, "clone: {text}");
    let work = h.join("work");
    let scratch = f.upstream_ref("refs/heads/scratch").expect("scratch");

    let push = f.git(
        &work,
        &[
            "-c",
            "http.extraHeader=Airlock-Wait: 120",
            "push",
            "origin",
            "--delete",
            "scratch",
        ],
    );
    let reject = async {
        let id = support::eventually("the delete to be held", support::WAIT, || async {
            f.pending("github.git.delete-ref")
                .await
                .first()
                .and_then(|r| r["reviewId"].as_str().map(str::to_string))
        })
        .await;
        let (code, r) = f
            .airlock
            .admin(
                "POST",
                &format!("/v1/reviews/{id}/reject"),
                Some(serde_json::json!({"comment": "keep it"})),
            )
            .await;
        assert_eq!(code, 200, "{r}");
        id
    };
    let ((ok, text), id) = tokio::join!(push, reject);
    assert!(!ok, "the rejected push fails: {text}");
    assert!(
        text.contains(&format!(
            "[remote rejected] scratch (rejected in review {id})"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("remote: Airlock: review {id} rejected")),
        "{text}"
    );
    assert!(!text.contains("Everything up-to-date"), "{text}");
    assert_eq!(
        f.git.receive_pack_posts(),
        0,
        "nothing reached the upstream"
    );
    assert_eq!(f.upstream_ref("refs/heads/scratch"), Some(scratch));
}

/// Review of session 21: a held push larger than `gate.max_body_bytes` was answered with a bare
/// 413, and git printed only `RPC failed; HTTP 413` and a false `Everything up-to-date`. Its
/// command section is read by then: git now reads a report rejecting the ref with a reason that
/// names `gate.max_body_bytes`, and `remote:` lines saying why and what to do, over HTTP/2 (a
/// sized body) and HTTP/1.1 (chunked, over 1 MiB); nothing is stored or sent. A client that
/// reads no reports still gets the 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_too_large_to_hold_reads_as_rejected_in_git() {
    let f = Fixture::start().await;
    let h = f.home.path().to_path_buf();
    let (ok, text) = f
        .git(
            &h,
            &["clone", "-q", "https://github.com/octo/demo.git", "work"],
        )
        .await;
    assert!(ok, "clone: {text}");
    let work = h.join("work");
    let main = f.upstream_ref("refs/heads/main").expect("main");
    // (blob size, HTTP version): git sends a pack under 1 MiB with its length, a larger one
    // chunked.
    for (i, (size, version)) in [(600 << 10, "HTTP/2"), (1536 << 10, "HTTP/1.1")]
        .into_iter()
        .enumerate()
    {
        let mut noise = vec![0u8; size];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut noise);
        std::fs::write(work.join(format!("blob{i}.bin")), &noise).expect("write");
        git_ok(&h, &work, &["add", "."]);
        git_ok(&h, &work, &["commit", "-q", "-m", "big"]);
        let http = format!("http.version={version}");
        let (ok, text) = f.git(&work, &["-c", &http, "push", "origin", "main"]).await;
        assert!(!ok, "{version}: {text}");
        let reason = format!("not held: push over gate.max_body_bytes, {MAX_HELD_BODY} bytes");
        assert!(
            text.contains(&format!("[remote rejected] main -> main ({reason})")),
            "{version}: git names the ref and why: {text}"
        );
        assert!(
            text.contains(&format!(
                "remote: Airlock: request body exceeds {MAX_HELD_BODY} bytes"
            )) && text.contains("nothing was stored or sent to github.com"),
            "{version}: {text}"
        );
        assert!(!text.contains("Everything up-to-date"), "{version}: {text}");
        assert!(!text.contains("RPC failed"), "{version}: {text}");
    }
    assert!(f.pending("github.git.push-protected-ref").await.is_empty());
    // (git probes before a chunked push with an empty one, `0000`, which passes.)
    let pushes = || {
        let seen = f.git.seen();
        let posts = seen
            .iter()
            .filter(|s| s.path.ends_with("/git-receive-pack"));
        posts
            .filter(|s| s.method == "POST" && s.body_len > 4)
            .count()
    };
    assert_eq!(pushes(), 0, "nothing reached the upstream");
    assert_eq!(f.upstream_ref("refs/heads/main"), Some(main.clone()));

    // A raw client that reads no reports: the 413.
    let zero = "0".repeat(40);
    let mut huge = pkt(&format!("{main} {zero} refs/heads/main\0report-status")).into_bytes();
    huge.extend_from_slice(b"0000");
    huge.extend(std::iter::repeat_n(b'P', 2 * MAX_HELD_BODY));
    let cert = reqwest::Certificate::from_pem(f.airlock.ca_pem.as_bytes()).expect("ca");
    let proxy = reqwest::Proxy::all(format!("http://coder:{}@{}", f.agent_token, f.airlock.addr))
        .expect("proxy");
    let client = reqwest::Client::builder()
        .proxy(proxy)
        .tls_certs_only([cert])
        .build()
        .expect("client");
    let resp = client
        .post("https://github.com/octo/demo.git/git-receive-pack")
        .header("content-type", "application/x-git-receive-pack-request")
        .body(huge)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    assert_eq!(pushes(), 0);
}

/// Review of session 21: a push's other endings came back as JSON, which git never shows: a
/// push waiting with `Airlock-Wait` whose approved send failed printed `RPC failed; HTTP 502`
/// and a false `Everything up-to-date`, and so did one refused (429) past the pending cap. Each
/// is a report now: `approved in review … but not sent`, `not held: too many reviews pending`,
/// with `remote:` lines saying what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_that_failed_or_was_not_held_reads_so_in_git() {
    let f = Fixture::start_with("max_pending_per_agent = 1").await;
    let h = f.home.path().to_path_buf();
    let (ok, text) = f
        .git(
            &h,
            &["clone", "-q", "https://github.com/octo/demo.git", "work"],
        )
        .await;
    assert!(ok, "clone: {text}");
    let work = h.join("work");
    let scratch = f.upstream_ref("refs/heads/scratch").expect("scratch");

    // Approved while git waits, and the send fails: github.com is down.
    let push = f.git(
        &work,
        &[
            "-c",
            "http.extraHeader=Airlock-Wait: 120",
            "push",
            "origin",
            "--delete",
            "scratch",
        ],
    );
    let approve = async {
        let id = support::eventually("the delete to be held", support::WAIT, || async {
            f.pending("github.git.delete-ref")
                .await
                .first()
                .and_then(|r| r["reviewId"].as_str().map(str::to_string))
        })
        .await;
        f.git.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let (code, r) = f.approve(&id).await;
        assert_eq!((code, r["state"].as_str()), (200, Some("failed")), "{r}");
        id
    };
    let ((ok, text), id) = tokio::join!(push, approve);
    f.git.down.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "[remote rejected] scratch (approved in review {id} but not sent)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "remote: Airlock: review {id} was approved, but the push could not be sent"
        )),
        "{text}"
    );
    assert!(!text.contains("Everything up-to-date"), "{text}");
    assert!(!text.contains("RPC failed"), "{text}");

    // One held push fills the cap of 1; the next is not held. (Each is another push: the
    // same push again joins its review, the failed one above included, until its deadline.)
    let (ok, text) = f.git(&work, &["push", "origin", "--delete", "main"]).await;
    assert!(!ok && text.contains("held for review"), "{text}");
    let (ok, text) = f
        .git(&work, &["push", "origin", "--delete", "main", "scratch"])
        .await;
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "[remote rejected] scratch (not held: too many reviews pending, gate.max_pending_per_agent = 1)"
        ),
        "{text}"
    );
    assert!(
        text.contains("remote: Airlock: this request needs human approval, but this agent already has 1 reviews pending"),
        "{text}"
    );
    assert!(!text.contains("Everything up-to-date"), "{text}");
    assert!(!text.contains("RPC failed"), "{text}");
    assert_eq!(
        f.git.receive_pack_posts(),
        0,
        "nothing reached the upstream"
    );
    assert_eq!(f.upstream_ref("refs/heads/scratch"), Some(scratch));
}

/// Review of session 23: a push to an unprotected branch is soft-gated now, so it can be
/// refused past `audit.notify_per_agent`; a bare 429 reads in git as `RPC failed` and a false
/// `Everything up-to-date`. The refusal comes as a receive-pack report git shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_soft_gated_push_is_reported_in_gits_terms() {
    let f = Fixture::start_with("[audit]\nnotify_per_agent = 1\n").await;
    let url = "https://github.com/octo/demo.git";
    let h = f.home.path().to_path_buf();
    let (ok, text) = f.git(&h, &["clone", "-q", url, "work"]).await;
    assert!(ok, "clone: {text}");
    let work = h.join("work");
    // One a second, 30 seconds' worth at once: the 31st push within the second is refused.
    let mut refused = None;
    for i in 0..40 {
        let (ok, text) = f
            .git(
                &work,
                &["push", "origin", &format!("HEAD:refs/heads/feature-{i}")],
            )
            .await;
        if !ok {
            refused = Some((i, text));
            break;
        }
    }
    let (i, text) = refused.expect("a push past the soft-gate rate is refused");
    assert!(i >= 25, "refused only past the burst: push {i}: {text}");
    assert!(text.contains("remote rejected"), "{text}");
    assert!(text.contains("too_many_soft_gated"), "{text}");
    assert!(!text.contains("Everything up-to-date"), "{text}");
    assert!(
        f.upstream_ref(&format!("refs/heads/feature-{i}")).is_none(),
        "not forwarded"
    );
}
