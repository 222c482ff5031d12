//! `[audit]`: the signed log's key, origin, checkpoints and the sampling of allowed requests.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Ctx};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAudit {
    pub(super) key_file: Option<PathBuf>,
    pub(super) origin: String,
    pub(super) checkpoint_every: u64,
    pub(super) checkpoint_interval: String,
    pub(super) allow_sample: f64,
    pub(super) allow_per_agent: u32,
    pub(super) notify_per_agent: u32,
    pub(super) block_per_agent: u32,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            key_file: None,
            origin: "airlock".into(),
            checkpoint_every: 100,
            checkpoint_interval: "60s".into(),
            allow_sample: 1.0,
            allow_per_agent: 20,
            notify_per_agent: 20,
            block_per_agent: 20,
        }
    }
}

/// The tamper-evident audit log.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Ed25519 checkpoint signing key (created 0600 on first run); `None`: see [`Config::audit_key_file`].
    pub key_file: Option<PathBuf>,
    /// Names this log in signed checkpoints.
    pub origin: String,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    /// Fraction (0.0-1.0) of allowed requests to catalog hosts that are recorded. Escalations,
    /// soft gates, review transitions and executions are always recorded; blocks at
    /// `block_per_agent`.
    pub allow_sample: f64,
    /// Allowed-request records one agent may add a second (a burst of 30 seconds' worth);
    /// past it they are counted, per agent, in an `audit_gap` entry. 0: no cap.
    pub allow_per_agent: u32,
    /// Soft-gated (notify) requests, and unclassified writes `rules.unclassified_writes =
    /// "allow"` lets through, one agent may send a second (a burst of 30 seconds' worth),
    /// each recorded before it is forwarded; past it 429 `too_many_soft_gated`, nothing
    /// forwarded or recorded. 0: no cap.
    pub notify_per_agent: u32,
    /// Blocked requests' records one agent may add a second (a burst of 30 seconds' worth);
    /// past it each is still refused (403), and counted in an `audit_gap` entry instead of
    /// recorded, so an agent looping on a blocked call cannot fill the disk. 0: no cap.
    pub block_per_agent: u32,
}

pub(super) fn check(a: &RawAudit, cx: &Ctx) -> Result<AuditConfig, ConfigError> {
    if !(0.0..=1.0).contains(&a.allow_sample) {
        return Err(cx.invalid("audit.allow_sample", "must be between 0.0 and 1.0".into()));
    }
    if a.origin.is_empty() || a.origin.contains('\n') {
        return Err(cx.invalid("audit.origin", "must be one non-empty line".into()));
    }
    Ok(AuditConfig {
        key_file: a.key_file.clone(),
        origin: a.origin.clone(),
        checkpoint_every: a.checkpoint_every,
        checkpoint_interval: cx.dur("audit.checkpoint_interval", &a.checkpoint_interval)?,
        allow_sample: a.allow_sample,
        allow_per_agent: a.allow_per_agent,
        notify_per_agent: a.notify_per_agent,
        block_per_agent: a.block_per_agent,
    })
}
