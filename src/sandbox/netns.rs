//! The sandbox's network namespace: created empty (only `lo`, brought up) on a short-lived
//! thread, kept alive by a file descriptor and the relay listener bound inside it, and emptied
//! of processes on cleanup. The namespace is anonymous (never bind-mounted under
//! `/run/netns`), so the kernel frees it as soon as the last process and socket in it are gone:
//! nothing can leak even if `airlock run` itself is killed with SIGKILL.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use super::SandboxError;

/// A network namespace with no interface but `lo`.
pub struct Netns {
    fd: OwnedFd,
    inode: u64,
}

impl Netns {
    /// Creates the namespace and binds a TCP listener on `127.0.0.1:port` inside it (any free
    /// port if `port` is taken or 0). Fails with [`SandboxError::NoPrivilege`] without
    /// CAP_SYS_ADMIN.
    pub fn create(port: u16) -> Result<(Netns, TcpListener), SandboxError> {
        std::thread::Builder::new()
            .name("airlock-netns".into())
            .spawn(move || create_on_this_thread(port))
            .map_err(|e| SandboxError::io("starting the namespace thread", e))?
            .join()
            .map_err(|_| SandboxError::Invalid("the namespace thread panicked".into()))?
    }

    /// The descriptor to `setns()` into.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// SIGKILLs every process in the namespace until none is left (bounded; returns how many
    /// were still found on the last pass, 0 when the namespace holds no process any more).
    pub fn kill_all(&self) -> usize {
        let mut left = 0;
        for round in 0..100 {
            left = signal_members(self.inode, libc::SIGKILL);
            if left == 0 {
                return 0;
            }
            std::thread::sleep(Duration::from_millis(if round < 10 { 10 } else { 50 }));
        }
        left
    }
}

fn create_on_this_thread(port: u16) -> Result<(Netns, TcpListener), SandboxError> {
    // SAFETY: plain syscall; CLONE_NEWNET moves only the calling thread (this dedicated one,
    // which exits right after) into a new namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => SandboxError::NoPrivilege(err),
            _ => SandboxError::io("creating a network namespace", err),
        });
    }
    let file = File::open("/proc/thread-self/ns/net")
        .map_err(|e| SandboxError::io("opening the new network namespace", e))?;
    let inode = file
        .metadata()
        .map_err(|e| SandboxError::io("reading the new network namespace", e))?
        .ino();
    loopback_up().map_err(|e| SandboxError::io("bringing up lo in the namespace", e))?;
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .or_else(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .map_err(|e| SandboxError::io("binding the relay inside the namespace", e))?;
    Ok((
        Netns {
            fd: file.into(),
            inode,
        },
        listener,
    ))
}

/// `ip link set lo up` in the calling thread's namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain syscall; the descriptor is owned right below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq we own; ifru_flags is the
    // union member these requests use.
    unsafe {
        if libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut req as *mut libc::ifreq,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &req as *const libc::ifreq,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends `sig` to every process whose network namespace is `inode`; returns how many it found.
/// Uses pidfds so a recycled PID is never signalled by mistake.
fn signal_members(inode: u64, sig: libc::c_int) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let me = std::process::id();
    let mut found = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        // Open the pidfd first, then check the namespace: if the PID is recycled in between,
        // the pidfd still names the old (dead) process and the signal goes nowhere.
        // SAFETY: plain syscall returning a new descriptor or -1.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if pidfd < 0 {
            continue;
        }
        // SAFETY: pidfd_open returned a fresh descriptor we now own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
        let in_ns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| m.ino() == inode)
            .unwrap_or(false);
        if in_ns {
            found += 1;
            // SAFETY: plain syscall on a descriptor we own.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            }
        }
    }
    found
}
