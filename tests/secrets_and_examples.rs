//! Secrets never leak (issue 4): a real `airlock serve` process with a provider credential and
//! an agent created by `airlock agents add` handles reads, an echoing upstream, a held and
//! approved DELETE and failed logins; afterwards the provider token and the agent token are
//! searched for in the debug log, every file of the store, the audit export, `reviews show`,
//! and the admin API. Also runs the README's Python `requests` agent example end to end.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{path_str, FakeUpstream};

const PROVIDER_TOKEN: &str = "ghp_SECRETproviderTokenNeverLeaks1234";

fn airlock_cmd(cfg: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
    c.arg("--config").arg(cfg);
    c
}

struct Running {
    child: Child,
    proxy: String,
    admin: String,
}

/// Starts `airlock serve`, with stderr (debug logs) going to `log`; reads its addresses.
fn spawn_serve(cfg: &Path, log: &Path) -> Running {
    spawn_serve_logging(cfg, log, "debug")
}

/// Starts `airlock serve` with `AIRLOCK_LOG=level`, stderr going to `log`.
fn spawn_serve_logging(cfg: &Path, log: &Path, level: &str) -> Running {
    serve_with(airlock_cmd(cfg), log, level)
}

/// Runs `cmd serve` (an `airlock` command line, or one wrapping it), as [`spawn_serve_logging`].
fn serve_with(mut cmd: Command, log: &Path, level: &str) -> Running {
    let log_file = std::fs::File::create(log).expect("log file");
    let mut child = cmd
        .arg("serve")
        .env("AIRLOCK_LOG", level)
        .env("TEST_GITHUB_TOKEN", PROVIDER_TOKEN)
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .expect("spawn airlock");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut proxy = String::new();
    let mut admin = String::new();
    while proxy.is_empty() || admin.is_empty() {
        let line = lines
            .next()
            .expect("airlock printed its addresses")
            .expect("line");
        if let Some(a) = line.strip_prefix("airlock: proxy listening on ") {
            proxy = a.trim().to_string();
        }
        if let Some(rest) = line.strip_prefix("airlock: admin API on http://") {
            admin = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    }
    Running {
        child,
        proxy,
        admin,
    }
}

fn stop(mut r: Running) {
    let _ = Command::new("kill")
        .args(["-TERM", &r.child.id().to_string()])
        .status();
    // A grace period, not a check: up to 10 s for a clean exit, then SIGKILL.
    for _ in 0..100 {
        if let Ok(Some(_)) = r.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = r.child.kill();
    let _ = r.child.wait();
}

fn write_config(dir: &Path, up: &FakeUpstream, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("airlock.toml");
    // Fixed ports, so the CLI finds the admin API from the same config.
    let free = support::spare_addr;
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"{}\"\n[admin]\nlisten = \"{}\"\n\
             [tls]\nca_dir = {:?}\n[store]\npath = {:?}\n\
             [upstream]\nextra_ca_files = [{:?}]\n[upstream.resolve]\n\"api.github.com\" = \"{}\"\n\
             [credentials.github]\nenv = \"TEST_GITHUB_TOKEN\"\n{extra}",
            free(),
            free(),
            path_str(&dir.join("certs")),
            path_str(&dir.join("data")),
            path_str(&up.ca_file),
            up.addr,
        ),
    )
    .expect("write config");
    cfg
}

/// `airlock agents add NAME` against `cfg`; returns the printed token.
fn add_agent(cfg: &Path, name: &str) -> String {
    let out = airlock_cmd(cfg)
        .args(["agents", "add", name, "--services", "github"])
        .output()
        .expect("agents add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("alk_"), "{token}");
    let text = std::fs::read_to_string(cfg).expect("config");
    assert!(!text.contains(&token), "the config keeps only the digest");
    token
}

fn client(proxy: &str, name: &str, token: &str, ca: &str) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca");
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{name}:{token}@{proxy}")).expect("proxy"))
        .tls_certs_only([cert])
        .build()
        .expect("client")
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                files_under(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_in_logs_store_audit_cli_or_api() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(dir.path(), &up, "");
    let token = add_agent(&cfg, "ci-bot");
    let log = dir.path().join("airlock.log");
    let run = spawn_serve(&cfg, &log);
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).expect("ca");
    let c = client(&run.proxy, "ci-bot", &token, &ca);

    let r = c
        .get("https://api.github.com/repos/octo/demo")
        .header("authorization", "token ghp_AGENT_BOGUS_TOKEN")
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("body");
    assert!(!body.contains(PROVIDER_TOKEN));
    let r = c
        .get("https://api.github.com/echo")
        .send()
        .await
        .expect("echo");
    let echoed = format!("{:?}{}", r.headers().clone(), r.text().await.expect("body"));
    assert!(!echoed.contains(PROVIDER_TOKEN), "{echoed}");
    let r = c
        .delete("https://api.github.com/repos/octo/demo")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 423);
    let id = r.headers()["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string();
    // A failed login with a wrong token and one with the right token for a wrong agent name.
    let bad = client(&run.proxy, "ci-bot", "alk_wrong", &ca)
        .get("https://api.github.com/user")
        .send()
        .await;
    assert!(bad.is_err() || bad.map(|r| r.status().as_u16()).ok() == Some(407));
    let _ = client(&run.proxy, "other", &token, &ca)
        .get("https://api.github.com/user")
        .send()
        .await;

    let cli = |args: &[&str]| {
        let out = airlock_cmd(&cfg).args(args).output().expect("cli");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let mut surfaces: Vec<(String, Vec<u8>)> = Vec::new();
    surfaces.push((
        "reviews show".into(),
        cli(&["reviews", "show", &id]).into_bytes(),
    ));
    let approved = cli(&["reviews", "approve", &id, "--comment", "ok"]);
    assert!(approved.contains("executed"), "{approved}");
    surfaces.push(("reviews approve".into(), approved.into_bytes()));
    surfaces.push((
        "reviews list".into(),
        cli(&["reviews", "list"]).into_bytes(),
    ));
    surfaces.push((
        "reviews show after".into(),
        cli(&["reviews", "show", &id]).into_bytes(),
    ));
    surfaces.push((
        "audit export".into(),
        cli(&["audit", "export"]).into_bytes(),
    ));
    surfaces.push((
        "config check".into(),
        cli(&["config", "check"]).into_bytes(),
    ));
    let admin_token = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("token");
    let admin_addr: std::net::SocketAddr = run.admin.parse().expect("admin addr");
    for path in ["/v1/reviews", &format!("/v1/reviews/{id}"), "/v1/audit"] {
        let (_, body) = airlock::admin::client::call_raw(
            admin_addr,
            admin_token.trim(),
            http::Method::GET,
            path,
            None,
        )
        .await
        .expect("admin");
        surfaces.push((format!("admin {path}"), body.to_vec()));
    }
    // The upstream did get the real token, exactly on the calls it should.
    let seen = up.requests();
    assert!(seen
        .iter()
        .all(|r| r.header("authorization") == Some(&format!("Bearer {PROVIDER_TOKEN}"))));
    assert_eq!(seen.iter().filter(|r| r.method == "DELETE").count(), 1);

    stop(run);
    surfaces.push(("log".into(), std::fs::read(&log).expect("log")));
    let mut files = Vec::new();
    files_under(&dir.path().join("data"), &mut files);
    files_under(&dir.path().join("certs"), &mut files);
    assert!(!files.is_empty());
    for f in files {
        surfaces.push((path_str(&f), std::fs::read(&f).unwrap_or_default()));
    }
    let log_text = String::from_utf8_lossy(&surfaces.iter().find(|s| s.0 == "log").expect("log").1)
        .into_owned();
    assert!(
        log_text.contains("airlock::access"),
        "the log has request lines"
    );
    for (name, bytes) in &surfaces {
        for secret in [PROVIDER_TOKEN, token.as_str(), "ghp_AGENT_BOGUS_TOKEN"] {
            assert!(!contains(bytes, secret), "{secret} found in {name}");
        }
    }
}

/// `program` run as this user without privileges: as root, with every capability dropped (so
/// only the uid match and the target's dumpable flag decide what it may inspect).
fn unprivileged(program: &str) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set=-all", "--inh-caps=-all", program]);
        c
    } else {
        Command::new(program)
    }
}

/// What an unprivileged process of this user reads from `/proc/<pid>/environ`.
fn environ_as_same_user(pid: u32) -> std::process::Output {
    unprivileged("cat")
        .arg(format!("/proc/{pid}/environ"))
        .output()
        .expect("run cat")
}

/// Whether an unprivileged process of this user may open `/proc/<pid>/mem` (reading its
/// first byte fails either way: address 0 is unmapped).
fn mem_opens_as_same_user(pid: u32) -> bool {
    let out = unprivileged("head")
        .args(["-c", "1", &format!("/proc/{pid}/mem")])
        .output()
        .expect("run head");
    !String::from_utf8_lossy(&out.stderr).contains("Permission denied")
}

/// An agent running as Airlock's user cannot read its environment (where `env =` credentials
/// live) or memory: Airlock is non-dumpable. The control shows the same read works on an
/// ordinary process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_same_user_process_cannot_read_airlocks_environment() {
    support::init();
    let mut control = unprivileged("sleep")
        .arg("30")
        .env("CONTROL_SECRET", PROVIDER_TOKEN)
        .spawn()
        .expect("sleep");
    // Until setpriv has exec'd sleep, it still holds capabilities, and so is not inspectable.
    let comm = format!("/proc/{}/comm", control.id());
    for _ in 0..500 {
        if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let seen = environ_as_same_user(control.id());
    let mem = mem_opens_as_same_user(control.id());
    let _ = control.kill();
    let _ = control.wait();
    assert!(
        contains(&seen.stdout, PROVIDER_TOKEN),
        "control: an ordinary process's environment is readable ({seen:?})"
    );
    // Under Yama (ptrace_scope >= 1) only ancestors may open another process's memory, so
    // there the memory check proves nothing; the environment one stands.
    let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .is_ok_and(|v| v.trim() != "0");
    assert!(mem || yama, "control: an ordinary process's memory opens");

    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(dir.path(), &up, "");
    let mut airlock = unprivileged(env!("CARGO_BIN_EXE_airlock"));
    airlock.arg("--config").arg(&cfg);
    let run = serve_with(airlock, &dir.path().join("airlock.log"), "info");
    let seen = environ_as_same_user(run.child.id());
    let mem = mem_opens_as_same_user(run.child.id());
    stop(run);
    assert!(!seen.status.success(), "environment readable: {seen:?}");
    assert!(!contains(&seen.stdout, PROVIDER_TOKEN));
    assert!(!mem || yama, "memory opens");
}

/// `serve` writes its log lines in batches from a thread of their own: a request's access line
/// reaches stderr while Airlock runs (no flush needed), and every line is out by the time it
/// has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_lines_reach_stderr_while_serving_and_all_by_exit() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(dir.path(), &up, "");
    let token = add_agent(&cfg, "ci-bot");
    let log = dir.path().join("airlock.log");
    let run = spawn_serve_logging(&cfg, &log, "info");
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).expect("ca");
    let c = client(&run.proxy, "ci-bot", &token, &ca);
    let get = |path: String| {
        let c = c.clone();
        async move {
            let r = c
                .get(format!("https://api.github.com{path}"))
                .send()
                .await
                .expect("GET");
            assert_eq!(r.status(), 200, "{path}");
        }
    };
    let logged = |text: &str, path: &str| {
        text.lines()
            .any(|l| l.contains("airlock::access") && l.contains(&format!("path={path} ")))
    };
    get("/repos/octo/demo".into()).await;
    support::eventually(
        "the first GET's access line",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            logged(&text, "/repos/octo/demo").then_some(())
        },
    )
    .await;
    for i in 0..200 {
        get(format!("/repos/octo/r{i}")).await;
    }
    stop(run);
    let text = std::fs::read_to_string(&log).expect("log");
    let missing: Vec<usize> = (0..200)
        .filter(|i| !logged(&text, &format!("/repos/octo/r{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "no access line for requests {missing:?}"
    );
}

/// The README's Python example: `requests`, no token, a held DELETE, approval, outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_requests_agent_example_runs_through_airlock() {
    support::init();
    let probe = Command::new("python3")
        .args(["-c", "import requests"])
        .output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        assert!(
            std::env::var_os("AIRLOCK_ALLOW_NO_PYTHON").is_some(),
            "python3 with `requests` is needed (pip install requests); .ci/run installs it"
        );
        eprintln!("skipping: python3 requests missing and AIRLOCK_ALLOW_NO_PYTHON set");
        return;
    }
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(dir.path(), &up, "");
    let token = add_agent(&cfg, "py-agent");
    let log = dir.path().join("airlock.log");
    let run = spawn_serve(&cfg, &log);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/python/github_agent.py"
    );
    let child = tokio::process::Command::new("python3")
        .arg(script)
        .env(
            "HTTPS_PROXY",
            format!("http://py-agent:{token}@{}", run.proxy),
        )
        .env("REQUESTS_CA_BUNDLE", dir.path().join("certs/ca.pem"))
        .env("NO_PROXY", "")
        .env("no_proxy", "")
        .env("WAIT_SECONDS", "60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    // Approve the review as soon as it appears; nothing may reach the upstream before that.
    let admin_token = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("token");
    let admin_addr: std::net::SocketAddr = run.admin.parse().expect("addr");
    // Python and its imports start slowly on a loaded machine: a longer wait than the default.
    let id = support::eventually("the DELETE to be held", Duration::from_secs(30), || async {
        let (_, list) = airlock::admin::client::call(
            admin_addr,
            admin_token.trim(),
            http::Method::GET,
            "/v1/reviews?state=pending",
            None,
        )
        .await
        .expect("admin");
        list["reviews"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|r| r["reviewId"].as_str().map(str::to_string))
            .ok_or(list)
    })
    .await;
    assert!(up.requests().iter().all(|r| r.method != "DELETE"));
    let (status, _) = airlock::admin::client::call(
        admin_addr,
        admin_token.trim(),
        http::Method::POST,
        &format!("/v1/reviews/{id}/approve"),
        Some(serde_json::json!({"reviewer": "alice"})),
    )
    .await
    .expect("approve");
    assert_eq!(status, 200);
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("python finished")
        .expect("python output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stop(run);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\"step\": \"read\", \"status\": 200"),
        "{stdout}"
    );
    assert!(stdout.contains("\"held\": true"), "{stdout}");
    assert!(stdout.contains(&id), "{stdout}");
    assert!(stdout.contains("\"state\": \"executed\""), "{stdout}");
    assert!(stdout.contains("\"upstream_status\": 200"), "{stdout}");
    let deletes: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "executed exactly once");
    assert_eq!(
        deletes[0].header("authorization"),
        Some(format!("Bearer {PROVIDER_TOKEN}").as_str())
    );
}

/// The PyGithub variant: the library is used without a token and the delete is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pygithub_agent_example_is_held() {
    support::init();
    let probe = Command::new("python3")
        .args(["-c", "import github"])
        .output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        assert!(
            std::env::var_os("AIRLOCK_ALLOW_NO_PYTHON").is_some(),
            "python3 with PyGithub is needed (pip install PyGithub); .ci/run installs it"
        );
        eprintln!("skipping: PyGithub missing and AIRLOCK_ALLOW_NO_PYTHON set");
        return;
    }
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(dir.path(), &up, "");
    let token = add_agent(&cfg, "pygithub-agent");
    let run = spawn_serve(&cfg, &dir.path().join("airlock.log"));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/python/pygithub_agent.py"
    );
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .env(
            "HTTPS_PROXY",
            format!("http://pygithub-agent:{token}@{}", run.proxy),
        )
        .env("REQUESTS_CA_BUNDLE", dir.path().join("certs/ca.pem"))
        .env("NO_PROXY", "")
        .env("no_proxy", "")
        .output()
        .await
        .expect("python3");
    stop(run);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\"held\": true") && stdout.contains("rev_"),
        "{stdout}"
    );
    assert!(stdout.contains("github.repos.delete"), "{stdout}");
    assert_eq!(up.count(), 0, "nothing reached GitHub");
}
