//! Who asked for `airlock run`, and with what right. `airlock run` needs root; whoever may start
//! it as root may become root unless it holds back, so:
//!
//! - [`check_privilege`]: privilege that did not come with a real uid of 0 (file capabilities,
//!   a setuid bit, ambient capabilities) is refused: any user who may execute such a binary
//!   could otherwise run a command as root (`--user 0 --allow-root`) or read root's files.
//! - [`Caller::find`]: root through `sudo`, `pkexec` or `doas` acts for the user who asked
//!   (`SUDO_UID`, `PKEXEC_UID`, `DOAS_USER`, set by the tool itself). For such a delegated run,
//!   [`Caller::check_options`] refuses what would hand that user root's powers (`--user` other
//!   than her own, `--allow-root`, `--pass-fd`, `--weak`), and [`Caller::as_invoker`] reads the
//!   files she names (config, CA) with her permissions, not root's.

use std::io;
use std::os::fd::RawFd;
use std::path::Path;

use super::child::RunAs;
use super::SandboxError;

/// The user `airlock run` acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Her groups (with `gid`), for reading files as her.
    pub groups: Vec<u32>,
    /// Root acting for another user through `sudo`, `pkexec` or `doas` (which variable said so).
    pub delegated_by: Option<&'static str>,
}

/// Refuses privilege without a real uid of 0: a setuid-root copy, or file or ambient
/// capabilities. `airlock run` then refuses before reading anything.
pub fn check_privilege() -> Result<(), SandboxError> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: plain syscall writing three integers we own.
    if unsafe { libc::getresuid(&mut r, &mut e, &mut s) } != 0 {
        return Err(SandboxError::Invalid(
            "cannot read this process's uids".into(),
        ));
    }
    if r == 0 {
        return Ok(());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = ["CapPrm:", "CapEff:", "CapAmb:"].iter().any(|field| {
        // Unreadable counts as held: refuse rather than guess.
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .is_none_or(|v| u64::from_str_radix(v.trim(), 16) != Ok(0))
    });
    if e == 0 || s == 0 || caps {
        return Err(SandboxError::Delegated(format!(
            "real uid {r}, effective uid {e}{}",
            if caps { ", with capabilities" } else { "" }
        )));
    }
    Ok(())
}

impl Caller {
    /// The user this run acts for: the one `sudo`/`pkexec`/`doas` names when root runs for
    /// another user, else the real uid.
    pub fn find() -> Caller {
        // SAFETY: plain syscalls.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let env_id = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        if uid == 0 {
            let named = [("SUDO_UID", "SUDO_GID"), ("PKEXEC_UID", "")]
                .iter()
                .find_map(|(u, g)| Some((env_id(u)?, env_id(g), *u)))
                .or_else(|| {
                    let name = std::env::var("DOAS_USER").ok()?;
                    let (uid, _) = user_by_name(&name)?;
                    Some((uid, None, "DOAS_USER"))
                });
            if let Some((who, group, var)) = named.filter(|(who, _, _)| *who != 0) {
                let (name, primary) = user_by_uid(who).unwrap_or((None, who));
                let gid = group.unwrap_or(primary);
                return Caller {
                    uid: who,
                    gid,
                    groups: groups_of(name.as_deref(), gid),
                    delegated_by: Some(var),
                };
            }
        }
        Caller {
            uid,
            gid,
            groups: vec![gid],
            delegated_by: None,
        }
    }

    /// Refuses, for a delegated run, every option that hands the caller root's powers.
    pub fn check_options(
        &self,
        user: Option<RunAs>,
        allow_root: bool,
        pass_fds: &[RawFd],
        weak: bool,
    ) -> Result<(), SandboxError> {
        let Some(var) = self.delegated_by else {
            return Ok(());
        };
        let why = if allow_root {
            Some("--allow-root would run COMMAND as root".to_string())
        } else if weak {
            Some("--weak would run COMMAND as root, with nothing around it".into())
        } else if !pass_fds.is_empty() {
            Some("--pass-fd would hand COMMAND descriptors root opened".into())
        } else {
            user.filter(|u| u.uid != self.uid || u.gid != self.gid)
                .map(|u| {
                    format!(
                        "--user {}:{} is not you ({}:{}): COMMAND would hold that account's files",
                        u.uid, u.gid, self.uid, self.gid
                    )
                })
        };
        match why {
            Some(why) => Err(SandboxError::Invalid(format!(
                "refusing: run as root for uid {} ({var} is set): {why}. Whoever may run \
                 `airlock run` as root may do what root may, unless it refuses such options. \
                 If you are root in your own right, unset {var}",
                self.uid
            ))),
            None => Ok(()),
        }
    }

    /// Runs `f` on a thread of its own whose file-system identity is the caller's (fsuid,
    /// fsgid, groups: per thread in Linux, and the thread ends with `f`), so the files `f`
    /// opens are those the caller may open. Without delegation, `f` runs here.
    pub fn as_invoker<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, SandboxError> {
        if self.delegated_by.is_none() {
            return Ok(f());
        }
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name("airlock-as-caller".into())
                .spawn_scoped(scope, || {
                    self.become_on_this_thread()?;
                    Ok(f())
                })
                .map_err(|e| SandboxError::io("starting a thread to read as the caller", e))?;
            handle
                .join()
                .map_err(|_| SandboxError::Invalid("reading as the caller panicked".into()))?
        })
    }

    /// Raw syscalls (glibc's wrappers would change every thread of the process): groups, then
    /// fsgid, then fsuid; each checked.
    fn become_on_this_thread(&self) -> Result<(), SandboxError> {
        let fail = |what: &str| {
            SandboxError::io(
                format!("taking uid {}'s file permissions ({what})", self.uid),
                io::Error::last_os_error(),
            )
        };
        // SAFETY: plain syscalls on this thread's credentials; the group list outlives the call.
        unsafe {
            if libc::syscall(libc::SYS_setgroups, self.groups.len(), self.groups.as_ptr()) != 0 {
                return Err(fail("groups"));
            }
            libc::syscall(libc::SYS_setfsgid, self.gid);
            libc::syscall(libc::SYS_setfsuid, self.uid);
            // Each returns the previous value: asking again with an invalid id reads it.
            let fsgid = libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32;
            let fsuid = libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32;
            if fsuid != self.uid || fsgid != self.gid {
                return Err(fail("fsuid"));
            }
        }
        Ok(())
    }
}

/// Reads `--token-file`: a regular file nobody but its owner may read or write, owned by root
/// (or, for a delegated run, by the caller), holding one token and nothing else. For a delegated
/// run the token must look like an agent token (`alk_…`): a root-only file is then read only if
/// it is one, which COMMAND (the caller's) gets anyway. Errors never show the file's content.
pub fn read_token_file(path: &Path, caller: &Caller) -> Result<String, SandboxError> {
    let owners: &[u32] = match caller.delegated_by {
        Some(_) => &[0, caller.uid],
        None => &[0],
    };
    let refuse =
        |why: String| SandboxError::Invalid(format!("--token-file {}: {why}", path.display()));
    let bytes = crate::secret_file::read_owned_by(path, 0o077, owners)
        .map_err(|e| refuse(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| refuse("not text".into()))?;
    let token = text.trim();
    let plain = |t: &str| t.bytes().all(|b| b.is_ascii_graphic());
    let agent_token = |t: &str| {
        t.strip_prefix("alk_").is_some_and(|rest| {
            (16..=256).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    };
    if token.is_empty() || !plain(token) {
        return Err(refuse(
            "it must hold one token (no spaces, nothing else)".into(),
        ));
    }
    if caller.delegated_by.is_some() && !agent_token(token) {
        return Err(refuse(
            "it holds no agent token (alk_…); run for another user, only such a file is read"
                .into(),
        ));
    }
    Ok(token.to_string())
}

/// A passwd entry's uid and primary gid, by name (NSS).
fn user_by_name(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: record and buffer are ours and outlive the call.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwnam_r(
            c.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        );
        (r == 0 && !found.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
    }
}

/// A passwd entry's name and primary gid, by uid (NSS).
fn user_by_uid(uid: u32) -> Option<(Option<String>, u32)> {
    super::child::nss_user(uid)
        .ok()
        .flatten()
        .map(|p| (p.name, p.gid))
}

/// The user's groups (NSS `getgrouplist`), always including `gid`; just `gid` without a name.
fn groups_of(name: Option<&str>, gid: u32) -> Vec<u32> {
    let Some(c) = name.and_then(|n| std::ffi::CString::new(n).ok()) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 256;
    let mut groups = vec![0 as libc::gid_t; 256];
    for _ in 0..3 {
        // SAFETY: the buffer holds `n` entries; the call writes at most that many and the count.
        let r = unsafe { libc::getgrouplist(c.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if r >= 0 {
            groups.truncate(n.max(0) as usize);
            if !groups.contains(&gid) {
                groups.push(gid);
            }
            return groups;
        }
        groups.resize(n.max(256) as usize + 1, 0);
        n = groups.len() as libc::c_int;
    }
    vec![gid]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delegated_caller_may_not_hand_out_roots_powers() {
        let c = Caller {
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            delegated_by: Some("SUDO_UID"),
        };
        let me = RunAs {
            uid: 1000,
            gid: 1000,
        };
        let root = RunAs { uid: 0, gid: 0 };
        assert!(c.check_options(None, false, &[], false).is_ok());
        assert!(c.check_options(Some(me), false, &[], false).is_ok());
        for (user, allow_root, fds, weak) in [
            (Some(root), true, vec![], false),
            (None, true, vec![], false),
            (Some(RunAs { uid: 33, gid: 33 }), false, vec![], false),
            (Some(RunAs { uid: 1000, gid: 0 }), false, vec![], false),
            (None, false, vec![5], false),
            (None, false, vec![], true),
        ] {
            let err = c
                .check_options(user, allow_root, &fds, weak)
                .expect_err("refused");
            assert!(err.to_string().contains("SUDO_UID"), "{err}");
        }
        let root_itself = Caller {
            delegated_by: None,
            ..c
        };
        assert!(root_itself
            .check_options(Some(root), true, &[5], true)
            .is_ok());
    }

    #[test]
    fn groups_always_hold_the_primary_group() {
        assert_eq!(groups_of(None, 7), vec![7]);
        assert!(groups_of(Some("root"), 0).contains(&0));
    }
}
