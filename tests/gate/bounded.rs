//! The gate's background duties and listings after the session 22 review: memory bounded by the
//! bytes of the review records they read (a record carries its request body), a sweep chunk the
//! store refuses not stopping the chunks behind it, and retention in bounded steps. Part of
//! `tests/gate.rs` (its helpers and `TestRules`).

use std::sync::atomic::Ordering::SeqCst;

use airlock::store::{Batch, Tree};

use super::*;

/// A chunk's byte budget (`CHUNK_BYTES` in `src/gate/recover.rs`) and a page's (`PAGE_BYTES` in
/// `src/gate/index.rs`).
const BUDGET: usize = 16 * 1024 * 1024;

/// The reviews written by [`big_reviews`] carry a request body of this many base64 characters
/// (768 KiB of body): a record of a little over 1 MiB.
const BODY_B64: usize = 1024 * 1024;

/// Writes `n` copies of a held review straight to the store, as holds write them, each with a
/// large body, in `state`, created and last changed `at_ms` and due `expires_ms`. Their ids.
async fn big_reviews(
    a: &Airlock,
    store: &support::FaultyStore,
    n: usize,
    state: ReviewState,
    at_ms: u64,
    expires_ms: u64,
) -> Vec<String> {
    let (_, headers, _) = hold_delete(a, "/repos/acme/template-big").await;
    let template = review_id(&headers);
    let bytes = store
        .inner
        .get(Tree::Reviews, template.as_bytes())
        .expect("get")
        .expect("present");
    let mut base = airlock::gate::Review::decode(&bytes).expect("decode");
    base.request.body_b64 = "QUFB".repeat(BODY_B64 / 4);
    base.state = state;
    base.join = None;
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let mut b = Batch::default();
        for &i in chunk {
            let mut r = base.clone();
            r.created_at_ms = at_ms + i as u64;
            r.updated_at_ms = r.created_at_ms;
            r.id = airlock::gate::new_review_id(r.created_at_ms);
            r.expires_at_ms = expires_ms + i as u64;
            b.put(Tree::Reviews, r.id.as_bytes(), &r.encode().expect("encode"));
            airlock::gate::index::reindex(&mut b, None, Some(&r));
            ids.push(r.id);
        }
        assert!(store.inner.apply(b).expect("apply"));
    }
    ids
}

/// How many of `ids` are in `state`.
async fn count_in(a: &Airlock, ids: &[String], state: ReviewState) -> usize {
    let mut n = 0;
    for id in ids {
        n += usize::from(a.gate.get(id).await.expect("get").state == state);
    }
    n
}

/// Review of session 22: a sweep chunk took 2,048 overdue reviews whatever their records'
/// size, about four copies of each in memory (400 reviews of 1 MiB bodies took one sweep to
/// 3.9 GB). A chunk now stops once its records reach 16 MiB: 40 records of 1 MiB are three
/// commits, each expecting (holding) at most 16 MiB and one record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweep_chunk_is_bounded_by_the_bytes_of_its_records() {
    let (_up, a, store, clock, _) =
        setup_on_faulty_store_at("[gate]\nsweep_interval = \"1h\"\n").await;
    let t0 = CLOCK_START_S * 1000;
    let ids = big_reviews(&a, &store, 40, ReviewState::Pending, t0, t0 + 10_000).await;
    clock.advance(Duration::from_secs(60));
    store.expected_review_bytes.lock().expect("lock").clear();
    assert_eq!(a.gate.sweep().await.expect("sweep"), 40);
    assert_eq!(count_in(&a, &ids, ReviewState::Expired).await, 40);
    let chunks = store.expected_review_bytes.lock().expect("lock").clone();
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    let record = BODY_B64 + 16 * 1024;
    assert!(chunks.iter().all(|b| *b <= BUDGET + record), "{chunks:?}");
    assert!(
        chunks.iter().sum::<usize>() >= 40 * BODY_B64,
        "every record read once"
    );
}

/// Review of session 22: the sweep returned at the first chunk it could not commit and retried
/// that chunk at each tick, so one chunk the store always refused (past PostgreSQL's 1 GiB
/// array limit) kept every overdue review behind it pending. A refused chunk is now logged,
/// counted, and passed over; the sweep ends with its error, and the next one expires it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_sweep_chunk_does_not_stop_the_chunks_behind_it() {
    let (_up, a, store, clock, _) =
        setup_on_faulty_store_at("[gate]\nsweep_interval = \"1h\"\n").await;
    let t0 = CLOCK_START_S * 1000;
    let ids = big_reviews(&a, &store, 40, ReviewState::Pending, t0, t0 + 10_000).await;
    clock.advance(Duration::from_secs(60));
    store.fail_expiries.store(1, SeqCst);
    assert!(
        a.gate.sweep().await.is_err(),
        "the refused chunk is reported"
    );
    // The first chunk (16 records reach 16 MiB) was refused; the two behind it expired.
    assert_eq!(count_in(&a, &ids, ReviewState::Expired).await, 24);
    assert_eq!(count_in(&a, &ids[..16], ReviewState::Pending).await, 16);
    let (code, bytes) = airlock::admin::client::call_raw(
        a.admin_addr,
        &a.admin_token,
        http::Method::GET,
        "/metrics",
        None,
    )
    .await
    .expect("metrics");
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&bytes);
    let failures = text
        .lines()
        .find(|l| l.starts_with("airlock_background_chunk_failures_total{duty=\"expiry\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(failures >= Some(1), "{text}");
    // The next sweep expires it, each review once, with its entry.
    assert_eq!(a.gate.sweep().await.expect("sweep"), 16);
    assert_eq!(count_in(&a, &ids, ReviewState::Expired).await, 40);
    for id in &ids {
        let entries = a.gate.audit().entries_for_review(id, 10).expect("audit");
        assert_eq!(entries.len(), 1, "{id}: one expiry entry");
    }
    let (code, report) = a.admin("GET", "/v1/audit/verify", None).await;
    assert_eq!(code, 200, "{report}");
}

/// Review of session 22: a listing page read up to 1,000 records at once, whatever their size
/// (`GET /v1/reviews?limit=1000` over 400 reviews of 1 MiB bodies grew the server from 97 MB
/// to 661 MB). A page now ends once its records reach 16 MiB, with a cursor; the pages still
/// list every review once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listing_page_is_bounded_by_the_bytes_of_its_records() {
    let (_up, a, store, _clock, _) =
        setup_on_faulty_store_at("[gate]\nsweep_interval = \"1h\"\n").await;
    let t0 = CLOCK_START_S * 1000;
    let ids = big_reviews(&a, &store, 40, ReviewState::Pending, t0, t0 + 3_600_000).await;
    for state in ["pending", ""] {
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/reviews?limit=1000&state={state}");
            if state.is_empty() {
                path = "/v1/reviews?limit=1000".into();
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (code, page) = a.admin("GET", &path, None).await;
            assert_eq!(code, 200, "{page}");
            let items = page["reviews"].as_array().expect("reviews");
            assert!(items.len() <= 17, "{state}: {} on one page", items.len());
            seen.extend(
                items
                    .iter()
                    .map(|r| r["reviewId"].as_str().expect("id").to_string()),
            );
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert!(pages >= 3, "{state}: {pages} pages");
        for id in &ids {
            assert_eq!(seen.iter().filter(|s| *s == id).count(), 1, "{state}: {id}");
        }
    }
}

/// Review of session 22: a retention pass ran whole in the sweeper's turn (one read per
/// review), so switching retention on over a big store stopped expiry and stranded-send
/// pickup until it ended. A pass now goes in steps of at most four chunks (each bounded by
/// bytes too), each step saying where the next goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_goes_in_bounded_steps() {
    let (_up, a, store, clock, _) =
        setup_on_faulty_store_at("[gate]\nsweep_interval = \"1h\"\n[store]\nretention = \"1h\"\n")
            .await;
    let t0 = CLOCK_START_S * 1000;
    let ids = big_reviews(&a, &store, 100, ReviewState::Rejected, t0, t0).await;
    clock.advance(Duration::from_secs(7200));
    store.expected_review_bytes.lock().expect("lock").clear();
    // Four chunks of 16 records (16 MiB each).
    let (removed, next) = a.gate.prune_step(None).await.expect("step");
    assert_eq!(removed, 64);
    assert!(next.is_some(), "the pass goes on");
    let chunks = store.expected_review_bytes.lock().expect("lock").clone();
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    assert!(
        chunks.iter().all(|b| *b <= BUDGET + BODY_B64 + 16 * 1024),
        "{chunks:?}"
    );
    let (removed, next) = a.gate.prune_step(next).await.expect("step");
    assert_eq!(removed, 36);
    assert!(next.is_none(), "the pass is done");
    for id in &ids {
        assert!(a.gate.get(id).await.is_err(), "{id} removed");
    }
    // A new pass finds nothing left.
    assert_eq!(a.gate.prune().await.expect("prune"), 0);
}
