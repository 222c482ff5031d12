//! Who may decide right now: the configured reviewers, and whether the admin token may approve.
//!
//! One shared set ([`Roster`]) that the admin listener, the gate and the notifier read, swapped
//! whole when the config is reloaded (SIGHUP). A removed reviewer's token, dashboard sessions
//! and one-click links stop working at once, and her approvals on pending reviews stop counting
//! toward their quorum: approvals are counted against the reviewers in force when a decision is
//! made, not when they were given.
//!
//! The one policy for every act that can send a request (approve, retry, extend):
//! - a reviewer must be on the rule's approver list, and the agent's owner may not act on her
//!   own agent's request unless the rule allows self-approval;
//! - the admin token is an operator credential, not a person: once reviewers exist it may do
//!   none of these unless `[admin] may_approve = true`, and even then it counts as one approver
//!   whatever name it gives, it may not act on a request of an agent that has an owner while
//!   self-approval is off, and it may not approve or retry under a rule that needs two or more
//!   approvals (it names no person, so it cannot show it is not that owner, or not a reviewer
//!   who has already approved: one person holding both would meet a two-person rule alone).
//!
//! Rejecting sends nothing: any approver may reject, the owner included, and so may the admin
//! token always.

use std::sync::{Arc, RwLock};

use super::Reviewer;
use crate::config::{AgentConfig, ReviewerConfig};
use crate::notify::{Escalation, LinkAction, LinkPolicy};
use crate::rules::{ApprovalPolicy, RulePolicy};

/// The reviewers in force at one moment.
#[derive(Debug, Clone, Default)]
pub struct People {
    reviewers: Vec<ReviewerConfig>,
    admin_may_approve: bool,
    /// Reviewers were in force earlier in this process and a reload left none: the admin
    /// token does not become an approver for that (a config file caught empty or half
    /// written by a reload must not hand approvals to the operator's token).
    emptied: bool,
}

impl People {
    /// `reviewers` from `[[reviewers]]`; `admin_may_approve` from `[admin] may_approve`.
    pub fn new(reviewers: Vec<ReviewerConfig>, admin_may_approve: bool) -> People {
        People {
            reviewers,
            admin_may_approve,
            emptied: false,
        }
    }

    pub fn reviewers(&self) -> &[ReviewerConfig] {
        &self.reviewers
    }

    pub fn has_reviewers(&self) -> bool {
        !self.reviewers.is_empty()
    }

    /// May the admin token approve, retry and extend? Always while no reviewers are
    /// configured (it is then the only credential), unless a reload in this process removed
    /// every reviewer; once they are, only with `[admin] may_approve = true`.
    pub fn admin_may_approve(&self) -> bool {
        (self.reviewers.is_empty() && !self.emptied) || self.admin_may_approve
    }

    /// Did a reload remove every reviewer this process had (see [`People::admin_may_approve`])?
    pub fn emptied(&self) -> bool {
        self.emptied
    }

    /// `[admin] may_approve` as configured (not what follows from it).
    pub fn may_approve_setting(&self) -> bool {
        self.admin_may_approve
    }

    /// The reviewer whose token has this SHA-256 digest.
    pub fn by_digest(&self, digest: &[u8; 32]) -> Option<Reviewer> {
        self.reviewers
            .iter()
            .find(|r| &r.token_sha256 == digest)
            .map(Reviewer::from_config)
    }

    /// The reviewer of this name (compared normalized).
    pub fn by_name(&self, name: &str) -> Option<Reviewer> {
        self.config_by_name(name).map(Reviewer::from_config)
    }

    /// The configuration (token digest included) of the reviewer of this name.
    pub fn config_by_name(&self, name: &str) -> Option<&ReviewerConfig> {
        self.reviewers
            .iter()
            .find(|r| crate::person::same(&r.name, name))
    }

    /// Why `who` may not cause a request under `policy`, sent by an agent owned by `owner`, to
    /// be sent (`verb`: approve, retry, extend); `Ok` if it may.
    pub fn may_send(
        &self,
        policy: &ApprovalPolicy,
        owner: Option<&str>,
        who: &Reviewer,
        verb: &str,
    ) -> Result<(), String> {
        if who.admin_token {
            if !self.admin_may_approve() && self.emptied {
                return Err(format!(
                    "the admin token may not {verb}: a reload removed every reviewer this process had, and the admin token does not take over for that (a config file caught empty or half written); configure reviewers again, or restart to run without them"
                ));
            }
            if !self.admin_may_approve() {
                return Err(format!(
                    "the admin token may not {verb} once reviewers are configured ([admin] may_approve is off); use a reviewer's own token"
                ));
            }
            if let (true, false, Some(owner)) = (self.has_reviewers(), policy.self_approval, owner)
            {
                return Err(format!(
                    "the admin token names no person, so it may not {verb} a request of an agent owned by {owner} while self-approval is off; use a reviewer's own token"
                ));
            }
            if self.has_reviewers() && policy.most_required() > 1 && verb != "extend" {
                return Err(format!(
                    "the admin token names no person, so it cannot be one of the {} different people this rule needs to {verb}; use reviewers' own tokens",
                    policy.most_required()
                ));
            }
        }
        may_decide(policy, who)?;
        if !policy.self_approval && owner.is_some_and(|o| crate::person::same(o, &who.name)) {
            return Err(format!(
                "{} owns the agent that sent this request and may not {verb} it (self-approval is off)",
                who.name
            ));
        }
        Ok(())
    }

    /// Why `who` may not reject under `policy`; the admin token always may.
    pub fn may_reject(&self, policy: &ApprovalPolicy, who: &Reviewer) -> Result<(), String> {
        if who.admin_token {
            return Ok(());
        }
        may_decide(policy, who)
    }

    /// The decider as the gate records it: with no reviewers configured, whoever decides does
    /// so with the admin token (there is no other credential), whatever name is given.
    pub fn effective(&self, who: &Reviewer) -> Reviewer {
        let mut who = who.clone();
        if !self.has_reviewers() {
            who.admin_token = true;
        }
        who
    }
}

/// Is `who` on the approver list of `policy`?
fn may_decide(policy: &ApprovalPolicy, who: &Reviewer) -> Result<(), String> {
    if policy.admits(&who.name, &who.groups) {
        return Ok(());
    }
    Err(format!(
        "{} is not among the approvers of this review ({})",
        who.name,
        policy.all_approvers().join(", ")
    ))
}

/// The identity a quorum counts: a reviewer's normalized name, or the admin token (one
/// approver whatever name it gave).
pub(super) fn identity(who: &Reviewer) -> String {
    if who.admin_token {
        "\u{0}admin-token".into()
    } else {
        crate::person::key(&who.name)
    }
}

/// The shared, swappable set of people in force.
pub struct Roster {
    current: RwLock<Arc<People>>,
}

impl std::fmt::Debug for Roster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roster")
            .field("reviewers", &self.current().reviewers.len())
            .finish()
    }
}

impl Roster {
    pub fn new(people: People) -> Arc<Roster> {
        Arc::new(Roster {
            current: RwLock::new(Arc::new(people)),
        })
    }

    pub fn current(&self) -> Arc<People> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in `people`; returns the names of the reviewers no longer configured.
    pub fn replace(&self, mut people: People) -> Vec<String> {
        let mut current = match self.current.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        // No reviewers after some: nobody but an explicitly allowed admin token approves until
        // reviewers are back (or a restart starts without them).
        people.emptied =
            people.reviewers.is_empty() && (current.has_reviewers() || current.emptied);
        if people.emptied && !current.emptied {
            tracing::error!(target: "airlock::admin", "a reload left no reviewers; nobody can approve until reviewers are configured again (the admin token does not take over; restart to run without reviewers)");
        }
        let fresh = Arc::new(people);
        let old = std::mem::replace(&mut *current, fresh.clone());
        drop(current);
        old.reviewers
            .iter()
            .filter(|r| {
                !fresh.reviewers.iter().any(|n| {
                    crate::person::same(&n.name, &r.name) && n.token_sha256 == r.token_sha256
                })
            })
            .map(|r| r.name.clone())
            .collect()
    }
}

/// Links are minted only for people who may take their action now, bound to their token.
impl LinkPolicy for Roster {
    fn may_link(&self, e: &Escalation, reviewer: &str, action: LinkAction) -> Option<[u8; 32]> {
        let people = self.current();
        let config = people.config_by_name(reviewer)?;
        let who = Reviewer::from_config(config);
        let allowed = match action {
            LinkAction::Approve => {
                people.may_send(&e.approval, e.agent_owner.as_deref(), &who, "approve")
            }
            LinkAction::Reject => people.may_reject(&e.approval, &who),
        };
        allowed.ok().map(|()| config.token_sha256)
    }
}

/// What a set of rules' approval policies mean with these people.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PolicyReport {
    /// Rules that can never be approved (Airlock refuses to start with them).
    pub errors: Vec<String>,
    /// Worth knowing, not fatal (an approver entry that names nobody, an owner's agent whose
    /// requests cannot reach the quorum).
    pub warnings: Vec<String>,
}

/// Checks each rule's approval policy against the configured reviewers: a quorum that fewer
/// people can meet than it needs, or an approver list naming nobody who exists, is an error
/// once reviewers are configured. `agents` give the owners (an owner may not approve her own
/// agent's requests unless the rule allows it).
pub fn check_policies(
    people: &People,
    rules: &[RulePolicy],
    agents: &[AgentConfig],
) -> PolicyReport {
    let mut report = PolicyReport::default();
    if people.has_reviewers() {
        for agent in agents {
            let Some(owner) = &agent.owner else { continue };
            if people.by_name(owner).is_none() {
                // Self-approval is refused by name: an owner spelled unlike her reviewer name
                // (`alice@example.com` for reviewer `alice`) would approve her own agent.
                report.warnings.push(format!(
                    "agent {}: owner {owner:?} names no configured reviewer; if its owner reviews as another name, she can approve her own agent's requests (set owner to her reviewer name)",
                    agent.name
                ));
            }
        }
    }
    for rule in rules {
        let p = &rule.policy;
        let at = format!("{}: tool {}", rule.rule_id, rule.tool);
        let required = p.required.max(1) as usize;
        if !people.has_reviewers() {
            if required > 1 {
                report.warnings.push(format!(
                    "{at}: approvals = {required}, but no [[reviewers]] are configured and the admin token counts as one approver: its requests can never be approved"
                ));
            }
            continue;
        }
        let eligible: Vec<&str> = people
            .reviewers
            .iter()
            .filter(|r| p.admits(&r.name, &r.groups))
            .map(|r| r.name.as_str())
            .collect();
        let admin = Reviewer::admin_token("admin");
        // The admin token never helps meet a quorum above one (it names no person).
        let admin_counts =
            required == 1 && people.admin_may_approve() && p.admits(&admin.name, &admin.groups);
        for a in &p.approvers {
            let names_someone = match a.strip_prefix("group:") {
                Some(g) => people
                    .reviewers
                    .iter()
                    .any(|r| r.groups.iter().any(|x| crate::person::same(x, g))),
                None => people.by_name(a).is_some(),
            };
            let names_admin =
                crate::person::same(a, "admin") || crate::person::same(a, "group:admin");
            if !names_someone && !names_admin {
                report.warnings.push(format!(
                    "{at}: approvers entry {a:?} names no configured reviewer"
                ));
            }
        }
        if !p.approvers.is_empty() && eligible.is_empty() {
            report.errors.push(format!(
                "{at}: approvers = [{}] names nobody among the configured [[reviewers]]; its requests could never be approved",
                p.approvers.join(", ")
            ));
            continue;
        }
        let can = eligible.len() + usize::from(admin_counts);
        if can < required {
            report.errors.push(format!(
                "{at}: approvals = {required}, but only {can} configured reviewer(s) may approve it ({}{}); its requests could never be approved",
                eligible.join(", "),
                if admin_counts { " and the admin token" } else { "" }
            ));
            continue;
        }
        if p.self_approval {
            continue;
        }
        for agent in agents {
            let Some(owner) = &agent.owner else { continue };
            // The owner may not approve, and neither may the admin token (it names nobody).
            let others = eligible
                .iter()
                .filter(|n| !crate::person::same(n, owner))
                .count();
            if others < required {
                report.warnings.push(format!(
                    "{at}: requests from agent {} (owner {owner}) can never reach approvals = {required}: only {others} reviewer(s) other than its owner may approve them",
                    agent.name
                ));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviewer(name: &str, groups: &[&str]) -> ReviewerConfig {
        ReviewerConfig {
            name: name.into(),
            token_sha256: [name.len() as u8; 32],
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn rule(required: u32, approvers: &[&str]) -> RulePolicy {
        RulePolicy {
            rule_id: "rules/t.toml:7".into(),
            tool: "t.delete".into(),
            policy: ApprovalPolicy {
                required,
                approvers: approvers.iter().map(|a| a.to_string()).collect(),
                self_approval: false,
                also: Vec::new(),
            },
        }
    }

    /// Self-approval is refused by name: an owner spelled unlike every reviewer name (an email
    /// for reviewer `alice`) is warned about, since that owner could approve her own agent.
    #[test]
    fn an_owner_who_names_no_reviewer_is_warned_about() {
        let people = People::new(vec![reviewer("alice", &[])], false);
        let agent = |owner: &str| {
            crate::config::agent_entry("bot", &"ab".repeat(32), &[], &[], Some(owner), None)
                .expect("agent")
        };
        let r = check_policies(&people, &[], &[agent("alice@example.com")]);
        assert_eq!(r.warnings.len(), 1, "{r:?}");
        assert!(
            r.warnings[0].contains("owner \"alice@example.com\" names no configured reviewer"),
            "{r:?}"
        );
        assert!(check_policies(&people, &[], &[agent("Alice")])
            .warnings
            .is_empty());
        assert!(
            check_policies(&People::default(), &[], &[agent("x@y")])
                .warnings
                .is_empty(),
            "no reviewers: nothing to approve with"
        );
    }

    #[test]
    fn quorums_nobody_can_meet_are_errors() {
        let people = People::new(
            vec![reviewer("alice", &[]), reviewer("bob", &["sre"])],
            false,
        );
        let ok = check_policies(&people, &[rule(2, &[]), rule(1, &["group:SRE"])], &[]);
        assert!(ok.errors.is_empty(), "{ok:?}");
        let r = check_policies(&people, &[rule(3, &[])], &[]);
        assert_eq!(r.errors.len(), 1, "{r:?}");
        assert!(
            r.errors[0].starts_with("rules/t.toml:7: tool t.delete: approvals = 3"),
            "{r:?}"
        );
        let r = check_policies(&people, &[rule(2, &["group:sre"])], &[]);
        assert_eq!(r.errors.len(), 1, "one sre member for two approvals: {r:?}");
        let r = check_policies(&people, &[rule(1, &["carol", "group:ops"])], &[]);
        assert!(r.errors[0].contains("names nobody"), "{r:?}");
        // The admin token, when it may approve, is no one more approver toward a quorum.
        let may = People::new(people.reviewers.clone(), true);
        assert_eq!(check_policies(&may, &[rule(3, &[])], &[]).errors.len(), 1);
        assert!(check_policies(&may, &[rule(2, &[])], &[]).errors.is_empty());
        // No reviewers: nothing to check against, a warning for quorums above one.
        let none = check_policies(&People::default(), &[rule(2, &[])], &[]);
        assert!(
            none.errors.is_empty() && none.warnings.len() == 1,
            "{none:?}"
        );
    }

    /// Review of session 19: a config file caught empty by a reload removed every reviewer,
    /// and the admin token, the only credential left, became an approver. It does not now;
    /// reviewers configured again lift that.
    #[test]
    fn a_reload_that_empties_the_reviewers_does_not_make_the_admin_token_an_approver() {
        let policy = ApprovalPolicy::default();
        let admin = Reviewer::admin_token("admin");
        let roster = Roster::new(People::new(vec![reviewer("alice", &[])], false));
        assert!(roster
            .current()
            .may_send(&policy, None, &admin, "approve")
            .is_err());
        roster.replace(People::new(Vec::new(), false));
        let now = roster.current();
        assert!(now.emptied() && !now.admin_may_approve());
        let refused = now.may_send(&policy, None, &admin, "approve");
        assert!(refused.is_err_and(|e| e.contains("removed every reviewer")));
        // Still so after another empty reload; lifted once reviewers are back.
        roster.replace(People::new(Vec::new(), false));
        assert!(roster.current().emptied());
        roster.replace(People::new(vec![reviewer("bob", &[])], false));
        assert!(!roster.current().emptied());
        // A process that starts without reviewers keeps the admin token as its approver.
        let fresh = Roster::new(People::new(Vec::new(), false));
        assert!(fresh
            .current()
            .may_send(&policy, None, &admin, "approve")
            .is_ok());
        fresh.replace(People::new(Vec::new(), false));
        assert!(fresh.current().admin_may_approve());
    }

    #[test]
    fn admin_token_is_one_approver_and_never_the_owner() {
        let people = People::new(vec![reviewer("alice", &[])], true);
        let policy = ApprovalPolicy::default();
        let admin = Reviewer::admin_token("admin");
        assert!(people.may_send(&policy, None, &admin, "approve").is_ok());
        let e = people
            .may_send(&policy, Some("Alice"), &admin, "approve")
            .expect_err("owned agent");
        assert!(e.contains("names no person"), "{e}");
        let off = People::new(vec![reviewer("alice", &[])], false);
        assert!(off.may_send(&policy, None, &admin, "approve").is_err());
        assert!(
            off.may_reject(&policy, &admin).is_ok(),
            "rejecting is fail-safe"
        );
        let alice = people.by_name(" ALICE").expect("normalized lookup");
        let e = people
            .may_send(&policy, Some("alice "), &alice, "extend")
            .expect_err("owner");
        assert!(e.contains("self-approval"), "{e}");
        assert_eq!(identity(&Reviewer::admin_token("x")), identity(&admin));
    }

    /// A reviewer who also holds the admin token must not meet a two-person rule alone: the
    /// token names nobody, so it is refused wherever two or more approvals are needed.
    #[test]
    fn admin_token_never_counts_toward_a_quorum_above_one() {
        let people = People::new(vec![reviewer("alice", &[]), reviewer("bob", &[])], true);
        let two = ApprovalPolicy {
            required: 2,
            ..ApprovalPolicy::default()
        };
        let admin = Reviewer::admin_token("admin");
        for verb in ["approve", "retry"] {
            let e = people
                .may_send(&two, None, &admin, verb)
                .expect_err("two-person rule");
            assert!(e.contains("2 different people"), "{e}");
        }
        assert!(people.may_send(&two, None, &admin, "extend").is_ok());
        assert!(people.may_reject(&two, &admin).is_ok());
        let alice = people.by_name("alice").expect("alice");
        assert!(people.may_send(&two, None, &alice, "approve").is_ok());
        // Without reviewers the admin token is the only credential (and a quorum above one is
        // warned about at start).
        assert!(People::default()
            .may_send(&ApprovalPolicy::default(), None, &admin, "approve")
            .is_ok());
    }

    #[test]
    fn replace_reports_removed_reviewers() {
        let roster = Roster::new(People::new(
            vec![reviewer("alice", &[]), reviewer("bob", &[])],
            false,
        ));
        let gone = roster.replace(People::new(vec![reviewer("bob", &[])], false));
        assert_eq!(gone, vec!["alice".to_string()]);
        assert!(roster.current().by_name("alice").is_none());
    }
}
