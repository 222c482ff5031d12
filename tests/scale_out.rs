//! Several `airlock serve` processes on one PostgreSQL database (issue 17): holds spread over
//! the instances, approvals raced across them (exactly one upstream call per review), wait-mode
//! hearing about a decision made on another instance, kill -9 of an instance mid-send (another
//! gives the send up as `outcome_unknown` once its lease lapses, and nothing is re-sent), and one
//! audit chain that verifies.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use support::process::{write_config, Serve};
use support::FakeUpstream;

const HOSTS: &[&str] = &["api.github.com"];

/// Holds `DELETE /repos/acme/{prefix}{i}` for i in 0..n, spread over `instances` in turn;
/// returns the review ids by path.
async fn hold_spread(instances: &[&Serve], prefix: &str, n: usize) -> HashMap<String, String> {
    let clients: Vec<reqwest::Client> = instances.iter().map(|s| s.client()).collect();
    stream::iter(0..n)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            let path = format!("/repos/acme/{prefix}{i}");
            async move {
                let resp = client
                    .delete(format!("https://api.github.com{path}"))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(resp.status(), 423, "{path} is held");
                let body: serde_json::Value = resp.json().await.expect("json");
                let id = body["reviewId"].as_str().expect("reviewId").to_string();
                (path, id)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// DELETE calls the upstream received, by path.
fn deletes_by_path(up: &FakeUpstream) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in up.requests() {
        if r.method == "DELETE" {
            *m.entry(r.path_and_query).or_insert(0) += 1;
        }
    }
    m
}

fn spawn(cfg: &Path, dir: &Path, n: usize) -> Serve {
    Serve::spawn(
        cfg,
        &dir.join("data"),
        &dir.join("certs"),
        &dir.join(format!("airlock-{n}.log")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_database_send_each_approved_call_once() {
    support::init();
    let Some(cluster) = support::postgres::Cluster::shared() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let url = cluster.fresh_database();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // One config for every instance: the CA, the audit key and the data directory's key files
    // are shared (as the README's "Scaling out" asks), the listeners are on port 0. The lease
    // leaves room for a claim that took a second or more to record on a loaded machine (with
    // 3 s, such sends were refused as unsafe to start, and ended `failed`, not sent).
    let extra = format!(
        "url = {url:?}\n[gate]\nexecution_timeout = \"2s\"\nexecution_lease = \"8s\"\n\
         sweep_interval = \"200ms\"\nmax_pending_per_agent = 5000\n"
    );
    let (cfg, _, _) = write_config(dir.path(), "airlock.toml", "postgres", &up, HOSTS, &extra);
    let first = spawn(&cfg, dir.path(), 0);
    let (second, third) = (spawn(&cfg, dir.path(), 1), spawn(&cfg, dir.path(), 2));
    let all = [&first, &second, &third];

    // 1,000 holds over three instances: every instance lists all of them.
    let started = std::time::Instant::now();
    let held = hold_spread(&all, "r", 1000).await;
    eprintln!("scale_out: 1,000 holds in {:?}", started.elapsed());
    assert_eq!(held.len(), 1000);
    for s in all {
        let (code, list) = s
            .admin("GET", "/v1/reviews?state=pending&limit=1", None)
            .await;
        assert_eq!(code, 200, "{list}");
        assert_eq!(list["totals"]["pending"], 1000, "{list}");
    }
    assert_eq!(up.count(), 0, "nothing sent while held");

    eprintln!("scale_out: raced approvals from {:?}", started.elapsed());
    // Each review approved on two instances at once: one approval wins, one send happens.
    let answers: Vec<(u16, serde_json::Value)> = stream::iter(held.values().enumerate())
        .map(|(i, id)| {
            let (a, b) = (all[i % 3], all[(i + 1) % 3]);
            async move {
                let path = format!("/v1/reviews/{id}/approve");
                let (x, y) =
                    tokio::join!(a.admin("POST", &path, None), b.admin("POST", &path, None));
                [x, y]
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .concat();
    let odd: Vec<_> = answers
        .iter()
        .filter(|(c, _)| *c != 200 && *c != 409)
        .collect();
    assert!(
        odd.is_empty(),
        "approvals answer 200, the loser 409: {odd:?}"
    );
    assert!(answers.iter().filter(|(c, _)| *c == 200).count() >= 1000);
    let seen = deletes_by_path(&up);
    if seen.values().sum::<usize>() != 1000 {
        // For the diagnosis: what became of the calls not seen, and what approvals answered.
        let states = third.states().await;
        for (p, id) in &held {
            if seen.get(p) != Some(&1) {
                let (_, r) = third.admin("GET", &format!("/v1/reviews/{id}"), None).await;
                eprintln!("not seen: {p} {:?} {}", states.get(id), r["result"]);
            }
        }
        for (c, r) in answers.iter().filter(|(c, _)| *c == 200).take(3) {
            eprintln!("an approval answered {c} {}", r["state"]);
        }
    }
    assert_eq!(
        seen.values().sum::<usize>(),
        1000,
        "exactly 1,000 upstream calls"
    );
    assert!(
        held.keys().all(|p| seen.get(p) == Some(&1)),
        "each path sent once"
    );
    let states = third.states().await;
    assert!(held
        .values()
        .all(|id| states.get(id).map(String::as_str) == Some("executed")));

    eprintln!("scale_out: wait-mode from {:?}", started.elapsed());
    // Wait-mode on one instance hears of an approval given on another.
    let waiting = {
        let client = first.client();
        tokio::spawn(async move {
            client
                .delete("https://api.github.com/repos/acme/waited")
                .header("airlock-wait", "30")
                .send()
                .await
                .expect("send")
        })
    };
    let id = support::eventually(
        "the waited call to be held",
        Duration::from_secs(10),
        || async {
            let (_, list) = second.admin("GET", "/v1/reviews?state=pending", None).await;
            list["reviews"][0]["reviewId"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| list.to_string())
        },
    )
    .await;
    let asked = std::time::Instant::now();
    let (code, r) = second
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    let answer = waiting.await.expect("waiter");
    assert_eq!(
        answer.headers()["airlock-outcome"],
        "EXECUTED",
        "the waiting agent gets the executed answer"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "heard of the decision at once, not at the end of its wait: {:?}",
        asked.elapsed()
    );

    eprintln!("scale_out: kill -9 from {:?}", started.elapsed());
    // kill -9 of the instance sending: another gives the sends up once their lease lapses.
    let stalled = hold_spread(&[&first], "stall", 5).await;
    for id in stalled.values() {
        let (admin, token, id) = (first.admin, first.admin_token.clone(), id.clone());
        tokio::spawn(async move {
            let _ = airlock::admin::client::call(
                admin,
                &token,
                http::Method::POST,
                &format!("/v1/reviews/{id}/approve"),
                None,
            )
            .await;
        });
    }
    support::eventually(
        "the stalled sends to reach the upstream",
        Duration::from_secs(30),
        || {
            let seen = deletes_by_path(&up);
            std::future::ready(
                stalled
                    .keys()
                    .all(|p| seen.contains_key(p))
                    .then_some(())
                    .ok_or("not yet"),
            )
        },
    )
    .await;
    first.kill9();
    let states = support::eventually(
        "a surviving instance to give up the dead one's sends",
        Duration::from_secs(30),
        || async {
            let states = second.states().await;
            let busy = stalled
                .values()
                .filter(|id| states.get(*id).map(String::as_str) != Some("outcome_unknown"))
                .count();
            if busy == 0 {
                Ok(states)
            } else {
                Err(format!("{busy} not yet outcome_unknown"))
            }
        },
    )
    .await;
    for id in stalled.values() {
        assert_eq!(states[id], "outcome_unknown");
        let (code, r) = third.admin("GET", &format!("/v1/reviews/{id}"), None).await;
        assert_eq!(code, 200, "{r}");
        let error = r["result"]["error"].as_str().unwrap_or_default();
        assert!(error.contains("lapsed"), "says why: {r}");
        let (code, _) = third
            .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
            .await;
        assert_eq!(code, 409, "never approved again");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = deletes_by_path(&up);
    assert!(
        stalled.keys().all(|p| seen.get(p) == Some(&1)),
        "nothing re-sent: {seen:?}"
    );

    eprintln!("scale_out: audit verify from {:?}", started.elapsed());
    // One chain, whichever instance wrote: verified live and by the CLI on the database.
    let (code, report) = third.admin("GET", "/v1/audit/verify", None).await;
    assert_eq!(code, 200, "{report}");
    let airlock = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .expect("airlock");
        assert!(
            out.status.success(),
            "airlock {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    airlock(&["audit", "verify"]);
    // Exported from the database: one contiguous run of seqs, and it verifies offline.
    let export = dir.path().join("audit.jsonl");
    airlock(&["audit", "export", "--out", &export.to_string_lossy()]);
    let text = std::fs::read_to_string(&export).expect("export");
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["seq"].as_u64().expect("seq")
        })
        .collect();
    assert!(
        seqs.len() > 3000,
        "holds, decisions and sends of all three: {}",
        seqs.len()
    );
    assert!(
        seqs.iter().enumerate().all(|(i, s)| *s == i as u64),
        "one run of seqs"
    );
    let pubkey = airlock(&["audit", "pubkey"]);
    airlock(&[
        "audit",
        "verify",
        &export.to_string_lossy(),
        "--pubkey",
        &pubkey,
    ]);
    second.stop();
    third.stop();
}
