//! `airlock audit archive` end to end on a real redb store through the CLI binary: the entries
//! before a checkpoint go to a verified file and leave the store with their index keys; the
//! shortened log verifies live and exported (alone, and after the archive file); tampering with
//! either is caught; a run cut short after the export, or after recording the archive, is
//! finished by running it again; no checkpoint at or before the seq, an existing file, a cut
//! past an open review's entries are refused.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock::audit::{AuditLog, AuditOptions, Event, GateKind, Transition};
use airlock::store::{Backend, Store, Tree};
use support::path_str;
use support::process::cli;

const EVERY: u64 = 4;

fn opts() -> AuditOptions {
    AuditOptions {
        checkpoint_every: EVERY,
        ..AuditOptions::default()
    }
}

/// A `review` entry about review `id` (filed under the by-review index).
fn transition(id: &str) -> Event {
    Event::Review(Box::new(Transition {
        review_id: id.into(),
        decision_id: format!("dec_{id}"),
        from: "pending",
        to: "rejected",
        gate: GateKind::Hard,
        tool: None,
        service: None,
        agent: None,
        method: "DELETE".into(),
        host: "api.github.com".into(),
        path: airlock::audit::AuditPath::new("/repos/o/r"),
        approval_by: None,
        approvals: None,
        required: None,
        expires_at: None,
        retry_by: None,
        attempt: None,
        by: None,
        comment: None,
        approved_by: None,
        admin_token: None,
        execution: None,
    }))
}

struct Setup {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    key: PathBuf,
}

impl Setup {
    /// A config on a redb store and a log of `n` review entries (each about review
    /// `rev_<i>`), a checkpoint after every 4 entries: seq 4, 9, 14, 19, 24 ... are checkpoints.
    fn new(n: usize) -> Setup {
        let dir = tempfile::tempdir().expect("dir");
        let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
        let cfg = dir.path().join("airlock.toml");
        std::fs::write(
            &cfg,
            format!(
                "[store]\npath = {:?}\n[tls]\nca_dir = {:?}\n[audit]\ncheckpoint_every = {EVERY}\n",
                path_str(&data),
                path_str(&certs)
            ),
        )
        .expect("config");
        let s = Setup {
            key: certs.join("audit-key.pem"),
            dir,
            cfg,
        };
        let log = s.log();
        for i in 0..n {
            log.append(transition(&format!("rev_{i}"))).expect("append");
        }
        log.checkpoint().expect("checkpoint");
        s
    }

    fn store(&self) -> Arc<dyn Store> {
        airlock::store::open(Backend::Redb, &self.dir.path().join("data")).expect("store")
    }

    fn log(&self) -> AuditLog {
        AuditLog::open(self.store(), &self.key, "airlock".into(), opts()).expect("log")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cli(&self, args: &[&str]) -> (bool, String) {
        let (ok, out, err) = cli(&self.cfg, args);
        (ok, format!("{out}{err}"))
    }

    fn archive(&self, before: u64, out: &Path) -> (bool, String) {
        let out = path_str(out);
        self.cli(&[
            "audit",
            "archive",
            "--before",
            &before.to_string(),
            "--out",
            &out,
        ])
    }

    fn pubkey(&self) -> String {
        let (ok, out) = self.cli(&["audit", "pubkey"]);
        assert!(ok, "{out}");
        out.trim().to_string()
    }

    fn verify_file(&self, file: &Path) -> (bool, String) {
        let key = self.pubkey();
        self.cli(&["audit", "verify", &path_str(file), "--pubkey", &key])
    }

    fn export(&self, name: &str) -> PathBuf {
        let file = self.path(name);
        let (ok, out) = self.cli(&["audit", "export", "--out", &path_str(&file)]);
        assert!(ok, "{out}");
        file
    }

    /// (audit entries, by-review index keys) in the store, and the first seq stored.
    fn counts(&self) -> (usize, usize, u64) {
        let store = self.store();
        let audit = store.scan(Tree::Audit).expect("scan");
        let index = store.scan(Tree::Index).expect("scan");
        let by_review = index
            .iter()
            .filter(|(k, _)| k.first() == Some(&b'a'))
            .count();
        let first = audit
            .first()
            .map(|(k, _)| u64::from_be_bytes(k.as_slice().try_into().expect("key")))
            .expect("an entry");
        (audit.len(), by_review, first)
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn archive_then_verify_live_exported_and_concatenated() {
    let s = Setup::new(20);
    let (entries, indexed, first) = s.counts();
    assert_eq!((first, indexed), (0, 20));
    let before = s.export("before.jsonl");

    let out = s.path("archive-1.jsonl");
    let (ok, said) = s.archive(11, &out);
    assert!(ok, "{said}");
    // The newest checkpoint at or before seq 11 is seq 9: 0..=9 in the file, 0..9 removed.
    assert!(said.contains("archived seq 0..=9"), "{said}");
    let archive = lines(&out);
    assert_eq!(archive.len(), 10);
    assert_eq!(
        archive,
        lines(&before)[..10].to_vec(),
        "as `audit export` writes them"
    );

    let (after_entries, after_indexed, first) = s.counts();
    assert_eq!(first, 9, "the log begins at the cut");
    // 9 entries gone, the `archived` entry (and a checkpoint signing it) added.
    assert_eq!(after_entries, entries - 9 + 2);
    // The removed entries' index keys went with them (seq 9 is a checkpoint, no review).
    assert_eq!(
        after_indexed,
        indexed - 8,
        "index keys of archived entries are gone"
    );

    let (ok, said) = s.cli(&["audit", "verify"]);
    assert!(ok, "{said}");
    assert!(said.contains("log begins at seq 9"), "{said}");

    let (ok, said) = s.verify_file(&out);
    assert!(ok, "the archive verifies alone: {said}");

    let export = s.export("after.jsonl");
    let (ok, said) = s.verify_file(&export);
    assert!(ok, "{said}");
    assert!(
        said.contains("log begins at seq 9, earlier entries archived"),
        "{said}"
    );
    let exported = lines(&export);
    assert_eq!(
        exported[0], archive[9],
        "the cut is both files' boundary line"
    );
    let archived: serde_json::Value = exported
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|v| v["kind"] == "archived")
        .expect("an archived entry");
    assert_eq!(archived["cut_seq"], 9);
    assert_eq!(archived["removed"], 9);
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(&out).expect("read"),
    ));
    assert_eq!(archived["file_sha256"], sha.as_str());

    // The archive, then the export without its first line (the cut, already the archive's
    // last): one chain from seq 0.
    let whole = s.path("whole.jsonl");
    let text = [archive.as_slice(), &exported[1..]].concat().join("\n") + "\n";
    std::fs::write(&whole, text).expect("write");
    let (ok, said) = s.verify_file(&whole);
    assert!(ok, "{said}");

    // A second archive begins at the first one's cut.
    let out2 = s.path("archive-2.jsonl");
    let (ok, said) = s.archive(20, &out2);
    assert!(ok, "{said}");
    assert!(said.contains("archived seq 9..=19"), "{said}");
    assert_eq!(lines(&out2)[0], archive[9]);
    let (ok, said) = s.cli(&["audit", "verify"]);
    assert!(ok && said.contains("log begins at seq 19"), "{said}");
    // It begins at the first cut, before the entry recording that archive: --since says so.
    let (ok, said) = s.verify_file(&out2);
    assert!(!ok && said.contains("starts at seq 9"), "{said}");
    let key = s.pubkey();
    let (ok, said) = s.cli(&[
        "audit",
        "verify",
        &path_str(&out2),
        "--pubkey",
        &key,
        "--since",
        "9",
    ]);
    assert!(ok, "{said}");
}

#[test]
fn tampering_with_the_archive_or_the_remaining_log_is_detected() {
    let s = Setup::new(20);
    let out = s.path("archive.jsonl");
    let (ok, said) = s.archive(11, &out);
    assert!(ok, "{said}");

    // An archived entry edited.
    let mut archive = lines(&out);
    archive[3] = archive[3].replace("api.github.com", "api.github.org");
    let edited = s.path("edited.jsonl");
    std::fs::write(&edited, archive.join("\n") + "\n").expect("write");
    let (ok, said) = s.verify_file(&edited);
    assert!(!ok && said.contains("broken at seq 3"), "{said}");

    // An entry of the remaining log edited in the store.
    let store = s.store();
    let key = 12u64.to_be_bytes();
    let bytes = store.get(Tree::Audit, &key).expect("get").expect("seq 12");
    let text = String::from_utf8(bytes.clone())
        .expect("utf8")
        .replace("api.github.com", "api.github.org");
    let mut b = airlock::store::Batch::default();
    b.put(Tree::Audit, &key, text.as_bytes());
    store.apply(b).expect("tamper");
    drop(store);
    let (ok, said) = s.cli(&["audit", "verify"]);
    assert!(!ok && said.contains("seq 12"), "{said}");

    // Put it back; then delete the cut itself (the log would begin at seq 10).
    let store = s.store();
    let mut b = airlock::store::Batch::default();
    b.put(Tree::Audit, &key, &bytes);
    store.apply(b).expect("restore");
    let cut = store.get(Tree::Audit, &9u64.to_be_bytes()).expect("get");
    let mut b = airlock::store::Batch::default();
    b.delete(Tree::Audit, &9u64.to_be_bytes());
    store.apply(b).expect("delete");
    drop(store);
    let (ok, said) = s.cli(&["audit", "verify"]);
    assert!(
        !ok && said.contains("entries after the cut were deleted"),
        "{said}"
    );

    // The cut back, the record of where the log begins deleted: it must begin at 0 again.
    let store = s.store();
    let mut b = airlock::store::Batch::default();
    b.put(Tree::Audit, &9u64.to_be_bytes(), &cut.expect("cut"))
        .delete(Tree::Meta, airlock::audit::LOG_START_META_KEY);
    store.apply(b).expect("delete");
    drop(store);
    let (ok, said) = s.cli(&["audit", "verify"]);
    assert!(!ok && said.contains("not 0"), "{said}");
}

#[test]
fn a_run_cut_short_after_the_export_or_the_record_is_finished_by_running_again() {
    let s = Setup::new(20);
    let out = s.path("archive.jsonl");
    // Stopped after the export: the file is there, nothing in the store changed.
    {
        let log = s.log();
        let plan = log.plan_archive(11, None).expect("plan");
        log.write_archive(&plan, &out).expect("write");
    }
    assert_eq!(s.counts().2, 0);
    let (ok, said) = s.cli(&["audit", "verify"]);
    assert!(ok, "{said}");
    let (ok, said) = s.archive(11, &out);
    assert!(ok, "{said}");
    assert!(said.contains("already there"), "{said}");
    assert_eq!(s.counts().2, 9);

    // Stopped after recording the next archive, before any deletion.
    let out2 = s.path("archive-2.jsonl");
    {
        let log = s.log();
        let plan = log.plan_archive(20, None).expect("plan");
        let file = log.write_archive(&plan, &out2).expect("write");
        log.record_archive(&plan, &file, "test".into())
            .expect("record");
        assert_eq!(log.remove_archived(Some(0)).expect("remove"), 0);
    }
    assert_eq!(s.counts().2, 9, "nothing removed yet");
    let (ok, said) = s.cli(&["audit", "verify"]);
    assert!(
        ok,
        "a log whose archive is unfinished still verifies: {said}"
    );
    let (ok, said) = s.archive(20, &out2);
    assert!(ok, "{said}");
    assert!(said.contains("finished an archive cut short"), "{said}");
    assert_eq!(s.counts().2, 19);
    let (ok, said) = s.cli(&["audit", "verify"]);
    assert!(ok && said.contains("log begins at seq 19"), "{said}");
    // It begins at the first cut, before the entry recording that archive: --since says so.
    let (ok, said) = s.verify_file(&out2);
    assert!(!ok && said.contains("starts at seq 9"), "{said}");
    let key = s.pubkey();
    let (ok, said) = s.cli(&[
        "audit",
        "verify",
        &path_str(&out2),
        "--pubkey",
        &key,
        "--since",
        "9",
    ]);
    assert!(ok, "{said}");
}

#[test]
fn refused_without_a_checkpoint_before_the_seq_or_over_an_existing_file() {
    let s = Setup::new(20);
    let out = s.path("archive.jsonl");
    let (ok, said) = s.archive(3, &out);
    assert!(
        !ok && said.contains("no checkpoint at or before seq 3"),
        "{said}"
    );
    assert!(!out.exists());

    std::fs::write(&out, "an earlier archive\n").expect("write");
    let (ok, said) = s.archive(11, &out);
    assert!(!ok && said.contains("exists"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "an earlier archive\n"
    );
    assert_eq!(s.counts().2, 0, "nothing removed");
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left");

    // Nothing before the log's start: the cut at 9 is already where it begins.
    let fresh = s.path("again.jsonl");
    std::fs::remove_file(&out).expect("rm");
    let (ok, said) = s.archive(11, &out);
    assert!(ok, "{said}");
    let (ok, said) = s.archive(11, &fresh);
    assert!(
        !ok && said.contains("no checkpoint at or before seq 11"),
        "{said}"
    );
}

/// The same on PostgreSQL (through the library, as the CLI calls it): the entries and their
/// index keys leave the database, the log verifies from the cut, reopens there, and the file
/// verifies with the export after it.
#[test]
fn on_postgres_the_archive_leaves_a_log_that_verifies_from_the_cut() {
    let Some(cluster) = support::postgres::Cluster::shared() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let url = cluster.fresh_database();
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("audit-key.pem");
    let store = airlock::store::open_postgres(&url).expect("store");
    let log = AuditLog::open(store.clone(), &key, "airlock".into(), opts()).expect("log");
    for i in 0..20 {
        log.append(transition(&format!("rev_{i}"))).expect("append");
    }
    log.checkpoint().expect("checkpoint");
    let by_review = |store: &Arc<dyn Store>| {
        let index = store.scan(Tree::Index).expect("scan");
        index
            .iter()
            .filter(|(k, _)| k.first() == Some(&b'a'))
            .count()
    };
    assert_eq!(by_review(&store), 20);

    let out = dir.path().join("archive.jsonl");
    let outcome = airlock::gate::archive::run(store.as_ref(), &log, 11, &out, "test".into())
        .expect("archive");
    assert!(
        matches!(
            outcome,
            airlock::gate::archive::Outcome::Archived { removed: 9, .. }
        ),
        "{outcome:?}"
    );
    assert_eq!(log.first_stored_seq().expect("first"), Some(9));
    assert_eq!(by_review(&store), 12);
    let report = log.verify_live().expect("verifies");
    assert_eq!(report.archived_before, Some(9));

    let mut export = Vec::new();
    log.export(0, &mut export).expect("export");
    let pk = log.public_key_hex();
    drop(log);
    let log = AuditLog::open(store, &key, "airlock".into(), opts()).expect("reopens at the cut");
    log.verify_live().expect("verifies after reopening");

    let r = airlock::audit::verify_lines(export.as_slice(), &pk).expect("export verifies");
    assert_eq!((r.first_seq, r.archived_before), (9, Some(9)));
    let archive = std::fs::read_to_string(&out).expect("read");
    let export = String::from_utf8(export).expect("utf8");
    let rest: Vec<&str> = export.lines().skip(1).collect();
    let whole = format!("{archive}{}\n", rest.join("\n"));
    let r = airlock::audit::verify_lines(whole.as_bytes(), &pk).expect("concatenated verifies");
    assert_eq!(r.first_seq, 0);
}

/// Review of session 24: live verify took `audit:log-start` on trust, so anyone who could
/// write the store could point it at any stored checkpoint, delete every entry before it, and
/// verify would pass, saying the earlier entries were archived. A start is now taken only if
/// a signed `archived` entry in the log names that cut.
#[test]
fn a_log_start_no_signed_archive_names_does_not_verify() {
    use sha2::Digest;
    let s = Setup::new(20);
    let store = s.store();
    let cut = store
        .get(Tree::Audit, &9u64.to_be_bytes())
        .expect("get")
        .expect("checkpoint at seq 9");
    let start = serde_json::json!({"seq": 9, "hash": hex::encode(sha2::Sha256::digest(&cut))});
    let mut b = airlock::store::Batch::default();
    b.put(
        Tree::Meta,
        airlock::audit::LOG_START_META_KEY,
        start.to_string().as_bytes(),
    );
    for seq in 0..9u64 {
        b.delete(Tree::Audit, &seq.to_be_bytes());
    }
    store.apply(b).expect("tamper");
    drop(store);
    let (ok, said) = s.cli(&["audit", "verify"]);
    assert!(!ok && said.contains("no signed `archived` entry"), "{said}");
}
