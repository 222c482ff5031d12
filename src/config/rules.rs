//! `[rules]`: where the catalog comes from, and the closed world's verdict for writes no rule classifies.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Ctx};
use crate::rules::Action;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRules {
    pub(super) dir: Option<PathBuf>,
    pub(super) default_action: Action,
    pub(super) unclassified_writes: Action,
}

impl Default for RawRules {
    fn default() -> Self {
        Self {
            dir: None,
            default_action: Action::Allow,
            unclassified_writes: Action::Escalate,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// `None`: the catalog compiled into the binary (`rules/*.toml` at build time).
    pub dir: Option<PathBuf>,
    /// Verdict for inspected hosts that no service in the catalog names.
    pub default_action: Action,
    /// Verdict for a write to a catalog host that no rule classifies (escalate, block or
    /// allow; default escalate: the closed world).
    pub unclassified_writes: Action,
}

pub(super) fn check(r: RawRules, cx: &Ctx) -> Result<RulesConfig, ConfigError> {
    let unclassified_writes = match r.unclassified_writes {
        Action::Notify => {
            return Err(cx.invalid(
                "rules.unclassified_writes",
                "must be \"escalate\", \"block\" or \"allow\" (a soft gate would forward what no rule understands)".into(),
            ))
        }
        a => a,
    };
    Ok(RulesConfig {
        dir: r.dir,
        default_action: r.default_action,
        unclassified_writes,
    })
}
