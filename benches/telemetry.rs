//! Benchmarks of the plot store (`cargo bench --bench telemetry`).
//!
//! * `view/<n>`: one M4 view query over a history of n samples at 1 kHz, for the whole history
//!   and for the newest 10 s, at 800 and 3840 px. The target is a cost that does not grow with
//!   n. The 1e8 case needs ~1.8 GB and builds in a couple of seconds.
//! * `stats/<n>`: window statistics over the same histories, whole and newest 10 s (shown for
//!   the visible window every frame, so its cost must not grow with the window either).
//! * `push`: appending to a full (wrapping) ring, per sample.
//!
//! The bytes per stored sample (raw ring and levels) are printed for the 1e6 history.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use drivebench::telemetry::Series;

/// Sample period: 1 kHz.
const DT: f64 = 1e-3;

/// Cheap synthetic signal: a 2 s triangle, hashed noise, and a one-sample spike every ~100 s.
fn signal(i: u64) -> f64 {
    let noise = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
    let triangle = ((i % 2000) as f64 / 1000.0 - 1.0).abs() * 10.0;
    let spike = if i % 100_003 == 50_000 { 1e3 } else { 0.0 };
    triangle + noise + spike
}

fn build(n: usize) -> Series {
    let mut s = Series::new(n);
    for i in 0..n as u64 {
        s.push(i as f64 * DT, signal(i));
    }
    s
}

fn queries(c: &mut Criterion) {
    for (label, n) in [("1e4", 10_000usize), ("1e6", 1_000_000), ("1e8", 100_000_000)] {
        let started = Instant::now();
        let s = build(n);
        eprintln!(
            "{label}: built {n} samples in {:.2?} ({:.1} ns/push incl. first touch), {} MiB, {:.2} B/sample",
            started.elapsed(),
            started.elapsed().as_nanos() as f64 / n as f64,
            s.memory_bytes() >> 20,
            s.memory_bytes() as f64 / s.capacity() as f64
        );
        let t_end = (n - 1) as f64 * DT + DT; // just after the newest sample
        let slow = |g: &mut criterion::BenchmarkGroup<'_, _>| {
            if n >= 100_000_000 {
                g.sample_size(10).warm_up_time(Duration::from_secs(1));
            }
        };

        let mut g = c.benchmark_group(format!("view/{label}"));
        slow(&mut g);
        for width in [800usize, 3840] {
            let mut out = Vec::with_capacity(4 * width + 2);
            g.bench_function(BenchmarkId::new("whole", width), |b| {
                b.iter(|| {
                    s.view(black_box(0.0), black_box(t_end), width, &mut out);
                    black_box(out.len())
                })
            });
            g.bench_function(BenchmarkId::new("newest_10s", width), |b| {
                b.iter(|| {
                    s.view(black_box(t_end - 10.0), black_box(t_end), width, &mut out);
                    black_box(out.len())
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("stats/{label}"));
        slow(&mut g);
        // Windows starting and ending mid-cell, as a scrolled plot window does.
        let whole = (black_box(0.0005), black_box(t_end - 0.0005));
        g.bench_function("whole", |b| b.iter(|| s.stats(whole.0, whole.1)));
        let newest = (black_box(t_end - 10.0005), black_box(t_end));
        g.bench_function("newest_10s", |b| b.iter(|| s.stats(newest.0, newest.1)));
        g.finish();
    }
}

fn push(c: &mut Criterion) {
    const BATCH: usize = 4096;
    let n = 1_000_000;
    let mut s = build(n);
    let values: Vec<f64> = (0..BATCH as u64).map(signal).collect();
    let mut t = n as f64 * DT;
    let mut g = c.benchmark_group("push");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new("full_ring_1e6", BATCH), |b| {
        b.iter(|| {
            for &v in &values {
                t += DT;
                s.push(t, black_box(v));
            }
        })
    });
    g.finish();
    black_box(s.len());
}

criterion_group!(benches, queries, push);
criterion_main!(benches);
