//! Git pushes through the proxy: read only a push's command section (at most
//! [`crate::rules::git::COMMANDS_CAP`] bytes, up to its flush-pkt) so the catalog can judge it,
//! then hand the bytes already read back in front of the rest of the stream. An allowed push's
//! packfile is streamed upstream, never buffered; a held one is read whole under the normal
//! held-body cap by the caller.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::rules::git::{BodyEncoding, CommandReader};
use crate::wire::{Body, BoxError, Refusal};

/// Reads `body` until its command section is complete (or cannot be: malformed, over the cap,
/// unknown encoding, body ended). Returns the bytes read and the unread rest.
pub async fn read_commands(
    mut body: Body,
    headers: &http::HeaderMap,
) -> Result<(Bytes, Body), Refusal> {
    let Ok(encoding) = BodyEncoding::from_headers(headers) else {
        // The catalog reports the encoding (and escalates); nothing to read for that.
        return Ok((Bytes::new(), body));
    };
    let mut reader = CommandReader::new(encoding);
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(super::body_read::read_failed)?;
        if let Some(data) = frame.data_ref() {
            read.extend_from_slice(data);
            if reader.feed(data) {
                break;
            }
        }
    }
    Ok((read.freeze(), body))
}

/// `prefix` followed by `rest`: a body whose first bytes were already read.
pub struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: Body,
}

impl PrefixedBody {
    pub fn new(prefix: Bytes, rest: Body) -> PrefixedBody {
        PrefixedBody {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
        }
    }
}

impl http_body::Body for PrefixedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(p) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let n = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let inner = self.rest.size_hint();
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(n));
        }
        hint.set_lower(inner.lower().saturating_add(n));
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::{Full, StreamBody};

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn reads_up_to_the_flush_pkt_and_gives_everything_back() {
        let delete = b"0070aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 0000000000000000000000000000000000000000 refs/heads/x\0report-status0000";
        // (chunks, bytes read before classifying)
        let cases: Vec<(Vec<&'static [u8]>, usize)> = vec![
            (vec![&delete[..], b"PACK-one", b"PACK-two"], delete.len()),
            (vec![&delete[..10], &delete[10..], b"PACK"], delete.len()),
            (vec![b"00", b"zz", b"never read"], 4),
            (vec![&delete[..50]], 50),
        ];
        for (parts, want_read) in cases {
            let whole: Vec<u8> = parts.concat();
            let (prefix, rest) = read_commands(chunks(&parts), &http::HeaderMap::new())
                .await
                .expect("read");
            assert_eq!(prefix.len(), want_read);
            let body = PrefixedBody::new(prefix, rest);
            let all = body.collect().await.expect("collect").to_bytes();
            assert_eq!(all.as_ref(), whole.as_slice(), "nothing lost or reordered");
        }
    }

    #[tokio::test]
    async fn size_hint_counts_the_prefix() {
        let rest = Full::new(Bytes::from_static(b"12345"))
            .map_err(|e| Box::new(e) as BoxError)
            .boxed_unsync();
        let body = PrefixedBody::new(Bytes::from_static(b"abc"), rest);
        assert_eq!(body.size_hint().exact(), Some(8));
        assert!(!body.is_end_stream());
    }
}
