//! Table-driven tests of the shipped catalog: every GitHub DELETE route, the special write
//! rules, Stripe money rules, GraphQL, normalisation and fail-closed cases, broken files.

use airlock::rules::{Action, Catalog, CatalogOptions, Classifier, LiveCatalog, RequestHead};
use http::HeaderMap;

fn catalog() -> Catalog {
    Catalog::embedded(&CatalogOptions::default()).expect("embedded catalog compiles")
}

fn eval(
    c: &Catalog,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (Action, Vec<String>, Option<String>) {
    let v = verdict(c, method, url, headers, body);
    (v.action, v.reason_codes, v.tool)
}

/// The whole verdict of a request (see [`eval`]).
fn verdict(
    c: &Catalog,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> airlock::rules::Verdict {
    let uri: http::Uri = url.parse().expect("url");
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let head = RequestHead {
        method,
        host: uri.host().expect("host"),
        port: 443,
        path_and_query: pq,
        headers: &h,
    };
    let body = if c.needs_body(&head) {
        Some(body.unwrap_or("").as_bytes())
    } else {
        body.map(str::as_bytes)
    };
    c.evaluate(&head, body)
}

#[test]
fn every_github_delete_route_is_gated() {
    let c = catalog();
    let tsv = include_str!("data/github-rest-delete.tsv");
    let mut n = 0;
    for line in tsv.lines() {
        let Some(route) = line.split('\t').next() else {
            continue;
        };
        let Some(path) = route.strip_prefix("DELETE ") else {
            continue;
        };
        let concrete: String = path
            .split('/')
            .map(|s| match s {
                "{ref}" | "{branch}" | "{path}" | "{file_path}" => "feature/x-1",
                s if s.starts_with('{') => "v1",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        let (action, _, tool) = eval(
            &c,
            "DELETE",
            &format!("https://api.github.com{concrete}"),
            &[],
            None,
        );
        // Self-only bookkeeping (notification threads, watching) passes; every other DELETE is
        // at least a soft gate.
        let self_only = [
            "DELETE /notifications/threads/{thread_id}",
            "DELETE /notifications/threads/{thread_id}/subscription",
            "DELETE /repos/{owner}/{repo}/subscription",
        ];
        if self_only.contains(&route) {
            assert_eq!(action, Action::Allow, "{route}");
        } else {
            assert!(action >= Action::Notify, "{route} -> {action:?}");
        }
        assert!(tool.is_some(), "{route}: no rule named it");
        n += 1;
    }
    assert_eq!(n, 187);
}

#[test]
fn table() {
    let c = catalog();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let json = [("content-type", "application/json")];
    use Action::*;
    #[allow(clippy::type_complexity)]
    let cases: &[(&str, &str, &[(&str, &str)], Option<&str>, Action, &str)] = &[
        // reads flow
        (
            "GET",
            "https://api.github.com/repos/o/r",
            &[],
            None,
            Allow,
            "no_rule_default",
        ),
        (
            "GET",
            "https://api.stripe.com/v1/charges",
            &[],
            None,
            Allow,
            "no_rule_default",
        ),
        // repo deletion and its spellings
        (
            "DELETE",
            "https://api.github.com/repos/o/r",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "DELETE",
            "https://api.github.com/repos/o/r/",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "DELETE",
            "https://api.github.com//repos//o//r",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "DELETE",
            "https://api.github.com/repos/o/x/../r",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "DELETE",
            "https://api.github.com/repos%2Fo%2Fr",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "DELETE",
            "https://API.GITHUB.COM./repos/o/r",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "DELETE",
            "https://api.github.com/api/v3/repos/o/r",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "DELETE",
            "https://api.github.com/repositories/42",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "DELETE",
            "https://api.github.com/repos/o/r/git/refs/heads/a/b/c",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        // method tricks
        (
            "delete",
            "https://api.github.com/repos/o/r",
            &[],
            None,
            Escalate,
            "bad_method",
        ),
        (
            "PURGE",
            "https://api.github.com/repos/o/r",
            &[],
            None,
            Escalate,
            "bad_method",
        ),
        (
            "POST",
            "https://api.github.com/repos/o/r",
            &[("x-http-method-override", "DELETE")],
            None,
            Escalate,
            "method_override",
        ),
        (
            "GET",
            "https://api.github.com/repos/o/r?_method=DELETE",
            &[],
            None,
            Escalate,
            "method_override",
        ),
        // repo settings
        (
            "PATCH",
            "https://api.github.com/repos/o/r",
            &json,
            Some(r#"{"visibility":"public"}"#),
            Escalate,
            "rule_match",
        ),
        (
            "PATCH",
            "https://api.github.com/repos/o/r",
            &json,
            Some(r#"{"private":false}"#),
            Escalate,
            "rule_match",
        ),
        (
            "PATCH",
            "https://api.github.com/repos/o/r",
            &json,
            Some(r#"{"archived":true}"#),
            Escalate,
            "rule_match",
        ),
        (
            "PATCH",
            "https://api.github.com/repos/o/r",
            &json,
            Some(r#"{"description":"x"}"#),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/repos/o/r",
            &json,
            Some(r#"{"visibility":"public"}"#),
            Escalate,
            "rule_match",
        ),
        (
            "PATCH",
            "https://api.github.com/repos/o/r",
            &json,
            Some(r#"{"visibility":"private","visibility":"public"}"#),
            Escalate,
            "duplicate_key",
        ),
        (
            "PATCH",
            "https://api.github.com/repos/o/r",
            &json,
            Some("{broken"),
            Escalate,
            "body_unparseable",
        ),
        (
            "PATCH",
            "https://api.github.com/repos/o/r/git/refs/heads/main",
            &json,
            Some(r#"{"sha":"a","force":true}"#),
            Escalate,
            "rule_match",
        ),
        (
            "PATCH",
            "https://api.github.com/repos/o/r/git/refs/heads/feature/x",
            &json,
            Some(r#"{"sha":"a"}"#),
            Notify,
            "rule_match",
        ),
        // main, master, release/* and tags are protected refs, as for git push
        (
            "PATCH",
            "https://api.github.com/repos/o/r/git/refs/heads/main",
            &json,
            Some(r#"{"sha":"a"}"#),
            Escalate,
            "rule_match",
        ),
        (
            "PUT",
            "https://api.github.com/repos/o/r/pulls/7/merge",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/repos/o/r/actions/workflows/ci.yml/dispatches",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "PUT",
            "https://api.github.com/repos/o/r/actions/secrets/TOKEN",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "PUT",
            "https://api.github.com/repos/o/r/collaborators/eve",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/repos/o/r/keys",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/repos/o/r/transfer",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/repos/o/r/issues",
            &[],
            None,
            Notify,
            "rule_match",
        ),
        // Stripe money
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("amount=10000&currency=usd"),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("amount=10001&currency=usd"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("amount=100&currency=jpy"),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("amount=101&currency=jpy"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("amount=25000&currency=kwd"),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("amount=26000&currency=kwd"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("amount=5&currency=xyz"),
            Escalate,
            "unknown_currency",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("currency=usd"),
            Escalate,
            "amount_unparseable",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("amount=lots&currency=usd"),
            Escalate,
            "amount_unparseable",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges?amount=999999",
            &form,
            Some("currency=usd"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges?amount=1",
            &form,
            Some("amount=99999&currency=usd"),
            Escalate,
            "duplicate_key",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("amount=1&amount=99999&currency=usd"),
            Escalate,
            "duplicate_key",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/charges",
            &form,
            Some("amount=100&currency=usd&metadata[a]=1&metadata[a]=2"),
            Escalate,
            "duplicate_key",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/payment_intents",
            &form,
            Some("amount=500&currency=usd&confirm=true"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/payment_intents",
            &form,
            Some("amount=500&currency=usd"),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/refunds",
            &form,
            Some("charge=ch_1"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/payouts",
            &form,
            Some("amount=1&currency=usd"),
            Escalate,
            "rule_match",
        ),
        (
            "DELETE",
            "https://api.stripe.com/v1/customers/cus_1",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/subscriptions/sub_1/cancel",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/invoices/in_1/void",
            &[],
            None,
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v2/money_management/outbound_payments",
            &json,
            Some("{}"),
            Escalate,
            "rule_match",
        ),
        // GraphQL
        (
            "POST",
            "https://api.github.com/graphql",
            &json,
            Some(r#"{"query":"{ viewer { login } }"}"#),
            Allow,
            "graphql_read",
        ),
        (
            "POST",
            "https://api.github.com/graphql",
            &json,
            Some(
                r#"{"query":"mutation { ok: deleteRef(input:{refId:\"x\"}) { clientMutationId } }"}"#,
            ),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/graphql",
            &json,
            Some(
                r#"{"query":"mutation { ...F } fragment F on Mutation { archiveRepository(input:{}) { x } }"}"#,
            ),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/graphql",
            &json,
            Some(r#"{"query":"mutation { addComment(input:{}) { x } }"}"#),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/graphql",
            &json,
            Some(
                r#"{"query":"mutation { addComment(input:{}) { x } mergePullRequest(input:{}) { x } }"}"#,
            ),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/graphql",
            &json,
            Some(r#"{"query":"mutation { noSuchMutation { x } }"}"#),
            Escalate,
            "unknown_mutation",
        ),
        (
            "POST",
            "https://api.github.com/graphql",
            &json,
            Some(
                r#"{"query":"query A { a } mutation B { deleteRef(input:{}) { x } }","operationName":"B"}"#,
            ),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/graphql",
            &json,
            Some(r#"{"query":"query A { a } mutation B { deleteRef(input:{}) { x } }"}"#),
            Escalate,
            "ambiguous_operation",
        ),
        (
            "POST",
            "https://api.github.com/graphql",
            &json,
            Some("not json"),
            Escalate,
            "body_unparseable",
        ),
        // literal routes match case-insensitively, key kinds included
        (
            "POST",
            "https://api.github.com/user/KEYS",
            &json,
            Some(r#"{"key":"ssh-ed25519 AAAA"}"#),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/user/gpg_keys",
            &json,
            Some(r#"{"armored_public_key":"x"}"#),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.github.com/user/emails",
            &json,
            Some(r#"{"emails":["a@b.c"]}"#),
            Escalate,
            "rule_match",
        ),
        // GraphQL endpoints, whatever the case
        (
            "POST",
            "https://api.github.com/GraphQL",
            &json,
            Some(r#"{"query":"mutation { deleteRef(input:{refId:\"x\"}) { clientMutationId } }"}"#),
            Escalate,
            "rule_match",
        ),
        // Stripe: a dated cancellation is a cancellation
        (
            "POST",
            "https://api.stripe.com/v1/subscriptions/sub_1",
            &form,
            Some("cancel_at=1900000000"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/subscriptions/sub_1",
            &form,
            Some("metadata[a]=1"),
            // Any subscription update is held: items, prices, trials and dates can charge.
            Escalate,
            "rule_match",
        ),
        // Stripe: a missing parameter whose default is dangerous escalates
        (
            "POST",
            "https://api.stripe.com/v1/disputes/dp_1",
            &form,
            Some("evidence[product_description]=x"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/disputes/dp_1",
            &form,
            Some("metadata[case]=x&submit=false"),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/invoices",
            &form,
            Some("customer=cus_1"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/invoices",
            &form,
            Some("customer=cus_1&auto_advance=false"),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/invoiceitems",
            &form,
            Some("customer=cus_1&amount=500&currency=usd"),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            "https://api.stripe.com/v1/invoiceitems",
            &form,
            Some("customer=cus_1&price=price_1"),
            Escalate,
            "amount_unparseable",
        ),
        // hosts no service names
        (
            "DELETE",
            "https://example.com/repos/o/r",
            &[],
            None,
            Allow,
            "no_service",
        ),
    ];
    for (method, url, headers, body, want, code) in cases {
        let (action, codes, tool) = eval(&c, method, url, headers, *body);
        assert_eq!(action, *want, "{method} {url} {body:?}: {codes:?} {tool:?}");
        assert!(
            codes.iter().any(|c| c == code),
            "{method} {url} {body:?}: want reason {code}, got {codes:?}"
        );
    }
}

/// A soft-gated call that moves money carries what it moves (US dollars at the high estimate
/// the per-call limit uses), for the agent's daily budget; a held one carries nothing.
#[test]
fn soft_gated_money_calls_say_what_they_spend() {
    let c = catalog();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let cases: &[(&str, &str, Action, Option<f64>)] = &[
        (
            "/v1/charges",
            "amount=9900&currency=usd",
            Action::Notify,
            Some(99.0),
        ),
        (
            "/v1/charges",
            "amount=7000&currency=eur",
            Action::Notify,
            Some(98.0),
        ),
        (
            "/v1/charges",
            "amount=50&currency=jpy",
            Action::Notify,
            Some(50.0),
        ),
        (
            "/v1/charges",
            "amount=20000&currency=usd",
            Action::Escalate,
            None,
        ),
        (
            "/v1/invoiceitems",
            "customer=cus_1&amount=500&currency=usd",
            Action::Notify,
            Some(5.0),
        ),
        (
            "/v1/payment_intents",
            "amount=500&currency=usd",
            Action::Notify,
            None,
        ),
    ];
    for (path, body, action, spend) in cases {
        let uri = format!("https://api.stripe.com{path}");
        let mut h = HeaderMap::new();
        h.append(
            http::header::CONTENT_TYPE,
            form[0].1.parse().expect("value"),
        );
        let head = RequestHead {
            method: "POST",
            host: "api.stripe.com",
            port: 443,
            path_and_query: path,
            headers: &h,
        };
        assert!(c.needs_body(&head), "{uri}");
        let v = c.evaluate(&head, Some(body.as_bytes()));
        assert_eq!(v.action, *action, "{uri} {body}: {:?}", v.reason_codes);
        assert_eq!(v.spend_usd, *spend, "{uri} {body}");
    }
}

#[test]
fn body_needed_but_missing_fails_closed() {
    let c = catalog();
    let h = HeaderMap::new();
    let head = RequestHead {
        method: "PATCH",
        host: "api.github.com",
        port: 443,
        path_and_query: "/repos/o/r",
        headers: &h,
    };
    assert!(c.needs_body(&head));
    assert_eq!(c.evaluate(&head, None).action, Action::Escalate);
    let get = RequestHead {
        method: "GET",
        ..head
    };
    assert!(!c.needs_body(&get), "reads stream: no body buffering");
}

#[test]
fn broken_files_report_file_and_line() {
    let opts = CatalogOptions::default();
    let ok_service = "[service]\nname = \"s\"\nhosts = [\"h.test\"]\n";
    let cases: &[(&str, &str)] = &[
        ("[service]\nname = \"s\"\n", "x.toml:1:1:"),
        (&format!("{ok_service}\n[[rule]]\ntool = \"t\"\nmethod = \"DELETE\"\npath = \"/a\"\nclass = \"money\"\nacton = \"escalate\"\n"), "x.toml:10:1: unknown field `acton`"),
        (&format!("{ok_service}[[rule]]\ntool = \"t\"\nmethod = \"delete\"\npath = \"/a\"\nclass = \"money\"\naction = \"block\"\n"), "unknown method"),
        (&format!("{ok_service}[[rule]]\ntool = \"t\"\nmethod = \"GET\"\npath = \"/a/{{b\"\nclass = \"money\"\naction = \"block\"\n"), "bad segment"),
        (&format!("{ok_service}[[rule]]\ntool = \"t\"\nmethod = \"GET\"\npath = \"/a\"\nclass = \"money\"\naction = \"block\"\nwhen = [{{ field = \"x\" }}]\n"), "exactly one test"),
        (&format!("{ok_service}version_floor = \"2020-08-27\"\n"), "set version_header and version_floor together"),
        (&format!("{ok_service}version_header = \"V\"\nversion_floor = \"2020-8-27\"\n"), "is not a date"),
        (&format!("{ok_service}version_header = \"bad header\"\nversion_floor = \"2020-08-27\"\n"), "is not a header name"),
    ];
    for (text, want) in cases {
        let err = Catalog::from_sources(&[("x.toml".into(), text.to_string())], &opts)
            .expect_err(text)
            .to_string();
        assert!(err.contains(want), "{text:?}\n  -> {err}\n  want {want}");
    }
}

#[test]
fn live_catalog_keeps_last_good_on_broken_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = "[service]\nname = \"s\"\nhosts = [\"h.test\"]\n[[rule]]\ntool = \"s.del\"\nmethod = \"DELETE\"\npath = \"/x\"\nclass = \"irreversible\"\naction = \"escalate\"\n";
    std::fs::write(dir.path().join("s.toml"), good).expect("write");
    let live =
        LiveCatalog::load(Some(dir.path().to_path_buf()), CatalogOptions::default()).expect("load");
    assert_eq!(live.current().rule_count(), 1);
    std::fs::write(dir.path().join("s.toml"), "[service\nbroken").expect("write");
    let err = live.reload("test").expect_err("broken file");
    assert!(err.to_string().contains("s.toml:1:"), "{err}");
    let h = HeaderMap::new();
    let head = RequestHead {
        method: "DELETE",
        host: "h.test",
        port: 443,
        path_and_query: "/x",
        headers: &h,
    };
    assert_eq!(
        live.current().evaluate(&head, None).action,
        Action::Escalate,
        "last good catalog still in force"
    );
    std::fs::write(dir.path().join("s.toml"), good.replace("escalate", "block")).expect("write");
    live.reload("test").expect("reload");
    assert_eq!(live.current().evaluate(&head, None).action, Action::Block);
}

/// Left from the nineteenth session: a reload that let `github.repos.delete` through logged
/// only "rules reloaded". It is taken, and the tool it loosens is named with its file.
#[test]
fn a_reload_that_loosens_a_tool_names_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let held = "[service]\nname = \"s\"\nhosts = [\"h.test\"]\n[[rule]]\ntool = \"s.del\"\nmethod = \"DELETE\"\npath = \"/x\"\nclass = \"irreversible\"\naction = \"escalate\"\n";
    let file = dir.path().join("s.toml");
    std::fs::write(&file, held).expect("write");
    let live =
        LiveCatalog::load(Some(dir.path().to_path_buf()), CatalogOptions::default()).expect("load");
    let same = live.reload("test").expect("reload");
    assert!(same.loosened.is_empty(), "{:?}", same.loosened);
    std::fs::write(&file, held.replace("escalate", "allow")).expect("write");
    let r = live.reload("test").expect("a loosening reload is taken");
    assert_eq!(r.rules, 1);
    assert_eq!(r.loosened.len(), 1, "{:?}", r.loosened);
    let l = &r.loosened[0];
    assert_eq!(
        (l.tool.as_str(), l.old.as_str(), l.new.as_str()),
        ("s.del", "escalate", "allow")
    );
    assert_eq!(l.file(), file.display().to_string());
    let h = HeaderMap::new();
    let head = RequestHead {
        method: "DELETE",
        host: "h.test",
        port: 443,
        path_and_query: "/x",
        headers: &h,
    };
    assert_eq!(live.current().evaluate(&head, None).action, Action::Allow);
}

/// Review of session 22: a deploy that replaced the rules directory file by file was read
/// half-way (`rules reloaded rules=1091 loosened=535`, Stripe's files not yet there) and a
/// $500,000 payout went out through a blind tunnel. A file change that drops a whole rules
/// file or service is refused, the catalog in force kept; SIGHUP applies it. (The watcher
/// also waits for the directory to stay the same for two polls before reading it.)
#[test]
fn a_file_change_that_drops_a_rules_file_or_service_is_refused_until_sighup() {
    let dir = tempfile::tempdir().expect("tmp");
    let svc = |name: &str| {
        format!(
            "[service]\nname = \"{name}\"\nhosts = [\"{name}.test\"]\n[[rule]]\ntool = \"{name}.del\"\n\
             method = \"DELETE\"\npath = \"/x\"\nclass = \"irreversible\"\naction = \"escalate\"\n"
        )
    };
    std::fs::write(dir.path().join("a.toml"), svc("a")).expect("write");
    std::fs::write(dir.path().join("b.toml"), svc("b")).expect("write");
    let live =
        LiveCatalog::load(Some(dir.path().to_path_buf()), CatalogOptions::default()).expect("load");
    std::fs::remove_file(dir.path().join("b.toml")).expect("rm");
    let err = live
        .reload("file change")
        .expect_err("a dropped file")
        .to_string();
    assert!(
        err.contains("rules file(s) b.toml and service(s) b") && err.contains("SIGHUP"),
        "{err}"
    );
    assert!(
        live.current().inspects("b.test"),
        "the catalog in force stays"
    );
    // Another file holding the same service under a new name still drops the old file.
    std::fs::write(dir.path().join("b2.toml"), svc("b")).expect("write");
    let err = live.reload("file change").expect_err("renamed").to_string();
    assert!(
        err.contains("rules file(s) b.toml") && !err.contains("service"),
        "{err}"
    );
    // An edit that keeps every file and service is taken on a file change.
    std::fs::write(dir.path().join("b.toml"), svc("b")).expect("write");
    std::fs::write(
        dir.path().join("a.toml"),
        svc("a").replace("escalate", "block"),
    )
    .expect("write");
    live.reload("file change").expect("an edit");
    // SIGHUP applies a drop.
    std::fs::remove_file(dir.path().join("b.toml")).expect("rm");
    std::fs::remove_file(dir.path().join("b2.toml")).expect("rm");
    live.reload("SIGHUP").expect("SIGHUP applies it");
    assert!(!live.current().inspects("b.test"));
}

/// Left from the nineteenth session: Emacs's lock link `.#s.toml` (dangling) in the rules
/// directory failed every reload, and a restart. Hidden files and `~` backups are not rules.
#[test]
fn hidden_files_and_backups_in_the_rules_directory_are_skipped() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = "[service]\nname = \"s\"\nhosts = [\"h.test\"]\n";
    std::fs::write(dir.path().join("s.toml"), good).expect("write");
    std::os::unix::fs::symlink("user@host.1234:1700000000", dir.path().join(".#s.toml"))
        .expect("lock link");
    std::fs::write(dir.path().join(".hidden.toml"), "[service\nbroken").expect("write");
    std::fs::write(dir.path().join("s.toml~"), "[service\nbroken").expect("write");
    let c = Catalog::load_dir(dir.path(), &CatalogOptions::default()).expect("hidden skipped");
    assert!(c.inspects("h.test"));
    let live =
        LiveCatalog::load(Some(dir.path().to_path_buf()), CatalogOptions::default()).expect("load");
    live.reload("test")
        .expect("reload with a lock link present");
    // Only hidden files: still no rule files.
    std::fs::remove_file(dir.path().join("s.toml")).expect("rm");
    let err = Catalog::load_dir(dir.path(), &CatalogOptions::default())
        .expect_err("no rule files")
        .to_string();
    assert!(err.contains("no *.toml rule files"), "{err}");
}

/// GraphQL argument conditions, on updateProjectV2 (`input.public`, a notify base entry with an
/// escalating condition; updateRef, used here before, is now held by name).
#[test]
fn graphql_argument_conditions() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    use Action::*;
    let body = |q: &str, vars: Option<serde_json::Value>| {
        let mut b = serde_json::json!({ "query": q });
        if let Some(v) = vars {
            b["variables"] = v;
        }
        b.to_string()
    };
    let vars = |v: serde_json::Value| Some(v);
    let upd = |args: &str| format!("mutation {{ updateProjectV2({args}) {{ clientMutationId }} }}");
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, String, Action, &str)> = vec![
        // literal arguments: public true / false / missing
        (
            "public true",
            body(&upd("input: {projectId: \"r\", title: \"t\", public: true}"), None),
            Escalate,
            "rule_match",
        ),
        (
            "public false",
            body(&upd("input: {projectId: \"r\", title: \"t\", public: false}"), None),
            Notify,
            "rule_match",
        ),
        (
            "public missing",
            body(&upd("input: {projectId: \"r\", title: \"t\"}"), None),
            Notify,
            "rule_match",
        ),
        (
            "public null",
            body(&upd("input: {projectId: \"r\", public: null}"), None),
            Notify,
            "rule_match",
        ),
        // aliases: judged by field name, each call on its own arguments
        (
            "alias hides nothing",
            body(
                "mutation { safe: updateProjectV2(input: {projectId: \"r\", public: true}) { x } }",
                None,
            ),
            Escalate,
            "rule_match",
        ),
        (
            "two aliased calls, one public",
            body(
                "mutation { a: updateProjectV2(input: {public: false}) { x } b: updateProjectV2(input: {public: true}) { x } }",
                None,
            ),
            Escalate,
            "rule_match",
        ),
        (
            "two aliased calls, none public",
            body(
                "mutation { a: updateProjectV2(input: {public: false}) { x } b: updateProjectV2(input: {}) { x } }",
                None,
            ),
            Notify,
            "rule_match",
        ),
        // variables
        (
            "whole input from a variable, public",
            body(
                "mutation U($in: UpdateProjectV2Input!) { updateProjectV2(input: $in) { x } }",
                vars(serde_json::json!({"in": {"projectId": "r", "title": "t", "public": true}})),
            ),
            Escalate,
            "rule_match",
        ),
        (
            "whole input from a variable, not public",
            body(
                "mutation U($in: UpdateProjectV2Input!) { updateProjectV2(input: $in) { x } }",
                vars(serde_json::json!({"in": {"projectId": "r", "title": "t"}})),
            ),
            Notify,
            "rule_match",
        ),
        (
            "public from a variable, true",
            body(
                "mutation U($f: Boolean) { updateProjectV2(input: {projectId: \"r\", public: $f}) { x } }",
                vars(serde_json::json!({"f": true})),
            ),
            Escalate,
            "rule_match",
        ),
        (
            "public from a variable, false",
            body(
                "mutation U($f: Boolean) { updateProjectV2(input: {projectId: \"r\", public: $f}) { x } }",
                vars(serde_json::json!({"f": false})),
            ),
            Notify,
            "rule_match",
        ),
        (
            "variable missing",
            body(
                "mutation U($f: Boolean) { updateProjectV2(input: {projectId: \"r\", public: $f}) { x } }",
                None,
            ),
            Escalate,
            "graphql_variable_missing",
        ),
        (
            "input variable missing",
            body(
                "mutation U($in: UpdateProjectV2Input!) { updateProjectV2(input: $in) { x } }",
                vars(serde_json::json!({"other": 1})),
            ),
            Escalate,
            "graphql_variable_missing",
        ),
        (
            "variable missing, default true",
            body(
                "mutation U($f: Boolean = true) { updateProjectV2(input: {public: $f}) { x } }",
                None,
            ),
            Escalate,
            "rule_match",
        ),
        (
            "variable missing, default false",
            body(
                "mutation U($f: Boolean = false) { updateProjectV2(input: {public: $f}) { x } }",
                None,
            ),
            Notify,
            "rule_match",
        ),
        (
            "variables not an object",
            body(
                "mutation U($f: Boolean) { updateProjectV2(input: {public: $f}) { x } }",
                vars(serde_json::json!("{\"f\": false}")),
            ),
            Escalate,
            "body_unparseable",
        ),
        (
            "duplicate key in variables",
            r#"{"query":"mutation U($f: Boolean) { updateProjectV2(input: {public: $f}) { x } }","variables":{"f":false,"f":true}}"#.to_string(),
            Escalate,
            "duplicate_key",
        ),
        (
            "argument given twice",
            body(&upd("input: {public: false}, input: {public: true}"), None),
            Escalate,
            "duplicate_key",
        ),
        // fragments
        (
            "named fragment, public",
            body(
                "mutation M { ...F } fragment F on Mutation { updateProjectV2(input: {public: true}) { x } }",
                None,
            ),
            Escalate,
            "rule_match",
        ),
        (
            "inline fragment, not public",
            body(
                "mutation { ... on Mutation { updateProjectV2(input: {public: false}) { x } } }",
                None,
            ),
            Notify,
            "rule_match",
        ),
        (
            "fragment with a variable, public",
            body(
                "mutation M($f: Boolean!) { ...F } fragment F on Mutation { r: updateProjectV2(input: {public: $f}) { x } }",
                vars(serde_json::json!({"f": true})),
            ),
            Escalate,
            "rule_match",
        ),
        (
            "operationName picks the public one",
            serde_json::json!({
                "query": "mutation A { updateProjectV2(input: {public: false}) { x } } mutation B { updateProjectV2(input: {public: true}) { x } }",
                "operationName": "B",
            })
            .to_string(),
            Escalate,
            "rule_match",
        ),
        (
            "operationName picks the plain one",
            serde_json::json!({
                "query": "mutation A { updateProjectV2(input: {public: false}) { x } } mutation B { updateProjectV2(input: {public: true}) { x } }",
                "operationName": "A",
            })
            .to_string(),
            Notify,
            "rule_match",
        ),
        // other mutations next to it keep their own verdicts
        (
            "with a deleteRef",
            body(
                "mutation { updateProjectV2(input: {public: false}) { x } deleteRef(input: {refId: \"r\"}) { x } }",
                None,
            ),
            Escalate,
            "rule_match",
        ),
        (
            "updateRefs stays escalated by name",
            body(
                "mutation { updateRefs(input: {repositoryId: \"r\", refUpdates: []}) { x } }",
                None,
            ),
            Escalate,
            "rule_match",
        ),
    ];
    for (name, body, want, code) in &cases {
        let (action, codes, tool) = eval(
            &c,
            "POST",
            "https://api.github.com/graphql",
            &json,
            Some(body),
        );
        assert_eq!(action, *want, "{name}: {body} -> {codes:?} {tool:?}");
        assert!(
            codes.iter().any(|c| c == code),
            "{name}: want reason {code}, got {codes:?}"
        );
    }
}

#[test]
fn graphql_conditions_in_rule_files() {
    let opts = CatalogOptions::default();
    let file = |extra: &str| {
        format!(
            "[service]\nname = \"s\"\nhosts = [\"h.test\"]\ngraphql_paths = [\"/graphql\"]\n\
             [[graphql]]\nmutations = [\"m\"]\nclass = \"visible\"\naction = \"notify\"\n{extra}"
        )
    };
    // Conditional entries may join an unconditional one; two unconditional ones conflict.
    let ok = file(
        "[[graphql]]\nmutations = [\"m\"]\nclass = \"money\"\naction = \"block\"\n\
         when = [{ field = \"input.amount\", gt = 100 }]\n",
    );
    let c = Catalog::from_sources(&[("x.toml".into(), ok)], &opts).expect("compiles");
    assert_eq!(c.rule_count(), 2);
    let h = {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().expect("ct"));
        h
    };
    let head = RequestHead {
        method: "POST",
        host: "h.test",
        port: 443,
        path_and_query: "/graphql",
        headers: &h,
    };
    let run = |q: &str| {
        c.evaluate(
            &head,
            Some(serde_json::json!({ "query": q }).to_string().as_bytes()),
        )
        .action
    };
    assert_eq!(
        run("mutation { m(input: {amount: 101}) { x } }"),
        Action::Block
    );
    assert_eq!(
        run("mutation { m(input: {amount: 100}) { x } }"),
        Action::Notify
    );
    assert_eq!(
        run("mutation { m(input: {amount: \"lots\"}) { x } }"),
        Action::Block
    );
    let dup = file("[[graphql]]\nmutations = [\"m\"]\nclass = \"money\"\naction = \"block\"\n");
    let err = Catalog::from_sources(&[("x.toml".into(), dup)], &opts)
        .expect_err("listed twice")
        .to_string();
    assert!(err.contains("listed twice"), "{err}");
    let bad = file(
        "[[graphql]]\nmutations = [\"m\"]\nclass = \"money\"\naction = \"block\"\n\
         when = [{ field = \"input.amount\" }]\n",
    );
    let err = Catalog::from_sources(&[("x.toml".into(), bad)], &opts)
        .expect_err("no test")
        .to_string();
    assert!(err.contains("exactly one test"), "{err}");
}

/// Regression: a guard that trips on a route with a block rule (here a duplicate JSON key the
/// block rule's condition depends on) blocks; it used to escalate, which a human could approve.
#[test]
fn tripped_guard_on_a_block_route_blocks() {
    let opts = CatalogOptions::default();
    let text = "[service]\nname = \"s\"\nhosts = [\"h.test\"]\ndefault = \"allow\"\n\
        [[rule]]\ntool = \"s.transfer\"\nmethod = \"POST\"\npath = \"/transfers\"\n\
        class = \"money\"\naction = \"block\"\nreason = \"large transfer\"\n\
        when = [{ field = \"amount\", gt = 100 }]\n\
        [[rule]]\ntool = \"s.note\"\nmethod = \"POST\"\npath = \"/notes\"\n\
        class = \"visible\"\naction = \"notify\"\nreason = \"note\"\n\
        when = [{ field = \"text\", eq = \"x\" }]\n";
    let c = Catalog::from_sources(&[("x.toml".into(), text.to_string())], &opts).expect("compiles");
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/json".parse().expect("ct"));
    let run = |path: &str, body: &str| {
        let head = RequestHead {
            method: "POST",
            host: "h.test",
            port: 443,
            path_and_query: path,
            headers: &h,
        };
        let v = c.evaluate(&head, Some(body.as_bytes()));
        (v.action, v.reason_codes)
    };
    for (path, body, want, code) in [
        // No rule classifies a small transfer: the closed world holds it.
        (
            "/transfers",
            r#"{"amount":5}"#,
            Action::Escalate,
            "unclassified_route",
        ),
        (
            "/transfers",
            r#"{"amount":500}"#,
            Action::Block,
            "rule_match",
        ),
        (
            "/transfers",
            r#"{"amount":5,"amount":500}"#,
            Action::Block,
            "duplicate_key",
        ),
        ("/transfers", "{broken", Action::Block, "body_unparseable"),
        (
            "/transfers",
            r#"{"amount":5,"_method":"PUT"}"#,
            Action::Block,
            "method_override",
        ),
        // Where no block rule applies, the same guards still hold the request.
        (
            "/notes",
            r#"{"text":"a","text":"x"}"#,
            Action::Escalate,
            "duplicate_key",
        ),
    ] {
        let (action, codes) = run(path, body);
        assert_eq!(action, want, "{path} {body}: {codes:?}");
        assert!(
            codes.iter().any(|c| c == code),
            "{path} {body}: want {code}, got {codes:?}"
        );
    }
}

/// The same for GraphQL, where a guard trips before the mutations are known: a service with a
/// block entry blocks an unreadable GraphQL request; one without holds it.
#[test]
fn tripped_graphql_guard_is_as_strict_as_the_strictest_entry() {
    let opts = CatalogOptions::default();
    let file = |action: &str| {
        format!(
            "[service]\nname = \"s\"\nhosts = [\"h.test\"]\ngraphql_paths = [\"/graphql\"]\n\
             [[graphql]]\nmutations = [\"wire\"]\nclass = \"money\"\naction = \"{action}\"\n"
        )
    };
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/json".parse().expect("ct"));
    for (action, want) in [("block", Action::Block), ("notify", Action::Escalate)] {
        let c = Catalog::from_sources(&[("x.toml".into(), file(action))], &opts).expect("compiles");
        let run = |method: &str, pq: &str, body: &str| {
            let head = RequestHead {
                method,
                host: "h.test",
                port: 443,
                path_and_query: pq,
                headers: &h,
            };
            c.evaluate(&head, Some(body.as_bytes())).action
        };
        assert_eq!(run("POST", "/graphql", "{broken"), want, "{action}");
        assert_eq!(run("GET", "/graphql?query=a&query=b", ""), want, "{action}");
        assert_eq!(run("PUT", "/graphql", "{}"), want, "{action}");
        // A readable read is unaffected.
        assert_eq!(
            run(
                "POST",
                "/graphql",
                r#"{"query":"query { viewer { login } }"}"#
            ),
            Action::Allow
        );
    }
}

/// One case: method, URL, headers, body, the action wanted and a reason code it must carry.
type Case<'a> = (
    &'a str,
    String,
    &'a [(&'a str, &'a str)],
    String,
    Action,
    &'a str,
);

/// Evaluates every case and checks its action and reason code.
fn expect_all(c: &Catalog, cases: &[Case<'_>]) {
    for (method, url, headers, body, want, code) in cases {
        let (action, codes, tool) = eval(c, method, url, headers, Some(body));
        assert_eq!(action, *want, "{method} {url} {body} -> {codes:?} {tool:?}");
        assert!(
            codes.iter().any(|c| c == code),
            "{method} {url} {body}: want reason {code}, got {codes:?}"
        );
    }
}

/// A GraphQL body running mutation field `m` (with its arguments).
fn mutation_body(m: &str) -> String {
    serde_json::json!({ "query": format!("mutation {{ {m} {{ clientMutationId }} }}") }).to_string()
}

/// Session 13 review: pull-request branch updates are held; ref writes use the `[git]`
/// protected_refs (main, master, release/*, tags) through `protected_ref` conditions; legacy
/// Stripe customer parameters are held. The ordinary, reversible forms still notify.
#[test]
fn protected_refs_and_legacy_parameters() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let gq = mutation_body;
    use Action::*;
    let cases: Vec<Case> = vec![
        // pull-request branch updates: the head may be protected, held like a merge
        ("PUT", gh("/repos/o/r/pulls/1/update-branch"), &json, "{}".into(), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updatePullRequestBranch(input: {pullRequestId: \"P\", updateMethod: MERGE})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateRef(input: {refId: \"R\", oid: \"aa\", force: false})"), Escalate, "rule_match"),
        // renames: either name protected holds; feature branches notify
        ("POST", gh("/repos/o/r/branches/feature/x/rename"), &json, r#"{"new_name":"feature/y"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/branches/release/1.0/rename"), &json, r#"{"new_name":"tmp"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/branches/tmp/rename"), &json, r#"{"new_name":"release/1.0"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/branches/tmp/rename"), &json, r#"{"new_name":"MASTER"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/branches/tmp/rename"), &json, r#"{"new_name":"release"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/branches/tmp/rename"), &json, r#"{"new_name":" main"}"#.into(), Escalate, "value_unparseable"),
        ("POST", gh("/repos/o/r/branches/tmp/rename"), &json, r#"{"new_name":"main/"}"#.into(), Escalate, "value_unparseable"),
        // ref creation and updates: tags and release/* as for git push
        ("POST", gh("/repos/o/r/git/refs"), &json, r#"{"ref":"refs/heads/feature/x","sha":"aa"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/git/refs"), &json, r#"{"ref":"refs/tags/v1.0","sha":"aa"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/git/refs"), &json, r#"{"ref":"refs/heads/release/2.0","sha":"aa"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/git/refs/heads/feature/x"), &json, r#"{"sha":"aa"}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r/git/refs/tags/v1.0"), &json, r#"{"sha":"aa"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/git/refs/heads/release/2.0"), &json, r#"{"sha":"aa"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/git/refs/heads/Main"), &json, r#"{"sha":"aa"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createRef(input: {repositoryId: \"R\", name: \"refs/heads/feature/x\", oid: \"aa\"})"), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createRef(input: {repositoryId: \"R\", name: \"tags/v1.0\", oid: \"aa\"})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createLinkedBranch(input: {issueId: \"I\", oid: \"aa\", name: \"feature/x\"})"), Notify, "rule_match"),
        // commits to a branch
        ("PUT", gh("/repos/o/r/contents/a.md"), &json, r#"{"message":"m","content":"eA==","branch":"feature/x"}"#.into(), Notify, "rule_match"),
        ("PUT", gh("/repos/o/r/contents/a.md"), &json, r#"{"message":"m","content":"eA==","branch":"refs/heads/release/1.0"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"o/r\", branchName: \"feature/x\"}, expectedHeadOid: \"aa\", message: {headline: \"m\"}})"), Notify, "rule_match"),
        // reads no condition judges are not held for their query
        ("GET", gh("/repos/o/r/issues?state=open&state=closed"), &json, "".into(), Allow, "no_rule_default"),
        ("POST", gh("/repos/o/r/issues?_method=DELETE"), &json, r#"{"title":"t"}"#.into(), Escalate, "method_override"),
        // a `%2F` inside a name is one name either way (Octokit encodes label and environment
        // names so): not held as unlisted; an encoded `..` step is
        ("DELETE", gh("/repos/o/r/issues/1/labels/kind%2Fbug"), &json, "".into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r/labels/kind%2Fbug"), &json, r#"{"color":"ffffff"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/notifications/threads/1%2F..%2F..%2Frepos%2Fo%2Fr%2Fnew"), &json, "{}".into(), Escalate, "unclassified_route"),
        // a GraphQL GET's `variables` read strictly, as a POST body's are
        ("GET", gh("/graphql?query=mutation%20%7B%20x%20%7D&variables=%7B%22a%22%3A1%2C%22a%22%3A2%7D"), &json, "".into(), Escalate, "duplicate_key"),
        // deployments: auto_merge (default true) merges the default branch into a protected ref
        ("POST", gh("/repos/o/r/deployments"), &json, r#"{"ref":"release/1.0","environment":"staging"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/deployments"), &json, r#"{"ref":"main","environment":"staging","auto_merge":true}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/deployments"), &json, r#"{"ref":"main","environment":"staging","auto_merge":false}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/deployments"), &json, r#"{"ref":"feature/x","environment":"staging"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createDeployment(input: {repositoryId: \"R\", refId: \"REF\", environment: \"staging\"})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createDeployment(input: {repositoryId: \"R\", refId: \"REF\", environment: \"staging\", autoMerge: false})"), Notify, "rule_match"),
        // Stripe: invoice items priced other than by amount, and discounts on invoices, are held
        ("POST", "https://api.stripe.com/v1/invoiceitems".into(), &form, "customer=cus_1&amount=100&currency=usd".into(), Notify, "rule_match"),
        ("POST", "https://api.stripe.com/v1/invoiceitems".into(), &form, "customer=cus_1&amount=100&currency=usd&price=price_1".into(), Escalate, "rule_match"),
        ("POST", "https://api.stripe.com/v1/invoiceitems".into(), &form, "customer=cus_1&amount=100&currency=usd&price_data[product]=prod_1&price_data[unit_amount]=900000".into(), Escalate, "rule_match"),
        ("POST", "https://api.stripe.com/v1/invoiceitems".into(), &form, "customer=cus_1&amount=100&currency=usd&quantity_decimal=5000".into(), Escalate, "rule_match"),
        ("POST", "https://api.stripe.com/v1/invoices/in_1".into(), &form, "discounts[0][coupon]=FREE100".into(), Escalate, "rule_match"),
        ("POST", "https://api.stripe.com/v1/invoices".into(), &form, "customer=cus_1&auto_advance=false&discounts[0][coupon]=FREE100".into(), Escalate, "rule_match"),
        ("POST", "https://api.stripe.com/v1/invoices".into(), &form, "customer=cus_1&auto_advance=false".into(), Notify, "rule_match"),
        // .github/ is held on every branch, at any depth (a commit can make a subtree its root);
        // files elsewhere, and names that only start alike, are not
        ("PUT", gh("/repos/o/r/contents/.github/workflows/ci.yml"), &json, r#"{"message":"m","content":"eA==","branch":"feature/x"}"#.into(), Escalate, "rule_match"),
        ("PUT", gh("/repos/o/r/contents/.github/CODEOWNERS"), &json, r#"{"message":"m","content":"eA==","branch":"feature/x"}"#.into(), Escalate, "rule_match"),
        ("PUT", gh("/repos/o/r/contents/docs/.github/x.md"), &json, r#"{"message":"m","content":"eA==","branch":"feature/x"}"#.into(), Escalate, "rule_match"),
        ("PUT", gh("/repos/o/r/contents/docs/github/x.md"), &json, r#"{"message":"m","content":"eA==","branch":"feature/x"}"#.into(), Notify, "rule_match"),
        ("PUT", gh("/repos/o/r/contents/.github-notes.md"), &json, r#"{"message":"m","content":"eA==","branch":"feature/x"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/git/trees"), &json, r#"{"tree":[{"path":"src/a.rs","mode":"100644","type":"blob","content":"x"}]}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/git/trees"), &json, r#"{"tree":[{"path":"src/a.rs","mode":"100644","type":"blob","content":"x"},{"path":".github\\workflows\\x.yml","mode":"100644","type":"blob","content":"x"}]}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/git/trees"), &json, r#"{"tree":[{"path":"a/../.github/workflows/x.yml","mode":"100644","type":"blob","content":"x"}]}"#.into(), Escalate, "value_unparseable"),
        ("POST", gh("/repos/o/r/git/trees"), &json, r#"{"tree":[{"path":"%2egithub/workflows/x.yml","mode":"100644","type":"blob","content":"x"}]}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"o/r\", branchName: \"feature/x\"}, expectedHeadOid: \"aa\", message: {headline: \"m\"}, fileChanges: {additions: [{path: \"src/a.rs\", contents: \"eA==\"}]}})"), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"o/r\", branchName: \"feature/x\"}, expectedHeadOid: \"aa\", message: {headline: \"m\"}, fileChanges: {deletions: [{path: \".github/CODEOWNERS\"}]}})"), Escalate, "rule_match"),
        // Stripe customers: legacy subscription parameters hold, ordinary ones notify
        ("POST", "https://api.stripe.com/v1/customers".into(), &form, "email=a%40b.c&name=A".into(), Notify, "rule_match"),
        // (a coupon alone is held too since the bucket audit: a discount on every future invoice)
        ("POST", "https://api.stripe.com/v1/customers".into(), &form, "email=a%40b.c&coupon=SAVE".into(), Escalate, "rule_match"),
        ("POST", "https://api.stripe.com/v1/customers/cus_1".into(), &form, "name=A".into(), Notify, "rule_match"),
        ("POST", "https://api.stripe.com/v1/customers".into(), &form, "plan=gold".into(), Escalate, "rule_match"),
        ("POST", "https://api.stripe.com/v1/customers".into(), &form, "trial_end=now".into(), Escalate, "rule_match"),
        ("POST", "https://api.stripe.com/v1/customers/cus_1".into(), &form, "quantity=3".into(), Escalate, "rule_match"),
        ("POST", "https://api.stripe.com/v1/customers/cus_1".into(), &form, "account_balance=100".into(), Escalate, "rule_match"),
        ("POST", "https://api.stripe.com/v1/invoices/in_1".into(), &form, "metadata[order]=7".into(), Notify, "rule_match"),
        ("POST", "https://api.stripe.com/v1/invoices/in_1".into(), &form, "closed=false".into(), Escalate, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// A `protected_ref` condition reads the service's `[git]` section; without one it could never
/// hold, so the file is refused.
#[test]
fn protected_ref_needs_a_git_section() {
    let file = "[service]\nname = \"x\"\nhosts = [\"x.test\"]\n\n[[rule]]\ntool = \"x.rename\"\nmethod = \"POST\"\npath = \"/b/{branch}\"\nclass = \"irreversible\"\naction = \"escalate\"\nwhen = [{ field = \"branch\", protected_ref = \"branch\" }]\n";
    let err = Catalog::from_sources(
        &[("x.toml".to_string(), file.to_string())],
        &CatalogOptions::default(),
    )
    .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.starts_with("x.toml:5:") && text.contains("[git]"),
        "{text}"
    );
    let with_git = format!(
        "{file}\n[git]\nhosts = [\"git.x.test\"]\nprotected_refs = [\"refs/heads/main\"]\n"
    );
    Catalog::from_sources(
        &[("x.toml".to_string(), with_git)],
        &CatalogOptions::default(),
    )
    .expect("accepted with a [git] section");
}

/// `path_under` takes directory names, and a `*` segment (any element) only with it, once, as a
/// whole segment: anything else is refused with the file and line.
#[test]
fn path_under_and_wildcards_are_checked_at_load() {
    let file = |cond: &str| {
        format!(
            "[service]\nname = \"x\"\nhosts = [\"x.test\"]\n\n[[rule]]\ntool = \"x.t\"\nmethod = \"POST\"\npath = \"/t\"\nclass = \"irreversible\"\naction = \"escalate\"\nwhen = [{cond}]\n"
        )
    };
    let load = |cond: &str| {
        Catalog::from_sources(
            &[("x.toml".to_string(), file(cond))],
            &CatalogOptions::default(),
        )
    };
    for ok in [
        r#"{ field = "tree.*.path", path_under = [".github"] }"#,
        r#"{ field = "path", path_under = [".github", "ci/conf/"] }"#,
        r#"{ field = "line_items.*.price_data", present = true }"#,
        r#"{ field = "settings.*", other_than = ["a", "b"] }"#,
    ] {
        load(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, says) in [
        (
            r#"{ field = "tree.*.path", gt = 1 }"#,
            "only with path_under, in, eq, present = true, commands or not_user_node_id",
        ),
        (
            r#"{ field = "line_items.*.price_data", present = false }"#,
            "present = true",
        ),
        (
            r#"{ field = "a.*.b", other_than = ["c"] }"#,
            "every key of one object",
        ),
        (
            r#"{ field = "tree.*x.path", path_under = [".github"] }"#,
            "whole segment",
        ),
        (
            r#"{ field = "a.*.b.*.c", path_under = [".github"] }"#,
            "once",
        ),
        (
            r#"{ field = "*.path", path_under = [".github"] }"#,
            "after a field name",
        ),
        (
            r#"{ field = "path", path_under = [] }"#,
            "at least one directory",
        ),
        (r#"{ field = "body", commands = false }"#, "tests nothing"),
        (
            r#"{ field = "body", commands = true }"#,
            "needs command_texts",
        ),
        (
            r#"{ field = "path", path_under = ["../x"] }"#,
            "directory names",
        ),
    ] {
        let err = load(bad).expect_err(bad).to_string();
        assert!(
            err.starts_with("x.toml:") && err.contains(says),
            "{bad}: {err}"
        );
    }
}

/// Session 13 bucket audit: releases that create a tag, meter events, blocks, repository
/// visibility/default branch/forking, passing checks and statuses, gist files, advisory
/// collaborators, payment intent cancels, payment method detaches and legacy customer discounts
/// are held; the ordinary, reversible forms still notify (or allow).
#[test]
fn bucket_audit_ordinary_forms_still_pass() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let gq = mutation_body;
    use Action::*;
    let cases: Vec<Case> = vec![
        // releases: a draft creates no tag; editing a published release's notes creates none
        ("POST", gh("/repos/o/r/releases"), &json, r#"{"tag_name":"v1","draft":true}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/releases"), &json, r#"{"tag_name":"v1"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/releases"), &json, r#"{"tag_name":"v1","draft":"yes"}"#.into(), Escalate, "value_unparseable"),
        ("PATCH", gh("/repos/o/r/releases/1"), &json, r#"{"body":"notes","name":"v1"}"#.into(), Notify, "rule_match"),
        // draft:true unpublishes a published release (Airlock cannot tell a draft being edited apart)
        ("PATCH", gh("/repos/o/r/releases/1"), &json, r#"{"draft":true}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/releases/1"), &json, r#"{"draft":false}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/releases/1"), &json, r#"{"tag_name":"v2"}"#.into(), Escalate, "rule_match"),
        // generate-notes is a read that needs tag_name, also weighed as PATCH …/releases/{id}
        // (the base entry's notify, as before; not held by the tag_name rule)
        ("POST", gh("/repos/o/r/releases/generate-notes"), &json, r#"{"tag_name":"v2"}"#.into(), Notify, "rule_match"),
        // asset uploads are held: downloads go by name, and the release may be published
        ("POST", "https://uploads.github.com/repos/o/r/releases/1/assets?name=a.zip".into(), &[("content-type", "application/zip")], "PK".into(), Escalate, "rule_match"),
        // blocks: unblocking stays a soft gate
        ("PUT", gh("/user/blocks/alice"), &[], String::new(), Escalate, "rule_match"),
        ("DELETE", gh("/user/blocks/alice"), &[], String::new(), Notify, "rule_match"),
        // repository settings
        ("PATCH", gh("/repos/o/r"), &json, r#"{"description":"d","has_issues":true}"#.into(), Notify, "rule_match"),
        // private: a public repository loses its stars and watchers for good (Airlock cannot tell a private one re-sent)
        ("PATCH", gh("/repos/o/r"), &json, r#"{"visibility":"private"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"allow_forking":false}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"visibility":"internal"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"visibility":"public"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"default_branch":"dev"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"allow_forking":true}"#.into(), Escalate, "rule_match"),
        // statuses and check runs: pending and failing results notify, passing ones escalate
        ("POST", gh("/repos/o/r/statuses/aa"), &json, r#"{"state":"pending","context":"ci"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/statuses/aa"), &json, r#"{"state":"failure","context":"ci"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/statuses/aa"), &json, r#"{"state":"success","context":"ci"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/check-runs"), &json, r#"{"name":"ci","head_sha":"aa","status":"in_progress"}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r/check-runs/1"), &json, r#"{"conclusion":"failure"}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r/check-runs/1"), &json, r#"{"conclusion":"success"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/check-runs/1"), &json, r#"{"conclusion":"Success"}"#.into(), Escalate, "value_unparseable"),
        ("POST", gh("/graphql"), &json, gq("createCheckRun(input: {repositoryId: \"R\", name: \"ci\", headSha: \"aa\", status: IN_PROGRESS})"), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateCheckRun(input: {repositoryId: \"R\", checkRunId: \"C\", conclusion: FAILURE})"), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateCheckRun(input: {repositoryId: \"R\", checkRunId: \"C\", conclusion: SKIPPED})"), Escalate, "rule_match"),
        // gists: the description alone notifies; files (a nested object) escalate
        ("PATCH", gh("/gists/abc"), &json, r#"{"description":"d"}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/gists/abc"), &json, r#"{"files":{"a.txt":{"content":"x"}}}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/gists/abc"), &json, r#"{"files":{"a.txt":null}}"#.into(), Escalate, "rule_match"),
        // advisories: the text notifies; collaborators (an array) escalate
        ("PATCH", gh("/repos/o/r/security-advisories/GHSA-1"), &json, r#"{"summary":"s"}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r/security-advisories/GHSA-1"), &json, r#"{"collaborating_users":["m"]}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/security-advisories/GHSA-1"), &json, r#"{"collaborating_teams":["t"]}"#.into(), Escalate, "rule_match"),
        // Stripe: meter events and adjustments, cancels, detaches; meters themselves notify
        ("POST", st("/v1/billing/meters/m_1"), &form, "display_name=calls".into(), Notify, "rule_match"),
        ("POST", st("/v1/billing/meter_events"), &form, "event_name=calls&payload[value]=1".into(), Escalate, "rule_match"),
        ("POST", st("/v2/billing/meter_events"), &json, r#"{"event_name":"calls"}"#.into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_intents/pi_1"), &form, "description=d".into(), Notify, "rule_match"),
        ("POST", st("/v1/payment_intents/pi_1/cancel"), &form, String::new(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_methods/pm_1/attach"), &form, "customer=cus_1".into(), Notify, "rule_match"),
        ("POST", st("/v1/payment_methods/pm_1/detach"), &form, String::new(), Escalate, "rule_match"),
        // a new e-mail takes over their invoices, receipts and customer portal login (session 16)
        ("POST", st("/v1/customers/cus_1"), &form, "email=a%40b.c".into(), Escalate, "rule_match"),
        ("POST", st("/v1/customers/cus_1"), &form, "name=A&description=b".into(), Notify, "rule_match"),
        ("POST", st("/v1/customers/cus_1"), &form, "coupon=SAVE".into(), Escalate, "rule_match"),
        ("POST", st("/v1/customers"), &form, "promotion_code=promo_1".into(), Escalate, "rule_match"),
        // files: multipart uploads are held unread; a file link publishes in any body
        ("POST", "https://files.stripe.com/v1/files".into(), &form, "purpose=dispute_evidence".into(), Notify, "rule_match"),
        ("POST", "https://files.stripe.com/v1/files".into(), &form, "purpose=dispute_evidence&file_link_data[create]=true".into(), Escalate, "rule_match"),
        ("POST", "https://files.stripe.com/v1/files".into(), &[("content-type", "multipart/form-data; boundary=x")], "--x--\r\n".into(), Escalate, "body_multipart"),
    ];
    expect_all(&c, &cases);
}

/// Session 16: a Stripe write naming an API version older than the catalog's floor (whose
/// legacy parameters the rules may not judge), the header twice, or a value Airlock cannot read,
/// is held; current versions, none at all, and reads are judged as before.
#[test]
fn stripe_versions_older_than_the_floor_hold() {
    let c = catalog();
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let form = ("content-type", "application/x-www-form-urlencoded");
    use Action::*;
    let v2017 = [form, ("stripe-version", "2017-05-25")];
    let v2017a = [form, ("stripe-version", "2017-04-06")];
    let twice = [
        form,
        ("stripe-version", "2026-10-28"),
        ("stripe-version", "2015-01-01"),
    ];
    let listed = [form, ("stripe-version", "2026-10-28,2015-01-01")];
    let v2019 = [("stripe-version", "2019-02-19")];
    let floor = [form, ("stripe-version", "2020-08-27")];
    let clover = [form, ("stripe-version", "2025-09-30.clover")];
    let plain = [form];
    let v2014 = [("stripe-version", "2014-01-31")];
    let cases: Vec<Case> = vec![
        (
            "POST",
            st("/v1/customers"),
            &v2017,
            "email=a%40b.c".into(),
            Escalate,
            "version_old",
        ),
        (
            "POST",
            st("/v1/accounts"),
            &v2017a,
            "managed=true&country=US".into(),
            Escalate,
            "version_old",
        ),
        (
            "POST",
            st("/v1/customers"),
            &twice,
            "email=a%40b.c".into(),
            Escalate,
            "version_ambiguous",
        ),
        (
            "POST",
            st("/v1/customers"),
            &listed,
            "email=a%40b.c".into(),
            Escalate,
            "version_unreadable",
        ),
        (
            "DELETE",
            st("/v1/customers/cus_1/discount"),
            &v2019,
            "".into(),
            Escalate,
            "version_old",
        ),
        // current versions, none given, and reads: as before
        (
            "POST",
            st("/v1/customers"),
            &floor,
            "email=a%40b.c".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/customers"),
            &clover,
            "email=a%40b.c".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/customers"),
            &plain,
            "email=a%40b.c".into(),
            Notify,
            "rule_match",
        ),
        (
            "GET",
            st("/v1/customers/cus_1"),
            &v2014,
            "".into(),
            Allow,
            "no_rule_default",
        ),
    ];
    expect_all(&c, &cases);
}

/// Session 16: text bots and coding agents act on (`@copilot`, `bors r+`, `/lgtm`, a ticked
/// Renovate box) is held in comments, reviews, titles and bodies, REST and GraphQL, new or
/// edited, in every spelling a renderer reads as the same text; ordinary text still notifies.
#[test]
fn bot_and_agent_commands_in_text_hold() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let body = |t: &str| serde_json::json!({ "body": t }).to_string();
    let gq = mutation_body;
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", gh("/repos/o/r/issues/1/comments"), &json, body("@copilot please fix the failing test"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/1/comments"), &json, body("Looks good.\n\nbors r+"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/1/comments"), &json, body("bors: r+"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/1/comments"), &json, body("/lgtm\n/approve"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/1/comments"), &json, body("&#64;Copilot rebase onto main"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/1/comments"), &json, body("\\@claude run the migration"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/1/comments"), &json, body("@co\u{200b}pilot go"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/1/comments"), &json, body("atlantis apply -p prod"), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/issues/comments/9"), &json, body("@dependabot merge"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/pulls/1/comments"), &json, body("@copilot address this"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/pulls/1/comments/9/replies"), &json, body("@copilot address this"), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/pulls/comments/9"), &json, body("/ok-to-test"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/pulls/1/reviews"), &json, r#"{"event":"COMMENT","comments":[{"path":"a","line":1,"body":"@copilot fix"}]}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/pulls/1/reviews/2/events"), &json, r#"{"event":"COMMENT","body":"@mergifyio queue"}"#.into(), Escalate, "rule_match"),
        ("PUT", gh("/repos/o/r/pulls/1/reviews/2"), &json, body("/gcbrun"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/pulls"), &json, r#"{"title":"x","head":"f","base":"dev","body":"bors r+"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/pulls/1"), &json, body("- [x] <!-- rebase-check -->If you want to rebase, check this box"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues"), &json, r#"{"title":"@claude implement the plan"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/issues/1"), &json, body("> .deploy to production"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/commits/aa/comments"), &json, body("@copilot"), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/1/comments"), &json, r#"{"body":{"text":"@copilot"}}"#.into(), Escalate, "value_unparseable"),
        ("POST", gh("/graphql"), &json, gq("addComment(input: {subjectId: \"I\", body: \"@copilot please retry\"})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateIssueComment(input: {id: \"C\", body: \"bors r+\"})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("addPullRequestReview(input: {pullRequestId: \"P\", threads: [{path: \"a\", line: 1, body: \"@copilot fix\"}]})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createPullRequest(input: {repositoryId: \"R\", baseRefName: \"dev\", headRefName: \"f\", title: \"/merge\"})"), Escalate, "rule_match"),
        // ordinary text: as before
        ("POST", gh("/repos/o/r/issues/1/comments"), &json, body("Thanks! The neighbors test in src/test/x.rs passes; GitHub Copilot wrote it."), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r/issues/comments/9"), &json, body("fixed a typo"), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/pulls"), &json, r#"{"title":"Fix the parser","head":"f","base":"dev","body":"- [ ] docs"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("addComment(input: {subjectId: \"I\", body: \"thanks, merged by hand\"})"), Notify, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Session 16, GitHub review: labels bots and workflows act on, more text that reaches bots
/// (a mid-line `/deploy`, Mergify's URL form, dotless i, drafts, reverts), making a repository
/// private, demoting a release, resolving a review conversation, and maintainerCanModify over
/// GraphQL are held; ordinary labels and edits still notify.
#[test]
fn labels_and_text_that_bots_act_on_hold() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let gq = mutation_body;
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", gh("/repos/o/r/issues/7/labels"), &json, r#"{"labels":["safe to test"]}"#.into(), Escalate, "rule_match"),
        ("PUT", gh("/repos/o/r/issues/7/labels"), &json, r#"{"labels":["bug","automerge"]}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/labels"), &json, r#"["claude"]"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/labels"), &json, r#"{"labels":["Safe To Test"]}"#.into(), Escalate, "value_unparseable"),
        ("DELETE", gh("/repos/o/r/issues/7/labels/do-not-merge%2Fhold"), &[], "".into(), Escalate, "rule_match"),
        ("DELETE", gh("/repos/o/r/issues/7/labels"), &[], "".into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/labels/needs-work"), &json, r#"{"new_name":"lgtm"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/labels/hold"), &json, r#"{"new_name":"on-ice"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/issues/7"), &json, r#"{"labels":[]}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/comments"), &json, r#"{"body":"LGTM, please /deploy staging"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/comments"), &json, r#"{"body":"https://github.com/Mergifyio queue"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/comments"), &json, "{\"body\":\"@Merg\u{131}fyio queue\"}".into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/comments"), &json, r#"{"body":"<p>/approve</p>"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/orgs/o/projectsV2/1/drafts"), &json, r#"{"title":"Implement X","body":"@claude implement this"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"visibility":"private"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"private":true}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/releases/42"), &json, r#"{"prerelease":true}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/releases/42"), &json, r#"{"draft":true}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("addLabelsToLabelable(input: {labelableId: \"I\", labelIds: [\"L\"]})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("resolveReviewThread(input: {threadId: \"T\"})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updatePullRequest(input: {pullRequestId: \"P\", maintainerCanModify: true})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateIssue(input: {id: \"I\", labelIds: [\"L\"]})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("revertPullRequest(input: {pullRequestId: \"P\", title: \"Revert\", body: \"bors r+\"})"), Escalate, "rule_match"),
        // ordinary: as before
        ("POST", gh("/repos/o/r/issues/7/labels"), &json, r#"{"labels":["bug"]}"#.into(), Notify, "rule_match"),
        ("DELETE", gh("/repos/o/r/issues/7/labels/bug"), &[], "".into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r/labels/bug"), &json, r#"{"new_name":"defect"}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"description":"x","visibility":"public"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"description":"x"}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r/releases/42"), &json, r#"{"body":"notes"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/comments"), &json, r#"{"body":"see src/test/x.rs and /tmp; GitHub Copilot helped"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updatePullRequest(input: {pullRequestId: \"P\", title: \"x\"})"), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("unresolveReviewThread(input: {threadId: \"T\"})"), Notify, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Session 16, Stripe review: payment intents for existing customers, connected accounts named
/// by header, customer e-mail and portal settings, tax details and tax IDs, promotion codes,
/// outbound setup intents, platform liability, receipt addresses, meters and event
/// destinations are held; the ordinary forms still notify.
#[test]
fn stripe_money_behind_soft_routes_holds() {
    let c = catalog();
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let form = ("content-type", "application/x-www-form-urlencoded");
    let plain = [form];
    let account = [form, ("stripe-account", "acct_evil")];
    let context = [form, ("stripe-context", "acct_evil")];
    let twice = [
        form,
        ("stripe-account", "acct_1"),
        ("stripe-account", "acct_2"),
    ];
    let json = [("content-type", "application/json")];
    use Action::*;
    let cases: Vec<Case> = vec![
        (
            "POST",
            st("/v1/payment_intents"),
            &plain,
            "amount=9900&currency=usd&customer=cus_1".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/payment_intents"),
            &plain,
            "amount=9900&currency=usd&customer=cus_1&confirmation_method=automatic".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/payment_intents/pi_1"),
            &plain,
            "customer=cus_1".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/payment_intents/pi_1"),
            &plain,
            "currency=gbp".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/payment_intents/pi_1"),
            &plain,
            "payment_method_data[type]=customer_balance".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/checkout/sessions"),
            &account,
            "mode=payment&success_url=https%3A%2F%2Fx".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/payment_links"),
            &context,
            "line_items[0][price]=price_1&line_items[0][quantity]=1".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/charges"),
            &account,
            "amount=500&currency=usd&source=tok_visa".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/invoices"),
            &twice,
            "customer=cus_1".into(),
            Escalate,
            "duplicate_key",
        ),
        (
            "POST",
            st("/v1/customers/cus_1"),
            &plain,
            "email=attacker%40evil.example".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/billing_portal/configurations/bpc_1"),
            &plain,
            "login_page[enabled]=true".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/billing_portal/configurations"),
            &plain,
            "features[subscription_update][enabled]=true".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/products/prod_1"),
            &plain,
            "tax_details[tax_code]=txcd_10000000".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/promotion_codes"),
            &plain,
            "promotion[type]=coupon&promotion[coupon]=FREE100&code=WELCOME10".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/promotion_codes/promo_1"),
            &plain,
            "active=false".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/billing/meters/mtr_1/deactivate"),
            &plain,
            "".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/setup_intents"),
            &plain,
            "attach_to_self=true".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/setup_intents/seti_1"),
            &plain,
            "flow_directions[]=outbound".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/customers/cus_1/tax_ids"),
            &plain,
            "type=eu_vat&value=DE123456789".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/tax_ids"),
            &plain,
            "type=eu_vat&value=DE1&owner[type]=customer&owner[customer]=cus_1".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/accounts"),
            &plain,
            "country=US&controller[losses][payments]=application".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/charges"),
            &plain,
            "amount=500&currency=usd&source=tok_visa&receipt_email=x%40evil.example".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v2/core/event_destinations/ed_1/disable"),
            &json,
            "{}".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/products/prod_cheap/features"),
            &plain,
            "entitlement_feature=feat_premium".into(),
            Escalate,
            "rule_match",
        ),
        // v2 reads JSON as JSON (json_prefixes): its conditions are judged, not held as ambiguous
        (
            "POST",
            st("/v2/core/accounts"),
            &json,
            r#"{"defaults":{"responsibilities":{"losses_collector":"application"}}}"#.into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/V2/core/accounts"),
            &json,
            r#"{"defaults":{"responsibilities":{"fees_collector":"application"}}}"#.into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v2/core/accounts"),
            &json,
            r#"{"display_name":"x","defaults":{"responsibilities":{"fees_collector":"stripe"}}}"#
                .into(),
            Notify,
            "rule_match",
        ),
        // v1 still reads a JSON body as a form would
        (
            "POST",
            st("/v1/payment_intents/pi_1"),
            &json,
            r#"{"customer":"cus_1"}"#.into(),
            Escalate,
            "body_ambiguous",
        ),
        // invoice items: only the listed fields pass (a pricing field Stripe adds later holds)
        (
            "POST",
            st("/v1/invoiceitems"),
            &plain,
            "customer=cus_1&amount=100&currency=usd&future_pricing=1".into(),
            Escalate,
            "rule_match",
        ),
        // a header a rule tests is not a field `other_than` counts
        (
            "POST",
            st("/v1/invoices/in_1"),
            &account,
            "metadata[order]=7".into(),
            Notify,
            "rule_match",
        ),
        // ordinary forms: as before
        (
            "POST",
            st("/v1/payment_intents"),
            &plain,
            "amount=9900&currency=usd".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/payment_intents"),
            &plain,
            "amount=9900&currency=usd&customer=cus_1&confirmation_method=manual".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/payment_intents/pi_1"),
            &plain,
            "description=x".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/checkout/sessions"),
            &plain,
            "mode=payment&success_url=https%3A%2F%2Fx".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/setup_intents"),
            &plain,
            "attach_to_self=false&flow_directions[0]=inbound".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/tax_ids"),
            &plain,
            "type=eu_vat&value=DE1&owner[type]=self".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/accounts"),
            &plain,
            "country=US&controller[losses][payments]=stripe".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/products/prod_1"),
            &plain,
            "name=Better".into(),
            Notify,
            "rule_match",
        ),
    ];
    expect_all(&c, &cases);
}

/// Left from the fifteenth session: rules and config files were obeyed whoever could change
/// them. One every user may change is refused, by the rules loader and the config loader.
#[test]
fn policy_files_every_user_may_change_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, "[service]\nname = \"s\"\nhosts = [\"h.test\"]\n").expect("write");
    let mode = |m: u32| std::fs::Permissions::from_mode(m);
    std::fs::set_permissions(&file, mode(0o644)).expect("chmod");
    assert!(Catalog::load_dir(dir.path(), &CatalogOptions::default()).is_ok());
    std::fs::set_permissions(&file, mode(0o666)).expect("chmod");
    let err = Catalog::load_dir(dir.path(), &CatalogOptions::default())
        .expect_err("world-writable rules file")
        .to_string();
    assert!(err.contains("every user may change it"), "{err}");
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(&cfg, "").expect("write");
    std::fs::set_permissions(&cfg, mode(0o666)).expect("chmod");
    let err = airlock::config::Config::load(&cfg, Default::default())
        .expect_err("world-writable config")
        .to_string();
    assert!(err.contains("every user may change it"), "{err}");
}

/// Review of session 16: a rules file of one's own that declares the stripe service as before
/// (no version floor, no JSON paths) made the catalog refuse to load. It takes the shipped
/// file's settings; two files that set them differently are still refused.
#[test]
fn a_service_file_without_the_new_settings_takes_the_others() {
    let opts = CatalogOptions::default();
    let shipped = std::fs::read_to_string("rules/stripe.toml").expect("stripe.toml");
    let own = "[service]\nname = \"stripe\"\nhosts = [\"api.stripe.com\", \"files.stripe.com\"]\nform_bodies = true\nslashless_ids = true\n\n[[rule]]\ntool = \"stripe.own\"\nmethod = \"POST\"\npath = \"/v1/own\"\nclass = \"reversible\"\naction = \"allow\"\n";
    for order in [
        [("a-own.toml", own), ("stripe.toml", shipped.as_str())],
        [("stripe.toml", shipped.as_str()), ("z-own.toml", own)],
    ] {
        let sources: Vec<(String, String)> = order
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let c = Catalog::from_sources(&sources, &opts).expect("loads");
        let (action, codes, _) = eval(
            &c,
            "POST",
            "https://api.stripe.com/v1/own",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("stripe-version", "2015-01-01"),
            ],
            Some(""),
        );
        assert_eq!(action, Action::Escalate, "{codes:?}");
        assert!(codes.iter().any(|c| c == "version_old"), "{codes:?}");
    }
    let other_floor = own.replace("slashless_ids = true\n", "slashless_ids = true\nversion_header = \"Stripe-Version\"\nversion_floor = \"2019-01-01\"\n");
    let sources = vec![
        ("stripe.toml".to_string(), shipped),
        ("z.toml".to_string(), other_floor),
    ];
    let err = Catalog::from_sources(&sources, &opts)
        .expect_err("two floors")
        .to_string();
    assert!(err.contains("version settings"), "{err}");
}

/// Session 17, GitHub review: setting an issue's labels (PUT replaces them all), CodeRabbit's
/// commands, a comment that is only an approval word (manual-approval steps), Claude and
/// Codex as assignees or reviewers, GraphQL issues with labels by id or a template, label
/// renames by id, template copies to another owner, CodeQL variant analyses, suggestions
/// approved, check suites turned off, a public primary email and unlisted security settings
/// are held; the ordinary forms still notify.
#[test]
fn labels_agents_and_approval_words_hold() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let gq = mutation_body;
    use Action::*;
    let cases: Vec<Case> = vec![
        ("PUT", gh("/repos/o/r/issues/7/labels"), &json, r#"{"labels":["bug"]}"#.into(), Escalate, "rule_match"),
        ("PUT", gh("/repos/o/r/issues/7/labels"), &json, r#"{"labels":[]}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/comments"), &json, r#"{"body":"@coderabbitai approve"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/comments"), &json, r#"{"body":"Approved!"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/comments"), &json, r#"{"body":"yes.\n"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/issues/comments/9"), &json, r#"{"body":"lgtm"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/assignees"), &json, r#"{"assignees":["anthropic-code-agent[bot]"]}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues"), &json, r#"{"title":"t","assignees":["Claude"]}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/issues/7"), &json, r#"{"assignee":"openai-code-agent"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/pulls/7/requested_reviewers"), &json, r#"{"reviewers":["Codex"]}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createIssue(input: {repositoryId: \"R\", title: \"t\", labelIds: [\"L\"]})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createIssue(input: {repositoryId: \"R\", title: \"t\", issueTemplate: \"bug\"})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateLabel(input: {id: \"L\", name: \"was-hold\"})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("cloneTemplateRepository(input: {repositoryId: \"R\", ownerId: \"O\", name: \"c\", visibility: PRIVATE})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateCheckSuitePreferences(input: {repositoryId: \"R\", autoTriggerPreferences: [{appId: \"A\", setting: false}]})"), Escalate, "rule_match"),
        ("POST", gh("/repos/corp/tpl/generate"), &json, r#"{"owner":"outside","name":"c","private":true}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/corp/tpl/generate"), &json, r#"{"name":"c","private":true}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/c/code-scanning/codeql/variant-analyses"), &json, r#"{"language":"python"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/suggestions/9/approve"), &json, "{}".into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/check-suites/preferences"), &json, r#"{"auto_trigger_checks":[{"app_id":1,"setting":false}]}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/user/email/visibility"), &json, r#"{"visibility":"public"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"security_and_analysis":{"secret_protection":{"status":"disabled"}}}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"security_and_analysis":"off"}"#.into(), Escalate, "rule_match"),
        // ordinary: as before
        ("POST", gh("/repos/o/r/issues/7/comments"), &json, r#"{"body":"approve once the tests pass"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/assignees"), &json, r#"{"assignees":["octocat"]}"#.into(), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createIssue(input: {repositoryId: \"R\", title: \"t\"})"), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateLabel(input: {id: \"L\", color: \"ffffff\"})"), Notify, "rule_match"),
        ("POST", gh("/repos/corp/tpl/generate"), &json, r#"{"owner":"corp","name":"c","private":true}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r/check-suites/preferences"), &json, r#"{"auto_trigger_checks":[{"app_id":1,"setting":true}]}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/user/email/visibility"), &json, r#"{"visibility":"private"}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"security_and_analysis":{"secret_scanning":{"status":"enabled"}}}"#.into(), Notify, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Session 17, Stripe review: what customers pay set by the agent (checkout discounts, inline
/// prices and trials; a live payment link's subscriptions, items and promotion codes), dispute
/// evidence staged with submit=false, the IP address and head office Stripe Tax places by, and
/// product catalog imports (a presigned upload link) are held; the ordinary forms still notify.
#[test]
fn what_customers_pay_set_by_the_agent_holds() {
    let c = catalog();
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let json = [("content-type", "application/json")];
    let pay = "mode=payment&success_url=https://x&line_items[0][quantity]=1";
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", st("/v2/commerce/product_catalog/imports"), &json, r#"{"feed_type":"pricing","mode":"replace"}"#.into(), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, format!("{pay}&line_items[0][price]=price_x&discounts[0][coupon]=co_free"), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, format!("{pay}&line_items[0][price_data][product]=prod_x&line_items[0][price_data][unit_amount]=50&line_items[0][price_data][currency]=usd"), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, format!("{pay}&line_items[0][price]=p&line_items[1][price_data][product]=prod_x"), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, "mode=subscription&line_items[0][price]=price_x&subscription_data[trial_period_days]=730&success_url=https://x".into(), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, "mode=subscription&line_items[0][price]=price_x&subscription_data[trial_end]=1999999999&success_url=https://x".into(), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions/cs_1"), &form, "line_items[0][id]=li_1&line_items[0][quantity]=5".into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_links"), &form, "line_items[0][price]=p&line_items[0][quantity]=1&subscription_data[trial_period_days]=730".into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_links/plink_1"), &form, "subscription_data[trial_period_days]=730".into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_links/plink_1"), &form, "allow_promotion_codes=true".into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_links/plink_1"), &form, "line_items[0][id]=li_1&line_items[0][quantity]=9".into(), Escalate, "rule_match"),
        ("POST", st("/v1/disputes/dp_1"), &form, "submit=false&evidence[uncategorized_text]=accepts".into(), Escalate, "rule_match"),
        ("POST", st("/v1/disputes/dp_1"), &form, "submit=false&intended_submission_method=prefer_manual".into(), Escalate, "rule_match"),
        ("POST", st("/v1/customers/cus_1"), &form, "tax[ip_address]=1.2.3.4".into(), Escalate, "rule_match"),
        ("POST", st("/v1/tax/settings"), &form, "head_office[address][country]=US".into(), Escalate, "rule_match"),
        // ordinary: as before
        ("POST", st("/v1/checkout/sessions"), &form, format!("{pay}&line_items[0][price]=price_x"), Notify, "rule_match"),
        ("POST", st("/v1/payment_links/plink_1"), &form, "active=false".into(), Notify, "rule_match"),
        ("POST", st("/v1/disputes/dp_1"), &form, "submit=false&metadata[case]=7".into(), Notify, "rule_match"),
        ("POST", st("/v1/customers/cus_1"), &form, "name=Ada".into(), Notify, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Session 17, reviewer-side review: a review's approval policy came from the one verdict that
/// won, so the agent could shed a rule's quorum by tripping a guard (a key given twice, a
/// method override), by matching a second rule first, or by using GraphQL, where no policy
/// could be written. Every rule the request may meet at the winning level now keeps its
/// policy, and GraphQL entries take one.
#[test]
fn approval_policies_survive_guards_ties_and_graphql() {
    let text = r#"
[service]
name = "gh"
hosts = ["api.example.test"]
graphql_paths = ["/graphql"]
graphql_default = "escalate"

[[rule]]
tool = "gh.repos.delete"
method = "DELETE"
path = "/repos/{owner}/{repo}"
class = "irreversible"
action = "escalate"
approvals = 2
approvers = ["group:sre", "alice"]

[[rule]]
tool = "gh.repos.update"
method = "PATCH"
path = "/repos/{owner}/{repo}"
class = "visible"
action = "escalate"
self_approval = true

[[rule]]
tool = "gh.repos.update.private"
method = "PATCH"
path = "/repos/{owner}/{repo}"
class = "irreversible"
action = "escalate"
approvals = 3
approvers = ["alice", "bob"]
when = [{ field = "private", eq = true }]

[[graphql]]
mutations = ["deleteRepository"]
class = "irreversible"
action = "escalate"
approvals = 2
approvers = ["group:sre"]

[[graphql]]
mutations = ["addStar"]
class = "visible"
action = "notify"
"#;
    let c = Catalog::from_sources(
        &[("p.toml".to_string(), text.to_string())],
        &CatalogOptions::default(),
    )
    .expect("compiles");
    let url = |p: &str| format!("https://api.example.test{p}");
    let json = [("content-type", "application/json")];
    let required = |v: &airlock::rules::Verdict| v.approval.as_ref().map(|p| p.required);
    // The rule itself.
    let v = verdict(&c, "DELETE", &url("/repos/a/b"), &[], None);
    assert_eq!(required(&v), Some(2), "{v}");
    // Guards after the route is known: a key twice, a `;` separator.
    for q in ["?x=1&x=2", "?x=1;y=2"] {
        let v = verdict(&c, "DELETE", &url(&format!("/repos/a/b{q}")), &[], None);
        assert_eq!(v.action, Action::Escalate);
        assert_eq!(required(&v), Some(2), "{q}: {v}");
        assert_eq!(
            v.approval.as_ref().map(|p| p.approvers.len()),
            Some(2),
            "{v}"
        );
    }
    // A guard before the route is known (a method override): every held rule's policy.
    let v = verdict(
        &c,
        "POST",
        &url("/repos/a/b"),
        &[("x-http-method-override", "DELETE")],
        None,
    );
    assert_eq!(v.action, Action::Escalate);
    let p = v.approval.clone().expect("a policy");
    assert_eq!(p.most_required(), 3, "{v}");
    assert_eq!(p.quorums().len(), 3, "each rule's quorum kept whole: {v}");
    assert!(!p.self_approval);
    // Two rules held at once: both quorums (the open one implied), no self-approval.
    let v = verdict(
        &c,
        "PATCH",
        &url("/repos/a/b"),
        &json,
        Some(r#"{"private":true}"#),
    );
    assert_eq!(
        v.tool.as_deref(),
        Some("gh.repos.update"),
        "the first rule names it"
    );
    let p = v.approval.clone().expect("a policy");
    assert_eq!((p.required, p.self_approval), (3, false), "{v}");
    // Only the first rule: its own policy.
    let v = verdict(
        &c,
        "PATCH",
        &url("/repos/a/b"),
        &json,
        Some(r#"{"private":false}"#),
    );
    assert_eq!(
        v.approval.as_ref().map(|p| p.self_approval),
        Some(true),
        "{v}"
    );
    // GraphQL: the entry's policy, alone or beside another mutation, and in a guard.
    let gq = |m: &str| Some(mutation_body(m));
    for body in [
        gq("deleteRepository(input: {repositoryId: \"R\"})"),
        gq("a: addStar(input: {starrableId: \"S\"}) b: deleteRepository(input: {repositoryId: \"R\"})"),
    ] {
        let v = verdict(&c, "POST", &url("/graphql"), &json, body.as_deref());
        assert_eq!(v.action, Action::Escalate);
        assert_eq!(required(&v), Some(2), "{v}");
    }
    let v = verdict(&c, "POST", &url("/graphql"), &json, Some("{not json"));
    assert_eq!(required(&v), Some(2), "a GraphQL guard: {v}");
    // A review names the first mutation held and explains every one.
    let v = verdict(
        &c,
        "POST",
        &url("/graphql"),
        &json,
        gq("a: deleteRepository(input: {repositoryId: \"R\"}) b: deleteRepository(input: {repositoryId: \"S\"})").as_deref(),
    );
    assert_eq!(v.explanation.matches("deleteRepository").count(), 1, "{v}");
    let names: Vec<String> = c.approval_policies().into_iter().map(|p| p.tool).collect();
    assert!(
        names.contains(&"gh.graphql.deleteRepository".to_string()),
        "{names:?}"
    );
}

/// Session 17, diff review: a `*` condition with `present = true` missed a single object given
/// where a list is expected (GraphQL coerces it to a one-element list).
#[test]
fn a_single_object_for_a_list_is_judged_as_its_element() {
    let text = r#"
[service]
name = "x"
hosts = ["x.test"]
graphql_paths = ["/graphql"]
graphql_default = "escalate"

[[graphql]]
mutations = ["put"]
class = "visible"
action = "notify"

[[graphql]]
mutations = ["put"]
class = "money"
action = "escalate"
when = [{ field = "input.items.*.price", present = true }]
"#;
    let c = Catalog::from_sources(
        &[("x.toml".to_string(), text.to_string())],
        &CatalogOptions::default(),
    )
    .expect("compiles");
    let json = [("content-type", "application/json")];
    for (m, want) in [
        ("put(input: {items: [{price: {a: 1}}]})", Action::Escalate),
        ("put(input: {items: {price: {a: 1}}})", Action::Escalate),
        ("put(input: {items: {name: \"x\"}})", Action::Notify),
    ] {
        let body = mutation_body(m);
        let (action, codes, _) = eval(&c, "POST", "https://x.test/graphql", &json, Some(&body));
        assert_eq!(action, want, "{m}: {codes:?}");
    }
}

/// Session 17, GraphQL review: project field options replaced (every item's value cleared),
/// bots assigned to drafts or asked for reviews by user id, projects copied to another owner,
/// enterprise-wide policies and team review assignment, card notes with bot commands; and
/// other CI systems' configuration committed (REST, GraphQL and trees) are held.
#[test]
fn graphql_soft_spots_and_ci_configuration_hold() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let gq = mutation_body;
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", gh("/graphql"), &json, gq("updateProjectV2Field(input: {fieldId: \"F\", singleSelectOptions: [{name: \"A\", color: GRAY, description: \"\"}]})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateProjectV2Field(input: {fieldId: \"F\", iterationConfiguration: {startDate: \"2026-01-01\", duration: 7}})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("addProjectV2DraftIssue(input: {projectId: \"P\", title: \"t\", assigneeIds: [\"BOT_kgDOC9w8XQ\"]})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateProjectV2DraftIssue(input: {draftIssueId: \"D\", assigneeIds: [\"MDM6Qm90MTk4OTgyNzQ5\"]})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("requestReviews(input: {pullRequestId: \"PR\", userIds: [\"BOT_kgDOCnlnWA\"]})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("copyProjectV2(input: {projectId: \"P\", ownerId: \"O\", title: \"x\", includeDraftIssues: true})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateEnterpriseOrganizationProjectsSetting(input: {enterpriseId: \"E\", settingValue: DISABLED})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("updateTeamReviewAssignment(input: {id: \"T\", enabled: true, teamMemberCount: 1})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("addProjectCard(input: {projectColumnId: \"C\", note: \"@copilot please fix this\"})"), Escalate, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"o/r\", branchName: \"feature\"}, expectedHeadOid: \"a\", message: {headline: \"x\"}, fileChanges: {additions: [{path: \".circleci/config.yml\", contents: \"eA==\"}]}})"), Escalate, "rule_match"),
        ("PUT", gh("/repos/o/r/contents/.devcontainer/devcontainer.json"), &json, r#"{"message":"m","content":"eA==","branch":"feature"}"#.into(), Escalate, "rule_match"),
        ("PUT", gh("/repos/o/r/contents/Jenkinsfile"), &json, r#"{"message":"m","content":"eA==","branch":"feature"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/git/trees"), &json, r#"{"tree":[{"path":".travis.yml","mode":"100644","type":"blob","content":"x"}]}"#.into(), Escalate, "rule_match"),
        ("PUT", gh("/repos/o/r/contents/.gitlab-ci.yml"), &json, r#"{"message":"m","content":"eA==","branch":"feature"}"#.into(), Escalate, "rule_match"),
        // ordinary: as before
        ("POST", gh("/graphql"), &json, gq("updateProjectV2Field(input: {fieldId: \"F\", name: \"Status\"})"), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("requestReviews(input: {pullRequestId: \"PR\", userIds: [\"U_kgDOAAAAAQ\"]})"), Notify, "rule_match"),
        ("POST", gh("/graphql"), &json, gq("addProjectCard(input: {projectColumnId: \"C\", note: \"remember the docs\"})"), Notify, "rule_match"),
        ("PUT", gh("/repos/o/r/contents/docs/ci.md"), &json, r#"{"message":"m","content":"eA==","branch":"feature"}"#.into(), Notify, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Session 17, second Stripe review: Express and Custom accounts (the platform liable), trials
/// and free first periods in checkout, inline and new prices, plans moved or given trials,
/// shipping rates in other currencies, promotion code restrictions and a live link's tax
/// settings are held; the ordinary forms still notify.
#[test]
fn platform_liability_prices_and_tax_settings_hold() {
    let c = catalog();
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let json = [("content-type", "application/json")];
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", st("/v1/accounts"), &form, "type=custom&country=US".into(), Escalate, "rule_match"),
        ("POST", st("/v1/accounts"), &form, "type=express&country=US".into(), Escalate, "rule_match"),
        ("POST", st("/v1/accounts"), &form, "controller[requirement_collection]=application&controller[losses][payments]=stripe&controller[fees][payer]=account".into(), Escalate, "rule_match"),
        ("POST", st("/v2/core/accounts"), &json, r#"{"dashboard":"express"}"#.into(), Escalate, "rule_match"),
        ("POST", st("/v1/accounts"), &form, "controller[stripe_dashboard][type]=express&controller[fees][payer]=account".into(), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions/cs_1"), &form, "subscription_data[trial_period_days]=730".into(), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, "mode=subscription&line_items[0][price]=p&line_items[0][quantity]=1&subscription_data[billing_cycle_anchor]=1999999999&subscription_data[proration_behavior]=none&success_url=https://x".into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_links"), &form, "line_items[0][price_data][currency]=usd&line_items[0][price_data][product]=prod_1&line_items[0][price_data][unit_amount]=1&line_items[0][quantity]=1".into(), Escalate, "rule_match"),
        ("POST", st("/v1/prices"), &form, "product=prod_premium&unit_amount=1&currency=usd".into(), Escalate, "rule_match"),
        ("POST", st("/v1/plans/plan_1"), &form, "product=prod_premium".into(), Escalate, "rule_match"),
        ("POST", st("/v1/plans/plan_1"), &form, "trial_period_days=730".into(), Escalate, "rule_match"),
        ("POST", st("/v1/shipping_rates/shr_1"), &form, "fixed_amount[currency_options][eur][amount]=0".into(), Escalate, "rule_match"),
        ("POST", st("/v1/promotion_codes/promo_1"), &form, "restrictions[currency_options][usd][minimum_amount]=0".into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_links/plink_1"), &form, "automatic_tax[enabled]=false".into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_links/plink_1"), &form, "tax_id_collection[enabled]=true".into(), Escalate, "rule_match"),
        // ordinary: as before
        ("POST", st("/v1/accounts"), &form, "type=standard&country=US".into(), Notify, "rule_match"),
        ("POST", st("/v1/prices"), &form, "product_data[name]=New&unit_amount=500&currency=usd".into(), Notify, "rule_match"),
        ("POST", st("/v1/plans/plan_1"), &form, "nickname=Gold".into(), Notify, "rule_match"),
        ("POST", st("/v1/shipping_rates/shr_1"), &form, "active=false".into(), Notify, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Session 17, GitHub REST review: Jules and Amazon Q labels and mentions, custom properties
/// on a new repository, issue field options replaced or published, Code Quality's runner,
/// a public profile email or organization membership, and force-cancelled runs are held;
/// muting notifications is a soft gate.
#[test]
fn agent_labels_properties_and_publication_hold() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", gh("/repos/o/r/issues/7/labels"), &json, r#"{"labels":["Jules"]}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues"), &json, r#"{"title":"x","labels":["amazon q development agent"]}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/issues/7/comments"), &json, r#"{"body":"@jules please implement this"}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/orgs/o/repos"), &json, r#"{"name":"svc","visibility":"private","custom_properties":{"environment":"production"}}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/orgs/o/issue-fields/12"), &json, r#"{"options":[{"name":"P0","color":"red","priority":1}]}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/orgs/o/issue-fields/12"), &json, r#"{"visibility":"all"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/repos/o/r/code-quality/setup"), &json, r#"{"state":"configured","runner_type":"labeled","runner_label":"prod"}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/user"), &json, r#"{"email":"me@corp.example"}"#.into(), Escalate, "rule_match"),
        ("PUT", gh("/orgs/o/public_members/me"), &json, "".into(), Escalate, "rule_match"),
        ("POST", gh("/repos/o/r/actions/runs/5/force-cancel"), &json, "".into(), Escalate, "rule_match"),
        ("PUT", gh("/notifications/threads/9/subscription"), &json, r#"{"ignored":true}"#.into(), Notify, "rule_match"),
        ("PUT", gh("/repos/o/r/subscription"), &json, r#"{"subscribed":false}"#.into(), Notify, "rule_match"),
        // ordinary: as before
        ("POST", gh("/orgs/o/repos"), &json, r#"{"name":"svc","visibility":"private"}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/orgs/o/issue-fields/12"), &json, r#"{"name":"Priority"}"#.into(), Notify, "rule_match"),
        ("PATCH", gh("/user"), &json, r#"{"name":"Ada"}"#.into(), Notify, "rule_match"),
        ("POST", gh("/repos/o/r/actions/runs/5/cancel"), &json, "".into(), Notify, "rule_match"),
        ("PUT", gh("/notifications/threads/9/subscription"), &json, r#"{"ignored":false}"#.into(), Allow, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Session 19 review: reads that hand over leaked secrets (secret scanning alerts without
/// `hide_secret=true`, alert locations), webhook URLs (bearer credentials for deploy hooks and
/// chat webhooks), undisclosed vulnerabilities (security advisories not asked for as published)
/// and identity data (Stripe Identity with `expand`) are held; a closed milestone is held; bulk
/// notification reads notify. The safe forms still pass.
#[test]
fn secret_reads_advisories_identity_milestones_and_notifications() {
    let c = catalog();
    use Action::*;
    // GETs without a body: (URL, action, reason code).
    let reads: &[(&str, Action, &str)] = &[
        // held
        ("https://api.github.com/repos/o/r/secret-scanning/alerts", Escalate, "rule_match"),
        ("https://api.github.com/repos/o/r/secret-scanning/alerts?hide_secret=false", Escalate, "rule_match"),
        ("https://api.github.com/repos/o/r/secret-scanning/alerts/3?state=open", Escalate, "rule_match"),
        ("https://api.github.com/orgs/o/secret-scanning/alerts?hide_secret=yes", Escalate, "rule_match"),
        ("https://api.github.com/enterprises/e/secret-scanning/alerts", Escalate, "rule_match"),
        ("https://api.github.com/repositories/9/secret-scanning/alerts/3", Escalate, "rule_match"),
        ("https://api.github.com/repos/o/r/secret-scanning/alerts?hide_secret=True", Escalate, "value_unparseable"),
        ("https://api.github.com/repos/o/r/secret-scanning/alerts?hide_secret=", Escalate, "value_unparseable"),
        ("https://api.github.com/repos/o/r/secret-scanning/alerts?hide_secret=true&hide_secret=true", Escalate, "duplicate_key"),
        ("https://api.github.com/repos/o/r/secret-scanning/alerts/3/locations", Escalate, "rule_match"),
        ("https://api.github.com/repos/o/r/hooks", Escalate, "rule_match"),
        ("https://api.github.com/repos/o/r/hooks/9", Escalate, "rule_match"),
        ("https://api.github.com/repos/o/r/hooks/9/config", Escalate, "rule_match"),
        ("https://api.github.com/repos/o/r/hooks/9/deliveries/77", Escalate, "rule_match"),
        ("https://api.github.com/orgs/o/hooks", Escalate, "rule_match"),
        ("https://api.github.com/orgs/o/hooks/9", Escalate, "rule_match"),
        ("https://api.github.com/orgs/o/hooks/9/config", Escalate, "rule_match"),
        ("https://api.github.com/orgs/o/hooks/9/deliveries/77", Escalate, "rule_match"),
        ("https://api.github.com/app/hook/config", Escalate, "rule_match"),
        ("https://api.github.com/app/hook/deliveries/77", Escalate, "rule_match"),
        ("https://api.github.com/repos/o/r/security-advisories", Escalate, "rule_match"),
        ("https://api.github.com/repos/o/r/security-advisories?state=draft", Escalate, "rule_match"),
        ("https://api.github.com/orgs/o/security-advisories?state=triage", Escalate, "rule_match"),
        ("https://api.github.com/orgs/o/security-advisories", Escalate, "rule_match"),
        ("https://api.github.com/repos/o/r/security-advisories/GHSA-xxxx-xxxx-xxxx", Escalate, "rule_match"),
        ("https://api.stripe.com/v1/identity/verification_sessions/vs_1?expand[]=verified_outputs.dob", Escalate, "rule_match"),
        ("https://api.stripe.com/v1/identity/verification_sessions?expand[]=data.verified_outputs", Escalate, "rule_match"),
        ("https://api.stripe.com/v1/identity/verification_reports/vr_1?expand[]=document.number", Escalate, "rule_match"),
        ("https://api.stripe.com/v1/identity/verification_reports?expand[]=data.id_number.id_number", Escalate, "rule_match"),
        // still allowed
        ("https://api.github.com/repos/o/r/secret-scanning/alerts?hide_secret=true", Allow, "no_rule_default"),
        ("https://api.github.com/repos/o/r/secret-scanning/alerts?state=open&hide_secret=true&per_page=100", Allow, "no_rule_default"),
        ("https://api.github.com/repos/o/r/secret-scanning/alerts/3?hide_secret=true", Allow, "no_rule_default"),
        ("https://api.github.com/orgs/o/secret-scanning/alerts?hide_secret=true", Allow, "no_rule_default"),
        ("https://api.github.com/enterprises/e/secret-scanning/alerts?hide_secret=true", Allow, "no_rule_default"),
        ("https://api.github.com/repositories/9/secret-scanning/alerts?hide_secret=true", Allow, "no_rule_default"),
        ("https://api.github.com/repos/o/r/secret-scanning/scan-history", Allow, "no_rule_default"),
        ("https://api.github.com/repos/o/r/hooks/9/deliveries", Allow, "no_rule_default"),
        ("https://api.github.com/repos/o/r/security-advisories?state=published", Allow, "no_rule_default"),
        ("https://api.github.com/orgs/o/security-advisories?state=published&per_page=50", Allow, "no_rule_default"),
        ("https://api.github.com/advisories/GHSA-xxxx-xxxx-xxxx", Allow, "no_rule_default"),
        ("https://api.stripe.com/v1/identity/verification_sessions/vs_1", Allow, "no_rule_default"),
        ("https://api.stripe.com/v1/identity/verification_sessions?limit=10", Allow, "no_rule_default"),
        ("https://api.stripe.com/v1/identity/verification_reports/vr_1", Allow, "no_rule_default"),
    ];
    let mut cases: Vec<Case> = reads
        .iter()
        .map(|(url, want, code)| ("GET", url.to_string(), &[][..], String::new(), *want, *code))
        .collect();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    // With a body: (method, path, body, action, reason code).
    let with_body: &[(&str, &str, &str, Action, &str)] = &[
        (
            "GET",
            "/repos/o/r/secret-scanning/alerts",
            r#"{"hide_secret":true}"#,
            Escalate,
            "param_ambiguous",
        ),
        (
            "GET",
            "/orgs/o/security-advisories",
            r#"{"state":"published"}"#,
            Escalate,
            "param_ambiguous",
        ),
        (
            "PATCH",
            "/repos/o/r/milestones/4",
            r#"{"state":"closed"}"#,
            Escalate,
            "rule_match",
        ),
        (
            "PUT",
            "/notifications",
            r#"{"last_read_at":"2030-01-01T00:00:00Z"}"#,
            Notify,
            "rule_match",
        ),
        (
            "PUT",
            "/repos/o/r/notifications",
            "{}",
            Notify,
            "rule_match",
        ),
        // still as before
        (
            "PATCH",
            "/repos/o/r/milestones/4",
            r#"{"state":"open","title":"v2"}"#,
            Notify,
            "rule_match",
        ),
        (
            "PATCH",
            "/repos/o/r/milestones/4",
            r#"{"due_on":"2030-01-01T00:00:00Z"}"#,
            Notify,
            "rule_match",
        ),
        ("PATCH", "/notifications/threads/5", "", Allow, "rule_match"),
    ];
    for (method, path, body, want, code) in with_body {
        cases.push((method, gh(path), &json, body.to_string(), *want, code));
    }
    expect_all(&c, &cases);
}

/// Review of soft-gated Stripe requests: Checkout parameters Stripe removed only in 2022-08-01
/// (an inline line item by `amount`, `currency` and `name`; `subscription_data[coupon]`) are read
/// under the catalog's version floor and by accounts whose default version is older: held by
/// name, as `price_data` and `discounts` are. A session priced by a Price still notifies.
#[test]
fn legacy_checkout_names_newer_than_the_floor_hold() {
    let c = catalog();
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let v2021 = [form[0], ("stripe-version", "2021-08-27")];
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", st("/v1/checkout/sessions"), &form, "line_items[0][amount]=1&line_items[0][currency]=usd&line_items[0][name]=Pro+plan&line_items[0][quantity]=1&mode=payment".into(), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &v2021, "line_items[0][amount]=1&line_items[0][currency]=usd&line_items[0][name]=Pro+plan&line_items[0][quantity]=1&mode=payment".into(), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, "mode=payment&line_items[0][price]=p&line_items[1][name]=Extra&line_items[1][quantity]=1".into(), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, "mode=subscription&line_items[0][price]=price_pro&subscription_data[coupon]=FREE100FOREVER".into(), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &v2021, "mode=subscription&subscription_data[items][0][plan]=gold&subscription_data[items][0][quantity]=1".into(), Escalate, "rule_match"),
        // ordinary: as before
        ("POST", st("/v1/checkout/sessions"), &v2021, "mode=subscription&line_items[0][price]=price_pro&line_items[0][quantity]=1&subscription_data[description]=Pro&success_url=https://x".into(), Notify, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, "mode=payment&line_items[0][price]=price_pro&line_items[0][quantity]=1&success_url=https://x".into(), Notify, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Review of soft-gated Stripe requests: a lookup key cleared from a price is free for a new
/// price to take without `transfer_lookup_key` (which is held), and a new price may be created
/// under a key apps look up: `lookup_key` is held on price create and update.
#[test]
fn price_lookup_keys_hold() {
    let c = catalog();
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", st("/v1/prices/price_pro"), &form, "lookup_key=".into(), Escalate, "rule_match"),
        ("POST", st("/v1/prices/price_pro"), &form, "lookup_key=pro_monthly_old".into(), Escalate, "rule_match"),
        ("POST", st("/v1/prices"), &form, "lookup_key=pro_monthly&unit_amount=1&currency=usd&recurring[interval]=month&product_data[name]=Pro".into(), Escalate, "rule_match"),
        // ordinary: as before
        ("POST", st("/v1/prices/price_pro"), &form, "nickname=Pro&active=false".into(), Notify, "rule_match"),
        ("POST", st("/v1/prices"), &form, "unit_amount=500&currency=usd&product_data[name]=New".into(), Notify, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Review of soft-gated Stripe requests: text customers read where they pay (an invoice's memo,
/// an invoice item's line on the next invoice, a credit note's memo, a live payment link's text,
/// its inactive message and its redirect after payment) is held as invoice footers and custom
/// fields are; shipping priced inline on a checkout session is held as `price_data` is.
#[test]
fn payment_text_and_inline_shipping_hold() {
    let c = catalog();
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let ship = "shipping_options[0][shipping_rate_data][type]=fixed_amount&shipping_options[0][shipping_rate_data][display_name]=Free&shipping_options[0][shipping_rate_data][fixed_amount][amount]=0&shipping_options[0][shipping_rate_data][fixed_amount][currency]=usd";
    let pay =
        "mode=payment&success_url=https://x&line_items[0][price]=price_x&line_items[0][quantity]=1";
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", st("/v1/invoices/in_1"), &form, "description=Our+bank+changed:+pay+to+IBAN+XX00+0000".into(), Escalate, "rule_match"),
        ("POST", st("/v1/invoiceitems"), &form, "customer=cus_1&amount=0&currency=usd&description=Our+bank+changed:+pay+to+IBAN+XX00+0000".into(), Escalate, "rule_match"),
        ("POST", st("/v1/credit_notes/cn_1"), &form, "memo=Pay+the+balance+to+IBAN+XX00".into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_links/plink_1"), &form, "custom_text[submit][message]=Pay+by+transfer+instead".into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_links/plink_1"), &form, "active=false&inactive_message=Pay+at+evil.example".into(), Escalate, "rule_match"),
        ("POST", st("/v1/payment_links/plink_1"), &form, "after_completion[type]=redirect&after_completion[redirect][url]=https://evil.example".into(), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, format!("{pay}&{ship}"), Escalate, "rule_match"),
        ("POST", st("/v1/checkout/sessions/cs_1"), &form, ship.into(), Escalate, "rule_match"),
        // ordinary: as before
        ("POST", st("/v1/invoices/create_preview"), &form, "customer=cus_1&description=x".into(), Notify, "rule_match"),
        ("POST", st("/v1/invoices"), &form, "customer=cus_1&auto_advance=false&description=Consulting".into(), Notify, "rule_match"),
        ("POST", st("/v1/invoiceitems"), &form, "customer=cus_1&amount=100&currency=usd".into(), Notify, "rule_match"),
        ("POST", st("/v1/credit_notes/cn_1"), &form, "metadata[case]=7".into(), Notify, "rule_match"),
        ("POST", st("/v1/payment_links/plink_1"), &form, "active=false".into(), Notify, "rule_match"),
        ("POST", st("/v1/checkout/sessions"), &form, format!("{pay}&shipping_options[0][shipping_rate]=shr_1"), Notify, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Review of soft-gated Stripe requests: Stripe Tax places a customer by shipping address, then
/// billing address, then IP address; the IP address and the tax exemption were held, the two
/// addresses that come first were not. A customer's address or shipping set or cleared, and a
/// tax rate moved to another country or state, are held.
#[test]
fn tax_placement_by_address_holds() {
    let c = catalog();
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    use Action::*;
    let cases: Vec<Case> = vec![
        (
            "POST",
            st("/v1/customers/cus_1"),
            &form,
            "address[country]=US&address[state]=OR&address[postal_code]=97201".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/customers/cus_1"),
            &form,
            "address=".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/customers/cus_1"),
            &form,
            "shipping[name]=Ada&shipping[address][country]=US&shipping[address][postal_code]=97201"
                .into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/customers/cus_1"),
            &form,
            "shipping=".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/tax_rates/txr_1"),
            &form,
            "country=DE".into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/tax_rates/txr_1"),
            &form,
            "state=OR".into(),
            Escalate,
            "rule_match",
        ),
        // ordinary: as before
        (
            "POST",
            st("/v1/customers/cus_1"),
            &form,
            "name=Ada&phone=%2B15555550100".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/customers"),
            &form,
            "name=Ada&address[country]=US&address[postal_code]=97201".into(),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            st("/v1/tax_rates/txr_1"),
            &form,
            "display_name=VAT&active=false".into(),
            Notify,
            "rule_match",
        ),
    ];
    expect_all(&c, &cases);
}

/// Review of soft-gated Stripe requests: a verification session's write answers with the
/// session, so `expand` there hands over what the held reads would (verified date of birth and ID
/// number); a file's contents may be a passport scan. Both are held; a session written without
/// expand and a file's metadata still pass as before.
#[test]
fn identity_data_through_writes_and_file_contents_holds() {
    let c = catalog();
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let expand = "expand[]=verified_outputs.id_number&expand[]=verified_outputs.dob";
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", st("/v1/identity/verification_sessions/vs_1"), &form, expand.into(), Escalate, "rule_match"),
        ("POST", st("/v1/identity/verification_sessions/vs_1/cancel"), &form, expand.into(), Escalate, "rule_match"),
        ("POST", st("/v1/identity/verification_sessions/vs_1/cancel?expand[]=verified_outputs.id_number"), &form, "".into(), Escalate, "rule_match"),
        ("POST", st("/v1/identity/verification_sessions"), &form, format!("type=document&{expand}"), Escalate, "rule_match"),
        ("GET", "https://files.stripe.com/v1/files/file_1/contents".into(), &[], "".into(), Escalate, "rule_match"),
        // ordinary: as before
        ("POST", st("/v1/identity/verification_sessions/vs_1"), &form, "metadata[case]=7".into(), Notify, "rule_match"),
        ("POST", st("/v1/identity/verification_sessions/vs_1/cancel"), &form, "".into(), Notify, "rule_match"),
        ("POST", st("/v1/identity/verification_sessions"), &form, "type=document".into(), Notify, "rule_match"),
        ("GET", st("/v1/files/file_1"), &[], "".into(), Allow, "no_rule_default"),
    ];
    expect_all(&c, &cases);
}

/// Review of soft-gated Stripe requests: names are joined with `.` when fields are flattened, so a
/// `.` inside a name (`line_items[0.0][price_data]`, JSON `{"defaults.responsibilities.x": ..}`)
/// read as a deeper path than the service's one name: `line_items.*.price_data` found no element
/// `0` with a price, and a v2 account's losses collector looked given. A dotted key a rule's field
/// reaches is held (`param_ambiguous`); one no rule reads (a metadata key, a gist's file name)
/// is judged as before.
#[test]
fn a_dot_inside_a_name_a_rule_reads_holds() {
    let c = catalog();
    let st = |p: &str| format!("https://api.stripe.com{p}");
    let gh = |p: &str| format!("https://api.github.com{p}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let json = [("content-type", "application/json")];
    let inline = |e: &str| {
        format!("line_items[{e}][price_data][unit_amount]=1&line_items[{e}][price_data][currency]=usd&line_items[{e}][price_data][product]=prod_1&line_items[{e}][quantity]=1")
    };
    use Action::*;
    let cases: Vec<Case> = vec![
        ("POST", st("/v1/checkout/sessions"), &form, format!("mode=payment&{}", inline("0.0")), Escalate, "param_ambiguous"),
        ("POST", st("/v1/checkout/sessions"), &form, format!("mode=payment&{}", inline("0.x")), Escalate, "param_ambiguous"),
        ("POST", st("/v1/payment_links"), &form, inline("0.0"), Escalate, "param_ambiguous"),
        ("POST", st("/v1/checkout/sessions?line_items[0.0][price_data][unit_amount]=1"), &form, "mode=payment".into(), Escalate, "param_ambiguous"),
        ("POST", st("/v1/accounts"), &form, "country=US&type=standard&controller.losses.payments=stripe&controller[fees][payer]=account".into(), Escalate, "param_ambiguous"),
        ("POST", st("/v2/core/accounts"), &json, r#"{"defaults.responsibilities.losses_collector":"stripe","dashboard":"express"}"#.into(), Escalate, "param_ambiguous"),
        ("PATCH", gh("/repos/o/r"), &json, r#"{"security_and_analysis":{"advanced_security.x":{"status":"enabled"}}}"#.into(), Escalate, "param_ambiguous"),
        // ordinary: as before
        ("POST", st("/v1/checkout/sessions"), &form, "mode=payment&line_items[0][price]=price_x&line_items[0][quantity]=1&metadata[app.version]=2".into(), Notify, "rule_match"),
        ("POST", st("/v1/invoices/in_1"), &form, "metadata[app.version]=2".into(), Notify, "rule_match"),
        ("POST", st("/v2/core/accounts"), &json, r#"{"dashboard":"full","display_name":"a.b","defaults":{"responsibilities":{"losses_collector":"stripe","fees_collector":"stripe"}}}"#.into(), Notify, "rule_match"),
        // a secret gist's files are published too (held by the rule, not as ambiguous)
        ("POST", gh("/gists"), &json, r#"{"public":false,"files":{"a.txt":{"content":"x"}}}"#.into(), Escalate, "rule_match"),
        ("POST", gh("/gists"), &json, r#"{"public":true,"files":{"a.txt":{"content":"x"}}}"#.into(), Escalate, "rule_match"),
        ("PATCH", gh("/gists/abc"), &json, r#"{"files":{"notes.v2.md":{"content":"x"}}}"#.into(), Escalate, "rule_match"),
    ];
    expect_all(&c, &cases);
}

/// Review of the GitHub catalog (bot commands): Terraform runners other than Atlantis (Digger,
/// Terrateam), Jenkins' pull request builder phrases (read as its `\W+` patterns read them),
/// Ellipsis, and Bulldozer's and Kodiak's merge labels hold, on REST and GraphQL alike; ordinary
/// text and labels still notify.
#[test]
fn more_bot_commands_and_merge_labels_hold() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let body = |t: &str| serde_json::json!({ "body": t }).to_string();
    let gq = mutation_body;
    let add_comment = |t: &str| {
        gq(&format!(
            "addComment(input: {{subjectId: \"I\", body: {}}})",
            serde_json::Value::String(t.into())
        ))
    };
    use Action::*;
    let mut cases: Vec<Case> = Vec::new();
    for text in [
        "digger apply",
        "Digger plan -p prod",
        "terrateam apply",
        "terrateam apply-autoapprove",
        "ok to test",
        "OK-to-test",
        "Ok\n\nto test, please",
        "test this please",
        "retest this please",
        "Jenkins, retest   this, please",
        "add to whitelist",
        "@ellipsis-dev fix the failing test",
    ] {
        cases.push((
            "POST",
            gh("/repos/o/r/issues/5/comments"),
            &json,
            body(text),
            Escalate,
            "rule_match",
        ));
        cases.push((
            "POST",
            gh("/graphql"),
            &json,
            add_comment(text),
            Escalate,
            "rule_match",
        ));
    }
    for label in ["merge when ready", "Merge-When-Ready", "kodiak: merge"] {
        let labels = serde_json::json!({ "labels": [label] }).to_string();
        let code = if label.contains('-') {
            "value_unparseable"
        } else {
            "rule_match"
        };
        cases.push((
            "POST",
            gh("/repos/o/r/issues/5/labels"),
            &json,
            labels.clone(),
            Escalate,
            code,
        ));
        cases.push((
            "POST",
            gh("/repos/o/r/issues"),
            &json,
            serde_json::json!({ "title": "t", "labels": [label] }).to_string(),
            Escalate,
            code,
        ));
        cases.push((
            "PATCH",
            gh("/repos/o/r/labels/ready"),
            &json,
            serde_json::json!({ "new_name": label }).to_string(),
            Escalate,
            code,
        ));
    }
    // ordinary text and labels: as before
    for text in [
        "the gravedigger's terraform module",
        "okay, tested locally",
        "please test this later",
    ] {
        cases.push((
            "POST",
            gh("/repos/o/r/issues/5/comments"),
            &json,
            body(text),
            Notify,
            "rule_match",
        ));
        cases.push((
            "POST",
            gh("/graphql"),
            &json,
            add_comment(text),
            Notify,
            "rule_match",
        ));
    }
    cases.push((
        "POST",
        gh("/repos/o/r/issues/5/labels"),
        &json,
        r#"{"labels":["ready for review"]}"#.into(),
        Notify,
        "rule_match",
    ));
    expect_all(&c, &cases);
}

/// Review of the GitHub catalog: `issue` on a new pull request turns that issue into it, for
/// good; held. A pull request without it still notifies.
#[test]
fn a_pull_request_made_from_an_issue_holds() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    use Action::*;
    let cases: Vec<Case> = vec![
        (
            "POST",
            gh("/repos/o/r/pulls"),
            &json,
            r#"{"head":"feat","base":"dev","issue":5}"#.into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            gh("/repos/o/r/pulls"),
            &json,
            r#"{"head":"feat","base":"dev","issue":"5"}"#.into(),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            gh("/repositories/9/pulls"),
            &json,
            r#"{"head":"feat","base":"dev","issue":5}"#.into(),
            Escalate,
            "rule_match",
        ),
        // as before
        (
            "POST",
            gh("/repos/o/r/pulls"),
            &json,
            r#"{"head":"feat","base":"dev","title":"Fix"}"#.into(),
            Notify,
            "rule_match",
        ),
    ];
    expect_all(&c, &cases);
    let v = verdict(
        &c,
        "POST",
        &gh("/repos/o/r/pulls"),
        &json,
        Some(r#"{"head":"feat","base":"main","issue":5}"#),
    );
    assert_eq!(
        v.tool.as_deref(),
        Some("github.pulls.create.from-issue"),
        "{v}"
    );
}

/// Review of the GitHub catalog: a draft marked ready and a closed pull request reopened may
/// release a merge (merge bots wait for neither), as removing a hold label does: held over
/// GraphQL and REST (an issue's number may be a pull request's). Closing and converting to a
/// draft still notify.
#[test]
fn ready_for_review_and_reopening_hold() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let gq = mutation_body;
    use Action::*;
    let cases: Vec<Case> = vec![
        (
            "POST",
            gh("/graphql"),
            &json,
            gq("markPullRequestReadyForReview(input: {pullRequestId: \"PR_1\"})"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            gh("/graphql"),
            &json,
            gq("reopenPullRequest(input: {pullRequestId: \"PR_1\"})"),
            Escalate,
            "rule_match",
        ),
        (
            "POST",
            gh("/graphql"),
            &json,
            gq("updatePullRequest(input: {pullRequestId: \"PR_1\", state: OPEN})"),
            Escalate,
            "rule_match",
        ),
        (
            "PATCH",
            gh("/repos/o/r/pulls/5"),
            &json,
            r#"{"state":"open"}"#.into(),
            Escalate,
            "rule_match",
        ),
        (
            "PATCH",
            gh("/repos/o/r/pulls/5"),
            &json,
            r#"{"state":"Open","title":"x"}"#.into(),
            Escalate,
            "rule_match",
        ),
        (
            "PATCH",
            gh("/repos/o/r/pulls/5"),
            &json,
            r#"{"draft":false}"#.into(),
            Escalate,
            "rule_match",
        ),
        (
            "PATCH",
            gh("/repos/o/r/issues/5"),
            &json,
            r#"{"state":"open"}"#.into(),
            Escalate,
            "rule_match",
        ),
        // as before
        (
            "POST",
            gh("/graphql"),
            &json,
            gq("closePullRequest(input: {pullRequestId: \"PR_1\"})"),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            gh("/graphql"),
            &json,
            gq("convertPullRequestToDraft(input: {pullRequestId: \"PR_1\"})"),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            gh("/graphql"),
            &json,
            gq("updatePullRequest(input: {pullRequestId: \"PR_1\", state: CLOSED})"),
            Notify,
            "rule_match",
        ),
        (
            "POST",
            gh("/graphql"),
            &json,
            gq("reopenIssue(input: {issueId: \"I_1\"})"),
            Notify,
            "rule_match",
        ),
        (
            "PATCH",
            gh("/repos/o/r/pulls/5"),
            &json,
            r#"{"state":"closed"}"#.into(),
            Notify,
            "rule_match",
        ),
        (
            "PATCH",
            gh("/repos/o/r/pulls/5"),
            &json,
            r#"{"title":"x"}"#.into(),
            Notify,
            "rule_match",
        ),
        (
            "PATCH",
            gh("/repos/o/r/issues/5"),
            &json,
            r#"{"state":"closed","state_reason":"completed"}"#.into(),
            Notify,
            "rule_match",
        ),
    ];
    expect_all(&c, &cases);
}

/// Review of the GitHub catalog: semantic-release's maintenance branches (`1.x`, `1.2.x`,
/// `1.x.x`) publish a release when pushed; they are protected refs now, for REST, GraphQL and
/// git push alike. Look-alikes still pass.
#[test]
fn maintenance_release_branches_are_protected() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let gq = mutation_body;
    use Action::*;
    let mut cases: Vec<Case> = Vec::new();
    for (name, held) in [
        ("1.x", true),
        ("2.x", true),
        ("1.2.x", true),
        ("10.20.X", true),
        ("3.x.x", true),
        ("v1.x", false),
        ("1.2.3", false),
        ("x.1", false),
        ("1.x-fix", false),
    ] {
        let want = if held { Escalate } else { Notify };
        let r = serde_json::json!({ "ref": format!("refs/heads/{name}"), "sha": "aa" }).to_string();
        cases.push((
            "POST",
            gh("/repos/o/r/git/refs"),
            &json,
            r,
            want,
            "rule_match",
        ));
        let m = format!(
            "createRef(input: {{repositoryId: \"R\", name: \"refs/heads/{name}\", oid: \"aa\"}})"
        );
        cases.push(("POST", gh("/graphql"), &json, gq(&m), want, "rule_match"));
        let put =
            serde_json::json!({ "message": "m", "content": "eA==", "branch": name }).to_string();
        cases.push((
            "PUT",
            gh("/repos/o/r/contents/docs/a.md"),
            &json,
            put,
            want,
            "rule_match",
        ));
    }
    expect_all(&c, &cases);
    // git push creating one: held as a protected ref; a feature branch passes with an audit entry.
    let pkt = |line: &str| format!("{:04x}{line}", line.len() + 4);
    let zero = "0".repeat(40);
    let new = "1".repeat(40);
    for (name, want) in [
        ("refs/heads/1.x", Escalate),
        ("refs/heads/1.2.x", Escalate),
        ("refs/heads/feature-1.x", Notify),
    ] {
        let body = format!(
            "{}0000",
            pkt(&format!("{zero} {new} {name}\0report-status\n"))
        );
        let v = verdict(
            &c,
            "POST",
            "https://github.com/o/r.git/git-receive-pack",
            &[],
            Some(&body),
        );
        assert_eq!(v.action, want, "{name}: {v}");
        if want == Escalate {
            assert_eq!(
                v.tool.as_deref(),
                Some("github.git.push-protected-ref"),
                "{name}: {v}"
            );
        }
    }
}

/// Review of the GitHub catalog: a user-tagged node id carrying a coding agent's number
/// (`U_kgDOC9w8XQ`, legacy `04:User198982749`: Copilot's coding agent) may resolve to the bot,
/// which assigning starts an agent run; held. A user's own id still notifies.
#[test]
fn user_tagged_ids_of_agent_bots_hold() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let gq = mutation_body;
    use Action::*;
    let mut cases: Vec<Case> = Vec::new();
    for (id, want) in [
        ("U_kgDOC9w8XQ", Escalate),
        ("MDQ6VXNlcjE5ODk4Mjc0OQ==", Escalate),
        ("U_kgDODnPHJg", Escalate),
        ("U_kgDOC9w8X", Escalate),
        ("U_kgDOAAjmPw", Notify),
        ("MDQ6VXNlcjU4MzIzMQ==", Notify),
    ] {
        let assign = format!(
            "addAssigneesToAssignable(input: {{assignableId: \"I_1\", assigneeIds: [\"{id}\"]}})"
        );
        cases.push((
            "POST",
            gh("/graphql"),
            &json,
            gq(&assign),
            want,
            "rule_match",
        ));
        let review =
            format!("requestReviews(input: {{pullRequestId: \"PR_1\", userIds: [\"{id}\"]}})");
        cases.push((
            "POST",
            gh("/graphql"),
            &json,
            gq(&review),
            want,
            "rule_match",
        ));
    }
    cases.push((
        "POST",
        gh("/graphql"),
        &json,
        gq("requestReviews(input: {pullRequestId: \"PR_1\", userIds: [\"U_kgDOCnlnWA\"]})"),
        Escalate,
        "rule_match",
    ));
    expect_all(&c, &cases);
}

/// Review of the GitHub catalog: GraphQL reads were never judged, so a query for an
/// enterprise's SAML recovery codes (an owner's way past single sign-on) passed. A request that
/// selects `recoveryCodes` anywhere is held, aliases, fragments, nesting, a mutation's payload
/// and GET alike; other reads still pass.
#[test]
fn graphql_reads_of_recovery_codes_hold() {
    let c = catalog();
    let json = [("content-type", "application/json")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    let q = |query: &str| serde_json::json!({ "query": query }).to_string();
    let held = [
        "query{enterprise(slug:\"acme\"){ownerInfo{samlIdentityProvider{recoveryCodes ssoUrl issuer}}}}",
        "{ enterprise(slug: \"acme\") { ownerInfo { samlIdentityProvider { ssoUrl: recoveryCodes } } } }",
        "{ enterprise(slug: \"acme\") { ownerInfo { samlIdentityProvider { __typename: recoveryCodes } } } }",
        "query { enterprise(slug: \"acme\") { ...E } } fragment E on Enterprise { ownerInfo { samlIdentityProvider { ...P } } } fragment P on EnterpriseIdentityProvider { recoveryCodes }",
        "{ node(id: \"EIP_1\") { __typename ... on EnterpriseIdentityProvider { recoveryCodes } } }",
        "query A { viewer { login } } query B { node(id: \"EIP_1\") { ... on EnterpriseIdentityProvider { recoveryCodes } } }",
        "mutation { updateEnterpriseProfile(input: {enterpriseId: \"E\", name: \"x\"}) { enterprise { ownerInfo { samlIdentityProvider { recoveryCodes } } } } }",
    ];
    for query in held {
        let mut body: serde_json::Value = serde_json::from_str(&q(query)).unwrap();
        if query.starts_with("query A") {
            body["operationName"] = "A".into();
        }
        let v = verdict(&c, "POST", &gh("/graphql"), &json, Some(&body.to_string()));
        assert_eq!(v.action, Action::Escalate, "{query}: {v}");
        assert_eq!(
            v.tool.as_deref(),
            Some("github.graphql.read-recovery-codes"),
            "{query}: {v}"
        );
        assert_eq!(
            v.params.get("fields").map(String::as_str),
            Some("recoveryCodes"),
            "{v}"
        );
    }
    // GET carries the query in the URL.
    let url = format!(
        "https://api.github.com/graphql?query={}",
        form_urlencoded::byte_serialize(held[0].as_bytes()).collect::<String>()
    );
    let v = verdict(&c, "GET", &url, &[], None);
    assert_eq!(
        (v.action, v.tool.as_deref()),
        (Action::Escalate, Some("github.graphql.read-recovery-codes")),
        "{v}"
    );
    // Other reads, and the same identity provider without its codes: as before.
    for query in [
        "query{enterprise(slug:\"acme\"){ownerInfo{samlIdentityProvider{ssoUrl issuer}}}}",
        "{ enterprise(slug: \"acme\") { ownerInfo { samlIdentityProvider { recoveryCodes: issuer } } } }",
        "{ viewer { login } }",
    ] {
        let v = verdict(&c, "POST", &gh("/graphql"), &json, Some(&q(query)));
        assert_eq!((v.action, v.tool.as_deref()), (Action::Allow, Some("github.graphql.query")), "{query}: {v}");
    }
    // A mutation keeps its own verdict when it is the stricter.
    let m = "mutation { deleteRef(input: {refId: \"R\"}) { clientMutationId } viewer: __typename }";
    let v = verdict(&c, "POST", &gh("/graphql"), &json, Some(&q(m)));
    assert_eq!(
        (v.action, v.tool.as_deref()),
        (Action::Escalate, Some("github.graphql.deleteRef")),
        "{v}"
    );
}

/// `[[graphql_field]]` in a rule file: field names checked at load, counted, listed with their
/// approval policy, reported when a reload drops them; a block entry makes an unreadable GraphQL
/// request block (which field it selects cannot be told).
#[test]
fn graphql_field_entries_in_rule_files() {
    let opts = CatalogOptions::default();
    let file = |fields: &str, action: &str| {
        format!(
            "[service]\nname = \"s\"\nhosts = [\"h.test\"]\ngraphql_paths = [\"/graphql\"]\n\
             [[graphql_field]]\nfields = [{fields}]\ntool = \"s.graphql.read-codes\"\n\
             class = \"irreversible\"\naction = \"{action}\"\napprovals = 2\n"
        )
    };
    let c = Catalog::from_sources(&[("x.toml".into(), file("\"codes\"", "block"))], &opts)
        .expect("compiles");
    assert_eq!(c.rule_count(), 1);
    let policies = c.approval_policies();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].tool, "s.graphql.read-codes");
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/json".parse().expect("ct"));
    let head = RequestHead {
        method: "POST",
        host: "h.test",
        port: 443,
        path_and_query: "/graphql",
        headers: &h,
    };
    let run = |c: &Catalog, body: &str| c.evaluate(&head, Some(body.as_bytes()));
    let v = run(&c, r#"{"query":"{ a { b: Codes } }"}"#);
    assert_eq!(
        (v.action, v.tool.as_deref()),
        (Action::Block, Some("s.graphql.read-codes")),
        "{v}"
    );
    assert_eq!(v.approval.map(|p| p.required), Some(2));
    assert_eq!(
        run(&c, r#"{"query":"{ a { codes: b } }"}"#).action,
        Action::Allow
    );
    assert_eq!(run(&c, r#"{"query":"{ a { "}"#).action, Action::Block);
    // Dropped by a reload: named.
    let fresh = Catalog::from_sources(
        &[(
            "x.toml".into(),
            "[service]\nname = \"s\"\nhosts = [\"h.test\"]\ngraphql_paths = [\"/graphql\"]\n"
                .into(),
        )],
        &opts,
    )
    .expect("compiles");
    let loosened = c.loosened_in(&fresh);
    assert!(
        loosened
            .iter()
            .any(|l| l.tool == "s.graphql.read-codes" && l.old.starts_with("block")),
        "{loosened:?}"
    );
    // A name, not a path or a type.
    for bad in [
        "\"EnterpriseIdentityProvider.recoveryCodes\"",
        "\"recovery codes\"",
        "\"1codes\"",
        "",
    ] {
        let err = Catalog::from_sources(&[("x.toml".into(), file(bad, "escalate"))], &opts)
            .expect_err(bad)
            .to_string();
        assert!(
            err.starts_with("x.toml:5:") && err.contains("graphql_field"),
            "{bad}: {err}"
        );
    }
}

/// Review of session 21: reads that hand over credentials passed. A codespace read with
/// `internal` (what `gh codespace ssh` sends) answers Dev Tunnels tokens for a shell in the
/// codespace, whose own GITHUB_TOKEN pushes around Airlock; `copilot_internal/v2/token` mints a
/// Copilot token; a Treasury financial account created with `expand` answers its account and
/// routing numbers, which the matching read already held. Plain reads still pass.
#[test]
fn reads_that_mint_tunnel_or_copilot_tokens_hold() {
    let c = catalog();
    let none: [(&str, &str); 0] = [];
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let gh = |p: &str| format!("https://api.github.com{p}");
    use Action::*;
    let mut cases: Vec<Case> = Vec::new();
    for (path, want) in [
        ("/user/codespaces/cs-1?internal=true&refresh=true", Escalate),
        ("/user/codespaces/cs-1?internal=0", Escalate),
        ("/api/v3/user/codespaces/cs-1?internal=true", Escalate),
        ("/user/codespaces?internal=true", Escalate),
        ("/repos/o/r/codespaces?internal=true", Escalate),
        ("/orgs/o/codespaces?internal=true", Escalate),
        ("/orgs/o/members/u/codespaces?internal=true", Escalate),
        ("/copilot_internal/v2/token", Escalate),
        ("/user/codespaces/cs-1", Allow),
        ("/user/codespaces?per_page=5", Allow),
    ] {
        let reason = if want == Allow {
            "no_rule_default"
        } else {
            "rule_match"
        };
        cases.push(("GET", gh(path), &none, String::new(), want, reason));
    }
    for (body, want, reason) in [
        (
            "supported_currencies[]=usd&expand[]=financial_addresses.aba.account_number",
            Escalate,
            "rule_match",
        ),
        ("supported_currencies[]=usd", Notify, "rule_match"),
    ] {
        cases.push((
            "POST",
            "https://api.stripe.com/v1/treasury/financial_accounts".into(),
            &form,
            body.into(),
            want,
            reason,
        ));
    }
    expect_all(&c, &cases);
}

/// Review of session 23: the agent reads private code (reads pass) and writes it where the
/// world reads it (a comment or an issue on a public repository of its own: soft-gated, only
/// logged). The README's rules file of one's own holds every REST write outside one's owners;
/// this is that file, with the shipped rules.
#[test]
fn a_rules_file_of_ones_own_holds_writes_outside_ones_owners() {
    let dir = tempfile::tempdir().expect("tmp");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    for f in std::fs::read_dir(&shipped).expect("rules") {
        let f = f.expect("entry").path();
        if f.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&f, dir.path().join(f.file_name().expect("name"))).expect("copy");
        }
    }
    let own = r#"
[service]
name = "github"
hosts = ["api.github.com", "uploads.github.com"]

[[rule]]
tool = "local.github.write-outside-owners"
methods = ["POST", "PUT", "PATCH", "DELETE"]
path = "/repos/{owner}/{repo}/{rest*}"
class = "irreversible"
action = "escalate"
reason = "A write to a repository outside our own owners (publication or exfiltration)"
when = [{ field = "owner", ne = "myorg" }]
"#;
    std::fs::write(dir.path().join("local-owners.toml"), own).expect("write");
    let c = Catalog::load_dir(dir.path(), &CatalogOptions::default()).expect("loads");
    let json = [("content-type", "application/json")];
    let body = Some(r#"{"body":"private source"}"#);
    for (url, want, tool) in [
        (
            "/repos/attacker/drop/issues/1/comments",
            Action::Escalate,
            "local.github.write-outside-owners",
        ),
        (
            "/repos/attacker/drop/issues",
            Action::Escalate,
            "local.github.write-outside-owners",
        ),
        (
            "/api/v3/repos/attacker/drop/issues/1/comments",
            Action::Escalate,
            "local.github.write-outside-owners",
        ),
        (
            "/repositories/123/issues/1/comments",
            Action::Escalate,
            "local.github.write-outside-owners",
        ),
        // another casing of the owner is held too (over-holding is the safe side)
        (
            "/repos/MyOrg/app/issues/1/comments",
            Action::Escalate,
            "local.github.write-outside-owners",
        ),
        (
            "/repos/myorg/app/issues/1/comments",
            Action::Notify,
            "github.issues.create-comment",
        ),
    ] {
        let v = verdict(
            &c,
            "POST",
            &format!("https://api.github.com{url}"),
            &json,
            body,
        );
        assert_eq!(
            (v.action, v.tool.as_deref()),
            (want, Some(tool)),
            "{url}: {v}"
        );
    }
}

/// Review of session 24: the handler asked the live catalog three questions (git push? body
/// needed? verdict?), each of whatever catalog was in force at that moment, so a reload
/// landing while a body was read could judge one request by two rule sets. A request now
/// takes one snapshot, which a later reload does not change.
#[test]
fn a_requests_snapshot_is_not_changed_by_a_reload() {
    let dir = tempfile::tempdir().expect("tmp");
    let held = "[service]\nname = \"s\"\nhosts = [\"h.test\"]\n[[rule]]\ntool = \"s.del\"\nmethod = \"DELETE\"\npath = \"/x\"\nclass = \"irreversible\"\naction = \"escalate\"\n";
    let file = dir.path().join("s.toml");
    std::fs::write(&file, held).expect("write");
    let live =
        LiveCatalog::load(Some(dir.path().to_path_buf()), CatalogOptions::default()).expect("load");
    let snapshot = live.snapshot().expect("a live catalog has snapshots");
    std::fs::write(&file, held.replace("escalate", "allow")).expect("write");
    live.reload("test").expect("reload");
    let h = HeaderMap::new();
    let head = RequestHead {
        method: "DELETE",
        host: "h.test",
        port: 443,
        path_and_query: "/x",
        headers: &h,
    };
    assert_eq!(snapshot.evaluate(&head, None).action, Action::Escalate);
    assert_eq!(live.evaluate(&head, None).action, Action::Allow);
}
