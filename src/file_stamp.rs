//! What identifies one version of a file for the watchers that reload on change (the config
//! and credential files, `server/watch.rs`; the rules directory, `rules/live.rs`): device,
//! inode, size, modification and change times, mode and owner. An edit in place, an atomic
//! rename and a `chmod`/`chown` (the fix a refused file's error asks for) all change it.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// One version of a file, comparable with another.
pub type FileStamp = (u64, u64, u64, (i64, i64), (i64, i64), u32, u32);

/// The stamp of a file with metadata `m`.
pub fn of(m: &Metadata) -> FileStamp {
    (
        m.dev(),
        m.ino(),
        m.size(),
        (m.mtime(), m.mtime_nsec()),
        (m.ctime(), m.ctime_nsec()),
        m.mode(),
        m.uid(),
    )
}
