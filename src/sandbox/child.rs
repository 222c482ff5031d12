//! Who COMMAND runs as: `--user` (a uid, uid:gid or user name) or, by default, a uid of its own
//! picked from a range (one lock file per uid under a root-only runtime directory, and never a
//! uid that owns a process or has a passwd entry). Root, `(uid_t)-1` (which `setresuid` reads
//! as "leave unchanged") and any id that maps to root are refused unless `--allow-root`.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::SandboxError;

/// The user COMMAND runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// The conventional `nobody:nogroup` (shared by host daemons: never a default).
pub const NOBODY: RunAs = RunAs {
    uid: 65534,
    gid: 65534,
};

/// `(uid_t)-1`: "unchanged" to `setresuid`/`setresgid`.
const NO_ID: u32 = u32::MAX;

/// Where the per-uid lock files live (root only).
const LOCK_DIRS: &[&str] = &["/run/airlock-run", "/var/run/airlock-run"];

/// A range of uids (and equal gids) `airlock run` hands out, one per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub last: u32,
}

/// 200000–265535: above the usual subordinate-id ranges' start, clear of system and login
/// users and of nobody (65534).
pub const DEFAULT_UID_RANGE: UidRange = UidRange {
    first: 200_000,
    last: 265_535,
};

impl UidRange {
    /// Parses `FIRST-LAST` (inclusive).
    pub fn parse(spec: &str) -> Result<UidRange, SandboxError> {
        let bad = || SandboxError::Invalid(format!("--uid-range {spec:?}: expected FIRST-LAST"));
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        let first = a.trim().parse::<u32>().map_err(|_| bad())?;
        let last = b.trim().parse::<u32>().map_err(|_| bad())?;
        if first == 0 || last == NO_ID || first > last {
            return Err(SandboxError::Invalid(format!(
                "--uid-range {spec:?}: must be within 1-4294967294 and FIRST <= LAST"
            )));
        }
        Ok(UidRange { first, last })
    }

    fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }
}

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

    /// The home directory and name /etc/passwd gives this uid, if it has an entry.
    pub fn passwd(&self) -> (Option<String>, Option<String>) {
        match passwd_entry(|e| e.uid == self.uid) {
            Some(e) => (e.home, e.name),
            None => (None, None),
        }
    }

    /// Whether this uid or gid is root, `(uid_t)-1`, or maps to root (`uid_map`/`gid_map`:
    /// `airlock run` may itself be in a user namespace).
    pub fn root_like(&self) -> Option<String> {
        let check = |what: &str, id: u32, map: &str| -> Option<String> {
            if id == 0 {
                return Some(format!("{what} 0 is root"));
            }
            if id == NO_ID {
                return Some(format!(
                    "{what} 4294967295 is (uid_t)-1, which setresuid/setresgid read as \
                     \"unchanged\" (root)"
                ));
            }
            match std::fs::read_to_string(map) {
                Ok(text) => match map_id(&text, id) {
                    Some(0) => Some(format!("{what} {id} maps to root ({map})")),
                    Some(_) => None,
                    None => Some(format!("{what} {id} is not mapped in {map}")),
                },
                Err(_) => None,
            }
        };
        check("uid", self.uid, "/proc/self/uid_map")
            .or_else(|| check("gid", self.gid, "/proc/self/gid_map"))
    }
}

/// The outside id of `id` in a `uid_map`/`gid_map` text (`inside outside count` lines).
fn map_id(map: &str, id: u32) -> Option<u64> {
    map.lines().find_map(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let (inside, outside, count) = (*f.first()?, *f.get(1)?, *f.get(2)?);
        let id = u64::from(id);
        (id >= inside && id - inside < count).then(|| outside + (id - inside))
    })
}

/// Refuses root-like ids unless `allow_root` (then warns).
pub fn check_ids(run_as: RunAs, allow_root: bool) -> Result<(), SandboxError> {
    if let Some(why) = run_as.root_like() {
        if !allow_root {
            return Err(SandboxError::RootRefused(why));
        }
        tracing::warn!(
            "airlock run --allow-root: COMMAND runs with {why}; it has no capabilities \
             but can read and write what root owns"
        );
    }
    Ok(())
}

/// Refuses a login account (a user with a shell that is not `nologin`/`false`) unless allowed:
/// COMMAND would hold that person's home (tokens in `~/.config`, `~/.aws`, ssh and gpg agents),
/// her terminals, and her session bus, which starts processes outside the sandbox.
pub fn check_login_account(run_as: RunAs, allowed: bool) -> Result<(), SandboxError> {
    let Some((name, shell)) = login_shell(run_as.uid) else {
        return Ok(());
    };
    let why = format!(
        "uid {} is the login account {name} (shell {shell})",
        run_as.uid
    );
    if !allowed {
        return Err(SandboxError::Invalid(format!(
            "--user: {why}; COMMAND would hold that person's files, keys, terminals and session \
             bus. Use the default (a uid of its own) or a service account, or pass \
             --allow-login-user"
        )));
    }
    tracing::warn!("airlock run --allow-login-user: {why}; COMMAND can use what that person can");
    Ok(())
}

/// The name and shell NSS gives `uid`, if that shell lets someone log in (an empty shell is
/// /bin/sh).
fn login_shell(uid: u32) -> Option<(String, String)> {
    let Passwd {
        name: Some(name),
        shell: Some(shell),
        ..
    } = nss_user(uid).ok().flatten()?
    else {
        return None;
    };
    let no_login = shell.ends_with("/nologin") || shell.ends_with("/false");
    (!no_login).then_some((name, shell))
}

/// A uid reserved for this run: held (flock) until the lease and every copy of its descriptor
/// (the sandbox's init holds one) are gone.
pub struct UidLease {
    pub run_as: RunAs,
    lock: File,
}

impl UidLease {
    /// The lock file's descriptor (init keeps a copy).
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        self.lock.as_raw_fd()
    }
}

/// Picks a free uid from `range`: one whose lock file can be locked, that owns no process, is
/// neither a user nor a group the system knows (NSS: /etc/passwd and /etc/group, and LDAP or
/// SSSD where configured, whose ranges often start at 200000) and lies in no subordinate
/// range (`/etc/subuid`, `/etc/subgid`: rootless containers' files). Starts at a random offset
/// so concurrent runs rarely contend.
pub fn allocate(range: UidRange) -> Result<UidLease, SandboxError> {
    let dir = lock_dir()?;
    let busy = uids_in_use();
    let listed = passwd_uids();
    let subordinate = subordinate_ranges();
    let start = rand::random::<u64>() % range.len();
    for i in 0..range.len() {
        let uid = range.first + ((start + i) % range.len()) as u32;
        let run_as = RunAs { uid, gid: uid };
        if busy.contains(&uid)
            || listed.contains(&uid)
            || run_as.root_like().is_some()
            || subordinate.iter().any(|r| r.contains(&u64::from(uid)))
            || known_id(uid)
        {
            continue;
        }
        let path = dir.join(format!("{uid}.lock"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| SandboxError::io(format!("opening {}", path.display()), e))?;
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        // Locked: a process of this uid started since the scan means someone else uses it.
        if uids_in_use().contains(&uid) {
            continue;
        }
        return Ok(UidLease { run_as, lock: file });
    }
    Err(SandboxError::Invalid(format!(
        "no free uid in {}-{} (all locked by other runs or in use); pass --uid-range or --user",
        range.first, range.last
    )))
}

/// The root-only directory holding the lock files (created 0700; refused if someone else owns
/// it or others may write to it).
fn lock_dir() -> Result<PathBuf, SandboxError> {
    let base = LOCK_DIRS
        .iter()
        .map(Path::new)
        .find(|p| p.parent().is_some_and(Path::is_dir))
        .unwrap_or(Path::new(LOCK_DIRS[0]));
    let dir = base.join("uids");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| SandboxError::io(format!("creating {}", dir.display()), e))?;
    // SAFETY: plain syscall.
    let me = unsafe { libc::geteuid() };
    for d in [base, dir.as_path()] {
        let meta = std::fs::symlink_metadata(d)
            .map_err(|e| SandboxError::io(format!("checking {}", d.display()), e))?;
        if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
            return Err(SandboxError::Invalid(format!(
                "{} must be a directory owned by uid {me} that only it may write to",
                d.display()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| SandboxError::io(format!("chmod {}", d.display()), e))?;
        }
    }
    Ok(dir)
}

/// Every real, effective, saved or filesystem uid of a running process.
fn uids_in_use() -> HashSet<u32> {
    let mut out = HashSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            out.extend(
                line[4..]
                    .split_whitespace()
                    .filter_map(|w| w.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Whether the system's user or group database knows `id` (through NSS, so LDAP and SSSD too).
/// A failed lookup counts as known: the id is not handed out.
fn known_id(id: u32) -> bool {
    let Ok(None) = nss_user(id) else {
        return true;
    };
    let mut buf = vec![0u8; NSS_BUF];
    // SAFETY: the record and the buffer are ours and outlive the call; sizes are given.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut found: *mut libc::group = std::ptr::null_mut();
        let r = libc::getgrgid_r(id, &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut found);
        r != 0 || !found.is_null()
    }
}

/// Room for one NSS record (a group with many members needs more than the usual 1 KiB).
const NSS_BUF: usize = 64 * 1024;

/// A passwd record: name and shell (each if set), primary gid.
pub(super) struct Passwd {
    pub name: Option<String>,
    pub shell: Option<String>,
    pub gid: u32,
}

/// The passwd record NSS gives `uid`: `Ok(None)` if it knows no such user, `Err` if the lookup
/// failed.
pub(super) fn nss_user(uid: u32) -> Result<Option<Passwd>, ()> {
    let mut buf = vec![0u8; NSS_BUF];
    // SAFETY: the record and the buffer are ours and outlive the call; the strings are read
    // before either is dropped.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        );
        if r != 0 {
            return Err(());
        }
        if found.is_null() {
            return Ok(None);
        }
        let text = |p: *const libc::c_char| {
            (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        Ok(Some(Passwd {
            name: text(pwd.pw_name),
            shell: text(pwd.pw_shell),
            gid: pwd.pw_gid,
        }))
    }
}

/// The ranges `/etc/subuid` and `/etc/subgid` give out (`name:first:count` lines).
fn subordinate_ranges() -> Vec<std::ops::Range<u64>> {
    ["/etc/subuid", "/etc/subgid"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| parse_subordinate(&text))
        .collect()
}

fn parse_subordinate(text: &str) -> Vec<std::ops::Range<u64>> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':').skip(1);
            let first: u64 = f.next()?.trim().parse().ok()?;
            let count: u64 = f.next()?.trim().parse().ok()?;
            Some(first..first.saturating_add(count))
        })
        .collect()
}

fn passwd_uids() -> HashSet<u32> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_parse_and_known_ids_are_found() {
        let r = parse_subordinate("alice:100000:65536\n# comment\nbob:165536:65536\nbad\n");
        assert_eq!(r, vec![100000..165536, 165536..231072]);
        // root is a user and a group every system knows; a far id is neither (here).
        assert!(known_id(0));
        assert!(!known_id(3_999_999_999));
    }

    /// root logs in with a shell everywhere: as a `--user` it is a login account (refused
    /// unless allowed); a uid nobody has is not.
    #[test]
    fn login_accounts_are_refused_unless_allowed() {
        let root = RunAs { uid: 0, gid: 0 };
        let err = check_login_account(root, false).expect_err("root has a login shell");
        assert!(err.to_string().contains("--allow-login-user"), "{err}");
        assert!(check_login_account(root, true).is_ok());
        let nobody_here = RunAs {
            uid: 3_999_999_999,
            gid: 3_999_999_999,
        };
        assert!(check_login_account(nobody_here, false).is_ok());
    }

    #[test]
    fn uid_ranges_parse() {
        assert_eq!(UidRange::parse("200000-265535").unwrap(), DEFAULT_UID_RANGE);
        assert!(UidRange::parse("0-10").is_err());
        assert!(UidRange::parse("10-4294967295").is_err());
        assert!(UidRange::parse("10-5").is_err());
        assert!(UidRange::parse("10").is_err());
    }

    #[test]
    fn ids_map_through_uid_map() {
        let init = "         0          0 4294967295\n";
        assert_eq!(map_id(init, 0), Some(0));
        assert_eq!(map_id(init, 1000), Some(1000));
        // A user namespace where 1000 inside is root outside.
        let userns = "0 100000 1000\n1000 0 1\n";
        assert_eq!(map_id(userns, 1000), Some(0));
        assert_eq!(map_id(userns, 5), Some(100005));
        assert_eq!(map_id(userns, 1001), None);
    }

    #[test]
    fn root_like_ids_are_named() {
        assert!(RunAs { uid: 0, gid: 1 }.root_like().is_some());
        assert!(RunAs { uid: 1, gid: 0 }.root_like().is_some());
        assert!(RunAs {
            uid: u32::MAX,
            gid: 1
        }
        .root_like()
        .is_some());
        assert!(RunAs {
            uid: 1,
            gid: u32::MAX
        }
        .root_like()
        .is_some());
        assert!(RunAs {
            uid: 200_000,
            gid: 200_000
        }
        .root_like()
        .is_none());
        assert!(check_ids(RunAs { uid: 0, gid: 0 }, false).is_err());
        assert!(check_ids(RunAs { uid: 0, gid: 0 }, true).is_ok());
    }
}
