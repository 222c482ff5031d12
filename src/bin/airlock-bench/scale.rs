//! The scale run's approvals (`--approve N`): pages through the pending reviews on the admin
//! API, then approves N of them over `--connections` keep-alive connections, spread over the
//! `--admin` listeners given (each approval sends the stored request upstream once), and prints
//! approvals/s.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Args;

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn open(admin: SocketAddr) -> Result<Conn> {
    let tcp = TcpStream::connect(admin).await?;
    tcp.set_nodelay(true)?;
    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(s)
}

/// One admin call; the status and the JSON answer.
async fn call(
    conn: &mut Conn,
    admin: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &'static str,
) -> Result<(u16, serde_json::Value)> {
    conn.ready().await?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", admin.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))?;
    let resp = conn.send_request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
}

pub async fn approve(args: &Args, n: usize) -> Result<()> {
    let admins = args.admin.clone();
    let admin = *admins.first().context("--approve needs --admin ADDR")?;
    let file = args
        .admin_token_file
        .as_ref()
        .context("--approve needs --admin-token-file")?;
    let token = std::fs::read_to_string(file)
        .with_context(|| format!("reading {}", file.display()))?
        .trim()
        .to_string();
    let mut conn = open(admin).await?;
    let mut ids = Vec::with_capacity(n);
    let mut cursor: Option<String> = None;
    while ids.len() < n {
        let path = match &cursor {
            Some(c) => format!("/v1/reviews?state=pending&limit=1000&cursor={c}"),
            None => "/v1/reviews?state=pending&limit=1000".to_string(),
        };
        let (status, page) = call(&mut conn, admin, &token, "GET", &path, "").await?;
        if status != 200 {
            bail!("listing pending reviews: HTTP {status}: {page}");
        }
        for r in page["reviews"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(id) = r["reviewId"].as_str() {
                ids.push(id.to_string());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    ids.truncate(n);
    let total = ids.len();
    let queue = Arc::new(Mutex::new(ids));
    let started = Instant::now();
    let mut workers = Vec::new();
    for i in 0..args.connections.max(1) {
        let (queue, token) = (queue.clone(), token.clone());
        let admin = admins[i % admins.len()];
        let mut conn = open(admin).await?;
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, 0usize);
            loop {
                let id = match queue.lock() {
                    Ok(mut q) => q.pop(),
                    Err(_) => None,
                };
                let Some(id) = id else {
                    return (ok, failed);
                };
                let path = format!("/v1/reviews/{id}/approve");
                match call(&mut conn, admin, &token, "POST", &path, "{}").await {
                    Ok((200, r)) if r["state"] == "executed" => ok += 1,
                    _ => failed += 1,
                }
            }
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.await?;
        ok += o;
        failed += f;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "approved {ok} of {total} ({failed} failed) in {secs:.2} s: {:.0} approvals/s",
        ok as f64 / secs.max(1e-9)
    );
    Ok(())
}
