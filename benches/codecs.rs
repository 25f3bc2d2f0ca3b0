//! Decode throughput of every protocol codec (`cargo bench --bench codecs`).
//!
//! Each protocol's codec is first run against its device emulator and the simulated drive, in
//! memory, the way a session runs: `start`, then every 1 ms the drive advances, the device
//! ticks (streams its telemetry), and at the codec's poll interval `poll` runs; whatever the
//! codec writes goes to the device at once and the device's reply is fed back. Set-up commands
//! enable the drive in speed mode at 1500 rpm (the Serial Plotter sketch spins at its own
//! 600 rpm), so the numbers on the wire have realistic digits. Every call into the codec is recorded with its time, its arguments, the bytes it
//! wrote and the samples it produced: a transcript.
//!
//! The benchmark replays the steady-state part of that transcript (about 128 KiB of drive→host
//! bytes, the motor spinning) into a fresh codec brought to the same point by replaying the part
//! before it, which is not timed. Only codec calls are timed: `feed` with the device's bytes in
//! the chunks the device produced them, and the `poll` calls that generate the requests of the
//! request/response protocols (ODrive, VESC, Modbus). A codec is deterministic, so the replay
//! makes the very requests the captured replies answer; this is checked once before timing
//! (every replayed call writes the recorded bytes and yields the recorded number of samples),
//! together with a floor on the samples per byte, so a codec that rejects its input cannot be
//! measured by accident.
//!
//! Streams:
//! * `plotter_labelled`: the Serial Plotter device, `speed_rpm:…,current_a:…,…` lines of five
//!   signals at 1 kHz, one line per read;
//! * `plotter_bare`: the same lines with the labels removed (`600.12,0.153,…`), so fewer bytes;
//! * `simplefoc`: the Commander monitoring stream as the codec selects it (`MMS1101011`: target,
//!   Uq, Iq, velocity, angle, tab-separated, 4 decimals) at 1 kHz, one line per read, with the
//!   codec's state polls;
//! * `odrive`, `odrive_checksum`: replies to the codec's telemetry cycle (`f 0`, `Iq_measured`,
//!   one slow read) and watchdog feeds, without and with ` *NN` checksums;
//! * `vesc`: `COMM_GET_VALUES` replies (79-byte frames) to the codec's requests;
//! * `modbus`: read-register replies to the codec's block reads of the preset map, at 2 Mbaud.
//!
//! Besides criterion's report (throughput in MiB/s), each benchmark prints one line with the
//! derived figures: MB/s (10⁶ bytes; also that of the fastest sample, the least disturbed by
//! other load), samples/s, bytes per sample and the ratio to what a 2 Mbaud 8N1 link delivers
//! (200 000 bytes/s); the target is 100×. The whole run takes about half a minute.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use drivebench::drive::{Command, ControlMode};
use drivebench::protocol::{Codec, CodecError, CodecOut, Protocol};
use drivebench::sim::device::{self, Device};
use drivebench::sim::{SimConfig, SimDrive, TelemetryFrame};

/// The link the codecs are compared against, and the baud rate they are built for.
const LINK_BAUD: u32 = 2_000_000;
/// 8N1: ten bits on the wire per byte.
const LINK_BYTES_PER_S: f64 = LINK_BAUD as f64 / 10.0;
/// Decode speed wanted, as a multiple of the link.
const TARGET_RATIO: f64 = 100.0;
/// Drive→host bytes in the timed part of each transcript.
const SEGMENT_BYTES: usize = 128 * 1024;
/// The capture loop's step, as the emulator's.
const TICK_S: f64 = 0.001;
/// Speed the drive runs at while the timed part is captured.
const SPEED_RPM: f64 = 1500.0;

/// One call into a codec.
#[derive(Debug, Clone)]
enum Call {
    Start,
    Command(Command),
    Feed(Vec<u8>),
    Poll,
}

/// A recorded call with what it produced.
#[derive(Debug, Clone)]
struct Op {
    t_s: f64,
    call: Call,
    tx: Vec<u8>,
    samples: usize,
}

/// The calls of one session; the timed replay starts at `mark`.
struct Transcript {
    protocol: Protocol,
    ops: Vec<Op>,
    mark: usize,
}

impl Transcript {
    fn segment(&self) -> &[Op] {
        &self.ops[self.mark..]
    }

    fn segment_rx_bytes(&self) -> usize {
        rx_bytes(self.segment())
    }

    fn segment_samples(&self) -> usize {
        self.segment().iter().map(|op| op.samples).sum()
    }

    /// A fresh codec brought to the start of the timed part.
    fn prepared_codec(&self, out: &mut CodecOut) -> Box<dyn Codec> {
        let mut codec = self.protocol.codec(LINK_BAUD);
        replay(&mut *codec, &self.ops[..self.mark], out);
        codec
    }
}

fn rx_bytes(ops: &[Op]) -> usize {
    ops.iter().map(|op| if let Call::Feed(bytes) = &op.call { bytes.len() } else { 0 }).sum()
}

fn apply(codec: &mut dyn Codec, call: &Call, t_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
    match call {
        Call::Start => codec.start(t_s, out),
        Call::Command(command) => return codec.command(command, t_s, out),
        Call::Feed(bytes) => codec.feed(bytes, t_s, out),
        Call::Poll => codec.poll(t_s, out),
    }
    Ok(())
}

/// Runs the calls on `codec`, emptying `out` after each as the serial backend does; returns
/// the samples produced.
fn replay(codec: &mut dyn Codec, ops: &[Op], out: &mut CodecOut) -> usize {
    let mut samples = 0;
    for op in ops {
        out.clear();
        let _ = apply(codec, &op.call, op.t_s, out);
        samples += out.samples.len();
    }
    out.clear();
    samples
}

/// A codec talking to its device emulator and the simulated drive, in memory, recording every
/// call into the codec.
struct Session {
    codec: Box<dyn Codec>,
    device: Box<dyn Device>,
    drive: SimDrive,
    ms: u64,
    poll_every_ms: u64,
    frames: Vec<TelemetryFrame>,
    latest: TelemetryFrame,
    ops: Vec<Op>,
}

impl Session {
    fn new(protocol: &Protocol, stream_rate_hz: f64) -> Self {
        let codec = protocol.codec(LINK_BAUD);
        let poll_every_ms = (codec.poll_interval().as_secs_f64() / TICK_S).round().max(1.0) as u64;
        Session {
            codec,
            device: device::for_protocol(protocol, stream_rate_hz),
            drive: SimDrive::new(&SimConfig::default()),
            ms: 0,
            poll_every_ms,
            frames: Vec::new(),
            latest: TelemetryFrame::default(),
            ops: Vec::new(),
        }
    }

    fn now(&self) -> f64 {
        self.ms as f64 * TICK_S
    }

    /// Advances the drive and ticks the device; returns what the device sent by itself.
    fn step(&mut self) -> Vec<u8> {
        self.frames.clear();
        self.drive.advance(TICK_S, &mut self.frames);
        self.ms += 1;
        if let Some(frame) = self.frames.last() {
            self.latest = *frame;
        }
        let mut bytes = Vec::new();
        let now = self.now();
        self.device.tick(now, &mut self.drive, &self.latest, &mut bytes);
        bytes
    }

    /// The device runs for a while before the port opens; what it sends meanwhile is lost.
    fn run_unconnected(&mut self, seconds: f64) {
        for _ in 0..(seconds / TICK_S).round() as u64 {
            self.step();
        }
    }

    /// Calls the codec and records the call.
    fn record(&mut self, call: Call) -> (Result<(), CodecError>, Vec<u8>) {
        let t_s = self.now();
        let mut out = CodecOut::new();
        let result = apply(&mut *self.codec, &call, t_s, &mut out);
        let tx = out.tx.clone();
        self.ops.push(Op { t_s, call, tx: out.tx, samples: out.samples.len() });
        (result, tx)
    }

    /// Calls the codec, then carries bytes both ways until the link is quiet.
    fn call(&mut self, call: Call) -> Result<(), CodecError> {
        let (result, mut tx) = self.record(call);
        for _ in 0..1000 {
            if tx.is_empty() {
                return result;
            }
            let mut reply = Vec::new();
            let now = self.now();
            self.device.receive(&tx, now, &mut self.drive, &mut reply);
            if reply.is_empty() {
                return result;
            }
            tx = self.record(Call::Feed(reply)).1;
        }
        panic!("the link never went quiet");
    }

    fn tick(&mut self) {
        let bytes = self.step();
        if !bytes.is_empty() {
            let _ = self.call(Call::Feed(bytes));
        }
        if self.ms.is_multiple_of(self.poll_every_ms) {
            let _ = self.call(Call::Poll);
        }
    }

    fn run(&mut self, seconds: f64) {
        for _ in 0..(seconds / TICK_S).round() as u64 {
            self.tick();
        }
    }

    fn command(&mut self, command: Command) {
        let what = format!("{command:?}");
        if let Err(e) = self.call(Call::Command(command)) {
            panic!("set-up command {what} refused: {e}");
        }
    }
}

/// Captures a session: connect, enable in speed mode at [`SPEED_RPM`] (for the protocols that
/// control), settle, then telemetry until the timed part holds [`SEGMENT_BYTES`].
fn capture(protocol: Protocol, stream_rate_hz: f64) -> Transcript {
    let mut session = Session::new(&protocol, stream_rate_hz);
    session.run_unconnected(0.05);
    let _ = session.call(Call::Start);
    session.run(0.3);
    if protocol.can_control() {
        session.command(Command::Enable);
        session.run(0.2);
        session.command(Command::SetMode(ControlMode::Speed));
        session.run(0.1);
        session.command(Command::SetSetpoint(ControlMode::Speed, SPEED_RPM));
    }
    session.run(0.5);
    assert!(session.drive.is_enabled(), "{}: the drive is not enabled", protocol.name());
    let speed = session.latest.speed_rpm;
    assert!(speed > 300.0, "{}: the drive is not spinning ({speed:.0} rpm)", protocol.name());
    let mark = session.ops.len();
    while rx_bytes(&session.ops[mark..]) < SEGMENT_BYTES {
        session.run(0.1);
    }
    Transcript { protocol, ops: session.ops, mark }
}

/// The Serial Plotter transcript with the labels taken out of every line: `a:1,b:2` → `1,2`.
/// The lines hold nothing else that is alphabetic.
fn without_labels(labelled: &Transcript) -> Transcript {
    let ops = labelled
        .ops
        .iter()
        .map(|op| {
            let call = match &op.call {
                Call::Feed(bytes) => Call::Feed(
                    bytes
                        .iter()
                        .copied()
                        .filter(|b| !(b.is_ascii_alphabetic() || *b == b'_' || *b == b':'))
                        .collect(),
                ),
                other => other.clone(),
            };
            Op { call, ..op.clone() }
        })
        .collect();
    Transcript { protocol: labelled.protocol.clone(), ops, mark: labelled.mark }
}

/// Replays the whole transcript once into a fresh codec and checks that it behaves as in the
/// captured session (same bytes written, same number of samples at every call), and that the
/// timed part yields samples in proportion to its bytes.
fn check(name: &str, transcript: &Transcript, max_bytes_per_sample: f64) {
    let mut codec = transcript.protocol.codec(LINK_BAUD);
    let mut out = CodecOut::new();
    for (i, op) in transcript.ops.iter().enumerate() {
        out.clear();
        let result = apply(&mut *codec, &op.call, op.t_s, &mut out);
        assert!(result.is_ok(), "{name}: call {i} refused on replay");
        assert_eq!(out.tx, op.tx, "{name}: call {i} at {:.3} s wrote other bytes on replay", op.t_s);
        assert_eq!(out.samples.len(), op.samples, "{name}: call {i} at {:.3} s gave other samples", op.t_s);
    }
    let bytes = transcript.segment_rx_bytes();
    let samples = transcript.segment_samples();
    assert!(samples > 0, "{name}: the timed part yields no samples");
    let per_sample = bytes as f64 / samples as f64;
    assert!(
        per_sample <= max_bytes_per_sample,
        "{name}: {samples} samples from {bytes} bytes ({per_sample:.1} B/sample, at most \
         {max_bytes_per_sample} expected): the codec rejects part of the stream"
    );
}

/// One benchmark: the timed replay of a transcript's steady-state part, then the derived figures.
fn bench_transcript(c: &mut Criterion, name: &str, transcript: &Transcript, max_bytes_per_sample: f64) {
    check(name, transcript, max_bytes_per_sample);
    let bytes = transcript.segment_rx_bytes();
    let samples = transcript.segment_samples();
    let segment = transcript.segment();
    let mut timings: Vec<(u64, Duration)> = Vec::new();

    let mut group = c.benchmark_group("decode");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut out = CodecOut::new();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut codec = transcript.prepared_codec(&mut out);
                let start = Instant::now();
                let produced = replay(&mut *codec, black_box(segment), &mut out);
                total += start.elapsed();
                black_box(produced);
            }
            timings.push((iters, total));
            total
        })
    });
    group.finish();
    report(name, bytes, samples, &timings);
}

/// Prints MB/s, samples/s, bytes per sample and the ratio to the link, from the median time
/// per replay of the measurement samples (the last ten calls; earlier ones are the warm-up),
/// and the fastest sample's MB/s, which other load on the machine disturbs least.
fn report(name: &str, bytes: usize, samples: usize, timings: &[(u64, Duration)]) {
    let mut per_replay: Vec<f64> = timings
        .iter()
        .rev()
        .take(10)
        .filter(|(iters, _)| *iters > 0)
        .map(|(iters, total)| total.as_secs_f64() / *iters as f64)
        .collect();
    // `--test` times a single replay: no measurement.
    if per_replay.len() < 3 {
        return;
    }
    per_replay.sort_by(f64::total_cmp);
    let t = per_replay[per_replay.len() / 2];
    let bytes_per_s = bytes as f64 / t;
    let ratio = bytes_per_s / LINK_BYTES_PER_S;
    eprintln!(
        "decode/{name}: {:.1} MB/s (fastest sample {:.1}), {:.2} M samples/s, {:.1} B/sample, {:.0}× a \
         2 Mbaud link{} ({bytes} bytes, {samples} samples in {:.2} ms)",
        bytes_per_s / 1e6,
        bytes as f64 / per_replay[0] / 1e6,
        samples as f64 / t / 1e6,
        bytes as f64 / samples as f64,
        ratio,
        if ratio < TARGET_RATIO { " — below the 100× target" } else { "" },
        t * 1e3,
    );
}

fn codecs(c: &mut Criterion) {
    let plotter = capture(Protocol::Plotter, 1000.0);
    bench_transcript(c, "plotter_labelled", &plotter, 36.0);
    bench_transcript(c, "plotter_bare", &without_labels(&plotter), 14.0);
    drop(plotter);

    let simplefoc = capture(Protocol::SimpleFoc { motor: 'M' }, 1000.0);
    bench_transcript(c, "simplefoc", &simplefoc, 18.0);
    drop(simplefoc);

    let odrive = capture(Protocol::ODrive { axis: 0, checksum: false }, 0.0);
    bench_transcript(c, "odrive", &odrive, 24.0);
    drop(odrive);

    let odrive = capture(Protocol::ODrive { axis: 0, checksum: true }, 0.0);
    bench_transcript(c, "odrive_checksum", &odrive, 28.0);
    drop(odrive);

    let vesc = capture(Protocol::Vesc { pole_pairs: 7 }, 0.0);
    bench_transcript(c, "vesc", &vesc, 8.0);
    drop(vesc);

    let modbus = capture(Protocol::modbus(1), 0.0);
    bench_transcript(c, "modbus", &modbus, 14.0);
}

criterion_group!(benches, codecs);
criterion_main!(benches);
