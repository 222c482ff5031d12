//! Waits wake on their own review's changes only (`src/gate/wakeups.rs`): a wait reads its
//! review again when that review changes (a decision, an expiry), not on every other review's
//! change, and its registration goes when it ends or is given up. Part of `tests/gate.rs`
//! (its helpers and `TestRules`).

use airlock::gate::{Gate, Review, Reviewer};

use super::*;

/// A wait on `id` of up to a minute, in a task.
fn wait_on(gate: &Arc<Gate>, id: &str) -> tokio::task::JoinHandle<Review> {
    let (gate, id) = (gate.clone(), id.to_string());
    tokio::spawn(async move {
        gate.wait_final(&id, Duration::from_secs(60))
            .await
            .expect("wait")
    })
}

/// Until `gate`'s waits have read their reviews `reads` times, waiting on `on` reviews.
async fn settled(gate: &Arc<Gate>, reads: u64, on: usize) {
    support::eventually("the waits to settle", Duration::from_secs(10), || async {
        let now = (gate.wait_reads(), gate.waited_on());
        (now == (reads, on)).then_some(()).ok_or(format!("{now:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_sleeps_through_other_reviews_changes_and_wakes_on_its_own() {
    let (up, a) = setup("").await;
    let mine = review_id(&hold_delete(&a, "/repos/acme/mine").await.1);
    let mut others = Vec::new();
    for i in 0..10 {
        others.push(review_id(
            &hold_delete(&a, &format!("/repos/acme/o{i}")).await.1,
        ));
    }
    let first = wait_on(&a.gate, &mine);
    let second = wait_on(&a.gate, &mine);
    settled(&a.gate, 2, 1).await;

    // 100 changes of other reviews: 90 extensions, then 10 rejections.
    let bob = Reviewer::named("bob");
    for _ in 0..9 {
        for id in &others {
            a.gate
                .extend(id, &bob, Duration::from_secs(3600))
                .await
                .expect("extend");
        }
    }
    for id in &others {
        a.gate.reject(id, &bob, None).await.expect("reject");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.gate.wait_reads(),
        2,
        "no wait read its review again for other reviews' changes"
    );
    assert!(!first.is_finished() && !second.is_finished());

    // Its own decision wakes both waits at once (well before the minute, or the re-check).
    a.gate.reject(&mine, &bob, None).await.expect("reject");
    for w in [first, second] {
        let r = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("woken by the decision")
            .expect("task");
        assert_eq!(r.state, ReviewState::Rejected);
    }
    assert_eq!(a.gate.wait_reads(), 4, "one read each for the one change");
    assert_eq!(a.gate.waited_on(), 0, "nothing is left registered");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expiry_wakes_the_wait_and_a_wait_given_up_leaves_nothing_registered() {
    let (_up, _config, clock, a) = setup_on_clock("").await;
    let expiring = review_id(&hold_delete(&a, "/repos/acme/expiring").await.1);
    let abandoned = review_id(&hold_delete(&a, "/repos/acme/abandoned").await.1);
    let waiting = wait_on(&a.gate, &expiring);
    let gone = wait_on(&a.gate, &abandoned);
    settled(&a.gate, 2, 2).await;

    // An agent that goes away (its request's future dropped) takes its registration with it.
    gone.abort();
    let _ = gone.await;
    settled(&a.gate, 2, 1).await;

    clock.advance(Duration::from_secs(25 * 3600));
    a.gate.sweep().await.expect("sweep");
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken by the expiry")
        .expect("task");
    assert_eq!(r.state, ReviewState::Expired);
    assert_eq!(a.gate.waited_on(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_waits_over_airlock_local_register_and_clean_up() {
    let (_up, a) = setup("").await;
    let id = review_id(&hold_delete(&a, "/repos/acme/status").await.1);
    let client = a.client();
    let url = format!("https://airlock.local/v1/reviews/{id}?wait=60");
    let status = tokio::spawn(async move {
        let resp = client.get(url).send().await.expect("send");
        (
            resp.status(),
            resp.json::<serde_json::Value>().await.expect("json"),
        )
    });
    settled(&a.gate, 1, 1).await;
    a.gate
        .reject(&id, &Reviewer::named("bob"), None)
        .await
        .expect("reject");
    let (code, body) = tokio::time::timeout(Duration::from_secs(10), status)
        .await
        .expect("answered on the decision")
        .expect("task");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "rejected", "{body}");
    assert_eq!(a.gate.waited_on(), 0);
}
