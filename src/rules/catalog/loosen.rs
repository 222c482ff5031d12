//! What a reload loosens. For each tool (a REST rule's `tool`, `SERVICE.graphql.MUTATION`, a
//! `[[graphql_field]]` entry's `tool`,
//! `SERVICE.git.delete-ref|push-protected-ref|push`) the strictest action any of its entries
//! takes, and for a held tool the approval policy its held entries need together, old against
//! new. A tool whose strictest action drops, that no entry names any more while it was stricter
//! than allow, or whose approval policy weakens (a quorum smaller, its approvers widened or
//! removed, self-approval turned on) is reported: the reload still goes ahead (an operator may
//! loosen on purpose), but the log names every such tool (see `live.rs`).
//!
//! Tool-level on purpose (cheap: one map per catalog, and reloads are rare): a conditional
//! entry that loosens while another entry of the same tool still holds as strictly is not
//! reported. A service's `default` is not compared.

use std::collections::BTreeMap;

use super::Catalog;
use crate::rules::{Action, ApprovalPolicy, Quorum};

/// One tool a reload made less strict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loosening {
    pub tool: String,
    /// Before and after: an action (`escalate`), with the approval policy when that changed
    /// (`escalate (2 of alice, bob; not the agent's owner)`), or `none` (no entry names it).
    pub old: String,
    pub new: String,
    /// The entry (`file:line`) that now decides the tool, or that decided it (a removed tool).
    pub rule: String,
}

impl Loosening {
    /// The rule file of [`Loosening::rule`].
    pub fn file(&self) -> &str {
        self.rule
            .rsplit_once(':')
            .map_or(self.rule.as_str(), |(f, _)| f)
    }
}

impl std::fmt::Display for Loosening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} -> {} ({})",
            self.tool, self.old, self.new, self.rule
        )
    }
}

/// A tool's strictest action, the entry that first takes it, and its held entries' policies.
struct Strictest<'c> {
    action: Action,
    rule: &'c str,
    held: Vec<Option<&'c ApprovalPolicy>>,
}

impl Strictest<'_> {
    /// The policy a call held by this tool needs (none set: one reviewer, not the owner).
    fn policy(&self) -> ApprovalPolicy {
        ApprovalPolicy::strictest_of(self.held.iter().copied()).unwrap_or_default()
    }
}

impl Catalog {
    /// Tool -> its strictest entry.
    fn strictness(&self) -> BTreeMap<String, Strictest<'_>> {
        let mut map = BTreeMap::new();
        for s in &self.services {
            for r in &s.rules {
                add(
                    &mut map,
                    r.tool.clone(),
                    r.action,
                    &r.id,
                    r.approval.as_ref(),
                );
            }
            for (name, entries) in &s.gql {
                for e in entries {
                    let tool = format!("{}.graphql.{name}", s.name);
                    add(&mut map, tool, e.action, &e.id, e.approval.as_ref());
                }
            }
            for f in &s.gql_fields {
                add(
                    &mut map,
                    f.tool.clone(),
                    f.action,
                    &f.id,
                    f.approval.as_ref(),
                );
            }
            if let Some(g) = &s.git {
                for (tool, action) in [
                    ("delete-ref", g.delete),
                    ("push-protected-ref", g.protected_action),
                    ("push", g.push),
                ] {
                    add(
                        &mut map,
                        format!("{}.git.{tool}", s.name),
                        action,
                        &g.id,
                        None,
                    );
                }
            }
        }
        map
    }

    /// Every tool `fresh` (the catalog about to replace this one) makes less strict, by tool
    /// name.
    pub fn loosened_in(&self, fresh: &Catalog) -> Vec<Loosening> {
        let new = fresh.strictness();
        let mut out = Vec::new();
        for (tool, old) in self.strictness() {
            let Some(now) = new.get(&tool) else {
                if old.action > Action::Allow {
                    out.push(Loosening {
                        tool,
                        old: old.action.as_str().into(),
                        new: "none (no rule names it now)".into(),
                        rule: old.rule.into(),
                    });
                }
                continue;
            };
            if now.action < old.action {
                out.push(Loosening {
                    tool,
                    old: old.action.as_str().into(),
                    new: now.action.as_str().into(),
                    rule: now.rule.into(),
                });
            } else if old.action == Action::Escalate && now.action == Action::Escalate {
                let (was, is) = (old.policy(), now.policy());
                if weaker(&was, &is) {
                    out.push(Loosening {
                        tool,
                        old: format!("escalate ({})", describe(&was)),
                        new: format!("escalate ({})", describe(&is)),
                        rule: now.rule.into(),
                    });
                }
            }
        }
        out
    }
}

/// Takes in one entry of `tool`.
fn add<'c>(
    map: &mut BTreeMap<String, Strictest<'c>>,
    tool: String,
    action: Action,
    rule: &'c str,
    policy: Option<&'c ApprovalPolicy>,
) {
    let s = map.entry(tool).or_insert(Strictest {
        action,
        rule,
        held: Vec::new(),
    });
    if action > s.action {
        s.action = action;
        s.rule = rule;
    }
    if action == Action::Escalate {
        s.held.push(policy);
    }
}

/// Does `new` let through what `old` held: self-approval turned on, or a quorum of `old` that no
/// quorum of `new` still needs (as many approvals, from no one `old` would not count)?
fn weaker(old: &ApprovalPolicy, new: &ApprovalPolicy) -> bool {
    if new.self_approval && !old.self_approval {
        return true;
    }
    let new_quorums = new.quorums();
    !old.quorums()
        .iter()
        .all(|q| new_quorums.iter().any(|n| covers(n, q)))
}

/// Does quorum `n` need at least what `q` does: as many approvals, each from someone `q`
/// admits? (Lists compared by entry: `group:sre` and a member of it are told apart.)
fn covers(n: &Quorum, q: &Quorum) -> bool {
    let within = q.approvers.is_empty()
        || (!n.approvers.is_empty()
            && n.approvers
                .iter()
                .all(|a| q.approvers.iter().any(|b| crate::person::same(a, b))));
    n.required.max(1) >= q.required.max(1) && within
}

/// `2 of alice, bob; not the agent's owner`, for the log.
fn describe(p: &ApprovalPolicy) -> String {
    let quorums: Vec<String> = p
        .quorums()
        .iter()
        .map(|q| match q.approvers.is_empty() {
            true => format!("{} of any reviewer", q.required.max(1)),
            false => format!("{} of {}", q.required.max(1), q.approvers.join(", ")),
        })
        .collect();
    let owner = match p.self_approval {
        true => "the agent's owner may approve",
        false => "not the agent's owner",
    };
    format!("{}; {owner}", quorums.join(" and "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::CatalogOptions;

    const SERVICE: &str = "[service]\nname = \"s\"\nhosts = [\"h.test\"]\n";

    fn catalog(rules: &str) -> Catalog {
        let text = format!("{SERVICE}{rules}");
        Catalog::from_sources(&[("r/s.toml".into(), text)], &CatalogOptions::default())
            .expect("rules")
    }

    fn rule(tool: &str, action: &str, extra: &str) -> String {
        format!(
            "[[rule]]\ntool = \"{tool}\"\nmethod = \"DELETE\"\npath = \"/{tool}\"\nclass = \"irreversible\"\naction = \"{action}\"\n{extra}"
        )
    }

    fn tools(l: &[Loosening]) -> Vec<&str> {
        l.iter().map(|l| l.tool.as_str()).collect()
    }

    #[test]
    fn a_dropped_action_or_a_removed_tool_is_named_with_its_file() {
        let old = catalog(&format!(
            "{}{}{}{}",
            rule("s.del", "escalate", ""),
            rule("s.gone", "notify", ""),
            rule("s.open", "allow", ""),
            rule("s.tight", "notify", "")
        ));
        let new = catalog(&format!(
            "{}{}",
            rule("s.del", "allow", ""),
            rule("s.tight", "block", "")
        ));
        let l = old.loosened_in(&new);
        assert_eq!(tools(&l), ["s.del", "s.gone"], "{l:?}");
        assert_eq!(
            (l[0].old.as_str(), l[0].new.as_str()),
            ("escalate", "allow")
        );
        assert_eq!(l[0].file(), "r/s.toml");
        assert!(l[0].rule.starts_with("r/s.toml:"), "{}", l[0].rule);
        assert!(l[1].new.starts_with("none"), "{}", l[1]);
        assert!(
            new.loosened_in(&old).iter().all(|l| l.tool != "s.del"),
            "tightening is not reported"
        );
        assert!(old.loosened_in(&old).is_empty());
    }

    #[test]
    fn a_weaker_approval_policy_is_named() {
        let with = |extra: &str| catalog(&rule("s.del", "escalate", extra));
        let old = with("approvals = 2\napprovers = [\"alice\", \"bob\", \"carol\"]\n");
        for (extra, why) in [
            ("approvals = 1\napprovers = [\"alice\", \"bob\", \"carol\"]\n", "fewer"),
            ("approvals = 2\napprovers = [\"alice\", \"bob\", \"dave\"]\n", "widened"),
            ("approvals = 2\n", "list removed"),
            ("", "no policy: one of anyone"),
            (
                "approvals = 2\napprovers = [\"alice\", \"bob\", \"carol\"]\nself_approval = true\n",
                "self-approval",
            ),
        ] {
            let l = old.loosened_in(&with(extra));
            assert_eq!(tools(&l), ["s.del"], "{why}");
            assert!(l[0].old.contains("2 of alice, bob, carol"), "{}", l[0]);
        }
        for (extra, why) in [
            (
                "approvals = 2\napprovers = [\"alice\", \"bob\", \"carol\"]\n",
                "same",
            ),
            (
                "approvals = 3\napprovers = [\"Alice\", \"bob\"]\n",
                "narrower",
            ),
        ] {
            assert!(old.loosened_in(&with(extra)).is_empty(), "{why}");
        }
        // A quorum lost from a tool's several held entries is a weaker policy too.
        let two = catalog(&format!(
            "{}{}",
            rule("s.del", "escalate", "approvals = 2\n"),
            rule(
                "s.del",
                "escalate",
                "approvers = [\"group:sre\"]\nwhen = [{ field = \"x\", eq = 1 }]\n"
            )
        ));
        let one = catalog(&rule("s.del", "escalate", "approvals = 2\n"));
        assert_eq!(tools(&two.loosened_in(&one)), ["s.del"]);
        assert!(one.loosened_in(&two).is_empty());
    }

    #[test]
    fn graphql_and_git_entries_count_as_tools() {
        let old = catalog(
            "[[graphql]]\nmutations = [\"deleteRef\"]\nclass = \"irreversible\"\naction = \"escalate\"\n[git]\nhosts = [\"git.test\"]\ndelete = \"block\"\n",
        );
        let new = catalog(
            "[[graphql]]\nmutations = [\"deleteRef\"]\nclass = \"irreversible\"\naction = \"notify\"\n[git]\nhosts = [\"git.test\"]\ndelete = \"escalate\"\n",
        );
        let l = old.loosened_in(&new);
        assert_eq!(
            tools(&l),
            ["s.git.delete-ref", "s.graphql.deleteRef"],
            "{l:?}"
        );
    }
}
