//! One commit: a group of batches in one transaction, each batch inside a savepoint (a failed
//! expectation rolls back that batch alone). Writers are serialised across every instance on
//! the database by one transaction-level advisory lock ([`LOCK_SQL`]) taken first: under READ
//! COMMITTED each statement then sees every earlier commit and nothing commits in between, so a
//! commit runs as if alone. That is what the stores' expectations (the audit chain's next seq,
//! a review's current bytes) need, and it never aborts on contention: under SERIALIZABLE,
//! instances racing over the same review, state counters and audit head failed with
//! serialization errors and deadlocks faster than retries could absorb (2,000 raced approvals
//! on three instances took minutes and some ran out of retries). Grouping keeps the lock's cost
//! one transaction per group. An expectation on a key's current value followed by a put of the
//! same key (the approved -> executing claim) is one conditional `UPDATE ... RETURNING`: no
//! row, and the expectation failed. Commits that write a watched tree announce it
//! ([`super::listen`]).

use deadpool_postgres::{Object, Transaction};
use futures_util::future::try_join_all;
use tokio_postgres::error::SqlState;
use tokio_postgres::Statement;

use super::listen::{written, NOTIFY_SQL};
use crate::store::batch::{counter_plus, counter_value};
use crate::store::{Batch, StoreError, Tree, Write};

/// Attempts of one commit that meets a serialization failure or deadlock (none is expected
/// under [`LOCK_SQL`]; kept for writers outside Airlock's code, e.g. an operator's script).
const ATTEMPTS: usize = 5;

/// Taken first in every commit: the advisory lock every writer holds for its transaction (key
/// `0x0161_6972_6c6f_636b`, "airlock" + 1 in ASCII; the migration lock is "airlock"). A holder that stalls (its instance frozen mid-transaction) is
/// cut off by the server after 30 s idle, so the lock comes free; a writer waiting longer than
/// that for it fails (fail closed: 503) rather than hanging.
const LOCK_SQL: &str = "SET LOCAL lock_timeout = '30s';
     SET LOCAL idle_in_transaction_session_timeout = '30s';
     SELECT pg_advisory_xact_lock(99476606945289067)";

pub const GET_SQL: &str = "SELECT value FROM airlock_kv WHERE tree = $1 AND key = $2";
const PUT_SQL: &str = "INSERT INTO airlock_kv (tree, key, value) VALUES ($1, $2, $3)
     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
const DELETE_SQL: &str = "DELETE FROM airlock_kv WHERE tree = $1 AND key = $2";
const CLAIM_SQL: &str = "UPDATE airlock_kv SET value = $1
     WHERE tree = $2 AND key = $3 AND value = $4 RETURNING 1";

pub fn tree_id(tree: Tree) -> i16 {
    tree.slot() as i16
}

/// Commits `batches` on `client`; one flag per batch: applied.
pub async fn commit(
    client: &mut Object,
    shown: &str,
    batches: &[Batch],
) -> Result<Vec<bool>, StoreError> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match attempt(client, batches).await {
            Ok(applied) => return Ok(applied),
            Err(e) if retryable(&e) => last = Some(e),
            Err(e) => return Err(StoreError::Io(format!("{shown}: {}", super::explain(&e)))),
        }
    }
    Err(StoreError::Io(match last {
        Some(e) => format!("{shown}: {}", super::explain(&e)),
        None => format!("{shown}: commit kept conflicting"),
    }))
}

/// Why one attempt failed (maybe a serialization failure, retried).
type Failure = tokio_postgres::Error;

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

async fn attempt(client: &mut Object, batches: &[Batch]) -> Result<Vec<bool>, Failure> {
    let t = client.transaction().await?;
    t.batch_execute(LOCK_SQL).await?;
    let sql = Prepared::new(&t).await?;
    let mut applied = Vec::with_capacity(batches.len());
    for b in batches {
        applied.push(apply(&t, &sql, b).await?);
    }
    let notices = written(batches, &applied);
    try_join_all(notices.iter().map(|tree| {
        let (t, sql) = (&t, &sql);
        async move {
            let name = tree.name();
            t.query_one(&sql.notify, &[&name]).await
        }
    }))
    .await?;
    t.commit().await?;
    Ok(applied)
}

/// The statements a commit runs, prepared once per connection (cached after the first
/// commit). Prepared up front so that pipelined statements are sent in the order they are
/// issued: a statement still being prepared would otherwise go out after later ones.
struct Prepared {
    get: Statement,
    put: Statement,
    delete: Statement,
    claim: Statement,
    notify: Statement,
}

impl Prepared {
    async fn new(t: &Transaction<'_>) -> Result<Prepared, Failure> {
        Ok(Prepared {
            get: t.prepare_cached(GET_SQL).await?,
            put: t.prepare_cached(PUT_SQL).await?,
            delete: t.prepare_cached(DELETE_SQL).await?,
            claim: t.prepare_cached(CLAIM_SQL).await?,
            notify: t.prepare_cached(NOTIFY_SQL).await?,
        })
    }
}

/// For each expectation of `b`: the index and value of the put it claims with one conditional
/// update, if it is a claim (a current value expected, the key expected nowhere else in the
/// batch, and the key's first write a put).
fn claims(b: &Batch) -> Vec<Option<(usize, &[u8])>> {
    b.expect
        .iter()
        .map(|(tree, key, want)| {
            want.as_ref()?;
            let same = |t: &Tree, k: &Vec<u8>| t == tree && k == key;
            if b.expect.iter().filter(|(t, k, _)| same(t, k)).count() != 1 {
                return None;
            }
            b.writes.iter().enumerate().find_map(|(i, w)| match w {
                Write::Put(t, k, v) if same(t, k) => Some(Some((i, v.as_slice()))),
                Write::Delete(t, k) | Write::Add(t, k, _) if same(t, k) => Some(None),
                _ => None,
            })?
        })
        .collect()
}

/// Checks `b`'s expectations and, if all hold, makes its writes; `Ok(false)`: one failed and
/// nothing of `b` is written. Two round trips, statements pipelined: the expectations (reads,
/// and conditional updates for claims) with the counters' current values, then the writes.
/// A batch with a claim runs inside a savepoint, rolled back if a later expectation fails
/// (the claim has written by then); other batches write nothing before all expectations hold.
async fn apply(t: &Transaction<'_>, sql: &Prepared, b: &Batch) -> Result<bool, Failure> {
    let claims = claims(b);
    let savepoint = claims.iter().any(Option::is_some);
    let mut claimed = vec![false; b.writes.len()];
    for (i, _) in claims.iter().flatten() {
        if let Some(c) = claimed.get_mut(*i) {
            *c = true;
        }
    }
    let counters: Vec<(Tree, &[u8])> = {
        let mut keys: Vec<(Tree, &[u8])> = Vec::new();
        for w in &b.writes {
            if let Write::Add(tree, key, _) = w {
                if !keys.iter().any(|(t, k)| t == tree && *k == key.as_slice()) {
                    keys.push((*tree, key));
                }
            }
        }
        keys
    };

    // Round trip 1: the savepoint, every expectation, every counter's current value.
    let opened = async {
        if savepoint {
            t.batch_execute("SAVEPOINT batch").await?;
        }
        Ok::<_, Failure>(())
    };
    let checks = try_join_all(b.expect.iter().zip(&claims).map(
        |((tree, key, want), claim)| async move {
            Ok::<_, Failure>(match (claim, want) {
                (Some((_, new)), Some(old)) => t
                    .query_opt(&sql.claim, &[new, &tree_id(*tree), key, old])
                    .await?
                    .is_some(),
                _ => read(t, sql, *tree, key).await?.as_deref() == want.as_deref(),
            })
        },
    ));
    let now = try_join_all(counters.iter().map(|(tree, key)| read(t, sql, *tree, key)));
    let ((), checks, now) = tokio::try_join!(opened, checks, now)?;
    if !checks.iter().all(|ok| *ok) {
        if savepoint {
            t.batch_execute("ROLLBACK TO SAVEPOINT batch; RELEASE SAVEPOINT batch")
                .await?;
        }
        return Ok(false);
    }

    // Round trip 2: the writes, in order; a counter's new value from its current one and the
    // batch's earlier writes of it.
    let mut counter_now: Vec<u64> = now
        .iter()
        .map(|v| v.as_deref().map_or(0, counter_value))
        .collect();
    let slot = |tree: &Tree, key: &[u8]| counters.iter().position(|(t, k)| t == tree && *k == key);
    let mut writes: Vec<(bool, Tree, &[u8], Vec<u8>)> = Vec::with_capacity(b.writes.len());
    for (w, done) in b.writes.iter().zip(&claimed) {
        match w {
            Write::Put(tree, key, value) => {
                if let Some(i) = slot(tree, key) {
                    counter_now[i] = counter_value(value);
                }
                if !*done {
                    writes.push((true, *tree, key, value.clone()));
                }
            }
            Write::Delete(tree, key) => {
                if let Some(i) = slot(tree, key) {
                    counter_now[i] = 0;
                }
                writes.push((false, *tree, key, Vec::new()));
            }
            Write::Add(tree, key, delta) => {
                let Some(i) = slot(tree, key) else { continue };
                counter_now[i] = counter_plus(counter_now[i], *delta);
                writes.push((true, *tree, key, counter_now[i].to_be_bytes().to_vec()));
            }
        }
    }
    let made = try_join_all(writes.iter().map(|(put, tree, key, value)| async move {
        match put {
            true => t.execute(&sql.put, &[&tree_id(*tree), key, value]).await,
            false => t.execute(&sql.delete, &[&tree_id(*tree), key]).await,
        }
    }));
    let released = async {
        if savepoint {
            t.batch_execute("RELEASE SAVEPOINT batch").await?;
        }
        Ok::<_, Failure>(())
    };
    tokio::try_join!(made, released)?;
    Ok(true)
}

async fn read(
    t: &Transaction<'_>,
    sql: &Prepared,
    tree: Tree,
    key: &[u8],
) -> Result<Option<Vec<u8>>, Failure> {
    let row = t.query_opt(&sql.get, &[&tree_id(tree), &key]).await?;
    row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_statement_names_the_write_lock() {
        let key: i64 = 0x0161_6972_6c6f_636b;
        assert!(LOCK_SQL.ends_with(&format!("pg_advisory_xact_lock({key})")));
    }

    #[test]
    fn an_expected_value_then_a_put_of_that_key_is_one_claim() {
        let mut b = Batch::default();
        b.expect(Tree::Reviews, b"r", Some(b"approved"))
            .expect(Tree::Reviews, b"absent", None)
            .expect(Tree::Meta, b"m", Some(b"x"))
            .expect(Tree::Meta, b"n", Some(b"y"))
            .put(Tree::Index, b"r", b"other tree")
            .put(Tree::Reviews, b"r", b"executing")
            .add(Tree::Meta, b"m", 1)
            .put(Tree::Reviews, b"absent", b"new");
        let plan = claims(&b);
        assert_eq!(plan.len(), 4);
        assert_eq!(plan[0], Some((1, &b"executing"[..])), "the claim");
        assert_eq!(plan[1], None, "expecting absence is a read");
        assert_eq!(plan[2], None, "the key's first write is not a put");
        assert_eq!(plan[3], None, "the key is not written");
        let mut twice = Batch::default();
        twice
            .expect(Tree::Reviews, b"r", Some(b"a"))
            .expect(Tree::Reviews, b"r", Some(b"a"))
            .put(Tree::Reviews, b"r", b"b");
        assert_eq!(
            claims(&twice),
            vec![None, None],
            "a key expected twice is read"
        );
    }
}
