//! `[upstream]` and `[tls]`: how Airlock reaches providers, and where its interception CA lives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{normalize_host, ConfigError, Ctx};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUpstream {
    pub(super) extra_ca_files: Vec<PathBuf>,
    pub(super) resolve: BTreeMap<String, String>,
    pub(super) connect_timeout: String,
    pub(super) pool_idle_timeout: String,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            extra_ca_files: Vec::new(),
            resolve: BTreeMap::new(),
            connect_timeout: "10s".into(),
            pool_idle_timeout: "90s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTls {
    pub(super) ca_dir: PathBuf,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            ca_dir: "certs".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub extra_ca_files: Vec<PathBuf>,
    /// Host (lower-case) -> address dialled instead of DNS.
    pub resolve: BTreeMap<String, SocketAddr>,
    /// Bounds resolving and connecting (every address) together, then the TLS handshake.
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub ca_dir: PathBuf,
}

pub(super) fn check(u: RawUpstream, cx: &Ctx) -> Result<UpstreamConfig, ConfigError> {
    let mut resolve = BTreeMap::new();
    for (host, target) in &u.resolve {
        let h = normalize_host(host).ok_or_else(|| {
            cx.invalid("upstream.resolve", format!("{host:?} is not a host name"))
        })?;
        resolve.insert(h, cx.addr(&format!("upstream.resolve.{host}"), target)?);
    }
    Ok(UpstreamConfig {
        extra_ca_files: u.extra_ca_files,
        resolve,
        connect_timeout: cx.timeout("upstream.connect_timeout", &u.connect_timeout)?,
        pool_idle_timeout: cx.dur("upstream.pool_idle_timeout", &u.pool_idle_timeout)?,
    })
}
