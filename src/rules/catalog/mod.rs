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
//! form_bodies = false                       # true: the API reads every body as a form (Stripe):
//!                                           # every POST body is looked at for `_method`, and a
//!                                           # JSON body a rule's conditions need is held
//! command_texts = ["@copilot", "\nbors"]   # what `commands = true` conditions look for
//! header_fields = ["Stripe-Account"]        # these headers' values are fields `@stripe-account`
//! json_prefixes = ["/v2"]                   # paths that read JSON as JSON, form_bodies or not
//! slashless_ids = false                     # true: ids never hold `/`, `\` or `%` (Stripe): a
//!                                           # write whose path has `%2F`, `%5C`, `\` or `%25` is
//!                                           # held instead of read two ways
//! version_header = "Stripe-Version"         # with version_floor: a write naming an older API
//! version_floor = "2020-08-27"              # version, or the header twice, or a value not
//!                                           # `YYYY-MM-DD[.name]`, is held (none given: the
//!                                           # account's default version, not judged)
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
//! # spends = "amount"   # allow/notify only: the money it moves unreviewed (minor units of
//! #                     # `currency`) counts against the agent's gate.money_budget_usd; an
//! #                     # unreadable amount or currency escalates
//!
//! [[graphql]]
//! mutations = ["deleteRef"]
//! class = "irreversible"
//! action = "escalate"
//! # approvals = 2; approvers = ["group:sre"]   # as on a REST rule
//!
//! [[graphql]]                               # conditions on the mutation's arguments
//! mutations = ["createRef"]
//! class = "irreversible"
//! action = "escalate"
//! when = [{ field = "input.name", protected_ref = "ref" }]   # a ref [git] protects
//!
//! [[graphql_field]]                         # a request selecting one of these fields anywhere
//! fields = ["recoveryCodes"]                # (any type, any depth, aliases and fragments seen
//! tool = "github.graphql.read-recovery-codes" # through; read or mutation) gets this verdict
//! class = "irreversible"
//! action = "escalate"
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
//! `currency_field`, default `currency`; see `money::over` for the conservative conversion),
//! `protected_ref = "branch"` or `"ref"` (the field names a ref the service's `[git]
//! protected_refs` protect, so REST and GraphQL ref writes share git push's list; see
//! [`RefForm`]; a service using it needs a `[git]` section),
//! `ne_param = "repo"` (the field is given and differs from that path parameter: a rename, not
//! the same name sent again),
//! `other_than = ["description", "metadata"]` with `field = "*"` (a body or query field whose
//! top-level name is not listed is given: a route's harmless fields listed, any other holds;
//! with `field = "obj.*"`, a key of object `obj` that is not listed),
//! `not_user_node_id = true` (the field is anything but a plainly written GitHub user node id,
//! `U_…` or legacy `04:User…`: a bot's id, coding agents such as Copilot are bots, in any
//! encoding holds),
//! `commands = true` (the field's text holds one of the service's `command_texts`, read the
//! widest way: see `commands`; a text starting with a newline must start a line),
//! `path_under = [".github"]` (the field, read as a repository path, is that directory or below
//! it: `./.GitHub//workflows/x.yml` is; a `..` segment or a NUL cannot be placed and escalates;
//! `"**/.github"`: the directory at any depth, `sub/.github/x` too).
//! A `path_under`, `in`, `eq`, `present = true` or `commands` field may name every element of an array with a `*` segment
//! (`tree.*.path`, `assignees.*`): the condition holds if any element's holds (`*` also matches
//! nothing, for a single value given where a list is expected, which GraphQL coerces to a
//! list); an element `in`/`eq` cannot read (an object) fails closed.
//! A condition that cannot be evaluated (unparseable body, unknown currency) escalates.
//! `present = true` also holds for an object or array with something in it (`files` for
//! `{"files":{"a.txt":{"content":"x"}}}`); `present = false` holds when the field has no value
//! of its own (so both may hold for an object: over-matching holds).
//!
//! REST conditions name flattened body or query fields (`metadata[a]=1` and
//! `{"metadata":{"a":1}}` are both `metadata.a`) or path parameters; a read's (GET's) are met
//! by its query: a tested field that only its body gives is held (`param_ambiguous`). Every
//! matching rule is weighed and the most severe action wins (the first listed among equals).
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
//! an unreadable command section escalates. Protected-ref patterns are exact ref names, end in
//! `/*` (everything below) or `*` (every name so started), or hold `{N}` for a run of ASCII
//! digits (`refs/heads/{N}.x`), matched case-insensitively. Other paths on a git host get
//! `default`.
//!
//! Layout: this module holds the public types and [`Catalog`]'s API; `compile` reads and checks
//! rule files; `matcher` holds the compiled rules and finds the ones a request's method and
//! path select; `guard` holds the framing and differential checks and the condition checks;
//! `gql_verdict` judges GraphQL requests (the parser is [`super::graphql`]); `evaluate`
//! weighs a request ([`Catalog::evaluate`]); `loosen` tells what a reload makes less strict
//! ([`Catalog::loosened_in`]); `digest` says what files it was compiled from
//! ([`Catalog::digest`]).

use std::path::Path;

use super::git::{GitRequest, GitRules};
use super::{normalize, Action, Class, RequestHead, RulesError};

mod commands;
mod compile;
mod digest;
mod evaluate;
mod gql_verdict;
mod guard;
mod loosen;
mod matcher;
mod version;

pub use digest::CatalogDigest;
pub use loosen::Loosening;

use compile::{check_service_conditions, compile_file, index, merge, parse_template};
use matcher::{host_matches, Seg, Service};

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
    MoneyOver {
        major: f64,
        currency_field: String,
    },
    /// The field names a protected ref (the service's `[git] protected_refs`).
    ProtectedRef(RefForm),
    /// The field, read as a repository path, names one of these directories or a path below
    /// one (segments compared without regard to case; see `guard::path_under`).
    PathUnder(Vec<String>),
    /// A field other than these (top-level names) is given: the closed world of a route whose
    /// harmless fields are few (`field = "*"`).
    OtherThan(Vec<String>),
    /// The field is given and differs from this path parameter's value (`name` against
    /// `{repo}`: a rename, not the same name sent again).
    NeParam(String),
    /// The field's text holds one of the service's `command_texts` (see `commands`).
    Commands,
    /// The field is anything but a plainly written GitHub user node id: a bot's (coding agents
    /// are bots), in any encoding (see `guard::not_user_node_id`).
    NotUserNodeId,
}

/// How a `protected_ref` condition reads its field as a ref name. Every reading GitHub might
/// take is weighed (over-matching holds, which is the safe side); a name git would refuse
/// (`main/`, ` main`, `a..b`, empty) cannot be placed and fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefForm {
    /// A branch name: `release/1.0` is `refs/heads/release/1.0`; a name starting with `refs/`
    /// is also read as written (some endpoints accept `refs/heads/main`).
    Branch,
    /// A ref: `refs/tags/v1` as written; without `refs/`, both `refs/NAME` (the `git/refs/{ref}`
    /// form, `heads/main`, `tags/v1`) and `refs/heads/NAME`.
    Ref,
}

/// A compiled `when` condition: the field (dotted body/query name, or a path parameter) and
/// its test.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub test: Test,
}

type Cond = Condition;

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
    /// Hosts Airlock injects a credential on (normalised), with the credential's service. One
    /// no service of the rules names is not given `default_action`: reads pass, writes are
    /// unclassified (`unclassified_writes`), as on a service's unlisted route.
    pub credentialed_hosts: Vec<(String, String)>,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        Self {
            default_action: Action::Allow,
            unclassified_writes: Action::Escalate,
            credentialed_hosts: Vec::new(),
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
    /// Each rule file's name and hex SHA-256 ([`Catalog::digest`]).
    files: Vec<(String, String)>,
}

/// A name in the rules directory that is never read as rules: hidden (`.#github.toml`, the
/// lock link Emacs leaves, dangling, while a file is edited; `.github.toml.swp`) or an editor's
/// backup (`github.toml~`).
pub(super) fn skipped_name(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.starts_with(b".") || name.ends_with(b"~")
}

/// The shipped catalog, compiled in.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "rules/github.toml",
        include_str!("../../../rules/github.toml"),
    ),
    (
        "rules/github-deletes.toml",
        include_str!("../../../rules/github-deletes.toml"),
    ),
    (
        "rules/github-writes.toml",
        include_str!("../../../rules/github-writes.toml"),
    ),
    (
        "rules/stripe-routes.toml",
        include_str!("../../../rules/stripe-routes.toml"),
    ),
    (
        "rules/stripe.toml",
        include_str!("../../../rules/stripe.toml"),
    ),
];

impl Catalog {
    pub fn embedded(opts: &CatalogOptions) -> Result<Catalog, RulesError> {
        let sources: Vec<(String, String)> = EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        Self::from_sources(&sources, opts)
    }

    /// Every `*.toml` in `dir`, in name order; hidden files (a name starting with `.`, such
    /// as Emacs's lock link `.#github.toml`) and editor backups (ending in `~`) are skipped.
    pub fn load_dir(dir: &Path, opts: &CatalogOptions) -> Result<Catalog, RulesError> {
        let rd = std::fs::read_dir(dir).map_err(|e| RulesError::Io {
            file: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let mut paths: Vec<_> = rd
            .filter_map(Result::ok)
            .filter(|e| !skipped_name(&e.file_name()))
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        crate::secret_file::check_policy(&dir.join(".")).map_err(|message| RulesError::Io {
            file: dir.display().to_string(),
            message,
        })?;
        let mut sources = Vec::new();
        for p in paths {
            crate::secret_file::check_policy(&p).map_err(|message| RulesError::Io {
                file: p.display().to_string(),
                message,
            })?;
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
            check_service_conditions(s)?;
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
            files: digest::file_digests(sources),
        })
    }

    pub fn rule_count(&self) -> usize {
        self.services
            .iter()
            .map(|s| {
                s.rules.len() + s.gql.values().map(Vec::len).sum::<usize>() + s.gql_fields.len()
            })
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

    /// Every REST rule and GraphQL entry that sets an approval policy (REST in file order,
    /// then GraphQL by mutation name, then `[[graphql_field]]` entries in file order).
    pub fn approval_policies(&self) -> Vec<crate::rules::RulePolicy> {
        let mut out: Vec<crate::rules::RulePolicy> = self
            .services
            .iter()
            .flat_map(|s| s.rules.iter())
            .filter_map(|r| {
                r.approval.as_ref().map(|p| crate::rules::RulePolicy {
                    rule_id: r.id.clone(),
                    tool: r.tool.clone(),
                    policy: p.clone(),
                })
            })
            .collect();
        for s in &self.services {
            let mut names: Vec<&String> = s.gql.keys().collect();
            names.sort();
            for name in names {
                for e in &s.gql[name] {
                    // One entry may name several mutations: checked once.
                    if out.iter().any(|r| r.rule_id == e.id) {
                        continue;
                    }
                    if let Some(p) = &e.approval {
                        out.push(crate::rules::RulePolicy {
                            rule_id: e.id.clone(),
                            tool: format!("{}.graphql.{name}", s.name),
                            policy: p.clone(),
                        });
                    }
                }
            }
            for f in &s.gql_fields {
                if let Some(p) = &f.approval {
                    out.push(crate::rules::RulePolicy {
                        rule_id: f.id.clone(),
                        tool: f.tool.clone(),
                        policy: p.clone(),
                    });
                }
            }
        }
        out
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

    /// Every service's name, in file order.
    pub fn service_names(&self) -> Vec<String> {
        self.services.iter().map(|s| s.name.clone()).collect()
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
}
