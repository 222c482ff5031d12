//! The one writer for secret files: the admin token, the notification link key, the audit
//! signing key and the CA private key; and [`read_private`], the reader that refuses a secret
//! file other users could read (provider credentials, the CA key, the audit key), with
//! [`read_owned`] beneath it (also for files only Airlock may change: the audit anchor); and
//! [`constant_time_eq`] to compare secrets; [`check_policy`] for files Airlock obeys; [`SecretSource`] names where a secret Airlock reads
//! lives.
//!
//! A secret is first written to a temporary file in the target's directory, created with mode
//! 0600 (whatever the umask) and fsynced; only then does it get its real name, and the directory
//! is fsynced. So the target never exists partially written, and never with wider permissions.
//! Missing parent directories are created with mode 0700 ([`create_private_dir`], also used for
//! the CA's directory before its key is written).
//!
//! - [`write`] replaces the target if it exists (`rename`); [`write_for_group`] does the same
//!   for a file one group may read (0640: an agent's token, `agents add --token-group`), with
//!   [`share_dir_with_group`] for its directory (0750), both through descriptors.
//! - [`rename_over`] puts one secret file in another's place (a rotated key).
//! - [`create_new`] never replaces: it fails with [`std::io::ErrorKind::AlreadyExists`] if the
//!   target exists. It gives the temporary file its real name with `link`, which (unlike
//!   `rename`) refuses an existing name atomically; so of two processes creating the same secret
//!   at once exactly one wins, and the loser can read the winner's file, which is complete.
//!   [`create_new_with_mode`] does the same for a file others may read (the CA certificate).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where a secret Airlock reads lives (a provider credential, a webhook signing secret): an
/// environment variable, or a file only Airlock's user may read ([`read_private`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// Mode of every secret file.
const SECRET_MODE: u32 = 0o600;
/// Mode of directories created for a secret.
const DIR_MODE: u32 = 0o700;
/// Mode of a secret one group may read ([`write_for_group`]), and of its directory.
const GROUP_READ_MODE: u32 = 0o640;
const SHARED_DIR_MODE: u32 = 0o750;

/// Writes `bytes` to `path` atomically with mode 0600, replacing any existing file.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, tmp) = write_temp(path, bytes)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(&dir)
}

/// Renames the secret file `from` over `to` (same directory; `to` replaced atomically), then
/// fsyncs the directory so the new name survives a crash.
pub fn rename_over(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    let dir = match to.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    sync_dir(&dir)
}

/// Creates `path` with `bytes` and mode 0600, atomically; fails with
/// [`io::ErrorKind::AlreadyExists`] (leaving the existing file untouched) if `path` exists.
pub fn create_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create_new_with_mode(path, bytes, SECRET_MODE)
}

/// [`create_new`] for a file others may read (the CA certificate, mode 0644): written and
/// fsynced under a temporary name, then linked into place, so it never exists half written (a
/// full disk leaves no file, where writing in place left an empty one).
pub fn create_new_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (dir, tmp) = write_temp(path, bytes)?;
    if mode != SECRET_MODE {
        if let Err(e) = std::fs::set_permissions(&tmp, Permissions::from_mode(mode)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    let linked = std::fs::hard_link(&tmp, path);
    // The secret is complete under `path` (or `path` was someone else's): the temporary name goes
    // either way.
    let removed = std::fs::remove_file(&tmp);
    linked?;
    removed?;
    sync_dir(&dir)
}

/// [`write`] for a file one group may read (an agent's proxy token, for an agent running as
/// another user; `agents add --token-group`): written 0600, then given group `gid` and mode
/// 0640 through its descriptor (no link followed), fsynced, and only then renamed over `path`.
/// Changing the group fails (`PermissionDenied`) unless Airlock's user is a member of `gid` (or
/// root).
pub fn write_for_group(path: &Path, bytes: &[u8], gid: u32) -> io::Result<()> {
    let dir = dir_of(path);
    create_private_dir(&dir)?;
    let (tmp, mut file) = temp_beside(path, SECRET_MODE)?;
    let written = fill(&mut file, bytes)
        .and_then(|()| std::os::unix::fs::fchown(&file, None, Some(gid)))
        .and_then(|()| file.set_permissions(Permissions::from_mode(GROUP_READ_MODE)))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(&dir)
}

/// Gives the directory `dir` (which must exist, be a directory and not a symbolic link, and
/// belong to Airlock's user) group `gid` and mode 0750, through a descriptor opened without
/// following a link: the directory holding a token [`write_for_group`] wrote.
pub fn share_dir_with_group(dir: &Path, gid: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    // SAFETY: plain syscall.
    let me = unsafe { libc::geteuid() };
    let owner = handle.metadata()?.uid();
    if owner != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("owned by uid {owner}, not by Airlock's user (uid {me})"),
        ));
    }
    std::os::unix::fs::fchown(&handle, None, Some(gid))?;
    handle.set_permissions(Permissions::from_mode(SHARED_DIR_MODE))
}

/// The directory `path` lives in (created 0700 if missing) and a fresh temporary file there,
/// holding `bytes` with mode 0600, fsynced. The temporary file is removed on error.
fn write_temp(path: &Path, bytes: &[u8]) -> io::Result<(PathBuf, PathBuf)> {
    let dir = dir_of(path);
    create_private_dir(&dir)?;
    let (tmp, mut file) = temp_beside(path, SECRET_MODE)?;
    if let Err(e) = fill(&mut file, bytes) {
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((dir, tmp))
}

/// The directory `path` lives in (`.` for a bare name).
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A new, empty file with `mode` beside `path` (`.NAME.tmp-PID-RANDOM` in its directory), to be
/// renamed over it once written: never a name someone else made, nor a link followed there.
pub fn temp_beside(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = dir_of(path);
    let mut attempts = 0;
    loop {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".tmp-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Creates `dir` and its missing ancestors with mode 0700 whatever the umask (set explicitly:
/// the umask could have removed the owner's bits too). Existing directories are left as they are.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)),
        // Created by someone else meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

fn fill(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    // The umask can only have removed bits; set the mode explicitly anyway.
    file.set_permissions(Permissions::from_mode(SECRET_MODE))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the new directory entry durable. Filesystems that cannot fsync a directory are
/// tolerated (the file itself was fsynced before it got its name).
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// A new random token: 32 random bytes as 64 hex digits (the admin token, a metrics token).
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Compares two secrets (token digests, form tokens) in time that depends only on their
/// lengths, never on where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a secret file (a provider credential, the CA key) that only Airlock's user may read:
/// [`read_owned`] refusing any group or other permission bit, as text. The error says why, never
/// what the file holds.
pub fn read_private(path: &Path) -> Result<String, String> {
    let bytes = read_owned(path, 0o077).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "stream did not contain valid UTF-8".to_string())
}

/// Why [`read_owned`] read nothing.
#[derive(Debug, thiserror::Error)]
pub enum OwnedFileError {
    /// It could not be opened or read (`NotFound` among them).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// It is not a regular file, has a forbidden mode bit, or belongs to another user.
    #[error("{0}")]
    Refused(String),
}

impl OwnedFileError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, OwnedFileError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// A file Airlock obeys (the config, the agents file, a rules file or directory) and the
/// directory holding it: refused when every user may change it (an agent running as another
/// user could rewrite the gate's policy; a sticky directory such as `/tmp` is fine), with a
/// warning when its group may, or when a user other than Airlock's or root owns it.
pub fn check_policy(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // SAFETY: plain syscall.
    let me = unsafe { libc::geteuid() };
    for (p, what) in [(path, "it"), (dir.as_path(), "its directory")] {
        let Ok(meta) = std::fs::metadata(p) else {
            continue; // reading it reports the error
        };
        let mode = meta.mode() & 0o7777;
        let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
        if mode & 0o002 != 0 && !sticky_dir && read_only_mount(p) {
            // Docker Desktop shows bind-mounted host files as 0777; nobody here can change them.
            tracing::warn!(path = %p.display(), "a file Airlock obeys shows mode {:o}, on a read-only mount", mode & 0o777);
        } else if mode & 0o002 != 0 && !sticky_dir {
            return Err(format!(
                "every user may change {what} ({}, mode {:o}): run `chmod o-w {}`",
                p.display(),
                mode & 0o777,
                p.display()
            ));
        }
        if mode & 0o020 != 0 && !sticky_dir {
            tracing::warn!(path = %p.display(), mode = format!("{:o}", mode & 0o777), "a file Airlock obeys (or its directory) may be changed by its group");
        }
        if meta.uid() != me && meta.uid() != 0 {
            tracing::warn!(path = %p.display(), owner = meta.uid(), "a file Airlock obeys (or its directory) belongs to another user, who may change it");
        }
    }
    Ok(())
}

/// Is `path` on a file system mounted read-only?
fn read_only_mount(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path; `st` is written by the call before it is read.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0
    }
}

/// Reads a regular file owned by Airlock's user, with none of the `forbidden` mode bits set
/// (0o077: nobody else may read or write it; 0o022: nobody else may write it). Opened (a link is
/// followed; non-blocking, so a FIFO cannot stall it), then the opened file itself checked, so
/// what is checked is what is read.
pub fn read_owned(path: &Path, forbidden: u32) -> Result<Vec<u8>, OwnedFileError> {
    // SAFETY: plain syscall.
    let me = unsafe { libc::geteuid() };
    read_owned_by(path, forbidden, &[me])
}

/// [`read_owned`] for a file that one of `owners` owns (`airlock run --token-file`: root's, or
/// that of the user root runs it for).
pub fn read_owned_by(
    path: &Path,
    forbidden: u32,
    owners: &[u32],
) -> Result<Vec<u8>, OwnedFileError> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file
        .metadata()
        .map_err(|e| OwnedFileError::Refused(format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(OwnedFileError::Refused("not a regular file".into()));
    }
    let mode = meta.mode() & 0o777;
    if mode & forbidden != 0 {
        let access = match mode & forbidden & 0o044 {
            0 => "change",
            _ => "read",
        };
        return Err(OwnedFileError::Refused(format!(
            "mode {mode:o} lets other users {access} it; run `chmod 600 {}`",
            path.display()
        )));
    }
    if !owners.contains(&meta.uid()) {
        let me = owners.first().copied().unwrap_or(0);
        return Err(OwnedFileError::Refused(format!(
            "owned by uid {}, not by Airlock's user (uid {me}); make it the owner and run \
             `chmod 600 {}`",
            meta.uid(),
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Left from the fifteenth session: rules and config were loaded (and reloaded) whoever
    /// could change them. A file or directory every user may change is now refused.
    #[test]
    fn policy_files_every_user_may_change_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rules.toml");
        std::fs::write(&file, "x").expect("write");
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).expect("chmod");
        assert!(check_policy(&file).is_ok());
        std::fs::set_permissions(&file, Permissions::from_mode(0o664)).expect("chmod");
        assert!(
            check_policy(&file).is_ok(),
            "group-writable: a warning only"
        );
        std::fs::set_permissions(&file, Permissions::from_mode(0o666)).expect("chmod");
        let err = check_policy(&file).expect_err("world-writable file");
        assert!(
            err.contains("every user may change it") && err.contains("chmod o-w"),
            "{err}"
        );
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o777)).expect("chmod");
        let err = check_policy(&file).expect_err("world-writable directory");
        assert!(err.contains("its directory"), "{err}");
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o1777)).expect("chmod");
        assert!(check_policy(&file).is_ok(), "a sticky directory, as /tmp");
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o700)).expect("chmod");
    }

    fn mode(path: &Path) -> io::Result<u32> {
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    }

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> io::Result<Vec<String>> {
        let mut v = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<Vec<_>>>()?;
        v.sort();
        Ok(v)
    }

    #[test]
    fn writes_0600_with_the_content_and_no_temp_file() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("admin-token");
        write(&path, b"secret")?;
        assert_eq!(std::fs::read(&path)?, b"secret");
        assert_eq!(mode(&path)?, 0o600);
        assert_eq!(names(dir.path())?, vec!["admin-token"]);
        Ok(())
    }

    #[test]
    fn creates_missing_parents_0700() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a/b/link-key");
        create_new(&path, b"k")?;
        assert_eq!(std::fs::read(&path)?, b"k");
        assert_eq!(mode(&path)?, 0o600);
        assert_eq!(mode(&dir.path().join("a"))?, 0o700);
        assert_eq!(mode(&dir.path().join("a/b"))?, 0o700);
        assert_eq!(names(&dir.path().join("a/b"))?, vec!["link-key"]);
        Ok(())
    }

    #[test]
    fn replaces_an_existing_file_atomically() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit-key.pem");
        std::fs::write(&path, b"old contents")?;
        std::fs::set_permissions(&path, Permissions::from_mode(0o644))?;
        // A reader that opened the old file keeps reading it whole: the new one is a new inode
        // that took the name in one step, not the old file rewritten in place.
        let mut old = File::open(&path)?;
        write(&path, b"new")?;
        assert_eq!(std::fs::read(&path)?, b"new");
        assert_eq!(mode(&path)?, 0o600);
        let mut seen = String::new();
        io::Read::read_to_string(&mut old, &mut seen)?;
        assert_eq!(seen, "old contents");
        assert_eq!(names(dir.path())?, vec!["audit-key.pem"]);
        Ok(())
    }

    #[test]
    fn create_new_never_replaces() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ca-key.pem");
        create_new(&path, b"first")?;
        let e = create_new(&path, b"second").err();
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::AlreadyExists));
        assert_eq!(std::fs::read(&path)?, b"first");
        assert_eq!(names(dir.path())?, vec!["ca-key.pem"]);
        Ok(())
    }

    #[test]
    fn racing_create_new_has_one_winner_and_a_complete_file() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("link-key");
        let results: Vec<(usize, io::Result<()>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || (i, create_new(path, format!("key-{i}").as_bytes())))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for (_, r) in &results {
            if let Err(e) = r {
                assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            }
        }
        assert_eq!(
            std::fs::read_to_string(&path)?,
            format!("key-{}", winners[0])
        );
        assert_eq!(names(dir.path())?, vec!["link-key"]);
        Ok(())
    }

    /// `agents add --token-group`: the token readable by one group, 0640, never through a link.
    #[test]
    fn write_for_group_gives_the_group_read_access_only() -> io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        // SAFETY: plain syscall.
        let gid = unsafe { libc::getegid() };
        let dir = tempfile::tempdir()?;
        let own = dir.path().join("agent");
        create_private_dir(&own)?;
        share_dir_with_group(&own, gid)?;
        assert_eq!(mode(&own)?, 0o750);
        let path = own.join("token");
        write_for_group(&path, b"alk_x", gid)?;
        assert_eq!(std::fs::read(&path)?, b"alk_x");
        assert_eq!(mode(&path)?, 0o640);
        assert_eq!(std::fs::metadata(&path)?.gid(), gid);
        assert_eq!(names(&own)?, vec!["token"]);
        // A link where the directory should be is refused, not followed.
        let link = dir.path().join("linked");
        std::os::unix::fs::symlink(&own, &link)?;
        assert!(share_dir_with_group(&link, gid).is_err());
        Ok(())
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let e = write(Path::new("/"), b"x").err();
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::InvalidInput));
    }
}
