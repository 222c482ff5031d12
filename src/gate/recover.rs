//! Background duties: expiring overdue reviews, removing finished ones past retention, and
//! recovery after a restart. Each reads an index range, so its cost follows the reviews it
//! touches, not the history.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::index::{self, Query};
use super::review::ReviewState;
use super::{Gate, GateError};
use crate::store::{Batch, Tree};

/// Reviews handled per commit by the sweeper and by retention.
const CHUNK: usize = 2048;

impl Gate {
    /// Expires every pending review past its deadline. Returns how many it expired. Each
    /// chunk's audit entries are appended while the next chunk is read and committed (both
    /// commits may then share one fsync); every entry is durable before this returns.
    pub async fn sweep(self: &Arc<Self>) -> Result<usize, GateError> {
        self.blocking(|g| {
            let now = g.clock.now_ms();
            std::thread::scope(|scope| {
                let mut n = 0;
                let mut auditing: Option<std::thread::ScopedJoinHandle<'_, _>> = None;
                let joined = |h: Option<
                    std::thread::ScopedJoinHandle<'_, Result<(), GateError>>,
                >| match h.map(|h| h.join()) {
                    None | Some(Ok(Ok(()))) => Ok(()),
                    Some(Ok(Err(e))) => Err(e),
                    Some(Err(_)) => Err(GateError::Audit("audit thread panicked".into())),
                };
                loop {
                    let ids = index::overdue(g.store.as_ref(), now, CHUNK)?;
                    let (expired, events) = if ids.is_empty() {
                        (Vec::new(), Vec::new())
                    } else {
                        g.transition_many(&ids, |cur| {
                            if cur.state != ReviewState::Pending || now < cur.expires_at_ms {
                                return Err(GateError::AlreadyDecided {
                                    id: cur.id.clone(),
                                    state: cur.state.as_str(),
                                });
                            }
                            let mut next = cur.clone();
                            next.state = ReviewState::Expired;
                            Ok(next)
                        })?
                    };
                    joined(auditing.take())?;
                    n += expired.len();
                    if expired.is_empty() {
                        // Nothing overdue, or every one changed under us or was refused: the
                        // next tick sees them anew.
                        return Ok(n);
                    }
                    auditing = Some(scope.spawn(move || g.audit_all(events)));
                }
            })
        })
        .await
    }

    /// Removes finished reviews whose last change is older than `store.retention`. Their audit
    /// entries stay. Returns how many it removed.
    pub async fn prune(self: &Arc<Self>) -> Result<usize, GateError> {
        let Some(keep) = self.cfg.retention else {
            return Ok(0);
        };
        self.blocking(move |g| {
            let cutoff = g
                .clock
                .now_ms()
                .saturating_sub(keep.as_millis().try_into().unwrap_or(u64::MAX));
            let mut n = 0;
            loop {
                let ids = index::finished_before(g.store.as_ref(), cutoff, CHUNK)?;
                if ids.is_empty() {
                    return Ok(n);
                }
                let mut batches = Vec::with_capacity(ids.len());
                for id in &ids {
                    let (bytes, old) = match g.load(id) {
                        Ok(loaded) => loaded,
                        Err(GateError::NotFound(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    let mut b = Batch::default();
                    b.expect(Tree::Reviews, id.as_bytes(), Some(&bytes))
                        .delete(Tree::Reviews, id.as_bytes());
                    index::reindex(&mut b, Some(&old), None);
                    batches.push(b);
                }
                let removed = g.store.commit(batches)?.iter().filter(|ok| **ok).count();
                n += removed;
                if removed == 0 {
                    return Ok(n);
                }
            }
        })
        .await
    }

    /// After a restart: the indexes are built if the store predates them; `executing` becomes
    /// `outcome_unknown` (never re-sent); `approved` (the decision landed but sending had not
    /// begun) is executed now.
    pub async fn recover(self: &Arc<Self>) -> Result<(), GateError> {
        let built = self
            .blocking(|g| index::ensure_built(g.store.as_ref()))
            .await?;
        if built > 0 {
            tracing::info!(
                reviews = built,
                "indexed the reviews of a store from an earlier version"
            );
        }
        for id in self.all_in(ReviewState::Executing).await? {
            self.blocking(move |g| {
                g.transition(&id, |cur| {
                    let mut next = cur.clone();
                    next.state = ReviewState::OutcomeUnknown;
                    if let Some(e) = next.execution.as_mut() {
                        e.error = Some("Airlock stopped while this request was being sent; it may or may not have reached the upstream and is not retried automatically".into());
                    }
                    Ok(next)
                })
            })
            .await?;
        }
        for id in self.all_in(ReviewState::Approved).await? {
            let me = self.clone();
            self.tasks.spawn(async move {
                if let Err(e) = me.execute(&id).await {
                    tracing::error!(review = %id, error = %e, "execution after restart failed");
                }
            });
        }
        Ok(())
    }

    /// Ids of every review in `state`, page by page (used for the few in flight at a restart).
    async fn all_in(self: &Arc<Self>, state: ReviewState) -> Result<Vec<String>, GateError> {
        let q = Query {
            state: Some(state),
            ..Query::default()
        };
        let mut ids = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list_page(q.clone(), index::MAX_LIMIT, cursor).await?;
            ids.extend(page.reviews.into_iter().map(|r| r.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(ids),
            }
        }
    }

    /// Runs `duty`, and says how long it took (ms), for the logs.
    async fn timed<'a, F, Fut>(self: &'a Arc<Self>, duty: F) -> (Result<usize, GateError>, u128)
    where
        F: FnOnce(&'a Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = Result<usize, GateError>>,
    {
        let start = std::time::Instant::now();
        let r = duty(self).await;
        (r, start.elapsed().as_millis())
    }

    /// Runs the expiry sweeper (and retention, once a minute) until `shutdown`.
    pub async fn run_sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.sweep_interval);
        let mut prune = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => match self.timed(Gate::sweep).await {
                    (Ok(0), _) => {}
                    (Ok(n), ms) => {
                        tracing::info!(target: "airlock::gate", expired = n, elapsed_ms = ms, "expired reviews (silence is rejection)")
                    }
                    (Err(e), _) => tracing::error!(error = %e, "expiry sweep failed"),
                },
                _ = prune.tick() => match self.timed(Gate::prune).await {
                    (Ok(0), _) => {}
                    (Ok(n), ms) => tracing::info!(target: "airlock::gate", removed = n, elapsed_ms = ms, "removed finished reviews past store.retention (their audit entries stay)"),
                    (Err(e), _) => tracing::error!(error = %e, "retention sweep failed"),
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
