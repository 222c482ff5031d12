//! GraphQL: which top-level mutation fields will run. Picks the operation by `operationName`,
//! expands fragment spreads and inline fragments at the top level, and reports field names
//! (never aliases).

use graphql_parser::query::{Definition, OperationDefinition, Selection, SelectionSet};

#[derive(Debug, PartialEq)]
pub enum Operation {
    /// A query or subscription: reads.
    Read,
    Mutation(Vec<String>),
}

/// Parses `{"query", "operationName", "variables"}`; `Err` gives the reason code.
pub fn operation(body: &[u8]) -> Result<Operation, &'static str> {
    let mut fields = super::fields::Fields::default();
    fields.add_json(body).map_err(|e| {
        if e.contains("duplicate key") {
            "duplicate_key"
        } else {
            "body_unparseable"
        }
    })?;
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| "body_unparseable")?;
    let query = v
        .get("query")
        .and_then(|q| q.as_str())
        .ok_or("body_unparseable")?;
    let op_name = match v.get("operationName") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err("body_unparseable"),
    };
    let doc = graphql_parser::parse_query::<String>(query).map_err(|_| "graphql_unparseable")?;
    let ops: Vec<&OperationDefinition<String>> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Operation(o) => Some(o),
            Definition::Fragment(_) => None,
        })
        .collect();
    let name_of = |o: &OperationDefinition<String>| match o {
        OperationDefinition::Query(q) => q.name.clone(),
        OperationDefinition::Mutation(m) => m.name.clone(),
        OperationDefinition::Subscription(s) => s.name.clone(),
        OperationDefinition::SelectionSet(_) => None,
    };
    let chosen = match op_name {
        Some(n) => ops
            .iter()
            .find(|o| name_of(o).as_deref() == Some(n))
            .ok_or("unknown_operation")?,
        None if ops.len() == 1 => &ops[0],
        None => return Err("ambiguous_operation"),
    };
    let OperationDefinition::Mutation(m) = chosen else {
        return Ok(Operation::Read);
    };
    let mut names = Vec::new();
    collect(&m.selection_set, &doc.definitions, &mut names, 0)?;
    Ok(Operation::Mutation(names))
}

fn collect(
    set: &SelectionSet<String>,
    defs: &[Definition<String>],
    out: &mut Vec<String>,
    depth: usize,
) -> Result<(), &'static str> {
    if depth > 16 {
        return Err("graphql_unparseable");
    }
    for sel in &set.items {
        match sel {
            Selection::Field(f) => out.push(f.name.clone()),
            Selection::InlineFragment(i) => collect(&i.selection_set, defs, out, depth + 1)?,
            Selection::FragmentSpread(s) => {
                let frag = defs
                    .iter()
                    .find_map(|d| match d {
                        Definition::Fragment(f) if f.name == s.fragment_name => Some(f),
                        _ => None,
                    })
                    .ok_or("graphql_unparseable")?;
                collect(&frag.selection_set, defs, out, depth + 1)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(q: &str, op: Option<&str>) -> Result<Operation, &'static str> {
        operation(
            serde_json::json!({"query": q, "operationName": op})
                .to_string()
                .as_bytes(),
        )
    }

    #[test]
    fn picks_fields_not_aliases() {
        let m = |v: &[&str]| {
            Ok(Operation::Mutation(
                v.iter().map(|s| s.to_string()).collect(),
            ))
        };
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
            Ok(Operation::Read)
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
            operation(br#"{"query":"{a}","query":"mutation{b}"}"#),
            Err("duplicate_key")
        );
    }
}
