//! The review pages: pending list, filtered history, one review in detail (stored request,
//! result, audit entries), with bodies, amounts and ages formatted for people.

use base64::Engine;
use http::{Response, StatusCode};
use minijinja::context;
use serde::Serialize;

use super::{arguments, html_escape, html_response, show, Dashboard};
use crate::admin::listing::Listing;
use crate::admin::Admin;
use crate::credentials::echo::QueryEchoes;
use crate::credentials::redact;
use crate::gate::agent_api::echoed_fields;
use crate::gate::{review::rfc3339, People, Review, ReviewState, Reviewer, MOST_JOINS};
use crate::wire::Body;

#[derive(Serialize)]
struct Row {
    id: String,
    state: &'static str,
    tool: String,
    service: String,
    agent: String,
    method: String,
    host: String,
    path: String,
    url: String,
    args: Vec<String>,
    money: Option<String>,
    /// The arguments shown that read more than one way: the page warns of them.
    ambiguous: Vec<String>,
    /// The secret-named query parameters whose values show elsewhere, masked ([`Summary`]).
    masked_echo: Vec<String>,
    /// The warning for a JSON body spelled with needless `\u` escapes ([`Summary`]).
    escapes: Option<String>,
    /// That body decoded, as every JSON parser reads it (the detail page only).
    decoded_body: Option<String>,
    /// The body's content encoding, when it has one ([`Summary`]).
    encoded: Option<String>,
    /// The warning of a review found in a restored store ([`crate::gate::review::Restored`]).
    restored: Option<String>,
    reasons: String,
    age: String,
    created: String,
    expires: String,
    expires_in: String,
    approvals: String,
    approval_list: Vec<String>,
    agent_owner: Option<String>,
    rule_id: String,
    explanation: String,
    decision: Option<String>,
    /// Who decided (or approved so far), for the history.
    decided_by: String,
    /// Every comment given with an approval, a retry or the decision: `name: comment`.
    comments: Vec<String>,
    request_text: String,
    result_text: Option<String>,
    /// The stored request's `Idempotency-Key` (the retry box says a retry reuses it, or that
    /// nothing guards a retry when there is none).
    idempotency_key: Option<String>,
    /// The service honours that key (Stripe, on POST): a retry then runs the call at most once.
    /// GitHub ignores the header, and Stripe does on other methods: a key there protects nothing.
    idempotency_honoured: bool,
    /// A Stripe call other than POST: its key is ignored (the retry box says why).
    idempotency_post_only: bool,
    /// Attempts made so far (earlier ones and the last): the retry form carries it, and a
    /// retry is refused if another attempt was made since the page was read.
    attempt_count: usize,
    /// Secret-named values erased from the stored request when the review became final.
    sealed_secrets: usize,
}

/// The agent's text as a reviewer reads it: echoes of secret-named query values masked
/// wherever they show (each naming its parameter), invisible characters shown as escapes.
pub(super) fn hider(r: &Review) -> impl Fn(&str) -> String {
    hider_of(QueryEchoes::of(&r.request.path_and_query))
}

/// [`hider`], given the review's secret-named query values.
fn hider_of(echoes: QueryEchoes) -> impl Fn(&str) -> String {
    move |s: &str| show::visible(&echoes.mask(s))
}

/// What a call does, as the detail page and a one-click link's page both show it.
pub(super) struct Summary {
    /// The URL, secret-named query values masked.
    pub url: String,
    /// The money it moves (a refund's amount, or that it refunds everything).
    pub money: Option<String>,
    /// Its notable arguments and the rule's parameters.
    pub args: Vec<String>,
    /// The arguments shown that mainstream frameworks may read more than one way (every
    /// reading is in `money` and `args`).
    pub ambiguous: Vec<String>,
    /// The secret-named query parameters (as shown) whose values also show elsewhere in the
    /// request (a header, the URL, the body, the arguments, the explanation), masked there: the
    /// agent chose that value, and may have chosen it to hide something.
    pub masked_echo: Vec<String>,
    /// A JSON body spelled with `\u` escapes of characters that need none
    /// (`"\u006e\u0065\u0077_owner"` is `new_owner` to every parser): the warning naming each
    /// pair so spelled, decoded.
    pub escapes: Option<String>,
    /// That body decoded, as the agent's text (unmasked: each page masks it as it shows it).
    pub decoded_body: Option<String>,
    /// The body is content-encoded (`gzip`): the service decodes it before reading it, so what
    /// it reads is not shown, and Airlock could not read its fields ([`encoded_body`]).
    pub encoded: Option<String>,
}

/// How `r`'s stored body is content-encoded, as shown (`gzip`), if it is: a `Content-Encoding`
/// other than `identity`, or held as `body_encoded`.
pub(super) fn encoded_body(r: &Review) -> Option<String> {
    let named: Vec<String> = r
        .request
        .headers
        .iter()
        .filter(|(k, v)| {
            k.eq_ignore_ascii_case("content-encoding") && !v.trim().eq_ignore_ascii_case("identity")
        })
        .map(|(_, v)| show::visible(&arguments::clip(v.trim(), 40)))
        .collect();
    match named.as_slice() {
        [] if r.reason_codes.iter().any(|c| c == "body_encoded") => Some("content-encoded".into()),
        [] => None,
        _ => Some(named.join(", ")),
    }
}

/// The [`Summary`] of `r`, whose stored body is `body`.
pub(super) fn sum_up(r: &Review, body: &[u8]) -> Summary {
    let echoes = QueryEchoes::of(&r.request.path_and_query);
    let arguments::Arguments {
        money,
        mut args,
        ambiguous,
    } = arguments::arguments(r, body);
    args.extend(
        r.params
            .iter()
            .map(|(k, v)| format!("{k}={}", redact::shown_param(k, v))),
    );
    let mut echoed = echoed_fields(r, &echoes);
    let shown = money.iter().chain(&args).chain(&ambiguous);
    for name in echoes.found_in(shown.map(String::as_str)) {
        if !echoed.contains(&name) {
            echoed.push(name);
        }
    }
    let masked_echo = echoed
        .iter()
        .map(|n| show::visible(&echoes.shown_name(n)))
        .collect();
    let escaped = if is_git_push(r) {
        None
    } else {
        super::escapes::escaped(body)
    };
    let hide = hider_of(echoes);
    let url = {
        let mut shown = r.request.clone();
        shown.path_and_query = redact::mask_query(&r.request.path_and_query);
        hide(&shown.url())
    };
    Summary {
        url,
        money: money.map(|m| hide(&m)),
        args: args.iter().map(|a| hide(a)).collect(),
        // Key names given twice are the agent's text too.
        ambiguous: ambiguous.iter().map(|a| hide(a)).collect(),
        masked_echo,
        escapes: escaped.as_ref().map(|e| hide(&e.warning())),
        decoded_body: escaped.map(|e| e.decoded),
        encoded: encoded_body(r).map(|e| hide(&e)),
    }
}

/// The stored request as it would be sent (`url` already masked): method and URL, every header
/// (credential-like ones as `[redacted]`, withheld ones listed), the body (long runs of blanks
/// as a marker: [`show::collapse_blanks`]). The detail page and a
/// one-click link's page both show it whole: headers such as `Stripe-Account` or a method
/// override change what a call does.
pub(super) fn stored_request_text(
    r: &Review,
    url: &str,
    body: &[u8],
    hide: &impl Fn(&str) -> String,
) -> String {
    let mut text = format!("{} {url}\n", r.request.method);
    for (k, v) in &r.request.headers {
        let v = if redact::is_credential_header(k) {
            redact::REDACTED
        } else {
            v.as_str()
        };
        text.push_str(&format!("{k}: {v}\n"));
    }
    for k in &r.redacted_headers {
        text.push_str(&format!(
            "{k}: {} (withheld: not stored, not sent)\n",
            redact::REDACTED
        ));
    }
    if !body.is_empty() {
        text.push('\n');
        text.push_str(&show::request_body_text(body, is_git_push(r)));
    }
    show::collapse_blanks(&hide(&text))
}

/// Was the review judged as a git push (its verdict's reasons are the git rules' own, which the
/// agent cannot choose; a path ending in `/git-receive-pack` it can)? Its body is a packfile.
pub(super) fn is_git_push(r: &Review) -> bool {
    r.reason_codes.iter().any(|c| c.starts_with("git_"))
}

/// One review as shown. Credential-like headers are never stored (`gate/hold.rs`); their names
/// are listed as withheld, and any such header in an older record is shown as `[redacted]`.
/// Secret-named query values are masked in the URL and wherever the text echoes them.
/// `full`: with the stored request and the upstream's answer as text (the detail page; a list
/// row shows neither, and a held body may be a MiB).
fn row(r: &Review, now_ms: u64, people: &People, full: bool) -> Row {
    let hide = hider(r);
    let body = r.request.body().unwrap_or_default();
    let Summary {
        url,
        money,
        args,
        ambiguous,
        masked_echo,
        escapes,
        decoded_body,
        encoded,
    } = sum_up(r, &body);
    let decoded_body = decoded_body
        .filter(|_| full)
        .map(|d| show::collapse_blanks(&hide(&d)));
    let request_text = if full {
        stored_request_text(r, &url, &body, &hide)
    } else {
        String::new()
    };
    let result_text = r.execution.as_ref().filter(|_| full).map(|e| {
        let mut t = format!(
            "status: {}\n",
            e.status.map_or("-".to_string(), |s| s.to_string())
        );
        if let Some(err) = &e.error {
            t.push_str(&format!("error: {err}\n"));
        }
        let b = base64::engine::general_purpose::STANDARD
            .decode(&e.body_b64)
            .unwrap_or_default();
        t.push_str(&show::answer_text(&b));
        hide(&t)
    });
    let (decided_by, comments) = decided(r, &hide);
    let idempotency_key = r
        .request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
        .map(|(_, v)| hide(&arguments::clip(v, 80)));
    Row {
        id: r.id.clone(),
        state: r.state.as_str(),
        tool: r.tools_shown().unwrap_or_default(),
        service: r.service.clone().unwrap_or_default(),
        agent: r.agent.clone().unwrap_or_default(),
        method: r.request.method.clone(),
        host: r.request.host.clone(),
        path: show::visible(r.request.path_and_query.split('?').next().unwrap_or("")),
        url,
        args,
        money,
        ambiguous,
        masked_echo,
        escapes,
        decoded_body,
        encoded,
        restored: r.restored.as_ref().map(|m| m.warning.clone()),
        sealed_secrets: r.sealed_secrets,
        reasons: r.reason_codes.join(", "),
        age: human(now_ms.saturating_sub(r.created_at_ms)),
        created: rfc3339(r.created_at_ms),
        expires: rfc3339(r.expires_at_ms),
        expires_in: if r.state == ReviewState::Pending {
            if now_ms >= r.expires_at_ms {
                "expiring".into()
            } else {
                format!("in {}", human(r.expires_at_ms - now_ms))
            }
        } else {
            "-".into()
        },
        // Only approvals that stand with the reviewers in force count; the others say why not.
        approvals: r.quorum_progress(&r.approvals, people),
        approval_list: r
            .approvals
            .iter()
            .zip(r.standing(&r.approvals, people))
            .chain(
                r.retry_approvals
                    .iter()
                    .zip(r.standing(&r.retry_approvals, people)),
            )
            .enumerate()
            .map(|(i, (d, standing))| {
                let what = if i < r.approvals.len() { "" } else { "retry " };
                match standing {
                    Ok(()) => format!("{what}{} at {}", d.by, rfc3339(d.at_ms)),
                    Err(why) => format!(
                        "{what}{} at {} (does not count: {why})",
                        d.by,
                        rfc3339(d.at_ms)
                    ),
                }
            })
            .collect(),
        agent_owner: r.agent_owner.clone(),
        rule_id: r.rule_id.clone().unwrap_or_default(),
        explanation: hide(&r.explanation),
        // The comments are listed apart (`comments`), with every approver's.
        decision: r.decision.as_ref().map(|d| {
            format!(
                "{} by {} at {}",
                if r.state == ReviewState::Rejected {
                    "rejected"
                } else {
                    "approved"
                },
                d.by,
                rfc3339(d.at_ms),
            )
        }),
        decided_by,
        comments,
        request_text,
        result_text,
        idempotency_key,
        idempotency_honoured: r.idempotency_honoured(),
        idempotency_post_only: r.is_stripe() && !r.idempotency_honoured(),
        attempt_count: r.attempt_count(),
    }
}

/// Who decided `r`, as the history shows it, and the comments given on the way.
fn decided(r: &Review, hide: &impl Fn(&str) -> String) -> (String, Vec<String>) {
    let names = |list: &[crate::gate::review::Decision]| {
        list.iter()
            .map(|d| d.by.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let by = match (r.state, &r.decision) {
        (ReviewState::Rejected, Some(d)) => format!("rejected by {}", d.by),
        (_, Some(d)) if r.approvals.is_empty() => format!("approved by {}", d.by),
        (_, Some(_)) => format!("approved by {}", names(&r.approvals)),
        (ReviewState::Pending, None) if !r.approvals.is_empty() => {
            format!("approved so far by {}", names(&r.approvals))
        }
        (ReviewState::Expired, None) => "nobody (expired)".into(),
        _ => "-".into(),
    };
    let mut given: Vec<&crate::gate::review::Decision> = r.approvals.iter().collect();
    if let (ReviewState::Rejected, Some(d)) = (r.state, &r.decision) {
        given.push(d);
    }
    given.extend(r.retries.iter().chain(&r.retry_approvals));
    let comments = given
        .iter()
        .filter_map(|d| {
            let c = d.comment.as_deref()?;
            let c: String = c.chars().take(300).collect();
            Some(format!("{}: {}", d.by, hide(&c)))
        })
        .collect();
    (by, comments)
}

/// The pending list (`/ui`: soonest expiry first) or the history (`/ui/history`: newest
/// first), one page at a time, with the filters, the total and a link to the next page.
pub(super) async fn list_page(
    dash: &Dashboard,
    admin: &Admin,
    base: &str,
    listing: Result<Listing, (&'static str, String)>,
    reviewer: &Reviewer,
    csrf: &str,
    note: Option<String>,
) -> Response<Body> {
    let version = dash.version(admin);
    let now = admin.gate.now_ms();
    let people = admin.gate.people().current();
    let pending_only = base == "/ui";
    let listing = match listing {
        Ok(l) => l,
        Err((_, message)) => {
            return html_response(
                StatusCode::BAD_REQUEST,
                format!("<h1>{}</h1>", html_escape(&message)),
            )
        }
    };
    let q = listing.query.clone();
    let page = admin
        .gate
        .list_page(q.clone(), listing.limit, listing.cursor.clone())
        .await;
    let totals = admin.gate.totals().await.unwrap_or_default();
    let total: u64 = totals
        .iter()
        .filter(|(s, _)| q.state.is_none_or(|want| want == *s))
        .map(|(_, n)| n)
        .sum();
    let (rows, next, message): (Vec<Row>, Option<String>, Option<String>) = match page {
        Ok(p) => {
            let rows = p
                .reviews
                .iter()
                .map(|r| row(r, now, &people, false))
                .collect();
            let next = p.next_cursor.map(|c| {
                let mut qs = form_urlencoded::Serializer::new(String::new());
                if !pending_only {
                    if let Some(s) = q.state {
                        qs.append_pair("state", s.as_str());
                    }
                }
                if let Some(a) = &q.agent {
                    qs.append_pair("agent", a);
                }
                if let Some(t) = &q.tool {
                    qs.append_pair("tool", t);
                }
                qs.append_pair("limit", &listing.limit.to_string());
                qs.append_pair("cursor", &c);
                format!("{base}?{}", qs.finish())
            });
            (rows, next, note)
        }
        Err(e) => (Vec::new(), None, Some(format!("Reviews unavailable: {e}"))),
    };
    let state_name = q.state.map(ReviewState::as_str).unwrap_or("");
    dash.render(
        "list.html",
        context! {
            title => if pending_only { "Pending reviews" } else { "History" },
            action => base,
            pending_only => pending_only,
            reviews => rows,
            total => total,
            total_label => if q.state.is_some() { format!("{total} {state_name} in all") } else { format!("{total} reviews in all") },
            filtered => q.agent.is_some() || q.tool.is_some(),
            next => next,
            first => listing.cursor.is_some(),
            reviewer => reviewer.name,
            csrf => csrf,
            message => message,
            filters => context! {
                state => state_name,
                tool => q.tool.clone().unwrap_or_default(),
                agent => q.agent.clone().unwrap_or_default(),
            },
            states => ReviewState::ALL.map(ReviewState::as_str),
            version => version,
        },
    )
}

pub(super) async fn detail_page(
    dash: &Dashboard,
    admin: &Admin,
    id: &str,
    reviewer: &Reviewer,
    csrf: &str,
    message: Option<String>,
) -> Response<Body> {
    let version = dash.version(admin);
    let review = match admin.gate.get(id).await {
        Ok(r) => r,
        Err(e) => {
            return html_response(
                StatusCode::NOT_FOUND,
                format!("<h1>{}</h1>", html_escape(&e.to_string())),
            )
        }
    };
    let audit = admin.gate.audit().clone();
    let rid = id.to_string();
    // The review's own entries, then the first resends that joined it (their count apart).
    let (entries, more_joins, archived) = tokio::task::spawn_blocking(move || {
        let mut entries = audit.entries_for_review(&rid, 1000).unwrap_or_default();
        // Its first entry (the hold's decision) gone: the history began before the log's
        // start, and `airlock audit archive` moved that part to a file.
        let held = entries
            .iter()
            .any(|e| e.get("kind").and_then(|k| k.as_str()) == Some("decision"));
        let archived = match held {
            true => None,
            false => audit.log_start().ok().flatten().map(|s| s.seq),
        };
        let joins = audit.joins_of_review(&rid, JOINS_SHOWN).unwrap_or_default();
        let count = audit.join_count(&rid, MOST_JOINS).unwrap_or(joins.len());
        let more = count.saturating_sub(joins.len());
        entries.extend(joins);
        entries.sort_by_key(|e| e.get("seq").and_then(|v| v.as_u64()).unwrap_or(0));
        (entries, more, archived)
    })
    .await
    .unwrap_or_default();
    #[derive(Serialize)]
    struct AuditRow {
        seq: String,
        ts: String,
        kind: String,
        what: String,
    }
    let mut audit_rows: Vec<AuditRow> = entries
        .iter()
        .map(|e| AuditRow {
            seq: e
                .get("seq")
                .and_then(|v| v.as_u64())
                .map(|s| s.to_string())
                .unwrap_or_default(),
            ts: e
                .get("ts")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            kind: e
                .get("kind")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            what: summary(e),
        })
        .collect();
    if let Some(seq) = archived {
        audit_rows.insert(
            0,
            AuditRow {
                seq: String::new(),
                ts: String::new(),
                kind: "archived".into(),
                what: format!(
                    "earlier entries archived: the audit log begins at seq {seq} (`airlock audit \
                     archive`)"
                ),
            },
        );
    }
    if more_joins > 0 {
        audit_rows.push(AuditRow {
            seq: String::new(),
            ts: String::new(),
            kind: "decision".into(),
            what: format!("and {more_joins} more identical retries that joined this review"),
        });
    }
    dash.render(
        "detail.html",
        context! {
            title => review.tools_shown().unwrap_or_else(|| review.id.clone()),
            r => row(&review, admin.gate.now_ms(), &admin.gate.people().current(), true),
            audit => audit_rows,
            sender_gone => admin.sender_gone(&review).map(|gone| {
                let (headline, rest) =
                    gone.warning(&super::show::visible(review.agent.as_deref().unwrap_or("?")));
                format!("{headline}; {rest}")
            }),
            reviewer => reviewer.name,
            csrf => csrf,
            message => message,
            version => version,
            self_url => format!("/ui/reviews/{}", review.id),
        },
    )
}

/// Resends that joined a review shown on its page (the rest are counted).
const JOINS_SHOWN: usize = 20;

fn summary(e: &serde_json::Value) -> String {
    let s = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("");
    match s("kind") {
        "decision" => {
            let mut t = format!(
                "{} ({} gate) by rule {}",
                s("outcome"),
                s("gate"),
                s("rule_id")
            );
            // An identical retry of the agent's that was answered with this review.
            if e.get("joined").and_then(|v| v.as_bool()) == Some(true) {
                t.push_str(", an identical retry joined this review");
            }
            t
        }
        "review" => {
            let mut t = format!("{} → {}", s("from"), s("to"));
            for k in ["by", "approval_by", "comment", "error"] {
                if !s(k).is_empty() {
                    t.push_str(&format!(", {k}: {}", s(k)));
                }
            }
            if let Some(st) = e.get("upstream_status").and_then(|v| v.as_u64()) {
                t.push_str(&format!(", upstream status {st}"));
            }
            t
        }
        other => other.to_string(),
    }
}

fn human(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Security review: the retry box said a retry carries "the same Idempotency-Key" whatever
    /// the request; only Stripe calls get one (`gate/hold.rs`). Without one it says nothing
    /// guards against running the call twice. A key the service ignores (GitHub's) protects
    /// nothing either, nor does Stripe's on a DELETE (Stripe honours keys on POST only): the
    /// box says so rather than promise "at most once".
    #[test]
    fn the_retry_box_names_the_idempotency_key_only_when_there_is_one() {
        let dash = super::super::Dashboard::new();
        // (method, host, headers, state, said, not said)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [(&'a str, &'a str)],
            ReviewState,
            &'a str,
            &'a str,
        );
        let cases: &[Case] = &[
            (
                "POST",
                "api.stripe.com",
                &[("idempotency-key", "airlock-r1")],
                ReviewState::OutcomeUnknown,
                "with the same Idempotency-Key (airlock-r1)",
                "nothing protects",
            ),
            (
                "DELETE",
                "api.github.com",
                &[],
                ReviewState::OutcomeUnknown,
                "It carries no Idempotency-Key: nothing protects a retry from running the call twice",
                "with the same Idempotency-Key",
            ),
            (
                "DELETE",
                "api.github.com",
                &[("Idempotency-Key", "k-42")],
                ReviewState::Failed,
                "It carries an Idempotency-Key (k-42), but api.github.com does not honour one: nothing protects a retry from running the call twice",
                "runs the call at most once",
            ),
            (
                "DELETE",
                "api.stripe.com",
                &[("idempotency-key", "airlock-r1")],
                ReviewState::OutcomeUnknown,
                "but api.stripe.com does not honour one on a DELETE request (only on POST): nothing protects a retry from running the call twice",
                "runs the call at most once",
            ),
        ];
        for (method, host, headers, state, said, not_said) in cases {
            let mut r = Review::sample(method, host, "/repos/o/r", None, b"");
            for (k, v) in *headers {
                r.request.headers.push(((*k).into(), (*v).into()));
            }
            r.state = *state;
            let html = dash
                .env
                .get_template("detail.html")
                .and_then(|t| {
                    t.render(context! {
                        r => row(&r, 0, &People::default(), true),
                        audit => Vec::<String>::new(),
                    })
                })
                .expect("renders");
            let text = html.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(text.contains(said), "{host}: {said} in {text}");
            assert!(!text.contains(not_said), "{host}: {not_said} in {text}");
            // The retry form names the attempt it retries (defect 8).
            assert!(
                text.contains(r#"name="attempts" value="0""#),
                "{host}: attempts in {text}"
            );
        }
    }
}
