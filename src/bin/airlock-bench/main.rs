//! `airlock-bench`: load tool. Starts its own local HTTPS upstream, then drives N concurrent
//! keep-alive HTTPS clients either directly at it or through any HTTP CONNECT proxy, and prints
//! requests/s and latency percentiles. `--compare` runs both in the same run and prints ratios.
//! The upstream runs in its own child process (as a real server would), so the direct run pays
//! the same process-boundary wake-ups as any real client; `--upstream-in-process` shares the
//! load generator's runtime instead.
//!
//! Typical use (see scripts/bench.sh):
//!   airlock-bench --init-upstream-ca DIR            # once: the upstream's CA, for the proxy to trust
//!   airlock-bench --upstream-ca-dir DIR --upstream-port 19443 \
//!       --proxy http://127.0.0.1:8080 --ca certs/ca.pem --compare
//!
//! For the hold-queue scale run (scripts/scale.sh): `--requests N --method DELETE --path
//! '/repos/acme/r{n}' --expect-status 423` holds N reviews as fast as they are taken, and
//! `--approve N --admin ADDR --admin-token-file F` approves N pending reviews (`scale.rs`).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod fresh;
mod scale;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Clone)]
#[command(about = "HTTPS load generator: direct vs through a CONNECT proxy")]
struct Args {
    /// Create the upstream CA in DIR and exit.
    #[arg(long)]
    init_upstream_ca: Option<PathBuf>,
    /// Load (or create) the upstream CA from DIR.
    #[arg(long)]
    upstream_ca_dir: Option<PathBuf>,
    /// Port for the built-in upstream (0: any).
    #[arg(long, default_value_t = 0)]
    upstream_port: u16,
    /// Run the upstream inside the load generator's own process and runtime (cheaper for the
    /// direct run than any real connection: no process boundary). Default: a child process.
    #[arg(long)]
    upstream_in_process: bool,
    /// Only serve the upstream (until killed); prints `upstream ADDR` on stdout when ready.
    #[arg(long, hide = true)]
    serve_upstream: bool,
    /// Proxy URL, e.g. http://127.0.0.1:8080. Without it: direct.
    #[arg(long)]
    proxy: Option<String>,
    /// `user:pass` sent as Proxy-Authorization: Basic on CONNECT.
    #[arg(long)]
    proxy_auth: Option<String>,
    /// CA file trusted inside the proxy tunnel (the proxy's CA).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Host name used for CONNECT, SNI and Host.
    #[arg(long, default_value = "bench.local")]
    host: String,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Unmeasured seconds first.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Use HTTP/2 on each connection.
    #[arg(long)]
    http2: bool,
    /// Response body size.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Run direct, then through --proxy, and print ratios.
    #[arg(long)]
    compare: bool,
    /// With --compare: alternate direct and proxy runs this many times and report the median
    /// ratio (a noisy machine swings single runs by a third).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The proxy's process id: report its CPU time per request (from /proc, Linux only).
    #[arg(long)]
    proxy_pid: Option<u32>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request path; `{n}` is replaced by the request's number (0, 1, ...).
    #[arg(long, default_value = "/bench")]
    path: String,
    /// Send exactly this many requests (no warm-up) instead of running for --duration.
    #[arg(long)]
    requests: Option<usize>,
    /// The status every answer must have (default: any 2xx).
    #[arg(long)]
    expect_status: Option<u16>,
    /// Approve this many pending reviews through the admin API (with --admin) and report
    /// approvals/s; nothing else runs.
    #[arg(long)]
    approve: Option<usize>,
    /// The admin listener, e.g. 127.0.0.1:8081 (for --approve); several, comma-separated, for
    /// instances sharing one database: the connections are spread over them in turn.
    #[arg(long, value_delimiter = ',')]
    admin: Vec<SocketAddr>,
    /// File holding the admin token (for --approve).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Every request on a fresh connection (TCP, CONNECT, TLS, one request, close), as an agent
    /// feels the first request of a connection; prints where the time goes.
    #[arg(long)]
    new_conn: bool,
    /// With --new-conn: every request to a host never used before (`n<k>.<host>`; the proxy
    /// must inspect and resolve them, see scripts/bench.sh). Without: always --host.
    #[arg(long)]
    new_hosts: bool,
    /// With --new-conn: the client keeps no TLS session cache (a fresh process, like curl).
    #[arg(long)]
    no_resume: bool,
    /// Emulates a distant upstream: it waits 2x this many ms before its TLS handshake (the TCP
    /// and TLS round trips) and this many ms before each answer (the request's round trip).
    #[arg(long, default_value_t = 0)]
    upstream_rtt_ms: u64,
    /// Streaming: the upstream answers with a body of this many bytes (generated, not held in
    /// memory); each round downloads it once over one connection and reports MB/s.
    #[arg(long)]
    stream_bytes: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Report {
    mode: String,
    requests: usize,
    errors: usize,
    rps: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    /// CPU time per request of the load generator and the upstream together, in µs.
    client_cpu_us: Option<f64>,
    /// CPU time per request of the proxy process (`--proxy-pid`), in µs.
    proxy_cpu_us: Option<f64>,
    /// --new-conn: median time of each connection-setup phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    breakdown: Option<fresh::Breakdown>,
    /// --stream-bytes: download speed in MB/s (10^6 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    mb_per_s: Option<f64>,
}

/// User + system CPU seconds a process has used so far (Linux /proc), `None` elsewhere.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// CPU counters read around one run: this process plus the upstream child, and the proxy.
struct CpuProbe {
    pids: Vec<u32>,
    proxy: Option<u32>,
}

impl CpuProbe {
    fn read(&self) -> (Option<f64>, Option<f64>) {
        let client: Option<f64> = self.pids.iter().map(|p| cpu_seconds(*p)).sum();
        (client, self.proxy.and_then(cpu_seconds))
    }
}

fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    if let Some(dir) = &args.init_upstream_ca {
        load_or_create_ca(dir)?;
        println!("upstream CA: {}", dir.join("upstream-ca.pem").display());
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    if let Some(n) = args.approve {
        return scale::approve(&args, n).await;
    }
    let tmp = std::env::temp_dir().join(format!("airlock-bench-{}", std::process::id()));
    // A CA made for this run alone goes with it (dropped after the upstream child).
    let _own_ca = args
        .upstream_ca_dir
        .is_none()
        .then(|| RemoveDir(tmp.clone()));
    let ca_dir = args.upstream_ca_dir.clone().unwrap_or(tmp);
    let (ca_pem, issuer) = load_or_create_ca(&ca_dir)?;
    if args.serve_upstream {
        let addr = start_upstream(&issuer, &args).await?;
        println!("upstream {addr}");
        std::future::pending::<()>().await;
    }
    // Held for the whole run: dropping it kills the upstream process.
    let (upstream, child) = if args.upstream_in_process {
        (start_upstream(&issuer, &args).await?, None)
    } else {
        let (addr, child) = spawn_upstream(&args, &ca_dir)?;
        (addr, Some(child))
    };
    eprintln!(
        "upstream on {upstream} ({}; CA {})",
        if args.upstream_in_process {
            "in this process"
        } else {
            "own process"
        },
        ca_dir.join("upstream-ca.pem").display()
    );
    let mut pids = vec![std::process::id()];
    pids.extend(child.as_ref().map(|c| c.0.id()));
    let probe = CpuProbe {
        pids,
        proxy: args.proxy_pid,
    };
    let proxy = match &args.proxy {
        Some(url) => {
            let ca = match &args.ca {
                Some(p) => {
                    std::fs::read(p).with_context(|| format!("reading --ca {}", p.display()))?
                }
                None => bail!("--proxy needs --ca (the proxy's CA certificate)"),
            };
            Some((parse_proxy(url)?, ca))
        }
        None => None,
    };
    let rounds = if args.compare { args.rounds.max(1) } else { 1 };
    let mut reports = Vec::new();
    for _ in 0..rounds {
        if args.compare || proxy.is_none() {
            reports.push(measured(&args, &probe, upstream, None, ca_pem.as_bytes()).await?);
        }
        if let Some((addr, ca)) = &proxy {
            reports.push(measured(&args, &probe, upstream, Some(*addr), ca).await?);
        }
    }
    print_reports(&reports, args.json);
    Ok(())
}

/// One run with the CPU each side used per request.
async fn measured(
    args: &Args,
    probe: &CpuProbe,
    upstream: SocketAddr,
    proxy: Option<SocketAddr>,
    ca_pem: &[u8],
) -> Result<Report> {
    let (c0, p0) = probe.read();
    let mut r = if args.stream_bytes.is_some() {
        fresh::stream(args, upstream, proxy, ca_pem).await?
    } else if args.new_conn {
        fresh::drive(args, upstream, proxy, ca_pem).await?
    } else {
        drive(args, upstream, proxy, ca_pem).await?
    };
    let (c1, p1) = probe.read();
    // `drive` counts only requests sent after the warm-up; CPU covers the warm-up (and the
    // handshakes) too, so the count is scaled up as if the warm-up ran at the measured rate.
    let measured_secs = args.duration.max(1) as f64;
    let total = if args.new_conn || args.stream_bytes.is_some() {
        r.requests as f64
    } else {
        r.requests as f64 * (measured_secs + args.warmup as f64) / measured_secs
    };
    let per = |a: Option<f64>, b: Option<f64>| Some((b? - a?) * 1e6 / total.max(1.0));
    r.client_cpu_us = per(c0, c1);
    if proxy.is_some() {
        r.proxy_cpu_us = per(p0, p1);
    }
    Ok(r)
}

/// The upstream in a child process (this binary with `--serve-upstream`), killed on drop.
struct ChildUpstream(std::process::Child);

impl Drop for ChildUpstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_upstream(args: &Args, ca_dir: &Path) -> Result<(SocketAddr, ChildUpstream)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("--serve-upstream")
        .arg("--upstream-ca-dir")
        .arg(ca_dir)
        .args(["--upstream-port", &args.upstream_port.to_string()])
        .args(["--host", &args.host])
        .args(["--body-bytes", &args.body_bytes.to_string()])
        .args(["--upstream-rtt-ms", &args.upstream_rtt_ms.to_string()])
        .args(
            args.stream_bytes
                .map(|n| vec!["--stream-bytes".to_string(), n.to_string()])
                .unwrap_or_default(),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the upstream process")?;
    let stdout = child.stdout.take().context("upstream stdout")?;
    let child = ChildUpstream(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("upstream ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("upstream process did not start: {line:?}"))?;
    Ok((addr, child))
}

fn parse_proxy(url: &str) -> Result<SocketAddr> {
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    let mut addrs = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .with_context(|| format!("bad --proxy {url}"))?;
    addrs.next().context("proxy resolves to nothing")
}

/// Removes a directory this run created, when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_or_create_ca(dir: &Path) -> Result<(String, Issuer<'static, KeyPair>)> {
    let cert = dir.join("upstream-ca.pem");
    let key = dir.join("upstream-ca-key.pem");
    if cert.exists() && key.exists() {
        let pem = std::fs::read_to_string(&cert)?;
        let kp = KeyPair::from_pem(&std::fs::read_to_string(&key)?).context("bad CA key")?;
        let issuer = Issuer::from_ca_cert_pem(&pem, kp).context("bad CA cert")?;
        return Ok((pem, issuer));
    }
    std::fs::create_dir_all(dir)?;
    let kp = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "airlock-bench upstream CA");
    let pem = params.self_signed(&kp)?.pem();
    std::fs::write(&cert, &pem)?;
    std::fs::write(&key, kp.serialize_pem())?;
    Ok((pem, Issuer::new(params, kp)))
}

async fn start_upstream(issuer: &Issuer<'static, KeyPair>, args: &Args) -> Result<SocketAddr> {
    let kp = KeyPair::generate()?;
    // The wildcard serves --new-hosts (`n<k>.<host>`).
    let names = vec![
        args.host.clone(),
        format!("*.{}", args.host),
        "localhost".into(),
        "127.0.0.1".into(),
    ];
    let leaf = CertificateParams::new(names)?.signed_by(&kp, issuer)?;
    let key = PrivateKeyDer::try_from(kp.serialize_der()).map_err(anyhow::Error::msg)?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.upstream_port)).await?;
    let addr = listener.local_addr()?;
    let body = Bytes::from(vec![b'x'; args.body_bytes]);
    let stream_bytes = args.stream_bytes;
    let rtt = Duration::from_millis(args.upstream_rtt_ms);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                if !rtt.is_zero() {
                    tokio::time::sleep(rtt * 2).await;
                }
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    let resp = match stream_bytes {
                        Some(n) => fresh::generated(n),
                        None => hyper::Response::new(Full::new(body.clone()).boxed()),
                    };
                    async move {
                        if !rtt.is_zero() {
                            tokio::time::sleep(rtt).await;
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The load tool's TLS client: trusts `ca_pem`, offers h2 or http/1.1 as asked.
fn client_config(args: &Args, ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.context("bad CA PEM")?)?;
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = if args.http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    if args.no_resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(cfg))
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

async fn connect(
    args: &Args,
    upstream: SocketAddr,
    proxy: Option<SocketAddr>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Sender> {
    Ok(connect_to(args, &args.host, upstream, proxy, tls).await?.0)
}

/// When each phase of a connection's setup ended, from the start of its TCP connect.
#[derive(Debug, Clone, Copy, Default)]
struct Setup {
    tcp: Duration,
    tunnel: Duration,
    tls: Duration,
}

/// Opens a connection to `host` (through the proxy's CONNECT if any) and says how long each
/// phase took.
async fn connect_to(
    args: &Args,
    host: &str,
    upstream: SocketAddr,
    proxy: Option<SocketAddr>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(Sender, Setup)> {
    let t0 = Instant::now();
    let mut tcp = TcpStream::connect(proxy.unwrap_or(upstream)).await?;
    tcp.set_nodelay(true)?;
    let mut setup = Setup {
        tcp: t0.elapsed(),
        ..Setup::default()
    };
    if proxy.is_some() {
        let mut req = format!("CONNECT {0}:443 HTTP/1.1\r\nHost: {0}:443\r\n", host);
        if let Some(auth) = &args.proxy_auth {
            use base64::Engine;
            let enc = base64::engine::general_purpose::STANDARD.encode(auth);
            req.push_str(&format!("Proxy-Authorization: Basic {enc}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await?;
        // Read as a client library would (not byte by byte): the proxy sends nothing after
        // its answer until the TLS ClientHello, so no tunnel byte can be read here.
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await?;
            if n == 0 || head.len() > 16384 {
                bail!(
                    "proxy closed during CONNECT: {}",
                    String::from_utf8_lossy(&head)
                );
            }
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head);
        if !text.starts_with("HTTP/1.1 200") && !text.starts_with("HTTP/1.0 200") {
            bail!(
                "proxy refused CONNECT: {}",
                text.lines().next().unwrap_or("")
            );
        }
    }
    setup.tunnel = t0.elapsed();
    let name = ServerName::try_from(host.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    setup.tls = t0.elapsed();
    let io = TokioIo::new(stream);
    if args.http2 {
        let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        Ok((Sender::H2(s), setup))
    } else {
        let (s, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        Ok((Sender::H1(s), setup))
    }
}

async fn drive(
    args: &Args,
    upstream: SocketAddr,
    proxy: Option<SocketAddr>,
    ca_pem: &[u8],
) -> Result<Report> {
    let cfg = client_config(args, ca_pem)?;
    let schedule = Schedule::new(args);
    let mut tasks = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..args.connections {
        senders.push(connect(args, upstream, proxy, cfg.clone()).await?);
    }
    let started = Instant::now();
    for mut sender in senders {
        let host = args.host.clone();
        let (method, path_template) = (args.method.clone(), args.path.clone());
        let expect = args.expect_status;
        let schedule = schedule.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            while let Some(n) = schedule.next() {
                let path = path_template.replace("{n}", &n.to_string());
                let req = hyper::Request::builder()
                    .method(method.as_str())
                    .uri(format!("https://{host}{path}"))
                    .header("host", &host)
                    .body(Empty::<Bytes>::new());
                let Ok(mut req) = req else {
                    errors += 1;
                    continue;
                };
                let t0 = Instant::now();
                let res = match &mut sender {
                    Sender::H1(s) => {
                        *req.uri_mut() = path.parse().unwrap_or_default();
                        if s.ready().await.is_err() {
                            errors += 1;
                            break;
                        }
                        s.send_request(req).await
                    }
                    Sender::H2(s) => s.send_request(req).await,
                };
                match res {
                    Ok(resp) => {
                        let ok = match expect {
                            Some(code) => resp.status().as_u16() == code,
                            None => resp.status().is_success(),
                        };
                        let _ = resp.into_body().collect().await;
                        if !ok {
                            errors += 1;
                        }
                        if schedule.measured(t0) {
                            lat.push(t0.elapsed().as_micros() as u64);
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, errors, secs) = gather(tasks, &schedule, started, args.duration).await?;
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Ok(Report {
        mode: if proxy.is_some() {
            "proxy".into()
        } else {
            "direct".into()
        },
        requests: all.len(),
        errors,
        rps: all.len() as f64 / secs,
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        max_us: all.last().copied().unwrap_or(0),
        client_cpu_us: None,
        proxy_cpu_us: None,
        breakdown: None,
        mb_per_s: None,
    })
}

fn print_reports(reports: &[Report], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(reports).unwrap_or_default()
        );
        return;
    }
    println!(
        "{:<8} {:>10} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>11} {:>10}",
        "mode",
        "requests",
        "errors",
        "req/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "max µs",
        "client cpu",
        "proxy cpu"
    );
    let cpu = |v: Option<f64>| v.map(|v| format!("{v:.1} µs")).unwrap_or("-".into());
    for r in reports {
        println!(
            "{:<8} {:>10} {:>7} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>11} {:>10}",
            r.mode,
            r.requests,
            r.errors,
            r.rps,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.max_us,
            cpu(r.client_cpu_us),
            cpu(r.proxy_cpu_us)
        );
        if let Some(b) = &r.breakdown {
            println!("         {b}");
        }
        if let Some(mb) = r.mb_per_s {
            println!("         {mb:.0} MB/s");
        }
    }
    let pairs: Vec<(&Report, &Report)> = reports
        .chunks(2)
        .filter_map(|c| match c {
            [d, p] if d.mode == "direct" && p.mode == "proxy" => Some((d, p)),
            _ => None,
        })
        .collect();
    let mut ratios = Vec::new();
    let mut added = Vec::new();
    let mut added99 = Vec::new();
    let mut cost = Vec::new();
    let mut what = "throughput";
    for (d, p) in &pairs {
        let add = (p.p50_us as f64 - d.p50_us as f64) / 1000.0;
        let add99 = (p.p99_us as f64 - d.p99_us as f64) / 1000.0;
        let ratio = match (d.mb_per_s, p.mb_per_s, &d.breakdown) {
            (Some(dm), Some(pm), _) => {
                what = "stream speed";
                let r = pm / dm.max(0.001);
                println!("ratio: stream speed proxy/direct = {r:.2}x");
                r
            }
            (_, _, Some(_)) => {
                what = "first-request latency";
                let r = p.p50_us as f64 / (d.p50_us as f64).max(1.0);
                println!(
                    "ratio: first-request latency p50 proxy/direct = {r:.2}x, added p50 = {add:.3} ms, added p99 = {add99:.3} ms"
                );
                r
            }
            _ => {
                let r = p.rps / d.rps.max(1.0);
                println!(
                    "ratio: throughput proxy/direct = {}x, added p50 = {add:.3} ms, added p99 = {add99:.3} ms",
                    three_digits(r)
                );
                r
            }
        };
        ratios.push(ratio);
        added.push(add);
        added99.push(add99);
        if let (Some(pc), Some(dc)) = (p.proxy_cpu_us, d.client_cpu_us) {
            cost.push(pc / dc.max(0.001));
        }
    }
    if pairs.len() > 1 {
        println!(
            "median of {} rounds: {what} {}x, added p50 {:.3} ms, added p99 {:.3} ms",
            pairs.len(),
            three_digits(median(&mut ratios)),
            median(&mut added),
            median(&mut added99)
        );
    }
    if !cost.is_empty() {
        println!(
            "proxy CPU per request / direct client+upstream CPU per request: {:.2} (median)",
            median(&mut cost)
        );
    }
}

/// `r` with three significant digits (at least two decimals): a slow anchor proxy such as
/// mitmdump runs at 0.007x, where two decimals would say 0.01x.
fn three_digits(r: f64) -> String {
    let decimals = if r > 0.0 && r.is_finite() {
        (2 - r.log10().floor() as i64).clamp(2, 8) as usize
    } else {
        2
    };
    format!("{r:.decimals$}")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// When a load run measures and when it stops: `--requests` requests in all (no warm-up), else
/// `--warmup` seconds unmeasured, then `--duration` seconds. Clones share the request count.
#[derive(Clone)]
struct Schedule {
    limit: Option<usize>,
    warm_end: Instant,
    end: Instant,
    taken: Arc<std::sync::atomic::AtomicUsize>,
}

impl Schedule {
    fn new(args: &Args) -> Schedule {
        let limit = args.requests;
        let warmup = if limit.is_some() { 0 } else { args.warmup };
        let warm_end = Instant::now() + Duration::from_secs(warmup);
        Schedule {
            limit,
            warm_end,
            end: warm_end + Duration::from_secs(args.duration),
            taken: Arc::default(),
        }
    }

    /// The next request's number, or `None` once the run is over.
    fn next(&self) -> Option<usize> {
        let n = self
            .taken
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.limit {
            Some(limit) if n >= limit => None,
            None if Instant::now() >= self.end => None,
            _ => Some(n),
        }
    }

    /// Does a request started at `t0` count (after the warm-up)?
    fn measured(&self, t0: Instant) -> bool {
        t0 >= self.warm_end
    }
}

/// Joins the load tasks (each: its samples and its error count) and says over how many seconds
/// they ran: the wall time for a counted run, else the configured duration.
async fn gather<T>(
    tasks: Vec<tokio::task::JoinHandle<(Vec<T>, usize)>>,
    schedule: &Schedule,
    started: Instant,
    duration: u64,
) -> Result<(Vec<T>, usize, f64)> {
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (samples, e) = t.await?;
        all.extend(samples);
        errors += e;
    }
    let secs = if schedule.limit.is_some() {
        started.elapsed().as_secs_f64()
    } else {
        duration.max(1) as f64
    };
    Ok((all, errors, secs))
}
