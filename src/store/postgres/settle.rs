//! Settling a commit whose outcome the client did not learn: its `COMMIT` timed out (a
//! synchronous standby that stopped answering, a stalled disk) or its connection broke after
//! sending it. The transaction may have committed, may still commit later, or not: so before
//! answering, its backend is terminated from another connection (which ends any wait; a
//! transaction not yet committed is rolled back, one committed stays so), and its outcome read
//! by transaction id (`txid_status`). The caller is then told the truth, never "nothing changed"
//! about a write that lands a minute later.

use std::time::Duration;

use deadpool_postgres::Pool;

/// How long the terminated backend is waited for to leave.
const GONE_WAIT: Duration = Duration::from_secs(10);
const GONE_POLL: Duration = Duration::from_millis(50);

/// Who ran a transaction: its backend's pid and its transaction id.
#[derive(Debug, Clone, Copy)]
pub struct TxIdent {
    pub pid: i32,
    pub xid: i64,
}

/// What a settled transaction came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    Committed,
    Aborted,
}

/// Ends `tx`'s backend and reads its outcome; `Err` (with why) when it cannot be known.
pub async fn settle(pool: &Pool, tx: TxIdent) -> Result<Settled, String> {
    let c = pool
        .get()
        .await
        .map_err(|e| format!("no connection to settle it: {e}"))?;
    c.query_one("SELECT pg_terminate_backend($1)", &[&tx.pid])
        .await
        .map_err(|e| format!("terminating its backend: {}", super::explain(&e)))?;
    let deadline = tokio::time::Instant::now() + GONE_WAIT;
    loop {
        let alive = c
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&tx.pid])
            .await
            .map_err(|e| format!("waiting for its backend: {}", super::explain(&e)))?;
        if alive.is_none() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("its backend (pid {}) did not end", tx.pid));
        }
        tokio::time::sleep(GONE_POLL).await;
    }
    let status: Option<String> = c
        .query_one("SELECT txid_status($1)", &[&tx.xid])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| format!("reading its outcome: {}", super::explain(&e)))?;
    match status.as_deref() {
        Some("committed") => Ok(Settled::Committed),
        Some("aborted") => Ok(Settled::Aborted),
        other => Err(format!("its transaction {} reads as {other:?}", tx.xid)),
    }
}
