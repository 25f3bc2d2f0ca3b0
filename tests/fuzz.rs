//! Hostile input for every decoder of drivebench: the host codecs' [`Codec::feed`] (Serial
//! Plotter, SimpleFOC, ODrive without and with checksums, VESC, Modbus RTU) and the device
//! emulators' [`Device::receive`] (the same five protocols, parsing what a host sends).
//!
//! Each test runs one decoder inside the in-memory loop of `benches/codecs.rs`: the codec talks
//! to its device emulator and the simulated drive, the drive advances 1 ms per step, the device
//! ticks (streams), `poll` runs at the codec's [`Codec::poll_interval`], and whatever one side
//! writes reaches the other at once. The loop first enables the drive in speed mode at 1500 rpm
//! and records the traffic both ways. Then every case hands one hostile input to the decoder
//! under test, split at random points into several calls, either at once or together with the
//! next bytes the other side sends it (before them, in their place, inside them or after them,
//! so that it also meets a parser that waits for a reply or is in the middle of a line or a
//! frame), and lets the loop run 0–3 ms. The inputs:
//! * random bytes, and random bytes from the protocol's alphabet;
//! * recorded traffic, mutated: bit flips, byte changes, insertions, deletions, truncation,
//!   duplicated ranges, two frames spliced;
//! * lines and frames in the protocol's grammar with hostile numbers (`nan`, `inf`, `1e999`,
//!   `1e308`, `0x1p3`, `--1`, `1..2`, hundreds of digits, …), NUL bytes and invalid UTF-8;
//! * binary frames with a correct CRC (CRC-16/XMODEM for VESC, CRC-16/MODBUS) and nonsense
//!   payloads, length fields at their maximum, replies shaped like the one the codec waits for;
//! * long inputs without a line end or frame (1 MB in the fixed set every test starts with).
//!
//! What every test proves, for its decoder:
//! 1. **No panic** on any input, in the decoder or anywhere in the loop after it.
//! 2. **Bounded output**: every call's samples, events and bytes written stay within a fixed
//!    multiple of the bytes it was given (plus a constant), and every sample names a signal of
//!    the codec's list; the codec and the device never answer each other without end.
//! 3. **Finite values**: every sample value and time is finite (and no later than the call),
//!    and so are the values of mode and parameter events; the simulated drive's telemetry stays
//!    finite whatever the device was told.
//! 4. **Bounded memory**: after a warm-up (the fixed set and a tenth of the cases), the heap
//!    held by the test's thread (a counting allocator charges every allocation to the thread
//!    that made it, so tests running in parallel do not disturb each other) may not grow by
//!    more than [`HEAP_GROWTH_LIMIT`] over the remaining cases. The process's resident memory is
//!    printed too.
//! 5. **Resynchronisation**: every [`RESYNC_EVERY`] cases, and at the end, the hostile input
//!    stops and the loop runs on its own: within the decoder's bound of simulated time (see the
//!    tests at the end), speed samples matching the simulated drive's speed must come back, and
//!    stay right for [`CONFIRM_S`]. For a device this also proves that it still answers valid
//!    requests correctly after the garbage.
//!
//! Defects found and not fixed yet are listed in [`KNOWN_DEFECTS`]: a failure that carries one's
//! signature is counted and reported (and the loop built afresh) instead of failing the test.
//! Each has a minimal reproduction among the `#[ignore]`d tests at the end of the file.
//!
//! `DRIVEBENCH_FUZZ_CASES` sets the cases per decoder (default 2000, a few seconds for the
//! whole file in a debug build) and `DRIVEBENCH_FUZZ_SEED` the seed (each test mixes its name
//! in). Everything is deterministic, so a failure, which prints the seed, the case, the kind of
//! input and the input itself (hex, truncated), repeats with the same two variables;
//! `DRIVEBENCH_FUZZ_TRACE=1` also prints the traffic of a failed resynchronisation check. The
//! long run:
//!
//! ```text
//! DRIVEBENCH_FUZZ_CASES=1000000 cargo test --release --test fuzz -- --nocapture
//! ```
//!
//! Each test prints one line: cases and bytes fed per kind of input, the traffic of the loop,
//! resynchronisation times, heap growth, known defects hit, wall time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::any::Any;
use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use drivebench::drive::{Command, ControlMode, Event};
use drivebench::protocol::{Codec, CodecOut, Protocol, vesc};
use drivebench::sim::device::{self, Device};
use drivebench::sim::{SimConfig, SimDrive, TelemetryFrame};

// ---- heap accounting ------------------------------------------------------------------------

/// The system allocator, counting the bytes each thread holds: an allocation is charged to the
/// thread that makes it and credited back to the thread that frees it. A decoder lives on its
/// test's thread from start to end, so that thread's count is the test's heap.
struct ThreadHeap;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn charge(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated besides.
unsafe impl GlobalAlloc for ThreadHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            charge(layout.size() as i64);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            charge(layout.size() as i64);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which got it from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        charge(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            charge(new_size as i64 - layout.size() as i64);
        }
        new
    }
}

#[global_allocator]
static HEAP: ThreadHeap = ThreadHeap;

/// Bytes the current thread holds on the heap.
fn live_heap() -> i64 {
    LIVE.with(Cell::get)
}

/// The most the current thread held since the last [`reset_peak`].
fn peak_heap() -> i64 {
    PEAK.with(Cell::get)
}

fn reset_peak() {
    PEAK.with(|peak| peak.set(live_heap()));
}

/// The process's resident set and its high-water mark, KiB (Linux).
fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(bytes: i64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

// ---- settings ---------------------------------------------------------------------------------

/// Cases per decoder without `DRIVEBENCH_FUZZ_CASES`.
const DEFAULT_CASES: u64 = 2000;
/// Seed without `DRIVEBENCH_FUZZ_SEED`.
const DEFAULT_SEED: u64 = 0x00d2_17eb_e5c4_f00d;
/// The loop's step, as the emulator's.
const TICK_S: f64 = 0.001;
/// Cases between two resynchronisation checks.
const RESYNC_EVERY: u64 = 256;
/// How long after the first right speed sample no wrong one may come (a stream that garbage
/// slowed down may bring none in that time).
const CONFIRM_S: f64 = 0.3;
/// The length of the long inputs of the fixed set: 1 MiB, or 64 KiB in a debug build, where
/// the byte-by-byte decoders are slow.
const LONG_INPUT: usize = if cfg!(debug_assertions) { 1 << 16 } else { 1 << 20 };
/// The longest input of a random case of the long kind (64 KiB, or 8 KiB in a debug build).
const LONG_CASE: usize = if cfg!(debug_assertions) { 1 << 13 } else { 1 << 16 };
/// Heap growth allowed after the warm-up.
const HEAP_GROWTH_LIMIT: i64 = 2 << 20;
/// A speed sample is right within this many rpm of the simulated drive's measured speed, plus
/// [`SPEED_TOLERANCE_REL`] of it (the protocols round: VESC to whole ERPM, Modbus to whole rpm,
/// SimpleFOC to its decimals of rad/s).
const SPEED_TOLERANCE_RPM: f64 = 10.0;
const SPEED_TOLERANCE_REL: f64 = 0.01;
/// Output allowed per call beyond the per-byte share (samples, events, bytes of event text,
/// bytes written). The fixed part also covers what a decoder held back from earlier calls: a
/// VESC frame decoder holds up to two frames and may release a dozen replies at once.
const OUT_SAMPLES_FIXED: usize = 1024;
const OUT_EVENTS_FIXED: usize = 1024;
const OUT_EVENT_BYTES_FIXED: usize = 512 * 1024;
const OUT_EVENT_BYTES_PER_BYTE: usize = 64;
const OUT_TX_FIXED: usize = 4096;
const OUT_TX_PER_BYTE: usize = 16;
/// A device's reply to one call, beyond [`DEVICE_OUT_PER_BYTE`] per byte received (the fixed
/// part covers requests a device held back: a VESC holds up to two frames' worth of them), and
/// what one tick may stream.
const DEVICE_OUT_FIXED: usize = 64 * 1024;
const DEVICE_OUT_PER_BYTE: usize = 64;
const DEVICE_TICK_MAX: usize = 256 * 1024;
/// What the link carries from the device in one 1 ms step: 1 KiB, 10 Mbit/s, more than any
/// serial port of a drive. A stream that garbage made faster (a SimpleFOC `MMD1` and `#255`
/// ask for 20 MB/s) is cut to whole lines within it.
const LINK_BYTES_PER_TICK: usize = 1024;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => {
            let text = text.trim().replace('_', "");
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name} must be a number, not `{text}`"))
        }
        Err(_) => default,
    }
}

// ---- random numbers ---------------------------------------------------------------------------

/// SplitMix64: small, fast, and the same sequence on every platform.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// One of `items`, or (as often as each of them) what `other` draws.
    fn pick_or<T: Copy>(&mut self, items: &[T], other: impl FnOnce(&mut Rng) -> T) -> T {
        let index = self.below(items.len() + 1);
        if index == items.len() { other(self) } else { items[index] }
    }

    /// A float in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A length from a distribution with mostly short and sometimes long inputs.
    fn length(&mut self) -> usize {
        match self.below(100) {
            0..=69 => self.range(1, 32),
            70..=96 => self.range(33, 256),
            _ => self.range(257, 4096),
        }
    }
}

/// FNV-1a, to give every test its own seed.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

// ---- the decoders -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Plotter,
    SimpleFoc,
    ODrive { checksum: bool },
    Vesc,
    Modbus,
}

impl Kind {
    fn protocol(self) -> Protocol {
        match self {
            Kind::Plotter => Protocol::Plotter,
            Kind::SimpleFoc => Protocol::SimpleFoc { motor: 'M' },
            Kind::ODrive { checksum } => Protocol::ODrive { axis: 0, checksum },
            Kind::Vesc => Protocol::Vesc { pole_pairs: 7 },
            Kind::Modbus => Protocol::modbus(1),
        }
    }

    /// Stream rate of the devices that stream. A SimpleFOC sketch streams at 250 lines per second
    /// with the default downsample, so a garbage `MMD1` makes it 12 500.
    fn stream_rate_hz(self) -> f64 {
        match self {
            Kind::Plotter => 1000.0,
            Kind::SimpleFoc => 250.0,
            _ => 0.0,
        }
    }

    /// The longest line the codec keeps (`MAX_LINE`, `MAX_LINE_LEN`, `MAX_REPLY_LEN` in the
    /// codecs).
    fn max_line(self) -> Option<usize> {
        match self {
            Kind::Plotter => Some(4096),
            Kind::SimpleFoc => Some(512),
            Kind::ODrive { .. } => Some(128),
            Kind::Vesc | Kind::Modbus => None,
        }
    }

    fn is_text(self) -> bool {
        !matches!(self, Kind::Vesc | Kind::Modbus)
    }
}

/// Which side's parser is fed the hostile input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    /// [`Codec::feed`]: bytes as if from the drive.
    Host,
    /// [`Device::receive`]: bytes as if from the host.
    Device,
}

#[derive(Debug, Clone, Copy)]
struct Target {
    name: &'static str,
    kind: Kind,
    side: Side,
    /// Simulated time within which right telemetry must be back after a garbage burst.
    resync_bound_s: f64,
}

// ---- the loop ---------------------------------------------------------------------------------

/// What the resynchronisation check has seen of the speed samples since it started.
#[derive(Debug, Default)]
struct Watch {
    /// Since when every speed sample was right, and how many there were.
    good_since_ms: Option<u64>,
    good: u32,
    bad: u32,
    /// The last wrong sample and the drive's speed then.
    last_bad: Option<(f64, f64)>,
}

#[derive(Debug, Default)]
struct LoopStats {
    /// Bytes the device sent the codec in the loop (valid traffic and answers to garbage).
    device_to_host: u64,
    host_to_device: u64,
    samples: u64,
    /// Worst use of the output bound of a call, as a fraction of it.
    worst_out_share: f64,
}

/// A codec and its device emulator on the simulated drive, connected in memory.
struct Link {
    kind: Kind,
    codec: Box<dyn Codec>,
    device: Box<dyn Device>,
    drive: SimDrive,
    ms: u64,
    poll_every_ms: u64,
    frames: Vec<TelemetryFrame>,
    latest: TelemetryFrame,
    signal_count: usize,
    speed_signal: Option<u16>,
    recording: bool,
    rx_corpus: Vec<Vec<u8>>,
    tx_corpus: Vec<Vec<u8>>,
    /// The last bytes the codec wrote, for replies shaped like the one it waits for.
    last_request: Vec<u8>,
    watch: Option<Watch>,
    stats: LoopStats,
    /// Hostile input waiting for the next valid bytes to its side.
    armed: Option<Armed>,
    /// Where hostile input goes and how it is cut.
    rng: Rng,
    /// The codec's last log lines, refusals and states, for a failure's report.
    recent: VecDeque<String>,
    /// The last identity the codec reported after the set-up (a codec reports its drive's
    /// identity when it changes: after the set-up, only a frame that is not the drive's can).
    identity: Option<String>,
    /// Keep the traffic of resynchronisation checks and print that of one that fails
    /// (`DRIVEBENCH_FUZZ_TRACE=1`).
    trace: bool,
    traced: VecDeque<String>,
    /// Signatures of known defects that appeared in the codec's messages since the last
    /// successful resynchronisation check.
    said: Vec<&'static str>,
    /// The longest line the device sent during the resynchronisation check (text protocols).
    longest_line: usize,
    line_run: usize,
    /// During the check: SimpleFOC stream lines, and selections (`MMS…`) the codec sent.
    stream_lines: u32,
    reselections: u32,
}

/// How hostile input joins the valid bytes it travels with.
#[derive(Debug, Clone, Copy)]
enum Splice {
    Before,
    Instead,
    Inside,
    After,
}

#[derive(Debug)]
struct Armed {
    side: Side,
    input: Vec<u8>,
    splice: Splice,
}

/// `bytes` cut at `cuts` (sorted offsets inside it), empty pieces left out.
fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> impl Iterator<Item = &'a [u8]> {
    let ends = cuts.iter().copied().chain(std::iter::once(bytes.len()));
    let starts = std::iter::once(0).chain(cuts.iter().copied());
    starts.zip(ends).map(move |(start, end)| &bytes[start..end]).filter(|piece| !piece.is_empty())
}

/// Recorded chunks kept per direction.
const CORPUS_MAX: usize = 4096;

impl Link {
    fn new(kind: Kind, seed: u64) -> Link {
        let protocol = kind.protocol();
        let codec = protocol.codec(protocol.default_baud());
        let poll_every_ms = (codec.poll_interval().as_secs_f64() / TICK_S).round().max(1.0) as u64;
        let signal_count = codec.signals().len();
        Link {
            kind,
            codec,
            device: device::for_protocol(&protocol, kind.stream_rate_hz()),
            drive: SimDrive::new(&SimConfig::default()),
            ms: 0,
            poll_every_ms,
            frames: Vec::new(),
            latest: TelemetryFrame::default(),
            signal_count,
            speed_signal: None,
            recording: false,
            rx_corpus: Vec::new(),
            tx_corpus: Vec::new(),
            last_request: Vec::new(),
            watch: None,
            stats: LoopStats::default(),
            armed: None,
            rng: Rng(seed),
            recent: VecDeque::new(),
            identity: None,
            trace: std::env::var_os("DRIVEBENCH_FUZZ_TRACE").is_some(),
            said: Vec::new(),
            traced: VecDeque::new(),
            longest_line: 0,
            line_run: 0,
            stream_lines: 0,
            reselections: 0,
        }
    }

    fn now(&self) -> f64 {
        self.ms as f64 * TICK_S
    }

    /// Checks one codec call's output: finite values, known signals, bounded size; and, while
    /// a resynchronisation check runs, compares the speed samples with the drive.
    fn check_out(&mut self, out: &CodecOut, input_len: usize, call: &str) {
        let now = self.now();
        for sample in &out.samples {
            assert!(
                sample.value.is_finite() && sample.t_s.is_finite(),
                "{call} produced a non-finite sample: {sample:?}"
            );
            assert!(
                sample.t_s <= now + 1e-9 && sample.t_s >= now - 1.0,
                "{call} at t = {now} s produced a sample for t = {} s",
                sample.t_s
            );
        }
        if let Some(max) = out.samples.iter().map(|s| usize::from(s.signal)).max()
            && max >= self.signal_count
        {
            self.signal_count = self.codec.signals().len();
            assert!(
                max < self.signal_count,
                "{call} produced a sample of signal {max}, but the codec has {} signals",
                self.signal_count
            );
        }
        let mut event_bytes = 0;
        for event in &out.events {
            event_bytes += event_size(event);
            let text = match event {
                Event::Log(text) | Event::Refused(text) => Some(text.clone()),
                Event::State(state) => Some(format!("state: {}", state.label())),
                Event::Identity(text) if self.speed_signal.is_some() => {
                    self.identity = Some(text.chars().take(80).collect());
                    None
                }
                _ => None,
            };
            if let Some(text) = text {
                for defect in KNOWN_DEFECTS {
                    if text.contains(defect.signature) && !self.said.contains(&defect.signature) {
                        self.said.push(defect.signature);
                    }
                }
                if self.recent.len() == 6 {
                    self.recent.pop_front();
                }
                self.recent.push_back(text.chars().take(200).collect());
            }
            let value = match event {
                Event::Mode { setpoint, .. } => Some(*setpoint),
                Event::ParamValue { value, .. } | Event::ParamWritten { value, .. } => Some(*value),
                Event::EStopSent { latency_s } => Some(*latency_s),
                Event::Samples(samples) => samples.iter().map(|s| s.value).find(|v| !v.is_finite()),
                _ => None,
            };
            if let Some(value) = value {
                assert!(value.is_finite(), "{call} produced an event with a non-finite value: {event:?}");
            }
        }
        let shares = [
            out.samples.len() as f64 / (input_len + OUT_SAMPLES_FIXED) as f64,
            out.events.len() as f64 / (input_len + OUT_EVENTS_FIXED) as f64,
            event_bytes as f64 / (OUT_EVENT_BYTES_PER_BYTE * input_len + OUT_EVENT_BYTES_FIXED) as f64,
            out.tx.len() as f64 / (OUT_TX_PER_BYTE * input_len + OUT_TX_FIXED) as f64,
        ];
        let worst = shares.iter().copied().fold(0.0, f64::max);
        assert!(
            worst <= 1.0,
            "{call} of {input_len} bytes produced {} samples, {} events ({event_bytes} bytes of them) and \
             wrote {} bytes: more than the bound",
            out.samples.len(),
            out.events.len(),
            out.tx.len()
        );
        self.stats.worst_out_share = self.stats.worst_out_share.max(worst);
        self.stats.samples += out.samples.len() as u64;
        if let (Some(watch), Some(speed)) = (&mut self.watch, self.speed_signal) {
            let truth = self.latest.speed_rpm;
            for sample in out.samples.iter().filter(|s| s.signal == speed) {
                let error = (sample.value - truth).abs();
                if error <= SPEED_TOLERANCE_RPM + SPEED_TOLERANCE_REL * truth.abs() {
                    watch.good_since_ms.get_or_insert(self.ms);
                    watch.good += 1;
                } else {
                    watch.good_since_ms = None;
                    watch.good = 0;
                    watch.bad += 1;
                    watch.last_bad = Some((sample.value, truth));
                }
            }
        }
    }

    fn trace_line(&mut self, line: String) {
        if self.traced.len() == 4000 {
            self.traced.pop_front();
        }
        self.traced.push_back(line.chars().take(300).collect());
    }

    /// `codec.feed` with the checks; returns what the codec wrote.
    fn feed_codec(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.recording && self.rx_corpus.len() < CORPUS_MAX {
            self.rx_corpus.push(bytes.to_vec());
        }
        self.stats.device_to_host += bytes.len() as u64;
        if self.watch.is_some() {
            if self.trace {
                self.trace_line(format!("{:.3} drive→host {}", self.now(), printable(bytes)));
            }
            if self.kind == Kind::SimpleFoc {
                let lines = bytes
                    .split(|&b| b == b'\n')
                    .filter(|line| line.first().is_some_and(|b| b.is_ascii_digit() || b"-.nio".contains(b)))
                    .count();
                self.stream_lines += lines as u32;
            }
            for &b in bytes {
                if matches!(b, b'\r' | b'\n') {
                    self.line_run = 0;
                } else {
                    self.line_run += 1;
                    self.longest_line = self.longest_line.max(self.line_run);
                }
            }
        }
        let mut out = CodecOut::new();
        let now = self.now();
        self.codec.feed(bytes, now, &mut out);
        self.check_out(&out, bytes.len(), "Codec::feed");
        out.tx
    }

    /// `device.receive` with the checks; returns the device's reply.
    fn feed_device(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.recording && self.tx_corpus.len() < CORPUS_MAX {
            self.tx_corpus.push(bytes.to_vec());
        }
        self.stats.host_to_device += bytes.len() as u64;
        if self.watch.is_some() {
            if self.trace {
                self.trace_line(format!("{:.3} host→drive {}", self.now(), printable(bytes)));
            }
            if bytes.windows(3).any(|w| w == b"MMS") {
                self.reselections += 1;
            }
        }
        let mut reply = Vec::new();
        let now = self.now();
        self.device.receive(bytes, now, &mut self.drive, &mut reply);
        assert!(
            reply.len() <= DEVICE_OUT_PER_BYTE * bytes.len() + DEVICE_OUT_FIXED,
            "Device::receive of {} bytes answered {} bytes: more than the bound",
            bytes.len(),
            reply.len()
        );
        reply
    }

    /// Hands bytes to the device, with hostile input spliced in if some waits for this side;
    /// returns the device's replies.
    fn deliver_to_device(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        let (bytes, cuts) = self.splice(Side::Device, bytes);
        let mut reply = Vec::new();
        for piece in pieces(&bytes, &cuts) {
            reply.extend(self.feed_device(piece));
        }
        reply
    }

    /// Hands bytes to the codec, with hostile input spliced in if some waits for this side;
    /// returns what the codec wrote.
    fn deliver_to_host(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        let (bytes, cuts) = self.splice(Side::Host, bytes);
        let mut tx = Vec::new();
        for piece in pieces(&bytes, &cuts) {
            tx.extend(self.feed_codec(piece));
        }
        tx
    }

    /// Valid bytes on their way to `side`, combined with the hostile input waiting for it, and
    /// where to cut the result.
    fn splice(&mut self, side: Side, valid: Vec<u8>) -> (Vec<u8>, Vec<usize>) {
        let Some(armed) = self.armed.take_if(|armed| armed.side == side) else {
            return (valid, Vec::new());
        };
        let at = self.rng.below(valid.len() + 1);
        let bytes = match armed.splice {
            Splice::Before => [armed.input, valid].concat(),
            Splice::Instead => armed.input,
            Splice::Inside => [&valid[..at], &armed.input, &valid[at..]].concat(),
            Splice::After => [valid, armed.input].concat(),
        };
        let cuts = cut_points(&mut self.rng, bytes.len());
        (bytes, cuts)
    }

    /// Carries what the codec wrote to the device and the replies back until the link is quiet.
    fn carry(&mut self, mut tx: Vec<u8>) {
        for _ in 0..1000 {
            if tx.is_empty() {
                return;
            }
            self.last_request.clone_from(&tx);
            let reply = self.deliver_to_device(tx);
            if reply.is_empty() {
                return;
            }
            tx = self.deliver_to_host(reply);
        }
        panic!("the codec and the device kept answering each other for 1000 rounds at t = {} s", self.now());
    }

    /// One codec call other than `feed`, checked, with its bytes carried.
    fn call(&mut self, what: &str, f: impl FnOnce(&mut dyn Codec, f64, &mut CodecOut)) {
        let mut out = CodecOut::new();
        let now = self.now();
        f(&mut *self.codec, now, &mut out);
        self.check_out(&out, 0, what);
        self.carry(out.tx);
    }

    /// One millisecond: the drive advances, the device ticks, the codec polls when due.
    fn step(&mut self) {
        self.frames.clear();
        self.drive.advance(TICK_S, &mut self.frames);
        self.ms += 1;
        if let Some(frame) = self.frames.last() {
            self.latest = *frame;
        }
        assert!(
            self.latest.values().iter().all(|v| v.is_finite()),
            "the simulated drive's telemetry is not finite: {:?}",
            self.latest
        );
        let mut bytes = Vec::new();
        let now = self.now();
        self.device.tick(now, &mut self.drive, &self.latest, &mut bytes);
        assert!(bytes.len() <= DEVICE_TICK_MAX, "Device::tick wrote {} bytes in one tick", bytes.len());
        if bytes.len() > LINK_BYTES_PER_TICK {
            // The link carries only so much: a sketch blocked in `Serial.print` prints fewer
            // lines. Whole lines are kept, at least one.
            let first_end = bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| i + 1);
            let budget_end =
                bytes[..LINK_BYTES_PER_TICK].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            bytes.truncate(first_end.max(budget_end));
        }
        if !bytes.is_empty() {
            let tx = self.deliver_to_host(bytes);
            self.carry(tx);
        }
        if self.ms.is_multiple_of(self.poll_every_ms) {
            self.call("Codec::poll", |codec, now, out| codec.poll(now, out));
        }
    }

    fn run(&mut self, seconds: f64) {
        for _ in 0..(seconds / TICK_S).round() as u64 {
            self.step();
        }
    }

    fn command(&mut self, command: Command, required: bool) {
        let mut result = Ok(());
        let what = format!("{command:?}");
        self.call("Codec::command", |codec, now, out| result = codec.command(&command, now, out));
        if let Err(e) = result
            && required
        {
            panic!("set-up command {what} refused: {e}");
        }
    }

    /// Connects and enables the drive in speed mode at 1500 rpm (the Serial Plotter sketch spins
    /// at its own 600 rpm). With `record`, it also reads the parameters, changes the setpoint
    /// and types console lines, recording the traffic both ways.
    fn set_up(&mut self, record: bool) {
        self.recording = record;
        self.run(0.05);
        self.call("Codec::start", |codec, now, out| codec.start(now, out));
        self.run(0.3);
        let control = self.kind.protocol().can_control();
        if control {
            self.command(Command::Enable, true);
            self.run(0.2);
            self.command(Command::SetMode(ControlMode::Speed), true);
            self.run(0.1);
            self.command(Command::SetSetpoint(ControlMode::Speed, 1500.0), true);
        }
        self.run(0.5);
        if record {
            self.command(Command::ReadAllParams, false);
            self.run(0.5);
            if control {
                self.command(Command::SetSetpoint(ControlMode::Speed, 1000.0), true);
                self.run(0.3);
                self.command(Command::SetSetpoint(ControlMode::Speed, 1500.0), true);
            }
            if self.kind == Kind::Plotter {
                // The sketch's own text commands, as a user types them into the console.
                for line in ["speed 700", "stop", "start", "current 0.2", "speed 600"] {
                    self.call("Codec::raw", |codec, now, out| codec.raw(line, now, out));
                    self.run(0.1);
                }
            }
            self.run(1.0);
        }
        self.recording = false;
        assert!(self.drive.is_enabled(), "set-up: the drive is not enabled");
        assert!(
            self.latest.speed_rpm > 300.0,
            "set-up: the drive is not spinning ({:.0} rpm)",
            self.latest.speed_rpm
        );
        self.signal_count = self.codec.signals().len();
        self.speed_signal =
            self.codec.signals().iter().position(|s| s.name == "speed_rpm").map(|index| index as u16);
        assert!(self.speed_signal.is_some(), "set-up: the codec has no speed_rpm signal");
    }

    /// Feeds hostile bytes to the parser on `side`: at once, in pieces; or with the next bytes
    /// the other side sends it (before, in place of, inside or after them), so that the input
    /// also meets a parser waiting for a reply or in the middle of a line or frame.
    fn inject(&mut self, side: Side, input: Vec<u8>) {
        self.flush();
        let splice = match self.rng.below(8) {
            0..=3 => None,
            4 => Some(Splice::Before),
            5 => Some(Splice::Instead),
            6 => Some(Splice::Inside),
            _ => Some(Splice::After),
        };
        match splice {
            Some(splice) => self.armed = Some(Armed { side, input, splice }),
            None => self.feed_now(side, input),
        }
    }

    /// Hostile input that no valid bytes came to carry: fed on its own.
    fn flush(&mut self) {
        if let Some(armed) = self.armed.take() {
            self.feed_now(armed.side, armed.input);
        }
    }

    fn feed_now(&mut self, side: Side, input: Vec<u8>) {
        let cuts = cut_points(&mut self.rng, input.len());
        for piece in pieces(&input, &cuts) {
            match side {
                Side::Host => {
                    let tx = self.feed_codec(piece);
                    self.carry(tx);
                }
                Side::Device => {
                    let reply = self.feed_device(piece);
                    if !reply.is_empty() {
                        let tx = self.deliver_to_host(reply);
                        self.carry(tx);
                    }
                }
            }
        }
    }

    /// Runs the loop without hostile input until right speed samples have come back and stayed
    /// right for [`CONFIRM_S`]; returns how long they took to come back.
    fn resync(&mut self, bound_s: f64) -> Result<f64, String> {
        let start = self.ms;
        let bound_ms = (bound_s / TICK_S).round() as u64;
        let confirm_ms = (CONFIRM_S / TICK_S).round() as u64;
        self.watch = Some(Watch::default());
        self.traced.clear();
        self.longest_line = 0;
        self.stream_lines = 0;
        self.reselections = 0;
        let result = loop {
            self.step();
            let Some(watch) = &self.watch else { unreachable!() };
            if let Some(since) = watch.good_since_ms
                && self.ms - since >= confirm_ms
            {
                // What the codec said before is forgiven once it has recovered.
                self.said.clear();
                break Ok((since - start) as f64 * TICK_S);
            }
            if self.ms - start > bound_ms + confirm_ms {
                let detail = match watch.last_bad {
                    Some((value, truth)) => format!(
                        "{} wrong speed samples, the last {value} rpm while the drive ran at {truth:.1} rpm",
                        watch.bad
                    ),
                    None => "no speed sample at all".to_owned(),
                };
                let since = watch.good_since_ms.map(|since| since - start);
                let mut text = format!(
                    "no right telemetry for {bound_s} s after the hostile input stopped ({detail}; {} right \
                     ones since {since:?} ms); the codec's last messages: {:?}",
                    watch.good, self.recent
                );
                // What hints at a known defect.
                if let Some(identity) = &self.identity {
                    let _ = write!(text, "; after the set-up the codec was told the drive is `{identity}`");
                }
                if !self.said.is_empty() {
                    let _ = write!(text, "; earlier it said {:?}", self.said);
                }
                if let Some(max) = self.kind.max_line()
                    && self.longest_line > max
                {
                    let _ = write!(
                        text,
                        "; the drive sent lines of up to {} bytes, longer than the codec keeps ({max})",
                        self.longest_line
                    );
                }
                if self.stream_lines >= 5 && watch.good == 0 && watch.bad > 0 {
                    let _ = write!(
                        text,
                        "; the drive streamed {} lines and every speed sample taken from them was wrong",
                        self.stream_lines
                    );
                }
                if self.stream_lines >= 5 && watch.good + watch.bad == 0 {
                    let _ = write!(
                        text,
                        "; the drive streamed {} lines and the codec took no sample from them ({} \
                         selections of the variables sent)",
                        self.stream_lines, self.reselections
                    );
                }
                break Err(text);
            }
        };
        self.watch = None;
        result
    }
}

/// Bytes for a trace: text as text, the rest in hex.
fn printable(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        hex(bytes, 512)
    }
}

fn event_size(event: &Event) -> usize {
    32 + match event {
        Event::Log(text) | Event::Refused(text) | Event::Identity(text) | Event::Status(text) => text.len(),
        Event::Signals(list) => list.iter().map(|s| 16 + s.name.len() + s.unit.len()).sum(),
        Event::Params(list) => {
            list.iter().map(|p| 48 + p.key.len() + p.label.len() + p.unit.len() + p.help.len()).sum()
        }
        Event::Samples(samples) => 24 * samples.len(),
        Event::Traffic(chunks) => chunks.iter().map(|c| 16 + c.bytes.len()).sum(),
        Event::ParamValue { key, .. } | Event::ParamWritten { key, .. } => key.len(),
        Event::State(state) => state.label().len(),
        _ => 0,
    }
}

// ---- hostile input ----------------------------------------------------------------------------

/// The families of hostile input, for the statistics and the failure report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gen {
    Fixed,
    Random,
    Alphabet,
    Mutated,
    Grammar,
    Encoding,
    Long,
}

const GENS: [Gen; 7] =
    [Gen::Fixed, Gen::Random, Gen::Alphabet, Gen::Mutated, Gen::Grammar, Gen::Encoding, Gen::Long];

/// Numbers no decoder may turn into a non-finite value or trip over.
const HOSTILE_NUMBERS: &[&str] = &[
    "nan",
    "NaN",
    "NAN",
    "-nan",
    "+nan",
    "nan(123)",
    "inf",
    "-inf",
    "+inf",
    "INF",
    "Infinity",
    "-Infinity",
    "infinity",
    "1e999",
    "-1e999",
    "1e-999",
    "-1e-999",
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "1.8e308",
    "4.9e-324",
    "2.2250738585072014e-308",
    "0x1p3",
    "0x10",
    "0X1P-2",
    "--1",
    "-+1",
    "+-1",
    "++1",
    "1..2",
    "1.2.3",
    "..",
    ".",
    "-",
    "+",
    ".e1",
    "e5",
    "1e",
    "1e+",
    "1e-",
    "1E5",
    "0",
    "-0",
    "+0",
    "-0.0",
    "00000000001",
    "ovf",
    "1,5",
    "1_000",
    "0b101",
    "1.5f",
    "\u{663}",
    "\u{ff11}",
    "\u{2212}1",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "-18446744073709551617",
    "65535",
    "65536",
    "-32769",
    "340282366920938463463374607431768211456",
    "3.4028235e38",
    "3.5e38",
    "-3.5e38",
    "",
];

fn hostile_number(rng: &mut Rng) -> String {
    match rng.below(12) {
        0..=5 => (*rng.pick(HOSTILE_NUMBERS)).to_owned(),
        6 => {
            let sign = if rng.one_in(2) { "-" } else { "" };
            format!("{sign}{}", "9".repeat(rng.range(19, 400)))
        }
        // Around the largest double: 1e300 … 1e320 written out, and the largest one exactly.
        7 => {
            if rng.one_in(2) {
                format!("1{}", "0".repeat(rng.range(300, 320)))
            } else {
                format!("-179769313486231570{}.0", "0".repeat(291))
            }
        }
        8 => format!("0.{}1", "0".repeat(rng.range(300, 340))),
        9 => {
            let alphabet = b"0123456789.-+eExXpP";
            (0..rng.range(1, 12)).map(|_| char::from(*rng.pick(alphabet))).collect()
        }
        _ => plain_number(rng),
    }
}

fn plain_number(rng: &mut Rng) -> String {
    let value = (rng.unit() - 0.5) * 10f64.powi(rng.range(0, 6) as i32);
    format!("{value:.*}", rng.below(7))
}

/// A number that is usually plain and sometimes hostile.
fn some_number(rng: &mut Rng) -> String {
    if rng.one_in(3) { hostile_number(rng) } else { plain_number(rng) }
}

fn line_end(rng: &mut Rng) -> &'static str {
    match rng.below(10) {
        0..=6 => "\r\n",
        7 => "\n",
        8 => "\r",
        _ => "",
    }
}

fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// A Serial Plotter line: labelled or bare fields.
fn plotter_line(rng: &mut Rng) -> String {
    const LABELS: [&str; 9] = [
        "speed_rpm",
        "current_a",
        "position_rev",
        "voltage_v",
        "temperature_c",
        "x",
        "Ünïcödé",
        "a-b",
        "seq",
    ];
    let labelled = !rng.one_in(4);
    let mut line = String::new();
    for i in 0..rng.range(1, 8) {
        if i > 0 {
            line.push_str(rng.pick::<&str>(&[",", " ", "\t", ", ", ",,", ":"]));
        }
        if labelled {
            let label = if rng.one_in(4) {
                (0..rng.range(0, 12)).map(|_| char::from(b'a' + rng.below(26) as u8)).collect()
            } else {
                (*rng.pick(&LABELS)).to_owned()
            };
            let _ = write!(line, "{label}:");
        }
        line.push_str(&some_number(rng));
    }
    line.push_str(line_end(rng));
    line
}

/// A line as a SimpleFOC Commander prints it: monitoring stream, machine-readable replies, and
/// the verbose-mode texts.
fn simplefoc_reply(rng: &mut Rng) -> String {
    let mut line = match rng.below(8) {
        0..=2 => {
            let n = if rng.one_in(4) { rng.range(1, 9) } else { 5 };
            (0..n).map(|_| some_number(rng)).collect::<Vec<_>>().join("\t")
        }
        3 => {
            let key =
                rng.pick(&["", "E", "C", "T", "MS", "MG", "VP", "LC", "LU", "VL", "AL", "QP", "CD", "MD"]);
            format!("M{key}{}", some_number(rng))
        }
        4 => format!("MMG{}", (0..7).map(|_| some_number(rng)).collect::<Vec<_>>().join(";")),
        5 => {
            let text = rng.pick(&[
                "@machine",
                "@on!",
                "on!",
                "off!",
                "MOT: Init",
                "Verb: on!",
                "Warn: \\r detected! ",
                "unknown cmd err",
                "?M:motor",
                "Motion: vel",
                "Torque: foc curr",
                "MC",
                "MT",
                "MCvel",
                "MTvolt",
                "MMS1101011",
                "MMS",
                "Merr",
                "#6",
            ]);
            (*text).to_owned()
        }
        6 => {
            let prefix = rng.pick(&[
                "Target: ",
                "Status: ",
                "Limits| curr: ",
                "PID vel| P: ",
                "Monitor | all: ",
                "Monitor | vel: ",
                "Decimal:",
                "@",
                "#",
            ]);
            format!("{prefix}{}", some_number(rng))
        }
        _ => format!("Monitor | all: {}", (0..7).map(|_| some_number(rng)).collect::<Vec<_>>().join(";")),
    };
    line.push_str(line_end(rng));
    line
}

/// A reply line as ODrive firmware sends it, with a checksum when `checksum` (right, mostly).
fn odrive_reply(rng: &mut Rng, checksum: bool) -> Vec<u8> {
    let text = match rng.below(7) {
        0..=1 => some_number(rng),
        2..=3 => format!("{} {}", some_number(rng), some_number(rng)),
        4 => format!("{} {} {}", some_number(rng), some_number(rng), some_number(rng)),
        5 => (*rng.pick(&[
            "invalid property",
            "unknown command",
            "invalid command format",
            "not implemented",
            "invalid motor 7",
            "invalid motor ",
        ]))
        .to_owned(),
        _ => format!("{}{}", rng.pick(&["", " ", "*", "**", "  "]), some_number(rng)),
    };
    let mut line = text.into_bytes();
    if checksum && !rng.one_in(8) {
        let sum = if rng.one_in(10) { rng.byte() } else { xor(&line) };
        line.extend_from_slice(format!("*{sum}").as_bytes());
    }
    let end = match rng.below(10) {
        0..=5 => "\r\n",
        6 => "\n",
        _ => "",
    };
    line.extend_from_slice(end.as_bytes());
    line
}

/// A Serial Plotter sketch's text command.
fn plotter_command(rng: &mut Rng) -> String {
    let verb = rng.pick(&["speed", "current", "stop", "start", "SPEED", "speed  ", "", "?", "stop now"]);
    let mut line = if rng.one_in(3) { (*verb).to_owned() } else { format!("{verb} {}", some_number(rng)) };
    line.push_str(rng.pick::<&str>(&["\n", "\n", "\r", "\r\n", ""]));
    line
}

/// A SimpleFOC Commander command for motor `M` (and the global ones).
fn simplefoc_command(rng: &mut Rng) -> String {
    const KEYS: [&str; 36] = [
        "", "E", "C", "T", "VP", "VI", "VD", "VR", "VL", "VF", "QP", "QI", "DP", "AP", "AL", "LC", "LU",
        "LV", "MS", "MD", "M#", "MC", "MG", "R", "S", "K", "I", "Z", "WT", "WC", "CD", "CT", "TT", "QF",
        "AF", "X",
    ];
    let mut line = match rng.below(8) {
        0..=4 => format!("M{}{}", rng.pick(&KEYS), some_number(rng)),
        5 => {
            let bits: String = (0..rng.range(0, 9)).map(|_| char::from(*rng.pick(b"0101019/:"))).collect();
            format!("MMS{bits}")
        }
        6 => format!("{}{}", rng.pick(&["#", "@", "?", "M", "MM", "MMG"]), some_number(rng)),
        _ => format!("{}{}", char::from(b'A' + rng.below(26) as u8), some_number(rng)),
    };
    line.push_str(rng.pick::<&str>(&["\n", "\n", "\n", "\r", "\r\n", ""]));
    line
}

/// An ODrive ASCII command, with or without a checksum.
fn odrive_command(rng: &mut Rng) -> Vec<u8> {
    const PATHS: [&str; 14] = [
        "axis0.controller.input_vel",
        "axis0.controller.input_pos",
        "axis0.controller.input_torque",
        "axis0.requested_state",
        "axis0.config.watchdog_timeout",
        "axis0.config.enable_watchdog",
        "axis0.motor.config.current_lim",
        "axis0.motor.config.torque_constant",
        "axis0.controller.config.vel_limit",
        "axis0.controller.config.control_mode",
        "axis0.controller.config.vel_gain",
        "axis0.encoder.config.cpr",
        "vbus_voltage",
        "axis1.requested_state",
    ];
    let n = |rng: &mut Rng| some_number(rng);
    let text = match rng.below(12) {
        0 => format!("v 0 {}", n(rng)),
        1 => format!("v 0 {} {}", n(rng), n(rng)),
        2 => format!("c 0 {} {}", n(rng), n(rng)),
        3 => format!("p 0 {} {} {}", n(rng), n(rng), n(rng)),
        4 => format!("q 0 {} {} {}", n(rng), n(rng), n(rng)),
        5 => format!("t 0 {}", n(rng)),
        6..=7 => format!("w {} {}", rng.pick(&PATHS), n(rng)),
        8 => format!("r {}", rng.pick(&PATHS)),
        9 => format!("{} {}", rng.pick(&["f", "u", "es", "e", "v", "c", "p"]), n(rng)),
        10 => (*rng
            .pick(&["f 0", "u 0", "i", "h", "sc", "ss", "sr", "r", "w", "w axis0.", "r axis0.", "f", ""]))
        .to_owned(),
        _ => format!("{} {} {}", rng.pick(&["w", "r", "v", "p"]), n(rng), n(rng)),
    };
    let mut line = text.into_bytes();
    if rng.one_in(2) {
        if rng.one_in(2) {
            line.push(b' ');
        }
        let sum = if rng.one_in(8) { rng.byte() } else { xor(&line) };
        line.extend_from_slice(format!("*{sum}").as_bytes());
    }
    line.extend_from_slice(rng.pick::<&[u8]>(&[&b"\n"[..], b"\n", b"\r", b"!", b"\r\n", b""]));
    line
}

/// An i32 that is extreme or random, big-endian.
fn wild_i32(rng: &mut Rng) -> [u8; 4] {
    let value = match rng.below(6) {
        0 => i32::MAX,
        1 => i32::MIN,
        2 => 0,
        3 => -1,
        4 => rng.below(20_001) as i32 - 10_000,
        _ => rng.next_u64() as i32,
    };
    value.to_be_bytes()
}

/// A payload of `len` wild bytes: random, or runs of extreme values.
fn wild_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        match rng.below(4) {
            0 => data.extend_from_slice(&wild_i32(rng)),
            1 => data.extend_from_slice(&[0xFF, 0xFF]),
            2 => data.extend_from_slice(&[0x80, 0x00]),
            _ => data.push(rng.byte()),
        }
    }
    data.truncate(len);
    data
}

/// Frames a VESC payload; sometimes damaged (CRC, end byte, cut), sometimes with its length
/// field at the maximum.
fn vesc_frame(rng: &mut Rng, payload: &[u8]) -> Vec<u8> {
    let mut frame = vesc::encode_frame(payload);
    match rng.below(12) {
        0 if !frame.is_empty() => {
            let at = frame.len() - 3;
            frame[at] ^= 1 << rng.below(8);
        }
        1 if !frame.is_empty() => *frame.last_mut().unwrap() = rng.byte(),
        2 if frame.len() > 1 => frame.truncate(rng.below(frame.len())),
        3 => {
            // Length fields at their maximum, with a body that does or does not fill them.
            let mut head = match rng.below(3) {
                0 => vec![3, 0xFF, 0xFF],
                1 => vec![3, 0x02, 0x00],
                _ => vec![2, 0xFF],
            };
            let body = rng.range(0, 600);
            head.extend(rng.bytes(body));
            frame = head;
        }
        _ => {}
    }
    frame
}

/// A VESC payload as a drive sends it, with nonsense in it.
fn vesc_reply_payload(rng: &mut Rng) -> Vec<u8> {
    let id = rng.pick_or(
        &[
            vesc::COMM_GET_VALUES,
            vesc::COMM_GET_VALUES,
            vesc::COMM_GET_VALUES,
            vesc::COMM_FW_VERSION,
            vesc::COMM_PRINT,
            vesc::COMM_SET_MCCONF,
            vesc::COMM_SET_APPCONF,
            vesc::COMM_GET_VALUES_SELECTIVE,
        ],
        Rng::byte,
    );
    let len = match id {
        vesc::COMM_GET_VALUES => {
            rng.pick_or(&[73, 73, 53, 54, 57, 58, 64, 72, 74, 30, 31, 55, 0], |r| r.range(0, 511))
        }
        vesc::COMM_FW_VERSION => rng.range(0, 80),
        _ => rng.range(0, 511),
    };
    let mut payload = vec![id];
    if id == vesc::COMM_FW_VERSION && len >= 2 {
        payload.extend_from_slice(&[*rng.pick(&[0, 1, 2, 3, 5, 6, 255]), rng.byte()]);
        payload.extend(wild_bytes(rng, len - 2));
    } else if id == vesc::COMM_PRINT {
        payload.extend((0..len).map(|_| if rng.one_in(4) { rng.byte() } else { b' ' + rng.below(95) as u8 }));
    } else {
        payload.extend(wild_bytes(rng, len));
    }
    payload
}

/// A VESC payload as a host sends it: SET commands with extreme values and the rest.
fn vesc_request_payload(rng: &mut Rng) -> Vec<u8> {
    let id = rng.pick_or(
        &[
            vesc::COMM_SET_DUTY,
            vesc::COMM_SET_CURRENT,
            vesc::COMM_SET_CURRENT_BRAKE,
            vesc::COMM_SET_RPM,
            vesc::COMM_SET_POS,
            vesc::COMM_ALIVE,
            vesc::COMM_GET_VALUES,
            vesc::COMM_FW_VERSION,
            vesc::COMM_GET_VALUES_SELECTIVE,
            vesc::COMM_SET_MCCONF,
            vesc::COMM_SET_APPCONF,
            vesc::COMM_REBOOT,
            vesc::COMM_FORWARD_CAN,
            vesc::COMM_SET_MCCONF_TEMP,
        ],
        Rng::byte,
    );
    let mut payload = vec![id];
    match rng.below(4) {
        0 | 1 => payload.extend_from_slice(&wild_i32(rng)),
        2 => {
            let len = rng.range(0, 3);
            payload.extend(rng.bytes(len));
        }
        _ => {
            let len = rng.range(0, 511);
            payload.extend(wild_bytes(rng, len));
        }
    }
    if id == vesc::COMM_FORWARD_CAN && rng.one_in(2) {
        // A packet for another unit that holds a SET command.
        payload.truncate(1);
        payload.push(rng.byte());
        payload.push(vesc::COMM_SET_RPM);
        payload.extend_from_slice(&wild_i32(rng));
    }
    payload
}

const MODBUS_CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

/// A Modbus frame with its CRC (right, mostly).
fn modbus_crc(rng: &mut Rng, mut frame: Vec<u8>) -> Vec<u8> {
    let mut crc = MODBUS_CRC.checksum(&frame);
    if rng.one_in(10) {
        crc ^= 1 << rng.below(16);
    }
    frame.extend_from_slice(&crc.to_le_bytes());
    frame
}

fn modbus_unit(rng: &mut Rng) -> u8 {
    *rng.pick(&[1, 1, 1, 1, 1, 1, 0, 2, 247, 248, 255])
}

/// A Modbus frame as a drive sends it: replies shaped like the one awaited, with nonsense
/// values, exceptions, echoes, and unknown functions.
fn modbus_reply(rng: &mut Rng, last_request: &[u8]) -> Vec<u8> {
    let unit = modbus_unit(rng);
    let body = match rng.below(8) {
        0..=2 => match last_request {
            [_, function @ (3 | 4), _, _, hi, lo, ..] => {
                let qty = usize::from(u16::from_be_bytes([*hi, *lo]));
                let count = if rng.one_in(6) { rng.byte() } else { (2 * qty).min(255) as u8 };
                let mut body = vec![unit, *function, count];
                body.extend(wild_bytes(rng, usize::from(count)));
                body
            }
            [_, function @ (6 | 16), a, b, ..] => {
                let mut body = vec![unit, *function, *a, *b];
                body.extend(wild_bytes(rng, 2));
                body
            }
            _ => vec![unit, 3, 2, rng.byte(), rng.byte()],
        },
        3 => {
            let function = rng.pick_or(&[0x83, 0x84, 0x86, 0x90, 0x81, 0xFF], |r| 0x80 | r.byte());
            vec![unit, function, rng.pick_or(&[1, 2, 3, 4, 6, 11], Rng::byte)]
        }
        4 => {
            let count = rng.pick_or(&[0, 1, 2, 254, 255], Rng::byte);
            let mut body = vec![unit, *rng.pick(&[3, 4]), count];
            let len = if rng.one_in(4) { rng.range(0, 255) } else { usize::from(count) };
            body.extend(wild_bytes(rng, len));
            body
        }
        5 => {
            let mut body = vec![unit, *rng.pick(&[5, 6, 15, 16])];
            body.extend(wild_bytes(rng, 4));
            body
        }
        _ => {
            let mut body = vec![unit, rng.byte()];
            let len = rng.range(0, 252);
            body.extend(rng.bytes(len));
            body
        }
    };
    modbus_crc(rng, body)
}

/// A Modbus request as a host sends it: reads and writes anywhere, with extreme quantities,
/// byte counts and values.
fn modbus_request(rng: &mut Rng) -> Vec<u8> {
    let unit = modbus_unit(rng);
    let address =
        |rng: &mut Rng| -> u16 { if rng.one_in(4) { rng.next_u64() as u16 } else { rng.below(0x30) as u16 } };
    let body = match rng.below(6) {
        0 | 1 => {
            let qty: u16 = rng.pick_or(&[0, 1, 2, 4, 19, 36, 125, 126, 0xFFFF], |r| r.next_u64() as u16);
            let mut body = vec![unit, *rng.pick(&[3, 4])];
            body.extend_from_slice(&address(rng).to_be_bytes());
            body.extend_from_slice(&qty.to_be_bytes());
            body
        }
        2 | 3 => {
            let mut body = vec![unit, 6];
            body.extend_from_slice(&address(rng).to_be_bytes());
            let value: u16 = rng.pick_or(&[0, 0x0006, 0x0007, 0x000F, 0x0080, 0x0002, 0xFFFF, 0x8000], |r| {
                r.next_u64() as u16
            });
            body.extend_from_slice(&value.to_be_bytes());
            body
        }
        4 => {
            let qty = rng.pick_or(&[0u16, 1, 2, 4, 123, 124, 0xFFFF], |r| r.below(40) as u16);
            let count = if rng.one_in(4) { rng.byte() } else { (2 * usize::from(qty)).min(255) as u8 };
            let mut body = vec![unit, 16];
            body.extend_from_slice(&address(rng).to_be_bytes());
            body.extend_from_slice(&qty.to_be_bytes());
            body.push(count);
            body.extend(wild_bytes(rng, usize::from(count)));
            body
        }
        _ => {
            let mut body = vec![unit, rng.byte()];
            let len = rng.range(0, 252);
            body.extend(rng.bytes(len));
            body
        }
    };
    modbus_crc(rng, body)
}

/// One input in the decoder's grammar.
fn grammar(rng: &mut Rng, target: &Target, last_request: &[u8]) -> Vec<u8> {
    match (target.side, target.kind) {
        (Side::Host, Kind::Plotter) => plotter_line(rng).into_bytes(),
        (Side::Host, Kind::SimpleFoc) => simplefoc_reply(rng).into_bytes(),
        (Side::Host, Kind::ODrive { checksum }) => {
            let checksum = checksum || rng.one_in(8);
            odrive_reply(rng, checksum)
        }
        (Side::Host, Kind::Vesc) => {
            let payload = vesc_reply_payload(rng);
            vesc_frame(rng, &payload)
        }
        (Side::Host, Kind::Modbus) => modbus_reply(rng, last_request),
        (Side::Device, Kind::Plotter) => plotter_command(rng).into_bytes(),
        (Side::Device, Kind::SimpleFoc) => simplefoc_command(rng).into_bytes(),
        (Side::Device, Kind::ODrive { .. }) => odrive_command(rng),
        (Side::Device, Kind::Vesc) => {
            let payload = vesc_request_payload(rng);
            vesc_frame(rng, &payload)
        }
        (Side::Device, Kind::Modbus) => modbus_request(rng),
    }
}

/// Bytes that mean something in the protocol, for random input that gets further than noise.
fn alphabet(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::Plotter => b"0123456789.-+eE:, \t\r\nabc_speed_rpmnNaIif\0\xFF",
        Kind::SimpleFoc => b"0123456789.-+\t\r\nM@#?:;EC TSGVPLmachineovfrr!\0\xFF",
        Kind::ODrive { .. } => b"0123456789.-+eE *\r\n!vcpqtwrfuiaxs0.1_\0\xFF",
        Kind::Vesc => &[0, 1, 2, 2, 3, 3, 4, 0x04, 0x1E, 0x32, 0xFF, 0x7F, 0x80, 0x15],
        Kind::Modbus => &[0, 1, 1, 1, 2, 3, 3, 4, 5, 6, 0x10, 0x83, 0x86, 0xFF, 0x7F, 0x80, 0x2B, 0x0E],
    }
}

/// Changes a few things in a copy of recorded traffic.
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let start = rng.below(corpus.len());
    let mut data: Vec<u8> =
        corpus[start..corpus.len().min(start + rng.range(1, 3))].iter().flatten().copied().collect();
    for _ in 0..rng.range(1, 4) {
        let len = data.len();
        match rng.below(10) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = rng.byte();
            }
            2 if len > 0 => {
                let at = rng.below(len);
                data[at] = *rng
                    .pick(&[0, 0xFF, 0x7F, 0x80, b'\r', b'\n', 2, 3, b'*', b':', b'\t', b',', b'.', b'-']);
            }
            3 => {
                let at = rng.below(len + 1);
                let n = rng.range(1, 8);
                let insert = rng.bytes(n);
                data.splice(at..at, insert);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = len.min(at + rng.range(1, 8));
                data.drain(at..end);
            }
            5 if len > 0 => data.truncate(rng.below(len)),
            6 if len > 0 => {
                let at = rng.below(len);
                let end = len.min(at + rng.range(1, 64));
                let copy = data[at..end].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, copy);
            }
            7 if len > 0 => {
                // Splice: this chunk's head, another chunk's tail.
                let other = rng.pick(corpus);
                let cut = rng.below(len);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            8 if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                data.swap(a, b);
            }
            _ => {
                let other = rng.pick(corpus).clone();
                data.extend(other);
            }
        }
    }
    data
}

/// Valid traffic with NUL bytes and invalid UTF-8 put in.
fn encoding(rng: &mut Rng, target: &Target, corpus: &[Vec<u8>], last_request: &[u8]) -> Vec<u8> {
    const BAD: [&[u8]; 9] = [
        b"\0",
        b"\0\0\0\0",
        b"\xFF",
        b"\xC0\x80",
        b"\xED\xA0\x80",
        b"\xF4\x90\x80\x80",
        b"\xE2\x82",
        b"\xF0\x9F\x98",
        b"\xFE\xFE\xFF\xFF",
    ];
    let mut data = if rng.one_in(2) { grammar(rng, target, last_request) } else { rng.pick(corpus).clone() };
    for _ in 0..rng.range(1, 3) {
        let at = rng.below(data.len() + 1);
        let bad = rng.pick(&BAD).to_vec();
        data.splice(at..at, bad);
    }
    data
}

/// A long input without a line end or a valid frame, sometimes followed by a line.
fn long(rng: &mut Rng, target: &Target, last_request: &[u8]) -> Vec<u8> {
    let len = rng.range(4096, LONG_CASE);
    let mut data = match rng.below(3) {
        0 => rng.bytes(len),
        1 => (0..len).map(|i| b"0123456789"[i % 10]).collect(),
        _ => vec![*rng.pick(&[0u8, b'1', b'*', 2, 3, 0xFF]); len],
    };
    if target.kind.is_text() {
        data.retain(|b| !matches!(b, b'\r' | b'\n' | b'!'));
    }
    data.extend(grammar(rng, target, last_request));
    data
}

/// One random case.
fn generate(rng: &mut Rng, target: &Target, corpus: &[Vec<u8>], last_request: &[u8]) -> (Gen, Vec<u8>) {
    match rng.below(1000) {
        0..=149 => {
            let len = rng.length();
            (Gen::Random, rng.bytes(len))
        }
        150..=249 => {
            let alphabet = alphabet(target.kind);
            let len = rng.length();
            (Gen::Alphabet, (0..len).map(|_| *rng.pick(alphabet)).collect())
        }
        250..=599 => (Gen::Mutated, mutate(rng, corpus)),
        600..=909 => {
            let mut data = Vec::new();
            for _ in 0..rng.range(1, 4) {
                data.extend(grammar(rng, target, last_request));
            }
            (Gen::Grammar, data)
        }
        910..=995 => (Gen::Encoding, encoding(rng, target, corpus, last_request)),
        _ => (Gen::Long, long(rng, target, last_request)),
    }
}

/// The inputs every test starts with: long inputs of each kind, every hostile number in every
/// text template, and binary frames at their length limits.
fn fixed_inputs(target: &Target) -> Vec<Vec<u8>> {
    let mut rng = Rng(fnv(target.name) ^ 0x5eed);
    let mut inputs: Vec<Vec<u8>> = vec![
        (0..LONG_INPUT).map(|i| b"0123456789"[i % 10]).collect(),
        vec![0; LONG_INPUT],
        rng.bytes(LONG_INPUT).into_iter().filter(|b| !matches!(b, b'\r' | b'\n' | b'!')).collect(),
        vec![0xFF; LONG_INPUT],
    ];
    let numbers: Vec<String> = HOSTILE_NUMBERS
        .iter()
        .map(|n| (*n).to_owned())
        .chain([
            "9".repeat(400),
            format!("1{}", "0".repeat(310)),
            format!("179769313486231570{}", "0".repeat(291)),
            format!("-179769313486231570{}.0", "0".repeat(291)),
            format!("0.{}1", "0".repeat(400)),
        ])
        .collect();
    let text_lines: Vec<String> = match (target.side, target.kind) {
        (Side::Host, Kind::Plotter) => numbers
            .iter()
            .flat_map(|n| {
                [
                    format!("speed_rpm:{n},current_a:{n}\r\n"),
                    format!("{n} {n}\t{n}\r\n"),
                    format!("speed_rpm:1,{n}:{n}\r\n"),
                ]
            })
            .collect(),
        (Side::Host, Kind::SimpleFoc) => numbers
            .iter()
            .flat_map(|n| {
                [
                    format!("{n}\t{n}\t{n}\t{n}\t{n}\r\n"),
                    format!("1\t2\t3\t{n}\t5\r\n"),
                    format!("M{n}\r\n"),
                    format!("ME{n}\r\n"),
                    format!("MVP{n}\r\n"),
                    format!("MMG{n};{n};{n};{n};{n};{n};{n}\r\n"),
                    format!("Target: {n}\r\n"),
                ]
            })
            .collect(),
        (Side::Host, Kind::ODrive { checksum }) => numbers
            .iter()
            .flat_map(|n| [n.clone(), format!("{n} {n}"), format!("0 {n}"), format!("{n} 0")])
            .map(|text| {
                if checksum { format!("{text}*{}\r\n", xor(text.as_bytes())) } else { format!("{text}\r\n") }
            })
            .collect(),
        (Side::Device, Kind::Plotter) => {
            numbers.iter().flat_map(|n| [format!("speed {n}\n"), format!("current {n}\n")]).collect()
        }
        (Side::Device, Kind::SimpleFoc) => numbers
            .iter()
            .flat_map(|n| {
                ["M", "MVP", "MLC", "MLU", "MLV", "MMD", "MM#", "#", "@", "MC", "MT", "ME", "MAL", "MVR"]
                    .map(|key| format!("{key}{n}\n"))
            })
            .collect(),
        (Side::Device, Kind::ODrive { .. }) => numbers
            .iter()
            .flat_map(|n| {
                [
                    format!("v 0 {n} {n}\n"),
                    format!("c 0 {n} {n}\n"),
                    format!("p 0 {n} {n} {n}\n"),
                    format!("q 0 {n} {n} {n}\n"),
                    format!("t 0 {n}\n"),
                    format!("w axis0.controller.input_vel {n}\n"),
                    format!("w axis0.motor.config.current_lim {n}\n"),
                    format!("w axis0.config.watchdog_timeout {n}\n"),
                    format!("w axis0.controller.config.vel_limit {n}\n"),
                    format!("w axis0.controller.config.control_mode {n}\n"),
                    format!("es 0 {n}\n"),
                ]
            })
            .collect(),
        _ => Vec::new(),
    };
    // Each line on its own, so that a line's effect does not hide the next one's.
    inputs.extend(text_lines.into_iter().map(String::into_bytes));
    match (target.side, target.kind) {
        (Side::Host, Kind::Vesc) | (Side::Device, Kind::Vesc) => {
            for id in 0..=255u8 {
                for len in [0, 1, 4, 53, 73, 255, 256, 511] {
                    let mut payload = vec![id];
                    payload.extend(wild_bytes(&mut rng, len));
                    inputs.push(vesc::encode_frame(&payload));
                }
            }
            inputs.push([vec![3, 0xFF, 0xFF], rng.bytes(2048)].concat());
            inputs.push([vec![3, 0x02, 0x01], rng.bytes(2048)].concat());
            inputs.push([2u8, 0xFF].repeat(LONG_INPUT / 256));
            inputs.push([3u8, 0x02, 0x00].repeat(LONG_INPUT / 256));
        }
        (Side::Host, Kind::Modbus) => {
            for function in 0..=255u8 {
                for len in [0, 1, 2, 3, 252] {
                    let mut body = vec![1, function];
                    body.extend(wild_bytes(&mut rng, len));
                    let frame = modbus_crc(&mut Rng(u64::from(function)), body);
                    inputs.push(frame);
                }
            }
            inputs.push([1u8, 3, 0xFF].repeat(LONG_INPUT / 256));
        }
        (Side::Device, Kind::Modbus) => {
            for function in 0..=255u8 {
                for len in [0, 1, 4, 5, 252] {
                    let mut body = vec![1, function];
                    body.extend(wild_bytes(&mut rng, len));
                    let frame = modbus_crc(&mut Rng(u64::from(function)), body);
                    inputs.push(frame);
                }
            }
            for qty in [0u16, 125, 126, 0xFFFF] {
                inputs.push(modbus_crc(&mut Rng(1), [vec![1, 3, 0, 0], qty.to_be_bytes().to_vec()].concat()));
            }
            inputs.push(modbus_crc(
                &mut Rng(1),
                [vec![1, 16, 0, 0, 0x00, 0x7F, 0xFE], vec![0xFF; 254]].concat(),
            ));
            inputs.push([1u8, 16, 0, 0, 0, 0x7B, 0xF6].repeat(LONG_INPUT / 256));
        }
        _ => {}
    }
    inputs
}

/// Where to split an input into pieces: mostly a few pieces, sometimes every byte.
fn cut_points(rng: &mut Rng, len: usize) -> Vec<usize> {
    if len < 2 {
        return Vec::new();
    }
    let pieces = match rng.below(20) {
        0..=7 => 1,
        8..=15 => rng.range(2, 4),
        16..=18 => rng.range(5, 16),
        _ if len <= 64 => len,
        _ => rng.range(17, 64),
    };
    if pieces >= len {
        return (1..len).collect();
    }
    let mut cuts: Vec<usize> = (1..pieces).map(|_| rng.range(1, len - 1)).collect();
    cuts.sort_unstable();
    cuts
}

// ---- the run ----------------------------------------------------------------------------------

fn hex(bytes: &[u8], max: usize) -> String {
    let mut text: String = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > max {
        let _ = write!(text, "… ({} bytes in all)", bytes.len());
    }
    text
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else {
        "a panic without a message".to_owned()
    }
}

#[derive(Default)]
struct GenStats {
    cases: u64,
    bytes: u64,
}

/// A defect this harness found that is not fixed yet. Each has a minimal reproduction among
/// the `#[ignore]`d tests at the end of this file. While it is listed, a failure of its test
/// whose message contains `signature` is counted and reported instead of failing the test,
/// and the loop is built afresh to go on. Once the defect is fixed, delete its entry and the
/// `#[ignore]` of its reproduction.
struct Defect {
    target: &'static str,
    signature: &'static str,
    reproduction: &'static str,
}

const KNOWN_DEFECTS: &[Defect] = &[];

fn known_defect(target: &str, text: &str) -> Option<usize> {
    KNOWN_DEFECTS.iter().position(|d| d.target == target && text.contains(d.signature))
}

thread_local! {
    /// The test running on this thread, while a case runs: its known defects' panics are
    /// expected and not printed.
    static RUNNING: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Keeps the panic messages of known defects off the output (there may be thousands); every
/// other panic is printed as usual.
fn quiet_known_defects() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let known = RUNNING.with(Cell::get).is_some_and(|target| {
                known_defect(target, info.payload_as_str().unwrap_or_default()).is_some()
            });
            if !known {
                default(info);
            }
        }));
    });
}

/// One decoder's fuzzing run.
struct Run {
    target: Target,
    base_seed: u64,
    seed: u64,
    cases: u64,
    rng: Rng,
    link: Link,
    corpus: Vec<Vec<u8>>,
    by_gen: Vec<GenStats>,
    resyncs: u64,
    resync_max_s: f64,
    resync_sum_s: f64,
    /// Hits of each known defect and the first case that hit it.
    defects: Vec<(u64, Option<String>)>,
    /// The last case, for a resynchronisation failure's report.
    last_case: Option<(String, Gen, Vec<u8>)>,
}

impl Run {
    fn context(&self, case: &str, family: Gen, input: &[u8]) -> String {
        format!(
            "{}: case {case} ({family:?} input) at t = {:.3} s, seed {:#x} (DRIVEBENCH_FUZZ_SEED={:#x} \
             DRIVEBENCH_FUZZ_CASES={} cargo test{} --test fuzz {} repeats it)\ninput: {}",
            self.target.name,
            self.link.now(),
            self.seed,
            self.base_seed,
            self.cases,
            // The long inputs are shorter in a debug build.
            if cfg!(debug_assertions) { "" } else { " --release" },
            self.target.name,
            hex(input, 256)
        )
    }

    /// A failure: counted if it is a known defect (and the loop built afresh), else the test
    /// fails with the case that caused it.
    fn failed(&mut self, text: String, case: &str, family: Gen, input: &[u8]) {
        if let Some(index) = known_defect(self.target.name, &text) {
            let (hits, first) = &mut self.defects[index];
            *hits += 1;
            first.get_or_insert_with(|| format!("case {case} ({family:?}): {}", hex(input, 48)));
            let stats = std::mem::take(&mut self.link.stats);
            self.link = Link::new(self.target.kind, self.rng.next_u64());
            self.link.set_up(false);
            self.link.stats = stats;
            return;
        }
        if self.link.trace {
            for line in &self.link.traced {
                eprintln!("{line}");
            }
        }
        let context = self.context(case, family, input);
        panic!("{text}\n{context}");
    }

    fn case(&mut self, case: String, family: Gen, input: Vec<u8>) {
        let steps = self.rng.below(4);
        let (link, side) = (&mut self.link, self.target.side);
        let copy = input.clone();
        RUNNING.with(|running| running.set(Some(self.target.name)));
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            link.inject(side, copy);
            for _ in 0..steps {
                link.step();
            }
            link.flush();
        }));
        RUNNING.with(|running| running.set(None));
        if let Err(payload) = result {
            self.failed(panic_text(&*payload), &case, family, &input);
        }
        let stats = &mut self.by_gen[GENS.iter().position(|g| *g == family).unwrap_or(0)];
        stats.cases += 1;
        stats.bytes += input.len() as u64;
        self.last_case = Some((case, family, input));
    }

    fn resync(&mut self) {
        let bound = self.target.resync_bound_s;
        let link = &mut self.link;
        RUNNING.with(|running| running.set(Some(self.target.name)));
        let result = panic::catch_unwind(AssertUnwindSafe(|| link.resync(bound)));
        RUNNING.with(|running| running.set(None));
        let failure = match result {
            Ok(Ok(seconds)) => {
                self.resyncs += 1;
                self.resync_max_s = self.resync_max_s.max(seconds);
                self.resync_sum_s += seconds;
                if seconds <= bound {
                    return;
                }
                format!("telemetry came back only after {seconds:.3} s (bound {bound} s)")
            }
            Ok(Err(text)) => text,
            Err(payload) => format!("while resynchronising: {}", panic_text(&*payload)),
        };
        let (case, family, input) = self.last_case.clone().unwrap_or(("-".into(), Gen::Fixed, Vec::new()));
        self.failed(format!("{failure}\nafter the case below"), &case, family, &input);
    }
}

fn fuzz(target: Target) {
    quiet_known_defects();
    let wall = Instant::now();
    let cases = env_u64("DRIVEBENCH_FUZZ_CASES", DEFAULT_CASES);
    let base_seed = env_u64("DRIVEBENCH_FUZZ_SEED", DEFAULT_SEED);
    let seed = base_seed ^ fnv(target.name);
    let rss_start = rss_kib();
    let mut rng = Rng(seed);
    let mut link = Link::new(target.kind, rng.next_u64());
    link.set_up(true);
    let corpus = match target.side {
        Side::Host => std::mem::take(&mut link.rx_corpus),
        Side::Device => {
            let mut corpus = std::mem::take(&mut link.tx_corpus);
            if let Kind::ODrive { checksum } = target.kind {
                // Requests with and without checksums.
                let mut other = Link::new(Kind::ODrive { checksum: !checksum }, rng.next_u64());
                other.set_up(true);
                corpus.extend(other.tx_corpus);
            }
            corpus
        }
    };
    link.rx_corpus = Vec::new();
    link.tx_corpus = Vec::new();
    assert!(corpus.len() >= 4, "{}: only {} chunks of traffic recorded", target.name, corpus.len());
    let set_up_traffic = (link.stats.device_to_host, link.stats.host_to_device);
    let mut run = Run {
        target,
        base_seed,
        seed,
        cases,
        rng,
        link,
        corpus,
        by_gen: GENS.iter().map(|_| GenStats::default()).collect(),
        resyncs: 0,
        resync_max_s: 0.0,
        resync_sum_s: 0.0,
        defects: KNOWN_DEFECTS.iter().map(|_| (0, None)).collect(),
        last_case: None,
    };

    for (i, input) in fixed_inputs(&target).into_iter().enumerate() {
        run.case(format!("fixed {i}"), Gen::Fixed, input);
        if (i + 1) % RESYNC_EVERY as usize == 0 {
            run.resync();
        }
    }
    run.resync();

    let warm_up = (cases / 10).max(1).min(cases);
    let mut baseline = None;
    if cases == 0 {
        baseline = Some(live_heap());
        reset_peak();
    }
    for case in 0..cases {
        let (family, input) = generate(&mut run.rng, &target, &run.corpus, &run.link.last_request);
        run.case(case.to_string(), family, input);
        if (case + 1) % RESYNC_EVERY == 0 {
            run.resync();
        }
        if case + 1 == warm_up {
            run.resync();
            run.last_case = None;
            baseline = Some(live_heap());
            reset_peak();
        }
    }
    run.resync();
    run.last_case = None;
    let baseline = baseline.unwrap_or_else(live_heap);
    let (end, peak) = (live_heap(), peak_heap());
    let growth = end - baseline;
    let rss_end = rss_kib();

    let stats = &run.link.stats;
    let fed: u64 = run.by_gen.iter().map(|g| g.bytes).sum();
    let families: Vec<String> = GENS
        .iter()
        .zip(&run.by_gen)
        .map(|(family, s)| format!("{family:?} {}/{:.1} MB", s.cases, s.bytes as f64 / 1e6))
        .collect();
    let rss = match (rss_start, rss_end) {
        (Some((start, _)), Some((end, hwm))) => format!(
            "process RSS {:.1} → {:.1} MiB (high-water mark {:.1}, all tests together)",
            start as f64 / 1024.0,
            end as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
        _ => "process RSS unknown".to_owned(),
    };
    let defects: Vec<String> = KNOWN_DEFECTS
        .iter()
        .zip(&run.defects)
        .filter(|(_, (hits, _))| *hits > 0)
        .map(|(d, (hits, first))| {
            format!(
                "`{}` ×{hits} (first {}; see {})",
                d.signature,
                first.as_deref().unwrap_or("-"),
                d.reproduction
            )
        })
        .collect();
    eprintln!(
        "{}: {} cases + {} fixed inputs, {:.1} MB of hostile input ({}); loop traffic {:.1} MB \
         drive→host, {:.1} MB host→drive (set-up {:.2}/{:.2} MB), {} samples checked; {} resync checks, \
         right telemetry back within {:.3} s at most, {:.3} s on average (bound {} s); heap of the test \
         thread {} after the warm-up, {} at the end ({:+} bytes; peak {} above the warm-up); worst call \
         used {:.0}% of its output bound; {rss}; known defects: {}; {:.1} s",
        target.name,
        cases,
        run.by_gen[0].cases,
        fed as f64 / 1e6,
        families.join(", "),
        stats.device_to_host as f64 / 1e6,
        stats.host_to_device as f64 / 1e6,
        set_up_traffic.0 as f64 / 1e6,
        set_up_traffic.1 as f64 / 1e6,
        stats.samples,
        run.resyncs,
        run.resync_max_s,
        run.resync_sum_s / run.resyncs.max(1) as f64,
        target.resync_bound_s,
        mib(baseline),
        mib(end),
        growth,
        mib(peak - baseline),
        stats.worst_out_share * 100.0,
        if defects.is_empty() { "none hit".to_owned() } else { defects.join(", ") },
        wall.elapsed().as_secs_f64(),
    );
    assert!(
        growth <= HEAP_GROWTH_LIMIT,
        "{}: the heap grew by {growth} bytes over {} cases after the warm-up (limit {HEAP_GROWTH_LIMIT})",
        target.name,
        cases - warm_up
    );
}

// ---- one test per decoder ---------------------------------------------------------------------
//
// The resynchronisation bounds follow from each protocol's timing:
// * Serial Plotter, 0.1 s: the sketch prints a line every millisecond, and a garbage burst
//   costs at most the line it joins;
// * SimpleFOC host, 3 s: a stream of the wrong width is selected again at most every 2 s;
// * SimpleFOC device, 6 s: a garbage `@0` or `@1` (verbose mode) costs three reply timeouts of
//   0.5 s, one per status poll, before `@3` is sent again, and a stream switched off another
//   second before `MMG7` polling starts;
// * ODrive, 1.5 s: a reply timeout (0.25 s) and the pause after it (0.1 s), up to four times
//   before the codec declares the drive lost;
// * VESC, 2 s: a long-frame header from noise holds the codec's decoder for up to 518 bytes,
//   seven replies, each after a 0.1 s timeout; at the drive the codec completes such a frame
//   with 518 zero bytes at its second timeout in a row;
// * Modbus, 1.5 s host and 2 s device: a 0.2 s response timeout and two retries, and the
//   device's 4 ms silence before it resolves a frame of unknown length.

#[test]
fn fuzz_plotter_host() {
    fuzz(Target { name: "fuzz_plotter_host", kind: Kind::Plotter, side: Side::Host, resync_bound_s: 0.1 });
}

#[test]
fn fuzz_simplefoc_host() {
    fuzz(Target {
        name: "fuzz_simplefoc_host",
        kind: Kind::SimpleFoc,
        side: Side::Host,
        resync_bound_s: 3.0,
    });
}

#[test]
fn fuzz_odrive_host() {
    fuzz(Target {
        name: "fuzz_odrive_host",
        kind: Kind::ODrive { checksum: false },
        side: Side::Host,
        resync_bound_s: 1.5,
    });
}

#[test]
fn fuzz_odrive_checksum_host() {
    fuzz(Target {
        name: "fuzz_odrive_checksum_host",
        kind: Kind::ODrive { checksum: true },
        side: Side::Host,
        resync_bound_s: 1.5,
    });
}

#[test]
fn fuzz_vesc_host() {
    fuzz(Target { name: "fuzz_vesc_host", kind: Kind::Vesc, side: Side::Host, resync_bound_s: 2.0 });
}

#[test]
fn fuzz_modbus_host() {
    fuzz(Target { name: "fuzz_modbus_host", kind: Kind::Modbus, side: Side::Host, resync_bound_s: 1.5 });
}

#[test]
fn fuzz_plotter_device() {
    fuzz(Target {
        name: "fuzz_plotter_device",
        kind: Kind::Plotter,
        side: Side::Device,
        resync_bound_s: 0.1,
    });
}

#[test]
fn fuzz_simplefoc_device() {
    fuzz(Target {
        name: "fuzz_simplefoc_device",
        kind: Kind::SimpleFoc,
        side: Side::Device,
        resync_bound_s: 6.0,
    });
}

#[test]
fn fuzz_odrive_device() {
    fuzz(Target {
        name: "fuzz_odrive_device",
        kind: Kind::ODrive { checksum: false },
        side: Side::Device,
        resync_bound_s: 1.5,
    });
}

#[test]
fn fuzz_vesc_device() {
    fuzz(Target { name: "fuzz_vesc_device", kind: Kind::Vesc, side: Side::Device, resync_bound_s: 2.0 });
}

#[test]
fn fuzz_modbus_device() {
    fuzz(Target { name: "fuzz_modbus_device", kind: Kind::Modbus, side: Side::Device, resync_bound_s: 2.0 });
}

// ---- reproductions of the defects found ---------------------------------------------------------
//
// Each is the smallest input that showed a defect the fuzzing tests found (or a slow recovery),
// with the fix in its comment: they keep the fixes in place.

/// Runs a codec against a scripted drive for `seconds`: every line the codec writes is answered
/// with `answer(line)` (and `\r\n`) at once. Returns every sample and event.
fn scripted(
    protocol: &Protocol,
    seconds: f64,
    mut answer: impl FnMut(&str) -> Option<String>,
) -> (Vec<drivebench::drive::Sample>, Vec<Event>) {
    let mut codec = protocol.codec(protocol.default_baud());
    let (mut samples, mut events) = (Vec::new(), Vec::new());
    let mut out = CodecOut::new();
    codec.start(0.0, &mut out);
    for ms in 0..(seconds / TICK_S).round() as u64 {
        let now = ms as f64 * TICK_S;
        if ms > 0 {
            codec.poll(now, &mut out);
        }
        for _ in 0..100 {
            samples.append(&mut out.samples);
            events.append(&mut out.events);
            if out.tx.is_empty() {
                break;
            }
            let text = String::from_utf8_lossy(&std::mem::take(&mut out.tx)).into_owned();
            let reply: String = text
                .split('\n')
                .filter(|line| !line.is_empty())
                .filter_map(&mut answer)
                .map(|line| format!("{line}\r\n"))
                .collect();
            codec.feed(reply.as_bytes(), now, &mut out);
        }
    }
    (samples, events)
}

/// The largest finite double written out in full (309 digits).
fn largest_double() -> String {
    format!("179769313486231570{}", "0".repeat(291))
}

fn non_finite_events(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| match e {
            Event::Mode { setpoint: v, .. }
            | Event::ParamValue { value: v, .. }
            | Event::ParamWritten { value: v, .. } => !v.is_finite(),
            _ => false,
        })
        .collect()
}

/// `ODriveCodec::feedback` checks that the velocity is finite and then multiplies it by 60: a
/// reply `0 1.7976931348623157e308` to `f 0` becomes a speed sample of +inf. Fix: check the
/// product, `let speed = velocity * 60.0; if speed.is_finite() { … }`.
#[test]
fn odrive_velocity_near_the_largest_double_is_no_sample() {
    let (samples, _) = scripted(&Protocol::ODrive { axis: 0, checksum: false }, 1.0, |line| {
        if line.starts_with("f ") {
            Some("0 1.7976931348623157e308".into())
        } else {
            line.starts_with("r ").then(|| "0".into())
        }
    });
    assert!(samples.iter().any(|s| s.signal == 2), "the position of the `f` reply was not taken");
    let bad: Vec<_> = samples.iter().filter(|s| !s.value.is_finite()).collect();
    assert!(bad.is_empty(), "non-finite samples: {bad:?}");
}

/// `ODriveCodec::report_mode` checks that the velocity setpoint (turn/s) is finite and then
/// multiplies it by 60: an `input_vel` near the largest double is reported as a mode with an
/// infinite setpoint. Fix: check `setpoint.is_finite()` after the conversion.
#[test]
fn odrive_velocity_setpoint_near_the_largest_double_is_no_mode() {
    let (_, events) = scripted(&Protocol::ODrive { axis: 0, checksum: false }, 1.0, |line| match line {
        "r axis0.controller.config.control_mode" => Some("2".into()),
        "r axis0.controller.input_vel" => Some("1.7976931348623157e308".into()),
        _ if line.starts_with("f ") => Some("0 0".into()),
        _ => line.starts_with("r ").then(|| "0".into()),
    });
    let bad = non_finite_events(&events);
    assert!(bad.is_empty(), "non-finite values in events: {bad:?}");
}

/// `SimpleFocCodec` checks numbers with `parse_number` (finite) and converts them afterwards
/// without a check: a target near the largest double, in rad/s, becomes an infinite setpoint in
/// rpm (`update_mode` → `to_canonical`), and a velocity limit such as `AL` an infinite
/// parameter value (`handle_param`, `raw * RPM_PER_RAD_S`). Fix: refuse a converted value that
/// is not finite, in `update_mode` and in `handle_param` (as the read of a non-number is).
#[test]
fn simplefoc_values_near_the_largest_double_are_not_reported() {
    let huge = largest_double();
    let mut sent_limit = false;
    let (_, events) = scripted(&Protocol::SimpleFoc { motor: 'M' }, 1.0, |line| match line {
        "@3" => Some("@machine".into()),
        "#6" => Some("#6".into()),
        "MMS1101011" => Some("MMS1101011".into()),
        "MT" => Some("MTfoc curr".into()),
        "MC" => Some("MCvel".into()),
        "M" => Some(format!("M{huge}")),
        "ME" if !sent_limit => {
            sent_limit = true;
            Some(format!("ME1\r\nMAL-{huge}"))
        }
        "ME" => Some("ME1".into()),
        _ => None,
    });
    let bad = non_finite_events(&events);
    assert!(bad.is_empty(), "non-finite values in events: {bad:?}");
}

/// The SimpleFOC device emulator computes Uq as `(…).clamp(-lim, lim)` with `lim` the voltage
/// limit, which `MLU nan` sets to NaN: the next monitoring line panics ("min > max, or either
/// was NaN"). The library's `_constrain` is `(x < lo) ? lo : ((x > hi) ? hi : x)`, which lets x
/// through with a NaN limit. Fix in `state_values`: `let uq = if raw < -lim { -lim } else if
/// raw > lim { lim } else { raw };` (or refuse a NaN limit in `update_voltage_limit`).
#[test]
fn simplefoc_device_streams_with_a_nan_voltage_limit() {
    let mut drive = SimDrive::new(&SimConfig::default());
    let mut device = device::for_protocol(&Protocol::SimpleFoc { motor: 'M' }, 1000.0);
    let mut out = Vec::new();
    device.receive(b"ME1\nMLUnan\n", 0.0, &mut drive, &mut out);
    let mut frames = Vec::new();
    drive.advance(0.01, &mut frames);
    let frame = frames.last().copied().unwrap_or_default();
    device.tick(0.01, &mut drive, &frame, &mut out);
    assert!(!out.is_empty());
}

/// When the drive's decimal places change (`#200`, typed on a console or hit by noise), every
/// `MMG7` reply is longer than the codec's 512-byte line limit and is dropped. Without a
/// monitoring stream the codec polls `MMG7` forever: `ME` is still answered, so three timeouts
/// in a row never happen and `#6` is never sent again. Fix: count `MonitorAll` timeouts (or
/// line overflows of the splitter) and send `#6` again after two in a row.
#[test]
fn simplefoc_polling_survives_many_decimal_places() {
    let mut link = Link::new(Kind::SimpleFoc, 7);
    link.set_up(false);
    link.feed_now(Side::Device, b"#200\nMMD0\n".to_vec());
    let result = link.resync(6.0);
    assert!(result.is_ok(), "{result:?}");
}

/// `SimpleFocCodec::handle_stream` selects the variables again only at the fifth mismatching
/// line in a row (`stream_mismatches == 5`). If that selection is skipped (one sent less than
/// 2 s before) or lost, the count passes 5 and nothing is ever selected again; the mismatching
/// lines keep the stream "alive", so `MMG7` polling never starts either. The mismatch comes
/// from the drive (its variables changed, by a console line or noise) or from the host side: a
/// stray `MMS…` line is taken as the bitmap even when no `MMS` is in flight. Fix: `if
/// self.stream_mismatches >= 5 { self.reselect_stream(now_s, out) }` (keeping the log at 5),
/// and take a bitmap only from the reply to a request.
#[test]
fn simplefoc_stream_is_selected_again_after_a_refused_reselection() {
    let mut link = Link::new(Kind::SimpleFoc, 7);
    link.set_up(false);
    for _ in 0..2 {
        // The sketch's variables change and the codec does not see the reply.
        let mut lost = Vec::new();
        let now = link.now();
        link.device.receive(b"MMS1100000\n", now, &mut link.drive, &mut lost);
        link.run(0.2);
    }
    let result = link.resync(6.0);
    assert!(result.is_ok(), "{result:?}");
}

/// `SimpleFocCodec` reads the stream by the bitmap it last saw in an `MMS` reply, and notices a
/// change only by the number of values per line. If the drive's selection changes to another
/// of the same width (`MMS1111100` for `1101011`: a console line, noise on a request, or a
/// stray `MMS…` line taken as the bitmap) and the codec does not see the drive's reply, it
/// reads Iq (mA) as the velocity and so on, for good. Fix: select the variables again
/// (`reselect_stream`, which allows one every 2 s) from `poll` whenever 2 s have passed since
/// the last selection, whatever the stream looks like.
#[test]
fn simplefoc_a_selection_of_the_same_width_is_noticed() {
    let mut link = Link::new(Kind::SimpleFoc, 7);
    link.set_up(false);
    let mut lost = Vec::new();
    let now = link.now();
    link.device.receive(b"MMS1111100\n", now, &mut link.drive, &mut lost);
    let result = link.resync(6.0);
    assert!(result.is_ok(), "{result:?}");
}

/// A SimpleFOC board boots in verbose mode 2. If the codec's `@3` is lost, the reply to each
/// state read (`Torque: foc curr`) is a mode-2 reply, `lost_sync` forgets the state and
/// `resync` queues the same read again at once: the codec answers every reply with a request,
/// a storm that only the `@3` timeout (0.5 s) ends. Fix: in `resync`, queue `state_reads` only
/// when verbose mode 3 is confirmed or no `@3` is pending.
#[test]
fn simplefoc_mode_2_replies_while_verbose_is_unconfirmed_do_not_storm() {
    let protocol = Protocol::SimpleFoc { motor: 'M' };
    let mut drive = SimDrive::new(&SimConfig::default());
    let mut device = device::for_protocol(&protocol, 0.0);
    let mut codec = protocol.codec(115_200);
    let mut out = CodecOut::new();
    codec.start(0.0, &mut out);
    // The board misses the first command.
    let mut tx = String::from_utf8_lossy(&out.tx).replacen("@3\n", "", 1).into_bytes();
    let mut rounds = 0;
    while !tx.is_empty() && rounds < 100 {
        rounds += 1;
        let mut reply = Vec::new();
        device.receive(&tx, 0.0, &mut drive, &mut reply);
        out.clear();
        codec.feed(&reply, 0.0, &mut out);
        tx = std::mem::take(&mut out.tx);
    }
    assert!(
        rounds < 10,
        "still exchanging after {rounds} rounds at the same instant: {:?}",
        String::from_utf8_lossy(&tx)
    );
}

/// `VescCodec::handle_payload` takes `COMM_FW_VERSION` whenever it comes, and its first byte
/// as the firmware major version that selects the `COMM_GET_VALUES` layout. One frame with a
/// valid CRC and major 2 (noise, another node) makes every later reply decode in the 2.x
/// layout: speed, currents and the fault code are read from the wrong bytes until the drive
/// stops answering. Fix: take `COMM_FW_VERSION` only while one is in flight (or only the first
/// after `start`/a loss of the drive), as Modbus ignores frames that answer no request.
#[test]
fn vesc_unsolicited_firmware_version_does_not_change_the_layout() {
    let mut link = Link::new(Kind::Vesc, 7);
    link.set_up(false);
    link.feed_now(Side::Host, vesc::encode_frame(&[vesc::COMM_FW_VERSION, 2, 18]));
    let result = link.resync(2.0);
    assert!(result.is_ok(), "{result:?}");
}

/// `ModbusCodec` takes any exception from its unit as the answer to the request in flight,
/// and `drop_cycle_block` reacts to 01–03 for a telemetry block by reading its registers one
/// by one and, for a single register, by never reading it again. Exceptions that answer
/// something else (a frame from another master, the drive's answer to a request of ours that it
/// received corrupted, noise with a valid CRC) therefore remove telemetry registers for good:
/// after a few, no speed is read any more. Fix: in `Expect::length`, accept an exception only
/// with the request's function code | 0x80 (0x81 also for reads, the Kinco case); in
/// `drop_cycle_block`, drop a single register only when it is refused twice in a row (a
/// successful read of it in between forgets the first refusal); and rather than for good, leave
/// a dropped register out for a back-off (1 s doubling to 30 s) and at the next `start`.
#[test]
fn modbus_stray_exceptions_do_not_stop_telemetry_for_good() {
    let mut link = Link::new(Kind::Modbus, 7);
    link.set_up(false);
    let mut exception = vec![1, 0x81, 0x01];
    exception.extend_from_slice(&MODBUS_CRC.checksum(&exception).to_le_bytes());
    // A stray exception in place of a reply, ten times, 0.1 s apart.
    for _ in 0..10 {
        link.armed = Some(Armed { side: Side::Host, input: exception.clone(), splice: Splice::Instead });
        while link.armed.is_some() {
            link.step();
        }
        link.run(0.1);
    }
    let result = link.resync(2.0);
    assert!(result.is_ok(), "{result:?}");
}

/// A VESC decodes frames as the firmware's `packet.c` does: a start byte `0x03` with length
/// 0x0200 holds the decoder until 518 bytes have arrived. Noise ending in `03 02 00` therefore
/// swallows the codec's next requests: at 6 bytes per `COMM_GET_VALUES` every 0.1 s (plus
/// keep-alives) the drive answered again only after about 9 s. Fix: at the second timeout in a row (and every tenth), send 518 zero bytes before
/// the next request; zero is not a start byte, so a decoder that is in sync ignores them.
#[test]
fn vesc_link_recovers_quickly_from_a_long_frame_header_at_the_device() {
    let mut link = Link::new(Kind::Vesc, 7);
    link.set_up(false);
    let mut reply = Vec::new();
    let now = link.now();
    link.device.receive(&[3, 0x02, 0x00], now, &mut link.drive, &mut reply);
    let result = link.resync(2.0);
    assert!(result.is_ok(), "{result:?}");
}

/// The Serial Plotter codec takes every label it sees as a signal, up to 64. Garbage with
/// colons and digits before the sketch's first line (a wrong baud rate at first, a bootloader's
/// output) fills the list, and the sketch's own labels are then refused for the rest of the
/// session. Fix: register a label only once it has been seen in two lines (or evict labels not
/// seen for some seconds before refusing new ones).
#[test]
fn plotter_labels_from_garbage_before_the_first_line_do_not_lock_out_the_sketch() {
    let mut codec = Protocol::Plotter.codec(115_200);
    let mut out = CodecOut::new();
    codec.start(0.0, &mut out);
    codec.feed(b"\n", 0.0, &mut out);
    for i in 0..64 {
        codec.feed(format!("x{i}q:{i}\n").as_bytes(), 0.001 * f64::from(i), &mut out);
    }
    for k in 0..3 {
        out.clear();
        codec.feed(b"speed_rpm:600.5,current_a:0.1\n", 0.1 + 0.001 * f64::from(k), &mut out);
    }
    assert!(!out.samples.is_empty(), "the sketch's lines give no samples: {:?}", out.events);
}
