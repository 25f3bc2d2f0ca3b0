//! Modbus RTU host side for a CiA 402-style drive whose registers are described by a
//! [`RegisterMap`] (data, from the project file).
//!
//! Transport: one transaction at a time. A request goes out only after the line has been
//! quiet for t3.5 (38.5 bit times up to 19200 baud, 1.75 ms above) since the last byte
//! received or sent; the codec only writes from `poll` and `command`, never from `feed`, so
//! the next request after a reply waits for the next poll. A reply is found by its predicted
//! length (from the request: `5 + 2·qty` for reads, 8 for writes, 5 for an exception, of any
//! function code since Kinco flags failed reads with 0x81) and its CRC-16/MODBUS (low byte
//! first); a frame that fails is skipped one byte at a time, and
//! frames from other unit addresses are recognised and ignored. A request not answered within
//! the response timeout (plus the frames' time on the wire) is sent again up to `retries`
//! times, then reported; after two such failures in a row the drive counts as lost until it
//! answers again. Exceptions are reported in words with the request's address. Broadcast
//! frames (unit 0) can only come from the console and expect no reply (a 100 ms turnaround).
//!
//! Polling: every 10 ms (or as fast as the line allows) one telemetry cycle reads the
//! statusword, the mode display, the error code and the actual values, joined into as few
//! block reads as the map allows (only addresses that are in the map; a strict drive answers
//! anything else with exception 02). A block refused with 01/02 is split into its entries,
//! and an entry refused on its own is left out and asked again after 1 s, 2 s, 4 s, … (every
//! 30 s at most) until the drive answers it. At start every role register is read
//! once (controlword, mode and targets included) so that state, mode and setpoint are known.
//!
//! CiA 402: the statusword gives the state (`Event::Status("CiA 402: switched on")`);
//! `Enabled` only in operation enabled, `Fault` with the error code in words. Enable reads
//! the statusword, then writes shutdown (0x0006), switch on (0x0007) and enable operation
//! (0x000F) as the state reaches ready to switch on, switched on and operation enabled, each
//! step within 1 s or it is reported with the state it stuck in. Disable writes 0x0007 from
//! operation enabled, 0x0006 from switched on or ready to switch on, 0x0000 (disable voltage)
//! from any other state or an unknown one (quick stop active included); E-STOP writes quick
//! stop (0x0002) first thing and zeroes the speed or torque target. Both drop queued
//! setpoints and mode changes and are sent again every 0.3 s until the statusword confirms
//! them. Fault reset checks for a fault, writes 0x0000 first if bit 7 may already be set,
//! then 0x0080 (the rising edge), then 0x0006 once the fault has cleared.
//!
//! Modes: Speed → 3 (profile velocity), Position → 1 (profile position), Current → 4 (profile
//! torque; A converts to the torque target's ‰/% through the map's rated current). A mode
//! change writes a safe target first (0 rpm, 0 A, or the present position), then the mode,
//! and confirms it by the mode display. Setpoints are written to the target register at
//! once whether or not operation is enabled: a CiA 402 drive follows its target only while
//! operation is enabled, so a setpoint written while disabled takes effect on enable, as
//! with the other protocols. A newer setpoint replaces one still queued.
//!
//! Parameters: the map's writable entries without a control role, and its read-only entries
//! without any role (listed read-only), keyed by their name. A write is confirmed by reading
//! the register back; an exception is reported with the key, and the value held is read.
//!
//! Console: a line of hex bytes is a whole frame (the CRC is appended unless the last two
//! bytes already are the frame's CRC); or text: `r ADDR [QTY]` reads holding registers,
//! `ri ADDR [QTY]` input registers, `w ADDR VALUE…` writes raw register values (0x06 for one,
//! 0x10 for several), `w NAME VALUE` writes an entry in its unit. ADDR is decimal, `0x` hex,
//! or an entry name. Replies are logged, decoded through the map.

use std::collections::VecDeque;
use std::time::Duration;

use crc::{CRC_16_MODBUS, Crc};

use crate::drive::{Command, ControlMode, DriveState, Event, ParamSpec, Sample, SignalSpec};
use crate::protocol::modbus_map::{Block, MAX_READ_QTY, MAX_WRITE_QTY, RegisterMap, Role, Table};
use crate::protocol::{Codec, CodecError, CodecOut, LogLimiter, RawIntent, format_decimal};

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_MODBUS);

/// Default wait for a reply, beyond the frames' time on the wire.
pub const DEFAULT_RESPONSE_TIMEOUT_S: f64 = 0.2;
/// Default number of times a request is sent again after a timeout.
pub const DEFAULT_RETRIES: u32 = 2;
/// Shortest reply timeout (s); the configuration check allows the same range.
pub const MIN_RESPONSE_TIMEOUT_S: f64 = 0.01;
/// Longest reply timeout (s); the configuration check allows the same range.
pub const MAX_RESPONSE_TIMEOUT_S: f64 = 10.0;
/// After start nothing is sent for this long: whatever was on the line settles.
const SETTLE_S: f64 = 0.02;
/// Telemetry cycle period (slower when the line cannot keep up).
const TELEMETRY_PERIOD_S: f64 = 0.01;
/// Time each enable step, a fault reset and a mode change have to show in the statusword.
const STEP_TIMEOUT_S: f64 = 1.0;
/// Time a stop has to be confirmed before it is sent again.
const STOP_CONFIRM_S: f64 = 0.3;
/// While a stop stays unconfirmed with the same reading, it is reported again this often.
const STOP_REPORT_S: f64 = 2.0;
/// How long a quick stop may brake in "quick stop active" before disable voltage (0x0000)
/// switches the stage off: drives that stay in quick stop active after the ramp (option codes
/// 5–8) are then left switch on disabled. A ramp longer than this is cut short and the motor
/// coasts from there.
const QUICK_STOP_HOLD_S: f64 = 2.0;
/// After a broadcast, the line is left to the slaves for this long.
const TURNAROUND_S: f64 = 0.1;
/// Transactions without any reply, in a row, after which the drive counts as lost.
const LOST_AFTER_FAILURES: u32 = 2;
/// Received bytes kept while looking for a frame.
const MAX_RX: usize = 512;
/// Largest run of unneeded (but mapped) registers read to join two reads.
const MAX_BRIDGE: u16 = 16;
/// Largest RTU frame.
const MAX_ADU: usize = 256;

const SIG_SPEED: u16 = 0;
const SIG_CURRENT: u16 = 1;
const SIG_POSITION: u16 = 2;

const CW_DISABLE_VOLTAGE: u16 = 0x0000;
const CW_QUICK_STOP: u16 = 0x0002;
const CW_SHUTDOWN: u16 = 0x0006;
const CW_SWITCH_ON: u16 = 0x0007;
const CW_ENABLE_OPERATION: u16 = 0x000F;
const CW_FAULT_RESET: u16 = 0x0080;

/// CiA 402 power states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cia {
    NotReady,
    SwitchOnDisabled,
    ReadyToSwitchOn,
    SwitchedOn,
    OperationEnabled,
    QuickStopActive,
    FaultReactionActive,
    Fault,
}

impl Cia {
    fn from_statusword(word: u16) -> Option<Cia> {
        match (word & 0x4F, word & 0x6F) {
            (0x00, _) => Some(Cia::NotReady),
            (0x40, _) => Some(Cia::SwitchOnDisabled),
            (0x0F, _) => Some(Cia::FaultReactionActive),
            (0x08, _) => Some(Cia::Fault),
            (_, 0x21) => Some(Cia::ReadyToSwitchOn),
            (_, 0x23) => Some(Cia::SwitchedOn),
            (_, 0x27) => Some(Cia::OperationEnabled),
            (_, 0x07) => Some(Cia::QuickStopActive),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Cia::NotReady => "not ready to switch on",
            Cia::SwitchOnDisabled => "switch on disabled",
            Cia::ReadyToSwitchOn => "ready to switch on",
            Cia::SwitchedOn => "switched on",
            Cia::OperationEnabled => "operation enabled",
            Cia::QuickStopActive => "quick stop active",
            Cia::FaultReactionActive => "fault reaction active",
            Cia::Fault => "fault",
        }
    }

    fn is_fault(self) -> bool {
        matches!(self, Cia::Fault | Cia::FaultReactionActive)
    }
}

/// The next controlword of the enable sequence from `state`, and the state it leads to.
fn enable_step(state: Option<Cia>) -> Option<(u16, Cia)> {
    match state? {
        Cia::SwitchOnDisabled => Some((CW_SHUTDOWN, Cia::ReadyToSwitchOn)),
        Cia::ReadyToSwitchOn => Some((CW_SWITCH_ON, Cia::SwitchedOn)),
        Cia::SwitchedOn => Some((CW_ENABLE_OPERATION, Cia::OperationEnabled)),
        Cia::QuickStopActive => Some((CW_DISABLE_VOLTAGE, Cia::SwitchOnDisabled)),
        _ => None,
    }
}

fn controlword_name(word: u16) -> &'static str {
    match word {
        CW_DISABLE_VOLTAGE => "disable voltage",
        CW_QUICK_STOP => "quick stop",
        CW_SHUTDOWN => "shutdown",
        CW_SWITCH_ON => "switch on",
        CW_ENABLE_OPERATION => "enable operation",
        CW_FAULT_RESET => "fault reset",
        _ => "controlword",
    }
}

/// CiA 402 / CiA 301 error codes in words: the codes drives commonly use, else the class.
fn error_text(code: u16) -> String {
    let name = match code {
        0x0000 => "no error code given",
        0x2310 => "over-current",
        0x3210 => "over-voltage",
        0x3220 => "under-voltage",
        0x4310 => "over-temperature",
        0x8611 => "following error",
        0x1000..=0x1FFF => "generic error",
        0x2000..=0x2FFF => "current error",
        0x3000..=0x3FFF => "voltage error",
        0x4000..=0x4FFF => "temperature error",
        0x5000..=0x5FFF => "device hardware error",
        0x6000..=0x6FFF => "device software error",
        0x7000..=0x7FFF => "additional modules error",
        0x8000..=0x8FFF => "monitoring error",
        0x9000..=0x9FFF => "external error",
        0xF000..=0xFFFF => "device-specific error",
        _ => "unknown error",
    };
    format!("0x{code:04X} {name}")
}

fn exception_name(code: u8) -> &'static str {
    match code {
        0x01 => "illegal function",
        0x02 => "illegal data address",
        0x03 => "illegal data value",
        0x04 => "server device failure",
        0x05 => "acknowledge",
        0x06 => "server device busy",
        0x07 => "negative acknowledge",
        0x08 => "memory parity error",
        0x0A => "gateway path unavailable",
        0x0B => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// `value` written by mode of operation `code`.
fn mode_code(mode: ControlMode) -> i16 {
    match mode {
        ControlMode::Position => 1,
        ControlMode::Speed => 3,
        ControlMode::Current => 4,
    }
}

/// The drivebench mode a CiA 402 mode of operation takes setpoints in (cyclic synchronous
/// modes use the same targets).
fn mode_from_code(code: i16) -> Option<ControlMode> {
    match code {
        1 | 8 => Some(ControlMode::Position),
        3 | 9 => Some(ControlMode::Speed),
        4 | 10 => Some(ControlMode::Current),
        _ => None,
    }
}

fn mode_code_name(code: i16) -> &'static str {
    match code {
        0 => "no mode",
        1 => "profile position",
        2 => "velocity",
        3 => "profile velocity",
        4 => "profile torque",
        6 => "homing",
        7 => "interpolated position",
        8 => "cyclic synchronous position",
        9 => "cyclic synchronous velocity",
        10 => "cyclic synchronous torque",
        i16::MIN..=-1 => "vendor-specific",
        _ => "reserved",
    }
}

fn mi(mode: ControlMode) -> usize {
    match mode {
        ControlMode::Current => 0,
        ControlMode::Speed => 1,
        ControlMode::Position => 2,
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn crc_ok(frame: &[u8]) -> bool {
    frame.len() >= 4 && {
        let (body, tail) = frame.split_at(frame.len() - 2);
        CRC16.checksum(body).to_le_bytes() == [tail[0], tail[1]]
    }
}

fn with_crc(mut frame: Vec<u8>) -> Vec<u8> {
    let crc = CRC16.checksum(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}

/// A number for messages: at most 6 decimals, never an exponent.
fn number(value: f64) -> String {
    format_decimal(value, 6)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Functions that change something on the drive.
fn is_write_function(function: u8) -> bool {
    !matches!(function, 0x01..=0x04 | 0x07 | 0x0B | 0x0C | 0x11 | 0x18 | 0x2B)
}

/// The length of the normal reply to a request frame (CRC included), if known.
/// The length of a request frame (CRC included) from its function code, for the functions
/// whose request length the header fixes; `None` when unknown (or not yet knowable).
fn request_length(frame: &[u8]) -> Option<usize> {
    match *frame.get(1)? {
        0x01..=0x06 | 0x08 | 0x18 => Some(8),
        0x07 | 0x0B | 0x0C | 0x11 => Some(4),
        0x0F | 0x10 => frame.get(6).map(|&count| 9 + usize::from(count)),
        0x16 => Some(10),
        0x17 => frame.get(10).map(|&count| 13 + usize::from(count)),
        0x2B if frame.get(2) == Some(&0x0E) => Some(7),
        _ => None,
    }
}

fn reply_length(frame: &[u8]) -> Option<usize> {
    let function = *frame.get(1)?;
    let body = &frame[..frame.len().saturating_sub(2)];
    let qty = || (body.len() >= 6).then(|| usize::from(be16(body, 4)));
    match function {
        0x01 | 0x02 => qty().map(|n| 5 + n.div_ceil(8)).filter(|n| *n <= MAX_ADU),
        0x03 | 0x04 | 0x17 => qty().map(|n| 5 + 2 * n).filter(|n| *n <= MAX_ADU),
        0x05 | 0x06 | 0x0F | 0x10 | 0x0B => Some(8),
        0x07 => Some(5),
        0x08 => Some(frame.len()),
        0x16 => Some(10),
        _ => None,
    }
}

/// The length of a reply frame at the start of `buf` as any server would send it.
enum Length {
    Need,
    Invalid,
    Bytes(usize),
}

fn any_reply_length(buf: &[u8]) -> Length {
    let Some(&unit) = buf.first() else {
        return Length::Need;
    };
    // Nobody answers as broadcast or as a reserved address.
    if unit == 0 || unit > 247 {
        return Length::Invalid;
    }
    let Some(&function) = buf.get(1) else {
        return Length::Need;
    };
    let counted = |even: bool| match buf.get(2) {
        Some(&n) if even && n % 2 == 1 => Length::Invalid,
        Some(&n) => Length::Bytes(5 + usize::from(n)),
        None => Length::Need,
    };
    match function {
        0x81..=0xFF => Length::Bytes(5),
        0x01 | 0x02 | 0x0C | 0x11 => counted(false),
        0x03 | 0x04 | 0x17 => counted(true),
        0x05 | 0x06 | 0x08 | 0x0B | 0x0F | 0x10 => Length::Bytes(8),
        0x07 => Length::Bytes(5),
        0x16 => Length::Bytes(10),
        _ => Length::Invalid,
    }
}

/// What a reply to the request in flight looks like.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Expect {
    unit: u8,
    function: u8,
    /// Length of the normal reply; `None` when the function's reply length is unknown.
    len: Option<usize>,
}

impl Expect {
    /// The length of our reply at the start of `buf`: `None` when it is not ours,
    /// `Some(None)` when more bytes (or, for an unknown length, the timeout) must tell.
    fn length(&self, buf: &[u8]) -> Option<Option<usize>> {
        if *buf.first()? != self.unit {
            return None;
        }
        let Some(&function) = buf.get(1) else {
            return Some(None);
        };
        // The exception to the request in flight carries its function | 0x80; some drives
        // (Kinco) flag a failed read with 0x81 rather than 0x83. Any other exception answers
        // something else (another master, a request the drive received corrupted).
        if function > 0x80 {
            let ours = function == self.function | 0x80
                || (function == 0x81 && matches!(self.function, 0x03 | 0x04));
            return ours.then_some(Some(5));
        }
        if function != self.function {
            return None;
        }
        let len = self.len?;
        if matches!(function, 0x03 | 0x04 | 0x17) {
            match buf.get(2) {
                None => return Some(None),
                Some(&count) if usize::from(count) + 5 != len => return None,
                Some(_) => {}
            }
        }
        Some(Some(len))
    }
}

/// What the parser does next with the receive buffer.
enum Step {
    Wait,
    Drop(usize),
    Frame { len: usize, ours: bool },
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Read {
        table: Table,
        start: u16,
        qty: u16,
    },
    /// One value: 0x06; several: 0x10.
    Write {
        start: u16,
        values: Vec<u16>,
    },
    /// A console frame, CRC included.
    Raw {
        frame: Vec<u8>,
    },
}

/// Why a register block is read.
#[derive(Debug, Clone, PartialEq, Default)]
struct ReadWhy {
    /// Catalogue entries to report as parameter values.
    report: Vec<usize>,
    /// Index in the telemetry cycle.
    cycle: Option<usize>,
    /// A statusword read for a sequence waiting on it.
    status: bool,
    /// The error code read to describe a fault.
    code: bool,
    /// Report the mode with the target read here.
    mode_report: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Purpose {
    Read(ReadWhy),
    ParamWrite {
        entry: usize,
    },
    ParamReadback {
        entry: usize,
    },
    /// `stop`: the write of a stop (never dropped by a later sequence).
    Control {
        value: u16,
        stop: bool,
    },
    Target {
        mode: ControlMode,
        value: f64,
        safe: bool,
    },
    ModeWrite {
        mode: ControlMode,
    },
    Console,
}

impl Purpose {
    fn read() -> Purpose {
        Purpose::Read(ReadWhy::default())
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Request {
    op: Op,
    purpose: Purpose,
    attempt: u32,
}

impl Request {
    fn new(op: Op, purpose: Purpose) -> Self {
        Request { op, purpose, attempt: 0 }
    }
}

#[derive(Debug, Clone)]
struct InFlight {
    req: Request,
    frame: Vec<u8>,
    seq: u64,
    deadline: f64,
    /// `None` for a broadcast.
    expect: Option<Expect>,
}

/// The enable sequence.
#[derive(Debug, Clone)]
struct EnableSeq {
    /// The controlword written last and the state it leads to.
    written: Option<(u16, Cia)>,
    deadline: f64,
}

/// A stop waiting for the statusword to confirm it.
#[derive(Debug, Clone)]
struct StopSeq {
    quick: bool,
    value: u16,
    /// When the stop is sent again unless confirmed (set once the write is acknowledged).
    deadline: Option<f64>,
    /// The statusword read since.
    reading: Option<u16>,
    reported: Option<(f64, Option<u16>)>,
    /// When the drive was first read in quick stop active after the quick stop.
    braking_since: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ResetPhase {
    Check,
    Clear,
    Edge,
    Shutdown,
}

#[derive(Debug, Clone)]
struct ResetSeq {
    phase: ResetPhase,
    deadline: f64,
}

#[derive(Debug, Clone)]
enum Control {
    Enable(EnableSeq),
    Stop(StopSeq),
    Reset(ResetSeq),
}

#[derive(Debug, Clone)]
struct ModePending {
    mode: ControlMode,
    code: i16,
    setpoint: f64,
    /// Set when the mode write is acknowledged.
    deadline: Option<f64>,
}

/// What the codec has read from the drive; values with the sequence number of their read.
#[derive(Debug, Clone, Default)]
struct Known {
    statusword: Option<(u16, u64)>,
    controlword: Option<u16>,
    mode_code: Option<i16>,
    error_code: Option<(u16, u64)>,
    /// Canonical units (A, rpm, rev).
    targets: [Option<f64>; 3],
    position_rev: Option<f64>,
}

/// Host side of Modbus RTU for one drive.
#[derive(Debug, Clone)]
pub struct ModbusCodec {
    unit: u8,
    map: RegisterMap,
    baud: u32,
    response_timeout_s: f64,
    retries: u32,
    /// Why the codec cannot run (invalid map or unit address).
    config_error: Option<String>,
    signals: Vec<SignalSpec>,
    signal_of: Vec<Option<u16>>,
    catalogue: Vec<usize>,
    cycle: Vec<Block>,
    start_blocks: Vec<Block>,
    started: bool,
    hold_until: f64,
    rx: Vec<u8>,
    queue: VecDeque<Request>,
    in_flight: Option<InFlight>,
    /// Sequence number of the next request sent (requests are answered in order).
    next_seq: u64,
    cycle_pos: usize,
    next_cycle_at: f64,
    last_rx_s: f64,
    tx_end_s: f64,
    known: Known,
    /// The mode setpoints are accepted in.
    mode: Option<ControlMode>,
    /// The mode of a map without a mode register (its only target's).
    fixed_mode: Option<ControlMode>,
    reported_mode: Option<(ControlMode, f64)>,
    force_mode_report: bool,
    mode_pending: Option<ModePending>,
    /// Mode display readings from requests with this sequence number or later show the
    /// effect of the pending mode write.
    fresh_mode_from: u64,
    last_mode_code: Option<i16>,
    /// Sequence number of the last target write sent, per mode.
    target_sent_seq: [u64; 3],
    control: Option<Control>,
    /// The controlword write the running sequence waits for.
    awaiting_control: Option<u16>,
    /// Statusword readings from requests with this sequence number or later show the effect
    /// of the sequence's last write.
    fresh_from: u64,
    /// Requests sent before this sequence number preceded the last stop: target, mode and
    /// controlword writes among them are not sent again.
    stopped_at_seq: u64,
    last_state: Option<DriveState>,
    last_status: Option<String>,
    fault_seen_seq: Option<u64>,
    code_read_pending: bool,
    code_unreadable: bool,
    failures_in_row: u32,
    lost: bool,
    log: LogLimiter,
    /// Telemetry registers the drive refused, left out of the cycle and asked again after a
    /// growing pause: a refusal may have been noise or a drive still booting.
    refused: Vec<Refused>,
}

/// A telemetry block the drive refused.
#[derive(Debug, Clone, Copy)]
struct Refused {
    block: Block,
    /// The pause before the next try (1 s, doubling up to [`REFUSED_RETRY_MAX_S`]).
    pause_s: f64,
    /// When it goes back into the cycle; `None` while it is being tried again.
    retry_at_s: Option<f64>,
}

/// The longest pause before a refused telemetry register is asked again.
const REFUSED_RETRY_MAX_S: f64 = 30.0;

impl ModbusCodec {
    /// A codec talking to unit address `unit` (1–247) at `baud` (for the inter-frame gap and
    /// the time frames spend on the wire), with the default timing.
    pub fn new(unit: u8, map: RegisterMap, baud: u32) -> Self {
        let mut config_error = map.validate().err().map(|e| format!("the register map is not valid: {e}"));
        if !(1..=247).contains(&unit) {
            config_error = Some(format!(
                "unit address {unit} cannot be polled: a drive answers at 1–247 (0 is broadcast, 248–255 are \
                 reserved)"
            ));
        }
        let mut signals = vec![
            SignalSpec::new("speed_rpm", "rpm"),
            SignalSpec::new("current_a", "A"),
            SignalSpec::new("position_rev", "rev"),
        ];
        let mut signal_of = vec![None; map.entries.len()];
        for (role, index, name, unit) in [
            (Role::VelocityActual, Some(SIG_SPEED), "", ""),
            (Role::CurrentActual, Some(SIG_CURRENT), "", ""),
            (Role::PositionActual, Some(SIG_POSITION), "", ""),
            (Role::DcLinkVoltage, None, "voltage_v", "V"),
            (Role::Temperature, None, "temperature_c", "°C"),
            (Role::TorqueActual, None, "", ""),
        ] {
            let Some(entry) = map.role(role) else {
                continue;
            };
            let index = index.unwrap_or_else(|| {
                let e = &map.entries[entry];
                let (name, unit) =
                    if name.is_empty() { (e.name.as_str(), e.unit.as_str()) } else { (name, unit) };
                signals.push(SignalSpec::new(name, unit));
                (signals.len() - 1) as u16
            });
            signal_of[entry] = Some(index);
        }
        let catalogue: Vec<usize> = (0..map.entries.len()).filter(|&i| map.is_catalogue(i)).collect();
        let cycle_roles = [
            Role::Statusword,
            Role::ModesDisplay,
            Role::ErrorCode,
            Role::VelocityActual,
            Role::PositionActual,
            Role::CurrentActual,
            Role::TorqueActual,
            Role::DcLinkVoltage,
            Role::Temperature,
        ];
        let mut cycle_entries: Vec<usize> = cycle_roles.iter().filter_map(|r| map.role(*r)).collect();
        if map.role(Role::ModesDisplay).is_none()
            && let Some(modes) = map.role(Role::ModesOfOperation)
        {
            cycle_entries.push(modes);
        }
        let cycle = map.blocks(&cycle_entries, MAX_BRIDGE);
        let role_entries: Vec<usize> = Role::ALL.iter().filter_map(|r| map.role(*r)).collect();
        let start_blocks = map.blocks(&role_entries, MAX_BRIDGE);
        // Without a mode register, the only target decides the mode.
        let fixed_mode = if map.role(Role::ModesOfOperation).is_none() {
            [Role::TargetVelocity, Role::TargetPosition, Role::TargetTorque]
                .into_iter()
                .find(|r| map.role(*r).is_some())
                .and_then(Role::target_mode)
        } else {
            None
        };
        let cycle_len = cycle.len();
        ModbusCodec {
            unit,
            map,
            baud: if baud == 0 { 19_200 } else { baud },
            response_timeout_s: DEFAULT_RESPONSE_TIMEOUT_S,
            retries: DEFAULT_RETRIES,
            config_error,
            signals,
            signal_of,
            catalogue,
            cycle,
            start_blocks,
            started: false,
            hold_until: 0.0,
            rx: Vec::with_capacity(MAX_RX),
            queue: VecDeque::new(),
            in_flight: None,
            next_seq: 1,
            cycle_pos: cycle_len,
            next_cycle_at: 0.0,
            last_rx_s: f64::NEG_INFINITY,
            tx_end_s: f64::NEG_INFINITY,
            known: Known::default(),
            mode: fixed_mode,
            fixed_mode,
            reported_mode: None,
            force_mode_report: false,
            mode_pending: None,
            fresh_mode_from: u64::MAX,
            last_mode_code: None,
            target_sent_seq: [0; 3],
            control: None,
            awaiting_control: None,
            fresh_from: 0,
            stopped_at_seq: 0,
            last_state: None,
            last_status: None,
            fault_seen_seq: None,
            code_read_pending: false,
            code_unreadable: false,
            failures_in_row: 0,
            lost: false,
            log: LogLimiter::default(),
            refused: Vec::new(),
        }
    }

    /// The same codec with another response timeout (seconds, beyond the time on the wire;
    /// clamped to 0.01–5 s) and number of retries after a timeout (at most 10).
    pub fn with_timing(mut self, response_timeout_s: f64, retries: u32) -> Self {
        self.response_timeout_s = if response_timeout_s.is_finite() {
            response_timeout_s.clamp(MIN_RESPONSE_TIMEOUT_S, MAX_RESPONSE_TIMEOUT_S)
        } else {
            DEFAULT_RESPONSE_TIMEOUT_S
        };
        self.retries = retries.min(10);
        self
    }

    /// The register map in use.
    pub fn map(&self) -> &RegisterMap {
        &self.map
    }

    /// Seconds per character on the wire (11 bits).
    fn char_s(&self) -> f64 {
        11.0 / f64::from(self.baud)
    }

    /// The inter-frame gap t3.5.
    fn t35(&self) -> f64 {
        if self.baud <= 19_200 { 38.5 / f64::from(self.baud) } else { 0.00175 }
    }

    fn quiet_until(&self) -> f64 {
        self.last_rx_s.max(self.tx_end_s) + self.t35()
    }

    fn entry_name(&self, index: usize) -> &str {
        self.map.entries.get(index).map_or("?", |e| e.name.as_str())
    }

    fn frame_of(&self, op: &Op) -> Vec<u8> {
        let mut frame = vec![self.unit];
        match op {
            Op::Read { table, start, qty } => {
                frame.push(if *table == Table::Input { 0x04 } else { 0x03 });
                frame.extend_from_slice(&start.to_be_bytes());
                frame.extend_from_slice(&qty.to_be_bytes());
            }
            Op::Write { start, values } if values.len() == 1 => {
                frame.push(0x06);
                frame.extend_from_slice(&start.to_be_bytes());
                frame.extend_from_slice(&values[0].to_be_bytes());
            }
            Op::Write { start, values } => {
                frame.push(0x10);
                frame.extend_from_slice(&start.to_be_bytes());
                frame.extend_from_slice(&(values.len() as u16).to_be_bytes());
                frame.push((values.len() * 2) as u8);
                for value in values {
                    frame.extend_from_slice(&value.to_be_bytes());
                }
            }
            Op::Raw { frame } => return frame.clone(),
        }
        with_crc(frame)
    }

    fn describe(op: &Op) -> String {
        match op {
            Op::Read { table, start, qty } => {
                let table = if *table == Table::Input { "input" } else { "holding" };
                if *qty == 1 {
                    format!("the read of {table} register 0x{start:04X}")
                } else {
                    format!("the read of {qty} {table} registers from 0x{start:04X}")
                }
            }
            Op::Write { start, values } if values.len() == 1 => {
                format!("the write of 0x{:04X} to 0x{start:04X}", values[0])
            }
            Op::Write { start, values } => {
                format!("the write of {} registers from 0x{start:04X}", values.len())
            }
            Op::Raw { frame } => format!("the console frame `{}`", hex_string(frame)),
        }
    }

    /// An exception in words, naming the request's address (or function).
    fn exception_text(op: &Op, code: u8) -> String {
        let (function, start, qty) = match op {
            Op::Read { table, start, qty } => (if *table == Table::Input { 4 } else { 3 }, *start, *qty),
            Op::Write { start, values } => {
                (if values.len() == 1 { 6 } else { 0x10 }, *start, values.len() as u16)
            }
            Op::Raw { frame: request } => {
                let start = if request.len() >= 6 { be16(request, 2) } else { 0 };
                let qty = match request.get(1) {
                    Some(0x03 | 0x04 | 0x10) if request.len() >= 8 => be16(request, 4),
                    _ => 1,
                };
                (request.get(1).copied().unwrap_or(0), start, qty)
            }
        };
        let name = exception_name(code);
        let place = if qty > 1 {
            format!("0x{start:04X}–0x{:04X}", u32::from(start) + u32::from(qty) - 1)
        } else {
            format!("0x{start:04X}")
        };
        match code {
            0x01 => format!("exception 01: {name} 0x{function:02X}"),
            0x02 | 0x03 => format!("exception {code:02X}: {name} {place}"),
            _ => format!("exception {code:02X}: {name} (at {place})"),
        }
    }

    // ----- sending -------------------------------------------------------------------------

    fn pump(&mut self, now_s: f64, out: &mut CodecOut) {
        if !self.started
            || self.config_error.is_some()
            || self.in_flight.is_some()
            || now_s < self.hold_until
            || now_s < self.quiet_until()
        {
            return;
        }
        let request = match self.queue.pop_front() {
            Some(request) => request,
            None => match self.next_cycle_request() {
                Some(request) => request,
                None => return,
            },
        };
        self.send(request, now_s, out);
    }

    fn send(&mut self, req: Request, now_s: f64, out: &mut CodecOut) {
        let frame = self.frame_of(&req.op);
        let expect = match frame.first() {
            Some(0) | None => None,
            Some(&unit) => Some(Expect { unit, function: frame[1], len: reply_length(&frame) }),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Purpose::Target { mode, .. } = req.purpose {
            self.target_sent_seq[mi(mode)] = seq;
        }
        let wire = frame.len() as f64 * self.char_s();
        let deadline = match expect {
            Some(e) => now_s + self.response_timeout_s + wire + e.len.unwrap_or(8) as f64 * self.char_s(),
            None => now_s + wire + TURNAROUND_S,
        };
        self.tx_end_s = now_s + wire;
        self.rx.clear();
        out.tx.extend_from_slice(&frame);
        self.in_flight = Some(InFlight { req, frame, seq, deadline, expect });
    }

    fn next_cycle_request(&mut self) -> Option<Request> {
        let block = *self.cycle.get(self.cycle_pos)?;
        let index = self.cycle_pos;
        self.cycle_pos += 1;
        let purpose = Purpose::Read(ReadWhy { cycle: Some(index), ..ReadWhy::default() });
        Some(Request::new(Op::Read { table: block.table, start: block.start, qty: block.qty }, purpose))
    }

    fn read_request(block: Block, purpose: Purpose) -> Request {
        Request::new(Op::Read { table: block.table, start: block.start, qty: block.qty }, purpose)
    }

    /// Reads of `entries`, joined.
    fn queue_reads(&mut self, entries: &[usize], purpose: Purpose, front: bool) {
        let blocks = self.map.blocks(entries, MAX_BRIDGE);
        let requests: Vec<Request> = blocks
            .into_iter()
            .map(|block| {
                let mut purpose = purpose.clone();
                if let Purpose::Read(ReadWhy { report, .. }) = &mut purpose {
                    report.retain(|&i| block.contains(&self.map.entries[i]));
                }
                Self::read_request(block, purpose)
            })
            .collect();
        if front {
            for request in requests.into_iter().rev() {
                self.queue.push_front(request);
            }
        } else {
            self.queue.extend(requests);
        }
    }

    /// In position mode, the write of the present position into the target that precedes an
    /// enable.
    fn enable_hold_request(&self) -> Result<Option<(Request, f64)>, CodecError> {
        if self.mode != Some(ControlMode::Position) {
            return Ok(None);
        }
        let Some(index) = self.map.role(Role::TargetPosition) else {
            return Ok(None);
        };
        let position = self.known.position_rev.ok_or_else(|| {
            CodecError::Invalid(
                "enable in position mode: the present position is not known yet, so the target cannot be set to \
                 it first (wait for telemetry)"
                    .into(),
            )
        })?;
        let (words, held) =
            self.encode_target(ControlMode::Position, position).map_err(CodecError::Invalid)?;
        let address = self.map.entries[index].address;
        let request = Request::new(
            Op::Write { start: address, values: words },
            Purpose::Target { mode: ControlMode::Position, value: held, safe: true },
        );
        Ok(Some((request, held)))
    }

    /// Drops queued controlword writes of an older sequence; a queued stop stays.
    fn drop_queued_controls(&mut self) {
        self.queue.retain(|r| !matches!(r.purpose, Purpose::Control { stop: false, .. }));
    }

    /// The first statusword read of a new sequence: behind a queued stop, so that the stop
    /// reaches the drive first; first thing otherwise.
    fn queue_sequence_status_read(&mut self) {
        let stop_queued = self.queue.iter().any(|r| matches!(r.purpose, Purpose::Control { stop: true, .. }));
        if !stop_queued {
            self.queue_status_read();
            return;
        }
        if let Some(status) = self.map.role(Role::Statusword) {
            let at = self
                .queue
                .iter()
                .rposition(|r| {
                    matches!(r.purpose, Purpose::Control { stop: true, .. } | Purpose::Target { .. })
                })
                .map_or(0, |i| i + 1);
            let mut reads: Vec<Request> = Vec::new();
            for block in self.map.blocks(&[status], MAX_BRIDGE) {
                reads.push(Self::read_request(
                    block,
                    Purpose::Read(ReadWhy { status: true, ..ReadWhy::default() }),
                ));
            }
            for (k, request) in reads.into_iter().enumerate() {
                self.queue.insert(at + k, request);
            }
        }
    }

    /// A retry of a write sent before the last stop that would undo it.
    fn retry_undoes_stop(&self, in_flight: &InFlight) -> bool {
        in_flight.seq < self.stopped_at_seq
            && matches!(
                in_flight.req.purpose,
                Purpose::Target { .. } | Purpose::ModeWrite { .. } | Purpose::Control { stop: false, .. }
            )
    }

    /// A statusword read at the back of the queue unless one is queued or flying.
    fn queue_status_read_behind(&mut self) {
        let Some(status) = self.map.role(Role::Statusword) else {
            return;
        };
        let is_status = |r: &Request| matches!(r.purpose, Purpose::Read(ReadWhy { status: true, .. }));
        if !self.queue.iter().any(is_status) && !self.in_flight.as_ref().is_some_and(|f| is_status(&f.req)) {
            self.queue_reads(&[status], Purpose::Read(ReadWhy { status: true, ..ReadWhy::default() }), false);
        }
    }

    fn queue_status_read(&mut self) {
        let Some(status) = self.map.role(Role::Statusword) else {
            return;
        };
        let queued =
            self.queue.iter().any(|r| matches!(r.purpose, Purpose::Read(ReadWhy { status: true, .. })));
        let flying = self
            .in_flight
            .as_ref()
            .is_some_and(|f| matches!(f.req.purpose, Purpose::Read(ReadWhy { status: true, .. })));
        if !queued && !flying {
            self.queue_reads(&[status], Purpose::Read(ReadWhy { status: true, ..ReadWhy::default() }), true);
        }
    }

    fn queue_control(&mut self, value: u16, front: bool) {
        let Some(entry) = self.map.role(Role::Controlword) else {
            return;
        };
        let address = self.map.entries[entry].address;
        let request = Request::new(
            Op::Write { start: address, values: vec![value] },
            Purpose::Control { value, stop: false },
        );
        self.awaiting_control = Some(value);
        self.fresh_from = u64::MAX;
        if front {
            self.queue.push_front(request);
        } else {
            self.queue.push_back(request);
        }
    }

    /// Queues a refresh of every role register (state, mode, targets).
    fn queue_refresh(&mut self) {
        for block in self.start_blocks.clone() {
            self.queue.push_back(Self::read_request(block, Purpose::read()));
        }
    }

    fn target_write_pending(&self, mode: ControlMode) -> bool {
        let is_target = |r: &Request| matches!(r.purpose, Purpose::Target { mode: m, .. } if m == mode);
        self.queue.iter().any(is_target) || self.in_flight.as_ref().is_some_and(|f| is_target(&f.req))
    }

    fn mode_write_pending(&self) -> bool {
        let is_mode = |r: &Request| matches!(r.purpose, Purpose::ModeWrite { .. });
        self.queue.iter().any(is_mode) || self.in_flight.as_ref().is_some_and(|f| is_mode(&f.req))
    }

    // ----- receiving -----------------------------------------------------------------------

    fn next_step(&self) -> Step {
        let buf = &self.rx;
        if buf.is_empty() {
            return Step::Wait;
        }
        let expect = self.in_flight.as_ref().and_then(|f| f.expect);
        if let Some(expect) = expect {
            match expect.length(buf) {
                Some(Some(len)) if buf.len() >= len => {
                    return if crc_ok(&buf[..len]) { Step::Frame { len, ours: true } } else { Step::Drop(1) };
                }
                Some(Some(_)) => return self.scan_or_wait(expect),
                Some(None) => return Step::Wait,
                None => {}
            }
        }
        match any_reply_length(buf) {
            Length::Need => Step::Wait,
            Length::Invalid => Step::Drop(1),
            Length::Bytes(len) if buf.len() >= len => {
                if !crc_ok(&buf[..len]) {
                    Step::Drop(1)
                } else if let Some(expect) = expect
                    && (1..len).any(|k| expect.length(&buf[k..]).is_some())
                {
                    // A CRC matches by chance once in 65 536 frames: garbage plus the start of
                    // our reply can look like a whole frame of another unit. While our reply
                    // may begin inside it, wait for that reply (or the response timeout).
                    self.scan_or_wait(expect)
                } else {
                    Step::Frame { len, ours: false }
                }
            }
            Length::Bytes(_) => match expect {
                Some(expect) => self.scan_or_wait(expect),
                None => Step::Wait,
            },
        }
    }

    /// The head is incomplete: if a whole reply of ours follows, skip to it.
    ///
    /// Bytes enter the buffer one at a time and this scan runs whenever the head is left
    /// waiting, so a reply of ours complete at an earlier byte was found then: only a reply
    /// ending at the newest byte can be new. Its length is that of the normal reply or of an
    /// exception (5), so at most two offsets need looking at, the earlier first.
    fn scan_or_wait(&self, expect: Expect) -> Step {
        let n = self.rx.len();
        let normal = expect.len.unwrap_or(0);
        let (first, second) = if normal > 5 { (normal, 5) } else { (5, normal) };
        for len in [first, second] {
            if len == 0 || len >= n {
                continue;
            }
            let at = n - len;
            let rest = &self.rx[at..];
            if expect.length(rest) == Some(Some(len)) && crc_ok(rest) {
                return Step::Drop(at);
            }
        }
        Step::Wait
    }

    fn process_rx(&mut self, now_s: f64, out: &mut CodecOut) {
        loop {
            match self.next_step() {
                Step::Wait => return,
                Step::Drop(n) => {
                    self.rx.drain(..n.min(self.rx.len()));
                }
                Step::Frame { len, ours } => {
                    let frame: Vec<u8> = self.rx.drain(..len).collect();
                    self.on_frame(&frame, ours, now_s, out);
                }
            }
        }
    }

    fn on_frame(&mut self, frame: &[u8], ours: bool, now_s: f64, out: &mut CodecOut) {
        if !ours {
            if self.started && now_s >= self.hold_until {
                let text = if frame[0] == self.unit {
                    format!(
                        "ignored a frame from unit {} that answers no request in flight: {}",
                        frame[0],
                        hex_string(frame)
                    )
                } else {
                    format!("ignored a frame from unit {}: {}", frame[0], hex_string(frame))
                };
                self.log.log(now_s, text, out);
            }
            return;
        }
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        self.answered(out);
        if frame[1] & 0x80 != 0 {
            self.on_exception(in_flight, frame, now_s, out);
        } else {
            self.on_response(in_flight, frame, now_s, out);
        }
    }

    /// The drive answered something: it is there.
    fn answered(&mut self, out: &mut CodecOut) {
        self.failures_in_row = 0;
        if self.lost {
            self.lost = false;
            self.last_state = None;
            self.last_status = None;
            out.events.push(Event::Log(format!("Modbus unit {} answers again", self.unit)));
            self.update_state(out);
        }
    }

    fn on_exception(&mut self, in_flight: InFlight, frame: &[u8], now_s: f64, out: &mut CodecOut) {
        let code = frame[2];
        let reason = Self::exception_text(&in_flight.req.op, code);
        if let Purpose::Console = in_flight.req.purpose {
            out.events.push(Event::Log(format!("< {} ({reason})", hex_string(frame))));
            return;
        }
        if code == 0x06 && self.retry_undoes_stop(&in_flight) {
            self.log.log(
                now_s,
                format!(
                    "{}: {reason}; not sent again: a stop followed it",
                    Self::describe(&in_flight.req.op)
                ),
                out,
            );
            return;
        }
        let mut req = in_flight.req;
        if code == 0x06 && req.attempt < self.retries {
            req.attempt += 1;
            self.log.log(now_s, format!("{}: {reason}; trying again", Self::describe(&req.op)), out);
            self.queue.push_back(req);
            return;
        }
        // 01/02: a function or address the drive lacks; 03: often a quantity larger than the
        // drive reads at once. Either way, read the entries one by one.
        if let Purpose::Read(ReadWhy { cycle: Some(index), .. }) = req.purpose
            && matches!(code, 0x01..=0x03)
            && let Some(&block) = self.cycle.get(index)
        {
            self.drop_cycle_block(index, block, &reason, now_s, out);
            return;
        }
        if let (Purpose::Read(why), Op::Read { table, start, qty }) = (&req.purpose, &req.op)
            && matches!(code, 0x01..=0x03)
        {
            let block = Block { table: *table, start: *start, qty: *qty };
            let inside: Vec<usize> =
                (0..self.map.entries.len()).filter(|&i| block.contains(&self.map.entries[i])).collect();
            if inside.len() > 1 {
                let singles: Vec<Block> = inside.iter().flat_map(|&i| self.map.blocks(&[i], 0)).collect();
                self.log.log(
                    now_s,
                    format!(
                        "the drive refused {} ({reason}); reading its registers one by one",
                        Self::describe_block(block)
                    ),
                    out,
                );
                if let Some(at) = self.start_blocks.iter().position(|b| *b == block) {
                    self.start_blocks.splice(at..=at, singles.iter().copied());
                }
                for single in singles.into_iter().rev() {
                    let mut why = why.clone();
                    why.report.retain(|&i| single.contains(&self.map.entries[i]));
                    self.queue.push_front(Self::read_request(single, Purpose::Read(why)));
                }
                return;
            }
        }
        self.fail(req, reason, now_s, out);
    }

    /// A telemetry read the drive refused: read its entries one by one, or stop reading an
    /// entry refused on its own.
    fn drop_cycle_block(&mut self, index: usize, block: Block, reason: &str, now_s: f64, out: &mut CodecOut) {
        let inside: Vec<usize> =
            (0..self.map.entries.len()).filter(|&i| block.contains(&self.map.entries[i])).collect();
        let wanted: Vec<usize> = inside
            .iter()
            .copied()
            .filter(|&i| {
                self.map.entries[i].role.is_some_and(|r| {
                    matches!(
                        r,
                        Role::Statusword
                            | Role::ModesDisplay
                            | Role::ModesOfOperation
                            | Role::ErrorCode
                            | Role::VelocityActual
                            | Role::PositionActual
                            | Role::CurrentActual
                            | Role::TorqueActual
                            | Role::DcLinkVoltage
                            | Role::Temperature
                    )
                })
            })
            .collect();
        if wanted.len() > 1 {
            let singles: Vec<Block> = wanted.iter().flat_map(|&i| self.map.blocks(&[i], 0)).collect();
            self.log.log(
                now_s,
                format!(
                    "the drive refused {} ({reason}); reading its registers one by one",
                    Self::describe_block(block)
                ),
                out,
            );
            self.cycle.splice(index..=index, singles);
        } else {
            self.cycle.remove(index);
            if let Some(known) = self.refused.iter_mut().find(|r| r.block == block) {
                known.pause_s = (known.pause_s * 2.0).min(REFUSED_RETRY_MAX_S);
                known.retry_at_s = Some(now_s + known.pause_s);
                return;
            }
            self.refused.push(Refused { block, pause_s: 1.0, retry_at_s: Some(now_s + 1.0) });
            let names: Vec<&str> = inside.iter().map(|&i| self.entry_name(i)).collect();
            out.events.push(Event::Log(format!(
                "the drive refused {} ({}) with {reason}; it is left out of the telemetry and asked again \
                 after 1 s, then less often (every {REFUSED_RETRY_MAX_S} s at most): check the register map",
                Self::describe_block(block),
                names.join(", ")
            )));
        }
        self.cycle_pos = self.cycle.len();
    }

    fn describe_block(block: Block) -> String {
        Self::describe(&Op::Read { table: block.table, start: block.start, qty: block.qty })
    }

    fn on_response(&mut self, in_flight: InFlight, frame: &[u8], now_s: f64, out: &mut CodecOut) {
        let InFlight { req, frame: request, seq, .. } = in_flight;
        match &req.op {
            Op::Read { table, start, qty } => {
                let words: Vec<u16> = (0..usize::from(*qty)).map(|k| be16(frame, 3 + 2 * k)).collect();
                self.on_read(*table, *start, &words, &req.purpose, seq, now_s, out);
            }
            Op::Write { start, values } => {
                let echo_ok = if values.len() == 1 {
                    frame == request.as_slice()
                } else {
                    be16(frame, 2) == *start && usize::from(be16(frame, 4)) == values.len()
                };
                if echo_ok {
                    self.on_written(&req.purpose, seq, now_s, out);
                } else {
                    let reason =
                        format!("the drive answered with `{}`, which does not confirm it", hex_string(frame));
                    self.fail(req, reason, now_s, out);
                }
            }
            Op::Raw { frame: request } => {
                let request = request.clone();
                self.on_console_reply(&request, frame, out);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_read(
        &mut self,
        table: Table,
        start: u16,
        words: &[u16],
        purpose: &Purpose,
        seq: u64,
        now_s: f64,
        out: &mut CodecOut,
    ) {
        let block = Block { table, start, qty: words.len() as u16 };
        let from_cycle = matches!(purpose, Purpose::Read(ReadWhy { cycle: Some(_), .. }));
        if !from_cycle
            && let Some(waiting) =
                self.refused.iter_mut().find(|r| r.block == block && r.retry_at_s.is_some())
        {
            // Answered outside the cycle (a status read during a control sequence): back into
            // the cycle at its next start.
            waiting.retry_at_s = Some(now_s);
        } else if from_cycle && let Some(at) = self.refused.iter().position(|r| r.block == block) {
            let back = self.refused.swap_remove(at);
            let names: Vec<&str> = (0..self.map.entries.len())
                .filter(|&i| block.contains(&self.map.entries[i]))
                .map(|i| self.entry_name(i))
                .collect();
            self.log.log(
                now_s,
                format!(
                    "the drive answers {} ({}) again after {} s: it is read again",
                    Self::describe_block(back.block),
                    names.join(", "),
                    back.pause_s
                ),
                out,
            );
        }
        let (mut had_status, mut had_mode, mut had_code) = (false, false, false);
        let mut targets_read = [false; 3];
        for index in 0..self.map.entries.len() {
            let entry = &self.map.entries[index];
            if !block.contains(entry) {
                continue;
            }
            let offset = usize::from(entry.address - start);
            let regs = &words[offset..offset + usize::from(entry.words())];
            let value = self.map.decode(index, regs);
            let (role, unit) = (entry.role, entry.unit.as_str());
            match role {
                Some(Role::Statusword) => {
                    self.known.statusword = Some((regs[0], seq));
                    had_status = true;
                }
                Some(Role::Controlword) => self.known.controlword = Some(regs[0]),
                Some(Role::ModesDisplay) => {
                    self.known.mode_code = Some(regs[0] as i16);
                    had_mode = true;
                }
                Some(Role::ModesOfOperation) if self.map.role(Role::ModesDisplay).is_none() => {
                    self.known.mode_code = Some(regs[0] as i16);
                    had_mode = true;
                }
                Some(Role::ErrorCode) => {
                    self.known.error_code = Some((regs[0], seq));
                    had_code = true;
                }
                Some(role) => {
                    if let (Some(mode), Ok(v)) = (role.target_mode(), &value) {
                        let canonical = match mode {
                            ControlMode::Current => self.map.to_amperes(unit, *v),
                            _ => Some(*v),
                        };
                        if let Some(canonical) = canonical {
                            self.known.targets[mi(mode)] = Some(canonical);
                            targets_read[mi(mode)] = true;
                        }
                    }
                    if let (Some(signal), Ok(v)) = (self.signal_of[index], &value) {
                        let canonical = match role {
                            Role::CurrentActual => self.map.to_amperes(unit, *v),
                            _ => Some(*v),
                        };
                        if let Some(v) = canonical.filter(|v| v.is_finite()) {
                            if role == Role::PositionActual {
                                self.known.position_rev = Some(v);
                            }
                            out.samples.push(Sample { t_s: now_s, signal, value: v });
                        }
                    }
                }
                None => {}
            }
            let reported = match purpose {
                Purpose::Read(ReadWhy { report, .. }) => report.contains(&index),
                Purpose::ParamReadback { entry } => *entry == index,
                _ => false,
            };
            if reported {
                let key = self.entry_name(index).to_owned();
                let value = value.map(|v| self.catalogue_value(index, v));
                match value {
                    Ok(value) if matches!(purpose, Purpose::ParamReadback { .. }) => {
                        out.events.push(Event::ParamWritten { key, value })
                    }
                    Ok(value) => out.events.push(Event::ParamValue { key, value }),
                    Err(e) => out.events.push(Event::Refused(format!("reading {key}: {e}"))),
                }
            }
        }
        if let Purpose::Read(ReadWhy { code: true, .. }) = purpose {
            self.code_read_pending = false;
        }
        if let Purpose::Read(ReadWhy { mode_report: true, .. }) = purpose {
            self.force_mode_report = true;
        }
        if had_status || had_code {
            self.update_state(out);
        }
        if had_status && seq >= self.fresh_from {
            self.advance_control(now_s, out);
        }
        if had_mode {
            self.check_mode(seq, targets_read, out);
        }
        self.check_targets(targets_read, seq, out);
    }

    fn on_written(&mut self, purpose: &Purpose, seq: u64, now_s: f64, out: &mut CodecOut) {
        match purpose {
            Purpose::ParamWrite { entry } => {
                let entry = *entry;
                self.queue_reads(&[entry], Purpose::ParamReadback { entry }, true);
            }
            Purpose::Control { value, .. } => self.control_written(*value, seq, now_s),
            Purpose::ModeWrite { mode } => {
                if let Some(pending) = &mut self.mode_pending
                    && pending.mode == *mode
                {
                    pending.deadline = Some(now_s + STEP_TIMEOUT_S);
                    self.fresh_mode_from = seq + 1;
                    match self.map.role(Role::ModesDisplay) {
                        Some(display) => self.queue_reads(&[display], Purpose::read(), true),
                        None => {
                            let pending = self.mode_pending.take();
                            if let Some(p) = pending {
                                self.known.mode_code = Some(p.code);
                                self.last_mode_code = Some(p.code);
                                self.report_mode(p.mode, p.setpoint, out);
                            }
                        }
                    }
                }
            }
            Purpose::Target { .. }
            | Purpose::Read(ReadWhy { .. })
            | Purpose::ParamReadback { .. }
            | Purpose::Console => {}
        }
    }

    // ----- state ---------------------------------------------------------------------------

    fn cia(&self) -> Option<Cia> {
        self.known.statusword.and_then(|(word, _)| Cia::from_statusword(word))
    }

    fn state_words(&self) -> String {
        match self.known.statusword {
            Some((word, _)) => match Cia::from_statusword(word) {
                Some(state) => format!("{} (statusword 0x{word:04X})", state.label()),
                None => format!("statusword 0x{word:04X}, which matches no state"),
            },
            None => "an unknown state (no statusword read)".to_owned(),
        }
    }

    /// The fault in words, once the error code has been read during this fault.
    fn fault_text(&self, since: u64) -> Option<String> {
        let word = self.known.statusword.map_or(0, |(w, _)| w);
        if self.map.role(Role::ErrorCode).is_none() || self.code_unreadable {
            return Some(format!("CiA 402 fault (statusword 0x{word:04X})"));
        }
        match self.known.error_code {
            Some((code, seq)) if seq >= since => Some(error_text(code)),
            _ => None,
        }
    }

    /// Reports the CiA 402 state and the drive state when they change. A fault waits for the
    /// error code, read right after the statusword if it was not read with it.
    fn update_state(&mut self, out: &mut CodecOut) {
        if self.lost {
            return;
        }
        let Some((word, seq)) = self.known.statusword else {
            return;
        };
        let cia = Cia::from_statusword(word);
        let status = match cia {
            Some(state) => format!("CiA 402: {}", state.label()),
            None => format!("CiA 402: statusword 0x{word:04X} matches no state"),
        };
        if self.last_status.as_deref() != Some(status.as_str()) {
            self.last_status = Some(status.clone());
            out.events.push(Event::Status(status));
        }
        let state = match cia {
            Some(Cia::OperationEnabled) => DriveState::Enabled,
            Some(state) if state.is_fault() => {
                let since = *self.fault_seen_seq.get_or_insert(seq);
                match self.fault_text(since) {
                    Some(text) => DriveState::Fault(text),
                    None => {
                        if !self.code_read_pending
                            && let Some(code) = self.map.role(Role::ErrorCode)
                        {
                            self.code_read_pending = true;
                            self.queue_reads(
                                &[code],
                                Purpose::Read(ReadWhy { code: true, ..ReadWhy::default() }),
                                true,
                            );
                        }
                        return;
                    }
                }
            }
            _ => {
                self.fault_seen_seq = None;
                self.code_unreadable = false;
                DriveState::Idle
            }
        };
        if self.last_state.as_ref() != Some(&state) {
            self.last_state = Some(state.clone());
            out.events.push(Event::State(state));
        }
    }

    /// A statusword read after the sequence's last write: take the next step.
    fn advance_control(&mut self, now_s: f64, out: &mut CodecOut) {
        let Some((word, _)) = self.known.statusword else {
            return;
        };
        let state = Cia::from_statusword(word);
        let Some(mut control) = self.control.take() else {
            return;
        };
        let mut keep = true;
        match &mut control {
            Control::Enable(seq) => match state {
                Some(Cia::OperationEnabled) => keep = false,
                Some(s) if s.is_fault() => {
                    let text = self
                        .fault_seen_seq
                        .and_then(|since| self.fault_text(since))
                        .unwrap_or_else(|| format!("statusword 0x{word:04X}"));
                    out.events.push(Event::Refused(format!(
                        "enable: the drive is in fault ({text}); reset faults first"
                    )));
                    keep = false;
                }
                _ => {
                    let ready = match seq.written {
                        None => true,
                        Some((_, expected)) => state == Some(expected),
                    };
                    if ready && let Some((value, expected)) = enable_step(state) {
                        seq.written = Some((value, expected));
                        seq.deadline = now_s + STEP_TIMEOUT_S;
                        self.queue_control(value, true);
                    }
                }
            },
            Control::Stop(stop) => {
                stop.reading = Some(word);
                // Only a state with the stage known to be off confirms the stop (fault too: the
                // stage is off there and no controlword but a reset leaves it). An unknown
                // statusword, quick stop active and not ready to switch on do not.
                keep = !matches!(
                    state,
                    Some(Cia::SwitchOnDisabled | Cia::ReadyToSwitchOn | Cia::SwitchedOn | Cia::Fault)
                );
                if state == Some(Cia::QuickStopActive) && stop.value == CW_QUICK_STOP {
                    stop.braking_since.get_or_insert(now_s);
                }
            }
            Control::Reset(reset) => match reset.phase {
                ResetPhase::Check => match state {
                    Some(Cia::Fault) => {
                        // Bit 7 must rise: clear it first unless it is known to be clear.
                        if self.known.controlword.is_none_or(|w| w & CW_FAULT_RESET != 0) {
                            reset.phase = ResetPhase::Clear;
                            self.queue_control(CW_DISABLE_VOLTAGE, true);
                        } else {
                            reset.phase = ResetPhase::Edge;
                            self.queue_control(CW_FAULT_RESET, true);
                        }
                    }
                    Some(Cia::FaultReactionActive) => {}
                    _ => {
                        out.events.push(Event::Log(format!(
                            "fault reset: no fault is latched (CiA 402: {})",
                            self.state_words()
                        )));
                        keep = false;
                    }
                },
                ResetPhase::Edge => {
                    if !state.is_some_and(Cia::is_fault) {
                        reset.phase = ResetPhase::Shutdown;
                        self.queue_control(CW_SHUTDOWN, true);
                    }
                }
                ResetPhase::Clear | ResetPhase::Shutdown => {}
            },
        }
        if keep {
            self.control = Some(control);
        }
    }

    /// The drive acknowledged a controlword write.
    fn control_written(&mut self, value: u16, seq: u64, now_s: f64) {
        self.known.controlword = Some(value);
        if self.awaiting_control != Some(value) {
            return;
        }
        self.awaiting_control = None;
        self.fresh_from = seq + 1;
        let Some(mut control) = self.control.take() else {
            return;
        };
        let mut keep = true;
        match &mut control {
            Control::Enable(seq) => {
                seq.deadline = now_s + STEP_TIMEOUT_S;
                self.queue_status_read();
            }
            Control::Stop(stop) => {
                stop.deadline = Some(now_s + STOP_CONFIRM_S);
                self.queue_status_read();
            }
            Control::Reset(reset) => match reset.phase {
                ResetPhase::Clear => {
                    reset.phase = ResetPhase::Edge;
                    self.queue_control(CW_FAULT_RESET, true);
                }
                ResetPhase::Edge => {
                    reset.deadline = now_s + STEP_TIMEOUT_S;
                    self.queue_status_read();
                }
                ResetPhase::Shutdown => {
                    keep = false;
                    self.queue_status_read();
                }
                ResetPhase::Check => {}
            },
        }
        if keep {
            self.control = Some(control);
        }
    }

    fn control_failed(&mut self, value: u16, reason: &str, now_s: f64, out: &mut CodecOut) {
        let write = format!("writing 0x{value:04X} ({}) to the controlword", controlword_name(value));
        if self.awaiting_control != Some(value) {
            self.log.log(now_s, format!("{write} failed: {reason}"), out);
            return;
        }
        self.awaiting_control = None;
        match self.control.take() {
            Some(Control::Enable(_)) => {
                out.events.push(Event::Refused(format!("enable: {write} failed: {reason}")))
            }
            Some(Control::Reset(_)) => {
                out.events.push(Event::Refused(format!("fault reset: {write} failed: {reason}")))
            }
            Some(Control::Stop(mut stop)) => {
                let what = if stop.quick { "E-STOP (quick stop)" } else { "disable" };
                out.events
                    .push(Event::Refused(format!("{what}: {write} failed: {reason}; sending it again")));
                stop.deadline = Some(now_s);
                stop.reported = Some((now_s, stop.reading));
                self.control = Some(Control::Stop(stop));
            }
            None => self.log.log(now_s, format!("{write} failed: {reason}"), out),
        }
    }

    /// Deadlines of the running sequence, and statusword reads while it waits on one.
    fn check_control(&mut self, now_s: f64, out: &mut CodecOut) {
        let Some(control) = self.control.clone() else {
            return;
        };
        let waiting_reading = self.awaiting_control.is_none();
        match control {
            Control::Enable(seq) => {
                if waiting_reading && now_s >= seq.deadline {
                    let stuck = self.state_words();
                    let text = match seq.written {
                        Some((value, expected)) => format!(
                            "enable: stuck in {stuck} {STEP_TIMEOUT_S} s after {} (0x{value:04X}); expected {}",
                            controlword_name(value),
                            expected.label()
                        ),
                        None => format!(
                            "enable: the drive stayed in {stuck} for {STEP_TIMEOUT_S} s; it cannot be switched on from \
                             there"
                        ),
                    };
                    let off = self.disable_word();
                    out.events.push(Event::Refused(format!(
                        "{text}; writing 0x{off:04X} ({}) so that the drive does not enable later by itself",
                        controlword_name(off)
                    )));
                    self.control = None;
                    // A switch-on or enable word may be latched in the drive: take it back.
                    self.send_stop(false, true, now_s, out);
                } else if waiting_reading {
                    self.queue_status_read();
                }
            }
            Control::Stop(stop)
                if stop.braking_since.is_some()
                    && stop.reading.and_then(Cia::from_statusword) == Some(Cia::QuickStopActive) =>
            {
                // Braking on the quick-stop ramp: then disable voltage.
                if stop.braking_since.is_some_and(|since| now_s - since >= QUICK_STOP_HOLD_S) {
                    self.queue.retain(|r| !matches!(r.purpose, Purpose::Control { .. }));
                    self.control = Some(Control::Stop(StopSeq {
                        value: CW_DISABLE_VOLTAGE,
                        deadline: None,
                        braking_since: None,
                        ..stop
                    }));
                    self.queue_control(CW_DISABLE_VOLTAGE, true);
                    if let Some(Request { purpose: Purpose::Control { stop, .. }, .. }) =
                        self.queue.front_mut()
                    {
                        *stop = true;
                    }
                } else if waiting_reading {
                    // Behind the writes queued with the stop (the held target).
                    self.queue_status_read_behind();
                }
            }
            Control::Stop(stop) => match stop.deadline {
                Some(deadline) if now_s >= deadline => {
                    let due = match stop.reported {
                        None => true,
                        Some((at, reading)) => reading != stop.reading || now_s - at >= STOP_REPORT_S,
                    };
                    if due {
                        let what = if stop.quick { "E-STOP (quick stop)" } else { "disable" };
                        let state = match stop.reading {
                            Some(_) => format!("the drive is in {}", self.state_words()),
                            None => "the statusword did not read back".to_owned(),
                        };
                        out.events.push(Event::Refused(format!(
                            "{what} not confirmed: {state} {STOP_CONFIRM_S} s after writing 0x{:04X} ({}); sending it \
                             again until the drive confirms",
                            stop.value,
                            controlword_name(stop.value)
                        )));
                        if let Some(Control::Stop(s)) = &mut self.control {
                            s.reported = Some((now_s, stop.reading));
                        }
                    }
                    self.send_stop(stop.quick, false, now_s, out);
                }
                Some(_) if waiting_reading => self.queue_status_read(),
                _ => {}
            },
            Control::Reset(reset) => {
                if waiting_reading && now_s >= reset.deadline {
                    match reset.phase {
                        ResetPhase::Edge => {
                            let text = self
                                .fault_seen_seq
                                .and_then(|since| self.fault_text(since))
                                .unwrap_or_else(|| self.state_words());
                            out.events.push(Event::Refused(format!(
                                "fault reset: the drive is still in fault ({text}) {STEP_TIMEOUT_S} s after 0x0080; \
                                 its cause may persist"
                            )));
                            if let Some(Control::Reset(r)) = &mut self.control {
                                r.phase = ResetPhase::Shutdown;
                            }
                            self.queue_control(CW_SHUTDOWN, true);
                        }
                        _ => {
                            out.events.push(Event::Refused(format!(
                                "fault reset: the drive stayed in {} for {STEP_TIMEOUT_S} s",
                                self.state_words()
                            )));
                            self.control = None;
                        }
                    }
                } else if waiting_reading {
                    self.queue_status_read();
                }
            }
        }
    }

    /// The controlword that switches the power stage off from the state last read: disable
    /// operation from operation enabled (back to switched on, one step from enabled again),
    /// shutdown from switched on and ready to switch on, disable voltage otherwise (from quick
    /// stop active, and where the stage is off already; from an unknown state it stops too).
    fn disable_word(&self) -> u16 {
        match self.cia() {
            Some(Cia::OperationEnabled) => CW_SWITCH_ON,
            Some(Cia::SwitchedOn | Cia::ReadyToSwitchOn) => CW_SHUTDOWN,
            _ => CW_DISABLE_VOLTAGE,
        }
    }

    /// Writes a stop (quick stop for E-STOP) first thing, after dropping queued setpoints,
    /// mode changes and controlword writes; `first` also zeroes the speed or torque target.
    fn send_stop(&mut self, quick: bool, first: bool, now_s: f64, out: &mut CodecOut) {
        let what = if quick { "E-STOP" } else { "disable" };
        if self.map.role(Role::Controlword).is_none() {
            out.events.push(Event::Refused(format!("{what}: the register map has no controlword")));
            return;
        }
        if !first {
            // Sent again: setpoints queued since the stop are newer than it and stay.
            self.queue.retain(|r| !matches!(r.purpose, Purpose::Control { .. }));
        } else {
            let before = self.queue.len();
            self.queue.retain(|r| {
                !matches!(
                    r.purpose,
                    Purpose::Control { .. } | Purpose::Target { .. } | Purpose::ModeWrite { .. }
                )
            });
            let dropped = before - self.queue.len();
            if dropped > 0 {
                self.log.log(
                    now_s,
                    format!("{what}: dropped {dropped} queued setpoint, mode or controlword writes"),
                    out,
                );
            }
        }
        if first && self.mode_pending.take().is_some() {
            self.mode = self.known.mode_code.and_then(mode_from_code);
            self.last_mode_code = None;
            out.events.push(Event::Log(format!("{what}: the mode change was cancelled")));
        }
        let (reading, reported, previous) = match &self.control {
            Some(Control::Stop(s)) if s.quick == quick => (s.reading, s.reported, Some(s.value)),
            _ => (None, None, None),
        };
        let value = match (quick, previous) {
            // After the ramp a quick stop goes on as disable voltage.
            (true, Some(CW_DISABLE_VOLTAGE)) if !first => CW_DISABLE_VOLTAGE,
            (true, _) => CW_QUICK_STOP,
            _ => self.disable_word(),
        };
        self.control = Some(Control::Stop(StopSeq {
            quick,
            value,
            deadline: None,
            reading,
            reported,
            braking_since: None,
        }));
        self.queue_control(value, true);
        if let Some(Request { purpose: Purpose::Control { stop, .. }, .. }) = self.queue.front_mut() {
            *stop = true;
        }
        self.stopped_at_seq = self.next_seq;
        let hold = match self.mode {
            Some(ControlMode::Position) => self.known.position_rev,
            Some(_) => Some(0.0),
            None => None,
        };
        if quick
            && first
            && let Some(mode) = self.mode
            && let Some(hold) = hold
            && let Some(index) = self.map.role(Role::target_of(mode))
            && let Ok((words, held)) = self.encode_target(mode, hold)
        {
            // A later enable must not restart the motion by itself (position: hold where it is).
            let address = self.map.entries[index].address;
            let request = Request::new(
                Op::Write { start: address, values: words },
                Purpose::Target { mode, value: held, safe: true },
            );
            self.queue.insert(1.min(self.queue.len()), request);
            self.reported_mode = Some((mode, held));
            out.events.push(Event::Mode { mode, setpoint: held });
        }
    }

    fn check_mode_pending(&mut self, now_s: f64, out: &mut CodecOut) {
        let Some(pending) = &self.mode_pending else {
            return;
        };
        let Some(deadline) = pending.deadline else {
            return;
        };
        if now_s < deadline {
            return;
        }
        let reading = match self.known.mode_code {
            Some(code) => format!("{code} ({})", mode_code_name(code)),
            None => "nothing".to_owned(),
        };
        out.events.push(Event::Refused(format!(
            "{} mode: the mode display reads {reading} {STEP_TIMEOUT_S} s after writing {} ({})",
            pending.mode.cli_name(),
            pending.code,
            mode_code_name(pending.code)
        )));
        self.mode_pending = None;
        self.mode = self.known.mode_code.and_then(mode_from_code);
        self.last_mode_code = None;
    }

    /// A mode display reading: confirms a mode change, or notices one made elsewhere.
    fn check_mode(&mut self, seq: u64, targets_read: [bool; 3], out: &mut CodecOut) {
        let Some(code) = self.known.mode_code else {
            return;
        };
        if let Some(pending) = &self.mode_pending {
            if seq >= self.fresh_mode_from
                && code == pending.code
                && let Some(pending) = self.mode_pending.take()
            {
                self.last_mode_code = Some(code);
                self.report_mode(pending.mode, pending.setpoint, out);
            }
            return;
        }
        if self.mode_write_pending() || self.last_mode_code == Some(code) {
            return;
        }
        self.last_mode_code = Some(code);
        let mode = mode_from_code(code);
        match mode {
            Some(m) if self.map.role(Role::target_of(m)).is_some() => {
                self.mode = Some(m);
                self.force_mode_report = true;
                if !targets_read[mi(m)]
                    && let Some(target) = self.map.role(Role::target_of(m))
                {
                    self.queue_reads(
                        &[target],
                        Purpose::Read(ReadWhy { mode_report: true, ..ReadWhy::default() }),
                        true,
                    );
                }
            }
            _ => {
                self.mode = None;
                let why = match mode {
                    Some(m) => format!("the register map has no {} register", Role::target_of(m).label()),
                    None => "drivebench commands profile position (1), profile velocity (3) and profile torque (4)"
                        .to_owned(),
                };
                out.events.push(Event::Log(format!(
                    "the drive runs mode of operation {code} ({}); {why}: choose a mode",
                    mode_code_name(code)
                )));
            }
        }
    }

    /// A target read back: report the mode and setpoint when they differ from what was
    /// reported, unless a newer write is on its way.
    fn check_targets(&mut self, targets_read: [bool; 3], seq: u64, out: &mut CodecOut) {
        let Some(mode) = self.mode else {
            return;
        };
        if !targets_read[mi(mode)]
            || self.mode_pending.is_some()
            || self.target_write_pending(mode)
            || seq <= self.target_sent_seq[mi(mode)]
        {
            return;
        }
        let Some(value) = self.known.targets[mi(mode)] else {
            return;
        };
        let changed = match self.reported_mode {
            Some((m, v)) => m != mode || !close(v, value),
            None => true,
        };
        if changed || self.force_mode_report {
            self.report_mode(mode, value, out);
        }
    }

    fn report_mode(&mut self, mode: ControlMode, setpoint: f64, out: &mut CodecOut) {
        self.mode = Some(mode);
        self.reported_mode = Some((mode, setpoint));
        self.force_mode_report = false;
        out.events.push(Event::Mode { mode, setpoint });
    }

    /// A request that failed for good (exception, timeouts, a wrong echo).
    fn fail(&mut self, req: Request, reason: String, now_s: f64, out: &mut CodecOut) {
        match req.purpose {
            Purpose::Read(ReadWhy { report, code, .. }) => {
                if code {
                    self.code_read_pending = false;
                    self.code_unreadable = true;
                    self.update_state(out);
                }
                if report.is_empty() {
                    self.log.log(now_s, format!("{} failed: {reason}", Self::describe(&req.op)), out);
                } else {
                    let keys: Vec<&str> = report.iter().map(|&i| self.entry_name(i)).collect();
                    out.events.push(Event::Refused(format!("reading {}: {reason}", keys.join(", "))));
                }
            }
            Purpose::ParamWrite { entry } => {
                out.events
                    .push(Event::Refused(format!("writing {} failed: {reason}", self.entry_name(entry))));
                // Show what the drive holds now.
                self.queue_reads(
                    &[entry],
                    Purpose::Read(ReadWhy { report: vec![entry], ..ReadWhy::default() }),
                    true,
                );
            }
            Purpose::ParamReadback { entry } => out.events.push(Event::Refused(format!(
                "writing {}: reading it back failed ({reason}), so the value it holds is unknown",
                self.entry_name(entry)
            ))),
            Purpose::Control { value, .. } => self.control_failed(value, &reason, now_s, out),
            Purpose::Target { mode, value, .. } => {
                out.events.push(Event::Refused(format!(
                    "the {} setpoint {} {} was not written: {reason}",
                    mode.cli_name(),
                    number(value),
                    mode.unit()
                )));
                // The next read-back reports what the drive holds.
                self.reported_mode = None;
            }
            Purpose::ModeWrite { mode } => {
                out.events
                    .push(Event::Refused(format!("the change to {} mode failed: {reason}", mode.cli_name())));
                self.mode_pending = None;
                self.mode = self.known.mode_code.and_then(mode_from_code);
                self.last_mode_code = None;
            }
            Purpose::Console => out.events.push(Event::Log(format!("< {reason}"))),
        }
    }

    fn check_timeout(&mut self, now_s: f64, out: &mut CodecOut) {
        let Some(deadline) = self.in_flight.as_ref().map(|f| f.deadline) else {
            return;
        };
        if now_s < deadline {
            return;
        }
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        let Some(expect) = in_flight.expect else {
            out.events.push(Event::Log("< (broadcast: every unit executes it, none replies)".into()));
            return;
        };
        // A console function whose reply length is unknown: whatever arrived is the reply.
        if expect.len.is_none() && self.rx.first() == Some(&expect.unit) && crc_ok(&self.rx) {
            let reply = std::mem::take(&mut self.rx);
            self.answered(out);
            if let Op::Raw { frame } = &in_flight.req.op {
                let frame = frame.clone();
                self.on_console_reply(&frame, &reply, out);
            }
            return;
        }
        if !self.rx.is_empty() {
            let shown = hex_string(&self.rx[..self.rx.len().min(32)]);
            self.log.log(
                now_s,
                format!("dropped {} bytes that formed no reply: {shown}", self.rx.len()),
                out,
            );
            self.rx.clear();
        }
        let what = Self::describe(&in_flight.req.op);
        if self.retry_undoes_stop(&in_flight) {
            self.log.log(now_s, format!("no reply to {what}; not sent again: a stop followed it"), out);
            return;
        }
        let mut req = in_flight.req;
        let console = req.purpose == Purpose::Console;
        if req.attempt < self.retries && !console {
            req.attempt += 1;
            self.log.log(
                now_s,
                format!(
                    "no reply to {what} within {} s; sending it again ({} of {})",
                    number(self.response_timeout_s),
                    req.attempt,
                    self.retries
                ),
                out,
            );
            self.queue.push_front(req);
            return;
        }
        let reason = format!(
            "no reply from unit {} within {} s ({} attempt{})",
            expect.unit,
            number(self.response_timeout_s),
            req.attempt + 1,
            if req.attempt == 0 { "" } else { "s" }
        );
        self.fail(req, reason, now_s, out);
        if console {
            return;
        }
        self.failures_in_row += 1;
        if self.failures_in_row >= LOST_AFTER_FAILURES && !self.lost {
            self.lost = true;
            let state = DriveState::Fault(format!(
                "no reply from Modbus unit {} at {} baud: check the wiring (A/B), the unit address, the baud rate \
                 and the parity (8E1 is the Modbus default)",
                self.unit, self.baud
            ));
            self.last_state = Some(state.clone());
            out.events.push(Event::State(state));
        }
    }

    // ----- commands ------------------------------------------------------------------------

    /// A setpoint in the canonical unit as target registers, and the value they hold.
    fn encode_target(&self, mode: ControlMode, value: f64) -> Result<(Vec<u16>, f64), String> {
        let role = Role::target_of(mode);
        let index = self
            .map
            .role(role)
            .ok_or_else(|| format!("the register map has no {} register", role.label()))?;
        let entry = &self.map.entries[index];
        let vendor = match mode {
            ControlMode::Current => self.map.from_amperes(&entry.unit, value).ok_or_else(|| {
                format!(
                    "{} is in {} of the rated current: set rated_current_a in the register map to command amperes",
                    entry.name, entry.unit
                )
            })?,
            _ => value,
        };
        let words = self.map.encode(index, vendor).map_err(|e| e.to_string())?;
        let held = self.map.decode(index, &words).map_err(|e| e.to_string())?;
        let canonical = match mode {
            ControlMode::Current => self.map.to_amperes(&entry.unit, held).unwrap_or(value),
            _ => held,
        };
        Ok((words, canonical))
    }

    fn set_mode(&mut self, mode: ControlMode, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        let role = Role::target_of(mode);
        let Some(target) = self.map.role(role) else {
            return Err(CodecError::Unsupported(format!(
                "{} mode (the register map has no {} register)",
                mode.cli_name(),
                role.label()
            )));
        };
        let report_read = Purpose::Read(ReadWhy { mode_report: true, ..ReadWhy::default() });
        let Some(modes) = self.map.role(Role::ModesOfOperation) else {
            if self.mode == Some(mode) {
                self.queue_reads(&[target], report_read, false);
                self.pump(now_s, out);
                return Ok(());
            }
            return Err(CodecError::Unsupported(format!(
                "{} mode (the register map has no modes of operation register)",
                mode.cli_name()
            )));
        };
        if self.mode == Some(mode)
            && self.mode_pending.is_none()
            && self.known.mode_code.and_then(mode_from_code) == Some(mode)
        {
            // Already active: confirm without touching the setpoint.
            self.queue_reads(&[target], report_read, false);
            self.pump(now_s, out);
            return Ok(());
        }
        let safe = match mode {
            ControlMode::Speed | ControlMode::Current => 0.0,
            ControlMode::Position => self.known.position_rev.ok_or_else(|| {
                CodecError::Invalid(
                    "position mode starts at the present position, which is not known yet: wait for telemetry".into(),
                )
            })?,
        };
        let (words, setpoint) = self.encode_target(mode, safe).map_err(CodecError::Invalid)?;
        let code = mode_code(mode);
        let mode_words =
            self.map.encode(modes, f64::from(code)).map_err(|e| CodecError::Invalid(e.to_string()))?;
        self.queue.retain(|r| !matches!(r.purpose, Purpose::Target { safe: false, .. }));
        let target_address = self.map.entries[target].address;
        self.queue.push_back(Request::new(
            Op::Write { start: target_address, values: words },
            Purpose::Target { mode, value: setpoint, safe: true },
        ));
        let modes_address = self.map.entries[modes].address;
        self.queue.push_back(Request::new(
            Op::Write { start: modes_address, values: mode_words },
            Purpose::ModeWrite { mode },
        ));
        self.mode = Some(mode);
        self.mode_pending = Some(ModePending { mode, code, setpoint, deadline: None });
        self.fresh_mode_from = u64::MAX;
        self.pump(now_s, out);
        Ok(())
    }

    fn set_setpoint(
        &mut self,
        mode: ControlMode,
        value: f64,
        now_s: f64,
        out: &mut CodecOut,
    ) -> Result<(), CodecError> {
        if !value.is_finite() {
            return Err(CodecError::Invalid(format!("{} setpoint is not a finite number", mode.cli_name())));
        }
        if self.mode != Some(mode) {
            let active = self.mode.map_or_else(|| "an unknown".to_owned(), |m| m.cli_name().to_owned());
            return Err(CodecError::WrongMode { wanted: mode.cli_name().to_owned(), active });
        }
        let (words, held) = self.encode_target(mode, value).map_err(CodecError::Invalid)?;
        let Some(index) = self.map.role(Role::target_of(mode)) else {
            return Err(CodecError::Unsupported(format!("{} setpoints", mode.cli_name())));
        };
        let address = self.map.entries[index].address;
        // A newer setpoint replaces one still waiting.
        self.queue
            .retain(|r| !matches!(r.purpose, Purpose::Target { mode: m, safe: false, .. } if m == mode));
        self.queue.push_back(Request::new(
            Op::Write { start: address, values: words },
            Purpose::Target { mode, value: held, safe: false },
        ));
        self.reported_mode = Some((mode, held));
        out.events.push(Event::Mode { mode, setpoint: held });
        self.pump(now_s, out);
        Ok(())
    }

    fn catalogue_index(&self, key: &str) -> Result<usize, CodecError> {
        self.catalogue
            .iter()
            .copied()
            .find(|&i| self.map.entries[i].name == key)
            .ok_or_else(|| CodecError::UnknownParam(key.to_owned()))
    }

    /// For a catalogue entry in ‰ or % of the rated current whose name says it limits
    /// (`limit`, `max`): whether it is offered in amperes (`Some(true)`: the rated current is
    /// known) or read-only (`Some(false)`); `None` for other entries.
    fn relative_limit(&self, index: usize) -> Option<bool> {
        let entry = self.map.entries.get(index)?;
        let name = entry.name.to_ascii_lowercase();
        let relative = matches!(entry.unit.as_str(), "‰" | "%");
        (relative && (name.contains("limit") || name.contains("max")))
            .then(|| self.map.to_amperes(&entry.unit, 1.0).is_some())
    }

    /// A catalogue entry's value in its catalogue unit (amperes for relative current limits).
    fn catalogue_value(&self, index: usize, value: f64) -> f64 {
        match self.relative_limit(index) {
            Some(true) => self.map.to_amperes(&self.map.entries[index].unit, value).unwrap_or(value),
            _ => value,
        }
    }

    fn write_param(&mut self, key: &str, value: f64) -> Result<(), CodecError> {
        let index = self.catalogue_index(key)?;
        let entry = &self.map.entries[index];
        if !entry.writable() || self.relative_limit(index) == Some(false) {
            return Err(CodecError::ReadOnly(key.to_owned()));
        }
        if !value.is_finite() {
            return Err(CodecError::Invalid(format!("{key}: the value is not a finite number")));
        }
        let value = match self.relative_limit(index) {
            Some(true) => self.map.from_amperes(&entry.unit, value).unwrap_or(value),
            _ => value,
        };
        let words = self.map.encode(index, value).map_err(|e| CodecError::Invalid(e.to_string()))?;
        let address = entry.address;
        self.queue.push_back(Request::new(
            Op::Write { start: address, values: words },
            Purpose::ParamWrite { entry: index },
        ));
        Ok(())
    }

    // ----- console -------------------------------------------------------------------------

    /// ADDR of a console command: an entry name or a number; with the entry's size.
    fn console_address(&self, token: &str) -> Result<(u16, u16), String> {
        if let Some(index) = self.map.index_of(token) {
            let entry = &self.map.entries[index];
            return Ok((entry.address, entry.words()));
        }
        let address = parse_uint(token).filter(|a| *a <= 0xFFFF).ok_or_else(|| {
            format!("`{token}` is neither a register address nor an entry of the register map")
        })? as u16;
        let words = self
            .map
            .entries
            .iter()
            .find(|e| e.address == address && e.table == Table::Holding)
            .map_or(1, |e| e.words());
        Ok((address, words))
    }

    /// A console line as the frame it sends.
    fn console_frame(&self, text: &str) -> Result<Vec<u8>, String> {
        let line = text.trim().to_ascii_lowercase();
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(&first) = tokens.first() else {
            return Err("an empty line".into());
        };
        match first {
            "r" | "ri" => {
                let table = if first == "ri" { Table::Input } else { Table::Holding };
                let Some(token) = tokens.get(1) else {
                    return Err(format!("`{first}` needs an address: `{first} ADDR [QTY]`"));
                };
                if tokens.len() > 3 {
                    return Err(format!("`{first} ADDR [QTY]` takes at most two arguments"));
                }
                let (start, words) = self.console_address(token)?;
                let qty = match tokens.get(2) {
                    Some(t) => parse_uint(t)
                        .filter(|q| (1..=u64::from(MAX_READ_QTY)).contains(q))
                        .ok_or_else(|| format!("`{t}` is not a register count 1–{MAX_READ_QTY}"))?
                        as u16,
                    None => words,
                };
                Ok(self.frame_of(&Op::Read { table, start, qty }))
            }
            "w" => {
                let (Some(token), true) = (tokens.get(1), tokens.len() >= 3) else {
                    return Err("`w` needs an address and a value: `w ADDR VALUE…` or `w NAME VALUE`".into());
                };
                let values = &tokens[2..];
                if let Some(index) = self.map.index_of(token) {
                    if values.len() != 1 {
                        return Err(format!(
                            "`w {token} VALUE` takes one value in {}",
                            self.map.entries[index].unit
                        ));
                    }
                    let value =
                        parse_number(values[0]).ok_or_else(|| format!("`{}` is not a number", values[0]))?;
                    let entry = &self.map.entries[index];
                    if entry.table == Table::Input {
                        return Err(format!("{token} is an input register, which cannot be written"));
                    }
                    let words = self.map.encode(index, value).map_err(|e| e.to_string())?;
                    return Ok(self.frame_of(&Op::Write { start: entry.address, values: words }));
                }
                let (start, _) = self.console_address(token)?;
                if values.len() > usize::from(MAX_WRITE_QTY) {
                    return Err(format!("a write takes at most {MAX_WRITE_QTY} registers"));
                }
                let words = values
                    .iter()
                    .map(|v| {
                        parse_int(v).filter(|v| (-32768..=65535).contains(v)).map(|v| v as u16).ok_or_else(
                            || format!("`{v}` is not a register value (-32768–65535, or 0x0000–0xFFFF)"),
                        )
                    })
                    .collect::<Result<Vec<u16>, String>>()?;
                Ok(self.frame_of(&Op::Write { start, values: words }))
            }
            _ => {
                let digits: String = line
                    .split_whitespace()
                    .map(|t| t.strip_prefix("0x").unwrap_or(t))
                    .collect::<Vec<_>>()
                    .concat();
                if digits.len() < 4
                    || !digits.len().is_multiple_of(2)
                    || !digits.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err("not hex".into());
                }
                let bytes: Vec<u8> = (0..digits.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&digits[i..i + 2], 16))
                    .collect::<Result<_, _>>()
                    .map_err(|_| "not hex".to_owned())?;
                let frame = if bytes.len() >= 4 && crc_ok(&bytes) {
                    if bytes.len() > MAX_ADU {
                        return Err(format!("a Modbus RTU frame has at most {MAX_ADU} bytes"));
                    }
                    bytes
                } else if bytes.len() + 2 > MAX_ADU {
                    return Err(format!("a Modbus RTU frame has at most {MAX_ADU} bytes"));
                } else {
                    with_crc(bytes)
                };
                if frame[0] == 0 {
                    return Err(format!(
                        "unit 0 is broadcast: every drive on the bus would execute the frame, but it is checked \
                         against this drive's register map only; address unit {}",
                        self.unit
                    ));
                }
                if let Some(len) = request_length(&frame)
                    && len != frame.len()
                {
                    return Err(format!(
                        "a function 0x{:02X} request is {len} bytes with its CRC, this line makes {}: send one \
                         whole frame per line",
                        frame[1],
                        frame.len()
                    ));
                }
                Ok(frame)
            }
        }
    }

    fn on_console_reply(&mut self, request: &[u8], reply: &[u8], out: &mut CodecOut) {
        let mut text = format!("< {}", hex_string(reply));
        let function = reply.get(1).copied().unwrap_or(0);
        if function & 0x80 != 0 && reply.len() >= 5 {
            let op = Op::Raw { frame: request.to_vec() };
            text.push_str(&format!(" ({})", Self::exception_text(&op, reply[2])));
        } else if matches!(function, 0x03 | 0x04) && request.len() >= 8 && reply.len() >= 5 {
            let start = be16(request, 2);
            let data = &reply[3..reply.len() - 2];
            let words: Vec<u16> = data.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
            let table = if function == 0x04 && self.map.entries.iter().any(|e| e.table == Table::Input) {
                Table::Input
            } else {
                Table::Holding
            };
            let block = Block { table, start, qty: words.len() as u16 };
            let parts: Vec<String> = (0..self.map.entries.len())
                .filter(|&i| block.contains(&self.map.entries[i]))
                .filter_map(|i| {
                    let entry = &self.map.entries[i];
                    let offset = usize::from(entry.address - start);
                    let value =
                        self.map.decode(i, &words[offset..offset + usize::from(entry.words())]).ok()?;
                    Some(format!("{} = {} {}", entry.name, number(value), entry.unit).trim_end().to_owned())
                })
                .collect();
            if !parts.is_empty() {
                text.push_str(&format!(" ({})", parts.join(", ")));
            }
        }
        out.events.push(Event::Log(text));
    }

    /// What writing `value` (in the entry's unit) to an entry does.
    fn entry_intent(&self, index: usize, value: f64) -> RawIntent {
        let entry = &self.map.entries[index];
        match entry.role {
            Some(Role::Controlword) => RawIntent::Guarded(
                "the controlword is written by Enable, Disable, E-STOP and Reset faults, which run the CiA 402 \
                 sequence and confirm it"
                    .into(),
            ),
            Some(Role::ModesOfOperation) => RawIntent::Guarded(
                "the mode of operation is set with the mode selector, which first makes the new mode's target safe"
                    .into(),
            ),
            Some(role) if role.is_control() => match role.target_mode() {
                Some(ControlMode::Current) => match self.map.to_amperes(&entry.unit, value) {
                    Some(amperes) => RawIntent::Setpoint(ControlMode::Current, amperes),
                    None => RawIntent::Guarded(format!(
                        "{} is in {} of the rated current, which the register map does not give (rated_current_a), \
                         so it cannot be checked against the current limit",
                        entry.name, entry.unit
                    )),
                },
                Some(mode) => RawIntent::Setpoint(mode, value),
                None => RawIntent::Guarded(format!("{} commands the drive", entry.name)),
            },
            _ if self.map.is_catalogue(index) && entry.writable() => match self.relative_limit(index) {
                Some(false) => RawIntent::Guarded(format!(
                    "{} is in {} of the rated current, which the register map does not give (rated_current_a), so \
                     it cannot be checked against the current limit",
                    entry.name, entry.unit
                )),
                _ => RawIntent::Param(entry.name.clone(), self.catalogue_value(index, value)),
            },
            _ => RawIntent::Other,
        }
    }

    /// What writing `words` from `start` (holding registers) does.
    fn write_intent(&self, start: u16, words: &[u16]) -> RawIntent {
        let end = u32::from(start) + words.len() as u32;
        let mut found: Vec<RawIntent> = Vec::new();
        let mut address = u32::from(start);
        while address < end {
            if address > 0xFFFF {
                return RawIntent::Guarded("the write runs past address 0xFFFF".into());
            }
            let Some(index) = self.map.entry_at(Table::Holding, address as u16) else {
                return RawIntent::Guarded(format!(
                    "0x{address:04X} is not in the register map, so what the write does cannot be checked"
                ));
            };
            let entry = &self.map.entries[index];
            let whole = u32::from(entry.address) >= u32::from(start) && entry.end() <= end;
            let commanding = entry.role.is_some_and(Role::is_control)
                || (self.map.is_catalogue(index) && entry.writable());
            if whole {
                let offset = (u32::from(entry.address) - u32::from(start)) as usize;
                let regs = &words[offset..offset + usize::from(entry.words())];
                match self.map.decode(index, regs) {
                    Ok(value) => match self.entry_intent(index, value) {
                        RawIntent::Other => {}
                        guarded @ RawIntent::Guarded(_) => return guarded,
                        intent => found.push(intent),
                    },
                    Err(_) if commanding => {
                        return RawIntent::Guarded(format!(
                            "the value written to {} is not a number",
                            entry.name
                        ));
                    }
                    Err(_) => {}
                }
            } else if commanding {
                return RawIntent::Guarded(format!(
                    "the write covers only part of the 32-bit {}; write both of its registers",
                    entry.name
                ));
            }
            address = entry.end();
        }
        if found.len() > 1 {
            return RawIntent::Guarded(
                "the frame writes several setpoints or parameters at once: write them one at a time".into(),
            );
        }
        found.pop().unwrap_or(RawIntent::Other)
    }

    /// What a frame does, decoded as the drive would.
    fn frame_intent(&self, frame: &[u8]) -> RawIntent {
        if frame.len() < 4 {
            return RawIntent::Guarded("too short for a Modbus frame".into());
        }
        let (unit, function) = (frame[0], frame[1]);
        let pdu = &frame[1..frame.len() - 2];
        let (start, words): (u16, Vec<u16>) = match function {
            0x06 if pdu.len() == 5 => (be16(pdu, 1), vec![be16(pdu, 3)]),
            0x10 if pdu.len() >= 6 => {
                let (qty, count) = (usize::from(be16(pdu, 3)), usize::from(pdu[5]));
                let values = &pdu[6..];
                if qty == 0 || count != 2 * qty || values.len() != count {
                    return RawIntent::Guarded(
                        "a malformed 0x10 frame: its quantity, byte count and data disagree".into(),
                    );
                }
                (be16(pdu, 1), values.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect())
            }
            0x06 | 0x10 => return RawIntent::Guarded("a malformed write frame".into()),
            f if !is_write_function(f) => return RawIntent::Other,
            0x05 | 0x0F => {
                return RawIntent::Guarded(
                    "coil writes (0x05, 0x0F) are not described by the register map, so what they do cannot be \
                     checked"
                        .into(),
                );
            }
            0x16 | 0x17 => {
                return RawIntent::Guarded(format!(
                    "function 0x{function:02X} writes registers past the checks: use `w ADDR VALUE` (0x06/0x10)"
                ));
            }
            _ => {
                return RawIntent::Guarded(format!(
                    "function 0x{function:02X} is not one the register map describes; it may change the drive"
                ));
            }
        };
        if unit == 0 {
            return RawIntent::Guarded(
                "unit 0 is broadcast: every drive on the bus would execute the write, but it can be checked \
                 against this drive's register map only"
                    .into(),
            );
        }
        if unit != self.unit {
            return RawIntent::Guarded(format!(
                "the frame is for unit {unit}; this connection checks writes for unit {} only",
                self.unit
            ));
        }
        self.write_intent(start, &words)
    }
}

impl ModbusCodec {
    /// The frame and every whole request with a valid CRC found at any offset inside it (a
    /// drive that resynchronises on the CRC may execute those), the strictest classification
    /// winning: anything guarded guards the line, and two commands in one line are guarded.
    fn line_intent(&self, frame: &[u8]) -> RawIntent {
        let mut found: Vec<RawIntent> = Vec::new();
        for at in 0..frame.len() {
            let rest = &frame[at..];
            let len = if at == 0 {
                frame.len()
            } else {
                match request_length(rest) {
                    Some(len) if len <= rest.len() && crc_ok(&rest[..len]) => len,
                    _ => continue,
                }
            };
            match self.frame_intent(&rest[..len]) {
                RawIntent::Other => {}
                guarded @ RawIntent::Guarded(_) => return guarded,
                _ if at > 0 => {
                    return RawIntent::Guarded(format!(
                        "the frame holds another whole frame at byte {at} ({}), which a drive may execute: send it \
                         on its own",
                        hex_string(&rest[..len])
                    ));
                }
                intent => found.push(intent),
            }
        }
        if found.len() > 1 {
            return RawIntent::Guarded(
                "the line holds several commands (a frame inside a frame): send one at a time".into(),
            );
        }
        found.pop().unwrap_or(RawIntent::Other)
    }
}

/// A register address or count: decimal or `0x` hex.
fn parse_uint(token: &str) -> Option<u64> {
    match token.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => token.parse::<u64>().ok(),
    }
}

fn parse_int(token: &str) -> Option<i64> {
    match token.strip_prefix('-') {
        Some(rest) => parse_uint(rest).and_then(|v| i64::try_from(v).ok()).map(|v| -v),
        None => parse_uint(token).and_then(|v| i64::try_from(v).ok()),
    }
}

/// A finite decimal number (or a `0x` integer).
fn parse_number(token: &str) -> Option<f64> {
    if token.starts_with("0x") || token.starts_with("-0x") {
        return parse_int(token).map(|v| v as f64);
    }
    let lower = token.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    token.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `velocity_kp` → `Velocity kp`.
fn label(name: &str) -> String {
    let text = name.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

impl Codec for ModbusCodec {
    fn signals(&self) -> Vec<SignalSpec> {
        self.signals.clone()
    }

    fn params(&self) -> Vec<ParamSpec> {
        self.catalogue
            .iter()
            .map(|&index| {
                let entry = &self.map.entries[index];
                let (min, max) = entry.range();
                let table = if entry.table == Table::Input { "input" } else { "holding" };
                let place = format!(
                    "{table} register 0x{:04X}, {} × {}",
                    entry.address,
                    entry.kind.label(),
                    number(entry.scale)
                );
                let help = if entry.help.is_empty() { place } else { format!("{} ({place})", entry.help) };
                match self.relative_limit(index) {
                    Some(true) => {
                        let a = self.catalogue_value(index, min);
                        let b = self.catalogue_value(index, max);
                        let help = format!("{help}; in A here ({} of the rated current)", entry.unit);
                        let spec = ParamSpec::new(&entry.name, &label(&entry.name), "A", a.min(b), a.max(b), &help);
                        if entry.writable() { spec } else { spec.read_only() }
                    }
                    Some(false) => ParamSpec::new(
                        &entry.name,
                        &label(&entry.name),
                        &entry.unit,
                        min,
                        max,
                        &format!(
                            "{help}; read-only here: it is in {} of the rated current, which the register map does \
                             not give (rated_current_a), so it cannot be held to the project's current limit",
                            entry.unit
                        ),
                    )
                    .read_only(),
                    None => {
                        let spec = ParamSpec::new(&entry.name, &label(&entry.name), &entry.unit, min, max, &help);
                        if entry.writable() { spec } else { spec.read_only() }
                    }
                }
            })
            .collect()
    }

    fn params_note(&self) -> Option<String> {
        if let Some(error) = &self.config_error {
            return Some(error.clone());
        }
        self.catalogue.is_empty().then(|| {
            "the register map has no parameter entries: entries without a control role are listed here"
                .to_owned()
        })
    }

    fn start(&mut self, now_s: f64, out: &mut CodecOut) {
        self.started = true;
        self.hold_until = now_s + SETTLE_S;
        self.next_cycle_at = now_s + SETTLE_S;
        self.cycle_pos = self.cycle.len();
        self.rx.clear();
        self.queue.clear();
        self.in_flight = None;
        self.control = None;
        self.awaiting_control = None;
        self.mode_pending = None;
        self.known = Known::default();
        self.last_state = None;
        self.last_status = None;
        self.last_mode_code = None;
        self.reported_mode = None;
        self.mode = self.fixed_mode;
        self.lost = false;
        self.failures_in_row = 0;
        if let Some(error) = &self.config_error {
            out.events.push(Event::State(DriveState::Fault(error.clone())));
            return;
        }
        out.events.push(Event::Log(format!(
            "Modbus RTU, unit {}, {} baud (t3.5 = {} ms), reply timeout {} s, {} retries; register map of {} entries",
            self.unit,
            self.baud,
            format_decimal(self.t35() * 1000.0, 3),
            number(self.response_timeout_s),
            self.retries,
            self.map.entries.len()
        )));
        if let Some(torque) = self.map.role(Role::TargetTorque)
            && self.map.to_amperes(&self.map.entries[torque].unit, 1.0).is_none()
        {
            out.events.push(Event::Log(
                "current mode is unavailable: the torque target is relative and the register map gives no \
                 rated_current_a"
                    .into(),
            ));
        }
        self.queue_refresh();
    }

    fn command(&mut self, cmd: &Command, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        if let Some(error) = &self.config_error
            && !matches!(cmd, Command::Connect | Command::Disconnect)
        {
            return Err(CodecError::Invalid(error.clone()));
        }
        let needs_controlword = || {
            CodecError::Unsupported("the CiA 402 state machine (no controlword in the register map)".into())
        };
        match cmd {
            Command::Connect | Command::Disconnect => {}
            Command::Raw(text) => self.raw(text, now_s, out),
            Command::EStop => self.estop(now_s, out),
            Command::Enable => {
                if self.map.role(Role::Controlword).is_none() {
                    return Err(needs_controlword());
                }
                let hold = self.enable_hold_request()?;
                self.drop_queued_controls();
                self.control =
                    Some(Control::Enable(EnableSeq { written: None, deadline: now_s + STEP_TIMEOUT_S }));
                self.awaiting_control = None;
                self.fresh_from = self.next_seq;
                self.queue_sequence_status_read();
                if let Some((request, held)) = hold {
                    // Before the first step of the sequence: the drive must not jump to an old target.
                    let at = self
                        .queue
                        .iter()
                        .position(|r| matches!(r.purpose, Purpose::Read(ReadWhy { status: true, .. })))
                        .unwrap_or(0);
                    self.queue.insert(at, request);
                    self.reported_mode = Some((ControlMode::Position, held));
                    out.events.push(Event::Mode { mode: ControlMode::Position, setpoint: held });
                }
            }
            Command::Disable => {
                if self.map.role(Role::Controlword).is_none() {
                    return Err(needs_controlword());
                }
                self.send_stop(false, true, now_s, out);
            }
            Command::ResetFaults => {
                if self.map.role(Role::Controlword).is_none() {
                    return Err(needs_controlword());
                }
                self.drop_queued_controls();
                self.control = Some(Control::Reset(ResetSeq {
                    phase: ResetPhase::Check,
                    deadline: now_s + STEP_TIMEOUT_S,
                }));
                self.awaiting_control = None;
                self.fresh_from = self.next_seq;
                self.queue_sequence_status_read();
            }
            Command::SetMode(mode) => return self.set_mode(*mode, now_s, out),
            Command::SetSetpoint(mode, value) => return self.set_setpoint(*mode, *value, now_s, out),
            Command::ReadParam(key) => {
                let index = self.catalogue_index(key)?;
                self.queue_reads(
                    &[index],
                    Purpose::Read(ReadWhy { report: vec![index], ..ReadWhy::default() }),
                    false,
                );
            }
            Command::WriteParam(key, value) => self.write_param(key, *value)?,
            Command::ReadAllParams => {
                let all = self.catalogue.clone();
                self.queue_reads(
                    &all,
                    Purpose::Read(ReadWhy { report: all.clone(), ..ReadWhy::default() }),
                    false,
                );
            }
        }
        self.pump(now_s, out);
        Ok(())
    }

    fn estop(&mut self, now_s: f64, out: &mut CodecOut) {
        if self.config_error.is_some() {
            return;
        }
        self.send_stop(true, true, now_s, out);
        self.pump(now_s, out);
    }

    fn raw(&mut self, text: &str, now_s: f64, out: &mut CodecOut) {
        match self.console_frame(text) {
            Ok(frame) => {
                let writes = is_write_function(frame[1]);
                self.queue.push_back(Request::new(Op::Raw { frame }, Purpose::Console));
                if writes {
                    // The line may have changed the state, the mode or a target.
                    self.queue_refresh();
                }
                self.pump(now_s, out);
            }
            Err(error) => out.events.push(Event::Refused(format!("console: {error}"))),
        }
    }

    /// Hex frames are decoded as the drive would; `w NAME VALUE` is judged by the entry;
    /// reads are `Other`.
    fn raw_intent(&self, text: &str) -> RawIntent {
        let line = text.trim().to_ascii_lowercase();
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.first() == Some(&"w")
            && let Some(index) = tokens.get(1).and_then(|name| self.map.index_of(name))
        {
            if tokens.len() != 3 {
                return RawIntent::Guarded("`w NAME VALUE` takes one value".into());
            }
            return match parse_number(tokens[2]) {
                Some(value) => self.entry_intent(index, value),
                None => RawIntent::Guarded(format!("`{}` is not a number", tokens[2])),
            };
        }
        match self.console_frame(text) {
            Ok(frame) => self.line_intent(&frame),
            Err(error) => RawIntent::Guarded(error),
        }
    }

    fn feed(&mut self, bytes: &[u8], now_s: f64, out: &mut CodecOut) {
        if bytes.is_empty() {
            return;
        }
        self.last_rx_s = now_s;
        if !self.started {
            return;
        }
        for &byte in bytes {
            if self.rx.len() >= MAX_RX {
                self.rx.remove(0);
            }
            self.rx.push(byte);
            self.process_rx(now_s, out);
        }
    }

    fn poll(&mut self, now_s: f64, out: &mut CodecOut) {
        if !self.started || self.config_error.is_some() {
            return;
        }
        self.check_timeout(now_s, out);
        self.check_control(now_s, out);
        self.check_mode_pending(now_s, out);
        if self.cycle_pos >= self.cycle.len() && now_s >= self.next_cycle_at {
            self.cycle_pos = 0;
            self.next_cycle_at = now_s + TELEMETRY_PERIOD_S;
            // Refused registers whose pause is over join this cycle (at its end, so that the
            // indices of reads in flight keep their meaning).
            for refused in &mut self.refused {
                if refused.retry_at_s.is_some_and(|t| now_s >= t) {
                    refused.retry_at_s = None;
                    self.cycle.push(refused.block);
                }
            }
        }
        self.pump(now_s, out);
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(5)
    }

    /// Writes the disable word once, right away: the port closes after this returns, so the
    /// codec cannot wait for the inter-frame gap. On a quiet bus (the usual case: requests are
    /// a few ms apart) the gap is already there. Residual risk, reported in the log: within
    /// t3.5 of the last frame, or while a reply is still due, the drive may join the write to
    /// the previous frame or the reply may collide with it, and the write is then lost.
    fn stop(&mut self, now_s: f64, out: &mut CodecOut) {
        self.queue.clear();
        let reply_due = self.in_flight.take().is_some_and(|f| f.expect.is_some() && now_s < f.deadline);
        if self.config_error.is_some() {
            return;
        }
        if let Some(index) = self.map.role(Role::Controlword) {
            let address = self.map.entries[index].address;
            let word = self.disable_word();
            if reply_due || (self.started && now_s < self.quiet_until()) {
                out.events.push(Event::Log(format!(
                    "closing: the disable write (0x{word:04X}) went out {}; the drive may not have taken it: check \
                     that it is disabled",
                    if reply_due {
                        "while a reply was still due"
                    } else {
                        "within the inter-frame gap"
                    }
                )));
            }
            out.tx.extend(self.frame_of(&Op::Write { start: address, values: vec![word] }));
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::modbus_map::{Access, RegType, RegisterEntry, WordOrder};
    use crate::sim::device::Device;
    use crate::sim::device::modbus::ModbusDevice;
    use crate::sim::{SimConfig, SimDrive};

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    fn crc_hex(text: &str) -> Vec<u8> {
        with_crc(hex(text))
    }

    /// A started codec with nothing queued and no telemetry cycle: requests go out only
    /// when a test asks.
    fn quiet(unit: u8, map: RegisterMap) -> ModbusCodec {
        let mut codec = ModbusCodec::new(unit, map, 19_200);
        let mut out = CodecOut::new();
        codec.start(0.0, &mut out);
        codec.queue.clear();
        codec.hold_until = 0.0;
        codec.next_cycle_at = f64::INFINITY;
        codec
    }

    fn poll(codec: &mut ModbusCodec, now: f64) -> CodecOut {
        let mut out = CodecOut::new();
        codec.poll(now, &mut out);
        out
    }

    fn command(codec: &mut ModbusCodec, cmd: Command, now: f64) -> CodecOut {
        let mut out = CodecOut::new();
        codec.command(&cmd, now, &mut out).unwrap();
        out
    }

    /// Feeds `bytes` whole, byte by byte and split at every point; all must agree.
    fn feed_all_ways(codec: &ModbusCodec, bytes: &[u8], now: f64) -> (ModbusCodec, CodecOut) {
        let mut whole = codec.clone();
        let mut expected = CodecOut::new();
        whole.feed(bytes, now, &mut expected);
        let mut splits: Vec<Vec<&[u8]>> = (0..=bytes.len()).map(|i| vec![&bytes[..i], &bytes[i..]]).collect();
        splits.push(bytes.chunks(1).collect());
        for parts in splits {
            let mut c = codec.clone();
            let mut out = CodecOut::new();
            for part in parts {
                c.feed(part, now, &mut out);
            }
            assert_eq!(out.samples, expected.samples);
            assert_eq!(out.events, expected.events);
            assert_eq!(out.tx, expected.tx);
            assert_eq!(c.in_flight.is_some(), whole.in_flight.is_some());
            assert_eq!(c.queue, whole.queue);
        }
        assert!(expected.tx.is_empty(), "feed never writes");
        (whole, expected)
    }

    fn kinco_map() -> RegisterMap {
        RegisterMap {
            entries: vec![
                RegisterEntry {
                    name: "controlword".into(),
                    address: 0x3100,
                    access: Access::ReadWrite,
                    role: Some(Role::Controlword),
                    ..RegisterEntry::default()
                },
                RegisterEntry {
                    name: "statusword".into(),
                    address: 0x3200,
                    role: Some(Role::Statusword),
                    ..RegisterEntry::default()
                },
                RegisterEntry {
                    name: "target_velocity".into(),
                    address: 0x6F00,
                    kind: RegType::I32,
                    word_order: Some(WordOrder::LowFirst),
                    access: Access::ReadWrite,
                    // Kinco DEC units: rpm × 512 × 10000 / 1875 with a 10000-line encoder.
                    scale: 1875.0 / (512.0 * 10_000.0),
                    unit: "rpm".into(),
                    role: Some(Role::TargetVelocity),
                    ..RegisterEntry::default()
                },
            ],
            ..RegisterMap::default()
        }
    }

    fn refused(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Refused(text) => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(CRC16.checksum(b"123456789"), 0x4B37);
        assert_eq!(crc_hex("01 03 00 00 00 0A"), hex("01 03 00 00 00 0A C5 CD"));
    }

    #[test]
    fn console_request_vectors() {
        let cases: [(u8, &str, &str); 9] = [
            (1, "r 0 10", "01 03 00 00 00 0A C5 CD"),
            (1, "01 03 00 00 00 0a", "01 03 00 00 00 0A C5 CD"),
            (1, "0103 0000 000A C5CD", "01 03 00 00 00 0A C5 CD"),
            (0x11, "r 0x6B 3", "11 03 00 6B 00 03 76 87"),
            (1, "r 0x3200 2", "01 03 32 00 00 02 CA B3"),
            (1, "01 06 31 00 00 0F", "01 06 31 00 00 0F C7 32"),
            (1, "w 1 3", "01 06 00 01 00 03 98 0B"),
            (1, "w 1 0x000A 0x0102", "01 10 00 01 00 02 04 00 0A 01 02 92 30"),
            (1, "w 0 0x80", "01 06 00 00 00 80 88 6A"),
        ];
        for (unit, line, expected) in cases {
            let mut codec = quiet(unit, RegisterMap::preset());
            let mut out = CodecOut::new();
            codec.raw(line, 1.0, &mut out);
            assert_eq!(out.tx, hex(expected), "{line}");
        }
        // Named entries use the map's type, scale and word order.
        let mut codec = quiet(1, RegisterMap::preset());
        let mut out = CodecOut::new();
        codec.raw("w target_velocity -600", 1.0, &mut out);
        assert_eq!(out.tx, crc_hex("01 10 00 04 00 02 04 FF FF FD A8"));
        let mut codec = quiet(1, RegisterMap::preset());
        let mut out = CodecOut::new();
        codec.raw("r dc_link_voltage", 1.0, &mut out);
        assert_eq!(out.tx, crc_hex("01 03 00 10 00 02"));
        // Errors are refused without sending.
        for line in ["r", "w 5", "zz", "w velocity_kp 9", "w 0x10000 1", "r 0 126", "w 0 70000"] {
            let mut out = CodecOut::new();
            codec.raw(line, 2.0, &mut out);
            assert!(out.tx.is_empty(), "{line}");
            assert_eq!(refused(&out.events).len(), 1, "{line}: {:?}", out.events);
        }
    }

    #[test]
    fn spec_read_and_response() {
        let map = RegisterMap {
            entries: (0..3u16)
                .map(|k| RegisterEntry {
                    name: format!("reg_{k}"),
                    address: 0x6B + k,
                    ..RegisterEntry::default()
                })
                .collect(),
            ..RegisterMap::default()
        };
        let mut codec = quiet(0x11, map);
        let out = command(&mut codec, Command::ReadAllParams, 1.0);
        assert_eq!(out.tx, hex("11 03 00 6B 00 03 76 87"));
        let (codec, out) = feed_all_ways(&codec, &hex("11 03 06 02 2B 00 00 00 64 C8 BA"), 1.0);
        assert_eq!(
            out.events,
            vec![
                Event::ParamValue { key: "reg_0".into(), value: 555.0 },
                Event::ParamValue { key: "reg_1".into(), value: 0.0 },
                Event::ParamValue { key: "reg_2".into(), value: 100.0 },
            ]
        );
        assert!(codec.in_flight.is_none());
        assert!(codec.params().iter().all(|p| p.read_only));
    }

    #[test]
    fn kinco_enable_and_low_word_first_target() {
        let mut codec = quiet(1, kinco_map());
        assert_eq!(codec.mode, Some(ControlMode::Speed), "the only target decides the mode");
        let out = command(&mut codec, Command::Enable, 1.0);
        assert_eq!(out.tx, crc_hex("01 03 32 00 00 01"));
        let (mut codec, out) = feed_all_ways(&codec, &crc_hex("01 03 02 02 33"), 1.0);
        assert!(out.events.contains(&Event::Status("CiA 402: switched on".into())));
        assert_eq!(poll(&mut codec, 1.01).tx, hex("01 06 31 00 00 0F C7 32"));
        let (mut codec, _) = feed_all_ways(&codec, &hex("01 06 31 00 00 0F C7 32"), 1.01);
        assert_eq!(poll(&mut codec, 1.02).tx, crc_hex("01 03 32 00 00 01"));
        let (mut codec, out) = feed_all_ways(&codec, &crc_hex("01 03 02 02 37"), 1.02);
        assert!(out.events.contains(&Event::State(DriveState::Enabled)), "{:?}", out.events);
        assert!(codec.control.is_none());

        let out = command(&mut codec, Command::SetSetpoint(ControlMode::Speed, 200.0), 1.03);
        assert_eq!(out.tx, hex("01 10 6F 00 00 02 04 55 55 00 08 1A 47"));
        match out.events.as_slice() {
            [Event::Mode { mode: ControlMode::Speed, setpoint }] => assert!((setpoint - 200.0).abs() < 1e-3),
            other => panic!("{other:?}"),
        }
        let (codec, out) = feed_all_ways(&codec, &hex("01 10 6F 00 00 02 5C DC"), 1.03);
        assert!(out.events.is_empty(), "{:?}", out.events);
        assert!(codec.in_flight.is_none());
    }

    /// A register file with just enough CiA 402 to answer the codec, for vector tests.
    fn serve(frame: &[u8], regs: &mut [u16; 0x24]) -> Vec<u8> {
        assert!(crc_ok(frame), "{frame:02X?}");
        let (start, n) = (usize::from(be16(frame, 2)), usize::from(be16(frame, 4)));
        match frame[1] {
            0x03 | 0x04 => {
                let mut reply = vec![frame[0], frame[1], (2 * n) as u8];
                for value in &regs[start..start + n] {
                    reply.extend_from_slice(&value.to_be_bytes());
                }
                with_crc(reply)
            }
            0x06 => {
                let value = be16(frame, 4);
                regs[start] = value;
                if start == 0 {
                    let fault = regs[1] & 0x4F == 0x08;
                    let previous = regs[0x1F];
                    regs[0x1F] = value;
                    regs[1] = match value {
                        0x0080 if fault && previous & 0x80 == 0 => 0x0250,
                        _ if fault => regs[1],
                        0x0006 => 0x0231,
                        0x0007 => 0x0233,
                        0x000F => 0x0237,
                        0x0002 => 0x0217,
                        _ => regs[1],
                    };
                    if regs[1] == 0x0250 {
                        regs[0x0F] = 0;
                    }
                }
                frame.to_vec()
            }
            _ => panic!("unexpected {frame:02X?}"),
        }
    }

    /// Polls every 5 ms for `seconds`, answering from `regs`; returns every frame sent and all
    /// events.
    fn converse(
        codec: &mut ModbusCodec,
        first: CodecOut,
        regs: &mut [u16; 0x24],
        from: f64,
        seconds: f64,
    ) -> (Vec<Vec<u8>>, Vec<Event>) {
        let (mut frames, mut events) = (Vec::new(), Vec::new());
        let steps = (seconds / 0.005).round() as u32;
        let mut first = Some(first);
        for k in 0..=steps {
            let now = from + f64::from(k) * 0.005;
            let mut out = match first.take() {
                Some(out) => out,
                None => poll(codec, now),
            };
            if !out.tx.is_empty() {
                frames.push(out.tx.clone());
                let reply = serve(&out.tx, regs);
                if out.tx[0] != 0 {
                    codec.feed(&reply, now, &mut out);
                }
            }
            events.append(&mut out.events);
        }
        (frames, events)
    }

    #[test]
    fn controlword_sequence_vectors() {
        let mut codec = quiet(1, RegisterMap::preset());
        let mut regs = [0u16; 0x24];
        regs[1] = 0x0250;
        regs[3] = 3;
        let first = command(&mut codec, Command::Enable, 1.0);
        let (frames, events) = converse(&mut codec, first, &mut regs, 1.0, 0.2);
        let controlword: Vec<&Vec<u8>> = frames.iter().filter(|f| f[1] == 0x06 && f[3] == 0).collect();
        assert_eq!(
            controlword,
            vec![
                &hex("01 06 00 00 00 06 09 C8"),
                &hex("01 06 00 00 00 07 C8 08"),
                &hex("01 06 00 00 00 0F C9 CE")
            ]
        );
        let statuses: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::Status(_))).collect();
        assert_eq!(
            statuses,
            vec![
                &Event::Status("CiA 402: switch on disabled".into()),
                &Event::Status("CiA 402: ready to switch on".into()),
                &Event::Status("CiA 402: switched on".into()),
                &Event::Status("CiA 402: operation enabled".into()),
            ]
        );
        assert_eq!(
            events.iter().rfind(|e| matches!(e, Event::State(_))),
            Some(&Event::State(DriveState::Enabled))
        );

        // A trip: the fault is reported with its code, the reset is the bit-7 edge then shutdown.
        regs[1] = 0x0218;
        regs[0x0F] = 0x2310;
        codec.queue_refresh();
        let (_, events) = converse(&mut codec, CodecOut::new(), &mut regs, 1.5, 0.1);
        assert!(
            events.contains(&Event::State(DriveState::Fault("0x2310 over-current".into()))),
            "{events:?}"
        );
        let first = command(&mut codec, Command::ResetFaults, 2.0);
        let (frames, events) = converse(&mut codec, first, &mut regs, 2.0, 0.2);
        let controlword: Vec<&Vec<u8>> = frames.iter().filter(|f| f[1] == 0x06 && f[3] == 0).collect();
        assert_eq!(controlword, vec![&hex("01 06 00 00 00 80 88 6A"), &hex("01 06 00 00 00 06 09 C8")]);
        assert_eq!(
            events.iter().rfind(|e| matches!(e, Event::State(_))),
            Some(&Event::State(DriveState::Idle))
        );

        // Bit 7 still set from before: 0x0000 first, then the edge.
        regs[1] = 0x0218;
        codec.known.controlword = Some(0x0080);
        let first = command(&mut codec, Command::ResetFaults, 3.0);
        let (frames, _) = converse(&mut codec, first, &mut regs, 3.0, 0.2);
        let controlword: Vec<u16> =
            frames.iter().filter(|f| f[1] == 0x06 && f[3] == 0).map(|f| be16(f, 4)).collect();
        assert_eq!(controlword, vec![0x0000, 0x0080, 0x0006]);

        // No fault: nothing is written.
        let first = command(&mut codec, Command::ResetFaults, 4.0);
        let (frames, events) = converse(&mut codec, first, &mut regs, 4.0, 0.1);
        assert!(frames.iter().all(|f| f[1] == 0x03), "{frames:02X?}");
        assert!(events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("no fault is latched"))));
    }

    #[test]
    fn enable_reports_the_state_it_stuck_in() {
        let mut codec = quiet(1, RegisterMap::preset());
        let mut regs = [0u16; 0x24];
        regs[1] = 0x0250;
        let mut first = Some(command(&mut codec, Command::Enable, 1.0));
        // The drive ignores switch on: it stays in ready to switch on.
        let mut events = Vec::new();
        for k in 0..400 {
            let now = 1.0 + f64::from(k) * 0.005;
            let mut out = first.take().unwrap_or_else(|| poll(&mut codec, now));
            if !out.tx.is_empty() {
                let reply = serve(&out.tx, &mut regs);
                if regs[1] == 0x0233 {
                    regs[1] = 0x0231;
                }
                codec.feed(&reply, now, &mut out);
            }
            events.append(&mut out.events);
        }
        let refusals = refused(&events);
        assert_eq!(
            refusals,
            vec![
                "enable: stuck in ready to switch on (statusword 0x0231) 1 s after switch on (0x0007); expected \
                 switched on; writing 0x0006 (shutdown) so that the drive does not enable later by itself"
                    .to_owned()
            ]
        );
        assert!(codec.control.is_none());
    }

    #[test]
    fn exceptions_name_the_address() {
        let mut codec = quiet(1, RegisterMap::preset());
        let out = command(&mut codec, Command::ReadParam("velocity_kp".into()), 1.0);
        assert_eq!(out.tx, crc_hex("01 03 00 20 00 01"));
        let (_, out) = feed_all_ways(&codec, &hex("01 83 02 C0 F1"), 1.0);
        assert_eq!(
            refused(&out.events),
            vec!["reading velocity_kp: exception 02: illegal data address 0x0020".to_owned()]
        );

        // The exception function code of the Kinco manual (0x81 for a failed read).
        let (_, out) = feed_all_ways(&codec, &crc_hex("01 81 02"), 1.0);
        assert_eq!(
            refused(&out.events),
            vec!["reading velocity_kp: exception 02: illegal data address 0x0020".to_owned()]
        );

        let mut codec = quiet(1, RegisterMap::preset());
        let out = command(&mut codec, Command::WriteParam("velocity_kp".into(), 0.5), 1.0);
        assert_eq!(out.tx, crc_hex("01 06 00 20 01 F4"));
        let (mut codec, out) = feed_all_ways(&codec, &hex("01 86 03 02 61"), 1.0);
        assert_eq!(
            refused(&out.events),
            vec!["writing velocity_kp failed: exception 03: illegal data value 0x0020".to_owned()]
        );
        // The value the drive holds is read back.
        assert_eq!(poll(&mut codec, 1.01).tx, crc_hex("01 03 00 20 00 01"));
        let (_, out) = feed_all_ways(&codec, &crc_hex("01 03 02 00 3B"), 1.01);
        assert_eq!(out.events, vec![Event::ParamValue { key: "velocity_kp".into(), value: 0.059 }]);

        // A confirmed write reads back and reports what the drive holds.
        let mut codec = quiet(1, RegisterMap::preset());
        command(&mut codec, Command::WriteParam("current_limit".into(), 6.0), 1.0);
        let (mut codec, _) = feed_all_ways(&codec, &crc_hex("01 06 00 22 02 58"), 1.0);
        assert_eq!(poll(&mut codec, 1.01).tx, crc_hex("01 03 00 22 00 01"));
        let (_, out) = feed_all_ways(&codec, &crc_hex("01 03 02 02 58"), 1.01);
        assert_eq!(out.events, vec![Event::ParamWritten { key: "current_limit".into(), value: 6.0 }]);

        // Range, read-only and unknown keys are refused before anything is sent.
        let mut codec = quiet(1, RegisterMap::preset());
        let mut out = CodecOut::new();
        let err = codec.command(&Command::WriteParam("velocity_kp".into(), 5.0), 1.0, &mut out).unwrap_err();
        assert!(err.to_string().contains("outside the register's range 0 … 2"), "{err}");
        let err = codec.command(&Command::WriteParam("statusword".into(), 1.0), 1.0, &mut out).unwrap_err();
        assert!(matches!(err, CodecError::UnknownParam(_)));
        assert!(out.tx.is_empty());
    }

    #[test]
    fn replies_resync_past_garbage_and_other_units() {
        let mut codec = quiet(1, RegisterMap::preset());
        command(&mut codec, Command::ReadParam("max_velocity".into()), 1.0);
        let reply = crc_hex("01 03 02 0F A0");
        let expected = vec![Event::ParamValue { key: "max_velocity".into(), value: 4000.0 }];
        let (_, out) = feed_all_ways(&codec, &reply, 1.0);
        assert_eq!(out.events, expected);
        // Garbage first, a broken copy of the reply, then the reply.
        let mut bytes = hex("FF 13 01 83 00 01 03 02 0F A1 55 AA");
        bytes.extend_from_slice(&reply);
        let (codec_after, out) = feed_all_ways(&codec, &bytes, 1.0);
        assert_eq!(out.events, expected);
        assert!(codec_after.in_flight.is_none());
        // A head that promises a long frame does not hide the reply behind it.
        let mut bytes = hex("01 03 F8 00");
        bytes.extend_from_slice(&reply);
        assert_eq!(feed_all_ways(&codec, &bytes, 1.0).1.events, expected);
        // A whole frame from unit 2 is recognised and ignored.
        let mut bytes = crc_hex("02 03 02 00 07");
        bytes.extend_from_slice(&reply);
        let (_, out) = feed_all_ways(&codec, &bytes, 1.0);
        assert_eq!(
            out.events[0],
            Event::Log(format!("ignored a frame from unit 2: {}", hex_string(&crc_hex("02 03 02 00 07"))))
        );
        assert_eq!(&out.events[1..], expected.as_slice());
        // A reply with a bad CRC is not taken: the request times out and is sent again.
        let mut bad = reply.clone();
        bad[4] ^= 1;
        let (mut codec, out) = feed_all_ways(&codec, &bad, 1.0);
        assert!(out.events.is_empty());
        assert!(codec.in_flight.is_some());
        let out = poll(&mut codec, 1.5);
        assert!(
            out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("sending it again (1 of 2)")))
        );
        assert_eq!(out.tx, crc_hex("01 03 00 23 00 01"));
    }

    #[test]
    fn silent_drive_times_out_with_retries_and_is_reported_lost() {
        let mut codec = ModbusCodec::new(1, RegisterMap::preset(), 19_200).with_timing(0.1, 2);
        let mut out = CodecOut::new();
        codec.start(0.0, &mut out);
        let (mut frames, mut events) = (Vec::new(), Vec::new());
        for k in 0..300 {
            let mut out = poll(&mut codec, f64::from(k) * 0.005);
            if !out.tx.is_empty() {
                frames.push(out.tx.clone());
            }
            events.append(&mut out.events);
        }
        let start_read = crc_hex("01 03 00 00 00 13");
        assert_eq!(frames[..3], [start_read.clone(), start_read.clone(), start_read.clone()]);
        let cycle_read = crc_hex("01 03 00 01 00 12");
        assert_eq!(frames[3..6], [cycle_read.clone(), cycle_read.clone(), cycle_read.clone()]);
        let logs: Vec<&String> =
            events.iter().filter_map(|e| if let Event::Log(t) = e { Some(t) } else { None }).collect();
        assert!(logs.iter().any(|t| t.contains("no reply to the read of 19 holding registers from 0x0000 within 0.1 s; sending it again (1 of 2)")), "{logs:?}");
        assert!(logs.iter().any(|t| t.contains("sending it again (2 of 2)")), "{logs:?}");
        assert!(
            logs.iter().any(|t| t.contains("failed: no reply from unit 1 within 0.1 s (3 attempts)")),
            "{logs:?}"
        );
        let lost = events.iter().filter(|e| matches!(e, Event::State(DriveState::Fault(t)) if t.contains("no reply from Modbus unit 1 at 19200 baud"))).count();
        assert_eq!(lost, 1, "{events:?}");
        // Each attempt waits the timeout plus the frames' time on the wire (0.1 + 0.029 s).
        assert!((11..=12).contains(&frames.len()), "{}", frames.len());
        // The drive comes back.
        let mut out = poll(&mut codec, 1.6);
        let request = codec.in_flight.as_ref().map(|f| f.frame.clone()).unwrap();
        let mut regs = [0u16; 0x24];
        regs[1] = 0x0250;
        regs[3] = 3;
        codec.feed(&serve(&request, &mut regs), 1.6, &mut out);
        assert!(
            out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("answers again"))),
            "{:?}",
            out.events
        );
        assert!(out.events.contains(&Event::State(DriveState::Idle)), "{:?}", out.events);
    }

    #[test]
    fn broadcast_expects_no_reply() {
        let mut codec = quiet(1, RegisterMap::preset());
        let mut out = CodecOut::new();
        // The console refuses broadcasts (checked against this drive's map, executed by all).
        codec.raw("00 06 00 00 00 00", 1.0, &mut out);
        assert!(out.tx.is_empty());
        assert!(refused(&out.events).iter().any(|t| t.contains("broadcast")), "{:?}", out.events);
        codec
            .queue
            .push_back(Request::new(Op::Raw { frame: hex("00 06 00 00 00 00 88 1B") }, Purpose::Console));
        codec.queue_refresh();
        codec.pump(1.0, &mut out);
        assert_eq!(out.tx, hex("00 06 00 00 00 00 88 1B"));
        assert!(codec.in_flight.as_ref().is_some_and(|f| f.expect.is_none()));
        let out = poll(&mut codec, 1.05);
        assert!(out.tx.is_empty(), "the turnaround is left to the slaves");
        let out = poll(&mut codec, 1.2);
        assert!(out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("broadcast"))));
        assert!(!out.tx.is_empty(), "the refresh reads follow");
        assert!(codec.failures_in_row == 0);
    }

    #[test]
    fn console_replies_are_decoded() {
        let mut codec = quiet(1, RegisterMap::preset());
        let mut out = CodecOut::new();
        codec.raw("r 0x20 4", 1.0, &mut out);
        let (_, out) = feed_all_ways(&codec, &crc_hex("01 03 08 01 F4 09 C4 02 EE 0F A0"), 1.0);
        match out.events.as_slice() {
            [Event::Log(text)] => assert!(
                text.ends_with("(velocity_kp = 0.5 A/rpm, velocity_ki = 2.5 A/(rpm·s), current_limit = 7.5 A, max_velocity = 4000 rpm)"),
                "{text}"
            ),
            other => panic!("{other:?}"),
        }
        // The write-multiple vector and its response.
        let mut codec = quiet(1, RegisterMap::preset());
        let mut out = CodecOut::new();
        codec.raw("w 1 0x000A 0x0102", 1.0, &mut out);
        assert_eq!(out.tx, hex("01 10 00 01 00 02 04 00 0A 01 02 92 30"));
        let (codec, out) = feed_all_ways(&codec, &hex("01 10 00 01 00 02 10 08"), 1.0);
        assert_eq!(out.events, vec![Event::Log("< 01 10 00 01 00 02 10 08".into())]);
        assert!(codec.in_flight.is_none());
        assert!(codec.queue.iter().all(|r| matches!(r.op, Op::Read { .. })), "a refresh follows a write");
        let mut codec = quiet(1, RegisterMap::preset());
        codec.raw("r 0x40", 1.0, &mut CodecOut::new());
        let (_, out) = feed_all_ways(&codec, &hex("01 83 02 C0 F1"), 1.0);
        assert_eq!(
            out.events,
            vec![Event::Log("< 01 83 02 C0 F1 (exception 02: illegal data address 0x0040)".into())]
        );
        // An unknown function: whatever arrives before the timeout is the reply.
        let mut codec = quiet(1, RegisterMap::preset());
        codec.raw("01 2B 0E 01 00", 1.0, &mut CodecOut::new());
        let mut out = CodecOut::new();
        codec.feed(&crc_hex("01 AB 01"), 1.0, &mut out);
        codec.poll(1.5, &mut out);
        assert!(
            out.events.iter().any(|e| matches!(e, Event::Log(t) if t.starts_with("< 01 AB 01"))),
            "{:?}",
            out.events
        );
    }

    #[test]
    fn raw_intent_classifies_writes_by_the_map() {
        let codec = quiet(1, RegisterMap::preset());
        let setpoint = |mode, v| RawIntent::Setpoint(mode, v);
        assert_eq!(codec.raw_intent("w target_velocity 600"), setpoint(ControlMode::Speed, 600.0));
        assert_eq!(codec.raw_intent("01 10 00 04 00 02 04 00 00 02 58"), setpoint(ControlMode::Speed, 600.0));
        assert_eq!(codec.raw_intent("w 4 0 600"), setpoint(ControlMode::Speed, 600.0));
        assert_eq!(codec.raw_intent("w 4 0xFFFF 0xFDA8"), setpoint(ControlMode::Speed, -600.0));
        assert_eq!(codec.raw_intent("w target_torque 100"), setpoint(ControlMode::Current, 0.5));
        assert_eq!(codec.raw_intent("w target_position 2.5"), setpoint(ControlMode::Position, 2.5));
        assert_eq!(codec.raw_intent("w 0x20 500"), RawIntent::Param("velocity_kp".into(), 0.5));
        assert_eq!(codec.raw_intent("w current_limit 6"), RawIntent::Param("current_limit".into(), 6.0));
        assert_eq!(codec.raw_intent("01 06 00 23 0F A0"), RawIntent::Param("max_velocity".into(), 4000.0));
        // Broadcast reaches every drive on the bus: refused.
        assert!(
            matches!(codec.raw_intent("00 06 00 23 0F A0"), RawIntent::Guarded(t) if t.contains("broadcast"))
        );
        for (line, needle) in [
            ("w 0 15", "controlword"),
            ("01 06 00 00 00 0F", "controlword"),
            ("00 06 00 00 00 00", "broadcast"),
            ("w controlword 6", "controlword"),
            ("w 2 3", "mode of operation"),
            ("w 0x30 1", "0x0030 is not in the register map"),
            ("w 5 600", "only part of the 32-bit target_velocity"),
            ("01 10 00 20 00 02 04 01 F4 00 64", "several"),
            ("02 06 00 20 01 F4", "unit 2"),
            ("01 05 00 00 FF 00", "coil"),
            ("01 16 00 00 00 FF 00 00", "0x16"),
            ("01 10 00 20 00 02 02 01 F4", "malformed"),
            ("01 41 00", "0x41"),
            ("zz", "not hex"),
            ("01 0", "not hex"),
            ("w velocity_kp nan", "not a number"),
            ("w velocity_kp", "one value"),
        ] {
            match codec.raw_intent(line) {
                RawIntent::Guarded(text) => assert!(text.contains(needle), "{line}: {text}"),
                other => panic!("{line}: {other:?}"),
            }
        }
        for line in [
            "r 0 10",
            "01 03 00 00 00 0A",
            "ri 6 2",
            "w 1 3",
            "w statusword 3",
            "01 04 00 00 00 01",
            "02 03 00 00 00 01",
        ] {
            assert_eq!(codec.raw_intent(line), RawIntent::Other, "{line}");
        }
        // Without a rated current a torque target cannot be checked.
        let unrated = quiet(1, RegisterMap { rated_current_a: None, ..RegisterMap::preset() });
        assert!(matches!(unrated.raw_intent("w target_torque 100"), RawIntent::Guarded(_)));
        // The bench checks limits: an out-of-range value is still classified.
        assert_eq!(codec.raw_intent("w velocity_kp 5"), RawIntent::Param("velocity_kp".into(), 5.0));
    }

    #[test]
    fn catalogue_and_signals_come_from_the_map() {
        let codec = ModbusCodec::new(1, RegisterMap::preset(), 19_200);
        let names: Vec<(String, String)> = codec.signals().into_iter().map(|s| (s.name, s.unit)).collect();
        let expected: Vec<(String, String)> = [
            ("speed_rpm", "rpm"),
            ("current_a", "A"),
            ("position_rev", "rev"),
            ("voltage_v", "V"),
            ("temperature_c", "°C"),
            ("torque_actual", "‰"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(names, expected);
        let params = codec.params();
        let keys: Vec<(&str, &str, f64, f64)> =
            params.iter().map(|p| (p.key.as_str(), p.unit.as_str(), p.min, p.max)).collect();
        assert_eq!(
            keys,
            vec![
                ("velocity_kp", "A/rpm", 0.0, 2.0),
                ("velocity_ki", "A/(rpm·s)", 0.0, 65.535),
                ("current_limit", "A", 0.1, 50.0),
                ("max_velocity", "rpm", 1.0, 20_000.0),
            ]
        );
        let limits = crate::drive::Limits::default();
        assert_eq!(limits.ceiling_for(&params[2]), Some(8.0));
        assert_eq!(limits.ceiling_for(&params[3]), Some(4000.0));
        assert_eq!(limits.ceiling_for(&params[0]), None);
        assert!(params.iter().all(|p| !p.read_only && !p.help.is_empty()));
        assert_eq!(codec.poll_interval(), Duration::from_millis(5));
        // One read per telemetry cycle for the preset.
        assert_eq!(codec.cycle, vec![Block { table: Table::Holding, start: 1, qty: 0x12 }]);
        // An invalid map or unit address is reported, and nothing is sent.
        let mut bad = ModbusCodec::new(0, RegisterMap::preset(), 19_200);
        let mut out = CodecOut::new();
        bad.start(0.0, &mut out);
        bad.poll(1.0, &mut out);
        assert!(out.tx.is_empty());
        assert!(
            matches!(&out.events[..], [Event::State(DriveState::Fault(t))] if t.contains("unit address 0"))
        );
        assert!(bad.command(&Command::Enable, 1.0, &mut out).is_err());
    }

    #[test]
    fn timing_gap_and_baud() {
        let fast = ModbusCodec::new(1, RegisterMap::preset(), 115_200);
        assert_eq!(fast.t35(), 0.00175);
        let slow = ModbusCodec::new(1, RegisterMap::preset(), 9600);
        assert!((slow.t35() - 0.004_010_4).abs() < 1e-6);
        let mut codec = quiet(1, RegisterMap::preset());
        command(&mut codec, Command::ReadParam("velocity_kp".into()), 1.0);
        command(&mut codec, Command::ReadParam("velocity_ki".into()), 1.0);
        let mut out = CodecOut::new();
        codec.feed(&crc_hex("01 03 02 00 3B"), 1.1, &mut out);
        assert!(out.tx.is_empty());
        assert!(poll(&mut codec, 1.101).tx.is_empty(), "t3.5 at 19200 baud is 2 ms");
        assert_eq!(poll(&mut codec, 1.1021).tx, crc_hex("01 03 00 21 00 01"));
    }

    /// The codec against the emulated drive and the simulated motor, in memory.
    struct Bench {
        codec: ModbusCodec,
        device: ModbusDevice,
        drive: SimDrive,
        ms: u64,
        silent: bool,
        events: Vec<Event>,
        samples: Vec<Sample>,
        frames: Vec<Vec<u8>>,
        state: Option<DriveState>,
    }

    impl Bench {
        fn new(map: RegisterMap) -> Self {
            let mut bench = Bench {
                codec: ModbusCodec::new(1, map, 19_200),
                device: ModbusDevice::new(1),
                drive: SimDrive::new(&SimConfig::default()),
                ms: 0,
                silent: false,
                events: Vec::new(),
                samples: Vec::new(),
                frames: Vec::new(),
                state: None,
            };
            let mut out = CodecOut::new();
            bench.codec.start(0.0, &mut out);
            bench.exchange(out);
            bench
        }

        fn now(&self) -> f64 {
            self.ms as f64 / 1000.0
        }

        fn note(&mut self, events: &mut Vec<Event>) {
            for event in events.iter() {
                if let Event::State(state) = event {
                    self.state = Some(state.clone());
                }
            }
            self.events.append(events);
        }

        fn exchange(&mut self, mut out: CodecOut) {
            self.note(&mut out.events);
            self.samples.append(&mut out.samples);
            if out.tx.is_empty() || self.silent {
                return;
            }
            self.frames.push(out.tx.clone());
            let mut reply = Vec::new();
            let now = self.now();
            self.device.receive(&out.tx, now, &mut self.drive, &mut reply);
            let mut back = CodecOut::new();
            self.codec.feed(&reply, now, &mut back);
            assert!(back.tx.is_empty());
            self.note(&mut back.events);
            self.samples.append(&mut back.samples);
        }

        fn run(&mut self, seconds: f64) {
            let mut frames = Vec::new();
            for _ in 0..(seconds * 1000.0).round() as u64 {
                frames.clear();
                self.drive.advance(0.001, &mut frames);
                self.ms += 1;
                let now = self.now();
                if let Some(&frame) = frames.last() {
                    let mut out = Vec::new();
                    self.device.tick(now, &mut self.drive, &frame, &mut out);
                    assert!(out.is_empty());
                }
                if self.ms.is_multiple_of(5) {
                    let mut out = CodecOut::new();
                    self.codec.poll(now, &mut out);
                    self.exchange(out);
                }
            }
        }

        fn command(&mut self, command: Command) -> Result<(), CodecError> {
            let mut out = CodecOut::new();
            let result = self.codec.command(&command, self.now(), &mut out);
            self.exchange(out);
            result
        }

        fn last_state(&self) -> Option<DriveState> {
            self.state.clone()
        }

        fn mean(&self, signal: u16, since_s: f64) -> f64 {
            let values: Vec<f64> = self
                .samples
                .iter()
                .filter(|s| s.signal == signal && s.t_s >= since_s)
                .map(|s| s.value)
                .collect();
            assert!(!values.is_empty(), "no samples of signal {signal} since {since_s}");
            values.iter().sum::<f64>() / values.len() as f64
        }

        fn take_events(&mut self) -> Vec<Event> {
            std::mem::take(&mut self.events)
        }
    }

    fn assert_no_trouble(events: &[Event]) {
        for event in events {
            match event {
                Event::Refused(text) => panic!("refused: {text}"),
                Event::Log(text)
                    if text.contains("no reply") || text.contains("ignored") || text.contains("dropped") =>
                {
                    panic!("log: {text}")
                }
                _ => {}
            }
        }
    }

    #[test]
    fn codec_against_emulated_drive() {
        let mut bench = Bench::new(RegisterMap::preset());
        bench.run(0.3);
        let events = bench.take_events();
        assert_no_trouble(&events);
        assert!(events.contains(&Event::State(DriveState::Idle)), "{events:?}");
        assert!(events.contains(&Event::Status("CiA 402: switch on disabled".into())));
        assert!(events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }), "{events:?}");
        assert!((bench.mean(3, 0.0) - 24.0).abs() < 0.5, "voltage");
        assert!((bench.mean(4, 0.0) - 25.0).abs() < 1.0, "temperature");
        let speed_samples = bench.samples.iter().filter(|s| s.signal == SIG_SPEED).count();
        assert!(speed_samples >= 20, "{speed_samples}");

        // Enable runs through the states.
        bench.command(Command::Enable).unwrap();
        bench.run(0.2);
        let events = bench.take_events();
        assert_no_trouble(&events);
        let statuses: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::Status(_))).collect();
        assert_eq!(
            statuses,
            vec![
                &Event::Status("CiA 402: ready to switch on".into()),
                &Event::Status("CiA 402: switched on".into()),
                &Event::Status("CiA 402: operation enabled".into()),
            ]
        );
        assert_eq!(bench.last_state(), Some(DriveState::Enabled));
        assert!(bench.drive.is_enabled());

        // The active mode is confirmed without touching the setpoint; a 600 rpm step settles.
        bench.command(Command::SetMode(ControlMode::Speed)).unwrap();
        bench.run(0.05);
        assert!(bench.take_events().contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }));
        bench.command(Command::SetSetpoint(ControlMode::Speed, 600.0)).unwrap();
        let step_s = bench.now();
        bench.run(1.0);
        let speed = bench.mean(SIG_SPEED, step_s + 0.7);
        assert!((speed - 600.0).abs() < 0.03 * 600.0, "{speed}");
        let events = bench.take_events();
        assert_no_trouble(&events);
        assert_eq!(events.iter().filter(|e| matches!(e, Event::Mode { .. })).count(), 1, "{events:?}");

        // A gain round-trips; the old value is restored.
        let old = bench.drive.read_param("speed_kp").unwrap();
        bench.command(Command::WriteParam("velocity_kp".into(), 0.5)).unwrap();
        bench.command(Command::ReadParam("velocity_kp".into())).unwrap();
        bench.run(0.1);
        let events = bench.take_events();
        assert!(
            events.contains(&Event::ParamWritten { key: "velocity_kp".into(), value: 0.5 }),
            "{events:?}"
        );
        assert!(events.contains(&Event::ParamValue { key: "velocity_kp".into(), value: 0.5 }), "{events:?}");
        assert_eq!(bench.drive.read_param("speed_kp").unwrap(), 0.5);
        bench.command(Command::WriteParam("velocity_kp".into(), old)).unwrap();
        bench.command(Command::ReadAllParams).unwrap();
        bench.run(0.1);
        let events = bench.take_events();
        assert_no_trouble(&events);
        let values = events.iter().filter(|e| matches!(e, Event::ParamValue { .. })).count();
        assert_eq!(values, 4, "{events:?}");
        // Out of the map's range: refused before it is sent.
        assert!(bench.command(Command::WriteParam("velocity_kp".into(), 2.5)).is_err());

        // E-STOP: quick stop, confirmed, target zeroed; enable does not restart the motion.
        let mut out = CodecOut::new();
        bench.codec.estop(bench.now(), &mut out);
        assert!(out.events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }));
        let sent = bench.frames.len();
        bench.exchange(out);
        bench.run(0.2);
        assert_eq!(bench.frames[sent], hex("01 06 00 00 00 02 08 0B"), "quick stop goes out first");
        let zero = crc_hex("01 10 00 04 00 02 04 00 00 00 00");
        assert!(
            bench.frames[sent + 1..sent + 4].contains(&zero),
            "then the target is zeroed: {:?}",
            bench.frames[sent..sent + 5].iter().map(|f| hex_string(f)).collect::<Vec<_>>()
        );
        let events = bench.take_events();
        assert_no_trouble(&events);
        assert!(events.contains(&Event::Status("CiA 402: quick stop active".into())), "{events:?}");
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
        assert!(!bench.drive.is_enabled());
        assert!(bench.codec.control.is_none(), "confirmed");
        assert!(bench.mean(SIG_SPEED, bench.now() - 0.05).abs() < 30.0, "braked to standstill");
        bench.command(Command::Enable).unwrap();
        bench.run(0.3);
        assert_eq!(bench.last_state(), Some(DriveState::Enabled));
        assert!(bench.mean(SIG_SPEED, bench.now() - 0.1).abs() < 20.0);

        // Position mode starts at the present position and moves on command.
        bench.take_events();
        bench.command(Command::SetMode(ControlMode::Position)).unwrap();
        bench.run(0.1);
        let start = bench.take_events().iter().find_map(|e| match e {
            Event::Mode { mode: ControlMode::Position, setpoint } => Some(*setpoint),
            _ => None,
        });
        let start = start.expect("position mode reported");
        bench.command(Command::SetSetpoint(ControlMode::Position, start + 2.0)).unwrap();
        let move_s = bench.now();
        bench.run(1.0);
        let position = bench.mean(SIG_POSITION, move_s + 0.9);
        assert!((position - (start + 2.0)).abs() < 0.05, "{position} vs {}", start + 2.0);

        // Current mode: A → ‰ of the rated current.
        bench.command(Command::SetMode(ControlMode::Current)).unwrap();
        bench.run(0.05);
        assert!(bench.take_events().contains(&Event::Mode { mode: ControlMode::Current, setpoint: 0.0 }));
        bench.command(Command::SetSetpoint(ControlMode::Current, 0.5)).unwrap();
        let current_s = bench.now();
        bench.run(0.06);
        let current = bench.mean(SIG_CURRENT, current_s + 0.02);
        assert!((current - 0.5).abs() < 0.1, "{current}");
        let err = bench.command(Command::SetSetpoint(ControlMode::Speed, 100.0)).unwrap_err();
        assert!(matches!(err, CodecError::WrongMode { .. }));
        bench.command(Command::Disable).unwrap();
        bench.run(0.1);
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
        assert!(!bench.drive.is_enabled());
        assert!(bench.take_events().contains(&Event::Status("CiA 402: switched on".into())));

        // A forced fault is reported with its code and reset by the bit-7 edge.
        bench.device.force_fault(&mut bench.drive);
        bench.run(0.1);
        assert_eq!(bench.last_state(), Some(DriveState::Fault("0x3210 over-voltage".into())));
        let err = bench.command(Command::SetSetpoint(ControlMode::Current, 1.0));
        assert!(err.is_ok(), "setpoints are written while disabled");
        bench.command(Command::Enable).unwrap();
        bench.run(0.1);
        assert!(refused(&bench.take_events()).iter().any(|t| t.contains("reset faults first")));
        bench.command(Command::ResetFaults).unwrap();
        bench.run(0.1);
        assert_eq!(bench.last_state(), Some(DriveState::Idle));

        // A trip of the simulated drive: over-current.
        bench.command(Command::SetMode(ControlMode::Speed)).unwrap();
        bench.run(0.05);
        bench.drive.write_param("overcurrent_trip_a", 0.3).unwrap();
        bench.command(Command::Enable).unwrap();
        bench.command(Command::SetSetpoint(ControlMode::Speed, 1200.0)).unwrap();
        bench.run(0.3);
        assert_eq!(bench.last_state(), Some(DriveState::Fault("0x2310 over-current".into())));
        bench.drive.write_param("overcurrent_trip_a", 20.0).unwrap();
        bench.command(Command::ResetFaults).unwrap();
        bench.run(0.2);
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
        assert_no_trouble(&bench.take_events());
    }

    #[test]
    fn device_refusal_reaches_the_user() {
        // A map wider than the drive: the drive's exception 03 is reported by key.
        let mut map = RegisterMap::preset();
        let kp = map.index_of("velocity_kp").unwrap();
        map.entries[kp].max = None;
        let mut bench = Bench::new(map);
        bench.run(0.1);
        bench.take_events();
        bench.command(Command::WriteParam("velocity_kp".into(), 3.0)).unwrap();
        bench.run(0.05);
        let events = bench.take_events();
        assert_eq!(
            refused(&events),
            vec!["writing velocity_kp failed: exception 03: illegal data value 0x0020".to_owned()]
        );
        let held = bench.drive.read_param("speed_kp").unwrap();
        assert!(events.contains(&Event::ParamValue {
            key: "velocity_kp".into(),
            value: (held * 1000.0).round() / 1000.0
        }));
        // An entry the drive lacks is left out of the telemetry after it refuses it, and asked
        // again after 1 s, 2 s, 4 s, ….
        let mut map = RegisterMap::preset();
        map.entries.push(RegisterEntry {
            name: "igbt_temperature".into(),
            address: 0x0013,
            kind: RegType::I16,
            ..RegisterEntry::default()
        });
        let t = map.index_of("temperature").unwrap();
        map.entries[t].address = 0x0013;
        map.entries.pop();
        map.entries.push(RegisterEntry { name: "spare".into(), address: 0x0012, ..RegisterEntry::default() });
        let mut bench = Bench::new(map);
        bench.run(0.3);
        let events = bench.take_events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Log(t) if t.contains("reading its registers one by one"))),
            "{events:?}"
        );
        assert!(events.iter().any(
            |e| matches!(e, Event::Log(t) if t.contains("(temperature)") && t.contains("left out of the telemetry"))
        ));
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
        let late = bench.now() - 0.1;
        assert!(bench.samples.iter().any(|s| s.signal == SIG_SPEED && s.t_s >= late));
        let temperature_reads = |frames: &[Vec<u8>]| {
            frames.iter().filter(|f| matches!(f[1], 3 | 4) && f[2..6] == [0, 0x13, 0, 1]).count()
        };
        bench.frames.clear();
        bench.run(7.5);
        assert_eq!(temperature_reads(&bench.frames), 3, "asked again after 1, 2 and 4 s");
        let events = bench.take_events();
        assert!(!events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("left out"))), "said once");
        let late = bench.now() - 0.1;
        assert!(bench.samples.iter().any(|s| s.signal == SIG_SPEED && s.t_s >= late));
    }

    #[test]
    fn silent_emulator_loop() {
        let mut bench = Bench::new(RegisterMap::preset());
        bench.silent = true;
        bench.run(1.5);
        assert!(matches!(bench.last_state(), Some(DriveState::Fault(t)) if t.contains("no reply")));
        bench.silent = false;
        bench.run(1.0);
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
    }

    #[test]
    fn console_line_with_a_hidden_write_is_refused_and_classified() {
        let codec = quiet(1, RegisterMap::preset());
        // A read followed by a write of 3000 ‰ to the torque target, on one line.
        let line = "01 03 00 00 00 01 84 0A 01 06 00 0C 0B B8 4E 8B";
        assert!(matches!(codec.raw_intent(line), RawIntent::Guarded(t) if t.contains("one whole frame")));
        let mut codec = quiet(1, RegisterMap::preset());
        let mut out = CodecOut::new();
        codec.raw(line, 1.0, &mut out);
        assert!(out.tx.is_empty(), "not sent");
        assert!(!refused(&out.events).is_empty());
        // A CRC-valid write hidden inside a frame that is harmless by itself is found too.
        let inner = crc_hex("01 06 00 0C 00 64");
        let mut outer = hex("01 2B 0D");
        outer.extend_from_slice(&inner);
        let outer = with_crc(outer);
        assert_eq!(codec.frame_intent(&outer), RawIntent::Other, "harmless on its own");
        let intent = codec.raw_intent(&hex_string(&outer));
        assert!(
            matches!(intent, RawIntent::Guarded(ref t) if t.contains("another whole frame")),
            "{intent:?}"
        );
        // Each frame alone is classified as before.
        assert_eq!(codec.raw_intent("01 03 00 00 00 01 84 0A"), RawIntent::Other);
        assert_eq!(codec.raw_intent("01 06 00 0C 00 64"), RawIntent::Setpoint(ControlMode::Current, 0.5));
        // Too short for its function code.
        assert!(matches!(codec.raw_intent("01 06 00 0C 00"), RawIntent::Guarded(_)));
    }

    #[test]
    fn console_refuses_broadcast_writes() {
        let codec = quiet(1, RegisterMap::preset());
        for line in ["00 06 00 23 0F A0", "00 06 00 0C 00 64", "00 03 00 00 00 01"] {
            assert!(
                matches!(codec.raw_intent(line), RawIntent::Guarded(ref t) if t.contains("broadcast")),
                "{line}"
            );
        }
        // Hidden inside another frame too (frame_intent on its own).
        assert!(matches!(codec.frame_intent(&crc_hex("00 06 00 23 0F A0")), RawIntent::Guarded(_)));
    }

    /// A codec in speed mode, enabled, with the preset map.
    fn enabled_speed_codec() -> ModbusCodec {
        let mut codec = quiet(1, RegisterMap::preset());
        codec.mode = Some(ControlMode::Speed);
        codec.known.statusword = Some((0x0237, 0));
        codec
    }

    fn queued_purposes(codec: &ModbusCodec) -> Vec<Purpose> {
        codec.queue.iter().map(|r| r.purpose.clone()).collect()
    }

    #[test]
    fn busy_retry_of_a_setpoint_is_dropped_after_a_stop() {
        let mut codec = enabled_speed_codec();
        command(&mut codec, Command::SetSetpoint(ControlMode::Speed, 3000.0), 1.0);
        assert!(codec.in_flight.is_some());
        let mut out = CodecOut::new();
        codec.estop(1.001, &mut out);
        let mut out = CodecOut::new();
        codec.feed(&crc_hex("01 90 06"), 1.01, &mut out);
        poll(&mut codec, 1.05);
        assert!(
            !queued_purposes(&codec).iter().any(|p| matches!(p, Purpose::Target { safe: false, .. })),
            "{:?}",
            queued_purposes(&codec)
        );
        assert_eq!(
            codec.in_flight.as_ref().map(|f| f.req.purpose.clone()),
            Some(Purpose::Control { value: 2, stop: true })
        );
    }

    #[test]
    fn timeout_retry_of_enable_operation_is_dropped_after_a_stop() {
        let mut codec = enabled_speed_codec();
        codec.known.statusword = Some((0x0233, 0));
        codec.queue_control(CW_ENABLE_OPERATION, true);
        let out = poll(&mut codec, 1.0);
        assert_eq!(out.tx, crc_hex("01 06 00 00 00 0F"));
        let mut out = CodecOut::new();
        codec.estop(1.001, &mut out);
        // No reply: the 0x000F write times out and is not sent again; the stop is.
        let out = poll(&mut codec, 2.0);
        assert_eq!(out.tx, hex("01 06 00 00 00 02 08 0B"));
        assert!(
            !codec
                .queue
                .iter()
                .any(|r| r.purpose == Purpose::Control { value: CW_ENABLE_OPERATION, stop: false }),
            "{:?}",
            queued_purposes(&codec)
        );
    }

    #[test]
    fn enable_and_reset_keep_a_queued_stop_first() {
        for cmd in [Command::Enable, Command::ResetFaults] {
            let mut codec = enabled_speed_codec();
            command(&mut codec, Command::ReadParam("velocity_kp".into()), 1.0);
            let mut out = CodecOut::new();
            codec.estop(1.001, &mut out);
            command(&mut codec, cmd.clone(), 1.002);
            let purposes = queued_purposes(&codec);
            assert_eq!(
                purposes.first(),
                Some(&Purpose::Control { value: CW_QUICK_STOP, stop: true }),
                "{cmd:?}"
            );
            let status =
                purposes.iter().position(|p| matches!(p, Purpose::Read(ReadWhy { status: true, .. })));
            assert!(status.is_some_and(|i| i > 0), "{cmd:?}: {purposes:?}");
        }
    }

    #[test]
    fn setpoints_round_toward_zero() {
        let mut map = RegisterMap::preset();
        map.rated_current_a = Some(3.0);
        let codec = quiet(1, map);
        let (words, held) = codec.encode_target(ControlMode::Current, 8.0).unwrap();
        assert_eq!(words, vec![2666]);
        assert!(held <= 8.0, "{held}");
        let (words, held) = codec.encode_target(ControlMode::Current, -8.0).unwrap();
        assert_eq!(words, vec![(-2666i16) as u16]);
        assert!(held >= -8.0);
        // Float noise next to a whole step still gives that step.
        let (words, _) = codec.encode_target(ControlMode::Current, 0.3).unwrap();
        assert_eq!(words, vec![100]);
    }

    #[test]
    fn enable_timeout_writes_the_disable_word() {
        let mut codec = enabled_speed_codec();
        codec.known.statusword = Some((0x0233, 0));
        codec.control = Some(Control::Enable(EnableSeq {
            written: Some((CW_ENABLE_OPERATION, Cia::OperationEnabled)),
            deadline: 1.0,
        }));
        let out = poll(&mut codec, 1.5);
        assert!(refused(&out.events).iter().any(|t| t.contains("0x0006")), "{:?}", out.events);
        assert_eq!(out.tx, hex("01 06 00 00 00 06 09 C8"));
        assert!(matches!(codec.control, Some(Control::Stop(StopSeq { value: CW_SHUTDOWN, .. }))));
    }

    #[test]
    fn only_off_states_confirm_a_stop_and_quick_stop_ends_in_disable_voltage() {
        let mut codec = enabled_speed_codec();
        let mut out = CodecOut::new();
        codec.send_stop(false, true, 1.0, &mut out);
        // A statusword that matches no CiA 402 state does not confirm.
        codec.known.statusword = Some((0x0277, 10));
        codec.advance_control(1.1, &mut out);
        assert!(codec.control.is_some());
        codec.known.statusword = Some((0x0231, 11));
        codec.advance_control(1.2, &mut out);
        assert!(codec.control.is_none(), "ready to switch on confirms");

        let mut codec = enabled_speed_codec();
        let mut out = CodecOut::new();
        codec.send_stop(true, true, 1.0, &mut out);
        codec.queue.clear();
        codec.awaiting_control = None;
        codec.known.statusword = Some((0x0217, 10));
        codec.advance_control(1.1, &mut out);
        assert!(codec.control.is_some(), "quick stop active does not confirm");
        codec.check_control(1.5, &mut out);
        assert!(!codec.queue.iter().any(|r| matches!(r.purpose, Purpose::Control { .. })));
        codec.check_control(1.1 + QUICK_STOP_HOLD_S, &mut out);
        assert_eq!(
            codec.queue.front().map(|r| r.purpose.clone()),
            Some(Purpose::Control { value: 0, stop: true })
        );
    }

    #[test]
    fn position_mode_holds_the_present_position_on_estop_and_enable() {
        let mut codec = enabled_speed_codec();
        codec.mode = Some(ControlMode::Position);
        codec.known.position_rev = Some(2.5);
        let mut out = CodecOut::new();
        codec.send_stop(true, true, 1.0, &mut out);
        assert!(
            out.events.contains(&Event::Mode { mode: ControlMode::Position, setpoint: 2.5 }),
            "{:?}",
            out.events
        );
        assert!(matches!(
            codec.queue.get(1).map(|r| &r.purpose),
            Some(Purpose::Target { mode: ControlMode::Position, safe: true, .. })
        ));

        let mut codec = enabled_speed_codec();
        codec.mode = Some(ControlMode::Position);
        codec.known.statusword = Some((0x0250, 0));
        codec.known.position_rev = Some(-1.25);
        let out = command(&mut codec, Command::Enable, 1.0);
        assert!(out.events.contains(&Event::Mode { mode: ControlMode::Position, setpoint: -1.25 }));
        let position = codec.map.role(Role::TargetPosition).unwrap();
        let address = codec.map.entries[position].address;
        assert_eq!(
            out.tx.get(1..4),
            Some(&[0x10, (address >> 8) as u8, address as u8][..]),
            "{}",
            hex_string(&out.tx)
        );
        // Without a known position the enable is refused.
        let mut codec = enabled_speed_codec();
        codec.mode = Some(ControlMode::Position);
        assert!(codec.command(&Command::Enable, 1.0, &mut CodecOut::new()).is_err());
    }

    /// The preset with a torque limit in ‰ of rated at a free address.
    fn relative_limit_map(rated: Option<f64>) -> RegisterMap {
        let mut map = RegisterMap::preset();
        map.rated_current_a = rated;
        map.entries.push(RegisterEntry {
            name: "max_torque".into(),
            address: 0x0040,
            kind: RegType::U16,
            access: Access::ReadWrite,
            scale: 1.0,
            unit: "‰".into(),
            min: Some(0.0),
            max: Some(3000.0),
            ..RegisterEntry::default()
        });
        map
    }

    #[test]
    fn relative_current_limits_are_offered_in_amperes_or_read_only() {
        let mut codec = quiet(1, relative_limit_map(Some(3.0)));
        let spec = codec.params().into_iter().find(|p| p.key == "max_torque").unwrap();
        assert_eq!(spec.unit, "A");
        assert!((spec.max - 9.0).abs() < 1e-9 && spec.min == 0.0, "{spec:?}");
        assert!(!spec.read_only);
        // 8 A of 3 A rated: 2666 ‰ (toward zero), reported back in A.
        let out = command(&mut codec, Command::WriteParam("max_torque".into(), 8.0), 1.0);
        assert_eq!(out.tx, crc_hex("01 06 00 40 0A 6A"));
        assert_eq!(codec.raw_intent("01 06 00 40 0B B8"), RawIntent::Param("max_torque".into(), 9.0));

        let mut codec = quiet(1, relative_limit_map(None));
        let spec = codec.params().into_iter().find(|p| p.key == "max_torque").unwrap();
        assert!(spec.read_only && spec.help.contains("rated_current_a"), "{spec:?}");
        assert!(matches!(
            codec.command(&Command::WriteParam("max_torque".into(), 100.0), 1.0, &mut CodecOut::new()),
            Err(CodecError::ReadOnly(_))
        ));
        assert!(matches!(codec.raw_intent("01 06 00 40 0B B8"), RawIntent::Guarded(_)));
    }

    #[test]
    fn role_reads_refused_with_exception_03_are_split() {
        let mut codec = quiet(1, RegisterMap::preset());
        let block = *codec.start_blocks.iter().find(|b| b.qty > 1).unwrap();
        codec.queue.push_back(ModbusCodec::read_request(block, Purpose::read()));
        let out = poll(&mut codec, 1.0);
        assert_eq!(out.tx[1], 0x03);
        let mut out = CodecOut::new();
        codec.feed(&crc_hex("01 83 03"), 1.01, &mut out);
        assert!(codec.queue.len() > 1, "{:?}", codec.queue);
        assert!(codec.queue.iter().all(|r| matches!(r.op, Op::Read { qty, .. } if qty < block.qty)));
        assert!(!codec.start_blocks.contains(&block), "later refreshes read them one by one too");
        // The telemetry cycle too.
        let mut codec = quiet(1, RegisterMap::preset());
        let before = codec.cycle.len();
        let index = codec.cycle.iter().position(|b| b.qty > 1).unwrap();
        codec.cycle_pos = index;
        let out = poll(&mut codec, 1.0);
        assert!(!out.tx.is_empty());
        codec.feed(&crc_hex("01 83 03"), 1.01, &mut CodecOut::new());
        assert!(codec.cycle.len() > before);
    }

    #[test]
    fn timeout_range_matches_the_configuration_check() {
        let codec = ModbusCodec::new(1, RegisterMap::preset(), 19_200).with_timing(8.0, 2);
        assert_eq!(codec.response_timeout_s, 8.0);
        let codec = ModbusCodec::new(1, RegisterMap::preset(), 19_200).with_timing(20.0, 2);
        assert_eq!(codec.response_timeout_s, MAX_RESPONSE_TIMEOUT_S);
    }

    #[test]
    fn stop_reports_a_disable_sent_without_the_gap() {
        let mut codec = quiet(1, RegisterMap::preset());
        codec.queue_refresh();
        poll(&mut codec, 1.0);
        assert!(codec.in_flight.is_some());
        let mut out = CodecOut::new();
        codec.stop(1.001, &mut out);
        assert_eq!(out.tx, crc_hex("01 06 00 00 00 00"));
        assert!(out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("may not have taken"))));
        // On a quiet bus: no warning.
        let mut codec = quiet(1, RegisterMap::preset());
        let mut out = CodecOut::new();
        codec.stop(5.0, &mut out);
        assert_eq!(out.tx, crc_hex("01 06 00 00 00 00"));
        assert!(out.events.is_empty(), "{:?}", out.events);
    }

    #[test]
    fn stops_drop_queued_setpoints_and_are_resent_until_confirmed() {
        let mut codec = quiet(1, RegisterMap::preset());
        codec.mode = Some(ControlMode::Speed);
        codec.known.statusword = Some((0x0237, 0));
        // A read is in flight; setpoints queue behind it.
        command(&mut codec, Command::ReadParam("velocity_kp".into()), 1.0);
        command(&mut codec, Command::SetSetpoint(ControlMode::Speed, 100.0), 1.0);
        command(&mut codec, Command::SetSetpoint(ControlMode::Speed, 200.0), 1.0);
        let targets = codec.queue.iter().filter(|r| matches!(r.purpose, Purpose::Target { .. })).count();
        assert_eq!(targets, 1, "the newer setpoint replaced the queued one");
        let out = command(&mut codec, Command::Disable, 1.0);
        assert!(out.tx.is_empty());
        assert_eq!(codec.queue.len(), 1);
        assert_eq!(codec.queue[0].purpose, Purpose::Control { value: 0x0007, stop: true });
        let mut regs = [0u16; 0x24];
        // The drive ignores the controlword: still operation enabled.
        regs[1] = 0x0237;
        let (mut frames, mut events) = (Vec::new(), Vec::new());
        for k in 0..200 {
            let now = 1.0 + f64::from(k) * 0.005;
            let mut out = poll(&mut codec, now);
            if !out.tx.is_empty() {
                frames.push(out.tx.clone());
                let reply = serve(&out.tx, &mut regs);
                regs[1] = 0x0237;
                codec.feed(&reply, now, &mut out);
            }
            events.append(&mut out.events);
        }
        let stops = frames.iter().filter(|f| *f == &crc_hex("01 06 00 00 00 07")).count();
        assert!(stops >= 3, "{stops}");
        let reports = refused(&events);
        assert!(
            reports[0]
                .starts_with("disable not confirmed: the drive is in operation enabled (statusword 0x0237)"),
            "{reports:?}"
        );
        assert!(reports.len() < stops, "reports are throttled");
        assert!(frames.iter().all(|f| f[1] != 0x10), "no setpoint after the stop");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..20),
            lines in prop::collection::vec("\\PC{0,30}|[0-9a-f ]{0,24}|[rw]i? [0-9a-z_x]{0,12}( -?[0-9.x]{0,6}){0,3}", 0..6),
        ) {
            let mut codec = ModbusCodec::new(1, RegisterMap::preset(), 19_200);
            let mut out = CodecOut::new();
            codec.start(0.0, &mut out);
            let mut now = 0.0;
            for chunk in chunks {
                now += 0.013;
                codec.feed(&chunk, now, &mut out);
                codec.poll(now, &mut out);
                prop_assert!(codec.rx.len() <= MAX_RX);
            }
            for line in lines {
                now += 0.05;
                let _ = codec.raw_intent(&line);
                codec.raw(&line, now, &mut out);
                codec.poll(now, &mut out);
            }
            for sample in &out.samples {
                prop_assert!(sample.value.is_finite());
            }
            prop_assert!(codec.queue.len() < 1000);
        }

        #[test]
        fn replies_split_anywhere_read_the_same(split in 0usize..60, garbage in prop::collection::vec(any::<u8>(), 0..12)) {
            let mut codec = quiet(1, RegisterMap::preset());
            codec.queue_refresh();
            let _ = poll(&mut codec, 1.0);
            let mut device = ModbusDevice::new(1);
            let mut drive = SimDrive::new(&SimConfig::default());
            let request = codec.in_flight.as_ref().unwrap().frame.clone();
            let mut reply = Vec::new();
            device.receive(&request, 1.0, &mut drive, &mut reply);
            let mut whole = codec.clone();
            let mut expected = CodecOut::new();
            whole.feed(&reply, 1.0, &mut expected);
            prop_assert!(whole.in_flight.is_none());
            let mut bytes = garbage.clone();
            bytes.extend_from_slice(&reply);
            let at = split.min(bytes.len());
            let mut out = CodecOut::new();
            codec.feed(&bytes[..at], 1.0, &mut out);
            codec.feed(&bytes[at..], 1.0, &mut out);
            prop_assert_eq!(out.samples, expected.samples);
            prop_assert!(codec.in_flight.is_none());
        }
    }
}
