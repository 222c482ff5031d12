//! What the sandbox's mount view covers. Airlock's directories (store, certs) get an empty,
//! read-only tmpfs. A file is hidden by covering the directory holding it: a bind mount over
//! the file alone would not last, since the host replaces the config by renaming a new file
//! over it (`agents remove`, `reviewers remove`, a token rotation), and renaming over a mount
//! point in another mount namespace detaches that mount (Linux 3.18+), so the new file would be
//! readable inside. A directory that cannot be covered (`/`, a top-level or system directory,
//! the working directory, COMMAND's home or one of their ancestors) keeps the bind mount over
//! the file, with a warning saying that a replaced file shows through.

use std::path::{Path, PathBuf};

use super::SandboxError;

/// Top-level directories that stay visible (covering them would break the system inside)
/// except root's home; two levels down under `/usr` and `/var` likewise (`/var/lib`).
fn system_dir(dir: &Path) -> bool {
    let parts: Vec<_> = dir.components().skip(1).collect();
    match parts.len() {
        0 | 1 => dir != Path::new("/root"),
        2 => dir.starts_with("/usr") || dir.starts_with("/var"),
        _ => false,
    }
}

/// The paths to hide as (directories to cover, files to bind over): canonical, existing, not
/// `/`, none inside another covered directory. A file's directory is covered instead of the
/// file unless it is a system directory or holds (or is) one of `keep` (the working directory,
/// COMMAND's home).
pub fn targets(
    hide: &[PathBuf],
    keep: &[PathBuf],
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), SandboxError> {
    let mut all: Vec<(PathBuf, bool)> = Vec::new();
    for p in hide {
        let canonical = match std::fs::canonicalize(p) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SandboxError::io(format!("resolving {}", p.display()), e)),
        };
        if canonical == Path::new("/") {
            return Err(SandboxError::Invalid(format!(
                "{} is / : Airlock's data, certs and config must live in their own directories",
                p.display()
            )));
        }
        if canonical.is_dir() {
            all.push((canonical, true));
            continue;
        }
        let parent = canonical.parent().map(Path::to_path_buf);
        match parent {
            Some(dir) if !system_dir(&dir) && !keep.iter().any(|k| k.starts_with(&dir)) => {
                all.push((dir, true));
            }
            dir => {
                tracing::warn!(
                    "airlock run: {} is hidden by a mount over the file alone ({} holds the \
                     working directory or COMMAND's home, or is a system directory): if the \
                     host replaces it (agents remove, reviewers remove and token rotations \
                     rename a new file over the config) the new file is readable inside. Keep \
                     Airlock's files in a directory of their own",
                    canonical.display(),
                    dir.unwrap_or_default().display()
                );
                all.push((canonical, false));
            }
        }
    }
    all.sort();
    all.dedup();
    let dirs: Vec<PathBuf> = all
        .iter()
        .filter(|(p, d)| *d && !all.iter().any(|(q, qd)| *qd && q != p && p.starts_with(q)))
        .map(|(p, _)| p.clone())
        .collect();
    let files = all
        .iter()
        .filter(|(p, d)| !*d && !dirs.iter().any(|q| p.starts_with(q)))
        .map(|(p, _)| p.clone())
        .collect();
    Ok((dirs, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_hidden_by_their_directory_unless_it_holds_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let etc = dir.path().join("etc");
        std::fs::create_dir(&data).unwrap();
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(data.join("key"), "k").unwrap();
        let config = etc.join("airlock.toml");
        std::fs::write(&config, "").unwrap();
        let hide = [
            data.join("key"),
            data.join("."),
            config.clone(),
            dir.path().join("missing"),
        ];
        let (dirs, files) = targets(&hide, &[]).unwrap();
        let (data, etc) = (data.canonicalize().unwrap(), etc.canonicalize().unwrap());
        assert_eq!(dirs, vec![data.clone(), etc.clone()]);
        assert!(files.is_empty(), "{files:?}");
        // Working in the config's directory: the file alone, with a warning.
        let (dirs, files) = targets(&hide, &[etc.join("sub")]).unwrap();
        assert_eq!(dirs, vec![data]);
        assert_eq!(files, vec![config.canonicalize().unwrap()]);
        assert!(targets(&[PathBuf::from("/")], &[]).is_err());
        assert!(system_dir(Path::new("/etc")) && system_dir(Path::new("/var/lib")));
        assert!(!system_dir(Path::new("/root")) && !system_dir(Path::new("/etc/airlock")));
    }
}
