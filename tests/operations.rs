//! Operating Airlock (issue 18), with the real binary run from a temp dir as its working
//! directory: the config and state are found the same way from anywhere (`--config`,
//! `$AIRLOCK_HOME`, `./airlock.toml`, XDG); the CLI creates nothing where it happens to run and
//! says where it looked; `airlock status`; `/metrics` after real traffic; the probes answer any
//! Host while the API keeps its Host check; JSON logs are all JSON; redirected logs carry no
//! ANSI colour; a user error is one line whatever `RUST_BACKTRACE` says; `serve` in an empty
//! directory keeps its state in the home; an agent added to the `agents_file` is loaded on SIGHUP.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::process::{cli, write_config, Serve};
use support::FakeUpstream;

const HOSTS: &[&str] = &["api.github.com"];

/// A sandbox for one CLI run: an empty working directory, and a HOME and XDG directories of its
/// own, all inside one temp dir.
struct Place {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cwd: PathBuf,
    xdg_config: PathBuf,
    xdg_data: PathBuf,
}

impl Place {
    fn new() -> Place {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let [cwd, xdg_config, xdg_data] = ["cwd", "xdg-config", "xdg-data"].map(|d| root.join(d));
        for d in [&cwd, &xdg_config, &xdg_data, &root.join("home")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        Place {
            _dir: dir,
            root,
            cwd,
            xdg_config,
            xdg_data,
        }
    }

    /// `airlock ARGS` in the working directory, with only this place's HOME and XDG dirs.
    fn airlock(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
        c.args(args)
            .current_dir(&self.cwd)
            .env_remove("AIRLOCK_CONFIG")
            .env_remove("AIRLOCK_HOME")
            .env_remove("AIRLOCK_ADMIN_TOKEN")
            .env("HOME", self.root.join("home"))
            .env("XDG_CONFIG_HOME", &self.xdg_config)
            .env("XDG_DATA_HOME", &self.xdg_data)
            .env("AIRLOCK_LOG", "warn");
        c
    }

    fn run(&self, args: &[&str], envs: &[(&str, &Path)]) -> Output {
        let mut c = self.airlock(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().expect("run airlock")
    }

    /// Every file and directory under the place (relative), sorted.
    fn tree(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).expect("under").display().to_string());
                if p.is_dir() {
                    walk(base, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }
}

/// A copy of the config at `cfg`, named `name` beside it, whose `[admin]` section starts with
/// `admin` instead of the port-0 listen line.
fn with_admin(cfg: &Path, name: &str, admin: &str) -> PathBuf {
    let out = cfg.with_file_name(name);
    let text = std::fs::read_to_string(cfg).expect("cfg");
    std::fs::write(
        &out,
        text.replacen(
            "[admin]\nlisten = \"127.0.0.1:0\"",
            &format!("[admin]\n{admin}"),
            1,
        ),
    )
    .expect("write");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `airlock status`'s line starting with `key:`, its value.
fn status_line(out: &Output, key: &str) -> String {
    let stdout = text(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key:?} in status:\n{stdout}"))
        .trim()
        .to_string()
}

#[test]
fn config_is_found_the_same_way_from_any_directory() {
    let p = Place::new();
    let ca_of = |out: &Output| status_line(out, "CA");

    // Nothing anywhere: built-in defaults, state under the XDG data directory.
    let out = p.run(&["status"], &[]);
    assert_eq!(status_line(&out, "config file"), "none (built-in defaults)");
    let xdg_home = p.xdg_data.join("airlock");
    assert!(
        ca_of(&out).starts_with(&xdg_home.join("certs/ca.pem").display().to_string()),
        "{}",
        ca_of(&out)
    );

    // An XDG config file: its relative paths resolve against the XDG data directory.
    let xdg_file = p.xdg_config.join("airlock/airlock.toml");
    std::fs::create_dir_all(xdg_file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&xdg_file, "[tls]\nca_dir = \"xdg-certs\"\n").expect("write");
    let out = p.run(&["status"], &[]);
    assert_eq!(
        status_line(&out, "config file"),
        xdg_file.display().to_string()
    );
    assert!(ca_of(&out).starts_with(&xdg_home.join("xdg-certs/ca.pem").display().to_string()));

    // ./airlock.toml wins over XDG; relative paths resolve against its directory.
    std::fs::write(
        p.cwd.join("airlock.toml"),
        "[tls]\nca_dir = \"local-certs\"\n",
    )
    .expect("write");
    let out = p.run(&["status"], &[]);
    assert!(
        ca_of(&out).starts_with(&p.cwd.join("local-certs/ca.pem").display().to_string()),
        "{}",
        ca_of(&out)
    );

    // $AIRLOCK_HOME wins over ./airlock.toml: its airlock.toml, its directory.
    let home = p.root.join("airlock-home");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(
        home.join("airlock.toml"),
        "[tls]\nca_dir = \"home-certs\"\n",
    )
    .expect("write");
    let out = p.run(&["status"], &[("AIRLOCK_HOME", &home)]);
    assert_eq!(
        status_line(&out, "config file"),
        home.join("airlock.toml").display().to_string()
    );
    assert!(ca_of(&out).starts_with(&home.join("home-certs/ca.pem").display().to_string()));
    // An empty $AIRLOCK_HOME: defaults, with certs/ and data/ in it.
    let bare = p.root.join("bare-home");
    let out = p.run(&["status"], &[("AIRLOCK_HOME", &bare)]);
    assert_eq!(status_line(&out, "config file"), "none (built-in defaults)");
    assert!(ca_of(&out).starts_with(&bare.join("certs/ca.pem").display().to_string()));

    // --config (and $AIRLOCK_CONFIG) win over everything; relative paths resolve against the
    // file's directory, not the working directory.
    let etc = p.root.join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir");
    let named = etc.join("named.toml");
    std::fs::write(&named, "[tls]\nca_dir = \"named-certs\"\n").expect("write");
    let want = etc.join("named-certs/ca.pem").display().to_string();
    let out = p.run(&["--config", "../etc/named.toml", "status"], &[]);
    assert!(ca_of(&out).starts_with(&want), "{}", ca_of(&out));
    let out = p.run(&["status"], &[("AIRLOCK_CONFIG", &named)]);
    assert!(ca_of(&out).starts_with(&want), "{}", ca_of(&out));
    // With $AIRLOCK_HOME set too, relative paths resolve against the home.
    let out = p.run(
        &["status"],
        &[("AIRLOCK_CONFIG", &named), ("AIRLOCK_HOME", &home)],
    );
    assert!(ca_of(&out).starts_with(&home.join("named-certs/ca.pem").display().to_string()));
}

#[test]
fn the_cli_creates_nothing_where_it_runs_and_says_where_it_looked() {
    let p = Place::new();
    let before = p.tree();
    for args in [
        &["reviews", "list"][..],
        &["ca", "export"],
        &["audit", "export"],
        &["status"],
    ] {
        let out = p.run(args, &[]);
        assert!(!out.status.success(), "{args:?} has nothing to work on");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line:\n{stderr}");
        // The error (or, for status, its report) names where it looked.
        let said = format!("{}{stderr}", text(&out.stdout));
        assert!(
            said.contains(&p.xdg_data.join("airlock").display().to_string())
                && said.contains(&p.cwd.join("airlock.toml").display().to_string()),
            "{args:?} names where it looked: {said}"
        );
    }
    let out = p.run(&["reviews", "list"], &[]);
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: no admin token at "), "{stderr}");
    assert_eq!(p.tree(), before, "nothing was created");
}

#[test]
fn serve_in_an_empty_directory_keeps_its_state_in_the_home() {
    let p = Place::new();
    let mut child = p
        .airlock(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let up = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("airlock: admin API on"));
    let _ = child.kill();
    let _ = child.wait();
    let line = up.expect("serve started");
    let home = p.xdg_data.join("airlock");
    assert!(
        line.contains(&home.join("data/admin-token").display().to_string()),
        "{line}"
    );
    assert!(home.join("certs/ca.pem").exists() && home.join("data/admin-token").exists());
    assert!(
        std::fs::read_dir(&p.cwd).expect("cwd").next().is_none(),
        "nothing in the working directory"
    );
    // The CLI, run from anywhere with the same environment, finds that state.
    let out = p.run(&["ca", "export"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string(home.join("certs/ca.pem")).expect("pem")
    );
}

#[test]
fn a_user_error_is_one_line_without_a_backtrace() {
    let p = Place::new();
    for format in ["text", "json"] {
        let out = p
            .airlock(&["--log-format", format, "reviews", "list"])
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(stderr.trim()).expect("JSON");
            assert_eq!(v["level"], "ERROR");
        }
    }
    // A usage error follows --log-format json too.
    let out = p
        .airlock(&["--log-format", "json", "serve", "--listen", "nowhere"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stderr.trim()).expect("JSON");
    assert!(
        v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--listen")),
        "{stderr}"
    );
    // A bad config file names file, line and column, on one line.
    std::fs::write(p.cwd.join("airlock.toml"), "[proxy]\nlisen = 1\n").expect("write");
    let out = p
        .airlock(&["config", "check"])
        .env("RUST_BACKTRACE", "full")
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("airlock.toml:2:1: unknown field `lisen`"),
        "{stderr}"
    );
}

/// `airlock status | head -1` once panicked with a backtrace on the closed pipe; a CLI command
/// whose reader went away now ends quietly, as other Unix tools do.
#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    let p = Place::new();
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = p
        .airlock(&["status"])
        .env("RUST_BACKTRACE", "1")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}

/// Sends one allowed GET and one held DELETE through `s`.
async fn traffic(s: &Serve) {
    let client = s.client();
    let ok = client
        .get("https://api.github.com/repos/acme/app")
        .send()
        .await
        .expect("GET");
    assert_eq!(ok.status(), 200);
    let held = client
        .delete("https://api.github.com/repos/acme/app")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(held.status(), 423);
}

/// A GET on the admin listener with this Host header and token: (status, body).
async fn get_with_host(s: &Serve, path: &str, host: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .get(format!("http://{}{path}", s.admin))
        .header("host", host);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin request");
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_probes_and_status_of_a_running_server() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let log = dir.path().join("serve.log");
    let s = Serve::spawn(&cfg, &store, &ca, &log);
    traffic(&s).await;

    // Probes answer whatever the Host; the API and /metrics keep the Host check.
    let foreign = "tunnel.example:2222";
    assert_eq!(get_with_host(&s, "/healthz", foreign, None).await.0, 200);
    assert_eq!(get_with_host(&s, "/readyz", foreign, None).await.0, 200);
    let token = s.admin_token.clone();
    let (code, body) = get_with_host(&s, "/v1/reviews", foreign, Some(&token)).await;
    assert_eq!(code, 421, "{body}");
    assert!(body.contains("bad_host"), "{body}");
    assert_eq!(
        get_with_host(&s, "/metrics", foreign, Some(&token)).await.0,
        421
    );

    // /metrics needs the admin token.
    let own = s.admin.to_string();
    assert_eq!(get_with_host(&s, "/metrics", &own, None).await.0, 401);
    let (code, m) = get_with_host(&s, "/metrics", &own, Some(&token)).await;
    assert_eq!(code, 200, "{m}");
    for want in [
        r#"airlock_requests_total{verdict="allow",service="github",tool="none"} 1"#,
        r#"airlock_requests_total{verdict="escalate",service="github",tool="github.repos.delete"} 1"#,
        "airlock_reviews_pending 1",
        "airlock_tls_handshakes_total{result=\"ok\"} ",
        "airlock_tls_leaf_mints_total 1",
        "# EOF",
    ] {
        assert!(m.contains(want), "{want:?} missing from:\n{m}");
    }
    let appends = m
        .lines()
        .find_map(|l| l.strip_prefix("airlock_audit_append_seconds_count "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(appends >= 1, "the held request was audited:\n{m}");
    // No path, id or agent in any label.
    assert!(
        !m.contains("/repos/") && !m.contains("rev_") && !m.contains("dec_"),
        "{m}"
    );

    // A decision shows in the latency histogram and the pending gauge.
    let (_, list) = s.admin("GET", "/v1/reviews?state=pending", None).await;
    let id = list["reviews"][0]["reviewId"]
        .as_str()
        .expect("id")
        .to_string();
    let (code, _) = s
        .admin("POST", &format!("/v1/reviews/{id}/reject"), None)
        .await;
    assert_eq!(code, 200);
    let (_, m) = get_with_host(&s, "/metrics", &own, Some(&token)).await;
    assert!(m.contains("airlock_reviews_pending 0"), "{m}");
    assert!(
        m.contains(r#"airlock_review_decision_seconds_count{decision="rejected"} 1"#),
        "{m}"
    );

    // Review of session 21: no metric showed sends that ended failed or outcome_unknown, nor
    // refused proxy credentials. An approved send, and a proxy request with a wrong token.
    let held = s
        .client()
        .delete("https://api.github.com/repos/acme/sent")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(held.status(), 423);
    let id = held
        .headers()
        .get("airlock-review-id")
        .and_then(|v| v.to_str().ok())
        .expect("review id")
        .to_string();
    let (code, r) = s
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!((code, r["state"].as_str()), (200, Some("executed")), "{r}");
    let cert = reqwest::Certificate::from_pem(s.ca_pem.as_bytes()).expect("ca");
    let wrong = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://nobody:wrong@{}", s.proxy)).expect("proxy"))
        .tls_certs_only([cert])
        .build()
        .expect("client");
    assert!(wrong
        .get("https://api.github.com/repos/acme/app")
        .send()
        .await
        .is_err());
    let (_, m) = get_with_host(&s, "/metrics", &own, Some(&token)).await;
    for want in [
        r#"airlock_executions_total{state="executed"} 1"#,
        r#"airlock_proxy_auth_failures_total{reason="proxy_auth_rejected"} 1"#,
    ] {
        assert!(m.contains(want), "{want:?} missing from:\n{m}");
    }

    // A tool name the agent made up (an unknown GraphQL mutation) never becomes a label.
    let resp = s
        .client()
        .post("https://api.github.com/graphql")
        .json(&serde_json::json!({"query": "mutation { madeUpByTheAgent7f3a(input: {}) { ok } }"}))
        .send()
        .await
        .expect("graphql");
    assert_ne!(resp.status(), 200);
    let (_, m) = get_with_host(&s, "/metrics", &own, Some(&token)).await;
    assert!(!m.contains("madeUpByTheAgent7f3a"), "{m}");
    assert!(m.contains(r#"service="github",tool="none"} "#), "{m}");

    // `airlock status` from an unrelated directory, with the config named: where everything
    // is, and that the server is ready.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(&cfg)
        .args(["--log-format", "text", "status"])
        .current_dir(elsewhere.path())
        .env_remove("AIRLOCK_HOME")
        .env_remove("AIRLOCK_CONFIG")
        .output()
        .expect("status");
    // The config asks for port 0, but status runs as Airlock's user: it asks over the admin
    // socket in the store directory, where this server listens.
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("config file:  {}", cfg.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} (present)", ca.join("ca.pem").display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{} (present)",
            store.join("admin-token").display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "server:       ready (admin socket {})",
            store.join("admin.sock").display()
        )),
        "{stdout}"
    );
    assert!(out.status.success());
    // Without the socket it probes the configured TCP address, where nothing listens.
    let cfg0 = with_admin(
        &cfg,
        "nosocket.toml",
        "listen = \"127.0.0.1:0\"\nsocket = \"\"",
    );
    let (ok, stdout, _) = cli(&cfg0, &["status"]);
    assert!(stdout.contains("server:       not ready"), "{stdout}");
    assert!(!ok);
    // Pointed at the real admin address, it is ready.
    let cfg2 = with_admin(
        &cfg,
        "status.toml",
        &format!("listen = \"{}\"\nsocket = \"\"", s.admin),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(&cfg2)
        .arg("status")
        .current_dir(elsewhere.path())
        .env_remove("AIRLOCK_HOME")
        .output()
        .expect("status");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("server:       ready (http://{}/readyz)", s.admin)),
        "{stdout}"
    );
    s.stop();
}

/// Spawns `airlock serve` with `global` flags, stderr to `err`; waits until the admin address
/// is printed (in either format; every startup log line is written before it); returns the
/// child and the stdout lines read so far (the rest is drained).
fn spawn_logged(cfg: &Path, global: &[&str], err: &Path) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(cfg)
        .args(global)
        .arg("serve")
        .env("AIRLOCK_LOG", "debug")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(err).expect("err file"))
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("admin API on http://"))
    {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!(
                "serve exited: {}",
                std::fs::read_to_string(err).unwrap_or_default()
            );
        };
        seen.push(line);
    }
    std::thread::spawn(move || for _ in lines {});
    (child, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_all_json_and_text_logs_have_no_colour_off_a_terminal() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, _, _) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");

    // JSON: every line on stdout and stderr is one JSON object, the addresses included.
    let err = dir.path().join("json.err");
    let (mut child, stdout) = spawn_logged(&cfg, &["--log-format", "json"], &err);
    let admin_line = stdout.last().expect("address line");
    let v: serde_json::Value = serde_json::from_str(admin_line).expect("JSON address line");
    let admin = v["fields"]["admin"]
        .as_str()
        .expect("admin field")
        .to_string();
    let resp = reqwest::get(format!("http://{admin}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(resp.status(), 200);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&err).expect("stderr");
    assert!(stderr.contains("Airlock running"), "{stderr}");
    assert_eq!(stdout.len(), 2, "{stdout:?}");
    for line in stderr
        .lines()
        .chain(stdout.iter().map(String::as_str))
        .filter(|l| !l.is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }

    // Text, stderr redirected to a file: no ANSI escape anywhere.
    let err = dir.path().join("text.err");
    let (mut child, _) = spawn_logged(&cfg, &[], &err);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&err).expect("stderr");
    assert!(stderr.contains("Airlock running"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escape in a redirected log:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_added_to_the_agents_file_is_loaded_on_sighup() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    // A relative agents file: beside the config, whatever the working directory.
    let body = std::fs::read_to_string(&cfg).expect("cfg");
    std::fs::write(&cfg, format!("agents_file = \"state/agents.toml\"\n{body}")).expect("write");
    let log = dir.path().join("serve.log");
    let s = Serve::spawn(&cfg, &store, &ca, &log);
    let tokens = dir.path().join("tokens");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(&cfg)
        .args(["agents", "add", "bot", "--token-dir"])
        .arg(&tokens)
        .current_dir(elsewhere.path())
        .env_remove("AIRLOCK_HOME")
        .output()
        .expect("agents add");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let agents = std::fs::read_to_string(dir.path().join("state/agents.toml")).expect("agents");
    assert!(agents.contains("name = \"bot\""), "{agents}");
    let token = std::fs::read_to_string(tokens.join("bot/token")).expect("token");
    let cert = reqwest::Certificate::from_pem(s.ca_pem.as_bytes()).expect("ca");
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://bot:{token}@{}", s.proxy)).expect("proxy"))
        .tls_certs_only([cert])
        .build()
        .expect("client");
    let status = |client: reqwest::Client| async move {
        match client.get("https://api.github.com/zen").send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0, // refused at CONNECT (407): reqwest reports an error
        }
    };
    assert_ne!(
        status(client.clone()).await,
        200,
        "not loaded before SIGHUP"
    );
    let _ = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status();
    support::eventually(
        "the agent loaded by SIGHUP",
        std::time::Duration::from_secs(10),
        || {
            let client = client.clone();
            async move {
                match status(client).await {
                    200 => Ok(()),
                    other => Err(other),
                }
            }
        },
    )
    .await;
    s.stop();
}

/// Left from the fifteenth session: the CLI sent its admin token to whatever answered on
/// `admin.listen`, an impostor too while the server was down. Run as Airlock's user it now
/// talks over the admin socket (peer credentials checked), and with no live socket it fails
/// without offering the token on TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_uses_the_admin_socket_and_never_offers_its_token_on_tcp() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let log = dir.path().join("serve.log");
    let s = Serve::spawn(&cfg, &store, &ca, &log);
    traffic(&s).await;
    let socket = store.join("admin.sock");
    let meta = std::fs::metadata(&socket).expect("the admin socket exists");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // The config names port 0, where nothing listens: the CLI still reaches the server.
    let (ok, stdout, stderr) = cli(&cfg, &["reviews", "list"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("github.repos.delete"), "{stdout}");
    s.stop();
    assert!(!socket.exists(), "a graceful stop removes the socket");

    // An impostor now listens on the configured admin port; the server is gone.
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = impostor.local_addr().expect("addr").port();
    impostor.set_nonblocking(true).expect("nonblocking");
    let cfg2 = with_admin(
        &cfg,
        "impostor.toml",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    for args in [
        &["reviews", "list"][..],
        &["audit", "verify"][..],
        &["status"][..],
    ] {
        let (ok, _, stderr) = cli(&cfg2, args);
        if args[0] == "reviews" {
            assert!(!ok);
            assert!(stderr.contains("admin.sock"), "{args:?}: {stderr}");
        }
    }
    // Nothing, token or probe, reached the impostor.
    assert!(
        matches!(impostor.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the CLI connected to the TCP admin port"
    );

    // With the socket turned off, the CLI uses TCP (where the operator asked for it).
    let cfg3 = with_admin(
        &cfg,
        "tcp.toml",
        &format!("listen = \"127.0.0.1:{port}\"\nsocket = \"\""),
    );
    let _ = cli(&cfg3, &["status"]);
    assert!(impostor.accept().is_ok(), "socket = \"\" means TCP");
}

/// Left from session 16: `serve --data-dir X` moved the store and its admin socket, while the
/// CLI had no `--data-dir` and looked for the socket at the config's store path. The path
/// flags are now global: given to a command, they find what `serve` was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_path_flags_of_serve_are_every_commands() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, _, _) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let (moved, certs) = (dir.path().join("moved"), dir.path().join("moved-certs"));
    let flags = [
        "--data-dir",
        moved.to_str().expect("utf8 path"),
        "--ca-dir",
        certs.to_str().expect("utf8 path"),
    ];
    let err = dir.path().join("serve.err");
    let (mut child, _) = spawn_logged(&cfg, &flags, &err);
    assert!(
        moved.join("admin.sock").exists(),
        "the socket follows --data-dir"
    );

    let (ok, _, stderr) = cli(&cfg, &["reviews", "list"]);
    assert!(!ok, "without the flag the CLI looks at the config's store");
    assert!(stderr.contains("data/admin"), "{stderr}");
    let with = |args: &[&'static str]| -> Vec<String> {
        args.iter().chain(&flags).map(|a| a.to_string()).collect()
    };
    let args = with(&["reviews", "list"]);
    let (ok, stdout, stderr) = cli(&cfg, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "no reviews");
    let args = with(&["status"]);
    let (ok, stdout, stderr) = cli(&cfg, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("server:       ready"), "{stdout}");
    let args = with(&["ca", "export"]);
    let (ok, pem, stderr) = cli(&cfg, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    let served = std::fs::read_to_string(certs.join("ca.pem")).expect("ca.pem");
    assert_eq!(pem, served, "ca export reads the CA serve made in --ca-dir");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Review of session 16: a store path too long for a Unix socket stopped the server from
/// starting. The default socket is then skipped (TCP only), and the CLI uses TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_path_too_long_for_a_socket_serves_tcp_only() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let deep = dir.path().join("d".repeat(120));
    std::fs::create_dir_all(&deep).expect("mkdir");
    let (cfg, store, ca) = write_config(&deep, "airlock.toml", "redb", &up, HOSTS, "");
    let s = Serve::spawn(&cfg, &store, &ca, &deep.join("serve.log"));
    traffic(&s).await;
    assert!(!store.join("admin.sock").exists());
    let cfg2 = with_admin(&cfg, "cli.toml", &format!("listen = \"{}\"", s.admin));
    let (ok, stdout, stderr) = cli(&cfg2, &["reviews", "list"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("github.repos.delete"));
    s.stop();
}

/// Review of session 19: `reviews approve` whose answer was lost (the server died after reading
/// the request, the connection broke) printed "admin API error" and exited 1, "an error such as
/// an unknown review", although the approval may be recorded and the call sent; a retry after
/// that could send it twice. It exits 4, as for `outcome_unknown`, and says to check first.
#[test]
fn an_approval_whose_answer_is_lost_exits_as_outcome_unknown() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    // An admin listener that reads the request and closes without a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.flush();
            String::from_utf8_lossy(&seen).into_owned()
        } else {
            String::new()
        }
    });
    let token = dir.path().join("admin-token");
    support::write_secret(&token, "adm_0123456789abcdef0123456789abcdef\n");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        format!(
            "[admin]\nlisten = \"{addr}\"\nsocket = \"\"\ntoken_file = {:?}\n[store]\npath = {:?}\n",
            support::path_str(&token),
            support::path_str(&dir.path().join("data")),
        ),
    )
    .expect("config");
    let id = format!("rev_{}", "0a".repeat(16));
    let out = support::process::cli_output(&cfg, &["reviews", "approve", &id]);
    let asked = server.join().expect("server");
    assert!(asked.starts_with("POST /v1/reviews/"), "control: {asked}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("may be recorded") && err.contains("airlock reviews show"),
        "{err}"
    );
}

/// Left from the nineteenth session: `services = ["githb"]` (no such service) was taken, and the
/// agent could reach nothing. `agents add --services githb` refuses it and writes nothing;
/// `config check` and `serve` refuse such an entry, each naming the services they know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_naming_an_unknown_service_is_refused() {
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, _, _) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let before = std::fs::read_to_string(&cfg).expect("cfg");
    let (ok, _, err) = cli(&cfg, &["agents", "add", "bot", "--services", "githb"]);
    assert!(!ok, "agents add took an unknown service");
    assert!(
        err.contains("services names \"githb\", which is no service (known: github, stripe)"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&cfg).expect("cfg"),
        before,
        "nothing written"
    );
    let (ok, _, err) = cli(&cfg, &["agents", "add", "bot", "--services", "github"]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&cfg).expect("cfg");
    std::fs::write(&cfg, text.replace("[\"github\"]", "[\"githb\"]")).expect("typo");
    let (ok, _, err) = cli(&cfg, &["config", "check"]);
    assert!(!ok, "config check took an unknown service");
    assert!(
        err.contains("agent \"bot\": services names \"githb\""),
        "{err}"
    );
    // `serve` stops at start (bounded: one that started is killed and the test fails).
    let mut serve = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env_remove("AIRLOCK_HOME")
        .env("AIRLOCK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            let _ = serve.wait();
            panic!("serve started with an agent naming an unknown service");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = serve.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
    }
    assert!(!status.success());
    assert!(
        err.contains("agent \"bot\": services names \"githb\""),
        "{err}"
    );
}

/// Review of session 20: `agents add` with no config file yet creates one and said "a running
/// airlock serve loads it within a second", but a serve that started without a config file
/// watches none and kept answering 407. It now says to restart such a serve; once the file
/// exists, the next add says it is loaded.
#[test]
fn agents_add_says_when_a_running_serve_cannot_see_the_new_config_file() {
    let home = tempfile::tempdir().expect("home");
    let add = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["agents", "add", name])
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("AIRLOCK_HOME")
            .env_remove("AIRLOCK_CONFIG")
            .current_dir(home.path())
            .output()
            .expect("run airlock")
    };
    let first = add("bot");
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    assert!(err.contains("does not read it; restart it"), "{err}");
    let second = add("bot2");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{err}");
    assert!(err.contains("loads it within a second"), "{err}");
}

/// Review of session 21: at SIGTERM, `serve` waited for agents' long polls (`?wait=300`, a held
/// call with `Airlock-Wait`) and for a CONNECT whose TLS handshake never came, for the whole
/// 30 s grace, and the waiting agents got no answer at all; `docker compose stop` kills after
/// 10 s. Now the waits are answered at once with their review as it is (a timed-out wait's
/// answer: 200 `pending`, 423 held), the handshake is abandoned, and the process exits promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_open_waits_and_exits_promptly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let mut s = Serve::spawn(&cfg, &store, &ca, &dir.path().join("serve.log"));
    let client = s.client();
    let held = client
        .delete("https://api.github.com/repos/acme/app")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(held.status(), 423);
    let id = held.headers()["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string();
    let poll = tokio::spawn({
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://airlock.local/v1/reviews/{id}?wait=300"))
                .send()
                .await?;
            let code = r.status().as_u16();
            Ok::<_, reqwest::Error>((code, r.text().await?))
        }
    });
    let waited_hold = tokio::spawn({
        let client = client.clone();
        async move {
            let r = client
                .delete("https://api.github.com/repos/acme/other")
                .header("airlock-wait", "300")
                .send()
                .await?;
            Ok::<_, reqwest::Error>(r.status().as_u16())
        }
    });
    // A CONNECT answered 200, and then no TLS handshake.
    let mut silent = tokio::net::TcpStream::connect(s.proxy)
        .await
        .expect("connect");
    silent
        .write_all(b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 64];
    let n = silent.read(&mut head).await.expect("read");
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "control: CONNECT answered"
    );
    support::eventually(
        "both waits are open",
        std::time::Duration::from_secs(10),
        || async { (s.states().await.len() == 2).then_some(()) },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pid = s.child.id().to_string();
    let started = std::time::Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let mut exited = None;
    while started.elapsed() < std::time::Duration::from_secs(20) {
        if let Ok(Some(status)) = s.child.try_wait() {
            exited = Some((status, started.elapsed()));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, took) = exited.expect("serve still running 20 s after SIGTERM");
    assert!(status.success(), "serve exit status {status}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "SIGTERM took {took:?} to stop serve (docker compose kills after 10 s)"
    );
    let (code, body) = poll
        .await
        .expect("join")
        .expect("the ?wait poll got no answer");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["state"], "pending", "{body}");
    let held = waited_hold.await.expect("join");
    assert_eq!(held.expect("the Airlock-Wait hold got no answer"), 423);
}

/// Review of session 21: `AIRLOCK_LOG=inf` (or any bare word that is not a level) was read as
/// a target and silenced every log line, and `AIRLOCK_LOG=warning` too. Now a bare word that is
/// not a level is refused at start with an error naming the variable, and `warning` is `warn`.
#[test]
fn a_misspelt_airlock_log_is_refused_and_warning_is_warn() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Its proxy port is taken: serve logs its start warnings, then fails to bind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\nsocket = \"\"\n\
             [rules]\nunclassified_writes = \"allow\"\n",
            taken.local_addr().expect("addr")
        ),
    )
    .expect("config");
    let run = |level: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env_remove("AIRLOCK_HOME")
            .env_remove("AIRLOCK_CONFIG")
            .env("AIRLOCK_LOG", level)
            .output()
            .expect("run airlock");
        (out.status.success(), text(&out.stderr))
    };
    for typo in ["inf", "warnings"] {
        let (ok, err) = run(typo, &["config", "check"]);
        assert!(!ok, "AIRLOCK_LOG={typo} was taken: {err}");
        assert!(
            err.contains("AIRLOCK_LOG") && err.contains("not a level"),
            "{typo}: {err}"
        );
    }
    let (ok, err) = run("warning", &["serve"]);
    assert!(!ok, "control: the proxy port is taken");
    assert!(err.contains("cannot listen on"), "control: {err}");
    assert!(
        err.contains("unclassified_writes"),
        "AIRLOCK_LOG=warning showed no warning: {err}"
    );
}

/// Review of session 21: `AIRLOCK_ADMIN_TOKEN=a` was taken as the admin token, and with the
/// variable set the startup line still said `token in …/admin-token`, a file holding an older
/// token. Now a token under 32 characters stops `serve` (naming the variable, creating no state),
/// and an overriding one is named in the startup line and in `airlock status`, with a warning
/// that the file it overrides is stale.
#[test]
fn a_short_admin_token_is_refused_and_an_overriding_one_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\nsocket = \"\"\n",
    )
    .expect("config");
    let serve = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--config")
            .arg(&cfg)
            .arg("serve")
            .env_remove("AIRLOCK_HOME")
            .env_remove("AIRLOCK_CONFIG")
            .env("AIRLOCK_LOG", "warn")
            .env("AIRLOCK_ADMIN_TOKEN", token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let mut short = serve("a");
    let started = std::time::Instant::now();
    let exited = loop {
        if let Ok(Some(_)) = short.try_wait() {
            break true;
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            let _ = short.kill();
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let short = short.wait_with_output().expect("serve");
    let err = text(&short.stderr);
    assert!(
        exited && !short.status.success(),
        "AIRLOCK_ADMIN_TOKEN=a was taken: {err}"
    );
    assert!(
        err.contains("AIRLOCK_ADMIN_TOKEN") && err.contains("at least 32"),
        "{err}"
    );
    assert!(!dir.path().join("certs").exists(), "state created: {err}");

    // The file holds an older token; the variable overrides it.
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    support::write_secret(&dir.path().join("data/admin-token"), "0f".repeat(32));
    let mut child = serve(&"a1".repeat(32));
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let admin_line = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("serve exited before its admin line");
        };
        if line.contains("admin API on http://") {
            break line;
        }
    };
    let status = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(&cfg)
        .arg("status")
        .env_remove("AIRLOCK_HOME")
        .env_remove("AIRLOCK_CONFIG")
        .env("AIRLOCK_ADMIN_TOKEN", "a1".repeat(32))
        .output()
        .expect("status");
    let _ = child.kill();
    let out = child.wait_with_output().expect("serve");
    assert!(
        admin_line.contains("token from AIRLOCK_ADMIN_TOKEN"),
        "{admin_line}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("stale"),
        "no warning that the file is stale: {err}"
    );
    let status = text(&status.stdout);
    assert!(
        status.contains("AIRLOCK_ADMIN_TOKEN overrides it") && status.contains("stale"),
        "{status}"
    );
}

/// Review of session 21: `upstream.extra_ca_files = ["/nonexistent.pem"]` passed `config check`,
/// and `serve` created a new interception CA before failing on it, under a misleading `CA:`
/// label. Now both refuse it, labelled `upstream.extra_ca_files`, and `serve` creates nothing.
#[test]
fn a_missing_upstream_ca_file_fails_the_check_and_creates_no_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nonexistent.pem");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\nsocket = \"\"\n\
             [upstream]\nextra_ca_files = [{:?}]\n",
            support::path_str(&missing)
        ),
    )
    .expect("config");
    for cmd in [&["config", "check"][..], &["serve"]] {
        let (ok, out, err) = cli(&cfg, cmd);
        assert!(!ok, "{cmd:?} took a missing CA file: {out}");
        assert!(
            err.contains("upstream.extra_ca_files") && err.contains("nonexistent.pem"),
            "{cmd:?}: {err}"
        );
        assert!(!err.contains("CA: "), "{cmd:?}: {err}");
    }
    for state in ["certs", "data"] {
        assert!(!dir.path().join(state).exists(), "serve created {state}/");
    }
}

/// `airlock --config CFG ARGS` (as [`cli`] runs it) for at most `secs` seconds: its output if
/// it exited by then; `None` (and killed) if it was still running.
fn cli_within(cfg: &Path, args: &[&str], secs: u64) -> Option<(bool, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("AIRLOCK_HOME")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ADMIN_TOKEN")
        .env("AIRLOCK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(secs) {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().expect("output");
            return Some((out.status.success(), text(&out.stderr)));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Review of session 21: with a redb `serve` running, `airlock --store sled serve` on the same
/// data directory started beside it (only an INFO line about the admin socket), and the redb
/// store then refused its next start with an anchor mismatch. Now a live instance serving the
/// admin socket stops the start (the store is not shared), and so do another backend's store
/// files in the directory, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_of_another_backend_is_refused() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let s = Serve::spawn(&cfg, &store, &ca, &dir.path().join("serve.log"));
    let (ok, err) = cli_within(&cfg, &["--store", "sled", "serve"], 8)
        .expect("a sled serve started beside the running redb one");
    assert!(
        !ok && err.contains("another airlock serve is running"),
        "{err}"
    );
    assert!(
        !store.join("sled").exists(),
        "the refused start created a sled store"
    );
    s.stop();
    let (ok, err) = cli_within(&cfg, &["--store", "sled", "serve"], 8)
        .expect("a sled serve started on a redb store's directory");
    assert!(!ok && err.contains("airlock.redb"), "{err}");
    // The redb store starts again, its anchor intact.
    let s = Serve::spawn(&cfg, &store, &ca, &dir.path().join("serve.log"));
    s.stop();
}

/// Review of session 21: `airlock status` printed the config's listen addresses, not the ones
/// the running server uses (moved by `--listen` / `--admin-listen`, or port 0 as here). Now the
/// server tells them on `/readyz` over the admin socket, and `status` prints those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_the_addresses_the_server_listens_on() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let s = Serve::spawn(&cfg, &store, &ca, &dir.path().join("serve.log"));
    let out = support::process::cli_output(&cfg, &["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let proxy = status_line(&out, "proxy listen");
    let admin = status_line(&out, "admin listen");
    assert!(proxy.starts_with(&s.proxy.to_string()), "{proxy}");
    assert!(admin.starts_with(&s.admin.to_string()), "{admin}");
    assert!(
        proxy.contains("127.0.0.1:0"),
        "the config's is named too: {proxy}"
    );
    // Over TCP the probe still tells nothing but readiness.
    let (code, body) = get_with_host(&s, "/readyz", "example.org", None).await;
    assert_eq!(code, 200);
    assert!(!body.contains("listen"), "{body}");
    s.stop();
}

/// Review of session 21: `airlock serve --admin-listen 0.0.0.0:PORT` (the image's default
/// command) started without a word, putting the admin API on the network agents use. Now
/// `serve` and `config check` warn, naming the risk and the fix, when admin.listen is a
/// wildcard or the proxy's own (non-loopback) address; neither refuses.
#[test]
fn a_wildcard_admin_listener_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("airlock.toml");
    let write = |admin: &str, proxy: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[proxy]\nlisten = \"{proxy}\"\n[admin]\nlisten = \"{admin}\"\nsocket = \"\"\n"
            ),
        )
        .expect("config")
    };
    for (admin, proxy) in [
        ("0.0.0.0:8081", "127.0.0.1:8080"),
        ("192.0.2.7:8081", "192.0.2.7:8080"),
    ] {
        write(admin, proxy);
        let (ok, _, err) = cli(&cfg, &["config", "check"]);
        assert!(ok, "a warning, not a refusal: {err}");
        assert!(
            err.contains("warning: admin.listen") && err.contains("agents"),
            "{admin}: {err}"
        );
    }
    write("127.0.0.1:8081", "127.0.0.1:8080");
    let (ok, _, err) = cli(&cfg, &["config", "check"]);
    assert!(ok && !err.contains("admin.listen"), "loopback: {err}");
    // serve with the image's flag: it starts, and warns.
    write("127.0.0.1:0", "127.0.0.1:0");
    let err_file = dir.path().join("serve.err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(&cfg)
        .args(["serve", "--admin-listen", "0.0.0.0:0"])
        .env_remove("AIRLOCK_HOME")
        .env_remove("AIRLOCK_CONFIG")
        .env("AIRLOCK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_file).expect("err file"))
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let started = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("admin API on http://0.0.0.0:"));
    let _ = child.kill();
    let _ = child.wait();
    let err = std::fs::read_to_string(&err_file).unwrap_or_default();
    assert!(started, "serve did not start: {err}");
    assert!(
        err.contains("admin.listen 0.0.0.0:") && err.contains("wildcard"),
        "{err}"
    );
}

/// Left from session 21: a Prometheus scrape needed the admin token, which also approves,
/// rejects and reads every stored request. `admin.metrics_token_file` names a token (created
/// 0600 if absent) that reads `/metrics` and nothing else; a short one, or the admin token
/// itself, stops the start with the file named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_token_reads_metrics_and_nothing_else() {
    use std::os::unix::fs::PermissionsExt as _;
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let token_file = dir.path().join("metrics-token");
    let with_metrics_token = std::fs::read_to_string(&cfg).expect("config").replacen(
        "[admin]\n",
        &format!(
            "[admin]\nmetrics_token_file = {:?}\n",
            support::path_str(&token_file)
        ),
        1,
    );
    std::fs::write(&cfg, with_metrics_token).expect("config");
    let s = Serve::spawn(&cfg, &store, &ca, &dir.path().join("serve.log"));
    let metrics_token = std::fs::read_to_string(&token_file).expect("created");
    let mode = std::fs::metadata(&token_file)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_ne!(metrics_token.trim(), s.admin_token);

    let own = s.admin.to_string();
    let (code, m) = get_with_host(&s, "/metrics", &own, Some(metrics_token.trim())).await;
    assert_eq!(code, 200, "{m}");
    assert!(m.contains("# EOF"), "{m}");
    for path in ["/v1/reviews", "/v1/audit", "/v1/rules"] {
        let (code, body) = get_with_host(&s, path, &own, Some(metrics_token.trim())).await;
        assert_eq!(code, 401, "{path}: {body}");
    }
    // The admin token still reads them too.
    assert_eq!(
        get_with_host(&s, "/metrics", &own, Some(&s.admin_token))
            .await
            .0,
        200
    );
    let admin_token = s.admin_token.clone();
    drop(s);

    for (content, want) in [
        ("short-token\n", "11 characters; a token needs at least 32"),
        (admin_token.as_str(), "holds the admin token"),
    ] {
        std::fs::write(&token_file, content).expect("write");
        let (ok, err) = cli_within(&cfg, &["serve"], 30).expect("serve stopped");
        assert!(!ok);
        assert!(err.contains("metrics-token") && err.contains(want), "{err}");
        assert!(!err.contains(&admin_token), "{err}");
    }
}

/// Review of session 22: a token file holding `short` was served as the admin token (it
/// approves and reads every stored request), while `AIRLOCK_ADMIN_TOKEN` needed 32 characters.
/// The file's token needs them too; the start is refused naming the file, never the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_admin_token_file_is_refused() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, store, _) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    std::fs::create_dir_all(&store).expect("store dir");
    support::write_secret(&store.join("admin-token"), "short-admin");
    let (ok, err) = cli_within(&cfg, &["serve"], 30).expect("serve stopped");
    assert!(!ok);
    assert!(
        err.contains("admin-token") && err.contains("11 characters; a token needs at least 32"),
        "{err}"
    );
    assert!(!err.contains("short-admin"), "{err}");
}

/// Review of session 22: a damaged redb file made redb panic inside its open ("internal error:
/// entered unreachable code" in its table_tree_base.rs): `audit export` and `serve` exited 101
/// with a "panicked at" line naming no file of ours. Now the panic is caught at the open and
/// reported as a corrupt store, naming the file and the way back (a backup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_redb_file_is_reported_as_corrupt_not_as_a_panic() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    Serve::spawn(&cfg, &store, &ca, &dir.path().join("serve.log")).stop();
    let file = store.join("airlock.redb");
    let mut bytes = std::fs::read(&file).expect("store file");
    // Every page but the header's: which of them a command reads depends on the file's layout.
    let len = bytes.len();
    for b in &mut bytes[len / 4..len * 3 / 4] {
        *b = 0xff;
    }
    std::fs::write(&file, &bytes).expect("damage");
    for args in [&["audit", "export"][..], &["serve"][..]] {
        let (ok, err) = cli_within(&cfg, args, 30).expect("exits");
        assert!(!ok, "{args:?}: {err}");
        assert!(
            err.contains("corrupt") && err.contains(&file.display().to_string()),
            "{args:?}: {err}"
        );
        assert!(err.contains("backup"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Review of session 22: the message refusing a store directory that holds another backend's
/// store (and the one naming a live peer) carried runs of 14 spaces mid-sentence: a string
/// continued onto the next line without its `\`. Now it reads as one sentence.
#[test]
fn another_backends_store_is_refused_in_one_readable_sentence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("airlock.redb"), b"").expect("touch");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [store]\npath = {:?}\nbackend = \"sled\"\n",
            support::path_str(&data)
        ),
    )
    .expect("config");
    let (ok, err) = cli_within(&cfg, &["serve"], 30).expect("exits");
    assert!(
        !ok && err.contains("holds another backend's store"),
        "{err}"
    );
    assert!(!err.contains("    "), "{err}");
}

/// Review of session 22: on SIGHUP with a config file that no longer parses, the log said
/// "reviewers reload failed; keeping …" and then "reviewers reloaded reviewers=0", which
/// contradicts it. Now "reviewers reloaded" is logged only when a reload applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reviewers_reload_is_not_also_logged_as_reloaded() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, _, _) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
    let good = std::fs::read_to_string(&cfg).expect("cfg");
    let err = dir.path().join("serve.err");
    /// Killed however the test ends (an assertion failing included).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Killed(spawn_logged(&cfg, &[], &err).0);
    let hup = |Killed(child): &Killed| {
        let _ = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status();
    };
    let logged_after = |start: usize, what: &'static str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let log = std::fs::read_to_string(&err).expect("log");
            if log[start..].contains(what) {
                return log.len();
            }
            assert!(std::time::Instant::now() < deadline, "no {what:?}: {log}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    std::fs::write(&cfg, format!("{good}\n[[reviewers\n")).expect("break");
    let start = std::fs::read_to_string(&err).expect("log").len();
    hup(&child);
    logged_after(start, "reviewers reload failed");
    // Every line of the reload is written by then or within the log thread's 10 ms.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let log = std::fs::read_to_string(&err).expect("log");
    assert!(
        !log[start..].contains("reviewers reloaded"),
        "{}",
        &log[start..]
    );
    // A reload that applies still says so.
    std::fs::write(&cfg, &good).expect("fix");
    let start = log.len();
    hup(&child);
    logged_after(start, "reviewers reloaded");
}

/// Review of session 22: an `agents_file` entry with a bad `token_sha256` was reported against
/// the config file (`airlock.toml: agents: agent "x" …`), where no such agent is. Now the error
/// names the agents file it came from.
#[test]
fn a_bad_agent_in_the_agents_file_names_that_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = dir.path().join("agents.toml");
    support::write_secret(
        &agents,
        "[[agents]]\nname = \"x\"\ntoken_sha256 = \"not-hex\"\n",
    );
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        format!(
            "agents_file = {:?}\n[proxy]\nlisten = \"127.0.0.1:0\"\n",
            support::path_str(&agents)
        ),
    )
    .expect("config");
    let (ok, _, err) = cli(&cfg, &["config", "check"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!("{}: agents: agent \"x\"", agents.display())),
        "{err}"
    );
    assert!(!err.contains("airlock.toml: agents"), "{err}");
}

/// Review of session 22: `store.path` naming a regular file failed with a bare "File exists
/// (os error 17)". Now the error says that store.path is a file, not a directory.
#[test]
fn a_store_path_that_is_a_file_is_named_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("data");
    std::fs::write(&file, b"not a directory").expect("file");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [store]\npath = {:?}\n",
            support::path_str(&file)
        ),
    )
    .expect("config");
    let expected = format!("store.path {} is a file, not a directory", file.display());
    for args in [&["audit", "export"][..], &["serve"][..]] {
        let (ok, err) = cli_within(&cfg, args, 30).expect("exits");
        assert!(!ok, "{args:?}: {err}");
        assert!(err.contains(&expected), "{args:?}: {err}");
        assert!(!err.contains("os error 17"), "{args:?}: {err}");
    }
}

/// Review of session 22: `airlock rules test DELETE notaurl` printed `bucket: allow` and
/// exited 0 (`notaurl` parses as a bare host no rule names). Now a URL without a scheme and a
/// host is a usage error (exit 2) saying what to give.
#[test]
fn rules_test_refuses_a_url_without_scheme_and_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(&cfg, "").expect("config");
    for url in ["notaurl", "/repos/o/r", "ftp://api.github.com/x"] {
        let out = support::process::cli_output(&cfg, &["rules", "test", "DELETE", url]);
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{url}: {}{err}",
            text(&out.stdout)
        );
        assert!(err.contains(url), "{url}: {err}");
        assert!(!text(&out.stdout).contains("bucket"), "{url}");
    }
    let out = support::process::cli_output(
        &cfg,
        &[
            "rules",
            "test",
            "DELETE",
            "https://api.github.com/repos/o/r",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Review of session 22: `airlock rules test --dir d --rules-dir X` used `d` and ignored `X`
/// without a word. The two flags name the same thing: given both, in either order, it is a
/// usage error (exit 2).
#[test]
fn rules_dir_and_dir_are_refused_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(&cfg, "").expect("config");
    let (d, x) = (dir.path().join("d"), dir.path().join("x"));
    let (d, x) = (support::path_str(&d), support::path_str(&x));
    for cmd in [
        vec![
            "rules",
            "test",
            "DELETE",
            "https://api.github.com/repos/o/r",
        ],
        vec!["rules", "check"],
        vec!["rules", "coverage"],
    ] {
        // `--rules-dir` after the subcommand, and before it (a global flag lands elsewhere).
        let mut after = cmd.clone();
        after.extend(["--dir", &d, "--rules-dir", &x]);
        let mut before = vec!["--rules-dir", &x];
        before.extend(cmd.iter().copied());
        before.extend(["--dir", &d]);
        for args in [after, before] {
            let out = support::process::cli_output(&cfg, &args);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("--rules-dir") && err.contains("--dir"),
                "{args:?}: {err}"
            );
        }
    }
}
