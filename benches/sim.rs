//! Benchmark of the simulated drive (`cargo bench --bench sim`): one second of simulated time
//! (20 000 internal steps at 50 µs, 1 000 telemetry frames) in speed mode with the motor
//! turning, so every loop of the cascade runs.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drivebench::drive::ControlMode;
use drivebench::sim::{SimConfig, SimDrive};

fn advance_one_second(c: &mut Criterion) {
    let mut drive = SimDrive::new(&SimConfig::default());
    drive.set_mode(ControlMode::Speed);
    if drive.enable().is_err() {
        panic!("a fresh simulated drive refused to enable");
    }
    drive.set_setpoint(1500.0);
    let mut frames = Vec::with_capacity(2048);
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Elements(20_000));
    g.bench_function("advance_1s_20k_steps", |b| {
        b.iter(|| {
            frames.clear();
            drive.advance(black_box(1.0), &mut frames);
            black_box(frames.len())
        })
    });
    g.finish();
}

criterion_group!(benches, advance_one_second);
criterion_main!(benches);
