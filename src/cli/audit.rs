//! `airlock audit`: export and verify the audit log, live or from a file; accept a restore;
//! rotate the signing key; archive old entries (`audit_archive.rs`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use airlock::config::Config;

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Write the log (entries and signed checkpoints) as JSON Lines.
    Export {
        /// First sequence number to include.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Output file (default: stdout).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Verify an exported file offline (needs --pubkey), or the live log when no FILE is given.
    Verify {
        file: Option<PathBuf>,
        /// Checkpoint public key, hex (from `airlock audit pubkey`). Repeat it across key
        /// rotations, oldest first: the last one given is the key in force now, and the last
        /// checkpoint must be signed with it.
        #[arg(long)]
        pubkey: Vec<String>,
        /// A checkpoint line kept elsewhere (from `airlock audit checkpoint`); the file must
        /// contain everything it covers, so a truncated tail is detected.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The seq the file must start at (the `--since` it was exported with): a file whose
        /// first entries were cut off, or that holds none, fails.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// An audit anchor file (a copy of the one beside the signing key): the file must hold
        /// the entry it names, with the same hash, so a tail cut before it is detected.
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
    /// Sign a checkpoint now and print the latest one; keep it outside Airlock.
    Checkpoint,
    /// Print the checkpoint signing public key (hex).
    Pubkey,
    /// Accept a store restored from a copy (run it with Airlock stopped, before `serve`):
    /// `approved` and `executing` reviews become `outcome_unknown` (never re-sent
    /// automatically), reviews a human may still send are marked restored (their views warn),
    /// one-click links issued so far stop working; logs a `restore_accepted` entry and points
    /// the audit anchor at a new checkpoint.
    AcceptRestore {
        /// The store was restored though the anchor matches it (a copy that held the anchor
        /// too, e.g. a whole-host restore): accept it all the same.
        #[arg(long)]
        declare: bool,
    },
    /// Replace the checkpoint signing key: a `key_rotated` entry the old key signs, then the new
    /// key signs from there on. Run it with Airlock stopped (on PostgreSQL, restart every
    /// instance with the new key file afterwards).
    RotateKey,
    /// Move the entries before a checkpoint out of the store (Airlock stopped): the newest
    /// checkpoint at or before --before is the cut; every entry from the log's start through
    /// it is written to --out (as `export` writes it), verified, recorded in an `archived`
    /// entry, then removed with its index keys. The log then begins at the cut.
    Archive {
        /// Archive up to the newest checkpoint with a seq at or below this.
        #[arg(long)]
        before: u64,
        /// The archive file to create (never overwritten).
        #[arg(long, short)]
        out: PathBuf,
        /// Who archives, for the `archived` entry (default: the user and host it runs as).
        #[arg(long)]
        by: Option<String>,
    },
}

/// Where `airlock audit` reads the live log: the running server's admin API, or, when none is
/// running, the store directly.
enum AuditSource {
    Admin(airlock::admin::client::Target, String),
    Local(Box<airlock::audit::AuditLog>),
}

/// `despite_anchor`: a local log whose anchor does not match its store (a cut tail, an older
/// copy) is still opened, with a warning, so what is left can be exported and examined.
async fn audit_source(config: &Config, despite_anchor: bool) -> Result<AuditSource> {
    let token = airlock::admin::read_token(&config.admin.token_file)
        .ok()
        .flatten();
    if let Some(token) = token {
        let addr = airlock::admin::client::Target::of(config);
        // The probe carries no token: only a server that answers gets it afterwards.
        if airlock::admin::client::call(&addr, "", http::Method::GET, "/healthz", None)
            .await
            .is_ok()
        {
            return Ok(AuditSource::Admin(addr, token));
        }
    }
    if config.store.backend != airlock::store::Backend::Postgres && !config.store.path.exists() {
        anyhow::bail!(
            "no running server answers at {} and there is no store at {} ({})",
            config.admin.listen,
            config.store.path.display(),
            config.home.describe()
        );
    }
    let store = airlock::store::open_configured(
        config.store.backend,
        &config.store.path,
        config.store.url.as_ref().map(|u| u.expose()),
        std::time::Duration::ZERO,
    )
    .map_err(|e| anyhow::anyhow!("opening the store at {}: {e}", config.store.path.display()))?;
    let open = |checked: bool| {
        airlock::audit::AuditLog::open_with_anchor_check(
            store.clone(),
            &config.audit_key_file(),
            config.audit.origin.clone(),
            Default::default(),
            checked,
        )
    };
    let log = match open(true) {
        Err(airlock::audit::AuditError::Anchor(why)) if despite_anchor => {
            eprintln!("warning: {why}; exporting what the store holds");
            open(false)
        }
        other => other,
    }
    .map_err(|e| anyhow::anyhow!("opening the audit log: {e}"))?;
    Ok(AuditSource::Local(Box::new(log)))
}

pub(super) async fn audit_cmd(config: Config, cmd: AuditCommand) -> Result<()> {
    use airlock::admin::client::call;
    use http::Method;
    match cmd {
        AuditCommand::Verify {
            file: Some(file),
            pubkey,
            checkpoint,
            since,
            anchor,
        } => {
            if pubkey.is_empty() {
                bail!("--pubkey HEX is required to verify a file (see `airlock audit pubkey`)");
            }
            let key = pubkey;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let reader = std::io::BufReader::new(f);
            let result = match (checkpoint, anchor) {
                (Some(_), Some(_)) => bail!("give --checkpoint or --anchor, not both"),
                (Some(cp), None) => {
                    let trusted =
                        std::fs::read(&cp).with_context(|| format!("reading {}", cp.display()))?;
                    airlock::audit::verify_lines_with_checkpoint(reader, &key, &trusted)
                }
                (None, Some(anchor)) => {
                    let anchor = std::fs::read(&anchor)
                        .with_context(|| format!("reading {}", anchor.display()))?;
                    airlock::audit::verify_lines_with_anchor(reader, &key, &anchor)
                }
                (None, None) => airlock::audit::verify_lines(reader, &key),
            };
            match result {
                Ok(r) if r.entries == 0 => {
                    bail!("audit log verification FAILED: the file holds no entries")
                }
                // A log that begins at an archive's cut: the signed `archived` entry says so.
                Ok(r)
                    if r.first_seq != since
                        && !(since == 0 && r.archived_before == Some(r.first_seq)) =>
                {
                    bail!(
                    "audit log verification FAILED: the file starts at seq {}, not at seq {since}: \
                     its first entries are missing (an export made with --since N is verified \
                     with --since N)",
                        r.first_seq
                    )
                }
                Ok(r) => {
                    verified(&r);
                    Ok(())
                }
                Err(e) => bail!("audit log verification FAILED: {e}"),
            }
        }
        AuditCommand::Verify { file: None, .. } => match audit_source(&config, false).await? {
            AuditSource::Admin(addr, token) => {
                let (status, json) =
                    call(&addr, &token, Method::GET, "/v1/audit/verify", None).await?;
                match status {
                    200 => {
                        println!("OK: {json}");
                        Ok(())
                    }
                    // The one answer that is about the chain: a broken link or signature.
                    409 if json["ok"] == false => {
                        bail!("audit log verification FAILED: {json}")
                    }
                    _ => Err(api_refused("audit verify", status, &json, &config)),
                }
            }
            AuditSource::Local(log) => match log.verify_live() {
                Ok(r) => {
                    verified(&r);
                    Ok(())
                }
                Err(e) => bail!("audit log verification FAILED: {e}"),
            },
        },
        AuditCommand::Checkpoint => {
            match audit_source(&config, false).await? {
                AuditSource::Admin(addr, token) => {
                    let (status, bytes) = airlock::admin::client::call_raw(
                        &addr,
                        &token,
                        Method::POST,
                        "/v1/audit/checkpoint",
                        None,
                    )
                    .await?;
                    let text = String::from_utf8_lossy(&bytes);
                    if status != 200 {
                        let json = serde_json::from_slice(&bytes)
                            .unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
                        return Err(api_refused("audit checkpoint", status, &json, &config));
                    }
                    print!("{text}");
                }
                AuditSource::Local(log) => match log
                    .latest_checkpoint()
                    .map_err(|e| anyhow::anyhow!("checkpoint failed: {e}"))?
                {
                    Some(line) => println!("{line}"),
                    None => bail!("the audit log is empty"),
                },
            }
            Ok(())
        }
        AuditCommand::Pubkey => {
            match audit_source(&config, false).await? {
                AuditSource::Admin(addr, token) => {
                    let (status, json) =
                        call(&addr, &token, Method::GET, "/v1/audit/pubkey", None).await?;
                    match json["pubkey"].as_str().filter(|_| status == 200) {
                        Some(key) => println!("{key}"),
                        None => return Err(api_refused("audit pubkey", status, &json, &config)),
                    }
                }
                AuditSource::Local(log) => println!("{}", log.public_key_hex()),
            }
            Ok(())
        }
        AuditCommand::AcceptRestore { declare } => accept_restore(&config, declare),
        AuditCommand::RotateKey => super::audit_rotate::rotate_key(&config),
        AuditCommand::Archive { before, out, by } => {
            super::audit_archive::archive(&config, before, &out, by)
        }
        AuditCommand::Export { since, out } => {
            // To a file: a temporary one beside it, put in its place only once the whole
            // export is written; any error before then leaves the file as it was.
            let mut file = match &out {
                Some(p) => Some(
                    super::out_file::OutFile::create(p)
                        .with_context(|| format!("writing {}", p.display()))?,
                ),
                None => None,
            };
            let mut stdout: Box<dyn std::io::Write> =
                if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    Box::new(TerminalSafe::new(std::io::BufWriter::new(
                        std::io::stdout().lock(),
                    )))
                } else {
                    Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
                };
            let sink: &mut dyn std::io::Write = match &mut file {
                Some(f) => f,
                None => &mut stdout,
            };
            match audit_source(&config, true).await? {
                AuditSource::Admin(addr, token) => {
                    // Page by page: neither side holds the whole log.
                    let mut from = Some(since);
                    while let Some(since) = from {
                        let (status, headers, bytes) = airlock::admin::client::call_paged(
                            &addr,
                            &token,
                            &format!("/v1/audit?since={since}"),
                        )
                        .await?;
                        if status != 200 {
                            let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                                String::from_utf8_lossy(&bytes).into_owned().into()
                            });
                            return Err(api_refused("audit export", status, &json, &config));
                        }
                        sink.write_all(&bytes)?;
                        from = headers
                            .get(airlock::admin::NEXT_SINCE_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok());
                    }
                }
                AuditSource::Local(log) => {
                    log.export(since, sink)
                        .map_err(|e| anyhow::anyhow!("export failed: {e}"))?;
                }
            }
            match file {
                Some(f) => {
                    let dest = f.dest().display().to_string();
                    f.commit().with_context(|| format!("writing {dest}"))?
                }
                None => stdout.flush()?,
            }
            Ok(())
        }
    }
}

/// An admin API answer other than the one asked for, as an error that says what it was: a
/// refused token or a server that cannot answer now is not a finding about the log.
fn api_refused(
    what: &str,
    status: u16,
    body: &serde_json::Value,
    config: &Config,
) -> anyhow::Error {
    let said = match (body["error"].as_str(), body["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => body.to_string(),
    };
    let said = airlock::visible::escaped(&said);
    match status {
        401 | 403 => anyhow::anyhow!(
            "{what}: the admin API refused the admin token (HTTP {status}, {said}); the CLI \
             presents AIRLOCK_ADMIN_TOKEN if set, else {}: if `airlock serve` runs with \
             AIRLOCK_ADMIN_TOKEN, set the same here (the file then holds a stale token)",
            config.admin.token_file.display()
        ),
        429 | 503 => anyhow::anyhow!(
            "{what}: the server cannot answer now (HTTP {status}, {said}); this says nothing \
             about the log's integrity: retry later"
        ),
        _ => anyhow::anyhow!("{what} failed (HTTP {status}, {said})"),
    }
}

/// The store for a command run with Airlock stopped (`airlock audit COMMAND`): an embedded
/// store a running Airlock holds is reported as in use.
pub(super) fn stopped_store(
    config: &Config,
    command: &str,
) -> Result<std::sync::Arc<dyn airlock::store::Store>> {
    use airlock::store::{Backend, StoreError};
    let path = &config.store.path;
    if config.store.backend != Backend::Postgres && !path.exists() {
        bail!(
            "there is no store at {} ({})",
            path.display(),
            config.home.describe()
        );
    }
    airlock::store::open_configured(
        config.store.backend,
        path,
        config.store.url.as_ref().map(|u| u.expose()),
        std::time::Duration::ZERO,
    )
    .map_err(|e| match e {
        StoreError::Locked(p) => anyhow::anyhow!(
            "the store at {p} is in use by a running Airlock: stop it, then run `airlock audit \
             {command}` again"
        ),
        e => anyhow::anyhow!("opening the store at {}: {e}", path.display()),
    })
}

/// The instances lock, taken exclusively for `command`'s whole run (the guard): every `serve`
/// on a shared database holds it shared for as long as it runs, even while its change
/// listener reconnects, so this fails at once while any instance runs, and no `serve` starts
/// until the guard is dropped (one that tries refuses, saying so). Then, as a second line, no
/// session may be listening for changes (an instance of a build before the lock). A store of
/// one instance's own (embedded) is already locked by the open.
pub(super) fn alone_on_the_database(
    store: &dyn airlock::store::Store,
    command: &str,
) -> Result<airlock::store::Turn> {
    let turn = store
        .try_exclusive_instances()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "other Airlock instances are running on this database (they hold its instances \
                 lock): stop every instance, then run `airlock audit {command}` again"
            )
        })?;
    if let Some(others) = store.other_instances() {
        let others = others.map_err(|e| anyhow::anyhow!("{e}"))?;
        if others > 0 {
            bail!(
                "{others} other Airlock process(es) are connected to the database: stop every \
                 instance, then run `airlock audit {command}` again"
            );
        }
    }
    Ok(turn)
}

/// The configured checkpoint settings.
pub(super) fn audit_options(config: &Config) -> airlock::audit::AuditOptions {
    airlock::audit::AuditOptions {
        checkpoint_every: config.audit.checkpoint_every,
        checkpoint_interval: config.audit.checkpoint_interval,
    }
}

/// `airlock audit accept-restore`: on the store itself, which a running Airlock holds locked.
fn accept_restore(config: &Config, declare: bool) -> Result<()> {
    let store = stopped_store(config, "accept-restore")?;
    // Instances still serving would go on sending while their claims are turned
    // outcome_unknown under them, and append behind the chain's head. On a shared database
    // every `serve` holds the instances lock (shared) for as long as it runs, even while its
    // change listener reconnects: taken exclusively here, at once or not at all, and kept for
    // the whole run, so that no `serve` starts meanwhile (one that tries refuses, saying so).
    let _instances = alone_on_the_database(store.as_ref(), "accept-restore")?;
    let key = config.audit_key_file();
    let opts = audit_options(config);
    let now_ms = airlock::gate::Clock::now_ms(&airlock::gate::SystemClock);
    let accepted = airlock::gate::restore::accept(
        store,
        &key,
        config.audit.origin.clone(),
        opts,
        declare,
        now_ms,
    )
    .map_err(|e| anyhow::anyhow!("accepting the restore: {e}"))?;
    let old = match (accepted.anchor_seq, &accepted.anchor_unreadable) {
        (Some(seq), _) => format!("seq {seq}"),
        (None, Some(why)) => format!("nothing readable ({why})"),
        (None, None) => "nothing (there was no anchor)".to_string(),
    };
    let end = match accepted.log_end_seq {
        Some(seq) => format!("ended at seq {seq}"),
        None => "was empty".to_string(),
    };
    let how = if accepted.declared { " (declared)" } else { "" };
    println!(
        "restore accepted{how}: the log {end}, the old anchor named {old}; recorded in the log \
         as restore_accepted, and {} now names the new checkpoint",
        airlock::audit::anchor_path_for(&key).display()
    );
    println!(
        "{} approved or executing review(s) are now outcome_unknown (not sent again \
         automatically); {} review(s) are marked restored (check upstream before approving or \
         retrying them); one-click links issued before now no longer work",
        accepted.reviews_outcome_unknown, accepted.reviews_marked
    );
    println!(
        "credentials rotated after the copy was taken (admin token, agent and reviewer tokens, \
         the audit key) came back with it: rotate them again"
    );
    Ok(())
}

/// Prints what a verification covered, which key signed its last checkpoint, and the lines no
/// signature covers.
fn verified(r: &airlock::audit::VerifyReport) {
    println!(
        "OK: {} entries (seq {}..={}), {} checkpoints verified",
        r.entries, r.first_seq, r.last_seq, r.checkpoints
    );
    if let (Some(seq), Some(key)) = (r.last_signed_seq, r.signed_by_hex()) {
        println!("the last checkpoint (seq {seq}) is signed with {key}");
    }
    if r.key_rotations > 0 {
        println!("{} key rotation(s) verified", r.key_rotations);
    }
    if let Some(seq) = r.archived_before {
        println!(
            "log begins at seq {seq}, earlier entries archived (`airlock audit archive`; verify \
             the archive files, or them and this export concatenated: docs/audit.md)"
        );
    }
    unsigned_tail(r);
}

/// Says which lines no signature covers: a chain can be recomputed over a rewritten tail, so
/// only a checkpoint (or `--checkpoint`/`--anchor` kept elsewhere) vouches for them.
fn unsigned_tail(r: &airlock::audit::VerifyReport) {
    let first_unsigned = r.last_signed_seq.map_or(r.first_seq, |s| s + 1);
    if r.entries > 0 && first_unsigned <= r.last_seq {
        eprintln!(
            "note: seq {first_unsigned}..={} follow the last checkpoint and are covered by no \
             signature: a rewritten tail would chain as well. Sign one first (`airlock audit \
             checkpoint`) and export again, or verify with --checkpoint or --anchor kept elsewhere.",
            r.last_seq
        );
    }
}

/// Export lines bound for a terminal: each with its hidden characters (C1 controls such as
/// U+009B, which acts as ESC [, bidi overrides: [`airlock::visible::hidden`]) as JSON `\uXXXX`
/// escapes, the same JSON value, so a request path an agent chose cannot act on the
/// operator's terminal. A file or a pipe gets the bytes as stored.
struct TerminalSafe<W: std::io::Write> {
    inner: W,
    /// The unfinished line: written once its newline arrives (a character may span writes).
    line: Vec<u8>,
}

impl<W: std::io::Write> TerminalSafe<W> {
    fn new(inner: W) -> Self {
        TerminalSafe {
            inner,
            line: Vec::new(),
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let text = airlock::visible::json_escaped(&String::from_utf8_lossy(bytes));
        self.inner.write_all(text.as_bytes())
    }
}

impl<W: std::io::Write> std::io::Write for TerminalSafe<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        if let Some(end) = self.line.iter().rposition(|&b| b == b'\n') {
            let rest = self.line.split_off(end + 1);
            let done = std::mem::replace(&mut self.line, rest);
            self.emit(&done)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            let done = std::mem::take(&mut self.line);
            self.emit(&done)?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::TerminalSafe;

    /// Security review: `audit export` wrote agent-chosen paths raw to the terminal; serde_json
    /// leaves C1 controls (U+009B) and bidi overrides (U+202E) as they are.
    #[test]
    fn export_to_a_terminal_escapes_hidden_characters() {
        let cases: &[(&str, &str)] = &[
            (
                "{\"path\":\"/repos/o/r\u{9B}2J\"}\n",
                "{\"path\":\"/repos/o/r\\u009b2J\"}\n",
            ),
            (
                "{\"path\":\"/x\u{202E}y\"}\n{\"seq\":2}\n",
                "{\"path\":\"/x\\u202ey\"}\n{\"seq\":2}\n",
            ),
            ("{\"path\":\"/plain é\"}\n", "{\"path\":\"/plain é\"}\n"),
        ];
        for (stored, shown) in cases {
            let mut out = Vec::new();
            {
                let mut w = TerminalSafe::new(&mut out);
                // Split mid-character: a write need not end on a character's boundary.
                let bytes = stored.as_bytes();
                for chunk in bytes.chunks(3) {
                    w.write_all(chunk).expect("write");
                }
                w.flush().expect("flush");
            }
            assert_eq!(String::from_utf8_lossy(&out), *shown, "{stored:?}");
            for (a, b) in stored.lines().zip(shown.lines()) {
                let a: serde_json::Value = serde_json::from_str(a).expect("json");
                let b: serde_json::Value = serde_json::from_str(b).expect("json");
                assert_eq!(a, b, "the same JSON value");
            }
        }
    }
}
