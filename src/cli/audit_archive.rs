//! `airlock audit archive --before SEQ --out FILE`: moves the audit log's entries before a
//! checkpoint to a file, with Airlock stopped (`docs/audit.md`, "Archiving").

use std::path::Path;

use anyhow::Result;

use airlock::audit::AuditLog;
use airlock::config::Config;
use airlock::gate::archive::Outcome;

pub(super) fn archive(config: &Config, before: u64, out: &Path, by: Option<String>) -> Result<()> {
    let store = super::audit::stopped_store(config, "archive")?;
    // Instances serving a shared database read and append the log meanwhile: none may run,
    // nor start, until the archive is done.
    let _instances = super::audit::alone_on_the_database(store.as_ref(), "archive")?;
    let log = AuditLog::open(
        store.clone(),
        &config.audit_key_file(),
        config.audit.origin.clone(),
        super::audit::audit_options(config),
    )
    .map_err(|e| anyhow::anyhow!("opening the audit log: {e}"))?;
    let by = by.unwrap_or_else(operator);
    let outcome = airlock::gate::archive::run(store.as_ref(), &log, before, out, by)
        .map_err(|e| anyhow::anyhow!("audit archive refused: {e}"))?;
    match outcome {
        Outcome::Finished { cut_seq, removed } => {
            println!(
                "finished an archive cut short: {removed} more entries before seq {cut_seq} \
                 removed (its file was written and recorded before; see its `archived` entry). \
                 Nothing else was archived: run the command again to archive further."
            );
        }
        Outcome::Archived {
            plan,
            file,
            removed,
        } => {
            let adopted = match file.adopted {
                true => " (already there, byte for byte, from a run cut short)",
                false => "",
            };
            println!(
                "archived seq {}..={} ({} lines, sha256 {}) to {}{adopted}",
                plan.from_seq,
                plan.cut_seq,
                file.lines,
                file.sha256,
                file.path.display()
            );
            println!(
                "removed {removed} entries from the store; the log now begins at checkpoint seq \
                 {} (hash {}), recorded in an `archived` entry",
                plan.cut_seq, plan.cut_hash
            );
            println!(
                "keep the file somewhere the Airlock host cannot write; it verifies alone, and \
                 with a later export after it (docs/audit.md, Archiving)"
            );
        }
    }
    Ok(())
}

/// Who runs the command: the user (by uid, with $USER when set) and the host.
fn operator() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let user = std::env::var("USER").unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let user: String = airlock::visible::escaped(&user).chars().take(64).collect();
    format!("uid {uid} ({user}) on {host}, airlock audit archive")
}
