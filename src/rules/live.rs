//! The live catalog: swapped atomically on reload (a change in the rules directory, or SIGHUP
//! through `server.rs`). A broken file, or rules that fail the installed [`PolicyCheck`] (a
//! quorum the configured reviewers can never meet), keep the last good catalog and log the error.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{Catalog, CatalogOptions, Classifier, PolicyCheck, RequestHead, RulesError, Verdict};

pub struct LiveCatalog {
    current: RwLock<Arc<Catalog>>,
    dir: Option<PathBuf>,
    opts: CatalogOptions,
    check: RwLock<Option<PolicyCheck>>,
}

impl LiveCatalog {
    /// Loads from `dir`, or the embedded catalog when `dir` is `None`.
    pub fn load(
        dir: Option<PathBuf>,
        opts: CatalogOptions,
    ) -> Result<Arc<LiveCatalog>, RulesError> {
        let catalog = Self::read(&dir, &opts)?;
        Ok(Arc::new(LiveCatalog {
            current: RwLock::new(Arc::new(catalog)),
            dir,
            opts,
            check: RwLock::new(None),
        }))
    }

    fn read(dir: &Option<PathBuf>, opts: &CatalogOptions) -> Result<Catalog, RulesError> {
        match dir {
            Some(d) => Catalog::load_dir(d, opts),
            None => Catalog::embedded(opts),
        }
    }

    pub fn current(&self) -> Arc<Catalog> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the rules; on error (a file that does not parse, or rules that fail the
    /// installed policy check) the last good catalog stays in force.
    pub fn reload(&self) -> Result<usize, RulesError> {
        let fresh = Self::read(&self.dir, &self.opts)?;
        let check = match self.check.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(check) = check {
            check(&fresh.approval_policies()).map_err(RulesError::Policy)?;
        }
        let n = fresh.rule_count();
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
        }
        Ok(n)
    }

    fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(n) => tracing::info!(rules = n, trigger = why, "rules reloaded"),
            Err(e) => {
                tracing::error!(error = %e, trigger = why, "rules reload failed; keeping the last good catalog")
            }
        }
    }

    /// Reloads, when loaded from a directory, on changes to it (polled every second by
    /// modification time: cheap and works on every filesystem). SIGHUP is `server.rs`'s: it
    /// reloads the reviewers first, then the rules ([`Classifier::reload_rules`]), so new rules
    /// are checked against the new reviewers.
    pub fn spawn_watcher(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        if self.dir.is_none() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut last = me.fingerprint();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        let now = me.fingerprint();
                        if now != last {
                            last = now;
                            me.reload_logged("file change");
                        }
                    }
                }
            }
        });
    }

    fn fingerprint(&self) -> Vec<(PathBuf, Option<std::time::SystemTime>, u64)> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| {
                        let m = e.metadata().ok();
                        (
                            e.path(),
                            m.as_ref().and_then(|m| m.modified().ok()),
                            m.map(|m| m.len()).unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Classifier for LiveCatalog {
    fn inspects(&self, host: &str) -> bool {
        self.current().inspects(host)
    }
    fn needs_body(&self, head: &RequestHead<'_>) -> bool {
        self.current().needs_body(head)
    }
    fn evaluate(&self, head: &RequestHead<'_>, body: Option<&[u8]>) -> Verdict {
        self.current().evaluate(head, body)
    }
    fn git_push(&self, head: &RequestHead<'_>) -> bool {
        self.current().git_push(head)
    }
    fn service_for_host(&self, host: &str) -> Option<String> {
        self.current().service_for_host(host)
    }
    fn approval_policies(&self) -> Vec<super::RulePolicy> {
        self.current().approval_policies()
    }
    fn set_policy_check(&self, check: PolicyCheck) {
        match self.check.write() {
            Ok(mut c) => *c = Some(check),
            Err(poisoned) => *poisoned.into_inner() = Some(check),
        }
    }
    fn reload_rules(&self) -> Option<Result<usize, String>> {
        // The embedded catalog cannot change.
        self.dir.as_ref()?;
        Some(self.reload().map_err(|e| e.to_string()))
    }
}
