//! ODrive ASCII protocol (v3.x boards, firmware 0.5.x), host side: telemetry by `f` and
//! property reads, state and errors by polling, enable/disable through `requested_state`,
//! catalogue writes confirmed by reading the property back. A stop (`requested_state 1`) is
//! sent again until `current_state` reads IDLE.
//!
//! Replies carry no tag, so requests that expect a reply go out strictly one at a time and
//! each line is matched against the request in flight by its shape (a value, a pair of
//! values, or one of the firmware's error strings). Commands that are silent whenever they
//! are well formed (`v c p u sc`, and `w` of `requested_state`) go out at once, even with a
//! request in flight: they cannot put a line on the wire. A `w` that may fail goes through
//! the queue, followed by `r` of the same path: success is the value alone, failure is the
//! error line and then the value.
//!
//! The axis watchdog stops the motor if drivebench dies without a word (SIGKILL, a crash, a
//! frozen machine). On connect, once `config.enable_watchdog` and `config.watchdog_timeout`
//! have been read, a watchdog that is off is armed: a timeout outside
//! [`ARM_TIMEOUT_MIN_S`]…[`ARM_TIMEOUT_MAX_S`] (0 on a factory configuration) is first
//! replaced by [`ARM_TIMEOUT_S`], then the watchdog is fed (a watchdog never fed has expired)
//! and enabled, each write confirmed by reading it back. From then on `u` feeds it every
//! quarter of the timeout in every state, IDLE included, so no WATCHDOG_TIMER_EXPIRED latches
//! while the motor merely stands. A clean stop disables it again after the stop and puts back
//! a timeout it replaced, so that tools which do not feed it (odrivetool) find the drive as it
//! was; nothing is ever saved to flash. A watchdog the drive already had on is fed and left on.
//! Whatever the user sets through `watchdog_enable` (catalogue or console) wins: no arming
//! after it, no disarming on stop. A watchdog left armed by a drivebench that was killed reads
//! as the drive's own setting to the next connection, which then leaves it on; it lives in RAM
//! only, so a reboot (`sr`) restores the saved configuration.

use std::collections::VecDeque;

use crate::drive::{Command, ControlMode, DriveState, Event, ParamSpec, Sample, SignalSpec};
use crate::protocol::{Codec, CodecError, CodecOut, LogLimiter, RawIntent, format_decimal};

/// How long a request waits for its reply before the codec reports it and moves on.
const REPLY_TIMEOUT_S: f64 = 0.25;
/// After a timeout nothing is sent for this long and lines arriving meanwhile are dropped,
/// so that a late reply is not taken for the answer to the next request.
const RESYNC_S: f64 = 0.1;
/// After start, lines are dropped for this long: the tail of whatever was on the link before
/// the port opened, and the reply to the empty line that flushes the drive's input.
const SETTLE_S: f64 = 0.05;
/// A console line whose number of reply lines is unknown is complete after this much silence.
const CONSOLE_QUIET_S: f64 = 0.1;
/// Time the axis has to reach CLOSED_LOOP_CONTROL after an enable.
const ENABLE_CONFIRM_S: f64 = 0.5;
/// Time the axis has to read back IDLE after a stop before the stop is sent again.
const STOP_CONFIRM_S: f64 = 0.3;
/// While a stop stays unconfirmed with the same reading, it is reported again this often.
const STOP_REPORT_S: f64 = 2.0;
/// Consecutive reply timeouts after which the drive counts as not answering (about 1 s).
const LOST_AFTER_TIMEOUTS: u32 = 4;
/// Replies are at most 64 bytes; anything longer without a line end is garbage.
const MAX_REPLY_LEN: usize = 128;
/// Feeding period bounds; the period is a quarter of the drive's watchdog timeout.
const FEED_MIN_S: f64 = 0.01;
const FEED_MAX_S: f64 = 0.25;
/// Watchdog timeout drivebench arms with when the drive's own is unusable. 1 s is the VESC's
/// own timeout and about the time after which drivebench declares a silent drive lost.
const ARM_TIMEOUT_S: f64 = 1.0;
/// A timeout the drive already holds is kept within these bounds. Below 0.2 s a feed every
/// quarter of it, from a worker polled every 10 ms on a busy desktop, leaves too little room
/// for a scheduling stall and trips while nobody is at fault; above 2 s the motor runs on too
/// long after drivebench dies.
const ARM_TIMEOUT_MIN_S: f64 = 0.2;
const ARM_TIMEOUT_MAX_S: f64 = 2.0;
/// `AXIS_STATE_IDLE`.
const STATE_IDLE: i64 = 1;
/// `AXIS_STATE_CLOSED_LOOP_CONTROL`.
const STATE_CLOSED_LOOP: i64 = 8;
/// Requests per telemetry cycle: `f`, `Iq_measured`, one slow read.
const CYCLE_LEN: usize = 3;

const SIG_SPEED: u16 = 0;
const SIG_CURRENT: u16 = 1;
const SIG_POSITION: u16 = 2;
const SIG_VOLTAGE: u16 = 3;
const SIG_TEMPERATURE: u16 = 4;
const SIG_CURRENT_SETPOINT: u16 = 5;

/// How a property's value is written on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Float,
    Int,
    Bool,
}

/// One catalogue entry and the axis property behind it.
struct ParamDef {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    /// Path below `axisN.`.
    path: &'static str,
    /// Catalogue value = drive value × scale (turn/s → rpm is 60).
    scale: f64,
    min: f64,
    max: f64,
    kind: Kind,
    read_only: bool,
    help: &'static str,
}

const PARAMS: &[ParamDef] = &[
    ParamDef {
        key: "vel_gain",
        label: "Velocity gain",
        unit: "N·m/(turn/s)",
        path: "controller.config.vel_gain",
        scale: 1.0,
        min: 0.0,
        max: 10.0,
        kind: Kind::Float,
        read_only: false,
        help: "Proportional gain of the velocity loop: torque per turn/s of speed error.",
    },
    ParamDef {
        key: "vel_integrator_gain",
        label: "Velocity integrator gain",
        unit: "N·m/turn",
        path: "controller.config.vel_integrator_gain",
        scale: 1.0,
        min: 0.0,
        max: 100.0,
        kind: Kind::Float,
        read_only: false,
        help: "Integral gain of the velocity loop; removes the steady speed error under load.",
    },
    ParamDef {
        key: "pos_gain",
        label: "Position gain",
        unit: "(turn/s)/turn",
        path: "controller.config.pos_gain",
        scale: 1.0,
        min: 0.0,
        max: 1000.0,
        kind: Kind::Float,
        read_only: false,
        help: "Speed correction per turn of position error.",
    },
    ParamDef {
        key: "velocity_limit_rpm",
        label: "Velocity limit",
        unit: "rpm",
        path: "controller.config.vel_limit",
        scale: 60.0,
        min: 1.0,
        max: 60_000.0,
        kind: Kind::Float,
        read_only: false,
        help: "controller.config.vel_limit (turn/s on the drive): speed setpoints above it are \
               clamped, and with enable_overspeed_error the axis trips beyond vel_limit_tolerance × it.",
    },
    ParamDef {
        key: "vel_limit_tolerance",
        label: "Overspeed tolerance",
        unit: "×",
        path: "controller.config.vel_limit_tolerance",
        scale: 1.0,
        min: 1.0,
        max: 10.0,
        kind: Kind::Float,
        read_only: false,
        help: "The axis trips with OVERSPEED when the speed exceeds this multiple of the velocity limit.",
    },
    ParamDef {
        key: "current_limit_a",
        label: "Current limit",
        unit: "A",
        path: "motor.config.current_lim",
        scale: 1.0,
        min: 0.1,
        max: 60.0,
        kind: Kind::Float,
        read_only: false,
        help: "motor.config.current_lim: largest motor current in every mode.",
    },
    ParamDef {
        key: "torque_constant_nm_per_a",
        label: "Torque constant",
        unit: "N·m/A",
        path: "motor.config.torque_constant",
        scale: 1.0,
        min: 0.0001,
        max: 10.0,
        kind: Kind::Float,
        read_only: false,
        help: "Torque per ampere (8.27 / KV). The drive converts torque commands to current with it; \
               drivebench converts current setpoints to torque with it.",
    },
    ParamDef {
        key: "current_control_bandwidth_rad_s",
        label: "Current loop bandwidth",
        unit: "rad/s",
        path: "motor.config.current_control_bandwidth",
        scale: 1.0,
        min: 1.0,
        max: 20_000.0,
        kind: Kind::Float,
        read_only: false,
        help: "Bandwidth the current loop gains are computed for (from the measured R and L).",
    },
    ParamDef {
        key: "input_mode",
        label: "Input mode",
        unit: "",
        path: "controller.config.input_mode",
        scale: 1.0,
        min: 0.0,
        max: 8.0,
        kind: Kind::Int,
        read_only: false,
        help: "How setpoints are applied: 1 passthrough, 2 velocity ramp, 3 position filter, \
               5 trapezoidal trajectory, 6 torque ramp.",
    },
    ParamDef {
        key: "vel_ramp_rate_rpm_per_s",
        label: "Velocity ramp rate",
        unit: "rpm/s",
        path: "controller.config.vel_ramp_rate",
        scale: 60.0,
        min: 0.0,
        max: 600_000.0,
        kind: Kind::Float,
        read_only: false,
        help: "Acceleration of the velocity ramp (input mode 2).",
    },
    ParamDef {
        key: "torque_ramp_rate_nm_per_s",
        label: "Torque ramp rate",
        unit: "N·m/s",
        path: "controller.config.torque_ramp_rate",
        scale: 1.0,
        min: 0.0,
        max: 1000.0,
        kind: Kind::Float,
        read_only: false,
        help: "Slope of the torque ramp (input mode 6).",
    },
    ParamDef {
        key: "trap_vel_limit_rpm",
        label: "Trajectory speed",
        unit: "rpm",
        path: "trap_traj.config.vel_limit",
        scale: 60.0,
        min: 1.0,
        max: 60_000.0,
        kind: Kind::Float,
        read_only: false,
        help: "Cruise speed of trapezoidal moves (input mode 5).",
    },
    ParamDef {
        key: "trap_accel_limit_rpm_per_s",
        label: "Trajectory acceleration",
        unit: "rpm/s",
        path: "trap_traj.config.accel_limit",
        scale: 60.0,
        min: 1.0,
        max: 600_000.0,
        kind: Kind::Float,
        read_only: false,
        help: "Acceleration of trapezoidal moves.",
    },
    ParamDef {
        key: "trap_decel_limit_rpm_per_s",
        label: "Trajectory deceleration",
        unit: "rpm/s",
        path: "trap_traj.config.decel_limit",
        scale: 60.0,
        min: 1.0,
        max: 600_000.0,
        kind: Kind::Float,
        read_only: false,
        help: "Deceleration of trapezoidal moves.",
    },
    ParamDef {
        key: "watchdog_enable",
        label: "Watchdog enabled",
        unit: "",
        path: "config.enable_watchdog",
        scale: 1.0,
        min: 0.0,
        max: 1.0,
        kind: Kind::Bool,
        read_only: false,
        help: "1: the axis trips to IDLE (WATCHDOG_TIMER_EXPIRED) unless fed within the timeout. \
               drivebench feeds it with `u` while connected. If it is off, drivebench turns it on while \
               connected (so the motor stops should drivebench die) and off again on disconnect; a value set \
               here is kept instead.",
    },
    ParamDef {
        key: "watchdog_timeout_s",
        label: "Watchdog timeout",
        unit: "s",
        path: "config.watchdog_timeout",
        scale: 1.0,
        min: 0.0,
        max: 60.0,
        kind: Kind::Float,
        read_only: false,
        help: "Time without a feed after which the watchdog trips. A new value applies at the next feed.",
    },
    ParamDef {
        key: "pole_pairs",
        label: "Pole pairs",
        unit: "",
        path: "motor.config.pole_pairs",
        scale: 1.0,
        min: 1.0,
        max: 100.0,
        kind: Kind::Int,
        read_only: true,
        help: "Motor pole pairs.",
    },
    ParamDef {
        key: "phase_resistance_ohm",
        label: "Phase resistance",
        unit: "Ω",
        path: "motor.config.phase_resistance",
        scale: 1.0,
        min: 0.0,
        max: 100.0,
        kind: Kind::Float,
        read_only: true,
        help: "Phase resistance measured by the motor calibration.",
    },
    ParamDef {
        key: "phase_inductance_h",
        label: "Phase inductance",
        unit: "H",
        path: "motor.config.phase_inductance",
        scale: 1.0,
        min: 0.0,
        max: 1.0,
        kind: Kind::Float,
        read_only: true,
        help: "Phase inductance measured by the motor calibration.",
    },
    ParamDef {
        key: "encoder_cpr",
        label: "Encoder resolution",
        unit: "counts/rev",
        path: "encoder.config.cpr",
        scale: 1.0,
        min: 1.0,
        max: 1.0e9,
        kind: Kind::Int,
        read_only: true,
        help: "Encoder counts per revolution.",
    },
];

/// Writes through the console to these axis properties change how hard or fast the motor can
/// be driven, yet are not in the catalogue, so their values cannot be checked.
const GUARDED_AXIS_PATHS: &[&str] = &[
    "motor.config.torque_lim",
    "motor.config.calibration_current",
    "motor.config.current_lim_margin",
    "motor.config.requested_current_range",
    "controller.config.enable_vel_limit",
    "controller.config.enable_torque_mode_vel_limit",
    "controller.config.enable_overspeed_error",
];

/// The same for board-level properties.
const GUARDED_BOARD_PATHS: &[&str] = &[
    "config.dc_max_positive_current",
    "config.dc_max_negative_current",
    "config.max_regen_current",
    "config.dc_bus_overvoltage_trip_level",
    "config.dc_bus_undervoltage_trip_level",
    "config.brake_resistance",
    "config.enable_brake_resistor",
];

/// An error bitfield and the names of its bits (fw 0.5.x `odrive-interface.yaml`).
struct ErrorReg {
    /// Below `axisN.` unless `board`.
    path: &'static str,
    board: bool,
    bits: &'static [(u64, &'static str)],
}

const AXIS_ERROR_BITS: &[(u64, &str)] = &[
    (0x1, "INVALID_STATE"),
    (0x40, "MOTOR_FAILED"),
    (0x80, "SENSORLESS_ESTIMATOR_FAILED"),
    (0x100, "ENCODER_FAILED"),
    (0x200, "CONTROLLER_FAILED"),
    (0x800, "WATCHDOG_TIMER_EXPIRED"),
    (0x1000, "MIN_ENDSTOP_PRESSED"),
    (0x2000, "MAX_ENDSTOP_PRESSED"),
    (0x4000, "ESTOP_REQUESTED"),
    (0x20000, "HOMING_WITHOUT_ENDSTOP"),
    (0x40000, "OVER_TEMP"),
    (0x80000, "UNKNOWN_POSITION"),
];

const MOTOR_ERROR_BITS: &[(u64, &str)] = &[
    (0x1, "PHASE_RESISTANCE_OUT_OF_RANGE"),
    (0x2, "PHASE_INDUCTANCE_OUT_OF_RANGE"),
    (0x8, "DRV_FAULT"),
    (0x10, "CONTROL_DEADLINE_MISSED"),
    (0x80, "MODULATION_MAGNITUDE"),
    (0x400, "CURRENT_SENSE_SATURATION"),
    (0x1000, "CURRENT_LIMIT_VIOLATION"),
    (0x10000, "MODULATION_IS_NAN"),
    (0x20000, "MOTOR_THERMISTOR_OVER_TEMP"),
    (0x40000, "FET_THERMISTOR_OVER_TEMP"),
    (0x80000, "TIMER_UPDATE_MISSED"),
    (0x100000, "CURRENT_MEASUREMENT_UNAVAILABLE"),
    (0x200000, "CONTROLLER_FAILED"),
    (0x400000, "I_BUS_OUT_OF_RANGE"),
    (0x800000, "BRAKE_RESISTOR_DISARMED"),
    (0x1000000, "SYSTEM_LEVEL"),
    (0x2000000, "BAD_TIMING"),
    (0x4000000, "UNKNOWN_PHASE_ESTIMATE"),
    (0x8000000, "UNKNOWN_PHASE_VEL"),
    (0x10000000, "UNKNOWN_TORQUE"),
    (0x20000000, "UNKNOWN_CURRENT_COMMAND"),
    (0x40000000, "UNKNOWN_CURRENT_MEASUREMENT"),
    (0x80000000, "UNKNOWN_VBUS_VOLTAGE"),
    (0x100000000, "UNKNOWN_VOLTAGE_COMMAND"),
    (0x200000000, "UNKNOWN_GAINS"),
    (0x400000000, "CONTROLLER_INITIALIZING"),
    (0x800000000, "UNBALANCED_PHASES"),
];

const ENCODER_ERROR_BITS: &[(u64, &str)] = &[
    (0x1, "UNSTABLE_GAIN"),
    (0x2, "CPR_POLEPAIRS_MISMATCH"),
    (0x4, "NO_RESPONSE"),
    (0x8, "UNSUPPORTED_ENCODER_MODE"),
    (0x10, "ILLEGAL_HALL_STATE"),
    (0x20, "INDEX_NOT_FOUND_YET"),
    (0x40, "ABS_SPI_TIMEOUT"),
    (0x80, "ABS_SPI_COM_FAIL"),
    (0x100, "ABS_SPI_NOT_READY"),
    (0x200, "HALL_NOT_CALIBRATED_YET"),
];

const CONTROLLER_ERROR_BITS: &[(u64, &str)] = &[
    (0x1, "OVERSPEED"),
    (0x2, "INVALID_INPUT_MODE"),
    (0x4, "UNSTABLE_GAIN"),
    (0x8, "INVALID_MIRROR_AXIS"),
    (0x10, "INVALID_LOAD_ENCODER"),
    (0x20, "INVALID_ESTIMATE"),
    (0x40, "INVALID_CIRCULAR_RANGE"),
    (0x80, "SPINOUT_DETECTED"),
];

const BOARD_ERROR_BITS: &[(u64, &str)] = &[
    (0x1, "CONTROL_ITERATION_MISSED"),
    (0x2, "DC_BUS_UNDER_VOLTAGE"),
    (0x4, "DC_BUS_OVER_VOLTAGE"),
    (0x8, "DC_BUS_OVER_REGEN_CURRENT"),
    (0x10, "DC_BUS_OVER_CURRENT"),
    (0x20, "BRAKE_DEADTIME_VIOLATION"),
    (0x40, "BRAKE_DUTY_CYCLE_NAN"),
    (0x80, "INVALID_BRAKE_RESISTANCE"),
];

const ERROR_REGS: [ErrorReg; 5] = [
    ErrorReg { path: "error", board: false, bits: AXIS_ERROR_BITS },
    ErrorReg { path: "motor.error", board: false, bits: MOTOR_ERROR_BITS },
    ErrorReg { path: "encoder.error", board: false, bits: ENCODER_ERROR_BITS },
    ErrorReg { path: "controller.error", board: false, bits: CONTROLLER_ERROR_BITS },
    ErrorReg { path: "error", board: true, bits: BOARD_ERROR_BITS },
];

/// Board properties read once at start: the drive's identity (a reconnect that finds another
/// serial number has reached another board).
const INFO_PATHS: [&str; 7] = [
    "hw_version_major",
    "hw_version_minor",
    "hw_version_variant",
    "fw_version_major",
    "fw_version_minor",
    "fw_version_revision",
    "serial_number",
];

/// The slow reads, one per telemetry cycle in this order. State comes up three times so that
/// an enable or a trip shows within a few cycles.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slow {
    Vbus,
    Temperature,
    IqSetpoint,
    Error(usize),
    State,
    Config,
}

const SLOW: [Slow; 12] = [
    Slow::Vbus,
    Slow::Error(0),
    Slow::State,
    Slow::Temperature,
    Slow::Error(1),
    Slow::IqSetpoint,
    Slow::State,
    Slow::Error(2),
    Slow::Error(3),
    Slow::Config,
    Slow::State,
    Slow::Error(4),
];

/// Settings re-read in turn (one per pass over [`SLOW`]) so that changes made from the
/// console or by another host are noticed.
const CONFIG_PATHS: [&str; 6] = [
    "controller.config.control_mode",
    "config.enable_watchdog",
    "config.watchdog_timeout",
    "controller.config.vel_limit",
    "motor.config.current_lim",
    "motor.config.torque_constant",
];

/// What a read's value is for.
#[derive(Debug, Clone, PartialEq)]
enum Purpose {
    /// A telemetry signal.
    Sample(u16),
    /// Only the codec's own knowledge (state, errors, limits, mode).
    Cache,
    /// The setpoint of the mode just read, reported as [`Event::Mode`].
    ModeInput(ControlMode),
    /// A catalogue read, reported as [`Event::ParamValue`].
    Param(usize),
    /// Version information, logged once complete.
    Info(usize),
}

/// One exchange with the drive.
#[derive(Debug, Clone)]
enum Request {
    /// `r path`: one line, a value or an error.
    Read { path: String, purpose: Purpose, slow: Option<usize> },
    /// `f axis`: one line, position and velocity.
    Feedback,
    /// `w path value` then `r path`: the value alone, or an error line and then the value.
    /// `own`: the codec's own write (arming the watchdog), not the user's: its value is
    /// reported as read, not as a setting to keep in the project.
    Write { line: String, path: String, param: Option<usize>, console: bool, feed_first: bool, own: bool },
    /// A console line; `expected` reply lines if known, else it ends after a quiet period.
    Console { line: String, expected: Option<usize> },
    /// Not sent as such: when its turn comes the codec decides from what it then knows
    /// whether to arm the watchdog, and sends the write that does it.
    ArmWatchdog { timeout_written: bool },
}

#[derive(Debug, Clone)]
struct InFlight {
    id: u64,
    req: Request,
    sent_at: f64,
    last_line_at: f64,
    lines: usize,
    /// For a write: the drive's error reply to the `w`.
    write_error: Option<String>,
}

/// The shape of a reply line.
#[derive(Debug, Clone, PartialEq)]
enum Reply<'a> {
    /// `invalid property`, `not implemented`, `invalid command format`, `invalid motor N`.
    Error(&'a str),
    /// `unknown command`: never the answer to anything this codec sends itself.
    UnknownCommand,
    /// One token that reads as a number.
    Value(&'a str),
    /// Two numbers: the answer to `f`.
    Pair(f64, f64),
    Other,
}

fn classify(text: &str) -> Reply<'_> {
    if text == "unknown command" {
        return Reply::UnknownCommand;
    }
    if matches!(text, "invalid property" | "not implemented" | "invalid command format")
        || text.starts_with("invalid motor ")
    {
        return Reply::Error(text);
    }
    let mut tokens = text.split_ascii_whitespace();
    match (tokens.next(), tokens.next(), tokens.next()) {
        (Some(one), None, None) if one.parse::<f64>().is_ok() => Reply::Value(one),
        (Some(a), Some(b), None) => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(a), Ok(b)) => Reply::Pair(a, b),
            _ => Reply::Other,
        },
        _ => Reply::Other,
    }
}

/// XOR of the bytes, the protocol's checksum.
fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// Splits a checksummed reply `<text>*<decimal xor of text>` and verifies it.
fn verify_checksum(line: &[u8]) -> Option<&[u8]> {
    let star = line.iter().position(|&b| b == b'*')?;
    let digits = &line[star + 1..];
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    (value == u32::from(xor(&line[..star]))).then_some(&line[..star])
}

/// Assembles reply lines. A line ends at `\r` or `\n`; with checksums on, a line also ends as
/// soon as its `*NN` verifies, because firmware 0.5.2 sends checksummed replies without a line
/// end. A prefix of a decimal number never equals the number, so digits still to come cannot
/// be cut off.
#[derive(Debug, Clone, Default)]
struct ReplyAssembler {
    buf: Vec<u8>,
    discarding: bool,
    star: Option<usize>,
    digits_only: bool,
}

impl ReplyAssembler {
    fn clear(&mut self) {
        self.buf.clear();
        self.star = None;
        self.digits_only = false;
    }

    fn take(&mut self) -> Vec<u8> {
        let line = std::mem::take(&mut self.buf);
        self.clear();
        line
    }

    /// Adds one byte; returns a completed line.
    fn push(&mut self, byte: u8, checksum: bool) -> Option<Vec<u8>> {
        if byte == b'\r' || byte == b'\n' {
            let was_discarding = std::mem::replace(&mut self.discarding, false);
            let line = self.take();
            return (!was_discarding && !line.is_empty()).then_some(line);
        }
        if self.discarding {
            return None;
        }
        if self.buf.len() >= MAX_REPLY_LEN {
            self.clear();
            self.discarding = true;
            return None;
        }
        match self.star {
            None if byte == b'*' => {
                self.star = Some(self.buf.len());
                self.digits_only = true;
            }
            None => {}
            Some(_) => self.digits_only &= byte.is_ascii_digit(),
        }
        self.buf.push(byte);
        if checksum && self.digits_only && byte.is_ascii_digit() && verify_checksum(&self.buf).is_some() {
            return Some(self.take());
        }
        None
    }

    /// The unfinished line, for a reply that ended by a timeout instead of a line end.
    fn take_pending(&mut self) -> Option<Vec<u8>> {
        if self.discarding || self.buf.is_empty() {
            return None;
        }
        Some(self.take())
    }
}

/// What the codec has learnt from the drive.
#[derive(Debug, Clone, Default)]
struct Known {
    /// `motor.config.torque_constant`, N·m/A.
    kt: Option<f64>,
    /// `controller.config.vel_limit`, turn/s.
    vel_limit: Option<f64>,
    /// `motor.config.current_lim`, A.
    current_lim: Option<f64>,
    watchdog_enabled: Option<bool>,
    watchdog_timeout: Option<f64>,
    control_mode: Option<i64>,
    current_state: Option<i64>,
    errors: [Option<u64>; 5],
    /// From the last `f`, turns.
    position: Option<f64>,
    info: [Option<i64>; 7],
}

/// drivebench's part in the axis watchdog.
#[derive(Debug, Clone, Default)]
struct WatchdogRole {
    /// The user set `watchdog_enable` (catalogue or console): drivebench leaves it alone.
    user_choice: bool,
    /// The user set `watchdog_timeout_s`: armed with it if above 0, never replaced.
    user_timeout: bool,
    /// drivebench sent `config.enable_watchdog 1` itself: a clean stop sends 0.
    armed: bool,
    /// That write is out and not read back yet: the watchdog is fed meanwhile.
    arming: bool,
    /// The drive's own timeout, replaced to arm; put back by a clean stop.
    replaced_timeout_s: Option<f64>,
}

/// A stop (`requested_state 1`) waiting for `current_state` to read back IDLE.
#[derive(Debug, Clone)]
struct StopCheck {
    /// Requests with a larger id were sent after the stop.
    after_id: u64,
    /// When the stop is sent again unless confirmed.
    deadline: f64,
    /// `current_state` as read since the stop (`None`: no reading yet).
    reading: Option<i64>,
    /// The last report: when, and the reading it named.
    reported: Option<(f64, Option<i64>)>,
}

/// Host side of the ODrive ASCII protocol for one axis.
#[derive(Debug, Clone)]
pub struct ODriveCodec {
    axis: u8,
    checksum: bool,
    /// `axisN.`
    prefix: String,
    /// Full paths of [`ERROR_REGS`].
    error_paths: [String; 5],
    rx: ReplyAssembler,
    started: bool,
    /// Nothing is sent before this time (settling after start, resync after a timeout).
    hold_until: f64,
    queue: VecDeque<Request>,
    in_flight: Option<InFlight>,
    next_id: u64,
    cycle_pos: usize,
    slow_pos: usize,
    config_pos: usize,
    slow_disabled: [bool; SLOW.len()],
    known: Known,
    /// The mode setpoints are accepted in; set on `SetMode`, confirmed by read-back.
    mode: Option<ControlMode>,
    mode_report_pending: bool,
    last_state: Option<DriveState>,
    enable_deadline: Option<f64>,
    stop: Option<StopCheck>,
    /// Id of the request whose reply is being handled.
    reply_id: u64,
    next_feed_at: f64,
    watchdog: WatchdogRole,
    timeouts_in_row: u32,
    lost: bool,
    log: LogLimiter,
}

impl ODriveCodec {
    /// A codec for `axis` (0 or 1); `checksum` adds ` *NN` to every line and requires it on
    /// every reply.
    pub fn new(axis: u8, checksum: bool) -> Self {
        ODriveCodec {
            axis,
            checksum,
            prefix: format!("axis{axis}."),
            error_paths: ERROR_REGS
                .map(|reg| if reg.board { reg.path.to_owned() } else { format!("axis{axis}.{}", reg.path) }),
            rx: ReplyAssembler::default(),
            started: false,
            hold_until: 0.0,
            queue: VecDeque::new(),
            in_flight: None,
            next_id: 0,
            cycle_pos: CYCLE_LEN,
            slow_pos: 0,
            config_pos: 0,
            slow_disabled: [false; SLOW.len()],
            known: Known::default(),
            mode: None,
            mode_report_pending: false,
            last_state: None,
            enable_deadline: None,
            stop: None,
            reply_id: 0,
            next_feed_at: 0.0,
            watchdog: WatchdogRole::default(),
            timeouts_in_row: 0,
            lost: false,
            log: LogLimiter::default(),
        }
    }

    fn axis_path(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    fn error_path(&self, index: usize) -> String {
        self.error_paths[index].clone()
    }

    /// A command line as sent: with ` *NN` when checksums are on, ended by a single `\n`
    /// (a `\r\n` would make 0.5.2+ firmware answer the empty line with `unknown command`).
    fn frame(&self, text: &str) -> Vec<u8> {
        let mut line = text.as_bytes().to_vec();
        if self.checksum {
            line.push(b' ');
            let sum = xor(&line);
            line.push(b'*');
            line.extend_from_slice(sum.to_string().as_bytes());
        }
        line.push(b'\n');
        line
    }

    fn read(&self, rel: &str, purpose: Purpose) -> Request {
        Request::Read { path: self.axis_path(rel), purpose, slow: None }
    }

    fn cache_read(&self, path: String) -> Request {
        Request::Read { path, purpose: Purpose::Cache, slow: None }
    }

    fn queue_state_reads(&mut self) {
        for index in 0..ERROR_REGS.len() {
            let request = self.cache_read(self.error_path(index));
            self.queue.push_back(request);
        }
        let request = self.read("current_state", Purpose::Cache);
        self.queue.push_back(request);
    }

    fn queue_mode_read(&mut self) {
        self.mode_report_pending = true;
        let request = self.read("controller.config.control_mode", Purpose::Cache);
        self.queue.push_back(request);
    }

    /// Whether the watchdog may be running: not reported disabled, or being armed.
    fn feeding(&self) -> bool {
        self.known.watchdog_enabled != Some(false) || self.watchdog.arming
    }

    /// Feeds the watchdog now unless the drive reported it disabled.
    fn feed_now(&mut self, now_s: f64, out: &mut CodecOut) {
        if self.feeding() {
            out.tx.extend(self.frame(&format!("u {}", self.axis)));
            self.next_feed_at = now_s + self.feed_period();
        }
    }

    /// A write of the codec's own, confirmed by reading it back like the user's.
    fn own_write(&self, rel: &str, value: &str, feed_first: bool) -> Request {
        let path = self.axis_path(rel);
        Request::Write {
            line: format!("w {path} {value}"),
            path,
            param: None,
            console: false,
            feed_first,
            own: true,
        }
    }

    /// The next step of arming the watchdog, decided from what is known when its turn comes
    /// (the drive's settings were read just before it): the write to send, if any.
    fn arm_watchdog(&mut self, timeout_written: bool, out: &mut CodecOut) -> Option<Request> {
        if self.watchdog.user_choice {
            return None;
        }
        // A timeout the user asked for and that is still queued is the one the watchdog will
        // run with: decide after it.
        let timeout_path = self.axis_path("config.watchdog_timeout");
        if let Some(at) = self
            .queue
            .iter()
            .rposition(|r| matches!(r, Request::Write { path, own: false, .. } if *path == timeout_path))
        {
            self.queue.insert(at + 1, Request::ArmWatchdog { timeout_written });
            return None;
        }
        let timeout = self.known.watchdog_timeout;
        let shown = timeout.map_or("an unknown".to_owned(), |t| format!("a {} s", seconds(t)));
        match self.known.watchdog_enabled {
            Some(true) => {
                out.events.push(Event::Log(format!(
                    "watchdog enabled on the drive with {shown} timeout; drivebench feeds it while connected \
                     and leaves it enabled"
                )));
                None
            }
            None => {
                out.events.push(Event::Log(format!(
                    "watchdog not armed: {}config.enable_watchdog did not read (firmware before 0.5 has none); \
                     drivebench feeds it anyway",
                    self.prefix
                )));
                None
            }
            Some(false) if self.watchdog.user_timeout && !timeout.is_some_and(|t| t > 0.0) => {
                out.events.push(Event::Log(format!(
                    "watchdog not armed: watchdog_timeout_s was set by hand to {shown} timeout, which would trip \
                     at once"
                )));
                None
            }
            Some(false) => match timeout
                .filter(|t| self.watchdog.user_timeout || (ARM_TIMEOUT_MIN_S..=ARM_TIMEOUT_MAX_S).contains(t))
            {
                Some(_) => {
                    // The counter of a watchdog never fed is 0: feed first or it trips at once.
                    self.watchdog.armed = true;
                    self.watchdog.arming = true;
                    Some(self.own_write("config.enable_watchdog", "1", true))
                }
                None if !timeout_written => {
                    self.watchdog.replaced_timeout_s = timeout;
                    self.queue.push_front(Request::ArmWatchdog { timeout_written: true });
                    Some(self.own_write("config.watchdog_timeout", &number(ARM_TIMEOUT_S), false))
                }
                None => {
                    out.events.push(Event::Log(format!(
                        "watchdog not armed: {}config.watchdog_timeout holds {shown} timeout after writing {} s",
                        self.prefix,
                        seconds(ARM_TIMEOUT_S)
                    )));
                    None
                }
            },
        }
    }

    fn feed_period(&self) -> f64 {
        match self.known.watchdog_timeout {
            Some(timeout) if timeout > 0.0 => (timeout / 4.0).clamp(FEED_MIN_S, FEED_MAX_S),
            _ => 0.1,
        }
    }

    fn enqueue_param_read(&mut self, index: usize) {
        let request = self.read(PARAMS[index].path, Purpose::Param(index));
        self.queue.push_back(request);
    }

    /// Sends the next request if none is in flight: queued ones first, then the telemetry
    /// cycle started by the last poll.
    fn pump(&mut self, now_s: f64, out: &mut CodecOut) {
        if !self.started || self.in_flight.is_some() || now_s < self.hold_until {
            return;
        }
        let request = loop {
            match self.queue.pop_front() {
                Some(Request::ArmWatchdog { timeout_written }) => {
                    if let Some(request) = self.arm_watchdog(timeout_written, out) {
                        break request;
                    }
                }
                Some(request) => break request,
                None => match self.next_cycle_request() {
                    Some(request) => break request,
                    None => return,
                },
            }
        };
        match &request {
            Request::Read { path, .. } => out.tx.extend(self.frame(&format!("r {path}"))),
            Request::Feedback => out.tx.extend(self.frame(&format!("f {}", self.axis))),
            Request::Write { line, path, feed_first, .. } => {
                if *feed_first {
                    out.tx.extend(self.frame(&format!("u {}", self.axis)));
                }
                out.tx.extend(self.frame(line));
                out.tx.extend(self.frame(&format!("r {path}")));
            }
            Request::Console { line, .. } => {
                if self.checksum && !line.contains('*') {
                    out.tx.extend(self.frame(line));
                } else {
                    out.tx.extend_from_slice(line.as_bytes());
                    out.tx.push(b'\n');
                }
            }
            // Resolved into a write above.
            Request::ArmWatchdog { .. } => return,
        }
        self.next_id += 1;
        self.in_flight = Some(InFlight {
            id: self.next_id,
            req: request,
            sent_at: now_s,
            last_line_at: now_s,
            lines: 0,
            write_error: None,
        });
    }

    fn next_cycle_request(&mut self) -> Option<Request> {
        while self.cycle_pos < CYCLE_LEN {
            let pos = self.cycle_pos;
            self.cycle_pos += 1;
            match pos {
                0 => return Some(Request::Feedback),
                1 => {
                    return Some(
                        self.read("motor.current_control.Iq_measured", Purpose::Sample(SIG_CURRENT)),
                    );
                }
                _ => {
                    if let Some(request) = self.next_slow_request() {
                        return Some(request);
                    }
                }
            }
        }
        None
    }

    fn next_slow_request(&mut self) -> Option<Request> {
        for _ in 0..SLOW.len() {
            let index = self.slow_pos;
            self.slow_pos = (index + 1) % SLOW.len();
            if self.slow_disabled[index] {
                continue;
            }
            let (path, purpose) = match SLOW[index] {
                Slow::Vbus => ("vbus_voltage".to_owned(), Purpose::Sample(SIG_VOLTAGE)),
                Slow::Temperature => {
                    (self.axis_path("motor.fet_thermistor.temperature"), Purpose::Sample(SIG_TEMPERATURE))
                }
                Slow::IqSetpoint => (
                    self.axis_path("motor.current_control.Iq_setpoint"),
                    Purpose::Sample(SIG_CURRENT_SETPOINT),
                ),
                Slow::Error(reg) => (self.error_path(reg), Purpose::Cache),
                Slow::State => (self.axis_path("current_state"), Purpose::Cache),
                Slow::Config => {
                    let rel = CONFIG_PATHS[self.config_pos % CONFIG_PATHS.len()];
                    self.config_pos = self.config_pos.wrapping_add(1);
                    (self.axis_path(rel), Purpose::Cache)
                }
            };
            return Some(Request::Read { path, purpose, slow: Some(index) });
        }
        None
    }

    /// One reply line (checksum already removed when checksums are on).
    fn handle_line(&mut self, line: &[u8], now_s: f64, out: &mut CodecOut) {
        let text = if self.checksum {
            match verify_checksum(line) {
                Some(text) => text,
                None => {
                    if self.started && now_s >= self.hold_until {
                        let shown = String::from_utf8_lossy(line).into_owned();
                        self.log.log(
                            now_s,
                            format!("dropped a reply with a missing or bad checksum: `{shown}`"),
                            out,
                        );
                    }
                    return;
                }
            }
        } else {
            line
        };
        let text = String::from_utf8_lossy(text);
        let text = text.trim();
        if text.is_empty() || !self.started {
            return;
        }
        let Some(mut in_flight) = self.in_flight.take() else {
            // Settling after start or resyncing after a timeout: whatever arrives is stale.
            if now_s >= self.hold_until {
                self.stray(text, now_s, out);
            }
            return;
        };
        let reply = classify(text);
        self.reply_id = in_flight.id;
        match self.apply_reply(&mut in_flight, &reply, text, now_s, out) {
            Outcome::Done => {
                self.answered(now_s, out);
                self.pump(now_s, out);
            }
            Outcome::Wait => {
                in_flight.last_line_at = now_s;
                in_flight.lines += 1;
                self.in_flight = Some(in_flight);
                self.answered(now_s, out);
            }
            Outcome::Stray => {
                self.in_flight = Some(in_flight);
                self.stray(text, now_s, out);
            }
        }
    }

    fn stray(&mut self, text: &str, now_s: f64, out: &mut CodecOut) {
        let message = if text == "unknown command" {
            "ignored a stray `unknown command` (an empty line or an unknown command reached the drive)"
                .to_owned()
        } else {
            format!("unexpected line from the drive: `{text}`")
        };
        self.log.log(now_s, message, out);
    }

    /// A line answered the request in flight: the drive is there.
    fn answered(&mut self, now_s: f64, out: &mut CodecOut) {
        self.timeouts_in_row = 0;
        if self.lost {
            self.lost = false;
            self.last_state = None;
            self.log.log(now_s, "the drive answers again".to_owned(), out);
            self.update_state(out);
        }
    }

    fn apply_reply(
        &mut self,
        in_flight: &mut InFlight,
        reply: &Reply<'_>,
        text: &str,
        now_s: f64,
        out: &mut CodecOut,
    ) -> Outcome {
        match &in_flight.req {
            Request::Read { path, purpose, slow } => match reply {
                Reply::Value(token) => {
                    let (path, purpose) = (path.clone(), purpose.clone());
                    self.read_done(&path, &purpose, token, now_s, out);
                    Outcome::Done
                }
                Reply::Error(error) => {
                    let (path, purpose, slow) = (path.clone(), purpose.clone(), *slow);
                    self.read_failed(&path, &purpose, slow, error, now_s, out);
                    Outcome::Done
                }
                _ => Outcome::Stray,
            },
            Request::Feedback => match reply {
                Reply::Pair(position, velocity) => {
                    self.feedback(*position, *velocity, now_s, out);
                    Outcome::Done
                }
                Reply::Error(error) => {
                    self.log.log(
                        now_s,
                        format!("`f {}` failed: the drive replied `{error}`", self.axis),
                        out,
                    );
                    Outcome::Done
                }
                _ => Outcome::Stray,
            },
            Request::Write { line, path, param, console, own, .. } => match reply {
                Reply::Error(error) if in_flight.write_error.is_none() => {
                    in_flight.write_error = Some((*error).to_owned());
                    Outcome::Wait
                }
                Reply::Value(_) | Reply::Error(_) => {
                    let (line, path) = (line.clone(), path.clone());
                    let origin = match (*own, *console) {
                        (true, _) => WriteOrigin::Own,
                        (false, true) => WriteOrigin::Console,
                        (false, false) => WriteOrigin::Param(*param),
                    };
                    let write_error = in_flight.write_error.take();
                    self.write_done(&line, &path, origin, write_error, reply, now_s, out);
                    Outcome::Done
                }
                _ => Outcome::Stray,
            },
            Request::Console { expected, .. } => {
                out.events.push(Event::Log(format!("< {text}")));
                match expected {
                    Some(count) if in_flight.lines + 1 >= *count => Outcome::Done,
                    _ => Outcome::Wait,
                }
            }
            // Never in flight: resolved into a write when sent.
            Request::ArmWatchdog { .. } => Outcome::Stray,
        }
    }

    fn feedback(&mut self, position: f64, velocity: f64, now_s: f64, out: &mut CodecOut) {
        if position.is_finite() {
            self.known.position = Some(position);
            out.samples.push(Sample { t_s: now_s, signal: SIG_POSITION, value: position });
        }
        let speed_rpm = velocity * 60.0;
        if speed_rpm.is_finite() {
            out.samples.push(Sample { t_s: now_s, signal: SIG_SPEED, value: speed_rpm });
        }
    }

    fn read_done(&mut self, path: &str, purpose: &Purpose, token: &str, now_s: f64, out: &mut CodecOut) {
        let value = token.parse::<f64>().unwrap_or(f64::NAN);
        self.note(path, token, value, out);
        match purpose {
            Purpose::Sample(signal) => {
                if value.is_finite() {
                    out.samples.push(Sample { t_s: now_s, signal: *signal, value });
                }
            }
            Purpose::Cache => {}
            Purpose::ModeInput(mode) => self.report_mode(*mode, value, now_s, out),
            Purpose::Param(index) => {
                let def = &PARAMS[*index];
                let value = value * def.scale;
                if value.is_finite() {
                    out.events.push(Event::ParamValue { key: def.key.to_owned(), value });
                } else {
                    out.events.push(Event::Refused(format!(
                        "{} ({path}) reads `{token}`, which is not a finite number",
                        def.key
                    )));
                }
            }
            Purpose::Info(index) => {
                if let Some(slot) = self.known.info.get_mut(*index) {
                    *slot = value.is_finite().then_some(value as i64);
                }
                if *index == INFO_PATHS.len() - 1 {
                    self.log_info(out);
                }
            }
        }
    }

    fn log_info(&mut self, out: &mut CodecOut) {
        let part = |i: usize| self.known.info[i].map_or("?".to_owned(), |v| v.to_string());
        let text = format!(
            "ODrive hardware {}.{}-{}V, firmware {}.{}.{}, serial number {}",
            part(0),
            part(1),
            part(2),
            part(3),
            part(4),
            part(5),
            part(6)
        );
        // Only a whole identity can be compared after a reconnect: a part that did not come
        // is logged, and the drive is not identified this time.
        if self.known.info.iter().all(Option::is_some) {
            out.events.push(Event::Identity(text));
        } else {
            out.events.push(Event::Log(text));
        }
        if let (Some(major), Some(minor)) = (self.known.info[3], self.known.info[4])
            && (major, minor) != (0, 5)
        {
            out.events.push(Event::Log(format!(
                "this codec uses the property paths of firmware 0.5.x; firmware {major}.{minor} may name them \
                 differently"
            )));
        }
    }

    fn read_failed(
        &mut self,
        path: &str,
        purpose: &Purpose,
        slow: Option<usize>,
        error: &str,
        now_s: f64,
        out: &mut CodecOut,
    ) {
        match purpose {
            Purpose::Param(index) => out.events.push(Event::Refused(format!(
                "reading {} ({path}) failed: the drive replied `{error}`",
                PARAMS[*index].key
            ))),
            _ => {
                if let Some(index) = slow
                    && error == "invalid property"
                    && matches!(SLOW[index], Slow::Temperature | Slow::IqSetpoint)
                {
                    self.slow_disabled[index] = true;
                    out.events
                        .push(Event::Log(format!("this firmware has no `{path}`; it is no longer read")));
                } else {
                    self.log.log(now_s, format!("`r {path}` failed: the drive replied `{error}`"), out);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_done(
        &mut self,
        line: &str,
        path: &str,
        origin: WriteOrigin,
        write_error: Option<String>,
        readback: &Reply<'_>,
        now_s: f64,
        out: &mut CodecOut,
    ) {
        let readback_value = match readback {
            Reply::Value(token) => {
                let value = token.parse::<f64>().unwrap_or(f64::NAN);
                self.note(path, token, value, out);
                Some((token.to_string(), value))
            }
            _ => None,
        };
        let (param, console) = match origin {
            WriteOrigin::Own => {
                self.own_write_done(line, path, write_error.as_deref(), readback, now_s, out);
                (None, false)
            }
            WriteOrigin::Console => (self.param_for_path(path), true),
            WriteOrigin::Param(param) => (param.or_else(|| self.param_for_path(path)), false),
        };
        if origin != WriteOrigin::Own && write_error.is_none() && readback_value.is_some() {
            self.user_watchdog_write_done(path, readback_value.as_ref().map(|(_, v)| *v), out);
        }
        if console {
            if let Some(error) = &write_error {
                out.events.push(Event::Log(format!("< {error}")));
            }
            if let Some((token, _)) = &readback_value {
                out.events.push(Event::Log(format!("< {path} = {token}")));
            }
        }
        match (&write_error, &readback_value, param) {
            (None, Some((_, value)), Some(index)) => {
                let def = &PARAMS[index];
                let value = value * def.scale;
                if value.is_finite() {
                    out.events.push(Event::ParamWritten { key: def.key.to_owned(), value });
                }
            }
            (Some(error), _, Some(index)) => {
                let def = &PARAMS[index];
                out.events.push(Event::Refused(format!(
                    "writing {} failed: the drive replied `{error}` to `{line}`",
                    def.key
                )));
                if let Some((_, value)) = readback_value
                    && (value * def.scale).is_finite()
                {
                    out.events.push(Event::ParamValue { key: def.key.to_owned(), value: value * def.scale });
                }
            }
            (None, None, Some(index)) => {
                let error = match readback {
                    Reply::Error(error) => *error,
                    _ => "no value",
                };
                out.events.push(Event::Refused(format!(
                    "writing {}: reading it back failed (`{error}`), so the value it holds is unknown",
                    PARAMS[index].key
                )));
            }
            (Some(error), _, None) if !console && origin != WriteOrigin::Own => {
                self.log.log(now_s, format!("`{line}` failed: the drive replied `{error}`"), out);
            }
            _ => {}
        }
        if write_error.is_none() && readback_value.is_some() {
            match path.strip_prefix(&self.prefix) {
                Some("config.watchdog_timeout") | Some("config.enable_watchdog") => self.feed_now(now_s, out),
                _ => {}
            }
        }
    }

    /// The outcome of one of the codec's own writes (arming the watchdog).
    fn own_write_done(
        &mut self,
        line: &str,
        path: &str,
        write_error: Option<&str>,
        readback: &Reply<'_>,
        now_s: f64,
        out: &mut CodecOut,
    ) {
        let value = match readback {
            Reply::Value(token) => token.parse::<f64>().ok().filter(|v| v.is_finite()),
            _ => None,
        };
        if let (Some(index), Some(value)) = (self.param_for_path(path), value) {
            let def = &PARAMS[index];
            out.events.push(Event::ParamValue { key: def.key.to_owned(), value: value * def.scale });
        }
        let failure = match (write_error, readback) {
            (Some(error), _) => Some(format!("the drive replied `{error}` to `{line}`")),
            (None, Reply::Error(error)) => Some(format!("reading it back after `{line}` failed (`{error}`)")),
            (None, _) if value.is_none() => Some(format!("no value read back after `{line}`")),
            _ => None,
        };
        match path.strip_prefix(&self.prefix) {
            Some("config.enable_watchdog") => {
                self.watchdog.arming = false;
                match (failure, value) {
                    (None, Some(enabled)) if enabled != 0.0 => {
                        let timeout = self.known.watchdog_timeout.map_or("?".to_owned(), seconds);
                        let replaced = self
                            .watchdog
                            .replaced_timeout_s
                            .map_or(String::new(), |t| format!(" (the drive had {} s)", seconds(t)));
                        out.events.push(Event::Log(format!(
                            "watchdog armed: {timeout} s{replaced}; drivebench feeds it while connected and \
                             disables it again on disconnect"
                        )));
                    }
                    (failure, _) => {
                        let why = failure.unwrap_or_else(|| format!("{path} reads back 0"));
                        self.log.log(now_s, format!("watchdog not armed: {why}"), out);
                    }
                }
            }
            _ => {
                if let Some(why) = failure {
                    self.log.log(now_s, format!("arming the watchdog: {why}"), out);
                }
            }
        }
    }

    /// A confirmed write of the user's to the watchdog settings.
    fn user_watchdog_write_done(&mut self, path: &str, value: Option<f64>, out: &mut CodecOut) {
        if path.strip_prefix(&self.prefix) == Some("config.enable_watchdog")
            && let Some(value) = value
        {
            let state = if value != 0.0 { "enabled" } else { "disabled" };
            out.events.push(Event::Log(format!(
                "watchdog {state} by hand; drivebench {}leaves it so on disconnect",
                if value != 0.0 { "feeds it while connected and " } else { "" }
            )));
        }
    }

    fn param_for_path(&self, path: &str) -> Option<usize> {
        let rel = path.strip_prefix(&self.prefix)?;
        PARAMS.iter().position(|def| def.path == rel)
    }

    /// Updates what the codec knows from any value read from `path`.
    fn note(&mut self, path: &str, token: &str, value: f64, out: &mut CodecOut) {
        let as_u64 = || {
            token.parse::<u64>().ok().or_else(|| (value.is_finite() && value >= 0.0).then_some(value as u64))
        };
        if let Some(index) = self.error_paths.iter().position(|p| p == path) {
            if let Some(bits) = as_u64() {
                self.known.errors[index] = Some(bits);
                self.update_state(out);
            }
            return;
        }
        let Some(rel) = path.strip_prefix(&self.prefix) else {
            return;
        };
        let finite = value.is_finite().then_some(value);
        match rel {
            "motor.config.torque_constant" => self.known.kt = finite.filter(|kt| *kt > 0.0),
            "controller.config.vel_limit" => self.known.vel_limit = finite,
            "motor.config.current_lim" => self.known.current_lim = finite,
            "config.enable_watchdog" => self.known.watchdog_enabled = finite.map(|v| v != 0.0),
            "config.watchdog_timeout" => self.known.watchdog_timeout = finite,
            "controller.config.control_mode" => {
                if let Some(code) = finite {
                    self.on_control_mode(code as i64, out);
                }
            }
            "current_state" => {
                if let Some(state) = finite {
                    let state = state as i64;
                    self.known.current_state = Some(state);
                    if state == STATE_CLOSED_LOOP {
                        self.enable_deadline = None;
                    }
                    if let Some(stop) = &mut self.stop
                        && self.reply_id > stop.after_id
                    {
                        stop.reading = Some(state);
                        if state == STATE_IDLE {
                            self.stop = None;
                        }
                    }
                    self.update_state(out);
                }
            }
            _ => {}
        }
    }

    fn on_control_mode(&mut self, code: i64, out: &mut CodecOut) {
        let changed = self.known.control_mode != Some(code);
        self.known.control_mode = Some(code);
        if !(changed || self.mode_report_pending) {
            return;
        }
        let mode = mode_from_code(code);
        self.mode = mode;
        match mode {
            Some(mode) => {
                let rel = input_path(mode);
                let request = self.read(rel, Purpose::ModeInput(mode));
                self.queue.push_front(request);
            }
            None => {
                self.mode_report_pending = false;
                out.events.push(Event::Log(format!(
                    "{}controller.config.control_mode is {code} (voltage control); drivebench commands \
                     torque, velocity or position: choose a mode",
                    self.prefix
                )));
            }
        }
    }

    fn report_mode(&mut self, mode: ControlMode, value: f64, now_s: f64, out: &mut CodecOut) {
        if self.mode != Some(mode) || !value.is_finite() {
            return;
        }
        let setpoint = match mode {
            ControlMode::Speed => value * 60.0,
            ControlMode::Position => value,
            ControlMode::Current => match self.known.kt {
                Some(kt) => value / kt,
                None if value == 0.0 => 0.0,
                None => {
                    self.log.log(
                        now_s,
                        "the torque setpoint cannot be shown in A: torque_constant is not known".to_owned(),
                        out,
                    );
                    return;
                }
            },
        };
        if !setpoint.is_finite() {
            return;
        }
        self.mode_report_pending = false;
        out.events.push(Event::Mode { mode, setpoint });
    }

    fn fault_text(&self) -> Option<String> {
        let mut parts = Vec::new();
        for (index, reg) in ERROR_REGS.iter().enumerate() {
            let bits = self.known.errors[index].unwrap_or(0);
            if bits == 0 {
                continue;
            }
            let mut names: Vec<String> = Vec::new();
            let mut rest = bits;
            for (bit, name) in reg.bits {
                if bits & bit != 0 {
                    names.push((*name).to_owned());
                    rest &= !bit;
                }
            }
            if rest != 0 {
                names.push(format!("unknown bits 0x{rest:X}"));
            }
            let path = self.error_path(index);
            // The firmware cuts property values to 9 characters.
            let caveat = if bits >= 100_000_000 { ", possibly cut to 9 digits" } else { "" };
            parts.push(format!("{} ({path} = 0x{bits:X}{caveat})", names.join(" | ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Reports the state once the state and every error register are known, and on change.
    fn update_state(&mut self, out: &mut CodecOut) {
        if self.lost || self.known.errors.iter().any(Option::is_none) {
            return;
        }
        let Some(current_state) = self.known.current_state else {
            return;
        };
        let state = match self.fault_text() {
            Some(text) => DriveState::Fault(text),
            None if current_state == STATE_CLOSED_LOOP => DriveState::Enabled,
            None => DriveState::Idle,
        };
        if self.last_state.as_ref() != Some(&state) {
            self.last_state = Some(state.clone());
            out.events.push(Event::State(state));
        }
    }

    fn check_timeout(&mut self, now_s: f64, out: &mut CodecOut) {
        let Some(in_flight) = &self.in_flight else {
            return;
        };
        let id = in_flight.id;
        if let Request::Console { line, expected } = &in_flight.req {
            let complete = match expected {
                None => now_s - in_flight.last_line_at >= CONSOLE_QUIET_S,
                Some(_) => now_s - in_flight.sent_at >= REPLY_TIMEOUT_S,
            };
            if complete {
                if expected.is_some() && in_flight.lines == 0 {
                    out.events.push(Event::Log(format!("no reply to `{line}`")));
                }
                self.in_flight = None;
                self.pump(now_s, out);
            }
            return;
        }
        if now_s - in_flight.sent_at < REPLY_TIMEOUT_S {
            return;
        }
        // Firmware 0.5.2 ends checksummed replies by nothing at all: take what has arrived.
        if let Some(line) = self.rx.take_pending() {
            self.handle_line(&line, now_s, out);
            if self.in_flight.as_ref().map(|f| f.id) != Some(id) {
                return;
            }
        }
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        let what = match &in_flight.req {
            Request::Read { path, .. } => format!("`r {path}`"),
            Request::Feedback => format!("`f {}`", self.axis),
            Request::Write { line, .. } => format!("`{line}`"),
            Request::Console { line, .. } => format!("`{line}`"),
            Request::ArmWatchdog { .. } => "arming the watchdog".to_owned(),
        };
        match &in_flight.req {
            Request::Read { purpose: Purpose::Param(index), .. } => out.events.push(Event::Refused(format!(
                "reading {}: no reply from the drive within {REPLY_TIMEOUT_S} s",
                PARAMS[*index].key
            ))),
            Request::Write { param: Some(index), .. } => {
                let detail = match &in_flight.write_error {
                    Some(error) => format!("the drive replied `{error}`, then nothing"),
                    None => "no reply to the read-back".to_owned(),
                };
                out.events.push(Event::Refused(format!(
                    "writing {}: {detail} within {REPLY_TIMEOUT_S} s; the value it holds is unknown",
                    PARAMS[*index].key
                )));
            }
            _ => self.log.log(now_s, format!("no reply to {what} within {REPLY_TIMEOUT_S} s"), out),
        }
        self.hold_until = now_s + RESYNC_S;
        self.timeouts_in_row += 1;
        if self.timeouts_in_row >= LOST_AFTER_TIMEOUTS && !self.lost {
            self.lost = true;
            let state = DriveState::Fault(format!(
                "no reply from the drive for about {:.0} s: check the port, the baud rate (115200 by \
                 default) and that the port runs the ASCII protocol",
                f64::from(LOST_AFTER_TIMEOUTS) * (REPLY_TIMEOUT_S + RESYNC_S)
            ));
            self.last_state = Some(state.clone());
            out.events.push(Event::State(state));
        }
    }

    /// Sends `requested_state 1` and reads `current_state` first thing; [`Self::check_stop`]
    /// sends it again until IDLE reads back.
    fn send_stop(&mut self, now_s: f64, out: &mut CodecOut) {
        out.tx.extend(self.frame(&format!("w axis{}.requested_state 1", self.axis)));
        self.enable_deadline = None;
        let after_id = self.next_id;
        let deadline = now_s + STOP_CONFIRM_S;
        match &mut self.stop {
            Some(stop) => stop.deadline = deadline,
            None => self.stop = Some(StopCheck { after_id, deadline, reading: None, reported: None }),
        }
        let path = self.axis_path("current_state");
        self.queue
            .retain(|request| !matches!(request, Request::Read { path: p, slow: None, .. } if *p == path));
        let request = self.read("current_state", Purpose::Cache);
        self.queue.push_front(request);
    }

    fn check_stop(&mut self, now_s: f64, out: &mut CodecOut) {
        let Some(stop) = &mut self.stop else {
            return;
        };
        if now_s < stop.deadline {
            return;
        }
        let reading = stop.reading;
        let due = match stop.reported {
            None => true,
            Some((at, reported)) => reported != reading || now_s - at >= STOP_REPORT_S,
        };
        if due {
            stop.reported = Some((now_s, reading));
            let state = match reading {
                Some(state) => format!("current_state = {state} ({})", state_name(state)),
                None => "current_state did not read back".to_owned(),
            };
            out.events.push(Event::Refused(format!(
                "stop not confirmed: {state} {STOP_CONFIRM_S} s after `w {}requested_state 1`; sending it \
                 again until the axis reads IDLE",
                self.prefix
            )));
        }
        self.send_stop(now_s, out);
    }

    fn check_enable(&mut self, now_s: f64, out: &mut CodecOut) {
        let Some(deadline) = self.enable_deadline else {
            return;
        };
        if now_s < deadline {
            return;
        }
        self.enable_deadline = None;
        if self.known.current_state == Some(STATE_CLOSED_LOOP) {
            return;
        }
        let state =
            self.known.current_state.map_or("unknown".to_owned(), |s| format!("{s} ({})", state_name(s)));
        let errors = self.fault_text().map_or(String::new(), |t| format!("; errors: {t}"));
        out.events.push(Event::Refused(format!(
            "enable: {}current_state is {state}, not CLOSED_LOOP_CONTROL, {ENABLE_CONFIRM_S} s after \
             requesting it{errors}",
            self.prefix
        )));
    }

    /// The set-point line for a mode, in drive units.
    fn setpoint_line(&self, mode: ControlMode, value: f64) -> Result<String, CodecError> {
        let axis = self.axis;
        match mode {
            ControlMode::Speed => Ok(format!("v {axis} {}", number(value / 60.0))),
            ControlMode::Position => Ok(format!("p {axis} {}", number(value))),
            ControlMode::Current => match self.known.kt {
                Some(kt) => Ok(format!("c {axis} {}", number(value * kt))),
                None => Err(CodecError::Invalid(format!(
                    "a current setpoint needs {}motor.config.torque_constant to convert A to N·m, and it has \
                     not been read yet",
                    self.prefix
                ))),
            },
        }
    }

    fn log_clamping(&mut self, mode: ControlMode, value: f64, now_s: f64, out: &mut CodecOut) {
        match mode {
            ControlMode::Speed => {
                if let Some(limit) = self.known.vel_limit
                    && (value / 60.0).abs() > limit * (1.0 + 1e-6)
                {
                    self.log.log(
                        now_s,
                        format!(
                            "{value} rpm is above {}controller.config.vel_limit = {limit} turn/s ({} rpm): the \
                             drive clamps the speed to it",
                            self.prefix,
                            format_decimal(limit * 60.0, 1)
                        ),
                        out,
                    );
                }
            }
            ControlMode::Current => {
                if let Some(limit) = self.known.current_lim
                    && value.abs() > limit * (1.0 + 1e-6)
                {
                    self.log.log(
                        now_s,
                        format!(
                            "{value} A is above {}motor.config.current_lim = {limit} A: the drive limits the \
                             current to it",
                            self.prefix
                        ),
                        out,
                    );
                }
            }
            ControlMode::Position => {}
        }
    }

    fn write_param(&mut self, key: &str, value: f64) -> Result<(), CodecError> {
        let index = PARAMS
            .iter()
            .position(|def| def.key == key)
            .ok_or_else(|| CodecError::UnknownParam(key.into()))?;
        let def = &PARAMS[index];
        if def.read_only {
            return Err(CodecError::ReadOnly(key.to_owned()));
        }
        if !value.is_finite() {
            return Err(CodecError::Invalid(format!("{key}: the value is not a finite number")));
        }
        let vendor = value / def.scale;
        let mut feed_first = false;
        if def.path == "config.enable_watchdog" && vendor >= 0.5 {
            if let Some(timeout) = self.known.watchdog_timeout
                && timeout <= 0.0
            {
                return Err(CodecError::Invalid(
                    "set watchdog_timeout_s above 0 before enabling the watchdog: with a zero timeout it expires \
                     at once and stops the axis"
                        .into(),
                ));
            }
            // The counter of a watchdog never fed is 0: feed first or it trips at once.
            feed_first = true;
        }
        if def.path == "config.watchdog_timeout" && vendor <= 0.0 && self.known.watchdog_enabled == Some(true)
        {
            return Err(CodecError::Invalid(
                "a zero watchdog timeout with the watchdog enabled stops the axis at once: disable the \
                 watchdog first"
                    .into(),
            ));
        }
        let text = match def.kind {
            Kind::Bool => (if vendor >= 0.5 { "1" } else { "0" }).to_owned(),
            Kind::Int => format!("{}", vendor.round() as i64),
            Kind::Float => number(vendor),
        };
        let path = self.axis_path(def.path);
        self.note_user_watchdog_write(&path);
        self.queue.push_back(Request::Write {
            line: format!("w {path} {text}"),
            path,
            param: Some(index),
            console: false,
            feed_first,
            own: false,
        });
        Ok(())
    }

    fn set_mode(&mut self, mode: ControlMode, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        if self.mode == Some(mode) && self.known.control_mode.and_then(mode_from_code) == Some(mode) {
            // Already active: confirm without touching the setpoint.
            self.queue_mode_read();
            self.pump(now_s, out);
            return Ok(());
        }
        let axis = self.axis;
        // The long forms also zero the feed-forward terms, which act in the new mode.
        let line = match mode {
            ControlMode::Speed => format!("v {axis} 0 0"),
            ControlMode::Current => format!("c {axis} 0"),
            ControlMode::Position => {
                let position = self.known.position.ok_or_else(|| {
                    CodecError::Invalid(
                        "position mode starts at the present position, which is not known yet: wait for \
                         telemetry"
                            .into(),
                    )
                })?;
                format!("p {axis} {} 0 0", number(position))
            }
        };
        out.tx.extend(self.frame(&line));
        self.mode = Some(mode);
        self.queue_mode_read();
        self.pump(now_s, out);
        Ok(())
    }

    fn console_write_request(&self, line: &str) -> Option<Request> {
        let rest = line.strip_prefix('w')?;
        let mut tokens = c_tokens(rest);
        let path = tokens.next()?;
        tokens.next()?;
        let path = path.strip_suffix('.').unwrap_or(path).to_owned();
        // A watchdog that was not being fed trips the moment it is enabled.
        let feed_first = path == self.axis_path("config.enable_watchdog");
        Some(Request::Write {
            line: line.to_owned(),
            path,
            param: None,
            console: true,
            feed_first,
            own: false,
        })
    }

    /// The user's watchdog settings win over drivebench's: an enable (on or off) is neither
    /// armed over nor undone on stop, and a timeout of theirs is not put back to the drive's.
    fn note_user_watchdog_write(&mut self, path: &str) {
        match path.strip_prefix(&self.prefix) {
            Some("config.enable_watchdog") => self.watchdog.user_choice = true,
            Some("config.watchdog_timeout") => {
                self.watchdog.user_timeout = true;
                self.watchdog.replaced_timeout_s = None;
            }
            _ => {}
        }
    }

    /// What one command (the text between line ends) does, read as the firmware's
    /// `process_line` reads it: text from `*` on is the checksum, the first character picks the
    /// command. Leading blanks, which make the firmware answer `unknown command`, are skipped
    /// here so that such a line is judged by the command it resembles.
    fn command_intent(&self, command: &str) -> RawIntent {
        let command = command.split('*').next().unwrap_or("").trim_start_matches(is_c_space);
        let Some(first) = command.chars().next() else {
            return RawIntent::Other;
        };
        let rest = &command[first.len_utf8()..];
        match first {
            'v' | 'c' | 'p' | 't' | 'q' => self.setpoint_intent(first, rest),
            'w' => self.write_intent(rest),
            's' if rest.starts_with('e') => RawIntent::Guarded(
                "`se` erases the configuration: current and speed limits return to factory values that the \
                 project limits have not checked"
                    .into(),
            ),
            'e' if rest.starts_with('s') => RawIntent::Guarded(
                "`es`/`esl` sets the encoder position: the position reference moves with it, so a held \
                 position can end outside the position limits"
                    .into(),
            ),
            _ => RawIntent::Other,
        }
    }

    fn setpoint_intent(&self, command: char, rest: &str) -> RawIntent {
        let Some((axis, rest)) = scan_uint(rest) else {
            return RawIntent::Other;
        };
        let Some((value, mut rest)) = scan_float(rest) else {
            return RawIntent::Other;
        };
        if axis >= 2 {
            return RawIntent::Other;
        }
        if axis != u32::from(self.axis) {
            return RawIntent::Guarded(format!(
                "`{command} {axis} …` commands axis {axis}; this connection checks setpoints for axis {} only",
                self.axis
            ));
        }
        let mut extras = Vec::new();
        while extras.len() < 2 {
            match scan_float(rest) {
                Some((extra, tail)) => {
                    extras.push(extra);
                    rest = tail;
                }
                None => break,
            }
        }
        let nonzero_extras = extras.iter().any(|v| *v != 0.0);
        match command {
            'v' if nonzero_extras => RawIntent::Guarded(
                "the torque feed-forward of `v` is not checked against the current limit; send `v <axis> <vel>`"
                    .into(),
            ),
            'v' => RawIntent::Setpoint(ControlMode::Speed, value * 60.0),
            'c' => match self.known.kt {
                Some(kt) => RawIntent::Setpoint(ControlMode::Current, value / kt),
                None => RawIntent::Guarded(
                    "a torque setpoint cannot be checked against the current limit until torque_constant is \
                     read"
                        .into(),
                ),
            },
            'p' if nonzero_extras => RawIntent::Guarded(
                "the feed-forward terms of `p` are not checked against the limits; send `p <axis> <pos>`".into(),
            ),
            'q' if !extras.is_empty() => RawIntent::Guarded(
                "`q` with limits overwrites vel_limit and torque_lim without the catalogue checks; set \
                 velocity_limit_rpm in the parameters and use `p`"
                    .into(),
            ),
            _ => RawIntent::Setpoint(ControlMode::Position, value),
        }
    }

    /// `w axisN.requested_state <token>`: the firmware reads the token with `%d`.
    fn state_request_intent(&self, axis: u8, path: &str, token: &str) -> RawIntent {
        let Some((state, _)) = scan_int(token) else {
            // `not implemented`: nothing changes.
            return RawIntent::Other;
        };
        match i64::from(state) {
            // IDLE stops the motor: always allowed.
            STATE_IDLE => RawIntent::Other,
            // CLOSED_LOOP_CONTROL is what `Command::Enable` sends, and enabling is not checked
            // against the limits: the setpoint the axis then follows is (as `v`/`c`/`p`/`t` and
            // `w axisN.controller.input_*`), and the drive enforces vel_limit and current_lim,
            // which are catalogue parameters. For the other axis nothing here checked its
            // setpoint or limits, so it is refused like its setpoints.
            STATE_CLOSED_LOOP if axis == self.axis => RawIntent::Other,
            STATE_CLOSED_LOOP => RawIntent::Guarded(format!(
                "`{path} 8` enables axis {axis}; this connection checks setpoints and limits for axis {} only",
                self.axis
            )),
            other => RawIntent::Guarded(format!(
                "`{path} {other}` requests {}: calibrations, encoder searches, lock-in spin, homing and the \
                 start-up sequence move the motor at calibration currents and speeds that the project limits \
                 do not check; only 1 (IDLE) and 8 (CLOSED_LOOP_CONTROL) are allowed from the console",
                state_name(other)
            )),
        }
    }

    fn write_intent(&self, rest: &str) -> RawIntent {
        let mut tokens = c_tokens(rest);
        let (Some(path), Some(token)) = (tokens.next(), tokens.next()) else {
            return RawIntent::Other;
        };
        let path = path.strip_suffix('.').unwrap_or(path);
        let axis_rel = ["axis0.", "axis1."]
            .iter()
            .enumerate()
            .find_map(|(axis, prefix)| path.strip_prefix(prefix).map(|rel| (axis as u8, rel)));
        if let Some((axis, "requested_state")) = axis_rel {
            return self.state_request_intent(axis, path, token);
        }
        let Some((value, _)) = scan_float(token) else {
            return RawIntent::Other;
        };
        let Some((axis, rel)) = axis_rel else {
            if GUARDED_BOARD_PATHS.contains(&path) {
                return RawIntent::Guarded(format!(
                    "`{path}` protects the supply and the board but is not in the catalogue, so its value cannot \
                     be checked"
                ));
            }
            return RawIntent::Other;
        };
        let param = PARAMS.iter().find(|def| def.path == rel);
        if axis != self.axis {
            let limits_motor = rel.starts_with("controller.input_")
                || GUARDED_AXIS_PATHS.contains(&rel)
                || param.is_some_and(|def| def.key.contains("limit"));
            if limits_motor {
                return RawIntent::Guarded(format!(
                    "`{path}` belongs to axis {axis}; this connection checks writes for axis {} only",
                    self.axis
                ));
            }
            return RawIntent::Other;
        }
        match rel {
            "controller.input_vel" => return RawIntent::Setpoint(ControlMode::Speed, value * 60.0),
            "controller.input_pos" => return RawIntent::Setpoint(ControlMode::Position, value),
            "controller.input_torque" => {
                return match self.known.kt {
                    Some(kt) => RawIntent::Setpoint(ControlMode::Current, value / kt),
                    None => RawIntent::Guarded(
                        "a torque setpoint cannot be checked until torque_constant is read".into(),
                    ),
                };
            }
            _ => {}
        }
        if let Some(def) = param {
            return RawIntent::Param(def.key.to_owned(), value * def.scale);
        }
        if GUARDED_AXIS_PATHS.contains(&rel) {
            return RawIntent::Guarded(format!(
                "`{path}` limits the motor but is not in the catalogue, so its value cannot be checked"
            ));
        }
        RawIntent::Other
    }
}

enum Outcome {
    Done,
    Wait,
    Stray,
}

/// Who asked for a write.
#[derive(Debug, Clone, Copy, PartialEq)]
enum WriteOrigin {
    /// The codec itself (arming the watchdog).
    Own,
    /// A console line.
    Console,
    /// A catalogue write, when known.
    Param(Option<usize>),
}

fn mode_from_code(code: i64) -> Option<ControlMode> {
    match code {
        1 => Some(ControlMode::Current),
        2 => Some(ControlMode::Speed),
        3 => Some(ControlMode::Position),
        _ => None,
    }
}

fn input_path(mode: ControlMode) -> &'static str {
    match mode {
        ControlMode::Current => "controller.input_torque",
        ControlMode::Speed => "controller.input_vel",
        ControlMode::Position => "controller.input_pos",
    }
}

fn state_name(state: i64) -> &'static str {
    match state {
        0 => "UNDEFINED",
        1 => "IDLE",
        2 => "STARTUP_SEQUENCE",
        3 => "FULL_CALIBRATION_SEQUENCE",
        4 => "MOTOR_CALIBRATION",
        6 => "ENCODER_INDEX_SEARCH",
        7 => "ENCODER_OFFSET_CALIBRATION",
        8 => "CLOSED_LOOP_CONTROL",
        9 => "LOCKIN_SPIN",
        10 => "ENCODER_DIR_FIND",
        11 => "HOMING",
        12 => "ENCODER_HALL_POLARITY_CALIBRATION",
        13 => "ENCODER_HALL_PHASE_CALIBRATION",
        _ => "unknown state",
    }
}

/// A number for the command line: about 8 significant digits, at most 12 decimals, never an
/// exponent.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    let decimals = if magnitude == 0.0 || !magnitude.is_finite() {
        0
    } else {
        (8 - magnitude.log10().floor() as i64).clamp(0, 12) as usize
    };
    format_decimal(value, decimals)
}

/// Seconds for a log line: `1.0`, `0.25`.
fn seconds(value: f64) -> String {
    let text = format_decimal(value, 3);
    if text.contains('.') { text } else { format!("{text}.0") }
}

/// The part of a console line the firmware acts on: before `;` (comment) and `*` (checksum).
fn command_part(text: &str) -> &str {
    let text = text.split(';').next().unwrap_or("");
    text.split('*').next().unwrap_or("").trim()
}

/// What [`Codec::raw`] sends of a console line: the text before the comment, trimmed.
fn console_line(text: &str) -> &str {
    text.split(';').next().unwrap_or("").trim()
}

/// C `isspace` in the "C" locale: the blanks `sscanf` skips and `%s` stops at.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// The bytes at which the firmware ends a command.
fn is_line_end(c: char) -> bool {
    matches!(c, '\r' | '\n' | '!')
}

/// Blank-separated tokens, as `%s` conversions read them.
fn c_tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_c_space).filter(|token| !token.is_empty())
}

/// Leading blanks, an optional sign and decimal digits: the sign and the magnitude
/// (saturated at `u64::MAX`) and the rest, as `strtoul`/`strtol` read them.
fn scan_integer(text: &str) -> Option<(bool, u64, &str)> {
    let text = text.trim_start_matches(is_c_space);
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let magnitude = body[..digits]
        .bytes()
        .fold(0u64, |acc, d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0')));
    Some((negative, magnitude, &body[digits..]))
}

/// `%u` as the firmware's `sscanf` reads it (newlib `strtoul`, 32-bit `unsigned`): a minus
/// sign negates modulo 2³² (`-0` is 0, `-1` is 4294967295, `-4294967295` is 1), a magnitude
/// above 2³² − 1 saturates there.
fn scan_uint(text: &str) -> Option<(u32, &str)> {
    let (negative, magnitude, rest) = scan_integer(text)?;
    let value = match u32::try_from(magnitude) {
        Err(_) => u32::MAX,
        Ok(value) if negative => value.wrapping_neg(),
        Ok(value) => value,
    };
    Some((value, rest))
}

/// `%d` as the firmware's `sscanf` reads it (newlib `strtol`, 32-bit `int`): saturates at
/// the ends of the range.
fn scan_int(text: &str) -> Option<(i32, &str)> {
    let (negative, magnitude, rest) = scan_integer(text)?;
    let magnitude = i64::try_from(magnitude).unwrap_or(i64::MAX);
    let value = if negative { -magnitude } else { magnitude };
    Some((value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32, rest))
}

/// `%f` as the firmware's `sscanf` reads it: the longest prefix that is a decimal number, or
/// `inf`/`infinity`/`nan`.
fn scan_float(text: &str) -> Option<(f64, &str)> {
    let text = text.trim_start_matches(is_c_space);
    let bytes = text.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let lower = text[end..].to_ascii_lowercase();
    for word in ["infinity", "inf", "nan"] {
        if lower.starts_with(word) {
            let negative = bytes.first() == Some(&b'-');
            let value = if word == "nan" {
                f64::NAN
            } else if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
            return Some((value, &text[end + word.len()..]));
        }
    }
    let int_digits = bytes[end..].iter().take_while(|b| b.is_ascii_digit()).count();
    end += int_digits;
    let mut frac_digits = 0;
    if bytes.get(end) == Some(&b'.') {
        frac_digits = bytes[end + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if int_digits + frac_digits > 0 {
            end += 1 + frac_digits;
        }
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut exp_end = end + 1;
        if matches!(bytes.get(exp_end), Some(b'+' | b'-')) {
            exp_end += 1;
        }
        let exp_digits = bytes[exp_end.min(bytes.len())..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exp_digits > 0 {
            end = exp_end + exp_digits;
        }
    }
    let value = text[..end].parse::<f64>().ok()?;
    Some((value, &text[end..]))
}

impl Codec for ODriveCodec {
    fn signals(&self) -> Vec<SignalSpec> {
        vec![
            SignalSpec::new("speed_rpm", "rpm"),
            SignalSpec::new("current_a", "A"),
            SignalSpec::new("position_rev", "rev"),
            SignalSpec::new("voltage_v", "V"),
            SignalSpec::new("temperature_c", "°C"),
            SignalSpec::new("current_setpoint_a", "A"),
        ]
    }

    fn params(&self) -> Vec<ParamSpec> {
        PARAMS
            .iter()
            .map(|def| {
                let spec = ParamSpec::new(def.key, def.label, def.unit, def.min, def.max, def.help);
                if def.read_only { spec.read_only() } else { spec }
            })
            .collect()
    }

    fn start(&mut self, now_s: f64, out: &mut CodecOut) {
        self.started = true;
        self.hold_until = now_s + SETTLE_S;
        self.rx = ReplyAssembler::default();
        self.in_flight = None;
        self.queue.clear();
        self.stop = None;
        self.next_feed_at = now_s;
        // An empty line ends whatever partial line the drive holds from before.
        out.tx.push(b'\n');
        out.events.push(Event::Log(format!(
            "ODrive ASCII, axis {}{}",
            self.axis,
            if self.checksum { ", checksums" } else { "" }
        )));
        let request = self.read("motor.config.torque_constant", Purpose::Cache);
        self.queue.push_back(request);
        self.queue_state_reads();
        self.queue_mode_read();
        for rel in [
            "controller.config.vel_limit",
            "motor.config.current_lim",
            "config.enable_watchdog",
            "config.watchdog_timeout",
        ] {
            let request = self.read(rel, Purpose::Cache);
            self.queue.push_back(request);
        }
        self.watchdog = WatchdogRole::default();
        self.queue.push_back(Request::ArmWatchdog { timeout_written: false });
        for (index, path) in INFO_PATHS.iter().enumerate() {
            self.queue.push_back(Request::Read {
                path: (*path).to_owned(),
                purpose: Purpose::Info(index),
                slow: None,
            });
        }
    }

    fn command(&mut self, cmd: &Command, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        let axis = self.axis;
        match cmd {
            Command::Connect | Command::Disconnect => {}
            Command::Raw(text) => self.raw(text, now_s, out),
            Command::EStop => self.estop(now_s, out),
            Command::Enable => {
                self.feed_now(now_s, out);
                out.tx.extend(self.frame(&format!("w axis{axis}.requested_state 8")));
                // Enabling ends the wait for a stop to be confirmed.
                self.stop = None;
                self.enable_deadline = Some(now_s + ENABLE_CONFIRM_S);
                let request = self.read("current_state", Purpose::Cache);
                self.queue.push_front(request);
            }
            Command::Disable => self.send_stop(now_s, out),
            Command::ResetFaults => {
                // A watchdog never fed trips again at once after `sc`.
                self.feed_now(now_s, out);
                out.tx.extend(self.frame("sc"));
                self.queue_state_reads();
            }
            Command::SetMode(mode) => return self.set_mode(*mode, now_s, out),
            Command::SetSetpoint(mode, value) => {
                if !value.is_finite() {
                    return Err(CodecError::Invalid(format!(
                        "{} setpoint is not a finite number",
                        mode.cli_name()
                    )));
                }
                if self.mode != Some(*mode) {
                    let active = match (self.mode, self.known.control_mode) {
                        (Some(active), _) => active.cli_name().to_owned(),
                        (None, Some(0)) => "voltage-control".to_owned(),
                        _ => "an unknown".to_owned(),
                    };
                    return Err(CodecError::WrongMode { wanted: mode.cli_name().to_owned(), active });
                }
                let line = self.setpoint_line(*mode, *value)?;
                out.tx.extend(self.frame(&line));
                self.log_clamping(*mode, *value, now_s, out);
                out.events.push(Event::Mode { mode: *mode, setpoint: *value });
            }
            Command::ReadParam(key) => {
                let index = PARAMS
                    .iter()
                    .position(|def| def.key == key)
                    .ok_or_else(|| CodecError::UnknownParam(key.clone()))?;
                self.enqueue_param_read(index);
            }
            Command::WriteParam(key, value) => self.write_param(key, *value)?,
            Command::ReadAllParams => {
                for index in 0..PARAMS.len() {
                    self.enqueue_param_read(index);
                }
            }
        }
        self.pump(now_s, out);
        Ok(())
    }

    fn estop(&mut self, now_s: f64, out: &mut CodecOut) {
        let axis = self.axis;
        self.send_stop(now_s, out);
        // A later enable must not restart the motion by itself.
        let zero = match self.mode {
            Some(ControlMode::Speed) => Some((ControlMode::Speed, format!("v {axis} 0"))),
            Some(ControlMode::Current) => Some((ControlMode::Current, format!("c {axis} 0"))),
            _ => None,
        };
        if let Some((mode, line)) = zero {
            out.tx.extend(self.frame(&line));
            out.events.push(Event::Mode { mode, setpoint: 0.0 });
        }
        let before = self.queue.len();
        // Arming the watchdog moves nothing and makes the drive stop by itself if drivebench dies.
        self.queue.retain(|request| {
            matches!(
                request,
                Request::Read { .. }
                    | Request::Feedback
                    | Request::ArmWatchdog { .. }
                    | Request::Write { own: true, .. }
            )
        });
        let dropped = before - self.queue.len();
        if dropped > 0 {
            out.events.push(Event::Log(format!("e-stop: dropped {dropped} queued writes")));
        }
        self.pump(now_s, out);
    }

    fn raw(&mut self, text: &str, now_s: f64, out: &mut CodecOut) {
        let line = console_line(text);
        let command = command_part(line);
        let first = command.chars().next();
        let request = match first {
            Some('w') => self.console_write_request(command),
            _ => None,
        };
        if let Some(Request::Write { path, .. }) = &request {
            let path = path.clone();
            self.note_user_watchdog_write(&path);
        }
        if let Some(Request::Write { line: write, path, .. }) = &request
            && *path == self.axis_path("requested_state")
            && c_tokens(write.strip_prefix('w').unwrap_or(write))
                .nth(1)
                .and_then(scan_int)
                .map(|(s, _)| i64::from(s))
                != Some(STATE_IDLE)
        {
            // The console now decides the state: a pending stop is not sent again over it.
            self.stop = None;
        }
        let request = request.unwrap_or_else(|| {
            let expected = match first {
                Some('r' | 'f' | 'e') => Some(1),
                Some('i') => Some(3),
                _ => None,
            };
            Request::Console { line: line.to_owned(), expected }
        });
        self.queue.push_back(request);
        if !matches!(first, Some('r' | 'f' | 'i' | 'h' | 'u')) {
            // The line may have changed the mode, the state or the errors.
            self.queue_mode_read();
            self.queue_state_reads();
        }
        self.pump(now_s, out);
    }

    /// Classifies a console line by the commands the firmware would run from the bytes
    /// [`Codec::raw`] sends: it ends a command at CR, LF and `!`, so a line can hold several;
    /// a refusal of any wins, and more than one command that sets the motor is refused too,
    /// since a single intent cannot describe them.
    fn raw_intent(&self, text: &str) -> RawIntent {
        let line = console_line(text);
        if let Some(c) = line.chars().find(|&c| c.is_control() && !is_c_space(c)) {
            return RawIntent::Guarded(format!(
                "the line holds the control character U+{:04X}, which the classifier does not model; send \
                 printable text only",
                u32::from(c)
            ));
        }
        let mut found = None;
        let mut setting = 0;
        for command in line.split(is_line_end) {
            match self.command_intent(command) {
                RawIntent::Other => {}
                guarded @ RawIntent::Guarded(_) => return guarded,
                intent => {
                    setting += 1;
                    found.get_or_insert(intent);
                }
            }
        }
        if setting > 1 {
            return RawIntent::Guarded(
                "the line holds several commands that set the motor (the drive ends a command at `!`, CR and \
                 LF): send them one per line"
                    .into(),
            );
        }
        found.unwrap_or(RawIntent::Other)
    }

    fn feed(&mut self, bytes: &[u8], now_s: f64, out: &mut CodecOut) {
        for &byte in bytes {
            if let Some(line) = self.rx.push(byte, self.checksum) {
                self.handle_line(&line, now_s, out);
            }
        }
    }

    fn poll(&mut self, now_s: f64, out: &mut CodecOut) {
        if !self.started {
            return;
        }
        // In every state, IDLE included: the watchdog runs there too.
        if now_s >= self.next_feed_at {
            if self.feeding() {
                self.feed_now(now_s, out);
            } else {
                self.next_feed_at = now_s + FEED_MAX_S;
            }
        }
        self.check_timeout(now_s, out);
        self.check_enable(now_s, out);
        self.check_stop(now_s, out);
        if self.cycle_pos >= CYCLE_LEN {
            self.cycle_pos = 0;
        }
        self.pump(now_s, out);
    }

    fn stop(&mut self, _now_s: f64, out: &mut CodecOut) {
        let axis = self.axis;
        out.tx.extend(self.frame(&format!("w axis{axis}.requested_state 1")));
        if self.watchdog.armed && !self.watchdog.user_choice {
            // Left on, a watchdog nobody feeds any more trips under whatever talks to the drive
            // next. Disabled before its timeout is put back, which may be 0.
            out.tx.extend(self.frame(&format!("w axis{axis}.config.enable_watchdog 0")));
            if let Some(timeout_s) = self.watchdog.replaced_timeout_s.take() {
                out.tx.extend(
                    self.frame(&format!("w axis{axis}.config.watchdog_timeout {}", number(timeout_s))),
                );
            }
            self.watchdog.armed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn started(checksum: bool) -> ODriveCodec {
        let mut codec = ODriveCodec::new(0, checksum);
        let mut out = CodecOut::new();
        codec.start(0.0, &mut out);
        codec.queue.clear();
        codec.hold_until = 0.0;
        codec
    }

    /// Sends `request` at once and returns the bytes that went out.
    fn send(codec: &mut ODriveCodec, request: Request) -> Vec<u8> {
        codec.queue.push_front(request);
        let mut out = CodecOut::new();
        codec.pump(1.0, &mut out);
        out.tx
    }

    fn vbus_read() -> Request {
        Request::Read { path: "vbus_voltage".into(), purpose: Purpose::Sample(SIG_VOLTAGE), slow: None }
    }

    /// Feeds `bytes` as one chunk, byte by byte and split at every point; all must agree.
    fn feed_all_ways(codec: &ODriveCodec, bytes: &[u8]) -> (ODriveCodec, CodecOut) {
        let mut whole = codec.clone();
        let mut expected = CodecOut::new();
        whole.feed(bytes, 1.0, &mut expected);
        let mut splits: Vec<Vec<&[u8]>> = (0..=bytes.len()).map(|i| vec![&bytes[..i], &bytes[i..]]).collect();
        splits.push(bytes.chunks(1).collect());
        for parts in splits {
            let mut c = codec.clone();
            let mut out = CodecOut::new();
            for part in parts {
                c.feed(part, 1.0, &mut out);
            }
            assert_eq!(out.samples, expected.samples);
            assert_eq!(out.events, expected.events);
            assert_eq!(out.tx, expected.tx);
        }
        (whole, expected)
    }

    #[test]
    fn vbus_read_and_reply() {
        let mut codec = started(false);
        assert_eq!(send(&mut codec, vbus_read()), b"r vbus_voltage\n");
        let (codec, out) = feed_all_ways(&codec, b"24.087744\r\n");
        assert_eq!(out.samples, vec![Sample { t_s: 1.0, signal: SIG_VOLTAGE, value: 24.087744 }]);
        assert!(codec.in_flight.is_none());
    }

    #[test]
    fn checksummed_vbus_read_and_reply() {
        let mut codec = started(true);
        assert_eq!(send(&mut codec, vbus_read()), b"r vbus_voltage *93\n");
        let (_, out) = feed_all_ways(&codec, b"24.087744*32\r\n");
        assert_eq!(out.samples, vec![Sample { t_s: 1.0, signal: SIG_VOLTAGE, value: 24.087744 }]);
        // 0.5.2 sends no line end after the checksum.
        let (_, out) = feed_all_ways(&codec, b"24.087744*32");
        assert_eq!(out.samples.len(), 1);
        // A bad checksum is dropped.
        let (codec, out) = feed_all_ways(&codec, b"24.087744*33\r\n");
        assert!(out.samples.is_empty());
        assert!(codec.in_flight.is_some());
    }

    #[test]
    fn checksummed_replies_without_line_end_split_at_the_checksum() {
        let mut codec = started(true);
        send(&mut codec, vbus_read());
        codec.cycle_pos = 0;
        // The second reply starts with a digit, right after the first one's checksum.
        let (_, out) = feed_all_ways(&codec, b"24.087744*321.234375 0.000000*37");
        assert_eq!(
            out.samples,
            vec![
                Sample { t_s: 1.0, signal: SIG_VOLTAGE, value: 24.087744 },
                Sample { t_s: 1.0, signal: SIG_POSITION, value: 1.234375 },
                Sample { t_s: 1.0, signal: SIG_SPEED, value: 0.0 },
            ]
        );
    }

    #[test]
    fn reply_ended_by_timeout_is_accepted() {
        let mut codec = started(false);
        send(&mut codec, vbus_read());
        let mut out = CodecOut::new();
        codec.feed(b"24.5", 1.0, &mut out);
        assert!(out.samples.is_empty());
        codec.poll(1.0 + REPLY_TIMEOUT_S + 0.01, &mut out);
        assert_eq!(out.samples.len(), 1);
        assert_eq!(out.samples[0].value, 24.5);
    }

    #[test]
    fn feedback_request_and_reply() {
        let mut codec = started(false);
        codec.cycle_pos = 0;
        let mut out = CodecOut::new();
        codec.pump(1.0, &mut out);
        assert_eq!(out.tx, b"f 0\n");
        let (codec, out) = feed_all_ways(&codec, b"1.234375 0.000000\r\n");
        assert_eq!(
            out.samples,
            vec![
                Sample { t_s: 1.0, signal: SIG_POSITION, value: 1.234375 },
                Sample { t_s: 1.0, signal: SIG_SPEED, value: 0.0 },
            ]
        );
        // The next request of the cycle went out as soon as the reply was complete.
        assert_eq!(out.tx, b"r axis0.motor.current_control.Iq_measured\n");
        assert!(codec.in_flight.is_some());

        let mut codec = started(true);
        codec.cycle_pos = 0;
        let mut out = CodecOut::new();
        codec.pump(1.0, &mut out);
        assert_eq!(out.tx, b"f 0 *86\n");
        let (_, out) = feed_all_ways(&codec, b"1.234375 0.000000*37\r\n");
        assert_eq!(out.samples.len(), 2);
    }

    #[test]
    fn enable_and_setpoint_bytes() {
        let mut codec = started(false);
        codec.known.watchdog_enabled = Some(false);
        let mut out = CodecOut::new();
        codec.command(&Command::Enable, 1.0, &mut out).unwrap();
        assert!(out.tx.starts_with(b"w axis0.requested_state 8\n"), "{:?}", String::from_utf8_lossy(&out.tx));
        codec.mode = Some(ControlMode::Speed);
        let mut out = CodecOut::new();
        codec.command(&Command::SetSetpoint(ControlMode::Speed, 150.0), 1.0, &mut out).unwrap();
        assert_eq!(out.tx, b"v 0 2.5\n");
        assert_eq!(out.events, vec![Event::Mode { mode: ControlMode::Speed, setpoint: 150.0 }]);
        let err =
            codec.command(&Command::SetSetpoint(ControlMode::Position, 1.0), 1.0, &mut out).unwrap_err();
        assert!(matches!(err, CodecError::WrongMode { .. }));
        // No torque constant yet: a current setpoint is refused with the reason.
        codec.mode = Some(ControlMode::Current);
        let err = codec.command(&Command::SetSetpoint(ControlMode::Current, 1.0), 1.0, &mut out).unwrap_err();
        assert!(err.to_string().contains("torque_constant"), "{err}");
        codec.known.kt = Some(0.05);
        let mut out = CodecOut::new();
        codec.command(&Command::SetSetpoint(ControlMode::Current, 2.0), 1.0, &mut out).unwrap();
        assert_eq!(out.tx, b"c 0 0.1\n");
    }

    #[test]
    fn console_lines_and_error_replies() {
        let mut codec = started(false);
        let mut out = CodecOut::new();
        codec.raw("x", 1.0, &mut out);
        assert!(out.tx.starts_with(b"x\n"));
        let (_, out) = feed_all_ways(&codec, b"unknown command\r\n");
        assert!(out.events.contains(&Event::Log("< unknown command".into())));

        let mut codec = started(false);
        let mut out = CodecOut::new();
        codec.raw("v 5 1", 1.0, &mut out);
        assert!(out.tx.starts_with(b"v 5 1\n"));
        let (_, out) = feed_all_ways(&codec, b"invalid motor 5\r\n");
        assert!(out.events.contains(&Event::Log("< invalid motor 5".into())));

        let mut codec = started(true);
        let mut out = CodecOut::new();
        codec.raw("r vbus_voltage", 1.0, &mut out);
        assert_eq!(out.tx, b"r vbus_voltage *93\n");
    }

    #[test]
    fn stray_unknown_command_is_tolerated() {
        let mut codec = started(false);
        send(&mut codec, vbus_read());
        let (codec, out) = feed_all_ways(&codec, b"unknown command\r\n24.0\r\n");
        assert_eq!(out.samples.len(), 1);
        assert_eq!(out.samples[0].value, 24.0);
        assert!(codec.in_flight.is_none());
    }

    #[test]
    fn write_confirmed_by_read_back_or_refused() {
        let mut codec = started(false);
        let mut out = CodecOut::new();
        codec.command(&Command::WriteParam("velocity_limit_rpm".into(), 600.0), 1.0, &mut out).unwrap();
        assert_eq!(out.tx, b"w axis0.controller.config.vel_limit 10\nr axis0.controller.config.vel_limit\n");
        let (codec2, out) = feed_all_ways(&codec, b"10.000000\r\n");
        assert!(out.events.contains(&Event::ParamWritten { key: "velocity_limit_rpm".into(), value: 600.0 }));
        assert_eq!(codec2.known.vel_limit, Some(10.0));

        let (_, out) = feed_all_ways(&codec, b"not implemented\r\n2.000000\r\n");
        assert!(out.events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("not implemented"))));
        assert!(out.events.contains(&Event::ParamValue { key: "velocity_limit_rpm".into(), value: 120.0 }));

        let (_, out) = feed_all_ways(&codec, b"invalid property\r\ninvalid property\r\n");
        assert!(out.events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("invalid property"))));

        let mut codec = started(false);
        let mut out = CodecOut::new();
        assert_eq!(
            codec.command(&Command::WriteParam("nope".into(), 1.0), 1.0, &mut out),
            Err(CodecError::UnknownParam("nope".into()))
        );
        assert_eq!(
            codec.command(&Command::WriteParam("pole_pairs".into(), 7.0), 1.0, &mut out),
            Err(CodecError::ReadOnly("pole_pairs".into()))
        );
    }

    #[test]
    fn console_write_reads_back_and_reports_catalogue_values() {
        let mut codec = started(false);
        let mut out = CodecOut::new();
        codec.raw("w axis0.config.enable_watchdog 1 ; on", 1.0, &mut out);
        assert!(
            out.tx.starts_with(b"u 0\nw axis0.config.enable_watchdog 1\nr axis0.config.enable_watchdog\n"),
            "{}",
            String::from_utf8_lossy(&out.tx)
        );
        let (codec, out) = feed_all_ways(&codec, b"1\r\n");
        assert!(out.events.contains(&Event::Log("< axis0.config.enable_watchdog = 1".into())));
        assert!(out.events.contains(&Event::ParamWritten { key: "watchdog_enable".into(), value: 1.0 }));
        assert_eq!(codec.known.watchdog_enabled, Some(true));
    }

    #[test]
    fn state_and_fault_text_from_error_registers() {
        let mut codec = started(false);
        let mut out = CodecOut::new();
        codec.note("axis0.current_state", "8", 8.0, &mut out);
        assert!(out.events.is_empty(), "no state before every register is known");
        for i in 0..5 {
            let path = codec.error_path(i);
            codec.note(&path, "0", 0.0, &mut out);
        }
        assert_eq!(out.events, vec![Event::State(DriveState::Enabled)]);
        let mut out = CodecOut::new();
        codec.note("axis0.error", "2048", 2048.0, &mut out);
        codec.note("axis0.motor.error", "4096", 4096.0, &mut out);
        let texts: Vec<_> = out
            .events
            .iter()
            .filter_map(|e| match e {
                Event::State(DriveState::Fault(t)) => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(texts.len(), 2);
        assert!(texts[1].contains("WATCHDOG_TIMER_EXPIRED") && texts[1].contains("CURRENT_LIMIT_VIOLATION"));
    }

    #[test]
    fn timeouts_do_not_wedge_and_report_loss() {
        let mut codec = started(false);
        let mut out = CodecOut::new();
        let mut now = 1.0;
        codec.poll(now, &mut out);
        assert_eq!(out.tx, b"u 0\nf 0\n");
        for _ in 0..200 {
            now += 0.01;
            codec.poll(now, &mut out);
        }
        let sent = String::from_utf8_lossy(&out.tx);
        assert!(sent.matches("f 0\n").count() >= 2, "{sent}");
        assert!(sent.contains("r axis0.motor.current_control.Iq_measured\n"));
        assert!(
            out.events
                .iter()
                .any(|e| matches!(e, Event::State(DriveState::Fault(t)) if t.contains("no reply")))
        );
        // Replies come back: the codec answers again.
        let mut out = CodecOut::new();
        let mut guard = 0;
        while codec.in_flight.is_none() && guard < 100 {
            now += 0.01;
            codec.poll(now, &mut out);
            guard += 1;
        }
        assert!(codec.lost);
        // Whether `f` or a read is waiting, one of these lines answers it.
        codec.feed(b"1.0 0.0\r\n1.0\r\n", now, &mut out);
        assert!(!codec.lost);
    }

    #[test]
    fn raw_intent_classifies_setpoints_and_guarded_writes() {
        let mut codec = started(false);
        codec.known.kt = Some(0.05);
        assert_eq!(codec.raw_intent("v 0 10"), RawIntent::Setpoint(ControlMode::Speed, 600.0));
        assert_eq!(codec.raw_intent("v0 10abc"), RawIntent::Setpoint(ControlMode::Speed, 600.0));
        assert_eq!(codec.raw_intent("c 0 0.1 *12"), RawIntent::Setpoint(ControlMode::Current, 2.0));
        assert_eq!(codec.raw_intent("p 0 3"), RawIntent::Setpoint(ControlMode::Position, 3.0));
        assert_eq!(codec.raw_intent("t 0 -2"), RawIntent::Setpoint(ControlMode::Position, -2.0));
        assert!(matches!(codec.raw_intent("v 1 10"), RawIntent::Guarded(_)));
        assert!(matches!(codec.raw_intent("v 0 10 1"), RawIntent::Guarded(_)));
        assert!(matches!(codec.raw_intent("q 0 1 5"), RawIntent::Guarded(_)));
        assert_eq!(
            codec.raw_intent("w axis0.controller.config.vel_limit 10"),
            RawIntent::Param("velocity_limit_rpm".into(), 600.0)
        );
        assert_eq!(
            codec.raw_intent("w axis0.motor.config.current_lim 12 ; comment"),
            RawIntent::Param("current_limit_a".into(), 12.0)
        );
        assert_eq!(
            codec.raw_intent("w axis0.controller.input_vel 2"),
            RawIntent::Setpoint(ControlMode::Speed, 120.0)
        );
        assert!(matches!(codec.raw_intent("w axis0.motor.config.torque_lim 5"), RawIntent::Guarded(_)));
        assert!(matches!(codec.raw_intent("w axis1.motor.config.current_lim 50"), RawIntent::Guarded(_)));
        assert!(matches!(codec.raw_intent("w config.dc_max_negative_current -10"), RawIntent::Guarded(_)));
        assert!(matches!(codec.raw_intent("se"), RawIntent::Guarded(_)));
        assert_eq!(codec.raw_intent("r vbus_voltage"), RawIntent::Other);
        assert_eq!(codec.raw_intent("w axis0.requested_state 8"), RawIntent::Other);
        assert!(
            matches!(codec.raw_intent("v 0 nan"), RawIntent::Setpoint(ControlMode::Speed, v) if v.is_nan())
        );
    }

    #[test]
    fn raw_intent_classifies_every_command_the_firmware_splits_a_line_into() {
        let mut codec = started(false);
        codec.known.kt = Some(0.05);
        // The drive ends a command at `!`, CR and LF: two setpoints on one line.
        for line in [
            "v 0 1!v 0 100",
            "v 0 1\rv 0 100",
            "v 0 1\nv 0 100",
            "w axis0.controller.input_vel 1!v 0 100",
            "v 0 1 *12!v 0 100",
            "p 0 1!c 0 0.1",
        ] {
            assert!(
                matches!(codec.raw_intent(line), RawIntent::Guarded(ref why) if why.contains("several")),
                "{line:?}"
            );
        }
        // A refused command anywhere refuses the line.
        assert!(matches!(codec.raw_intent("v 0 1!v 1 5"), RawIntent::Guarded(_)));
        assert!(matches!(
            codec.raw_intent("r vbus_voltage!w axis0.requested_state 3"),
            RawIntent::Guarded(_)
        ));
        assert!(matches!(codec.raw_intent("r vbus_voltage! se"), RawIntent::Guarded(_)));
        // One command that sets something, among others that do not, is judged by it.
        assert_eq!(
            codec.raw_intent("r axis0.error!v 0 100"),
            RawIntent::Setpoint(ControlMode::Speed, 6000.0)
        );
        assert_eq!(codec.raw_intent("v 0 5!"), RawIntent::Setpoint(ControlMode::Speed, 300.0));
        assert_eq!(
            codec.raw_intent("f 0\nw axis0.motor.config.current_lim 12"),
            RawIntent::Param("current_limit_a".into(), 12.0)
        );
        // Nothing after the comment is sent.
        assert_eq!(
            codec.raw_intent("c 0 0.1 ; note!v 0 100"),
            RawIntent::Setpoint(ControlMode::Current, 2.0)
        );
        assert_eq!(codec.raw_intent("r vbus_voltage!f 0"), RawIntent::Other);
        // Control characters other than blanks and line ends are not modelled: refused.
        for line in ["v 0 1\0v 0 100", "r vbus_voltage\u{1}", "v 0 1\u{7f}", "v 0 1\u{1b}[A"] {
            assert!(
                matches!(codec.raw_intent(line), RawIntent::Guarded(ref why) if why.contains("control character")),
                "{line:?}"
            );
        }
    }

    #[test]
    fn raw_intent_takes_blanks_as_c_isspace_does() {
        let mut codec = started(false);
        codec.known.kt = Some(0.05);
        // VT and FF separate arguments for `sscanf` but not for Rust's ASCII whitespace.
        assert_eq!(
            codec.raw_intent("w axis0.controller.input_vel\u{0b}100"),
            RawIntent::Setpoint(ControlMode::Speed, 6000.0)
        );
        assert_eq!(
            codec.raw_intent("w\u{0c}axis0.controller.config.vel_limit\t10"),
            RawIntent::Param("velocity_limit_rpm".into(), 600.0)
        );
        assert_eq!(codec.raw_intent("v\u{0b}0\u{0c}10"), RawIntent::Setpoint(ControlMode::Speed, 600.0));
        assert!(matches!(codec.raw_intent("v 0\u{0b}10\u{0b}1"), RawIntent::Guarded(_)));
        // A no-break space is no blank to `sscanf`: `%f` fails, the drive answers
        // `invalid command format`.
        assert_eq!(codec.raw_intent("v 0\u{a0}100"), RawIntent::Other);
        assert_eq!(codec.raw_intent("w axis0.controller.input_vel\u{a0}100"), RawIntent::Other);
    }

    #[test]
    fn raw_intent_reads_axis_numbers_as_percent_u_does() {
        assert_eq!(scan_uint("-0 1"), Some((0, " 1")));
        assert_eq!(scan_uint("-1"), Some((u32::MAX, "")));
        assert_eq!(scan_uint("-4294967295"), Some((1, "")));
        assert_eq!(scan_uint("-4294967296"), Some((u32::MAX, "")));
        assert_eq!(scan_uint("99999999999x"), Some((u32::MAX, "x")));
        assert_eq!(scan_uint("\u{0b}+7"), Some((7, "")));
        assert_eq!(scan_uint("-"), None);
        let mut codec = started(false);
        codec.known.kt = Some(0.05);
        assert_eq!(codec.raw_intent("v -0 1000"), RawIntent::Setpoint(ControlMode::Speed, 60_000.0));
        assert_eq!(codec.raw_intent("c -0 5"), RawIntent::Setpoint(ControlMode::Current, 100.0));
        assert_eq!(codec.raw_intent("p -0 7"), RawIntent::Setpoint(ControlMode::Position, 7.0));
        assert_eq!(codec.raw_intent("t +0 7"), RawIntent::Setpoint(ControlMode::Position, 7.0));
        assert!(matches!(codec.raw_intent("q -0 0 100 100"), RawIntent::Guarded(_)));
        // -4294967295 is axis 1.
        assert!(
            matches!(codec.raw_intent("v -4294967295 100"), RawIntent::Guarded(ref why) if why.contains("axis 1"))
        );
        // Axis 4294967295 and saturated numbers: `invalid motor`, nothing moves.
        assert_eq!(codec.raw_intent("v -1 100"), RawIntent::Other);
        assert_eq!(codec.raw_intent("v 4294967296 100"), RawIntent::Other);
    }

    #[test]
    fn raw_intent_refuses_state_requests_and_encoder_sets_that_move_the_motor() {
        let codec = started(false);
        for state in
            ["0", "2", "3", "4", "5", "6", "7", "9", "10", "11", "12", "13", "99", "-1", "-4294967288"]
        {
            let line = format!("w axis0.requested_state {state}");
            assert!(matches!(codec.raw_intent(&line), RawIntent::Guarded(_)), "{line}");
        }
        let why = match codec.raw_intent("w axis0.requested_state 3") {
            RawIntent::Guarded(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(why.contains("FULL_CALIBRATION_SEQUENCE") && why.contains("calibration"), "{why}");
        // IDLE and CLOSED_LOOP_CONTROL as `%d` reads them (`1e1` is 1, `8.9` is 8).
        for state in ["1", "8", "+8", "0008", "8.9", "1e1", "8abc"] {
            let line = format!("w axis0.requested_state {state}");
            assert_eq!(codec.raw_intent(&line), RawIntent::Other, "{line}");
        }
        assert_eq!(codec.raw_intent("w axis0.requested_state. 8"), RawIntent::Other);
        assert_eq!(codec.raw_intent("w axis0.requested_state x"), RawIntent::Other);
        // The other axis may be stopped, nothing else.
        assert_eq!(codec.raw_intent("w axis1.requested_state 1"), RawIntent::Other);
        assert!(matches!(codec.raw_intent("w axis1.requested_state 8"), RawIntent::Guarded(_)));
        assert!(matches!(codec.raw_intent("w axis1.requested_state 3"), RawIntent::Guarded(_)));
        // Setting the encoder position moves the position reference.
        for line in ["esl 0 -8192000", "esl 1 0", "es", "esl0 0x10"] {
            assert!(
                matches!(codec.raw_intent(line), RawIntent::Guarded(ref why) if why.contains("encoder")),
                "{line}"
            );
        }
    }

    /// Values of the emulated drive that a console line may change.
    fn emulated_snapshot(
        device: &mut crate::sim::device::odrive::ODriveDevice,
        drive: &mut crate::sim::SimDrive,
    ) -> Vec<(String, String)> {
        use crate::sim::device::Device;
        let mut values = Vec::new();
        for axis in 0..2 {
            for rel in [
                "controller.input_vel",
                "controller.input_pos",
                "controller.input_torque",
                "controller.config.vel_limit",
                "motor.config.current_lim",
                "motor.config.torque_lim",
                "encoder.pos_estimate",
                "current_state",
                "error",
            ] {
                let path = format!("axis{axis}.{rel}");
                let mut reply = Vec::new();
                device.receive(format!("r {path}\n").as_bytes(), 1.0, drive, &mut reply);
                values.push((path, String::from_utf8_lossy(&reply).trim().to_owned()));
            }
        }
        values
    }

    /// Sends a console line as `raw` frames it to the emulated firmware; returns the classifier's
    /// verdict and the values that changed (path, new value).
    fn console_line_against_emulator(line: &str, checksum: bool) -> (RawIntent, Vec<(String, f64)>) {
        use crate::sim::device::Device;
        let mut drive = crate::sim::SimDrive::new(&crate::sim::SimConfig::default());
        let mut device = crate::sim::device::odrive::ODriveDevice::new();
        device.tick(0.0, &mut drive, &crate::sim::TelemetryFrame::default(), &mut Vec::new());
        let before = emulated_snapshot(&mut device, &mut drive);
        let mut codec = started(checksum);
        codec.known.kt = Some(drive.config().motor.torque_constant_nm_per_a);
        let intent = codec.raw_intent(line);
        let mut out = CodecOut::new();
        codec.raw(line, 1.0, &mut out);
        device.receive(&out.tx, 1.0, &mut drive, &mut Vec::new());
        let after = emulated_snapshot(&mut device, &mut drive);
        let changed = before
            .into_iter()
            .zip(after)
            .filter(|(b, a)| b.1 != a.1)
            .map(|(_, (path, value))| {
                let value = value.parse::<f64>().unwrap_or(f64::NAN);
                (path, value)
            })
            .collect();
        (intent, changed)
    }

    /// Whatever the emulated firmware did with a line, the classifier saw it coming: a line
    /// that changed a setpoint, a limit or the encoder position is not `Other`, and a single
    /// setpoint it reported is the one the drive took.
    fn check_against_emulator(line: &str, checksum: bool) {
        let (intent, changed) = console_line_against_emulator(line, checksum);
        if changed.is_empty() {
            return;
        }
        assert_ne!(intent, RawIntent::Other, "{line:?} changed {changed:?}");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-3 * a.abs().max(1.0);
        let kt = crate::sim::SimConfig::default().motor.torque_constant_nm_per_a;
        for (path, value) in &changed {
            let ok = match (&intent, path.as_str()) {
                (RawIntent::Setpoint(ControlMode::Speed, x), "axis0.controller.input_vel") => {
                    close(x / 60.0, *value)
                }
                (RawIntent::Setpoint(ControlMode::Position, x), "axis0.controller.input_pos") => {
                    close(*x, *value)
                }
                (RawIntent::Setpoint(ControlMode::Current, x), "axis0.controller.input_torque") => {
                    close(x * kt, *value)
                }
                (RawIntent::Param(key, x), "axis0.controller.config.vel_limit") => {
                    key == "velocity_limit_rpm" && close(x / 60.0, *value)
                }
                (RawIntent::Param(key, x), "axis0.motor.config.current_lim") => {
                    key == "current_limit_a" && close(*x, *value)
                }
                (RawIntent::Guarded(_), _) => true,
                _ => false,
            };
            assert!(ok, "{line:?}: {intent:?}, but the drive changed {path} to {value}");
        }
    }

    #[test]
    fn raw_intent_agrees_with_the_emulated_firmware_on_the_reviewed_lines() {
        for line in [
            "v -0 1000",
            "c -0 5",
            "q -0 0 100 100",
            "v -4294967295 100",
            "v 0 1!v 0 100",
            "v 0 1\rv 0 100",
            "w axis0.controller.input_vel 1!v 0 100",
            "w axis0.controller.input_vel\u{0b}100",
            "esl 0 -8192000",
            "v 0 1 *12",
            "r vbus_voltage!v 0 7",
            "v 0 5 *99!p 0 3",
        ] {
            for checksum in [false, true] {
                check_against_emulator(line, checksum);
            }
        }
        // Without the classifier's care these would slip through as `Other`.
        let (_, changed) = console_line_against_emulator("v -0 1000", false);
        assert_eq!(changed, vec![("axis0.controller.input_vel".to_owned(), 1000.0)]);
        let (_, changed) = console_line_against_emulator("w axis0.controller.input_vel\u{0b}100", false);
        assert_eq!(changed, vec![("axis0.controller.input_vel".to_owned(), 100.0)]);
    }

    /// Answers every request the codec sends, with `state` for `current_state`, until it waits
    /// for nothing.
    fn answer_all(codec: &mut ODriveCodec, state: &str, now_s: f64, out: &mut CodecOut) {
        for _ in 0..20 {
            let reply = match &codec.in_flight {
                None => return,
                Some(InFlight { req: Request::Feedback, .. }) => "0.0 0.0".to_owned(),
                Some(InFlight { req: Request::Read { path, .. }, .. }) if path.ends_with("current_state") => {
                    state.to_owned()
                }
                Some(_) => "0".to_owned(),
            };
            codec.feed(format!("{reply}\r\n").as_bytes(), now_s, out);
        }
    }

    #[test]
    fn unconfirmed_stop_is_reported_and_sent_again() {
        let refused = |out: &CodecOut| out.events.iter().any(|e| matches!(e, Event::Refused(_)));
        let stops =
            |out: &CodecOut| String::from_utf8_lossy(&out.tx).matches("w axis0.requested_state 1").count();
        let mut codec = started(false);
        let mut out = CodecOut::new();
        codec.estop(1.0, &mut out);
        assert_eq!(out.tx, b"w axis0.requested_state 1\nr axis0.current_state\n");
        // The axis stays in closed loop after the stop.
        answer_all(&mut codec, "8", 1.0, &mut out);
        out.clear();
        codec.poll(1.2, &mut out);
        answer_all(&mut codec, "8", 1.2, &mut out);
        assert!(!refused(&out) && stops(&out) == 0, "{out:?}");
        out.clear();
        codec.poll(1.31, &mut out);
        assert!(
            out.events.iter().any(
                |e| matches!(e, Event::Refused(t) if t.starts_with("stop not confirmed: current_state = 8"))
            ),
            "{:?}",
            out.events
        );
        assert_eq!(stops(&out), 1);
        // The read-back goes first.
        assert!(
            String::from_utf8_lossy(&out.tx).contains("w axis0.requested_state 1\nr axis0.current_state\n")
        );
        answer_all(&mut codec, "8", 1.31, &mut out);
        // Still 8: sent again; reported again only when the reading changes or after a while.
        out.clear();
        codec.poll(1.62, &mut out);
        assert_eq!(stops(&out), 1);
        assert!(!refused(&out));
        // Now IDLE: confirmed, nothing more is sent.
        answer_all(&mut codec, "1", 1.62, &mut out);
        assert!(codec.stop.is_none());
        out.clear();
        for step in 0..100 {
            let now = 1.7 + f64::from(step) * 0.01;
            codec.poll(now, &mut out);
            answer_all(&mut codec, "1", now, &mut out);
        }
        assert!(!refused(&out) && stops(&out) == 0);
    }

    #[test]
    fn stop_is_confirmed_only_by_a_reading_taken_after_it() {
        let mut codec = started(false);
        let mut out = CodecOut::new();
        // A state read is on its way when the stop goes out.
        let read = codec.read("current_state", Purpose::Cache);
        send(&mut codec, read);
        codec.command(&Command::Disable, 1.0, &mut out).unwrap();
        assert_eq!(out.tx, b"w axis0.requested_state 1\n");
        // Its reply (IDLE from before an enable, say) does not confirm the stop.
        codec.feed(b"1\r\n", 1.01, &mut out);
        assert!(codec.stop.is_some());
        // The read sent after the stop does.
        assert!(String::from_utf8_lossy(&out.tx).ends_with("r axis0.current_state\n"));
        codec.feed(b"1\r\n", 1.02, &mut out);
        assert!(codec.stop.is_none());
        // Enable ends the wait as well.
        codec.command(&Command::Disable, 2.0, &mut out).unwrap();
        assert!(codec.stop.is_some());
        codec.command(&Command::Enable, 2.0, &mut out).unwrap();
        assert!(codec.stop.is_none());
        // So does a console line that sets the state, unless it is a stop itself.
        codec.command(&Command::Disable, 3.0, &mut out).unwrap();
        codec.raw("w axis0.requested_state 1", 3.0, &mut out);
        assert!(codec.stop.is_some());
        codec.raw("w axis1.requested_state 8", 3.0, &mut out);
        assert!(codec.stop.is_some());
        codec.raw("w axis0.requested_state 8", 3.0, &mut out);
        assert!(codec.stop.is_none());
    }

    #[test]
    fn a_lost_stop_is_sent_again_until_the_drive_idles() {
        let mut bench = Bench::new(false);
        bench.run(0.3);
        for stop in ["estop", "disable"] {
            bench.command(Command::Enable).unwrap();
            bench.command(Command::SetMode(ControlMode::Speed)).unwrap();
            bench.command(Command::SetSetpoint(ControlMode::Speed, 300.0)).unwrap();
            bench.run(0.3);
            assert!(bench.drive.is_enabled());
            bench.take_events();
            bench.lose_stops = 2;
            if stop == "estop" {
                let mut out = CodecOut::new();
                bench.codec.estop(bench.now(), &mut out);
                bench.exchange(out);
            } else {
                bench.command(Command::Disable).unwrap();
            }
            bench.run(0.25);
            assert!(bench.drive.is_enabled(), "{stop}: the stop was lost");
            bench.run(0.3);
            assert!(bench.drive.is_enabled(), "{stop}: the first resend was lost too");
            bench.run(0.3);
            assert!(!bench.drive.is_enabled(), "{stop}: the stop was sent again");
            assert_eq!(bench.lose_stops, 0);
            let events = bench.take_events();
            let refused: Vec<_> = events.iter().filter(|e| matches!(e, Event::Refused(_))).collect();
            assert_eq!(refused.len(), 1, "{stop}: {events:?}");
            assert!(
                matches!(refused[0], Event::Refused(t) if t.starts_with("stop not confirmed: current_state = 8")),
                "{refused:?}"
            );
            assert!(events.contains(&Event::State(DriveState::Idle)), "{events:?}");
            assert!(bench.codec.stop.is_none());
        }
        // A stop that gets through is confirmed without a word.
        bench.command(Command::Enable).unwrap();
        bench.run(0.2);
        bench.take_events();
        bench.command(Command::Disable).unwrap();
        bench.run(1.0);
        assert!(!bench.drive.is_enabled());
        assert!(!bench.take_events().iter().any(|e| matches!(e, Event::Refused(_))));
    }

    #[test]
    fn numbers_never_use_exponents() {
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(10.0), "10");
        assert_eq!(number(1.0e-7), "0.0000001");
        assert_eq!(number(123456789.0), "123456789");
        assert_eq!(number(-0.000_34), "-0.00034");
        assert!(!number(1e30).contains('e'));
    }

    /// The codec against the emulated ODrive and the simulated motor, in memory.
    struct Bench {
        codec: ODriveCodec,
        device: crate::sim::device::odrive::ODriveDevice,
        drive: crate::sim::SimDrive,
        ms: u64,
        polling: bool,
        /// This many stop lines from the codec are lost on the way to the drive.
        lose_stops: u32,
        /// Everything the codec sent.
        sent: Vec<u8>,
        events: Vec<Event>,
        samples: Vec<Sample>,
    }

    impl Bench {
        fn new(checksum: bool) -> Self {
            let mut bench = Bench {
                codec: ODriveCodec::new(0, checksum),
                device: crate::sim::device::odrive::ODriveDevice::new(),
                drive: crate::sim::SimDrive::new(&crate::sim::SimConfig::default()),
                ms: 0,
                polling: true,
                lose_stops: 0,
                sent: Vec::new(),
                events: Vec::new(),
                samples: Vec::new(),
            };
            let mut out = CodecOut::new();
            bench.codec.start(0.0, &mut out);
            bench.exchange(out);
            bench
        }

        fn now(&self) -> f64 {
            self.ms as f64 / 1000.0
        }

        /// Carries bytes both ways until the link is quiet.
        fn exchange(&mut self, mut out: CodecOut) {
            use crate::sim::device::Device;
            for _ in 0..1000 {
                self.events.append(&mut out.events);
                self.samples.append(&mut out.samples);
                if out.tx.is_empty() {
                    return;
                }
                let mut tx = std::mem::take(&mut out.tx);
                self.sent.extend_from_slice(&tx);
                let stop = b"w axis0.requested_state 1\n";
                if self.lose_stops > 0
                    && let Some(at) = tx.windows(stop.len()).position(|w| w == stop)
                {
                    tx.drain(at..at + stop.len());
                    self.lose_stops -= 1;
                }
                let mut reply = Vec::new();
                let now = self.now();
                self.device.receive(&tx, now, &mut self.drive, &mut reply);
                self.codec.feed(&reply, now, &mut out);
            }
            panic!("the link never went quiet");
        }

        fn run(&mut self, seconds: f64) {
            use crate::sim::device::Device;
            let mut frames = Vec::new();
            for _ in 0..(seconds * 1000.0).round() as u64 {
                frames.clear();
                self.drive.advance(0.001, &mut frames);
                self.ms += 1;
                let now = self.now();
                if let Some(&frame) = frames.last() {
                    self.device.tick(now, &mut self.drive, &frame, &mut Vec::new());
                }
                if self.polling && self.ms.is_multiple_of(10) {
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
            self.events.iter().rev().find_map(|e| match e {
                Event::State(state) => Some(state.clone()),
                _ => None,
            })
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

    #[test]
    fn codec_against_emulated_odrive() {
        let mut bench = Bench::new(false);
        bench.run(0.3);
        let events = bench.take_events();
        assert!(events.contains(&Event::State(DriveState::Idle)), "{events:?}");
        assert!(events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }), "{events:?}");
        assert!(
            events.contains(&Event::Identity(
                "ODrive hardware 3.6-56V, firmware 0.5.6, serial number 357651236".into()
            )),
            "{events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::Log(t) if t.contains("unexpected") || t.contains("no reply")))
        );
        assert!((bench.mean(SIG_VOLTAGE, 0.0) - 24.0).abs() < 0.5);
        assert!((bench.mean(SIG_TEMPERATURE, 0.0) - 25.0).abs() < 1.0);
        // `f` and Iq run once per poll, the slow reads in turn.
        let speed_count = bench.samples.iter().filter(|s| s.signal == SIG_SPEED).count();
        assert!(speed_count >= 25, "{speed_count}");

        // Enable, speed step to 600 rpm.
        bench.command(Command::Enable).unwrap();
        bench.run(0.1);
        assert_eq!(bench.last_state(), Some(DriveState::Enabled));
        bench.command(Command::SetMode(ControlMode::Speed)).unwrap();
        bench.run(0.05);
        assert!(bench.take_events().contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }));
        bench.command(Command::SetSetpoint(ControlMode::Speed, 600.0)).unwrap();
        let step_s = bench.now();
        bench.run(1.0);
        let speed = bench.mean(SIG_SPEED, step_s + 0.7);
        assert!((speed - 600.0).abs() < 0.03 * 600.0, "{speed}");
        assert!(bench.drive.is_enabled());

        // A gain round-trips; a limit converts rpm ↔ turn/s.
        bench.take_events();
        bench.command(Command::WriteParam("vel_gain".into(), 0.2)).unwrap();
        bench.command(Command::ReadParam("vel_gain".into())).unwrap();
        bench.command(Command::WriteParam("velocity_limit_rpm".into(), 3000.0)).unwrap();
        bench.run(0.1);
        let events = bench.take_events();
        assert!(events.contains(&Event::ParamWritten { key: "vel_gain".into(), value: 0.2 }), "{events:?}");
        assert!(events.contains(&Event::ParamValue { key: "vel_gain".into(), value: 0.2 }), "{events:?}");
        assert!(events.contains(&Event::ParamWritten { key: "velocity_limit_rpm".into(), value: 3000.0 }));
        bench.command(Command::ReadAllParams).unwrap();
        bench.run(0.2);
        let values = bench.take_events().iter().filter(|e| matches!(e, Event::ParamValue { .. })).count();
        assert_eq!(values, PARAMS.len());
        // Above vel_limit: the drive clamps, the codec says so.
        bench.command(Command::SetSetpoint(ControlMode::Speed, 3600.0)).unwrap();
        assert!(
            bench
                .take_events()
                .iter()
                .any(|e| matches!(e, Event::Log(t) if t.contains("vel_limit = 50 turn/s")))
        );

        // E-stop disables.
        let mut out = CodecOut::new();
        bench.codec.estop(bench.now(), &mut out);
        bench.exchange(out);
        bench.run(0.1);
        assert!(!bench.drive.is_enabled());
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
        bench.run(1.0);

        // Position mode starts at the present position and moves on command.
        bench.command(Command::Enable).unwrap();
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
        assert!((bench.mean(SIG_POSITION, move_s + 0.9) - (start + 2.0)).abs() < 0.05);

        // Current mode converts A to N·m through the torque constant.
        bench.command(Command::SetMode(ControlMode::Current)).unwrap();
        bench.run(0.05);
        bench.command(Command::SetSetpoint(ControlMode::Current, 0.5)).unwrap();
        let current_s = bench.now();
        bench.run(0.05);
        assert!((bench.mean(SIG_CURRENT, current_s + 0.02) - 0.5).abs() < 0.1);
        bench.command(Command::Disable).unwrap();
        bench.run(0.1);
        assert_eq!(bench.last_state(), Some(DriveState::Idle));

        // A trip is reported with its decoded text, and cleared.
        bench.drive.write_param("overcurrent_trip_a", 0.3).unwrap();
        bench.command(Command::SetMode(ControlMode::Speed)).unwrap();
        bench.command(Command::Enable).unwrap();
        bench.command(Command::SetSetpoint(ControlMode::Speed, 1200.0)).unwrap();
        bench.run(0.3);
        match bench.last_state() {
            Some(DriveState::Fault(text)) => {
                assert!(text.contains("CURRENT_LIMIT_VIOLATION") && text.contains("MOTOR_FAILED"), "{text}")
            }
            other => panic!("expected a fault, got {other:?}"),
        }
        bench.drive.write_param("overcurrent_trip_a", 20.0).unwrap();
        bench.command(Command::ResetFaults).unwrap();
        bench.run(0.2);
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
    }

    #[test]
    fn watchdog_is_fed_while_connected_and_trips_when_the_host_stops() {
        let mut bench = Bench::new(true);
        bench.run(0.3);
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
        bench.take_events();
        bench.command(Command::WriteParam("watchdog_enable".into(), 1.0)).unwrap();
        bench.run(2.0);
        let events = bench.take_events();
        assert!(
            events.contains(&Event::ParamWritten { key: "watchdog_enable".into(), value: 1.0 }),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| matches!(e, Event::State(_))), "{events:?}");
        bench.command(Command::Enable).unwrap();
        bench.run(1.0);
        assert_eq!(bench.last_state(), Some(DriveState::Enabled));
        // The host freezes: the drive stops on its own.
        bench.polling = false;
        bench.run(1.5);
        assert!(!bench.drive.is_enabled());
        bench.polling = true;
        bench.run(0.3);
        match bench.last_state() {
            Some(DriveState::Fault(text)) => assert!(text.contains("WATCHDOG_TIMER_EXPIRED"), "{text}"),
            other => panic!("expected a watchdog fault, got {other:?}"),
        }
        bench.command(Command::ResetFaults).unwrap();
        bench.run(0.5);
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
        // Zero timeout with the watchdog on is refused before it reaches the drive.
        let err = bench.command(Command::WriteParam("watchdog_timeout_s".into(), 0.0)).unwrap_err();
        assert!(err.to_string().contains("watchdog"), "{err}");
    }

    /// Property values a drive holds, answering the codec's requests one at a time; writes
    /// change them.
    struct FakeDrive {
        values: std::collections::HashMap<String, String>,
    }

    impl FakeDrive {
        fn new(enable_watchdog: &str, watchdog_timeout: &str) -> Self {
            let mut values = std::collections::HashMap::new();
            values.insert("axis0.current_state".to_owned(), "1".to_owned());
            values.insert("axis0.config.enable_watchdog".to_owned(), enable_watchdog.to_owned());
            values.insert("axis0.config.watchdog_timeout".to_owned(), watchdog_timeout.to_owned());
            FakeDrive { values }
        }

        /// Answers the request in flight; returns it, or `None` if nothing was in flight.
        fn answer(&mut self, codec: &mut ODriveCodec, now_s: f64, out: &mut CodecOut) -> Option<Request> {
            let request = codec.in_flight.as_ref()?.req.clone();
            let reply = match &request {
                Request::Feedback => "0.000000 0.000000".to_owned(),
                Request::Read { path, .. } => {
                    self.values.get(path).cloned().unwrap_or_else(|| "0".to_owned())
                }
                Request::Write { line, path, .. } => {
                    let value = line.split_whitespace().nth(2).unwrap_or("").to_owned();
                    self.values.insert(path.clone(), value.clone());
                    value
                }
                Request::Console { .. } | Request::ArmWatchdog { .. } => "0".to_owned(),
            };
            codec.feed(format!("{reply}\r\n").as_bytes(), now_s, out);
            Some(request)
        }
    }

    /// Bytes the codec sent in reply to each request, keyed by the request's line.
    type Sent = Vec<(String, Vec<u8>)>;

    /// Starts a codec against `drive`, answering everything until the start's requests are
    /// done. Returns the codec, the bytes sent in reply to each request (in order, keyed by
    /// the request's first line) and the events.
    fn start_against(
        drive: &mut FakeDrive,
        before_replies: impl FnOnce(&mut ODriveCodec, &mut CodecOut),
    ) -> (ODriveCodec, Sent, Vec<Event>) {
        let mut codec = ODriveCodec::new(0, false);
        let mut out = CodecOut::new();
        codec.start(0.0, &mut out);
        before_replies(&mut codec, &mut out);
        let mut events = std::mem::take(&mut out.events);
        let mut sent = Vec::new();
        out.clear();
        codec.poll(SETTLE_S + 0.01, &mut out);
        sent.push(("(poll)".to_owned(), std::mem::take(&mut out.tx)));
        for _ in 0..100 {
            if codec.queue.is_empty() && codec.in_flight.is_none() {
                break;
            }
            let Some(request) = drive.answer(&mut codec, SETTLE_S + 0.02, &mut out) else {
                break;
            };
            let what = match request {
                Request::Read { path, .. } => format!("r {path}"),
                Request::Write { line, .. } => line,
                other => format!("{other:?}"),
            };
            sent.push((what, std::mem::take(&mut out.tx)));
            events.append(&mut out.events);
        }
        (codec, sent, events)
    }

    fn sent_after<'a>(sent: &'a [(String, Vec<u8>)], request: &str) -> &'a [u8] {
        let (_, bytes) =
            sent.iter().find(|(what, _)| what == request).unwrap_or_else(|| panic!("no {request}"));
        bytes
    }

    fn all_sent(sent: &[(String, Vec<u8>)]) -> String {
        sent.iter().map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned()).collect()
    }

    fn stop_bytes(codec: &mut ODriveCodec) -> Vec<u8> {
        let mut out = CodecOut::new();
        codec.stop(1.0, &mut out);
        out.tx
    }

    fn logs(events: &[Event]) -> Vec<&str> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Log(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn start_arms_a_disabled_watchdog_feeding_it_before_enabling_it() {
        let mut drive = FakeDrive::new("0", "1.000000");
        let (mut codec, sent, events) = start_against(&mut drive, |_, _| {});
        // The watchdog settings are read first; the timeout's reply brings the arming.
        let order: Vec<&str> = sent.iter().map(|(what, _)| what.as_str()).collect();
        let enable_read = order.iter().position(|w| *w == "r axis0.config.enable_watchdog").unwrap();
        assert_eq!(order[enable_read + 1], "r axis0.config.watchdog_timeout", "{order:?}");
        assert_eq!(
            sent_after(&sent, "r axis0.config.watchdog_timeout"),
            b"u 0\nw axis0.config.enable_watchdog 1\nr axis0.config.enable_watchdog\n"
        );
        assert_eq!(drive.values["axis0.config.enable_watchdog"], "1");
        assert_eq!(drive.values["axis0.config.watchdog_timeout"], "1.000000", "a sane timeout is kept");
        assert!(
            logs(&events).contains(
                &"watchdog armed: 1.0 s; drivebench feeds it while connected and disables it again on disconnect"
            ),
            "{events:?}"
        );
        // Reported as read, not as a setting to keep in the project.
        assert!(
            events.contains(&Event::ParamValue { key: "watchdog_enable".into(), value: 1.0 }),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| matches!(e, Event::ParamWritten { .. })), "{events:?}");
        assert!(!all_sent(&sent).contains("\nss"));
        // Fed from then on, while idle, every quarter of the timeout.
        let mut out = CodecOut::new();
        let mut feeds = 0;
        for step in 1..=200 {
            let now = 1.0 + f64::from(step) * 0.01;
            codec.poll(now, &mut out);
            feeds += String::from_utf8_lossy(&out.tx).matches("u 0\n").count();
            out.tx.clear();
            while drive.answer(&mut codec, now, &mut out).is_some() {
                out.tx.clear();
            }
        }
        assert!((7..=9).contains(&feeds), "{feeds} feeds in 2 s");
        // A clean stop: the disable first, then the watchdog off again; nothing saved.
        assert_eq!(stop_bytes(&mut codec), b"w axis0.requested_state 1\nw axis0.config.enable_watchdog 0\n");
        assert_eq!(stop_bytes(&mut codec), b"w axis0.requested_state 1\n", "disarmed once");
    }

    #[test]
    fn start_arms_with_checksums_too() {
        let mut codec = started(true);
        codec.known.watchdog_enabled = Some(false);
        codec.known.watchdog_timeout = Some(1.0);
        codec.queue.push_back(Request::ArmWatchdog { timeout_written: false });
        let mut out = CodecOut::new();
        codec.pump(1.0, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out.tx),
            "u 0 *69\nw axis0.config.enable_watchdog 1 *4\nr axis0.config.enable_watchdog *16\n"
        );
        codec.feed(b"1*49\r\n", 1.0, &mut out);
        assert_eq!(codec.known.watchdog_enabled, Some(true));
        assert_eq!(
            String::from_utf8_lossy(&stop_bytes(&mut codec)),
            "w axis0.requested_state 1 *35\nw axis0.config.enable_watchdog 0 *5\n"
        );
    }

    #[test]
    fn an_unusable_timeout_is_replaced_to_arm_and_put_back_on_stop() {
        for (timeout, kept) in [
            ("0.000000", false),
            ("0.100000", false),
            ("30.000000", false),
            ("0.200000", true),
            ("0.500000", true),
            ("2.000000", true),
        ] {
            let mut drive = FakeDrive::new("0", timeout);
            let (mut codec, sent, events) = start_against(&mut drive, |_, _| {});
            let stop = String::from_utf8_lossy(&stop_bytes(&mut codec)).into_owned();
            if kept {
                assert_eq!(drive.values["axis0.config.watchdog_timeout"], timeout);
                assert_eq!(
                    stop, "w axis0.requested_state 1\nw axis0.config.enable_watchdog 0\n",
                    "{timeout}"
                );
                continue;
            }
            // The timeout first, confirmed; then the feed and the enable.
            assert_eq!(
                sent_after(&sent, "r axis0.config.watchdog_timeout"),
                b"w axis0.config.watchdog_timeout 1\nr axis0.config.watchdog_timeout\n",
                "{timeout}"
            );
            assert_eq!(
                sent_after(&sent, "w axis0.config.watchdog_timeout 1"),
                b"u 0\nw axis0.config.enable_watchdog 1\nr axis0.config.enable_watchdog\n",
                "{timeout}"
            );
            assert_eq!(drive.values["axis0.config.enable_watchdog"], "1");
            let had = seconds(timeout.parse().unwrap());
            let armed = format!(
                "watchdog armed: 1.0 s (the drive had {had} s); drivebench feeds it while connected and disables it \
                 again on disconnect"
            );
            assert!(logs(&events).contains(&armed.as_str()), "{events:?}");
            // Off first, then the drive's own timeout back (a zero timeout with the watchdog
            // on would trip at once).
            let old = number(timeout.parse().unwrap());
            assert_eq!(
                stop,
                format!(
                    "w axis0.requested_state 1\nw axis0.config.enable_watchdog 0\nw axis0.config.watchdog_timeout {old}\n"
                )
            );
        }
        // A timeout the drive refuses to take: not armed, said so.
        let mut codec = started(false);
        codec.known.watchdog_enabled = Some(false);
        codec.known.watchdog_timeout = Some(0.0);
        codec.queue.push_back(Request::ArmWatchdog { timeout_written: false });
        let mut out = CodecOut::new();
        codec.pump(1.0, &mut out);
        codec.feed(b"0.000000\r\n", 1.0, &mut out);
        assert!(!String::from_utf8_lossy(&out.tx).contains("enable_watchdog 1"), "{out:?}");
        assert!(logs(&out.events).iter().any(|l| l.starts_with("watchdog not armed")), "{out:?}");
        assert_eq!(stop_bytes(&mut codec), b"w axis0.requested_state 1\n");
    }

    #[test]
    fn a_watchdog_the_user_sets_or_the_drive_has_on_is_left_alone() {
        // Set in the project (written right after connect): no arming over it, not undone.
        for value in [1.0, 0.0] {
            let mut drive = FakeDrive::new("0", "1.000000");
            let (mut codec, sent, events) = start_against(&mut drive, |codec, out| {
                codec.command(&Command::WriteParam("watchdog_enable".into(), value), 0.0, out).unwrap();
            });
            let text = all_sent(&sent);
            assert_eq!(text.matches("w axis0.config.enable_watchdog").count(), 1, "{text}");
            assert!(
                events.contains(&Event::ParamWritten { key: "watchdog_enable".into(), value }),
                "{events:?}"
            );
            assert_eq!(stop_bytes(&mut codec), b"w axis0.requested_state 1\n", "{value}");
        }
        // Switched off in the parameter panel after drivebench armed it: stays off.
        let mut drive = FakeDrive::new("0", "1.000000");
        let (mut codec, _, _) = start_against(&mut drive, |_, _| {});
        assert_eq!(drive.values["axis0.config.enable_watchdog"], "1");
        let mut out = CodecOut::new();
        codec.command(&Command::WriteParam("watchdog_enable".into(), 0.0), 1.0, &mut out).unwrap();
        assert_eq!(out.tx, b"w axis0.config.enable_watchdog 0\nr axis0.config.enable_watchdog\n");
        drive.answer(&mut codec, 1.0, &mut out);
        assert!(
            logs(&out.events).contains(&"watchdog disabled by hand; drivebench leaves it so on disconnect"),
            "{out:?}"
        );
        assert_eq!(stop_bytes(&mut codec), b"w axis0.requested_state 1\n");
        // From the console, the same.
        let mut drive = FakeDrive::new("0", "1.000000");
        let (mut codec, _, _) = start_against(&mut drive, |_, _| {});
        let mut out = CodecOut::new();
        codec.raw("w axis0.config.enable_watchdog 1", 1.0, &mut out);
        assert_eq!(stop_bytes(&mut codec), b"w axis0.requested_state 1\n");
        // On in the drive already: fed, left on.
        let mut drive = FakeDrive::new("1", "0.500000");
        let (mut codec, sent, events) = start_against(&mut drive, |_, _| {});
        assert!(!all_sent(&sent).contains("w axis0.config"), "{}", all_sent(&sent));
        assert!(
            logs(&events).contains(
                &"watchdog enabled on the drive with a 0.5 s timeout; drivebench feeds it while connected and \
                  leaves it enabled"
            ),
            "{events:?}"
        );
        assert_eq!(codec.feed_period(), 0.125);
        assert_eq!(stop_bytes(&mut codec), b"w axis0.requested_state 1\n");
    }

    #[test]
    fn a_timeout_the_user_sets_is_armed_with_and_never_replaced() {
        // Queued before the arming's turn: the arming waits for it and keeps it.
        let mut drive = FakeDrive::new("0", "0.000000");
        let (mut codec, sent, events) = start_against(&mut drive, |codec, out| {
            codec.command(&Command::WriteParam("watchdog_timeout_s".into(), 0.1), 0.0, out).unwrap();
        });
        let text = all_sent(&sent);
        let user = text.find("w axis0.config.watchdog_timeout 0.1\n").expect(&text);
        let enable = text.find("u 0\nw axis0.config.enable_watchdog 1\n").expect(&text);
        assert!(user < enable, "{text}");
        assert_eq!(text.matches("w axis0.config.watchdog_timeout").count(), 1, "{text}");
        assert!(logs(&events).iter().any(|l| l.starts_with("watchdog armed: 0.1 s;")), "{events:?}");
        assert_eq!(stop_bytes(&mut codec), b"w axis0.requested_state 1\nw axis0.config.enable_watchdog 0\n");
        // A zero timeout of the user's: not armed (it would trip at once), said so.
        let mut drive = FakeDrive::new("0", "1.000000");
        let (mut codec, sent, events) = start_against(&mut drive, |codec, out| {
            codec.command(&Command::WriteParam("watchdog_timeout_s".into(), 0.0), 0.0, out).unwrap();
        });
        assert!(!all_sent(&sent).contains("enable_watchdog 1"), "{}", all_sent(&sent));
        assert!(logs(&events).iter().any(|l| l.starts_with("watchdog not armed")), "{events:?}");
        assert_eq!(stop_bytes(&mut codec), b"w axis0.requested_state 1\n");
    }

    #[test]
    fn an_armed_watchdog_stays_quiet_in_idle_and_is_disarmed_on_stop() {
        use crate::sim::device::Device;
        let read = |bench: &mut Bench, path: &str| -> String {
            let mut reply = Vec::new();
            let now = bench.now();
            bench.device.receive(format!("r {path}\n").as_bytes(), now, &mut bench.drive, &mut reply);
            String::from_utf8_lossy(&reply).trim().to_owned()
        };
        let mut bench = Bench::new(false);
        bench.run(0.3);
        assert_eq!(read(&mut bench, "axis0.config.enable_watchdog"), "1");
        // Three timeouts standing idle: fed all along, nothing trips.
        bench.run(3.0);
        let events = bench.take_events();
        assert!(
            logs(&events).contains(
                &"watchdog armed: 1.0 s; drivebench feeds it while connected and disables it again on disconnect"
            ),
            "{events:?}"
        );
        let states: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::State(_))).collect();
        assert_eq!(states, vec![&Event::State(DriveState::Idle)]);
        assert_eq!(read(&mut bench, "axis0.error"), "0");
        // Spin.
        bench.command(Command::SetMode(ControlMode::Speed)).unwrap();
        bench.command(Command::Enable).unwrap();
        bench.command(Command::SetSetpoint(ControlMode::Speed, 600.0)).unwrap();
        let step_s = bench.now();
        bench.run(1.5);
        assert!((bench.mean(SIG_SPEED, step_s + 1.0) - 600.0).abs() < 30.0);
        assert_eq!(bench.last_state(), Some(DriveState::Enabled));
        // A clean stop: the motor off, the watchdog off, nothing saved.
        let mut out = CodecOut::new();
        bench.codec.stop(bench.now(), &mut out);
        bench.exchange(out);
        bench.polling = false;
        bench.run(2.0);
        assert!(!bench.drive.is_enabled());
        assert_eq!(read(&mut bench, "axis0.config.enable_watchdog"), "0");
        assert_eq!(read(&mut bench, "axis0.error"), "0", "no trip after the host left");
        assert!(!String::from_utf8_lossy(&bench.sent).lines().any(|l| l.starts_with("ss")));
    }

    #[test]
    fn a_frozen_host_trips_the_armed_watchdog_and_the_fault_resets() {
        let mut bench = Bench::new(false);
        bench.run(0.3);
        bench.command(Command::SetMode(ControlMode::Speed)).unwrap();
        bench.command(Command::Enable).unwrap();
        bench.command(Command::SetSetpoint(ControlMode::Speed, 600.0)).unwrap();
        bench.run(1.0);
        assert!(bench.drive.is_enabled());
        // The host stalls: no feed for longer than the 1 s timeout.
        bench.polling = false;
        bench.run(1.3);
        assert!(!bench.drive.is_enabled(), "the watchdog stopped the motor");
        bench.polling = true;
        bench.run(0.3);
        match bench.last_state() {
            Some(DriveState::Fault(text)) => assert!(text.contains("WATCHDOG_TIMER_EXPIRED"), "{text}"),
            other => panic!("expected a watchdog fault, got {other:?}"),
        }
        bench.command(Command::ResetFaults).unwrap();
        bench.run(0.3);
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
        // Fed again: it does not come back while idle.
        bench.take_events();
        bench.run(2.5);
        assert!(!bench.take_events().iter().any(|e| matches!(e, Event::State(_))));
        bench.command(Command::Enable).unwrap();
        bench.run(0.3);
        assert_eq!(bench.last_state(), Some(DriveState::Enabled));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..20),
            checksum in any::<bool>(),
        ) {
            let mut codec = ODriveCodec::new(0, checksum);
            let mut out = CodecOut::new();
            codec.start(0.0, &mut out);
            let mut now = 0.0;
            for chunk in chunks {
                now += 0.013;
                codec.feed(&chunk, now, &mut out);
                codec.poll(now, &mut out);
            }
            for sample in &out.samples {
                prop_assert!(sample.value.is_finite());
            }
            prop_assert!(codec.rx.buf.len() <= MAX_REPLY_LEN);
            prop_assert!(codec.queue.len() < 1000);
        }

        #[test]
        fn raw_intent_agrees_with_the_emulated_firmware(
            segments in prop::collection::vec(
                prop_oneof![
                    "[vcpqt][ \t\u{0b}\u{0c}]{0,2}[-+]?[0-9]{1,2}[ \t\u{0b}\u{0c}]{1,2}[-+]?[0-9]{1,3}(\\.[0-9])?( [-+]?[0-9])?( [0-9])?",
                    "[vcpqt] -(0|1|4294967295|4294967296) [0-9]{1,3}",
                    "w[ \u{0b}]{0,2}axis[01]\\.(controller\\.input_(vel|pos|torque)|controller\\.config\\.vel_limit|motor\\.config\\.(current_lim|torque_lim))[ \t\u{0b}\u{0c}]{1,2}[-+]?[0-9]{1,3}(\\.[0-9])?",
                    "esl [01] [-0-9]{1,5}",
                    "[ \t]?[rfus][a-z ]{0,4}",
                    "[a-z ]{0,6}",
                ],
                1..4,
            ),
            separators in prop::collection::vec("[!\r\n]|( ?\\*[0-9]{1,3})?!", 3),
            checksum in any::<bool>(),
        ) {
            let mut line = String::new();
            for (index, segment) in segments.iter().enumerate() {
                if index > 0 {
                    line.push_str(&separators[index - 1]);
                }
                line.push_str(segment);
            }
            check_against_emulator(&line, checksum);
        }

        #[test]
        fn console_text_never_panics(
            lines in prop::collection::vec(
                prop_oneof!["\\PC{0,40}", "[vcpqtwrfise] ?[0-9 .\\-a-z*;]{0,30}", "w axis[01]\\.[a-z_.]{0,40} [-0-9.a-z]{0,8}"],
                0..10,
            ),
            checksum in any::<bool>(),
        ) {
            let mut codec = ODriveCodec::new(1, checksum);
            let mut out = CodecOut::new();
            codec.start(0.0, &mut out);
            codec.known.kt = Some(0.04);
            let mut now = 0.0;
            for line in lines {
                now += 0.07;
                let _ = codec.raw_intent(&line);
                codec.raw(&line, now, &mut out);
                codec.poll(now, &mut out);
            }
        }
    }
}
