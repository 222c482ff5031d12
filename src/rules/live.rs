//! The live catalog: swapped atomically on reload (a change in the rules directory, or SIGHUP
//! through `server.rs`). A broken file, or rules that fail the installed [`PolicyCheck`] (a
//! quorum the configured reviewers can never meet), keep the last good catalog and log the error.
//! Rules that loosen a tool (its strictest action drops, it is gone, or its approval policy
//! weakens: [`Catalog::loosened_in`]) are taken, as an operator may loosen on purpose, with one
//! WARN line per such tool naming it, the old and new action and the rule file; but a file
//! change that drops a whole rules file or service is refused (a directory half-way through a
//! copy looks the same), and applies only on SIGHUP or a restart. Every reload,
//! taken or refused, is handed to the [`ReloadObserver`] `server.rs` installs (it records it in
//! the audit log).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{
    Catalog, CatalogDigest, CatalogOptions, Classifier, Loosening, PolicyCheck, ReloadObserver,
    RequestHead, RulesError, Verdict,
};

/// The watcher's name for a reload it sets off.
const FILE_CHANGE: &str = "file change";

/// Polls (one a second) a changed rules directory must stay the same for before it is read.
const SETTLE_TICKS: u32 = 2;

/// What `fresh` no longer has of `current`: rules files (by name) and services, in words;
/// `None` when it keeps them all.
fn dropped(current: &Catalog, fresh: &Catalog) -> Option<String> {
    let names = |c: &Catalog| -> Vec<String> {
        c.digest().files.into_iter().map(|(name, _)| name).collect()
    };
    let fresh_files = names(fresh);
    let files: Vec<String> = names(current)
        .into_iter()
        .filter(|f| !fresh_files.contains(f))
        .collect();
    let fresh_services = fresh.service_names();
    let services: Vec<String> = current
        .service_names()
        .into_iter()
        .filter(|s| !fresh_services.contains(s))
        .collect();
    let mut parts = Vec::new();
    if !files.is_empty() {
        parts.push(format!("rules file(s) {}", files.join(", ")));
    }
    if !services.is_empty() {
        parts.push(format!("service(s) {}", services.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// What a reload took in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Rules in the new catalog ([`Catalog::rule_count`]).
    pub rules: usize,
    /// The tools it makes less strict (each logged at WARN).
    pub loosened: Vec<Loosening>,
    /// What the new catalog was compiled from.
    pub digest: CatalogDigest,
    /// The rule files added, removed or edited since the catalog it replaced.
    pub files_changed: Vec<String>,
}

pub struct LiveCatalog {
    current: RwLock<Arc<Catalog>>,
    dir: Option<PathBuf>,
    opts: CatalogOptions,
    check: RwLock<Option<PolicyCheck>>,
    observer: RwLock<Option<ReloadObserver>>,
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
            observer: RwLock::new(None),
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
    /// installed policy check) the last good catalog stays in force. Tools the new rules make
    /// less strict are logged (WARN, one line each) and returned. The observer hears of it,
    /// taken or refused, as set off by `trigger`.
    pub fn reload(&self, trigger: &'static str) -> Result<Reloaded, RulesError> {
        let observer = match self.observer.read() {
            Ok(o) => o.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let reloaded = self.reload_seen(trigger, observer.as_ref());
        if let (Err(e), Some(observer)) = (&reloaded, &observer) {
            observer(trigger, Err(e));
        }
        reloaded
    }

    /// [`LiveCatalog::reload`]; `observer` hears of a reload taken (a refusal is the caller's).
    fn reload_seen(
        &self,
        trigger: &'static str,
        observer: Option<&ReloadObserver>,
    ) -> Result<Reloaded, RulesError> {
        let fresh = Self::read(&self.dir, &self.opts)?;
        let check = match self.check.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(check) = check {
            check(&fresh.approval_policies()).map_err(RulesError::Policy)?;
        }
        let rules = fresh.rule_count();
        let digest = fresh.digest();
        // Compared under the lock with the catalog it replaces: a reload racing this one (the
        // watcher and SIGHUP) cannot hide a loosening. A millisecond or so, on a rare event.
        let mut current = match self.current.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if trigger == FILE_CHANGE {
            if let Some(dropped) = dropped(&current, &fresh) {
                return Err(RulesError::Dropped(format!(
                    "the rules directory no longer has {dropped}; a file change does not apply \
                     that (a directory being copied or deployed looks the same): send SIGHUP \
                     or restart to apply it"
                )));
            }
        }
        let loosened = current.loosened_in(&fresh);
        let files_changed = current.digest().files_changed(&digest);
        *current = Arc::new(fresh);
        let reloaded = Reloaded {
            rules,
            loosened,
            digest,
            files_changed,
        };
        // Still under the lock, so that the observer hears of racing reloads in the order they
        // took effect (it only queues what it is handed).
        if let Some(observer) = observer {
            observer(trigger, Ok(&reloaded));
        }
        drop(current);
        let loosened = &reloaded.loosened;
        for l in loosened {
            tracing::warn!(
                tool = %l.tool,
                old = %l.old,
                new = %l.new,
                file = %l.file(),
                rule = %l.rule,
                "rules reload loosens {l}"
            );
        }
        Ok(reloaded)
    }

    fn reload_logged(&self, why: &'static str) {
        match self.reload(why) {
            Ok(r) => tracing::info!(
                rules = r.rules,
                loosened = r.loosened.len(),
                trigger = why,
                "rules reloaded"
            ),
            Err(e) => {
                tracing::error!(error = %e, trigger = why, "rules reload failed; keeping the last good catalog")
            }
        }
    }

    /// Reloads, when loaded from a directory, on changes to it (polled every second by
    /// modification time: cheap and works on every filesystem), once the directory has stayed
    /// the same for [`SETTLE_TICKS`] polls: a copy in progress is not read half-done. SIGHUP
    /// is `server.rs`'s: it reloads the reviewers first, then the rules
    /// ([`Classifier::reload_rules`]), so new rules are checked against the new reviewers.
    pub fn spawn_watcher(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        if self.dir.is_none() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut applied = me.fingerprint();
            let mut seen = applied.clone();
            let mut still = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        let now = me.fingerprint();
                        if now != seen {
                            seen = now;
                            still = 0;
                            continue;
                        }
                        still += 1;
                        if seen != applied && still >= SETTLE_TICKS {
                            applied = seen.clone();
                            me.reload_logged(FILE_CHANGE);
                        }
                    }
                }
            }
        });
    }

    /// Each rules file's path and [`crate::file_stamp`] (`None` while unreadable).
    fn fingerprint(&self) -> Vec<(PathBuf, Option<crate::file_stamp::FileStamp>)> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| !super::catalog::skipped_name(&e.file_name()))
                    .map(|e| {
                        let stamp = e.metadata().ok().map(|m| crate::file_stamp::of(&m));
                        (e.path(), stamp)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// A catalog judges as [`LiveCatalog`] does, but never changes: a request's snapshot.
impl Classifier for Catalog {
    fn inspects(&self, host: &str) -> bool {
        Catalog::inspects(self, host)
    }
    fn inspected_hosts(&self) -> Vec<String> {
        Catalog::hosts(self)
    }
    fn needs_body(&self, head: &RequestHead<'_>) -> bool {
        Catalog::needs_body(self, head)
    }
    fn evaluate(&self, head: &RequestHead<'_>, body: Option<&[u8]>) -> Verdict {
        Catalog::evaluate(self, head, body)
    }
    fn git_push(&self, head: &RequestHead<'_>) -> bool {
        Catalog::git_push(self, head)
    }
    fn service_for_host(&self, host: &str) -> Option<String> {
        Catalog::service_for_host(self, host)
    }
    fn approval_policies(&self) -> Vec<super::RulePolicy> {
        Catalog::approval_policies(self)
    }
}

impl Classifier for LiveCatalog {
    fn snapshot(&self) -> Option<Arc<dyn Classifier>> {
        Some(self.current())
    }
    fn inspects(&self, host: &str) -> bool {
        self.current().inspects(host)
    }
    fn inspected_hosts(&self) -> Vec<String> {
        self.current().hosts()
    }
    fn service_names(&self) -> Option<Vec<String>> {
        Some(self.current().service_names())
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
        Some(
            self.reload("SIGHUP")
                .map(|r| r.rules)
                .map_err(|e| e.to_string()),
        )
    }
    fn catalog_digest(&self) -> Option<CatalogDigest> {
        Some(self.current().digest())
    }
    fn set_reload_observer(&self, observer: ReloadObserver) {
        match self.observer.write() {
            Ok(mut o) => *o = Some(observer),
            Err(poisoned) => *poisoned.into_inner() = Some(observer),
        }
    }
}
