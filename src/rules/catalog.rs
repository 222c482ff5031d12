//! Rule files -> checked, compiled catalog -> verdicts.
//!
//! File format (one file per service, `rules/*.toml`):
//! ```toml
//! [service]
//! name = "github"
//! hosts = ["api.github.com", "*.ghe.com"]   # exact, or "*.suffix"
//! path_prefixes = ["/api/v3"]               # stripped before matching (GHES)
//! default = "allow"                         # no rule matched
//! graphql_paths = ["/graphql"]              # POST bodies parsed as GraphQL
//! graphql_default = "escalate"              # a mutation no [[graphql]] entry names
//!
//! [[rule]]
//! tool = "github.repos.update.visibility"
//! method = "PATCH"                          # or methods = ["PUT", "DELETE"]
//! path = "/repos/{owner}/{repo}"            # {name}: one segment; {name*}: one or more
//! class = "irreversible"                    # reversible | visible | irreversible | money
//! action = "escalate"                       # allow | notify | escalate | block
//! reason = "Makes a repository public"
//! when = [{ field = "visibility", eq = "public" }]   # all must hold
//! # expiry = "2h"; wait = "60s"
//!
//! [[graphql]]
//! mutations = ["deleteRef"]
//! class = "irreversible"
//! action = "escalate"
//! ```
//! Conditions: `eq`, `ne`, `in = [..]`, `gt`, `gte`, `lt`, `present = true`,
//! `money_over = 100` (major units of the currency in `currency_field`, default `currency`).
//! A condition that cannot be evaluated (unparseable body, unknown currency) escalates.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::fields::{FieldValue, Fields};
use super::{graphql, money, normalize, Action, Class, RequestHead, RulesError, Verdict};

// ---- raw ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    service: RawService,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
    #[serde(default)]
    graphql: Vec<toml::Spanned<RawGraphql>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    hosts: Vec<String>,
    #[serde(default)]
    path_prefixes: Vec<String>,
    #[serde(default = "allow")]
    default: Action,
    #[serde(default)]
    graphql_paths: Vec<String>,
    #[serde(default = "escalate")]
    graphql_default: Action,
}

fn allow() -> Action {
    Action::Allow
}
fn escalate() -> Action {
    Action::Escalate
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    tool: String,
    method: Option<String>,
    #[serde(default)]
    methods: Vec<String>,
    path: String,
    class: Class,
    action: Action,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    when: Vec<RawCond>,
    expiry: Option<String>,
    wait: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCond {
    field: String,
    eq: Option<toml::Value>,
    ne: Option<toml::Value>,
    #[serde(rename = "in")]
    any_of: Option<Vec<toml::Value>>,
    gt: Option<f64>,
    gte: Option<f64>,
    lt: Option<f64>,
    present: Option<bool>,
    money_over: Option<f64>,
    currency_field: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraphql {
    mutations: Vec<String>,
    class: Class,
    action: Action,
    #[serde(default)]
    reason: String,
}

// ---- checked ----

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    One(String),
    Many(String),
}

#[derive(Debug, Clone)]
enum Test {
    Eq(toml::Value),
    Ne(toml::Value),
    In(Vec<toml::Value>),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Present(bool),
    MoneyOver { major: f64, currency_field: String },
}

#[derive(Debug, Clone)]
struct Cond {
    field: String,
    test: Test,
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    tool: String,
    methods: Vec<String>,
    template: Vec<Seg>,
    class: Class,
    action: Action,
    reason: String,
    when: Vec<Cond>,
    expiry: Option<Duration>,
    wait: Option<Duration>,
}

#[derive(Debug, Clone)]
struct GqlRule {
    id: String,
    class: Class,
    action: Action,
    reason: String,
}

#[derive(Debug, Clone)]
struct Service {
    name: String,
    hosts: Vec<String>,
    prefixes: Vec<Vec<String>>,
    default: Action,
    graphql_paths: Vec<Vec<String>>,
    graphql_default: Action,
    rules: Vec<Rule>,
    /// method -> indexes into `rules`
    by_method: HashMap<String, Vec<usize>>,
    gql: HashMap<String, GqlRule>,
}

/// Options the catalog needs from the config.
#[derive(Debug, Clone)]
pub struct CatalogOptions {
    /// Verdict for inspected hosts no service names.
    pub default_action: Action,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        Self {
            default_action: Action::Allow,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    services: Vec<Service>,
    opts: CatalogOptions,
}

/// The shipped catalog, compiled in.
const EMBEDDED: &[(&str, &str)] = &[
    ("rules/github.toml", include_str!("../../rules/github.toml")),
    (
        "rules/github-deletes.toml",
        include_str!("../../rules/github-deletes.toml"),
    ),
    ("rules/stripe.toml", include_str!("../../rules/stripe.toml")),
];

impl Catalog {
    pub fn embedded(opts: &CatalogOptions) -> Result<Catalog, RulesError> {
        let sources: Vec<(String, String)> = EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        Self::from_sources(&sources, opts)
    }

    /// Every `*.toml` in `dir`, in name order.
    pub fn load_dir(dir: &Path, opts: &CatalogOptions) -> Result<Catalog, RulesError> {
        let rd = std::fs::read_dir(dir).map_err(|e| RulesError::Io {
            file: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let mut paths: Vec<_> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut sources = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| RulesError::Io {
                file: p.display().to_string(),
                message: e.to_string(),
            })?;
            sources.push((p.display().to_string(), text));
        }
        if sources.is_empty() {
            return Err(RulesError::Io {
                file: dir.display().to_string(),
                message: "no *.toml rule files".into(),
            });
        }
        Self::from_sources(&sources, opts)
    }

    pub fn from_sources(
        sources: &[(String, String)],
        opts: &CatalogOptions,
    ) -> Result<Catalog, RulesError> {
        let mut services: Vec<Service> = Vec::new();
        for (file, text) in sources {
            let svc = compile_file(file, text)?;
            // Several files may add to one service.
            match services.iter_mut().find(|s| s.name == svc.name) {
                Some(existing) => merge(existing, svc, file)?,
                None => services.push(svc),
            }
        }
        for s in &mut services {
            index(s);
        }
        Ok(Catalog {
            services,
            opts: opts.clone(),
        })
    }

    pub fn rule_count(&self) -> usize {
        self.services
            .iter()
            .map(|s| s.rules.len() + s.gql.len())
            .sum()
    }

    pub fn hosts(&self) -> Vec<String> {
        self.services.iter().flat_map(|s| s.hosts.clone()).collect()
    }

    /// The name of the service whose hosts include `host`.
    pub fn service_for_host(&self, host: &str) -> Option<String> {
        self.service(&normalize::host(host)).map(|s| s.name.clone())
    }

    pub fn inspects(&self, host: &str) -> bool {
        self.service(&normalize::host(host)).is_some()
    }

    fn service(&self, host: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.hosts.iter().any(|p| host_matches(p, host)))
    }

    pub fn needs_body(&self, head: &RequestHead<'_>) -> bool {
        let Some(svc) = self.service(&normalize::host(head.host)) else {
            return false;
        };
        let Some(segs) = path_segments(svc, head.path_and_query) else {
            return false;
        };
        if head.method == "POST" && svc.graphql_paths.contains(&segs) {
            return true;
        }
        candidates(svc, head.method, &segs)
            .iter()
            .any(|(r, _)| !r.when.is_empty())
    }

    pub fn evaluate(&self, head: &RequestHead<'_>, body: Option<&[u8]>) -> Verdict {
        let host = normalize::host(head.host);
        let Some(svc) = self.service(&host) else {
            return plain(
                self.opts.default_action,
                None,
                "no_service",
                format!("{host} is named by no service; default applies"),
            );
        };
        let esc = |code: &str, why: String| guard(svc, code, why);
        if !normalize::method_ok(head.method) {
            return esc(
                "bad_method",
                format!(
                    "method {:?} is not a known upper-case HTTP method",
                    head.method
                ),
            );
        }
        for h in [
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
        ] {
            if head.headers.contains_key(h) {
                return esc(
                    "method_override",
                    format!("{h} header present: the upstream may run another method"),
                );
            }
        }
        let Some(segs) = path_segments(svc, head.path_and_query) else {
            return esc(
                "path_unparseable",
                "path does not decode to valid UTF-8".into(),
            );
        };
        let query = head
            .path_and_query
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or("");

        if head.method == "POST" && svc.graphql_paths.contains(&segs) {
            return graphql_verdict(svc, body);
        }
        let cands = candidates(svc, head.method, &segs);
        // Fields: query always; body when some candidate has conditions.
        let mut fields = Fields::default();
        fields.add_form(query);
        let needs_body = cands.iter().any(|(r, _)| !r.when.is_empty());
        if needs_body {
            match body {
                None => {
                    return esc(
                        "body_unparseable",
                        "a rule needs the body and it was not read".into(),
                    )
                }
                Some([]) => {}
                Some(b) => {
                    let ct = head
                        .headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let json = ct.contains("json")
                        || (!ct.contains("form")
                            && b.first().is_some_and(|c| *c == b'{' || *c == b'['));
                    if json {
                        if let Err(e) = fields.add_json(b) {
                            let code = if e.contains("duplicate key") {
                                "duplicate_key"
                            } else {
                                "body_unparseable"
                            };
                            return esc(code, format!("JSON body: {e}"));
                        }
                    } else {
                        match std::str::from_utf8(b) {
                            Ok(t) => fields.add_form(t),
                            Err(_) => {
                                return esc("body_unparseable", "form body is not UTF-8".into())
                            }
                        }
                    }
                }
            }
        }
        if let Some(k) = fields.duplicates.first() {
            return esc(
                "duplicate_key",
                format!("parameter `{k}` appears more than once"),
            );
        }
        if fields.get("_method").is_some() {
            return esc("method_override", "`_method` parameter present".into());
        }
        let mut best: Option<Verdict> = None;
        for (rule, params) in &cands {
            let mut unknown: Option<&'static str> = None;
            let mut all = true;
            for c in &rule.when {
                match check(c, &fields, params) {
                    Ok(true) => {}
                    Ok(false) => {
                        all = false;
                        break;
                    }
                    Err(code) => {
                        unknown = Some(code);
                        break;
                    }
                }
            }
            let v = match (all, unknown) {
                (_, Some(code)) => Some(rule_verdict(
                    svc,
                    rule,
                    params,
                    &fields,
                    Action::Escalate.max(rule.action),
                    code,
                )),
                (true, None) => Some(rule_verdict(
                    svc,
                    rule,
                    params,
                    &fields,
                    rule.action,
                    "rule_match",
                )),
                (false, None) => None,
            };
            if let Some(v) = v {
                if best.as_ref().is_none_or(|b| v.action > b.action) {
                    best = Some(v);
                }
            }
        }
        best.unwrap_or_else(|| {
            let mut v = plain(
                svc.default,
                Some(&svc.name),
                "no_rule_default",
                format!("no {} rule matches; service default", svc.name),
            );
            v.service = Some(svc.name.clone());
            v
        })
    }
}

fn plain(action: Action, service: Option<&str>, code: &str, explanation: String) -> Verdict {
    Verdict {
        action,
        rule_id: None,
        service: service.map(str::to_string),
        tool: None,
        class: None,
        reason_codes: vec![code.to_string()],
        explanation,
        params: BTreeMap::new(),
        expiry: None,
        wait: None,
        approval: None,
    }
}

fn guard(svc: &Service, code: &str, why: String) -> Verdict {
    plain(
        Action::Escalate,
        Some(&svc.name),
        code,
        format!("fail closed: {why}"),
    )
}

fn rule_verdict(
    svc: &Service,
    rule: &Rule,
    params: &BTreeMap<String, String>,
    fields: &Fields,
    action: Action,
    code: &str,
) -> Verdict {
    let mut p = params.clone();
    for c in &rule.when {
        if let Some(v) = fields.get(&c.field) {
            p.insert(c.field.clone(), v.as_text());
        }
        if let Test::MoneyOver { currency_field, .. } = &c.test {
            if let Some(v) = fields.get(currency_field) {
                p.insert(currency_field.clone(), v.as_text());
            }
        }
    }
    let mut codes = vec![code.to_string()];
    if code != "rule_match" {
        codes.insert(0, "rule_match".into());
    }
    Verdict {
        action,
        rule_id: Some(rule.id.clone()),
        service: Some(svc.name.clone()),
        tool: Some(rule.tool.clone()),
        class: Some(rule.class),
        reason_codes: codes,
        explanation: format!(
            "{} ({}): {}",
            rule.tool,
            rule.id,
            if rule.reason.is_empty() {
                "matched"
            } else {
                &rule.reason
            }
        ),
        params: p,
        expiry: rule.expiry,
        wait: rule.wait,
        approval: None,
    }
}

fn graphql_verdict(svc: &Service, body: Option<&[u8]>) -> Verdict {
    let Some(body) = body else {
        return guard(svc, "body_unparseable", "GraphQL body was not read".into());
    };
    let names = match graphql::operation(body) {
        Ok(graphql::Operation::Read) => {
            let mut v = plain(
                Action::Allow,
                Some(&svc.name),
                "graphql_read",
                "GraphQL query (read)".into(),
            );
            v.tool = Some(format!("{}.graphql.query", svc.name));
            return v;
        }
        Ok(graphql::Operation::Mutation(n)) => n,
        Err(code) => return guard(svc, code, format!("GraphQL request: {code}")),
    };
    let mut best: Option<Verdict> = None;
    for name in &names {
        let v = match svc.gql.get(name) {
            Some(r) => Verdict {
                action: r.action,
                rule_id: Some(r.id.clone()),
                service: Some(svc.name.clone()),
                tool: Some(format!("{}.graphql.{name}", svc.name)),
                class: Some(r.class),
                reason_codes: vec!["rule_match".into()],
                explanation: format!("mutation {name} ({}): {}", r.id, r.reason),
                params: BTreeMap::from([("mutations".to_string(), names.join(","))]),
                expiry: None,
                wait: None,
                approval: None,
            },
            None => {
                let mut v = guard(
                    svc,
                    "unknown_mutation",
                    format!("mutation {name} is named by no rule"),
                );
                v.action = v.action.max(svc.graphql_default);
                v.tool = Some(format!("{}.graphql.{name}", svc.name));
                v.params.insert("mutations".into(), names.join(","));
                v
            }
        };
        if best.as_ref().is_none_or(|b| v.action > b.action) {
            best = Some(v);
        }
    }
    best.unwrap_or_else(|| {
        guard(
            svc,
            "graphql_unparseable",
            "mutation selects no field".into(),
        )
    })
}

fn check(
    c: &Cond,
    fields: &Fields,
    params: &BTreeMap<String, String>,
) -> Result<bool, &'static str> {
    let owned;
    let v = match fields.get(&c.field) {
        Some(v) => Some(v),
        None => match params.get(&c.field) {
            Some(p) => {
                owned = FieldValue::Str(p.clone());
                Some(&owned)
            }
            None => None,
        },
    };
    let eq = |v: &FieldValue, want: &toml::Value| match want {
        toml::Value::String(s) => {
            v.as_text() == *s || v.as_bool().map(|b| b.to_string()) == Some(s.clone())
        }
        toml::Value::Boolean(b) => v.as_bool() == Some(*b),
        toml::Value::Integer(i) => v.as_num() == Some(*i as f64),
        toml::Value::Float(f) => v.as_num() == Some(*f),
        _ => false,
    };
    Ok(match (&c.test, v) {
        (Test::Present(want), v) => v.is_some() == *want,
        (_, None) => match &c.test {
            Test::MoneyOver { .. } => return Err("amount_unparseable"),
            _ => false,
        },
        (Test::Eq(w), Some(v)) => eq(v, w),
        (Test::Ne(w), Some(v)) => !eq(v, w),
        (Test::In(ws), Some(v)) => ws.iter().any(|w| eq(v, w)),
        (Test::Gt(n), Some(v)) => v.as_num().ok_or("value_unparseable")? > *n,
        (Test::Gte(n), Some(v)) => v.as_num().ok_or("value_unparseable")? >= *n,
        (Test::Lt(n), Some(v)) => v.as_num().ok_or("value_unparseable")? < *n,
        (
            Test::MoneyOver {
                major,
                currency_field,
            },
            Some(v),
        ) => {
            let amount = v.as_num().ok_or("amount_unparseable")?;
            let cur = fields
                .get(currency_field)
                .map(|c| c.as_text())
                .ok_or("unknown_currency")?;
            money::over(amount, &cur, *major)?
        }
    })
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern == host,
    }
}

/// Normalised segments with the service's prefix stripped and `/repositories/{id}` mapped onto
/// `/repos/{owner}/{repo}` (owner `~id`), so repo rules cover both spellings.
fn path_segments(svc: &Service, path_and_query: &str) -> Option<Vec<String>> {
    let path = path_and_query.split('?').next().unwrap_or("");
    let mut segs = normalize::segments(path)?;
    for p in &svc.prefixes {
        if segs.len() >= p.len()
            && segs[..p.len()]
                .iter()
                .zip(p)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
        {
            segs.drain(..p.len());
            break;
        }
    }
    if segs
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case("repositories"))
        && segs.len() >= 2
    {
        segs[0] = "repos".into();
        segs.insert(1, "~id".into());
    }
    Some(segs)
}

fn candidates<'a>(
    svc: &'a Service,
    method: &str,
    segs: &[String],
) -> Vec<(&'a Rule, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    let mut methods = vec![method];
    if method == "POST" {
        methods.push("PATCH"); // POST to a PATCH route is treated as that PATCH
    }
    for m in methods {
        for &i in svc.by_method.get(m).map(|v| v.as_slice()).unwrap_or(&[]) {
            let Some(rule) = svc.rules.get(i) else {
                continue;
            };
            let mut params = BTreeMap::new();
            if match_template(&rule.template, segs, &mut params) {
                out.push((rule, params));
            }
        }
    }
    out
}

fn match_template(t: &[Seg], s: &[String], params: &mut BTreeMap<String, String>) -> bool {
    match t.first() {
        None => s.is_empty(),
        Some(Seg::Lit(l)) => {
            s.first().is_some_and(|x| x.eq_ignore_ascii_case(l))
                && match_template(&t[1..], &s[1..], params)
        }
        Some(Seg::One(n)) => {
            if s.is_empty() {
                return false;
            }
            params.insert(n.clone(), s[0].clone());
            match_template(&t[1..], &s[1..], params)
        }
        Some(Seg::Many(n)) => {
            // Greedy: try the longest run that still lets the rest match.
            for take in (1..=s.len()).rev() {
                let mut p = params.clone();
                p.insert(n.clone(), s[..take].join("/"));
                if match_template(&t[1..], &s[take..], &mut p) {
                    *params = p;
                    return true;
                }
            }
            false
        }
    }
}

fn compile_file(file: &str, text: &str) -> Result<Service, RulesError> {
    let at = |offset: usize, message: String| {
        let (line, column) = crate::config::line_col(text, offset);
        RulesError::Parse {
            file: file.to_string(),
            line,
            column,
            message,
        }
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        at(
            e.span().map(|s| s.start).unwrap_or(0),
            e.message().to_string(),
        )
    })?;
    let s = raw.service;
    if s.hosts.is_empty() {
        return Err(at(
            0,
            format!("service {}: hosts must not be empty", s.name),
        ));
    }
    let seg_list = |p: &str| normalize::segments(p).unwrap_or_default();
    let mut svc = Service {
        name: s.name.clone(),
        hosts: s.hosts.iter().map(|h| normalize::host(h)).collect(),
        prefixes: s
            .path_prefixes
            .iter()
            .map(|p| seg_list(p))
            .filter(|p| !p.is_empty())
            .collect(),
        default: s.default,
        graphql_paths: s.graphql_paths.iter().map(|p| seg_list(p)).collect(),
        graphql_default: s.graphql_default,
        rules: Vec::new(),
        by_method: HashMap::new(),
        gql: HashMap::new(),
    };
    for spanned in raw.rule {
        let start = spanned.span().start;
        let (line, _) = crate::config::line_col(text, start);
        let r = spanned.into_inner();
        let err = |m: String| at(start, format!("rule {}: {m}", r.tool));
        let mut methods: Vec<String> = r.methods.clone();
        if let Some(m) = &r.method {
            methods.push(m.clone());
        }
        if methods.is_empty() {
            return Err(err("needs `method` or `methods`".into()));
        }
        for m in &methods {
            if !normalize::method_ok(m) {
                return Err(err(format!("unknown method {m:?}")));
            }
        }
        let template = parse_template(&r.path).map_err(err)?;
        let mut when = Vec::new();
        for c in &r.when {
            when.push(compile_cond(c).map_err(err)?);
        }
        let dur = |v: &Option<String>, what: &str| -> Result<Option<Duration>, RulesError> {
            v.as_ref()
                .map(|d| {
                    humantime::parse_duration(d).map_err(|e| err(format!("{what} {d:?}: {e}")))
                })
                .transpose()
        };
        svc.rules.push(Rule {
            id: format!("{file}:{line}"),
            tool: r.tool.clone(),
            methods,
            template,
            class: r.class,
            action: r.action,
            reason: r.reason.clone(),
            when,
            expiry: dur(&r.expiry, "expiry")?,
            wait: dur(&r.wait, "wait")?,
        });
    }
    for spanned in raw.graphql {
        let start = spanned.span().start;
        let (line, _) = crate::config::line_col(text, start);
        let g = spanned.into_inner();
        for m in &g.mutations {
            let rule = GqlRule {
                id: format!("{file}:{line}"),
                class: g.class,
                action: g.action,
                reason: g.reason.clone(),
            };
            if svc.gql.insert(m.clone(), rule).is_some() {
                return Err(at(start, format!("mutation {m} is listed twice")));
            }
        }
    }
    Ok(svc)
}

fn merge(into: &mut Service, from: Service, file: &str) -> Result<(), RulesError> {
    if into.hosts != from.hosts {
        return Err(RulesError::Parse {
            file: file.into(),
            line: 1,
            column: 1,
            message: format!(
                "service {} is declared with different hosts in another file",
                from.name
            ),
        });
    }
    into.rules.extend(from.rules);
    for (k, v) in from.gql {
        if into.gql.insert(k.clone(), v).is_some() {
            return Err(RulesError::Parse {
                file: file.into(),
                line: 1,
                column: 1,
                message: format!("mutation {k} is listed twice"),
            });
        }
    }
    Ok(())
}

fn index(s: &mut Service) {
    s.by_method.clear();
    for (i, r) in s.rules.iter().enumerate() {
        for m in &r.methods {
            s.by_method.entry(m.clone()).or_default().push(i);
        }
    }
}

fn parse_template(p: &str) -> Result<Vec<Seg>, String> {
    if !p.starts_with('/') {
        return Err(format!("path {p:?} must start with /"));
    }
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(n) if n.ends_with('*') => Ok(Seg::Many(n.trim_end_matches('*').to_string())),
                Some(n)
                    if !n.is_empty()
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    Ok(Seg::One(n.to_string()))
                }
                Some(n) => Err(format!("bad parameter {{{n}}} in {p:?}")),
                None if s.contains(['{', '}']) => Err(format!("bad segment {s:?} in {p:?}")),
                None => Ok(Seg::Lit(s.to_string())),
            },
        )
        .collect()
}

fn compile_cond(c: &RawCond) -> Result<Cond, String> {
    let mut tests = Vec::new();
    if let Some(v) = &c.eq {
        tests.push(Test::Eq(v.clone()));
    }
    if let Some(v) = &c.ne {
        tests.push(Test::Ne(v.clone()));
    }
    if let Some(v) = &c.any_of {
        tests.push(Test::In(v.clone()));
    }
    if let Some(v) = c.gt {
        tests.push(Test::Gt(v));
    }
    if let Some(v) = c.gte {
        tests.push(Test::Gte(v));
    }
    if let Some(v) = c.lt {
        tests.push(Test::Lt(v));
    }
    if let Some(v) = c.present {
        tests.push(Test::Present(v));
    }
    if let Some(v) = c.money_over {
        tests.push(Test::MoneyOver {
            major: v,
            currency_field: c
                .currency_field
                .clone()
                .unwrap_or_else(|| "currency".into()),
        });
    }
    if tests.len() != 1 {
        return Err(format!("condition on `{}` needs exactly one test (eq, ne, in, gt, gte, lt, present, money_over)", c.field));
    }
    Ok(Cond {
        field: c.field.clone(),
        test: tests.remove(0),
    })
}
