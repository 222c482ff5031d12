//! An upstream TCP socket that can move between worker runtimes. A pre-dial runs its TLS
//! handshake on another worker (another core) than the agent's; the finished connection then
//! leaves that worker's reactor ([`Socket::detach`]) and joins the reactor of the worker whose
//! request takes it ([`Socket::attach`]), so its reads and writes never wake another thread.
//! Bytes already read into the TLS session or its buffer stay where they are.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP socket registered with one runtime's reactor, or between two.
#[derive(Debug)]
pub enum Socket {
    Registered(TcpStream),
    Detached(std::net::TcpStream),
    /// A move failed half-way; the socket is gone (closed).
    Lost,
}

fn not_attached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "upstream socket is not registered with this worker",
    )
}

impl Socket {
    /// Leaves the current reactor (nothing polls the socket until [`Socket::attach`]).
    pub fn detach(&mut self) -> io::Result<()> {
        match std::mem::replace(self, Socket::Lost) {
            Socket::Registered(s) => *self = Socket::Detached(s.into_std()?),
            other => *self = other,
        }
        Ok(())
    }

    /// Joins the calling runtime's reactor. Data that arrived meanwhile is reported readable.
    pub fn attach(&mut self) -> io::Result<()> {
        match std::mem::replace(self, Socket::Lost) {
            Socket::Detached(s) => *self = Socket::Registered(TcpStream::from_std(s)?),
            Socket::Lost => return Err(not_attached()),
            registered => *self = registered,
        }
        Ok(())
    }

    fn registered(self: Pin<&mut Self>) -> io::Result<Pin<&mut TcpStream>> {
        match self.get_mut() {
            Socket::Registered(s) => Ok(Pin::new(s)),
            _ => Err(not_attached()),
        }
    }
}

impl Connection for Socket {
    fn connected(&self) -> Connected {
        match self {
            Socket::Registered(s) => s.connected(),
            _ => Connected::new(),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.registered() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.registered() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.registered() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.registered() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.registered() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A socket dialled on one runtime, detached, and attached on another reads what arrived
    /// while it was between them and writes from its new home.
    #[test]
    fn a_socket_moves_between_runtimes_without_losing_bytes() {
        let rt = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        };
        let (a, b) = (rt(), rt());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut socket = a.block_on(async {
            let mut s = Socket::Registered(TcpStream::connect(addr).await.expect("connect"));
            s.detach().expect("detach");
            s
        });
        let (mut peer, _) = listener.accept().expect("accept");
        std::io::Write::write_all(&mut peer, b"early").expect("peer writes");
        assert!(matches!(socket, Socket::Detached(_)));
        drop(a);
        b.block_on(async {
            let mut buf = [0u8; 5];
            assert_eq!(
                socket.read(&mut buf).await.err().map(|e| e.kind()),
                Some(io::ErrorKind::NotConnected),
                "unusable until attached"
            );
            socket.attach().expect("attach");
            socket.read_exact(&mut buf).await.expect("read");
            assert_eq!(&buf, b"early");
            socket.write_all(b"late").await.expect("write");
        });
        let mut got = [0u8; 4];
        std::io::Read::read_exact(&mut peer, &mut got).expect("peer reads");
        assert_eq!(&got, b"late");
    }
}
