//! COMMAND's seccomp filters (installed last before `exec`, after `no_new_privs`). A deny list
//! on top of the namespaces and the dropped capabilities, for the ways out those leave:
//!
//! - `socket()` of any family but AF_UNIX, AF_INET and AF_INET6 (AF_VSOCK reaches the
//!   hypervisor, AF_NETLINK/AF_PACKET/... are not needed): EAFNOSUPPORT;
//! - `io_uring_*` (io_uring ops, e.g. IORING_OP_SOCKET, bypass seccomp): EPERM;
//! - the TIOCSTI and TIOCLINUX ioctls (typing into a terminal): EPERM. Only the low 32 bits of
//!   the request are compared, as the kernel reads them (so high bits cannot hide them);
//! - `ptrace`, `process_vm_readv`/`process_vm_writev`: EPERM;
//! - `unshare`/`clone` with CLONE_NEWUSER (a user namespace gives back capabilities over new
//!   namespaces): EPERM; `clone3`, whose flags seccomp cannot read: ENOSYS (libc then falls
//!   back to `clone`);
//! - `keyctl`, `add_key`, `request_key`, `bpf`, `perf_event_open`: EPERM.
//!
//! Every filter first checks the architecture (another one, e.g. i386 through `int 0x80`, kills
//! the process); on x86_64 the x32 ABI (syscall numbers with bit 30 set, which the per-number
//! rules would not see) is refused with ENOSYS.
//!
//! The rules are compiled by `seccompiler` before the fork; installing is one syscall per
//! filter, safe between fork and exec.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule,
};

use super::SandboxError;

pub const TIOCSTI: u64 = 0x5412;
pub const TIOCLINUX: u64 = 0x541C;

/// The filters, in installation order.
pub fn filters() -> Result<Vec<BpfProgram>, SandboxError> {
    let arch = std::env::consts::ARCH.try_into().map_err(|_| {
        SandboxError::Invalid(format!(
            "no seccomp support for {} (airlock run supports x86_64, aarch64 and riscv64)",
            std::env::consts::ARCH
        ))
    })?;
    let err = |e: seccompiler::BackendError| SandboxError::Invalid(format!("seccomp: {e}"));
    let cond = |arg: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(err)
    };
    let rule = |conds: Vec<SeccompCondition>| SeccompRule::new(conds).map_err(err);
    let newuser = libc::CLONE_NEWUSER as u64;

    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        deny.insert(nr, Vec::new());
    }
    deny.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![cond(1, SeccompCmpOp::Eq, TIOCSTI)?])?,
            rule(vec![cond(1, SeccompCmpOp::Eq, TIOCLINUX)?])?,
        ],
    );
    for nr in [libc::SYS_unshare, libc::SYS_clone] {
        deny.insert(
            nr,
            vec![rule(vec![cond(
                0,
                SeccompCmpOp::MaskedEq(newuser),
                newuser,
            )?])?],
        );
    }

    let mut families: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    families.insert(
        libc::SYS_socket,
        vec![rule(vec![
            cond(0, SeccompCmpOp::Ne, libc::AF_UNIX as u64)?,
            cond(0, SeccompCmpOp::Ne, libc::AF_INET as u64)?,
            cond(0, SeccompCmpOp::Ne, libc::AF_INET6 as u64)?,
        ])?],
    );

    let mut nosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    nosys.insert(libc::SYS_clone3, Vec::new());

    let compile = |rules, errno: i32| -> Result<BpfProgram, SandboxError> {
        SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(err)?
        .try_into()
        .map_err(|e: seccompiler::BackendError| err(e))
    };
    let mut out = vec![
        compile(deny, libc::EPERM)?,
        compile(families, libc::EAFNOSUPPORT)?,
        compile(nosys, libc::ENOSYS)?,
    ];
    if let Some(x32) = x32_guard() {
        out.push(x32);
    }
    Ok(out)
}

/// x86_64 only: refuse x32 syscalls (number >= 0x40000000), which carry the x86_64 audit arch.
fn x32_guard() -> Option<BpfProgram> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JGE | BPF_K, BPF_RET | BPF_K.
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JGE_K: u16 = 0x05 | 0x30;
    const BPF_RET_K: u16 = 0x06;
    let stmt = |code, k| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    Some(vec![
        // A = seccomp_data.nr (offset 0). The architecture was checked by the earlier filters.
        stmt(BPF_LD_W_ABS, 0),
        sock_filter {
            code: BPF_JGE_K,
            jt: 1,
            jf: 0,
            k: 0x4000_0000,
        },
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
        stmt(
            BPF_RET_K,
            libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & libc::SECCOMP_RET_DATA),
        ),
    ])
}

/// Installs `prog` on the calling thread (needs `no_new_privs` or CAP_SYS_ADMIN). Only a
/// syscall: safe between fork and exec.
pub fn install(prog: &[sock_filter]) -> Result<(), i32> {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const sock_filter,
    }
    let fprog = SockFprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr(),
    };
    // SAFETY: the kernel copies the program from `fprog`, which outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const SockFprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile() {
        let f = filters().unwrap();
        assert!(f.len() >= 3);
        assert!(f.iter().all(|p| !p.is_empty() && p.len() < 4096));
    }
}
