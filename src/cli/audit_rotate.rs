//! `airlock audit rotate-key`: replaces the audit checkpoint signing key (Airlock stopped;
//! `docs/audit.md`, "Rotating the signing key").

use anyhow::Result;

use airlock::audit::{AuditLog, Rotation};
use airlock::config::Config;
use airlock::store::Backend;

pub(super) fn rotate_key(config: &Config) -> Result<()> {
    let store = super::audit::stopped_store(config, "rotate-key")?;
    let key = config.audit_key_file();
    let opts = super::audit::audit_options(config);
    let rotation = AuditLog::rotate_key(store, &key, config.audit.origin.clone(), opts)
        .map_err(|e| anyhow::anyhow!("rotating the audit key: {e}"))?;
    let new_pubkey = match rotation {
        Rotation::Rotated {
            old_pubkey,
            new_pubkey,
            rotation_seq,
            checkpoint_seq,
        } => {
            println!("audit signing key rotated at seq {rotation_seq} (key_rotated, then a checkpoint the old key signed)");
            println!("old public key: {old_pubkey} (retired: it signs nothing more; its private key is gone)");
            println!("new public key: {new_pubkey} (in {}; it signed checkpoint seq {checkpoint_seq}, which the anchor names)", key.display());
            println!(
                "Verify exports with --pubkey {old_pubkey} --pubkey {new_pubkey} (the key in \
                 force last: the log must end on it); an export --since after seq {} with the \
                 new key alone.",
                rotation_seq + 1
            );
            new_pubkey
        }
        Rotation::Finished {
            new_pubkey,
            rotation_seq,
            checkpoint_seq,
        } => {
            let at = rotation_seq.map_or(String::new(), |s| format!(" (seq {s})"));
            println!("finished an interrupted key rotation{at}: nothing else was rotated; run `airlock audit rotate-key` again for another key");
            println!("public key in force: {new_pubkey} (in {}; it signed checkpoint seq {checkpoint_seq}, which the anchor names)", key.display());
            new_pubkey
        }
    };
    println!("Keep the new public key ({new_pubkey}) somewhere the Airlock host cannot write.");
    if config.store.backend == Backend::Postgres {
        println!(
            "This store is shared (PostgreSQL): rotate-key cannot stop the instances running on \
             it. Restart every instance with the new key file ({}); until then their \
             checkpoints, and the appends that complete one, fail.",
            key.display()
        );
    }
    Ok(())
}
