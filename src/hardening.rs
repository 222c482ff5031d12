//! Process hardening done first in `main`. Airlock holds provider credentials in memory (often
//! from its own environment), the CA key and the audit key, while agents may run as the same
//! user. A non-dumpable process cannot be ptrace-attached by a same-uid process, its
//! `/proc/<pid>/{environ,mem,maps,fd}` belong to root, and it writes no core dump. `execve`
//! resets the flag, and only the soft core limit is lowered, so programs Airlock starts
//! (`airlock run`'s agent) may still dump and be inspected as usual.

use std::io;

/// Makes this process non-dumpable and sets its soft core size limit to zero (the hard limit
/// stays, for children to raise theirs).
pub fn forbid_inspection() -> io::Result<()> {
    // SAFETY: prctl, getrlimit and setrlimit with plain integer arguments and valid pointers.
    unsafe {
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_CORE, &mut core) != 0 {
            return Err(io::Error::last_os_error());
        }
        core.rlim_cur = 0;
        if libc::setrlimit(libc::RLIMIT_CORE, &core) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit (a common soft limit of 1024 is
/// spent by a few hundred agent connections, each with its upstream: accepts, dials and store
/// files then fail for everyone). Returns the limit now in force.
pub fn raise_open_files() -> io::Result<u64> {
    let mut files = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut files) != 0 {
            return Err(io::Error::last_os_error());
        }
        if files.rlim_cur < files.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: files.rlim_max,
                rlim_max: files.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(io::Error::last_os_error());
            }
            files = raised;
        }
    }
    Ok(files.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_files_limit_ends_at_the_hard_limit() {
        let now = super::raise_open_files().expect("raise");
        let mut files = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_open_files.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut files) },
            0
        );
        assert_eq!(files.rlim_cur, files.rlim_max);
        assert_eq!(now, files.rlim_cur);
    }
}
