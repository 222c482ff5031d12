//! `--user` must not be able to change Airlock's files: a uid that owns the config, the agents
//! file, the rules, the store or a secret (or whose gid is their group, with group write)
//! could rewrite the gate's policy from inside the sandbox (delete rules, add an agent) whatever
//! the mount view hides, through any path Airlock reloads from. Checked: each path, the
//! directory holding a file (which could rename another file over it), and a directory's
//! entries (its rules, its store files).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::child::RunAs;
use super::SandboxError;

/// Refuses `run_as` if it could change any of `paths` (missing paths are skipped).
pub fn check_not_owner(run_as: RunAs, paths: &[PathBuf]) -> Result<(), SandboxError> {
    let mut seen: Vec<PathBuf> = Vec::new();
    for p in paths {
        let Ok(meta) = std::fs::metadata(p) else {
            continue;
        };
        let mut check = vec![p.clone()];
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(p) {
                check.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            check.push(dir.to_path_buf());
        }
        for c in check {
            if seen.contains(&c) {
                continue;
            }
            if let Some(why) = could_change(run_as, &c) {
                return Err(SandboxError::Invalid(format!(
                    "refusing --user {}:{}: {why} ({}), one of Airlock's files: COMMAND could \
                     change Airlock's policy or secrets. Use the default (a uid of its own) or \
                     an account that owns none of them",
                    run_as.uid,
                    run_as.gid,
                    c.display()
                )));
            }
            seen.push(c);
        }
    }
    Ok(())
}

/// Why `run_as` could change `path` (it owns it, or its gid is the group with write), if so.
/// The link itself and what it points to are both checked.
fn could_change(run_as: RunAs, path: &Path) -> Option<String> {
    let metas = [std::fs::symlink_metadata(path), std::fs::metadata(path)];
    metas.into_iter().flatten().find_map(|m| {
        if m.uid() == run_as.uid {
            Some(format!("uid {} owns it", run_as.uid))
        } else if m.gid() == run_as.gid && m.mode() & 0o020 != 0 && !m.file_type().is_symlink() {
            Some(format!("gid {} may write to it", run_as.gid))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_of_airlocks_files_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("airlock.toml");
        std::fs::write(&file, "").expect("write");
        let me = std::fs::metadata(&file).expect("meta");
        let owner = RunAs {
            uid: me.uid(),
            gid: 3_999_999_999,
        };
        let other = RunAs {
            uid: 3_999_999_998,
            gid: 3_999_999_999,
        };
        assert!(check_not_owner(owner, std::slice::from_ref(&file)).is_err());
        assert!(check_not_owner(other, std::slice::from_ref(&file)).is_ok());
        assert!(check_not_owner(owner, &[dir.path().join("missing")]).is_ok());
    }
}
