//! Minimal admin API client used by the `airlock reviews` commands.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin API at {addr}: {message} (is `airlock serve` running?)")]
    Connect { addr: SocketAddr, message: String },
    #[error("admin API error: {0}")]
    Http(String),
}

/// Sends one request; returns the status and the JSON (or text) body.
pub async fn call(
    addr: SocketAddr,
    token: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), ClientError> {
    let (status, bytes) = call_raw(addr, token, method, path, body).await?;
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    Ok((status, json))
}

/// Sends one request; returns the status and the body bytes as they came.
pub async fn call_raw(
    addr: SocketAddr,
    token: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, Bytes), ClientError> {
    let (status, _, bytes) = exchange(addr, token, method, path, body).await?;
    Ok((status, bytes))
}

/// A GET of one page: the status, the headers (where the next page starts) and the body.
pub async fn call_paged(
    addr: SocketAddr,
    token: &str,
    path: &str,
) -> Result<(u16, http::HeaderMap, Bytes), ClientError> {
    exchange(addr, token, Method::GET, path, None).await
}

async fn exchange(
    addr: SocketAddr,
    token: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, http::HeaderMap, Bytes), ClientError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| ClientError::Connect {
            addr,
            message: e.to_string(),
        })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(conn);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    Ok((status, headers, bytes))
}
