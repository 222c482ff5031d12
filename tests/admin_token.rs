//! Admin token rotation (`airlock admin-token rotate`, `POST /v1/admin-token/rotate`) against
//! real `airlock serve` processes: on redb through the running server (the old token refused at
//! once on the API, `/metrics` and the dashboard, the new one in the token file and never
//! printed, the audit log saying who rotated it); refused while `AIRLOCK_ADMIN_TOKEN` is in
//! force; with no server running (the file, for the next start); and two instances on one
//! PostgreSQL database following a rotation without a restart, by the database's change notice
//! or, for a token written with SQL, by the periodic check (skipped without PostgreSQL, unless
//! `AIRLOCK_REQUIRE_POSTGRES=1`).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use support::process::{cli, write_config, Serve};
use support::FakeUpstream;

const HOSTS: &[&str] = &["api.github.com"];
const ROTATE: &str = "/v1/admin-token/rotate";
/// Longer than the bound an instance of a shared store takes to follow a rotation (10 s).
const FOLLOW: Duration = Duration::from_secs(20);

/// The status of `GET path` on the admin API at `admin` with `token`.
async fn get(admin: SocketAddr, token: &str, path: &str) -> u16 {
    airlock::admin::client::call(admin, token, Method::GET, path, None)
        .await
        .map(|(status, _)| status)
        .unwrap_or(0)
}

fn token_in(file: &Path) -> String {
    std::fs::read_to_string(file)
        .expect("token file")
        .trim()
        .to_string()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// The `policy` entries about the admin token in the audit log, read with `token`.
async fn rotation_entries(admin: SocketAddr, token: &str) -> (Vec<serde_json::Value>, String) {
    let (code, body) =
        airlock::admin::client::call_raw(admin, token, Method::GET, "/v1/audit", None)
            .await
            .expect("audit");
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    let entries = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "policy" && e["change"] == "admin_token")
        .collect();
    (entries, text)
}

/// Neither token nor its SHA-256 appears in `text`.
fn holds_no_token(text: &str, tokens: &[&str]) -> bool {
    tokens.iter().all(|t| {
        !text.contains(t) && !text.contains(&hex::encode(airlock::agents::token_digest(t)))
    })
}

fn web() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (k, val) = v.split(';').next()?.split_once('=')?;
            (k == name && !val.is_empty()).then(|| val.to_string())
        })
}

/// Signs in to the dashboard at `admin` with `token`; the session cookie.
async fn sign_in(admin: SocketAddr, token: &str) -> String {
    let base = format!("http://{admin}");
    let page = web()
        .get(format!("{base}/ui/login"))
        .send()
        .await
        .expect("get");
    let login = cookie(&page, "airlock_login").expect("login cookie");
    let html = page.text().await.expect("html");
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("csrf field") + marker.len();
    let csrf = html[start..].split('"').next().expect("csrf");
    let r = web()
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("airlock_login={login}"))
        .body(format!("csrf={csrf}&token={token}"))
        .send()
        .await
        .expect("post");
    cookie(&r, "airlock_session").expect("session cookie")
}

/// The status of the dashboard's list for `session` (303 to the sign-in page once it ended).
async fn dashboard(admin: SocketAddr, session: &str) -> u16 {
    web()
        .get(format!("http://{admin}/ui"))
        .header("cookie", format!("airlock_session={session}"))
        .send()
        .await
        .expect("get")
        .status()
        .as_u16()
}

struct Embedded {
    _up: FakeUpstream,
    dir: tempfile::TempDir,
    cfg: PathBuf,
    store: PathBuf,
    ca: PathBuf,
}

impl Embedded {
    async fn new() -> Embedded {
        support::init();
        let up = FakeUpstream::start(Default::default()).await;
        let dir = tempfile::tempdir().expect("tmp");
        let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "redb", &up, HOSTS, "");
        Embedded {
            _up: up,
            dir,
            cfg,
            store,
            ca,
        }
    }

    fn serve(&self, env: &[(&str, &str)]) -> Serve {
        let log = self.dir.path().join("airlock.log");
        Serve::spawn_with_env(&self.cfg, &self.store, &self.ca, &log, env)
    }

    fn token_file(&self) -> PathBuf {
        self.store.join("admin-token")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_rotates_and_refuses_the_old_token_at_once() {
    let e = Embedded::new().await;
    let s = e.serve(&[]);
    let old = s.admin_token.clone();
    for path in ["/v1/reviews", "/metrics"] {
        assert_eq!(get(s.admin, &old, path).await, 200, "{path}");
    }
    let session = sign_in(s.admin, &old).await;
    assert_eq!(dashboard(s.admin, &session).await, 200);

    // The CLI (Airlock's own user: over the admin socket) has the server rotate it.
    let (ok, out, err) = cli(&e.cfg, &["admin-token", "rotate"]);
    assert!(ok, "{err}");
    let new = token_in(&e.token_file());
    assert!(new != old && new.len() == 64, "a new token in the file");
    assert_eq!(mode(&e.token_file()), 0o600);
    assert!(
        holds_no_token(&format!("{out}{err}"), &[&new]),
        "{out}{err}"
    );
    assert!(
        err.contains(&e.token_file().display().to_string()),
        "names the file: {err}"
    );
    for path in ["/v1/reviews", "/metrics"] {
        assert_eq!(get(s.admin, &old, path).await, 401, "old token on {path}");
        assert_eq!(get(s.admin, &new, path).await, 200, "new token on {path}");
    }
    assert_eq!(dashboard(s.admin, &session).await, 303, "the session ended");

    // Over TCP the answer names the file, never the token.
    let (code, body) = airlock::admin::client::call(s.admin, &new, Method::POST, ROTATE, None)
        .await
        .expect("rotate");
    assert_eq!(code, 200, "{body}");
    let newest = token_in(&e.token_file());
    assert_eq!(
        body["tokenFile"],
        e.token_file().display().to_string().as_str()
    );
    assert!(
        holds_no_token(&body.to_string(), &[&newest, &new]),
        "{body}"
    );
    assert_eq!(get(s.admin, &new, "/v1/reviews").await, 401);

    // Both rotations are in the audit log: who asked and over which channel, no token.
    let (entries, text) = rotation_entries(s.admin, &newest).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.iter().all(|e| e["trigger"] == "admin API"
        && e["result"] == "applied"
        && e["by"]
            .as_str()
            .is_some_and(|b| b.starts_with("admin token"))));
    assert!(entries[0]["by"]
        .as_str()
        .is_some_and(|b| b.contains("admin socket")));
    assert!(entries[1]["by"]
        .as_str()
        .is_some_and(|b| b.contains("127.0.0.1")));
    assert!(holds_no_token(&text, &[&old, &new, &newest]));
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_refused_while_airlock_admin_token_is_in_force() {
    let e = Embedded::new().await;
    let env_token = airlock::admin::new_token();
    let s = e.serve(&[("AIRLOCK_ADMIN_TOKEN", &env_token)]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(&e.cfg)
        .args(["admin-token", "rotate"])
        .env_remove("AIRLOCK_HOME")
        .env_remove("AIRLOCK_CONFIG")
        .env("AIRLOCK_ADMIN_TOKEN", &env_token)
        .output()
        .expect("run airlock");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("AIRLOCK_ADMIN_TOKEN is set"), "{err}");
    // The server refuses too, and its token stays.
    let (code, body) =
        airlock::admin::client::call(s.admin, &env_token, Method::POST, ROTATE, None)
            .await
            .expect("rotate");
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"], "token_from_env");
    assert_eq!(get(s.admin, &env_token, "/v1/reviews").await, 200);
    assert!(!e.token_file().exists(), "no token file was written");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_server_running_the_token_file_is_rewritten_for_the_next_start() {
    let e = Embedded::new().await;
    let (ok, _, err) = cli(&e.cfg, &["admin-token", "rotate"]);
    assert!(!ok && err.contains("no admin token at"), "none yet: {err}");
    assert!(!e.store.exists(), "nothing was created");

    let s = e.serve(&[]);
    let old = s.admin_token.clone();
    s.stop();
    let (ok, out, err) = cli(&e.cfg, &["admin-token", "rotate"]);
    assert!(ok, "{err}");
    assert!(err.contains("next start"), "{err}");
    let new = token_in(&e.token_file());
    assert!(new != old && new.len() == 64);
    assert_eq!(mode(&e.token_file()), 0o600);
    assert!(holds_no_token(&format!("{out}{err}"), &[&new]));

    let s = e.serve(&[]);
    assert_eq!(s.admin_token, new);
    assert_eq!(get(s.admin, &old, "/v1/reviews").await, 401);
    assert_eq!(get(s.admin, &new, "/v1/reviews").await, 200);
    s.stop();
}

/// One instance of a shared database: its own directory (token file, CA), the audit key shared.
fn postgres_instance(
    url: &str,
    up: &FakeUpstream,
    key: &Path,
) -> (tempfile::TempDir, PathBuf, Serve) {
    let dir = tempfile::tempdir().expect("tmp");
    let extra = format!("url = {url:?}\n[audit]\nkey_file = {key:?}\n");
    let (cfg, store, ca) = write_config(dir.path(), "airlock.toml", "postgres", up, HOSTS, &extra);
    let s = Serve::spawn(&cfg, &store, &ca, &dir.path().join("airlock.log"));
    (dir, cfg, s)
}

/// Waits until `s` refuses `old` and takes `new`, and its token file holds `new`.
async fn follows(who: &str, s: &Serve, file: &Path, old: &str, new: &str) {
    support::eventually(&format!("{who} follows the rotation"), FOLLOW, || async {
        let seen = (
            get(s.admin, old, "/v1/reviews").await,
            get(s.admin, new, "/v1/reviews").await,
            std::fs::read_to_string(file).unwrap_or_default().trim() == new,
        );
        (seen == (401, 200, true))
            .then_some(())
            .ok_or(format!("{seen:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_one_database_follow_a_rotation_without_a_restart() {
    support::init();
    let Some(cluster) = support::postgres::Cluster::shared() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let url = cluster.fresh_database();
    let up = FakeUpstream::start(Default::default()).await;
    let shared = tempfile::tempdir().expect("tmp");
    let key = shared.path().join("audit-key.pem");
    let (dir_a, cfg_a, a) = postgres_instance(&url, &up, &key);
    let (dir_b, _, b) = postgres_instance(&url, &up, &key);
    let (file_a, file_b) = (
        dir_a.path().join("data").join("admin-token"),
        dir_b.path().join("data").join("admin-token"),
    );
    let old = a.admin_token.clone();
    assert_eq!(b.admin_token, old, "one admin token");

    // The CLI replaces the database's token; both running instances follow.
    let (ok, out, err) = cli(&cfg_a, &["admin-token", "rotate"]);
    assert!(ok, "{err}");
    let new = token_in(&file_a);
    assert_ne!(new, old);
    assert!(
        holds_no_token(&format!("{out}{err}"), &[&new]),
        "{out}{err}"
    );
    follows("A", &a, &file_a, &old, &new).await;
    follows("B", &b, &file_b, &old, &new).await;
    assert_eq!(get(b.admin, &old, "/metrics").await, 401);

    // Through B's admin API: B refuses the old token at once, A follows.
    let (code, body) = airlock::admin::client::call(b.admin, &new, Method::POST, ROTATE, None)
        .await
        .expect("rotate");
    assert_eq!(code, 200, "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("other instances")));
    assert_eq!(get(b.admin, &new, "/v1/reviews").await, 401, "at once on B");
    let newest = token_in(&file_b);
    follows("A", &a, &file_a, &new, &newest).await;

    // One shared audit log: each instance recorded taking in the CLI's rotation, B its own.
    support::eventually("the rotations' entries", FOLLOW, || async {
        let (entries, text) = rotation_entries(a.admin, &newest).await;
        assert!(holds_no_token(&text, &[&old, &new, &newest]));
        let by = |t: &str| entries.iter().filter(|e| e["trigger"] == t).count();
        let seen = (by("database"), by("admin API"));
        (seen == (3, 1)).then_some(()).ok_or(format!("{seen:?}"))
    })
    .await;

    // Written with SQL (no change notice is sent): each instance finds it by its periodic check.
    let by_sql = airlock::admin::new_token();
    let updated = support::postgres::psql(
        &url,
        &format!(
            "UPDATE airlock_kv SET value = '{by_sql}'::bytea \
             WHERE key = 'admin-token'::bytea RETURNING key"
        ),
    );
    assert_eq!(updated.len(), 1);
    follows("A", &a, &file_a, &newest, &by_sql).await;
    follows("B", &b, &file_b, &newest, &by_sql).await;
    a.stop();
    b.stop();
}
