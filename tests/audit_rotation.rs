//! `airlock audit rotate-key` end to end: on a real redb store through the CLI binary, then
//! `serve` with the new key, exports verified across the rotation with the old key, both keys
//! or (after the handoff) the new key alone, a checkpoint forged with the retired key caught,
//! a retired key file refused, a rotation cut short finished by `serve`; and on PostgreSQL an
//! instance still holding the old key locked out of signing.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::signature::Ed25519KeyPair;
use sha2::{Digest, Sha256};
use support::path_str;
use support::process::cli;

fn entries(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// `airlock audit verify FILE` with every key given and `extra`: (success, stdout + stderr).
fn verify(cfg: &Path, file: &Path, keys: &[&str], extra: &[&str]) -> (bool, String) {
    let file = path_str(file);
    let mut args = vec!["audit", "verify", file.as_str()];
    for k in keys {
        args.extend(["--pubkey", k]);
    }
    args.extend(extra);
    let (ok, out, err) = cli(cfg, &args);
    (ok, format!("{out}{err}"))
}

/// `airlock audit export` to `dir/name`; returns its text.
fn export(cfg: &Path, dir: &Path, name: &str, since: u64) -> (PathBuf, String) {
    let (ok, out, err) = cli(cfg, &["audit", "export", "--since", &since.to_string()]);
    assert!(ok, "{err}");
    let file = dir.join(name);
    std::fs::write(&file, &out).expect("write export");
    (file, out)
}

fn pubkey(cfg: &Path) -> String {
    let (ok, out, err) = cli(cfg, &["audit", "pubkey"]);
    assert!(ok, "{err}");
    out.trim().to_string()
}

/// The Ed25519 key pair in a PEM key file.
fn key_pair(pem: &[u8]) -> Ed25519KeyPair {
    let text = std::str::from_utf8(pem).expect("pem");
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).expect("key")
}

/// `text` with a checkpoint signed by `key` chained after its last line.
fn with_forged_checkpoint(text: &str, key: &Ed25519KeyPair, origin: &str) -> String {
    let last = text.lines().last().expect("a line");
    let seq = serde_json::from_str::<serde_json::Value>(last).expect("json")["seq"]
        .as_u64()
        .expect("seq")
        + 1;
    let head = hex::encode(Sha256::digest(last.as_bytes()));
    let sig = key.sign(airlock::audit::checkpoint_signing_text(origin, seq, &head).as_bytes());
    let forged = serde_json::json!({
        "head": head, "kind": "checkpoint", "origin": origin, "prev": head, "seq": seq,
        "sig": base64::engine::general_purpose::STANDARD.encode(sig.as_ref()), "size": seq,
        "ts": "2030-01-01T00:00:00.000Z",
    });
    let line = String::from_utf8(airlock::audit::canonical_bytes(&forged)).expect("utf8");
    format!("{text}{line}\n")
}

/// A config on a redb store in `dir` (key `certs/audit-key.pem`) and a log of `n` entries.
fn redb_log(dir: &Path, n: u64) -> (PathBuf, PathBuf) {
    use airlock::audit::{AuditGap, AuditLog, AuditOptions, Event};
    let (data, certs) = (dir.join("data"), dir.join("certs"));
    let cfg = dir.join("airlock.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\npath = {:?}\n[tls]\nca_dir = {:?}\n[audit]\ncheckpoint_every = 4\n",
            path_str(&data),
            path_str(&certs)
        ),
    )
    .expect("config");
    let key = certs.join("audit-key.pem");
    let opts = AuditOptions {
        checkpoint_every: 4,
        ..AuditOptions::default()
    };
    let store = airlock::store::open(airlock::store::Backend::Redb, &data).expect("store");
    let log = AuditLog::open(store, &key, "airlock".into(), opts).expect("log");
    for n in 0..n {
        let gap = AuditGap {
            skipped_allow_records: n,
            skipped_block_records: 0,
            reason: "test",
            agent: None,
        };
        log.append(Event::AuditGap(gap)).expect("append");
    }
    (cfg, key)
}

#[test]
fn rotate_key_through_the_cli_and_verify_across_the_rotation() {
    let dir = tempfile::tempdir().expect("dir");
    let (cfg, key) = redb_log(dir.path(), 6);
    let old = pubkey(&cfg);
    let old_key = key_pair(&std::fs::read(&key).expect("key"));

    // While the store is held (as by a running Airlock), nothing is rotated.
    let data = dir.path().join("data");
    let held = airlock::store::open(airlock::store::Backend::Redb, &data).expect("store");
    let (ok, _, err) = cli(&cfg, &["audit", "rotate-key"]);
    assert!(!ok);
    assert!(err.contains("in use by a running Airlock"), "{err}");
    assert!(err.contains("airlock audit rotate-key"), "{err}");
    drop(held);
    assert!(!airlock::audit::next_key_path_for(&key).exists());

    let (ok, out, err) = cli(&cfg, &["audit", "rotate-key"]);
    assert!(ok, "{out}{err}");
    let new = pubkey(&cfg);
    assert_ne!(new, old);
    assert!(out.contains(&format!("old public key: {old}")), "{out}");
    assert!(out.contains(&format!("new public key: {new}")), "{out}");
    assert!(
        out.contains("somewhere the Airlock host cannot write"),
        "{out}"
    );
    assert!(!out.contains("PostgreSQL"), "{out}");
    let (ok, out, err) = cli(&cfg, &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 key rotation(s) verified"), "{out}");
    assert!(out.contains(&format!("signed with {new}")), "{out}");

    // Offline: both keys, the current one last; neither key alone from the start (the old key
    // alone would vouch for a log that ends on it, which whoever leaked it could write).
    let (full, text) = export(&cfg, dir.path(), "full.jsonl", 0);
    let all = entries(&text);
    let rotation = all
        .iter()
        .find(|e| e["kind"] == "key_rotated")
        .expect("key_rotated entry");
    assert_eq!(rotation["old_pubkey"], old.as_str());
    assert_eq!(rotation["new_pubkey"], new.as_str());
    let at = rotation["seq"].as_u64().expect("seq");
    let (ok, out) = verify(&cfg, &full, &[&old, &new], &[]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("signed with {new}")), "{out}");
    let (ok, out) = verify(&cfg, &full, &[&old], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("not with the current key"), "{out}");
    // Review of session 22: a log cut before the rotation and continued with a checkpoint the
    // old key signs verified with both keys given, so a leaked old key could still rewrite it.
    let cut: String = text
        .lines()
        .take_while(|l| !l.contains("\"key_rotated\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let rewritten = dir.path().join("rewritten.jsonl");
    std::fs::write(
        &rewritten,
        with_forged_checkpoint(&cut, &old_key, "airlock"),
    )
    .expect("write");
    let (ok, out) = verify(&cfg, &rewritten, &[&old, &new], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("not with the current key"), "{out}");
    let (ok, out) = verify(&cfg, &full, &[&new], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("does not verify with the given public key"),
        "{out}"
    );
    // After the handoff checkpoint (the old key's, right after the rotation) the new key alone.
    let since = (at + 2).to_string();
    let (tail, _) = export(&cfg, dir.path(), "tail.jsonl", at + 2);
    let (ok, out) = verify(&cfg, &tail, &[&new], &["--since", &since]);
    assert!(ok, "{out}");

    // A checkpoint the retired key signs after the rotation is caught, whatever keys are given.
    let forged = dir.path().join("forged.jsonl");
    std::fs::write(&forged, with_forged_checkpoint(&text, &old_key, "airlock")).expect("write");
    for keys in [vec![old.as_str()], vec![old.as_str(), new.as_str()]] {
        let (ok, out) = verify(&cfg, &forged, &keys, &[]);
        assert!(!ok, "{out}");
        assert!(
            out.contains("checkpoint signed with a retired key"),
            "{out}"
        );
    }
}

/// Runs `airlock serve` expecting it to refuse to start; its stderr.
fn serve_refused(cfg: &Path) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(cfg)
        .arg("serve")
        .env("AIRLOCK_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started with a retired key");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_signs_with_the_new_key_refuses_the_retired_one_and_finishes_a_cut_rotation() {
    use support::process::{write_config, Serve};
    support::init();
    let up = support::FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("airlock.log");
    let (cfg, store, ca) = write_config(
        dir.path(),
        "airlock.toml",
        "redb",
        &up,
        &["api.github.com"],
        "[audit]\ncheckpoint_every = 4\n",
    );
    Serve::spawn(&cfg, &store, &ca, &log).stop();
    let key = ca.join("audit-key.pem");
    let next = airlock::audit::next_key_path_for(&key);
    let old = pubkey(&cfg);
    let old_file = std::fs::read(&key).expect("key");
    let (ok, out, err) = cli(&cfg, &["audit", "rotate-key"]);
    assert!(ok, "{out}{err}");
    let new = pubkey(&cfg);

    // serve runs with the new key; what it signs verifies with both keys given, the new last.
    Serve::spawn(&cfg, &store, &ca, &log).stop();
    let (full, _) = export(&cfg, dir.path(), "full.jsonl", 0);
    let (ok, out) = verify(&cfg, &full, &[&old, &new], &[]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("signed with {new}")), "{out}");

    // The retired key back in the key file: refused, naming the rotation and the key in force.
    let new_file = std::fs::read(&key).expect("key");
    std::fs::write(&key, &old_file).expect("put the old key back");
    let err = serve_refused(&cfg);
    assert!(err.contains("retired by the key rotation at seq"), "{err}");
    assert!(err.contains("never signs again"), "{err}");
    assert!(err.contains(&format!("public key {new}")), "{err}");

    // As a rotation cut short before its rename leaves it: serve puts the new key in place.
    std::fs::write(&next, &new_file).expect("write .next");
    set_private(&next);
    Serve::spawn(&cfg, &store, &ca, &log).stop();
    assert_eq!(std::fs::read(&key).expect("key"), new_file);
    assert!(!next.exists());
    let (ok, out, err) = cli(&cfg, &["audit", "verify"]);
    assert!(ok, "{out}{err}");
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Two instances on one database: one runs with the old key while `rotate-key` runs with a copy
/// of it elsewhere. The running one still stores plain entries (the new key's checkpoints sign
/// them), but no checkpoint, nor the entries that would land with one.
#[test]
fn on_postgres_an_instance_still_holding_the_old_key_signs_nothing() {
    use airlock::audit::{AuditError, AuditGap, AuditLog, AuditOptions, Event};
    let Some(cluster) = support::postgres::Cluster::shared() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let url = cluster.fresh_database();
    let dir = tempfile::tempdir().expect("dir");
    let (key_a, certs_b) = (dir.path().join("a/audit-key.pem"), dir.path().join("b"));
    let opts = AuditOptions {
        checkpoint_every: 3,
        ..AuditOptions::default()
    };
    let store = airlock::store::open_postgres(&url).expect("store");
    let running = AuditLog::open(store, &key_a, "airlock".into(), opts).expect("log");
    let gap = |n| {
        Event::AuditGap(AuditGap {
            skipped_allow_records: n,
            skipped_block_records: 0,
            reason: "test",
            agent: None,
        })
    };
    running.append(gap(0)).expect("append");
    std::fs::create_dir_all(&certs_b).expect("dir");
    std::fs::copy(&key_a, certs_b.join("audit-key.pem")).expect("copy key");
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\npath = {:?}\n[tls]\nca_dir = {:?}\n[audit]\ncheckpoint_every = 3\n",
            path_str(&dir.path().join("b-data")),
            path_str(&certs_b)
        ),
    )
    .expect("config");
    let (ok, out, err) = cli(&cfg, &["audit", "rotate-key"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Restart every instance with the new key file"),
        "{out}"
    );
    let new = pubkey(&cfg);

    running.append(gap(1)).expect("a plain entry lands");
    running.append(gap(2)).expect("a plain entry lands");
    let before = running.entries(0).expect("entries").len();
    let err = running.append(gap(3)).expect_err("completes a checkpoint");
    assert!(
        matches!(&err, AuditError::KeyRotated { current, .. } if *current == new),
        "{err}"
    );
    assert!(matches!(
        running.checkpoint(),
        Err(AuditError::KeyRotated { .. })
    ));
    assert_eq!(running.entries(0).expect("entries").len(), before);
    let (ok, out, err) = cli(&cfg, &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 key rotation(s) verified"), "{out}");
}
