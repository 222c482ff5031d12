//! Matching: the compiled service and its rules, and the rules a request's method and path
//! select (`{x}`/`{x*}` templates, the per-method index, path readings, lookalike paths).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::gql_verdict::{GqlField, GqlRule};
use super::guard::guard;
use super::Cond;
use crate::rules::git::{GitRules, RefPattern};
use crate::rules::{normalize, Action, ApprovalPolicy, Class, Verdict};

#[derive(Debug, Clone)]
pub(super) enum Seg {
    Lit(String),
    One(String),
    Many(String),
}

#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(super) id: String,
    pub(super) tool: String,
    pub(super) methods: Vec<String>,
    /// The template as written, e.g. `/repos/{owner}/{repo}`.
    pub(super) path: String,
    pub(super) template: Vec<Seg>,
    pub(super) class: Class,
    pub(super) action: Action,
    pub(super) reason: String,
    pub(super) when: Vec<Cond>,
    pub(super) expiry: Option<Duration>,
    pub(super) wait: Option<Duration>,
    pub(super) approval: Option<ApprovalPolicy>,
    /// The amount field of the money this call moves unreviewed (its currency in `currency`).
    pub(super) spends: Option<String>,
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
pub(super) struct Service {
    pub(super) name: String,
    pub(super) hosts: Vec<String>,
    pub(super) prefixes: Vec<Vec<String>>,
    pub(super) default: Action,
    pub(super) graphql_paths: Vec<Vec<String>>,
    pub(super) graphql_default: Action,
    /// The service reads every body as a urlencoded form, whatever its Content-Type (Stripe's
    /// v1 API): a POST body that is not JSON is looked at for `_method` too.
    pub(super) form_bodies: bool,
    /// Paths under these (segments, any case) read JSON bodies as JSON, `form_bodies` or not
    /// (Stripe's v2 API).
    pub(super) json_prefixes: Vec<Vec<String>>,
    /// The service's ids never hold `/`, `\` or `%` (Stripe's): a write whose path encodes one
    /// is held, never read two ways.
    pub(super) slashless_ids: bool,
    /// The header that picks the API version (Stripe-Version) and the oldest version whose
    /// reading of parameters the catalog knows: a write naming an older one is held.
    pub(super) version: Option<super::version::VersionFloor>,
    /// `command_texts`, normalized (`commands::needle`): what `commands` conditions look for.
    pub(super) commands: Vec<String>,
    /// Headers whose values join the request's fields as `@name` (lower case), for conditions:
    /// `Stripe-Account` names the connected account a call acts on.
    pub(super) header_fields: Vec<http::HeaderName>,
    pub(super) rules: Vec<Rule>,
    /// Per method (position in [`normalize::KNOWN_METHODS`]): indexes into `rules`.
    pub(super) by_method: Vec<MethodIndex>,
    /// mutation name -> its entries (at most one without conditions), in file order
    pub(super) gql: HashMap<String, Vec<GqlRule>>,
    /// `[[graphql_field]]` entries, in file order: fields whose selection a GraphQL request is
    /// judged by, wherever in the document.
    pub(super) gql_fields: Vec<GqlField>,
    /// The `[git]` section: git smart-HTTP hosts and protected refs.
    pub(super) git: Option<GitRules>,
}

impl Service {
    /// The approval policy of a request held at `action` when which rule it meets cannot be
    /// told (a guard before its route or mutation is known): every REST rule's (`rest`) and
    /// GraphQL entry's (`gql`) at that level, merged ([`ApprovalPolicy::strictest`]). `None`
    /// when no such rule sets one.
    pub(super) fn unknown_rule_policy(
        &self,
        action: Action,
        rest: bool,
        gql: bool,
    ) -> Option<ApprovalPolicy> {
        let rest_policies = self
            .rules
            .iter()
            .filter(move |r| rest && r.action == action)
            .map(|r| r.approval.as_ref());
        let gql_policies = self
            .gql
            .values()
            .flatten()
            .filter(move |e| gql && e.action == action)
            .map(|e| e.approval.as_ref());
        let field_policies = self
            .gql_fields
            .iter()
            .filter(move |f| gql && f.action == action)
            .map(|f| f.approval.as_ref());
        ApprovalPolicy::strictest_of(rest_policies.chain(gql_policies).chain(field_policies))
    }

    /// Does the service read this path's bodies as forms, whatever their Content-Type?
    pub(super) fn reads_forms<S: AsRef<str>>(&self, segs: &[S]) -> bool {
        self.form_bodies
            && !self.json_prefixes.iter().any(|p| {
                p.len() <= segs.len()
                    && p.iter()
                        .zip(segs)
                        .all(|(a, b)| a.eq_ignore_ascii_case(b.as_ref()))
            })
    }

    /// The `[git]` protected-ref patterns, which `protected_ref` conditions test (none without
    /// a `[git]` section; the catalog refuses such a condition then).
    pub(super) fn protected_refs(&self) -> &[RefPattern] {
        self.git.as_ref().map_or(&[], |g| g.protected.as_slice())
    }
}

/// The rules of one method, by the lower-cased literal first segment of their template; rules
/// whose template starts with a parameter (or is `/`) are in `wild`. Indexes ascend, so merging
/// a `by_first` list with `wild` keeps file order (which decides among equally severe rules).
#[derive(Debug, Clone, Default)]
pub(super) struct MethodIndex {
    pub(super) by_first: HashMap<String, Vec<usize>>,
    pub(super) wild: Vec<usize>,
}

/// Segments of a request path: borrowed from the request unless decoding changed them.
type Segs<'p> = Vec<Cow<'p, str>>;

pub(super) fn host_matches(pattern: &str, host: &str) -> bool {
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
pub(super) fn path_segments<'p>(svc: &Service, path_and_query: &'p str) -> Option<Segs<'p>> {
    let path = path_and_query.split('?').next().unwrap_or("");
    Some(scoped(svc, normalize::segments_cow(path)?))
}

/// The reading of a router that splits the raw path at `/` and decodes each segment after it
/// (Rails, Express: `environments/prod%2Fvariables` names the environment `prod/variables`),
/// scoped as [`path_segments`]. `None` when no segment holds an encoded separator or `%`.
pub(super) fn encoded_separator_segments(
    svc: &Service,
    path_and_query: &str,
) -> Option<Segs<'static>> {
    let path = path_and_query.split('?').next().unwrap_or("");
    let segs = normalize::segments_keeping_encoded(path)?;
    Some(scoped(svc, segs.into_iter().map(Cow::Owned).collect()))
}

fn scoped<'p>(svc: &Service, mut segs: Segs<'p>) -> Segs<'p> {
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
    segs
}

/// Is this one of the service's GraphQL endpoints? Case-insensitive, like template literals.
pub(super) fn is_graphql_path(svc: &Service, segs: &[Cow<'_, str>]) -> bool {
    svc.graphql_paths.iter().any(|g| {
        g.len() == segs.len() && g.iter().zip(segs).all(|(a, b)| a.eq_ignore_ascii_case(b))
    })
}

/// Calls `f` with every rule whose method and template match, in the order they are weighed
/// (the method's rules in file order; for POST, then the PATCH rules); stops when `f` says so.
pub(super) fn for_candidates<'a>(
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

pub(super) fn candidates<'a>(
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

/// A path with non-ASCII segments that would match a gated rule if those segments were the
/// ASCII they resemble (fullwidth letters, Cyrillic lookalikes…): some servers fold them.
pub(super) fn lookalike(svc: &Service, method: &str, segs: &[Cow<'_, str>]) -> Option<Verdict> {
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
    // Which rule the folded path meets is a guess: every held rule's policy applies.
    v.approval = svc.unknown_rule_policy(v.action, true, false);
    Some(v)
}

/// [`matches()`], where a non-ASCII segment matches any literal.
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
