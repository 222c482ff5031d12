//! Webhook delivery: one HTTP POST of a JSON body (plain JSON or Slack's `{"text": ...}`).
//! The URL may itself be a secret (Slack's are), so it never appears in errors or logs. With a
//! signing secret, each attempt is signed anew (Standard Webhooks, `signing.rs`).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::signing::WebhookSecret;
use super::NotifyError;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub(crate) struct WebhookSink {
    client: HttpsClient,
    url: http::Uri,
    signing: Option<WebhookSecret>,
}

impl WebhookSink {
    pub(crate) fn new(
        url: http::Uri,
        signing: Option<WebhookSecret>,
    ) -> Result<WebhookSink, NotifyError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| NotifyError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(WebhookSink {
            client: Client::builder(TokioExecutor::new()).build(https),
            url,
            signing,
        })
    }

    /// One POST; any status outside 2xx is an error (and retried by the caller). `id` is the
    /// message's `webhook-id` (the same on every attempt); the timestamp is this attempt's.
    pub(crate) async fn send(&self, body: Bytes, id: &str) -> Result<(), NotifyError> {
        let mut req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "airlock-notify");
        if let Some(secret) = &self.signing {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            req = req
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", secret.sign(id, timestamp, &body));
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| NotifyError::Setup(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| NotifyError::Webhook(error_chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(NotifyError::Webhook(format!(
                "HTTP status {}",
                status.as_u16()
            )))
        }
    }
}

/// An error and its sources, without the request (so without the URL).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
