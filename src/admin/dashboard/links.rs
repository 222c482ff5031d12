//! One-click links from notifications: a GET shows a confirmation page only (mail scanners
//! prefetch links), with what the review asks to send summed up as on its detail page; the POST
//! from that page redeems the single-use token and decides.
//!
//! A link is honest about what it can still do: on a GET and before a POST decides, the link is
//! checked against the reviewers in force (a removed reviewer's link is revoked, and so is one
//! minted before its reviewer's token changed, as her sessions end then), the review's
//! state and its current deadline (a link follows `extend`, and expires with the review), and
//! the review's policy for the link's reviewer. Anything refused there shows that state and does
//! not use the link up; a decision the gate refuses after all gives the link back.

use http::{Response, StatusCode};

use super::{html_escape, html_response};
use crate::admin::Admin;
use crate::credentials::redact;
use crate::gate::{GateError, Review, ReviewState, Reviewer};
use crate::notify::{LinkAction, LinkClaims, LinkError};
use crate::wire::Body;

fn link_message(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    html_response(
        status,
        format!(
            "<!doctype html><title>Airlock</title><h1 id=\"title\">{}</h1><p id=\"text\">{}</p>",
            html_escape(title),
            html_escape(text)
        ),
    )
}

fn link_error(e: &LinkError) -> Response<Body> {
    let (title, text) = match e {
        LinkError::Expired => (
            "Link expired",
            "This link has expired; open the dashboard instead.",
        ),
        LinkError::AlreadyUsed => (
            "Link already used",
            "Each link works once; open the dashboard to see the review.",
        ),
        LinkError::Malformed | LinkError::BadSignature => {
            ("Invalid link", "This link is not valid.")
        }
        _ => (
            "Link unavailable",
            "The link could not be checked; try the dashboard.",
        ),
    };
    link_message(StatusCode::FORBIDDEN, title, text)
}

/// A link that may still decide: its claims, its reviewer as configured now, and the review.
struct Live {
    claims: LinkClaims,
    reviewer: Reviewer,
    review: Review,
}

/// Everything a link is checked against before it may decide; `Err` is the page to show (the
/// link is not used up).
async fn check(admin: &Admin, token: &str) -> Result<Live, Response<Body>> {
    let claims = admin
        .links
        .verify_signature(token)
        .map_err(|e| link_error(&e))?;
    let people = admin.gate.people().current();
    let revoked = |why: &str| {
        link_message(
            StatusCode::FORBIDDEN,
            "Link revoked",
            &format!(
                "This link was sent to {}, {why}; it no longer works.",
                claims.reviewer
            ),
        )
    };
    let Some(config) = people.config_by_name(&claims.reviewer) else {
        return Err(revoked("who is no longer a reviewer"));
    };
    if !admin.links.binds(&claims, &config.token_sha256) {
        return Err(revoked("whose reviewer token has changed since"));
    }
    let reviewer = Reviewer::from_config(config);
    let store = admin.gate.store().clone();
    let links = admin.links.clone();
    let (c, t) = (claims.clone(), token.to_string());
    let used = move || {
        links.check_not_before(store.as_ref(), &c)?;
        links.is_used(store.as_ref(), &c, &t)
    };
    match tokio::task::spawn_blocking(used).await {
        Ok(Ok(false)) => {}
        Ok(Ok(true)) => return Err(link_error(&LinkError::AlreadyUsed)),
        Ok(Err(e)) => return Err(link_error(&e)),
        Err(_) => return Err(link_error(&LinkError::Malformed)),
    }
    let review = match admin.gate.get(&claims.review_id).await {
        Ok(r) => r,
        Err(GateError::NotFound(_)) => {
            return Err(link_message(
                StatusCode::NOT_FOUND,
                "Unknown review",
                "The review this link is for does not exist.",
            ))
        }
        Err(e) => {
            return Err(link_message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Link unavailable",
                &e.to_string(),
            ))
        }
    };
    if review.state != ReviewState::Pending {
        let by = review
            .decision
            .as_ref()
            .map(|d| format!(" (decided by {})", d.by))
            .unwrap_or_default();
        return Err(link_message(
            StatusCode::CONFLICT,
            &format!("Review already {}", review.state.as_str()),
            &format!(
                "Review {} is {}{by}; this link can no longer decide it.",
                review.id,
                review.state.as_str()
            ),
        ));
    }
    if admin.gate.now_ms() >= review.expires_at_ms {
        return Err(link_message(
            StatusCode::CONFLICT,
            "Review expired",
            &format!(
                "Review {} expired at {}; an expired review is a rejection.",
                review.id,
                crate::gate::review::rfc3339(review.expires_at_ms)
            ),
        ));
    }
    let allowed = match claims.action {
        LinkAction::Approve => review.may_send(&reviewer, &people, "approve"),
        LinkAction::Reject => review.may_reject(&reviewer, &people),
    };
    if let Err(why) = allowed {
        return Err(link_message(StatusCode::FORBIDDEN, "Not allowed", &why));
    }
    if claims.action == LinkAction::Approve && review.already(&review.approvals, &reviewer, &people)
    {
        return Err(link_message(
            StatusCode::CONFLICT,
            "Already approved",
            &format!(
                "{} already approved review {}: {} approvals so far.",
                reviewer.name,
                review.id,
                review.quorum_progress(&review.approvals, &people)
            ),
        ));
    }
    Ok(Live {
        claims,
        reviewer,
        review,
    })
}

/// A note for a page seen by someone signed in as another reviewer than the link's.
fn other_reviewer_note(link_reviewer: &Reviewer, signed_in: Option<&Reviewer>) -> String {
    match signed_in {
        Some(me) if !crate::person::same(&me.name, &link_reviewer.name) || me.admin_token => {
            format!(
                "<p id=\"other\"><b>This link is {link}'s.</b> You are signed in as {me}; \
                 confirming decides as {link}, not as you.</p>",
                link = html_escape(&link_reviewer.name),
                me = html_escape(&me.name),
            )
        }
        _ => String::new(),
    }
}

/// Is the stored body left off a link's page? Past [`redact::MOST_BODY_SECRETS`] secret-named
/// values to mask one by one, or JSON with a key given twice (a secret under the earlier one
/// would not be found). Then the link cannot approve: its reviewer would approve arguments she
/// never saw; the dashboard, behind a session, shows the body whole.
fn withheld(body: &[u8], secrets: &[String]) -> bool {
    secrets.len() > redact::MOST_BODY_SECRETS || super::arguments::json_key_twice(body)
}

/// [`withheld`] for review `r`'s stored body.
fn body_withheld(r: &Review) -> bool {
    let body = r.request.body().unwrap_or_default();
    withheld(&body, &redact::secret_body_values(&body))
}

/// The warning for a review whose agent is no longer the one configured under its name.
fn removed_agent_warning(agent: &str, gone: super::SenderGone) -> String {
    let (headline, rest) = gone.warning(agent);
    let mut rest = rest.to_string();
    if let Some(first) = rest.get(..1) {
        rest.replace_range(..1, &first.to_uppercase());
    }
    format!(
        "<p id=\"agent-removed\" role=\"alert\"><b>Warning: {}.</b> {}.</p>",
        html_escape(&headline),
        html_escape(&rest)
    )
}

/// What the review asks to send, as its detail page sums it up (`views::sum_up`): two held
/// calls with the same path and different bodies read differently here. Why it was held and
/// the whole stored request (every header: `Stripe-Account`, a method override, an encoding)
/// are shown too, so a reviewer deciding from a link sees what the detail page shows.
fn request_summary(r: &Review) -> String {
    let body = r.request.body().unwrap_or_default();
    let s = super::views::sum_up(r, &body);
    // A link's bearer (a mail scanner, whoever the mail reaches) is not a signed-in reviewer:
    // secret-named body fields (a webhook's `config.secret`) are masked here, wherever their
    // values show.
    let secrets = redact::secret_body_values(&body);
    let withheld = withheld(&body, &secrets);
    // Withheld or not, what else the page shows (arguments, money, warnings) stays masked.
    let secrets = redact::with_clipped_forms(&secrets);
    let body = if withheld { Vec::new() } else { body };
    let query_hide = super::views::hider(r);
    let hide = |t: &str| query_hide(&redact::mask_values(t, &secrets));
    let url = hide(&s.url);
    // Masked before the escapes of invisible characters, so a secret holding one still matches;
    // the unmasked text only counts echoes.
    let stored = super::views::stored_request_text(r, &s.url, &body, &hide);
    let shown = super::views::stored_request_text(r, &s.url, &body, &query_hide);
    // A body spelled with needless `\u` escapes, decoded as every parser reads it: masked as
    // the stored text is (a secret's decoded value is found there as read).
    let decoded = s
        .decoded_body
        .as_deref()
        .filter(|_| !withheld)
        .map(|d| {
            format!(
                "<p>The stored body decoded, as every JSON parser reads it:</p>\
                 <pre id=\"request-decoded\">{}</pre>",
                html_escape(&super::show::collapse_blanks(&hide(d)))
            )
        })
        .unwrap_or_default();
    let encoded = s
        .encoded
        .as_deref()
        .map(|e| {
            format!(
                "<p id=\"encoded\" role=\"alert\"><b>Warning: the body is content-encoded ({}).</b> \
                 The service decodes it before reading it: what it reads is not shown here.</p>",
                html_escape(e)
            )
        })
        .unwrap_or_default();
    let escapes = s
        .escapes
        .as_deref()
        .map(|e| {
            format!(
                "<p id=\"escapes\" role=\"alert\"><b>Warning: {}.</b> Approving sends the bytes \
                 as stored.</p>",
                html_escape(&redact::mask_values(e, &secrets))
            )
        })
        .unwrap_or_default();
    let stored = if withheld {
        format!("{stored}\n[body not shown here: more than {} secret-named values to mask, or JSON with a key given twice; open the review in the dashboard]", redact::MOST_BODY_SECRETS)
    } else {
        stored
    };
    // A value that also shows outside its own field is masked there too: say so, as for a
    // secret query value's echo (the agent chose it; what it hides may matter). Counted in
    // the shown text (bounded: 16 KiB of body), for at most MOST_BODY_SECRETS values: the
    // request, its decoded reading, the summary and its warnings, and why it was held (the
    // rule's explanation quotes the agent's values: "over $100[redacted]" hid the amount). The
    // tool and reason codes are Airlock's own and shown unmasked.
    let explanation = [r.explanation.clone(), query_hide(&r.explanation)];
    let echoed = secrets.iter().any(|v| {
        let v = v.as_str();
        shown.matches(v).count() > 1
            || s.decoded_body
                .as_deref()
                .is_some_and(|d| d.matches(v).count() > 1)
            || s.url.contains(v)
            || s.args.iter().any(|a| a.contains(v))
            || s.money.as_deref().is_some_and(|m| m.contains(v))
            || s.ambiguous.iter().any(|a| a.contains(v))
            || s.escapes.as_deref().is_some_and(|e| e.contains(v))
            || explanation.iter().any(|e| e.contains(v))
    });
    let money = s
        .money
        .map(|m| {
            format!(
                "<p>Amount: <span class=\"money\">{}</span></p>",
                html_escape(&redact::mask_values(&m, &secrets))
            )
        })
        .unwrap_or_default();
    let args: String = s
        .args
        .iter()
        .map(|a| {
            format!(
                "<code>{}</code> ",
                html_escape(&redact::mask_values(a, &secrets))
            )
        })
        .collect();
    let warning = if s.ambiguous.is_empty() {
        String::new()
    } else {
        format!(
            "<p id=\"ambiguous\" role=\"alert\"><b>Warning: {} read more than one way.</b> \
             Servers may act on any of the values below; approving sends the request as stored.</p>",
            html_escape(&redact::mask_values(&s.ambiguous.join(", "), &secrets))
        )
    };
    let masked = if !s.masked_echo.is_empty() || echoed {
        let names = if s.masked_echo.is_empty() {
            String::new()
        } else {
            format!(
                " (the secret-named query parameter {})",
                html_escape(&s.masked_echo.join(", "))
            )
        };
        format!(
            "<p id=\"masked-echo\" role=\"alert\"><b>Warning: a masked value also appears \
             elsewhere.</b> Text in this request's headers, URL, body or arguments, or in why it was \
             held, equals the value \
             of a secret-named query parameter{names} or body field and is shown as [redacted…]. \
             The agent chose that value: what it hides may be what matters.</p>"
        )
    } else {
        String::new()
    };
    format!(
        "<div id=\"request\"><p><b>{method} {url}</b></p><p>Tool {tool} · agent {agent}</p>\
         <p>Held: {why} · reasons {reasons}</p>\
         {warning}{masked}{encoded}{escapes}{money}<p>Arguments: {args}</p>\
         <p>Stored request, sent as it is (credentials are added by Airlock):</p>\
         <pre id=\"stored-request\">{stored}</pre>{decoded}</div>",
        why = html_escape(&hide(&r.explanation)),
        reasons = html_escape(&r.reason_codes.join(", ")),
        stored = html_escape(&stored),
        method = html_escape(&r.request.method),
        url = html_escape(&url),
        tool = html_escape(r.tools_shown().as_deref().unwrap_or("-")),
        agent = html_escape(r.agent.as_deref().unwrap_or("-")),
    )
}

/// An approve link whose review's body its page does not show ([`withheld`]), or shows only as
/// content-encoded bytes (what the service reads, decoded, is not shown anywhere), cannot
/// approve: its page offers Reject in its stead (`/ui/link/{token}/reject`), and the dashboard,
/// where the whole request and its warnings show.
fn approves_unseen(live: &Live) -> bool {
    live.claims.action == LinkAction::Approve
        && (body_withheld(&live.review) || super::views::encoded_body(&live.review).is_some())
}

/// GET: shows what the link would do, or why it cannot; never decides.
pub(super) async fn link_page(
    admin: &Admin,
    token: &str,
    signed_in: Option<&Reviewer>,
) -> Response<Body> {
    let live = match check(admin, token).await {
        Ok(l) => l,
        Err(page) => return page,
    };
    let action = live.claims.action.as_str();
    let (title, form) = if approves_unseen(&live) {
        (
            format!("This link cannot approve review {}", live.review.id),
            "<p id=\"approve-unseen\" role=\"alert\"><b>The request's body is not shown here (or \
             only content-encoded, as the service does not read it), so this link cannot approve \
             it.</b> Open the review in the dashboard to read the whole \
             request and approve it there, or reject it here.</p>\
             <form method=\"post\" action=\"/ui/link/{token}/reject\">\
             <button id=\"reject\">reject as {who}</button></form>",
        )
    } else {
        (
            format!("Confirm: {action} review {}", live.review.id),
            "<form method=\"post\" action=\"/ui/link/{token}\">\
             <button id=\"confirm\">{action} as {who}</button></form>",
        )
    };
    let who = html_escape(&live.reviewer.name);
    let form = form
        .replace("{token}", &html_escape(token))
        .replace("{action}", action)
        .replace("{who}", &who);
    html_response(
        StatusCode::OK,
        format!(
            "<!doctype html><title>Airlock</title><h1 id=\"title\">{title}</h1>\
             {other}{restored}{removed}{request}<p>As reviewer <b>{who}</b>. Nothing happens until you press the button. \
             This link works until {deadline}.</p>{form}\
             <p><a id=\"dashboard\" href=\"/ui/reviews/{id}\">Open the review in the dashboard</a></p>",
            title = html_escape(&title),
            id = html_escape(&live.review.id),
            other = other_reviewer_note(&live.reviewer, signed_in),
            request = request_summary(&live.review),
            restored = live.review.restored.as_ref().map_or(String::new(), |m| format!(
                "<p id=\"restored\" role=\"alert\"><b>Warning: {}.</b></p>",
                html_escape(&m.warning)
            )),
            removed = match admin.sender_gone(&live.review) {
                Some(gone) => removed_agent_warning(live.review.agent.as_deref().unwrap_or("-"), gone),
                None => String::new(),
            },
            deadline = crate::gate::review::rfc3339(live.review.expires_at_ms),
        ),
    )
}

/// POST from the confirmation page: checks the link as the GET does, redeems it, and decides as
/// the link's reviewer (whoever is signed in). A refused decision gives the link back. An
/// approve link whose page withholds the body ([`approves_unseen`]) only rejects, and only
/// when asked to (`reject`); asked to approve, it refuses and is not used up.
pub(super) async fn link_decide(
    admin: &Admin,
    token: &str,
    reject: bool,
    signed_in: Option<&Reviewer>,
) -> Response<Body> {
    let mut live = match check(admin, token).await {
        Ok(l) => l,
        Err(page) => return page,
    };
    // Asked to reject (`…/reject`): it rejects or refuses, never approves, whatever the page
    // showed; asked to approve a body its page withholds: refused, the link kept.
    if !reject && approves_unseen(&live) {
        return html_response(
            StatusCode::CONFLICT,
            format!(
                "<!doctype html><title>Airlock</title><h1 id=\"title\">Approve in the dashboard</h1>\
                 <p id=\"text\">The request's body is not shown on a link's page (or only \
                 content-encoded), so this link cannot approve it; nothing was decided and the link still works to reject.</p>\
                 <p><a id=\"dashboard\" href=\"/ui/reviews/{id}\">Open the review in the dashboard</a></p>",
                id = html_escape(&live.review.id),
            ),
        );
    }
    if reject {
        if let Err(why) = live
            .review
            .may_reject(&live.reviewer, &admin.gate.people().current())
        {
            return link_message(StatusCode::FORBIDDEN, "Not allowed", &why);
        }
        live.claims.action = LinkAction::Reject;
    }
    let store = admin.gate.store().clone();
    let links = admin.links.clone();
    let (c, t) = (live.claims.clone(), token.to_string());
    match tokio::task::spawn_blocking(move || links.consume(store.as_ref(), &c, &t)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return link_error(&e),
        Err(_) => {
            return link_message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Link unavailable",
                "Try the dashboard.",
            )
        }
    }
    let comment = Some("decided via one-click link".to_string());
    let id = &live.claims.review_id;
    let result = match live.claims.action {
        LinkAction::Approve => admin.gate.approve(id, &live.reviewer, comment).await,
        LinkAction::Reject => admin.gate.reject(id, &live.reviewer, comment).await,
    };
    let note = signed_in
        .filter(|me| !crate::person::same(&me.name, &live.reviewer.name) || me.admin_token)
        .map(|_| format!(" Decided as {}, the link's reviewer.", live.reviewer.name))
        .unwrap_or_default();
    match result {
        Ok(r) if r.state == ReviewState::Pending => {
            let people = admin.gate.people().current();
            link_message(
                StatusCode::OK,
                "Approval recorded",
                &format!(
                    "{} approvals so far.{note}",
                    r.quorum_progress(&r.approvals, &people)
                ),
            )
        }
        Ok(r) => link_message(
            StatusCode::OK,
            "Done",
            &format!("The review is now {}.{note}", r.state.as_str()),
        ),
        // The approval is recorded: the link is used up, and its page says what happened.
        Err(e @ GateError::SendPending(_)) => link_message(
            StatusCode::ACCEPTED,
            "Approved; not sent yet",
            &format!("{e}{note}"),
        ),
        Err(e @ GateError::Unrecorded(_)) => link_message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Outcome not recorded",
            &format!("{e}{note}"),
        ),
        Err(e) => {
            // Refused (not allowed, decided or expired meanwhile): the link was not used up.
            if matches!(
                e,
                GateError::Forbidden(_)
                    | GateError::AlreadyDecided { .. }
                    | GateError::Expired { .. }
                    | GateError::NotFound(_)
                    | GateError::BadRequest(_)
                    | GateError::Contention(_)
            ) {
                let store = admin.gate.store().clone();
                let links = admin.links.clone();
                let (c, t) = (live.claims.clone(), token.to_string());
                let released =
                    tokio::task::spawn_blocking(move || links.release(store.as_ref(), &c, &t))
                        .await;
                if !matches!(released, Ok(Ok(()))) {
                    tracing::warn!(target: "airlock::admin", review = %id, "a refused link could not be given back");
                }
            }
            link_message(StatusCode::CONFLICT, "Not done", &e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review: a secret-named body field set to text the rule's explanation quotes masked the
    /// explanation's key part ("Charge possibly over $100[redacted]") and the page raised no
    /// warning: the explanation was not among the texts checked for echoes.
    #[test]
    fn a_secret_echoed_in_the_explanation_is_flagged() {
        let mut r = Review::sample(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            Some("stripe.charges.create"),
            b"amount=100&currency=usd&metadata[secret]=000.00 USD to acct_evil",
        );
        r.explanation = "Charge possibly over $100000.00 USD to acct_evil".into();
        let html = request_summary(&r);
        assert!(html.contains("id=\"masked-echo\""), "{html}");
        assert!(!html.contains("acct_evil"), "{html}");
        let mut plain = Review::sample(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            Some("stripe.charges.create"),
            b"amount=100&currency=usd&metadata[secret]=nothing-shown-twice",
        );
        plain.explanation = "Charge possibly over $100".into();
        assert!(!request_summary(&plain).contains("id=\"masked-echo\""));
    }
}
