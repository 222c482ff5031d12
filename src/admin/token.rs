//! The admin token: a local file (created 0600 on first use), or, on a store several instances
//! share, the database's token written to that file. `AIRLOCK_ADMIN_TOKEN` overrides both; it
//! must be at least [`MIN_TOKEN_CHARS`] characters (a short one is refused, never used), as must
//! the token file's, and a token file it overrides is reported as stale by [`stale_file`]. A
//! rotation writes a [`new_token`] with [`write_token_file`] (`operator.rs`).

use std::path::Path;

use super::AdminError;

/// The variable that overrides the token file.
pub const TOKEN_ENV: &str = "AIRLOCK_ADMIN_TOKEN";

/// Fewest characters `AIRLOCK_ADMIN_TOKEN` may have (the generated token has 64 hex digits).
pub const MIN_TOKEN_CHARS: usize = 32;

/// `AIRLOCK_ADMIN_TOKEN`, trimmed, if set and not empty; refused when shorter than
/// [`MIN_TOKEN_CHARS`] (the error names the variable and its length, never its value).
pub fn env_token() -> Result<Option<String>, AdminError> {
    let Ok(t) = std::env::var(TOKEN_ENV) else {
        return Ok(None);
    };
    let t = t.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let n = t.chars().count();
    if n < MIN_TOKEN_CHARS {
        return Err(AdminError::TokenFile {
            path: TOKEN_ENV.into(),
            message: format!(
                "{n} characters; an admin token needs at least {MIN_TOKEN_CHARS} (make one with `openssl rand -hex 32`)"
            ),
        });
    }
    Ok(Some(t.to_string()))
}

/// When `AIRLOCK_ADMIN_TOKEN` overrides the token file at `path` and that file holds another
/// token: it is stale (whoever reads it, a Prometheus scrape say, is refused). `false` when the
/// variable is unset, the file is absent or unreadable, or it holds the same token.
pub fn stale_file(path: &Path) -> bool {
    let Ok(Some(env)) = env_token() else {
        return false;
    };
    std::fs::read_to_string(path).is_ok_and(|f| f.trim() != env)
}

/// The admin token, without creating one: `AIRLOCK_ADMIN_TOKEN`, else the file at `path`;
/// `None` when neither exists.
pub fn read_token(path: &Path) -> Result<Option<String>, AdminError> {
    if let Some(t) = env_token()? {
        return Ok(Some(t));
    }
    // The CLI may run as another user than the server (root, say), so the owner is not
    // checked here; a file others may write could hold a planted token.
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o022 != 0 {
                return Err(AdminError::TokenFile {
                    path: path.display().to_string(),
                    message: format!(
                        "mode {mode:o} lets other users change it; run `chmod 600 {}`",
                        path.display()
                    ),
                });
            }
        }
    }
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
        Ok(_) => Err(AdminError::TokenFile {
            path: path.display().to_string(),
            message: "token file is empty".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AdminError::TokenFile {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// Reads the admin token from `path`, creating it (random, mode 0600) if absent.
/// `AIRLOCK_ADMIN_TOKEN` overrides the file.
pub fn load_or_create_token(path: &Path) -> Result<String, AdminError> {
    if let Some(t) = env_token()? {
        return Ok(t);
    }
    // The server's own secret: owned by its user, readable by nobody else (as the CA key is).
    load_or_create(path, 0o077, &[me()], MIN_TOKEN_CHARS)
}

/// Reads the metrics token (`admin.metrics_token_file`) from `path`, creating it (random, mode
/// 0600) if absent: a bearer that reads `/metrics` and nothing else, for a scraper that should
/// not hold the admin token. An existing file must belong to Airlock's user or root (a mounted
/// secret), be writable by nobody else (it may be readable by the scraper's group) and hold at
/// least [`MIN_TOKEN_CHARS`] characters.
pub fn load_or_create_metrics_token(path: &Path) -> Result<String, AdminError> {
    load_or_create(path, 0o022, &[me(), 0], MIN_TOKEN_CHARS)
}

/// Airlock's effective uid.
fn me() -> u32 {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() }
}

/// A token file at `path` owned by one of `owners`, with none of the `forbidden` mode bits and
/// at least `min_chars` characters; created (random, 0600) if absent. Errors name the path and
/// the reason, never the token.
fn load_or_create(
    path: &Path,
    forbidden: u32,
    owners: &[u32],
    min_chars: usize,
) -> Result<String, AdminError> {
    let err = |message: String| AdminError::TokenFile {
        path: path.display().to_string(),
        message,
    };
    let read = || {
        match crate::secret_file::read_owned_by(path, forbidden, owners) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) if t.trim().is_empty() => Err(err("token file is empty".into())),
            Ok(t) if t.trim().chars().count() < min_chars => Err(err(format!(
                "{} characters; a token needs at least {min_chars} (make one with `openssl rand -hex 32`)",
                t.trim().chars().count()
            ))),
            Ok(t) => Ok(Some(t.trim().to_string())),
            Err(_) => Err(err("token file is not UTF-8".into())),
        },
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
    };
    if let Some(t) = read()? {
        return Ok(t);
    }
    let token = new_token();
    match crate::secret_file::create_new(path, token.as_bytes()) {
        Ok(()) => Ok(token),
        // Another process created it meanwhile: its file is complete (secret_file gives a file its
        // name only once written), so use that token.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read()?.ok_or_else(|| err(e.to_string()))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// On a store several instances share: `shared` is the admin token kept there (every instance
/// accepts it). Writes it to the local token file at `path` (0600) so that the CLI on this host
/// finds it, replacing a different token there (logged, never the token). `AIRLOCK_ADMIN_TOKEN`
/// still overrides it for this process, and then the file is left alone.
pub fn adopt_shared_token(path: &Path, shared: &str) -> Result<String, AdminError> {
    if let Some(t) = env_token()? {
        return Ok(t);
    }
    let err = |message: String| AdminError::TokenFile {
        path: path.display().to_string(),
        message,
    };
    let local = match std::fs::read_to_string(path) {
        Ok(t) => Some(t.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(err(e.to_string())),
    };
    if local.as_deref() == Some(shared) {
        return Ok(shared.to_string());
    }
    write_token_file(path, shared)?;
    if local.is_some() {
        tracing::warn!(file = %path.display(), "the admin token file held another token than the shared database's; replaced it with the shared one (the old token no longer works)");
    }
    Ok(shared.to_string())
}

/// A new random admin token: 64 hex digits.
pub fn new_token() -> String {
    crate::secret_file::random_token()
}

/// Writes `token` to the token file at `path`, replacing it atomically (0600, its directory
/// created 0700 if missing). The error names the path, never the token.
pub fn write_token_file(path: &Path, token: &str) -> Result<(), AdminError> {
    crate::secret_file::write(path, token.as_bytes()).map_err(|e| AdminError::TokenFile {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
