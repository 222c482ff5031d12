#!/usr/bin/env python3
"""Generates rules/github-writes.toml from tests/data/github-rest-write.tsv (every POST, PUT and
PATCH route of api.github.com): one base entry (no `when`) per route, bucketed by the
classification table below, plus the parameter-conditional rules in CONDITIONAL. Routes that
already have a base entry in rules/github.toml (hand-written, often with conditional rules next to
them) are skipped; the table must still name them, and their hand-written action must agree.

    python3 scripts/gen-github-writes.py > rules/github-writes.toml
    python3 scripts/gen-github-writes.py --check

--check regenerates in memory and compares with the committed file (this one and
rules/github-deletes.toml, via scripts/gen-github-deletes.py --check), then verifies that every route
of the three GitHub lists (write tsv, delete tsv, GraphQL mutations) has exactly one base entry
across rules/github*.toml: a [[rule]] without `when`, with the method, and a template of the same
shape (same number of segments, equal literals ignoring case, a `{name}` or `{name*}` wherever the
route has a parameter); each mutation exactly one [[graphql]] entry without `when`. It exits
non-zero listing what is missing, duplicated or unknown."""
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRITES = ROOT / "tests/data/github-rest-write.tsv"
DELETES = ROOT / "tests/data/github-rest-delete.tsv"
MUTATIONS = ROOT / "tests/data/github-graphql-mutations.txt"
HAND = ROOT / "rules/github.toml"
OUT = ROOT / "rules/github-writes.toml"
MULTI = {"ref", "branch", "path", "file_path"}  # parameters that may contain slashes

# ---- classification: theme -> (action, class, why, operation ids) ----
# Every route of the write list is named exactly once. The reason of a route's base entry is
# "<GitHub's summary>: <why>".
ESC, NOT, ALW = "escalate", "notify", "allow"
IRR, MONEY, VIS, REV = "irreversible", "money", "visible", "reversible"

THEMES = {
    # -------- allow: reads sent as POST, and self-only bookkeeping --------
    "read": (ALW, REV, "a read sent as POST; changes nothing", [
        "markdown/render", "markdown/render-raw",
        "apps/check-token",  # POST /applications/{client_id}/token only checks a token
        "orgs/list-attestations-bulk", "users/list-attestations-bulk",
        "repos/generate-release-notes",  # returns generated text, creates no release
    ]),
    "self": (ALW, REV, "affects only the caller's own notifications and subscriptions", [
        "activity/mark-thread-as-read", "activity/set-thread-subscription",
        "activity/set-repo-subscription",
    ]),
    # -------- notify: visible, reversible --------
    "social": (NOT, REV, "a public signal, trivially undone", [
        "gists/star", "activity/star-repo-for-authenticated-user", "users/follow",
        "reactions/create-for-commit-comment", "reactions/create-for-issue-comment",
        "reactions/create-for-issue", "reactions/create-for-pull-request-review-comment",
        "reactions/create-for-release",
    ]),
    "issues": (NOT, VIS, "visible issue or pull request activity, reversible", [
        "issues/create", "issues/update", "issues/update-comment", "issues/pin-comment",
        "issues/create-comment", "issues/add-assignees", "issues/add-blocked-by-dependency",
        "issues/add-issue-field-values", "issues/set-issue-field-values", "issues/add-labels",
        "issues/lock", "issues/add-sub-issue", "issues/reprioritize-sub-issue",
        "issues/dismiss-suggestion", "issues/create-label",
        "issues/update-label", "issues/create-milestone", "issues/update-milestone",
        "pulls/create", "pulls/update", "pulls/update-review-comment", "pulls/create-review-comment",
        "pulls/create-reply-for-review-comment", "pulls/request-reviewers", "pulls/create-review",
        "pulls/update-review", "pulls/submit-review",
        "repos/update-commit-comment", "repos/create-commit-comment",
        "pull-request-stacks/create", "pull-request-stacks/add", "pull-request-stacks/unstack",
        "gists/create", "gists/create-comment", "gists/update-comment", "gists/fork",
    ]),
    "content": (NOT, REV, "repository content outside protected branches; visible and revertible", [
        "git/create-blob", "git/create-commit", "git/create-tree", "git/create-tag", "git/create-ref",
        "git/update-ref", "repos/create-or-update-file-contents", "repos/rename-branch",
        "code-scanning/commit-autofix", "repos/create-fork", "repos/replace-all-topics",
        "repos/create-autolink",
        "repos/update-release-asset",
        "migrations/start-import", "migrations/update-import", "migrations/map-commit-author",
        "migrations/set-lfs-preference", "codespaces/export-for-authenticated-user",
    ]),
    "releases": (NOT, VIS, "a draft release, or a published one's notes, visible and editable (publishing creates the tag, a protected ref, and escalates)", [
        "repos/create-release", "repos/update-release",
    ]),
    "gist-edit": (NOT, VIS, "a gist's description (changing its files escalates: Airlock cannot tell a public gist from a secret one)", [
        "gists/update",
    ]),
    "new-repo": (NOT, VIS, "creates a repository (a public one escalates)", [
        "repos/create-for-authenticated-user", "repos/create-in-org", "repos/create-using-template",
        "codespaces/publish-for-authenticated-user",
    ]),
    "repo-settings": (NOT, VIS, "repository settings, visible and reversible (publication, archiving and disabling security features escalate)", [
        "repos/update",
    ]),
    "ci-records": (NOT, VIS, "CI and deployment records, visible and superseded by the next run", [
        "checks/create-suite", "repos/create-deployment", "repos/create-deployment-status",
        "actions/cancel-workflow-run",
        "repos/create-attestation",
        "orgs/create-artifact-deployment-record", "orgs/set-cluster-deployment-records",
        "orgs/create-cluster-deployment-records-job", "orgs/create-artifact-storage-record",
        "repos/request-pages-build", "repos/cancel-pages-deployment",
    ]),
    "ci-results": (NOT, VIS, "a pending or failing CI result, visible and superseded by the next run (a passing one escalates: it satisfies required checks)", [
        "checks/create", "checks/update", "repos/create-commit-status",
    ]),
    # A variable's old value is gone once overwritten, as when it is deleted (held), and
    # variables steer jobs a human approved: deploy targets, runner labels, text in `run:`.
    "ci-variables": (ESC, IRR, "sets a value that workflows (approved deployment jobs among them) read; the old value is lost", [
        "actions/create-repo-variable", "actions/update-repo-variable",
        "agents/create-repo-variable", "agents/update-repo-variable",
        "actions/create-environment-variable", "actions/update-environment-variable",
    ]),
    # By name: /releases/download/<tag>/<name> then serves the new file.
    "release-assets": (ESC, IRR, "adds a file to a release, which may be published (downloads by name then get it; Airlock cannot tell a draft from a published release)", [
        "repos/upload-release-asset",
    ]),
    # Turning a workflow on resumes its schedule and push triggers (a deploy an admin disabled);
    # turning one off silences a scan that is not a required check.
    "workflow-switch": (ESC, IRR, "turns a workflow on or off (its schedule and triggers resume or stop)", [
        "actions/enable-workflow", "actions/disable-workflow",
    ]),
    # A label that holds a merge may go, one that triggers a bot or agent may come: replacing
    # an issue's labels (PATCH …/issues/{n} with labels is held the same way), or applying a
    # suggestion whose labels and fields are named only by id.
    "labels-replaced": (ESC, IRR, "replaces or applies labels that Airlock cannot all weigh (a label that holds a merge may go, one that bots or coding agents act on may come)", [
        "issues/set-labels", "issues/approve-suggestion",
    ]),
    "agent-runs": (ESC, MONEY, "starts an autonomous agent run in GitHub Actions (it pushes branches and opens pull requests as steered by the prompt, and spends premium requests)", [
        "agent-tasks/create-task-in-repo",
    ]),
    "ci-config": (NOT, VIS, "CI configuration of one repository, visible and reversible", [
        "checks/set-suites-preferences",
    ]),
    "security-additive": (NOT, VIS, "adds or strengthens a security feature", [
        "repos/enable-automated-security-fixes", "repos/enable-vulnerability-alerts",
        "repos/enable-private-vulnerability-reporting", "repos/enable-immutable-releases",
        "orgs/enable-selected-repository-immutable-releases-organization",
        "secret-scanning/bulk-create-org-custom-patterns",
        "secret-scanning/bulk-create-repo-custom-patterns",
        "code-security/create-configuration", "code-security/create-configuration-for-enterprise",
        "code-scanning/create-autofix",
        "campaigns/create-campaign", "campaigns/update-campaign",
    ]),
    "alerts": (NOT, VIS, "alert triage (assignees, reopening); dismissing or resolving escalates", [
        "code-scanning/update-alert", "dependabot/update-alert", "secret-scanning/update-alert",
    ]),
    "advisories": (NOT, VIS, "a draft or private security advisory, seen by maintainers only (publishing or adding collaborators escalates)", [
        "security-advisories/create-repository-advisory",
        "security-advisories/create-private-vulnerability-report",
        "security-advisories/update-repository-advisory", "security-advisories/create-fork",
    ]),
    "projects": (NOT, VIS, "project planning data, visible and reversible", [
        "projects/create-draft-item-for-org", "projects/add-field-for-org",
        "projects/add-item-for-org", "projects/update-item-for-org", "projects/create-view-for-org",
        "projects/create-draft-item-for-authenticated-user", "projects/create-view-for-user",
        "projects/add-field-for-user", "projects/add-item-for-user", "projects/update-item-for-user",
        "orgs/create-issue-field", "orgs/update-issue-field", "orgs/create-issue-type",
        "orgs/update-issue-type",
    ]),
    "copilot-content": (NOT, VIS, "Copilot Space or agent task content, visible to its collaborators", [
        "copilot-spaces/create-for-org", "copilot-spaces/update-for-org",
        "copilot-spaces/create-resource-for-org", "copilot-spaces/update-resource-for-org",
        "copilot-spaces/create-for-user", "copilot-spaces/update-for-user",
        "copilot-spaces/create-resource-for-user", "copilot-spaces/update-resource-for-user",
    ]),
    "moderation": (NOT, VIS, "moderation setting, visible and reversible", [
        "interactions/set-restrictions-for-org", "interactions/update-pull-request-creation-cap-for-org",
        "interactions/set-restrictions-for-repo", "interactions/set-pull-request-bypass-list-for-repo",
        "interactions/update-pull-request-creation-cap-for-repo",
        "interactions/set-restrictions-for-authenticated-user",
    ]),
    "profile": (NOT, VIS, "the caller's own public profile", [
        "users/update-authenticated", "users/set-primary-email-visibility-for-authenticated-user",
        "users/add-social-account-for-authenticated-user",
    ]),
    # A version deleted because it leaked a secret or was compromised comes back to everyone who
    # could see it (everyone, for a public package).
    "restore": (ESC, IRR, "restores a deleted package, republishing it to everyone who could see it", [
        "packages/restore-package-for-org", "packages/restore-package-version-for-org",
        "packages/restore-package-for-authenticated-user",
        "packages/restore-package-version-for-authenticated-user",
        "packages/restore-package-for-user", "packages/restore-package-version-for-user",
    ]),
    "codespace-state": (NOT, REV, "stops or renames a codespace; nothing is lost (a bigger machine escalates)", [
        "codespaces/stop-for-authenticated-user", "codespaces/stop-in-organization",
        "codespaces/update-for-authenticated-user",
    ]),
    # The account is a human's too: everything marked read at once hides their unread security
    # alerts, review requests and what a soft gate told them, with nothing left to see.
    "notifications-read": (NOT, VIS, "marks notifications as read in bulk (the account's human loses unread security alerts and review requests without seeing them)", [
        "activity/mark-notifications-as-read", "activity/mark-repo-notifications-as-read",
    ]),
    "ping": (NOT, VIS, "sends a ping event to an already configured webhook; no repository data", [
        "orgs/ping-webhook", "repos/ping-webhook",
    ]),
    # -------- escalate --------
    "money": (ESC, MONEY, "money: billed usage, seats or spending limits", [
        # CodeQL variant analysis: Actions jobs in the controller repository over up to 1000
        # repositories, billed to a private controller.
        "code-scanning/create-variant-analysis",
        "billing/create-organization-budget", "billing/update-budget-org",
        "copilot/add-copilot-seats-for-teams", "copilot/add-copilot-seats-for-users",
        "actions/create-hosted-runner-for-org", "actions/update-hosted-runner-for-org",
        "actions/set-actions-cache-retention-limit-for-enterprise",
        "actions/set-actions-cache-storage-limit-for-enterprise",
        "actions/set-actions-cache-retention-limit-for-organization",
        "actions/set-actions-cache-storage-limit-for-organization",
        "actions/set-actions-cache-retention-limit-for-repository",
        "actions/set-actions-cache-storage-limit-for-repository",
        "codespaces/create-for-authenticated-user", "codespaces/create-with-repo-for-authenticated-user",
        "codespaces/create-with-pr-for-authenticated-user", "codespaces/start-for-authenticated-user",
    ]),
    "privilege": (ESC, IRR, "privilege or access change (who can reach what)", [
        "orgs/create-invitation", "orgs/set-membership-for-user", "orgs/assign-team-to-org-role",
        "orgs/assign-user-to-org-role", "orgs/convert-member-to-outside-collaborator",
        "orgs/add-security-manager-team", "orgs/review-pat-grant-requests-in-bulk",
        "orgs/review-pat-grant-request", "orgs/update-pat-accesses", "orgs/update-pat-access",
        "orgs/update-membership-for-authenticated-user",  # the account joins an organization
        "repos/add-collaborator", "repos/update-invitation",
        "repos/accept-invitation-for-authenticated-user",  # the account gains a repository
        "teams/create", "teams/update-in-org", "teams/add-or-update-membership-for-user-in-org",
        "teams/add-or-update-repo-permissions-in-org", "teams/update-legacy",
        "teams/add-member-legacy", "teams/add-or-update-membership-for-user-legacy",
        "teams/add-or-update-repo-permissions-legacy",
        "enterprise-teams/create", "enterprise-teams/update",
        "enterprise-team-memberships/bulk-add", "enterprise-team-memberships/bulk-remove",
        "enterprise-team-memberships/add", "enterprise-team-organizations/bulk-add",
        "enterprise-team-organizations/bulk-remove", "enterprise-team-organizations/add",
        "apps/add-repo-to-installation-for-authenticated-user", "apps/suspend-installation",
        "copilot-spaces/add-collaborator-for-org", "copilot-spaces/update-collaborator-for-org",
        "copilot-spaces/add-collaborator-for-user", "copilot-spaces/update-collaborator-for-user",
        "codespaces/set-codespaces-access", "codespaces/set-codespaces-access-users",
        "dependabot/update-repository-access-for-org", "dependabot/set-repository-access-default-level",
        "dependabot/update-repository-access-for-enterprise",
        "dependabot/set-repository-access-default-level-for-enterprise",
        "copilot/set-copilot-coding-agent-permissions-organization",
        "copilot/set-copilot-coding-agent-selected-repositories-for-organization",
        "copilot/enable-copilot-coding-agent-for-repository-in-organization",
        "copilot/set-enterprise-coding-agent-policy",
        "copilot/add-organizations-to-enterprise-coding-agent-policy",
        "copilot/set-copilot-content-exclusion-for-organization",
    ]),
    "org-settings": (ESC, IRR, "organization settings: default permissions, member privileges, security defaults, billing email", [
        "orgs/update",
    ]),
    "protection": (ESC, IRR, "weakens or replaces a protection", [
        "repos/update-branch-protection", "repos/set-admin-branch-protection",
        "repos/update-pull-request-review-protection", "repos/create-commit-signature-protection",
        "repos/update-status-check-protection", "repos/add-status-check-contexts",
        "repos/set-status-check-contexts", "repos/add-app-access-restrictions",
        "repos/set-app-access-restrictions", "repos/add-team-access-restrictions",
        "repos/set-team-access-restrictions", "repos/add-user-access-restrictions",
        "repos/set-user-access-restrictions",
        "repos/create-repo-ruleset", "repos/update-repo-ruleset", "repos/create-org-ruleset",
        "repos/update-org-ruleset", "pulls/dismiss-review",
        "code-security/update-configuration", "code-security/attach-configuration",
        "code-security/set-configuration-as-default", "code-security/update-enterprise-configuration",
        "code-security/attach-enterprise-configuration",
        "code-security/set-configuration-as-default-for-enterprise",
        "code-scanning/update-default-setup",
        # Code Quality's setup: the same surface (its runner, self-hosted ones included, builds
        # the repository's code; turning it off stops the analysis).
        "code-quality/update-setup",
        "code-scanning/upload-sarif",  # results missing from a new analysis close open alerts
        # a snapshot replaces the job's previous one: a vulnerable dependency left out of it
        # closes its Dependabot alerts, as for SARIF
        "dependency-graph/create-repository-snapshot",
        "secret-scanning/update-org-custom-pattern", "secret-scanning/update-repo-custom-pattern",
        "secret-scanning/update-org-pattern-configs", "secret-scanning/create-push-protection-bypass",
        "orgs/set-immutable-releases-settings", "orgs/set-immutable-releases-settings-repositories",
        # rulesets target repositories by custom property: a changed property can take a
        # repository out of a ruleset
        "orgs/custom-properties-for-repos-create-or-update-organization-definitions",
        "orgs/custom-properties-for-repos-create-or-update-organization-definition",
        "orgs/custom-properties-for-repos-create-or-update-organization-values",
        "repos/custom-properties-for-repos-create-or-update-repository-values",
    ]),
    "actions-permissions": (ESC, IRR, "Actions permissions: which workflows and actions may run, with which token and for how long their logs live", [
        "actions/set-github-actions-permissions-organization",
        "actions/set-artifact-and-log-retention-settings-organization",
        "actions/set-fork-pr-contributor-approval-permissions-organization",
        "actions/set-private-repo-fork-pr-workflows-settings-organization",
        "actions/set-selected-repositories-enabled-github-actions-organization",
        "actions/enable-selected-repository-github-actions-organization",
        "actions/set-allowed-actions-organization",
        "actions/set-self-hosted-runners-permissions-organization",
        "actions/set-selected-repositories-self-hosted-runners-organization",
        "actions/enable-selected-repository-self-hosted-runners-organization",
        "actions/set-github-actions-default-workflow-permissions-organization",
        "actions/set-github-actions-permissions-repository",
        "actions/set-workflow-access-to-repository",
        "actions/set-artifact-and-log-retention-settings-repository",
        "actions/set-fork-pr-contributor-approval-permissions-repository",
        "actions/set-private-repo-fork-pr-workflows-settings-repository",
        "actions/set-allowed-actions-repository",
        "actions/set-github-actions-default-workflow-permissions-repository",
    ]),
    "oidc": (ESC, IRR, "CI trust: changes the OIDC token claims cloud trust policies match on", [
        "oidc/create-oidc-custom-property-inclusion-for-enterprise",
        "oidc/create-oidc-custom-property-inclusion-for-org",
        "oidc/update-oidc-custom-sub-template-for-org", "actions/set-custom-oidc-sub-claim-for-repo",
    ]),
    "runners": (ESC, IRR, "CI trust: registers, routes or grants access to self-hosted runners", [
        "actions/create-self-hosted-runner-group-for-org",
        "actions/update-self-hosted-runner-group-for-org",
        "actions/set-repo-access-to-self-hosted-runner-group-in-org",
        "actions/add-repo-access-to-self-hosted-runner-group-in-org",
        "actions/set-self-hosted-runners-in-group-for-org",
        "actions/add-self-hosted-runner-to-group-for-org",
        "actions/generate-runner-jitconfig-for-org", "actions/create-registration-token-for-org",
        "actions/create-remove-token-for-org",
        "actions/add-custom-labels-to-self-hosted-runner-for-org",
        "actions/set-custom-labels-for-self-hosted-runner-for-org",
        "actions/generate-runner-jitconfig-for-repo", "actions/create-registration-token-for-repo",
        "actions/create-remove-token-for-repo",
        "actions/add-custom-labels-to-self-hosted-runner-for-repo",
        "actions/set-custom-labels-for-self-hosted-runner-for-repo",
        "hosted-compute/create-network-configuration-for-org",
        "hosted-compute/update-network-configuration-for-org",
    ]),
    "runs": (ESC, IRR, "CI trust: runs code with the repository's secrets, or lets a deployment through", [
        "actions/re-run-job-for-workflow-run", "actions/approve-workflow-run",
        "actions/review-custom-gates-for-run", "actions/review-pending-deployments-for-run",
        "actions/re-run-workflow", "actions/re-run-workflow-failed-jobs",
        "actions/create-workflow-dispatch", "repos/create-dispatch-event",
        "checks/rerequest-run", "checks/rerequest-suite",
        # Force-cancelling skips the run's always() steps (lock releases, rollbacks).
        "actions/force-cancel-workflow-run",
    ]),
    "environments": (ESC, IRR, "deployment environment protection (reviewers, wait timers, branch policies, gates)", [
        "repos/create-or-update-environment", "repos/create-deployment-branch-policy",
        "repos/update-deployment-branch-policy", "repos/create-deployment-protection-rule",
    ]),
    "secrets": (ESC, IRR, "a secret created, replaced or exposed to more repositories", [
        "actions/create-or-update-org-secret", "actions/set-selected-repos-for-org-secret",
        "actions/add-selected-repo-to-org-secret", "agents/create-or-update-org-secret",
        "agents/set-selected-repos-for-org-secret", "agents/add-selected-repo-to-org-secret",
        "codespaces/create-or-update-org-secret", "codespaces/set-selected-repos-for-org-secret",
        "codespaces/add-selected-repo-to-org-secret", "dependabot/create-or-update-org-secret",
        "dependabot/set-selected-repos-for-org-secret", "dependabot/add-selected-repo-to-org-secret",
        "actions/create-or-update-repo-secret", "agents/create-or-update-repo-secret",
        "codespaces/create-or-update-repo-secret", "dependabot/create-or-update-repo-secret",
        "actions/create-or-update-environment-secret",
        "codespaces/create-or-update-secret-for-authenticated-user",
        "codespaces/set-repositories-for-secret-for-authenticated-user",
        "codespaces/add-repository-for-secret-for-authenticated-user",
        "private-registries/create-org-private-registry",
        "private-registries/update-org-private-registry",
    ]),
    "org-variables": (ESC, IRR, "an organization variable: its value or the repositories whose workflows see it", [
        "actions/create-org-variable", "actions/update-org-variable",
        "actions/set-selected-repos-for-org-variable", "actions/add-selected-repo-to-org-variable",
        "agents/create-org-variable", "agents/update-org-variable",
        "agents/set-selected-repos-for-org-variable", "agents/add-selected-repo-to-org-variable",
    ]),
    "egress": (ESC, IRR, "data sent somewhere new (webhook destinations, deliveries, exports)", [
        "apps/update-webhook-config-for-app", "apps/redeliver-webhook-delivery",
        "orgs/create-webhook", "orgs/update-webhook", "orgs/update-webhook-config-for-org",
        "orgs/redeliver-webhook-delivery", "repos/create-webhook", "repos/update-webhook",
        "repos/update-webhook-config-for-repo", "repos/redeliver-webhook-delivery",
        "repos/test-push-webhook",
        "migrations/start-for-org", "migrations/start-for-authenticated-user",
    ]),
    "publish": (ESC, IRR, "publication: content becomes public", [
        "repos/create-pages-site", "repos/update-information-about-pages-site",
        "repos/create-pages-deployment",
        "security-advisories/create-repository-advisory-cve-request",
        # An organization membership is private by default.
        "orgs/set-public-membership-for-authenticated-user",
    ]),
    "credentials": (ESC, IRR, "mints, resets or revokes a credential, or adds standing access", [
        "apps/create-from-manifest", "apps/create-installation-access-token", "apps/reset-token",
        "apps/scope-token", "credentials/revoke", "repos/create-deploy-key",
        "users/create-public-ssh-key-for-authenticated-user",
        "users/create-gpg-key-for-authenticated-user",
        "users/create-ssh-signing-key-for-authenticated-user",
        "users/add-email-for-authenticated-user",  # an address that can receive account recovery mail
    ]),
    # POST /orgs/{org}/{security_product}/{enablement}: every segment after the org is a
    # parameter, so this entry also decides any POST /orgs/{org}/x/y that GitHub adds later (and
    # weighs in on the listed ones, see EXCEPTIONS in tests/rules_every_rule.rs): it fails closed.
    "org-security-toggle": (ESC, IRR, "switches a security feature on or off for every repository of the organization (off weakens protections; paid products are billed per active committer)", [
        "orgs/enable-or-disable-security-product-on-all-org-repos",
    ]),
    "merge": (ESC, IRR, "merges, or moves a repository's history or ownership", [
        "pulls/merge", "pulls/merge-async", "repos/merge", "repos/merge-upstream", "repos/transfer",
    ]),
    # update-branch merges the base into the head (or rebases it): it writes to the head branch,
    # which may be main (a pull request's head and base are the agent's to choose), and Airlock
    # cannot tell the head from the number. Held like merging a pull request (which writes to its
    # base), and like GraphQL updatePullRequestBranch.
    "merge-into-head": (ESC, IRR, "merges the base into the head branch, which may be a protected one (the head cannot be told from the pull request number); held like a merge", [
        "pulls/update-branch",
    ]),
    # Blocking removes the user as a collaborator (access taken away) and their stars, watches
    # and assignments; unblocking restores none of it.
    "block": (ESC, IRR, "removes the user as a collaborator, with their stars, watches and assignments; unblocking restores none of it", [
        "orgs/block-user", "users/block",
    ]),
    "destroy": (ESC, IRR, "destroys data", [
        "orgs/delete-attestations-bulk", "users/delete-attestations-bulk",
    ]),
}

# A check run completed as success, neutral or skipped satisfies a required check (create and
# update alike).
PASSING_CHECK_RUN = ("passing", ESC, IRR,
                     "Completes a check run as success, neutral or skipped (satisfies a required check)",
                     '[{ field = "conclusion", in = ["success", "neutral", "skipped"] }]')

# ---- parameter-conditional rules on top of a generated base entry ----
# op -> [(tool suffix, action, class, reason, when)], emitted right after the base entry, in this
# order. A missing field makes every test but `present` false (src/rules/catalog.rs `check`), so
# where GitHub's default for a missing parameter is the dangerous value, a `present = false` rule
# escalates the absence; `ne`/`in` rules come first so that the every-rule test's negations (it
# negates sibling conditions in file order) pick a value that keeps the base entry deciding.
SAFE_ENVIRONMENTS = ["staging", "development", "dev", "test", "testing", "qa", "preview", "sandbox"]
# Assigning an issue to Copilot starts the same autonomous agent run as an agent task (held).
# Claude and Codex are assigned the same way on GitHub's agent platform.
COPILOT = ('["copilot", "copilot-swe-agent", "copilot-swe-agent[bot]", "@copilot", "claude", "@claude", '
           '"anthropic-code-agent", "anthropic-code-agent[bot]", "codex", "@codex", "openai-code-agent", '
           '"openai-code-agent[bot]"]')
COPILOT_ASSIGNED = [
    ("copilot", ESC, MONEY, "Assigns an issue to a coding agent such as Copilot, Claude or Codex (starts an autonomous agent run in GitHub Actions, as an agent task does)",
     f'[{{ field = "assignees.*", in = {COPILOT} }}]'),
    ("copilot-assignee", ESC, MONEY, "Assigns an issue to a coding agent (Copilot, Claude, Codex) through the legacy `assignee` field",
     f'[{{ field = "assignee", in = {COPILOT} }}]'),
    ("agent-assignment", ESC, MONEY, "Assigns an issue to a coding agent (agent_assignment)",
     '[{ field = "agent_assignment", present = true }]'),
]

SPACE_ROLE = ("base-role", ESC, IRR, "Gives a Copilot Space a base role (reader makes a user's space public; an organization's gives every member access)",
              '[{ field = "base_role", ne = "no_access" }, { field = "base_role", present = true }]')

REOPEN_PULL = ("Reopens a pull request (`state` other than closed): it comes back with its labels and approvals, "
               "and a merge bot may merge it, as when a hold label is removed")

CONDITIONAL = {
    "copilot-spaces/create-for-user": [SPACE_ROLE],
    "copilot-spaces/update-for-user": [SPACE_ROLE],
    "copilot-spaces/create-for-org": [SPACE_ROLE],
    "copilot-spaces/update-for-org": [SPACE_ROLE],
    # A pull request with approvals or auto-merge for another base, moved onto a protected one,
    # can merge there with no review through Airlock.
    "pulls/update": [
        ("protected-base", ESC, IRR, "Moves a pull request onto a protected base branch (in protected_refs: main and other default branch names, release and deploy branches, bots' pull-request branches): its approvals or auto-merge could then merge it there",
         '[{ field = "base", protected_ref = "branch" }]'),
        ("maintainer-can-modify", ESC, IRR, "Lets the upstream's maintainers push to the pull request's head branch",
         '[{ field = "maintainer_can_modify", eq = true }]'),
        # A closed pull request reopened comes back with its labels and approvals, and a draft
        # made ready is no longer work in progress: merge bots (label-driven auto-merge, Kodiak,
        # Mergify) may then merge it, as when a hold label is removed.
        ("reopen", ESC, IRR, REOPEN_PULL,
         '[{ field = "state", ne = "closed" }]'),
        ("ready-for-review", ESC, IRR, "Marks a draft pull request ready for review (`draft` other than true: merge bots and auto-merge wait for a draft)",
         '[{ field = "draft", ne = true }]'),
    ],
    "repos/create-fork": [
        ("organization", ESC, IRR, "Forks into an organization (its owners get the code, a private repository's included)",
         '[{ field = "organization", present = true }]'),
    ],
    "pulls/request-reviewers": [
        ("copilot", ESC, MONEY, "Asks a coding agent (Copilot, Claude, Codex) for a review (spends premium requests or starts an agent run)",
         '[{ field = "reviewers.*", in = ["copilot", "copilot-pull-request-reviewer", "copilot-pull-request-reviewer[bot]", '
         '"claude", "anthropic-code-agent", "anthropic-code-agent[bot]", "codex", "openai-code-agent", "openai-code-agent[bot]"] }]'),
    ],
    # The human's notifications for a repository: muting them hides what a soft gate records.
    "activity/set-repo-subscription": [
        ("ignore", NOT, VIS, "Mutes the repository's notifications for the token's owner",
         '[{ field = "ignored", eq = true }]'),
        ("unwatch", NOT, VIS, "Stops watching the repository for the token's owner",
         '[{ field = "subscribed", eq = false }]'),
    ],
    "issues/add-assignees": COPILOT_ASSIGNED[:1],
    # The number may be a pull request's (every pull request is an issue to this route), so a
    # reopen is held as the pull request route holds it.
    "issues/update": COPILOT_ASSIGNED + [
        ("reopen", ESC, IRR, "Reopens an issue or pull request (`state` other than closed; the number may be a pull request's, which comes back with its labels and approvals: a merge bot may merge it, as when a hold label is removed)",
         '[{ field = "state", ne = "closed" }]'),
    ],
    # A secret gist is not private: anyone with its URL reads it, signed in or not, so its
    # files are published as a public gist's are.
    "gists/create": [
        ("public", ESC, IRR, "Creates a public gist (published to everyone)",
         '[{ field = "public", eq = true }]'),
        ("files", ESC, IRR, "Creates a gist with files (a secret gist is readable by anyone with its URL, signed in or not: publication)",
         '[{ field = "files", present = true }]'),
    ],
    # Protected refs are the [git] section's protected_refs (main, master, release/*, tags), read
    # by `protected_ref` conditions, so these cannot drift from what git push holds.
    "git/create-ref": [
        ("protected", ESC, IRR, "Creates a protected ref (in protected_refs: main and other default branch names, release and deploy branches, bots' pull-request branches, a tag), as git push would hold it",
         '[{ field = "ref", protected_ref = "ref" }]'),
    ],
    # Both names count: renaming a protected branch away leaves it unprotected (force-pushable),
    # renaming onto a protected name replaces it.
    "repos/rename-branch": [
        ("protected", ESC, IRR, "Renames a protected branch (in protected_refs: main and other default branch names, release and deploy branches, bots' pull-request branches), which would leave it unprotected",
         '[{ field = "branch", protected_ref = "branch" }]'),
        ("to-protected", ESC, IRR, "Renames a branch onto a protected name (in protected_refs: main and other default branch names, release and deploy branches, bots' pull-request branches)",
         '[{ field = "new_name", protected_ref = "branch" }]'),
    ],
    "code-scanning/commit-autofix": [
        ("protected", ESC, IRR, "Commits an autofix to a protected branch (in protected_refs: main and other default branch names, release and deploy branches, bots' pull-request branches)",
         '[{ field = "target_ref", protected_ref = "branch" }]'),
        ("default-branch", ESC, IRR, "Commits an autofix without naming the branch",
         '[{ field = "target_ref", present = false }]'),
    ],
    # A closed milestone is a release trigger (`on: milestone: types: [closed]` workflows cut,
    # tag and publish).
    "issues/update-milestone": [
        ("close", ESC, IRR, "Closes a milestone (workflows on a milestone's closing cut and publish releases)",
         '[{ field = "state", eq = "closed" }]'),
    ],
    "code-scanning/update-alert": [
        ("dismiss", ESC, IRR, "Dismisses a code scanning alert (any state but open)",
         '[{ field = "state", ne = "open" }]'),
    ],
    "dependabot/update-alert": [
        ("dismiss", ESC, IRR, "Dismisses a Dependabot alert (any state but open)",
         '[{ field = "state", ne = "open" }]'),
    ],
    "secret-scanning/update-alert": [
        ("resolve", ESC, IRR, "Resolves a secret scanning alert (any state but open)",
         '[{ field = "state", ne = "open" }]'),
    ],
    "repos/create-deployment": [
        ("environment", ESC, IRR, "Deploys to an environment not known to be non-production (anything but " + ", ".join(SAFE_ENVIRONMENTS) + ")",
         "[" + ", ".join(f'{{ field = "environment", ne = "{e}" }}' for e in SAFE_ENVIRONMENTS) + "]"),
        ("production-flag", ESC, IRR, "Deploys to an environment marked as production",
         '[{ field = "production_environment", eq = true }]'),
        ("default-environment", ESC, IRR, "Deploys without naming the environment (GitHub's default is production)",
         '[{ field = "environment", present = false }]'),
        # auto_merge (default true) merges the default branch into the deployed ref when it is
        # behind: a protected branch would move outside git push.
        ("auto-merge", ESC, IRR, "Deploys a protected branch with auto_merge (GitHub merges the default branch into it when behind; send auto_merge = false to deploy it as it is)",
         '[{ field = "ref", protected_ref = "branch" }, { field = "auto_merge", ne = false }]'),
        ("auto-merge-default", ESC, IRR, "Deploys a protected branch without auto_merge = false (GitHub's default merges the default branch into it when behind; send auto_merge = false to deploy it as it is)",
         '[{ field = "ref", protected_ref = "branch" }, { field = "auto_merge", present = false }]'),
    ],
    "pulls/create-review": [
        ("approve", ESC, IRR, "Approves a pull request (counts toward required reviews)",
         '[{ field = "event", eq = "APPROVE" }]'),
    ],
    "pulls/submit-review": [
        ("approve", ESC, IRR, "Approves a pull request (counts toward required reviews)",
         '[{ field = "event", eq = "APPROVE" }]'),
    ],
    "security-advisories/update-repository-advisory": [
        ("state", ESC, IRR, "Changes a security advisory's state (publishing makes it public)",
         '[{ field = "state", present = true }]'),
        ("collaborating-users", ESC, IRR, "Sets an advisory's collaborating users (grants access to it and its private fork)",
         '[{ field = "collaborating_users", present = true }]'),
        ("collaborating-teams", ESC, IRR, "Sets an advisory's collaborating teams (grants access to it and its private fork)",
         '[{ field = "collaborating_teams", present = true }]'),
    ],
    # A gist's files: Airlock cannot tell a public gist from a secret one, so new content may be
    # publication (creating a public gist already escalates).
    "gists/update": [
        ("files", ESC, IRR, "Changes a gist's files (in a public gist, publishes them; Airlock cannot tell public from secret)",
         '[{ field = "files", present = true }]'),
    ],
    # Publishing a draft release creates its tag (a protected ref, held on git push); so does a
    # new tag_name. POST …/releases/generate-notes is also weighed as this PATCH (GitHub takes a
    # POST to a PATCH route as the PATCH) and needs tag_name: it is a read, not held.
    "repos/update-release-asset": [
        ("rename", ESC, IRR, "Renames a release asset (downloads by name: a new upload can take its name)",
         '[{ field = "name", present = true }]'),
    ],
    # A successful deployment satisfies a required deployment; a status naming an environment
    # moves the deployment there (create it for staging, report success in production).
    "repos/create-deployment-status": [
        ("outcome", ESC, IRR, "Reports a deployment's outcome (success satisfies a required deployment; only pending, queued and in_progress are not held)",
         '[{ field = "state", ne = "pending" }, { field = "state", ne = "queued" }, { field = "state", ne = "in_progress" }]'),
        ("environment", ESC, IRR, "Moves a deployment to another environment through its status",
         '[{ field = "environment", present = true }]'),
    ],
    "repos/update-release": [
        ("latest", ESC, IRR, "Sets which release is the latest (/releases/latest and its downloads then serve it)",
         '[{ field = "make_latest", present = true }]'),
        ("publish", ESC, IRR, "Publishes a draft release (creates its tag, a protected ref)",
         '[{ field = "draft", eq = false }]'),
        ("tag", ESC, IRR, "Sets a release's tag_name (publishing creates the tag, a protected ref)",
         '[{ field = "release_id", ne = "generate-notes" }, { field = "tag_name", present = true }]'),
    ],
    # A success, neutral or skipped status or check run satisfies a required status check.
    "repos/create-commit-status": [
        ("success", ESC, IRR, "Reports a commit status as success (satisfies a required status check)",
         '[{ field = "state", eq = "success" }]'),
    ],
    # A tree with an entry under .github/ (a workflow runs with the repository's secrets once a
    # commit of it is pushed to any branch); commits and refs name trees by sha, so the tree is
    # where the path shows.
    "git/create-tree": [
        ("github-dir", ESC, IRR, "Creates a tree with an entry under a .github/ directory or another CI system's configuration at any depth (workflows run with the repository's secrets on a push to any branch; a subtree can become a commit's root)",
         '[{ field = "tree.*.path", path_under = ["**/.github", "**/.circleci", "**/.buildkite", "**/buildkite.yml", "**/buildkite.yaml", "**/.devcontainer", "**/.devcontainer.json", "**/.travis.yml", "**/.drone.yml", "**/.cirrus.yml", "**/.cirrus.star", "**/.woodpecker", "**/.woodpecker.yml", "**/.gitlab-ci.yml", "**/appveyor.yml", "**/.appveyor.yml", "**/azure-pipelines.yml", "**/azure-pipelines.yaml", "**/Jenkinsfile", "**/netlify.toml", "**/action.yml", "**/action.yaml", "**/.tekton", "**/cloudbuild.yaml", "**/cloudbuild.yml", "**/cloudbuild.json", "**/buildspec.yml", "**/buildspec.yaml", "**/.semaphore", "**/bitrise.yml", "**/codemagic.yaml", "**/.readthedocs.yaml", "**/.readthedocs.yml", "**/.claude", "**/.gemini", "**/.codex", "**/.cursor", "**/.mcp.json", "**/.vscode/tasks.json"] }]'),
    ],
    "checks/create": [PASSING_CHECK_RUN],
    "checks/update": [PASSING_CHECK_RUN],
    "repos/create-using-template": [
        ("public", ESC, IRR, "Creates a public repository from a template (private is not true)",
         '[{ field = "private", ne = true }]'),
        ("default-public", ESC, IRR, "Creates a repository from a template without `private` (GitHub's default is public)",
         '[{ field = "private", present = false }]'),
        # The copy is independent: its owner keeps the code whatever access is later removed.
        ("other-owner", ESC, IRR, "Copies a template's code to another owner (it keeps the code whatever access is later removed)",
         '[{ field = "owner", ne_param = "template_owner" }]'),
        ("default-owner", ESC, IRR, "Copies a template's code without naming the owner (GitHub's default is the token's own account)",
         '[{ field = "owner", present = false }]'),
    ],
    # A scanning or CI app whose suites stop being created goes quiet (a required one blocks).
    "checks/set-suites-preferences": [
        ("auto-trigger-off", ESC, IRR, "Stops an app's check suites from being created automatically (a scanner or CI app goes quiet)",
         '[{ field = "auto_trigger_checks.*.setting", eq = false }]'),
    ],
    "users/update-authenticated": [
        ("email", ESC, IRR, "Sets the profile's public email address (a verified address of the account, published)",
         '[{ field = "email", present = true }]'),
    ],
    # An issue field's options are replaced whole: every issue's value for a dropped option is
    # gone; a visibility beyond members publishes the values.
    "orgs/update-issue-field": [
        ("options", ESC, IRR, "Replaces an organization issue field's options (values of dropped options are cleared on every issue)",
         '[{ field = "options", present = true }]'),
        ("visibility", ESC, IRR, "Shows an organization issue field's values beyond its members",
         '[{ field = "visibility", ne = "organization_members_only" }]'),
    ],
    "orgs/create-issue-field": [
        ("visibility", ESC, IRR, "Creates an organization issue field whose values show beyond its members",
         '[{ field = "visibility", ne = "organization_members_only" }]'),
    ],
    "activity/set-thread-subscription": [
        ("ignore", NOT, VIS, "Mutes a notification thread for the token's owner",
         '[{ field = "ignored", eq = true }]'),
    ],
    "users/set-primary-email-visibility-for-authenticated-user": [
        ("public", ESC, IRR, "Makes the user's primary email address public (it cannot be taken back)",
         '[{ field = "visibility", eq = "public" }]'),
    ],
    "codespaces/publish-for-authenticated-user": [
        ("public", ESC, IRR, "Publishes a codespace as a public repository (private is not true)",
         '[{ field = "private", ne = true }]'),
        ("default-public", ESC, IRR, "Publishes a codespace without `private` (GitHub's default is public)",
         '[{ field = "private", present = false }]'),
    ],
    "codespaces/update-for-authenticated-user": [
        ("machine", ESC, MONEY, "Changes a codespace's machine type (billed per core)",
         '[{ field = "machine", present = true }]'),
    ],
}

HEADER = [
    "# Generated by scripts/gen-github-writes.py from tests/data/github-rest-write.tsv: every",
    "# POST, PUT and PATCH route of api.github.com without a hand-written base entry in github.toml.",
    "# Edit the generator (its classification table), not this file.",
    "",
    "[service]",
    'name = "github"',
    'hosts = ["api.github.com", "uploads.github.com"]',
    'path_prefixes = ["/api/v3"]',
    'default = "allow"',
    'graphql_paths = ["/graphql", "/api/graphql"]',
    'graphql_default = "escalate"',
    "",
]


def read_routes(path, methods):
    """[(method, path, op, summary)] of a route list."""
    out = []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        method, _, p = parts[0].partition(" ")
        if method in methods:
            out.append((method, p, parts[1], parts[2]))
    return out


def template(path):
    """The route's path with slash-capable parameters as `{x*}`."""
    segs = []
    for s in path.split("/"):
        if s.startswith("{") and s.endswith("}") and s[1:-1] in MULTI:
            s = "{" + s[1:-1] + "*}"
        segs.append(s)
    return "/".join(segs)


def segs(path):
    return [s for s in path.split("/") if s]


def is_param(s):
    return s.startswith("{") and s.endswith("}")


def same_shape(route, tmpl):
    r, t = segs(route), segs(tmpl)
    if len(r) != len(t):
        return False
    for a, b in zip(r, t):
        if is_param(a):
            if not is_param(b):
                return False
        elif is_param(b) or a.lower() != b.lower():
            return False
    return True


def rule_methods(r):
    ms = list(r.get("methods", []))
    if "method" in r:
        ms.append(r["method"])
    return ms


def base_rules(files):
    """[(file, rule)] of every [[rule]] without `when` in the given files."""
    out = []
    for f in files:
        data = tomllib.loads(Path(f).read_text())
        for r in data.get("rule", []):
            if not r.get("when"):
                out.append((Path(f).name, r))
    return out


def bases_for(method, route, bases):
    return [(f, r) for f, r in bases if method in rule_methods(r) and same_shape(route, r["path"])]


def classification():
    table = {}
    for theme, (action, klass, why, ops) in THEMES.items():
        for op in ops:
            if op in table:
                sys.exit(f"{op} is classified twice ({table[op][0]} and {theme})")
            table[op] = (theme, action, klass, why)
    return table


def q(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def generate():
    routes = read_routes(WRITES, {"POST", "PUT", "PATCH"})
    table = classification()
    hand = base_rules([HAND])
    errors = []
    seen = set()
    out = list(HEADER)
    for method, path, op, summary in routes:
        seen.add(op)
        if op not in table:
            errors.append(f"{method} {path} ({op}) is not classified")
            continue
        theme, action, klass, why = table[op]
        covered = bases_for(method, path, hand)
        if covered:
            for f, r in covered:
                if r["action"] != action:
                    errors.append(f"{method} {path}: {f} says {r['action']} ({r['tool']}), the table {action} ({theme})")
            if op in CONDITIONAL:
                errors.append(f"{op}: conditional rules belong next to the hand-written base entry in {HAND.name}")
            continue
        tmpl = template(path)
        tool = "github." + op.replace("/", ".")
        out += ["[[rule]]", f"tool = {q(tool)}", f'method = "{method}"', f"path = {q(tmpl)}",
                f'class = "{klass}"', f'action = "{action}"', f"reason = {q(summary + ': ' + why)}", ""]
        for suffix, c_action, c_class, reason, when in CONDITIONAL.get(op, []):
            out += ["[[rule]]", f"tool = {q(tool + '.' + suffix)}", f'method = "{method}"',
                    f"path = {q(tmpl)}", f'class = "{c_class}"', f'action = "{c_action}"',
                    f"reason = {q(reason)}", f"when = {when}", ""]
    for op in sorted(set(table) - seen):
        errors.append(f"{op} is classified but not in {WRITES.name}")
    for op in sorted(set(CONDITIONAL) - seen):
        errors.append(f"conditional rules for unknown operation {op}")
    return "\n".join(out), errors


def coverage():
    """Problems with base entries across rules/github*.toml."""
    files = sorted(ROOT.glob("rules/github*.toml"))
    bases = base_rules(files)
    problems = []
    routes = read_routes(WRITES, {"POST", "PUT", "PATCH"}) + read_routes(DELETES, {"DELETE"})
    if len(routes) != 397 + 187:
        problems.append(f"expected 397 write and 187 delete routes, read {len(routes)}")
    for method, path, op, _ in routes:
        found = bases_for(method, path, bases)
        if not found:
            problems.append(f"missing: {method} {path} ({op}) has no base entry")
        elif len(found) > 1:
            where = ", ".join(f"{f}:{r['tool']}" for f, r in found)
            problems.append(f"duplicate: {method} {path} ({op}) has {len(found)} base entries: {where}")
    names = [n.strip() for n in MUTATIONS.read_text().splitlines() if n.strip()]
    known = set(names)
    count = {}
    for f in files:
        for g in tomllib.loads(f.read_text()).get("graphql", []):
            for m in g["mutations"]:
                if m not in known:
                    problems.append(f"unknown mutation {m} in {f.name}")
                if not g.get("when"):
                    count[m] = count.get(m, 0) + 1
    for m in names:
        n = count.get(m, 0)
        if n != 1:
            problems.append(f"{'missing' if n == 0 else 'duplicate'}: mutation {m} has {n} base [[graphql]] entries")
    return problems


def main():
    text, errors = generate()
    if errors:
        sys.exit("\n".join(errors))
    if "--check" not in sys.argv[1:]:
        print(text)
        return
    problems = []
    if OUT.read_text() != text + "\n":
        problems.append(f"{OUT.relative_to(ROOT)} is stale: run scripts/gen-github-writes.py > {OUT.relative_to(ROOT)}")
    dels = subprocess.run([sys.executable, str(ROOT / "scripts/gen-github-deletes.py"), "--check"],
                          cwd=ROOT, capture_output=True, text=True)
    if dels.returncode != 0:
        problems.append((dels.stdout + dels.stderr).strip() or "gen-github-deletes.py --check failed")
    problems += coverage()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print("ok: rules/github-writes.toml and rules/github-deletes.toml are current; every write, delete "
          "route and mutation has exactly one base entry")


if __name__ == "__main__":
    main()
