//! A webhook channel's URL kept outside the config file (`url_file`, `url_env`): each form
//! delivers to a real receiver on 127.0.0.1 (through the library, and through a real `airlock
//! serve` holding a call), exactly one of `url`/`url_file`/`url_env` is allowed, a `url_file`
//! others may read and an unset variable are refused (at start and at reload, which keeps the
//! channel in force), and the URL shows in no log, `Debug`, `airlock status` or `config check`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock::notify::{Notifier, NotifyConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::process::{cli, write_config, Serve};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The path part that plays the secret (as in a Slack webhook URL).
const TOKEN: &str = "T0SECRET/B0SECRET/xoxSECRETtoken42";

/// A receiver on 127.0.0.1 recording each body; its URL carries [`TOKEN`].
async fn receiver() -> std::io::Result<(String, mpsc::UnboundedReceiver<String>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await?.to_bytes();
                            let _ = tx.send(format!("{path} {}", String::from_utf8_lossy(&body)));
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((format!("http://{addr}/services/{TOKEN}"), rx))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>, wait: Duration) -> Option<String> {
    tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
}

fn write_mode(path: &Path, text: &str, mode: u32) -> std::io::Result<PathBuf> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(path.to_path_buf())
}

fn review(id: &str) -> airlock::gate::review::Review {
    let verdict = airlock::rules::Verdict {
        action: airlock::rules::Action::Escalate,
        rule_id: Some("github.toml:1".into()),
        service: Some("github".into()),
        tool: Some("github.repos.delete".into()),
        class: None,
        reason_codes: vec!["rule_match".into()],
        explanation: "test".into(),
        params: Default::default(),
        expiry: None,
        wait: None,
        approval: None,
        spend_usd: None,
        also_tools: Vec::new(),
    };
    let req = airlock::gate::review::StoredRequest {
        scheme: "https".into(),
        host: "api.github.com".into(),
        port: 443,
        method: "DELETE".into(),
        path_and_query: "/repos/acme/widgets".into(),
        headers: Vec::new(),
        body_b64: String::new(),
    };
    airlock::gate::review::Review::new(id.into(), format!("d-{id}"), &verdict, req, 1, u64::MAX)
}

/// The config file `dir/airlock.toml` holding one webhook channel with `lines`, loaded as
/// `serve` loads it (relative paths against its directory), its secrets read.
fn load(dir: &Path, lines: &str) -> Result<NotifyConfig, String> {
    let path = dir.join("airlock.toml");
    write_mode(
        &path,
        &format!("[[notify.channels]]\nkind = \"webhook\"\n{lines}\n"),
        0o600,
    )
    .map_err(|e| e.to_string())?;
    let cfg =
        airlock::config::Config::load(&path, Default::default()).map_err(|e| e.to_string())?;
    let mut notify = cfg.notify;
    assert!(
        !format!("{notify:?}").contains("SECRET"),
        "Debug before the read"
    );
    notify.read_secrets().map_err(|e| e.to_string())?;
    assert!(
        !format!("{notify:?}").contains("SECRET"),
        "Debug shows the URL: {notify:?}"
    );
    Ok(notify)
}

#[tokio::test]
async fn url_file_and_url_env_deliver_to_the_receiver() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (url, mut rx) = receiver().await?;
    write_mode(&dir.path().join("hook-url"), &format!("{url}\n"), 0o600)?;
    // A relative url_file resolves against the config file's directory.
    let from_file = load(dir.path(), "url_file = \"hook-url\"")?;
    std::env::set_var("AIRLOCK_TEST_HOOK_URL", &url);
    let from_env = load(dir.path(), "url_env = \"AIRLOCK_TEST_HOOK_URL\"")?;
    for (what, cfg) in [("url_file", from_file), ("url_env", from_env)] {
        let n = Notifier::start(cfg, None, None);
        n.escalated(review(what).escalation());
        let got = next(&mut rx, Duration::from_secs(10))
            .await
            .ok_or(format!("{what}: nothing delivered"))?;
        assert!(got.starts_with(&format!("/services/{TOKEN} ")), "{got}");
        assert!(got.contains(&format!("\"{what}\"")), "{what}: {got}");
    }
    Ok(())
}

#[test]
fn url_sources_are_checked_and_errors_never_show_the_url() -> TestResult {
    let dir = tempfile::tempdir()?;
    let url = format!("https://hooks.example/services/{TOKEN}");
    let good = write_mode(&dir.path().join("good"), &url, 0o600)?;
    let good = support::path_str(&good);
    let file = |name: &str, text: &str, mode: u32| -> std::io::Result<String> {
        Ok(support::path_str(&write_mode(
            &dir.path().join(name),
            text,
            mode,
        )?))
    };
    std::env::remove_var("AIRLOCK_TEST_UNSET_HOOK_URL");
    std::env::set_var("AIRLOCK_TEST_EMPTY_HOOK_URL", "");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        // (what, channel lines, field, reason)
        (
            "url and url_file",
            format!("url = \"{url}\"\nurl_file = \"{good}\""),
            "url_file",
            "not more",
        ),
        (
            "url_file and url_env",
            format!("url_file = \"{good}\"\nurl_env = \"X\""),
            "url_file",
            "not more",
        ),
        (
            "url and url_env",
            format!("url = \"{url}\"\nurl_env = \"X\""),
            "url_env",
            "not more",
        ),
        ("no url at all", String::new(), "url", "url_file"),
        (
            "group-readable",
            format!("url_file = \"{}\"", file("g", &url, 0o640)?),
            "url_file",
            "chmod 600",
        ),
        (
            "world-readable",
            format!("url_file = \"{}\"", file("w", &url, 0o604)?),
            "url_file",
            "chmod 600",
        ),
        (
            "missing file",
            format!(
                "url_file = \"{}\"",
                support::path_str(&dir.path().join("none"))
            ),
            "url_file",
            "No such file",
        ),
        (
            "empty file",
            format!("url_file = \"{}\"", file("e", "\n", 0o600)?),
            "url_file",
            "is empty",
        ),
        (
            "not a URL",
            format!(
                "url_file = \"{}\"",
                file("n", &format!("ftp://x/{TOKEN}"), 0o600)?
            ),
            "url_file",
            "http:// or https://",
        ),
        (
            "unset variable",
            "url_env = \"AIRLOCK_TEST_UNSET_HOOK_URL\"".into(),
            "url_env",
            "AIRLOCK_TEST_UNSET_HOOK_URL is not set",
        ),
        (
            "empty variable",
            "url_env = \"AIRLOCK_TEST_EMPTY_HOOK_URL\"".into(),
            "url_env",
            "AIRLOCK_TEST_EMPTY_HOOK_URL is empty",
        ),
        (
            "empty variable name",
            "url_env = \"\"".into(),
            "url_env",
            "must not be empty",
        ),
    ];
    for (what, lines, field, reason) in &cases {
        let sub = dir.path().join(what.replace(' ', "-"));
        std::fs::create_dir(&sub)?;
        let err = load(&sub, lines).err().unwrap_or_default();
        assert!(
            err.contains(&format!("notify.channels[0].{field}")),
            "{what}: {err}"
        );
        assert!(err.contains(reason), "{what}: {err}");
        assert!(!err.contains("SECRET"), "{what}: the URL is shown: {err}");
    }
    // One-click links in clear text are refused once the URL is known.
    let plain = file("plain", &format!("http://hooks.example/{TOKEN}"), 0o600)?;
    let sub = dir.path().join("plain-links");
    std::fs::create_dir(&sub)?;
    std::fs::write(
        sub.join("airlock.toml"),
        format!(
            "[[reviewers]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n\
             [notify]\nbase_url = \"https://airlock.example\"\n\
             [[notify.channels]]\nkind = \"webhook\"\nreviewer = \"alice\"\nurl_file = \"{plain}\"\n",
            "ab".repeat(32)
        ),
    )?;
    let cfg = airlock::config::Config::load(&sub.join("airlock.toml"), Default::default())?;
    let mut notify = cfg.notify;
    let err = notify.read_secrets().err().map(|e| e.to_string());
    let err = err.unwrap_or_default();
    assert!(
        err.contains("notify.channels[0].url_file") && err.contains("one-click links"),
        "{err}"
    );
    assert!(!err.contains("SECRET"), "{err}");
    Ok(())
}

/// `airlock serve` with its webhook URL in a url_file: a held call reaches the receiver; the URL
/// is in no log line (debug included), nor in `airlock status` or `config check`. The file
/// then made readable by others: a SIGHUP reload says why it no longer checks and keeps the
/// channel in force (the next held call is still delivered). A url_env naming an unset
/// variable stops `serve` and `config check` with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_delivers_from_a_url_file_and_never_shows_the_url() {
    support::init();
    let up = support::FakeUpstream::start(Default::default()).await;
    let (url, mut rx) = receiver().await.expect("receiver");
    let dir = tempfile::tempdir().expect("dir");
    let url_file =
        write_mode(&dir.path().join("hook-url"), &format!("{url}\n"), 0o600).expect("url file");
    let (cfg, data, ca) = write_config(
        dir.path(),
        "airlock.toml",
        "redb",
        &up,
        &["api.github.com"],
        "[[notify.channels]]\nkind = \"webhook\"\nname = \"ops\"\nurl_file = \"hook-url\"\n",
    );
    let log = dir.path().join("serve.log");
    let s = Serve::spawn_with_env(
        &cfg,
        &data,
        &ca,
        &log,
        &[("AIRLOCK_LOG", "info,airlock=debug")],
    );
    let hold = |s: &Serve, path: &'static str| {
        let client = s.client();
        async move { support::held_delete(&client, &format!("https://api.github.com{path}")).await }
    };
    let first = hold(&s, "/repos/octo/one").await;
    let got = next(&mut rx, Duration::from_secs(20))
        .await
        .expect("the escalation is delivered");
    assert!(got.contains(&first), "{got}");

    let (ok, out, err) = cli(&cfg, &["status"]);
    assert!(
        !format!("{out}{err}").contains("SECRET"),
        "status: {out}{err}"
    );
    assert!(ok || out.contains("config file"), "{out}{err}");
    let (ok, out, err) = cli(&cfg, &["config", "check"]);
    assert!(ok, "{out}{err}");
    assert!(
        !format!("{out}{err}").contains("SECRET"),
        "check: {out}{err}"
    );

    // Made readable by others, then SIGHUP: refused, with the reason, and kept in force.
    std::fs::set_permissions(&url_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status();
    support::eventually("the reload to say why", support::WAIT, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .any(|l| {
                l.contains("no longer checks")
                    && l.contains("notify.channels[0].url_file")
                    && l.contains("chmod 600")
            })
            .then_some(())
    })
    .await;
    let second = hold(&s, "/repos/octo/two").await;
    let got = next(&mut rx, Duration::from_secs(20))
        .await
        .expect("the channel in force still delivers");
    assert!(got.contains(&second), "{got}");
    s.stop();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("DEBUG"), "the log ran at debug level");
    assert!(!text.contains("SECRET"), "the URL is logged:\n{text}");

    // An unset url_env stops serve (and config check) with the reason.
    let body = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cfg,
        body.replace(
            "url_file = \"hook-url\"",
            "url_env = \"AIRLOCK_TEST_UNSET_HOOK_URL\"",
        ),
    )
    .expect("write");
    for args in [&["config", "check"][..], &["serve"][..]] {
        let (ok, out, err) = cli(&cfg, args);
        assert!(!ok, "{args:?} starts without its webhook URL");
        assert!(
            err.contains("notify.channels[0].url_env")
                && err.contains("AIRLOCK_TEST_UNSET_HOOK_URL is not set"),
            "{args:?}: {out}{err}"
        );
    }
}
