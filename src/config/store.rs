//! `[store]` and `[admin]`: where durable state lives, and the admin listener and its token.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{normalize_host, ConfigError, Ctx};
use crate::store::Backend;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub(super) backend: Backend,
    pub(super) path: PathBuf,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: Backend::Redb,
            path: "data".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    pub(super) listen: String,
    pub(super) token_file: Option<PathBuf>,
    pub(super) public_hosts: Vec<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            token_file: None,
            public_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: Backend,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Where the admin bearer token lives (created 0600 on first run). Default `<store.path>/admin-token`.
    pub token_file: PathBuf,
    /// Names under which reviewers reach the admin listener (a reverse proxy, a tunnel): with
    /// the host of `notify.base_url`, never reachable through the proxy.
    pub public_hosts: Vec<String>,
}

pub(super) fn check_admin(
    raw: RawAdmin,
    store: &StoreConfig,
    cx: &Ctx,
) -> Result<AdminConfig, ConfigError> {
    let mut public_hosts = Vec::new();
    for h in &raw.public_hosts {
        public_hosts.push(normalize_host(h).ok_or_else(|| {
            cx.invalid("admin.public_hosts", format!("{h:?} is not a host name"))
        })?);
    }
    Ok(AdminConfig {
        public_hosts,
        listen: cx.addr("admin.listen", &raw.listen)?,
        token_file: raw
            .token_file
            .unwrap_or_else(|| store.path.join("admin-token")),
    })
}
