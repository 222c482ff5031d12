//! An output file that is replaced only once everything was written: `airlock audit export
//! --out FILE` writes to a temporary file beside FILE and renames it over FILE on success, so a
//! failed export (no server, a refused token, an error midway) leaves an earlier export as it
//! was, never empty or cut short. The temporary file is removed whenever it is not committed.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Where the output goes until [`OutFile::commit`].
pub(super) struct OutFile {
    file: BufWriter<File>,
    /// The temporary file renamed over `dest` on commit; `None` when `dest` is not a regular
    /// file (`/dev/stdout`, a FIFO): it is written in place, as nothing could be renamed there.
    tmp: Option<PathBuf>,
    dest: PathBuf,
}

impl OutFile {
    /// A fresh temporary file in `dest`'s directory (with `dest`'s permissions if it exists).
    pub(super) fn create(dest: &Path) -> io::Result<OutFile> {
        let existing = std::fs::metadata(dest).ok();
        if existing.as_ref().is_some_and(|m| !m.is_file()) {
            let file = OpenOptions::new().write(true).open(dest)?;
            return Ok(OutFile {
                file: BufWriter::new(file),
                tmp: None,
                dest: dest.to_path_buf(),
            });
        }
        let (tmp, file) = airlock::secret_file::temp_beside(dest, 0o666)?;
        let out = OutFile {
            file: BufWriter::new(file),
            tmp: Some(tmp),
            dest: dest.to_path_buf(),
        };
        if let Some(m) = existing {
            let mode = m.permissions().mode() & 0o7777;
            out.file
                .get_ref()
                .set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(out)
    }

    /// The file the output is for.
    pub(super) fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes, syncs and renames the temporary file over the destination.
    pub(super) fn commit(mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        if let Some(tmp) = self.tmp.take() {
            if let Err(e) = std::fs::rename(&tmp, &self.dest) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Not committed: the temporary file goes, the destination stays as it was.
impl Drop for OutFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
