//! Sealing a review that can never send again (executed, rejected, expired; failed or
//! outcome unknown once its deadline passed, which the sweep marks `retry_closed`): the values of the
//! stored request's secret-named body fields and query parameters are erased
//! ([`crate::credentials::seal`]), and so is every echo of them elsewhere in the record (headers,
//! the explanation, rule parameters, comments, the answers), as the views masked them. Done in
//! the transition's own write, so no final review keeps them; `sealed_secrets` says how many
//! went, because the request kept is then no longer byte for byte what was sent.

use super::review::{b64, Decision, Execution, Review, ReviewState};
use crate::credentials::echo::QueryEchoes;
use crate::credentials::{redact, seal as erase};

/// Seals `r` if it can never send again and holds secret-named values.
pub(super) fn seal(r: &mut Review) {
    let ended = matches!(
        r.state,
        ReviewState::Executed | ReviewState::Rejected | ReviewState::Expired
    ) || r.retry_closed;
    if r.sealed_secrets > 0 || !ended {
        return;
    }
    // A body that is not base64 (a damaged record) is left for the views to report.
    let Ok(body) = r.request.body() else {
        return;
    };
    let (sealed_body, in_body) = erase::seal_body(&body);
    let (sealed_query, in_query) = erase::seal_query(&r.request.path_and_query);
    // Credentials inside URL values (a webhook's `?token=`, a `user:pass@`): erased wherever
    // they show, the body included.
    let (in_urls, url_secrets) = erase::url_secret_values(&body);
    if in_body + in_query + url_secrets == 0 {
        return;
    }
    let echoes = Echoes::of(r, &body, in_urls);
    r.request.path_and_query = echoes.text(&sealed_query);
    r.request.body_b64 = b64(&echoes.bytes(&sealed_body));
    for (_, v) in &mut r.request.headers {
        *v = echoes.text(v);
    }
    r.explanation = echoes.text(&r.explanation);
    for (name, v) in &mut r.params {
        *v = redact::shown_param(name, &echoes.text(v)).to_string();
    }
    let decisions = r
        .approvals
        .iter_mut()
        .chain(&mut r.retries)
        .chain(&mut r.retry_approvals)
        .chain(&mut r.decision);
    for d in decisions {
        seal_decision(d, &echoes);
    }
    for e in r.attempts.iter_mut().chain(&mut r.execution) {
        seal_execution(e, &echoes);
    }
    // The join's fingerprint hashes the request as sent, erased values included: with the rest
    // kept, a guess at a short secret (a CVC, a PIN) could be checked against it offline. Its
    // index entry went with the final state (or the closing of a retryable one); the
    // Content-Length gave the erased values' length.
    r.join = None;
    r.request
        .headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
    r.sealed_secrets = in_body + in_query + url_secrets;
}

/// `comment` with the values of `r`'s secret-named query parameters and body fields masked, as
/// the audit log records a reviewer's comment: its entries are never erased, so a comment
/// quoting what the agent sent must not carry it there.
pub(super) fn masked_comment(r: &Review, comment: &str) -> String {
    let body = r.request.body().unwrap_or_default();
    let in_urls = erase::url_secret_values(&body).0;
    Echoes::of(r, &body, in_urls).text(comment)
}

/// The secret values of the original request, to be masked wherever they echo.
struct Echoes {
    query: QueryEchoes,
    /// Secret-named body values long enough to mask where they echo, longest first.
    body: Vec<String>,
}

impl Echoes {
    /// The secret values of `r`'s query and of its `body`: secret-named fields, and `in_urls`,
    /// the credentials inside its URL values ([`erase::url_secret_values`]), longest first.
    fn of(r: &Review, body: &[u8], in_urls: Vec<String>) -> Echoes {
        let mut values = redact::secret_body_values(body);
        values.extend(in_urls);
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Echoes {
            query: QueryEchoes::of(&r.request.path_and_query),
            body: values,
        }
    }

    fn text(&self, s: &str) -> String {
        redact::mask_values(&self.query.mask(s), &self.body)
    }

    fn bytes(&self, b: &[u8]) -> Vec<u8> {
        match std::str::from_utf8(b) {
            Ok(s) => self.text(s).into_bytes(),
            Err(_) => {
                let mut values = self.query.values();
                values.extend(self.body.iter().cloned());
                values.sort_by_key(|v| std::cmp::Reverse(v.len()));
                redact::mask_bytes(b, &values).0
            }
        }
    }
}

fn seal_decision(d: &mut Decision, echoes: &Echoes) {
    if let Some(c) = &mut d.comment {
        *c = echoes.text(c);
    }
}

fn seal_execution(e: &mut Execution, echoes: &Echoes) {
    if let Ok(body) =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &e.body_b64)
    {
        e.body_b64 = b64(&echoes.bytes(&body));
    }
    for (_, v) in &mut e.headers {
        *v = echoes.text(v);
    }
    if let Some(err) = &mut e.error {
        *err = echoes.text(err);
    }
}
