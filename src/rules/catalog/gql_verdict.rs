//! The catalog's GraphQL verdicts: the compiled `[[graphql]]` and `[[graphql_field]]` entries
//! and how a request to a service's GraphQL endpoint is judged by them. Reading the operation
//! (mutation fields and their arguments, the watched fields selected) is the GraphQL parser's,
//! `rules::graphql`.

use std::collections::BTreeMap;

use super::guard::{check, encoded, guard, has_body, media, plain, Media};
use super::matcher::Service;
use super::Cond;
use crate::rules::fields::Fields;
use crate::rules::{graphql, Action, ApprovalPolicy, Class, RequestHead, Verdict};

#[derive(Debug, Clone)]
pub(super) struct GqlRule {
    pub(super) id: String,
    pub(super) class: Class,
    pub(super) action: Action,
    pub(super) reason: String,
    /// Conditions on the mutation field's arguments (`input.force`); empty: by name alone.
    pub(super) when: Vec<Cond>,
    pub(super) approval: Option<ApprovalPolicy>,
}

/// A compiled `[[graphql_field]]` entry: a query or mutation that selects one of `fields`
/// anywhere (a read that hands over a credential, such as an identity provider's recovery
/// codes) gets its verdict.
#[derive(Debug, Clone)]
pub(super) struct GqlField {
    pub(super) id: String,
    pub(super) tool: String,
    /// Field names, compared without regard to ASCII case.
    pub(super) fields: Vec<String>,
    pub(super) class: Class,
    pub(super) action: Action,
    pub(super) reason: String,
    pub(super) approval: Option<ApprovalPolicy>,
}

impl GqlField {
    fn watches(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.eq_ignore_ascii_case(name))
    }
}

/// A request to a GraphQL endpoint: POST bodies are parsed; GET carries the operation in the
/// query string (`query`, `operationName`, `variables`); anything else, or a GET with a body,
/// escalates. `None`: a plain GET/HEAD/OPTIONS without a `query` parameter, for the REST rules
/// and the default.
pub(super) fn graphql_request(
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
            // Rack 2 reads `[query]` and `query]` as `query`: any bracket in a key may name one.
            let in_url = form_urlencoded::parse(query.as_bytes()).any(|(k, _)| {
                matches!(
                    k.as_ref(),
                    "query" | "operationName" | "variables" | "extensions"
                ) || k.contains(['[', ']'])
            });
            if in_url || query.contains(';') {
                // Some servers take the operation from the URL of a POST, or merge both.
                return esc(
                    "graphql_ambiguous",
                    "GraphQL parameters (or a `;`) in the URL of a POST",
                );
            }
            match media(head.headers) {
                Err((code, why)) => return Some(graphql_guard(svc, code, why)),
                Ok(Media::Json) => {}
                Ok(_) => {
                    // GitHub reads the JSON whatever the Content-Type (its docs post JSON with
                    // curl's form default); Rack would read a form body's own `query`.
                    if body.is_some_and(names_an_operation_as_a_form) {
                        return esc(
                            "body_ambiguous",
                            "a GraphQL body that, read as a form, names its own operation",
                        );
                    }
                }
            }
            Some(graphql_verdict(svc, body))
        }
        "GET" | "HEAD" | "OPTIONS" => {
            // By its headers, or by its bytes: HTTP/2 need not announce a body.
            if has_body(head.headers) || body.is_some_and(|b| !b.is_empty()) {
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
                if k.contains(['[', ']']) || k == "extensions" {
                    // Rack 2 reads `[query]`, `operationName]` as the plain names; a persisted
                    // query (`extensions`) names an operation Airlock cannot read.
                    return esc(
                        "graphql_ambiguous",
                        "a bracketed key or `extensions` in a GraphQL query string",
                    );
                }
                let value = match k.as_ref() {
                    "query" | "operationName" => serde_json::Value::String(v.into_owned()),
                    // Strict, as in a POST body: a key given twice is read differently by
                    // different parsers.
                    "variables" => match crate::rules::fields::strict_json(v.as_bytes()) {
                        Ok(j) => j,
                        Err(e) if e.contains("duplicate key") => {
                            return esc("duplicate_key", "a key appears twice in `variables`")
                        }
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

/// Whether `body`, read as a urlencoded form (Rack 2 key names, `;` splitting too), has a
/// GraphQL parameter of its own.
fn names_an_operation_as_a_form(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    // As written, and as Rack reads it (a blank after `&` dropped).
    let rack = crate::rules::readings::rack_form_text(&text);
    std::iter::once(text.as_ref())
        .chain(rack.as_deref())
        .any(|text| {
            form_urlencoded::parse(text.replace(';', "&").as_bytes()).any(|(k, _)| {
                matches!(
                    crate::rules::readings::rack2_split(&k).0,
                    "query" | "operationName" | "variables" | "extensions"
                )
            })
        })
}

/// A guard on a GraphQL endpoint, where the mutations are not known: as strict as the strictest
/// GraphQL entry of the service (a block entry makes it block), never below escalate.
fn graphql_guard(svc: &Service, code: &str, why: String) -> Verdict {
    let mut v = guard(svc, code, why);
    let entries = svc.gql.values().flatten().map(|e| e.action);
    let fields = svc.gql_fields.iter().map(|f| f.action);
    if let Some(strictest) = entries.chain(fields).max() {
        v.action = v.action.max(strictest);
    }
    // Which entry the request meets cannot be read: each one's approval policy applies.
    v.approval = svc.unknown_rule_policy(v.action, false, true);
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
    let watched = |name: &str| svc.gql_fields.iter().any(|f| f.watches(name));
    let (calls, selected) = match graphql::operation_selecting(body, &wants_args, &watched) {
        Ok((graphql::Operation::Read, selected)) => {
            let mut v = plain(
                Action::Allow,
                Some(&svc.name),
                "graphql_read",
                "GraphQL query (read)".into(),
            );
            v.tool = Some(format!("{}.graphql.query", svc.name));
            return with_fields(v, field_verdicts(svc, &selected));
        }
        Ok((graphql::Operation::Mutation(calls), selected)) => (calls, selected),
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
                            match check(c, args, &no_params, svc) {
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
                approval: r.approval.clone(),
                spend_usd: None,
                also_tools: Vec::new(),
            };
            Verdict::keep_strictest(&mut fired, v);
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
            // The mutation's own entries, none of which matched: each one's policy applies.
            v.approval = ApprovalPolicy::strictest_of(
                entries
                    .iter()
                    .filter(|e| e.action == v.action)
                    .map(|e| e.approval.as_ref()),
            );
            v
        });
        Verdict::keep_strictest(&mut best, v);
    }
    let v = best.unwrap_or_else(|| {
        graphql_guard(
            svc,
            "graphql_unparseable",
            "mutation selects no field".into(),
        )
    });
    // A mutation's payload may select a watched field too.
    with_fields(v, field_verdicts(svc, &selected))
}

/// `v`, or the strictest of `fields` where stricter; one as strict joins it (as
/// [`Verdict::keep_strictest`] weighs them).
fn with_fields(mut v: Verdict, fields: Vec<Verdict>) -> Verdict {
    for f in fields {
        if f.action > v.action {
            v = f;
        } else if f.action == v.action {
            v.absorb_tie(f);
        }
    }
    v
}

/// The verdicts of the `[[graphql_field]]` entries whose fields are among `selected` (the
/// watched fields the document selects), in file order.
fn field_verdicts(svc: &Service, selected: &[String]) -> Vec<Verdict> {
    svc.gql_fields
        .iter()
        .filter_map(|f| {
            let names: Vec<&str> = selected
                .iter()
                .filter(|n| f.watches(n))
                .map(String::as_str)
                .collect();
            if names.is_empty() {
                return None;
            }
            let names = names.join(",");
            Some(Verdict {
                action: f.action,
                rule_id: Some(f.id.clone()),
                service: Some(svc.name.clone()),
                tool: Some(f.tool.clone()),
                class: Some(f.class),
                reason_codes: vec!["rule_match".to_string()],
                explanation: format!("GraphQL selects {names} ({}): {}", f.id, f.reason),
                params: BTreeMap::from([("fields".to_string(), names)]),
                expiry: None,
                wait: None,
                approval: f.approval.clone(),
                spend_usd: None,
                also_tools: Vec::new(),
            })
        })
        .collect()
}
