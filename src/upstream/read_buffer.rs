//! The read buffer under an upstream connection's TLS, held only while bytes flow. rustls
//! asks its socket for a few KiB at a time, so a 16 KiB record read straight from the socket
//! would cost several `read` calls; a buffer of two records makes it one. An upstream
//! connection spends most of its life idle in a pool (`upstream.pool_idle_timeout`), though,
//! and a buffer kept per connection was the larger part of Airlock's memory per upstream
//! connection. So the buffer is allocated when a read finds it empty and released when the
//! socket has nothing more to give (the read would block) or ends: an idle connection holds
//! none. It is never released while it holds unread bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A reader with a buffer of `capacity` bytes that exists only while reads find data.
#[derive(Debug)]
pub struct ReadBuffer<S> {
    inner: S,
    /// `None` while idle; when `Some`, its unread bytes come before the socket's.
    buf: Option<BytesMut>,
    capacity: usize,
}

impl<S> ReadBuffer<S> {
    pub fn new(inner: S, capacity: usize) -> Self {
        Self {
            inner,
            buf: None,
            capacity,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Whether a buffer is allocated now (not while idle).
    #[cfg(test)]
    pub fn holds_buffer(&self) -> bool {
        self.buf.is_some()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadBuffer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let unread = match &mut me.buf {
            Some(buf) if !buf.is_empty() => buf,
            _ if out.remaining() >= me.capacity => {
                // A read at least as large as the buffer gains nothing from it.
                me.buf = None;
                return Pin::new(&mut me.inner).poll_read(cx, out);
            }
            slot => {
                let buf = slot.get_or_insert_with(|| BytesMut::with_capacity(me.capacity));
                // Reuses the allocation while one is held (its bytes were all consumed).
                buf.reserve(me.capacity);
                match tokio_util::io::poll_read_buf(Pin::new(&mut me.inner), cx, buf) {
                    Poll::Ready(Ok(n)) if n > 0 => buf,
                    other => {
                        // Would block, ended or failed: nothing is buffered, so nothing is lost.
                        *slot = None;
                        return other.map_ok(|_| ());
                    }
                }
            }
        };
        let n = out.remaining().min(unread.len());
        out.put_slice(&unread[..n]);
        unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadBuffer<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CAPACITY: usize = 32 * 1024;

    /// One read that must not block: Ok(bytes) or Err(()) for `Pending`.
    fn read_now<S: AsyncRead + Unpin>(
        reader: &mut ReadBuffer<S>,
        out: &mut [u8],
    ) -> Result<usize, ()> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut buf = ReadBuf::new(out);
        match Pin::new(reader).poll_read(&mut cx, &mut buf) {
            Poll::Ready(r) => Ok(r.map(|()| buf.filled().len()).expect("read")),
            Poll::Pending => Err(()),
        }
    }

    #[tokio::test]
    async fn the_buffer_is_held_while_bytes_flow_and_released_when_reads_would_block() {
        let (mut far, near) = tokio::io::duplex(256 * 1024);
        let mut reader = ReadBuffer::new(near, CAPACITY);
        assert!(!reader.holds_buffer(), "no buffer before the first read");
        assert_eq!(read_now(&mut reader, &mut [0; 4096]), Err(()));
        assert!(
            !reader.holds_buffer(),
            "a read that finds nothing keeps no buffer"
        );

        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        far.write_all(&sent).await.expect("write");
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let n = reader.read(&mut chunk).await.expect("read");
        got.extend_from_slice(&chunk[..n]);
        assert!(
            reader.holds_buffer(),
            "the rest of the socket read waits in the buffer"
        );
        while got.len() < sent.len() {
            let n = reader.read(&mut chunk).await.expect("read");
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, sent, "every byte, in order");
        assert_eq!(read_now(&mut reader, &mut chunk), Err(()));
        assert!(!reader.holds_buffer(), "idle again: the buffer is gone");

        // A read as large as the buffer goes straight to the socket.
        far.write_all(&sent[..50_000]).await.expect("write");
        let mut big = vec![0u8; CAPACITY];
        let n = reader.read(&mut big).await.expect("read");
        assert_eq!(&big[..n], &sent[..n]);
        assert!(!reader.holds_buffer(), "a large read bypasses the buffer");

        // What the large read left, then the end of the stream, which releases the buffer.
        let rest = 50_000 - n;
        drop(far);
        let mut tail = Vec::new();
        let got_rest = reader.read_to_end(&mut tail).await.expect("read to end");
        assert_eq!(got_rest, rest);
        assert_eq!(&tail[..], &sent[n..50_000]);
        assert!(!reader.holds_buffer(), "no buffer after the end");
    }
}
