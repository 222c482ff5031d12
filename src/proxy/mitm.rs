//! Interception: terminates the agent's TLS inside a CONNECT tunnel with a leaf for the CONNECT
//! host, checks the SNI, and serves HTTP/2 or HTTP/1.1 as ALPN chose.

use std::sync::Arc;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::front::{drive, http1_builder, http2_builder, RespFuture};
use super::handler::{self, ConnInfo};
use super::io::{Activity, Tracked};
use super::{Lifecycle, Proxy};
use crate::wire::Target;

pub(super) async fn serve(
    upgraded: Upgraded,
    tls: Arc<ServerConfig>,
    mut conn: ConnInfo,
    proxy: Arc<Proxy>,
    life: Lifecycle,
) {
    let accept = TlsAcceptor::from(tls).accept(TokioIo::new(upgraded));
    // A handshake not finished when shutdown starts is abandoned: no request has begun on it,
    // and waiting for it would hold the drain for up to `header_read_timeout`.
    let accepted = tokio::select! {
        a = tokio::time::timeout(proxy.config.header_read_timeout, accept) => a,
        _ = life.shutdown.cancelled() => {
            tracing::debug!(host = %conn.target.host, "shutting down; abandoned an agent TLS handshake");
            return;
        }
    };
    let stream = match accepted {
        Ok(Ok(s)) => {
            crate::metrics::tls_handshake("ok");
            s
        }
        Ok(Err(e)) => {
            crate::metrics::tls_handshake("failed");
            tracing::info!(host = %conn.target.host, error = %e, "agent TLS handshake failed");
            return;
        }
        Err(_) => {
            crate::metrics::tls_handshake("timeout");
            tracing::info!(host = %conn.target.host, "agent TLS handshake timed out");
            return;
        }
    };
    let (_, session) = stream.get_ref();
    if let Some(sni) = session.server_name() {
        let agrees = Target::parse_authority(sni, conn.target.port)
            .map(|t| t.host == conn.target.host)
            .unwrap_or(false);
        if !agrees {
            conn.sni_mismatch = Some(sni.chars().take(253).collect());
        }
    }
    let h2 = session.alpn_protocol() == Some(b"h2");
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let conn = Arc::new(conn);
    let service = InnerService {
        proxy: proxy.clone(),
        conn,
    };
    let idle = proxy.config.idle_timeout;
    if h2 {
        drive!(
            http2_builder(&proxy).serve_connection(io, service),
            activity,
            idle,
            life
        )
    } else {
        drive!(
            http1_builder(&proxy).serve_connection(io, service),
            activity,
            idle,
            life
        )
    }
}

#[derive(Clone)]
struct InnerService {
    proxy: Arc<Proxy>,
    conn: Arc<ConnInfo>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for InnerService {
    type Response = http::Response<crate::wire::Body>;
    type Error = std::convert::Infallible;
    type Future = RespFuture;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> RespFuture {
        let s = self.clone();
        Box::pin(async move { Ok(handler::handle(s.proxy, s.conn, req).await) })
    }
}
