//! One commit: a group of batches in one transaction. Writers are serialised across every
//! instance on the database by one transaction-level advisory lock ([`LOCK_SQL`]) taken first:
//! nothing else commits while a commit holds it, so the rows it reads stay as read until it
//! ends. Under SERIALIZABLE instead, instances racing over the same review, state counters and
//! audit head failed with serialization errors and deadlocks faster than retries absorbed
//! (2,000 raced approvals on three instances took 500 s and some answered 503).
//!
//! With the rows stable, a group costs a fixed number of round trips whatever its size: read
//! every key a batch expects or counts (one statement), run the batches in order against those
//! values and each other's writes (a batch whose expectation fails writes nothing; later ones
//! see the earlier ones' writes), then write the net result (one upsert, one delete, pipelined).
//! A claim (an expectation on a key's current value followed by a put of that key: the
//! approved -> executing claim) is also one conditional `UPDATE ... RETURNING`, checked: a claim
//! the database does not confirm aborts the commit (fail closed). Commits that write a watched
//! tree announce it ([`super::listen`]).

use std::collections::{HashMap, HashSet};

use std::time::Duration;

use deadpool_postgres::{Object, Pool, Transaction};
use futures_util::future::try_join_all;
use tokio_postgres::error::SqlState;

use super::listen::{keys_payload, written, KEYS_SQL, NOTIFY_SQL};
use super::settle::{settle, Settled, TxIdent};
use crate::store::batch::{counter_plus, counter_value};
use crate::store::{Batch, StoreError, Tree, Write};

/// Attempts of one commit that meets a serialization failure or deadlock (none is expected
/// under [`LOCK_SQL`]; kept for writers outside Airlock's code, e.g. an operator's script).
const ATTEMPTS: usize = 5;

/// Taken first in every commit: the advisory lock every writer holds for its transaction (key
/// `0x0161_6972_6c6f_636b`, "airlock" + 1 in ASCII; the migration lock is "airlock"). A holder
/// that stalls (its instance frozen mid-transaction) is cut off by the server after 30 s idle,
/// so the lock comes free; a writer waiting longer than that for it fails (fail closed: 503)
/// rather than hanging. A database, role or server that turned `synchronous_commit` off would
/// acknowledge a COMMIT before it is on disk: a claim lost in a crash after its send would be
/// sent again by recovery. So every commit raises `off` to `on` for itself (stronger settings,
/// `remote_apply` and the like, stay).
const LOCK_SQL: &str = "SET LOCAL lock_timeout = '30s';
     SET LOCAL idle_in_transaction_session_timeout = '30s';
     SELECT set_config('synchronous_commit', 'on', true)
       WHERE current_setting('synchronous_commit') = 'off';
     SELECT pg_advisory_xact_lock(99476606945289067)";

pub const GET_SQL: &str = "SELECT value FROM airlock_kv WHERE tree = $1 AND key = $2";
pub const GET_ANY_SQL: &str = "SELECT key, value FROM airlock_kv WHERE tree = $1 AND key = ANY($2)";
const READ_MANY_SQL: &str = "SELECT kv.tree, kv.key, kv.value
     FROM airlock_kv kv JOIN unnest($1::int2[], $2::bytea[]) AS u(tree, key)
     ON kv.tree = u.tree AND kv.key = u.key";
const PUT_MANY_SQL: &str = "INSERT INTO airlock_kv (tree, key, value)
     SELECT * FROM unnest($1::int2[], $2::bytea[], $3::bytea[])
     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
const DELETE_MANY_SQL: &str = "DELETE FROM airlock_kv
     WHERE (tree, key) IN (SELECT * FROM unnest($1::int2[], $2::bytea[]))";
const CLAIM_SQL: &str = "UPDATE airlock_kv SET value = $1
     WHERE tree = $2 AND key = $3 AND value = $4 RETURNING 1";

/// Most value bytes one upsert statement carries: its values go as one `bytea[]` parameter,
/// and PostgreSQL refuses an array (and a message) over 1 GiB. A group's puts past this are
/// several statements of the same transaction (group commits are capped at 64 MiB already,
/// `group.rs`, but one caller's commit is never split across commits and may be larger).
const PUT_STATEMENT_BYTES: usize = 64 * 1024 * 1024;

/// Who runs the transaction (read beside the commit's first read, in the same round trip).
const IDENT_SQL: &str = "SELECT pg_backend_pid(), txid_current()";

/// Longest a `COMMIT` is waited for before its outcome is settled from another connection
/// ([`settle`]). Inside the store's call limit, with room for the lock wait and the settling.
pub const COMMIT_LIMIT: Duration = Duration::from_secs(30);

pub fn tree_id(tree: Tree) -> i16 {
    tree.slot() as i16
}

/// Commits `batches` on `client` (a connection of `pool`), waiting at most `commit_limit` for
/// the `COMMIT` itself; one flag per batch: applied.
pub async fn commit(
    pool: &Pool,
    mut client: Object,
    shown: &str,
    batches: &[Batch],
    commit_limit: Duration,
) -> Result<Vec<bool>, StoreError> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match attempt(&mut client, batches, commit_limit).await {
            Ok(applied) => return Ok(applied),
            Err(Failure::InDoubt { tx, applied, why }) => {
                // Settling ends this connection's backend: it must never go back to the pool,
                // where the next commit could take it before its end is noticed.
                drop(Object::take(client));
                return match settle(pool, tx).await {
                    Ok(Settled::Committed) => {
                        tracing::warn!(store = %shown, why = %why, "a commit whose answer was lost did commit (its backend was ended to learn it)");
                        Ok(applied)
                    }
                    Ok(Settled::Aborted) => Err(StoreError::Io(format!(
                        "{shown}: {why}; its backend was ended and the transaction rolled back: nothing of the commit was written"
                    ))),
                    Err(e) => Err(StoreError::InDoubt(format!(
                        "{shown}: {why}, and whether it committed is unknown ({e})"
                    ))),
                };
            }
            Err(Failure::Db(e)) if retryable(&e) => last = Some(e),
            Err(Failure::Db(e)) => {
                return Err(StoreError::Io(format!("{shown}: {}", super::explain(&e))))
            }
            Err(Failure::ClaimNotConfirmed) => {
                return Err(StoreError::Io(format!(
                    "{shown}: a claim the commit's reads allowed was refused by the database \
                     (a writer outside the write lock?); nothing of the commit was written"
                )))
            }
        }
    }
    Err(StoreError::Io(match last {
        Some(e) => format!("{shown}: {}", super::explain(&e)),
        None => format!("{shown}: commit kept conflicting"),
    }))
}

/// Why one attempt failed.
enum Failure {
    Db(tokio_postgres::Error),
    /// A claim's conditional update found no row though the read said it would.
    ClaimNotConfirmed,
    /// `COMMIT` was sent but its answer never came (timed out, or the connection broke): `tx`
    /// may have committed, with these batches applied.
    InDoubt {
        tx: TxIdent,
        applied: Vec<bool>,
        why: String,
    },
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Db(e)
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

type Key = (Tree, Vec<u8>);

/// A claim to confirm: tree, key, the value read, the value claimed.
type Claim = (Tree, Vec<u8>, Vec<u8>, Vec<u8>);

/// What a group of batches does, worked out from the rows it reads: which batches apply, the
/// claims to confirm, and each written key's final value (`None`: deleted).
#[derive(Debug, Default, PartialEq)]
struct Plan {
    applied: Vec<bool>,
    claims: Vec<Claim>,
    finals: HashMap<Key, Option<Vec<u8>>>,
}

/// Every key a batch of `batches` expects or counts from, once each.
fn keys_read(batches: &[Batch]) -> Vec<Key> {
    let mut seen: HashSet<Key> = HashSet::new();
    let mut keys = Vec::new();
    let mut note = |tree: Tree, key: &[u8]| {
        let k = (tree, key.to_vec());
        if seen.insert(k.clone()) {
            keys.push(k);
        }
    };
    for b in batches {
        for (tree, key, _) in &b.expect {
            note(*tree, key);
        }
        for w in &b.writes {
            if let Write::Add(tree, key, _) = w {
                note(*tree, key);
            }
        }
    }
    keys
}

/// Runs `batches` in order against `stored` (the rows of [`keys_read`] that exist).
fn plan(batches: &[Batch], stored: &HashMap<Key, Vec<u8>>) -> Plan {
    let mut p = Plan::default();
    for b in batches {
        let now = |k: &Key, finals: &HashMap<Key, Option<Vec<u8>>>| match finals.get(k) {
            Some(v) => v.clone(),
            None => stored.get(k).cloned(),
        };
        let holds = b
            .expect
            .iter()
            .all(|(tree, key, want)| now(&(*tree, key.clone()), &p.finals) == *want);
        p.applied.push(holds);
        if !holds {
            continue;
        }
        for ((tree, key, want), claim) in b.expect.iter().zip(claims(b)) {
            let (Some((_, new)), Some(old)) = (claim, want) else {
                continue;
            };
            // Confirmable in the database only if no earlier batch of the group wrote it.
            if !p.finals.contains_key(&(*tree, key.clone())) {
                p.claims
                    .push((*tree, key.clone(), old.clone(), new.to_vec()));
            }
        }
        for w in &b.writes {
            match w {
                Write::Put(tree, key, value) => {
                    p.finals.insert((*tree, key.clone()), Some(value.clone()));
                }
                Write::Delete(tree, key) => {
                    p.finals.insert((*tree, key.clone()), None);
                }
                Write::Add(tree, key, delta) => {
                    let k = (*tree, key.clone());
                    let was = now(&k, &p.finals).map_or(0, |v| counter_value(&v));
                    let next = counter_plus(was, *delta).to_be_bytes().to_vec();
                    p.finals.insert(k, Some(next));
                }
            }
        }
    }
    p
}

async fn attempt(
    client: &mut Object,
    batches: &[Batch],
    commit_limit: Duration,
) -> Result<Vec<bool>, Failure> {
    let t = client.transaction().await?;
    t.batch_execute(LOCK_SQL).await?;
    let wanted = keys_read(batches);
    let ident = async {
        let stmt = t.prepare_cached(IDENT_SQL).await?;
        let row = t.query_one(&stmt, &[]).await?;
        Ok::<_, tokio_postgres::Error>(TxIdent {
            pid: row.try_get(0)?,
            xid: row.try_get(1)?,
        })
    };
    let (stored, tx) = tokio::try_join!(read_many(&t, &wanted), ident)?;
    let p = plan(batches, &stored);
    write(&t, &p).await?;
    let notices = written(batches, &p.applied);
    let keyed = keys_payload(batches, &p.applied);
    let notify = t.prepare_cached(NOTIFY_SQL).await?;
    let named = async {
        if let Some(keys) = &keyed {
            let stmt = t.prepare_cached(KEYS_SQL).await?;
            t.query_one(&stmt, &[keys]).await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    };
    let trees = try_join_all(notices.iter().map(|tree| {
        let (t, notify) = (&t, &notify);
        async move {
            let name = tree.name();
            t.query_one(notify, &[&name]).await
        }
    }));
    tokio::try_join!(trees, named)?;
    match tokio::time::timeout(commit_limit, t.commit()).await {
        Ok(Ok(())) => Ok(p.applied),
        // The server answered: it refused the commit, which rolled back.
        Ok(Err(e)) if e.as_db_error().is_some() => Err(e.into()),
        Ok(Err(e)) => Err(Failure::InDoubt {
            tx,
            applied: p.applied,
            why: format!("the commit's answer was lost ({})", super::explain(&e)),
        }),
        Err(_) => Err(Failure::InDoubt {
            tx,
            applied: p.applied,
            why: format!("no answer to COMMIT within {}s", commit_limit.as_secs()),
        }),
    }
}

/// The stored rows of `keys` (absent keys are missing from the map).
async fn read_many(
    t: &Transaction<'_>,
    keys: &[Key],
) -> Result<HashMap<Key, Vec<u8>>, tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let trees: Vec<i16> = keys.iter().map(|(t, _)| tree_id(*t)).collect();
    let names: Vec<&[u8]> = keys.iter().map(|(_, k)| k.as_slice()).collect();
    let stmt = t.prepare_cached(READ_MANY_SQL).await?;
    let rows = t.query(&stmt, &[&trees, &names]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let id: i16 = r.try_get(0)?;
        let Some(tree) = Tree::ALL.into_iter().find(|t| tree_id(*t) == id) else {
            continue;
        };
        out.insert(
            (tree, r.try_get::<_, Vec<u8>>(1)?),
            r.try_get::<_, Vec<u8>>(2)?,
        );
    }
    Ok(out)
}

/// Confirms the claims (conditional updates) and writes the final values, pipelined in one
/// round trip.
async fn write(t: &Transaction<'_>, p: &Plan) -> Result<(), Failure> {
    let claim = t.prepare_cached(CLAIM_SQL).await?;
    let put = t.prepare_cached(PUT_MANY_SQL).await?;
    let delete = t.prepare_cached(DELETE_MANY_SQL).await?;
    let (mut put_trees, mut put_keys, mut put_values) = (Vec::new(), Vec::new(), Vec::new());
    let (mut del_trees, mut del_keys) = (Vec::new(), Vec::new());
    for ((tree, key), value) in &p.finals {
        match value {
            Some(v) => {
                put_trees.push(tree_id(*tree));
                put_keys.push(key.as_slice());
                put_values.push(v.as_slice());
            }
            None => {
                del_trees.push(tree_id(*tree));
                del_keys.push(key.as_slice());
            }
        }
    }
    let claims = try_join_all(p.claims.iter().map(|(tree, key, old, new)| {
        let claim = &claim;
        async move {
            t.query_opt(claim, &[new, &tree_id(*tree), key, old])
                .await
                .map(|row| row.is_some())
        }
    }));
    // One statement per slice of at most [`PUT_STATEMENT_BYTES`] (usually one), in turn.
    let puts = async {
        let mut n = 0;
        for r in statement_slices(&put_values, PUT_STATEMENT_BYTES) {
            let (trees, keys, values) =
                (&put_trees[r.clone()], &put_keys[r.clone()], &put_values[r]);
            n += t.execute(&put, &[&trees, &keys, &values]).await?;
        }
        Ok::<_, tokio_postgres::Error>(n)
    };
    let deletes = async {
        if del_keys.is_empty() {
            return Ok(0);
        }
        t.execute(&delete, &[&del_trees, &del_keys]).await
    };
    let (confirmed, _, _) = tokio::try_join!(claims, puts, deletes)?;
    if confirmed.iter().all(|ok| *ok) {
        Ok(())
    } else {
        Err(Failure::ClaimNotConfirmed)
    }
}

/// `values` cut into consecutive ranges of at most `cap` bytes each (a single larger value alone
/// in its range); none for no values.
fn statement_slices(values: &[&[u8]], cap: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, v) in values.iter().enumerate() {
        if i > start && bytes.saturating_add(v.len()) > cap {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(v.len());
    }
    if start < values.len() {
        out.push(start..values.len());
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_runs_in_order_against_what_it_read() {
        let stored: HashMap<Key, Vec<u8>> = [
            ((Tree::Reviews, b"r".to_vec()), b"approved".to_vec()),
            ((Tree::Meta, b"n".to_vec()), 4u64.to_be_bytes().to_vec()),
        ]
        .into_iter()
        .collect();
        let mut claim = Batch::default();
        claim
            .expect(Tree::Reviews, b"r", Some(b"approved"))
            .put(Tree::Reviews, b"r", b"executing")
            .add(Tree::Meta, b"n", -1);
        // The same claim again in the group: it sees the first one's write and fails.
        let again = claim.clone();
        let mut fresh = Batch::default();
        fresh
            .expect(Tree::Audit, b"1", None)
            .put(Tree::Audit, b"1", b"e")
            .add(Tree::Meta, b"n", 3);
        // Expects the entry the batch before wrote: applies, and claims nothing in the database.
        let mut then = Batch::default();
        then.expect(Tree::Audit, b"1", Some(b"e"))
            .put(Tree::Audit, b"1", b"f")
            .delete(Tree::Reviews, b"gone");
        let batches = [claim, again, fresh, then];
        assert_eq!(keys_read(&batches).len(), 3, "r, n and 1, once each");
        let p = plan(&batches, &stored);
        assert_eq!(p.applied, vec![true, false, true, true]);
        assert_eq!(
            p.claims,
            vec![(
                Tree::Reviews,
                b"r".to_vec(),
                b"approved".to_vec(),
                b"executing".to_vec()
            )]
        );
        let get = |t: Tree, k: &[u8]| p.finals.get(&(t, k.to_vec())).cloned();
        assert_eq!(get(Tree::Reviews, b"r"), Some(Some(b"executing".to_vec())));
        assert_eq!(
            get(Tree::Meta, b"n"),
            Some(Some(6u64.to_be_bytes().to_vec()))
        );
        assert_eq!(get(Tree::Audit, b"1"), Some(Some(b"f".to_vec())));
        assert_eq!(get(Tree::Reviews, b"gone"), Some(None));
    }

    /// Review of session 22: a group's puts went as one `bytea[]` parameter whatever their size,
    /// and PostgreSQL refuses an array over 1 GiB (about 770 overdue reviews of 1 MiB bodies in
    /// one sweep chunk): the chunk never committed. They are now statements of at most
    /// [`PUT_STATEMENT_BYTES`].
    #[test]
    fn puts_are_cut_into_statements_by_bytes() {
        let (a, b, c) = (vec![0u8; 40], vec![0u8; 70], vec![0u8; 10]);
        let values: Vec<&[u8]> = vec![&a, &a, &b, &c, &c, &a];
        assert_eq!(statement_slices(&values, 100), vec![0..2, 2..5, 5..6]);
        assert_eq!(statement_slices(&values, 1000), vec![0..6]);
        // A value over the cap is a statement of its own.
        assert_eq!(
            statement_slices(&values, 50),
            vec![0..1, 1..2, 2..3, 3..5, 5..6]
        );
        assert!(statement_slices(&[], 10).is_empty());
        let mb = vec![0u8; 1024 * 1024];
        let many: Vec<&[u8]> = (0..1100).map(|_| mb.as_slice()).collect();
        let slices = statement_slices(&many, PUT_STATEMENT_BYTES);
        assert_eq!(slices.len(), 18, "1,100 MiB in 64 MiB statements");
        assert!(slices
            .iter()
            .all(|r| r.len() * mb.len() <= PUT_STATEMENT_BYTES));
    }

    #[test]
    fn the_lock_statement_names_the_write_lock() {
        let key: i64 = 0x0161_6972_6c6f_636b;
        assert!(LOCK_SQL.ends_with(&format!("pg_advisory_xact_lock({key})")));
        assert!(LOCK_SQL.contains("set_config('synchronous_commit', 'on', true)"));
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
