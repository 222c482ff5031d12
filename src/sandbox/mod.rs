//! `airlock run`: runs a command in a fresh network namespace whose only way out is Airlock
//! (Linux only, needs root). See `docs/run.md`.
//!
//! How: a dedicated thread `unshare(CLONE_NEWNET)`s into an empty namespace (only `lo`, no
//! route anywhere), binds a listener on `127.0.0.1:PORT` there and exits; the socket stays in
//! that namespace. `airlock run` accepts on it and splices each connection to the real proxy in
//! the host namespace. COMMAND is forked, `setns()`es into the namespace, drops to an
//! unprivileged user and execs with `HTTPS_PROXY=http://AGENT:TOKEN@127.0.0.1:PORT` and the CA
//! variables set. Direct connections and DNS have nowhere to go. On exit or on a signal
//! (forwarded to COMMAND first) every process left in the namespace is killed and the
//! namespace, which is anonymous, disappears with its last socket.

mod child;
mod netns;
mod relay;

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

pub use child::{RunAs, NOBODY};

use child::ChildSetup;
use netns::Netns;

/// How long COMMAND gets to exit after a forwarded signal before everything in the namespace
/// is killed.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(5);

/// System CA bundles appended after Airlock's CA (so tunnelled, non-intercepted hosts verify).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Proxy variables removed from COMMAND's environment before ours are set.
const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "airlock run needs root, or CAP_SYS_ADMIN and CAP_NET_ADMIN, to create a network \
         namespace ({0}). Run it with sudo; `--weak` runs COMMAND with the proxy variables \
         only, which nothing enforces"
    )]
    NoPrivilege(#[source] std::io::Error),
    #[error(
        "refusing to run COMMAND as root: root inside the namespace can leave it (setns on \
         /proc/1/ns/net) and bypass Airlock. Pass --user UID[:GID], or --allow-root to accept that"
    )]
    RootRefused,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl SandboxError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Proxy credentials of a configured agent.
#[derive(Clone)]
pub struct AgentCredentials {
    pub name: String,
    pub token: String,
}

/// Everything `airlock run` needs.
pub struct RunOptions {
    /// Airlock's proxy address in the host namespace (unspecified addresses mean loopback).
    pub proxy: SocketAddr,
    /// Airlock's CA certificate (PEM).
    pub ca_file: PathBuf,
    pub agent: Option<AgentCredentials>,
    /// Who COMMAND runs as (ignored with `weak`).
    pub run_as: RunAs,
    /// Allow `run_as` to be root.
    pub allow_root: bool,
    /// No namespace: environment variables only.
    pub weak: bool,
    pub command: Vec<OsString>,
}

/// Runs COMMAND as configured and returns its exit code (128+N when killed by signal N).
pub fn run(opts: RunOptions) -> Result<i32, SandboxError> {
    let Some((program, args)) = opts.command.split_first() else {
        return Err(SandboxError::Invalid("no COMMAND given".into()));
    };
    let proxy = connectable(opts.proxy);
    if !opts.weak && opts.run_as.uid == 0 && !opts.allow_root {
        return Err(SandboxError::RootRefused);
    }
    let sandbox = if opts.weak {
        None
    } else {
        Some(Netns::create(proxy.port())?)
    };
    let ca_pem = std::fs::read_to_string(&opts.ca_file).map_err(|e| {
        SandboxError::io(
            format!(
                "reading the CA certificate {} (run `airlock ca init` or pass --ca)",
                opts.ca_file.display()
            ),
            e,
        )
    })?;
    if !ca_pem.contains("BEGIN CERTIFICATE") {
        return Err(SandboxError::Invalid(format!(
            "{} holds no PEM certificate",
            opts.ca_file.display()
        )));
    }
    let files = RunFiles::create(&ca_pem)?;
    let proxy_url = |addr: SocketAddr| match &opts.agent {
        Some(a) => format!(
            "http://{}:{}@{addr}",
            userinfo_escape(&a.name),
            userinfo_escape(&a.token)
        ),
        None => format!("http://{addr}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SandboxError::io("starting the runtime", e))?;
    let result = runtime.block_on(async {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        for k in PROXY_VARS {
            cmd.env_remove(k);
        }
        cmd.env_remove("AIRLOCK_AGENT_TOKEN");
        let setup = match &sandbox {
            None => {
                eprintln!(
                    "airlock run: WARNING --weak: COMMAND only gets proxy variables; nothing \
                     stops it from connecting directly to any address"
                );
                set_proxy_env(&mut cmd, &proxy_url(proxy));
                ChildSetup {
                    netns: None,
                    run_as: None,
                    parent: std::process::id() as libc::pid_t,
                }
            }
            Some((ns, listener)) => {
                let inner = listener
                    .local_addr()
                    .map_err(|e| SandboxError::io("reading the relay address", e))?;
                let listener = listener
                    .try_clone()
                    .and_then(|l| {
                        l.set_nonblocking(true)?;
                        tokio::net::TcpListener::from_std(l)
                    })
                    .map_err(|e| SandboxError::io("starting the relay", e))?;
                if std::net::TcpStream::connect_timeout(&proxy, Duration::from_secs(2)).is_err() {
                    eprintln!("airlock run: warning: nothing answers at {proxy} (is `airlock serve` running? see --proxy)");
                }
                tokio::spawn(relay::serve(listener, proxy));
                set_proxy_env(&mut cmd, &proxy_url(inner));
                for (k, v) in opts.run_as.login_env() {
                    cmd.env(k, v);
                }
                ChildSetup {
                    netns: Some(ns.raw_fd()),
                    run_as: Some(opts.run_as),
                    parent: std::process::id() as libc::pid_t,
                }
            }
        };
        cmd.env("SSL_CERT_FILE", &files.bundle)
            .env("REQUESTS_CA_BUNDLE", &files.bundle)
            .env("CURL_CA_BUNDLE", &files.bundle)
            .env("NODE_EXTRA_CA_CERTS", &files.ca)
            .env("AIRLOCK_CA_FILE", &files.ca);
        setup.install(&mut cmd);
        let ns = sandbox.as_ref().map(|(ns, _)| ns);
        supervise(cmd, ns, program).await
    });
    // The relay's accepted sockets live in the runtime: dropping it closes them.
    drop(runtime);
    if let Some((ns, listener)) = sandbox {
        ns.kill_all();
        drop(listener);
        drop(ns);
    }
    drop(files);
    result
}

/// Spawns COMMAND and waits for it, forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT; after a
/// signal, COMMAND has [`SIGNAL_GRACE`] to exit. When it has exited, whatever it left running in
/// the namespace is killed.
async fn supervise(
    mut cmd: tokio::process::Command,
    ns: Option<&Netns>,
    program: &OsString,
) -> Result<i32, SandboxError> {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
    ];
    // Listen before spawning so no signal is lost in between.
    let mut streams = Vec::new();
    for k in kinds {
        let s = signal(k).map_err(|e| SandboxError::io("installing signal handlers", e))?;
        streams.push((k.as_raw_value(), s));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| SandboxError::io(format!("starting {}", Path::new(program).display()), e))?;
    let pid = child.id().map(|p| p as libc::pid_t);
    let mut deadline: Option<tokio::time::Instant> = None;
    enum Event {
        Exited(std::io::Result<ExitStatus>),
        Signal(Option<i32>),
        GraceOver,
    }
    let status = loop {
        let next_signal = futures_util::future::select_all(
            streams
                .iter_mut()
                .map(|(n, s)| Box::pin(async move { s.recv().await.map(|_| *n) })),
        );
        let until = deadline;
        let grace = async move {
            match until {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            status = child.wait() => Event::Exited(status),
            (sig, _, _) = next_signal => Event::Signal(sig),
            _ = grace => Event::GraceOver,
        };
        match event {
            Event::Exited(status) => break status,
            Event::Signal(sig) => {
                if let (Some(pid), Some(sig)) = (pid, sig) {
                    // SAFETY: plain syscall; `pid` is our unreaped child, so it is not recycled.
                    unsafe { libc::kill(pid, sig) };
                }
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + SIGNAL_GRACE);
            }
            Event::GraceOver => {
                deadline = None;
                eprintln!(
                    "airlock run: COMMAND did not exit {}s after the signal; killing it",
                    SIGNAL_GRACE.as_secs()
                );
                let _ = child.start_kill();
                if let Some(ns) = ns {
                    ns.kill_all();
                }
            }
        }
    };
    let status = status.map_err(|e| SandboxError::io("waiting for COMMAND", e))?;
    Ok(exit_code(status))
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    }
}

fn set_proxy_env(cmd: &mut tokio::process::Command, url: &str) {
    for k in &PROXY_VARS[..6] {
        cmd.env(k, url);
    }
}

/// Where to connect for a listen address: `0.0.0.0` / `::` mean loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Everything but RFC 3986 unreserved characters is escaped in the URL's user info.
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn userinfo_escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, USERINFO).to_string()
}

/// A world-readable directory with the CA files COMMAND trusts (it runs as another user and may
/// not read the originals). Removed on drop.
struct RunFiles {
    dir: PathBuf,
    /// Airlock's CA alone.
    ca: PathBuf,
    /// Airlock's CA followed by the system bundle.
    bundle: PathBuf,
}

impl RunFiles {
    fn create(ca_pem: &str) -> Result<RunFiles, SandboxError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let suffix: u64 = rand::random();
        let dir =
            std::env::temp_dir().join(format!("airlock-run-{}-{suffix:016x}", std::process::id()));
        // A fresh name that must not exist yet: nobody can have planted a symlink there.
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .map_err(|e| SandboxError::io(format!("creating {}", dir.display()), e))?;
        let files = RunFiles {
            ca: dir.join("airlock-ca.pem"),
            bundle: dir.join("ca-bundle.pem"),
            dir,
        };
        let system = SYSTEM_BUNDLES
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text)
                .and_then(|_| {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                })
                .map_err(|e| SandboxError::io(format!("writing {}", path.display()), e))
        };
        std::fs::set_permissions(&files.dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| SandboxError::io(format!("chmod {}", files.dir.display()), e))?;
        write(&files.ca, ca_pem)?;
        write(&files.bundle, &format!("{}\n{system}", ca_pem.trim_end()))?;
        Ok(files)
    }
}

impl Drop for RunFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_mean_loopback() {
        assert_eq!(
            connectable("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            connectable("[::]:8080".parse().unwrap()),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            connectable("10.0.0.1:1".parse().unwrap()),
            "10.0.0.1:1".parse().unwrap()
        );
    }

    #[test]
    fn user_spec_parses() {
        assert_eq!(
            RunAs::parse("1000:100").unwrap(),
            RunAs {
                uid: 1000,
                gid: 100
            }
        );
        assert_eq!(RunAs::parse("65534").unwrap().uid, 65534);
        assert!(RunAs::parse("1000:x").is_err());
    }

    #[test]
    fn credentials_are_escaped_in_the_proxy_url() {
        assert_eq!(userinfo_escape("a b:c@d"), "a%20b%3Ac%40d");
        assert_eq!(userinfo_escape("alk_x-Y.z~"), "alk_x-Y.z~");
    }
}
