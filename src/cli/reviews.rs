//! `airlock reviews`: list and decide held requests through the running server's admin API.

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use airlock::config::Config;

#[derive(Subcommand)]
pub(super) enum ReviewsCommand {
    /// List reviews, newest first.
    List {
        /// Only reviews in this state (pending, approved, executing, executed, failed, rejected, expired, outcome_unknown).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one review with its stored request.
    Show { id: String },
    /// Approve a pending review; Airlock then sends the stored request once. Prints one summary
    /// line, then the review as JSON. Exit status: 0 executed (or still waiting for more
    /// approvals), 3 failed (not sent), 4 outcome_unknown (may have been sent), 1 an error.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        /// Name recorded as the approver (default: $USER).
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
    },
    /// Reject a pending review.
    Reject {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
    },
    /// Send a failed (or outcome_unknown) review's stored request again, with the same
    /// Idempotency-Key; only before the review's deadline, and only once the rule's quorum is
    /// reached afresh. Summary line and exit status as for approve: 0 executed (or waiting for
    /// more retry approvals), 3 failed (not sent), 4 outcome_unknown, 1 an error.
    Retry {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
    },
    /// Give a pending review more time before it expires.
    Extend {
        id: String,
        /// How much longer, e.g. 2h.
        #[arg(long)]
        by: String,
    },
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
        None => airlock::admin::load_or_create_token(&config.admin.token_file)
            .context("reading the admin token (set AIRLOCK_ADMIN_TOKEN or run from the directory `airlock serve` uses)")?,
    };
    let addr = config.admin.listen;
    let (method, path, body) = match &cmd {
        ReviewsCommand::List { state } => (
            Method::GET,
            match state {
                Some(s) => format!("/v1/reviews?state={s}"),
                None => "/v1/reviews".to_string(),
            },
            None,
        ),
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
        } => (
            Method::POST,
            format!("/v1/reviews/{id}/retry"),
            Some(serde_json::json!({"comment": comment, "reviewer": reviewer})),
        ),
        ReviewsCommand::Extend { id, by } => (
            Method::POST,
            format!("/v1/reviews/{id}/extend"),
            Some(serde_json::json!({ "by": by })),
        ),
    };
    let (status, json) = call(addr, &token, method, &path, body).await?;
    if !(200..300).contains(&status) {
        let msg = json
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("request failed");
        bail!("{msg} (HTTP {status})");
    }
    match cmd {
        ReviewsCommand::List { .. } => {
            let items = json["reviews"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no reviews");
            }
            for r in items {
                println!(
                    "{}  {:<16} {:<28} {} {}  expires {}",
                    r["reviewId"].as_str().unwrap_or("?"),
                    r["state"].as_str().unwrap_or("?"),
                    r["tool"].as_str().unwrap_or("-"),
                    r["method"].as_str().unwrap_or("?"),
                    r["url"].as_str().unwrap_or("?"),
                    r["expiresAt"].as_str().unwrap_or("?"),
                );
            }
        }
        ReviewsCommand::Approve { .. } | ReviewsCommand::Retry { .. } => {
            let (line, exit) = execution_summary(&json);
            println!("{line}");
            println!("{}", serde_json::to_string_pretty(&json)?);
            if exit != 0 {
                std::process::exit(exit);
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&json)?),
    }
    Ok(())
}

/// `reviews approve|retry` exit status when the execution ended `failed`: nothing was sent.
const EXIT_NOT_SENT: i32 = 3;
/// `reviews approve|retry` exit status when the execution ended `outcome_unknown`: the request
/// may have reached the upstream; check there before any retry.
const EXIT_OUTCOME_UNKNOWN: i32 = 4;

/// One human line for an approve/retry answer, and the exit status it calls for.
fn execution_summary(review: &serde_json::Value) -> (String, i32) {
    let id = review["reviewId"].as_str().unwrap_or("?");
    let state = review["state"].as_str().unwrap_or("?");
    let error = review["result"]["error"].as_str().unwrap_or("no detail");
    // A retry below the rule's quorum is recorded and not sent: waiting, like a pending approval.
    if let Some(waiting) = review["retryApprovals"]
        .as_array()
        .filter(|a| !a.is_empty())
    {
        let counted = waiting.iter().filter(|a| a["counts"] == true).count();
        let required = review["policy"]["required"].as_u64().unwrap_or(1);
        return (
            format!("{id}: retry approval recorded ({counted} of {required}); not sent yet"),
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
        other => (format!("{id}: {other}"), 0),
    }
}
