//! Format and compile: a rule file's raw (serde) shape, checked and compiled into a service
//! (templates, conditions, `[git]`, approval policies); services merged across files and indexed
//! by method.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::gql_verdict::{GqlField, GqlRule};
use super::matcher::{MethodIndex, Rule, Seg, Service};
use super::version::VersionFloor;
use super::{Cond, RefForm, Test};
use crate::rules::git::{GitRules, RefPattern};
use crate::rules::{normalize, Action, ApprovalPolicy, Class, RulesError};

// ---- raw ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    service: RawService,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
    #[serde(default)]
    graphql: Vec<toml::Spanned<RawGraphql>>,
    #[serde(default)]
    graphql_field: Vec<toml::Spanned<RawGraphqlField>>,
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
    #[serde(default)]
    form_bodies: bool,
    #[serde(default)]
    slashless_ids: bool,
    #[serde(default)]
    version_header: Option<String>,
    #[serde(default)]
    version_floor: Option<String>,
    #[serde(default)]
    command_texts: Vec<String>,
    #[serde(default)]
    header_fields: Vec<String>,
    #[serde(default)]
    json_prefixes: Vec<String>,
}

/// `version_header` and `version_floor`, both or neither; the floor a `YYYY-MM-DD` date.
fn version_floor(s: &RawService) -> Result<Option<VersionFloor>, String> {
    match (&s.version_header, &s.version_floor) {
        (None, None) => Ok(None),
        (Some(h), Some(f)) => {
            let header = http::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| format!("version_header {h:?} is not a header name"))?;
            if !super::version::is_version_date(f) || f.len() != 10 {
                return Err(format!(
                    "version_floor {f:?} is not a date like \"2020-08-27\""
                ));
            }
            Ok(Some(VersionFloor {
                header,
                floor: f.clone(),
            }))
        }
        _ => Err("set version_header and version_floor together".into()),
    }
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
    /// The field holding the money this call moves when it is not held (minor units of the
    /// currency in `currency`): counted against the agent's `gate.money_budget_usd`.
    spends: Option<String>,
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
    protected_ref: Option<RefForm>,
    path_under: Option<Vec<String>>,
    other_than: Option<Vec<String>>,
    ne_param: Option<String>,
    commands: Option<bool>,
    not_user_node_id: Option<bool>,
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
    /// The approval policy, as on a REST rule.
    approvals: Option<u32>,
    #[serde(default)]
    approvers: Vec<String>,
    self_approval: Option<bool>,
}

/// A `[[graphql_field]]` entry: GraphQL requests selecting one of `fields` (in any type, at any
/// depth, read or mutation) get this verdict under this tool name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraphqlField {
    fields: Vec<String>,
    tool: String,
    class: Class,
    action: Action,
    #[serde(default)]
    reason: String,
    approvals: Option<u32>,
    #[serde(default)]
    approvers: Vec<String>,
    self_approval: Option<bool>,
}

/// A GraphQL name (`[_A-Za-z][_0-9A-Za-z]*`), as a field is spelled.
fn graphql_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c == b'_' || c.is_ascii_alphabetic())
        && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

pub(super) fn compile_file(file: &str, text: &str) -> Result<Service, RulesError> {
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
    // Path prefixes as segments, an empty one (`/`) left out.
    let prefix_lists = |ps: &[String]| -> Vec<Vec<String>> {
        ps.iter()
            .map(|p| seg_list(p))
            .filter(|p| !p.is_empty())
            .collect()
    };
    let mut svc = Service {
        name: s.name.clone(),
        hosts: s.hosts.iter().map(|h| normalize::host(h)).collect(),
        prefixes: prefix_lists(&s.path_prefixes),
        default: s.default,
        graphql_paths: s.graphql_paths.iter().map(|p| seg_list(p)).collect(),
        graphql_default: s.graphql_default,
        form_bodies: s.form_bodies,
        slashless_ids: s.slashless_ids,
        version: version_floor(&s).map_err(|m| at(0, format!("service {}: {m}", s.name)))?,
        commands: s
            .command_texts
            .iter()
            .map(|t| {
                super::commands::needle(t)
                    .ok_or_else(|| at(0, format!("service {}: a blank command text {t:?}", s.name)))
            })
            .collect::<Result<_, _>>()?,
        json_prefixes: prefix_lists(&s.json_prefixes),
        header_fields: s
            .header_fields
            .iter()
            .map(|h| {
                http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    at(
                        0,
                        format!(
                            "service {}: header_fields: {h:?} is not a header name",
                            s.name
                        ),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        rules: Vec::new(),
        by_method: Vec::new(),
        gql: HashMap::new(),
        gql_fields: Vec::new(),
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
        if r.spends.is_some() && !matches!(r.action, Action::Allow | Action::Notify) {
            return Err(err(
                "`spends` is for allow and notify rules (a held call is reviewed)".into(),
            ));
        }
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
            expiry: bounded(dur(&r.expiry, "expiry")?, "expiry", EXPIRY_BOUNDS).map_err(err)?,
            wait: bounded(dur(&r.wait, "wait")?, "wait", WAIT_BOUNDS).map_err(err)?,
            spends: r.spends.clone(),
            approval: policy_of(r.approvals, &r.approvers, r.self_approval).map_err(err)?,
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
        let approval = policy_of(g.approvals, &g.approvers, g.self_approval)
            .map_err(|m| at(start, format!("graphql entry: {m}")))?;
        for m in &g.mutations {
            let rule = GqlRule {
                id: format!("{file}:{line}"),
                class: g.class,
                action: g.action,
                reason: g.reason.clone(),
                when: when.clone(),
                approval: approval.clone(),
            };
            add_gql(&mut svc.gql, m, rule).map_err(|e| at(start, e))?;
        }
    }
    for spanned in raw.graphql_field {
        let start = spanned.span().start;
        let (line, _) = lines.line_col(start);
        let g = spanned.into_inner();
        let err = |m: String| at(start, format!("graphql_field {}: {m}", g.tool));
        if g.tool.trim().is_empty() {
            return Err(at(start, "graphql_field: needs a `tool`".into()));
        }
        if g.fields.is_empty() {
            return Err(err("needs at least one field".into()));
        }
        if let Some(bad) = g.fields.iter().find(|f| !graphql_name(f)) {
            return Err(err(format!(
                "{bad:?} is not a GraphQL field name (a name, no type or path: \"recoveryCodes\")"
            )));
        }
        svc.gql_fields.push(GqlField {
            id: format!("{file}:{line}"),
            tool: g.tool.clone(),
            fields: g.fields.clone(),
            class: g.class,
            action: g.action,
            reason: g.reason.clone(),
            approval: policy_of(g.approvals, &g.approvers, g.self_approval).map_err(err)?,
        });
    }
    Ok(svc)
}

/// A rule's or GraphQL entry's approval policy from its `approvals`, `approvers` and
/// `self_approval` (`None`: none set, one reviewer).
fn policy_of(
    approvals: Option<u32>,
    approvers: &[String],
    self_approval: Option<bool>,
) -> Result<Option<ApprovalPolicy>, String> {
    if approvals.is_none() && approvers.is_empty() && self_approval.is_none() {
        return Ok(None);
    }
    let required = approvals.unwrap_or(1);
    if !(1..=10).contains(&required) {
        return Err(format!("approvals = {required}: must be 1 to 10"));
    }
    // One entry per person or group, however often spelled.
    let mut unique: Vec<String> = Vec::new();
    for a in approvers {
        if !unique.iter().any(|u| crate::person::same(u, a)) {
            unique.push(a.clone());
        }
    }
    Ok(Some(ApprovalPolicy {
        required,
        approvers: unique,
        self_approval: self_approval.unwrap_or(false),
        also: Vec::new(),
    }))
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

pub(super) fn merge(into: &mut Service, from: Service, file: &str) -> Result<(), RulesError> {
    if into.hosts != from.hosts
        || into.form_bodies != from.form_bodies
        || into.slashless_ids != from.slashless_ids
        // A file that leaves the version floor or the JSON paths out takes the other's (an
        // older file of one's own still loads); two that set them must agree.
        || (into.version.is_some() && from.version.is_some() && into.version != from.version)
        || (!into.json_prefixes.is_empty()
            && !from.json_prefixes.is_empty()
            && into.json_prefixes != from.json_prefixes)
    {
        return Err(RulesError::Parse {
            file: file.into(),
            line: 1,
            column: 1,
            message: format!(
                "service {} is declared with different hosts, form_bodies, json_prefixes, slashless_ids or version settings in another file",
                from.name
            ),
        });
    }
    if into.version.is_none() {
        into.version = from.version;
    }
    if into.json_prefixes.is_empty() {
        into.json_prefixes = from.json_prefixes;
    }
    for h in from.header_fields {
        if !into.header_fields.contains(&h) {
            into.header_fields.push(h);
        }
    }
    for t in from.commands {
        if !into.commands.contains(&t) {
            into.commands.push(t);
        }
    }
    into.rules.extend(from.rules);
    into.gql_fields.extend(from.gql_fields);
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

/// A `protected_ref` condition reads the service's `[git] protected_refs`, a `commands` one its
/// `command_texts`: without them it could never hold, so the catalog is refused (errors name
/// the rule).
pub(super) fn check_service_conditions(s: &Service) -> Result<(), RulesError> {
    if s.commands.is_empty() {
        let uses = |when: &[Cond]| when.iter().any(|c| c.test == Test::Commands);
        if let Some(id) = first_using(s, uses) {
            return Err(at_rule(
                id,
                format!(
                    "a commands condition needs command_texts in service {}'s [service]",
                    s.name
                ),
            ));
        }
    }
    if s.git.is_some() {
        return Ok(());
    }
    let uses = |when: &[Cond]| when.iter().any(|c| matches!(c.test, Test::ProtectedRef(_)));
    match first_using(s, uses) {
        None => Ok(()),
        Some(id) => Err(at_rule(
            id,
            format!(
                "a protected_ref condition needs a [git] section (protected_refs) in service {}",
                s.name
            ),
        )),
    }
}

/// The id of the first REST rule or GraphQL entry with a condition `uses` picks.
fn first_using(s: &Service, uses: impl Fn(&[Cond]) -> bool) -> Option<&String> {
    let rest = s.rules.iter().filter(|r| uses(&r.when)).map(|r| &r.id);
    let gql = s
        .gql
        .values()
        .flatten()
        .filter(|g| uses(&g.when))
        .map(|g| &g.id);
    rest.chain(gql).next()
}

/// An error at a rule's `file:line` id.
fn at_rule(id: &str, message: String) -> RulesError {
    let (file, line) = id.rsplit_once(':').unwrap_or((id, "1"));
    RulesError::Parse {
        file: file.to_string(),
        line: line.parse().unwrap_or(1),
        column: 1,
        message,
    }
}

pub(super) fn index(s: &mut Service) {
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

pub(super) fn parse_template(p: &str) -> Result<Vec<Seg>, String> {
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
    // A NaN compares false with everything, so `gt = nan` or `money_over = nan` would switch
    // the condition off while the file still checks; an infinite bound never holds either.
    for (name, v) in [
        ("gt", c.gt),
        ("gte", c.gte),
        ("lt", c.lt),
        ("money_over", c.money_over),
    ] {
        match v {
            Some(v) if !v.is_finite() => return Err(format!("`{name}` must be a finite number")),
            Some(v) if name == "money_over" && v < 0.0 => {
                return Err("`money_over` must not be negative".into())
            }
            _ => {}
        }
    }
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
    if let Some(form) = c.protected_ref {
        tests.push(Test::ProtectedRef(form));
    }
    if let Some(param) = &c.ne_param {
        tests.push(Test::NeParam(param.clone()));
    }
    match c.not_user_node_id {
        Some(true) => tests.push(Test::NotUserNodeId),
        Some(false) => {
            return Err(format!(
                "condition on `{}`: not_user_node_id = false tests nothing; leave it out",
                c.field
            ))
        }
        None => {}
    }
    match c.commands {
        Some(true) => tests.push(Test::Commands),
        Some(false) => {
            return Err(format!(
                "condition on `{}`: commands = false tests nothing; leave it out",
                c.field
            ))
        }
        None => {}
    }
    if let Some(known) = &c.other_than {
        let nested = c
            .field
            .strip_suffix(".*")
            .filter(|p| !p.is_empty() && !p.contains('*'));
        if c.field != "*" && nested.is_none() {
            return Err(format!(
                "`other_than` judges every field, or every key of one object: write it with field = \"*\" or \"name.*\", not `{}`",
                c.field
            ));
        }
        tests.push(Test::OtherThan(known.clone()));
    } else if c.field == "*" {
        return Err("field = \"*\" is only for `other_than`".into());
    }
    if let Some(dirs) = &c.path_under {
        let mut under = Vec::new();
        for d in dirs {
            let segs: Vec<&str> = d
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .collect();
            let anywhere = segs.first() == Some(&"**");
            let named = &segs[usize::from(anywhere)..];
            if named.is_empty() || named.contains(&"..") || named.contains(&"**") {
                return Err(format!(
                    "condition on `{}`: path_under needs directory names like \".github\" (or \"**/.github\", at any depth), not {d:?}",
                    c.field
                ));
            }
            under.push(segs.join("/"));
        }
        if under.is_empty() {
            return Err(format!(
                "condition on `{}`: path_under needs at least one directory",
                c.field
            ));
        }
        tests.push(Test::PathUnder(under));
    }
    if tests.len() != 1 {
        return Err(format!("condition on `{}` needs exactly one test (eq, ne, in, gt, gte, lt, present, money_over, protected_ref, path_under, other_than, ne_param, commands, not_user_node_id)", c.field));
    }
    // `obj.*` with other_than was checked above (the keys of one object).
    let wildcard = c.field != "*"
        && !matches!(tests[0], Test::OtherThan(_))
        && c.field.split('.').any(|s| s.contains('*'));
    if wildcard {
        let well_formed = c
            .field
            .split('.')
            .filter(|s| s.contains('*'))
            .all(|s| s == "*")
            && c.field.matches('*').count() == 1
            && !c.field.starts_with("*")
            && !c.field.starts_with('.');
        if !well_formed
            || !matches!(
                tests[0],
                Test::PathUnder(_)
                    | Test::In(_)
                    | Test::Eq(_)
                    | Test::Commands
                    | Test::NotUserNodeId
                    | Test::Present(true)
            )
        {
            return Err(format!(
                "condition on `{}`: a `*` (any element) must be one whole segment, once, after a field name, and only with path_under, in, eq, present = true, commands or not_user_node_id",
                c.field
            ));
        }
    }
    Ok(Cond {
        field: c.field.clone(),
        test: tests.remove(0),
    })
}

/// A rule's `expiry` bounds (inclusive), as `gate.review_expiry`'s: zero would expire every
/// hold at once, and a hold pending for years is not "silence is rejection".
const EXPIRY_BOUNDS: (Duration, Duration, &str) = (
    Duration::from_millis(1),
    Duration::from_secs(30 * 86_400),
    "above zero and at most \"30d\"",
);

/// A rule's `wait` bounds (inclusive), as `gate.max_wait`'s.
const WAIT_BOUNDS: (Duration, Duration, &str) =
    (Duration::ZERO, Duration::from_secs(3600), "at most \"1h\"");

/// `d` if within `(low, high, words)`, else why not.
fn bounded(
    d: Option<Duration>,
    what: &str,
    (low, high, words): (Duration, Duration, &str),
) -> Result<Option<Duration>, String> {
    match d {
        Some(d) if d < low || d > high => Err(format!(
            "{what} {}: must be {words}",
            humantime::format_duration(d)
        )),
        _ => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::{Catalog, CatalogOptions};

    /// A rule's `expiry` and `wait` had no bounds: `expiry = "0s"` expired its holds at once
    /// and `"100y"` kept them pending for a century. They take `gate.review_expiry`'s and
    /// `gate.max_wait`'s bounds, and a file past them is refused naming the rule.
    #[test]
    fn a_rules_expiry_and_wait_are_bounded() {
        let rule = |extra: &str| {
            format!(
                "[service]\nname = \"s\"\nhosts = [\"h.test\"]\n[[rule]]\ntool = \"s.del\"\n\
                 method = \"DELETE\"\npath = \"/x\"\nclass = \"irreversible\"\n\
                 action = \"escalate\"\n{extra}\n"
            )
        };
        let load = |extra: &str| {
            Catalog::from_sources(
                &[("r/s.toml".into(), rule(extra))],
                &CatalogOptions::default(),
            )
        };
        for ok in [
            "expiry = \"30d\"",
            "expiry = \"1s\"",
            "wait = \"0s\"",
            "wait = \"1h\"",
        ] {
            assert!(load(ok).is_ok(), "{ok}");
        }
        for (bad, words) in [
            ("expiry = \"0s\"", "expiry 0s: must be above zero"),
            ("expiry = \"100y\"", "at most \"30d\""),
            ("wait = \"2h\"", "wait 2h: must be at most \"1h\""),
        ] {
            let e = load(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                e.starts_with("r/s.toml:") && e.contains(words),
                "{bad}: {e}"
            );
        }
    }

    /// Review of session 22: `money_over = nan` (or `gt = nan`) passed `rules check`, and
    /// since a NaN compares false with everything, a charge of $50,000 matched no condition
    /// and went through as `notify`. Bounds must be finite, and `money_over` not negative.
    #[test]
    fn a_condition_bound_must_be_a_finite_number() {
        let load = |cond: &str| {
            let rule = format!(
                "[service]\nname = \"s\"\nhosts = [\"h.test\"]\n[[rule]]\ntool = \"s.pay\"\n\
                 method = \"POST\"\npath = \"/pay\"\nclass = \"money\"\n\
                 action = \"escalate\"\nwhen = [{{ field = \"amount\", {cond} }}]\n"
            );
            Catalog::from_sources(&[("r/s.toml".into(), rule)], &CatalogOptions::default())
        };
        assert!(load("money_over = 100").is_ok());
        assert!(load("gt = 0").is_ok());
        for (bad, words) in [
            ("money_over = nan", "`money_over` must be a finite number"),
            ("money_over = -1", "`money_over` must not be negative"),
            ("gt = nan", "`gt` must be a finite number"),
            ("gte = inf", "`gte` must be a finite number"),
            ("lt = -nan", "`lt` must be a finite number"),
        ] {
            let e = load(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(words), "{bad}: {e}");
        }
    }
}
