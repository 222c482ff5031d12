//! Whole-catalog evaluation per request over a realistic mix (target: <= 5 µs).
use airlock::rules::{Catalog, CatalogOptions, RequestHead};
use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;

#[allow(clippy::type_complexity)]
fn bench(c: &mut Criterion) {
    let cat = Catalog::embedded(&CatalogOptions::default()).expect("catalog");
    let mut form = HeaderMap::new();
    form.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().expect("v"),
    );
    let mut json = HeaderMap::new();
    json.insert("content-type", "application/json".parse().expect("v"));
    let none = HeaderMap::new();
    let mix: Vec<(&str, &str, &str, &HeaderMap, Option<&[u8]>)> = vec![
        (
            "GET",
            "api.github.com",
            "/repos/acme/widgets/pulls?state=open",
            &none,
            None,
        ),
        (
            "GET",
            "api.github.com",
            "/repos/acme/widgets/contents/src/main.rs",
            &none,
            None,
        ),
        (
            "DELETE",
            "api.github.com",
            "/repos/acme/widgets",
            &none,
            None,
        ),
        (
            "POST",
            "api.stripe.com",
            "/v1/charges",
            &form,
            Some(b"amount=25000&currency=usd&source=tok_visa&metadata[order]=42"),
        ),
        (
            "POST",
            "api.github.com",
            "/graphql",
            &json,
            Some(
                br#"{"query":"mutation { deleteRef(input:{refId:\"x\"}) { clientMutationId } }"}"#,
            ),
        ),
    ];
    let round = || {
        for (m, h, p, hd, body) in &mix {
            let head = RequestHead {
                method: m,
                host: h,
                port: 443,
                path_and_query: p,
                headers: hd,
            };
            let body = if cat.needs_body(&head) { *body } else { None };
            std::hint::black_box(cat.evaluate(&head, body));
        }
    };
    c.bench_function("rules_eval_mix_of_5", |b| b.iter(round));
    // Per-request figure (the target is per request): best of a few timed batches.
    let rounds = 20_000u32;
    let best = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            for _ in 0..rounds {
                round();
            }
            t.elapsed()
        })
        .min()
        .unwrap_or_default();
    println!(
        "rules_eval_mix_of_5: {:.2} µs per request (best of 5 x {rounds} rounds of {})",
        best.as_secs_f64() * 1e6 / f64::from(rounds) / mix.len() as f64,
        mix.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
