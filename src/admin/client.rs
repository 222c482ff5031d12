//! Minimal admin API client used by the `airlock reviews` commands. Run as Airlock's own user,
//! it speaks over the admin Unix socket ([`super::socket`]) and checks that the server behind it
//! is that user's (or root's) process: a missing socket means no server, and the token is then
//! not offered on the TCP port, where any process could be listening. Other users use TCP, and
//! send a token to a loopback port only if the listener belongs to root, to them, or to the
//! owner of the store or the admin token ([`crate::listener_owner`]).

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::PathBuf;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio_util::either::Either;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin API at {target}: {message} (is `airlock serve` running?)")]
    Connect { target: String, message: String },
    #[error("admin API error: {0}")]
    Http(String),
}

/// Where the CLI reaches the admin API.
#[derive(Debug, Clone)]
pub enum Target {
    /// The admin socket, owned by this user: only this user's (or root's) server can be behind
    /// it. `host` is the admin listener's address, for the Host header.
    Socket { path: PathBuf, host: String },
    /// The TCP listener (`admin.listen`): the CLI is not Airlock's user. A token goes to a
    /// loopback listener only if its owner is one of these uids ([`crate::listener_owner`]).
    Tcp(SocketAddr, Vec<u32>),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Socket { path, .. } => write!(f, "{}", path.display()),
            Target::Tcp(addr, _) => write!(f, "{addr}"),
        }
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target::Tcp(addr, crate::listener_owner::trusted_uids(&[]))
    }
}

impl From<&Target> for Target {
    fn from(t: &Target) -> Target {
        t.clone()
    }
}

impl Target {
    /// The socket when it is this user's (or would be: its directory is this user's and
    /// nobody else may write it, so an absent socket means no server); else TCP.
    pub fn of(config: &crate::config::Config) -> Target {
        // Airlock's user owns its store and admin token: her listener may get a token.
        let tcp = Target::Tcp(
            config.admin.listen,
            crate::listener_owner::trusted_uids(&[&config.store.path, &config.admin.token_file]),
        );
        // A path too long for a socket: the server skipped it (see `socket::start`).
        let Some(path) = config
            .admin_socket()
            .filter(|p| p.as_os_str().len() < super::socket::MAX_PATH)
        else {
            return tcp;
        };
        // SAFETY: plain syscall.
        let me = unsafe { libc::geteuid() };
        let ours = match std::fs::symlink_metadata(&path) {
            Ok(m) => m.file_type().is_socket() && m.uid() == me,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir_ours = path
                    .parent()
                    .and_then(|d| std::fs::metadata(d).ok())
                    .is_some_and(|d| d.uid() == me);
                dir_ours && super::socket::check_dir(&path).is_ok()
            }
            Err(_) => false,
        };
        if ours {
            Target::Socket {
                path,
                host: config.admin.listen.to_string(),
            }
        } else {
            tcp
        }
    }
}

/// Sends one request; returns the status and the JSON (or text) body.
pub async fn call(
    addr: impl Into<Target>,
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
    addr: impl Into<Target>,
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
    addr: impl Into<Target>,
    token: &str,
    path: &str,
) -> Result<(u16, http::HeaderMap, Bytes), ClientError> {
    exchange(addr, token, Method::GET, path, None).await
}

async fn exchange(
    target: impl Into<Target>,
    token: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, http::HeaderMap, Bytes), ClientError> {
    let (io, host) = connect(&target.into(), !token.is_empty()).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(conn);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host);
    let req = match token {
        "" => req,
        t => req.header(header::AUTHORIZATION, format!("Bearer {t}")),
    };
    let req = req
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

/// A connection to `target` that may carry the token, and the Host header to send.
async fn connect(target: &Target, sends_token: bool) -> Result<(Io, String), ClientError> {
    let failed = |message: String| ClientError::Connect {
        target: target.to_string(),
        message,
    };
    match target {
        Target::Tcp(addr, owners) => {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| failed(e.to_string()))?;
            // Connected, nothing sent: the listener that took it is among those checked.
            if sends_token {
                crate::listener_owner::check(*addr, owners, "token").map_err(failed)?;
            }
            let _ = stream.set_nodelay(true);
            Ok((TokioIo::new(Either::Left(stream)), addr.to_string()))
        }
        Target::Socket { path, host } => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| failed(e.to_string()))?;
            // SAFETY: plain syscall.
            let me = unsafe { libc::geteuid() };
            match stream.peer_cred() {
                Ok(c) if c.uid() == me || c.uid() == 0 => {}
                Ok(c) => {
                    return Err(failed(format!(
                        "the server behind it runs as uid {}, not as you (uid {me}) or root; the token was not sent",
                        c.uid()
                    )))
                }
                Err(e) => return Err(failed(format!("cannot tell who listens: {e}"))),
            }
            Ok((TokioIo::new(Either::Right(stream)), host.clone()))
        }
    }
}

/// A TCP or Unix connection, for hyper.
type Io = TokioIo<Either<tokio::net::TcpStream, tokio::net::UnixStream>>;
