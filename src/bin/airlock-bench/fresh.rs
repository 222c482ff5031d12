//! What users feel beyond keep-alive throughput: the first request on a fresh connection
//! (`--new-conn`, to a known host or with `--new-hosts` to hosts never seen), with where its
//! time goes, and a large download (`--stream-bytes`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};

use super::{client_config, connect_to, Args, Report, Schedule, Sender};

/// Median end of each setup phase of a fresh connection, from the start of its TCP connect.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Breakdown {
    pub tcp_us: u64,
    /// CONNECT answered (equal to `tcp_us` without a proxy).
    pub tunnel_us: u64,
    pub tls_us: u64,
    /// The response head arrived.
    pub head_us: u64,
    pub total_us: u64,
}

impl std::fmt::Display for Breakdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "setup (median ms from connect): tcp {:.3} | CONNECT {:.3} (+{:.3}) | TLS {:.3} (+{:.3}) | response head {:.3} (+{:.3}) | body {:.3}",
            ms(self.tcp_us),
            ms(self.tunnel_us),
            ms(self.tunnel_us.saturating_sub(self.tcp_us)),
            ms(self.tls_us),
            ms(self.tls_us.saturating_sub(self.tunnel_us)),
            ms(self.head_us),
            ms(self.head_us.saturating_sub(self.tls_us)),
            ms(self.total_us),
        )
    }
}

/// Host numbers handed out so far, per mode: every proxied `--new-hosts` request names a host
/// the proxy has not seen in any earlier round.
static NEXT_HOST: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// `--new-conn`: `--connections` loops, each opening a connection per request.
pub async fn drive(
    args: &Args,
    upstream: SocketAddr,
    proxy: Option<SocketAddr>,
    ca_pem: &[u8],
) -> Result<Report> {
    let cfg = client_config(args, ca_pem)?;
    let schedule = Schedule::new(args);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (args, cfg, schedule) = (args.clone(), cfg.clone(), schedule.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples: Vec<[u64; 5]> = Vec::new();
            let mut errors = 0usize;
            while schedule.next().is_some() {
                let host = if args.new_hosts {
                    let k = NEXT_HOST[proxy.is_some() as usize].fetch_add(1, Ordering::Relaxed);
                    format!("n{k}.{}", args.host)
                } else {
                    args.host.clone()
                };
                let t0 = Instant::now();
                match one(&args, &host, upstream, proxy, cfg.clone()).await {
                    Ok((setup, head)) if schedule.measured(t0) => samples.push([
                        setup.tcp.as_micros() as u64,
                        setup.tunnel.as_micros() as u64,
                        setup.tls.as_micros() as u64,
                        head.as_micros() as u64,
                        t0.elapsed().as_micros() as u64,
                    ]),
                    Ok(_) => {}
                    Err(e) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("new-connection request failed: {e:#}");
                        }
                    }
                }
            }
            (samples, errors)
        }));
    }
    let (all, errors, secs) = super::gather(tasks, &schedule, started, args.duration).await?;
    let column = |i: usize| {
        let mut v: Vec<u64> = all.iter().map(|s| s[i]).collect();
        v.sort_unstable();
        v
    };
    let pct = |v: &[u64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let total = column(4);
    let breakdown = Breakdown {
        tcp_us: pct(&column(0), 0.5),
        tunnel_us: pct(&column(1), 0.5),
        tls_us: pct(&column(2), 0.5),
        head_us: pct(&column(3), 0.5),
        total_us: pct(&total, 0.5),
    };
    Ok(Report {
        mode: if proxy.is_some() { "proxy" } else { "direct" }.into(),
        requests: total.len(),
        errors,
        rps: total.len() as f64 / secs,
        p50_us: pct(&total, 0.50),
        p90_us: pct(&total, 0.90),
        p99_us: pct(&total, 0.99),
        max_us: total.last().copied().unwrap_or(0),
        client_cpu_us: None,
        proxy_cpu_us: None,
        breakdown: Some(breakdown),
        mb_per_s: None,
    })
}

/// One request on a connection of its own: the setup phases and when the response head came.
async fn one(
    args: &Args,
    host: &str,
    upstream: SocketAddr,
    proxy: Option<SocketAddr>,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<(super::Setup, Duration)> {
    let t0 = Instant::now();
    let (mut sender, setup) = connect_to(args, host, upstream, proxy, cfg).await?;
    let resp = send(&mut sender, args, host).await?;
    let head = t0.elapsed();
    if !resp.status().is_success() {
        bail!("status {}", resp.status());
    }
    resp.into_body().collect().await?;
    Ok((setup, head))
}

async fn send(
    sender: &mut Sender,
    args: &Args,
    host: &str,
) -> Result<hyper::Response<hyper::body::Incoming>> {
    let path = args.path.replace("{n}", "0");
    let mut req = hyper::Request::builder()
        .method(args.method.as_str())
        .uri(format!("https://{host}{path}"))
        .header("host", host)
        .body(Empty::<Bytes>::new())?;
    Ok(match sender {
        Sender::H1(s) => {
            *req.uri_mut() = path.parse()?;
            s.ready().await?;
            s.send_request(req).await?
        }
        Sender::H2(s) => s.send_request(req).await?,
    })
}

/// `--stream-bytes`: downloads the generated body once and reports MB/s.
pub async fn stream(
    args: &Args,
    upstream: SocketAddr,
    proxy: Option<SocketAddr>,
    ca_pem: &[u8],
) -> Result<Report> {
    let cfg = client_config(args, ca_pem)?;
    let host = args.host.clone();
    let (mut sender, _) = connect_to(args, &host, upstream, proxy, cfg).await?;
    let t0 = Instant::now();
    let resp = send(&mut sender, args, &host).await?;
    if !resp.status().is_success() {
        bail!("stream: status {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref() {
            got += d.len() as u64;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let want = args.stream_bytes.unwrap_or(0);
    let errors = usize::from(got != want);
    if got != want {
        eprintln!("stream: got {got} bytes, want {want}");
    }
    let us = (secs * 1e6) as u64;
    Ok(Report {
        mode: if proxy.is_some() { "proxy" } else { "direct" }.into(),
        requests: 1,
        errors,
        rps: 1.0 / secs.max(1e-9),
        p50_us: us,
        p90_us: us,
        p99_us: us,
        max_us: us,
        client_cpu_us: None,
        proxy_cpu_us: None,
        breakdown: None,
        mb_per_s: Some(got as f64 / 1e6 / secs.max(1e-9)),
    })
}

/// The upstream's answer in streaming mode: `n` bytes made of one shared 256 KiB chunk, with a
/// Content-Length, never held in memory whole.
pub fn generated(n: u64) -> hyper::Response<BoxBody<Bytes, std::convert::Infallible>> {
    const CHUNK: usize = 256 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let frames = (0..n.div_ceil(CHUNK as u64)).map(move |i| {
        let left = (n - i * CHUNK as u64).min(CHUNK as u64) as usize;
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk.slice(..left)))
    });
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let mut resp = hyper::Response::new(BodyExt::boxed(body));
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
    resp
}
