//! The gate's sends after the session 21 review: what retention may remove, which Stripe calls
//! the Idempotency-Key protects, the sweeper's claims, claims the store may not keep, and
//! leases across clocks. Part of `tests/gate.rs` (its helpers and `TestRules`).

use std::sync::atomic::Ordering::SeqCst;

use super::*;

/// Review of session 21: retention removed whatever the finished index named, as it then
/// read: a review a human retried after that index read (`executing`, its send under way)
/// was deleted mid-send, and a `failed` review, which a human may retry until its deadline,
/// was removed before it. Both now stay (and do not stop the rest); past its deadline a
/// failed review goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_keeps_a_review_that_may_still_be_sent() {
    let (up, a, store, clock, _) = setup_on_faulty_store_at(
        "[gate]\nexecution_timeout = \"5s\"\nreview_expiry = \"72h\"\n[store]\nretention = \"1h\"\n",
    )
    .await;
    // Two calls whose sends certainly failed (the upstream is down): `failed`, retryable.
    up.state.down.store(true, SeqCst);
    let mut ids = Vec::new();
    for path in ["/repos/octo/stall-retried", "/repos/octo/failed"] {
        let (_, headers, _) = hold_delete(&a, path).await;
        let id = review_id(&headers);
        let (_, r) = a
            .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
            .await;
        assert_eq!(r["state"], "failed", "{r}");
        ids.push(id);
    }
    up.state.down.store(false, SeqCst);
    // Finished after them: retention goes on past the two it keeps.
    let (_, headers, _) = hold_delete(&a, "/repos/octo/rejected").await;
    let rejected = review_id(&headers);
    let (code, _) = a
        .admin("POST", &format!("/v1/reviews/{rejected}/reject"), None)
        .await;
    assert_eq!(code, 200);
    clock.advance(Duration::from_secs(2 * 3600));

    // Between retention's index read and its record reads, a human retries the first review;
    // its send is under way (the upstream holds the request) when retention reads it.
    let (gate, retried, state) = (a.gate.clone(), ids[0].clone(), up.state.clone());
    let rt = tokio::runtime::Handle::current();
    *store.after_finished_read.lock().expect("lock") = Some(Box::new(move || {
        rt.spawn(async move {
            let admin = airlock::gate::Reviewer::admin_token("admin");
            gate.retry(&retried, &admin, None).await
        });
        let until = std::time::Instant::now() + support::WAIT;
        while state.requests.lock().expect("lock").is_empty() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }));
    assert_eq!(
        a.gate.prune().await.expect("prune"),
        1,
        "the rejection only"
    );
    assert_eq!(up.count(), 1, "the retry reached the upstream");
    up.state.no_stall.store(true, SeqCst);
    up.state.unstall.notify_waiters();
    for id in &ids {
        let (code, r) = a.admin("GET", &format!("/v1/reviews/{id}"), None).await;
        assert_eq!(code, 200, "{id} is kept: {r}");
    }
    let (code, _) = a
        .admin("GET", &format!("/v1/reviews/{rejected}"), None)
        .await;
    assert_eq!(code, 404);
    let sent = support::eventually("the retry's outcome", support::WAIT, || async {
        let r = a.gate.get(&ids[0]).await.expect("get");
        match r.state.is_final() {
            true => Ok(r),
            false => Err(r.state.as_str()),
        }
    })
    .await;
    assert_eq!(sent.state, ReviewState::Executed, "{sent:?}");

    // Past the deadline (72 h) nothing may send them: both leave.
    clock.advance(Duration::from_secs(71 * 3600));
    assert_eq!(a.gate.prune().await.expect("prune"), 2);
    assert_eq!(up.count(), 1);
}

/// Review of session 21: a Stripe DELETE counted as protected by its Idempotency-Key, which
/// Stripe honours on POST only: its retries were held to the key's 24 hours as if a repeat
/// would get the first result (and the dashboard promised the call runs at most once). Such a
/// key protects nothing: as for GitHub, a retry is the reviewers' call until the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stripe_delete_is_not_protected_by_its_idempotency_key() {
    let (up, _config, clock, a) =
        setup_on_clock("[gate]\nexecution_timeout = \"1s\"\nreview_expiry = \"72h\"\n").await;
    let resp = a
        .client()
        .delete("https://api.stripe.com/v1/customers/cus_1/stall")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 423);
    let id = review_id(resp.headers());
    let (_, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(r["state"], "outcome_unknown", "{r}");
    let key = up.requests()[0]
        .header("idempotency-key")
        .map(str::to_string);
    assert!(key.is_some_and(|k| k.starts_with("airlock-")), "it has one");

    clock.advance(Duration::from_secs(25 * 3600));
    up.state.no_stall.store(true, SeqCst);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(up.count(), 2);
}

/// Review of session 21: every sweep tick started another claim of each `approved` review,
/// also while this process's own claim of it was still waiting on a slow store: claims piled
/// up, each holding a blocking thread. A sweep now leaves alone what this process is
/// claiming or sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweep_does_not_claim_again_what_this_process_is_claiming() {
    let (up, a, store) = setup_on_faulty_store("[gate]\nsweep_interval = \"100ms\"\n").await;
    let (_, headers, _) = hold_delete(&a, "/repos/octo/slow-store").await;
    let id = review_id(&headers);
    // The approval's own claim is refused; the sweeper's waits 3 s on the store.
    store.fail_claims.store(1, SeqCst);
    store.delay_claim_ms.store(3_000, SeqCst);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 202, "{r}");
    let before = store.claim_reads.load(SeqCst);
    let done = support::eventually("the sweeper's send", support::WAIT, || async {
        let r = a.gate.get(&id).await.expect("get");
        match r.state.is_final() {
            true => Ok(r),
            false => Err(r.state.as_str()),
        }
    })
    .await;
    assert_eq!(done.state, ReviewState::Executed, "{done:?}");
    let claims = store.claim_reads.load(SeqCst) - before;
    // One claim, and at most one that read the review just as that one ended.
    assert!(claims <= 2, "{claims} claims over some 30 sweeps");
    assert_eq!(up.count(), 1);
}

/// Review of session 21: a retry of a Stripe call that reached Stripe while the first attempt
/// with the same Idempotency-Key was still in progress got 409 `idempotency_error`, and was
/// stored as final `executed` (and sealed), though what the call did was not known. It is
/// `outcome_unknown`, Stripe's answer kept and the error saying why, so a later retry (same
/// key) can learn the result. Any other 409 is an answer like the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stripe_409_for_a_key_in_use_leaves_the_outcome_unknown() {
    let (up, a) = setup("").await;
    for (path, state) in [
        ("/v1/refunds/key-in-use", "outcome_unknown"),
        ("/v1/refunds/status/409", "executed"),
    ] {
        let resp = a
            .client()
            .post(format!("https://api.stripe.com{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("charge=ch_1")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 423);
        let id = review_id(resp.headers());
        let (code, r) = a
            .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
            .await;
        assert_eq!(code, 200, "{r}");
        assert_eq!(r["state"], state, "{path}: {r}");
        assert_eq!(r["result"]["status"], 409, "{r}");
    }
    let (_, r) = a
        .admin("GET", "/v1/reviews?state=outcome_unknown", None)
        .await;
    let r = &r["reviews"][0];
    let error = r["result"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("idempotency_error"), "{r}");
    assert!(
        r["result"]["body"]
            .to_string()
            .contains("idempotency_key_in_use"),
        "{r}"
    );
    assert!(
        r.get("sealedSecrets").is_none(),
        "not sealed: a retry sends it: {r}"
    );
    assert_eq!(up.count(), 2);
}

/// Review of session 21: a claim whose commit the store reported failed, yet which read back
/// as written, counted as made, and the call was sent on it; had a crash lost that claim,
/// recovery would have found the review `approved` and sent it again. Such a claim is not
/// sent on: the attempt ends `failed`, certainly unsent, and a retry sends the call once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_the_store_may_not_keep_is_not_sent_on() {
    let (up, a, store) = setup_on_faulty_store("").await;
    let (_, headers, _) = hold_delete(&a, "/repos/octo/unflushed").await;
    let id = review_id(&headers);
    store.unflushed_claims.store(1, SeqCst);
    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/approve"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["result"]["unsent"], true, "{r}");
    let error = r["result"]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("not sent") && error.contains("crash"),
        "{r}"
    );
    assert_eq!(up.count(), 0, "nothing sent on that claim");
    assert_eq!(store.unflushed_claims.load(SeqCst), 0);

    let (code, r) = a
        .admin("POST", &format!("/v1/reviews/{id}/retry"), None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "executed", "{r}");
    assert_eq!(up.count(), 1);
}

/// Two instances on one database, each on its own test clock set `offset_s` from the real
/// one (negative: behind), one audit key between them; their sweeps run only when called.
async fn two_instances_on_postgres(
    offsets_s: [i64; 2],
) -> Option<(
    FakeUpstream,
    [(Airlock, Arc<ManualClock>); 2],
    tempfile::TempDir,
)> {
    support::init();
    let cluster = support::postgres::Cluster::shared()?;
    let url = cluster.fresh_database();
    let up = FakeUpstream::start(Default::default()).await;
    let shared = tempfile::tempdir().expect("tmp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as i64;
    let toml = format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n[gate]\nexecution_timeout = \"10s\"\n\
         execution_lease = \"30s\"\nsweep_interval = \"1h\"\n"
    );
    let mut out = Vec::new();
    for offset in offsets_s {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = Airlock::config(&toml, dir.path(), &up, HOSTS);
        config.audit.key_file = Some(shared.path().join("audit-key.pem"));
        let clock = Arc::new(ManualClock::default());
        clock.0.store((now + offset * 1000) as u64, SeqCst);
        let a = Airlock::start_with_parts(config, dir, Arc::new(TestRules), clock.clone()).await;
        out.push((a, clock));
    }
    let [a, b]: [(Airlock, Arc<ManualClock>); 2] = out.try_into().ok()?;
    Some((up, [a, b], shared))
}

/// Review of session 21: each instance may be off the database's clock by half the lease's
/// slack (10 s here), so two may differ by all of it, but another instance's claim was given
/// up only half the slack past its lease: an instance 7 s ahead gave up, as lapsed, the send
/// of one 7 s behind while its lease still ran (`outcome_unknown`, open to a retry that sends
/// again). It waits twice that now. And an instance whose later check finds its clock too far
/// off only logged it: it now neither claims (another instance sends the call) nor gives up
/// another's claim until its clock is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clocks_apart_by_the_allowed_skew_never_give_up_a_running_send() {
    let Some((up, [(a, clock_a), (b, clock_b)], _keys)) = two_instances_on_postgres([-7, 7]).await
    else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let (_, headers, _) = hold_delete(&a, "/repos/octo/stall-skew").await;
    let id = review_id(&headers);
    let approving = approve_until_sent(&a, &up, &id).await;
    // 28 s on: A's lease (30 s by its clock) still runs; B reads 12 s past it.
    clock_a.advance(Duration::from_secs(28));
    clock_b.advance(Duration::from_secs(28));
    b.gate.recover().await.expect("B's sweep");
    let r = a.gate.get(&id).await.expect("get");
    assert_eq!(r.state, ReviewState::Executing, "given up mid-send: {r:?}");
    up.state.no_stall.store(true, SeqCst);
    up.state.unstall.notify_waiters();
    let (code, r) = approving.await.expect("join").expect("call");
    assert_eq!((code, r["state"].as_str()), (200, Some("executed")), "{r}");

    // B's clock falls a minute behind: its check pauses its claims. An approval on B is
    // recorded, and not sent by B.
    let real_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_millis() as u64
    };
    clock_b.0.store(real_ms() - 60_000, SeqCst);
    let err = b.gate.check_clock().await.expect_err("too far off");
    assert!(err.to_string().contains("behind"), "{err}");
    let (_, ready) = b.admin("GET", "/readyz", None).await;
    assert_eq!(ready["claimsPaused"], true, "{ready}");
    let (_, headers, _) = hold_delete(&b, "/repos/octo/on-b").await;
    let third = review_id(&headers);
    let (code, r) = b
        .admin("POST", &format!("/v1/reviews/{third}/approve"), None)
        .await;
    assert_eq!(code, 202, "{r}");
    assert!(r["message"].to_string().contains("clock"), "{r}");
    assert_eq!(up.count(), 1);

    // A minute ahead, still paused: B does not judge the lease of A's new send.
    clock_b.0.store(real_ms() + 60_000, SeqCst);
    let err = b.gate.check_clock().await.expect_err("too far off");
    assert!(err.to_string().contains("ahead of"), "{err}");
    let (_, headers, _) = hold_delete(&a, "/repos/octo/stall-two").await;
    let second = review_id(&headers);
    up.state.no_stall.store(false, SeqCst);
    let approving = approve_until_sent(&a, &up, &second).await;
    b.gate.recover().await.expect("B's sweep");
    let r = a.gate.get(&second).await.expect("get");
    assert_eq!(r.state, ReviewState::Executing, "{r:?}");
    up.state.no_stall.store(true, SeqCst);
    up.state.unstall.notify_waiters();
    let (code, r) = approving.await.expect("join").expect("call");
    assert_eq!((code, r["state"].as_str()), (200, Some("executed")), "{r}");
    assert_eq!(up.count(), 2);

    // Its clock back: B claims again.
    clock_b.0.store(real_ms(), SeqCst);
    b.gate.check_clock().await.expect("within bounds");
    let (_, ready) = b.admin("GET", "/readyz", None).await;
    assert!(ready.get("claimsPaused").is_none(), "{ready}");
    b.gate.recover().await.expect("B's sweep");
    support::eventually("B's send", support::WAIT, || async {
        let r = b.gate.get(&third).await.expect("get");
        (r.state == ReviewState::Executed)
            .then_some(())
            .ok_or(r.state.as_str())
    })
    .await;
    assert_eq!(up.count(), 3);
}

/// Review of session 22: the clock was checked against the database only at start and every
/// ten minutes, so an instance whose clock stepped a minute forward in between gave up another
/// instance's running send as lapsed (`outcome_unknown`, open to a retry that sends it again).
/// Giving up another instance's claim now checks the clock first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clock_stepped_forward_since_its_last_check_gives_up_no_running_send() {
    let Some((up, [(a, _), (b, clock_b)], _keys)) = two_instances_on_postgres([0, 0]).await else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let (_, headers, _) = hold_delete(&a, "/repos/octo/stall-step").await;
    let id = review_id(&headers);
    let approving = approve_until_sent(&a, &up, &id).await;
    // B's clock steps a minute forward; no periodic check has run since.
    clock_b.advance(Duration::from_secs(60));
    b.gate.recover().await.expect("B's sweep");
    let r = a.gate.get(&id).await.expect("get");
    assert_eq!(r.state, ReviewState::Executing, "given up mid-send: {r:?}");
    assert!(
        b.gate.claims_paused().is_some(),
        "the check paused B's claims"
    );
    up.state.no_stall.store(true, SeqCst);
    up.state.unstall.notify_waiters();
    let (code, r) = approving.await.expect("join").expect("call");
    assert_eq!((code, r["state"].as_str()), (200, Some("executed")), "{r}");
    assert_eq!(up.count(), 1);
}

/// Review of session 22: an instance whose clock was found too far off the database's paused
/// its claims, but went on sweeping on that clock: a day ahead, it expired every instance's
/// pending reviews a day early (and retention removed finished ones early). It sweeps again
/// once its clock is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_whose_clock_is_off_expires_nothing() {
    let Some((_up, [(a, _), (b, clock_b)], _keys)) = two_instances_on_postgres([0, 0]).await else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let (_, headers, _) = hold_delete(&a, "/repos/octo/early").await;
    let id = review_id(&headers);
    clock_b.advance(Duration::from_secs(25 * 3600));
    b.gate.check_clock().await.expect_err("a day ahead");
    assert_eq!(b.gate.sweep().await.expect("sweep"), 0);
    let r = a.gate.get(&id).await.expect("get");
    assert_eq!(r.state, ReviewState::Pending, "expired early: {r:?}");
}

/// Review of session 21: a send checked what was left of its own claim's lease on the wall
/// clock, so a clock stepped back while the claim was being recorded (NTP, a VM resumed)
/// let a send start that could outlast the lease other instances judge it by. The lease is
/// now measured on the monotonic clock from the claim's start: a claim that took 1.5 s of a
/// 2 s lease is not sent, whatever the wall clock says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wall_clock_stepped_back_does_not_lengthen_a_claims_lease() {
    let (up, a, store, clock, _) =
        setup_on_faulty_store_at("[gate]\nexecution_timeout = \"1s\"\nexecution_lease = \"2s\"\n")
            .await;
    let (_, headers, _) = hold_delete(&a, "/repos/octo/stepped-back").await;
    let id = review_id(&headers);
    store.delay_claim_ms.store(1_500, SeqCst);
    let approving = {
        let (addr, token) = (a.admin_addr, a.admin_token.clone());
        let path = format!("/v1/reviews/{id}/approve");
        tokio::spawn(async move {
            airlock::admin::client::call(addr, &token, http::Method::POST, &path, None).await
        })
    };
    // While the claim is being recorded, the wall clock is stepped back 2 s.
    support::eventually("the claim under way", support::WAIT, || async {
        (store.delay_claim_ms.load(SeqCst) == 0).then_some(())
    })
    .await;
    clock.0.fetch_sub(2_000, SeqCst);
    let (code, r) = approving.await.expect("join").expect("call");
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "failed", "{r}");
    let error = r["result"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not sent") && error.contains("execution_lease"),
        "{r}"
    );
    assert_eq!(up.count(), 0, "nothing was sent");
}
