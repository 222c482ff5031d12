//! Catalog coverage: every route and mutation in the providers' published lists must have an
//! explicit entry in the catalog, one with no conditions (its bucket), so that no write on a
//! catalog host falls to the closed world's `unclassified_writes` by accident.
//!
//! The lists (`tests/data/`, provenance in `tests/data/README.md`) are compiled in:
//! GitHub REST DELETE and POST/PUT/PATCH routes from `@octokit/openapi`, GitHub GraphQL
//! mutations from `octokit/graphql-schema`, Stripe non-GET routes from the `stripe` npm package.

use std::collections::BTreeMap;

use super::catalog::{Catalog, Entry};
use super::Action;

/// One published list: which service it belongs to and its lines.
struct List {
    service: &'static str,
    /// What the list holds, as printed (`REST`, `GraphQL`).
    kind: Kind,
    text: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Rest,
    Graphql,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rest => "REST",
            Kind::Graphql => "GraphQL",
        }
    }
}

const LISTS: &[List] = &[
    List {
        service: "github",
        kind: Kind::Rest,
        text: include_str!("../../tests/data/github-rest-delete.tsv"),
    },
    List {
        service: "github",
        kind: Kind::Rest,
        text: include_str!("../../tests/data/github-rest-write.tsv"),
    },
    List {
        service: "github",
        kind: Kind::Graphql,
        text: include_str!("../../tests/data/github-graphql-mutations.txt"),
    },
    List {
        service: "stripe",
        kind: Kind::Rest,
        text: include_str!("../../tests/data/stripe-nonget.tsv"),
    },
];

/// One listed route (`DELETE /repos/{owner}/{repo}`) or mutation (`deleteRef`) and how the
/// catalog classifies it.
#[derive(Debug, Clone)]
pub struct Route {
    pub service: &'static str,
    pub kind: Kind,
    /// `None` for a mutation.
    pub method: Option<&'static str>,
    /// The path template, or the mutation name.
    pub name: &'static str,
    /// The base entry (no conditions) that gives the route its bucket; `None`: unclassified.
    pub base: Option<Entry>,
    /// More than one base entry names it (the most severe one is `base`).
    pub duplicate: bool,
    /// Conditional entries that can make it stricter than its bucket.
    pub stricter: Vec<Entry>,
}

/// Every listed route and mutation with its classification, in list order.
pub fn routes(catalog: &Catalog) -> Vec<Route> {
    let mut out = Vec::new();
    for list in LISTS {
        for line in list.text.lines() {
            let first = line.split('\t').next().unwrap_or("").trim();
            if first.is_empty() || first.starts_with('#') {
                continue;
            }
            let (method, name, entries) = match list.kind {
                Kind::Rest => {
                    let Some((m, p)) = first.split_once(' ') else {
                        continue;
                    };
                    // A malformed list line shows up as unclassified rather than vanishing.
                    let entries = catalog
                        .explicit_rules(list.service, m, p)
                        .unwrap_or_default();
                    (Some(m), p, entries)
                }
                Kind::Graphql => (None, first, catalog.explicit_mutation(list.service, first)),
            };
            let (bases, conditional): (Vec<Entry>, Vec<Entry>) =
                entries.into_iter().partition(|e| !e.conditional);
            let duplicate = bases.len() > 1;
            let base = bases
                .into_iter()
                .reduce(|a, b| if b.action > a.action { b } else { a });
            let floor = base.as_ref().map_or(Action::Allow, |b| b.action);
            let stricter = conditional
                .into_iter()
                .filter(|e| e.action > floor)
                .collect();
            out.push(Route {
                service: list.service,
                kind: list.kind,
                method,
                name,
                base,
                duplicate,
                stricter,
            });
        }
    }
    out
}

/// Per service and kind: routes per bucket, how many have stricter conditional entries, and
/// the unclassified ones.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub listed: usize,
    pub buckets: BTreeMap<Action, usize>,
    pub conditional: usize,
    pub unclassified: Vec<String>,
    pub duplicated: Vec<String>,
}

/// [`routes`] counted by (service, kind).
pub fn tally(routes: &[Route]) -> BTreeMap<(&'static str, Kind), Tally> {
    let mut out: BTreeMap<(&'static str, Kind), Tally> = BTreeMap::new();
    for r in routes {
        let t = out.entry((r.service, r.kind)).or_default();
        t.listed += 1;
        let label = match r.method {
            Some(m) => format!("{m} {}", r.name),
            None => format!("mutation {}", r.name),
        };
        match &r.base {
            Some(b) => *t.buckets.entry(b.action).or_default() += 1,
            None => t.unclassified.push(label.clone()),
        }
        if !r.stricter.is_empty() {
            t.conditional += 1;
        }
        if r.duplicate {
            t.duplicated.push(label);
        }
    }
    out
}
