//! The drive domain shared by every layer: commands, events, samples, states, parameter
//! catalogues and the limit checks that guard every write before it leaves the app.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Which loop the user commands directly. The cascade below it stays closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ControlMode {
    /// Torque-producing current in amperes.
    Current,
    /// Mechanical speed in rpm.
    #[default]
    Speed,
    /// Mechanical position in revolutions.
    Position,
}

impl ControlMode {
    pub const ALL: [ControlMode; 3] = [ControlMode::Current, ControlMode::Speed, ControlMode::Position];

    pub fn label(self) -> &'static str {
        match self {
            ControlMode::Current => "Current",
            ControlMode::Speed => "Speed",
            ControlMode::Position => "Position",
        }
    }

    /// Unit of the setpoint in this mode.
    pub fn unit(self) -> &'static str {
        match self {
            ControlMode::Current => "A",
            ControlMode::Speed => "rpm",
            ControlMode::Position => "rev",
        }
    }

    /// Name of the command-line spelling (`current`, `speed`, `position`).
    pub fn cli_name(self) -> &'static str {
        match self {
            ControlMode::Current => "current",
            ControlMode::Speed => "speed",
            ControlMode::Position => "position",
        }
    }
}

/// A command from the UI or the command line to one drive's worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Connect,
    Disconnect,
    Enable,
    Disable,
    /// Fastest stop the drive offers; disables the power stage.
    EStop,
    ResetFaults,
    SetMode(ControlMode),
    /// A setpoint for the given mode, in its unit (A, rpm or rev). It was checked against that
    /// mode's limits, so a drive in another mode refuses it.
    SetSetpoint(ControlMode, f64),
    ReadParam(String),
    WriteParam(String, f64),
    /// Read every parameter in the catalogue.
    ReadAllParams,
    /// A line typed into a serial drive's console, sent as text in the protocol's framing.
    /// The bench checks what the codec recognises in it against the limits first.
    Raw(String),
}

impl Command {
    /// The command in words, for messages.
    pub fn describe(&self) -> String {
        match self {
            Command::SetSetpoint(mode, v) => {
                format!("{} setpoint {v} {}", mode.label().to_lowercase(), mode.unit())
            }
            Command::WriteParam(k, v) => format!("write {k} = {v}"),
            Command::ReadParam(k) => format!("read {k}"),
            Command::SetMode(m) => format!("{} mode", m.label().to_lowercase()),
            Command::Raw(t) => format!("console line `{t}`"),
            Command::ResetFaults => "fault reset".into(),
            Command::ReadAllParams => "read all parameters".into(),
            Command::EStop => "E-STOP".into(),
            other => format!("{other:?}").to_lowercase(),
        }
    }
}

/// What the UI shows for a drive.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DriveState {
    #[default]
    Disconnected,
    Connecting,
    /// Connected, power stage off.
    Idle,
    /// Connected, power stage on, following setpoints.
    Enabled,
    /// A latched fault (drive-side) or a failed worker; the text says which.
    Fault(String),
    /// The link went away (port gone, no answer) at session time `since_s`; the worker
    /// reconnects by itself with backoff, and never re-enables the drive.
    LinkLost {
        since_s: f64,
        reason: String,
    },
}

impl DriveState {
    pub fn is_connected(&self) -> bool {
        matches!(self, DriveState::Idle | DriveState::Enabled | DriveState::Fault(_))
    }

    pub fn label(&self) -> String {
        match self {
            DriveState::Disconnected => "disconnected".into(),
            DriveState::Connecting => "connecting".into(),
            DriveState::Idle => "idle".into(),
            DriveState::Enabled => "enabled".into(),
            DriveState::Fault(text) => format!("fault: {text}"),
            DriveState::LinkLost { since_s, reason } => format!("link lost at t = {since_s:.1} s: {reason}"),
        }
    }
}

/// Describes one telemetry signal a drive produces.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSpec {
    /// Canonical name with its unit, e.g. `speed_rpm`.
    pub name: String,
    pub unit: String,
}

impl SignalSpec {
    pub fn new(name: &str, unit: &str) -> Self {
        SignalSpec { name: name.to_owned(), unit: unit.to_owned() }
    }
}

/// One value of one signal. `signal` indexes the drive's announced [`SignalSpec`] list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the session start (one clock for every drive).
    pub t_s: f64,
    pub signal: u16,
    pub value: f64,
}

/// One entry of a drive's parameter catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub key: String,
    pub label: String,
    pub unit: String,
    pub min: f64,
    pub max: f64,
    pub read_only: bool,
    /// Tooltip text: what the parameter does.
    pub help: String,
}

impl ParamSpec {
    pub fn new(key: &str, label: &str, unit: &str, min: f64, max: f64, help: &str) -> Self {
        ParamSpec {
            key: key.to_owned(),
            label: label.to_owned(),
            unit: unit.to_owned(),
            min,
            max,
            read_only: false,
            help: help.to_owned(),
        }
    }

    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Checks a value against the catalogue range.
    pub fn check(&self, value: f64) -> Result<(), LimitError> {
        if self.read_only {
            return Err(LimitError::ReadOnly { key: self.key.clone() });
        }
        if !value.is_finite() {
            return Err(LimitError::NotFinite { what: self.key.clone() });
        }
        if value < self.min || value > self.max {
            return Err(LimitError::OutOfRange {
                what: self.key.clone(),
                value,
                min: self.min,
                max: self.max,
                unit: self.unit.clone(),
            });
        }
        Ok(())
    }
}

/// Why a command was refused before it was sent.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LimitError {
    #[error("{what} = {value} {unit} is outside the allowed range {min} … {max} {unit}")]
    OutOfRange { what: String, value: f64, min: f64, max: f64, unit: String },
    #[error("{what}: the value is not a finite number")]
    NotFinite { what: String },
    #[error("{key} is read-only")]
    ReadOnly { key: String },
    #[error("unknown parameter `{key}`")]
    UnknownParam { key: String },
}

/// The project's safety envelope for one drive. Every setpoint and parameter write is
/// checked against it before it is sent to the drive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest current setpoint magnitude, and the ceiling for current-limit parameters.
    pub max_current_a: f64,
    /// Largest speed setpoint magnitude, and the ceiling for speed-limit parameters.
    pub max_speed_rpm: f64,
    /// Allowed position setpoints.
    pub min_position_rev: f64,
    pub max_position_rev: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_current_a: 8.0,
            max_speed_rpm: 4000.0,
            min_position_rev: -100.0,
            max_position_rev: 100.0,
        }
    }
}

impl Limits {
    /// The setpoint range allowed in a mode.
    pub fn setpoint_range(&self, mode: ControlMode) -> (f64, f64) {
        match mode {
            ControlMode::Current => (-self.max_current_a, self.max_current_a),
            ControlMode::Speed => (-self.max_speed_rpm, self.max_speed_rpm),
            ControlMode::Position => (self.min_position_rev, self.max_position_rev),
        }
    }

    pub fn check_setpoint(&self, mode: ControlMode, value: f64) -> Result<(), LimitError> {
        let what = format!("{} setpoint", mode.label().to_lowercase());
        if !value.is_finite() {
            return Err(LimitError::NotFinite { what });
        }
        let (min, max) = self.setpoint_range(mode);
        if value < min || value > max {
            return Err(LimitError::OutOfRange { what, value, min, max, unit: mode.unit().to_owned() });
        }
        Ok(())
    }

    /// Checks a parameter write against its catalogue entry and against the project
    /// limits: a parameter whose unit is a current or a speed may not exceed them.
    /// The project ceiling for a drive-side limit parameter (a key naming a `limit` or a
    /// `max`): a current limit may not exceed `max_current_a`, a speed limit `max_speed_rpm`.
    /// Other parameters have none.
    pub fn ceiling_for(&self, spec: &ParamSpec) -> Option<f64> {
        let is_limit = spec.key.contains("limit") || spec.key.contains("max");
        match (spec.unit.as_str(), is_limit) {
            ("A", true) => Some(self.max_current_a),
            ("rpm", true) => Some(self.max_speed_rpm),
            _ => None,
        }
    }

    pub fn check_param(&self, spec: &ParamSpec, value: f64) -> Result<(), LimitError> {
        spec.check(value)?;
        if let Some(ceiling) = self.ceiling_for(spec)
            && value.abs() > ceiling
        {
            return Err(LimitError::OutOfRange {
                what: format!("{} (project limit)", spec.key),
                value,
                min: spec.min.max(-ceiling),
                max: ceiling,
                unit: spec.unit.clone(),
            });
        }
        Ok(())
    }
}

/// What a worker reports to the UI or the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    State(DriveState),
    /// The signal list; sample indices refer to it. Sent on connect.
    Signals(Vec<SignalSpec>),
    /// The parameter catalogue. Sent on connect.
    Params(Vec<ParamSpec>),
    Samples(Vec<Sample>),
    /// A parameter's value as read from the drive.
    ParamValue {
        key: String,
        value: f64,
    },
    /// A write the drive accepted, with the value it now holds (it may have rounded it).
    ParamWritten {
        key: String,
        value: f64,
    },
    /// The active mode and setpoint as the drive holds them.
    Mode {
        mode: ControlMode,
        setpoint: f64,
    },
    /// A command the worker refused or that failed; the drive keeps running.
    Refused(String),
    /// Samples dropped because the consumer fell behind.
    Dropped(u64),
    /// A line for the connection log.
    Log(String),
    /// Bytes that crossed the drive's link, for its console.
    Traffic(Vec<Traffic>),
    /// What the drive says it is: firmware and hardware versions, serial number.
    Identity(String),
    /// The protocol's own view of the drive's state, shown beside the state (e.g. the CiA 402
    /// state "switched on", a VESC's "timeout active").
    Status(String),
    /// The E-STOP went out: seconds from the request to the stop handed to the link (or
    /// applied to the simulated drive).
    EStopSent {
        latency_s: f64,
    },
}

/// Which way bytes went on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the drive to drivebench.
    Rx,
    /// From drivebench to the drive.
    Tx,
}

/// A chunk of bytes on a link, timed on the session clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    pub t_s: f64,
    pub dir: Direction,
    pub bytes: Vec<u8>,
}

/// A value to `digits` significant digits without trailing zeros, never in exponent form and
/// never `-0`: 3000.0000538677796 (a unit conversion's noise) prints as `3000.00005` with 9
/// digits, 1884.955566 as `1884.96` with 6.
pub fn format_significant(v: f64, digits: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { format!("{v}") };
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).clamp(0, 17) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    if s == "-0" { "0".into() } else { s.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_without_conversion_noise() {
        assert_eq!(format_significant(3000.0000538677796, 9), "3000.00005");
        assert_eq!(format_significant(3000.0000000001, 9), "3000");
        assert_eq!(format_significant(0.558505, 9), "0.558505");
        assert_eq!(format_significant(-1.5e-7, 9), "-0.00000015");
        assert_eq!(format_significant(-0.0, 9), "0");
        assert_eq!(format_significant(1234567890123.0, 9), "1234567890123");
        assert_eq!(format_significant(1884.955566, 6), "1884.96");
        assert_eq!(format_significant(-0.0000001, 6), "-0.0000001");
        assert_eq!(format_significant(f64::NAN, 6), "NaN");
    }

    #[test]
    fn setpoint_outside_limits_is_refused() {
        let limits = Limits::default();
        assert!(limits.check_setpoint(ControlMode::Speed, 3999.0).is_ok());
        let err = limits.check_setpoint(ControlMode::Speed, 4001.0).unwrap_err();
        assert!(err.to_string().contains("4001"), "{err}");
        assert!(limits.check_setpoint(ControlMode::Current, -8.5).is_err());
        assert!(limits.check_setpoint(ControlMode::Position, f64::NAN).is_err());
    }

    #[test]
    fn current_limit_param_capped_by_project() {
        let limits = Limits { max_current_a: 5.0, ..Limits::default() };
        let spec = ParamSpec::new("current_limit_a", "Current limit", "A", 0.0, 20.0, "");
        assert!(limits.check_param(&spec, 4.0).is_ok());
        let err = limits.check_param(&spec, 6.0).unwrap_err();
        assert!(err.to_string().contains("project limit"), "{err}");
        let gain = ParamSpec::new("speed_kp", "Speed Kp", "A/rpm", 0.0, 1.0, "");
        assert!(limits.check_param(&gain, 1.5).is_err());
        assert!(limits.check_param(&gain.clone().read_only(), 0.5).is_err());
    }
}
