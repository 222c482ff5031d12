//! `[store]` and `[admin]`: where durable state lives, and the admin listener and its token.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Ctx};
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
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            token_file: None,
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
}

pub(super) fn check_admin(
    raw: RawAdmin,
    store: &StoreConfig,
    cx: &Ctx,
) -> Result<AdminConfig, ConfigError> {
    Ok(AdminConfig {
        listen: cx.addr("admin.listen", &raw.listen)?,
        token_file: raw
            .token_file
            .unwrap_or_else(|| store.path.join("admin-token")),
    })
}
