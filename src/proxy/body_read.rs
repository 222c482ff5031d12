//! Reading the request bodies Airlock judges or holds: whole, under `gate.max_body_bytes`, within
//! `proxy.body_read_timeout`. A refused read is answered so that the client reads the answer:
//! a body whose Content-Length is over the cap is refused before a byte of it is read (no
//! `100 Continue` goes out); one found too large while reading has the rest read and discarded
//! (at most [`DISCARD_MAX`] bytes, for [`DISCARD_TIME`]) first. Whatever stays unread is kept
//! until the answer has been sent (an HTTP/2 stream then ends with NO_ERROR after the answer,
//! not CANCEL before it), and an HTTP/1.1 answer says `Connection: close`. The bytes a body
//! takes are counted against `gate.max_buffered_bytes` (`buffer_budget`) before they are read.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use super::buffer_budget::Reservation;
use crate::wire::{Body, BoxError, Refusal};

/// The most of an oversized body read and discarded before the 413 (a client that sends its
/// whole body before reading the answer, as Python's requests does, reads the answer then).
pub const DISCARD_MAX: usize = 4 << 20;
/// How long discarding may take.
pub const DISCARD_TIME: Duration = Duration::from_secs(5);

/// What of the request decides how its body is read and refused.
#[derive(Debug, Clone, Copy)]
pub struct BodyHead {
    /// The declared length (Content-Length), if any.
    pub length: Option<u64>,
    /// An HTTP/1.1 client waits for `100 Continue` before sending the body, and none went out
    /// (hyper sends it when the body is first read).
    pub awaits_continue: bool,
}

impl BodyHead {
    /// For a request whose body was not read yet.
    pub fn of(parts: &http::request::Parts) -> BodyHead {
        let h = &parts.headers;
        let length = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let awaits_continue = parts.version == Version::HTTP_11
            && h.get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        BodyHead {
            length,
            awaits_continue,
        }
    }

    /// The same request once some of its body was read.
    pub fn polled(self) -> BodyHead {
        BodyHead {
            awaits_continue: false,
            ..self
        }
    }
}

/// A refused request and what stays of it until its answer is sent.
pub struct Refused {
    pub refusal: Refusal,
    /// The answer in the client's own terms (a git report), instead of the refusal's JSON.
    pub answer: Option<Response<Body>>,
    /// The unread rest of the request body, dropped only after the answer.
    rest: Option<Body>,
    /// The connection cannot carry another request (HTTP/1.1: `Connection: close`).
    close: bool,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Refused {
        Refused {
            refusal,
            answer: None,
            rest: None,
            close: false,
        }
    }
}

impl Refused {
    /// `refusal`, after which the connection carries no other request: its framing is in doubt.
    pub fn closing(refusal: Refusal) -> Refused {
        Refused {
            close: true,
            ..Refused::from(refusal)
        }
    }

    /// Finishes `resp`, the answer to this refusal, for the request's `version`.
    pub fn finish(self, mut resp: Response<Body>, version: Version) -> Response<Body> {
        if self.close && version <= Version::HTTP_11 {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        match self.rest {
            None => resp,
            Some(rest) => resp.map(|body| Keep { body, _rest: rest }.boxed_unsync()),
        }
    }
}

/// 413 for a body over `cap` bytes.
pub fn too_large(cap: usize, purpose: &str) -> Refusal {
    Refusal::client(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "request body exceeds {cap} bytes, the most Airlock buffers for {purpose} (gate.max_body_bytes); it was not forwarded"
        ),
    )
}

/// 408 for a body not read within `limit`.
pub fn timed_out(limit: Duration) -> Refusal {
    Refusal::client(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body did not arrive within {} (proxy.body_read_timeout); it was not forwarded",
            humantime::format_duration(limit)
        ),
    )
}

/// 400 for an agent's request body that broke off or was malformed mid-read.
pub fn read_failed(e: BoxError) -> Refusal {
    Refusal::client(
        StatusCode::BAD_REQUEST,
        "body_read_failed",
        format!("could not read the request body: {e}"),
    )
}

/// How a bounded read ended.
enum Read {
    Whole,
    /// Past the cap, after this many bytes.
    Over(usize),
    /// Past `gate.max_buffered_bytes` (all bodies buffered at once), after this many bytes.
    Full(Refusal, usize),
}

/// Reads `body` whole, at most `cap` bytes within `limit`; `prefix`: what was read of it already.
/// `reserved` takes the bytes from the budget of all buffered bodies before they are read: the
/// declared length at once, else each frame's as it comes.
pub async fn read_whole(
    prefix: Bytes,
    mut body: Body,
    head: BodyHead,
    (cap, limit): (usize, Duration),
    purpose: &str,
    reserved: &mut Reservation,
) -> Result<Bytes, Refused> {
    let declared_over = head.length.is_some_and(|n| n > cap as u64);
    if declared_over || prefix.len() > cap {
        return Err(unread(too_large(cap, purpose), body, head, prefix.len()).await);
    }
    let declared = head.length.map_or(0, |n| n as usize).max(prefix.len());
    if let Err(full) = reserved.grow_to(declared) {
        return Err(unread(full, body, head, prefix.len()).await);
    }
    let mut buf = BytesMut::from(prefix.as_ref());
    let read = tokio::time::timeout(limit, async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(read_failed)?;
            if let Some(data) = frame.data_ref() {
                let total = buf.len() + data.len();
                if total > cap {
                    return Ok(Read::Over(total));
                }
                if let Err(full) = reserved.grow_to(total) {
                    return Ok(Read::Full(full, total));
                }
                buf.extend_from_slice(data);
            }
        }
        Ok::<Read, Refusal>(Read::Whole)
    })
    .await;
    match read {
        Ok(Ok(Read::Whole)) => Ok(buf.freeze()),
        Ok(Ok(Read::Over(n))) => Err(unread(too_large(cap, purpose), body, head.polled(), n).await),
        Ok(Ok(Read::Full(full, n))) => Err(unread(full, body, head.polled(), n).await),
        Ok(Err(refusal)) => Err(Refused::from(refusal)),
        Err(_) => Err(Refused {
            refusal: timed_out(limit),
            answer: None,
            rest: Some(body),
            close: true,
        }),
    }
}

/// `refusal` of a request whose body is still (partly) unread, `read` bytes of it read: the rest
/// read and discarded, within bounds, unless the client waits for `100 Continue` (it sends
/// nothing then) or declared more than can be discarded.
pub async fn unread(refusal: Refusal, mut body: Body, head: BodyHead, read: usize) -> Refused {
    let left = head.length.map(|n| n.saturating_sub(read as u64));
    let discard = !head.awaits_continue && left.is_none_or(|n| n <= DISCARD_MAX as u64);
    let ended = discard && discard_rest(&mut body).await;
    Refused {
        refusal,
        answer: None,
        rest: (!ended).then_some(body),
        close: true,
    }
}

/// Reads and drops what is left of `body`, at most [`DISCARD_MAX`] bytes for [`DISCARD_TIME`];
/// true if it ended.
async fn discard_rest(body: &mut Body) -> bool {
    let drain = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DISCARD_MAX {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DISCARD_TIME, drain)
        .await
        .unwrap_or(false)
}

/// An answer's body that keeps the request's unread rest alive until the answer is dropped.
struct Keep {
    body: Body,
    _rest: Body,
}

impl http_body::Body for Keep {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
