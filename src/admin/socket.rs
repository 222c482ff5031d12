//! The admin API on a Unix socket (`admin.socket`, default `<store.path>/admin.sock`): how the
//! CLI reaches the server when it runs as Airlock's user. Whatever listens on the TCP admin port
//! (an impostor, while the server is down) cannot be behind the socket: it lives in a directory
//! nobody else may write, is 0600, and each peer's credentials are checked (Airlock's user or
//! root), so the CLI never hands its token to another user's process.

use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{limits, Admin};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("admin.socket {path}: {message} (set admin.socket = \"\" to serve the admin API on TCP only)")]
    Unusable { path: String, message: String },
}

/// The directory a socket may live in: Airlock's user's (or root's), writable by nobody else, so
/// nobody else can put a socket of their own at the path.
pub fn check_dir(path: &Path) -> Result<(), String> {
    let dir = parent(path);
    let meta = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // SAFETY: plain syscall.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "its directory {} belongs to uid {}, not to Airlock's user (uid {me}) or root",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "others may write its directory {} (mode {:o})",
            dir.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Does a live instance serve the socket at `path` (a socket there that accepts)?
pub fn served_by_live_peer(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
        && std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Binds the socket (its directory created 0700 if missing). `None`: another live instance
/// already serves it (several sharing one store directory), which is not an error.
fn bind(path: &Path) -> Result<Option<UnixListener>, SocketError> {
    let unusable = |message: String| SocketError::Unusable {
        path: path.display().to_string(),
        message,
    };
    crate::secret_file::create_private_dir(&parent(path)).map_err(|e| unusable(e.to_string()))?;
    check_dir(path).map_err(unusable)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            // Left by a server that stopped.
            std::fs::remove_file(path).map_err(|e| unusable(format!("stale socket: {e}")))?;
        }
        Ok(_) => return Err(unusable("exists and is not a socket".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(unusable(e.to_string())),
    }
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Ok(None),
        Err(e) => return Err(unusable(e.to_string())),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| unusable(e.to_string()))?;
    Ok(Some(listener))
}

/// The longest socket path the kernel takes (`sun_path` holds 108 bytes with its NUL).
pub const MAX_PATH: usize = 108;

/// How long an instance whose socket another live instance serves waits before it tries to take
/// the socket over (when that instance has stopped).
const TAKEOVER_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts the admin socket at `path`: bound now and served until `shutdown` (then removed), or,
/// while another live instance serves it, taken over once that one stops. A socket that cannot
/// be made refuses the start when `explicit` (`admin.socket` set); the default one is then
/// skipped with a warning (TCP only), as where the store's path is too long for a socket.
pub fn start(
    path: PathBuf,
    explicit: bool,
    admin: Arc<Admin>,
    config: &crate::config::AdminConfig,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> Result<(), SocketError> {
    let first = match bind(&path) {
        Ok(l) => l,
        Err(e) if explicit => return Err(e),
        Err(e) => {
            tracing::warn!(target: "airlock::admin", error = %e, "no admin socket; the CLI reaches the admin API over TCP");
            return Ok(());
        }
    };
    if first.is_none() {
        tracing::info!(target: "airlock::admin", socket = %path.display(), "admin socket served by another instance; taken over when it stops");
    }
    let config = config.clone();
    tokio::spawn(async move {
        let mut listener = first;
        loop {
            if let Some(l) = listener.take() {
                let bound = inode(&path);
                run(l, admin.clone(), &config, shutdown.clone(), tasks.clone()).await;
                // Removed only if it is still the one bound here (not a successor's).
                if bound.is_some() && inode(&path) == bound {
                    let _ = std::fs::remove_file(&path);
                }
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(TAKEOVER_RETRY) => {}
                _ = shutdown.cancelled() => return,
            }
            match bind(&path) {
                Ok(l) => listener = l,
                Err(e) => {
                    tracing::warn!(target: "airlock::admin", error = %e, "admin socket not taken over");
                }
            }
        }
    });
    Ok(())
}

/// The socket file's identity, to tell it from one made after it.
fn inode(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Serves the admin API on the socket until `shutdown`, to Airlock's own user and root only,
/// within the `[admin]` connection cap and read deadlines (its own, apart from TCP's).
fn run(
    listener: UnixListener,
    admin: Arc<Admin>,
    config: &crate::config::AdminConfig,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let gk = limits::Gatekeeper::new(config);
    async move {
        // SAFETY: plain syscall.
        let me = unsafe { libc::geteuid() };
        let mut backoff = limits::Backoff::new();
        loop {
            let Some(((stream, _), global)) =
                limits::next_connection(&gk, || listener.accept(), &mut backoff, &shutdown).await
            else {
                return;
            };
            let Some(global) = global else {
                continue; // at admin.max_connections: closed unanswered
            };
            match stream.peer_cred() {
                Ok(c) if c.uid() == me || c.uid() == 0 => {}
                Ok(c) => {
                    tracing::warn!(target: "airlock::admin", uid = c.uid(), "admin socket connection from another user refused");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(target: "airlock::admin", error = %e, "admin socket peer unknown; refused");
                    continue;
                }
            }
            let (admin, gk, shutdown) = (admin.clone(), gk.clone(), shutdown.clone());
            tasks.spawn(async move {
                let _global = global;
                super::serve_connection(stream, super::Peer::Socket, admin, gk, None, shutdown)
                    .await;
            });
        }
    }
}
