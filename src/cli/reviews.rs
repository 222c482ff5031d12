//! `airlock reviews`: list and decide held requests through the running server's admin API.

use airlock::visible::{escaped, json_escaped};
use std::io::Write;

use anyhow::{bail, Result};
use clap::Subcommand;

use airlock::config::Config;

#[derive(Subcommand)]
pub(super) enum ReviewsCommand {
    /// List reviews a page at a time: pending ones soonest expiry first, others newest first.
    /// Prints where the next page starts (`--cursor`) when there is one.
    List {
        /// Only reviews in this state (pending, approved, executing, executed, failed, rejected, expired, outcome_unknown).
        #[arg(long)]
        state: Option<String>,
        /// Only this agent's reviews.
        #[arg(long)]
        agent: Option<String>,
        /// Only reviews of this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Reviews per page (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this point (printed at the end of the previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Every page, printed as it arrives (memory stays flat whatever the history).
        #[arg(long, conflicts_with = "cursor")]
        all: bool,
    },
    /// Show one review with its stored request.
    Show {
        #[arg(value_parser = review_id)]
        id: String,
    },
    /// Approve a pending review; Airlock then sends the stored request once. Prints one summary
    /// line, then the review as JSON. Exit status: 0 executed (or still waiting for more
    /// approvals), 3 failed (not sent), 4 outcome_unknown (may have been sent), 5 approved and
    /// not finished sending (being sent elsewhere, or its send not started yet: Airlock retries
    /// it), 1 an error.
    Approve {
        #[arg(value_parser = review_id)]
        id: String,
        #[arg(long)]
        comment: Option<String>,
        /// Name recorded as the approver (default: $USER).
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
    },
    /// Reject a pending review.
    Reject {
        #[arg(value_parser = review_id)]
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
    },
    /// Reject every pending review of one agent (say it went wrong, or was compromised), each
    /// as `reject` would, a thousand per call to the admin API until none is left. Prints how
    /// many were rejected and each that could not be (exit status 1 if any).
    RejectPending {
        /// The agent whose pending reviews to reject.
        #[arg(long)]
        agent: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
    },
    /// Send a failed (or outcome_unknown) review's stored request again, with the same
    /// Idempotency-Key if it has one (Stripe calls always do, and Stripe honours it on POST;
    /// GitHub ignores the header, and Stripe does on GET and DELETE, so there, as without one,
    /// nothing keeps a retry from running the call twice: check the upstream first); only before the review's deadline, and only once the rule's quorum is
    /// reached afresh. Summary line and exit status as for approve: 0 executed (or waiting for
    /// more retry approvals), 3 failed (not sent), 4 outcome_unknown, 5 approved and not
    /// finished sending, 1 an error.
    ///
    /// The retry names the attempt it follows (`attemptCount`, as `reviews show` prints it):
    /// with `--attempts N` the one you read, else the review's count when the command starts;
    /// if another attempt was made since, the retry is refused (409 review_changed).
    Retry {
        #[arg(value_parser = review_id)]
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
        /// The send attempts you saw (`attemptCount` in `reviews show`).
        #[arg(long)]
        attempts: Option<u64>,
    },
    /// Give a pending review more time before it expires.
    Extend {
        #[arg(value_parser = review_id)]
        id: String,
        /// How much longer, e.g. 2h.
        #[arg(long)]
        by: String,
    },
}

/// A review id as Airlock makes them: `rev_`, then letters and digits. Nothing a path or a
/// query could be made of, so `reviews reject 'rev_X/approve?'` cannot become an approval.
fn review_id(s: &str) -> std::result::Result<String, String> {
    let well_formed = s
        .strip_prefix("rev_")
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()));
    if well_formed {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a review id (rev_ followed by letters and digits)"
        ))
    }
}

/// The reviewer's token: `--token-file` (checked: only its owner, you, may read it), else
/// `$AIRLOCK_REVIEWER_TOKEN`; `None`: the admin token. `--token` is refused: every local user
/// can read a process's command line.
pub(super) fn reviewer_token(
    on_command_line: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>> {
    if on_command_line.is_some() {
        anyhow::bail!(
            "--token is refused: a token on the command line is visible to every local user \
             (ps, /proc/PID/cmdline). Put it in a file only you may read (chmod 600) and pass \
             --token-file PATH, or set AIRLOCK_REVIEWER_TOKEN"
        );
    }
    if let Some(path) = file {
        let text = airlock::secret_file::read_private(path)
            .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            anyhow::bail!("--token-file {}: empty", path.display());
        }
        return Ok(Some(token.to_string()));
    }
    Ok(std::env::var("AIRLOCK_REVIEWER_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty()))
}

pub(super) async fn reviews(
    config: Config,
    token: Option<String>,
    cmd: ReviewsCommand,
) -> Result<()> {
    use airlock::admin::client::call;
    use http::Method;
    let token = match token {
        Some(t) => t,
        None => super::admin_token(&config)?,
    };
    let addr = airlock::admin::client::Target::of(&config);
    let (method, path, body) = match &cmd {
        ReviewsCommand::List {
            state,
            agent,
            tool,
            limit,
            cursor,
            all,
        } => {
            let filters = [("state", state), ("agent", agent), ("tool", tool)];
            return list(&addr, &token, filters, *limit, cursor.clone(), *all).await;
        }
        ReviewsCommand::RejectPending {
            agent,
            comment,
            reviewer,
        } => {
            let body =
                serde_json::json!({"agent": agent, "comment": comment, "reviewer": reviewer});
            return reject_pending(&addr, &token, agent, body).await;
        }
        ReviewsCommand::Show { id } => (Method::GET, format!("/v1/reviews/{id}"), None),
        ReviewsCommand::Approve {
            id,
            comment,
            reviewer,
        } => (
            Method::POST,
            format!("/v1/reviews/{id}/approve"),
            Some(serde_json::json!({"comment": comment, "reviewer": reviewer})),
        ),
        ReviewsCommand::Reject {
            id,
            comment,
            reviewer,
        } => (
            Method::POST,
            format!("/v1/reviews/{id}/reject"),
            Some(serde_json::json!({"comment": comment, "reviewer": reviewer})),
        ),
        ReviewsCommand::Retry {
            id,
            comment,
            reviewer,
            attempts,
        } => {
            // Unknown to a server older than this CLI: sent as null (not checked).
            let attempts = match attempts {
                Some(n) => Some(*n),
                None => {
                    let (status, json) = call(
                        &addr,
                        &token,
                        Method::GET,
                        &format!("/v1/reviews/{id}"),
                        None,
                    )
                    .await?;
                    answered(status, &json)?;
                    json["attemptCount"].as_u64()
                }
            };
            (
                Method::POST,
                format!("/v1/reviews/{id}/retry"),
                Some(
                    serde_json::json!({"comment": comment, "reviewer": reviewer, "attempts": attempts}),
                ),
            )
        }
        ReviewsCommand::Extend { id, by } => (
            Method::POST,
            format!("/v1/reviews/{id}/extend"),
            Some(serde_json::json!({ "by": by })),
        ),
    };
    let sends = matches!(
        cmd,
        ReviewsCommand::Approve { .. } | ReviewsCommand::Retry { .. }
    );
    let (status, json) = match call(&addr, &token, method, &path, body).await {
        Ok(answer) => answer,
        // Connected and asked, then no answer (the server died, the connection broke): the
        // decision may be recorded and the request sent. Not "an error such as an unknown
        // review" (exit 1), after which a retry could send it twice.
        Err(airlock::admin::client::ClientError::Http(e)) if sends => {
            let id = path.split('/').nth(3).unwrap_or("?");
            super::warn(&escaped(&format!(
                "{id}: no answer from the admin API ({e}): the approval may be recorded and the \
                 request may have been sent; check `airlock reviews show {id}` (and the \
                 upstream) before any retry"
            )));
            std::process::exit(EXIT_OUTCOME_UNKNOWN);
        }
        Err(e) => return Err(e.into()),
    };
    answered(status, &json)?;
    for line in warnings(&json) {
        super::warn(&line);
    }
    match cmd {
        ReviewsCommand::List { .. } => {} // answered above
        ReviewsCommand::Approve { .. } | ReviewsCommand::Retry { .. } => {
            let (line, exit) = execution_summary(&json);
            println!("{}", escaped(&line));
            println!("{}", json_escaped(&serde_json::to_string_pretty(&json)?));
            if exit != 0 {
                std::process::exit(exit);
            }
        }
        _ => println!("{}", json_escaped(&serde_json::to_string_pretty(&json)?)),
    }
    Ok(())
}

/// The warnings for a review, each a line, agent text escaped: the dashboard's (`summary.warnings`:
/// readings, keys given twice, a masked echo, a removed agent, a body spelled with `\u`
/// escapes…), or from a server that sends none, the masked echo and the removed agent.
fn warnings(review: &serde_json::Value) -> Vec<String> {
    if let Some(lines) = review["summary"]["warnings"].as_array() {
        return lines
            .iter()
            .filter_map(|l| l.as_str())
            .map(escaped)
            .collect();
    }
    let mut out: Vec<String> = review["restored"]["warning"]
        .as_str()
        .map(escaped)
        .into_iter()
        .collect();
    out.extend(masked_echo_warning(review));
    if review["agentReplaced"].as_bool() == Some(true) {
        out.push(escaped(&format!(
            "the agent that sent this request, {}, was removed: the agent configured under that \
             name now is another entry (added since) and did not send it; approving still sends \
             the request as stored",
            review["agent"].as_str().unwrap_or("?")
        )));
    } else if review["agentRemoved"].as_bool() == Some(true) {
        out.push(escaped(&format!(
            "the agent that sent this request, {}, is no longer configured: it was removed after \
             sending it (compromised? retired?); approving still sends the request as stored",
            review["agent"].as_str().unwrap_or("?")
        )));
    }
    out
}

/// The warning for a review whose request shows a secret-named query value outside its own
/// field, masked there (`maskedEcho`): the agent chose that value, and may hide what matters
/// behind it (a `Stripe-Account` header equal to `?metadata[token]=`). Agent text escaped.
fn masked_echo_warning(review: &serde_json::Value) -> Option<String> {
    if review["maskedEcho"].as_bool() != Some(true) {
        return None;
    }
    let names: Vec<&str> = review["maskedEchoFields"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    Some(escaped(&format!(
        "a masked value also appears elsewhere: the value of the secret-named query parameter {} \
         shows again in this request (a header, the URL, the body, the parameters or the \
         explanation), as [redacted: same value as …]; the agent chose it, and what it hides \
         may be what matters",
        if names.is_empty() {
            "?".to_string()
        } else {
            names.join(", ")
        }
    )))
}

/// `reviews approve|retry` exit status when the execution ended `failed`: nothing was sent.
const EXIT_NOT_SENT: i32 = 3;
/// `reviews approve|retry` exit status when the execution ended `outcome_unknown`: the request
/// may have reached the upstream; check there before any retry.
const EXIT_OUTCOME_UNKNOWN: i32 = 4;
/// `reviews approve|retry` exit status when the approval is recorded and the send has not
/// ended: `executing` (another instance, or another call, is sending it) or `approved` (its
/// send did not start yet; Airlock retries it). `reviews show` tells the outcome later.
const EXIT_STILL_SENDING: i32 = 5;

/// One human line for an approve/retry answer, and the exit status it calls for.
fn execution_summary(review: &serde_json::Value) -> (String, i32) {
    let id = review["reviewId"].as_str().unwrap_or("?");
    let state = review["state"].as_str().unwrap_or("?");
    let error = review["result"]["error"].as_str().unwrap_or("no detail");
    // A retry below the rule's quorum is recorded and not sent: waiting, like a pending approval.
    if review["retryApprovals"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        let progress = review["retryApprovalProgress"].as_str().unwrap_or("?");
        return (
            format!("{id}: retry approval recorded ({progress} needed); not sent yet"),
            0,
        );
    }
    match state {
        "executed" => {
            let status = review["result"]["status"]
                .as_u64()
                .map_or_else(|| "?".to_string(), |s| s.to_string());
            (format!("{id}: executed, upstream answered HTTP {status}"), 0)
        }
        "failed" => (
            format!("{id}: failed, not sent: {error}"),
            EXIT_NOT_SENT,
        ),
        "outcome_unknown" => (
            format!(
                "{id}: outcome unknown, the request may have reached the upstream: {error}; check there before retrying"
            ),
            EXIT_OUTCOME_UNKNOWN,
        ),
        "executing" => (
            format!(
                "{id}: approved and being sent (by another instance or call); its outcome is not known yet: airlock reviews show {id}"
            ),
            EXIT_STILL_SENDING,
        ),
        "approved" => (
            match review["message"].as_str() {
                Some(m) => format!("{id}: {m}"),
                None => format!("{id}: approved; the send has not started yet: airlock reviews show {id}"),
            },
            EXIT_STILL_SENDING,
        ),
        other => (format!("{id}: {other}"), 0),
    }
}

/// `reviews reject-pending`: calls the admin API until no pending review of the agent is left
/// (or a call rejected none: the rest cannot be rejected by this reviewer).
async fn reject_pending(
    addr: &airlock::admin::client::Target,
    token: &str,
    agent: &str,
    body: serde_json::Value,
) -> Result<()> {
    use airlock::admin::client::call;
    let (mut rejected, mut failed) = (0usize, 0usize);
    loop {
        let (status, json) = call(
            addr,
            token,
            http::Method::POST,
            "/v1/reviews/reject-pending",
            Some(body.clone()),
        )
        .await?;
        answered(status, &json)?;
        let now = json["rejected"].as_array().map_or(0, |a| a.len());
        rejected += now;
        for f in json["failed"].as_array().into_iter().flatten() {
            failed += 1;
            super::warn(&escaped(&format!(
                "{}: not rejected: {}",
                f["id"].as_str().unwrap_or("?"),
                f["error"].as_str().unwrap_or("?")
            )));
        }
        if json["more"].as_bool() != Some(true) || now == 0 {
            break;
        }
    }
    println!(
        "{}",
        escaped(&format!(
            "rejected {rejected} pending review(s) of agent {agent}"
        ))
    );
    if failed > 0 {
        bail!(
            "{failed} pending review(s) of agent {} could not be rejected",
            escaped(agent)
        );
    }
    Ok(())
}

/// `reviews list`: one page, or with `all` every page in turn.
async fn list(
    addr: &airlock::admin::client::Target,
    token: &str,
    filters: [(&str, &Option<String>); 3],
    limit: usize,
    mut cursor: Option<String>,
    all: bool,
) -> Result<()> {
    use airlock::admin::client::call;
    let mut printed = 0u64;
    loop {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        for (k, v) in filters {
            if let Some(v) = v {
                qs.append_pair(k, v);
            }
        }
        qs.append_pair("limit", &limit.to_string());
        if let Some(c) = &cursor {
            qs.append_pair("cursor", c);
        }
        let path = format!("/v1/reviews?{}", qs.finish());
        let (status, json) = call(addr, token, http::Method::GET, &path, None).await?;
        answered(status, &json)?;
        // One write per page, not per line (stdout is line-buffered).
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for r in json["reviews"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            printed += 1;
            // Agent text (tool, URL) with control and invisible characters escaped: it must
            // not act on the reviewer's terminal. Every rule's tool that held it, not the first.
            let tools: Vec<&str> = std::iter::once(&r["tool"])
                .chain(r["alsoTools"].as_array().into_iter().flatten())
                .filter_map(|t| t.as_str())
                .collect();
            let tools = if tools.is_empty() {
                "-".to_string()
            } else {
                tools.join(" + ")
            };
            let line = format!(
                "{}  {:<16} {:<28} {} {}  expires {}",
                r["reviewId"].as_str().unwrap_or("?"),
                r["state"].as_str().unwrap_or("?"),
                tools,
                r["method"].as_str().unwrap_or("?"),
                r["url"].as_str().unwrap_or("?"),
                r["expiresAt"].as_str().unwrap_or("?"),
            );
            let restored = match r["restored"].is_object() {
                true => "  [restored from a backup: check upstream before approving]",
                false => "",
            };
            writeln!(out, "{}{restored}", escaped(&line))?;
        }
        out.flush()?;
        drop(out);
        cursor = json["next_cursor"].as_str().map(str::to_string);
        match (&cursor, all) {
            (Some(_), true) => continue,
            (Some(c), false) => super::note(&format!(
                "more: airlock reviews list --cursor {c} (same filters)"
            )),
            (None, _) if printed == 0 => println!("no reviews"),
            (None, _) => {}
        }
        return Ok(());
    }
}

/// An admin API answer that is not a success, as one error line naming its message.
fn answered(status: u16, json: &serde_json::Value) -> Result<()> {
    if !(200..300).contains(&status) {
        let msg = json
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("request failed");
        bail!("{} (HTTP {status})", escaped(msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review (defect 7): `reviews approve` exited 0 when the answer said `executing` (another
    /// instance sending it): the approval is not done until the send ends. Exit 5 then, and
    /// for an approval whose send did not start yet.
    #[test]
    fn an_approval_not_finished_sending_exits_5() {
        let cases = [
            (
                serde_json::json!({"reviewId": "rev_1", "state": "executing"}),
                5,
                "being sent",
            ),
            (
                serde_json::json!({"reviewId": "rev_1", "state": "approved", "message": "approved; the send did not start yet (x): Airlock retries it"}),
                5,
                "the send did not start yet",
            ),
            (
                serde_json::json!({"reviewId": "rev_1", "state": "approved"}),
                5,
                "not started yet",
            ),
            (
                serde_json::json!({"reviewId": "rev_1", "state": "executed", "result": {"status": 204}}),
                0,
                "HTTP 204",
            ),
            (
                serde_json::json!({"reviewId": "rev_1", "state": "pending"}),
                0,
                "pending",
            ),
        ];
        for (review, exit, says) in cases {
            let (line, code) = execution_summary(&review);
            assert_eq!(code, exit, "{line}");
            assert!(line.contains(says), "{line}");
        }
    }
}
