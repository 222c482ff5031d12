//! Refusals: every error Airlock answers itself records which side failed and maps to a status,
//! a JSON body and an `Airlock-Reason` header. Never a hang, never a secret in the text.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::Body;

/// Header naming the machine-readable reason of a refusal.
pub const REASON_HEADER: &str = "airlock-reason";

/// Which party caused a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The agent sent something wrong or not allowed.
    Client,
    /// Policy refused it.
    Policy,
    /// The upstream failed.
    Upstream,
    /// Airlock itself failed.
    Internal,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Policy => "policy",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub side: Side,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` (seconds): when trying again makes sense.
    pub retry_after: Option<&'static str>,
}

impl Refusal {
    pub fn new(
        status: StatusCode,
        side: Side,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            side,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same refusal, answered with `Retry-After: seconds`.
    pub fn retry_after(self, seconds: &'static str) -> Self {
        Self {
            retry_after: Some(seconds),
            ..self
        }
    }

    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, Side::Client, code, message)
    }

    pub fn policy(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, Side::Policy, code, message)
    }

    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Side::Internal,
            code,
            message,
        )
    }

    /// 429 `code`, `message`, with `Retry-After: seconds`.
    pub fn retry_later(
        code: &'static str,
        message: impl Into<String>,
        seconds: &'static str,
    ) -> Response<Body> {
        Refusal::client(StatusCode::TOO_MANY_REQUESTS, code, message)
            .retry_after(seconds)
            .into_response()
    }

    pub fn into_response(self) -> Response<Body> {
        self.into_response_with(|_| {})
    }

    /// [`Refusal::into_response`]; `dress` may reshape the JSON (`{"error": code, "side",
    /// "message"}`) for the client that reads it.
    pub fn into_response_with(self, dress: impl FnOnce(&mut serde_json::Value)) -> Response<Body> {
        let mut body = serde_json::json!({
            "error": self.code,
            "side": self.side.as_str(),
            "message": self.message,
        });
        dress(&mut body);
        let mut resp = json_response(self.status, &body);
        resp.headers_mut()
            .insert(REASON_HEADER, HeaderValue::from_static(self.code));
        if let Some(seconds) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        if self.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            resp.headers_mut().insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"airlock\""),
            );
        }
        resp
    }
}

/// A JSON response with `Cache-Control: no-store`.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut text = value.to_string();
    text.push('\n');
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}
