//! One structured log line per request, written when the response body ends or is dropped:
//! host, method, path (never the query string, which may carry tokens), status, bytes,
//! duration and verdict. The same wrapper carries the request's place among its agent's
//! requests in flight (`in_flight`), given back when the body ends or is dropped.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use super::handler::ConnInfo;
use super::in_flight::InFlightGuard;
use crate::wire::{Body, BoxError};

/// Longest path logged (bytes, cut at a character boundary).
const MAX_LOGGED_PATH: usize = 512;

/// What is known about a request when its response starts. Host and agent come from the
/// connection (shared, not copied per request).
#[derive(Debug, Clone)]
pub struct AccessLog {
    conn: Arc<ConnInfo>,
    method: Method,
    path: String,
    pub status: u16,
    pub verdict: Cow<'static, str>,
    pub tool: Option<String>,
    start: Instant,
}

impl AccessLog {
    pub fn new(conn: Arc<ConnInfo>, method: &Method, path_and_query: &str) -> Self {
        let path = path_and_query.split('?').next().unwrap_or("");
        let mut end = path.len().min(MAX_LOGGED_PATH);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            conn,
            method: method.clone(),
            path: path[..end].to_string(),
            status: 0,
            verdict: Cow::Borrowed("none"),
            tool: None,
            start: Instant::now(),
        }
    }

    fn emit(&self, bytes: u64, complete: bool) {
        tracing::info!(
            target: "airlock::access",
            agent = %self.conn.agent.name,
            host = %self.conn.target.host,
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

    /// Wraps a response body so the line is written, and `in_flight` given back, when it
    /// finishes.
    pub fn wrap(self, body: Body, in_flight: Option<InFlightGuard>) -> Body {
        Logged {
            inner: body,
            bytes: 0,
            log: Some(self),
            in_flight,
        }
        .boxed_unsync()
    }
}

struct Logged {
    inner: Body,
    bytes: u64,
    log: Option<AccessLog>,
    /// Dropped when the body ends (or with it).
    in_flight: Option<InFlightGuard>,
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
                self.in_flight = None;
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
