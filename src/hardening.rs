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
