//! Review listings as the API and the dashboard ask for them: `state`, `agent`, `tool`,
//! `limit` (default 100, at most 1000) and an opaque `cursor` from the previous page. Empty
//! values (as a dashboard form sends them) mean "no filter".

use crate::gate::index::{Query, DEFAULT_LIMIT, MAX_LIMIT};
use crate::gate::ReviewState;

/// A checked listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub query: Query,
    pub limit: usize,
    pub cursor: Option<String>,
}

impl Listing {
    /// The first page of `agent`'s pending reviews.
    pub fn pending_of(agent: &str) -> Listing {
        Listing {
            query: Query {
                state: Some(ReviewState::Pending),
                agent: Some(agent.to_string()),
                tool: None,
            },
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// Reads a listing from a query string; the error names the bad parameter.
pub fn parse(query: Option<&str>) -> Result<Listing, (&'static str, String)> {
    let mut out = Listing {
        query: Query::default(),
        limit: DEFAULT_LIMIT,
        cursor: None,
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "state" => {
                out.query.state = Some(
                    v.parse::<ReviewState>()
                        .map_err(|e| ("bad_state", e.to_string()))?,
                )
            }
            "agent" => out.query.agent = Some(v.to_string()),
            "tool" => out.query.tool = Some(v.to_string()),
            "cursor" => out.cursor = Some(v.to_string()),
            "limit" => {
                out.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        (
                            "bad_limit",
                            format!("limit must be a number from 1 to {MAX_LIMIT}"),
                        )
                    })?
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Per-state totals as a JSON object (`{"pending": 3, ...}`).
pub fn totals_json(totals: &[(ReviewState, u64)]) -> serde_json::Value {
    serde_json::Value::Object(
        totals
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), serde_json::Value::from(*n)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_one_by_one() {
        let l = parse(Some("state=pending&agent=bot&tool=&limit=5&cursor=abc")).unwrap();
        assert_eq!(l.query.state, Some(ReviewState::Pending));
        assert_eq!(l.query.agent.as_deref(), Some("bot"));
        assert_eq!(l.query.tool, None);
        assert_eq!((l.limit, l.cursor.as_deref()), (5, Some("abc")));
        assert_eq!(parse(None).unwrap().limit, DEFAULT_LIMIT);
        for (q, code) in [
            ("state=nope", "bad_state"),
            ("limit=0", "bad_limit"),
            ("limit=1001", "bad_limit"),
            ("limit=x", "bad_limit"),
        ] {
            assert_eq!(parse(Some(q)).unwrap_err().0, code, "{q}");
        }
    }
}
