//! Every ending of a held git push, for a client that reads receive-pack reports (git always
//! does): git shows nothing of a JSON answer but `RPC failed` and, falsely, `Everything
//! up-to-date`. Each one is a report rejecting every ref with the ending in a few words, and
//! `remote:` lines saying what happened and what to do: held, rejected, expired, approved but
//! not sent, sent with its outcome unknown, its state unreadable after a wait, or not held at
//! all (a refusal: too many pending, store or audit log down, too large). Only an executed push
//! with its answer gets the upstream's own report instead (`None` here).

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response};

use super::git_report::{self, ReportRequest};
use super::held::{review_headers, sending, RETRY_STATE_UNKNOWN, STATE_UNKNOWN};
use crate::gate::agent_api::status_url;
use crate::gate::review::{Review, ReviewState};
use crate::wire::{Body, Refusal, REASON_HEADER};

/// A held push: every ref rejected with the review id.
pub fn held(g: &ReportRequest, r: &Review) -> Option<Response<Body>> {
    let (id, host) = (&r.id, &r.request.host);
    let first = match sending(r) {
        true => format!("approved as {id}; being sent to {host}, it may already have arrived."),
        false => format!("held for human review as {id}; nothing was sent to {host}."),
    };
    let poll = format!(
        "poll {} (through the proxy) for the outcome.",
        status_url(id)
    );
    answer(
        g,
        r,
        &format!("held for review {id}"),
        &[first, poll],
        "ESCALATE",
    )
}

/// A push whose review ended while git waited (`Airlock-Wait`); `None` for one executed with
/// its answer (git gets the upstream's own report).
pub fn finished(g: &ReportRequest, r: &Review) -> Option<Response<Body>> {
    let (id, host, url) = (&r.id, &r.request.host, status_url(&r.id));
    let withheld = r.execution.as_ref().is_some_and(|e| e.withheld.is_some());
    let (reason, note, outcome) = match r.state {
        ReviewState::Rejected | ReviewState::Expired => {
            let (word, outcome) = match r.state {
                ReviewState::Rejected => ("rejected", "REJECTED"),
                _ => ("expired", "EXPIRED"),
            };
            let note = vec![format!("review {id} {word}; nothing was sent.")];
            (format!("{word} in review {id}"), note, outcome)
        }
        ReviewState::Failed => (
            format!("approved in review {id} but not sent"),
            vec![
                format!("review {id} was approved, but the push could not be sent; nothing reached {host}."),
                format!("see {url} (through the proxy); a reviewer may retry the send."),
            ],
            "FAILED",
        ),
        ReviewState::Executed if withheld => (
            format!("sent in review {id}, answer withheld; check the remote"),
            vec![
                format!("review {id} was approved and the push sent to {host}, but its answer came compressed and is withheld."),
                "run `git fetch` to see what it did before pushing again.".into(),
            ],
            "EXECUTED",
        ),
        ReviewState::OutcomeUnknown => (
            format!("outcome unknown in review {id}; check the remote before pushing again"),
            vec![
                format!("review {id} was approved, but whether the push reached {host} is unknown: it may have landed."),
                format!("run `git fetch` and check the ref before pushing again; see {url} (through the proxy)."),
            ],
            "OUTCOME_UNKNOWN",
        ),
        _ => return None,
    };
    answer(g, r, &reason, &note, outcome)
}

/// A held push whose wait could not read what became of its review: it may have been approved
/// and sent meanwhile.
pub fn unknown(g: &ReportRequest, r: &Review) -> Option<Response<Body>> {
    let (id, url) = (&r.id, status_url(&r.id));
    let note = [
        format!("held for human review as {id}, but Airlock could not read what became of it when the wait ended: it may have been approved and sent meanwhile."),
        format!("poll {url} (through the proxy) and check the remote before pushing again."),
    ];
    let reason = format!("held for review {id}; outcome unknown, check the remote");
    let report = git_report::report(g, &reason, &with_prefix(&note))?;
    let mut resp = git_report::response(report);
    let h = resp.headers_mut();
    review_headers(h, r, "ESCALATE");
    // Neither held-and-unsent nor an outcome is known.
    h.remove(crate::gate::OUTCOME_HEADER);
    h.insert(REASON_HEADER, HeaderValue::from_static(STATE_UNKNOWN));
    h.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_STATE_UNKNOWN));
    Some(resp)
}

/// A push that was not held (`refusal`): every ref rejected with `reason`; the refusal's
/// message and `hints` on `remote:` lines.
pub fn not_held(
    g: &ReportRequest,
    refusal: &Refusal,
    reason: &str,
    hints: &[String],
) -> Option<Response<Body>> {
    let mut note = vec![refusal.message.clone()];
    note.extend(hints.iter().cloned());
    let report = git_report::report(g, reason, &with_prefix(&note))?;
    let mut resp = git_report::response(report);
    let h = resp.headers_mut();
    h.insert(REASON_HEADER, HeaderValue::from_static(refusal.code));
    if let Some(seconds) = refusal.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    Some(resp)
}

/// The report for review `r` with `reason` and `note`, and its review headers.
fn answer(
    g: &ReportRequest,
    r: &Review,
    reason: &str,
    note: &[String],
    outcome: &'static str,
) -> Option<Response<Body>> {
    let report = git_report::report(g, reason, &with_prefix(note))?;
    let mut resp = git_report::response(report);
    review_headers(resp.headers_mut(), r, outcome);
    Some(resp)
}

/// `remote:` lines that say whose they are.
fn with_prefix(note: &[String]) -> Vec<String> {
    note.iter().map(|l| format!("Airlock: {l}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::review::Execution;
    use http_body_util::BodyExt;

    async fn text(resp: Response<Body>) -> String {
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Every ending but an executed push with its answer is a report naming the review.
    #[tokio::test]
    async fn every_ending_reads_as_a_report() {
        let g = ReportRequest {
            refs: vec!["refs/heads/main".into()],
            sideband: None,
        };
        let cases = [
            (ReviewState::Rejected, false, Some("ng refs/heads/main rejected in review r1\n")),
            (ReviewState::Failed, false, Some("ng refs/heads/main approved in review r1 but not sent\n")),
            (
                ReviewState::OutcomeUnknown,
                false,
                Some("ng refs/heads/main outcome unknown in review r1; check the remote before pushing again\n"),
            ),
            (ReviewState::Executed, true, Some("ng refs/heads/main sent in review r1, answer withheld")),
            (ReviewState::Executed, false, None),
        ];
        for (state, withheld, want) in cases {
            let mut r =
                Review::sample("POST", "github.com", "/o/r.git/git-receive-pack", None, b"");
            r.state = state;
            let mut e = Execution::started(1);
            e.withheld = withheld.then(|| "upstream_encoding".to_string());
            r.execution = Some(e);
            let got = finished(&g, &r);
            match (got, want) {
                (Some(resp), Some(want)) => {
                    assert_eq!(resp.status(), 200);
                    assert!(text(resp).await.contains(want), "{state:?}");
                }
                (None, None) => {}
                (got, _) => panic!("{state:?}: {:?}", got.map(|r| r.status())),
            }
        }
    }
}
