//! The closed world. Every route and mutation in the providers' published lists (`tests/data`,
//! provenance in its README) has an explicit catalog entry with a reason, and a request to each
//! is decided by that entry, never by the fallback for unclassified writes. Writes no rule names
//! get `rules.unclassified_writes` (escalate, block or allow), end to end: an allowed one is
//! forwarded only once it is audited as `unclassified`.

mod support;

use airlock::rules::coverage::{self, Kind, Route};
use airlock::rules::{Action, Catalog, CatalogOptions, LiveCatalog, RequestHead, Verdict};
use http::HeaderMap;
use support::{Airlock, FakeUpstream};

const FORM: &str = "application/x-www-form-urlencoded";

fn catalog(unclassified_writes: Action) -> Catalog {
    let opts = CatalogOptions {
        unclassified_writes,
        ..CatalogOptions::default()
    };
    Catalog::embedded(&opts).expect("embedded catalog compiles")
}

fn label(r: &Route) -> String {
    match r.method {
        Some(m) => format!("{} {m} {}", r.service, r.name),
        None => format!("{} mutation {}", r.service, r.name),
    }
}

fn eval(c: &Catalog, method: &str, host: &str, path: &str, ct: &str, body: &[u8]) -> Verdict {
    let mut h = HeaderMap::new();
    if !ct.is_empty() {
        h.insert("content-type", ct.parse().expect("content type"));
    }
    let head = RequestHead {
        method,
        host,
        port: 443,
        path_and_query: path,
        headers: &h,
    };
    c.evaluate(&head, Some(body))
}

#[test]
fn every_listed_route_and_mutation_has_one_explicit_entry_with_a_reason() {
    let c = catalog(Action::Escalate);
    let routes = coverage::routes(&c);
    let missing: Vec<String> = routes
        .iter()
        .filter(|r| r.base.is_none())
        .map(label)
        .collect();
    assert!(
        missing.is_empty(),
        "{} listed routes/mutations have no explicit entry:\n{}",
        missing.len(),
        missing.join("\n")
    );
    let twice: Vec<String> = routes.iter().filter(|r| r.duplicate).map(label).collect();
    assert!(
        twice.is_empty(),
        "more than one base entry:\n{}",
        twice.join("\n")
    );
    let unexplained: Vec<String> = routes
        .iter()
        .filter(|r| r.base.as_ref().is_some_and(|b| b.reason.trim().is_empty()))
        .map(label)
        .collect();
    assert!(
        unexplained.is_empty(),
        "no reason:\n{}",
        unexplained.join("\n")
    );
    // The lists are whole: the sizes their sources publish.
    let t = coverage::tally(&routes);
    assert_eq!(t[&("github", Kind::Rest)].listed, 187 + 397);
    assert_eq!(t[&("github", Kind::Graphql)].listed, 247);
    assert_eq!(t[&("stripe", Kind::Rest)].listed, 360);
}

/// A concrete path for a listed template: `{ref}`-like parameters get a value with a slash.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| match s {
            "{ref}" | "{branch}" | "{path}" | "{file_path}" => "feature/x-1",
            s if s.starts_with('{') => "octo",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn a_request_to_every_listed_route_is_decided_by_its_entry() {
    let c = catalog(Action::Allow);
    let mut wrong = Vec::new();
    for r in coverage::routes(&c) {
        let Some(base) = &r.base else { continue };
        let v = match (r.kind, r.method) {
            (Kind::Rest, Some(method)) => {
                let (host, ct, body): (&str, &str, &[u8]) = match r.service {
                    "stripe" if r.name.starts_with("/v1/") || r.name.starts_with("/oauth/") => {
                        ("api.stripe.com", "application/x-www-form-urlencoded", b"")
                    }
                    "stripe" => ("api.stripe.com", "application/json", b"{}"),
                    _ => ("api.github.com", "application/json", b"{}"),
                };
                eval(&c, method, host, &concrete(r.name), ct, body)
            }
            _ => {
                let q = format!(
                    "mutation {{ {}(input: {{}}) {{ clientMutationId }} }}",
                    r.name
                );
                let body = serde_json::json!({ "query": q }).to_string();
                eval(
                    &c,
                    "POST",
                    "api.github.com",
                    "/graphql",
                    "application/json",
                    body.as_bytes(),
                )
            }
        };
        // With unclassified writes allowed, a fallback would show up as a laxer verdict.
        let fallback = v.reason_codes.iter().any(|c| c == "unclassified_route");
        if fallback || v.action < base.action {
            wrong.push(format!(
                "{}: want at least {} ({}), got {} {:?}",
                label(&r),
                base.action.as_str(),
                base.tool,
                v.action.as_str(),
                v.reason_codes
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn unclassified_writes_follow_the_setting_and_reads_do_not() {
    let cases: &[(&str, &str, &str)] = &[
        ("POST", "api.github.com", "/repos/o/r/self-destruct"),
        ("PUT", "api.github.com", "/user/made-up"),
        ("PATCH", "api.github.com", "/api/v3/orgs/o/made-up"),
        ("DELETE", "api.github.com", "/made/up"),
        ("POST", "api.stripe.com", "/v1/brand_new_money_mover"),
        ("POST", "API.STRIPE.COM.", "/v2/core/brand_new"),
        ("POST", "github.com", "/o/r/settings/delete"),
    ];
    for setting in [Action::Escalate, Action::Block, Action::Allow] {
        let c = catalog(setting);
        for (method, host, path) in cases {
            let v = eval(&c, method, host, path, "application/json", b"{}");
            assert_eq!(v.action, setting, "{method} {host}{path}: {v:?}");
            assert_eq!(v.reason_codes, ["unclassified_route"], "{method} {path}");
            assert!(v.tool.is_none(), "{method} {path}");
        }
        // Reads keep the service default, and hosts no service names keep `default_action`.
        let v = eval(&c, "GET", "api.github.com", "/made/up", "", b"");
        assert_eq!(
            (v.action, v.reason_codes[0].as_str()),
            (Action::Allow, "no_rule_default")
        );
        let v = eval(&c, "POST", "example.com", "/x", "application/json", b"{}");
        assert_eq!(
            (v.action, v.reason_codes[0].as_str()),
            (Action::Allow, "no_service")
        );
    }
}

/// A host Airlock injects a credential on but no rules name is a closed world too: before, it
/// got `default_action` (allow) for every method, so a write went out with the real token
/// unjudged. The credential hosts of github and stripe are catalog hosts (their rules apply).
#[test]
fn credentialed_hosts_without_rules_are_a_closed_world() {
    for setting in [Action::Escalate, Action::Allow] {
        let opts = CatalogOptions {
            unclassified_writes: setting,
            credentialed_hosts: vec![("api.example.com".into(), "example".into())],
            ..CatalogOptions::default()
        };
        let c = Catalog::embedded(&opts).expect("catalog");
        let v = eval(
            &c,
            "POST",
            "API.Example.com.",
            "/v1/send",
            "application/json",
            b"{}",
        );
        assert_eq!(
            (v.action, v.reason_codes[0].as_str(), v.service.as_deref()),
            (setting, "unclassified_route", Some("example")),
            "{v:?}"
        );
        let v = eval(&c, "GET", "api.example.com", "/v1/things", "", b"");
        assert_eq!(
            (v.action, v.reason_codes[0].as_str(), v.service.as_deref()),
            (Action::Allow, "no_rule_default", Some("example"))
        );
        let v = eval(
            &c,
            "POST",
            "other.example.com",
            "/x",
            "application/json",
            b"{}",
        );
        assert_eq!(
            (v.action, v.reason_codes[0].as_str()),
            (Action::Allow, "no_service"),
            "a host without a credential keeps default_action"
        );
        let fetch = "application/x-git-upload-pack-request";
        let v = eval(
            &c,
            "POST",
            "api.example.com",
            "/o/r.git/git-upload-pack",
            fetch,
            b"",
        );
        assert_eq!(v.action, Action::Allow, "a git fetch is a read: {v:?}");
        let v = eval(
            &c,
            "POST",
            "api.example.com",
            "/api/items/git-upload-pack",
            FORM,
            b"x=1",
        );
        assert_eq!(v.action, setting, "only a fetch's own Content-Type: {v:?}");
    }
    let strict = CatalogOptions {
        default_action: Action::Block,
        credentialed_hosts: vec![("api.example.com".into(), "example".into())],
        ..CatalogOptions::default()
    };
    let c = Catalog::embedded(&strict).expect("catalog");
    for method in ["GET", "POST"] {
        let v = eval(
            &c,
            method,
            "api.example.com",
            "/x",
            "application/json",
            b"{}",
        );
        assert_eq!(
            v.action,
            Action::Block,
            "{method}: never laxer than default_action"
        );
    }
    let opts = CatalogOptions {
        credentialed_hosts: vec![("api.example.com".into(), "example".into())],
        ..CatalogOptions::default()
    };
    let mut h = HeaderMap::new();
    h.insert("x-http-method-override", "DELETE".parse().expect("value"));
    let head = RequestHead {
        method: "GET",
        host: "api.example.com",
        port: 443,
        path_and_query: "/v1/things/1",
        headers: &h,
    };
    let v = Catalog::embedded(&opts)
        .expect("catalog")
        .evaluate(&head, None);
    assert_eq!(
        (v.action, v.reason_codes[0].as_str()),
        (Action::Escalate, "method_override")
    );
    let c = catalog(Action::Escalate);
    for (method, host, path, ct, body, want) in [
        (
            "POST",
            "api.github.com",
            "/graphql",
            "application/x-www-form-urlencoded",
            "{\"query\": \"query($n: Int = 5) { viewer { login } }\"}",
            Action::Allow,
        ),
        (
            "POST",
            "api.github.com",
            "/markdown/raw",
            "text/plain",
            "# Notes\na&b=c; [x](y) [_methods]",
            Action::Allow,
        ),
        (
            "DELETE",
            "uploads.github.com",
            "/repos/o/r",
            "",
            "",
            Action::Escalate,
        ),
        (
            "POST",
            "uploads.github.com",
            "/repos/o/r/releases/1/assets?name=a.zip",
            "application/zip",
            "PK",
            Action::Escalate,
        ),
        (
            "POST",
            "files.stripe.com",
            "/v1/refunds",
            "application/x-www-form-urlencoded",
            "charge=ch_1",
            Action::Escalate,
        ),
        (
            "GET",
            "files.stripe.com",
            "/v1/quotes/qt_1/pdf",
            "",
            "",
            Action::Allow,
        ),
        // A file's contents may be an identity document: held by its own rule.
        (
            "GET",
            "files.stripe.com",
            "/v1/files/file_1/contents",
            "",
            "",
            Action::Escalate,
        ),
    ] {
        let v = eval(&c, method, host, path, ct, body.as_bytes());
        assert_eq!(v.action, want, "{method} {host}{path}: {v:?}");
    }
    // GitHub reads no form from a text body (only Stripe reads every body as one): an asset
    // upload is held by its own rule, not as a method override.
    let v = eval(
        &c,
        "POST",
        "uploads.github.com",
        "/repos/o/r/releases/1/assets?name=build.log",
        "text/plain",
        b"step 1&_method=DELETE",
    );
    assert_eq!(v.reason_codes, ["rule_match"], "{v:?}");
}

#[test]
fn coverage_command_reports_buckets_and_fails_on_an_unclassified_route() {
    let bin = env!("CARGO_BIN_EXE_airlock");
    let ok = std::process::Command::new(bin)
        .args(["rules", "coverage"])
        .output()
        .expect("run airlock");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for line in [
        "github REST: 584 listed",
        "github GraphQL: 247 listed",
        "stripe REST: 360 listed",
    ] {
        assert!(out.contains(line), "{line} in {out}");
    }
    assert!(out.contains("every listed route and mutation is classified explicitly"));

    // A catalog with only the hand-written GitHub file leaves most routes unclassified.
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    std::fs::copy(rules.join("github.toml"), dir.path().join("github.toml")).expect("copy");
    let bad = std::process::Command::new(bin)
        .args(["rules", "coverage", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run airlock");
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(
        out.contains("unclassified: DELETE /repos/{owner}/{repo}"),
        "{out}"
    );
    assert!(out.contains("unclassified: POST /v1/refunds"), "{out}");
}

/// End to end with `unclassified_writes = "allow"`: an unlisted write is forwarded, and only
/// after its `decision` record (gate `unclassified`) is in the audit log. With the default it
/// is held with `unclassified_route`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclassified_write_is_held_by_default_and_audited_when_allowed() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let hosts = ["api.github.com"];

    let held = Airlock::start_classified(
        "",
        &up,
        &hosts,
        LiveCatalog::load(None, CatalogOptions::default()).expect("catalog"),
    )
    .await;
    let r = held
        .client()
        .post("https://api.github.com/repos/o/r/self-destruct")
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 423);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        body["reasonCodes"],
        serde_json::json!(["unclassified_route"])
    );
    assert_eq!(up.count(), 0, "nothing was sent");

    let opts = CatalogOptions {
        unclassified_writes: Action::Allow,
        ..CatalogOptions::default()
    };
    let open = Airlock::start_classified(
        "[rules]\nunclassified_writes = \"allow\"\n",
        &up,
        &hosts,
        LiveCatalog::load(None, opts).expect("catalog"),
    )
    .await;
    let r = open
        .client()
        .post("https://api.github.com/repos/o/r/self-destruct")
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1);
    let log = open.audit_export().await;
    let recorded = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|e| {
            e["kind"] == "decision"
                && e["gate"] == "unclassified"
                && e["outcome"] == "ALLOW"
                && e["path"] == "/repos/o/r/self-destruct"
        });
    assert!(recorded, "an unclassified decision record: {log}");
}
