//! Every shipped rule, table-driven. For each REST rule of the embedded catalog a concrete request
//! is synthesised from its path template (`{x}` -> `octo`, `{x*}` -> `heads/main`) and a body that
//! satisfies its `when` conditions (JSON for GitHub and Stripe v2, form-encoded for Stripe v1);
//! the verdict must come from that rule with its action, or, for the rules listed in `EXCEPTIONS`,
//! from another rule at least as strict. Each condition of a conditional rule also gets a
//! negative case (that condition unmet -> the rule does not fire). Every `[[graphql]]` entry is
//! sent as `mutation { name(input: {..}) { clientMutationId } }` and must get its action.

use std::collections::{BTreeMap, BTreeSet};

use airlock::rules::{
    Catalog, CatalogOptions, Condition, GraphqlRuleInfo, RefForm, RequestHead, RuleInfo, Test,
    Verdict,
};
use http::HeaderMap;
use serde_json::Value;

/// Sample for a one-segment parameter `{x}`.
const SEG: &str = "octo";
/// Sample for a many-segment parameter `{x*}`.
const MANY: &str = "heads/main";

/// Rules whose synthesised request is legitimately decided by another, at least as strict rule:
/// (tool, why). Each entry must actually be needed (a stale entry fails the test).
const EXCEPTIONS: &[(&str, &str)] = &[
    (
        "github.apps.check-token",
        "a read, but a POST to /applications/{client_id}/token is also weighed as the PATCH there \
         (github.apps.reset-token, escalate)",
    ),
    (
        "github.repos.generate-release-notes",
        "a read, but a POST to …/releases/generate-notes is also weighed as PATCH \
         …/releases/{release_id} (github.repos.update-release, notify)",
    ),
    (
        "github.orgs.list-attestations-bulk",
        "POST /orgs/{org}/{security_product}/{enablement} (escalate, fails closed for any \
         POST /orgs/{org}/x/y) matches it too",
    ),
    (
        "github.code-security.create-configuration",
        "POST /orgs/{org}/{security_product}/{enablement} (escalate, fails closed for any \
         POST /orgs/{org}/x/y) matches it too",
    ),
    (
        "github.secret-scanning.bulk-create-org-custom-patterns",
        "POST /orgs/{org}/{security_product}/{enablement} (escalate, fails closed for any \
         POST /orgs/{org}/x/y) matches it too",
    ),
    (
        "github.repos.update",
        "every value of `visibility` and `private` escalates (private: a public repository loses \
         its stars and watchers for good; public and internal widen who reads it), so the request \
         that negates those rules sets one and a stricter rule decides it",
    ),
    (
        "github.repos.update.make-private",
        "`private: true` is also `visibility: private` to the negated siblings, which escalate \
         the same",
    ),
    (
        "github.repos.update-release.tag",
        "its request also gives `draft: false` (to negate the unpublish rule), which publishes: \
         the publish rule, as strict, decides it",
    ),
    (
        "stripe.payment_intents.update",
        "a `currency` given escalates (the same amount read in another currency), and the \
         over-limit rule's negation gives one",
    ),
    (
        "stripe.payment_intents.update.capture_method",
        "a `currency` given escalates (the over-limit rule's negation gives one), as strict",
    ),
    (
        "stripe.payment_intents.update.card_capture_method",
        "a `currency` given escalates (the over-limit rule's negation gives one), as strict",
    ),
    (
        "github.repos.update-release",
        "every value of `draft` escalates (true unpublishes, false publishes), so the request \
         that negates those rules sets one and a stricter rule decides it",
    ),
];

/// Rules the test does not exercise at all: (tool, why). Any rule neither covered nor listed
/// here fails the test.
const SKIPPED: &[(&str, &str)] = &[];

fn catalog() -> Catalog {
    Catalog::embedded(&CatalogOptions::default()).expect("embedded catalog compiles")
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        other => Value::String(other.to_string()),
    }
}

/// A value that differs from `v` (for `eq` negatives and `ne` positives).
fn other(v: &toml::Value) -> Value {
    match v {
        toml::Value::Boolean(b) => Value::Bool(!b),
        toml::Value::Integer(i) => Value::from(i + 1),
        toml::Value::Float(f) => Value::from(f + 1.0),
        toml::Value::String(s) => Value::String(format!("{s}-other")),
        other => Value::String(format!("{other}-other")),
    }
}

/// Field assignments (`None`: leave the field out) that make `c` hold (`want`) or fail.
fn assign(c: &Condition, want: bool) -> Vec<(String, Option<Value>)> {
    // A `*` field (any element) gets one element, named so that it nests in JSON and in
    // GraphQL alike.
    let one = |v: Option<Value>| vec![(c.field.replace('*', "item"), v)];
    match (&c.test, want) {
        (Test::Eq(v), true) | (Test::Ne(v), false) => one(Some(toml_to_json(v))),
        (Test::Eq(v), false) | (Test::Ne(v), true) => one(Some(other(v))),
        (Test::In(vs), true) => one(Some(toml_to_json(vs.first().expect("in: non-empty")))),
        (Test::In(_), false) => one(Some(Value::String("not-listed".into()))),
        (Test::Gt(n), true) => one(Some(Value::from(n + 1.0))),
        (Test::Gt(n), false) | (Test::Lt(n), false) | (Test::Gte(n), true) => {
            one(Some(Value::from(*n)))
        }
        (Test::Gte(n), false) | (Test::Lt(n), true) => one(Some(Value::from(n - 1.0))),
        (Test::Present(p), w) => one((*p == w).then(|| Value::String("x".into()))),
        // main is among the shipped catalog's [git] protected_refs.
        (Test::ProtectedRef(form), w) => {
            let name = match (form, w) {
                (RefForm::Branch, true) => "main",
                (RefForm::Branch, false) => "feature-x",
                (RefForm::Ref, true) => "refs/heads/main",
                (RefForm::Ref, false) => "refs/heads/feature-x",
            };
            one(Some(Value::String(name.into())))
        }
        // A `*` field (any element) gets one element, named so that it nests in JSON and in
        // GraphQL alike.
        // The path's own value (every `{x}` is `octo`), or another.
        (Test::NeParam(_), w) => one(Some(Value::String(
            if w { "octo-renamed" } else { SEG }.into(),
        ))),
        // One field more than listed; negated, none at all (a listed field may be nested by
        // a sibling rule's condition, `labels.*`).
        (Test::OtherThan(_), true) => {
            let name = match c.field.strip_suffix(".*") {
                Some(object) => format!("{object}.zz_unlisted_field"),
                None => "zz_unlisted_field".to_string(),
            };
            vec![(name, Some(Value::String("x".into())))]
        }
        (Test::OtherThan(_), false) => Vec::new(),
        // `**/dir` (at any depth) gets the directory one level down.
        (Test::PathUnder(dirs), w) => {
            let dir = dirs.first().expect("a directory");
            let path = match w {
                true => format!("{}/workflows/ci.yml", dir.replace("**", "sub")),
                false => "src/main.rs".to_string(),
            };
            vec![(c.field.replace('*', "item"), Some(Value::String(path)))]
        }
        (Test::NotUserNodeId, w) => one(Some(Value::String(
            if w { "BOT_kgDOC9w8XQ" } else { "U_kgDOAAAAAQ" }.into(),
        ))),
        // `@copilot` is among the shipped GitHub command_texts.
        (Test::Commands, w) => one(Some(Value::String(
            if w {
                "please @copilot fix it"
            } else {
                "thanks"
            }
            .into(),
        ))),
        (
            Test::MoneyOver {
                major,
                currency_field,
            },
            w,
        ) => {
            // usd has two decimals: `major` units are major * 100 minor units.
            let minor = (major * 100.0).round() as i64 + i64::from(w);
            vec![
                (c.field.clone(), Some(Value::from(minor))),
                (currency_field.clone(), Some(Value::String("usd".into()))),
            ]
        }
    }
}

/// Applies assignments not already decided (the first assignment of a field wins).
fn apply(fields: &mut BTreeMap<String, Option<Value>>, assignments: Vec<(String, Option<Value>)>) {
    for (k, v) in assignments {
        fields.entry(k).or_insert(v);
    }
}

/// Dotted fields -> nested JSON object.
fn nest(fields: &BTreeMap<String, Value>) -> Value {
    let mut root = serde_json::Map::new();
    for (k, v) in fields {
        let parts: Vec<&str> = k.split('.').collect();
        let mut cur = &mut root;
        for p in &parts[..parts.len() - 1] {
            cur = cur
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Default::default()))
                .as_object_mut()
                .unwrap_or_else(|| panic!("nested object: {fields:?}"));
        }
        cur.insert(parts[parts.len() - 1].to_string(), v.clone());
    }
    Value::Object(root)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Dotted fields -> `a[b][c]=v&...`.
fn form(fields: &BTreeMap<String, Value>) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        let mut parts = k.split('.');
        let mut key = parts.next().unwrap_or_default().to_string();
        for p in parts {
            key.push_str(&format!("[{p}]"));
        }
        ser.append_pair(&key, &text(v));
    }
    ser.finish()
}

/// GraphQL literal for a JSON value.
fn gql_literal(v: &Value) -> String {
    match v {
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}: {}", gql_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(gql_literal).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

struct Request {
    method: String,
    host: String,
    path: String,
    content_type: Option<&'static str>,
    body: Option<String>,
}

impl Request {
    fn eval(&self, c: &Catalog) -> Verdict {
        let mut h = HeaderMap::new();
        if let Some(ct) = self.content_type {
            h.insert("content-type", ct.parse().expect("ct"));
        }
        let head = RequestHead {
            method: &self.method,
            host: &self.host,
            port: 443,
            path_and_query: &self.path,
            headers: &h,
        };
        let body = if c.needs_body(&head) {
            Some(self.body.as_deref().unwrap_or("").as_bytes())
        } else {
            None
        };
        c.evaluate(&head, body)
    }
}

fn sample_host(hosts: &[String]) -> String {
    let h = hosts.first().expect("service has a host");
    match h.strip_prefix("*.") {
        Some(suffix) => format!("sample.{suffix}"),
        None => h.clone(),
    }
}

/// The request for `rule` and `method` with these field assignments (path parameters named by
/// a field go into the path, the rest into the body).
fn synthesise(rule: &RuleInfo, method: &str, fields: &BTreeMap<String, Option<Value>>) -> Request {
    let mut params = BTreeSet::new();
    let path: Vec<String> = rule
        .path
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let (name, sample) = match name.strip_suffix('*') {
                        Some(n) => (n, MANY),
                        None => (name, SEG),
                    };
                    params.insert(name.to_string());
                    match fields.get(name) {
                        Some(Some(v)) => text(v),
                        _ => sample.to_string(),
                    }
                }
                None => s.to_string(),
            },
        )
        .collect();
    let body: BTreeMap<String, Value> = fields
        .iter()
        .filter(|(k, _)| !params.contains(*k))
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();
    let form_encoded = rule.service == "stripe" && !rule.path.starts_with("/v2/");
    // A read's parameters are its query (a field only in a read's body is held as ambiguous).
    let read = matches!(method, "GET" | "HEAD");
    let mut path = path.join("/");
    if read && !body.is_empty() {
        path = format!("{path}?{}", form(&body));
    }
    let (content_type, body) = if body.is_empty() || read {
        (None, None)
    } else if form_encoded {
        (Some("application/x-www-form-urlencoded"), Some(form(&body)))
    } else {
        (Some("application/json"), Some(nest(&body).to_string()))
    };
    Request {
        method: method.to_string(),
        host: sample_host(&rule.hosts),
        path,
        content_type,
        body,
    }
}

/// Assignments that keep every sibling rule (same service, path and a shared method) from
/// firing, so the rule under test is the one that decides.
fn sibling_negations(all: &[RuleInfo], rule: &RuleInfo) -> Vec<(String, Option<Value>)> {
    all.iter()
        .filter(|o| {
            o.id != rule.id
                && o.service == rule.service
                && o.path == rule.path
                && o.methods.iter().any(|m| rule.methods.contains(m))
        })
        // Every condition unmet, except one on a path parameter (`invoice ne
        // "create_preview"`), whose negation would route the request elsewhere.
        .flat_map(|o| {
            o.when
                .iter()
                .filter(|c| !o.path.contains(&format!("{{{}}}", c.field)))
                .flat_map(|c| assign(c, false))
        })
        .collect()
}

fn describe(r: &Request, v: &Verdict) -> String {
    format!(
        "{} {}{} body={:?} -> {:?} by {:?} ({:?}) {:?}",
        r.method, r.host, r.path, r.body, v.action, v.tool, v.rule_id, v.reason_codes
    )
}

#[test]
fn every_rest_rule_decides_its_own_request() {
    let c = catalog();
    let rules = c.rules();
    assert!(rules.len() > 250, "catalog lists {} rules", rules.len());
    let mut failures = Vec::new();
    let mut covered = 0usize;
    let mut excepted_used = BTreeSet::new();
    let mut method_cases = 0usize;
    let mut negatives = 0usize;
    for rule in &rules {
        if SKIPPED.iter().any(|(t, _)| *t == rule.tool) {
            continue;
        }
        let siblings = sibling_negations(&rules, rule);
        let mut rule_ok = true;
        for method in &rule.methods {
            method_cases += 1;
            // Positive: every condition holds.
            let mut fields = BTreeMap::new();
            for cond in &rule.when {
                apply(&mut fields, assign(cond, true));
            }
            apply(&mut fields, siblings.clone());
            let req = synthesise(rule, method, &fields);
            let v = req.eval(&c);
            let own = v.rule_id.as_deref() == Some(rule.id.as_str())
                && v.tool.as_deref() == Some(rule.tool.as_str());
            if own && v.action == rule.action {
                // decided by the rule itself
            } else if let Some((tool, _)) = EXCEPTIONS.iter().find(|(t, _)| *t == rule.tool) {
                excepted_used.insert(*tool);
                if v.action < rule.action || own {
                    failures.push(format!(
                        "{} ({}): listed exception but got {}",
                        rule.tool,
                        rule.id,
                        describe(&req, &v)
                    ));
                }
                rule_ok = false;
            } else {
                failures.push(format!(
                    "{} ({}) wants {:?}: {}",
                    rule.tool,
                    rule.id,
                    rule.action,
                    describe(&req, &v)
                ));
                rule_ok = false;
            }
            // Negatives: one condition unmet, the others met.
            for (i, cond) in rule.when.iter().enumerate() {
                let mut fields = BTreeMap::new();
                apply(&mut fields, assign(cond, false));
                for (j, other) in rule.when.iter().enumerate() {
                    if j != i {
                        apply(&mut fields, assign(other, true));
                    }
                }
                apply(&mut fields, siblings.clone());
                let req = synthesise(rule, method, &fields);
                let v = req.eval(&c);
                negatives += 1;
                if v.rule_id.as_deref() == Some(rule.id.as_str()) {
                    failures.push(format!(
                        "{} ({}): fired although `{}` is unmet: {}",
                        rule.tool,
                        rule.id,
                        cond.field,
                        describe(&req, &v)
                    ));
                }
            }
        }
        if rule_ok {
            covered += 1;
        }
    }
    for (tool, why) in EXCEPTIONS {
        assert!(!why.is_empty(), "exception {tool} needs a reason");
        if !excepted_used.contains(tool) {
            failures.push(format!(
                "stale exception: {tool} now decides its own request"
            ));
        }
    }
    for (tool, why) in SKIPPED {
        assert!(!why.is_empty(), "skipped rule {tool} needs a reason");
    }
    let skipped = rules
        .iter()
        .filter(|r| SKIPPED.iter().any(|(t, _)| *t == r.tool))
        .count();
    println!(
        "every-rule: {} REST rules: {covered} decided by themselves, {} listed exceptions, \
         {skipped} skipped; {method_cases} method cases, {negatives} negative cases",
        rules.len(),
        excepted_used.len(),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        covered + excepted_used.len() + skipped,
        rules.len(),
        "every rule is covered, excepted or skipped with a reason"
    );
}

/// The argument list for a mutation field from dotted assignments (`input.force` ->
/// `input: {force: true}`); a bare `input: {}` when there are none.
fn gql_args(fields: &BTreeMap<String, Option<Value>>) -> String {
    let set: BTreeMap<String, Value> = fields
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();
    let nested = nest(&set);
    let mut args = nested.as_object().cloned().unwrap_or_default();
    args.entry("input")
        .or_insert_with(|| Value::Object(Default::default()));
    args.iter()
        .map(|(k, v)| format!("{k}: {}", gql_literal(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn gql_request(g: &GraphqlRuleInfo, path: &str, args: &str) -> Request {
    let query = format!(
        "mutation {{ {}({args}) {{ clientMutationId }} }}",
        g.mutation
    );
    Request {
        method: "POST".into(),
        host: sample_host(&g.hosts),
        path: path.to_string(),
        content_type: Some("application/json"),
        body: Some(serde_json::json!({ "query": query }).to_string()),
    }
}

#[test]
fn every_graphql_entry_decides_its_mutation() {
    let c = catalog();
    let entries = c.graphql_rules();
    assert!(
        entries.len() > 200,
        "catalog lists {} entries",
        entries.len()
    );
    let mut failures = Vec::new();
    let mut cases = 0usize;
    let mut negatives = 0usize;
    for g in &entries {
        assert!(
            !g.graphql_paths.is_empty(),
            "{}: no graphql path",
            g.mutation
        );
        let siblings: Vec<(String, Option<Value>)> = entries
            .iter()
            .filter(|o| o.service == g.service && o.mutation == g.mutation && o.id != g.id)
            .flat_map(|o| o.when.iter().flat_map(|c| assign(c, false)))
            .collect();
        for path in &g.graphql_paths {
            let mut fields = BTreeMap::new();
            for cond in &g.when {
                apply(&mut fields, assign(cond, true));
            }
            apply(&mut fields, siblings.clone());
            let req = gql_request(g, path, &gql_args(&fields));
            let v = req.eval(&c);
            cases += 1;
            let tool = format!("{}.graphql.{}", g.service, g.mutation);
            if v.action != g.action
                || v.rule_id.as_deref() != Some(g.id.as_str())
                || v.tool.as_deref() != Some(tool.as_str())
            {
                failures.push(format!(
                    "{} ({}) wants {:?}: {}",
                    g.mutation,
                    g.id,
                    g.action,
                    describe(&req, &v)
                ));
            }
            for (i, cond) in g.when.iter().enumerate() {
                let mut fields = BTreeMap::new();
                apply(&mut fields, assign(cond, false));
                for (j, other) in g.when.iter().enumerate() {
                    if j != i {
                        apply(&mut fields, assign(other, true));
                    }
                }
                let req = gql_request(g, path, &gql_args(&fields));
                let v = req.eval(&c);
                negatives += 1;
                if v.rule_id.as_deref() == Some(g.id.as_str()) {
                    failures.push(format!(
                        "{} ({}): fired although `{}` is unmet: {}",
                        g.mutation,
                        g.id,
                        cond.field,
                        describe(&req, &v)
                    ));
                }
            }
        }
    }
    println!(
        "every-rule: {} GraphQL entries, {cases} cases over all GraphQL paths, {negatives} \
         negative cases",
        entries.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
