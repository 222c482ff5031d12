//! Background duties: expiring overdue reviews, and recovery after a restart.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::review::{Review, ReviewState};
use super::{Gate, GateError};
use crate::store::Tree;

impl Gate {
    /// Expires every pending review past its deadline. Returns how many it expired.
    pub async fn sweep(self: &Arc<Self>) -> Result<usize, GateError> {
        self.blocking(|g| {
            let now = g.clock.now_ms();
            let mut n = 0;
            for (key, bytes) in g.store.scan(Tree::Reviews)? {
                let Ok(r) = Review::decode(&bytes) else {
                    continue;
                };
                if r.state != ReviewState::Pending || now < r.expires_at_ms {
                    continue;
                }
                let id = String::from_utf8_lossy(&key).into_owned();
                let res = g.transition(&id, |cur| {
                    if cur.state != ReviewState::Pending || now < cur.expires_at_ms {
                        return Err(GateError::AlreadyDecided {
                            id: id.clone(),
                            state: cur.state.as_str(),
                        });
                    }
                    let mut next = cur.clone();
                    next.state = ReviewState::Expired;
                    Ok(next)
                });
                if res.is_ok() {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    /// After a restart: `executing` becomes `outcome_unknown` (never re-sent); `approved` (the
    /// decision landed but sending had not begun) is executed now.
    pub async fn recover(self: &Arc<Self>) -> Result<(), GateError> {
        let reviews = self.list(None).await?;
        for r in reviews {
            match r.state {
                ReviewState::Executing => {
                    let id = r.id.clone();
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
                ReviewState::Approved => {
                    let me = self.clone();
                    self.tasks.spawn(async move {
                        if let Err(e) = me.execute(&r.id).await {
                            tracing::error!(review = %r.id, error = %e, "execution after restart failed");
                        }
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs the expiry sweeper until `shutdown`.
    pub async fn run_sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.sweep_interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            match self.sweep().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(target: "airlock::gate", expired = n, "expired reviews (silence is rejection)")
                }
                Err(e) => tracing::error!(error = %e, "expiry sweep failed"),
            }
        }
    }
}
