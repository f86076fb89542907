//! Shamir split/combine of the client SDK at the two sizes that matter: a
//! 1 KiB secret (a typical key backup) and 512 KiB (the guardian's share
//! limit). 3-of-5, as a default backup. Run: `cargo bench --workspace --bench shamir`.

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use obscura_client::shamir;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn split_combine(c: &mut Criterion) {
    let mut g = c.benchmark_group("shamir_3_of_5");
    g.sample_size(10);
    for size in [1024usize, 512 * 1024] {
        let secret = vec![0x5Au8; size];
        let mut rng = rand_core::OsRng;
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("split", size), &secret, |b, s| {
            b.iter(|| shamir::split(black_box(s), 3, 5, &mut rng).expect("valid parameters"))
        });
        // The SDK passes `OsRng` (one getrandom(2) per coefficient plane); the
        // same split with a ChaCha CSPRNG seeded once shows what those cost.
        let mut seeded = StdRng::from_rng(rand_core::OsRng).expect("OS randomness");
        g.bench_with_input(
            BenchmarkId::new("split_seeded_csprng", size),
            &secret,
            |b, s| {
                b.iter(|| shamir::split(black_box(s), 3, 5, &mut seeded).expect("valid parameters"))
            },
        );
        let shares = shamir::split(&secret, 3, 5, &mut rng).expect("valid parameters");
        g.bench_with_input(BenchmarkId::new("combine", size), &shares[..3], |b, s| {
            b.iter(|| shamir::combine(black_box(s)).expect("consistent shares"))
        });
    }
    g.finish();
}

criterion_group!(benches, split_combine);
criterion_main!(benches);
