//! A fake `github.com` for git over HTTPS: TLS with a leaf from the fake upstream's test CA, and
//! every request run through the real `git http-backend` (CGI) on bare repositories in a temp
//! dir. It records each request and answers 401 unless the request carries the expected
//! `Authorization` (so a passing test proves Airlock injected the credential).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as the git server saw it.
#[derive(Debug, Clone)]
pub struct GitSeen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub content_encoding: Option<String>,
    pub body_len: usize,
    pub status: u16,
}

pub struct GitServer {
    pub addr: SocketAddr,
    /// The CA that signed the server's certificate (what Airlock must trust).
    pub ca_file: PathBuf,
    /// GIT_PROJECT_ROOT: `/{owner}/{repo}.git` lives at `root/owner/repo.git`.
    pub root: PathBuf,
    pub seen: Arc<Mutex<Vec<GitSeen>>>,
    /// While set, new connections are dropped before the TLS handshake (a server that is down).
    pub down: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl GitServer {
    /// Serves `root` (created empty); `authorization`: the only accepted Authorization value.
    pub async fn start(authorization: Option<String>) -> GitServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("repos");
        std::fs::create_dir_all(&root).expect("root");
        let (ca_pem, cert, key) = super::upstream::make_certs(false);
        let ca_file = dir.path().join("git-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write ca");
        let mut cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(cert, key)
            .expect("server config");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let (st, r, is_down) = (seen.clone(), root.clone(), down.clone());
        let auth = Arc::new(authorization);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if is_down.load(Ordering::SeqCst) {
                    continue;
                }
                let (acceptor, st, r, auth) =
                    (acceptor.clone(), st.clone(), r.clone(), auth.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let (st, r, auth) = (st.clone(), r.clone(), auth.clone());
                        async move { Ok::<_, Infallible>(serve(&r, &st, auth.as_deref(), req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        GitServer {
            addr,
            ca_file,
            root,
            seen,
            down,
            _dir: dir,
        }
    }

    pub fn seen(&self) -> Vec<GitSeen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Pushes that reached this server (`POST …/git-receive-pack`).
    pub fn receive_pack_posts(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == "POST" && s.path.ends_with("/git-receive-pack"))
            .count()
    }

    /// Path of the bare repository `owner/name.git`.
    pub fn repo(&self, owner: &str, name: &str) -> PathBuf {
        self.root.join(owner).join(format!("{name}.git"))
    }

    /// An Airlock config for `toml` whose `github.com` is this server (temp dirs, port 0).
    pub fn airlock_config(&self, toml: &str, dir: &Path) -> airlock::config::Config {
        let mut config =
            airlock::config::Config::from_toml("test.toml", toml).expect("test config");
        config.proxy.listen = "127.0.0.1:0".parse().expect("addr");
        config.admin.listen = "127.0.0.1:0".parse().expect("addr");
        config.tls.ca_dir = dir.join("certs");
        config.store.path = dir.join("data");
        config.admin.token_file = dir.join("data").join("admin-token");
        config.upstream.extra_ca_files.push(self.ca_file.clone());
        config
            .upstream
            .resolve
            .insert("github.com".to_string(), self.addr);
        config
    }
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r
}

async fn serve(
    root: &Path,
    seen: &Mutex<Vec<GitSeen>>,
    want_auth: Option<&str>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut rec = GitSeen {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
        authorization: header("authorization"),
        content_encoding: header("content-encoding"),
        body_len: 0,
        status: 0,
    };
    let content_type = header("content-type").unwrap_or_default();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, "body"),
    };
    rec.body_len = body.len();
    let resp = if want_auth.is_some() && rec.authorization.as_deref() != want_auth {
        let mut r = reply(StatusCode::UNAUTHORIZED, "credential missing or wrong\n");
        r.headers_mut().insert(
            "www-authenticate",
            http::HeaderValue::from_static("Basic realm=\"GitHub\""),
        );
        r
    } else {
        http_backend(root, &rec, &content_type, body).await
    };
    rec.status = resp.status().as_u16();
    seen.lock().expect("lock").push(rec);
    resp
}

/// Runs `git http-backend` as a CGI script for one request and turns its output into a response.
async fn http_backend(
    root: &Path,
    rec: &GitSeen,
    content_type: &str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", &rec.method)
        .env("PATH_INFO", &rec.path)
        .env("QUERY_STRING", &rec.query)
        .env("CONTENT_TYPE", content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(enc) = &rec.content_encoding {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, &format!("spawn: {e}")),
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let mut out = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut out).await;
    }
    let _ = writer.await;
    let output = child.wait_with_output().await;
    let stderr = output
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    if !stderr.trim().is_empty() {
        eprintln!("git http-backend: {}", stderr.trim());
    }
    parse_cgi(&out)
}

/// CGI output: header lines (`Status: 200 OK`, `Content-Type: …`), a blank line, the body.
fn parse_cgi(out: &[u8]) -> Response<Full<Bytes>> {
    let split = [&b"\r\n\r\n"[..], &b"\n\n"[..]]
        .iter()
        .filter_map(|sep| {
            out.windows(sep.len())
                .position(|w| w == *sep)
                .map(|i| (i, i + sep.len()))
        })
        .min();
    let Some((head_end, body_start)) = split else {
        return reply(StatusCode::BAD_GATEWAY, "CGI output has no header block");
    };
    let head = String::from_utf8_lossy(&out[..head_end]);
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(&out[body_start..])));
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let code = v.split(' ').next().and_then(|c| c.parse().ok());
            *resp.status_mut() = code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.trim().as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}
