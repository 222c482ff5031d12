//! Leaf certificate minting: cold (new key + signature) vs a cache hit.
use std::num::NonZeroUsize;
use std::sync::Arc;

use airlock::tls::{CertificateAuthority, LeafCache};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    airlock::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Arc::new(CertificateAuthority::create(dir.path()).expect("ca"));
    c.bench_function("leaf_mint_cold", |b| {
        b.iter(|| ca.mint_leaf("api.github.com").expect("mint"))
    });
    let cache = LeafCache::new(ca.clone(), NonZeroUsize::new(16).expect("nz"));
    cache.server_config("api.github.com").expect("warm");
    c.bench_function("leaf_cache_hit", |b| {
        b.iter(|| cache.server_config("api.github.com").expect("hit"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
