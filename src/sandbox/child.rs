//! Starting COMMAND: between fork and exec it joins the sandbox namespace, then drops to an
//! unprivileged user for good (no supplementary groups, `no_new_privs`, killed if `airlock run`
//! dies). Also the user selection (`--user`, `$SUDO_UID`, nobody) and its passwd entry.

use std::io;
use std::os::fd::RawFd;

use super::SandboxError;

/// The user COMMAND runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// The conventional `nobody:nogroup`.
pub const NOBODY: RunAs = RunAs {
    uid: 65534,
    gid: 65534,
};

impl RunAs {
    /// Parses `UID[:GID]`, or a user name from /etc/passwd; a missing GID is the user's primary
    /// group from /etc/passwd, else the UID.
    pub fn parse(spec: &str) -> Result<RunAs, SandboxError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let bad = || SandboxError::Invalid(format!("--user {spec:?}: expected UID[:GID]"));
        let entry = match user.parse::<u32>() {
            Ok(uid) => passwd_entry(|e| e.uid == uid).or(Some(PasswdEntry {
                uid,
                gid: uid,
                home: None,
                name: None,
            })),
            Err(_) => passwd_entry(|e| e.name.as_deref() == Some(user)),
        }
        .ok_or_else(bad)?;
        let gid = match group {
            Some(g) => g.parse::<u32>().map_err(|_| bad())?,
            None => entry.gid,
        };
        Ok(RunAs {
            uid: entry.uid,
            gid,
        })
    }

    /// `$SUDO_UID:$SUDO_GID` when both are set (the user who ran sudo), else nobody.
    pub fn default_from_env() -> RunAs {
        let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
        match (var("SUDO_UID"), var("SUDO_GID")) {
            (Some(uid), Some(gid)) => RunAs { uid, gid },
            _ => NOBODY,
        }
    }

    /// HOME, USER and LOGNAME for this user, when /etc/passwd knows it.
    pub fn login_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(e) = passwd_entry(|e| e.uid == self.uid) {
            if let Some(home) = e.home {
                env.push(("HOME", home));
            }
            if let Some(name) = e.name {
                env.push(("USER", name.clone()));
                env.push(("LOGNAME", name));
            }
        }
        env
    }
}

struct PasswdEntry {
    uid: u32,
    gid: u32,
    home: Option<String>,
    name: Option<String>,
}

fn passwd_entry(pred: impl Fn(&PasswdEntry) -> bool) -> Option<PasswdEntry> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let entry = PasswdEntry {
            name: Some(f.first()?.to_string()),
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5).map(|h| h.to_string()),
        };
        pred(&entry).then_some(entry)
    })
}

/// What the child does between fork and exec. `netns` is `None` in `--weak` mode (no namespace,
/// no user change).
#[derive(Clone, Copy)]
pub struct ChildSetup {
    pub netns: Option<RawFd>,
    pub run_as: Option<RunAs>,
    /// `airlock run`'s PID, to notice it died before PR_SET_PDEATHSIG took effect.
    pub parent: libc::pid_t,
}

impl ChildSetup {
    /// Installs the setup on `cmd`.
    pub fn install(self, cmd: &mut tokio::process::Command) {
        // SAFETY: the closure only makes async-signal-safe syscalls (no allocation, no locks).
        unsafe {
            cmd.pre_exec(move || self.apply());
        }
    }

    /// Runs in the forked child, before exec.
    fn apply(&self) -> io::Result<()> {
        fn check(rc: libc::c_int) -> io::Result<()> {
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        // SAFETY: plain syscalls on values owned by this (single-threaded, forked) process.
        unsafe {
            if let Some(fd) = self.netns {
                check(libc::setns(fd, libc::CLONE_NEWNET))?;
            }
            if let Some(u) = self.run_as {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setresgid(u.gid, u.gid, u.gid))?;
                check(libc::setresuid(u.uid, u.uid, u.uid))?;
                // Setuid/setgid binaries and file capabilities can no longer raise privileges.
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            // After the credential change, which clears it.
            check(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ))?;
            if libc::getppid() != self.parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    }
}
