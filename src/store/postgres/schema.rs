//! The schema: one table `airlock_kv (tree, key, value)` holding every tree, keys compared
//! bytewise as in redb and sled. Versioned in `airlock_schema`; each new step is a new version,
//! applied once, in order, at open, in one transaction under an advisory lock (instances
//! starting together migrate once).

use deadpool_postgres::Object;

/// Advisory lock key taken while migrating ("airlock" in ASCII).
const MIGRATION_LOCK: i64 = 0x0061_6972_6c6f_636b;

/// The schema, one step per version.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS airlock_kv (
         tree smallint NOT NULL,
         key bytea NOT NULL,
         value bytea NOT NULL,
         PRIMARY KEY (tree, key)
     )",
)];

/// The newest schema version this build knows.
pub const NEWEST: i32 = 1;

/// Brings the schema to the newest version. `Ok(Err(v))`: the schema is already at `v`, newer
/// than [`NEWEST`] (a newer build migrated it), and nothing was changed.
pub async fn migrate(client: &mut Object) -> Result<Result<(), i32>, tokio_postgres::Error> {
    let t = client.transaction().await?;
    t.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    t.batch_execute(
        "CREATE TABLE IF NOT EXISTS airlock_schema (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let done: i32 = t
        .query_one("SELECT coalesce(max(version), 0) FROM airlock_schema", &[])
        .await?
        .try_get(0)?;
    if done > NEWEST {
        return Ok(Err(done));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > done) {
        t.batch_execute(sql).await?;
        t.execute(
            "INSERT INTO airlock_schema (version) VALUES ($1)",
            &[version],
        )
        .await?;
    }
    t.commit().await.map(Ok)
}

#[cfg(test)]
mod tests {
    #[test]
    fn newest_is_the_last_step() {
        assert_eq!(super::MIGRATIONS.last().map(|m| m.0), Some(super::NEWEST));
    }
}
