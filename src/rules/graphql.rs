//! GraphQL: which top-level mutation fields will run, and with which arguments. Picks the
//! operation by `operationName`, expands fragment spreads and inline fragments at the top level,
//! and reports field names (never aliases). Arguments are flattened like request bodies
//! (`input: {force: true}` -> `input.force`), with `$variables` resolved from the request's
//! `variables` object (or the variable's default in the operation).
//!
//! Work is linear in the request: each fragment is expanded once however often it is spread,
//! and flattened arguments are capped at [`MAX_ARGUMENT_LEAVES`] per operation.
//!
//! [`operation_selecting`] also names the fields a caller watches (`recoveryCodes`) that the
//! document selects anywhere, at any depth, in any operation or fragment, read or mutation.

use std::collections::{HashMap, HashSet};

use graphql_parser::query::{
    Definition, Field, FragmentDefinition, OperationDefinition, Selection, SelectionSet, Value,
    VariableDefinition,
};

use super::fields::{FieldValue, Fields};

/// One top-level mutation field.
#[derive(Debug)]
pub struct Call {
    /// The field name (never the alias).
    pub name: String,
    /// Flattened arguments, when the caller asked for them; `Err` gives the reason code
    /// (a variable with no value, a duplicate argument).
    pub args: Option<Result<Fields, &'static str>>,
}

#[derive(Debug)]
pub enum Operation {
    /// A query or subscription: reads.
    Read,
    Mutation(Vec<Call>),
}

type Doc<'a> = graphql_parser::query::Document<'a, &'a str>;

/// Flattened argument values one operation may produce, all its fields together. A `$variable`
/// is copied wherever it is used, so without a cap a small request could make millions
/// (`a1: f(input: $big) a2: f(input: $big) ...`); beyond it the arguments are unparseable
/// (the caller escalates).
pub const MAX_ARGUMENT_LEAVES: usize = 100_000;

/// Parses `{"query", "operationName", "variables"}`; `Err` gives the reason code.
/// `wants_args(name)` says which mutation fields need their arguments flattened.
pub fn operation(
    body: &[u8],
    wants_args: &dyn Fn(&str) -> bool,
) -> Result<Operation, &'static str> {
    operation_selecting(body, wants_args, &|_| false).map(|(op, _)| op)
}

/// [`operation`], and the distinct names of the fields `watched(name)` picks that the document
/// selects anywhere (see [`watched_fields`]), in the order first met.
pub fn operation_selecting(
    body: &[u8],
    wants_args: &dyn Fn(&str) -> bool,
    watched: &dyn Fn(&str) -> bool,
) -> Result<(Operation, Vec<String>), &'static str> {
    let v = super::fields::strict_json(body).map_err(|e| {
        if e.contains("duplicate key") {
            "duplicate_key"
        } else {
            "body_unparseable"
        }
    })?;
    let query = v
        .get("query")
        .and_then(|q| q.as_str())
        .ok_or("body_unparseable")?;
    let op_name = match v.get("operationName") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err("body_unparseable"),
    };
    let variables = match v.get("variables") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(m)) => Ok(Some(m)),
        // A string or array cannot be resolved against: any variable use fails closed.
        Some(_) => Err("body_unparseable"),
    };
    // The parser panics on some input (a block string indented with non-ASCII blanks slices a
    // character apart): a panic is an unparseable query, held like any other.
    let parsed = std::panic::catch_unwind(|| graphql_parser::parse_query(query));
    let doc: Doc<'_> = match parsed {
        Ok(Ok(doc)) => doc,
        Ok(Err(_)) | Err(_) => return Err("graphql_unparseable"),
    };
    // A name given to two operations or two fragments: which one runs is the server's guess.
    let mut names: Vec<(bool, &str)> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Operation(o) => name_of(o).map(|n| (false, n)),
            Definition::Fragment(f) => Some((true, f.name)),
        })
        .collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err("ambiguous_operation");
    }
    let mut ops = doc.definitions.iter().filter_map(|d| match d {
        Definition::Operation(o) => Some(o),
        Definition::Fragment(_) => None,
    });
    let chosen = match op_name {
        Some(n) => ops
            .find(|o| name_of(o) == Some(n))
            .ok_or("unknown_operation")?,
        None => match (ops.next(), ops.next()) {
            (Some(o), None) => o,
            (None, _) => return Err("graphql_unparseable"),
            (Some(_), Some(_)) => return Err("ambiguous_operation"),
        },
    };
    let selected = watched_fields(&doc, watched);
    let OperationDefinition::Mutation(m) = chosen else {
        return Ok((Operation::Read, selected));
    };
    // Fragments by name (unique, checked above), looked up once per spread.
    let by_name: HashMap<&str, _> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some((f.name, f)),
            Definition::Operation(_) => None,
        })
        .collect();
    let mut fields = Vec::new();
    let mut fragments = Expansion::default();
    collect(&m.selection_set, &by_name, &mut fields, &mut fragments, 0)?;
    let vars = Vars {
        given: variables,
        defs: &m.variable_definitions,
    };
    let mut budget = MAX_ARGUMENT_LEAVES;
    let mut calls = Vec::with_capacity(fields.len());
    for f in fields {
        calls.push(Call {
            name: f.name.to_string(),
            args: wants_args(f.name).then(|| arguments(f, &vars, &mut budget)),
        });
    }
    Ok((Operation::Mutation(calls), selected))
}

/// The distinct names of the fields `watched` picks, selected anywhere in the document: in
/// every operation (not only the one that runs: which one the server picks is not Airlock's to
/// guess) and every fragment definition (so every spread, spread or not), inline fragments and
/// nested selections at any depth, by field name (an alias such as `__typename: recoveryCodes`
/// or `ssoUrl: recoveryCodes` is no name). A stack, not recursion: as deep as the parser went.
fn watched_fields<'q>(doc: &Doc<'q>, watched: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut stack: Vec<&SelectionSet<'q, &'q str>> = doc
        .definitions
        .iter()
        .map(|d| match d {
            Definition::Operation(OperationDefinition::Query(q)) => &q.selection_set,
            Definition::Operation(OperationDefinition::Mutation(m)) => &m.selection_set,
            Definition::Operation(OperationDefinition::Subscription(s)) => &s.selection_set,
            Definition::Operation(OperationDefinition::SelectionSet(s)) => s,
            Definition::Fragment(f) => &f.selection_set,
        })
        .collect();
    while let Some(set) = stack.pop() {
        for sel in &set.items {
            match sel {
                Selection::Field(f) => {
                    if watched(f.name) && !found.iter().any(|n| n == f.name) {
                        found.push(f.name.to_string());
                    }
                    stack.push(&f.selection_set);
                }
                Selection::InlineFragment(i) => stack.push(&i.selection_set),
                // Its definition is on the stack already (every fragment is).
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    found
}

fn name_of<'q>(o: &OperationDefinition<'q, &'q str>) -> Option<&'q str> {
    match o {
        OperationDefinition::Query(q) => q.name,
        OperationDefinition::Mutation(m) => m.name,
        OperationDefinition::Subscription(s) => s.name,
        OperationDefinition::SelectionSet(_) => None,
    }
}

struct Vars<'d, 'q> {
    given: Result<Option<&'d serde_json::Map<String, serde_json::Value>>, &'static str>,
    defs: &'d [VariableDefinition<'q, &'q str>],
}

/// The field's arguments, flattened; every variable must resolve. `budget`: leaves the
/// operation may still produce; this field's are taken from it.
fn arguments<'q>(
    f: &Field<'q, &'q str>,
    vars: &Vars<'_, 'q>,
    budget: &mut usize,
) -> Result<Fields, &'static str> {
    let limit = *budget;
    let mut out = Fields::default();
    let mut key = String::new();
    let result = f.arguments.iter().try_for_each(|(name, value)| {
        key.clear();
        key.push_str(name);
        flatten(value, &mut key, vars, &mut out, limit, 0)
    });
    *budget = limit.saturating_sub(leaves(&out));
    result?;
    if leaves(&out) > limit {
        return Err("graphql_unparseable");
    }
    if !out.duplicates.is_empty() {
        return Err("duplicate_key");
    }
    Ok(out)
}

fn leaves(f: &Fields) -> usize {
    f.map.len() + f.duplicates.len()
}

/// Flattens `v` under `key` into `out`; `Err` once `out` holds more than `limit` leaves (a
/// variable's copy may overshoot by its own size, never more).
fn flatten<'q>(
    v: &Value<'q, &'q str>,
    key: &mut String,
    vars: &Vars<'_, 'q>,
    out: &mut Fields,
    limit: usize,
    depth: usize,
) -> Result<(), &'static str> {
    if depth > 32 || leaves(out) > limit {
        return Err("graphql_unparseable");
    }
    let leaf = |out: &mut Fields, key: &str, fv: FieldValue| out.insert(key.to_string(), fv);
    match v {
        Value::Variable(name) => {
            let given = vars.given?;
            match given.and_then(|m| m.get(*name)) {
                Some(j) => out.add_value(key, j),
                None => {
                    let default = vars
                        .defs
                        .iter()
                        .find(|d| d.name == *name)
                        .and_then(|d| d.default_value.as_ref())
                        .ok_or("graphql_variable_missing")?;
                    flatten(default, key, vars, out, limit, depth + 1)?;
                }
            }
        }
        Value::Int(n) => leaf(
            out,
            key,
            FieldValue::Num(n.as_i64().map_or(f64::NAN, |n| n as f64)),
        ),
        Value::Float(f) => leaf(out, key, FieldValue::Num(*f)),
        Value::String(s) => leaf(out, key, FieldValue::Str(s.clone())),
        Value::Boolean(b) => leaf(out, key, FieldValue::Bool(*b)),
        Value::Null => leaf(out, key, FieldValue::Null),
        Value::Enum(e) => leaf(out, key, FieldValue::Str(e.to_string())),
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = key.len();
                key.push('.');
                key.push_str(&i.to_string());
                flatten(item, key, vars, out, limit, depth + 1)?;
                key.truncate(len);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                let len = key.len();
                key.push('.');
                key.push_str(k);
                flatten(item, key, vars, out, limit, depth + 1)?;
                key.truncate(len);
            }
        }
    }
    Ok(())
}

/// Fragments met while collecting: each is expanded once (spreading it again selects the same
/// fields, which GraphQL merges), so spreads that fan out cost no more than the document.
#[derive(Default)]
struct Expansion<'q> {
    done: HashSet<&'q str>,
    /// Being expanded: a spread of one of these is a cycle (invalid GraphQL), refused.
    active: Vec<&'q str>,
}

fn collect<'d, 'q>(
    set: &'d SelectionSet<'q, &'q str>,
    defs: &HashMap<&'q str, &'d FragmentDefinition<'q, &'q str>>,
    out: &mut Vec<&'d Field<'q, &'q str>>,
    fragments: &mut Expansion<'q>,
    depth: usize,
) -> Result<(), &'static str> {
    if depth > 16 {
        return Err("graphql_unparseable");
    }
    for sel in &set.items {
        match sel {
            Selection::Field(f) => out.push(f),
            Selection::InlineFragment(i) => {
                collect(&i.selection_set, defs, out, fragments, depth + 1)?
            }
            Selection::FragmentSpread(s) => {
                let name = s.fragment_name;
                if fragments.active.contains(&name) {
                    return Err("graphql_unparseable");
                }
                if fragments.done.contains(name) {
                    continue;
                }
                let frag = *defs.get(name).ok_or("graphql_unparseable")?;
                fragments.active.push(name);
                collect(&frag.selection_set, defs, out, fragments, depth + 1)?;
                fragments.active.pop();
                fragments.done.insert(name);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field names of the chosen mutation; `Ok(None)` for a read.
    fn names(q: &str, op: Option<&str>) -> Result<Option<Vec<String>>, &'static str> {
        let body = serde_json::json!({"query": q, "operationName": op}).to_string();
        match operation(body.as_bytes(), &|_| false)? {
            Operation::Read => Ok(None),
            Operation::Mutation(calls) => Ok(Some(calls.into_iter().map(|c| c.name).collect())),
        }
    }

    /// The flattened arguments of every top-level field.
    fn args(body: serde_json::Value) -> Vec<Result<Fields, &'static str>> {
        match operation(body.to_string().as_bytes(), &|_| true) {
            Ok(Operation::Mutation(calls)) => calls
                .into_iter()
                .map(|c| c.args.expect("asked for arguments"))
                .collect(),
            other => panic!("not a mutation: {other:?}"),
        }
    }

    #[test]
    fn flattens_arguments_and_resolves_variables() {
        let q =
            |q: &str, vars: serde_json::Value| serde_json::json!({"query": q, "variables": vars});
        let got = args(q(
            "mutation($f: Boolean!, $in: UpdateRefInput!) { a: updateRef(input: {refId: \"r\", force: $f, n: [1, ENUMV]}) { x } b: updateRef(input: $in) { x } }",
            serde_json::json!({"f": true, "in": {"refId": "s", "force": false, "deep": {"k": null}}}),
        ));
        let a = got[0].as_ref().expect("a");
        assert_eq!(a.get("input.force"), Some(&FieldValue::Bool(true)));
        assert_eq!(a.get("input.refId"), Some(&FieldValue::Str("r".into())));
        assert_eq!(a.get("input.n.0"), Some(&FieldValue::Num(1.0)));
        assert_eq!(a.get("input.n.1"), Some(&FieldValue::Str("ENUMV".into())));
        let b = got[1].as_ref().expect("b");
        assert_eq!(b.get("input.force"), Some(&FieldValue::Bool(false)));
        assert_eq!(b.get("input.deep.k"), Some(&FieldValue::Null));
        // Defaults apply when the variable is not given; no default and not given: error.
        let got = args(q(
            "mutation($f: Boolean = true, $g: Boolean) { updateRef(input: {force: $f}) { x } updateRef(input: {force: $g}) { x } }",
            serde_json::json!({}),
        ));
        assert_eq!(
            got[0].as_ref().expect("default").get("input.force"),
            Some(&FieldValue::Bool(true))
        );
        assert_eq!(got[1].as_ref().err(), Some(&"graphql_variable_missing"));
        // Variables that are not an object cannot be resolved.
        let got = args(q(
            "mutation($f: Boolean) { updateRef(input: {force: $f}) { x } }",
            serde_json::json!("{\"f\": false}"),
        ));
        assert_eq!(got[0].as_ref().err(), Some(&"body_unparseable"));
        // An argument given twice.
        let got = args(q(
            "mutation { updateRef(input: {force: false}, input: {force: true}) { x } }",
            serde_json::Value::Null,
        ));
        assert_eq!(got[0].as_ref().err(), Some(&"duplicate_key"));
    }

    /// Fragment spreads that fan out (`Fi` spreads `F(i-1)` `fan` times): once each, so a
    /// 700-byte request no longer selects 8^15 fields. Found while fuzzing (docs/fuzzing.md).
    fn fan_out(fan: usize, levels: usize) -> String {
        let mut q = format!(
            "mutation {{ ...F{levels} }} fragment F0 on Mutation {{ deleteRef(input: {{}}) {{ x }} }} "
        );
        for i in 1..=levels {
            let spreads = format!("...F{} ", i - 1).repeat(fan);
            q += &format!("fragment F{i} on Mutation {{ {spreads} }} ");
        }
        q
    }

    #[test]
    fn each_fragment_expands_once_and_cycles_are_refused() {
        let m = |v: &[&str]| Ok(Some(v.iter().map(|s| s.to_string()).collect()));
        type Names = Result<Option<Vec<String>>, &'static str>;
        let cases: Vec<(String, Names)> = vec![
            (fan_out(2, 10), m(&["deleteRef"])),
            (fan_out(8, 15), m(&["deleteRef"])),
            (
                "mutation { ...F d: deleteRef(input: {}) { x } ...F } \
                 fragment F on Mutation { archiveRepository(input: {}) { x } }"
                    .into(),
                m(&["archiveRepository", "deleteRef"]),
            ),
            (
                "mutation { ...F } fragment F on Mutation { deleteRef(input: {}) { x } ...G } \
                 fragment G on Mutation { ...F }"
                    .into(),
                Err("graphql_unparseable"),
            ),
            (
                "mutation { ...F } fragment F on Mutation { ...F }".into(),
                Err("graphql_unparseable"),
            ),
        ];
        for (q, want) in cases {
            assert_eq!(names(&q, None), want, "{q}");
        }
        // Many fragments, each spread once: every one is found (looked up by name, not by a
        // scan of the document per spread: 38,000 in 1 MiB took 1.3 s of a worker's CPU).
        let n = 5000;
        let spreads: String = (0..n).map(|i| format!("...F{i} ")).collect();
        let defs: String = (0..n)
            .map(|i| {
                format!("fragment F{i} on Mutation {{ a{i}: deleteRef(input: {{}}) {{ x }} }} ")
            })
            .collect();
        let q = format!("mutation {{ {spreads} }} {defs}");
        assert_eq!(names(&q, None), Ok(Some(vec!["deleteRef".to_string(); n])));
    }

    /// A `$variable` used many times is copied each time; the copies stop at
    /// `MAX_ARGUMENT_LEAVES` per operation (a 230 kB request used to take 3 GB).
    #[test]
    fn flattened_arguments_are_capped() {
        let leaves = 1000;
        let big: serde_json::Map<String, serde_json::Value> = (0..leaves)
            .map(|i| (format!("k{i}"), serde_json::Value::from(i)))
            .collect();
        let literal = format!(
            "{{{}}}",
            (0..leaves)
                .map(|i| format!("k{i}: {i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let fields = |arg: &str| {
            (0..200)
                .map(|i| format!("a{i}: updateRef(input: {arg}) {{ x }} "))
                .collect::<String>()
        };
        let one_field = format!(
            "updateRef(input: {{{}}}) {{ x }}",
            (0..200)
                .map(|i| format!("a{i}: $v"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // (query, variables, calls whose arguments flatten, calls refused)
        let cases = [
            (
                format!("mutation($v: X) {{ {} }}", fields("$v")),
                serde_json::json!({ "v": big }),
                100,
                100,
            ),
            (
                format!("mutation($v: X = {literal}) {{ {} }}", fields("$v")),
                serde_json::json!({}),
                100,
                100,
            ),
            (
                format!("mutation($v: X) {{ {one_field} }}"),
                serde_json::json!({ "v": big }),
                0,
                1,
            ),
            (
                format!("mutation($v: X) {{ {} }}", fields("$v")),
                serde_json::json!({ "v": {"small": true} }),
                200,
                0,
            ),
        ];
        for (i, (q, vars, ok, refused)) in cases.into_iter().enumerate() {
            let got = args(serde_json::json!({"query": q, "variables": vars}));
            let flattened = got.iter().filter(|a| a.is_ok()).count();
            let capped = got
                .iter()
                .filter(|a| a.as_ref().err() == Some(&"graphql_unparseable"))
                .count();
            assert_eq!((flattened, capped), (ok, refused), "case {i}");
        }
    }

    /// Watched fields (`recoveryCodes`) wherever the document selects them.
    #[test]
    fn watched_fields_are_found_at_any_depth_in_any_definition() {
        let watched = |n: &str| n.eq_ignore_ascii_case("recoveryCodes");
        let found = |q: &str, op: Option<&str>| {
            let body = serde_json::json!({"query": q, "operationName": op}).to_string();
            operation_selecting(body.as_bytes(), &|_| false, &watched).map(|(_, f)| f)
        };
        let hit = Ok(vec!["recoveryCodes".to_string()]);
        let saml = "samlIdentityProvider { recoveryCodes }";
        let held = [
            format!("query {{ enterprise(slug: \"a\") {{ ownerInfo {{ {saml} }} }} }}"),
            format!("{{ enterprise(slug: \"a\") {{ ownerInfo {{ {saml} }} }} }}"),
            "{ enterprise(slug: \"a\") { ownerInfo { samlIdentityProvider { ssoUrl: recoveryCodes } } } }".into(),
            "{ enterprise(slug: \"a\") { ...E } } fragment E on Enterprise { ownerInfo { samlIdentityProvider { ...P } } } fragment P on EnterpriseIdentityProvider { recoveryCodes }".into(),
            "{ node(id: \"E\") { ... on Enterprise { ownerInfo { samlIdentityProvider { ... { recoveryCodes } } } } } }".into(),
            "{ node(id: \"E\") { ... @include(if: true) { ... on EnterpriseIdentityProvider { __typename: recoveryCodes } } } }".into(),
            // in a fragment no operation spreads, and in an operation that does not run
            "query A { viewer { login } } fragment F on EnterpriseIdentityProvider { recoveryCodes }".into(),
            "query A { viewer { login } } query B { node(id: \"P\") { ... on EnterpriseIdentityProvider { recoveryCodes } } }".into(),
            // in a mutation's payload
            "mutation { updateEnterpriseProfile(input: {enterpriseId: \"E\"}) { enterprise { ownerInfo { samlIdentityProvider { recoveryCodes } } } } }".into(),
            // deep (the parser refuses nesting past 50: held as unparseable)
            format!("{{ {}recoveryCodes{} }}", "a { ".repeat(40), " }".repeat(40)),
        ];
        for q in &held {
            let op = q.contains("query A").then_some("A");
            assert_eq!(found(q, op), hit, "{q}");
        }
        for q in [
            "{ enterprise(slug: \"a\") { ownerInfo { samlIdentityProvider { ssoUrl issuer } } } }",
            "{ enterprise(slug: \"a\") { ownerInfo { samlIdentityProvider { recoveryCodes: ssoUrl } } } }",
            "{ viewer { login } }",
        ] {
            assert_eq!(found(q, None), Ok(vec![]), "{q}");
        }
    }

    #[test]
    fn picks_fields_not_aliases() {
        let m = |v: &[&str]| Ok(Some(v.iter().map(|s| s.to_string()).collect()));
        assert_eq!(
            names(
                "mutation { safe: deleteRef(input:{}) { clientMutationId } }",
                None
            ),
            m(&["deleteRef"])
        );
        assert_eq!(
            names(
                "mutation A { ...F } fragment F on Mutation { archiveRepository(input:{}) { x } }",
                None
            ),
            m(&["archiveRepository"])
        );
        assert_eq!(
            names(
                "mutation { ... on Mutation { mergePullRequest(input:{}) { x } } }",
                None
            ),
            m(&["mergePullRequest"])
        );
        assert_eq!(
            names(
                "query Q { viewer { login } } mutation M { deleteRef(input:{}) { x } }",
                Some("Q")
            ),
            Ok(None)
        );
        assert_eq!(
            names(
                "query Q { viewer { login } } mutation M { deleteRef(input:{}) { x } }",
                Some("M")
            ),
            m(&["deleteRef"])
        );
        assert_eq!(
            names("query Q { a } mutation M { b }", None),
            Err("ambiguous_operation")
        );
        assert_eq!(
            names("query Q { a }", Some("Nope")),
            Err("unknown_operation")
        );
        assert_eq!(names("mutation {", None), Err("graphql_unparseable"));
        assert_eq!(
            names("query A { a } mutation A { b }", Some("A")),
            Err("ambiguous_operation")
        );
        assert_eq!(
            names(
                "mutation { ...F } fragment F on M { a } fragment F on M { deleteRef }",
                None
            ),
            Err("ambiguous_operation")
        );
        assert_eq!(
            operation(br#"{"query":"{a}","query":"mutation{b}"}"#, &|_| false).err(),
            Some("duplicate_key")
        );
    }
}
