//! The admin token in force, kept as its SHA-256 and swapped at once when it changes: a
//! rotation ([`OperatorToken::rotate`]) makes a new random token, stores it (the token file, and
//! first the database on a shared store), and the old one stops working at the next request,
//! dashboard sessions signed in with it included (they keep its digest). On a shared store,
//! [`OperatorToken::refresh`] takes in a rotation made elsewhere. `AIRLOCK_ADMIN_TOKEN` is the
//! operator's to change: while it is in force a rotation is refused and nothing is taken in.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::{token, token_digest, AdminError};
use crate::directory::DirectoryError;
use crate::store::Store;

/// How often an instance on a shared store checks the database's admin token besides hearing
/// of changes at once (LISTEN/NOTIFY): the most a rotated-out token keeps working on an
/// instance that missed the notice, while it reaches the database.
pub const SHARED_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the admin token in force comes from.
pub enum TokenSource {
    /// `AIRLOCK_ADMIN_TOKEN`: never rotated here.
    Env,
    /// The token file, this instance's alone (an embedded store).
    File,
    /// The database several instances share (written to the token file for the CLI).
    Shared(Arc<dyn Store>),
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("AIRLOCK_ADMIN_TOKEN is in force: the admin token is that variable's; change it where it is set and restart airlock serve")]
    FromEnv,
    #[error("the shared database: {0}")]
    Store(#[from] DirectoryError),
    #[error(transparent)]
    File(#[from] AdminError),
}

/// A new token put in force. `file_error`: on a shared store, the database holds it (every
/// instance follows) but this host's token file could not be written.
#[derive(Debug)]
pub struct Changed {
    pub file_error: Option<AdminError>,
}

/// The admin token in force.
pub struct OperatorToken {
    digest: RwLock<[u8; 32]>,
    file: PathBuf,
    source: TokenSource,
    /// One change at a time: a rotation, or a refresh's read, compare and swap.
    changing: Mutex<()>,
}

impl OperatorToken {
    pub fn new(token: &str, file: PathBuf, source: TokenSource) -> OperatorToken {
        OperatorToken {
            digest: RwLock::new(token_digest(token)),
            file,
            source,
            changing: Mutex::new(()),
        }
    }

    /// The token file (`admin.token_file`).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Whether the token is a shared store's (every instance on the database follows it).
    pub fn is_shared(&self) -> bool {
        matches!(self.source, TokenSource::Shared(_))
    }

    /// Whether the token's digest is `digest`. Digests are compared: equal-length, and timing
    /// reveals nothing about the token.
    pub(crate) fn is(&self, digest: &[u8; 32]) -> bool {
        *self.digest.read().unwrap_or_else(PoisonError::into_inner) == *digest
    }

    /// Puts a new random token in force (blocking: file and database I/O). Nothing changes when
    /// it fails, but for [`Changed::file_error`].
    pub fn rotate(&self) -> Result<Changed, RotateError> {
        let _one = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let token = match &self.source {
            TokenSource::Env => return Err(RotateError::FromEnv),
            TokenSource::File => token::new_token(),
            TokenSource::Shared(store) => {
                crate::directory::rotate_shared_admin_token(store.as_ref())?
            }
        };
        let file_error = match (&self.source, token::write_token_file(&self.file, &token)) {
            // The file is the token's only home: the old one stays in force.
            (TokenSource::File, Err(e)) => return Err(e.into()),
            (_, written) => written.err(),
        };
        self.set(&token);
        Ok(Changed { file_error })
    }

    /// On a shared store: reads the database's token (one Meta read) and, when it is another
    /// than the one in force, writes it to the token file and puts it in force. `None`: nothing
    /// changed (also with `AIRLOCK_ADMIN_TOKEN` in force, or no token stored).
    pub fn refresh(&self) -> Result<Option<Changed>, DirectoryError> {
        let TokenSource::Shared(store) = &self.source else {
            return Ok(None);
        };
        let _one = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(token) = crate::directory::stored_admin_token(store.as_ref())? else {
            return Ok(None);
        };
        if self.is(&token_digest(&token)) {
            return Ok(None);
        }
        let written = token::write_token_file(&self.file, &token);
        self.set(&token);
        Ok(Some(Changed {
            file_error: written.err(),
        }))
    }

    fn set(&self, token: &str) {
        *self.digest.write().unwrap_or_else(PoisonError::into_inner) = token_digest(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn a_rotation_writes_the_file_and_swaps_the_digest() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("data").join("admin-token");
        let t = OperatorToken::new("old-token", file.clone(), TokenSource::File);
        assert!(t.is(&token_digest("old-token")));
        let changed = t.rotate().expect("rotate");
        assert!(changed.file_error.is_none());
        let new = std::fs::read_to_string(&file).expect("file");
        assert_eq!(new.len(), 64);
        assert_eq!(mode(&file), 0o600);
        assert!(t.is(&token_digest(&new)));
        assert!(!t.is(&token_digest("old-token")));
    }

    #[test]
    fn a_file_that_cannot_be_written_keeps_the_old_token() {
        let dir = tempfile::tempdir().expect("dir");
        // A directory where the file should be: the rename fails.
        let file = dir.path().join("admin-token");
        std::fs::create_dir_all(file.join("x")).expect("mkdir");
        let t = OperatorToken::new("old-token", file, TokenSource::File);
        assert!(matches!(t.rotate(), Err(RotateError::File(_))));
        assert!(t.is(&token_digest("old-token")));
    }

    #[test]
    fn the_env_token_is_never_rotated() {
        let dir = tempfile::tempdir().expect("dir");
        let t = OperatorToken::new("env-token", dir.path().join("t"), TokenSource::Env);
        assert!(matches!(t.rotate(), Err(RotateError::FromEnv)));
        assert!(t.refresh().expect("refresh").is_none());
        assert!(t.is(&token_digest("env-token")));
        assert!(!dir.path().join("t").exists());
    }

    #[test]
    fn a_refresh_takes_in_the_stored_token() {
        let dir = tempfile::tempdir().expect("dir");
        let store = crate::store::open(crate::store::Backend::Redb, &dir.path().join("data"))
            .expect("store");
        let first = crate::directory::shared_admin_token(store.as_ref()).expect("token");
        let file = dir.path().join("admin-token");
        let t = OperatorToken::new(&first, file.clone(), TokenSource::Shared(store.clone()));
        assert!(t.refresh().expect("refresh").is_none(), "unchanged");
        let next = crate::directory::rotate_shared_admin_token(store.as_ref()).expect("rotate");
        assert!(t.refresh().expect("refresh").is_some());
        assert!(t.is(&token_digest(&next)) && !t.is(&token_digest(&first)));
        assert_eq!(std::fs::read_to_string(&file).expect("file"), next);
        // A rotation here goes through the database.
        t.rotate().expect("rotate");
        let stored = crate::directory::stored_admin_token(store.as_ref()).expect("read");
        let stored = stored.expect("stored");
        assert_ne!(stored, next);
        assert!(t.is(&token_digest(&stored)));
        assert_eq!(std::fs::read_to_string(&file).expect("file"), stored);
    }
}
