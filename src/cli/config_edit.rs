//! Edits one `[[agents]]` or `[[reviewers]]` block of the config file in place, for `airlock
//! agents remove|rotate` and `airlock reviewers remove`: every other byte of the file (comments,
//! order, the other sections) stays as it was.
//!
//! The edit is checked before it is written: the edited file, parsed, must be the old one parsed
//! with exactly that change, and must still be a valid config. It is written atomically (a
//! temporary file beside it, fsynced, renamed over it), so a running `airlock serve` watching
//! the file never reads half of it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use airlock::config::Config;

/// The kind of block.
#[derive(Debug, Clone, Copy)]
pub(super) enum Table {
    Agents,
    Reviewers,
}

impl Table {
    fn key(self) -> &'static str {
        match self {
            Table::Agents => "agents",
            Table::Reviewers => "reviewers",
        }
    }

    /// Agent names are exact; reviewer names are compared normalized.
    fn names_match(self, a: &str, b: &str) -> bool {
        match self {
            Table::Agents => a == b,
            Table::Reviewers => airlock::person::same(a, b),
        }
    }
}

/// What to do to the block.
enum Edit<'a> {
    Remove,
    SetToken(&'a str),
}

/// The config file in force (or the home's, where `agents add` would create one).
pub(super) fn config_path(config: &Config) -> PathBuf {
    super::config_file_to_edit(config)
}

/// Removes the `[[table]]` block named `name`; `Ok(false)` if the file has none.
pub(super) fn remove(path: &Path, table: Table, name: &str) -> Result<bool> {
    edit(path, table, name, Edit::Remove)
}

/// Sets `token_sha256` of the `[[table]]` block named `name`; `Ok(false)` if the file has none.
pub(super) fn set_token(path: &Path, table: Table, name: &str, digest_hex: &str) -> Result<bool> {
    edit(path, table, name, Edit::SetToken(digest_hex))
}

fn edit(path: &Path, table: Table, name: &str, what: Edit<'_>) -> Result<bool> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let old: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let Some(index) = entry_index(&old, table, name) else {
        return Ok(false);
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let Some((start, end)) = block_lines(&lines, table, name) else {
        bail!(
            "{} lists {} {name:?} other than as a [[{}]] block; edit it by hand",
            path.display(),
            &table.key()[..table.key().len() - 1],
            table.key()
        );
    };
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut expected = old.clone();
    let entries = expected
        .get_mut(table.key())
        .and_then(toml::Value::as_array_mut)
        .context("the table vanished")?;
    match what {
        Edit::Remove => {
            entries.remove(index);
            if entries.is_empty() {
                expected.remove(table.key());
            }
            // The blank line before the block goes with it.
            let cut = if start > 0 && lines[start - 1].trim().is_empty() {
                start - 1
            } else {
                start
            };
            out.extend(lines[..cut].iter().map(|l| l.to_string()));
            out.extend(lines[end..].iter().map(|l| l.to_string()));
        }
        Edit::SetToken(digest) => {
            if let Some(t) = entries.get_mut(index).and_then(toml::Value::as_table_mut) {
                t.insert("token_sha256".into(), toml::Value::String(digest.into()));
            }
            let mut set = false;
            for (i, line) in lines.iter().enumerate() {
                if (start..end).contains(&i) && !set && key_of(line) == Some("token_sha256") {
                    let newline = if line.ends_with('\n') { "\n" } else { "" };
                    out.push(format!("token_sha256 = \"{digest}\"{newline}"));
                    set = true;
                } else {
                    out.push(line.to_string());
                }
            }
            if !set {
                bail!("the [[{}]] block of {name:?} has no token_sha256 line of its own; edit it by hand", table.key());
            }
        }
    }
    let edited = out.concat();
    // Exactly the intended change, and still a config `airlock serve` accepts.
    let parsed: toml::Table = toml::from_str(&edited)
        .with_context(|| format!("editing {} would break it; edit it by hand", path.display()))?;
    if parsed != expected {
        bail!(
            "editing {} in place would change more than that block; edit it by hand",
            path.display()
        );
    }
    Config::from_toml(&path.display().to_string(), &edited)
        .map_err(|e| anyhow::anyhow!("refusing to write an invalid config: {e}"))?;
    write_atomically(path, &edited)?;
    Ok(true)
}

/// Where `name` is in the file's `table` array, as parsed.
fn entry_index(parsed: &toml::Table, table: Table, name: &str) -> Option<usize> {
    parsed.get(table.key())?.as_array()?.iter().position(|e| {
        e.get("name")
            .and_then(toml::Value::as_str)
            .is_some_and(|n| table.names_match(n, name))
    })
}

/// The `key` of a `key = value` line.
fn key_of(line: &str) -> Option<&str> {
    let (k, _) = line.split_once('=')?;
    Some(k.trim().trim_matches('"'))
}

/// A table header line (`[x]` or `[[x]]`), with the spaces inside removed.
fn header(line: &str) -> Option<String> {
    let t = line.trim();
    let t = match t.find('#') {
        Some(i) if !t[..i].contains('"') => t[..i].trim(),
        _ => t,
    };
    (t.starts_with('[') && t.ends_with(']')).then(|| t.split_whitespace().collect())
}

/// The lines `[start, end)` of the `[[table]]` block whose name is `name`: from its header to
/// its last line before the next header (blank lines and comments after it stay).
fn block_lines(lines: &[&str], table: Table, name: &str) -> Option<(usize, usize)> {
    let want = format!("[[{}]]", table.key());
    let headers: Vec<usize> = (0..lines.len())
        .filter(|&i| header(lines[i]).is_some())
        .collect();
    for (n, &start) in headers.iter().enumerate() {
        if header(lines[start]).as_deref() != Some(want.as_str()) {
            continue;
        }
        let mut end = headers.get(n + 1).copied().unwrap_or(lines.len());
        while end > start + 1 && {
            let l = lines[end - 1].trim_start();
            l.is_empty() || l.starts_with('#')
        } {
            end -= 1;
        }
        let block: String = lines[start..end].concat();
        let Ok(parsed) = toml::from_str::<toml::Table>(&block) else {
            continue;
        };
        if entry_index(&parsed, table, name) == Some(0) {
            return Some((start, end));
        }
    }
    None
}

/// Replaces `path` with `text`: a new temporary file beside it under a random name (same
/// permissions; 0600 for a new file), fsynced, then renamed over it.
///
/// Review of session 23: the temporary file had a predictable name and was opened following
/// symlinks and truncating, so in a directory another user could write to, a file of theirs
/// received the config (an inline database password, a webhook URL) before the rename.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let (tmp, mut f) = airlock::secret_file::temp_beside(path, mode)
        .with_context(|| format!("creating a temporary file beside {}", path.display()))?;
    let result = (|| -> Result<()> {
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the permissions of {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# my airlock\n[proxy]\nallow_anonymous = false\n\n[[agents]]\nname = \"bot\"\ntoken_sha256 = \"1111111111111111111111111111111111111111111111111111111111111111\"\n# the other one\n\n[[agents]]\nname = \"ci\"\ntoken_sha256 = \"2222222222222222222222222222222222222222222222222222222222222222\"\nservices = [\"github\"]\n\n[[reviewers]]\nname = \"Alice\"\ntoken_sha256 = \"3333333333333333333333333333333333333333333333333333333333333333\"\n";

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("airlock.toml");
        std::fs::write(&p, text).expect("write");
        (dir, p)
    }

    #[test]
    fn removes_one_block_and_keeps_the_rest_byte_for_byte() {
        let (_d, p) = file(FILE);
        assert!(remove(&p, Table::Agents, "bot").expect("remove"));
        let after = std::fs::read_to_string(&p).expect("read");
        assert_eq!(after, FILE.replace("\n[[agents]]\nname = \"bot\"\ntoken_sha256 = \"1111111111111111111111111111111111111111111111111111111111111111\"\n", ""));
        assert!(!remove(&p, Table::Agents, "bot").expect("again"), "gone");
        assert!(remove(&p, Table::Reviewers, "alice").expect("normalized name"));
        let c = Config::from_toml("t", &std::fs::read_to_string(&p).expect("read")).expect("valid");
        assert_eq!(c.agents.len(), 1);
        assert!(c.reviewers.is_empty());
    }

    /// Review of session 23: the temporary file's name was predictable and opened following
    /// symlinks, so another user's file (or link) there received the config first.
    #[test]
    fn a_planted_temporary_file_receives_nothing() {
        use std::os::unix::fs::PermissionsExt;
        let (d, p) = file(FILE);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let theirs = d.path().join("theirs");
        std::fs::write(&theirs, "").expect("write");
        let planted = d
            .path()
            .join(format!(".airlock.toml.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&theirs, &planted).expect("symlink");
        assert!(remove(&p, Table::Agents, "bot").expect("remove"));
        assert_eq!(std::fs::read_to_string(&theirs).expect("read"), "");
        let after = std::fs::read_to_string(&p).expect("read");
        assert!(!after.contains("name = \"bot\""), "{after}");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "permissions kept");
    }

    #[test]
    fn sets_the_token_of_one_block_only() {
        let (_d, p) = file(FILE);
        let digest = "4".repeat(64);
        assert!(set_token(&p, Table::Agents, "ci", &digest).expect("rotate"));
        let c = Config::from_toml("t", &std::fs::read_to_string(&p).expect("read")).expect("valid");
        assert_eq!(c.agents[1].token_sha256, [0x44; 32]);
        assert_eq!(c.agents[0].token_sha256, [0x11; 32]);
        assert!(!set_token(&p, Table::Agents, "nobody", &digest).expect("absent"));
    }

    #[test]
    fn an_entry_it_cannot_edit_safely_is_refused_and_the_file_untouched() {
        let inline = "agents = [{ name = \"bot\", token_sha256 = \"1111111111111111111111111111111111111111111111111111111111111111\" }]\n";
        let (_d, p) = file(inline);
        let e = remove(&p, Table::Agents, "bot").expect_err("inline table");
        assert!(e.to_string().contains("by hand"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), inline);
    }
}
