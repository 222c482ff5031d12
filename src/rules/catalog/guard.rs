//! Guard evaluation: the framing and differential checks that hold a request a mainstream
//! server could read another way (method and routing overrides, Content-Type and charset,
//! content encodings, bodies that read both as JSON and as a form), the checks of a rule's
//! conditions, and the verdicts they give.

use std::collections::BTreeMap;

use super::commands;
use super::matcher::{Rule, Service};
use super::{Cond, RefForm, Test};
use crate::rules::fields::{FieldValue, Fields};
use crate::rules::git::{check_refname, RefPattern};
use crate::rules::{money, Action, RequestHead, Verdict};

pub(super) const METHOD_OVERRIDE_HEADERS: [http::HeaderName; 3] = [
    http::HeaderName::from_static("x-http-method-override"),
    http::HeaderName::from_static("x-http-method"),
    http::HeaderName::from_static("x-method-override"),
];

/// Headers some frameworks and gateways route by instead of the request line or Host.
pub(super) const ROUTING_OVERRIDE_HEADERS: [http::HeaderName; 6] = [
    http::HeaderName::from_static("x-original-url"),
    http::HeaderName::from_static("x-rewrite-url"),
    http::HeaderName::from_static("x-forwarded-host"),
    http::HeaderName::from_static("x-forwarded-server"),
    http::HeaderName::from_static("x-host"),
    http::HeaderName::from_static("forwarded"),
];

/// A field that a candidate rule's condition tests and that the body, read as a urlencoded
/// form instead of JSON, would set (`{"x":"&amount=9"}` sets `amount`), also under Rack 2's
/// spellings (`[amount]=9`) or after a `;` (Rack 1).
pub(super) fn form_reading_sets(
    body: &[u8],
    cands: &[(&Rule, BTreeMap<String, String>)],
) -> Option<String> {
    if !body.contains(&b'=') {
        return None;
    }
    let mut form = Fields::default();
    let text = String::from_utf8_lossy(body);
    form.add_form(&text.replace(';', "&"));
    // And as Rack reads it (`& amount=9` sets `amount` there).
    if let Some(rack) = crate::rules::readings::rack_form_text(&text) {
        form.add_form(&rack.replace(';', "&"));
    }
    let sets = |f: &String| {
        form.given(f)
            || form.malformed.iter().any(|k| {
                crate::rules::readings::rack2_flat(k).is_some_and(|flat| {
                    flat == *f
                        || flat
                            .strip_prefix(f.as_str())
                            .is_some_and(|r| r.starts_with('.'))
                })
            })
    };
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
        .find(|f| sets(f))
        .cloned()
}

/// The first header among `names` present, also under a spelling with `_` for `-`: Rack, CGI
/// and PHP fold both into one variable (`HTTP_X_HTTP_METHOD_OVERRIDE`).
pub(super) fn header_named(
    headers: &http::HeaderMap,
    names: &[http::HeaderName],
) -> Option<String> {
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

/// Every value of header `name`, also under spellings with `_` for `-` (Rack, CGI and PHP read
/// `Stripe_Account` as `Stripe-Account`): more than one means two readings.
pub(super) fn header_values<'h>(
    headers: &'h http::HeaderMap,
    name: &http::HeaderName,
) -> Vec<&'h http::HeaderValue> {
    let mut out: Vec<&http::HeaderValue> = headers.get_all(name).iter().collect();
    for k in headers.keys().filter(|k| k.as_str().contains('_')) {
        if k.as_str().replace('_', "-") == name.as_str() {
            out.extend(headers.get_all(k).iter());
        }
    }
    out
}

/// How a body will be read, by its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Media {
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
pub(super) fn media(headers: &http::HeaderMap) -> Result<Media, (&'static str, String)> {
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
    if text.trim().is_empty() {
        // Rack reads an empty Content-Type as none: a POST's body is then a form.
        return Ok(Media::Missing);
    }
    if text.contains(',') {
        // Rack and Rails cut the media type at a `,` as well as at a `;`.
        return Err((
            "content_type_ambiguous",
            format!("Content-Type {text:?} lists more than one type"),
        ));
    }
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if essence.is_empty() {
        return Err((
            "content_type_ambiguous",
            format!("Content-Type {text:?} has parameters but no media type"),
        ));
    }
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
pub(super) fn framing_depends_on_body(head: &RequestHead<'_>) -> bool {
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
pub(super) fn write_framing(
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
pub(super) fn encoded(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| {
            !v.to_str()
                .is_ok_and(|t| t.trim().eq_ignore_ascii_case("identity"))
        })
}

/// A request with a body, by its headers (a GET carrying one is not a plain read).
pub(super) fn has_body(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().map_or(true, |t| t.trim() != "0"))
}

pub(super) fn plain(
    action: Action,
    service: Option<&str>,
    code: &str,
    explanation: String,
) -> Verdict {
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
        spend_usd: None,
        also_tools: Vec::new(),
    }
}

pub(super) fn guard(svc: &Service, code: &str, why: String) -> Verdict {
    plain(
        Action::Escalate,
        Some(&svc.name),
        code,
        format!("fail closed: {why}"),
    )
}

pub(super) fn rule_verdict(
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
        if let Test::OtherThan(known) = &c.test {
            let mut others: Vec<&str> = unlisted_fields(fields, &c.field, known).collect();
            others.sort_unstable();
            others.dedup();
            if !others.is_empty() {
                p.insert("fields".into(), others.join(", "));
            }
        }
    }
    let mut codes = vec![code.to_string()];
    // What a call let through unreviewed moves; unreadable: held.
    let mut action = action;
    let mut spend_usd = None;
    if let Some(field) = rule.spends.as_ref().filter(|_| action <= Action::Notify) {
        let amount = fields.get(field).and_then(|v| v.as_num());
        let currency = fields.get("currency").map(|c| c.as_text());
        if let Some(v) = fields.get(field) {
            p.insert(field.clone(), v.as_text());
        }
        if let Some(c) = &currency {
            p.insert("currency".into(), c.clone());
        }
        match money::usd_ceiling_of(amount, currency.as_deref()) {
            Ok(usd) => spend_usd = Some(usd),
            Err(why) => {
                action = Action::Escalate;
                codes = vec![why.to_string()];
            }
        }
    }
    if codes.first().map(String::as_str) != Some("rule_match") {
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
        spend_usd,
        also_tools: Vec::new(),
    }
}

/// The names given (body or query, empty objects and lists too) that `known` does not list,
/// what an `other_than` condition holds on: top-level names for `field = "*"`; for
/// `field = "obj.*"`, the keys under `obj` (a value given as `obj` itself, not an object with
/// keys, counts as unlisted).
fn unlisted_fields<'f>(
    fields: &'f Fields,
    field: &'f str,
    known: &'f [String],
) -> impl Iterator<Item = &'f str> {
    let object = field.strip_suffix(".*").filter(|_| field != "*");
    let empty_object = move |k: &str| object.is_some_and(|o| o == k);
    let map_keys = fields.map.keys().map(|k| (k.as_str(), false));
    let empty_keys = fields.empty.iter().map(|k| (k.as_str(), true));
    map_keys
        .chain(empty_keys)
        .filter_map(move |(k, empty)| match object {
            None => Some(k.split('.').next().unwrap_or(k)),
            // An empty `obj: {}` names nothing under it.
            Some(_) if empty && empty_object(k) => None,
            Some(o) => match k.strip_prefix(o) {
                Some("") => Some(k),
                Some(rest) => rest
                    .strip_prefix('.')
                    .map(|r| r.split('.').next().unwrap_or(r)),
                None => None,
            },
        })
        .filter(move |name| !known.iter().any(|n| n == name))
}

pub(super) fn check(
    c: &Cond,
    fields: &Fields,
    params: &BTreeMap<String, String>,
    svc: &Service,
) -> Result<bool, &'static str> {
    if let Test::OtherThan(known) = &c.test {
        // A header a rule may test (`@stripe-account`) is not a body or query field.
        let header = |f: &str| {
            f.strip_prefix('@')
                .is_some_and(|h| svc.header_fields.iter().any(|n| n.as_str() == h))
        };
        return Ok(unlisted_fields(fields, &c.field, known).any(|f| !header(f)));
    }
    if let (
        Test::In(_) | Test::Eq(_) | Test::Commands | Test::NotUserNodeId | Test::Present(true),
        Some((head, tail)),
    ) = (&c.test, c.field.split_once(".*"))
    {
        // Any element (`assignees.*`): each is judged as a field of its own; a single value
        // given where a list is expected (`head tail`) too. An element that cannot be read
        // fails closed as a field would.
        let start = format!("{head}.");
        let mut keys: Vec<String> = fields
            .map
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(&start))
            .filter_map(|(k, _)| k[start.len()..].split('.').next())
            .map(|element| format!("{start}{element}{tail}"))
            .collect();
        keys.dedup();
        // A single value where a list is expected (GraphQL coerces it to one): judged as the
        // one element; for `present`, a single object too.
        let single = format!("{head}{tail}");
        let present = matches!(c.test, Test::Present(true));
        if fields.get(&single).is_some() || (present && fields.given(&single)) {
            keys.push(single);
        }
        let mut any = false;
        for key in keys {
            let one = Cond {
                field: key,
                test: c.test.clone(),
            };
            any |= check(&one, fields, params, svc)?;
        }
        return Ok(any);
    }
    if let (Test::PathUnder(dirs), Some((head, tail))) = (&c.test, c.field.split_once(".*")) {
        // Any element: `head.<anything>tail`, or `head tail` (a single value for a list).
        let start = format!("{head}.");
        let mut any = false;
        for (k, v) in fields.map.range(start.clone()..) {
            if !k.starts_with(&start) {
                break;
            }
            if k.len() > start.len() + tail.len() && k.ends_with(tail) {
                any |= path_under(v, dirs)?;
            }
        }
        if let Some(v) = fields.get(&format!("{head}{tail}")) {
            any |= path_under(v, dirs)?;
        }
        return Ok(any);
    }
    if fields.get(&c.field).is_some() && params.contains_key(&c.field) {
        // A body or query field named like the path parameter: frameworks differ on which wins.
        return Err("param_ambiguous");
    }
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
        // null is "not given"; an empty string may read either way.
        (Test::Present(want), Some(FieldValue::Null)) => !*want,
        (Test::Present(_), Some(FieldValue::Str(s))) if s.is_empty() => {
            return Err("value_unparseable")
        }
        // An object or array with something in it is given too (`present = false` still
        // holds for it: it is no value, and over-matching holds).
        (Test::Present(true), None) => fields.given(&c.field),
        (Test::Present(want), v) => v.is_some() == *want,
        (_, None) => match &c.test {
            Test::MoneyOver { .. } => return Err("amount_unparseable"),
            // Given, but as an object or array (`confirm[]=true`, `auto_advance[x]=true`): a
            // value the test cannot read, which the upstream may still take.
            _ if fields.given(&c.field) => return Err("value_unparseable"),
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
        // An exact match is no near miss (a list may hold two spellings that fold alike).
        (Test::In(ws), Some(v)) if !exact_in(v, ws) && near_miss(v, ws) => {
            return Err("value_unparseable")
        }
        (Test::Eq(w), Some(v)) => eq(v, w),
        (Test::Ne(w), Some(v)) => !eq(v, w),
        (Test::In(ws), Some(v)) => ws.iter().any(|w| eq(v, w)),
        (Test::ProtectedRef(form), Some(v)) => protected_ref(*form, v, svc.protected_refs())?,
        (Test::Commands, Some(v)) => commands::holds_any(&v.as_text(), &svc.commands),
        (Test::NotUserNodeId, Some(v)) => not_user_node_id(&v.as_text()),
        (Test::PathUnder(dirs), Some(v)) => path_under(v, dirs)?,
        (Test::NeParam(name), Some(v)) => match params.get(name) {
            Some(p) => *v != FieldValue::Null && v.as_text() != *p,
            None => return Err("value_unparseable"),
        },
        // Judged above, before any one field is read.
        (Test::OtherThan(_), Some(_)) => true,
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

/// Does `v`, read as a ref name of `form` (every reading GitHub might take), name a protected
/// ref? null is "not given"; a name git would refuse cannot be placed (`value_unparseable`).
fn protected_ref(
    form: RefForm,
    v: &FieldValue,
    protected: &[RefPattern],
) -> Result<bool, &'static str> {
    let name = match v {
        FieldValue::Null => return Ok(false),
        v => v.as_text(),
    };
    let qualified = name
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("refs/"));
    // A ref short of `refs/` as GitHub's git/refs routes take it (`heads/main`), or a branch;
    // a branch name could also be taken as such a ref (`heads/main`).
    let mut readings = Vec::with_capacity(3);
    if qualified {
        readings.push(name.clone());
    }
    match form {
        RefForm::Branch => {
            readings.push(format!("refs/heads/{name}"));
            if !qualified {
                readings.push(format!("refs/{name}"));
            }
        }
        RefForm::Ref if !qualified => {
            readings.push(format!("refs/{name}"));
            readings.push(format!("refs/heads/{name}"));
        }
        RefForm::Ref => {}
    }
    if readings.iter().any(|r| check_refname(r).is_err()) {
        return Err("value_unparseable");
    }
    Ok(readings
        .iter()
        .any(|r| protected.iter().any(|p| p.matches(r))))
}

/// Does `v`, read as a repository path, name one of `dirs` or a path below one? Every reading
/// weighs: as written and percent-decoded (the contents API takes the path in the URL);
/// segments split at `/` and `\\`, empty and `.` segments dropped, compared without regard to
/// case or surrounding blanks (over-matching holds). A `..` segment or a NUL cannot be placed
/// (`value_unparseable`); null is "not given".
fn path_under(v: &FieldValue, dirs: &[String]) -> Result<bool, &'static str> {
    let text = match v {
        FieldValue::Null => return Ok(false),
        v => v.as_text(),
    };
    let decoded = percent_encoding::percent_decode_str(&text)
        .decode_utf8_lossy()
        .into_owned();
    let mut hit = false;
    for reading in [&text, &decoded] {
        let mut segs = Vec::new();
        for seg in reading.split(['/', '\\']) {
            match seg.trim() {
                "" | "." => {}
                ".." => return Err("value_unparseable"),
                s if s.contains('\0') => return Err("value_unparseable"),
                s => segs.push(s),
            }
        }
        hit |= dirs.iter().any(|d| {
            // `**/dir`: the directory at any depth (a subtree can become a commit's root).
            let (anywhere, d) = match d.strip_prefix("**/") {
                Some(rest) => (true, rest),
                None => (false, d.as_str()),
            };
            let want: Vec<&str> = d.split('/').collect();
            let at = |start: usize| {
                want.len() + start <= segs.len()
                    && want
                        .iter()
                        .zip(&segs[start..])
                        .all(|(w, s)| w.eq_ignore_ascii_case(s))
            };
            if anywhere {
                (0..segs.len()).any(at)
            } else {
                at(0)
            }
        });
    }
    Ok(hit)
}

/// Is `v` a string equal to one of the string `wants` as written?
fn exact_in(v: &FieldValue, wants: &[toml::Value]) -> bool {
    matches!(v, FieldValue::Str(x) if wants.iter().any(|w| w.as_str() == Some(x.as_str())))
}

/// `v` is a string equal to one of the string `wants` only when read loosely: accents, case,
/// invisible characters, NULs, blanks, `-` and `_` aside (`Ready To Merge` for
/// `ready-to-merge`: a bot matching names its own way may read them as one).
fn near_miss(v: &FieldValue, wants: &[toml::Value]) -> bool {
    let FieldValue::Str(x) = v else {
        return false;
    };
    let folded = |t: &str| -> String {
        commands::loose(t)
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
            .collect()
    };
    let x_loose = folded(x);
    wants.iter().any(|w| match w {
        toml::Value::String(s) => x != s && x_loose == folded(s),
        _ => false,
    })
}

/// Database ids of coding agents' and AI review bots' accounts on github.com. A node id whose
/// number is one of these holds whatever its type tag says: `U_` or `04:User` with a bot's
/// number may resolve to the bot (a bot is a kind of user account).
const AGENT_BOT_IDS: &[u64] = &[
    198_982_749, // copilot-swe-agent[bot]: Copilot's coding agent (BOT_kgDOC9w8XQ)
    175_728_472, // copilot-pull-request-reviewer[bot]: Copilot's code review
    242_468_646, // anthropic-code-agent[bot]: Claude on the agent platform (BOT_kgDODnPHJg)
    242_516_109, // openai-code-agent[bot]: Codex on the agent platform (BOT_kgDODnSAjQ)
    209_825_114, // claude[bot]: the Claude GitHub App
];

/// Is `id` anything but a GitHub node id of a user account? Users' ids pass when they read as
/// one plainly: `U_` and base64url of the MessagePack array `[0, number]` (the current form), or
/// standard base64 decoding to `04:User` and digits (the legacy form), the number not one of
/// [`AGENT_BOT_IDS`]. Anything else, a bot's id (`BOT_…`, `03:Bot…`, coding agents such as
/// Copilot are bots) in any encoding a lenient decoder accepts, a `U_` id that does not decode,
/// or a user-tagged id carrying an agent bot's number, holds: over-matching only costs a review.
fn not_user_node_id(id: &str) -> bool {
    use base64::Engine as _;
    let plain_user = |n: u64| !AGENT_BOT_IDS.contains(&n);
    let current = id.strip_prefix("U_").is_some_and(|rest| {
        rest.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(rest)
                .ok()
                .and_then(|b| msgpack_ints(&b))
                .is_some_and(|n| matches!(n[..], [0, n] if plain_user(n)))
    });
    let legacy = base64::engine::general_purpose::STANDARD
        .decode(id)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|t| {
            t.strip_prefix("04:User")
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                // Leading zeros read as the same number; one too long for u64 is not plain.
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(plain_user)
                // Written the way GitHub writes it: no padding bytes that could read two ways.
                && base64::engine::general_purpose::STANDARD.encode(t.as_bytes()) == id
        });
    !(current || legacy)
}

/// The integers of a MessagePack array of non-negative integers and nothing else (any integer
/// encoding, trailing bytes refused); `None` for anything else.
fn msgpack_ints(b: &[u8]) -> Option<Vec<u64>> {
    let (&head, mut rest) = b.split_first()?;
    let len = match head {
        0x90..=0x9f => usize::from(head & 0x0f),
        _ => return None,
    };
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let (&tag, after) = rest.split_first()?;
        let width = match tag {
            0x00..=0x7f => 0,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xce | 0xd2 => 4,
            0xcf | 0xd3 => 8,
            _ => return None,
        };
        let bytes = after.get(..width)?;
        let n = if width == 0 {
            u64::from(tag)
        } else {
            let mut v = 0u64;
            for &x in bytes {
                v = (v << 8) | u64::from(x);
            }
            // A signed encoding's negative number is no user's.
            if matches!(tag, 0xd0..=0xd3) && bytes[0] & 0x80 != 0 {
                return None;
            }
            v
        };
        out.push(n);
        rest = &after[width..];
    }
    rest.is_empty().then_some(out)
}

#[cfg(test)]
mod bot_id_tests {
    use super::not_user_node_id;

    #[test]
    fn only_user_node_ids_pass() {
        for (id, bot) in [
            ("BOT_kgDOC9w8XQ", true),
            ("BOT_kgDPAAAAAAvcPF0", true),
            ("bot_kgDOC9w8XQ", true),
            ("MDM6Qm90MTk4OTgyNzQ5", true),
            (" MDM6Qm90MTk4OTgyNzQ5 ", true),
            ("MDM6Qm90MDE5ODk4Mjc0OR==", true),
            ("MDM6Qm90MTk4.OTgyNzQ5", true),
            ("MDQ6VXNlcjE", true),
            ("MA_kgDOAAAAAQ", true),
            ("", true),
            ("U_kgDOAAAAAQ", false),
            ("U_kgDOAAjmPw", false),
            ("U_kgDPAAAAAAAAAAE", false),
            ("U_kgAB", false),
            ("MDQ6VXNlcjE=", false),
            ("MDQ6VXNlcjU4MzIzMQ==", false),
            // a user's type tag with an agent bot's number (Copilot's coding agent, its code
            // review, Claude's and Codex's agents), in either form and any integer encoding
            ("U_kgDOC9w8XQ", true),
            ("U_kgDPAAAAAAvcPF0", true),
            ("U_kgDSC9w8XQ", true),
            ("U_kgDOCnlnWA", true),
            ("U_kgDODnPHJg", true),
            ("U_kgDODnSAjQ", true),
            ("MDQ6VXNlcjE5ODk4Mjc0OQ==", true),
            ("MDQ6VXNlcjAxOTg5ODI3NDk=", true),
            // a `U_` id that is not `[0, number]`
            ("U_kgDOC9w8X", true),
            ("U_kgHOAAAAAQ", true),
            ("U_kwDOAAAAAQE", true),
            ("U_kaEw", true),
            ("U_kgDOAAAAAQA", true),
            ("U_kgDQ_w", true),
            ("U_", true),
            ("U_kgDOAAAAAQ==", true),
            ("MDQ6VXNlcjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", true),
        ] {
            assert_eq!(not_user_node_id(id), bot, "{id}");
        }
    }
}

#[cfg(test)]
mod near_miss_tests {
    use super::*;

    /// Review of session 18: a list holding two spellings that fold alike (`automerge`,
    /// `auto-merge`) made an exact value a near miss of the other.
    #[test]
    fn folded_spellings_are_near_misses_and_exact_ones_are_not() {
        let list: Vec<toml::Value> = ["automerge", "auto-merge", "ready-to-merge"]
            .into_iter()
            .map(toml::Value::from)
            .collect();
        for (value, exact, near) in [
            ("automerge", true, true),
            ("auto-merge", true, true),
            ("Ready To Merge", false, true),
            ("ready_to_merge", false, true),
            ("bug", false, false),
        ] {
            let v = FieldValue::Str(value.into());
            assert_eq!(exact_in(&v, &list), exact, "{value}");
            assert_eq!(near_miss(&v, &list), near, "{value}");
        }
    }
}
