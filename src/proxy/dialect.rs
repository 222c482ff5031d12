//! Each client's language for the answers Airlock gives itself (held calls, blocks, refusals):
//! Stripe's libraries read `error` as an object (`type`, `code`, `message`) and raise nothing
//! useful from anything else (stripe-python takes a string `error` for an OAuth error and
//! crashes); GitHub's clients (Octokit, gh) print `message` and `documentation_url`. The family
//! is decided by the rule's service, else by the host, the same way for every answer.

use http::{HeaderMap, HeaderValue, Response};

use crate::wire::{Body, Refusal};

/// What a held call means and what to do about it (the page on `airlock.local`).
pub const HELD_DOC_URL: &str = "https://airlock.local/#held";
/// What Airlock's own refusals mean (the page on `airlock.local`).
pub const REFUSED_DOC_URL: &str = "https://airlock.local/#refused";

/// The API family an answer imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Stripe,
    GitHub,
    Other,
}

impl Family {
    /// By the rule's service, else by the host.
    pub fn of(service: Option<&str>, host: &str) -> Family {
        match service {
            Some("stripe") => Family::Stripe,
            Some("github") => Family::GitHub,
            _ if host == "api.stripe.com" => Family::Stripe,
            _ if host == "api.github.com" || host == "github.com" => Family::GitHub,
            _ => Family::Other,
        }
    }
}

/// Stripe's error object (`type`, `code`, `message`, `doc_url`) for an answer Airlock gives
/// itself on Stripe: its libraries otherwise fail with "Invalid response object from API".
pub fn stripe_error(kind: &str, code: &str, message: &str, doc_url: &str) -> serde_json::Value {
    serde_json::json!({
        "type": kind,
        "code": code,
        "message": message,
        "doc_url": doc_url,
    })
}

/// Stripe's libraries retry only when told they may; a retry of a gated call would queue
/// another review.
pub fn no_stripe_retry(h: &mut HeaderMap) {
    h.insert("stripe-should-retry", HeaderValue::from_static("false"));
}

/// Dresses a blocked request's JSON for the client: Stripe's error object on Stripe. True if it
/// did (the answer then also gets [`no_stripe_retry`]).
pub fn dress_blocked(body: &mut serde_json::Value, service: Option<&str>, host: &str) -> bool {
    if Family::of(service, host) != Family::Stripe {
        return false;
    }
    let message = body["message"]
        .as_str()
        .unwrap_or("blocked by Airlock's rules")
        .to_string();
    body["error"] = stripe_error(
        "invalid_request_error",
        "airlock_blocked",
        &message,
        HELD_DOC_URL,
    );
    true
}

/// Whether a Stripe library may repeat a refused call by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing was stored or sent: a 5xx keeps the library's own choice (it retries 5xx).
    Harmless,
    /// Never (`Stripe-Should-Retry: false`), whatever the status.
    Never,
}

/// `refusal` in `family`'s language. On Stripe, `error` becomes Stripe's error object
/// (`invalid_request_error` for 4xx, `api_error` for 5xx; `code` is `airlock_<code>`) and a 4xx
/// (or any answer after which a retry is not harmless) says `Stripe-Should-Retry: false`; on
/// GitHub, `documentation_url` joins `message`. `side`, `message` and `Airlock-Reason` stay.
pub fn refusal(refusal: Refusal, family: Family, retry: Retry) -> Response<Body> {
    let (status, code) = (refusal.status, refusal.code);
    let mut resp = refusal.into_response_with(|body| match family {
        Family::Stripe => {
            let kind = match status.is_server_error() {
                true => "api_error",
                false => "invalid_request_error",
            };
            let message = body["message"].as_str().unwrap_or_default().to_string();
            let code = format!("airlock_{code}");
            body["error"] = stripe_error(kind, &code, &message, REFUSED_DOC_URL);
        }
        Family::GitHub => body["documentation_url"] = REFUSED_DOC_URL.into(),
        Family::Other => {}
    });
    if family == Family::Stripe && (retry == Retry::Never || !status.is_server_error()) {
        no_stripe_retry(resp.headers_mut());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use http_body_util::BodyExt;

    async fn json(resp: Response<Body>) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn a_refusal_reads_as_each_clients_error() {
        let r = || Refusal::client(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "too big");
        let stripe = refusal(r(), Family::Stripe, Retry::Harmless);
        assert_eq!(stripe.headers()["stripe-should-retry"], "false");
        assert_eq!(stripe.headers()["airlock-reason"], "body_too_large");
        let body = json(stripe).await;
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["code"], "airlock_body_too_large", "{body}");
        assert_eq!(body["error"]["message"], "too big", "{body}");
        assert_eq!(
            (body["message"].as_str(), body["side"].as_str()),
            (Some("too big"), Some("client"))
        );

        let github = json(refusal(r(), Family::GitHub, Retry::Harmless)).await;
        assert_eq!(github["error"], "body_too_large", "{github}");
        assert_eq!(github["documentation_url"], REFUSED_DOC_URL, "{github}");

        // A 5xx after which nothing was stored keeps the library's choice; one that may have
        // stored something says no.
        let down = || Refusal::internal("audit_unavailable", "down");
        let harmless = refusal(down(), Family::Stripe, Retry::Harmless);
        assert!(harmless.headers().get("stripe-should-retry").is_none());
        assert_eq!(json(harmless).await["error"]["type"], "api_error");
        let never = refusal(down(), Family::Stripe, Retry::Never);
        assert_eq!(never.headers()["stripe-should-retry"], "false");
    }
}
