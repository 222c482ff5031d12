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
//! # approvals = 2; approvers = ["alice", "group:sre"]; self_approval = false
//!
//! [[graphql]]
//! mutations = ["deleteRef"]
//! class = "irreversible"
//! action = "escalate"
//!
//! [[graphql]]                               # conditions on the mutation's arguments
//! mutations = ["updateRef"]
//! class = "irreversible"
//! action = "escalate"
//! when = [{ field = "input.force", eq = true }]
//!
//! [git]                                     # git smart HTTP (push, fetch); at most one per service
//! hosts = ["github.com"]                    # git hosts, distinct from the REST `hosts`
//! protected_refs = ["refs/heads/main", "refs/heads/release/*", "refs/tags/*"]
//! delete = "escalate"                       # any ref deletion (default escalate)
//! protected = "escalate"                    # creating/updating a protected ref (default escalate)
//! push = "allow"                            # any other push (default allow)
//! ```
//! Conditions: `eq`, `ne`, `in = [..]`, `gt`, `gte`, `lt`, `present = true`,
//! `money_over = 100` (US dollars; the amount is in minor units of the currency in
//! `currency_field`, default `currency`; see `money::over` for the conservative conversion).
//! A condition that cannot be evaluated (unparseable body, unknown currency) escalates.
//!
//! REST conditions name flattened body or query fields (`metadata[a]=1` and
//! `{"metadata":{"a":1}}` are both `metadata.a`) or path parameters. Every matching rule is
//! weighed and the most severe action wins (the first listed among equals).
//!
//! GraphQL conditions name the mutation field's arguments, flattened the same way:
//! `updateRef(input: {force: true})` gives `input.force`. `$variables` resolve from the request's
//! `variables` object (or the variable's default in the operation); a variable with no value, a
//! `variables` that is not an object, or an argument given twice makes every conditional entry
//! of that mutation escalate (at least). A mutation may have one entry without `when` and any
//! number with; each top-level field (aliases and fragments resolved) is judged on its own
//! arguments, the entries that hold are weighed as for REST, and a mutation whose entries all
//! fail their conditions gets `graphql_default` (at least escalate).
//!
//! `[git]` (see [`super::git`]): on its hosts, `GET …/info/refs?service=…` and
//! `POST …/git-upload-pack` (fetch, clone) are allowed; `POST …/git-receive-pack` (push) is judged
//! by its command section: deletions get `delete`, protected refs `protected`, the rest `push`;
//! an unreadable command section escalates. Protected-ref patterns are exact ref names or end in
//! `/*` (everything below), matched case-insensitively. Other paths on a git host get `default`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::fields::{FieldValue, Fields};
use super::git::{GitRequest, GitRules, RefPattern};
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
    git: Option<toml::Spanned<RawGit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGit {
    hosts: Vec<String>,
    #[serde(default)]
    protected_refs: Vec<toml::Spanned<String>>,
    #[serde(default = "escalate")]
    delete: Action,
    #[serde(default = "escalate")]
    protected: Action,
    #[serde(default = "allow")]
    push: Action,
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
    /// Distinct reviewers needed (quorum); default 1.
    approvals: Option<u32>,
    /// Reviewer names or `group:NAME` who may decide; default anyone.
    #[serde(default)]
    approvers: Vec<String>,
    /// May the agent's owner approve its own agent's request? Default false.
    self_approval: Option<bool>,
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
    #[serde(default)]
    when: Vec<RawCond>,
}

// ---- checked ----

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    One(String),
    Many(String),
}

/// One condition's test, as written in a rule file (see the format above).
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Eq(toml::Value),
    Ne(toml::Value),
    In(Vec<toml::Value>),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Present(bool),
    MoneyOver { major: f64, currency_field: String },
}

/// A compiled `when` condition: the field (dotted body/query name, or a path parameter) and
/// its test.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub test: Test,
}

type Cond = Condition;

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    tool: String,
    methods: Vec<String>,
    /// The template as written, e.g. `/repos/{owner}/{repo}`.
    path: String,
    template: Vec<Seg>,
    class: Class,
    action: Action,
    reason: String,
    when: Vec<Cond>,
    expiry: Option<Duration>,
    wait: Option<Duration>,
    approval: Option<super::ApprovalPolicy>,
}

impl Rule {
    /// Cheap length check before matching: a template without `{x*}` needs exactly its
    /// length; with one, at least its length.
    fn fits(&self, segs: &[Cow<'_, str>]) -> bool {
        let n = self.template.len();
        if self.template.iter().any(|t| matches!(t, Seg::Many(_))) {
            segs.len() >= n
        } else {
            segs.len() == n
        }
    }
}

#[derive(Debug, Clone)]
struct GqlRule {
    id: String,
    class: Class,
    action: Action,
    reason: String,
    /// Conditions on the mutation field's arguments (`input.force`); empty: by name alone.
    when: Vec<Cond>,
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
    /// Per method (position in [`normalize::KNOWN_METHODS`]): indexes into `rules`.
    by_method: Vec<MethodIndex>,
    /// mutation name -> its entries (at most one without conditions), in file order
    gql: HashMap<String, Vec<GqlRule>>,
    /// The `[git]` section: git smart-HTTP hosts and protected refs.
    git: Option<GitRules>,
}

/// The rules of one method, by the lower-cased literal first segment of their template; rules
/// whose template starts with a parameter (or is `/`) are in `wild`. Indexes ascend, so merging
/// a `by_first` list with `wild` keeps file order (which decides among equally severe rules).
#[derive(Debug, Clone, Default)]
struct MethodIndex {
    by_first: HashMap<String, Vec<usize>>,
    wild: Vec<usize>,
}

/// Segments of a request path: borrowed from the request unless decoding changed them.
type Segs<'p> = Vec<Cow<'p, str>>;

/// One compiled REST rule, as listed by [`Catalog::rules`].
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInfo {
    pub service: String,
    /// The service's hosts (exact, or `*.suffix`).
    pub hosts: Vec<String>,
    /// `file:line` of the rule, as verdicts name it.
    pub id: String,
    pub tool: String,
    pub methods: Vec<String>,
    /// The path template as written, e.g. `/repos/{owner}/{repo}/git/refs/{ref*}`.
    pub path: String,
    pub class: Class,
    pub action: Action,
    pub when: Vec<Condition>,
}

/// One `[[graphql]]` entry for one mutation name, as listed by [`Catalog::graphql_rules`].
#[derive(Debug, Clone, PartialEq)]
pub struct GraphqlRuleInfo {
    pub service: String,
    pub hosts: Vec<String>,
    /// The service's GraphQL endpoints, e.g. `/graphql`.
    pub graphql_paths: Vec<String>,
    pub id: String,
    pub mutation: String,
    pub class: Class,
    pub action: Action,
    /// Conditions on the mutation's arguments (e.g. `input.force`).
    pub when: Vec<Condition>,
}

/// A catalog entry that names a route or mutation explicitly (see [`Catalog::explicit_rules`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `file:line`.
    pub id: String,
    pub tool: String,
    pub class: Class,
    pub action: Action,
    pub reason: String,
    /// The entry has `when` conditions: it adds an outcome on top of the base entry.
    pub conditional: bool,
}

/// Options the catalog needs from the config.
#[derive(Debug, Clone)]
pub struct CatalogOptions {
    /// Verdict for inspected hosts no service names.
    pub default_action: Action,
    /// Verdict for a write (any method but GET, HEAD, OPTIONS) to a catalog host that no rule
    /// classifies: the closed world. Escalate by default; `allow` is an accepted risk.
    pub unclassified_writes: Action,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        Self {
            default_action: Action::Allow,
            unclassified_writes: Action::Escalate,
        }
    }
}

/// Reads: the methods a service's `default` applies to when no rule matches. Every other
/// method is a write, and an unclassified write gets [`CatalogOptions::unclassified_writes`].
pub fn is_read(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
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
    (
        "rules/github-writes.toml",
        include_str!("../../rules/github-writes.toml"),
    ),
    (
        "rules/stripe-routes.toml",
        include_str!("../../rules/stripe-routes.toml"),
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
        for s in &services {
            for h in s.git.iter().flat_map(|g| &g.hosts) {
                if let Some(other) = services.iter().find(|o| o.hosts.contains(h)) {
                    let id = s.git.as_ref().map(|g| g.id.as_str()).unwrap_or_default();
                    let (file, line) = id.rsplit_once(':').unwrap_or((id, "1"));
                    return Err(RulesError::Parse {
                        file: file.to_string(),
                        line: line.parse().unwrap_or(1),
                        column: 1,
                        message: format!(
                            "[git] host {h} of service {} is also a REST host of service {}",
                            s.name, other.name
                        ),
                    });
                }
            }
        }
        Ok(Catalog {
            services,
            opts: opts.clone(),
        })
    }

    pub fn rule_count(&self) -> usize {
        self.services
            .iter()
            .map(|s| s.rules.len() + s.gql.values().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// Every compiled REST rule, service by service, in file order.
    pub fn rules(&self) -> Vec<RuleInfo> {
        self.services
            .iter()
            .flat_map(|s| {
                s.rules.iter().map(|r| RuleInfo {
                    service: s.name.clone(),
                    hosts: s.hosts.clone(),
                    id: r.id.clone(),
                    tool: r.tool.clone(),
                    methods: r.methods.clone(),
                    path: r.path.clone(),
                    class: r.class,
                    action: r.action,
                    when: r.when.clone(),
                })
            })
            .collect()
    }

    /// Every `[[graphql]]` entry, one per mutation name, sorted by service, mutation, rule id.
    pub fn graphql_rules(&self) -> Vec<GraphqlRuleInfo> {
        let mut out: Vec<GraphqlRuleInfo> = self
            .services
            .iter()
            .flat_map(|s| {
                let paths: Vec<String> = s
                    .graphql_paths
                    .iter()
                    .map(|p| format!("/{}", p.join("/")))
                    .collect();
                s.gql.iter().flat_map(move |(name, entries)| {
                    let paths = paths.clone();
                    entries.iter().map(move |g| GraphqlRuleInfo {
                        service: s.name.clone(),
                        hosts: s.hosts.clone(),
                        graphql_paths: paths.clone(),
                        id: g.id.clone(),
                        mutation: name.clone(),
                        class: g.class,
                        action: g.action,
                        when: g.when.clone(),
                    })
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.service, &a.mutation, &a.id).cmp(&(&b.service, &b.mutation, &b.id)));
        out
    }

    /// The REST rules of `service` that name `method template` explicitly: `method` is one of
    /// theirs and their template has the same shape (same number of segments, the same
    /// literals ignoring case, a parameter wherever `template` has one). Catch-alls such as
    /// `/{rest*}` do not count. `Err`: `template` is not a path template.
    pub fn explicit_rules(
        &self,
        service: &str,
        method: &str,
        template: &str,
    ) -> Result<Vec<Entry>, String> {
        let want = parse_template(template)?;
        let same = |t: &[Seg]| {
            t.len() == want.len()
                && t.iter().zip(&want).all(|(a, b)| match (a, b) {
                    (Seg::Lit(x), Seg::Lit(y)) => x.eq_ignore_ascii_case(y),
                    (Seg::Lit(_), _) | (_, Seg::Lit(_)) => false,
                    _ => true,
                })
        };
        Ok(self
            .services
            .iter()
            .filter(|s| s.name == service)
            .flat_map(|s| &s.rules)
            .filter(|r| r.methods.iter().any(|m| m == method) && same(&r.template))
            .map(|r| Entry {
                id: r.id.clone(),
                tool: r.tool.clone(),
                class: r.class,
                action: r.action,
                reason: r.reason.clone(),
                conditional: !r.when.is_empty(),
            })
            .collect())
    }

    /// The `[[graphql]]` entries of `service` for `mutation`, in file order.
    pub fn explicit_mutation(&self, service: &str, mutation: &str) -> Vec<Entry> {
        self.services
            .iter()
            .filter(|s| s.name == service)
            .flat_map(|s| s.gql.get(mutation).into_iter().flatten())
            .map(|g| Entry {
                id: g.id.clone(),
                tool: format!("{service}.graphql.{mutation}"),
                class: g.class,
                action: g.action,
                reason: g.reason.clone(),
                conditional: !g.when.is_empty(),
            })
            .collect()
    }

    /// Every host a service names: REST hosts, then `[git]` hosts.
    pub fn hosts(&self) -> Vec<String> {
        let rest = self.services.iter().flat_map(|s| s.hosts.clone());
        let git = self
            .services
            .iter()
            .flat_map(|s| s.git.iter().flat_map(|g| g.hosts.clone()));
        rest.chain(git).collect()
    }

    /// The name of the service whose hosts (REST or `[git]`) include `host`.
    pub fn service_for_host(&self, host: &str) -> Option<String> {
        let host = normalize::host_key(host);
        self.service(&host)
            .or_else(|| self.git_service(&host).map(|(s, _)| s))
            .map(|s| s.name.clone())
    }

    pub fn inspects(&self, host: &str) -> bool {
        let host = normalize::host_key(host);
        self.service(&host).is_some() || self.git_service(&host).is_some()
    }

    fn git_service(&self, host: &str) -> Option<(&Service, &GitRules)> {
        self.services.iter().find_map(|s| {
            let g = s.git.as_ref()?;
            g.hosts
                .iter()
                .any(|p| host_matches(p, host))
                .then_some((s, g))
        })
    }

    /// Is this a git push (`POST …/git-receive-pack` on a `[git]` host)? Its verdict needs only
    /// the command section at the start of the body (see [`super::git`]).
    pub fn git_push(&self, head: &RequestHead<'_>) -> bool {
        self.git_request(head) == Some(GitRequest::ReceivePack)
    }

    fn git_request(&self, head: &RequestHead<'_>) -> Option<GitRequest> {
        let host = normalize::host_key(head.host);
        if self.service(&host).is_some() {
            return None;
        }
        self.git_service(&host)?;
        let (path, query) = head
            .path_and_query
            .split_once('?')
            .unwrap_or((head.path_and_query, ""));
        let segs = normalize::segments_cow(path)?;
        Some(GitRequest::of(head.method, &segs, query))
    }

    fn service(&self, host: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.hosts.iter().any(|p| host_matches(p, host)))
    }

    pub fn needs_body(&self, head: &RequestHead<'_>) -> bool {
        let Some(svc) = self.service(&normalize::host_key(head.host)) else {
            return self.git_push(head);
        };
        let Some(segs) = path_segments(svc, head.path_and_query) else {
            return false;
        };
        let alts = normalize::other_readings(&segs);
        let graphql = is_graphql_path(svc, &segs) || alts.iter().any(|a| is_graphql_path(svc, a));
        if head.method == "POST" && (graphql || media(head.headers) == Ok(Media::Form)) {
            // GraphQL bodies, and form bodies for a `_method` override.
            return true;
        }
        if !is_read(head.method) && framing_depends_on_body(head) {
            // Held only if a body is really there; HTTP/2 need not say so in its headers.
            return true;
        }
        let mut any = false;
        for s in std::iter::once(&segs).chain(alts.iter()) {
            for_candidates(svc, head.method, s, |r| {
                any = !r.when.is_empty();
                !any
            });
        }
        any
    }

    pub fn evaluate(&self, head: &RequestHead<'_>, body: Option<&[u8]>) -> Verdict {
        let host = normalize::host_key(head.host);
        let (svc, git) = match self.service(&host) {
            Some(s) => (s, None),
            None => match self.git_service(&host) {
                Some((s, g)) => (s, Some(g)),
                None => {
                    return plain(
                        self.opts.default_action,
                        None,
                        "no_service",
                        format!("{host} is named by no service; default applies"),
                    )
                }
            },
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
        if let Some(h) = header_named(head.headers, &METHOD_OVERRIDE_HEADERS) {
            return esc(
                "method_override",
                format!("{h} header present: the upstream may run another method"),
            );
        }
        if let Some(h) = header_named(head.headers, &ROUTING_OVERRIDE_HEADERS) {
            return esc(
                "routing_override",
                format!("{h} header present: the upstream may route to another path or host"),
            );
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

        if let Some(git) = git {
            let req = GitRequest::of(head.method, &segs, query);
            let v = git.evaluate(&svc.name, svc.default, req, &segs, head.headers, body);
            return self.closed_world(svc, head.method, v);
        }
        // Other readings of the path (`;params` dropped, a format suffix taken off): each is
        // weighed beside the path as written, and the most severe verdict wins.
        let alts = normalize::other_readings(&segs);
        if is_graphql_path(svc, &segs) || alts.iter().any(|a| is_graphql_path(svc, a)) {
            if let Some(v) = graphql_request(svc, head, query, body) {
                return v;
            }
        }
        if let Some(v) = lookalike(svc, head.method, &segs) {
            return v;
        }
        let mut cands = candidates(svc, head.method, &segs);
        for alt in &alts {
            cands.extend(candidates(svc, head.method, alt));
        }
        // From here a tripped guard is as strict as the strictest candidate rule: a request a
        // block rule might refuse is refused, never downgraded to a hold a human could approve.
        let strictest = cands.iter().map(|(r, _)| r.action).max();
        let esc = |code: &str, why: String| {
            let mut v = guard(svc, code, why);
            v.action = v.action.max(strictest.unwrap_or(Action::Escalate));
            v
        };
        // Fields: query always; body when some candidate has conditions.
        let mut fields = Fields::default();
        fields.add_form(query);
        let needs_body = cands.iter().any(|(r, _)| !r.when.is_empty());
        let media = if is_read(head.method) {
            Media::Other
        } else {
            match write_framing(head, query, body, needs_body) {
                Ok(m) => m,
                Err((code, why)) => return esc(code, why),
            }
        };
        if !needs_body && head.method == "POST" && media == Media::Form {
            // Frameworks honour `_method` in a form body (Rack::MethodOverride and friends).
            let text = body.map(String::from_utf8_lossy).unwrap_or_default();
            if form_urlencoded::parse(text.as_bytes()).any(|(k, _)| k == "_method") {
                return esc("method_override", "`_method` in the form body".into());
            }
        }
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
                    // Shaped like JSON: `{`/`[` after whitespace or a byte-order mark.
                    let start = b.trim_ascii_start();
                    let start = start.strip_prefix(b"\xef\xbb\xbf").unwrap_or(start);
                    let looks_json = start.first().is_some_and(|c| *c == b'{' || *c == b'[');
                    if media == Media::Form && looks_json {
                        // Servers that ignore Content-Type would read it as JSON.
                        return esc(
                            "body_ambiguous",
                            "a form Content-Type on a body shaped like JSON".into(),
                        );
                    }
                    // A write's framing was checked above: JSON or a form by its Content-Type.
                    // A body on a read is read as JSON when it looks like JSON.
                    let json = media == Media::Json || (media == Media::Other && looks_json);
                    if json {
                        if let Some(field) = form_reading_sets(b, &cands) {
                            // A server that reads the body as a form (Stripe's v1 API does,
                            // whatever the Content-Type) would see another value.
                            return esc(
                                "body_ambiguous",
                                format!("a JSON body that also reads as a form setting `{field}`"),
                            );
                        }
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
            let v = plain(
                svc.default,
                Some(&svc.name),
                "no_rule_default",
                format!("no {} rule matches; service default", svc.name),
            );
            self.closed_world(svc, head.method, v)
        })
    }

    /// A service-default verdict (`no_rule_default`) for a write becomes the closed world's:
    /// `unclassified_writes`, reason `unclassified_route`. Reads keep the service default.
    fn closed_world(&self, svc: &Service, method: &str, v: Verdict) -> Verdict {
        if is_read(method) || v.reason_codes.first().map(String::as_str) != Some("no_rule_default")
        {
            return v;
        }
        let action = self.opts.unclassified_writes;
        plain(
            action,
            Some(&svc.name),
            "unclassified_route",
            format!(
                "no {} rule classifies {method} on this path; unclassified writes: {}",
                svc.name,
                action.as_str()
            ),
        )
    }
}

const METHOD_OVERRIDE_HEADERS: [http::HeaderName; 3] = [
    http::HeaderName::from_static("x-http-method-override"),
    http::HeaderName::from_static("x-http-method"),
    http::HeaderName::from_static("x-method-override"),
];

/// Headers some frameworks and gateways route by instead of the request line or Host.
const ROUTING_OVERRIDE_HEADERS: [http::HeaderName; 6] = [
    http::HeaderName::from_static("x-original-url"),
    http::HeaderName::from_static("x-rewrite-url"),
    http::HeaderName::from_static("x-forwarded-host"),
    http::HeaderName::from_static("x-forwarded-server"),
    http::HeaderName::from_static("x-host"),
    http::HeaderName::from_static("forwarded"),
];

/// A field that a candidate rule's condition tests and that the body, read as a urlencoded
/// form instead of JSON, would set (`{"x":"&amount=9"}` sets `amount`).
fn form_reading_sets(body: &[u8], cands: &[(&Rule, BTreeMap<String, String>)]) -> Option<String> {
    if !body.contains(&b'=') {
        return None;
    }
    let mut form = Fields::default();
    form.add_form(&String::from_utf8_lossy(body));
    cands
        .iter()
        .flat_map(|(r, _)| &r.when)
        .flat_map(|c| {
            let currency = match &c.test {
                Test::MoneyOver { currency_field, .. } => Some(currency_field),
                _ => None,
            };
            std::iter::once(&c.field).chain(currency)
        })
        .find(|f| form.get(f).is_some())
        .cloned()
}

/// The first header among `names` present, also under a spelling with `_` for `-`: Rack, CGI
/// and PHP fold both into one variable (`HTTP_X_HTTP_METHOD_OVERRIDE`).
fn header_named(headers: &http::HeaderMap, names: &[http::HeaderName]) -> Option<String> {
    if let Some(h) = names.iter().find(|h| headers.contains_key(*h)) {
        return Some(h.to_string());
    }
    headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .find(|k| {
            let dashed = k.as_str().replace('_', "-");
            names.iter().any(|h| h.as_str() == dashed)
        })
        .map(|k| k.to_string())
}

/// How a body will be read, by its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    /// No Content-Type.
    Missing,
    /// `application/json`, `application/*+json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `multipart/*`.
    Multipart,
    /// Anything else.
    Other,
}

/// The Content-Type's media type. `Err`: a reading servers could disagree on (given twice, not
/// ASCII, a charset other than UTF-8 or ASCII, `charset` twice), as (reason code, why).
fn media(headers: &http::HeaderMap) -> Result<Media, (&'static str, String)> {
    let mut all = headers.get_all(http::header::CONTENT_TYPE).iter();
    let Some(value) = all.next() else {
        return Ok(Media::Missing);
    };
    if all.next().is_some() {
        return Err(("content_type_ambiguous", "Content-Type given twice".into()));
    }
    let Ok(text) = value.to_str() else {
        return Err(("content_type_ambiguous", "Content-Type is not ASCII".into()));
    };
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut charsets = 0;
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("charset") {
            continue;
        }
        charsets += 1;
        let v = v.trim().trim_matches('"').to_ascii_lowercase();
        if charsets > 1 || !matches!(v.as_str(), "utf-8" | "utf8" | "us-ascii") {
            return Err((
                "charset_unsupported",
                format!(
                    "Content-Type {text:?}: a charset other than UTF-8 may be decoded differently"
                ),
            ));
        }
    }
    Ok(match essence.as_str() {
        "application/json" => Media::Json,
        e if e.starts_with("application/") && e.ends_with("+json") => Media::Json,
        "application/x-www-form-urlencoded" => Media::Form,
        e if e.starts_with("multipart/") => Media::Multipart,
        _ => Media::Other,
    })
}

/// Does [`write_framing`]'s answer for this write depend on whether a body is sent (one that
/// `has_body` cannot see: HTTP/2 needs no Content-Length)?
fn framing_depends_on_body(head: &RequestHead<'_>) -> bool {
    encoded(head.headers)
        || match media(head.headers) {
            Ok(Media::Missing) => head.method == "POST",
            Ok(Media::Multipart) | Err(_) => true,
            Ok(_) => false,
        }
}

/// The framing checks of a write to a catalog host, before its body is judged: readings a
/// mainstream framework could take differently hold (see docs/parser-differentials.md).
/// `Ok`: the body's media type.
fn write_framing(
    head: &RequestHead<'_>,
    query: &str,
    body: Option<&[u8]>,
    needs_body: bool,
) -> Result<Media, (&'static str, String)> {
    if query.contains(';') {
        // Rack before 3 and Go before 1.17 split the query on `;` as well as `&`.
        return Err((
            "query_separator",
            "`;` in the query string: some frameworks split parameters on it".into(),
        ));
    }
    let sent = match body {
        Some(b) => !b.is_empty(),
        None => has_body(head.headers),
    };
    if !sent {
        return Ok(Media::Missing);
    }
    let m = media(head.headers)?;
    if encoded(head.headers) {
        return Err((
            "body_encoded",
            "the body is content-encoded: its fields cannot be read as sent".into(),
        ));
    }
    match m {
        Media::Multipart => Err((
            "body_multipart",
            "a multipart body: frameworks read fields and `_method` from it; Airlock does not"
                .into(),
        )),
        Media::Missing if needs_body || head.method == "POST" => Err((
            "content_type_missing",
            "a body without Content-Type: Rack reads it as a form, others as JSON or not at all"
                .into(),
        )),
        Media::Other if needs_body => Err((
            "content_type_unsupported",
            "a rule needs the body and its Content-Type is neither JSON nor a form".into(),
        )),
        m => Ok(m),
    }
}

/// The body is content-encoded (gzip, deflate…): its fields cannot be read as sent.
fn encoded(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| {
            !v.to_str()
                .is_ok_and(|t| t.trim().eq_ignore_ascii_case("identity"))
        })
}

/// A request with a body, by its headers (a GET carrying one is not a plain read).
fn has_body(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().map_or(true, |t| t.trim() != "0"))
}

/// A request to a GraphQL endpoint: POST bodies are parsed; GET carries the operation in the
/// query string (`query`, `operationName`, `variables`); anything else, or a GET with a body,
/// escalates. `None`: a plain GET/HEAD/OPTIONS without a `query` parameter, for the REST rules
/// and the default.
fn graphql_request(
    svc: &Service,
    head: &RequestHead<'_>,
    query: &str,
    body: Option<&[u8]>,
) -> Option<Verdict> {
    let esc = |code: &str, why: &str| Some(graphql_guard(svc, code, why.into()));
    match head.method {
        "POST" => {
            if encoded(head.headers) {
                return esc("body_encoded", "the GraphQL body is content-encoded");
            }
            let in_url = form_urlencoded::parse(query.as_bytes()).any(|(k, _)| {
                matches!(
                    k.as_ref(),
                    "query" | "operationName" | "variables" | "extensions"
                )
            });
            if in_url || query.contains(';') {
                // Some servers take the operation from the URL of a POST, or merge both.
                return esc(
                    "graphql_ambiguous",
                    "GraphQL parameters (or a `;`) in the URL of a POST",
                );
            }
            Some(graphql_verdict(svc, body))
        }
        "GET" | "HEAD" | "OPTIONS" => {
            if has_body(head.headers) {
                return esc("graphql_get_body", "a GraphQL GET with a body");
            }
            if query.contains(';') {
                return esc(
                    "query_separator",
                    "`;` in a GraphQL query string: some frameworks split parameters on it",
                );
            }
            let mut params = serde_json::Map::new();
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                let value = match k.as_ref() {
                    "query" | "operationName" => serde_json::Value::String(v.into_owned()),
                    "variables" => match serde_json::from_str(&v) {
                        Ok(j) => j,
                        Err(_) => return esc("body_unparseable", "`variables` is not JSON"),
                    },
                    _ => continue,
                };
                if params.insert(k.into_owned(), value).is_some() {
                    return esc("duplicate_key", "a GraphQL parameter appears twice");
                }
            }
            if !params.contains_key("query") {
                return None;
            }
            let doc = serde_json::Value::Object(params).to_string();
            Some(graphql_verdict(svc, Some(doc.as_bytes())))
        }
        _ => esc(
            "graphql_method",
            "a GraphQL endpoint called with an unexpected method",
        ),
    }
}

/// A path with non-ASCII segments that would match a gated rule if those segments were the
/// ASCII they resemble (fullwidth letters, Cyrillic lookalikes…): some servers fold them.
fn lookalike(svc: &Service, method: &str, segs: &[Cow<'_, str>]) -> Option<Verdict> {
    if segs.iter().all(|s| s.is_ascii()) {
        return None;
    }
    let loose = |t: &[Seg]| loose_matches(t, segs) && !matches(t, segs);
    let rule = svc.rules.iter().find(|r| {
        r.action > Action::Allow
            && (r.methods.iter().any(|m| m == method)
                || (method == "POST" && r.methods.iter().any(|m| m == "PATCH")))
            && loose(&r.template)
    })?;
    let mut v = guard(
        svc,
        "path_lookalike",
        format!(
            "non-ASCII path segments resemble {} {} ({})",
            method, rule.path, rule.tool
        ),
    );
    v.tool = Some(rule.tool.clone());
    Some(v)
}

/// [`matches`], where a non-ASCII segment matches any literal.
fn loose_matches(t: &[Seg], s: &[Cow<'_, str>]) -> bool {
    match t.split_first() {
        None => s.is_empty(),
        Some((Seg::Lit(l), rest)) => {
            s.first()
                .is_some_and(|x| !x.is_ascii() || x.eq_ignore_ascii_case(l))
                && loose_matches(rest, &s[1..])
        }
        Some((Seg::One(_), rest)) => !s.is_empty() && loose_matches(rest, &s[1..]),
        Some((Seg::Many(_), rest)) => (1..=s.len())
            .rev()
            .any(|take| loose_matches(rest, &s[take..])),
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
        approval: rule.approval.clone(),
    }
}

/// A guard on a GraphQL endpoint, where the mutations are not known: as strict as the strictest
/// GraphQL entry of the service (a block entry makes it block), never below escalate.
fn graphql_guard(svc: &Service, code: &str, why: String) -> Verdict {
    let mut v = guard(svc, code, why);
    if let Some(strictest) = svc.gql.values().flatten().map(|e| e.action).max() {
        v.action = v.action.max(strictest);
    }
    v
}

fn graphql_verdict(svc: &Service, body: Option<&[u8]>) -> Verdict {
    let Some(body) = body else {
        return graphql_guard(svc, "body_unparseable", "GraphQL body was not read".into());
    };
    let wants_args = |name: &str| {
        svc.gql
            .get(name)
            .is_some_and(|entries| entries.iter().any(|e| !e.when.is_empty()))
    };
    let calls = match graphql::operation(body, &wants_args) {
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
        Ok(graphql::Operation::Mutation(calls)) => calls,
        Err(code) => return graphql_guard(svc, code, format!("GraphQL request: {code}")),
    };
    let names = calls
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let no_params = BTreeMap::new();
    let mut best: Option<Verdict> = None;
    for call in &calls {
        let name = &call.name;
        let tool = || format!("{}.graphql.{name}", svc.name);
        let entries = svc.gql.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let mut fired: Option<Verdict> = None;
        for r in entries {
            // (action, reason code, the arguments the conditions looked at)
            let outcome: Option<(Action, &str, Option<&Fields>)> = if r.when.is_empty() {
                Some((r.action, "rule_match", None))
            } else {
                match &call.args {
                    Some(Ok(args)) => {
                        let mut result = Some((r.action, "rule_match", Some(args)));
                        for c in &r.when {
                            match check(c, args, &no_params) {
                                Ok(true) => {}
                                Ok(false) => {
                                    result = None;
                                    break;
                                }
                                Err(code) => {
                                    result =
                                        Some((Action::Escalate.max(r.action), code, Some(args)));
                                    break;
                                }
                            }
                        }
                        result
                    }
                    Some(Err(code)) => Some((Action::Escalate.max(r.action), *code, None)),
                    // Arguments are flattened for every name with a conditional entry.
                    None => Some((Action::Escalate.max(r.action), "graphql_unparseable", None)),
                }
            };
            let Some((action, code, args)) = outcome else {
                continue;
            };
            let mut params = BTreeMap::from([("mutations".to_string(), names.clone())]);
            if let Some(args) = args {
                for c in &r.when {
                    if let Some(v) = args.get(&c.field) {
                        params.insert(c.field.clone(), v.as_text());
                    }
                }
            }
            let mut codes = vec!["rule_match".to_string()];
            if code != "rule_match" {
                codes.push(code.to_string());
            }
            let v = Verdict {
                action,
                rule_id: Some(r.id.clone()),
                service: Some(svc.name.clone()),
                tool: Some(tool()),
                class: Some(r.class),
                reason_codes: codes,
                explanation: format!("mutation {name} ({}): {}", r.id, r.reason),
                params,
                expiry: None,
                wait: None,
                approval: None,
            };
            if fired.as_ref().is_none_or(|b| v.action > b.action) {
                fired = Some(v);
            }
        }
        let v = fired.unwrap_or_else(|| {
            let (code, why) = if entries.is_empty() {
                (
                    "unknown_mutation",
                    format!("mutation {name} is named by no rule"),
                )
            } else {
                (
                    "no_rule_matches",
                    format!("no entry for mutation {name} matches its arguments"),
                )
            };
            let mut v = guard(svc, code, why);
            v.action = v.action.max(svc.graphql_default);
            v.tool = Some(tool());
            v.params.insert("mutations".into(), names.clone());
            v
        });
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
        // The value's text equals the string (a boolean's text is "true"/"false").
        toml::Value::String(s) => match v {
            FieldValue::Str(x) => x == s,
            FieldValue::Bool(b) => s == if *b { "true" } else { "false" },
            FieldValue::Null => s == "null",
            FieldValue::Num(_) => v.as_text() == *s,
        },
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
        // A flag that is neither true nor false ("True", 1, "yes") may read as either upstream;
        // null is "not set".
        (Test::Eq(toml::Value::Boolean(_)) | Test::Ne(toml::Value::Boolean(_)), Some(v))
            if v.as_bool().is_none() && *v != FieldValue::Null =>
        {
            return Err("value_unparseable")
        }
        // A string that differs from a tested one only in case or surrounding blanks may be read
        // as that one upstream.
        (Test::Eq(w) | Test::Ne(w), Some(v)) if near_miss(v, std::slice::from_ref(w)) => {
            return Err("value_unparseable")
        }
        (Test::In(ws), Some(v)) if near_miss(v, ws) => return Err("value_unparseable"),
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

/// `v` is a string equal to one of the string `wants` only when case and surrounding blanks are
/// ignored.
fn near_miss(v: &FieldValue, wants: &[toml::Value]) -> bool {
    let FieldValue::Str(x) = v else {
        return false;
    };
    wants.iter().any(|w| match w {
        toml::Value::String(s) => x != s && x.trim().eq_ignore_ascii_case(s),
        _ => false,
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
fn path_segments<'p>(svc: &Service, path_and_query: &'p str) -> Option<Segs<'p>> {
    let path = path_and_query.split('?').next().unwrap_or("");
    let mut segs = normalize::segments_cow(path)?;
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
        segs[0] = Cow::Borrowed("repos");
        segs.insert(1, Cow::Borrowed("~id"));
    }
    Some(segs)
}

/// Is this one of the service's GraphQL endpoints? Case-insensitive, like template literals.
fn is_graphql_path(svc: &Service, segs: &[Cow<'_, str>]) -> bool {
    svc.graphql_paths.iter().any(|g| {
        g.len() == segs.len() && g.iter().zip(segs).all(|(a, b)| a.eq_ignore_ascii_case(b))
    })
}

/// Calls `f` with every rule whose method and template match, in the order they are weighed
/// (the method's rules in file order; for POST, then the PATCH rules); stops when `f` says so.
fn for_candidates<'a>(
    svc: &'a Service,
    method: &str,
    segs: &[Cow<'_, str>],
    mut f: impl FnMut(&'a Rule) -> bool,
) {
    let first: Cow<'_, str> = match segs.first() {
        Some(s) if s.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Owned(s.to_ascii_lowercase()),
        Some(s) => Cow::Borrowed(s.as_ref()),
        None => Cow::Borrowed(""),
    };
    let mut methods = [Some(method), None];
    if method == "POST" {
        methods[1] = Some("PATCH"); // POST to a PATCH route is treated as that PATCH
    }
    for m in methods.into_iter().flatten() {
        let Some(ix) = normalize::method_index(m).and_then(|i| svc.by_method.get(i)) else {
            continue;
        };
        let lit = ix
            .by_first
            .get(first.as_ref())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let (mut a, mut b) = (lit.iter().peekable(), ix.wild.iter().peekable());
        loop {
            let i = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            let Some(rule) = i.and_then(|&i| svc.rules.get(i)) else {
                break;
            };
            if rule.fits(segs) && matches(&rule.template, segs) && !f(rule) {
                return;
            }
        }
    }
}

fn candidates<'a>(
    svc: &'a Service,
    method: &str,
    segs: &[Cow<'_, str>],
) -> Vec<(&'a Rule, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for_candidates(svc, method, segs, |rule| {
        let mut params = BTreeMap::new();
        if capture(&rule.template, segs, &mut params) {
            out.push((rule, params));
        }
        true
    });
    out
}

/// Does the template match? No allocation; `capture` makes the same choices.
fn matches(t: &[Seg], s: &[Cow<'_, str>]) -> bool {
    match t.split_first() {
        None => s.is_empty(),
        Some((Seg::Lit(l), rest)) => {
            s.first().is_some_and(|x| x.eq_ignore_ascii_case(l)) && matches(rest, &s[1..])
        }
        Some((Seg::One(_), rest)) => !s.is_empty() && matches(rest, &s[1..]),
        // Greedy: the longest run that still lets the rest match.
        Some((Seg::Many(_), rest)) => (1..=s.len()).rev().any(|take| matches(rest, &s[take..])),
    }
}

/// Matches and records the parameters (`{x*}` joined with `/`).
fn capture(t: &[Seg], s: &[Cow<'_, str>], params: &mut BTreeMap<String, String>) -> bool {
    match t.split_first() {
        None => s.is_empty(),
        Some((Seg::Lit(l), rest)) => {
            s.first().is_some_and(|x| x.eq_ignore_ascii_case(l)) && capture(rest, &s[1..], params)
        }
        Some((Seg::One(n), rest)) => match s.first() {
            Some(x) => {
                params.insert(n.clone(), x.to_string());
                capture(rest, &s[1..], params)
            }
            None => false,
        },
        Some((Seg::Many(n), rest)) => {
            for take in (1..=s.len()).rev() {
                if matches(rest, &s[take..]) {
                    params.insert(n.clone(), s[..take].join("/"));
                    return capture(rest, &s[take..], params);
                }
            }
            false
        }
    }
}

fn compile_file(file: &str, text: &str) -> Result<Service, RulesError> {
    let lines = crate::text_pos::LineIndex::new(text);
    let at = |offset: usize, message: String| {
        let (line, column) = lines.line_col(offset);
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
        by_method: Vec::new(),
        gql: HashMap::new(),
        git: None,
    };
    if let Some(spanned) = raw.git {
        svc.git = Some(compile_git(file, text, spanned, &svc)?);
    }
    for spanned in raw.rule {
        let start = spanned.span().start;
        let (line, _) = lines.line_col(start);
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
            path: r.path.clone(),
            template,
            class: r.class,
            action: r.action,
            reason: r.reason.clone(),
            when,
            expiry: dur(&r.expiry, "expiry")?,
            wait: dur(&r.wait, "wait")?,
            approval: if r.approvals.is_none()
                && r.approvers.is_empty()
                && r.self_approval.is_none()
            {
                None
            } else {
                let required = r.approvals.unwrap_or(1);
                if !(1..=10).contains(&required) {
                    return Err(err(format!("approvals = {required}: must be 1 to 10")));
                }
                Some(super::ApprovalPolicy {
                    required,
                    approvers: r.approvers.clone(),
                    self_approval: r.self_approval.unwrap_or(false),
                })
            },
        });
    }
    for spanned in raw.graphql {
        let start = spanned.span().start;
        let (line, _) = lines.line_col(start);
        let g = spanned.into_inner();
        let mut when = Vec::new();
        for c in &g.when {
            when.push(compile_cond(c).map_err(|m| at(start, format!("graphql entry: {m}")))?);
        }
        for m in &g.mutations {
            let rule = GqlRule {
                id: format!("{file}:{line}"),
                class: g.class,
                action: g.action,
                reason: g.reason.clone(),
                when: when.clone(),
            };
            add_gql(&mut svc.gql, m, rule).map_err(|e| at(start, e))?;
        }
    }
    Ok(svc)
}

/// Checks a `[git]` section: hosts, protected-ref patterns (errors name the entry's line).
fn compile_git(
    file: &str,
    text: &str,
    spanned: toml::Spanned<RawGit>,
    svc: &Service,
) -> Result<GitRules, RulesError> {
    let at = |offset: usize, message: String| {
        let (line, column) = crate::text_pos::line_col(text, offset);
        RulesError::Parse {
            file: file.to_string(),
            line,
            column,
            message: format!("[git]: {message}"),
        }
    };
    let start = spanned.span().start;
    let (line, _) = crate::text_pos::line_col(text, start);
    let g = spanned.into_inner();
    if g.hosts.is_empty() {
        return Err(at(start, "hosts must not be empty".into()));
    }
    let hosts: Vec<String> = g.hosts.iter().map(|h| normalize::host(h)).collect();
    if let Some(h) = hosts.iter().find(|h| svc.hosts.contains(h)) {
        return Err(at(
            start,
            format!("host {h} is also one of the service's REST hosts"),
        ));
    }
    let mut protected = Vec::new();
    for p in g.protected_refs {
        let offset = p.span().start;
        protected.push(RefPattern::parse(p.get_ref()).map_err(|m| at(offset, m))?);
    }
    Ok(GitRules {
        id: format!("{file}:{line}"),
        hosts,
        protected,
        delete: g.delete,
        protected_action: g.protected,
        push: g.push,
    })
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
    if from.git.is_some() {
        if into.git.is_some() {
            return Err(RulesError::Parse {
                file: file.into(),
                line: 1,
                column: 1,
                message: format!("service {} has a [git] section in two files", from.name),
            });
        }
        into.git = from.git;
    }
    for (k, entries) in from.gql {
        for v in entries {
            add_gql(&mut into.gql, &k, v).map_err(|message| RulesError::Parse {
                file: file.into(),
                line: 1,
                column: 1,
                message,
            })?;
        }
    }
    Ok(())
}

/// Adds one entry for mutation `name`; two entries without conditions for one name conflict.
fn add_gql(
    gql: &mut HashMap<String, Vec<GqlRule>>,
    name: &str,
    rule: GqlRule,
) -> Result<(), String> {
    let entries = gql.entry(name.to_string()).or_default();
    if rule.when.is_empty() && entries.iter().any(|e| e.when.is_empty()) {
        return Err(format!("mutation {name} is listed twice"));
    }
    entries.push(rule);
    Ok(())
}

fn index(s: &mut Service) {
    s.by_method = vec![MethodIndex::default(); normalize::KNOWN_METHODS.len()];
    for (i, r) in s.rules.iter().enumerate() {
        for m in &r.methods {
            let Some(ix) = normalize::method_index(m).and_then(|k| s.by_method.get_mut(k)) else {
                continue; // compile_file refuses unknown methods
            };
            match r.template.first() {
                Some(Seg::Lit(l)) => ix
                    .by_first
                    .entry(l.to_ascii_lowercase())
                    .or_default()
                    .push(i),
                _ => ix.wild.push(i),
            }
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
