//! Starting COMMAND in the sandbox. Everything is prepared before the fork; the forked processes
//! only make syscalls (no allocation, no locks), as is required after fork in a threaded
//! program.
//!
//! ```text
//! airlock run ── spawner thread: unshare(CLONE_NEWPID), fork, waitpid
//!                  └─ init (pid 1 of a new PID namespace, root): setns(netns), new mount,
//!                     IPC and UTS namespaces, private /proc, hidden paths, private /tmp,
//!                     /var/tmp, /dev/shm, /run and /dev/mqueue, CA files; forwards signals, reaps orphans,
//!                     exits with COMMAND's status (the kernel then kills the whole namespace)
//!                       └─ COMMAND (pid 2): new session (on its pty), descriptors closed
//!                          but --pass-fd ones, capability bounding set dropped, setgroups(0),
//!                          setresgid/setresuid then checked, no capabilities, no_new_privs,
//!                          seccomp, default signal dispositions, execve
//! ```
//!
//! The spawner thread stays blocked in `waitpid` for the whole run: PR_SET_PDEATHSIG fires when
//! the parent *thread* exits, so init dies exactly when `airlock run` does. A failure at any
//! step before `execve` is reported through a close-on-exec pipe (step, index, errno) and
//! nothing runs.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use seccompiler::BpfProgram;

use super::child::RunAs;
use super::seccomp;
use super::SandboxError;

/// Everything the forked processes need, prepared beforehand.
pub struct Plan {
    pub netns: RawFd,
    pub run_as: RunAs,
    /// COMMAND's uid may be root (`--allow-root`): skip the "cannot become root again" check.
    pub root_allowed: bool,
    /// Where COMMAND may be, tried in order like `execvp` does (EACCES or ENOENT: the next).
    pub programs: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub hide_dirs: Vec<CString>,
    pub hide_files: Vec<CString>,
    /// Directories that get a fresh tmpfs (mode 1777).
    pub private_dirs: Vec<CString>,
    /// `/dev/mqueue` where the host has it: a fresh mqueue file system of the sandbox's own IPC
    /// namespace goes there (the host's would keep queues COMMAND creates after the run).
    pub mqueue: Option<CString>,
    /// Created 0755 after the private /tmp is mounted; `files` go in it (mode 0644).
    pub run_dir: CString,
    pub files: Vec<(CString, Vec<u8>)>,
    /// Created 0700 and given to COMMAND's user (its HOME when it has no passwd home).
    pub home: Option<CString>,
    /// Where init `chdir`s again after the mounts (so a working directory inside a hidden path
    /// resolves to the empty view); COMMAND falls back to `fallback_dir` if it cannot enter it.
    pub cwd: Option<CString>,
    pub fallback_dir: CString,
    /// What COMMAND's fds 0, 1, 2 become (`None`: inherited).
    pub stdio: [Option<RawFd>; 3],
    /// Which of COMMAND's fds 0–2 is its pty, to make its controlling terminal.
    pub ctty: Option<usize>,
    /// Kept open in COMMAND (sorted, all > 2).
    pub pass_fds: Vec<RawFd>,
    /// The uid's lock file: init keeps it, so the uid stays reserved while init lives.
    pub lock_fd: Option<RawFd>,
    pub seccomp: Vec<BpfProgram>,
    pub hostname: CString,
}

/// The step that failed before `execve`, as init or COMMAND report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    ParentGone = 1,
    DeathSignal,
    Setns,
    Unshare,
    MountPrivate,
    MountProc,
    HideDir,
    HideFile,
    PrivateDir,
    Mqueue,
    RunDir,
    WriteFile,
    Home,
    Hostname,
    Fork,
    Setsid,
    Stdio,
    Ctty,
    CloseFds,
    PassFd,
    CapBound,
    Setgroups,
    Setgid,
    Setuid,
    VerifyIds,
    Caps,
    RegainRoot,
    NoNewPrivs,
    Seccomp,
    Chdir,
    Exec,
}

const STEPS: &[Step] = &[
    Step::ParentGone,
    Step::DeathSignal,
    Step::Setns,
    Step::Unshare,
    Step::MountPrivate,
    Step::MountProc,
    Step::HideDir,
    Step::HideFile,
    Step::PrivateDir,
    Step::Mqueue,
    Step::RunDir,
    Step::WriteFile,
    Step::Home,
    Step::Hostname,
    Step::Fork,
    Step::Setsid,
    Step::Stdio,
    Step::Ctty,
    Step::CloseFds,
    Step::PassFd,
    Step::CapBound,
    Step::Setgroups,
    Step::Setgid,
    Step::Setuid,
    Step::VerifyIds,
    Step::Caps,
    Step::RegainRoot,
    Step::NoNewPrivs,
    Step::Seccomp,
    Step::Chdir,
    Step::Exec,
];

/// A failure report: step, index (of the path or fd concerned), errno (0: a check failed).
type Report = [u8; 12];

/// A started sandbox.
pub struct Started {
    /// init's PID in `airlock run`'s namespace (signals go there).
    pub pid: libc::pid_t,
    /// init's exit code once it exited (128+N if killed by signal N).
    pub exited: tokio::sync::oneshot::Receiver<i32>,
}

/// Forks the sandbox on a new thread; returns once COMMAND has exec'd (or failed to).
pub async fn spawn(plan: Plan) -> Result<Started, SandboxError> {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("airlock-spawn".into())
        .spawn(move || spawner(plan, started_tx, exit_tx))
        .map_err(|e| SandboxError::io("starting the spawner thread", e))?;
    let pid = started_rx
        .await
        .map_err(|_| SandboxError::Invalid("the spawner thread died".into()))??;
    Ok(Started {
        pid,
        exited: exit_rx,
    })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds` with two fresh descriptors, owned right below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn spawner(
    plan: Plan,
    started: tokio::sync::oneshot::Sender<Result<libc::pid_t, SandboxError>>,
    exited: tokio::sync::oneshot::Sender<i32>,
) {
    let argv = pointers(&plan.argv);
    let envp = pointers(&plan.envp);
    let pipes = pipe().and_then(|err| Ok((err, pipe()?)));
    let ((err_r, err_w), (life_r, life_w)) = match pipes {
        Ok(p) => p,
        Err(e) => {
            let _ = started.send(Err(SandboxError::io("creating pipes", e)));
            return;
        }
    };
    // SAFETY: plain syscalls. Blocking every signal on this thread (which only forks and
    // waits) means init starts with them all blocked: it takes them with sigwaitinfo.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        // Only this thread's children go into the new PID namespace.
        if libc::unshare(libc::CLONE_NEWPID) != 0 {
            let e = io::Error::last_os_error();
            let _ = started.send(Err(SandboxError::io("creating a PID namespace", e)));
            return;
        }
        libc::fork()
    };
    if pid == 0 {
        // SAFETY: in the forked child; `init` never returns.
        unsafe {
            libc::close(err_r.as_raw_fd());
            libc::close(life_w.as_raw_fd());
            init(&plan, &argv, &envp, err_w.as_raw_fd(), life_r.as_raw_fd())
        }
    }
    drop(err_w);
    drop(life_r);
    if pid < 0 {
        let e = io::Error::last_os_error();
        let _ = started.send(Err(SandboxError::io("fork", e)));
        return;
    }
    let report = read_report(&err_r);
    drop(err_r);
    let code = if let Some(r) = report {
        let err = describe(&plan, r);
        let code = wait(pid);
        let _ = started.send(Err(err));
        code
    } else {
        let _ = started.send(Ok(pid));
        wait(pid)
    };
    let _ = exited.send(code);
    // Kept open until init is gone: init saw it open at start (else `airlock run` had died).
    drop(life_w);
}

/// Null-terminated pointer array for execve.
fn pointers(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Waits for `pid`; its exit code, or 128+N when killed by signal N.
fn wait(pid: libc::pid_t) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: plain syscall.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return status_code(status);
        }
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return 1;
        }
    }
}

fn status_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// Reads the failure report, if any (EOF without one: COMMAND was exec'd).
fn read_report(fd: &OwnedFd) -> Option<Report> {
    let mut buf: Report = [0; 12];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into a buffer we own.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    (got == buf.len()).then_some(buf)
}

fn describe(plan: &Plan, r: Report) -> SandboxError {
    let word = |i: usize| u32::from_ne_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    let (step, index, errno) = (word(0), word(4) as usize, word(8) as i32);
    let step = STEPS.iter().copied().find(|s| *s as u32 == step);
    let path = |v: &[CString]| {
        v.get(index)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let what = match step {
        Some(Step::ParentGone) => "airlock run exited during setup".to_string(),
        Some(Step::DeathSignal) => "setting the parent-death signal".into(),
        Some(Step::Setns) => "entering the network namespace".into(),
        Some(Step::Unshare) => "creating mount, IPC and UTS namespaces".into(),
        Some(Step::MountPrivate) => "making the mounts private".into(),
        Some(Step::MountProc) => "mounting /proc for the PID namespace".into(),
        Some(Step::HideDir) => format!("hiding {}", path(&plan.hide_dirs)),
        Some(Step::HideFile) => format!("hiding {}", path(&plan.hide_files)),
        Some(Step::PrivateDir) => format!("mounting a private {}", path(&plan.private_dirs)),
        Some(Step::Mqueue) => "mounting a private /dev/mqueue".into(),
        Some(Step::RunDir) => format!("creating {}", plan.run_dir.to_string_lossy()),
        Some(Step::WriteFile) => format!(
            "writing {}",
            plan.files
                .get(index)
                .map(|f| f.0.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        Some(Step::Home) => "creating COMMAND's home directory".into(),
        Some(Step::Hostname) => "setting the hostname".into(),
        Some(Step::Fork) => "forking COMMAND".into(),
        Some(Step::Setsid) => "starting a new session".into(),
        Some(Step::Stdio) => "setting up stdin/stdout/stderr".into(),
        Some(Step::Ctty) => "making the pty the controlling terminal".into(),
        Some(Step::CloseFds) => "closing inherited descriptors".into(),
        Some(Step::PassFd) => format!(
            "keeping --pass-fd {}",
            plan.pass_fds.get(index).copied().unwrap_or(-1)
        ),
        Some(Step::CapBound) => "dropping the capability bounding set".into(),
        Some(Step::Setgroups) => "clearing supplementary groups".into(),
        Some(Step::Setgid) => format!("switching to gid {}", plan.run_as.gid),
        Some(Step::Setuid) => format!("switching to uid {}", plan.run_as.uid),
        Some(Step::VerifyIds) => format!(
            "checking the switch to {}:{} (real, effective and saved ids and groups differ)",
            plan.run_as.uid, plan.run_as.gid
        ),
        Some(Step::Caps) => "clearing capabilities".into(),
        Some(Step::RegainRoot) => "checking that root cannot be regained (it could)".into(),
        Some(Step::NoNewPrivs) => "setting no_new_privs".into(),
        Some(Step::Seccomp) => format!("installing seccomp filter {index}"),
        Some(Step::Chdir) => "changing directory".into(),
        Some(Step::Exec) => format!(
            "executing {}",
            plan.programs
                .get(index)
                .or(plan.argv.first())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        None => format!("step {step:?}"),
    };
    let msg = if errno == 0 {
        format!("sandbox setup failed, nothing was run: {what}")
    } else {
        format!(
            "sandbox setup failed, nothing was run: {what}: {}",
            io::Error::from_raw_os_error(errno)
        )
    };
    SandboxError::Invalid(msg)
}

// ---- in the forked processes: syscalls only ----

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reports `step` on `fd` and exits 127.
fn fail(fd: RawFd, step: Step, index: usize, errno: i32) -> ! {
    let mut buf: Report = [0; 12];
    buf[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    buf[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
    buf[8..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: plain syscalls.
    unsafe {
        libc::write(fd, buf.as_ptr().cast(), buf.len());
        libc::_exit(127)
    }
}

/// Fails with `step` unless `rc` is 0 (or positive).
fn ok(rc: libc::c_int, fd: RawFd, step: Step, index: usize) {
    if rc < 0 {
        fail(fd, step, index, errno());
    }
}

const TMPFS_HIDE: &std::ffi::CStr = c"size=4k,nr_inodes=2,mode=000";
const TMPFS_PRIVATE: &std::ffi::CStr = c"mode=1777";

/// init: pid 1 of the new PID namespace.
///
/// # Safety
/// Only in the child of `fork`.
unsafe fn init(
    plan: &Plan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    err: RawFd,
    lifeline: RawFd,
) -> ! {
    let null = std::ptr::null::<libc::c_char>();
    ok(
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ),
        err,
        Step::DeathSignal,
        0,
    );
    // `airlock run` may have died before the death signal was set: then every writer of the
    // lifeline is gone.
    let mut pfd = libc::pollfd {
        fd: lifeline,
        events: libc::POLLIN,
        revents: 0,
    };
    if libc::poll(&mut pfd, 1, 0) != 0 && pfd.revents & libc::POLLHUP != 0 {
        fail(err, Step::ParentGone, 0, 0);
    }
    ok(
        libc::setns(plan.netns, libc::CLONE_NEWNET),
        err,
        Step::Setns,
        0,
    );
    ok(
        libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS),
        err,
        Step::Unshare,
        0,
    );
    // Nothing mounted below propagates back to the host.
    ok(
        libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ),
        err,
        Step::MountPrivate,
        0,
    );
    ok(
        libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ),
        err,
        Step::MountProc,
        0,
    );
    for (i, d) in plan.hide_dirs.iter().enumerate() {
        ok(
            libc::mount(
                c"tmpfs".as_ptr(),
                d.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                TMPFS_HIDE.as_ptr().cast(),
            ),
            err,
            Step::HideDir,
            i,
        );
    }
    for (i, f) in plan.hide_files.iter().enumerate() {
        ok(
            libc::mount(
                c"/dev/null".as_ptr(),
                f.as_ptr(),
                null,
                libc::MS_BIND,
                std::ptr::null(),
            ),
            err,
            Step::HideFile,
            i,
        );
    }
    for (i, d) in plan.private_dirs.iter().enumerate() {
        ok(
            libc::mount(
                c"tmpfs".as_ptr(),
                d.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                TMPFS_PRIVATE.as_ptr().cast(),
            ),
            err,
            Step::PrivateDir,
            i,
        );
    }
    // The IPC namespace's own queues (mounted after its unshare, so this one's).
    if let Some(m) = &plan.mqueue {
        ok(
            libc::mount(
                c"mqueue".as_ptr(),
                m.as_ptr(),
                c"mqueue".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ),
            err,
            Step::Mqueue,
            0,
        );
    }
    // The CA files, on the private /tmp: they vanish with the mount namespace.
    ok(
        libc::mkdir(plan.run_dir.as_ptr(), 0o755),
        err,
        Step::RunDir,
        0,
    );
    ok(
        libc::chmod(plan.run_dir.as_ptr(), 0o755),
        err,
        Step::RunDir,
        0,
    );
    for (i, (path, bytes)) in plan.files.iter().enumerate() {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644,
        );
        ok(fd, err, Step::WriteFile, i);
        let mut rest: &[u8] = bytes;
        while !rest.is_empty() {
            let n = libc::write(fd, rest.as_ptr().cast(), rest.len());
            if n <= 0 {
                fail(err, Step::WriteFile, i, errno());
            }
            rest = &rest[n as usize..];
        }
        ok(libc::fchmod(fd, 0o644), err, Step::WriteFile, i);
        libc::close(fd);
    }
    if let Some(home) = &plan.home {
        ok(libc::mkdir(home.as_ptr(), 0o700), err, Step::Home, 0);
        ok(
            libc::chown(home.as_ptr(), plan.run_as.uid, plan.run_as.gid),
            err,
            Step::Home,
            0,
        );
    }
    let name = plan.hostname.as_bytes();
    ok(
        libc::sethostname(name.as_ptr().cast(), name.len()),
        err,
        Step::Hostname,
        0,
    );
    // Resolve the working directory again in the new view (a directory now hidden resolves to
    // the empty tmpfs; one under a private /tmp no longer exists: then `/`).
    let cwd_ok = match &plan.cwd {
        Some(c) => libc::chdir(c.as_ptr()) == 0,
        None => false,
    };
    if !cwd_ok {
        libc::chdir(c"/".as_ptr());
    }

    let cmd = libc::fork();
    if cmd < 0 {
        fail(err, Step::Fork, 0, errno());
    }
    if cmd == 0 {
        command(plan, argv, envp, err);
    }
    // init keeps only the uid's lock: not the error pipe (so `airlock run` sees EOF at exec),
    // the lifeline, the namespace, the relay or the pty.
    let lock = plan.lock_fd.unwrap_or(-1);
    let _ = close_fds_except(&[lock]);
    let mut all: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut all);
    loop {
        let sig = libc::sigwaitinfo(&all, std::ptr::null_mut());
        if sig == libc::SIGCHLD {
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == cmd {
                    // Exiting kills every other process in the namespace.
                    libc::_exit(status_code(status));
                }
            }
        } else if sig > 0 {
            libc::kill(cmd, sig);
        }
    }
}

/// COMMAND, between init's fork and `execve`.
///
/// # Safety
/// Only in the child of `fork`.
unsafe fn command(
    plan: &Plan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    err: RawFd,
) -> ! {
    ok(libc::setsid(), err, Step::Setsid, 0);
    for (target, src) in plan.stdio.iter().enumerate() {
        if let Some(src) = src {
            ok(libc::dup2(*src, target as RawFd), err, Step::Stdio, target);
        }
    }
    if let Some(fd) = plan.ctty {
        ok(
            libc::ioctl(fd as RawFd, libc::TIOCSCTTY, 0),
            err,
            Step::Ctty,
            0,
        );
    }
    // Only stdio, --pass-fd and (close-on-exec) the error pipe survive.
    let mut keep = [0 as RawFd; 64];
    let mut n = 0;
    for &fd in plan.pass_fds.iter().chain(std::iter::once(&err)) {
        if n < keep.len() {
            keep[n] = fd;
            n += 1;
        }
    }
    keep[..n].sort_unstable();
    if let Err(e) = close_fds_except(&keep[..n]) {
        fail(err, Step::CloseFds, 0, e);
    }
    for (i, &fd) in plan.pass_fds.iter().enumerate() {
        ok(libc::fcntl(fd, libc::F_SETFD, 0), err, Step::PassFd, i);
    }
    // No capability can come back through exec.
    for cap in 0..64 {
        if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
            let e = errno();
            if e == libc::EINVAL {
                break;
            }
            fail(err, Step::CapBound, cap, e);
        }
    }
    libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
        0,
        0,
    );
    let RunAs { uid, gid } = plan.run_as;
    ok(
        libc::setgroups(0, std::ptr::null()),
        err,
        Step::Setgroups,
        0,
    );
    ok(libc::setresgid(gid, gid, gid), err, Step::Setgid, 0);
    ok(libc::setresuid(uid, uid, uid), err, Step::Setuid, 0);
    let (mut r, mut e, mut s) = (0, 0, 0);
    if libc::getresuid(&mut r, &mut e, &mut s) != 0 || (r, e, s) != (uid, uid, uid) {
        fail(err, Step::VerifyIds, 0, 0);
    }
    if libc::getresgid(&mut r, &mut e, &mut s) != 0 || (r, e, s) != (gid, gid, gid) {
        fail(err, Step::VerifyIds, 1, 0);
    }
    if libc::getgroups(0, std::ptr::null_mut()) != 0 {
        fail(err, Step::VerifyIds, 2, 0);
    }
    if let Err(e) = clear_caps() {
        fail(err, Step::Caps, 0, e);
    }
    if !plan.root_allowed && (libc::setuid(0) == 0 || libc::setgid(0) == 0) {
        fail(err, Step::RegainRoot, 0, 0);
    }
    ok(
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        err,
        Step::NoNewPrivs,
        0,
    );
    // After the credential change, which clears it; init (our parent) is pid 1 here.
    ok(
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ),
        err,
        Step::DeathSignal,
        1,
    );
    if libc::getppid() != 1 {
        fail(err, Step::ParentGone, 1, 0);
    }
    if libc::access(c".".as_ptr(), libc::X_OK) != 0 {
        let msg = b"airlock run: COMMAND's user cannot enter the working directory (hidden, \
                    private or not permitted): starting in its home directory\r\n";
        libc::write(2, msg.as_ptr().cast(), msg.len());
        ok(libc::chdir(plan.fallback_dir.as_ptr()), err, Step::Chdir, 0);
    }
    for (i, prog) in plan.seccomp.iter().enumerate() {
        if let Err(e) = seccomp::install(prog) {
            fail(err, Step::Seccomp, i, e);
        }
    }
    // Default dispositions (Rust ignores SIGPIPE; ignored signals would survive exec) and
    // nothing blocked (init blocked everything before the fork).
    for sig in 1..65 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    let mut last = (0, libc::ENOENT);
    for (i, p) in plan.programs.iter().enumerate() {
        libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr());
        let e = errno();
        match e {
            // Like execvp: a candidate this user may not run, or that is gone, is skipped.
            libc::EACCES | libc::ENOENT | libc::ENOTDIR => {
                if last.1 != libc::EACCES {
                    last = (i, e);
                }
            }
            _ => fail(err, Step::Exec, i, e),
        }
    }
    fail(err, Step::Exec, last.0, last.1)
}

/// Clears the effective, permitted and inheritable capability sets (root with `--allow-root`
/// keeps its uid but no capability) and checks they are empty.
unsafe fn clear_caps() -> Result<(), i32> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const V3: u32 = 0x2008_0522;
    let mut header = Header {
        version: V3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
        return Err(errno());
    }
    data[0].permitted = u32::MAX;
    if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
        return Err(errno());
    }
    if data
        .iter()
        .any(|d| d.effective != 0 || d.permitted != 0 || d.inheritable != 0)
    {
        return Err(libc::EPERM);
    }
    Ok(())
}

/// Closes every descriptor above 2 except `keep` (sorted): `close_range`, else each entry of
/// /proc/self/fd.
fn close_fds_except(keep: &[RawFd]) -> Result<(), i32> {
    let mut lo: libc::c_uint = 3;
    let mut ranges = keep
        .iter()
        .map(|&k| k as libc::c_uint)
        .filter(|&k| k >= 3)
        .map(|k| (k, k.saturating_add(1)))
        .chain(std::iter::once((libc::c_uint::MAX, libc::c_uint::MAX)));
    let all_closed = ranges.all(|(k, next)| {
        let closed = k <= lo || {
            let last = if k == libc::c_uint::MAX { k } else { k - 1 };
            // SAFETY: plain syscall.
            unsafe { libc::syscall(libc::SYS_close_range, lo, last, 0) == 0 }
        };
        lo = lo.max(next);
        closed
    });
    if all_closed {
        return Ok(());
    }
    close_listed_fds(keep)
}

/// The fallback for kernels without `close_range` (before 5.9): reads /proc/self/fd with
/// getdents64 into a stack buffer and closes what it lists.
fn close_listed_fds(keep: &[RawFd]) -> Result<(), i32> {
    // SAFETY: plain syscalls on a buffer we own.
    unsafe {
        let dir = libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return Err(errno());
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len());
            if n < 0 {
                let e = errno();
                libc::close(dir);
                return Err(e);
            }
            if n == 0 {
                break;
            }
            let mut off = 0usize;
            while off + 19 < n as usize {
                // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
                let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                if reclen == 0 {
                    break;
                }
                let mut fd: i64 = 0;
                let mut digits = 0;
                for &b in &buf[off + 19..off + reclen] {
                    if !b.is_ascii_digit() {
                        break;
                    }
                    fd = fd * 10 + i64::from(b - b'0');
                    digits += 1;
                }
                if digits > 0 && fd > 2 && fd as RawFd != dir && !keep.contains(&(fd as RawFd)) {
                    libc::close(fd as RawFd);
                }
                off += reclen;
            }
        }
        libc::close(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_a_report_code() {
        for (i, s) in STEPS.iter().enumerate() {
            assert_eq!(*s as u32, i as u32 + 1);
        }
    }

    #[test]
    fn exit_statuses_map_to_codes() {
        assert_eq!(status_code(7 << 8), 7);
        assert_eq!(status_code(libc::SIGTERM), 128 + libc::SIGTERM);
    }
}
