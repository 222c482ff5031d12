//! kill -9 crash test for both backends: a child process writes 1,000 review-sized records
//! durably, reports READY, keeps writing, and is SIGKILLed at a random moment; after reopening,
//! all 1,000 are intact and every other record present is complete.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use airlock::store::{open, Backend, Tree};

const DIR_ENV: &str = "AIRLOCK_CRASH_DIR";
const BACKEND_ENV: &str = "AIRLOCK_CRASH_BACKEND";

fn record(i: u32, generation: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": format!("rev_{i:08}"),
        "state": "pending",
        "generation": generation,
        "request": {"method": "DELETE", "url": format!("https://api.github.com/repos/acme/repo{i}"), "body": "x".repeat(1200)},
    }))
    .expect("json")
}

/// The child: runs only when spawned by `crash_cycles` (env vars set).
#[test]
#[ignore]
fn crash_child() {
    let (Ok(dir), Ok(backend)) = (std::env::var(DIR_ENV), std::env::var(BACKEND_ENV)) else {
        return;
    };
    let backend: Backend = backend.parse().expect("backend");
    let s = open(backend, std::path::Path::new(&dir)).expect("open");
    for i in 0..1000u32 {
        let key = format!("rev_{i:08}");
        assert!(s
            .compare_and_swap(Tree::Reviews, key.as_bytes(), None, &record(i, 0))
            .expect("cas"));
    }
    println!("READY 1000");
    // Keep the store busy until killed: new records and CAS updates of extra ones.
    let mut i = 1000u32;
    loop {
        let key = format!("rev_{i:08}");
        let _ = s.compare_and_swap(Tree::Reviews, key.as_bytes(), None, &record(i, 0));
        let _ = s.compare_and_swap(
            Tree::Reviews,
            key.as_bytes(),
            Some(&record(i, 0)),
            &record(i, 1),
        );
        i += 1;
    }
}

fn crash_cycle(backend: Backend, dir: &std::path::Path, seed: u64) {
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(BACKEND_ENV, format!("{backend:?}").to_lowercase())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.contains("READY 1000") {
            ready = true;
            break;
        }
    }
    assert!(ready, "{backend:?}: child never became ready");
    std::thread::sleep(Duration::from_millis(5 + seed % 40));
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    let s = open(backend, dir).expect("reopen after kill -9");
    for i in 0..1000u32 {
        let key = format!("rev_{i:08}");
        let v = s.get(Tree::Reviews, key.as_bytes()).expect("get");
        assert_eq!(
            v.as_deref(),
            Some(&record(i, 0)[..]),
            "{backend:?}: record {i} lost or damaged"
        );
    }
    for (k, v) in s.scan(Tree::Reviews).expect("scan") {
        let parsed: serde_json::Value = serde_json::from_slice(&v).unwrap_or_else(|e| {
            panic!(
                "{backend:?}: torn record {}: {e}",
                String::from_utf8_lossy(&k)
            )
        });
        assert!(parsed["id"].is_string());
    }
}

#[test]
fn kill_dash_nine_loses_nothing() {
    for backend in [Backend::Redb, Backend::Sled] {
        for cycle in 0..3u64 {
            let dir = tempfile::tempdir().expect("tmp");
            crash_cycle(backend, dir.path(), cycle * 17 + 3);
        }
    }
}

/// Heavier evidence (run by hand): `cargo test --release --test store_crash -- --ignored many_kill_cycles --nocapture`
#[test]
#[ignore]
fn many_kill_cycles() {
    if std::env::var(DIR_ENV).is_ok() {
        return;
    }
    let cycles: u64 = std::env::var("AIRLOCK_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    for backend in [Backend::Redb, Backend::Sled] {
        let start = std::time::Instant::now();
        for cycle in 0..cycles {
            let dir = tempfile::tempdir().expect("tmp");
            crash_cycle(backend, dir.path(), cycle * 7919);
        }
        eprintln!(
            "{backend:?}: {cycles} kill -9 cycles, 0 losses, {:.1}s",
            start.elapsed().as_secs_f64()
        );
    }
}

/// Durable write cost per backend (run by hand; printed, not asserted):
/// `cargo test --release --test store_crash -- --ignored durable_op_timing --nocapture`
#[test]
#[ignore]
fn durable_op_timing() {
    if std::env::var(DIR_ENV).is_ok() {
        return;
    }
    for backend in [Backend::Redb, Backend::Sled] {
        let dir = tempfile::tempdir().expect("tmp");
        let s = open(backend, dir.path()).expect("open");
        let start = std::time::Instant::now();
        for i in 0..1000u32 {
            let key = format!("rev_{i:08}");
            assert!(s
                .compare_and_swap(Tree::Reviews, key.as_bytes(), None, &record(i, 0))
                .expect("cas"));
        }
        let inserts = start.elapsed();
        let start = std::time::Instant::now();
        for i in 0..1000u32 {
            let key = format!("rev_{i:08}");
            assert!(s
                .compare_and_swap(
                    Tree::Reviews,
                    key.as_bytes(),
                    Some(&record(i, 0)),
                    &record(i, 1)
                )
                .expect("cas"));
        }
        let updates = start.elapsed();
        let size: u64 = walk_size(dir.path());
        eprintln!(
            "{backend:?}: 1000 durable inserts {:.0} µs/op, 1000 durable CAS updates {:.0} µs/op, on disk {} KiB",
            inserts.as_micros() as f64 / 1000.0,
            updates.as_micros() as f64 / 1000.0,
            size / 1024
        );
    }
}

fn walk_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

const FULL_ENV: &str = "AIRLOCK_FULL_DISK_DIR";

/// Child of [`a_failed_write_heals_once_the_disk_has_room`]: a file-size limit (RLIMIT_FSIZE,
/// SIGXFSZ ignored, so writes fail with EFBIG as on a full disk) a little above the store's
/// size, writes until one fails, then the limit lifted: the next write must land, with no
/// restart, and every write that reported success must still be there.
#[test]
#[ignore]
fn full_disk_child() {
    let Ok(dir) = std::env::var(FULL_ENV) else {
        return;
    };
    let s = open(Backend::Redb, std::path::Path::new(&dir)).expect("open");
    let size = |d: &str| {
        std::fs::metadata(std::path::Path::new(d).join("airlock.redb"))
            .map(|m| m.len())
            .expect("size")
    };
    let set_fsize = |soft: u64| {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain setrlimit on this process with a valid struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) }, 0);
    };
    // SAFETY: ignoring SIGXFSZ: writes past the limit then fail with EFBIG instead of killing.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    set_fsize(size(&dir) + 256 * 1024);
    let mut stored = Vec::new();
    let mut failed = false;
    for i in 0..200u32 {
        let key = format!("rev_{i:08}");
        let value = vec![b'x'; 64 * 1024];
        match s.compare_and_swap(Tree::Reviews, key.as_bytes(), None, &value) {
            Ok(true) => stored.push(key),
            Ok(false) => panic!("{key} existed"),
            Err(e) => {
                println!("WRITE FAILED after {}: {e}", stored.len());
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the file-size limit never stopped a write");
    set_fsize(libc::RLIM_INFINITY);
    let mut healed = None;
    for attempt in 0..30 {
        match s.compare_and_swap(Tree::Reviews, b"rev_after", None, b"landed") {
            Ok(true) => {
                healed = Some(attempt);
                break;
            }
            other => println!("attempt {attempt}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(healed.is_some(), "writes never recovered without a restart");
    for key in &stored {
        assert!(
            s.get(Tree::Reviews, key.as_bytes()).expect("get").is_some(),
            "{key} was reported stored"
        );
    }
    println!("HEALED");
}

#[test]
fn a_failed_write_heals_once_the_disk_has_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "full_disk_child", "--ignored", "--nocapture"])
        .env(FULL_ENV, dir.path())
        .output()
        .expect("run child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("HEALED"),
        "child failed:\n{text}"
    );
}
