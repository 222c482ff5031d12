//! The pools' connector: TCP through the [`Dialer`] (resolve override, egress guard on every
//! address), then TLS verified with Airlock's client config (ALPN h2 and http/1.1, session
//! resumption), both bounded by `upstream.connect_timeout`. A pool first takes the pre-dialled
//! connection waiting for it and the target (see [`super::conns`]). Every connection handed to
//! a pool is counted live until its socket is dropped. A pre-dialled connection may have been
//! made on another worker: the pool's worker attaches its socket to its own reactor first.
//!
//! Errors keep the shape the failure classifier reads ([`super::UpstreamFailure`]): the
//! dialer's `io::Error`s as they are, a TLS failure as an `io::Error` carrying rustls' error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::conns::{Conns, Live};
use super::read_buffer::ReadBuffer;
use super::socket::Socket;
use super::Dialer;
use crate::wire::{BoxError, Target};

/// A TLS connection to an upstream, before a pool takes it. The socket is read through a
/// buffer held while bytes flow (see [`ReadBuffer`]): rustls asks for 4 KiB at a time, so a
/// 16 KiB record would otherwise cost four `read` calls (a stream's throughput is mostly
/// syscalls and copies).
pub type Ready = TlsStream<ReadBuffer<Socket>>;

/// Bytes read from an upstream socket at once (two full TLS records).
const READ_BUFFER: usize = 32 * 1024;

/// Dials and secures connections for one pool.
#[derive(Clone)]
pub struct Connector {
    dialer: Dialer,
    tls: TlsConnector,
    conns: Arc<Conns<Ready>>,
    pool: usize,
}

impl Connector {
    pub fn new(dialer: Dialer, tls: TlsConnector, conns: Arc<Conns<Ready>>, pool: usize) -> Self {
        Self {
            dialer,
            tls,
            conns,
            pool,
        }
    }
}

/// TCP (egress-checked) then TLS to `target`, each bounded by the connect timeout.
pub async fn handshake(dialer: &Dialer, tls: &TlsConnector, target: &Target) -> io::Result<Ready> {
    let tcp = Socket::Registered(dialer.dial(target).await?);
    let tcp = ReadBuffer::new(tcp, READ_BUFFER);
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    match tokio::time::timeout(dialer.connect_timeout(), tls.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(io::Error::other(e)),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("TLS handshake with {target} timed out"),
        )),
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                other => {
                    return Err(io::Error::other(format!("unsupported scheme {other:?}")).into())
                }
            };
            let authority = uri
                .authority()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI has no host"))?;
            let target = Target::parse_authority(authority.as_str(), if https { 443 } else { 80 })
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let key = (target.host.clone(), target.port);
            let (io, live) = if !https {
                let tcp = me.dialer.dial(&target).await?;
                (Io::Plain(TokioIo::new(tcp)), me.conns.live(me.pool, &key))
            } else {
                let (mut tls, live) = match me.conns.take(me.pool, &key).await {
                    Some(outcome) => outcome?,
                    None => {
                        let tls = handshake(&me.dialer, &me.tls, &target).await?;
                        (tls, me.conns.live(me.pool, &key))
                    }
                };
                tls.get_mut().0.get_mut().attach()?;
                (Io::Tls(TokioIo::new(tls)), live)
            };
            Ok(UpstreamIo { io, _live: live })
        })
    }
}

// Boxing the TLS side would add a pointer hop to every read and write of the hot path.
#[allow(clippy::large_enum_variant)]
enum Io {
    Plain(TokioIo<TcpStream>),
    Tls(TokioIo<Ready>),
}

/// An upstream connection in a pool, counted live while it exists.
pub struct UpstreamIo {
    io: Io,
    _live: Live<Ready>,
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        match &self.io {
            Io::Plain(tcp) => tcp.connected(),
            Io::Tls(tls) => {
                let (tcp, session) = tls.inner().get_ref();
                if session.alpn_protocol() == Some(b"h2") {
                    tcp.get_ref().connected().negotiated_h2()
                } else {
                    tcp.get_ref().connected()
                }
            }
        }
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => hyper::rt::Write::is_write_vectored(s),
            Io::Tls(s) => hyper::rt::Write::is_write_vectored(s),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
