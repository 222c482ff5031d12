//! Bypass corpus: attempts to reach an irreversible effect (repository deletion, destructive
//! GraphQL mutations, Stripe refunds, payouts and charges over the limit) without a hold. Each
//! entry is sent through Airlock, with the shipped catalog, as raw bytes inside an intercepted
//! TLS tunnel (so no client normalises the trick away) or with the `h2` crate, to fake upstreams
//! that count calls. Every entry must end held (423 + review id) or refused (4xx), and the
//! upstream must see nothing. An entry that once got through stays here as its regression test.

mod support;

use std::time::Duration;

use support::raw::{self, Exchange};
use support::{Airlock, FakeUpstream};

const GH: &str = "api.github.com";
const ST: &str = "api.stripe.com";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// How an entry must end.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// 423, `Airlock-Outcome: ESCALATE`, a review id; the review is pending.
    Held,
    /// Held, with this reason code among the verdict's.
    HeldFor(&'static str),
    /// Refused with this status and JSON `error` code.
    Refused(u16, &'static str),
}
use Outcome::{Held, HeldFor, Refused};

/// What is sent.
#[derive(Debug, Clone)]
enum Send {
    /// HTTP/1.1 inside a tunnel to `host`: request line, `Host: host` (unless `headers` has a
    /// Host), the headers, Content-Length, `Connection: close`, the body.
    H1 {
        method: &'static str,
        target: String,
        headers: Vec<(&'static str, &'static str)>,
        body: String,
    },
    /// Exactly these bytes inside a tunnel to `host`.
    Raw(String),
    /// CONNECT `host`, TLS with another SNI, then an HTTP/1.1 request.
    Sni { sni: &'static str, request: String },
    /// HTTP/2 (the `h2` crate) inside a tunnel to `host`, with this URI (its authority is the
    /// `:authority`).
    H2 {
        method: &'static str,
        uri: &'static str,
        /// Sent as DATA frames; no content-length is declared (HTTP/2 needs none).
        body: &'static str,
    },
    /// Exactly these bytes to the proxy listener.
    Front(String),
}

struct Entry {
    category: &'static str,
    name: &'static str,
    host: &'static str,
    send: Send,
    expect: Outcome,
}

fn h1(
    method: &'static str,
    target: impl Into<String>,
    headers: &[(&'static str, &'static str)],
    body: impl Into<String>,
) -> Send {
    Send::H1 {
        method,
        target: target.into(),
        headers: headers.to_vec(),
        body: body.into(),
    }
}

fn e(
    category: &'static str,
    name: &'static str,
    host: &'static str,
    send: Send,
    expect: Outcome,
) -> Entry {
    Entry {
        category,
        name,
        host,
        send,
        expect,
    }
}

fn gql(query: &str) -> String {
    serde_json::json!({ "query": query }).to_string()
}

const DELETE_REF: &str = "deleteRef(input: {refId: \"R\"}) { clientMutationId }";

fn corpus() -> Vec<Entry> {
    let del = |name, target: &str| {
        e(
            "path",
            name,
            GH,
            h1("DELETE", target.to_string(), &[], ""),
            Held,
        )
    };
    let long_dots = format!("/repos/o/r{}", "/.".repeat(2000));
    let long_up = format!("/repos/o/r/{}", "x/../".repeat(1000));
    let mut v = vec![
        // ---- path tricks (DELETE /repos/{owner}/{repo}) ----
        del("double leading slash", "//repos/o/r"),
        del("trailing slash", "/repos/o/r/"),
        del("trailing dot segment", "/repos/o/r/."),
        del("dot-dot segment", "/repos/o/x/../r"),
        del("dot-dot at the end", "/repos/o/r/x/.."),
        del("percent-encoded slashes", "/repos%2Fo%2Fr"),
        del("lower-case percent-encoded slash", "/repos%2fo%2fr"),
        del("percent-encoded dot-dot", "/repos/o/x/%2e%2e/r"),
        del("percent-encoded letter", "/%72epos/o/r"),
        del("double-encoded slash", "/repos%252Fo%252Fr"),
        del("double-encoded dot-dot", "/repos/o/x/%252e%252e/r"),
        del("backslash separators", "/repos\\o\\r"),
        del("encoded backslash", "/repos%5Co%5Cr"),
        del("matrix parameter on the last segment", "/repos/o/r;x=1"),
        del("matrix parameter on a literal segment", "/repos;x=1/o/r"),
        del("matrix dot-dot", "/repos/o/x/..;/r"),
        del("empty query", "/repos/o/r?"),
        del("query with a fake path", "/repos/o/r?/../../zen"),
        del("fragment", "/repos/o/r#/zen"),
        del("mixed case literal", "/Repos/o/r"),
        del("upper case literal", "/REPOS/o/r"),
        del("GHES prefix", "/api/v3/repos/o/r"),
        del("GHES prefix mixed case", "/API/V3/repos/o/r"),
        del("repository id form", "/repositories/123"),
        del("fullwidth letter (best-fit folding)", "/%EF%BD%92epos/o/r"),
        del("Cyrillic lookalike letter", "/r%D0%B5pos/o/r"),
        del("many dot segments", &long_dots),
        del("many x/.. pairs", &long_up),
        e(
            "path",
            "matrix parameter on a Stripe literal",
            ST,
            h1("POST", "/v1/refunds;x", &[FORM], "charge=ch_1"),
            Held,
        ),
        e(
            "path",
            "path longer than the header limit",
            GH,
            h1("DELETE", format!("/repos/o/r/{}", "a/..".repeat(20_000)), &[], ""),
            Refused(431, "-"),
        ),
        // ---- method tricks ----
        e("method", "lower-case delete", GH, h1("delete", "/repos/o/r", &[], ""), Held),
        e("method", "mixed-case Delete", GH, h1("Delete", "/repos/o/r", &[], ""), Held),
        e(
            "method",
            "X-HTTP-Method-Override on POST",
            GH,
            h1("POST", "/repos/o/r", &[("X-HTTP-Method-Override", "DELETE")], ""),
            Held,
        ),
        e(
            "method",
            "X-HTTP-Method-Override on GET",
            GH,
            h1("GET", "/repos/o/r", &[("X-HTTP-Method-Override", "DELETE")], ""),
            Held,
        ),
        e(
            "method",
            "X-HTTP-Method on POST",
            GH,
            h1("POST", "/repos/o/r", &[("X-HTTP-Method", "DELETE")], ""),
            Held,
        ),
        e(
            "method",
            "X-Method-Override on POST",
            GH,
            h1("POST", "/repos/o/r", &[("X-Method-Override", "DELETE")], ""),
            Held,
        ),
        e(
            "method",
            "_method in the query",
            GH,
            h1("POST", "/repos/o/r?_method=DELETE", &[], ""),
            Held,
        ),
        e(
            "method",
            "_method in a form body (route with no body rule)",
            GH,
            h1("POST", "/orgs/o/hooks/1", &[FORM], "_method=DELETE"),
            Held,
        ),
        e(
            "method",
            "_method in a form body (Stripe)",
            ST,
            h1("POST", "/v1/customers/cus_1", &[FORM], "_method=DELETE"),
            Held,
        ),
        e("method", "unknown method PURGE", GH, h1("PURGE", "/repos/o/r", &[], ""), Held),
        e("method", "unknown method MOVE", GH, h1("MOVE", "/repos/o/r", &[], ""), Held),
        e("method", "h2 lower-case delete", GH, Send::H2 { method: "delete", uri: "https://api.github.com/repos/o/r", body: "" }, Held),
        e(
            "graphql",
            "h2 GET carrying a mutation in an undeclared body",
            GH,
            Send::H2 { method: "GET", uri: "https://api.github.com/graphql", body: r#"{"query":"mutation { deleteRef(input: {refId: \"R\"}) { clientMutationId } }"}"# },
            HeldFor("graphql_get_body"),
        ),
        e("path", "h2 double slash", GH, Send::H2 { method: "DELETE", uri: "https://api.github.com//repos/o/r/", body: "" }, Held),
        // ---- body tricks on a conditional rule (PATCH /repos/{owner}/{repo} visibility) ----
        e("body", "visibility in upper case", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"visibility":"PUBLIC"}"#), Held),
        e("body", "visibility with blanks", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"visibility":" public"}"#), Held),
        e("body", "private as 0", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"private":0}"#), Held),
        e("body", "private as a string", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"private":"false"}"#), Held),
        e("body", "JSON body with a form Content-Type", GH, h1("PATCH", "/repos/o/r", &[FORM], r#"{"visibility":"public"}"#), Held),
        e("body", "JSON body after blanks, no Content-Type", GH, h1("PATCH", "/repos/o/r", &[], " \n{\"visibility\":\"public\"}"), Held),
        e("body", "JSON body after a byte-order mark", GH, h1("PATCH", "/repos/o/r", &[], "\u{feff}{\"visibility\":\"public\"}"), Held),
        e("body", "visibility as a form field", GH, h1("PATCH", "/repos/o/r", &[FORM], "visibility=public"), Held),
        e("body", "POST onto the PATCH route", GH, h1("POST", "/repos/o/r", &[JSON], r#"{"visibility":"public"}"#), Held),
        e("body", "duplicate visibility", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"visibility":"private","visibility":"public"}"#), Held),
        // ---- header tricks ----
        e(
            "header",
            "duplicate Host",
            GH,
            h1("DELETE", "/repos/o/r", &[("Host", GH), ("Host", ST)], ""),
            Refused(400, "duplicate_host"),
        ),
        e(
            "header",
            "Host with port",
            GH,
            h1("DELETE", "/repos/o/r", &[("Host", "api.github.com:443")], ""),
            Held,
        ),
        e(
            "header",
            "Host with trailing dot",
            GH,
            h1("DELETE", "/repos/o/r", &[("Host", "api.github.com.")], ""),
            Held,
        ),
        e(
            "header",
            "Host in upper case",
            GH,
            h1("DELETE", "/repos/o/r", &[("Host", "API.GITHUB.COM")], ""),
            Held,
        ),
        e(
            "header",
            "Host of another catalog host",
            GH,
            h1("DELETE", "/repos/o/r", &[("Host", ST)], ""),
            Refused(403, "authority_mismatch"),
        ),
        e(
            "header",
            "X-Forwarded-Host on an unlisted path",
            ST,
            h1("POST", "/v1/zen", &[("X-Forwarded-Host", GH), FORM], "a=1"),
            Held,
        ),
        e(
            "header",
            "X-Original-URL on an unlisted DELETE",
            GH,
            h1("DELETE", "/zen", &[("X-Original-URL", "/repos/o/r")], ""),
            Held,
        ),
        e(
            "header",
            "X-Rewrite-URL on an allowed POST",
            ST,
            h1("POST", "/v1/customers", &[("X-Rewrite-URL", "/v1/refunds"), FORM], "charge=ch_1"),
            Held,
        ),
        // ---- host / SNI / authority ----
        e(
            "authority",
            "SNI of another host",
            GH,
            Send::Sni {
                sni: ST,
                request: "DELETE /repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n".into(),
            },
            Refused(403, "sni_mismatch"),
        ),
        e(
            "authority",
            "Stripe call inside a GitHub tunnel",
            GH,
            h1("POST", "/v1/refunds", &[("Host", ST), FORM], "charge=ch_1"),
            Refused(403, "authority_mismatch"),
        ),
        e(
            "authority",
            "absolute-form URI of another host inside the tunnel",
            GH,
            Send::Raw("POST https://api.stripe.com/v1/refunds HTTP/1.1\r\nHost: api.stripe.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()),
            Refused(403, "authority_mismatch"),
        ),
        e(
            "authority",
            "h2 :authority of another host",
            GH,
            Send::H2 { method: "POST", uri: "https://api.stripe.com/v1/refunds", body: "" },
            Refused(403, "authority_mismatch"),
        ),
        e(
            "authority",
            "h2 delete (baseline)",
            GH,
            Send::H2 { method: "DELETE", uri: "https://api.github.com/repos/o/r", body: "" },
            Held,
        ),
        e(
            "authority",
            "CONNECT to the upstream's IP literal",
            GH,
            Send::Front("CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: api.github.com\r\n\r\n".into()),
            Refused(403, "unknown_host_denied"),
        ),
        e(
            "authority",
            "plain-http absolute-form delete",
            GH,
            Send::Front("DELETE http://api.github.com/repos/o/r HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n".into()),
            Held,
        ),
        // ---- GraphQL ----
        e("graphql", "alias", GH, h1("POST", "/graphql", &[JSON], gql(&format!("mutation {{ x: {DELETE_REF} }}"))), Held),
        e(
            "graphql",
            "alias named like a safe mutation",
            GH,
            h1("POST", "/graphql", &[JSON], gql(&format!("mutation {{ addStar: {DELETE_REF} }}"))),
            Held,
        ),
        e(
            "graphql",
            "fragment spread",
            GH,
            h1("POST", "/graphql", &[JSON], gql(&format!("mutation {{ ...F }} fragment F on Mutation {{ {DELETE_REF} }}"))),
            Held,
        ),
        e(
            "graphql",
            "inline fragment",
            GH,
            h1("POST", "/graphql", &[JSON], gql(&format!("mutation {{ ... on Mutation {{ {DELETE_REF} }} }}"))),
            Held,
        ),
        e(
            "graphql",
            "fragment defined twice (first is harmless)",
            GH,
            h1("POST", "/graphql", &[JSON], gql(&format!("mutation {{ ...F }} fragment F on Mutation {{ __typename }} fragment F on Mutation {{ {DELETE_REF} }}"))),
            Held,
        ),
        e(
            "graphql",
            "operationName picks the mutation",
            GH,
            h1("POST", "/graphql", &[JSON], serde_json::json!({"query": format!("query Q {{ viewer {{ login }} }} mutation M {{ {DELETE_REF} }}"), "operationName": "M"}).to_string()),
            Held,
        ),
        e(
            "graphql",
            "two operations, no operationName",
            GH,
            h1("POST", "/graphql", &[JSON], gql(&format!("query Q {{ viewer {{ login }} }} mutation M {{ {DELETE_REF} }}"))),
            Held,
        ),
        e(
            "graphql",
            "operation name used twice",
            GH,
            h1("POST", "/graphql", &[JSON], serde_json::json!({"query": format!("query A {{ viewer {{ login }} }} mutation A {{ {DELETE_REF} }}"), "operationName": "A"}).to_string()),
            Held,
        ),
        e(
            "graphql",
            "batched array body",
            GH,
            h1("POST", "/graphql", &[JSON], format!("[{}]", gql(&format!("mutation {{ {DELETE_REF} }}")))),
            Held,
        ),
        e(
            "graphql",
            "GET with the mutation in ?query=",
            GH,
            h1("GET", "/graphql?query=mutation%20%7B%20deleteRef(input%3A%20%7BrefId%3A%20%22R%22%7D)%20%7B%20clientMutationId%20%7D%20%7D", &[], ""),
            Held,
        ),
        e(
            "graphql",
            "GET with a JSON body",
            GH,
            h1("GET", "/graphql", &[JSON], gql(&format!("mutation {{ {DELETE_REF} }}"))),
            Held,
        ),
        e(
            "graphql",
            "PUT to the endpoint",
            GH,
            h1("PUT", "/graphql", &[JSON], gql(&format!("mutation {{ {DELETE_REF} }}"))),
            Held,
        ),
        e(
            "graphql",
            "comments and odd whitespace",
            GH,
            h1("POST", "/graphql", &[JSON], gql(&format!("# harmless query\n\u{feff}mutation\n# {{ viewer }}\n,,{{\t{DELETE_REF} }}"))),
            Held,
        ),
        e(
            "graphql",
            "persisted query without a query",
            GH,
            h1("POST", "/graphql", &[JSON], r#"{"operationName":"Del","extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}"#),
            Held,
        ),
        e(
            "graphql",
            "mutation keyword as JSON unicode escapes",
            GH,
            h1("POST", "/graphql", &[JSON], format!(r#"{{"query":"\u006d\u0075tation {{ {} }}"}}"#, DELETE_REF.replace('"', "\\\""))),
            Held,
        ),
        e(
            "graphql",
            "query key given twice",
            GH,
            h1("POST", "/graphql", &[JSON], format!(r#"{{"query":"{{ viewer {{ login }} }}","query":"mutation {{ {} }}"}}"#, DELETE_REF.replace('"', "\\\""))),
            Held,
        ),
        e(
            "graphql",
            "form-encoded body",
            GH,
            h1("POST", "/graphql", &[FORM], "query=mutation%7BdeleteRef(input%3A%7BrefId%3A%22R%22%7D)%7BclientMutationId%7D%7D"),
            Held,
        ),
        e("graphql", "endpoint in upper case", GH, h1("POST", "/GRAPHQL", &[JSON], gql(&format!("mutation {{ {DELETE_REF} }}"))), Held),
        e("graphql", "endpoint with a trailing slash", GH, h1("POST", "/graphql/", &[JSON], gql(&format!("mutation {{ {DELETE_REF} }}"))), Held),
        e("graphql", "endpoint with a matrix parameter", GH, h1("POST", "/graphql;v=1", &[JSON], gql(&format!("mutation {{ {DELETE_REF} }}"))), Held),
        e("graphql", "endpoint percent-encoded", GH, h1("POST", "/%67raphql", &[JSON], gql(&format!("mutation {{ {DELETE_REF} }}"))), Held),
        e("graphql", "GHES endpoint", GH, h1("POST", "/api/graphql", &[JSON], gql(&format!("mutation {{ {DELETE_REF} }}"))), Held),
        e(
            "graphql",
            "force flag as a string",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { updateRef(input: {refId: \"R\", oid: \"0\", force: \"true\"}) { clientMutationId } }")),
            Held,
        ),
        e(
            "graphql",
            "force flag through a variable",
            GH,
            h1("POST", "/graphql", &[JSON], serde_json::json!({"query": "mutation($f: Boolean!) { updateRef(input: {refId: \"R\", oid: \"0\", force: $f}) { clientMutationId } }", "variables": {"f": true}}).to_string()),
            Held,
        ),
        e(
            "graphql",
            "force flag as a number",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { updateRef(input: {refId: \"R\", oid: \"0\", force: 1}) { clientMutationId } }")),
            Held,
        ),
        e(
            "graphql",
            "gzip-encoded body",
            GH,
            h1("POST", "/graphql", &[JSON, ("Content-Encoding", "gzip")], "\u{1f}\u{8b}not-really-gzip"),
            Held,
        ),
        // ---- Stripe ----
        e("stripe", "refund with parameters in the query", ST, h1("POST", "/v1/refunds?charge=ch_1", &[FORM], ""), Held),
        e("stripe", "payout with parameters in the query", ST, h1("POST", "/v1/payouts?amount=100&currency=usd", &[FORM], ""), Held),
        e("stripe", "charge over the limit in the query", ST, h1("POST", "/v1/charges?amount=50000&currency=usd&source=tok", &[FORM], ""), Held),
        e("stripe", "amount in the query and the body", ST, h1("POST", "/v1/charges?amount=50000", &[FORM], "amount=50&currency=usd"), Held),
        e("stripe", "amount[] push", ST, h1("POST", "/v1/charges", &[FORM], "amount[]=50000&currency=usd"), Held),
        e("stripe", "amount[0]", ST, h1("POST", "/v1/charges", &[FORM], "amount[0]=50000&currency=usd"), Held),
        e("stripe", "metadata[amount] next to the real amount", ST, h1("POST", "/v1/charges", &[FORM], "metadata[amount]=50&amount=50000&currency=usd"), Held),
        e("stripe", "percent-encoded key", ST, h1("POST", "/v1/charges", &[FORM], "am%6Fount=50000&currency=usd"), Held),
        e("stripe", "amount given twice", ST, h1("POST", "/v1/charges", &[FORM], "amount=50&amount=50000&currency=usd"), Held),
        e("stripe", "JSON duplicate amount", ST, h1("POST", "/v1/charges", &[JSON], r#"{"amount":50,"amount":50000,"currency":"usd"}"#), Held),
        e("stripe", "JSON amount as a string", ST, h1("POST", "/v1/charges", &[JSON], r#"{"amount":"50000","currency":"usd"}"#), Held),
        e("stripe", "JSON body sent as form", ST, h1("POST", "/v1/charges", &[FORM], r#"{"amount":50000,"currency":"usd"}"#), Held),
        e("stripe", "amount as a float", ST, h1("POST", "/v1/charges", &[FORM], "amount=50000.5&currency=usd"), Held),
        e("stripe", "amount as an exponent", ST, h1("POST", "/v1/charges", &[FORM], "amount=1e5&currency=usd"), Held),
        e("stripe", "amount in hex", ST, h1("POST", "/v1/charges", &[FORM], "amount=0xC350&currency=usd"), Held),
        e("stripe", "amount with underscores", ST, h1("POST", "/v1/charges", &[FORM], "amount=50_000&currency=usd"), Held),
        e("stripe", "amount with leading zeros", ST, h1("POST", "/v1/charges", &[FORM], "amount=0050000&currency=usd"), Held),
        e("stripe", "negative amount", ST, h1("POST", "/v1/charges", &[FORM], "amount=-50000&currency=usd"), Held),
        e("stripe", "amount NaN", ST, h1("POST", "/v1/charges", &[FORM], "amount=NaN&currency=usd"), Held),
        e("stripe", "currency in upper case", ST, h1("POST", "/v1/charges", &[FORM], "amount=50000&currency=USD"), Held),
        e("stripe", "unknown currency", ST, h1("POST", "/v1/charges", &[FORM], "amount=50&currency=xts"), Held),
        e("stripe", "currency missing", ST, h1("POST", "/v1/charges", &[FORM], "amount=50000"), Held),
        e("stripe", "JPY 20000 (zero-decimal, about $130)", ST, h1("POST", "/v1/charges", &[FORM], "amount=20000&currency=jpy"), Held),
        e("stripe", "KRW 150000 (zero-decimal)", ST, h1("POST", "/v1/charges", &[FORM], "amount=150000&currency=krw"), Held),
        e("stripe", "KWD 99.000 (three-decimal, about $320)", ST, h1("POST", "/v1/charges", &[FORM], "amount=99000&currency=kwd"), Held),
        e("stripe", "BHD 99.000 (three-decimal, about $260)", ST, h1("POST", "/v1/charges", &[FORM], "amount=99000&currency=bhd"), Held),
        e("stripe", "GBP 99.00 (about $125)", ST, h1("POST", "/v1/charges", &[FORM], "amount=9900&currency=gbp"), Held),
        e("stripe", "EUR 99.99 (about $108)", ST, h1("POST", "/v1/charges", &[FORM], "amount=9999&currency=eur"), Held),
        e("stripe", "payment intent confirm=True", ST, h1("POST", "/v1/payment_intents", &[FORM], "amount=500&currency=usd&confirm=True"), Held),
        e("stripe", "payment intent confirm=1", ST, h1("POST", "/v1/payment_intents", &[FORM], "amount=500&currency=usd&confirm=1"), Held),
        e("stripe", "Stripe-Version header on a refund", ST, h1("POST", "/v1/refunds", &[FORM, ("Stripe-Version", "2099-01-01; refunds_beta=v1")], "charge=ch_1"), Held),
        e("stripe", "Stripe-Account header on a payout", ST, h1("POST", "/v1/payouts", &[FORM, ("Stripe-Account", "acct_1")], "amount=100&currency=usd"), Held),
        e("stripe", "reused Airlock idempotency key", ST, h1("POST", "/v1/refunds", &[FORM, ("Idempotency-Key", "airlock-rev_0000")], "charge=ch_1"), Refused(400, "idempotency_key_reserved")),
        e("stripe", "Airlock idempotency key on a read", ST, h1("GET", "/v1/charges", &[("Idempotency-Key", "airlock-rev_0000")], ""), Refused(400, "idempotency_key_reserved")),
        e("stripe", "refund route upper case", ST, h1("POST", "/V1/REFUNDS", &[FORM], "charge=ch_1"), Held),
        e("stripe", "charge refund subroute", ST, h1("POST", "/v1/charges/ch_1/refunds", &[FORM], ""), Held),
        e("stripe", "legacy charge refund", ST, h1("POST", "/v1/charges/ch_1/refund", &[FORM], ""), Held),
        e("stripe", "lower-case post", ST, h1("post", "/v1/refunds", &[FORM], "charge=ch_1"), Held),
        e("stripe", "gzip-encoded charge body", ST, h1("POST", "/v1/charges", &[FORM, ("Content-Encoding", "gzip")], "amount=50&currency=usd"), Held),
        e("stripe", "v2 payout with a duplicate JSON key", ST, h1("POST", "/v2/money_management/outbound_payments", &[JSON], r#"{"amount":{"value":1,"value":2}}"#), Held),
    ];
    v.extend(closed_world());
    v.extend(differentials());
    v.push(e(
        "stripe",
        "form body as UTF-16",
        ST,
        h1(
            "POST",
            "/v1/charges",
            &[(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-16",
            )],
            "a\0m\0o\0u\0n\0t\0=\x005\x000\x000\x000\x000\0",
        ),
        Held,
    ));
    v
}

/// Writes no rule names: the closed world holds them (`unclassified_route`).
fn closed_world() -> Vec<Entry> {
    let un = |name, host, method, target: &str, body: &str| {
        let headers: &[(&str, &str)] = if host == ST { &[FORM] } else { &[JSON] };
        e(
            "closed world",
            name,
            host,
            h1(method, target.to_string(), headers, body.to_string()),
            HeldFor("unclassified_route"),
        )
    };
    vec![
        un(
            "unlisted GitHub POST",
            GH,
            "POST",
            "/repos/o/r/self-destruct",
            "{}",
        ),
        un(
            "unlisted GitHub PUT",
            GH,
            "PUT",
            "/user/brand-new-setting",
            "{}",
        ),
        un(
            "unlisted GitHub PATCH",
            GH,
            "PATCH",
            "/orgs/o/made-up",
            "{}",
        ),
        un(
            "unlisted GitHub DELETE",
            GH,
            "DELETE",
            "/orgs/o/made-up/thing",
            "",
        ),
        un(
            "unlisted GitHub POST under a GHES prefix",
            GH,
            "POST",
            "/api/v3/repos/o/r/self-destruct",
            "{}",
        ),
        un(
            "unlisted Stripe v1 POST",
            ST,
            "POST",
            "/v1/brand_new_money_mover",
            "amount=1",
        ),
        un(
            "unlisted Stripe v2 POST",
            ST,
            "POST",
            "/v2/core/brand_new",
            "",
        ),
        un(
            "unlisted Stripe POST on a known object",
            ST,
            "POST",
            "/v1/charges/ch_1/teleport",
            "",
        ),
        e(
            "closed world",
            "a repository deleted on the upload host, which gets the GitHub token",
            "uploads.github.com",
            h1("DELETE", "/repos/o/r", &[], ""),
            Held,
        ),
        e(
            "closed world",
            "a refund on the files host, which gets the Stripe key",
            "files.stripe.com",
            h1("POST", "/v1/refunds", &[FORM], "charge=ch_1"),
            Held,
        ),
        e(
            "closed world",
            "unlisted POST on the git host",
            "github.com",
            h1("POST", "/o/r/settings/delete", &[FORM], "x=1"),
            HeldFor("unclassified_route"),
        ),
    ]
}

/// Requests a mainstream framework (Rack/Rails, Express, net/http, Django, Spring) could read
/// differently from Airlock: held whatever the route's bucket (docs/parser-differentials.md).
fn differentials() -> Vec<Entry> {
    let d = |name, host, send, code| e("differential", name, host, send, HeldFor(code));
    let multipart =
        "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n";
    vec![
        d(
            "JSON charge whose form reading sets [amount] (Rack 2) over the limit",
            ST,
            h1(
                "POST",
                "/v1/charges",
                &[JSON],
                "{\"amount\":50,\"currency\":\"usd\",\"x\":\"&[amount]=5000000&[currency]=usd&source=tok_visa&y=\"}",
            ),
            "body_ambiguous",
        ),
        // Session 13 review: an empty Content-Type is none to Rack (a POST body is a form),
        // and Stripe reads any v1 body as a form, so `_method` hid in them.
        e(
            "differential",
            "empty Content-Type hiding _method on a gist",
            GH,
            h1("POST", "/gists/abc", &[("Content-Type", "")], "_method=DELETE"),
            Held,
        ),
        d(
            "Content-Type with parameters but no media type",
            GH,
            h1(
                "POST",
                "/repos/o/r/issues",
                &[("Content-Type", "; charset=utf-8")],
                "_method=DELETE",
            ),
            "content_type_ambiguous",
        ),
        d(
            "text/plain body with _method on a Stripe notify route",
            ST,
            h1(
                "POST",
                "/v1/payouts/po_1",
                &[("Content-Type", "text/plain")],
                "_method=DELETE",
            ),
            "method_override",
        ),
        d(
            "octet-stream body with _method on a Stripe notify route",
            ST,
            h1(
                "POST",
                "/v1/payouts/po_1",
                &[("Content-Type", "application/octet-stream")],
                "_method=DELETE",
            ),
            "method_override",
        ),
        d(
            "JSON body whose form reading has _method, on a Stripe notify route",
            ST,
            h1(
                "POST",
                "/v1/customers/cus_1",
                &[JSON],
                "{\"name\":\"&_method=DELETE&\"}",
            ),
            "method_override",
        ),
        d(
            "JSON charge update whose form reading nests [fraud_details][user_report] (Rack 2)",
            ST,
            h1(
                "POST",
                "/v1/charges/ch_1",
                &[JSON],
                "{\"description\":\"&[fraud_details][user_report]=fraudulent&\"}",
            ),
            "body_ambiguous",
        ),
        d(
            "JSON body with a _method key, on a Stripe notify route",
            ST,
            h1("POST", "/v1/coupons/co_1", &[JSON], "{\"_method\":\"DELETE\"}"),
            "method_override",
        ),
        d(
            "text/plain body with _method after a `;`",
            ST,
            h1(
                "POST",
                "/v1/payouts/po_1",
                &[("Content-Type", "Text/Plain; charset=utf-8")],
                "name=x;_method=DELETE",
            ),
            "method_override",
        ),
        d(
            "multipart body with _method on a notify route",
            GH,
            h1(
                "POST",
                "/repos/o/r/issues",
                &[("Content-Type", "multipart/form-data; boundary=b")],
                multipart,
            ),
            "body_multipart",
        ),
        d(
            "multipart charge",
            ST,
            h1(
                "POST",
                "/v1/charges",
                &[("Content-Type", "multipart/form-data; boundary=b")],
                "--b\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n50000\r\n--b--\r\n",
            ),
            "body_multipart",
        ),
        d(
            "POST without Content-Type (Rack reads a form)",
            GH,
            h1("POST", "/repos/o/r/issues", &[], "_method=DELETE"),
            "content_type_missing",
        ),
        d(
            "charge without Content-Type",
            ST,
            h1("POST", "/v1/charges", &[], "amount=50000&currency=usd"),
            "content_type_missing",
        ),
        d(
            "charge as text/plain",
            ST,
            h1(
                "POST",
                "/v1/charges",
                &[("Content-Type", "text/plain")],
                "amount=50000&currency=usd",
            ),
            "content_type_unsupported",
        ),
        d(
            "visibility change as text/plain",
            GH,
            h1(
                "PATCH",
                "/repos/o/r",
                &[("Content-Type", "text/plain")],
                r#"{"visibility":"public"}"#,
            ),
            "content_type_unsupported",
        ),
        d(
            "form charset ibm037",
            ST,
            h1(
                "POST",
                "/v1/customers",
                &[(
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=ibm037",
                )],
                "name=x",
            ),
            "charset_unsupported",
        ),
        d(
            "JSON charset utf-7",
            GH,
            h1(
                "POST",
                "/repos/o/r/issues",
                &[("Content-Type", "application/json; charset=utf-7")],
                r#"{"title":"x"}"#,
            ),
            "charset_unsupported",
        ),
        d(
            "Content-Type twice",
            ST,
            h1("POST", "/v1/customers", &[FORM, JSON], "name=x"),
            "content_type_ambiguous",
        ),
        d(
            "`;` query separator hides _method",
            GH,
            h1(
                "POST",
                "/repos/o/r/issues?x=1;_method=DELETE",
                &[JSON],
                r#"{"title":"x"}"#,
            ),
            "query_separator",
        ),
        d(
            "`;` query separator hides a second amount",
            ST,
            h1(
                "POST",
                "/v1/charges?currency=usd;amount=50000",
                &[FORM],
                "amount=50",
            ),
            "query_separator",
        ),
        d(
            "gzip body on a notify route",
            GH,
            h1(
                "POST",
                "/repos/o/r/issues",
                &[JSON, ("Content-Encoding", "gzip")],
                "not really gzip",
            ),
            "body_encoded",
        ),
        d(
            "method override header with underscores",
            GH,
            h1(
                "POST",
                "/repos/o/r/issues",
                &[JSON, ("X_HTTP_Method_Override", "DELETE")],
                r#"{"title":"x"}"#,
            ),
            "method_override",
        ),
        d(
            "routing header with underscores",
            GH,
            h1(
                "POST",
                "/repos/o/r/issues",
                &[JSON, ("X_Original_URL", "/repos/o/r")],
                r#"{"title":"x"}"#,
            ),
            "routing_override",
        ),
        d(
            "GraphQL mutation in the URL of a POST",
            GH,
            h1(
                "POST",
                "/graphql?query=mutation%7BdeleteRef(input:%7BrefId:%22R%22%7D)%7BclientMutationId%7D%7D",
                &[JSON],
                gql("query { viewer { login } }"),
            ),
            "graphql_ambiguous",
        ),
        d(
            "GraphQL GET with a `;` separator",
            GH,
            h1(
                "GET",
                "/graphql?query=query%7Ba%7D;query=mutation%7BdeleteRef(input:%7B%7D)%7Bx%7D%7D",
                &[],
                "",
            ),
            "query_separator",
        ),
        d(
            "JSON charge whose form reading is over the limit",
            ST,
            h1(
                "POST",
                "/v1/charges",
                &[JSON],
                r#"{"amount":50,"currency":"usd","x":"&amount=50000&currency=usd&y="}"#,
            ),
            "body_ambiguous",
        ),
        d(
            "JSON repository update whose form reading makes it public",
            GH,
            h1(
                "PATCH",
                "/repos/o/r",
                &[JSON],
                r#"{"description":"&visibility=public&x="}"#,
            ),
            "body_ambiguous",
        ),
        d(
            "format suffix on a repository transfer",
            GH,
            h1(
                "POST",
                "/repos/o/r/transfer.json",
                &[JSON],
                r#"{"new_owner":"x"}"#,
            ),
            "rule_match",
        ),
        d(
            "format suffix on a merge",
            GH,
            h1("PUT", "/repos/o/r/pulls/1/merge.json", &[JSON], "{}"),
            "rule_match",
        ),
        d(
            "format suffix on a refund",
            ST,
            h1("POST", "/v1/refunds.json", &[FORM], "charge=ch_1"),
            "rule_match",
        ),
        d(
            "format suffix and matrix parameter",
            ST,
            h1(
                "POST",
                "/v1/payouts.json;x=1",
                &[FORM],
                "amount=1&currency=usd",
            ),
            "rule_match",
        ),
        // ---- found by the eleventh session's review ----
        d(
            "GraphQL query in the URL of a POST, Rack 2's [query] spelling",
            GH,
            h1(
                "POST",
                "/graphql?%5Bquery%5D=mutation%7BdeleteRef(input:%7BrefId:%22x%22%7D)%7BclientMutationId%7D%7D",
                &[JSON],
                gql("query { viewer { login } }"),
            ),
            "graphql_ambiguous",
        ),
        d(
            "GraphQL operationName in the URL of a POST, spelled query]-style",
            GH,
            h1(
                "POST",
                "/graphql?operationName%5D=M",
                &[JSON],
                serde_json::json!({
                    "query": format!("query Q {{ viewer {{ login }} }} mutation M {{ {DELETE_REF} }}"),
                    "operationName": "Q"
                })
                .to_string(),
            ),
            "graphql_ambiguous",
        ),
        // Session 13 review: GraphQL bodies Rack reads as forms, and GET's Rack 2 spellings.
        d(
            "GraphQL JSON body without Content-Type whose form reading names a mutation",
            GH,
            h1(
                "POST",
                "/graphql",
                &[],
                "{\"query\":\"query{viewer{login}}\",\"x\":\"&query=mutation%7BdeleteRef(input:%7BrefId:%22R%22%7D)%7BclientMutationId%7D%7D&y=\"}",
            ),
            "body_ambiguous",
        ),
        d(
            "GraphQL JSON body under a form Content-Type, [query] spelling after a `;`",
            GH,
            h1(
                "POST",
                "/graphql",
                &[FORM],
                "{\"query\":\"query{viewer{login}}\",\"x\":\";[query]=mutation%7BdeleteRef(input:%7BrefId:%22R%22%7D)%7BclientMutationId%7D%7D\"}",
            ),
            "body_ambiguous",
        ),
        d(
            "GraphQL GET choosing a read, operationName] choosing the mutation",
            GH,
            h1(
                "GET",
                "/graphql?query=query%20Q%7Bviewer%7Blogin%7D%7D%20mutation%20M%7BdeleteRef(input:%7BrefId:%22R%22%7D)%7Bx%7D%7D&operationName=Q&operationName%5D=M",
                &[],
                "",
            ),
            "graphql_ambiguous",
        ),
        d(
            "GraphQL GET with only Rack 2's [query]",
            GH,
            h1(
                "GET",
                "/graphql?%5Bquery%5D=mutation%7BdeleteRef(input:%7BrefId:%22R%22%7D)%7Bx%7D%7D",
                &[],
                "",
            ),
            "graphql_ambiguous",
        ),
        d(
            "GraphQL GET with a persisted query",
            GH,
            h1(
                "GET",
                "/graphql?extensions=%7B%22persistedQuery%22:%7B%22version%22:1,%22sha256Hash%22:%22ab%22%7D%7D",
                &[],
                "",
            ),
            "graphql_ambiguous",
        ),
        d(
            "GraphQL block string indented with a non-ASCII blank (the parser panicked)",
            GH,
            h1(
                "POST",
                "/graphql",
                &[JSON],
                gql("query { viewer(x: \"\"\"a\n  b\n \u{a0}c\"\"\") { login } }"),
            ),
            "graphql_unparseable",
        ),
        d(
            "bracketed amount beside the plain one (Rack 2 and qs read [amount] as amount)",
            ST,
            h1(
                "POST",
                "/v1/charges",
                &[FORM],
                "amount=100&currency=usd&source=tok_visa&[amount]=5000000",
            ),
            "param_ambiguous",
        ),
        d(
            "bracketed amount in the query",
            ST,
            h1(
                "POST",
                "/v1/charges?%5Bamount%5D=5000000",
                &[FORM],
                "amount=100&currency=usd&source=tok_visa",
            ),
            "param_ambiguous",
        ),
        d(
            "confirm spelled ]confirm (Rack 2 strips it)",
            ST,
            h1(
                "POST",
                "/v1/payment_intents",
                &[FORM],
                "amount=5000&currency=usd&]confirm=true",
            ),
            "param_ambiguous",
        ),
        // A route without conditional rules (PATCH /gists/{id} has one since the bucket audit,
        // so its body is read, and `[_method]=…` is held there as shaped like JSON).
        d(
            "[_method] in a form body",
            GH,
            h1("POST", "/gists/abc/comments/1", &[FORM], "[_method]=DELETE"),
            "method_override",
        ),
        d(
            "Content-Type listing two types (Rack cuts at the comma)",
            GH,
            h1(
                "POST",
                "/gists/abc",
                &[(
                    "Content-Type",
                    "application/x-www-form-urlencoded, text/plain",
                )],
                "_method=DELETE",
            ),
            "content_type_ambiguous",
        ),
        d(
            "JSON behind a comment under a form Content-Type",
            GH,
            h1("PATCH", "/repos/o/r", &[FORM], r#"/**/{"visibility":"public"}"#),
            "body_ambiguous",
        ),
        d(
            "a form field hidden from the JSON reader in a comment",
            GH,
            h1(
                "POST",
                "/user/repos",
                &[FORM],
                r#"/*&private=true&*/{"name":"x"}"#,
            ),
            "body_ambiguous",
        ),
        d(
            "a query field standing in for a JSON body field",
            GH,
            h1("POST", "/user/repos?private=true", &[JSON], r#"{"name":"x"}"#),
            "param_ambiguous",
        ),
        d(
            "a field named like the path parameter",
            GH,
            h1(
                "PATCH",
                "/repos/o/r/git/refs/heads/main?ref=x",
                &[JSON],
                r#"{"sha":"aa"}"#,
            ),
            "param_ambiguous",
        ),
        d(
            "branch null on a contents write (null is not given: the default branch)",
            GH,
            h1(
                "PUT",
                "/repos/o/r/contents/README.md",
                &[JSON],
                r#"{"message":"m","content":"eA==","branch":null}"#,
            ),
            "rule_match",
        ),
        d(
            "branch empty on a contents write",
            GH,
            h1(
                "PUT",
                "/repos/o/r/contents/README.md",
                &[JSON],
                r#"{"message":"m","content":"eA==","branch":""}"#,
            ),
            "value_unparseable",
        ),
        d(
            "`;` in a form body (Rack 1, Go before 1.17)",
            ST,
            h1(
                "POST",
                "/v1/payment_intents",
                &[FORM],
                "x=1;confirm=true&amount=5000&currency=usd",
            ),
            "query_separator",
        ),
        e(
            "differential",
            "Connection naming Content-Type (stripped before forwarding)",
            GH,
            h1(
                "POST",
                "/gists/abc",
                &[JSON, ("Connection", "content-type")],
                "_method=DELETE",
            ),
            Refused(400, "connection_header"),
        ),
        // Session 13 review: pull-request branch updates, protected refs beyond main/master
        // (the [git] protected_refs: release/*, tags), legacy Stripe customer parameters.
        e(
            "protected ref",
            "update-branch (merges the base into a head that may be main)",
            GH,
            h1("PUT", "/repos/o/r/pulls/1/update-branch", &[JSON], "{}"),
            Held,
        ),
        e(
            "protected ref",
            "updatePullRequestBranch with REBASE (rewrites the head's history)",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { updatePullRequestBranch(input: {pullRequestId: \"P\", updateMethod: REBASE}) { clientMutationId } }")),
            Held,
        ),
        e(
            "protected ref",
            "updatePullRequestBranch (merge)",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { updatePullRequestBranch(input: {pullRequestId: \"P\"}) { clientMutationId } }")),
            Held,
        ),
        e(
            "protected ref",
            "rename a release branch away (then force-push it unprotected)",
            GH,
            h1("POST", "/repos/o/r/branches/release/1.0/rename", &[JSON], r#"{"new_name":"tmp"}"#),
            Held,
        ),
        e(
            "protected ref",
            "rename a branch onto a release name",
            GH,
            h1("POST", "/repos/o/r/branches/tmp/rename", &[JSON], r#"{"new_name":"release/1.0"}"#),
            Held,
        ),
        e(
            "protected ref",
            "rename main, spelled in another case",
            GH,
            h1("POST", "/repos/o/r/branches/feature/rename", &[JSON], r#"{"new_name":"Main"}"#),
            Held,
        ),
        e(
            "protected ref",
            "create a tag ref",
            GH,
            h1("POST", "/repos/o/r/git/refs", &[JSON], r#"{"ref":"refs/tags/v1.0","sha":"aa"}"#),
            Held,
        ),
        e(
            "protected ref",
            "create a release branch ref",
            GH,
            h1("POST", "/repos/o/r/git/refs", &[JSON], r#"{"ref":"refs/heads/release/2.0","sha":"aa"}"#),
            Held,
        ),
        e(
            "protected ref",
            "GraphQL createRef of a tag",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { createRef(input: {repositoryId: \"R\", name: \"refs/tags/v1.0\", oid: \"aa\"}) { clientMutationId } }")),
            Held,
        ),
        e(
            "protected ref",
            "GraphQL createRef of a release branch",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { createRef(input: {repositoryId: \"R\", name: \"refs/heads/release/2.0\", oid: \"aa\"}) { clientMutationId } }")),
            Held,
        ),
        e(
            "protected ref",
            "GraphQL createLinkedBranch of a release branch",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { createLinkedBranch(input: {issueId: \"I\", oid: \"aa\", name: \"release/2.0\"}) { clientMutationId } }")),
            Held,
        ),
        e(
            "protected ref",
            "a staging deployment of a release branch (auto_merge defaults to true)",
            GH,
            h1("POST", "/repos/o/r/deployments", &[JSON], r#"{"ref":"release/1.0","environment":"staging"}"#),
            Held,
        ),
        e(
            "protected ref",
            "createDeployment by ref id without autoMerge",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { createDeployment(input: {repositoryId: \"R\", refId: \"REF\", environment: \"staging\"}) { clientMutationId } }")),
            Held,
        ),
        e(
            "money",
            "a 100% coupon on a renewal invoice",
            ST,
            h1("POST", "/v1/invoices/in_1", &[FORM], "discounts[0][coupon]=FREE100"),
            Held,
        ),
        e(
            "money",
            "a $1 invoice item priced by a Price",
            ST,
            h1("POST", "/v1/invoiceitems", &[FORM], "customer=cus_1&amount=100&currency=usd&price=price_big"),
            Held,
        ),
        e(
            "path",
            "GraphQL GET under a format suffix Rails takes but a short alphanumeric reading missed",
            GH,
            h1("GET", "/graphql.x-y?query=mutation%7BdeleteRef(input:%7BrefId:%22R%22%7D)%7BclientMutationId%7D%7D", &[], ""),
            Held,
        ),
        e(
            "path",
            "protected ref update under a long format suffix",
            GH,
            h1("PATCH", "/repos/o/r/git/refs/heads/main.a-very-long-format", &[JSON], r#"{"sha":"aa"}"#),
            Held,
        ),
        e(
            "path",
            "an environment named with %2F read as the variables route",
            GH,
            h1("POST", "/repos/o/r/environments/prod%2Fvariables/deployment-branch-policies", &[JSON], r#"{"name":"main"}"#),
            Held,
        ),
        e(
            "path",
            "an environment named with a raw backslash read as the variables route",
            GH,
            h1("POST", "/repos/o/r/environments/prod\\variables/deployment-branch-policies", &[JSON], r#"{"name":"main"}"#),
            Held,
        ),
        e(
            "path",
            "an unlisted write reached through %2F.. inside a lenient route's parameter",
            GH,
            h1("POST", "/notifications/threads/1%2F..%2F..%2F..%2Frepos%2Fo%2Fr%2Fnew-endpoint", &[JSON], "{}"),
            HeldFor("unclassified_route"),
        ),
        e(
            "path",
            "an unlisted Stripe write reached through %2F.. inside an id",
            ST,
            h1("POST", "/v1/customers/cus_1%2F..%2F..%2Fnew_endpoint", &[FORM], "a=b"),
            HeldFor("path_ambiguous"),
        ),
        // .github/ on any branch: a workflow runs with the repository's secrets on a push.
        // Session 18, delayed effects: what arms a bot, a deploy or a later charge.
        e(
            "ci config",
            "a shared action outside .github (other repositories' workflows run it)",
            GH,
            h1("PUT", "/repos/o/shared/contents/deploy/Action.yml", &[JSON], r#"{"message":"m","content":"eA==","branch":"v1-stable"}"#),
            Held,
        ),
        e(
            "ci config",
            "a coding agent's hooks on a scratch branch",
            GH,
            h1("PUT", "/repos/o/r/contents/.claude/settings.json", &[JSON], r#"{"message":"m","content":"eA==","branch":"agent-ci"}"#),
            Held,
        ),
        e(
            "ci config",
            "a Tekton pipeline added by createCommitOnBranch",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"o/r\", branchName: \"agent-ci\"}, expectedHeadOid: \"aa\", message: {headline: \"m\"}, fileChanges: {additions: [{path: \".tekton/on-push.yaml\", contents: \"eA==\"}]}}) { clientMutationId } }")),
            Held,
        ),
        e(
            "protected ref",
            "a commit to a Dependabot pull request's branch (auto-merge stays on)",
            GH,
            h1("PUT", "/repos/o/r/contents/src/lib.rs", &[JSON], r#"{"message":"m","content":"eA==","branch":"dependabot/npm_and_yarn/lodash-4.17.21"}"#),
            Held,
        ),
        e(
            "protected ref",
            "a production branch created (hosting services deploy it by name)",
            GH,
            h1("POST", "/repos/o/r/git/refs", &[JSON], r#"{"ref":"refs/heads/production","sha":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#),
            Held,
        ),
        e(
            "rule_match",
            "a merge label spelled another way",
            GH,
            h1("POST", "/repos/o/r/issues/5/labels", &[JSON], r#"{"labels":["Ready To Merge"]}"#),
            Held,
        ),
        e(
            "rule_match",
            "auto-merge allowed on a repository (bots' auto-merge requests then merge)",
            GH,
            h1("PATCH", "/repos/o/r", &[JSON], r#"{"allow_auto_merge":true}"#),
            Held,
        ),
        e(
            "graphql",
            "a repository unarchived (its schedules and bots run again)",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { unarchiveRepository(input: {repositoryId: \"R_1\"}) { clientMutationId } }")),
            Held,
        ),
        e(
            "money",
            "a forever 100% coupon with a chosen id",
            ST,
            h1("POST", "/v1/coupons", &[FORM], "id=WELCOME&percent_off=100&duration=forever"),
            Held,
        ),
        e(
            "money",
            "a customer's default payment method cleared (renewals fail, subscriptions cancel)",
            ST,
            h1("POST", "/v1/customers/cus_1", &[FORM], "invoice_settings[default_payment_method]="),
            Held,
        ),
        e(
            "money",
            "a payment link whose payments are only authorized",
            ST,
            h1("POST", "/v1/payment_links/plink_1", &[FORM], "payment_intent_data[capture_method]=manual"),
            Held,
        ),
        e(
            "money",
            "a portal that lets customers cancel at once",
            ST,
            h1("POST", "/v1/billing_portal/configurations/bpc_1", &[FORM], "features[subscription_cancel][enabled]=true&features[subscription_cancel][mode]=immediately"),
            Held,
        ),
        e(
            "money",
            "payment instructions in the footer of a customer's every future invoice",
            ST,
            h1("POST", "/v1/customers/cus_1", &[FORM], "invoice_settings[footer]=Please+pay+to+IBAN+XX00+0000"),
            Held,
        ),
        e(
            "money",
            "Terminal offline payments turned on",
            ST,
            h1("POST", "/v1/terminal/configurations/tmc_1", &[FORM], "offline[enabled]=true"),
            Held,
        ),
        e(
            "ci config",
            "commit a workflow to a scratch branch",
            GH,
            h1("PUT", "/repos/o/r/contents/.github/workflows/x.yml", &[JSON], r#"{"message":"m","content":"eA==","branch":"agent-ci"}"#),
            Held,
        ),
        e(
            "ci config",
            "commit a workflow, path percent-encoded and in another case",
            GH,
            h1("PUT", "/repos/o/r/contents/%2EGitHub%2Fworkflows%2Fx.yml", &[JSON], r#"{"message":"m","content":"eA==","branch":"agent-ci"}"#),
            Held,
        ),
        e(
            "ci config",
            "commit a workflow through ./ and //",
            GH,
            h1("PUT", "/repos/o/r/contents/.//.github//workflows/x.yml", &[JSON], r#"{"message":"m","content":"eA==","branch":"agent-ci"}"#),
            Held,
        ),
        e(
            "ci config",
            "a git tree with a workflow entry",
            GH,
            h1("POST", "/repos/o/r/git/trees", &[JSON], r#"{"base_tree":"aa","tree":[{"path":"src/a.rs","mode":"100644","type":"blob","content":"x"},{"path":"./.github/workflows/x.yml","mode":"100644","type":"blob","content":"on: push"}]}"#),
            Held,
        ),
        e(
            "ci config",
            "a git tree placing a .github subtree by sha",
            GH,
            h1("POST", "/repos/o/r/git/trees", &[JSON], r#"{"tree":[{"path":".GITHUB","mode":"040000","type":"tree","sha":"bb"}]}"#),
            Held,
        ),
        e(
            "ci config",
            "createCommitOnBranch adding a workflow to a scratch branch",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"o/r\", branchName: \"agent-ci\"}, expectedHeadOid: \"aa\", message: {headline: \"m\"}, fileChanges: {additions: [{path: \"README.md\", contents: \"eA==\"}, {path: \".github/workflows/x.yml\", contents: \"eA==\"}]}}) { clientMutationId } }")),
            Held,
        ),
        e(
            "ci config",
            "createCommitOnBranch with one addition given without a list (coerced to one)",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"o/r\", branchName: \"agent-ci\"}, expectedHeadOid: \"aa\", message: {headline: \"m\"}, fileChanges: {additions: {path: \".github/workflows/x.yml\", contents: \"eA==\"}}}) { clientMutationId } }")),
            Held,
        ),
        e(
            "ci config",
            "createCommitOnBranch adding a workflow through variables",
            GH,
            h1("POST", "/graphql", &[JSON], r#"{"query":"mutation($c: FileChanges) { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"o/r\", branchName: \"agent-ci\"}, expectedHeadOid: \"aa\", message: {headline: \"m\"}, fileChanges: $c}) { clientMutationId } }","variables":{"c":{"additions":[{"path":".github/workflows/x.yml","contents":"eA=="}]}}}"#),
            Held,
        ),
        e(
            "protected ref",
            "commit a file to a release branch",
            GH,
            h1("PUT", "/repos/o/r/contents/README.md", &[JSON], r#"{"message":"m","content":"eA==","branch":"release/1.0"}"#),
            Held,
        ),
        e(
            "protected ref",
            "createCommitOnBranch to a release branch",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"o/r\", branchName: \"release/1.0\"}, expectedHeadOid: \"aa\", message: {headline: \"m\"}}) { clientMutationId } }")),
            Held,
        ),
        e(
            "protected ref",
            "createCommitOnBranch naming main by id and a scratch branch by name",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { createCommitOnBranch(input: {branch: {id: \"REF_main\", repositoryNameWithOwner: \"o/r\", branchName: \"scratch\"}, expectedHeadOid: \"aa\", message: {headline: \"m\"}}) { clientMutationId } }")),
            Held,
        ),
        e(
            "protected ref",
            "a contents write to branch heads/main",
            GH,
            h1("PUT", "/repos/o/r/contents/README.md", &[JSON], r#"{"message":"m","content":"eA==","branch":"heads/main"}"#),
            Held,
        ),
        e(
            "protected ref",
            "commit an autofix to a release branch",
            GH,
            h1("POST", "/repos/o/r/code-scanning/alerts/1/autofix/commits", &[JSON], r#"{"target_ref":"refs/heads/release/1.0"}"#),
            Held,
        ),
        e(
            "protected ref",
            "updateRef fast-forward by id (the ref may be main)",
            GH,
            h1("POST", "/graphql", &[JSON], gql("mutation { updateRef(input: {refId: \"R\", oid: \"aa\"}) { clientMutationId } }")),
            Held,
        ),
        e(
            "legacy parameter",
            "customer created with a plan (old Stripe-Version: subscribes and charges)",
            ST,
            h1("POST", "/v1/customers", &[FORM, ("Stripe-Version", "2017-08-15")], "email=a%40b.c&plan=gold&source=tok_visa"),
            Held,
        ),
        e(
            "legacy parameter",
            "customer created with a quantity and trial end",
            ST,
            h1("POST", "/v1/customers", &[FORM], "email=a%40b.c&quantity=5&trial_end=now"),
            Held,
        ),
        e(
            "legacy parameter",
            "customer updated with a plan",
            ST,
            h1("POST", "/v1/customers/cus_1", &[FORM], "plan=gold"),
            Held,
        ),
        e(
            "legacy parameter",
            "customer balance set by its old name account_balance",
            ST,
            h1("POST", "/v1/customers/cus_1", &[FORM], "account_balance=-50000"),
            Held,
        ),
        e(
            "legacy parameter",
            "invoice reopened for automatic collection by the old `closed=false`",
            ST,
            h1("POST", "/v1/invoices/in_1", &[FORM, ("Stripe-Version", "2018-09-24")], "closed=false"),
            Held,
        ),
        // Session 13 bucket audit: effective allow/notify outcomes the README's policy puts in an
        // escalate category (tags created by releases, money by meter events, access by blocks
        // and advisory collaborators, weakened protections by forged green checks, publication).
        e("bucket", "release published without `draft` (creates its tag)", GH, h1("POST", "/repos/o/r/releases", &[JSON], r#"{"tag_name":"v9.9.9","name":"x"}"#), Held),
        e("bucket", "release created with draft=false", GH, h1("POST", "/repos/o/r/releases", &[JSON], r#"{"tag_name":"v9.9.9","draft":false}"#), Held),
        e("bucket", "draft release published by update (creates its tag)", GH, h1("PATCH", "/repos/o/r/releases/1", &[JSON], r#"{"draft":false}"#), Held),
        e("bucket", "release given a new tag_name by update", GH, h1("PATCH", "/repos/o/r/releases/1", &[JSON], r#"{"tag_name":"v0.0.1"}"#), Held),
        e("bucket", "release update sent as POST (GitHub takes it as the PATCH)", GH, h1("POST", "/repos/o/r/releases/1", &[JSON], r#"{"draft":false}"#), Held),
        e("bucket", "v1 meter event (bills the customer, no limit)", ST, h1("POST", "/v1/billing/meter_events", &[FORM], "event_name=api_calls&payload[stripe_customer_id]=cus_1&payload[value]=100000000"), Held),
        e("bucket", "v2 meter event", ST, h1("POST", "/v2/billing/meter_events", &[JSON], r#"{"event_name":"api_calls","payload":{"stripe_customer_id":"cus_1","value":"100000000"}}"#), Held),
        e("bucket", "v2 meter event stream", ST, h1("POST", "/v2/billing/meter_event_stream", &[JSON], r#"{"events":[{"event_name":"api_calls","payload":{"stripe_customer_id":"cus_1","value":"100000000"}}]}"#), Held),
        e("bucket", "v1 meter event adjustment (cancels billed usage)", ST, h1("POST", "/v1/billing/meter_event_adjustments", &[FORM], "event_name=api_calls&cancel[identifier]=e1"), Held),
        e("bucket", "v2 meter event adjustment", ST, h1("POST", "/v2/billing/meter_event_adjustments", &[JSON], r#"{"event_name":"api_calls","type":"cancel","cancel":{"identifier":"e1"}}"#), Held),
        e("bucket", "user blocked (removed as collaborator)", GH, h1("PUT", "/user/blocks/alice", &[], ""), Held),
        e("bucket", "user blocked from an organization", GH, h1("PUT", "/orgs/o/blocks/alice", &[], ""), Held),
        e("bucket", "repository made internal", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"visibility":"internal"}"#), Held),
        e("bucket", "repository default branch changed", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"default_branch":"unprotected"}"#), Held),
        e("bucket", "repository forking allowed", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"allow_forking":true}"#), Held),
        e("bucket", "commit status forged green", GH, h1("POST", "/repos/o/r/statuses/aa", &[JSON], r#"{"state":"success","context":"ci/required"}"#), Held),
        e("bucket", "check run created as success", GH, h1("POST", "/repos/o/r/check-runs", &[JSON], r#"{"name":"ci","head_sha":"aa","conclusion":"success"}"#), Held),
        e("bucket", "check run completed as neutral", GH, h1("PATCH", "/repos/o/r/check-runs/1", &[JSON], r#"{"status":"completed","conclusion":"neutral"}"#), Held),
        e("bucket", "check run completed as skipped, sent as POST", GH, h1("POST", "/repos/o/r/check-runs/1", &[JSON], r#"{"conclusion":"skipped"}"#), Held),
        e("bucket", "GraphQL createCheckRun as SUCCESS", GH, h1("POST", "/graphql", &[JSON], gql("mutation { createCheckRun(input: {repositoryId: \"R\", name: \"ci\", headSha: \"aa\", status: COMPLETED, conclusion: SUCCESS}) { clientMutationId } }")), Held),
        e("bucket", "GraphQL updateCheckRun as NEUTRAL through a variable", GH, h1("POST", "/graphql", &[JSON], serde_json::json!({"query": "mutation($c: CheckConclusionState) { updateCheckRun(input: {repositoryId: \"R\", checkRunId: \"C\", conclusion: $c}) { clientMutationId } }", "variables": {"c": "NEUTRAL"}}).to_string()), Held),
        e("bucket", "[_method] in a form body to a gist (its PATCH has a conditional rule now)", GH, h1("POST", "/gists/abc", &[FORM], "[_method]=DELETE"), Held),
        e("bucket", "gist files changed (a public gist publishes them)", GH, h1("PATCH", "/gists/abc", &[JSON], r#"{"files":{"notes.txt":{"content":"secret"}}}"#), Held),
        e("bucket", "advisory collaborating user added (grants access)", GH, h1("PATCH", "/repos/o/r/security-advisories/GHSA-xxxx-xxxx-xxxx", &[JSON], r#"{"collaborating_users":["mallory"]}"#), Held),
        e("bucket", "advisory collaborating team added", GH, h1("PATCH", "/repos/o/r/security-advisories/GHSA-xxxx-xxxx-xxxx", &[JSON], r#"{"collaborating_teams":["o/outsiders"]}"#), Held),
        e("bucket", "payment intent cancelled (authorized funds given up)", ST, h1("POST", "/v1/payment_intents/pi_1/cancel", &[FORM], "cancellation_reason=abandoned"), Held),
        e("bucket", "payment method detached (cannot be reattached)", ST, h1("POST", "/v1/payment_methods/pm_1/detach", &[FORM], ""), Held),
        e("bucket", "customer created with a legacy coupon", ST, h1("POST", "/v1/customers", &[FORM], "email=a%40b.c&coupon=FREE100"), Held),
        e("bucket", "customer updated with a legacy promotion code", ST, h1("POST", "/v1/customers/cus_1", &[FORM], "promotion_code=promo_1"), Held),
        e("bucket", "file uploaded with a public file link, as a form (not multipart)", ST, h1("POST", "/v1/files", &[FORM], "purpose=dispute_evidence&file_link_data[create]=true"), Held),
        e("bucket", "dependency snapshot (a dependency left out closes its Dependabot alerts)", GH, h1("POST", "/repos/o/r/dependency-graph/snapshots", &[JSON], r#"{"version":0,"sha":"aa","ref":"refs/heads/main","job":{"correlator":"c","id":"1"},"detector":{"name":"d","version":"1","url":"https://x"},"scanned":"2024-01-01T00:00:00Z","manifests":{}}"#), Held),
        // Session 15 reviews: Stripe.
        e("bucket", "draft invoice given a shipping cost (charged with it)", ST, h1("POST", "/v1/invoices/in_1", &[FORM], "shipping_cost[shipping_rate_data][display_name]=F&shipping_cost[shipping_rate_data][type]=fixed_amount&shipping_cost[shipping_rate_data][fixed_amount][amount]=5000000&shipping_cost[shipping_rate_data][fixed_amount][currency]=usd"), HeldFor("rule_match")),
        e("bucket", "draft invoice's money sent to a connected account", ST, h1("POST", "/v1/invoices/in_1", &[FORM], "transfer_data[destination]=acct_1"), Held),
        e("bucket", "draft invoice switched to automatic charging", ST, h1("POST", "/v1/invoices/in_1", &[FORM], "collection_method=charge_automatically"), Held),
        e("path", "an unlisted Stripe write behind a charge id with %2F", ST, h1("POST", "/v1/charges/ch_1%2Fdispute%2Fclose", &[FORM], ""), HeldFor("path_ambiguous")),
        e("path", "a legacy nested subscription behind a customer id with a raw backslash", ST, h1("POST", "/v1/customers/cus_1\\subscriptions", &[FORM], "items[0][plan]=gold"), HeldFor("path_ambiguous")),
        e("differential", "JSON dispute update that Stripe reads as a form (submit absent: evidence submitted)", ST, h1("POST", "/v1/disputes/dp_1", &[JSON], r#"{"submit":false,"evidence":{"product_description":"x"}}"#), HeldFor("body_ambiguous")),
        e("differential", "confirm given as an array", ST, h1("POST", "/v1/payment_intents", &[FORM], "amount=5000&currency=usd&confirm[]=true"), HeldFor("value_unparseable")),
        e("bucket", "invoice item with a tax rate on top of its amount", ST, h1("POST", "/v1/invoiceitems", &[FORM], "customer=cus_1&amount=9000&currency=usd&tax_rates[0]=txr_100"), Held),
        e("bucket", "Issuing card read with its number and CVC", ST, h1("GET", "/v1/issuing/cards/ic_1?expand%5B%5D=number&expand%5B%5D=cvc", &[], ""), Held),
        e("bucket", "app secret payload read", ST, h1("GET", "/v1/apps/secrets/find?name=k&scope%5Btype%5D=account", &[], ""), Held),
        e("bucket", "automatic cash balance reconciliation turned on", ST, h1("POST", "/v1/customers/cus_1/cash_balance", &[FORM], "settings[reconciliation_mode]=automatic"), Held),
        e("bucket", "legacy bank_account at account creation", ST, h1("POST", "/v1/accounts", &[FORM], "type=custom&bank_account=btok_1"), Held),
        e("bucket", "payment intent's platform fee changed", ST, h1("POST", "/v1/payment_intents/pi_1", &[FORM], "application_fee_amount=999999"), Held),
        e("bucket", "price amount in another currency changed", ST, h1("POST", "/v1/prices/price_1", &[FORM], "currency_options[eur][unit_amount]=9999999"), Held),
        e("bucket", "draft invoice sent (finalized first)", ST, h1("POST", "/v1/invoices/in_1/send", &[FORM], ""), Held),
        e("differential", "card number read with a Rack 2 spelling of expand", ST, h1("GET", "/v1/issuing/cards/ic_1?[expand][]=number", &[], ""), HeldFor("param_ambiguous")),
        e("differential", "card number read after a `;` in the query", ST, h1("GET", "/v1/issuing/cards/ic_1?a=1;expand[]=number", &[], ""), HeldFor("query_separator")),
        e("bucket", "card numbers read through a list's expand", ST, h1("GET", "/v1/issuing/cards?expand[]=data.number", &[], ""), Held),
        e("path", "an IIS %u escape in a Stripe path", ST, h1("POST", "/v1/invoices/in_1%u002Fpay", &[FORM], ""), HeldFor("path_ambiguous")),
        e("bucket", "a small charge sent to a connected account", ST, h1("POST", "/v1/charges", &[FORM], "amount=9900&currency=usd&source=tok_visa&transfer_data[destination]=acct_1"), Held),
        e("bucket", "a new customer source (past-due invoices retried at once)", ST, h1("POST", "/v1/customers/cus_1", &[FORM], "source=tok_visa"), Held),
        e("bucket", "checkout for an existing customer (their saved card offered)", ST, h1("POST", "/v1/checkout/sessions", &[FORM], "mode=payment&customer=cus_1&line_items[0][price]=price_1&line_items[0][quantity]=1"), Held),
        e("bucket", "a payment link's revenue redirected", ST, h1("POST", "/v1/payment_links/plink_1", &[FORM], "transfer_data[destination]=acct_1"), Held),
        e("bucket", "a customer's card cloned to another account", ST, h1("POST", "/v1/payment_methods", &[FORM], "customer=cus_1&payment_method=pm_1"), Held),
        e("bucket", "a v2 financial address read (full account number)", ST, h1("GET", "/v2/money_management/financial_addresses/finaddr_1", &[], ""), Held),
        // Session 15 reviews: GitHub.
        e("bucket", "repository renamed (rulesets by name stop applying; the name is freed)", GH, h1("PATCH", "/repos/o/prod-api", &[JSON], r#"{"name":"sandbox-api"}"#), Held),
        e("bucket", "GraphQL updateRepository renaming", GH, h1("POST", "/graphql", &[JSON], gql("mutation { updateRepository(input: {repositoryId: \"R\", name: \"old\"}) { clientMutationId } }")), Held),
        e("bucket", "delegated push-protection bypass turned off", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"security_and_analysis":{"secret_scanning_delegated_bypass":{"status":"disabled"}}}"#), Held),
        e("bucket", "release asset uploaded", "uploads.github.com", h1("POST", "/repos/o/r/releases/7/assets?name=tool.tar.gz", &[("Content-Type", "application/octet-stream")], "binary"), Held),
        e("bucket", "release asset renamed (a new upload can take its name)", GH, h1("PATCH", "/repos/o/r/releases/assets/5", &[JSON], r#"{"name":"tool-old.tar.gz"}"#), Held),
        e("bucket", "deployment status success in production", GH, h1("POST", "/repos/o/r/deployments/42/statuses", &[JSON], r#"{"state":"success","environment":"production"}"#), Held),
        e("bucket", "GraphQL createDeploymentStatus SUCCESS", GH, h1("POST", "/graphql", &[JSON], gql("mutation { createDeploymentStatus(input: {deploymentId: \"D\", state: SUCCESS}) { clientMutationId } }")), Held),
        e("ci config", "a tree with .github one level down (re-rooted by a commit of the subtree)", GH, h1("POST", "/repos/o/r/git/trees", &[JSON], r#"{"tree":[{"path":"sub/.github/workflows/evil.yml","mode":"100644","type":"blob","content":"on: push"}]}"#), Held),
        e("bucket", "environment variable overwritten", GH, h1("PATCH", "/repos/o/r/environments/production/variables/DEPLOY_HOST", &[JSON], r#"{"name":"DEPLOY_HOST","value":"evil.example.com"}"#), Held),
        e("bucket", "push-protection bypass reviewers cleared with an empty list", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"security_and_analysis":{"secret_scanning_delegated_bypass_options":{"reviewers":[]}}}"#), Held),
        e("bucket", "issue assigned to Copilot (starts an agent run)", GH, h1("POST", "/repos/o/r/issues/1/assignees", &[JSON], r#"{"assignees":["alice","copilot-swe-agent"]}"#), Held),
        e("bucket", "GraphQL issue created with Copilot assigned by its bot id", GH, h1("POST", "/graphql", &[JSON], gql("mutation { createIssue(input: {repositoryId: \"R\", title: \"t\", assigneeIds: [\"BOT_kgDOC9w8XQ\"]}) { clientMutationId } }")), Held),
        e("bucket", "pull request moved onto main", GH, h1("PATCH", "/repos/o/r/pulls/1", &[JSON], r#"{"base":"main"}"#), Held),
        e("bucket", "Copilot Space made public", GH, h1("PUT", "/users/me/copilot-spaces/1", &[JSON], r#"{"base_role":"reader"}"#), Held),
        e("bucket", "internal repository created", GH, h1("POST", "/orgs/o/repos", &[JSON], r#"{"name":"x","visibility":"internal"}"#), Held),
        e("bucket", "deleted package version restored", GH, h1("POST", "/orgs/o/packages/container/img/versions/1/restore", &[JSON], "{}"), Held),
        e("bucket", "a disabled workflow turned back on", GH, h1("PUT", "/repos/o/r/actions/workflows/deploy.yml/enable", &[JSON], ""), Held),
        e("bucket", "gh-pages branch created (publishes a Pages site)", GH, h1("POST", "/repos/o/r/git/refs", &[JSON], r#"{"ref":"refs/heads/gh-pages","sha":"aa"}"#), Held),
        e("bucket", "Copilot agent task started", GH, h1("POST", "/agents/repos/o/r/tasks", &[JSON], r#"{"prompt":"x","base_ref":"main"}"#), Held),
        // Session 16, GitHub review: labels and text bots act on.
        e("bucket", "a fork's pull_request_target workflow released by a label", GH, h1("POST", "/repos/o/r/issues/7/labels", &[JSON], r#"{"labels":["safe to test"]}"#), Held),
        e("bucket", "a coding agent started by a label given as a bare list", GH, h1("POST", "/repos/o/r/issues/7/labels", &[JSON], r#"["claude"]"#), Held),
        e("bucket", "a held merge released by removing its hold label", GH, h1("DELETE", "/repos/o/r/issues/7/labels/do-not-merge%2Fhold", &[], ""), Held),
        e("bucket", "labels named by id over GraphQL", GH, h1("POST", "/graphql", &[JSON], gql("mutation { addLabelsToLabelable(input: {labelableId: \"PR_1\", labelIds: [\"LA_1\"]}) { clientMutationId } }")), Held),
        e("bucket", "required conversation resolution satisfied by the agent", GH, h1("POST", "/graphql", &[JSON], gql("mutation { resolveReviewThread(input: {threadId: \"PRRT_1\"}) { clientMutationId } }")), Held),
        e("bucket", "Mergify's URL form of a merge command", GH, h1("POST", "/repos/o/r/issues/7/comments", &[JSON], r#"{"body":"https://github.com/Mergifyio queue"}"#), Held),
        e("bucket", "an IssueOps command in the middle of a line", GH, h1("POST", "/repos/o/r/issues/7/comments", &[JSON], r#"{"body":"LGTM, please /deploy production"}"#), Held),
        e("bucket", "a draft issue carrying an agent command", GH, h1("POST", "/orgs/o/projectsV2/1/drafts", &[JSON], r#"{"title":"X","body":"@claude implement this"}"#), Held),
        e("bucket", "a published release turned into a prerelease (latest moves back)", GH, h1("PATCH", "/repos/o/r/releases/42", &[JSON], r#"{"prerelease":true}"#), Held),
        e("bucket", "Copilot assigned by a non-minimal encoding of its bot node id", GH, h1("POST", "/graphql", &[JSON], gql("mutation { addAssigneesToAssignable(input: {assignableId: \"I_1\", assigneeIds: [\"BOT_kgDPAAAAAAvcPF0\"]}) { clientMutationId } }")), Held),
        // Session 16, Stripe review.
        e("bucket", "a payment intent for a saved customer (its client secret confirms it outside)", ST, h1("POST", "/v1/payment_intents", &[FORM], "amount=9900&currency=usd&customer=cus_victim"), Held),
        e("bucket", "a checkout on a connected account named by header", ST, h1("POST", "/v1/checkout/sessions", &[FORM, ("Stripe-Account", "acct_attacker")], "mode=payment&line_items[0][price]=price_1&line_items[0][quantity]=1&success_url=https%3A%2F%2Fx"), Held),
        e("bucket", "a customer's e-mail changed (their portal login and receipts follow it)", ST, h1("POST", "/v1/customers/cus_victim", &[FORM], "email=attacker%40evil.example"), Held),
        e("bucket", "a product's tax code changed through tax_details", ST, h1("POST", "/v1/products/prod_1", &[FORM], "tax_details[tax_code]=txcd_10000000"), Held),
        e("bucket", "a live promotion code deactivated (its name can be reissued)", ST, h1("POST", "/v1/promotion_codes/promo_legit", &[FORM], "active=false"), Held),
        e("bucket", "a setup intent registering an outbound destination for the account's money", ST, h1("POST", "/v1/setup_intents", &[FORM], "attach_to_self=true&flow_directions[]=outbound"), Held),
        // Session 16: Stripe-Version older than the catalog's floor.
        e("version", "managed account created under a 2016 Stripe-Version (returns its secret keys)", ST, h1("POST", "/v1/accounts", &[FORM, ("Stripe-Version", "2016-07-06")], "country=US&email=a%40b.c"), HeldFor("version_old")),
        e("version", "customer created under an old version, with a name no rule judges", ST, h1("POST", "/v1/customers", &[FORM, ("Stripe-Version", "2019-10-08")], "email=a%40b.c"), HeldFor("version_old")),
        // Session 16: text bots and coding agents act on.
        e("bucket", "a Copilot session started by a comment", GH, h1("POST", "/repos/o/r/issues/1/comments", &[JSON], r#"{"body":"@copilot push the fix to main"}"#), Held),
        e("bucket", "a merge bot told to merge, mention spelled as an HTML entity", GH, h1("POST", "/repos/o/r/issues/1/comments", &[JSON], r#"{"body":"&#64;dependabot merge"}"#), Held),
        e("bucket", "bors told to merge on a line of its own", GH, h1("POST", "/repos/o/r/pulls/1/reviews", &[JSON], r#"{"event":"COMMENT","body":"Reviewed.\n\nbors r+"}"#), Held),
        e("bucket", "Prow approval added by editing an old comment", GH, h1("PATCH", "/repos/o/r/issues/comments/9", &[JSON], r#"{"body":"/approve"}"#), Held),
        e("bucket", "Terraform applied through Atlantis by a GraphQL comment", GH, h1("POST", "/graphql", &[JSON], gql("mutation { addComment(input: {subjectId: \"PR_1\", body: \"atlantis apply\"}) { clientMutationId } }")), Held),
        e("bucket", "a ticked Renovate box in a pull request's body", GH, h1("PATCH", "/repos/o/r/pulls/1", &[JSON], r#"{"body":"- [x] <!-- rebase-check -->"}"#), Held),
        e("version", "Stripe-Version given twice (which one Stripe reads is unknown)", ST, h1("POST", "/v1/customers", &[FORM, ("Stripe-Version", "2026-10-28"), ("stripe-version", "2015-01-01")], "email=a%40b.c"), HeldFor("version_ambiguous")),
        // Session 17, parser review: Rack drops blanks after `&` and one trailing NUL.
        e("differential", "a second amount after `& ` (Rack reads it, others read ` amount`)", ST, h1("POST", "/v1/charges", &[FORM], "amount=50&currency=usd&source=tok_visa& amount=5000000"), HeldFor("param_ambiguous")),
        e("differential", "confirm after `& ` on a payment intent", ST, h1("POST", "/v1/payment_intents", &[FORM], "amount=5000&currency=usd& confirm=true"), Held),
        e("differential", "_method after `& ` in a form body Airlock does not otherwise read", GH, h1("POST", "/gists/abc/comments/1", &[FORM], "body=x& _method=DELETE"), HeldFor("method_override")),
        e("differential", "_method after `& ` inside a JSON value Stripe reads as a form", ST, h1("POST", "/v1/plans/plan_1", &[JSON], r#"{"name":"& _method=DELETE"}"#), HeldFor("method_override")),
        e("differential", "a GraphQL mutation after `& ` in a body Rails may read as a form", GH, h1("POST", "/graphql", &[FORM], r#"{"query":"query{viewer{login}}","x":"& query=mutation%7BdeleteRef(input:%7BrefId:%22R%22%7D)%7BclientMutationId%7D%7D&y="}"#), Held),
        e("differential", "visibility after `& ` in a JSON string GitHub may read as a form", GH, h1("PATCH", "/repos/o/r", &[JSON], r#"{"description":"& visibility=public&x="}"#), Held),
        e("differential", "card number read with `& expand[]` in a GET body", ST, h1("GET", "/v1/issuing/cards/ic_1", &[FORM], "x=1& expand[]=number& expand[]=cvc"), Held),
        e("differential", "an outbound flow direction ending in a NUL (Rack drops it)", ST, h1("POST", "/v1/setup_intents", &[FORM], "flow_directions[]=outbound\u{0}"), Held),
        e("differential", "private given in the query of a body-less JSON write", GH, h1("POST", "/user/codespaces/cs1/publish?private=true", &[("Content-Length", "0")], ""), HeldFor("param_ambiguous")),
        e("differential", "an autofix branch named only in the query of a body-less write", GH, h1("POST", "/repos/o/r/code-scanning/alerts/1/autofix/commits?target_ref=refs/heads/scratch", &[], ""), HeldFor("param_ambiguous")),
        e("differential", "a trigger label with an accent and a zero-width space", GH, h1("POST", "/repos/o/r/issues/7/labels", &[JSON], "{\"labels\":[\"s\u{e1}fe to test\u{200b}\"]}"), Held),
        // Session 17, catalog reviews.
        e("bucket", "every label of an issue replaced (a hold label goes)", GH, h1("PUT", "/repos/o/r/issues/7/labels", &[JSON], r#"{"labels":["bug"]}"#), Held),
        e("bucket", "a review bot told to approve", GH, h1("POST", "/repos/o/r/issues/7/comments", &[JSON], r#"{"body":"@coderabbitai approve"}"#), Held),
        e("bucket", "a manual-approval step passed by a lone approval word", GH, h1("POST", "/repos/o/r/issues/7/comments", &[JSON], r#"{"body":"Approved!"}"#), Held),
        e("bucket", "an issue assigned to Claude (an agent run)", GH, h1("POST", "/repos/o/r/issues/7/assignees", &[JSON], r#"{"assignees":["anthropic-code-agent[bot]"]}"#), Held),
        e("bucket", "a template's code copied to another owner", GH, h1("POST", "/repos/corp/tpl/generate", &[JSON], r#"{"owner":"outside","name":"c","private":true}"#), Held),
        e("bucket", "a checkout priced by the agent", ST, h1("POST", "/v1/checkout/sessions", &[FORM], "mode=payment&success_url=https%3A%2F%2Fx&line_items[0][quantity]=1&line_items[0][price_data][product]=prod_1&line_items[0][price_data][unit_amount]=50&line_items[0][price_data][currency]=usd"), Held),
        e("bucket", "dispute evidence staged (filed at the due date)", ST, h1("POST", "/v1/disputes/dp_1", &[FORM], "submit=false&evidence[uncategorized_text]=accepts"), Held),
        e("bucket", "a product catalog import (a presigned upload link)", ST, h1("POST", "/v2/commerce/product_catalog/imports", &[JSON], r#"{"feed_type":"pricing","mode":"replace"}"#), Held),
        // Session 19, catalog review: reads that hand over secrets, webhook URLs, undisclosed
        // vulnerabilities and identity data; bulk notification reads; a milestone closed.
        e("secret read", "secret scanning alerts listed (leaked secrets in plain text by default)", GH, h1("GET", "/repos/o/r/secret-scanning/alerts?state=open", &[], ""), Held),
        e("secret read", "a secret scanning alert read", GH, h1("GET", "/repos/o/r/secret-scanning/alerts/3", &[], ""), Held),
        e("secret read", "an organization's secret scanning alerts", GH, h1("GET", "/orgs/o/secret-scanning/alerts", &[], ""), Held),
        e("secret read", "an enterprise's secret scanning alerts", GH, h1("GET", "/enterprises/e/secret-scanning/alerts?per_page=100", &[], ""), Held),
        e("secret read", "secret scanning alerts by repository id", GH, h1("GET", "/repositories/123/secret-scanning/alerts", &[], ""), Held),
        // Review of session 19: `/organizations/{id}/…`, GitHub's by-id form of `/orgs/{org}/…`.
        e("secret read", "an organization's secret scanning alerts by organization id", GH, h1("GET", "/organizations/123/secret-scanning/alerts", &[], ""), Held),
        e("secret read", "an organization's webhooks by organization id", GH, h1("GET", "/organizations/123/hooks/7/config", &[], ""), Held),
        e("secret read", "an organization's advisories by organization id", GH, h1("GET", "/Organizations/123/security-advisories?state=triage", &[], ""), Held),
        e("secret read", "secret scanning alerts through the GHES prefix", GH, h1("GET", "/api/v3/repos/o/r/secret-scanning/alerts/3", &[], ""), Held),
        e("secret read", "hide_secret=false", GH, h1("GET", "/repos/o/r/secret-scanning/alerts?hide_secret=false", &[], ""), Held),
        e("secret read", "hide_secret=1", GH, h1("GET", "/orgs/o/secret-scanning/alerts?hide_secret=1", &[], ""), Held),
        e("secret read", "hide_secret empty", GH, h1("GET", "/repos/o/r/secret-scanning/alerts?hide_secret=", &[], ""), Held),
        e("secret read", "hide_secret in another case", GH, h1("GET", "/repos/o/r/secret-scanning/alerts/3?hide_secret=TRUE", &[], ""), HeldFor("value_unparseable")),
        e("secret read", "hide_secret as an array", GH, h1("GET", "/repos/o/r/secret-scanning/alerts?hide_secret[]=true", &[], ""), Held),
        e("secret read", "hide_secret given twice (which one GitHub reads is unknown)", GH, h1("GET", "/repos/o/r/secret-scanning/alerts?hide_secret=true&hide_secret=false", &[], ""), HeldFor("duplicate_key")),
        e("secret read", "hide_secret=true given twice", GH, h1("GET", "/repos/o/r/secret-scanning/alerts?hide_secret=true&hide_secret=true", &[], ""), HeldFor("duplicate_key")),
        e("secret read", "hide_secret only in a GET's JSON body (GitHub reads the query)", GH, h1("GET", "/repos/o/r/secret-scanning/alerts", &[JSON], r#"{"hide_secret":true}"#), HeldFor("param_ambiguous")),
        e("secret read", "hide_secret only in a GET's form body", GH, h1("GET", "/orgs/o/secret-scanning/alerts", &[FORM], "hide_secret=true"), HeldFor("param_ambiguous")),
        e("secret read", "hide_secret after a `;` in the query", GH, h1("GET", "/repos/o/r/secret-scanning/alerts?state=open;hide_secret=true", &[], ""), HeldFor("query_separator")),
        e("secret read", "where a leaked secret sits (locations)", GH, h1("GET", "/repos/o/r/secret-scanning/alerts/3/locations?hide_secret=true", &[], ""), Held),
        e("secret read", "repository webhooks listed (full URLs)", GH, h1("GET", "/repos/o/r/hooks", &[], ""), Held),
        e("secret read", "a repository webhook read", GH, h1("GET", "/repos/o/r/hooks/9", &[], ""), Held),
        e("secret read", "a repository webhook's config read", GH, h1("GET", "/repos/o/r/hooks/9/config", &[], ""), Held),
        e("secret read", "a repository webhook delivery read (names the URL)", GH, h1("GET", "/repos/o/r/hooks/9/deliveries/77", &[], ""), Held),
        e("secret read", "organization webhooks listed", GH, h1("GET", "/orgs/o/hooks?per_page=100", &[], ""), Held),
        e("secret read", "an organization webhook read", GH, h1("GET", "/orgs/o/hooks/9", &[], ""), Held),
        e("secret read", "an organization webhook's config read", GH, h1("GET", "/orgs/o/hooks/9/config", &[], ""), Held),
        e("secret read", "a GitHub App's webhook config read", GH, h1("GET", "/app/hook/config", &[], ""), Held),
        e("secret read", "webhooks by repository id", GH, h1("GET", "/repositories/123/hooks", &[], ""), Held),
        e("secret read", "repository security advisories listed (drafts among them)", GH, h1("GET", "/repos/o/r/security-advisories", &[], ""), Held),
        e("secret read", "draft security advisories asked for", GH, h1("GET", "/repos/o/r/security-advisories?state=draft", &[], ""), Held),
        e("secret read", "triage security advisories of an organization", GH, h1("GET", "/orgs/o/security-advisories?state=triage", &[], ""), Held),
        e("secret read", "organization security advisories, any state", GH, h1("GET", "/orgs/o/security-advisories?sort=created", &[], ""), Held),
        e("secret read", "state=published given twice with another value", GH, h1("GET", "/repos/o/r/security-advisories?state=published&state=draft", &[], ""), HeldFor("duplicate_key")),
        e("secret read", "state=Published (case)", GH, h1("GET", "/repos/o/r/security-advisories?state=Published", &[], ""), HeldFor("value_unparseable")),
        e("secret read", "a single security advisory (may be a draft)", GH, h1("GET", "/repos/o/r/security-advisories/GHSA-xxxx-xxxx-xxxx", &[], ""), Held),
        e("secret read", "a single security advisory with state=published", GH, h1("GET", "/repos/o/r/security-advisories/GHSA-xxxx-xxxx-xxxx?state=published", &[], ""), Held),
        e("secret read", "an identity session with its verified ID number", ST, h1("GET", "/v1/identity/verification_sessions/vs_1?expand[]=verified_outputs.id_number", &[], ""), Held),
        e("secret read", "identity sessions listed with their verified dates of birth", ST, h1("GET", "/v1/identity/verification_sessions?expand%5B%5D=data.verified_outputs.dob", &[], ""), Held),
        e("secret read", "an identity report with its document number", ST, h1("GET", "/v1/identity/verification_reports/vr_1?expand[]=document.number", &[], ""), Held),
        e("secret read", "identity reports listed with ID numbers", ST, h1("GET", "/v1/identity/verification_reports?expand[]=data.id_number.id_number", &[], ""), Held),
        e("secret read", "an identity report's expand in a GET body", ST, h1("GET", "/v1/identity/verification_reports/vr_1", &[FORM], "expand[]=document.dob"), Held),
        e("secret read", "an identity session's expand in a Rack 2 spelling", ST, h1("GET", "/v1/identity/verification_sessions/vs_1?[expand][]=verified_outputs", &[], ""), HeldFor("param_ambiguous")),
        e("bucket", "a milestone closed (milestone-closed workflows publish releases)", GH, h1("PATCH", "/repos/o/r/milestones/4", &[JSON], r#"{"state":"closed"}"#), Held),
        e("bucket", "a milestone closed, state in another case", GH, h1("PATCH", "/repos/o/r/milestones/4", &[JSON], r#"{"state":"Closed"}"#), Held),
        e("bucket", "a milestone closed through the repository id", GH, h1("PATCH", "/repositories/123/milestones/4", &[JSON], r#"{"state":"closed","title":"v2.0"}"#), Held),
        // Review of soft-gated Stripe requests.
        e("legacy parameter", "a checkout priced inline by the legacy line_items[amount] (read before 2022-08-01)", ST, h1("POST", "/v1/checkout/sessions", &[FORM], "line_items[0][amount]=1&line_items[0][currency]=usd&line_items[0][name]=Pro+plan&line_items[0][quantity]=1&mode=payment"), Held),
        e("legacy parameter", "a checkout subscription discounted by the legacy subscription_data[coupon]", ST, h1("POST", "/v1/checkout/sessions", &[FORM], "mode=subscription&line_items[0][price]=price_pro&subscription_data[coupon]=FREE100FOREVER"), Held),
        e("bucket", "a price's lookup key cleared (a new price takes it without transfer_lookup_key)", ST, h1("POST", "/v1/prices/price_pro", &[FORM], "lookup_key="), Held),
        e("bucket", "payment instructions put in a draft invoice's memo (description)", ST, h1("POST", "/v1/invoices/in_1", &[FORM], "description=Our+bank+changed:+pay+to+IBAN+XX00+0000"), Held),
        e("bucket", "a $0 line of payment instructions added to a customer's next invoice", ST, h1("POST", "/v1/invoiceitems", &[FORM], "customer=cus_1&amount=0&currency=usd&description=Pay+to+IBAN+XX00+0000"), Held),
        e("bucket", "payment instructions put in a credit note's memo", ST, h1("POST", "/v1/credit_notes/cn_1", &[FORM], "memo=Pay+the+balance+to+IBAN+XX00"), Held),
        e("bucket", "a live payment link's customers redirected after paying", ST, h1("POST", "/v1/payment_links/plink_1", &[FORM], "after_completion[type]=redirect&after_completion[redirect][url]=https%3A%2F%2Fevil.example"), Held),
        e("bucket", "a checkout with shipping priced inline by the agent", ST, h1("POST", "/v1/checkout/sessions", &[FORM], "mode=payment&line_items[0][price]=price_x&line_items[0][quantity]=1&shipping_options[0][shipping_rate_data][type]=fixed_amount&shipping_options[0][shipping_rate_data][display_name]=Express&shipping_options[0][shipping_rate_data][fixed_amount][amount]=999999&shipping_options[0][shipping_rate_data][fixed_amount][currency]=usd"), Held),
        e("bucket", "a customer moved to a place Stripe Tax charges no tax (billing address)", ST, h1("POST", "/v1/customers/cus_1", &[FORM], "address[country]=US&address[state]=OR&address[postal_code]=97201"), Held),
        e("secret read", "an identity session's verified ID number through an update's expand", ST, h1("POST", "/v1/identity/verification_sessions/vs_1", &[FORM], "expand[]=verified_outputs.id_number&expand[]=verified_outputs.dob"), Held),
        e("secret read", "an identity session's verified date of birth through a cancel's expand", ST, h1("POST", "/v1/identity/verification_sessions/vs_1/cancel", &[FORM], "expand[]=verified_outputs.dob"), Held),
        e("secret read", "a file's contents downloaded (an identity document, say)", "files.stripe.com", h1("GET", "/v1/files/file_1/contents", &[], ""), Held),
        e("differential", "a checkout priced inline under element key 0.0 (read as line_items.0.0)", ST, h1("POST", "/v1/checkout/sessions", &[FORM], "mode=payment&line_items[0.0][price_data][unit_amount]=1&line_items[0.0][price_data][currency]=usd&line_items[0.0][price_data][product]=prod_1&line_items[0.0][quantity]=1"), HeldFor("param_ambiguous")),
        e("differential", "a v2 account's losses collector named by one dotted JSON key", ST, h1("POST", "/v2/core/accounts", &[JSON], r#"{"defaults.responsibilities.losses_collector":"stripe","dashboard":"express"}"#), HeldFor("param_ambiguous")),
        // Review of the GitHub catalog: GraphQL reads of credentials.
        e("secret read", "an enterprise's SAML recovery codes read over GraphQL", GH, h1("POST", "/graphql", &[JSON], gql("query{enterprise(slug:\"acme\"){ownerInfo{samlIdentityProvider{recoveryCodes ssoUrl issuer}}}}")), Held),
        e("secret read", "recovery codes behind an alias and a fragment", GH, h1("POST", "/graphql", &[JSON], gql("query { enterprise(slug: \"acme\") { ownerInfo { samlIdentityProvider { ...P } } } } fragment P on EnterpriseIdentityProvider { issuer: recoveryCodes }")), Held),
        e("secret read", "recovery codes read over GraphQL GET", GH, h1("GET", "/graphql?query=%7Benterprise(slug%3A%22acme%22)%7BownerInfo%7BsamlIdentityProvider%7BrecoveryCodes%7D%7D%7D%7D", &[], ""), Held),
        // Review of the GitHub catalog: bot commands and merge labels.
        e("bucket", "Terraform applied through Digger", GH, h1("POST", "/repos/o/r/issues/5/comments", &[JSON], r#"{"body":"digger apply"}"#), Held),
        e("bucket", "Terraform applied through Terrateam over GraphQL", GH, h1("POST", "/graphql", &[JSON], gql("mutation { addComment(input: {subjectId: \"PR_1\", body: \"terrateam apply\"}) { clientMutationId } }")), Held),
        e("bucket", "Jenkins told a fork's code is ok to test, hyphenated", GH, h1("POST", "/repos/o/r/issues/5/comments", &[JSON], r#"{"body":"ok-to-test"}"#), Held),
        e("bucket", "a Bulldozer merge label", GH, h1("POST", "/repos/o/r/issues/5/labels", &[JSON], r#"{"labels":["merge when ready"]}"#), Held),
        // Review of the GitHub catalog: what releases a merge.
        e("bucket", "a draft pull request marked ready (merge bots wait for it)", GH, h1("POST", "/graphql", &[JSON], gql("mutation { markPullRequestReadyForReview(input: {pullRequestId: \"PR_1\"}) { clientMutationId } }")), Held),
        e("bucket", "a closed pull request reopened through REST", GH, h1("PATCH", "/repos/o/r/pulls/5", &[JSON], r#"{"state":"open"}"#), Held),
        // Review of the GitHub catalog: an issue turned into a pull request.
        e("bucket", "a pull request made from an existing issue", GH, h1("POST", "/repos/o/r/pulls", &[JSON], r#"{"head":"feat","base":"main","issue":5}"#), Held),
        // Review of the GitHub catalog: semantic-release maintenance branches.
        e("bucket", "a maintenance release branch created through REST", GH, h1("POST", "/repos/o/r/git/refs", &[JSON], r#"{"ref":"refs/heads/1.x","sha":"aa"}"#), Held),
        e("bucket", "a maintenance release branch created over GraphQL", GH, h1("POST", "/graphql", &[JSON], gql("mutation { createRef(input: {repositoryId: \"R\", name: \"refs/heads/2.x\", oid: \"aa\"}) { clientMutationId } }")), Held),
        // Review of the GitHub catalog: a user's type tag on Copilot's number.
        e("bucket", "Copilot assigned by a user-tagged node id", GH, h1("POST", "/graphql", &[JSON], gql("mutation { addAssigneesToAssignable(input: {assignableId: \"I_1\", assigneeIds: [\"U_kgDOC9w8XQ\"]}) { clientMutationId } }")), Held),
        e("bucket", "Copilot assigned by a legacy user node id", GH, h1("POST", "/graphql", &[JSON], gql("mutation { addAssigneesToAssignable(input: {assignableId: \"I_1\", assigneeIds: [\"MDQ6VXNlcjE5ODk4Mjc0OQ==\"]}) { clientMutationId } }")), Held),
    ]
}

fn render(host: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut s = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        s.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    s
}

async fn send(a: &Airlock, host: &str, how: &Send) -> Exchange {
    let quiet = Duration::from_millis(500);
    match how {
        Send::H1 {
            method,
            target,
            headers,
            body,
        } => {
            let req = render(host, method, target, headers, body);
            raw::in_tunnel(a.addr, host, &a.ca_pem, req.as_bytes(), quiet).await
        }
        Send::Raw(bytes) => raw::in_tunnel(a.addr, host, &a.ca_pem, bytes.as_bytes(), quiet).await,
        Send::Sni { sni, request } => {
            use tokio::io::AsyncWriteExt;
            let mut tls = raw::tunnel(a.addr, host, sni, &a.ca_pem, &[b"http/1.1"]).await;
            tls.write_all(request.as_bytes()).await.expect("write");
            raw::read_exchange(&mut tls, quiet, Duration::from_secs(15)).await
        }
        Send::Front(bytes) => raw::front(a.addr, bytes.as_bytes(), quiet).await,
        Send::H2 { method, uri, body } => {
            let tls = raw::tunnel(a.addr, host, host, &a.ca_pem, &[b"h2"]).await;
            let (mut client, conn) = h2::client::handshake(tls).await.expect("h2");
            tokio::spawn(conn);
            let req = http::Request::builder()
                .method(*method)
                .uri(*uri)
                .body(())
                .expect("request");
            let (resp, mut stream) = client.send_request(req, body.is_empty()).expect("send");
            if !body.is_empty() {
                stream
                    .send_data(bytes::Bytes::from_static(body.as_bytes()), true)
                    .expect("data");
            }
            let resp = resp.await.expect("response");
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = resp.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("data");
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            Exchange {
                responses: vec![raw::Resp {
                    status,
                    headers,
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                }],
                closed: false,
                junk: 0,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_entry_reaches_the_upstream_without_a_hold() {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let a = Airlock::start_classified(
        "[proxy]\nmax_header_bytes = 16384\n[gate]\nmax_pending_per_agent = 10000\n",
        &up,
        &[
            GH,
            ST,
            "github.com",
            "uploads.github.com",
            "files.stripe.com",
        ],
        catalog,
    )
    .await;
    let mut failures = Vec::new();
    let mut held = 0usize;
    // Pending reviews rejected after each entry.
    let mut rejected = 0usize;
    let entries = corpus();
    for entry in &entries {
        let label = format!("[{}] {}", entry.category, entry.name);
        let before = up.count();
        let got = send(&a, entry.host, &entry.send).await;
        let reached = up.count() - before;
        let first = got.responses.first();
        let verdict = match (entry.expect, first) {
            _ if reached > 0 => Err(format!("UPSTREAM CALLED ({reached}x)")),
            (_, None) => Err(format!("no answer: {got:?}")),
            (Held | HeldFor(_), Some(r)) => {
                let id = r.header("airlock-review-id").unwrap_or("");
                let codes = serde_json::from_str::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|b| b["reasonCodes"].as_array().cloned())
                    .unwrap_or_default();
                let reason_ok = match entry.expect {
                    HeldFor(code) => codes.iter().any(|c| c == code),
                    _ => true,
                };
                if r.status == 423
                    && id.starts_with("rev_")
                    && r.header("airlock-outcome") == Some("ESCALATE")
                    && reason_ok
                {
                    held += 1;
                    Ok(())
                } else {
                    Err(format!(
                        "want {:?}, got {} {}",
                        entry.expect, r.status, r.body
                    ))
                }
            }
            (Refused(status, code), Some(r)) => {
                let got_code = r.code().unwrap_or_else(|| "-".into());
                if r.status == status && got_code == code {
                    Ok(())
                } else {
                    Err(format!(
                        "want {status} {code}, got {} {got_code} {}",
                        r.status, r.body
                    ))
                }
            }
        };
        if let Err(why) = verdict {
            failures.push(format!("{label}: {why}"));
        }
        // Each entry is judged on its own: one identical to an earlier entry once the headers
        // Airlock never stores are gone (`X_Original_URL`) would join that entry's review.
        let (code, r) = a
            .admin(
                "POST",
                "/v1/reviews/reject-pending",
                Some(serde_json::json!({"agent": "anonymous"})),
            )
            .await;
        assert_eq!(code, 200, "{r}");
        rejected += r["rejected"].as_array().map_or(0, Vec::len);
    }
    assert!(
        failures.is_empty(),
        "{} of {} entries failed:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
    assert_eq!(up.count(), 0, "the upstream saw nothing");
    assert_eq!(
        rejected, held,
        "every held entry left exactly one pending review"
    );
    // Still healthy: a read passes.
    let r = a
        .client()
        .get("https://api.github.com/repos/o/r")
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1);
}
