//! `airlock run`: runs a command in a sandbox whose only way out is Airlock (Linux only, needs
//! root). See `docs/run.md`.
//!
//! How: a dedicated thread `unshare(CLONE_NEWNET)`s into an empty network namespace (only
//! `lo`, no route anywhere), binds a listener on `127.0.0.1:PORT` there and exits; the socket
//! stays in that namespace. `airlock run` accepts on it and splices each connection to the real
//! proxy in the host namespace. COMMAND runs under an init process that is pid 1 of a new PID
//! namespace, in new mount, IPC and UTS namespaces with Airlock's files hidden, as a uid of its
//! own without capabilities, with an allowlisted environment, no inherited descriptors, a
//! seccomp filter and its own pty ([`spawn`]). When init exits (COMMAND exited, or `airlock run`
//! died and the parent-death signal killed it) the kernel kills everything left in the PID
//! namespace, and the network namespace, which is anonymous, disappears with its last socket.

mod caller;
mod child;
mod env;
mod hide;
mod netns;
mod owners;
mod pty;
mod relay;
mod seccomp;
mod spawn;
mod term_filter;
mod term_modes;
mod term_queries;

use std::ffi::{CString, OsStr, OsString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

pub use caller::{check_privilege, read_token_file, Caller};
pub use child::{RunAs, UidRange, DEFAULT_UID_RANGE, NOBODY};

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

/// Directories that get a private, empty tmpfs inside the sandbox (when they exist). `/run`
/// holds the host's unix sockets (systemd-resolved, D-Bus, nscd, a local PostgreSQL, a user's
/// session bus), reachable by path whatever the network namespace: a way around the proxy.
/// Its world-writable corners (`/run/lock`) would also carry data from one run to the next.
const PRIVATE_DIRS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run"];
/// Where the host's POSIX message queues show (world-writable, like /dev/shm): the sandbox
/// mounts its own IPC namespace's there.
const MQUEUE: &str = "/dev/mqueue";
/// Host sockets outside those directories: the syslog socket (rsyslog may forward off-host).
const HIDDEN_SOCKETS: &[&str] = &["/dev/log"];
/// Inside the sandbox (on its private /tmp): the CA files, and HOME for a user without one.
const RUN_DIR: &str = "/tmp/airlock-run";
const PRIVATE_HOME: &str = "/tmp/home";
const HOSTNAME: &str = "airlock-run";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "airlock run needs root to create a network namespace (CAP_SYS_ADMIN, CAP_NET_ADMIN: \
         {0}). Run it as root (sudo); `--weak` runs COMMAND with the proxy variables only, \
         which nothing enforces"
    )]
    NoPrivilege(#[source] std::io::Error),
    #[error(
        "refusing: airlock run holds privilege without being run by root ({0}): file \
         capabilities or a setuid bit let every user who may execute it act as root. Remove \
         them (`setcap -r`, `chmod u-s`) and run it as root, e.g. through sudo with a fixed \
         command line (docs/run.md, \"Who may run it\")"
    )]
    Delegated(String),
    #[error(
        "refusing to run COMMAND as {0}: root can get out of the sandbox and read Airlock's \
         secrets. Pass --user UID[:GID] with other ids (or none: a uid of its own is picked), \
         or --allow-root to accept that"
    )]
    RootRefused(String),
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
    /// Who may own the proxy's listener when it is on loopback (root, the owner of Airlock's
    /// store or admin token): the relay sends nothing to another's.
    pub proxy_owners: Vec<u32>,
    /// Airlock's CA certificate (PEM).
    pub ca_file: PathBuf,
    pub agent: Option<AgentCredentials>,
    /// `--user`; `None`: a uid of its own from `uid_range` (ignored with `weak`).
    pub user: Option<RunAs>,
    pub uid_range: UidRange,
    /// Allow the user to be root (or map to it).
    pub allow_root: bool,
    /// Allow `user` to be a login account (a shell that is not `nologin`/`false`).
    pub allow_login_user: bool,
    /// No namespace: environment variables only.
    pub weak: bool,
    /// Descriptors COMMAND keeps (`--pass-fd`); every other one above 2 is closed.
    pub pass_fds: Vec<RawFd>,
    /// Variables passed from the caller's environment beyond the allowlist (`--env`).
    pub env: Vec<String>,
    /// The configured credentials' `env` variables (never passed).
    pub secret_env: Vec<String>,
    /// Airlock's files and directories (data, certs, config, secrets): unreadable inside.
    pub hide: Vec<PathBuf>,
    /// More of Airlock's files `--user` must not be able to change (with `hide`'s): the agents
    /// file, the rules directory, the token file.
    pub owned: Vec<PathBuf>,
    pub command: Vec<OsString>,
    /// Who asked (root itself, or the user `sudo` runs it for): what she may ask for, and
    /// whose permissions read the CA certificate.
    pub caller: Caller,
}

/// Runs COMMAND as configured and returns its exit code (128+N when killed by signal N).
pub fn run(opts: RunOptions) -> Result<i32, SandboxError> {
    if opts.command.is_empty() {
        return Err(SandboxError::Invalid("no COMMAND given".into()));
    }
    check_privilege()?;
    opts.caller
        .check_options(opts.user, opts.allow_root, &opts.pass_fds, opts.weak)?;
    env::check_pass(&opts.env, &opts.secret_env)?;
    let pass_fds = check_pass_fds(&opts.pass_fds)?;
    let proxy = connectable(opts.proxy);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SandboxError::io("starting the runtime", e))?;
    // Read with the caller's permissions: `--ca` (or a config she chose) may name any file.
    let caller_ca = || {
        opts.caller
            .as_invoker(|| read_ca(&opts.ca_file))
            .and_then(|r| r)
    };
    if opts.weak {
        let (ca_pem, bundle) = caller_ca()?;
        let files = RunFiles::create(&ca_pem, &bundle)?;
        let result = runtime.block_on(run_weak(&opts, proxy, &files));
        drop(runtime);
        drop(files);
        return result;
    }
    if let Some(user) = opts.user {
        child::check_ids(user, opts.allow_root)?;
        if user.root_like().is_none() {
            // Root is --allow-root's to allow, with its own warning.
            child::check_login_account(user, opts.allow_login_user)?;
            let airlocks: Vec<PathBuf> = opts.hide.iter().chain(&opts.owned).cloned().collect();
            owners::check_not_owner(user, &airlocks)?;
        }
    }
    // First: without privilege, this is the error to see.
    let (ns, listener) = Netns::create(proxy.port())?;
    let (ca_pem, bundle) = caller_ca()?;
    let lease = match opts.user {
        Some(_) => None,
        None => Some(child::allocate(opts.uid_range)?),
    };
    let run_as = match (&lease, opts.user) {
        (Some(l), _) => l.run_as,
        (None, Some(u)) => u,
        (None, None) => return Err(SandboxError::Invalid("no user to run as".into())),
    };
    let result = runtime.block_on(async {
        let inner = listener
            .local_addr()
            .map_err(|e| SandboxError::io("reading the relay address", e))?;
        let relay = listener
            .try_clone()
            .and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            })
            .map_err(|e| SandboxError::io("starting the relay", e))?;
        match std::net::TcpStream::connect_timeout(&proxy, Duration::from_secs(2)) {
            Err(_) => tracing::warn!(
                "airlock run: nothing answers at {proxy} (is `airlock serve` running? \
                 see --proxy)"
            ),
            // Someone else's listener would get the agent's token: refuse before starting.
            Ok(_) => crate::listener_owner::check(proxy, &opts.proxy_owners, "agent's token")
                .map_err(|why| SandboxError::Invalid(format!("refusing --proxy: {why}")))?,
        }
        let owners = std::sync::Arc::new(opts.proxy_owners.clone());
        tokio::spawn(relay::serve(relay, proxy, owners));
        let mut pty = pty::Pty::open((run_as.uid, run_as.gid))
            .map_err(|e| SandboxError::io("opening a pty for COMMAND", e))?;
        let plan = plan(
            &opts,
            &ns,
            run_as,
            lease.as_ref().map(|l| l.lock_fd()),
            &proxy_url(&opts.agent, inner),
            &ca_pem,
            &bundle,
            pass_fds,
            pty.as_ref(),
        )?;
        let signals = Signals::install()?;
        let started = spawn::spawn(plan).await?;
        let target = Target::new(started.pid);
        if let Some(p) = pty.as_mut() {
            if let Err(e) = p.start() {
                tracing::warn!("airlock run: the terminal relay did not start: {e}");
            }
        }
        let code = supervise(&target, started.exited, Some(&ns), pty.as_ref(), signals).await;
        if let Some(p) = pty.as_mut() {
            p.finish();
        }
        Ok(code)
    });
    // The relay's accepted sockets live in the runtime: dropping it closes them.
    drop(runtime);
    ns.kill_all();
    drop(listener);
    drop(ns);
    drop(lease);
    result
}

/// Airlock's CA (PEM), and it followed by the system bundle.
fn read_ca(path: &Path) -> Result<(String, String), SandboxError> {
    let ca_pem = std::fs::read_to_string(path).map_err(|e| {
        SandboxError::io(
            format!(
                "reading the CA certificate {} (is this the config `airlock serve` uses? pass \
                 --config with its file; or run `airlock ca init`)",
                path.display()
            ),
            e,
        )
    })?;
    if !ca_pem.contains("BEGIN CERTIFICATE") {
        return Err(SandboxError::Invalid(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    let system = SYSTEM_BUNDLES
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let bundle = format!("{}\n{system}", ca_pem.trim_end());
    Ok((ca_pem, bundle))
}

/// `--weak`: COMMAND as the caller, with the proxy and CA variables only.
async fn run_weak(
    opts: &RunOptions,
    proxy: SocketAddr,
    files: &RunFiles,
) -> Result<i32, SandboxError> {
    tracing::warn!(
        "airlock run --weak: COMMAND only gets proxy variables; nothing stops it from \
         connecting directly to any address"
    );
    let Some((program, args)) = opts.command.split_first() else {
        return Err(SandboxError::Invalid("no COMMAND given".into()));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).env_clear();
    let home = std::env::var_os("HOME").map(|h| ("HOME".into(), h));
    for (k, v) in environment(
        home.into_iter().collect(),
        &proxy_url(&opts.agent, proxy),
        &files.ca,
        &files.bundle,
        &opts.env,
    ) {
        cmd.env(k, v);
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let signals = Signals::install()?;
    let mut child = cmd
        .spawn()
        .map_err(|e| SandboxError::io(format!("starting {}", Path::new(program).display()), e))?;
    let target = Target::new(child.id().map(|p| p as libc::pid_t).unwrap_or(0));
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let code = child.wait().await.map(exit_code).unwrap_or(1);
        let _ = tx.send(code);
    });
    Ok(supervise(&target, rx, None, None, signals).await)
}

/// The forked processes' plan: argv, environment, paths to hide, files, descriptors.
#[allow(clippy::too_many_arguments)]
fn plan(
    opts: &RunOptions,
    ns: &Netns,
    run_as: RunAs,
    lock_fd: Option<RawFd>,
    proxy_url: &str,
    ca_pem: &str,
    bundle: &str,
    pass_fds: Vec<RawFd>,
    pty: Option<&pty::Pty>,
) -> Result<spawn::Plan, SandboxError> {
    let (pw_home, pw_name) = run_as.passwd();
    // Never covered: the directories COMMAND starts in and lives in (nor their ancestors).
    let keep: Vec<PathBuf> = std::env::current_dir()
        .ok()
        .into_iter()
        .chain(pw_home.as_ref().map(PathBuf::from))
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let (hide_dirs, mut hide_files) = hide::targets(&opts.hide, &keep)?;
    for s in HIDDEN_SOCKETS {
        // The socket itself; a symlink into /run (systemd's) points into the private /run.
        if let Ok(target) = std::fs::canonicalize(s) {
            let private = PRIVATE_DIRS.iter().any(|d| target.starts_with(d));
            if !private && !target.is_dir() && !hide_files.contains(&target) {
                hide_files.push(target);
            }
        }
    }
    let hidden = |p: &Path| hide_dirs.iter().any(|d| p.starts_with(d));
    let private_dirs: Vec<PathBuf> = PRIVATE_DIRS
        .iter()
        .map(PathBuf::from)
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) && !hidden(p.as_path()))
        .collect();
    if !private_dirs.iter().any(|p| p == Path::new("/tmp")) {
        return Err(SandboxError::Invalid(
            "/tmp must be a directory (the sandbox mounts a private one there)".into(),
        ));
    }
    let own_home = pw_home
        .filter(|h| Path::new(h).is_dir() && !hidden(Path::new(h)))
        .map(PathBuf::from);
    let home = own_home
        .clone()
        .unwrap_or_else(|| PathBuf::from(PRIVATE_HOME));
    let mut base: Vec<(OsString, OsString)> = vec![("HOME".into(), home.clone().into())];
    if let Some(name) = pw_name {
        base.push(("USER".into(), name.clone().into()));
        base.push(("LOGNAME".into(), name.into()));
    }
    let run_dir = Path::new(RUN_DIR);
    let (ca, bundle_path) = (
        run_dir.join("airlock-ca.pem"),
        run_dir.join("ca-bundle.pem"),
    );
    let env = environment(base, proxy_url, &ca, &bundle_path, &opts.env);
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let (program, args) = opts
        .command
        .split_first()
        .ok_or_else(|| SandboxError::Invalid("no COMMAND given".into()))?;
    let candidates = resolve_program(program, &path_var)?;
    let stdio = pty.map(|p| p.stdio()).unwrap_or([None; 3]);
    Ok(spawn::Plan {
        netns: ns.raw_fd(),
        run_as,
        root_allowed: opts.allow_root,
        programs: paths(&candidates)?,
        argv: std::iter::once(program)
            .chain(args)
            .map(|a| cstring(a))
            .collect::<Result<_, _>>()?,
        envp: env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.clone();
                kv.push("=");
                kv.push(v);
                cstring(&kv)
            })
            .collect::<Result<_, _>>()?,
        hide_dirs: paths(&hide_dirs)?,
        hide_files: paths(&hide_files)?,
        private_dirs: paths(&private_dirs)?,
        mqueue: match std::fs::symlink_metadata(MQUEUE) {
            Ok(m) if m.is_dir() && !hidden(Path::new(MQUEUE)) => Some(cstring(OsStr::new(MQUEUE))?),
            _ => None,
        },
        run_dir: cstring(run_dir.as_os_str())?,
        files: vec![
            (cstring(ca.as_os_str())?, ca_pem.as_bytes().to_vec()),
            (
                cstring(bundle_path.as_os_str())?,
                bundle.as_bytes().to_vec(),
            ),
        ],
        home: match own_home {
            Some(_) => None,
            None => Some(cstring(OsStr::new(PRIVATE_HOME))?),
        },
        cwd: std::env::current_dir()
            .ok()
            .and_then(|d| cstring(d.as_os_str()).ok()),
        fallback_dir: cstring(home.as_os_str())?,
        stdio,
        ctty: pty.and_then(|p| p.ctty_fd()),
        pass_fds,
        lock_fd,
        seccomp: seccomp::filters()?,
        hostname: cstring(OsStr::new(HOSTNAME))?,
    })
}

/// COMMAND's environment: the caller's allowlisted variables and `--env` names, then `base`
/// (HOME, USER, LOGNAME), the proxy and the CA variables (later entries replace earlier ones).
fn environment(
    base: Vec<(OsString, OsString)>,
    proxy_url: &str,
    ca: &Path,
    bundle: &Path,
    pass: &[String],
) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: OsString, v: OsString| {
        out.retain(|(old, _)| *old != k);
        out.push((k, v));
    };
    for (k, v) in env::passed_through(std::env::vars_os(), pass) {
        set(k, v);
    }
    for (k, v) in base {
        set(k, v);
    }
    for k in &env::PROXY_VARS[..6] {
        set(k.into(), proxy_url.into());
    }
    for (k, v) in [
        ("SSL_CERT_FILE", bundle),
        ("REQUESTS_CA_BUNDLE", bundle),
        ("CURL_CA_BUNDLE", bundle),
        ("GIT_SSL_CAINFO", bundle),
        ("NODE_EXTRA_CA_CERTS", ca),
        ("AIRLOCK_CA_FILE", ca),
    ] {
        set(k.into(), v.into());
    }
    out
}

fn proxy_url(agent: &Option<AgentCredentials>, addr: SocketAddr) -> String {
    match agent {
        Some(a) => format!(
            "http://{}:{}@{addr}",
            userinfo_escape(&a.name),
            userinfo_escape(&a.token)
        ),
        None => format!("http://{addr}"),
    }
}

fn cstring(s: &OsStr) -> Result<CString, SandboxError> {
    CString::new(s.as_bytes())
        .map_err(|_| SandboxError::Invalid(format!("{s:?} contains a NUL byte")))
}

fn paths(v: &[PathBuf]) -> Result<Vec<CString>, SandboxError> {
    v.iter().map(|p| cstring(p.as_os_str())).collect()
}

/// Where `program` may be, as `execve` needs it: as given if it has a slash, else every
/// executable file of that name in `path`, in order (COMMAND's user may not reach the first:
/// it tries them like `execvp`). None at all: "command not found".
fn resolve_program(program: &OsStr, path: &OsStr) -> Result<Vec<PathBuf>, SandboxError> {
    if program.as_bytes().contains(&b'/') {
        return Ok(vec![PathBuf::from(program)]);
    }
    let found: Vec<PathBuf> = std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .filter(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .collect();
    if found.is_empty() {
        return Err(SandboxError::Invalid(format!(
            "{}: command not found in PATH ({})",
            Path::new(program).display(),
            Path::new(path).display()
        )));
    }
    Ok(found)
}

/// `--pass-fd`s: above 2, open, at most 60; sorted and deduplicated.
fn check_pass_fds(fds: &[RawFd]) -> Result<Vec<RawFd>, SandboxError> {
    let mut out = fds.to_vec();
    out.sort_unstable();
    out.dedup();
    if out.len() > 60 {
        return Err(SandboxError::Invalid("at most 60 --pass-fd".into()));
    }
    for &fd in &out {
        // SAFETY: plain syscall; only queries the descriptor.
        if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(SandboxError::Invalid(format!(
                "--pass-fd {fd}: not an open descriptor above 2 (stdin, stdout and stderr are \
                 always passed)"
            )));
        }
    }
    Ok(out)
}

/// Signals `airlock run` forwards, listened to before COMMAND starts so none is lost.
struct Signals {
    forwarded: Vec<(i32, tokio::signal::unix::Signal)>,
    winch: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, SandboxError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut forwarded = Vec::new();
        for k in [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::quit(),
        ] {
            let s = signal(k).map_err(|e| SandboxError::io("installing signal handlers", e))?;
            forwarded.push((k.as_raw_value(), s));
        }
        let winch = signal(SignalKind::window_change())
            .map_err(|e| SandboxError::io("installing signal handlers", e))?;
        Ok(Signals { forwarded, winch })
    }
}

/// The process `airlock run` signals (init, or COMMAND with `--weak`), through a pidfd when
/// the kernel has them (never a recycled PID).
struct Target {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
}

impl Target {
    fn new(pid: libc::pid_t) -> Target {
        // SAFETY: plain syscall returning a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = (fd >= 0).then(|| {
            // SAFETY: pidfd_open returned a fresh descriptor we now own.
            unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
        });
        Target { pid, pidfd }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain syscalls; the pid is our unreaped child (or its pidfd).
        unsafe {
            match &self.pidfd {
                Some(fd) => {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        sig,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    );
                }
                None if self.pid > 0 => {
                    libc::kill(self.pid, sig);
                }
                None => {}
            }
        }
    }
}

/// Waits for `target` to exit, forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT (and window size
/// changes to the pty); after a signal, COMMAND has [`SIGNAL_GRACE`] to exit, then `target`
/// (init: the whole PID namespace) is killed.
async fn supervise(
    target: &Target,
    mut exited: tokio::sync::oneshot::Receiver<i32>,
    ns: Option<&Netns>,
    pty: Option<&pty::Pty>,
    mut signals: Signals,
) -> i32 {
    let mut deadline: Option<tokio::time::Instant> = None;
    enum Event {
        Exited(i32),
        Signal(Option<i32>),
        Winch,
        GraceOver,
    }
    loop {
        let next_signal = futures_util::future::select_all(
            signals
                .forwarded
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
            code = &mut exited => Event::Exited(code.unwrap_or(1)),
            (sig, _, _) = next_signal => Event::Signal(sig),
            _ = signals.winch.recv() => Event::Winch,
            _ = grace => Event::GraceOver,
        };
        match event {
            Event::Exited(code) => return code,
            Event::Signal(sig) => {
                if let Some(sig) = sig {
                    target.signal(sig);
                }
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + SIGNAL_GRACE);
            }
            Event::Winch => {
                if let Some(p) = pty {
                    p.resize();
                }
            }
            Event::GraceOver => {
                deadline = None;
                tracing::warn!(
                    "airlock run: COMMAND did not exit {}s after the signal; killing it",
                    SIGNAL_GRACE.as_secs()
                );
                target.signal(libc::SIGKILL);
                if let Some(ns) = ns {
                    ns.kill_all();
                }
            }
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
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

/// `--weak` only: a world-readable directory with the CA files COMMAND trusts. Removed on drop.
/// (The sandbox writes them on its private /tmp instead, which vanishes with it.)
struct RunFiles {
    dir: PathBuf,
    /// Airlock's CA alone.
    ca: PathBuf,
    /// Airlock's CA followed by the system bundle.
    bundle: PathBuf,
}

impl RunFiles {
    fn create(ca_pem: &str, bundle: &str) -> Result<RunFiles, SandboxError> {
        use std::os::unix::fs::DirBuilderExt;
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
        write(&files.bundle, bundle)?;
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

    #[test]
    fn programs_resolve_through_path() {
        let found =
            resolve_program(OsStr::new("sh"), OsStr::new("/nonexistent:/bin:/usr/bin")).unwrap();
        assert!(
            !found.is_empty() && found.iter().all(|p| p.ends_with("sh")),
            "{found:?}"
        );
        assert!(resolve_program(OsStr::new("no-such-cmd-x"), OsStr::new("/bin")).is_err());
        assert_eq!(
            resolve_program(OsStr::new("./x"), OsStr::new("")).unwrap(),
            vec![PathBuf::from("./x")]
        );
    }

    #[test]
    fn pass_fds_must_be_open_and_above_stderr() {
        assert!(check_pass_fds(&[1]).is_err());
        assert!(check_pass_fds(&[999_999]).is_err());
        let f = std::fs::File::open("/dev/null").unwrap();
        let fd = f.as_raw_fd();
        assert_eq!(check_pass_fds(&[fd, fd]).unwrap(), vec![fd]);
    }
}
