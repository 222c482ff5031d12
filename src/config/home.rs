//! Where Airlock's config file and state live, the same from any working directory:
//! `--config` (or `$AIRLOCK_CONFIG`), else `$AIRLOCK_HOME/airlock.toml`, else `./airlock.toml`
//! when present, else `$XDG_CONFIG_HOME/airlock/airlock.toml`. Relative paths in the config
//! file, and the default `certs/` and `data/`, resolve against the home directory: `$AIRLOCK_HOME`
//! when set, else `$XDG_DATA_HOME/airlock` for the XDG config file (however it was named) or when
//! no file is found, else the config file's directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variable naming Airlock's home directory.
pub const HOME_ENV: &str = "AIRLOCK_HOME";

/// How the config file (or its absence) was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// `--config` or `$AIRLOCK_CONFIG`.
    Named,
    /// `$AIRLOCK_HOME`.
    HomeEnv,
    /// `./airlock.toml` in the working directory.
    WorkingDir,
    /// The XDG directories (the fallback).
    Xdg,
    /// No discovery ran (`Config::from_toml`, tests).
    Unset,
}

/// The outcome of the search: the config file, the home directory, and where it looked.
#[derive(Debug, Clone)]
pub struct Home {
    /// The config file to read; `None`: built-in defaults.
    pub config_file: Option<PathBuf>,
    /// Where a config file is created when none exists (`agents add`, `reviewers add`).
    pub new_config_file: PathBuf,
    /// Relative paths in the config file and the default state directories resolve here.
    pub dir: PathBuf,
    pub found: Found,
    /// The config files looked for, in order (for "nothing found" messages).
    pub searched: Vec<PathBuf>,
}

impl Default for Home {
    fn default() -> Self {
        Home {
            config_file: None,
            new_config_file: PathBuf::from(super::DEFAULT_FILE),
            dir: PathBuf::from("."),
            found: Found::Unset,
            searched: Vec::new(),
        }
    }
}

impl Home {
    /// Searches with this process's environment and working directory.
    pub fn find(explicit: Option<&Path>) -> Home {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Self::find_in(explicit, &|k| std::env::var_os(k), &cwd)
    }

    /// The search, with the environment as `env` and the working directory `cwd`.
    pub fn find_in(
        explicit: Option<&Path>,
        env: &dyn Fn(&str) -> Option<OsString>,
        cwd: &Path,
    ) -> Home {
        let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home_env = set(HOME_ENV).map(|h| lexical(&cwd.join(h)));
        // XDG base directories; without $HOME either, the system-wide places.
        let user_home = set("HOME");
        let xdg = |var: &str, under_home: &str, system: &str| {
            set(var)
                .filter(|p| p.is_absolute())
                .or_else(|| user_home.as_ref().map(|h| h.join(under_home)))
                .unwrap_or_else(|| PathBuf::from(system))
                .join("airlock")
        };
        let xdg_file = xdg("XDG_CONFIG_HOME", ".config", "/etc").join(super::DEFAULT_FILE);
        let xdg_data = xdg("XDG_DATA_HOME", ".local/share", "/var/lib");
        if let Some(file) = explicit {
            let abs = lexical(&cwd.join(file));
            // The XDG config file keeps its XDG home however it is named (a reload names it).
            let dir = match (&home_env, abs.parent()) {
                (Some(h), _) => h.clone(),
                _ if abs == xdg_file => xdg_data,
                (None, Some(parent)) => parent.to_path_buf(),
                (None, None) => cwd.to_path_buf(),
            };
            return Home {
                config_file: Some(file.to_path_buf()),
                new_config_file: file.to_path_buf(),
                dir,
                found: Found::Named,
                searched: vec![abs],
            };
        }
        if let Some(home) = home_env {
            let file = home.join(super::DEFAULT_FILE);
            return Home {
                config_file: file.exists().then(|| file.clone()),
                new_config_file: file.clone(),
                dir: home,
                found: Found::HomeEnv,
                searched: vec![file],
            };
        }
        let local = cwd.join(super::DEFAULT_FILE);
        if local.exists() {
            return Home {
                config_file: Some(local.clone()),
                new_config_file: local.clone(),
                dir: cwd.to_path_buf(),
                found: Found::WorkingDir,
                searched: vec![local],
            };
        }
        Home {
            config_file: xdg_file.exists().then(|| xdg_file.clone()),
            new_config_file: xdg_file.clone(),
            dir: xdg_data,
            found: Found::Xdg,
            searched: vec![local, xdg_file],
        }
    }

    /// `p` as given when absolute, else under the home directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// How the config was found, for `airlock status` and error messages.
    pub fn describe(&self) -> String {
        let how = match self.found {
            Found::Named => "named by --config or $AIRLOCK_CONFIG",
            Found::HomeEnv => "from $AIRLOCK_HOME",
            Found::WorkingDir => "found in the working directory",
            Found::Xdg => "XDG directories",
            Found::Unset => "no discovery",
        };
        let searched: Vec<String> = self
            .searched
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "{how}; config looked for at {}; home (relative paths, default certs/ and data/) {}",
            searched.join(", "),
            self.dir.display()
        )
    }
}

/// `p` without `.` and `..` components (by name, not following links).
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn discovery_order() {
        let cwd = Path::new("/nowhere/cwd");
        let env = env_of(&[("HOME", "/h"), ("AIRLOCK_HOME", "/srv/airlock")]);
        let h = Home::find_in(Some(Path::new("etc/a.toml")), &env, cwd);
        assert_eq!(h.found, Found::Named);
        assert_eq!(h.dir, PathBuf::from("/srv/airlock"));
        let h = Home::find_in(Some(Path::new("etc/a.toml")), &env_of(&[]), cwd);
        assert_eq!(h.dir, PathBuf::from("/nowhere/cwd/etc"));
        let h = Home::find_in(None, &env, cwd);
        assert_eq!(h.found, Found::HomeEnv);
        assert_eq!(h.config_file, None);
        assert_eq!(
            h.new_config_file,
            PathBuf::from("/srv/airlock/airlock.toml")
        );
        let h = Home::find_in(None, &env_of(&[("HOME", "/h")]), cwd);
        assert_eq!(h.found, Found::Xdg);
        assert_eq!(h.dir, PathBuf::from("/h/.local/share/airlock"));
        assert_eq!(
            h.new_config_file,
            PathBuf::from("/h/.config/airlock/airlock.toml")
        );
        // Named, the XDG file keeps its XDG home (so a reload resolves paths as the start did).
        let named = Path::new("/h/.config/airlock/airlock.toml");
        let h = Home::find_in(Some(named), &env_of(&[("HOME", "/h")]), cwd);
        assert_eq!(h.dir, PathBuf::from("/h/.local/share/airlock"));
        let env = env_of(&[
            ("HOME", "/h"),
            ("XDG_CONFIG_HOME", "/c"),
            ("XDG_DATA_HOME", "rel"),
        ]);
        let h = Home::find_in(None, &env, cwd);
        assert_eq!(h.new_config_file, PathBuf::from("/c/airlock/airlock.toml"));
        assert_eq!(
            h.dir,
            PathBuf::from("/h/.local/share/airlock"),
            "a relative XDG path is ignored"
        );
        assert_eq!(h.resolve(Path::new("/abs")), PathBuf::from("/abs"));
        assert_eq!(
            h.resolve(Path::new("data")),
            PathBuf::from("/h/.local/share/airlock/data")
        );
    }
}
