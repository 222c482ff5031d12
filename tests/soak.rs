//! Bounded soak (issue 7), not part of CI: `scripts/soak.sh [SECONDS]` runs it in release mode.
//! A real `airlock serve` takes mixed traffic for AIRLOCK_SOAK_SECS (default 180): agents doing
//! reads, streamed downloads and held deletes, a reviewer approving and rejecting. Every 10 s it
//! prints the server's RSS and open file descriptors; at the end it checks that every gated call
//! ran at most once and that descriptors went back to their idle level (no leak).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::process::{write_config, Serve};
use support::FakeUpstream;

fn proc_stat(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    streamed: AtomicU64,
    held: AtomicU64,
    decided: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: run with scripts/soak.sh"]
async fn soak() {
    support::init();
    let secs: u64 = std::env::var("AIRLOCK_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, store, ca) = write_config(
        dir.path(),
        "airlock.toml",
        "redb",
        &up,
        &["api.github.com"],
        &std::env::var("AIRLOCK_SOAK_EXTRA").unwrap_or_default(),
    );
    let s = Arc::new(Serve::spawn(&cfg, &store, &ca, &dir.path().join("log")));
    let pid = s.child.id();
    // Not waiting for an event: let the just-started server idle briefly before the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, fds0) = proc_stat(pid);
    println!("soak: {secs}s; idle at start: RSS {rss0} KiB, {fds0} fds");

    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    for n in 0..32 {
        let (s, stop, c) = (s.clone(), stop.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let client = s.client();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = if n % 8 == 0 && i.is_multiple_of(10) {
                    let r = client
                        .delete(format!("https://api.github.com/repos/soak/r{n}-{i}"))
                        .send()
                        .await;
                    match &r {
                        Ok(r) if r.status() == 423 => {
                            c.held.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("a delete was not held: {other:?}"),
                    }
                    r
                } else if n % 8 == 1 {
                    let r = client
                        .get("https://api.github.com/bytes/1048576")
                        .send()
                        .await;
                    if let Ok(resp) = r {
                        let ok = resp.bytes().await.is_ok_and(|b| b.len() == 1 << 20);
                        assert!(ok, "streamed body complete");
                        c.streamed.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                } else {
                    let r = client
                        .get(format!("https://api.github.com/repos/soak/r{n}"))
                        .send()
                        .await;
                    if r.as_ref().is_ok_and(|r| r.status() == 200) {
                        c.reads.fetch_add(1, Ordering::Relaxed);
                    }
                    r
                };
                let resp = r.expect("answered");
                let _ = resp.bytes().await;
            }
        }));
    }
    {
        let (s, stop, c) = (s.clone(), stop.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (_, list) = s.admin("GET", "/v1/reviews?state=pending", None).await;
                for r in list["reviews"].as_array().cloned().unwrap_or_default() {
                    let id = r["reviewId"].as_str().unwrap_or_default().to_string();
                    let action = if id.ends_with(['0', '1', '2', '3', '4', '5', '6', '7']) {
                        "approve"
                    } else {
                        "reject"
                    };
                    let (code, _) = s
                        .admin("POST", &format!("/v1/reviews/{id}/{action}"), None)
                        .await;
                    assert!(code == 200 || code == 409, "{code}");
                    c.decided.fetch_add(1, Ordering::Relaxed);
                }
                // Pacing: the reviewer looks at the queue five times a second.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }

    let start = Instant::now();
    let mut peak_rss = rss0;
    while start.elapsed() < Duration::from_secs(secs) {
        // The sampling interval: the soak's point is letting time pass under load.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (rss, fds) = proc_stat(pid);
        peak_rss = peak_rss.max(rss);
        println!(
            "soak t={:>4}s RSS {rss:>7} KiB  fds {fds:>4}  reads {:>8} streamed(1 MiB) {:>6} held {:>5} decided {:>5}",
            start.elapsed().as_secs(),
            c.reads.load(Ordering::Relaxed),
            c.streamed.load(Ordering::Relaxed),
            c.held.load(Ordering::Relaxed),
            c.decided.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("task");
    }
    // Idle: keep-alive connections from the clients are gone once the clients are dropped.
    // Wait for the descriptors to come back near idle (times out, naming the count, on a leak).
    let (rss1, fds1) = support::eventually("descriptors back near idle", support::WAIT, || async {
        let (rss, fds) = proc_stat(pid);
        if fds <= fds0 + 8 {
            Ok((rss, fds))
        } else {
            Err(format!("{fds} fds now, {fds0} at start"))
        }
    })
    .await;
    println!(
        "soak end: RSS {rss1} KiB (start {rss0}, peak {peak_rss}), fds {fds1} (start {fds0}); {} reads, {} streamed MiB, {} held, {} decided",
        c.reads.load(Ordering::Relaxed),
        c.streamed.load(Ordering::Relaxed),
        c.held.load(Ordering::Relaxed),
        c.decided.load(Ordering::Relaxed),
    );

    let mut sent: HashMap<String, usize> = HashMap::new();
    for r in up.requests() {
        if r.method == "DELETE" {
            *sent.entry(r.path_and_query).or_insert(0) += 1;
        }
    }
    assert!(sent.values().all(|n| *n == 1), "no gated call ran twice");
    assert!(
        fds1 <= fds0 + 8,
        "descriptors back near idle: {fds1} now, {fds0} at start"
    );
    if let Ok(s) = Arc::try_unwrap(s) {
        s.stop();
    }
}
