//! Evaluation: [`Catalog::evaluate`] runs the guards on a request, weighs the rules its method
//! and path select against its fields, and falls back to the service default or the closed
//! world; [`Catalog::needs_body`] says whether that verdict needs the body.

use std::borrow::Cow;

use super::gql_verdict::graphql_request;
use super::guard::{
    check, form_reading_sets, framing_depends_on_body, guard, header_named, media, plain,
    rule_verdict, write_framing, Media, METHOD_OVERRIDE_HEADERS, ROUTING_OVERRIDE_HEADERS,
};
use super::matcher::{
    candidates, encoded_separator_segments, for_candidates, is_graphql_path, lookalike,
    path_segments, Service,
};
use super::version::version_guard;
use super::{is_read, Catalog};
use crate::rules::fields::{FieldValue, Fields};
use crate::rules::git::GitRequest;
use crate::rules::readings;
use crate::rules::{normalize, Action, ApprovalPolicy, RequestHead, Verdict};

impl Catalog {
    pub fn needs_body(&self, head: &RequestHead<'_>) -> bool {
        let Some(svc) = self.service(&normalize::host_key(head.host)) else {
            return self.git_push(head);
        };
        let Some(segs) = path_segments(svc, head.path_and_query) else {
            return false;
        };
        let alts = path_readings(svc, head.path_and_query, &segs);
        let graphql = is_graphql_path(svc, &segs) || alts.iter().any(|a| is_graphql_path(svc, a));
        let form_like = match media(head.headers) {
            Ok(Media::Form) => true,
            Ok(Media::Other | Media::Json) => svc.reads_forms(&segs),
            _ => false,
        };
        if graphql || (head.method == "POST" && form_like) {
            // GraphQL bodies (a GET's too: one with any byte of body is held, and HTTP/2 need
            // not announce it), and form bodies (any body, where the service reads every body
            // as a form) for a `_method` override.
            return true;
        }
        if !is_read(head.method) && framing_depends_on_body(head) {
            // Held only if a body is really there; HTTP/2 need not say so in its headers.
            return true;
        }
        let mut any = false;
        for s in std::iter::once(&segs).chain(alts.iter()) {
            for_candidates(svc, head.method, s, |r| {
                any |= !r.when.is_empty() || r.spends.is_some();
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
                None => return self.no_service(&host, head),
            },
        };
        // Before the route is known: every held rule's approval policy applies.
        let esc = |code: &str, why: String| {
            let mut v = guard(svc, code, why);
            v.approval = svc.unknown_rule_policy(v.action, true, true);
            v
        };
        if !normalize::method_ok(head.method) {
            return esc(
                "bad_method",
                format!(
                    "method {:?} is not a known upper-case HTTP method",
                    head.method
                ),
            );
        }
        if let Some((code, why)) = override_header(head.headers) {
            return esc(code, why);
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
        if svc.slashless_ids && !is_read(head.method) {
            let path = head.path_and_query.split('?').next().unwrap_or("");
            let lower = path.to_ascii_lowercase();
            // `%u002F` (IIS) and any `%` not starting an escape read differently too.
            let stray_percent = path.bytes().enumerate().any(|(i, b)| {
                b == b'%'
                    && !path
                        .as_bytes()
                        .get(i + 1..i + 3)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
            });
            if stray_percent
                || ["%2f", "%5c", "%25", "\\"]
                    .iter()
                    .any(|e| lower.contains(e))
            {
                return esc(
                    "path_ambiguous",
                    format!(
                        "an encoded `/`, `\\` or `%` in the path: {} ids hold none, so the path reads two ways",
                        svc.name
                    ),
                );
            }
        }

        if let Some(git) = git {
            let mut req = GitRequest::of(head.method, &segs, query);
            // A fetch passes with its body unread only as git sends it: a plain path and the
            // upload-pack type. `git-receive-pack%2F..%2Fgit-upload-pack` decodes to a fetch
            // here but may be a push to a server that routes on the raw path.
            let raw_path = head.path_and_query.split('?').next().unwrap_or("");
            let typed = head
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.eq_ignore_ascii_case("application/x-git-upload-pack-request"));
            if req == GitRequest::UploadPack && !(typed && normalize::is_plain(raw_path)) {
                req = GitRequest::Other;
            }
            let v = git.evaluate(&svc.name, svc.default, req, &segs, head.headers, body);
            return self.closed_world(svc, head.method, v);
        }
        // Other readings of the path (`;params` dropped, a format suffix taken off, `%2F` kept
        // inside its segment): each is weighed beside the path as written, and the most severe
        // verdict wins.
        let alts = path_readings(svc, head.path_and_query, &segs);
        if is_graphql_path(svc, &segs) || alts.iter().any(|a| is_graphql_path(svc, a)) {
            if let Some(v) = graphql_request(svc, head, query, body) {
                return v;
            }
        }
        if let Some(v) = lookalike(svc, head.method, &segs) {
            return v;
        }
        let mut cands = candidates(svc, head.method, &segs);
        // A write whose path as decoded names no route stays a closed world where another
        // reading finds a rule only by keeping an encoded `..` inside a segment
        // (`threads/1%2F..%2F..%2Frepos%2Fo%2Fr%2Fnew` read as a thread): servers that decode
        // first reach another resource. `labels/kind%2Fbug` is one label either way.
        let unlisted_write = cands.is_empty()
            && !is_read(head.method)
            && normalize::encoded_dot_step(head.path_and_query.split('?').next().unwrap_or(""));
        for alt in &alts {
            cands.extend(candidates(svc, head.method, alt));
        }
        // From here a tripped guard is as strict as the strictest candidate rule: a request a
        // block rule might refuse is refused, never downgraded to a hold a human could approve.
        let strictest = cands.iter().map(|(r, _)| r.action).max();
        let esc = |code: &str, why: String| {
            let mut v = guard(svc, code, why);
            v.action = v.action.max(strictest.unwrap_or(Action::Escalate));
            // And as demanding as every candidate rule at that level: which of them the request
            // meets cannot be read, so each one's approval policy applies.
            v.approval = ApprovalPolicy::strictest_of(
                cands
                    .iter()
                    .filter(|(r, _)| r.action == v.action)
                    .map(|(r, _)| r.approval.as_ref()),
            );
            v
        };
        if let Some(floor) = svc.version.as_ref().filter(|_| !is_read(head.method)) {
            if let Some((code, why)) = version_guard(floor, head.headers) {
                return esc(code, why);
            }
        }
        // Fields: query always; body when some candidate has conditions.
        let mut fields = Fields::default();
        fields.add_form(query);
        // On a write, a condition the query alone meets, before any body field joins it.
        let from_query = cands
            .iter()
            .filter(|_| !is_read(head.method))
            .flat_map(|(r, _)| r.when.iter())
            .find(|c| fields.given(&c.field))
            .map(|c| c.field.clone());
        let needs_body = cands
            .iter()
            .any(|(r, _)| !r.when.is_empty() || r.spends.is_some());
        let media = if is_read(head.method) {
            Media::Other
        } else {
            match write_framing(head, query, body, needs_body) {
                Ok(m) => m,
                Err((code, why)) => return esc(code, why),
            }
        };
        // A body the service reads as a form although it is none (JSON included, its form
        // reading: `{"x":"&_method=DELETE"}`), looked at for `_method` whatever the rules need.
        let other_body = matches!(media, Media::Other | Media::Json) && svc.reads_forms(&segs);
        let form_unread = media == Media::Form && !needs_body;
        if head.method == "POST" && (form_unread || other_body) {
            // Frameworks honour `_method` in a form body (Rack::MethodOverride and friends),
            // also spelled `[_method]` (Rack 2) or after a `;` (Rack 1, Go before 1.17); a
            // service that reads any body as a form (Stripe's v1 API) in any other body too.
            let text = body.map(String::from_utf8_lossy).unwrap_or_default();
            if text.contains(';') && !other_body {
                return esc("query_separator", "`;` in a form body".into());
            }
            // As written and as Rack reads it (`& _method=DELETE` names `_method` there).
            let rack = readings::rack_form_text(&text);
            let text = match rack {
                Some(rack) => std::borrow::Cow::Owned(format!("{text}&{rack}")),
                None => text,
            };
            // Not a form to Airlock: read it as Rack 1 would, `;` splitting too.
            let text = if other_body {
                std::borrow::Cow::Owned(text.replace(';', "&"))
            } else {
                text
            };
            let json_override = media == Media::Json
                && body
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .is_some_and(|v| v.get("_method").is_some());
            if json_override {
                return esc("method_override", "`_method` in the JSON body".into());
            }
            for (k, _) in form_urlencoded::parse(text.as_bytes()) {
                // Its name as Rack 2 reads it (`[_method]`, `_method]`).
                if readings::rack2_split(&k).0 == "_method" {
                    return esc("method_override", "`_method` in the form body".into());
                }
                if !other_body && !super::super::fields::well_formed_key(&k) {
                    return esc(
                        "param_ambiguous",
                        format!("form key `{k}`: form readers split its brackets differently"),
                    );
                }
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
                    let looks_json = shaped_like_json(b);
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
                    if media == Media::Json && svc.reads_forms(&segs) {
                        // The service reads the bytes as a form: the fields a condition needs
                        // are not where the JSON reading puts them.
                        return esc(
                            "body_ambiguous",
                            format!(
                                "a JSON body where {} reads bodies as forms, and a rule needs its fields",
                                svc.name
                            ),
                        );
                    }
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
                            Ok(t) if t.contains(';') => {
                                // Rack 1 and Go before 1.17 split a form on `;` as well.
                                return esc("query_separator", "`;` in a form body".into());
                            }
                            Ok(t) if readings::rack_reads_otherwise(t) => {
                                return esc(
                                    "param_ambiguous",
                                    "a form body Rack reads otherwise (a blank after `&`, or a trailing NUL)".into(),
                                );
                            }
                            Ok(t) => fields.add_form(t),
                            Err(_) => {
                                return esc("body_unparseable", "form body is not UTF-8".into())
                            }
                        }
                    }
                }
            }
        }
        // A read's conditions are met by its query: a field a condition tests given only in the
        // body of a read (`hide_secret=true`, `state=published` there) may be ignored upstream
        // (GitHub reads a GET's parameters from its query), so the safe value it seems to set
        // is not one. Held; a field that holds a read is held either way.
        if is_read(head.method) && body.is_some_and(|b| !b.is_empty()) {
            let mut in_query = Fields::default();
            in_query.add_form(query);
            let from_body = cands.iter().flat_map(|(r, _)| r.when.iter()).find(|c| {
                let name = c.field.split('*').next().unwrap_or("");
                let name = name.strip_suffix('.').unwrap_or(name);
                if name.is_empty() {
                    // `field = "*"`: any field at all.
                    fields.map.keys().any(|k| !in_query.given(k))
                } else {
                    fields.given(name) && !in_query.given(name)
                }
            });
            if let Some(c) = from_body {
                return esc(
                    "param_ambiguous",
                    format!(
                        "`{}` in the body of a read: the service may read only its query",
                        c.field
                    ),
                );
            }
        }
        // Headers a rule may test, as `@name` fields (given twice: a key given twice, held).
        for name in &svc.header_fields {
            for v in super::guard::header_values(head.headers, name) {
                fields.insert(
                    format!("@{}", name.as_str()),
                    FieldValue::Str(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                );
            }
        }
        // A read no condition judges is not held for how its query is spelled: nothing reads it
        // (docs/parser-differentials.md). One a condition judges is held as a write is: a key
        // given twice, brackets readers split differently (`[expand][]`), a `;` separator.
        // `_method` holds on any method.
        let judged = !is_read(head.method) || needs_body;
        if judged && is_read(head.method) && query.contains(';') {
            return esc(
                "query_separator",
                "`;` in the query string of a read a rule judges: some frameworks split parameters on it".into(),
            );
        }
        if let Some(k) = fields.malformed.first().filter(|_| judged) {
            return esc(
                "param_ambiguous",
                format!("parameter `{k}`: form readers split its brackets differently"),
            );
        }
        if let Some(k) = dotted_key_read(&fields, &cands).filter(|_| judged) {
            return esc(
                "param_ambiguous",
                format!(
                    "parameter `{k}`: a `.` inside a name reads here as a deeper field (names are \
                     joined with `.`), the service reads one name, and a rule reads that field"
                ),
            );
        }
        let json_service = !svc.reads_forms(&segs);
        if let Some(field) =
            from_query.filter(|_| media == Media::Json || (media == Media::Missing && json_service))
        {
            // A condition met from the query of a JSON write, or of a write with no body to a
            // service that reads JSON: servers that read fields from the JSON body only would
            // not see it.
            return esc(
                "param_ambiguous",
                format!("`{field}` in the query of a JSON write: not every server reads it"),
            );
        }
        if let Some(k) = fields.duplicates.first().filter(|_| judged) {
            return esc(
                "duplicate_key",
                format!("parameter `{k}` appears more than once"),
            );
        }
        if fields.get("_method").is_some() {
            return esc("method_override", "`_method` parameter present".into());
        }
        let mut best: Option<Verdict> = None;
        // What the matched rules that let the call through say it moves: the most of them
        // counts, whichever rule decides.
        let mut spend: Option<f64> = None;
        for (rule, params) in &cands {
            let mut unknown: Option<&'static str> = None;
            let mut all = true;
            for c in &rule.when {
                match check(c, &fields, params, svc) {
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
                if let Some(s) = v.spend_usd {
                    spend = Some(spend.map_or(s, |m: f64| m.max(s)));
                }
                // Every rule held at the winning level keeps its approval policy, and the
                // reviewer reads what each says and tests.
                Verdict::keep_strictest(&mut best, v);
            }
        }
        if let Some(b) = best.as_mut().filter(|b| b.action <= Action::Notify) {
            b.spend_usd = spend;
        }
        let unclassified = || {
            let v = plain(
                svc.default,
                Some(&svc.name),
                "no_rule_default",
                format!("no {} rule matches; service default", svc.name),
            );
            self.closed_world(svc, head.method, v)
        };
        match best {
            Some(b) if unlisted_write => {
                let closed = unclassified();
                if closed.action > b.action {
                    closed
                } else {
                    b
                }
            }
            Some(b) => b,
            None => unclassified(),
        }
    }

    /// A host no service names: `default_action`, unless Airlock holds a credential for it;
    /// then it is a closed world like a service's unlisted routes, never a write sent with the
    /// real token unjudged: reads (a git fetch's `git-upload-pack` POST among them) get
    /// `default_action`, writes the stricter of it and `unclassified_writes`, and method or
    /// routing override headers hold.
    fn no_service(&self, host: &str, head: &RequestHead<'_>) -> Verdict {
        let Some((_, service)) = self.opts.credentialed_hosts.iter().find(|(h, _)| h == host)
        else {
            return plain(
                self.opts.default_action,
                None,
                "no_service",
                format!("{host} is named by no service; default applies"),
            );
        };
        let at_least = |action: Action| action.max(self.opts.default_action);
        if let Some((code, why)) = override_header(head.headers) {
            return plain(at_least(Action::Escalate), Some(service), code, why);
        }
        // A git fetch posts its wants to `git-upload-pack`, typed as such: a read.
        let path = head.path_and_query.split('?').next().unwrap_or("");
        let fetch = head.method == "POST"
            && path.ends_with("/git-upload-pack")
            && head
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v == "application/x-git-upload-pack-request");
        if is_read(head.method) || fetch {
            return plain(
                self.opts.default_action,
                Some(service),
                "no_rule_default",
                format!("{host} gets the {service} credential and no rules name it; reads pass"),
            );
        }
        let action = at_least(self.opts.unclassified_writes);
        plain(
            action,
            Some(service),
            "unclassified_route",
            format!(
                "{host} gets the {service} credential and no rules name it; unclassified \
                 writes: {}",
                action.as_str()
            ),
        )
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

/// A key with a `.` inside a name (`line_items[0.0][price_data]`, JSON `{"a.b": 1}`) whose
/// flattened path a candidate rule reads: a condition's field, a money test's currency field, or
/// what the rule spends. Flattening reads it as a deeper path (`line_items.0.0.price_data`, so
/// `line_items.*.price_data` finds no element `0` with a price), the service as one name.
fn dotted_key_read<'f>(
    fields: &'f Fields,
    cands: &[(
        &super::matcher::Rule,
        std::collections::BTreeMap<String, String>,
    )],
) -> Option<&'f str> {
    if fields.dotted.is_empty() {
        return None;
    }
    cands.iter().find_map(|(r, _)| {
        let money = r.when.iter().filter_map(|c| match &c.test {
            super::Test::MoneyOver { currency_field, .. } => Some(currency_field.as_str()),
            _ => None,
        });
        let spends = r
            .spends
            .iter()
            .map(String::as_str)
            .chain(r.spends.as_ref().map(|_| "currency"));
        r.when
            .iter()
            .map(|c| c.field.as_str())
            .chain(money)
            .chain(spends)
            .find_map(|f| fields.dotted_reached_by(f))
    })
}

/// A header that may make the upstream run another method (`method_override`) or route to
/// another path or host (`routing_override`): its reason code and why.
fn override_header(headers: &http::HeaderMap) -> Option<(&'static str, String)> {
    if let Some(h) = header_named(headers, &METHOD_OVERRIDE_HEADERS) {
        return Some((
            "method_override",
            format!("{h} header present: the upstream may run another method"),
        ));
    }
    header_named(headers, &ROUTING_OVERRIDE_HEADERS).map(|h| {
        (
            "routing_override",
            format!("{h} header present: the upstream may route to another path or host"),
        )
    })
}

/// Whether a body starts like JSON (`{` or `[`) once whitespace, byte-order marks and
/// `/* */` or `//` comments (which Ruby's JSON parsers skip) are passed over, in any order. An
/// unterminated comment counts as JSON: it is not a plain form either.
fn shaped_like_json(mut b: &[u8]) -> bool {
    loop {
        let before = b.len();
        b = b.trim_ascii_start();
        b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
        if let Some(rest) = b.strip_prefix(b"/*") {
            match rest.windows(2).position(|w| w == b"*/") {
                Some(end) => b = &rest[end + 2..],
                None => return true,
            }
        } else if let Some(rest) = b.strip_prefix(b"//") {
            match rest.iter().position(|c| *c == b'\n') {
                Some(end) => b = &rest[end + 1..],
                None => return true,
            }
        }
        if b.len() == before {
            return b.first().is_some_and(|c| *c == b'{' || *c == b'[');
        }
    }
}

/// The readings of a request's path besides `segs` (its decoded segments) that a mainstream
/// server could take: [`normalize::other_readings`] of it, and the raw path split at `/` before
/// decoding (`%2F` kept inside its segment) with that reading's own other readings.
fn path_readings<'p>(
    svc: &Service,
    path_and_query: &'p str,
    segs: &[Cow<'p, str>],
) -> Vec<Vec<Cow<'p, str>>> {
    let mut alts = normalize::other_readings(segs);
    if let Some(kept) = encoded_separator_segments(svc, path_and_query) {
        alts.extend(normalize::other_readings(&kept));
        alts.push(kept);
    }
    // GitHub serves `/orgs/{org}/…` by the organization's id too, as `/organizations/{id}/…`
    // (its pagination links use that form): the rules written for `/orgs` weigh it as well.
    let aliased: Vec<Vec<Cow<'p, str>>> = std::iter::once(segs)
        .chain(alts.iter().map(Vec::as_slice))
        .filter(|s| s.len() >= 2 && s[0].eq_ignore_ascii_case("organizations"))
        .map(|s| {
            let mut a = s.to_vec();
            a[0] = Cow::Borrowed("orgs");
            a
        })
        .collect();
    alts.extend(aliased);
    alts
}
