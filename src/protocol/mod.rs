//! Protocol codecs: pure state machines between drive commands and the bytes on a link.
//!
//! A codec never touches a port, a thread or a clock: the serial backend feeds it the bytes
//! it read (with the session time they arrived at), asks it to encode commands, and calls
//! [`Codec::poll`] periodically for requests, keep-alives and reply timeouts. Everything it
//! wants written comes back in [`CodecOut::tx`]. This keeps every codec testable with byte
//! vectors and lets the same code run against a real port or a pseudo-terminal.
//!
//! Codecs convert vendor units (rad/s, turns/s, mA) to the canonical signals (`speed_rpm`,
//! `current_a`, `position_rev`, `voltage_v`, `temperature_c`) at the edge.

pub mod modbus;
pub mod modbus_map;
pub mod odrive;
pub mod plotter;
pub mod simplefoc;
pub mod vesc;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::drive::{Command, ControlMode, Event, ParamSpec, Sample, SignalSpec};

/// The protocols drivebench speaks over a serial link, with their options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Protocol {
    /// Arduino Serial Plotter lines (`label:value`, or bare numbers): telemetry only.
    Plotter,
    /// SimpleFOC Commander; `motor` is the command id the motor is registered under.
    SimpleFoc { motor: char },
    /// ODrive ASCII protocol (firmware 0.5.x); `axis` 0 or 1; `checksum` appends `*NN` to
    /// every line and expects checksummed replies.
    ODrive { axis: u8, checksum: bool },
    /// VESC UART packets; `pole_pairs` converts electrical rpm to mechanical rpm.
    Vesc { pole_pairs: u32 },
    /// Modbus RTU with a CiA 402-style drive profile; the register map is data (the preset is
    /// the map `drivebench emulate --protocol modbus` serves).
    Modbus {
        /// Unit (slave) address 1–247.
        unit: u8,
        #[serde(default = "modbus_map::RegisterMap::preset")]
        map: modbus_map::RegisterMap,
        /// Response timeout in seconds (without the time the frames take on the wire).
        #[serde(default = "default_modbus_timeout_s")]
        response_timeout_s: f64,
        /// Repeats of a request that got no reply.
        #[serde(default = "default_modbus_retries")]
        retries: u32,
    },
}

fn default_modbus_timeout_s() -> f64 {
    modbus::DEFAULT_RESPONSE_TIMEOUT_S
}

fn default_modbus_retries() -> u32 {
    modbus::DEFAULT_RETRIES
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol::SimpleFoc { motor: 'M' }
    }
}

impl Protocol {
    /// Modbus RTU on the preset register map.
    pub fn modbus(unit: u8) -> Protocol {
        Protocol::Modbus {
            unit,
            map: modbus_map::RegisterMap::preset(),
            response_timeout_s: default_modbus_timeout_s(),
            retries: default_modbus_retries(),
        }
    }

    /// The name used on the command line and in project files (`plotter`, `simplefoc`, `odrive`).
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Plotter => "plotter",
            Protocol::SimpleFoc { .. } => "simplefoc",
            Protocol::ODrive { .. } => "odrive",
            Protocol::Vesc { .. } => "vesc",
            Protocol::Modbus { .. } => "modbus",
        }
    }

    /// A human label for the UI.
    pub fn label(&self) -> String {
        match self {
            Protocol::Plotter => "Serial Plotter".into(),
            Protocol::SimpleFoc { motor } => format!("SimpleFOC (motor {motor})"),
            Protocol::ODrive { axis, checksum } => {
                format!("ODrive ASCII (axis {axis}{})", if *checksum { ", checksum" } else { "" })
            }
            Protocol::Vesc { pole_pairs } => format!("VESC ({pole_pairs} pole pairs)"),
            Protocol::Modbus { unit, map, .. } => {
                format!("Modbus RTU / CiA 402 (unit {unit}, {} registers)", map.entries.len())
            }
        }
    }

    /// Whether the protocol can command a motor (Serial Plotter is telemetry only).
    pub fn can_control(&self) -> bool {
        !matches!(self, Protocol::Plotter)
    }

    /// Why the protocol's parameter catalogue is empty or partial.
    pub fn params_note(&self) -> Option<&'static str> {
        match self {
            Protocol::Plotter => Some("a Serial Plotter sketch only prints telemetry"),
            Protocol::Vesc { .. } => Some(
                "VESC motor and app configuration is a binary blob whose layout changes with each \
                 firmware version: edit it in VESC Tool",
            ),
            _ => None,
        }
    }

    /// The usual baud rate of the protocol's devices.
    pub fn default_baud(&self) -> u32 {
        match self {
            Protocol::Modbus { .. } => 19_200,
            _ => 115_200,
        }
    }

    /// The usual framing: Modbus RTU requires even parity by default (RS-485 adapters and
    /// drives ship 8E1); the others run 8N1.
    pub fn default_framing(&self) -> &'static str {
        match self {
            Protocol::Modbus { .. } => "8E1",
            _ => "8N1",
        }
    }

    /// Builds the codec for this protocol on a link running at `baud` (Modbus times its
    /// frame gaps by it).
    pub fn codec(&self, baud: u32) -> Box<dyn Codec> {
        match self {
            Protocol::Plotter => Box::new(plotter::PlotterCodec::new()),
            Protocol::SimpleFoc { motor } => Box::new(simplefoc::SimpleFocCodec::new(*motor)),
            Protocol::ODrive { axis, checksum } => Box::new(odrive::ODriveCodec::new(*axis, *checksum)),
            Protocol::Vesc { pole_pairs } => Box::new(vesc::VescCodec::new(*pole_pairs)),
            Protocol::Modbus { unit, map, response_timeout_s, retries } => Box::new(
                modbus::ModbusCodec::new(*unit, map.clone(), baud).with_timing(*response_timeout_s, *retries),
            ),
        }
    }

    /// Checks the options (motor id, axis).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Protocol::Plotter => Ok(()),
            Protocol::SimpleFoc { motor } => {
                if motor.is_ascii_alphabetic() {
                    Ok(())
                } else {
                    Err(format!("SimpleFOC motor id must be a letter, not {motor:?}"))
                }
            }
            Protocol::ODrive { axis, .. } => {
                if *axis <= 1 {
                    Ok(())
                } else {
                    Err(format!("ODrive axis must be 0 or 1, not {axis}"))
                }
            }
            Protocol::Vesc { pole_pairs } => {
                if (1..=100).contains(pole_pairs) {
                    Ok(())
                } else {
                    Err(format!("VESC pole pairs must be 1 to 100, not {pole_pairs}"))
                }
            }
            Protocol::Modbus { unit, map, response_timeout_s, retries } => {
                if !(1..=247).contains(unit) {
                    return Err(format!("Modbus unit address must be 1 to 247, not {unit}"));
                }
                let (min, max) = (modbus::MIN_RESPONSE_TIMEOUT_S, modbus::MAX_RESPONSE_TIMEOUT_S);
                if !(response_timeout_s.is_finite() && (min..=max).contains(response_timeout_s)) {
                    return Err(format!(
                        "Modbus response timeout must be {min} to {max} s, not {response_timeout_s}"
                    ));
                }
                if *retries > 10 {
                    return Err(format!("Modbus retries must be 0 to 10, not {retries}"));
                }
                map.validate().map_err(|e| format!("register map: {e}"))
            }
        }
    }
}

/// What a codec step produced: bytes to write, samples, and events for the UI.
#[derive(Debug, Default)]
pub struct CodecOut {
    /// Bytes to write to the link, in order.
    pub tx: Vec<u8>,
    /// Telemetry; `signal` indexes the codec's signal list.
    pub samples: Vec<Sample>,
    /// State changes, parameter values, mode reports, refusals, log lines. A codec whose
    /// signal list grows (Serial Plotter labels) sends `Event::Signals` with the whole list;
    /// existing indices never change.
    pub events: Vec<Event>,
}

impl CodecOut {
    pub fn new() -> Self {
        CodecOut::default()
    }

    pub fn clear(&mut self) {
        self.tx.clear();
        self.samples.clear();
        self.events.clear();
    }
}

/// Why a codec cannot carry out a command.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CodecError {
    #[error("{0} is not supported by this protocol")]
    Unsupported(String),
    #[error("unknown parameter `{0}`")]
    UnknownParam(String),
    #[error("{0} is read-only")]
    ReadOnly(String),
    #[error("a {wanted} setpoint is not applied: the drive is in {active} mode")]
    WrongMode { wanted: String, active: String },
    #[error("{0}")]
    Invalid(String),
}

/// What a raw console line would do, as far as the codec can tell. The bench checks the
/// recognised kinds against the project limits before the line is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum RawIntent {
    /// Sets the setpoint of a mode (value in the canonical unit: A, rpm, rev).
    Setpoint(ControlMode, f64),
    /// Writes a catalogue parameter (value in the catalogue's unit).
    Param(String, f64),
    /// Writes a setting that is not in the catalogue but limits the motor (a current or
    /// speed limit the codec knows of): refused from the console.
    Guarded(String),
    /// Anything else: reads, queries, configuration the codec does not interpret.
    Other,
}

/// One protocol's host side.
pub trait Codec: Send {
    /// The telemetry signals, canonical names first. Sample indices refer to this list.
    fn signals(&self) -> Vec<SignalSpec>;
    /// The parameter catalogue: keys, units (canonical where the drive's unit converts),
    /// ranges, read-only flags.
    fn params(&self) -> Vec<ParamSpec>;
    /// Whether the protocol can command the motor at all (Serial Plotter cannot).
    fn can_control(&self) -> bool {
        true
    }
    /// Why the catalogue is empty or partial, shown in the parameter editor (e.g. VESC
    /// configuration is a firmware-specific binary blob).
    fn params_note(&self) -> Option<String> {
        None
    }
    /// Called once the link is open: set-up requests (reply format, telemetry stream) and
    /// the first state read.
    fn start(&mut self, now_s: f64, out: &mut CodecOut);
    /// Encodes one command. Results that need the drive's reply (parameter values, state)
    /// arrive later through [`Codec::feed`]. `Connect`/`Disconnect` are handled by the link.
    fn command(&mut self, cmd: &Command, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError>;
    /// The fastest stop the protocol offers, encoded into `out.tx`.
    fn estop(&mut self, now_s: f64, out: &mut CodecOut);
    /// A raw console line, framed the protocol's way (line end, checksum).
    fn raw(&mut self, text: &str, now_s: f64, out: &mut CodecOut);
    /// What a raw console line would do (see [`RawIntent`]).
    fn raw_intent(&self, text: &str) -> RawIntent {
        let _ = text;
        RawIntent::Other
    }
    /// Bytes read from the link, arrived at session time `now_s`.
    fn feed(&mut self, bytes: &[u8], now_s: f64, out: &mut CodecOut);
    /// Periodic work: telemetry requests, watchdog feeding, reply timeouts.
    fn poll(&mut self, now_s: f64, out: &mut CodecOut);
    /// How often [`Codec::poll`] should run.
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(10)
    }
    /// Bytes that disable the power stage before the link closes.
    fn stop(&mut self, now_s: f64, out: &mut CodecOut);
}

/// Formats a number for a text protocol: at most `decimals` decimals, trailing zeros and a
/// trailing point removed, never exponent notation, `-0` written as `0`.
pub fn format_decimal(value: f64, decimals: usize) -> String {
    let mut s = format!("{value:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

/// Splits a byte stream into lines. A line ends at any of the `terminators`; empty lines are
/// skipped. A line longer than `max_len` is dropped up to its terminator (and reported by
/// [`LineSplitter::overflows`]), so garbage without line ends cannot grow memory.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    buf: Vec<u8>,
    terminators: &'static [u8],
    max_len: usize,
    discarding: bool,
    overflows: u64,
}

impl LineSplitter {
    pub fn new(terminators: &'static [u8], max_len: usize) -> Self {
        LineSplitter { buf: Vec::new(), terminators, max_len, discarding: false, overflows: 0 }
    }

    /// Feeds bytes; calls `line` for every complete non-empty line (terminator removed).
    pub fn feed(&mut self, bytes: &[u8], mut line: impl FnMut(&[u8])) {
        for &b in bytes {
            if self.terminators.contains(&b) {
                if !self.discarding && !self.buf.is_empty() {
                    line(&self.buf);
                }
                self.buf.clear();
                self.discarding = false;
            } else if self.discarding {
            } else if self.buf.len() >= self.max_len {
                self.buf.clear();
                self.discarding = true;
                self.overflows += 1;
            } else {
                self.buf.push(b);
            }
        }
    }

    /// The bytes of the unfinished line.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Drops the unfinished line (e.g. the partial first line after opening a port).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }

    /// Lines dropped for being too long.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }
}

/// Bounds log lines caused by a drive (stray lines, timeouts, bad checksums) to a few per
/// second, so that a babbling link cannot flood the connection log; the number held back is
/// reported when the next second starts.
#[derive(Debug, Clone, Default)]
pub struct LogLimiter {
    window_start_s: f64,
    in_window: u32,
    suppressed: u32,
}

impl LogLimiter {
    const PER_SECOND: u32 = 5;

    pub fn log(&mut self, now_s: f64, text: String, out: &mut CodecOut) {
        if now_s - self.window_start_s >= 1.0 || now_s < self.window_start_s {
            if self.suppressed > 0 {
                out.events.push(Event::Log(format!("({} similar messages suppressed)", self.suppressed)));
            }
            self.window_start_s = now_s;
            self.in_window = 0;
            self.suppressed = 0;
        }
        if self.in_window < Self::PER_SECOND {
            self.in_window += 1;
            out.events.push(Event::Log(text));
        } else {
            self.suppressed += 1;
        }
    }
}

pub const RAD_S_PER_RPM: f64 = std::f64::consts::TAU / 60.0;
pub const RPM_PER_RAD_S: f64 = 60.0 / std::f64::consts::TAU;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_trimmed() {
        assert_eq!(format_decimal(1.2, 3), "1.2");
        assert_eq!(format_decimal(20.0, 3), "20");
        assert_eq!(format_decimal(-0.0001, 3), "0");
        assert_eq!(format_decimal(-2.5, 6), "-2.5");
        assert_eq!(format_decimal(1e20, 2), "100000000000000000000");
    }

    #[test]
    fn splitter_handles_terminators_and_overflow() {
        let mut s = LineSplitter::new(b"\r\n", 8);
        let mut lines = Vec::new();
        s.feed(b"ab\r\ncd\nxxxxxxxxxxxx\nef", |l| lines.push(l.to_vec()));
        assert_eq!(lines, vec![b"ab".to_vec(), b"cd".to_vec()]);
        assert_eq!(s.pending(), b"ef");
        assert_eq!(s.overflows(), 1);
        s.feed(b"\n", |l| lines.push(l.to_vec()));
        assert_eq!(lines.last().unwrap(), b"ef");
    }
}
