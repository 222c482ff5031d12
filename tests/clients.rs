//! The tools people already use, through a real Airlock with the real catalog, against a fake
//! upstream (api.github.com and api.stripe.com mapped to it): `airlock.local`'s page and CA over
//! http and https with curl and reqwest (public without proxy credentials on plain http only);
//! held answers and refusals shaped for Stripe's libraries and for Octokit/gh; a 413 curl and
//! requests read; the status URL with only `HTTPS_PROXY`; the README's curl line with
//! this machine's curl; Node's `fetch` through undici's `EnvHttpProxyAgent` (skipped, saying so,
//! where node or undici is missing); Python `urllib` with `HTTPS_PROXY` and `SSL_CERT_FILE`; Java
//! with `keytool` and the proxy properties (skipped, saying so, without a JDK).

mod support;

use std::sync::Arc;

use airlock::rules::{Action, Classifier, RequestHead, Verdict};
use sha2::Digest;
use support::{curl, path_str, Airlock, FakeUpstream};

const HOSTS: &[&str] = &["api.github.com", "api.stripe.com"];
/// A Stripe path [`WithABlock`] blocks (the shipped catalog blocks nothing on Stripe).
const BLOCKED_PATH: &str = "/v1/test-blocked";

/// The shipped catalog, plus a block rule on [`BLOCKED_PATH`].
struct WithABlock(Arc<dyn Classifier>);

impl Classifier for WithABlock {
    fn inspects(&self, host: &str) -> bool {
        self.0.inspects(host)
    }
    fn needs_body(&self, head: &RequestHead<'_>) -> bool {
        self.0.needs_body(head)
    }
    fn evaluate(&self, head: &RequestHead<'_>, body: Option<&[u8]>) -> Verdict {
        let mut v = self.0.evaluate(head, body);
        if head.path_and_query == BLOCKED_PATH {
            v.action = Action::Block;
            v.service = Some("stripe".into());
            v.explanation = "test rule: never".into();
        }
        v
    }
    fn git_push(&self, head: &RequestHead<'_>) -> bool {
        self.0.git_push(head)
    }
    fn service_for_host(&self, host: &str) -> Option<String> {
        self.0.service_for_host(host)
    }
}

struct Fixture {
    up: FakeUpstream,
    airlock: Airlock,
    /// `http://coder:TOKEN@127.0.0.1:PORT`
    agent_proxy: String,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_with("").await
    }

    /// [`Fixture::start`] with `extra` appended to the config file.
    async fn start_with(extra: &str) -> Fixture {
        support::init();
        let up = FakeUpstream::start(Default::default()).await;
        let token = airlock::agents::generate_token();
        let mut toml = airlock::agents::config_block(
            "coder",
            &airlock::agents::token_digest(&token),
            &["github".into(), "stripe".into()],
            None,
        );
        toml.push_str(extra);
        let dir = tempfile::tempdir().expect("dir");
        let config = Airlock::config(&toml, dir.path(), &up, HOSTS);
        assert!(!config.proxy.allow_anonymous, "proxy credentials required");
        let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
        let rules = Arc::new(WithABlock(catalog));
        let airlock =
            Airlock::start_with_parts(config, dir, rules, Arc::new(airlock::gate::SystemClock))
                .await;
        let agent_proxy = format!("http://coder:{token}@{}", airlock.addr);
        Fixture {
            up,
            airlock,
            agent_proxy,
        }
    }

    /// reqwest through Airlock as `coder`, trusting only Airlock's CA.
    fn agent(&self) -> reqwest::Client {
        let cert = reqwest::Certificate::from_pem(self.airlock.ca_pem.as_bytes()).expect("ca");
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(&self.agent_proxy).expect("proxy"))
            .tls_certs_only([cert])
            .build()
            .expect("client")
    }

    /// reqwest through Airlock without proxy credentials, trusting nothing extra.
    fn stranger(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.airlock.proxy_url()).expect("proxy"))
            .build()
            .expect("client")
    }

    /// The CA's SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it.
    fn fingerprint(&self) -> String {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(self.airlock.ca_pem.as_bytes())
            .expect("ca der");
        sha2::Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// curl's (exit code, headers + body, stderr), with an empty environment but PATH and `env`.
async fn curl_env(env: &[(&str, String)], args: &[&str]) -> (i32, String, String) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .args(&args)
            .output()
            .expect("curl must be installed");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn airlock_local_page_and_ca_over_plain_http_need_no_credentials() {
    let f = Fixture::start().await;
    let proxy = f.airlock.proxy_url();

    // curl, no proxy credentials, no CA: the certificate, byte for byte.
    let (code, pem, err) = curl(&[
        "-sS".into(),
        "--max-time".into(),
        "20".into(),
        "--proxy".into(),
        proxy.clone(),
        "http://airlock.local/ca.pem".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(pem, f.airlock.ca_pem);
    assert!(!pem.contains("PRIVATE KEY"));
    // The fingerprint the page shows is what openssl prints for the file.
    let ca_file = path_str(&f.airlock.ca_file());
    let openssl = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", &ca_file])
        .output()
        .expect("openssl must be installed");
    assert!(openssl.status.success());
    let openssl_says = String::from_utf8_lossy(&openssl.stdout).trim().to_string();

    // The page: instructions per client and the CA's fingerprint.
    let (code, page, err) = curl(&[
        "-sS".into(),
        "-i".into(),
        "--max-time".into(),
        "20".into(),
        "--proxy".into(),
        proxy.clone(),
        "http://airlock.local/".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("content-type: text/html; charset=utf-8"),
        "{page}"
    );
    assert!(
        // (OpenSSL 1.1 prints "SHA256 Fingerprint", 3.x "sha256 Fingerprint".)
        page.to_lowercase().contains(&openssl_says.to_lowercase()),
        "page shows {openssl_says}: {page}"
    );
    for needle in [
        f.fingerprint().as_str(),
        "href=\"/ca.pem\"",
        "GIT_SSL_CAINFO",
        "stripe.ca_bundle_path",
        "NODE_EXTRA_CA_CERTS",
        "NODE_USE_ENV_PROXY",
        "EnvHttpProxyAgent",
        "keytool",
        "CURL_CA_BUNDLE",
        "id=\"held\"",
        "airlock run",
    ] {
        assert!(page.contains(needle), "page mentions {needle}: {page}");
    }

    // HEAD answers the head alone.
    let (code, head, err) = curl(&[
        "-sS".into(),
        "-I".into(),
        "--max-time".into(),
        "20".into(),
        "--proxy".into(),
        proxy.clone(),
        "http://airlock.local/ca.pem".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("BEGIN CERTIFICATE"), "{head}");

    // reqwest, no credentials: the same certificate; it is enough to trust Airlock from then on.
    let got = f
        .stranger()
        .get("http://airlock.local/ca.pem")
        .send()
        .await
        .expect("send");
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-pem-file")
    );
    let fetched = got.text().await.expect("pem");
    assert_eq!(fetched, f.airlock.ca_pem);
    let trusted = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(&f.agent_proxy).expect("proxy"))
        .tls_certs_only([reqwest::Certificate::from_pem(fetched.as_bytes()).expect("pem")])
        .build()
        .expect("client");
    let zen = trusted
        .get("https://api.github.com/zen")
        .send()
        .await
        .expect("https with the fetched CA");
    assert_eq!(zen.status(), 200);

    // Everything else still needs the agent's credentials: its reviews, other methods, https.
    for (method, url) in [
        ("GET", "http://airlock.local/v1/reviews/rev_0123"),
        ("POST", "http://airlock.local/ca.pem"),
        ("GET", "http://airlock.local/ca-key.pem"),
        ("GET", "http://airlock.local:8080/ca.pem"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = f
            .stranger()
            .request(method.clone(), url)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 407, "{method} {url}");
    }
    let (code, _, err) = curl(&[
        "-sS".into(),
        "--max-time".into(),
        "20".into(),
        "--proxy".into(),
        proxy,
        "--cacert".into(),
        path_str(&f.airlock.ca_file()),
        "https://airlock.local/ca.pem".into(),
    ])
    .await;
    assert_ne!(code, 0, "CONNECT without credentials is refused");
    assert!(err.contains("407"), "{err}");
    assert_eq!(f.up.count(), 1, "only the /zen read reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn airlock_local_page_and_ca_over_https_for_an_agent() {
    let f = Fixture::start().await;
    let ca = path_str(&f.airlock.ca_file());
    let (code, pem, err) = curl(&[
        "-sS".into(),
        "--max-time".into(),
        "20".into(),
        "--proxy".into(),
        f.agent_proxy.clone(),
        "--cacert".into(),
        ca.clone(),
        "https://airlock.local/ca.pem".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(pem, f.airlock.ca_pem);

    let page = f
        .agent()
        .get("https://airlock.local/")
        .send()
        .await
        .expect("send");
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.expect("html");
    assert!(html.contains(&f.fingerprint()), "{html}");
    // Nothing about this instance or agent on it.
    assert!(!html.contains("coder"), "{html}");
    assert!(!html.contains(&f.airlock.addr.port().to_string()), "{html}");

    let pem = f
        .agent()
        .get("https://airlock.local/ca.pem")
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("pem");
    assert_eq!(pem, f.airlock.ca_pem);

    // The agent's own reviews are still served beside the pages.
    let resp = f
        .agent()
        .get("https://airlock.local/v1/reviews/rev_missing")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(f.up.count(), 0);
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The fields every held answer keeps, whatever the client: returns the review id.
fn assert_airlock_fields(body: &serde_json::Value, headers_id: &str) -> String {
    let id = body["reviewId"].as_str().expect("reviewId").to_string();
    assert_eq!(id, headers_id);
    assert_eq!(body["outcome"], "ESCALATE", "{body}");
    assert!(body["decisionId"].as_str().is_some(), "{body}");
    assert!(body["expiresAt"].as_str().is_some(), "{body}");
    assert!(body["reasonCodes"].as_array().is_some(), "{body}");
    let url = format!("https://airlock.local/v1/reviews/{id}");
    assert_eq!(body["statusUrl"], url.as_str(), "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains(&id) && message.contains(&url), "{message}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_stripe_charge_reads_as_a_stripe_error() {
    let f = Fixture::start().await;
    let resp = f
        .agent()
        .post("https://api.stripe.com/v1/charges")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("amount=50000&currency=usd&source=tok_visa")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 423);
    assert_eq!(header(&resp, "airlock-outcome"), "ESCALATE");
    assert_eq!(header(&resp, "stripe-should-retry"), "false");
    let header_id = header(&resp, "airlock-review-id");
    assert_eq!(
        header(&resp, "airlock-status-url"),
        format!("https://airlock.local/v1/reviews/{header_id}")
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    let id = assert_airlock_fields(&body, &header_id);

    // What stripe-python and stripe-node read: `error` is an object with type, code, message.
    let error = &body["error"];
    assert_eq!(error["type"], "api_error", "{body}");
    assert_eq!(error["code"], "airlock_held", "{body}");
    assert_eq!(error["message"], body["message"], "{body}");
    assert_eq!(error["review_id"], id.as_str(), "{body}");
    assert_eq!(error["status_url"], body["statusUrl"], "{body}");
    assert_eq!(error["doc_url"], "https://airlock.local/#held", "{body}");
    assert!(body.get("documentation_url").is_none(), "{body}");
    assert_eq!(f.up.count(), 0, "nothing reached Stripe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_github_call_reads_as_a_github_error() {
    let f = Fixture::start().await;
    // curl, as a person would: the message names the review and where to poll.
    let (code, out, err) = curl(&[
        "-sS".into(),
        "-i".into(),
        "--max-time".into(),
        "20".into(),
        "--proxy".into(),
        f.agent_proxy.clone(),
        "--cacert".into(),
        path_str(&f.airlock.ca_file()),
        "-X".into(),
        "DELETE".into(),
        "https://api.github.com/repos/octo/demo".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    // (-i shows the proxy's CONNECT answer first.)
    assert!(
        out.contains("\nHTTP/2 423") || out.contains("\nHTTP/1.1 423"),
        "{out}"
    );
    let json_start = out.find('{').expect("json body");
    let body: serde_json::Value = serde_json::from_str(&out[json_start..]).expect("json");
    let header_id = out
        .lines()
        .find_map(|l| l.strip_prefix("airlock-review-id: "))
        .expect("review id header")
        .trim()
        .to_string();
    let id = assert_airlock_fields(&body, &header_id);
    // Octokit prints `message - documentation_url`; gh prints the message.
    assert_eq!(
        body["documentation_url"], "https://airlock.local/#held",
        "{body}"
    );
    assert!(body.get("error").is_none(), "{body}");
    let (code, r) = f
        .airlock
        .admin("GET", &format!("/v1/reviews/{id}"), None)
        .await;
    assert_eq!((code, r["state"].as_str()), (200, Some("pending")), "{r}");
    assert_eq!(f.up.count(), 0, "nothing reached GitHub");
}

/// The README's line for tools that honour the variables, run with this machine's curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_curl_line_works() {
    let f = Fixture::start().await;
    let ca = path_str(&f.airlock.ca_file());
    // HTTPS_PROXY=$AGENT_PROXY CURL_CA_BUNDLE=/tmp/airlock-ca.pem curl https://api.github.com/zen
    let (code, _, err) = curl_env(
        &[
            ("HTTPS_PROXY", f.agent_proxy.clone()),
            ("CURL_CA_BUNDLE", ca),
        ],
        &["-sS", "--max-time", "20", "https://api.github.com/zen"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let seen = f.up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/zen");
}

/// Review of session 21: the status URL Airlock advertised was `http://airlock.local/…`, which
/// an agent set up as the README says (only `HTTPS_PROXY`) sends around the proxy, so it could
/// not poll its own review. It is `https://` now: curl with `HTTPS_PROXY` and `CURL_CA_BUNDLE`
/// alone reads the review behind the `Airlock-Status-Url` of a held call, and the message and
/// `statusUrl` name the same URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_url_works_with_only_https_proxy() {
    let f = Fixture::start().await;
    let env = [
        ("HTTPS_PROXY", f.agent_proxy.clone()),
        ("CURL_CA_BUNDLE", path_str(&f.airlock.ca_file())),
    ];
    let (code, out, err) = curl_env(
        &env,
        &[
            "-sS",
            "-i",
            "--max-time",
            "20",
            "-X",
            "DELETE",
            "https://api.github.com/repos/octo/demo",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("airlock-status-url: "))
        .expect("status URL header")
        .trim()
        .to_string();
    let body: serde_json::Value =
        serde_json::from_str(&out[out.find('{').expect("json")..]).expect("json");
    assert_eq!(body["statusUrl"], url.as_str(), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains(&url)),
        "{body}"
    );
    let (code, out, err) = curl_env(&env, &["-sS", "--max-time", "20", &url]).await;
    assert_eq!(code, 0, "{url}: {err}");
    let review: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(review["reviewId"], body["reviewId"], "{review}");
    assert_eq!(review["state"], "pending", "{review}");
    assert_eq!(f.up.count(), 0, "nothing reached GitHub");
}

/// Where a Node test finds undici (the copy npm ships, unless `UNDICI` names another).
fn undici() -> Option<String> {
    let path = std::env::var("UNDICI")
        .unwrap_or_else(|_| "/usr/lib/node_modules/npm/node_modules/undici".into());
    std::path::Path::new(&path)
        .join("index.js")
        .exists()
        .then_some(path)
}

/// The README's Node row: Node's built-in `fetch` through Airlock with undici's
/// `EnvHttpProxyAgent` (older Node ignores `HTTPS_PROXY` by itself) and `NODE_EXTRA_CA_CERTS`; a
/// held call's message names the review.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_fetch_with_env_http_proxy_agent() {
    let (Some(undici), true) = (undici(), std::path::Path::new("/usr/bin/node").exists()) else {
        eprintln!("skipping: needs node and undici (set UNDICI to its directory)");
        return;
    };
    let f = Fixture::start().await;
    let script = r#"
const { EnvHttpProxyAgent, setGlobalDispatcher } = require(process.env.UNDICI);
setGlobalDispatcher(new EnvHttpProxyAgent());
(async () => {
  const zen = await fetch("https://api.github.com/zen");
  const held = await fetch("https://api.github.com/repos/octo/demo", { method: "DELETE" });
  const body = await held.json();
  console.log(JSON.stringify({ zen: zen.status, held: held.status, message: body.message, reviewId: body.reviewId }));
})().catch((e) => { console.error(String(e), e.cause); process.exit(1); });
"#;
    let env = vec![
        ("HTTPS_PROXY".to_string(), f.agent_proxy.clone()),
        (
            "NODE_EXTRA_CA_CERTS".to_string(),
            path_str(&f.airlock.ca_file()),
        ),
        ("UNDICI".to_string(), undici),
    ];
    let (code, stdout, stderr) = run_with("/usr/bin/node", &["-e", script], env).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(seen["zen"], 200, "{seen}");
    assert_eq!(seen["held"], 423, "{seen}");
    let id = seen["reviewId"].as_str().expect("id");
    assert!(
        seen["message"].as_str().is_some_and(|m| m.contains(id)),
        "{seen}"
    );
    assert_eq!(f.up.count(), 1, "only the read reached the upstream");
}

/// Answers Airlock gives itself on Stripe besides a hold read as Stripe errors too: a block, and a
/// rejection while the agent waited (`Airlock-Wait`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocked_and_rejected_stripe_calls_read_as_stripe_errors() {
    let f = Fixture::start().await;
    let resp = f
        .agent()
        .post(format!("https://api.stripe.com{BLOCKED_PATH}"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "airlock-outcome"), "BLOCK");
    assert_eq!(header(&resp, "stripe-should-retry"), "false");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["outcome"], "BLOCK", "{body}");
    assert_eq!(body["message"], "test rule: never", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["code"], "airlock_blocked", "{body}");
    assert_eq!(body["error"]["message"], "test rule: never", "{body}");

    let charge = f
        .agent()
        .post("https://api.stripe.com/v1/charges")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("airlock-wait", "120")
        .body("amount=50000&currency=usd&source=tok_visa")
        .send();
    let reject = async {
        let id = support::eventually("the charge to be held", support::WAIT, || async {
            let (_, list) = f
                .airlock
                .admin("GET", "/v1/reviews?state=pending", None)
                .await;
            list["reviews"][0]["reviewId"].as_str().map(str::to_string)
        })
        .await;
        let (code, r) = f
            .airlock
            .admin(
                "POST",
                &format!("/v1/reviews/{id}/reject"),
                Some(serde_json::json!({"comment": "no"})),
            )
            .await;
        assert_eq!(code, 200, "{r}");
        id
    };
    let (resp, id) = tokio::join!(charge, reject);
    let resp = resp.expect("send");
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "airlock-outcome"), "REJECTED");
    assert_eq!(header(&resp, "airlock-review-id"), id);
    assert_eq!(header(&resp, "stripe-should-retry"), "false");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["reviewId"], id.as_str(), "{body}");
    assert_eq!(body["outcome"], "REJECTED", "{body}");
    assert_eq!(body["state"], "rejected", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains(&id) && message.contains("rejected"),
        "{message}"
    );
    assert_eq!(body["error"]["type"], "api_error", "{body}");
    assert_eq!(body["error"]["code"], "airlock_rejected", "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
    assert_eq!(body["error"]["review_id"], id.as_str(), "{body}");
    assert_eq!(f.up.count(), 0, "nothing reached Stripe");
}

/// The README's Python `urllib` row: `HTTPS_PROXY` and `SSL_CERT_FILE`, nothing in code; the held
/// call's 423 body reads with the review in its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_urllib_with_the_variables() {
    let f = Fixture::start().await;
    let script = r#"
import json, urllib.request, urllib.error
print(urllib.request.urlopen("https://api.github.com/zen").status)
try:
    urllib.request.urlopen(urllib.request.Request("https://api.github.com/repos/octo/demo", method="DELETE"))
except urllib.error.HTTPError as e:
    body = json.load(e)
    print(json.dumps({"status": e.code, "reviewId": body["reviewId"], "message": body["message"]}))
"#;
    let env = vec![
        ("HTTPS_PROXY".to_string(), f.agent_proxy.clone()),
        ("SSL_CERT_FILE".to_string(), path_str(&f.airlock.ca_file())),
    ];
    let (code, stdout, stderr) = run_with("python3", &["-c", script], env).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("200"), "{stdout}");
    let held: serde_json::Value =
        serde_json::from_str(lines.next().expect("held line")).expect("json");
    assert_eq!(held["status"], 423, "{held}");
    let id = held["reviewId"].as_str().expect("id");
    assert!(
        held["message"].as_str().is_some_and(|m| m.contains(id)),
        "{held}"
    );
    assert_eq!(f.up.count(), 1, "only the read reached the upstream");
}

/// The README's Java row, with the JDK's `keytool` and `java`: the CA imported into a keystore
/// named by `javax.net.ssl.trustStore`, the proxy by `https.proxyHost`/`https.proxyPort`, its
/// credentials through an `Authenticator` with Basic allowed for CONNECT. Skipped (saying so)
/// where no JDK is installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn java_http_client_with_keytool_and_proxy_properties() {
    let has = |tool: &str| {
        std::process::Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(has("java") && has("javac")) {
        eprintln!("skipping: needs a JDK (java, javac, keytool)");
        return;
    }
    let f = Fixture::start().await;
    let work = tempfile::tempdir().expect("dir");
    let jks = work.path().join("airlock.jks");
    let main = work.path().join("Main.java");
    std::fs::write(
        &main,
        r#"
import java.net.*;
import java.net.http.*;

public class Main {
    public static void main(String[] args) throws Exception {
        HttpClient c = HttpClient.newBuilder()
            .proxy(ProxySelector.getDefault())
            .authenticator(new Authenticator() {
                protected PasswordAuthentication getPasswordAuthentication() {
                    return new PasswordAuthentication(System.getenv("AGENT"), System.getenv("AGENT_TOKEN").toCharArray());
                }
            })
            .build();
        HttpResponse<String> zen = c.send(HttpRequest.newBuilder(URI.create("https://api.github.com/zen")).build(), HttpResponse.BodyHandlers.ofString());
        System.out.println(zen.statusCode());
        HttpResponse<String> held = c.send(HttpRequest.newBuilder(URI.create("https://api.github.com/repos/octo/demo")).DELETE().build(), HttpResponse.BodyHandlers.ofString());
        System.out.println(held.statusCode());
        System.out.println(held.body().trim());
    }
}
"#,
    )
    .expect("write");
    let token = f
        .agent_proxy
        .trim_start_matches("http://coder:")
        .split('@')
        .next()
        .expect("token")
        .to_string();
    let (ca, port) = (path_str(&f.airlock.ca_file()), f.airlock.addr.port());
    let (jks_s, main_s) = (path_str(&jks), path_str(&main));
    let out = tokio::task::spawn_blocking(move || {
        let import = std::process::Command::new("keytool")
            .args([
                "-importcert",
                "-noprompt",
                "-alias",
                "airlock",
                "-file",
                &ca,
            ])
            .args(["-keystore", &jks_s, "-storepass", "changeit"])
            .output()
            .expect("keytool");
        assert!(import.status.success(), "{import:?}");
        std::process::Command::new("java")
            .env("AGENT", "coder")
            .env("AGENT_TOKEN", token)
            .arg(format!("-Djavax.net.ssl.trustStore={jks_s}"))
            .arg("-Djavax.net.ssl.trustStorePassword=changeit")
            .arg("-Dhttps.proxyHost=127.0.0.1")
            .arg(format!("-Dhttps.proxyPort={port}"))
            .arg("-Djdk.http.auth.tunneling.disabledSchemes=")
            .arg(&main_s)
            .output()
            .expect("java")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("200"), "{stdout}");
    assert_eq!(lines.next(), Some("423"), "{stdout}");
    let held: serde_json::Value = serde_json::from_str(lines.next().expect("body")).expect("json");
    let id = held["reviewId"].as_str().expect("id");
    assert!(
        held["message"].as_str().is_some_and(|m| m.contains(id)),
        "{held}"
    );
    assert_eq!(f.up.count(), 1, "only the read reached the upstream");
}

/// A program's (exit code, stdout, stderr), run with an empty environment but PATH and `env`.
async fn run_with(
    program: &str,
    args: &[&str],
    env: Vec<(String, String)>,
) -> (i32, String, String) {
    let program = program.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(&program)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{program} must be installed (.ci/run installs it): {e}"));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

/// The README's stripe-python row with the real library: `stripe.proxy` and
/// `stripe.ca_bundle_path` (it ignores the environment); a held $500 charge raises a Stripe
/// error whose message names the review, with code `airlock_held`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stripe_python_raises_an_error_naming_the_review() {
    let f = Fixture::start().await;
    let script = r#"
import os, stripe
stripe.api_key = "sk_test_not_a_real_key"   # Airlock sends the real one
stripe.proxy = os.environ["AGENT_PROXY"]
stripe.ca_bundle_path = os.environ["AIRLOCK_CA"]
stripe.max_network_retries = 0
try:
    stripe.Charge.create(amount=50000, currency="usd", source="tok_visa")
    print("NOT RAISED")
except stripe.StripeError as e:
    print(type(e).__name__)
    print(e.http_status)
    print(e.error.code if e.error else None)   # APIError leaves e.code unset; e.error has it
    print(str(e).replace("\n", " "))
"#;
    let env = vec![
        ("AGENT_PROXY".to_string(), f.agent_proxy.clone()),
        ("AIRLOCK_CA".to_string(), path_str(&f.airlock.ca_file())),
    ];
    let (code, out, err) = run_with("python3", &["-c", script], env).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"APIError"), "{out}{err}");
    assert_eq!(lines.get(1), Some(&"423"), "{out}");
    assert_eq!(lines.get(2), Some(&"airlock_held"), "{out}");
    let (_, list) = f
        .airlock
        .admin("GET", "/v1/reviews?state=pending", None)
        .await;
    let id = list["reviews"][0]["reviewId"]
        .as_str()
        .expect("held")
        .to_string();
    let message = lines.get(3).copied().unwrap_or_default();
    assert!(
        message.contains(&id) && message.contains("airlock.local"),
        "the error names the review and its status URL: {out}"
    );
    assert!(!message.contains("Invalid response object"), "{out}");
    assert_eq!(f.up.count(), 0, "nothing reached Stripe");
}

/// Review of session 21: Airlock's own refusals on a Stripe host were `{"error":"<code>",…}`,
/// which stripe-python takes for an OAuth error and crashes on (`AttributeError: 'str' object
/// has no attribute 'get'`). They are Stripe's error object now: stripe-python raises
/// `InvalidRequestError` for a reserved Idempotency-Key (400) and `RateLimitError` past the
/// pending-reviews cap (429), each with the message and `airlock_<code>`; on GitHub the same
/// refusal carries `documentation_url` beside its `message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stripe_python_reads_airlocks_refusals_as_stripe_errors() {
    let f = Fixture::start_with("[gate]\nmax_pending_per_agent = 1\n").await;
    let script = r#"
import os, stripe
stripe.api_key = "sk_test_not_a_real_key"
stripe.proxy = os.environ["AGENT_PROXY"]
stripe.ca_bundle_path = os.environ["AIRLOCK_CA"]
stripe.max_network_retries = 0
def attempt(**kw):
    try:
        stripe.Charge.create(currency="usd", source="tok_visa", **kw)
        print("NOT RAISED")
    except stripe.StripeError as e:
        print(type(e).__name__, e.http_status, e.error.code if e.error else None,
              (e.headers or {}).get("stripe-should-retry"), "|", str(e).replace("\n", " "))
attempt(amount=1000, idempotency_key="airlock-mine")   # reserved key: 400
attempt(amount=50000)                                  # held: 423
attempt(amount=60000)                                  # past the cap of 1: 429
"#;
    let env = vec![
        ("AGENT_PROXY".to_string(), f.agent_proxy.clone()),
        ("AIRLOCK_CA".to_string(), path_str(&f.airlock.ca_file())),
    ];
    let (code, out, err) = run_with("python3", &["-c", script], env).await;
    assert_eq!(code, 0, "stripe-python did not crash: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}{err}");
    let reserved = lines[0];
    assert!(
        reserved.starts_with("InvalidRequestError 400 airlock_idempotency_key_reserved false | ")
            && reserved.contains("starts with \"airlock-\""),
        "{out}"
    );
    assert!(
        lines[1].starts_with("APIError 423 airlock_held false"),
        "{out}"
    );
    let capped = lines[2];
    assert!(
        capped.starts_with("RateLimitError 429 airlock_too_many_pending_reviews false | ")
            && capped.contains("gate.max_pending_per_agent"),
        "{out}"
    );
    assert_eq!(f.up.count(), 0, "nothing reached Stripe");

    // GitHub's clients print `message` and `documentation_url`.
    let resp = f
        .agent()
        .delete("https://api.github.com/repos/octo/demo")
        .header("idempotency-key", "airlock-mine")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "airlock-reason"), "idempotency_key_reserved");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "idempotency_key_reserved", "{body}");
    assert!(body["message"].as_str().is_some(), "{body}");
    assert_eq!(
        body["documentation_url"], "https://airlock.local/#refused",
        "{body}"
    );
}

/// Review of session 21: a gated body over `gate.max_body_bytes` was refused in the middle of
/// its read and dropped with the rest unread, so the 413 often never reached the client: curl
/// saw `(55) Broken pipe` after `100 Continue` or an HTTP/2 stream error, Python's requests an
/// SSLEOFError. A declared length over the cap is now refused before a byte is read (no
/// `100 Continue` goes out), and a body found too large has its rest read and discarded
/// (bounded) before the answer: curl over HTTP/1.1 (with and without `Expect`, chunked) and
/// HTTP/2 (with and without a length), and requests (sized and chunked), all read the 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_body_gets_a_413_every_client_reads() {
    let f = Fixture::start_with("[gate]\nmax_body_bytes = 4096\n").await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("body");
    let mut body = b"amount=50000&currency=usd&description=".to_vec();
    body.resize(body.len() + (2 << 20), b'x');
    std::fs::write(&file, &body).expect("write");
    let (ca, data) = (
        path_str(&f.airlock.ca_file()),
        format!("@{}", path_str(&file)),
    );
    let form = "content-type: application/x-www-form-urlencoded";
    let cases: &[(&str, &[&str], bool)] = &[
        (
            "HTTP/1.1, Expect",
            &[
                "--http1.1",
                "-H",
                "expect: 100-continue",
                "--data-binary",
                &data,
            ],
            false,
        ),
        (
            "HTTP/1.1, no Expect",
            &["--http1.1", "-H", "expect:", "--data-binary", &data],
            false,
        ),
        (
            "HTTP/1.1, chunked",
            &[
                "--http1.1",
                "-H",
                "expect:",
                "-H",
                form,
                "-X",
                "POST",
                "-T",
                "-",
            ],
            true,
        ),
        ("HTTP/2", &["--http2", "--data-binary", &data], false),
        (
            "HTTP/2, no length",
            &["--http2", "-H", form, "-X", "POST", "-T", "-"],
            true,
        ),
    ];
    for (case, extra, stdin) in cases {
        let out = dir.path().join("answer");
        let mut args: Vec<String> = [
            "-sS",
            "--max-time",
            "20",
            "--proxy",
            &f.agent_proxy,
            "--cacert",
            &ca,
            "-o",
            &path_str(&out),
            "-w",
            "%{http_code}",
        ]
        .iter()
        .chain(extra.iter())
        .map(|s| s.to_string())
        .collect();
        args.push("https://api.stripe.com/v1/charges".into());
        let input = stdin.then(|| std::fs::File::open(&file).expect("open"));
        let (code, status, err) = tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new("curl");
            cmd.args(&args);
            if let Some(input) = input {
                cmd.stdin(input);
            }
            let out = cmd.output().expect("curl");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .expect("join");
        assert_eq!((code, status.as_str()), (0, "413"), "{case}: {err}");
        let answer: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).expect("answer")).expect("json");
        assert_eq!(
            answer["error"]["code"], "airlock_body_too_large",
            "{case}: {answer}"
        );
    }

    // Python's requests sends the whole body before it reads the answer.
    let script = r#"
import os, requests
s = requests.Session()
s.proxies = {"https": os.environ["AGENT_PROXY"]}
s.verify = os.environ["AIRLOCK_CA"]
body = open(os.environ["BODY"], "rb").read()
form = {"content-type": "application/x-www-form-urlencoded"}
chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
for data in (body, chunks):
    r = s.post("https://api.stripe.com/v1/charges", data=data, headers=form, timeout=20)
    print(r.status_code, r.json()["error"]["code"])
"#;
    let env = vec![
        ("AGENT_PROXY".to_string(), f.agent_proxy.clone()),
        ("AIRLOCK_CA".to_string(), ca.clone()),
        ("BODY".to_string(), path_str(&file)),
    ];
    let (code, out, err) = run_with("python3", &["-c", script], env).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["413 airlock_body_too_large"; 2],
        "{out}{err}"
    );
    let (_, list) = f.airlock.admin("GET", "/v1/reviews", None).await;
    assert_eq!(list["reviews"].as_array().map(Vec::len), Some(0), "{list}");
    assert_eq!(f.up.count(), 0, "nothing reached Stripe");
}

/// gh, with only `HTTPS_PROXY` and `SSL_CERT_FILE`: a held call prints the review id and its
/// status URL (GitHub's `message`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gh_prints_the_review_of_a_held_call() {
    let f = Fixture::start().await;
    let home = tempfile::tempdir().expect("home");
    let env = vec![
        ("HTTPS_PROXY".to_string(), f.agent_proxy.clone()),
        ("SSL_CERT_FILE".to_string(), path_str(&f.airlock.ca_file())),
        ("GH_TOKEN".to_string(), "not-a-real-token".to_string()),
        ("HOME".to_string(), path_str(home.path())),
        ("GH_NO_UPDATE_NOTIFIER".to_string(), "1".to_string()),
    ];
    let (code, out, err) = run_with(
        "gh",
        &["api", "-X", "DELETE", "repos/octo/demo"],
        env.clone(),
    )
    .await;
    assert_ne!(code, 0, "a held call is an error for gh: {out}{err}");
    let (_, list) = f
        .airlock
        .admin("GET", "/v1/reviews?state=pending", None)
        .await;
    let id = list["reviews"][0]["reviewId"]
        .as_str()
        .expect("held")
        .to_string();
    assert!(
        err.contains(&id) && err.contains(&format!("https://airlock.local/v1/reviews/{id}")),
        "gh shows the review id and status URL: {err}"
    );
    assert!(err.contains("HTTP 423"), "{err}");
    assert_eq!(f.up.count(), 0, "nothing reached GitHub");
    // And a read passes through.
    let (code, out, err) = run_with("gh", &["api", "zen"], env).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(f.up.count(), 1);
}
