//! The reviewer dashboard (issue 6): sign-in, CSRF and Origin checks, the DNS-rebinding Host
//! check, and a real headless Chromium (Debian's, driven by playwright-core) that signs in,
//! sees a held DELETE, approves it, and the upstream is called exactly once. The screenshot
//! goes to target/test-artifacts/dashboard.png.

mod support;

use std::sync::Arc;

use support::{Airlock, FakeUpstream};

const HOSTS: &[&str] = &["api.github.com"];

struct Setup {
    a: Airlock,
    up: FakeUpstream,
    reviewer_token: String,
}

async fn setup() -> Setup {
    setup_with("").await
}

async fn setup_with(extra: &str) -> Setup {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let reviewer_token = airlock::agents::generate_token();
    let toml = format!(
        "{extra}\n[[reviewers]]\nname = \"dana\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(airlock::agents::token_digest(&reviewer_token))
    );
    let dir = tempfile::tempdir().expect("dir");
    let config = Airlock::config(&toml, dir.path(), &up, HOSTS);
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a =
        Airlock::start_with_parts(config, dir, catalog, Arc::new(airlock::gate::SystemClock)).await;
    Setup {
        a,
        up,
        reviewer_token,
    }
}

async fn hold_delete(a: &Airlock) -> String {
    support::held_delete(&a.client(), "https://api.github.com/repos/octo/demo").await
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client")
}

fn cookie_value(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?;
            let (k, val) = first.split_once('=')?;
            (k == name && !val.is_empty()).then(|| val.to_string())
        })
}

fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("csrf field") + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("csrf value")
        .to_string()
}

/// The decision key of the page a sign-in answers with (its script stores it and goes on to
/// `/ui`).
fn decision_key_in(html: &str) -> String {
    let marker = "data-decision-key=\"";
    let start = html.find(marker).expect("decision key") + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("decision key value")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_csrf_origin_and_host_checks() {
    let s = setup().await;
    let id = hold_delete(&s.a).await;
    let base = format!("http://{}", s.a.admin_addr);
    let c = plain_client();

    let r = c.get(format!("{base}/ui")).send().await.expect("get");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");
    // DNS rebinding: a page on another name cannot drive the dashboard.
    let r = c
        .get(format!("{base}/ui/login"))
        .header("host", "evil.example:80")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 421);

    // Sign in: the login form's token must match its cookie.
    let page = c.get(format!("{base}/ui/login")).send().await.expect("get");
    let login_cookie = cookie_value(&page, "airlock_login").expect("login cookie");
    let html = page.text().await.expect("html");
    let csrf = csrf_in(&html);
    let r = c
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&token=wrong"))
        .header("cookie", format!("airlock_login={login_cookie}"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("html").contains("Unknown token"));
    let r = c
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf=forged&token={}", s.reviewer_token))
        .header("cookie", format!("airlock_login={login_cookie}"))
        .send()
        .await
        .expect("post");
    assert!(
        cookie_value(&r, "airlock_session").is_none(),
        "login CSRF refused"
    );
    let r = c
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&token={}", s.reviewer_token))
        .header("cookie", format!("airlock_login={login_cookie}"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let session = cookie_value(&r, "airlock_session").expect("session cookie");
    let set_cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let signed_in = r.text().await.expect("html");
    let dk = decision_key_in(&signed_in);
    assert!(signed_in.contains("/ui/live.js"), "{signed_in}");
    let jar = format!("airlock_session={session}");

    let list = c
        .get(format!("{base}/ui"))
        .header("cookie", &jar)
        .send()
        .await
        .expect("list");
    assert_eq!(list.status(), 200);
    assert_eq!(list.headers()["x-frame-options"], "DENY");
    let html = list.text().await.expect("html");
    assert!(
        html.contains(&id) && html.contains("github.repos.delete"),
        "{html}"
    );
    assert!(html.contains("1 pending in all"), "the total: {html}");
    let csrf = csrf_in(&html);

    // Paging: a second pending review, one per page, soonest expiry first.
    // Another call (an identical one would join the first's review).
    let later =
        support::held_delete(&s.a.client(), "https://api.github.com/repos/octo/later").await;
    let page = |url: String| {
        let (c, jar) = (c.clone(), jar.clone());
        async move {
            let r = c
                .get(url)
                .header("cookie", &jar)
                .send()
                .await
                .expect("page");
            assert_eq!(r.status(), 200);
            r.text().await.expect("html")
        }
    };
    let first = page(format!("{base}/ui?limit=1")).await;
    assert!(first.contains("2 pending in all"), "{first}");
    assert!(first.contains(&id) && !first.contains(&later), "{first}");
    let next = first
        .split("id=\"next-page\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next-page link")
        // As a browser reads the attribute (the template escapes `/`, `&` and `=`).
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
        .replace("&amp;", "&");
    let second = page(format!("{base}{next}")).await;
    assert!(second.contains(&later) && !second.contains(&id), "{second}");
    assert!(!second.contains("next-page"), "the last page: {second}");
    let filtered = page(format!("{base}/ui?agent=someone-else")).await;
    assert!(!filtered.contains(&id) && filtered.contains("Nothing here"));
    let r = c
        .get(format!("{base}/ui?limit=0"))
        .header("cookie", &jar)
        .send()
        .await
        .expect("bad limit");
    assert_eq!(r.status(), 400);

    // A decision without the CSRF token, or from another origin, is refused.
    let decide = format!("{base}/ui/reviews/{id}/decide");
    let r = c
        .post(&decide)
        .header("cookie", &jar)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("action=approve&dk={dk}"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = c
        .post(&decide)
        .header("cookie", &jar)
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("action=approve&csrf={csrf}&dk={dk}"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(s.up.count(), 0);

    // The session cookie reaches every port of the host (a page the agent serves on another
    // port collects it), and with it every page can be read: the decision key is on none of
    // them, and without it nothing is decided.
    for page in ["/ui", "/ui/history", &format!("/ui/reviews/{id}")] {
        let r = c
            .get(format!("{base}{page}"))
            .header("cookie", &jar)
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200);
        assert!(!r.text().await.expect("html").contains(&dk), "{page}");
    }
    for body in [
        format!("action=approve&csrf={csrf}"),
        format!("action=approve&csrf={csrf}&dk="),
        format!("action=approve&csrf={csrf}&dk={csrf}"),
    ] {
        let r = c
            .post(&decide)
            .header("cookie", &jar)
            .header("origin", &base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 403, "{body}");
        assert!(r.text().await.expect("html").contains("No decision key"));
    }
    let (_, review) = s.a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(review["state"], "pending");
    // A cookie of the session's name planted from another port (browsers send the one with
    // the longer path first) does not hide the real one.
    let r = c
        .get(format!("{base}/ui"))
        .header("cookie", format!("airlock_session=planted; {jar}"))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);

    // History with filters, and the detail page (no credential in the stored request).
    let r = c
        .get(format!(
            "{base}/ui/history?state=pending&tool=github.repos.delete"
        ))
        .header("cookie", &jar)
        .send()
        .await
        .expect("history");
    assert!(r.text().await.expect("html").contains(&id));
    let r = c
        .get(format!("{base}/ui/history?state=executed"))
        .header("cookie", &jar)
        .send()
        .await
        .expect("history");
    assert!(!r.text().await.expect("html").contains(&id));
    let r = c
        .get(format!("{base}/ui/reviews/{id}"))
        .header("cookie", &jar)
        .send()
        .await
        .expect("detail");
    let html = r.text().await.expect("html");
    assert!(
        html.replace("&#x2f;", "/")
            .contains("DELETE https://api.github.com/repos/octo/demo"),
        "{html}"
    );
    assert!(
        html.contains("ESCALATE (hard gate)"),
        "audit entries shown: {html}"
    );

    // Reject through the form; the upstream never sees the call.
    let r = c
        .post(&decide)
        .header("cookie", &jar)
        .header("origin", &base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "action=reject&csrf={csrf}&dk={dk}&comment=not+today"
        ))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("html").contains("rejected"));
    assert_eq!(s.up.count(), 0);
    let (_, review) = s.a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(review["decision"]["by"], "dana");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_signs_in_and_approves_a_held_delete() {
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready = std::path::Path::new(&chromium).exists()
        && std::path::Path::new(browser_dir)
            .join("node_modules/playwright-core")
            .exists();
    if !ready {
        assert!(
            std::env::var_os("AIRLOCK_ALLOW_NO_BROWSER").is_some(),
            "needs Debian's chromium and `npm ci` in tests/browser (.ci/run does both)"
        );
        eprintln!("skipping: no chromium/playwright-core and AIRLOCK_ALLOW_NO_BROWSER set");
        return;
    }
    let s = setup().await;
    let id = hold_delete(&s.a).await;
    assert_eq!(s.up.count(), 0);
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("dashboard.png");
    let out = tokio::process::Command::new("node")
        .arg(format!("{browser_dir}/approve.mjs"))
        .env("DASHBOARD_URL", format!("http://{}", s.a.admin_addr))
        .env("REVIEWER_TOKEN", &s.reviewer_token)
        .env("REVIEW_ID", &id)
        .env("SCREENSHOT", &shot)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("OK"), "{text}");
    assert!(shot.exists(), "screenshot written");
    assert_eq!(
        s.up.count(),
        1,
        "the approved DELETE reached the upstream exactly once"
    );
    let (_, review) = s.a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    assert_eq!(review["state"], "executed");
    assert_eq!(review["decision"]["by"], "dana");
}

/// Behind a reverse proxy, reviewers reach the dashboard by `notify.base_url`'s name: that Host
/// and that Origin are accepted; other names still are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn public_base_url_passes_the_host_and_origin_checks() {
    let s = setup_with("[notify]\nbase_url = \"https://Airlock.example.com/\"").await;
    let base = format!("http://{}", s.a.admin_addr);
    let c = plain_client();
    let get = |host: &'static str| {
        c.get(format!("{base}/ui/login"))
            .header("host", host)
            .send()
    };
    assert_eq!(get("airlock.example.com").await.expect("get").status(), 200);
    assert_eq!(get("evil.example").await.expect("get").status(), 421);
    assert_eq!(
        get("airlock.example.com:8443").await.expect("get").status(),
        421
    );

    let page = get("airlock.example.com").await.expect("get");
    let login_cookie = cookie_value(&page, "airlock_login").expect("login cookie");
    let csrf = csrf_in(&page.text().await.expect("html"));
    let login = |origin: &'static str| {
        c.post(format!("{base}/ui/login"))
            .header("host", "airlock.example.com")
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("airlock_login={login_cookie}"))
            .body(format!("csrf={csrf}&token={}", s.reviewer_token))
            .send()
    };
    let r = login("https://evil.example").await.expect("post");
    assert_eq!(r.status(), 403, "another origin is refused");
    let r = login("https://airlock.example.com").await.expect("post");
    assert_eq!(r.status(), 200, "the public origin signs in");
    assert!(cookie_value(&r, "airlock_session").is_some());
}

/// Issue 21 item 7: every cookie the dashboard sets (the sign-in page's, the session set at
/// sign-in, the ones cleared at sign-in and at logout) carries `Secure` when `notify.base_url`
/// is https (reviewers arrive through TLS), and none does when it is http or unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_cookie_is_secure_only_behind_an_https_base_url() {
    fn set_cookies(r: &reqwest::Response) -> Vec<String> {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
    /// Every Set-Cookie of the sign-in page, the sign-in and the logout, by step.
    async fn sign_in_and_out(s: &Setup, host: Option<&str>) -> Vec<(&'static str, String)> {
        let base = format!("http://{}", s.a.admin_addr);
        let c = plain_client();
        let with_host = |b: reqwest::RequestBuilder| match host {
            Some(h) => b.header("host", h),
            None => b,
        };
        let mut seen = Vec::new();
        let page = with_host(c.get(format!("{base}/ui/login")))
            .send()
            .await
            .expect("get");
        seen.extend(set_cookies(&page).into_iter().map(|c| ("login page", c)));
        let login_cookie = cookie_value(&page, "airlock_login").expect("login cookie");
        let csrf = csrf_in(&page.text().await.expect("html"));
        let r = with_host(c.post(format!("{base}/ui/login")))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("airlock_login={login_cookie}"))
            .body(format!("csrf={csrf}&token={}", s.reviewer_token))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        seen.extend(set_cookies(&r).into_iter().map(|c| ("sign-in", c)));
        let session = cookie_value(&r, "airlock_session").expect("session cookie");
        let list = with_host(c.get(format!("{base}/ui")))
            .header("cookie", format!("airlock_session={session}"))
            .send()
            .await
            .expect("list");
        assert_eq!(list.status(), 200);
        let csrf = csrf_in(&list.text().await.expect("html"));
        let r = with_host(c.post(format!("{base}/ui/logout")))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("airlock_session={session}"))
            .body(format!("csrf={csrf}"))
            .send()
            .await
            .expect("logout");
        assert_eq!(r.status(), 303);
        let out = set_cookies(&r);
        assert!(
            out.iter()
                .any(|c| c.starts_with("airlock_session=;") && c.contains("Max-Age=0")),
            "logout clears the session cookie: {out:?}"
        );
        seen.extend(out.into_iter().map(|c| ("logout", c)));
        seen
    }
    let is_secure = |c: &str| {
        c.split(';')
            .any(|a| a.trim().eq_ignore_ascii_case("secure"))
    };

    let s = setup_with("[notify]\nbase_url = \"https://airlock.example.com\"").await;
    let cookies = sign_in_and_out(&s, Some("airlock.example.com")).await;
    for step in ["login page", "sign-in", "logout"] {
        assert!(
            cookies.iter().any(|(s, _)| *s == step),
            "{step}: {cookies:?}"
        );
    }
    for (step, c) in &cookies {
        assert!(is_secure(c), "{step}: {c}");
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{step}: {c}"
        );
    }

    for extra in ["[notify]\nbase_url = \"http://airlock.example.com\"", ""] {
        let s = setup_with(extra).await;
        let host = (!extra.is_empty()).then_some("airlock.example.com");
        let cookies = sign_in_and_out(&s, host).await;
        assert!(!cookies.is_empty());
        assert!(
            !cookies.iter().any(|(_, c)| is_secure(c)),
            "{extra}: {cookies:?}"
        );
    }
}

/// Signs in with `token`; returns the session cookie's value and the decision key.
async fn session_for(s: &Setup, token: &str) -> (String, String) {
    let base = format!("http://{}", s.a.admin_addr);
    let c = plain_client();
    let page = c.get(format!("{base}/ui/login")).send().await.expect("get");
    let login_cookie = cookie_value(&page, "airlock_login").expect("login cookie");
    let csrf = csrf_in(&page.text().await.expect("html"));
    let r = c
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("airlock_login={login_cookie}"))
        .body(format!("csrf={csrf}&token={token}"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let session = cookie_value(&r, "airlock_session").expect("session cookie");
    (session, decision_key_in(&r.text().await.expect("html")))
}

/// Issue 21 items 3 and 4: signed in with the admin token, the dashboard cannot approve once
/// reviewers exist; and removing a reviewer (config reload, as on SIGHUP) ends her signed-in
/// session at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_token_cannot_approve_and_a_removed_reviewers_session_ends() {
    let s = setup().await;
    let id = hold_delete(&s.a).await;
    let base = format!("http://{}", s.a.admin_addr);
    let c = plain_client();

    let (operator, operator_dk) = session_for(&s, &s.a.admin_token).await;
    let jar = format!("airlock_session={operator}");
    let html = c
        .get(format!("{base}/ui"))
        .header("cookie", &jar)
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("html");
    let r = c
        .post(format!("{base}/ui/reviews/{id}/decide"))
        .header("cookie", &jar)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "action=approve&csrf={}&dk={operator_dk}",
            csrf_in(&html)
        ))
        .send()
        .await
        .expect("post");
    let html = r.text().await.expect("html");
    assert!(
        html.contains("Not done") && html.contains("may_approve"),
        "{html}"
    );
    assert_eq!(s.up.count(), 0);

    let (dana, _) = session_for(&s, &s.reviewer_token).await;
    let list = |session: String| {
        let c = c.clone();
        let base = base.clone();
        async move {
            c.get(format!("{base}/ui"))
                .header("cookie", format!("airlock_session={session}"))
                .send()
                .await
                .expect("list")
        }
    };
    assert_eq!(list(dana.clone()).await.status(), 200);
    // dana is removed from the config file, which is reloaded.
    let path = s.a.dir.path().join("airlock.toml");
    std::fs::write(
        &path,
        format!(
            "[[reviewers]]\nname = \"erin\"\ntoken_sha256 = \"{}\"\n",
            "ab".repeat(32)
        ),
    )
    .expect("write");
    let reload = airlock::server::reload_people(&s.a.gate, &path, &airlock::rules::AllowAll)
        .expect("reload");
    assert_eq!(reload.removed, vec!["dana".to_string()]);
    let r = list(dana).await;
    assert_eq!(r.status(), 303, "dana's session ended at once");
    assert_eq!(r.headers()["location"], "/ui/login");
    assert_eq!(
        list(operator).await.status(),
        200,
        "the operator's session stays"
    );
    // Nor can dana sign in again.
    let page = c.get(format!("{base}/ui/login")).send().await.expect("get");
    let login_cookie = cookie_value(&page, "airlock_login").expect("login cookie");
    let csrf = csrf_in(&page.text().await.expect("html"));
    let r = c
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("airlock_login={login_cookie}"))
        .body(format!("csrf={csrf}&token={}", s.reviewer_token))
        .send()
        .await
        .expect("post");
    assert!(r.text().await.expect("html").contains("Unknown token"));
}

/// Review of session 19: the reviewers reload read the agents file too, so a broken agents
/// file (a half-written `agents add`, a stray edit) stopped a reviewer's removal from taking
/// effect. The reviewers come from the config file alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_agents_file_does_not_stop_a_reviewers_removal() {
    let s = setup().await;
    let (dana, _) = session_for(&s, &s.reviewer_token).await;
    let base = format!("http://{}", s.a.admin_addr);
    let list = |session: String| {
        let base = base.clone();
        async move {
            plain_client()
                .get(format!("{base}/ui"))
                .header("cookie", format!("airlock_session={session}"))
                .send()
                .await
                .expect("list")
                .status()
        }
    };
    assert_eq!(list(dana.clone()).await, 200);
    let agents = s.a.dir.path().join("agents.toml");
    std::fs::write(&agents, "[[agents]\nname = \"half-writ").expect("agents file");
    let path = s.a.dir.path().join("airlock.toml");
    std::fs::write(
        &path,
        format!(
            "agents_file = {:?}\n[[reviewers]]\nname = \"erin\"\ntoken_sha256 = \"{}\"\n",
            agents.to_string_lossy(),
            "ab".repeat(32)
        ),
    )
    .expect("write");
    let reload = airlock::server::reload_people(&s.a.gate, &path, &airlock::rules::AllowAll)
        .expect("the reviewers reload despite the agents file");
    assert_eq!(reload.removed, vec!["dana".to_string()]);
    assert!(
        reload.config_error.is_some(),
        "the broken agents file is still reported"
    );
    assert_eq!(list(dana).await, 303, "dana's session ended");
}

/// The pending list filtered by one agent offers to reject all its pending reviews; the form
/// needs the CSRF token and the session's decision key like every decision, and each review
/// is rejected (nothing sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reviewer_rejects_every_pending_review_of_one_agent() {
    let s = setup().await;
    let ids = [
        support::held_delete(&s.a.client(), "https://api.github.com/repos/octo/one").await,
        support::held_delete(&s.a.client(), "https://api.github.com/repos/octo/two").await,
    ];
    let (_, r) =
        s.a.admin("GET", &format!("/v1/reviews/{}", ids[0]), None)
            .await;
    let agent = r["agent"].as_str().expect("agent").to_string();
    let base = format!("http://{}", s.a.admin_addr);
    let c = plain_client();
    let (dana, dk) = session_for(&s, &s.reviewer_token).await;
    let jar = format!("airlock_session={dana}");
    let unfiltered = c
        .get(format!("{base}/ui"))
        .header("cookie", &jar)
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("html");
    assert!(!unfiltered.contains("reject-pending"), "only once filtered");
    let html = c
        .get(format!("{base}/ui?agent={agent}"))
        .header("cookie", &jar)
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("html");
    assert!(html.contains("id=\"reject-pending\""), "{html}");
    let post = |dk: String| {
        let (c, base, jar, csrf, agent) = (
            c.clone(),
            base.clone(),
            jar.clone(),
            csrf_in(&html),
            agent.clone(),
        );
        async move {
            c.post(format!("{base}/ui/reject-pending"))
                .header("cookie", jar)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "csrf={csrf}&dk={dk}&agent={agent}&comment=gone+wrong"
                ))
                .send()
                .await
                .expect("post")
        }
    };
    let refused = post(String::new()).await;
    assert_eq!(refused.status(), 403, "no decision key");
    let done = post(dk).await.text().await.expect("html");
    assert!(
        done.contains("Rejected 2 pending review(s) of agent"),
        "{done}"
    );
    for id in &ids {
        let (_, r) = s.a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
        assert_eq!(r["state"], "rejected", "{r}");
    }
    assert_eq!(s.up.count(), 0);
}
