//! Response scrubbing: any configured secret that appears verbatim in an upstream response
//! header, body or trailer is masked with `*` of the same length (so `Content-Length` stays
//! true) before the agent sees it. Bodies are scanned as they stream, holding back only the last
//! `longest secret - 1` bytes of each chunk so a secret split across chunks is still found.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::wire::{Body, BoxError};

/// Why an answer's body was withheld: it came compressed from a credentialed host.
pub const UPSTREAM_ENCODING: &str = "upstream_encoding";

/// What is said of a body withheld for [`UPSTREAM_ENCODING`].
pub const ENCODED_WITHHELD: &str = "the answer came with a Content-Encoding other than identity, \
     although Airlock asked for an uncompressed one; its body cannot be checked for the \
     credential, so it is withheld (upstream_encoding)";

/// Does the answer carry a `Content-Encoding` other than `identity`? Its body is then compressed
/// (or otherwise encoded): the scrubber cannot see a secret in it. An unreadable value counts.
pub fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| match v.to_str() {
            Ok(v) => v
                .split(',')
                .map(str::trim)
                .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity")),
            Err(_) => true,
        })
}

/// Masks configured secrets.
#[derive(Clone)]
pub struct Scrubber {
    secrets: Arc<Vec<Vec<u8>>>,
    longest: usize,
}

impl Scrubber {
    /// `None` when there is nothing to scrub.
    pub fn new(mut secrets: Vec<Vec<u8>>) -> Option<Scrubber> {
        secrets.retain(|s| !s.is_empty());
        // Longest first: a secret that contains another is masked whole before the shorter
        // one's mask could leave the rest of it showing.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let longest = secrets.iter().map(Vec::len).max()?;
        Some(Scrubber {
            secrets: Arc::new(secrets),
            longest,
        })
    }

    /// Length of the longest secret: a buffer cut anywhere needs this many bytes less one
    /// past the cut for every secret that starts before it to be found whole.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// Masks every occurrence in `buf`, longest secret first; returns how many it masked.
    pub fn scrub_bytes(&self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for s in self.secrets.iter() {
            let finder = memchr::memmem::Finder::new(s);
            let mut from = 0;
            while let Some(i) = finder.find(&buf[from..]) {
                let at = from + i;
                buf[at..at + s.len()].fill(b'*');
                n += 1;
                from = at + s.len();
            }
        }
        n
    }

    /// Masks secrets in header values; returns how many it masked.
    pub fn scrub_headers(&self, headers: &mut HeaderMap) -> usize {
        let mut n = 0;
        for value in headers.values_mut() {
            let mut bytes = value.as_bytes().to_vec();
            let found = self.scrub_bytes(&mut bytes);
            if found > 0 {
                n += found;
                *value = HeaderValue::from_bytes(&bytes)
                    .unwrap_or_else(|_| HeaderValue::from_static("[redacted]"));
            }
        }
        n
    }

    /// Wraps a streaming body; `what` names the source in the log line when a secret is masked.
    pub fn wrap(&self, body: Body, what: String) -> Body {
        http_body_util::BodyExt::boxed_unsync(ScrubBody {
            inner: body,
            scrubber: self.clone(),
            carry: BytesMut::new(),
            pending: None,
            what,
            ended: false,
        })
    }
}

struct ScrubBody {
    inner: Body,
    scrubber: Scrubber,
    carry: BytesMut,
    /// A non-data frame (trailers) waiting until the carried bytes are out.
    pending: Option<Frame<Bytes>>,
    what: String,
    ended: bool,
}

impl ScrubBody {
    fn scan(&mut self) {
        let n = self.scrubber.scrub_bytes(&mut self.carry);
        if n > 0 {
            tracing::warn!(target: "airlock::scrub", source = %self.what, occurrences = n, "upstream response contained a configured secret; masked before it reached the agent");
        }
    }
}

impl HttpBody for ScrubBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.ended || this.pending.is_some() {
                if !this.carry.is_empty() {
                    let out = this.carry.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                if let Some(f) = this.pending.take() {
                    return Poll::Ready(Some(Ok(f)));
                }
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.ended = true;
                    this.scan();
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.carry.extend_from_slice(&data);
                        this.scan();
                        let keep = this
                            .scrubber
                            .longest
                            .saturating_sub(1)
                            .min(this.carry.len());
                        let emit = this.carry.len() - keep;
                        if emit > 0 {
                            let out = this.carry.split_to(emit).freeze();
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(other) => {
                        this.scan();
                        this.pending = Some(match other.into_trailers() {
                            Ok(mut trailers) => {
                                if this.scrubber.scrub_headers(&mut trailers) > 0 {
                                    tracing::warn!(target: "airlock::scrub", source = %this.what, "upstream response trailer contained a configured secret; masked");
                                }
                                Frame::trailers(trailers)
                            }
                            Err(other) => other,
                        });
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.carry.is_empty() && self.pending.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let extra = self.carry.len() as u64;
        let mut h = SizeHint::new();
        h.set_lower(inner.lower() + extra);
        if let Some(u) = inner.upper() {
            h.set_upper(u + extra);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn masks_secrets_split_across_chunks() {
        let s = Scrubber::new(vec![b"sk_live_SECRET".to_vec()]).expect("scrubber");
        let cases: Vec<Vec<&'static [u8]>> = vec![
            vec![b"before sk_live_SECRET after"],
            vec![b"before sk_li", b"ve_SEC", b"RET after"],
            vec![b"s", b"k", b"_live_SECRET", b" after"],
            vec![b"no secret here at all"],
        ];
        for parts in cases {
            let original: Vec<u8> = parts.concat();
            let out = s
                .wrap(chunks(&parts), "test".into())
                .collect()
                .await
                .expect("body")
                .to_bytes();
            assert_eq!(out.len(), original.len(), "length preserved");
            assert!(
                memchr::memmem::find(&out, b"sk_live_SECRET").is_none(),
                "{parts:?}"
            );
            if memchr::memmem::find(&original, b"SECRET").is_none() {
                assert_eq!(out, original);
            }
        }
    }

    /// A secret that contains another is masked whole, whichever sorts first.
    #[test]
    fn a_secret_containing_another_is_masked_whole() {
        let s = Scrubber::new(vec![
            b"abc".to_vec(),
            b"abcdef123".to_vec(),
            b"f12".to_vec(),
        ])
        .expect("scrubber");
        let mut buf = b"x abcdef123 y abc z".to_vec();
        assert_eq!(s.scrub_bytes(&mut buf), 2);
        assert_eq!(buf, b"x ********* y *** z");
    }

    /// Trailers are scrubbed as headers are.
    #[tokio::test]
    async fn masks_secrets_in_trailers() {
        let s = Scrubber::new(vec![b"tok123".to_vec()]).expect("scrubber");
        let mut trailers = HeaderMap::new();
        trailers.insert("x-echo", HeaderValue::from_static("Bearer tok123"));
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"body"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let out = s
            .wrap(body.boxed_unsync(), "test".into())
            .collect()
            .await
            .expect("body");
        assert_eq!(
            out.trailers().map(|t| t["x-echo"].clone()),
            Some(HeaderValue::from_static("Bearer ******"))
        );
        assert_eq!(out.to_bytes(), Bytes::from_static(b"body"));
    }

    #[test]
    fn headers() {
        let s = Scrubber::new(vec![b"tok123".to_vec()]).expect("scrubber");
        let mut h = HeaderMap::new();
        h.insert("x-echo", HeaderValue::from_static("Bearer tok123"));
        h.insert("x-other", HeaderValue::from_static("fine"));
        assert_eq!(s.scrub_headers(&mut h), 1);
        assert_eq!(h["x-echo"], "Bearer ******");
        assert_eq!(h["x-other"], "fine");
        assert!(Scrubber::new(Vec::new()).is_none());
    }
}
