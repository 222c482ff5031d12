//! One structured log line per request, written when the response body ends or is dropped:
//! host, method, path (never the query string, which may carry tokens), status, bytes,
//! duration and verdict.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use super::upstream::{Body, BoxError};

/// What is known about a request when its response starts.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub host: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub verdict: String,
    pub tool: Option<String>,
    pub agent: String,
    pub start: Instant,
}

impl AccessLog {
    pub fn new(host: &str, method: &str, path_and_query: &str) -> Self {
        let path = path_and_query.split('?').next().unwrap_or("");
        Self {
            host: host.to_string(),
            method: method.to_string(),
            path: path.chars().take(512).collect(),
            status: 0,
            verdict: "none".into(),
            tool: None,
            agent: String::new(),
            start: Instant::now(),
        }
    }

    fn emit(&self, bytes: u64, complete: bool) {
        tracing::info!(
            target: "airlock::access",
            agent = %self.agent,
            host = %self.host,
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes,
            duration_ms = self.start.elapsed().as_secs_f64() * 1000.0,
            verdict = %self.verdict,
            tool = self.tool.as_deref().unwrap_or("-"),
            complete,
            "request"
        );
    }

    /// Wraps a response body so the line is written when it finishes.
    pub fn wrap(self, body: Body) -> Body {
        Logged {
            inner: body,
            bytes: 0,
            log: Some(self),
        }
        .boxed_unsync()
    }
}

struct Logged {
    inner: Body,
    bytes: u64,
    log: Option<AccessLog>,
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(log) = self.log.take() {
                    log.emit(self.bytes, true);
                }
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            let complete = self.inner.is_end_stream();
            log.emit(self.bytes, complete);
        }
    }
}
