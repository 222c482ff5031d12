//! Profiling driver for the rules engine: evaluates the `rules_eval` bench mix (2 reads, a
//! DELETE, a Stripe form charge, a GraphQL mutation) N times and prints the time per request.
//! Meant for `valgrind --tool=callgrind target/release/examples/rules_profile 2000`, where
//! instruction counts are stable even on a busy machine.
use airlock::rules::{Catalog, CatalogOptions, RequestHead};
use http::HeaderMap;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let cat = Catalog::embedded(&CatalogOptions::default()).expect("catalog");
    let mut form = HeaderMap::new();
    form.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().expect("v"),
    );
    let mut json = HeaderMap::new();
    json.insert("content-type", "application/json".parse().expect("v"));
    let none = HeaderMap::new();
    #[allow(clippy::type_complexity)]
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
    let start = std::time::Instant::now();
    for _ in 0..n {
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
    }
    let per = start.elapsed().as_nanos() as f64 / (n * mix.len()) as f64;
    println!(
        "{n} rounds of {} requests: {per:.0} ns per request",
        mix.len()
    );
}
