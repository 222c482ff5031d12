//! Fuzzes request-field extraction (`rules::fields`) and GraphQL operation extraction
//! (`rules::graphql::operation`).
//!
//! The first byte picks what the rest is: `f` a form body, `j` a JSON body, `g` a GraphQL
//! request body (`{"query":..}`), `q` a bare GraphQL document, optionally followed by a NUL, the
//! `variables` JSON, a NUL and the `operationName`. Any other first byte: the whole input goes
//! through all of them.
//!
//! Checks beyond no panic: `add_json` and `strict_json` accept exactly the same inputs and
//! flatten to the same fields (`add_value` of the strict value) and the same number of
//! duplicates; a form yields one field or one duplicate per pair; `operation` reports the same fields whether or not arguments are asked
//! for, and arguments only for the names asked.

#![no_main]

use airlock::rules::fields::{strict_json, Fields};
use airlock::rules::graphql::{operation, Operation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b'f' => form(rest),
        b'j' => json(rest),
        b'g' => graphql(rest),
        b'q' => graphql(&wrap(rest)),
        _ => {
            form(data);
            json(data);
            graphql(data);
            graphql(&wrap(data));
        }
    }
});

fn form(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut f = Fields::default();
    f.add_form(&text);
    let pairs = form_urlencoded::parse(text.as_bytes()).count();
    assert_eq!(
        f.map.len() + f.duplicates.len(),
        pairs,
        "a form pair was lost"
    );
}

fn json(data: &[u8]) {
    let mut flat = Fields::default();
    let flat_result = flat.add_json(data);
    let strict = strict_json(data);
    match (&flat_result, &strict) {
        (Ok(()), Ok(v)) => {
            let mut from_value = Fields::default();
            from_value.add_value("", v);
            assert_eq!(flat.duplicates.len(), from_value.duplicates.len());
            // With a flattening collision (`{"a.b":1,"a":{"b":2}}`) which value is kept depends
            // on key order (the value is sorted); callers escalate on any duplicate anyway.
            if flat.duplicates.is_empty() {
                assert_eq!(flat.map, from_value.map, "add_json and add_value disagree");
            }
        }
        // The messages may differ: `add_json` sees a duplicate key before parsing its value.
        (Err(_), Err(_)) => {}
        _ => panic!("add_json {flat_result:?} but strict_json {strict:?}"),
    }
}

/// `q` mode: the document, then optional NUL-separated variables JSON and operation name.
fn wrap(data: &[u8]) -> Vec<u8> {
    let mut parts = data.splitn(3, |b| *b == 0);
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let mut body = serde_json::json!({ "query": query });
    if let Some(vars) = parts.next() {
        body["variables"] =
            serde_json::from_slice(vars).unwrap_or(serde_json::Value::String("?".into()));
    }
    if let Some(name) = parts.next() {
        body["operationName"] = String::from_utf8_lossy(name).into();
    }
    body.to_string().into_bytes()
}

fn graphql(body: &[u8]) {
    let none = operation(body, &|_| false);
    let all = operation(body, &|_| true);
    let even = |name: &str| name.len() % 2 == 0;
    let some = operation(body, &even);
    match (none, all, some) {
        (Ok(Operation::Read), Ok(Operation::Read), Ok(Operation::Read)) => {}
        (Ok(Operation::Mutation(a)), Ok(Operation::Mutation(b)), Ok(Operation::Mutation(c))) => {
            let names = |calls: &[airlock::rules::graphql::Call]| {
                calls.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
            };
            assert_eq!(names(&a), names(&b));
            assert_eq!(names(&a), names(&c));
            assert!(a.iter().all(|c| c.args.is_none()));
            assert!(b.iter().all(|c| c.args.is_some()));
            assert!(c.iter().all(|c| c.args.is_some() == even(&c.name)));
        }
        (Err(a), Err(b), Err(c)) => assert!(a == b && b == c, "{a} {b} {c}"),
        (a, b, c) => panic!("wants_args changed the outcome: {a:?} / {b:?} / {c:?}"),
    }
}
