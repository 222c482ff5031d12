//! One access-log line through tracing-subscriber's stock text and JSON formatters and through
//! Airlock's `LineFormat`, into a writer that discards it.
use airlock::log_line::LineFormat;
use criterion::{criterion_group, criterion_main, Criterion};

fn access_line() {
    let method = http::Method::GET;
    let path = String::from("/repos/octo/hello/pulls");
    tracing::info!(
        target: "airlock::access",
        agent = %"bench",
        host = %"api.github.com",
        method = %method,
        path = %path,
        status = 200u16,
        bytes = 64u64,
        duration_ms = 0.123_456f64,
        verdict = %"pass",
        tool = "github.pulls.list",
        complete = true,
        "request"
    );
}

fn bench(c: &mut Criterion) {
    let builder = || {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(std::io::sink)
    };
    {
        let _on = tracing::subscriber::set_default(builder().finish());
        c.bench_function("access_line_text_stock", |b| b.iter(access_line));
    }
    {
        let _on =
            tracing::subscriber::set_default(builder().event_format(LineFormat::text()).finish());
        c.bench_function("access_line_text_line_format", |b| b.iter(access_line));
    }
    {
        let _on = tracing::subscriber::set_default(builder().json().finish());
        c.bench_function("access_line_json_stock", |b| b.iter(access_line));
    }
    {
        let _on = tracing::subscriber::set_default(
            builder().json().event_format(LineFormat::json()).finish(),
        );
        c.bench_function("access_line_json_line_format", |b| b.iter(access_line));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
