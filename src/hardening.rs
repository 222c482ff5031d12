//! Process hardening done first in `main`. Airlock holds provider credentials in memory (often
//! from its own environment), the CA key and the audit key, while agents may run as the same
//! user. A non-dumpable process cannot be ptrace-attached by a same-uid process, its
//! `/proc/<pid>/{environ,mem,maps,fd}` belong to root, and it writes no core dump. `execve`
//! resets the flag, so programs Airlock starts (`airlock run`'s agent) are unaffected.

use std::io;

/// Makes this process non-dumpable and sets its core size limit to zero.
pub fn forbid_inspection() -> io::Result<()> {
    // SAFETY: prctl and setrlimit with plain integer arguments and a valid pointer.
    unsafe {
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::setrlimit(libc::RLIMIT_CORE, &none) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
