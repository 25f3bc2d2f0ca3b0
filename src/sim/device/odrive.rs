//! ODrive ASCII protocol, device side: an ODrive v3.6-56V with firmware 0.5.6 whose axis 0
//! drives the simulated motor.
//!
//! What it models, from the 0.5.x firmware (`ascii_protocol.cpp`, fibre's `to_string` /
//! `from_string`, `axis.cpp`):
//! * lines end at `\r`, `\n` or `!`; 256 bytes without a line end are dropped up to the next
//!   one; text after `;` is ignored; an empty line is answered `unknown command` (0.5.2+);
//! * an optional ` *NN` (decimal XOR of the bytes before `*`) is verified — a mismatch drops
//!   the line silently — and makes the reply carry `*NN` too;
//! * replies are built in a 64-byte buffer exactly as `snprintf` would (a longer text is cut
//!   and loses its line end); property values in a 10-byte buffer (at most 9 characters);
//!   floats print as `%f` of the `float`, integers in decimal, bools as `0`/`1`;
//! * arguments are read the way `sscanf` reads them (`v0 1`, `10abc` and `-1` for `%u` work);
//! * a property tree of the 0.5.x paths used on a bench; reading a non-leaf path or an unknown
//!   one gives `invalid property`, writing a read-only one or an unparseable value gives
//!   `not implemented`;
//! * per axis: the IDLE ↔ CLOSED_LOOP_CONTROL state machine, the watchdog (it runs in IDLE too,
//!   a never-fed watchdog has expired, expiry sets WATCHDOG_TIMER_EXPIRED and drops to IDLE),
//!   the error bitfields, the overspeed trip, and `sc`.
//!
//! Bench configuration: axis 0 is calibrated and its settings are those of the simulated drive
//! (vel_limit = the sim's speed limit, current_lim = its current limit, gains converted from
//! its tuned loops), so it runs out of the box. The watchdog is configured with a 1 s timeout
//! but not enabled, as most benches leave it. Axis 1 has no motor and factory settings: asking
//! it for closed loop sets INVALID_STATE, as on a board with one motor connected.
//!
//! Mapping onto the simulated drive (axis 0): turn ↔ rev, turn/s ↔ rpm/60, torque (N·m) →
//! current through the configured `torque_constant`; `vel_gain`/`vel_integrator_gain`
//! (N·m per turn/s) ↔ speed Kp/Ki (A/rpm) through `torque_constant`; `pos_gain` ↔ position Kp
//! (×60); `current_control_bandwidth` sets the current PI as the firmware does (Kp = L·bw,
//! Ki = R·bw); `trap_traj` limits set the move profile. Values outside the simulator's ranges
//! are stored as written and applied clamped. The simulator always follows its move profile
//! in position mode, whatever `input_mode`; feed-forward terms and ramps are stored but not
//! applied. Its protections map to: over-current → motor CURRENT_LIMIT_VIOLATION, winding
//! over-temperature → motor MOTOR_THERMISTOR_OVER_TEMP (both with axis MOTOR_FAILED), following
//! error (which the ODrive does not have) → axis CONTROLLER_FAILED with motor CONTROLLER_FAILED.
//! Both thermistors report the simulated winding temperature. `ss` keeps the configuration and
//! reboots, `sr` reboots to the last saved one, `se` restores the bench configuration and
//! reboots; a reboot idles both axes, clears errors and restarts the position count at 0.

use crate::drive::ControlMode;
use crate::sim::device::Device;
use crate::sim::{SimDrive, SimFault, TelemetryFrame};

const AXIS_COUNT: u32 = 2;
/// Receive buffer: a line must end within this many bytes.
const RX_BUF: usize = 256;
/// Reply buffer of `respond`.
const TX_BUF: usize = 64;
/// Buffer a property value is printed into (9 characters and the NUL).
const VALUE_BUF: usize = 10;

const STATE_IDLE: i32 = 1;
const STATE_CLOSED_LOOP: i32 = 8;

const AXIS_ERROR_INVALID_STATE: u32 = 0x1;
const AXIS_ERROR_MOTOR_FAILED: u32 = 0x40;
const AXIS_ERROR_CONTROLLER_FAILED: u32 = 0x200;
const AXIS_ERROR_WATCHDOG_TIMER_EXPIRED: u32 = 0x800;
const AXIS_ERROR_HOMING_WITHOUT_ENDSTOP: u32 = 0x20000;
const MOTOR_ERROR_PHASE_RESISTANCE_OUT_OF_RANGE: u64 = 0x1;
const MOTOR_ERROR_CURRENT_LIMIT_VIOLATION: u64 = 0x1000;
const MOTOR_ERROR_MOTOR_THERMISTOR_OVER_TEMP: u64 = 0x20000;
const MOTOR_ERROR_CONTROLLER_FAILED: u64 = 0x200000;
const CONTROLLER_ERROR_OVERSPEED: u32 = 0x1;
const BOARD_ERROR_DC_BUS_UNDER_VOLTAGE: u32 = 0x2;
const BOARD_ERROR_DC_BUS_OVER_VOLTAGE: u32 = 0x4;

const HW_VERSION: (u64, u64, u64) = (3, 6, 56);
const FW_VERSION: (u64, u64, u64) = (0, 5, 6);
const SERIAL_NUMBER: u64 = 0x2087_377E_3548;

/// Settings of one axis (what `ss` saves).
#[derive(Debug, Clone, PartialEq)]
struct AxisConfig {
    enable_watchdog: bool,
    watchdog_timeout: f32,
    current_lim: f32,
    torque_constant: f32,
    torque_lim: f32,
    calibration_current: f32,
    pole_pairs: i32,
    phase_resistance: f32,
    phase_inductance: f32,
    current_control_bandwidth: f32,
    cpr: i32,
    control_mode: i32,
    input_mode: i32,
    vel_gain: f32,
    vel_integrator_gain: f32,
    pos_gain: f32,
    vel_limit: f32,
    vel_limit_tolerance: f32,
    enable_vel_limit: bool,
    enable_overspeed_error: bool,
    vel_ramp_rate: f32,
    torque_ramp_rate: f32,
    trap_vel_limit: f32,
    trap_accel_limit: f32,
    trap_decel_limit: f32,
}

impl AxisConfig {
    /// Firmware 0.5.x defaults of an axis nobody configured.
    fn factory() -> Self {
        AxisConfig {
            enable_watchdog: false,
            watchdog_timeout: 0.0,
            current_lim: 10.0,
            torque_constant: 0.04,
            torque_lim: f32::INFINITY,
            calibration_current: 10.0,
            pole_pairs: 7,
            phase_resistance: 0.0,
            phase_inductance: 0.0,
            current_control_bandwidth: 1000.0,
            cpr: 8192,
            control_mode: 3,
            input_mode: 1,
            vel_gain: 1.0 / 6.0,
            vel_integrator_gain: 1.0 / 3.0,
            pos_gain: 20.0,
            vel_limit: 2.0,
            vel_limit_tolerance: 1.2,
            enable_vel_limit: true,
            enable_overspeed_error: true,
            vel_ramp_rate: 1.0,
            torque_ramp_rate: 0.01,
            trap_vel_limit: 2.0,
            trap_accel_limit: 0.5,
            trap_decel_limit: 0.5,
        }
    }

    /// A bench-configured axis driving `drive`'s motor.
    fn from_sim(drive: &SimDrive) -> Self {
        let config = drive.config();
        let kt = config.motor.torque_constant_nm_per_a;
        let inductance = config.motor.inductance_h;
        let bandwidth = if inductance > 0.0 { config.drive.current_kp / inductance } else { 1000.0 };
        AxisConfig {
            enable_watchdog: false,
            watchdog_timeout: 1.0,
            current_lim: config.drive.current_limit_a as f32,
            torque_constant: kt as f32,
            phase_resistance: config.motor.resistance_ohm as f32,
            phase_inductance: inductance as f32,
            current_control_bandwidth: bandwidth as f32,
            cpr: i32::try_from(config.drive.encoder_counts_per_rev).unwrap_or(i32::MAX),
            control_mode: mode_code(drive.mode()),
            vel_gain: (config.drive.speed_kp * 60.0 * kt) as f32,
            vel_integrator_gain: (config.drive.speed_ki * 60.0 * kt) as f32,
            pos_gain: (config.drive.position_kp / 60.0) as f32,
            vel_limit: (config.drive.speed_limit_rpm / 60.0) as f32,
            trap_vel_limit: (config.drive.profile_speed_rpm / 60.0) as f32,
            trap_accel_limit: (config.drive.profile_accel_rpm_per_s / 60.0) as f32,
            trap_decel_limit: (config.drive.profile_accel_rpm_per_s / 60.0) as f32,
            ..AxisConfig::factory()
        }
    }
}

/// Board settings (what `ss` saves).
#[derive(Debug, Clone, PartialEq)]
struct BoardConfig {
    dc_bus_undervoltage_trip_level: f32,
    dc_bus_overvoltage_trip_level: f32,
    dc_max_positive_current: f32,
    dc_max_negative_current: f32,
    brake_resistance: f32,
    enable_brake_resistor: bool,
    uart_a_baudrate: u32,
    enable_uart_a: bool,
    uart0_protocol: i32,
}

impl Default for BoardConfig {
    fn default() -> Self {
        BoardConfig {
            dc_bus_undervoltage_trip_level: 8.0,
            // 1.07 × the 56 V board's rating.
            dc_bus_overvoltage_trip_level: 59.92,
            dc_max_positive_current: f32::INFINITY,
            dc_max_negative_current: -0.01,
            brake_resistance: 2.0,
            enable_brake_resistor: false,
            uart_a_baudrate: 115_200,
            enable_uart_a: true,
            uart0_protocol: 3,
        }
    }
}

/// One axis: its settings and its live state.
#[derive(Debug, Clone)]
struct Axis {
    config: AxisConfig,
    /// A calibrated motor is connected (axis 0, the simulated one).
    has_motor: bool,
    error: u32,
    motor_error: u64,
    encoder_error: u32,
    controller_error: u32,
    current_state: i32,
    input_pos: f32,
    input_vel: f32,
    input_torque: f32,
    /// The watchdog expires at this time unless fed (a never-fed one has expired).
    watchdog_deadline_s: f64,
    /// Reported position = simulated position − offset (`esl`, reboot).
    pos_offset_rev: f64,
}

impl Axis {
    fn new(config: AxisConfig, has_motor: bool) -> Self {
        Axis {
            config,
            has_motor,
            error: 0,
            motor_error: 0,
            encoder_error: 0,
            controller_error: 0,
            current_state: STATE_IDLE,
            input_pos: 0.0,
            input_vel: 0.0,
            input_torque: 0.0,
            watchdog_deadline_s: f64::NEG_INFINITY,
            pos_offset_rev: 0.0,
        }
    }

    fn has_error(&self) -> bool {
        self.error != 0 || self.motor_error != 0 || self.encoder_error != 0 || self.controller_error != 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AxisProp {
    Error,
    CurrentState,
    RequestedState,
    EnableWatchdog,
    WatchdogTimeout,
    MotorError,
    MotorIsArmed,
    MotorIsCalibrated,
    CurrentLim,
    TorqueConstant,
    TorqueLim,
    CalibrationCurrent,
    PolePairs,
    PhaseResistance,
    PhaseInductance,
    CurrentControlBandwidth,
    IqMeasured,
    IqSetpoint,
    FetTemperature,
    MotorTemperature,
    EncoderError,
    PosEstimate,
    VelEstimate,
    Cpr,
    ShadowCount,
    EncoderIsReady,
    ControllerError,
    ControlMode,
    InputMode,
    VelGain,
    VelIntegratorGain,
    PosGain,
    VelLimit,
    VelLimitTolerance,
    EnableVelLimit,
    EnableOverspeedError,
    VelRampRate,
    TorqueRampRate,
    InputPos,
    InputVel,
    InputTorque,
    PosSetpoint,
    VelSetpoint,
    TorqueSetpoint,
    TrapVelLimit,
    TrapAccelLimit,
    TrapDecelLimit,
}

/// Paths below `axisN.`.
const AXIS_PROPS: &[(&str, AxisProp)] = &[
    ("error", AxisProp::Error),
    ("current_state", AxisProp::CurrentState),
    ("requested_state", AxisProp::RequestedState),
    ("config.enable_watchdog", AxisProp::EnableWatchdog),
    ("config.watchdog_timeout", AxisProp::WatchdogTimeout),
    ("motor.error", AxisProp::MotorError),
    ("motor.is_armed", AxisProp::MotorIsArmed),
    ("motor.is_calibrated", AxisProp::MotorIsCalibrated),
    ("motor.config.current_lim", AxisProp::CurrentLim),
    ("motor.config.torque_constant", AxisProp::TorqueConstant),
    ("motor.config.torque_lim", AxisProp::TorqueLim),
    ("motor.config.calibration_current", AxisProp::CalibrationCurrent),
    ("motor.config.pole_pairs", AxisProp::PolePairs),
    ("motor.config.phase_resistance", AxisProp::PhaseResistance),
    ("motor.config.phase_inductance", AxisProp::PhaseInductance),
    ("motor.config.current_control_bandwidth", AxisProp::CurrentControlBandwidth),
    ("motor.current_control.Iq_measured", AxisProp::IqMeasured),
    ("motor.current_control.Iq_setpoint", AxisProp::IqSetpoint),
    ("motor.fet_thermistor.temperature", AxisProp::FetTemperature),
    ("motor.motor_thermistor.temperature", AxisProp::MotorTemperature),
    ("encoder.error", AxisProp::EncoderError),
    ("encoder.pos_estimate", AxisProp::PosEstimate),
    ("encoder.vel_estimate", AxisProp::VelEstimate),
    ("encoder.config.cpr", AxisProp::Cpr),
    ("encoder.shadow_count", AxisProp::ShadowCount),
    ("encoder.is_ready", AxisProp::EncoderIsReady),
    ("controller.error", AxisProp::ControllerError),
    ("controller.config.control_mode", AxisProp::ControlMode),
    ("controller.config.input_mode", AxisProp::InputMode),
    ("controller.config.vel_gain", AxisProp::VelGain),
    ("controller.config.vel_integrator_gain", AxisProp::VelIntegratorGain),
    ("controller.config.pos_gain", AxisProp::PosGain),
    ("controller.config.vel_limit", AxisProp::VelLimit),
    ("controller.config.vel_limit_tolerance", AxisProp::VelLimitTolerance),
    ("controller.config.enable_vel_limit", AxisProp::EnableVelLimit),
    ("controller.config.enable_overspeed_error", AxisProp::EnableOverspeedError),
    ("controller.config.vel_ramp_rate", AxisProp::VelRampRate),
    ("controller.config.torque_ramp_rate", AxisProp::TorqueRampRate),
    ("controller.input_pos", AxisProp::InputPos),
    ("controller.input_vel", AxisProp::InputVel),
    ("controller.input_torque", AxisProp::InputTorque),
    ("controller.pos_setpoint", AxisProp::PosSetpoint),
    ("controller.vel_setpoint", AxisProp::VelSetpoint),
    ("controller.torque_setpoint", AxisProp::TorqueSetpoint),
    ("trap_traj.config.vel_limit", AxisProp::TrapVelLimit),
    ("trap_traj.config.accel_limit", AxisProp::TrapAccelLimit),
    ("trap_traj.config.decel_limit", AxisProp::TrapDecelLimit),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum BoardProp {
    VbusVoltage,
    Ibus,
    Error,
    HwVersionMajor,
    HwVersionMinor,
    HwVersionVariant,
    FwVersionMajor,
    FwVersionMinor,
    FwVersionRevision,
    SerialNumber,
    UndervoltageTripLevel,
    OvervoltageTripLevel,
    DcMaxPositiveCurrent,
    DcMaxNegativeCurrent,
    BrakeResistance,
    EnableBrakeResistor,
    UartABaudrate,
    EnableUartA,
    Uart0Protocol,
}

const BOARD_PROPS: &[(&str, BoardProp)] = &[
    ("vbus_voltage", BoardProp::VbusVoltage),
    ("ibus", BoardProp::Ibus),
    ("error", BoardProp::Error),
    ("hw_version_major", BoardProp::HwVersionMajor),
    ("hw_version_minor", BoardProp::HwVersionMinor),
    ("hw_version_variant", BoardProp::HwVersionVariant),
    ("fw_version_major", BoardProp::FwVersionMajor),
    ("fw_version_minor", BoardProp::FwVersionMinor),
    ("fw_version_revision", BoardProp::FwVersionRevision),
    ("serial_number", BoardProp::SerialNumber),
    ("config.dc_bus_undervoltage_trip_level", BoardProp::UndervoltageTripLevel),
    ("config.dc_bus_overvoltage_trip_level", BoardProp::OvervoltageTripLevel),
    ("config.dc_max_positive_current", BoardProp::DcMaxPositiveCurrent),
    ("config.dc_max_negative_current", BoardProp::DcMaxNegativeCurrent),
    ("config.brake_resistance", BoardProp::BrakeResistance),
    ("config.enable_brake_resistor", BoardProp::EnableBrakeResistor),
    ("config.uart_a_baudrate", BoardProp::UartABaudrate),
    ("config.enable_uart_a", BoardProp::EnableUartA),
    ("config.uart0_protocol", BoardProp::Uart0Protocol),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Prop {
    Axis(usize, AxisProp),
    Board(BoardProp),
}

/// Resolves a property path the way fibre's `get_child` walks it: dot-separated names, one
/// trailing dot tolerated, only leaves are readable.
fn lookup(path: &[u8]) -> Option<Prop> {
    let path = std::str::from_utf8(path).ok()?;
    let path = path.strip_suffix('.').unwrap_or(path);
    for (axis, prefix) in ["axis0.", "axis1."].iter().enumerate() {
        if let Some(rest) = path.strip_prefix(prefix) {
            return AXIS_PROPS
                .iter()
                .find(|(name, _)| *name == rest)
                .map(|(_, prop)| Prop::Axis(axis, *prop));
        }
    }
    BOARD_PROPS.iter().find(|(name, _)| *name == path).map(|(_, prop)| Prop::Board(*prop))
}

fn writable(prop: Prop) -> bool {
    use AxisProp as A;
    use BoardProp as B;
    match prop {
        Prop::Axis(_, p) => !matches!(
            p,
            A::CurrentState
                | A::MotorIsArmed
                | A::MotorIsCalibrated
                | A::IqMeasured
                | A::IqSetpoint
                | A::FetTemperature
                | A::MotorTemperature
                | A::PosEstimate
                | A::VelEstimate
                | A::ShadowCount
                | A::EncoderIsReady
                | A::PosSetpoint
                | A::VelSetpoint
                | A::TorqueSetpoint
        ),
        Prop::Board(p) => !matches!(
            p,
            B::VbusVoltage
                | B::Ibus
                | B::HwVersionMajor
                | B::HwVersionMinor
                | B::HwVersionVariant
                | B::FwVersionMajor
                | B::FwVersionMinor
                | B::FwVersionRevision
                | B::SerialNumber
        ),
    }
}

/// A property value with the C type that decides how it prints and parses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    /// `float`: `%f`.
    Float(f32),
    /// `int32_t` and enums: `%d`.
    Int(i64),
    /// `uint32_t`: `%lu`.
    U32(u32),
    /// `uint64_t`: `%llu`.
    U64(u64),
    /// `bool`: `0`/`1`, parsed with `%d`.
    Bool(bool),
}

impl Value {
    fn text(self) -> String {
        match self {
            Value::Float(v) => c_float(v),
            Value::Int(v) => v.to_string(),
            Value::U32(v) => v.to_string(),
            Value::U64(v) => v.to_string(),
            Value::Bool(v) => (if v { "1" } else { "0" }).to_owned(),
        }
    }

    /// Parses a written value as the same type, as `from_string` does.
    fn parse_like(self, token: &[u8]) -> Option<Value> {
        let mut scan = Scan::new(token);
        match self {
            Value::Float(_) => scan.float().map(Value::Float),
            Value::Int(_) => scan.int().map(|v| Value::Int(i64::from(v))),
            Value::U32(_) => scan.uint().map(Value::U32),
            Value::U64(_) => scan.ulong().map(Value::U64),
            Value::Bool(_) => scan.int().map(|v| Value::Bool(v != 0)),
        }
    }

    fn as_f32(self) -> f32 {
        match self {
            Value::Float(v) => v,
            Value::Int(v) => v as f32,
            Value::U32(v) => v as f32,
            Value::U64(v) => v as f32,
            Value::Bool(v) => f32::from(u8::from(v)),
        }
    }

    fn as_i32(self) -> i32 {
        match self {
            Value::Int(v) => v as i32,
            Value::Float(v) => v as i32,
            Value::U32(v) => v as i32,
            Value::U64(v) => v as i32,
            Value::Bool(v) => i32::from(v),
        }
    }

    fn as_u64(self) -> u64 {
        match self {
            Value::U64(v) => v,
            Value::U32(v) => u64::from(v),
            Value::Int(v) => v as u64,
            Value::Float(v) => v as u64,
            Value::Bool(v) => u64::from(v),
        }
    }

    fn as_bool(self) -> bool {
        self.as_u64() != 0
    }
}

/// `%f` of a `float` promoted to `double`, as newlib prints it.
fn c_float(value: f32) -> String {
    if value.is_nan() {
        (if value.is_sign_negative() { "-nan" } else { "nan" }).to_owned()
    } else if value.is_infinite() {
        (if value < 0.0 { "-inf" } else { "inf" }).to_owned()
    } else {
        format!("{:.6}", f64::from(value))
    }
}

fn mode_code(mode: ControlMode) -> i32 {
    match mode {
        ControlMode::Current => 1,
        ControlMode::Speed => 2,
        ControlMode::Position => 3,
    }
}

/// Reads arguments the way the firmware's `sscanf` formats do: each conversion skips leading
/// white space and takes the longest prefix it can.
struct Scan<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Scan<'a> {
    fn new(text: &'a [u8]) -> Self {
        Scan { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)) {
            self.pos += 1;
        }
    }

    /// An ordinary character of the format: must match exactly.
    fn literal(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn sign(&mut self) -> bool {
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                true
            }
            Some(b'+') => {
                self.pos += 1;
                false
            }
            _ => false,
        }
    }

    /// Digits in `radix`; `None` if there are none. Saturates at `u64::MAX`.
    fn digits(&mut self, radix: u32) -> Option<u64> {
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(digit) = self.peek().and_then(|b| char::from(b).to_digit(radix)) {
            value = value.saturating_mul(u64::from(radix)).saturating_add(u64::from(digit));
            self.pos += 1;
        }
        (self.pos > start).then_some(value)
    }

    /// Unsigned conversion of a `width`-bit `long`: a minus sign wraps, overflow saturates.
    fn unsigned(&mut self, max: u64) -> Option<u64> {
        let start = self.pos;
        self.skip_space();
        let negative = self.sign();
        let Some(value) = self.digits(10) else {
            self.pos = start;
            return None;
        };
        if value > max {
            return Some(max);
        }
        Some(if negative { value.wrapping_neg() & max } else { value })
    }

    /// `%u` / `%lu` (32-bit on the STM32).
    fn uint(&mut self) -> Option<u32> {
        self.unsigned(u64::from(u32::MAX)).map(|v| v as u32)
    }

    /// `%llu`.
    fn ulong(&mut self) -> Option<u64> {
        self.unsigned(u64::MAX)
    }

    /// `%d`: overflow saturates.
    fn int(&mut self) -> Option<i32> {
        let start = self.pos;
        self.skip_space();
        let negative = self.sign();
        let Some(value) = self.digits(10) else {
            self.pos = start;
            return None;
        };
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        let value = if negative { -value } else { value };
        Some(value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
    }

    /// `%i`: decimal, `0x` hexadecimal or `0` octal.
    fn int_auto(&mut self) -> Option<i32> {
        let start = self.pos;
        self.skip_space();
        let negative = self.sign();
        let value = if self.text[self.pos..].starts_with(b"0x") || self.text[self.pos..].starts_with(b"0X") {
            self.pos += 2;
            self.digits(16).or(Some(0))
        } else if self.peek() == Some(b'0') {
            self.digits(8)
        } else {
            self.digits(10)
        };
        let Some(value) = value else {
            self.pos = start;
            return None;
        };
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        let value = if negative { -value } else { value };
        Some(value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
    }

    /// `%f`: decimal with optional exponent, or `inf`, `infinity`, `nan`.
    fn float(&mut self) -> Option<f32> {
        let start = self.pos;
        self.skip_space();
        let number_start = self.pos;
        let negative = self.sign();
        let rest = &self.text[self.pos..];
        for word in [&b"infinity"[..], b"inf", b"nan"] {
            if rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word) {
                self.pos += word.len();
                let value = if word == b"nan" { f32::NAN } else { f32::INFINITY };
                return Some(if negative { -value } else { value });
            }
        }
        let int_start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let mut digits = self.pos - int_start;
        if self.peek() == Some(b'.') {
            let dot = self.pos;
            self.pos += 1;
            let frac_start = self.pos;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            digits += self.pos - frac_start;
            if digits == 0 {
                self.pos = dot;
            }
        }
        if digits == 0 {
            self.pos = start;
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let mark = self.pos;
            self.pos += 1;
            self.sign();
            if self.digits(10).is_none() {
                self.pos = mark;
            }
        }
        let text = std::str::from_utf8(&self.text[number_start..self.pos]).ok()?;
        text.parse::<f64>().ok().map(|v| v as f32)
    }

    /// `%255s`: a run of non-blank bytes.
    fn token(&mut self) -> Option<&'a [u8]> {
        self.skip_space();
        let start = self.pos;
        while self.peek().is_some_and(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos.min(start + RX_BUF - 1)])
    }
}

/// `snprintf(buf + offset, TX_BUF - offset, "%s", text)`: writes what fits with its NUL and
/// returns the length it would have written.
fn print_into(buf: &mut [u8; TX_BUF], offset: usize, text: &[u8]) -> usize {
    let room = TX_BUF.saturating_sub(offset);
    if room > 0 {
        let count = text.len().min(room - 1);
        buf[offset..offset + count].copy_from_slice(&text[..count]);
        buf[offset + count] = 0;
    }
    text.len()
}

/// The firmware's `respond`: text, optional `*checksum`, `\r\n`, all in a 64-byte buffer.
fn respond(out: &mut Vec<u8>, use_checksum: bool, text: &[u8]) {
    let mut buf = [0u8; TX_BUF];
    let mut len = print_into(&mut buf, 0, text).min(TX_BUF);
    if use_checksum {
        let checksum = buf[..len].iter().fold(0u8, |acc, b| acc ^ b);
        len += print_into(&mut buf, len, format!("*{checksum}\r\n").as_bytes());
    } else {
        len += print_into(&mut buf, len, b"\r\n");
    }
    out.extend_from_slice(&buf[..len.min(TX_BUF)]);
}

/// What the simulated sensors show for an axis.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    pos: f64,
    vel: f64,
    iq: f64,
    iq_setpoint: f64,
    temperature: f64,
    pos_setpoint: f64,
    vel_setpoint: f64,
}

/// An emulated ODrive v3.6 (firmware 0.5.6) speaking the ASCII protocol.
#[derive(Debug, Clone)]
pub struct ODriveDevice {
    serial_number: u64,
    line: Vec<u8>,
    discarding: bool,
    /// The configuration has been taken from the simulated drive.
    ready: bool,
    axes: [Axis; 2],
    board: BoardConfig,
    board_error: u32,
    saved: ([AxisConfig; 2], BoardConfig),
    bench: ([AxisConfig; 2], BoardConfig),
    latest: Option<TelemetryFrame>,
    sim_fault_latched: bool,
}

impl Default for ODriveDevice {
    fn default() -> Self {
        ODriveDevice::new()
    }
}

impl ODriveDevice {
    /// A board after power-up; axis 0 takes its configuration from the simulated drive the
    /// first time it sees it.
    pub fn new() -> Self {
        let configs = [AxisConfig::factory(), AxisConfig::factory()];
        ODriveDevice {
            serial_number: SERIAL_NUMBER,
            line: Vec::with_capacity(RX_BUF),
            discarding: false,
            ready: false,
            axes: [Axis::new(configs[0].clone(), true), Axis::new(configs[1].clone(), false)],
            board: BoardConfig::default(),
            board_error: 0,
            saved: (configs.clone(), BoardConfig::default()),
            bench: (configs, BoardConfig::default()),
            latest: None,
            sim_fault_latched: false,
        }
    }

    fn ensure_ready(&mut self, drive: &SimDrive) {
        if self.ready {
            return;
        }
        self.ready = true;
        self.axes[0].config = AxisConfig::from_sim(drive);
        let setpoint = drive.setpoint() as f32;
        match drive.mode() {
            ControlMode::Speed => self.axes[0].input_vel = setpoint / 60.0,
            ControlMode::Position => self.axes[0].input_pos = setpoint,
            ControlMode::Current => {
                self.axes[0].input_torque = setpoint * self.axes[0].config.torque_constant
            }
        }
        let configs = [self.axes[0].config.clone(), self.axes[1].config.clone()];
        self.bench = (configs, self.board.clone());
        self.saved = self.bench.clone();
    }

    fn measured(&self, axis: usize, drive: &SimDrive) -> Measured {
        let ambient = drive.config().motor.ambient_temperature_c;
        let offset = self.axes[axis].pos_offset_rev;
        match (&self.latest, self.axes[axis].has_motor) {
            (Some(frame), true) => Measured {
                pos: frame.position_rev - offset,
                vel: frame.speed_rpm / 60.0,
                iq: frame.current_a,
                iq_setpoint: frame.current_setpoint_a,
                temperature: frame.temperature_c,
                pos_setpoint: frame.position_setpoint_rev - offset,
                vel_setpoint: frame.speed_setpoint_rpm / 60.0,
            },
            _ => Measured { temperature: ambient, ..Measured::default() },
        }
    }

    fn vbus(&self, drive: &SimDrive) -> f64 {
        self.latest.map_or(drive.config().drive.bus_voltage_v, |frame| frame.voltage_v)
    }

    /// DC current from the motor's electrical power (copper loss plus mechanical power).
    fn ibus(&self, drive: &SimDrive) -> f64 {
        let Some(frame) = self.latest else {
            return 0.0;
        };
        let motor = &drive.config().motor;
        let omega = frame.speed_rpm * std::f64::consts::TAU / 60.0;
        let power = frame.current_a
            * (motor.torque_constant_nm_per_a * omega + frame.current_a * motor.resistance_ohm);
        if frame.voltage_v > 1.0 { power / frame.voltage_v } else { 0.0 }
    }

    fn read(&self, prop: Prop, drive: &SimDrive) -> Value {
        use AxisProp as A;
        use BoardProp as B;
        let float = |v: f64| Value::Float(v as f32);
        match prop {
            Prop::Board(p) => {
                let board = &self.board;
                match p {
                    B::VbusVoltage => float(self.vbus(drive)),
                    B::Ibus => float(self.ibus(drive)),
                    B::Error => Value::U32(self.board_error),
                    B::HwVersionMajor => Value::U32(HW_VERSION.0 as u32),
                    B::HwVersionMinor => Value::U32(HW_VERSION.1 as u32),
                    B::HwVersionVariant => Value::U32(HW_VERSION.2 as u32),
                    B::FwVersionMajor => Value::U32(FW_VERSION.0 as u32),
                    B::FwVersionMinor => Value::U32(FW_VERSION.1 as u32),
                    B::FwVersionRevision => Value::U32(FW_VERSION.2 as u32),
                    B::SerialNumber => Value::U64(self.serial_number),
                    B::UndervoltageTripLevel => Value::Float(board.dc_bus_undervoltage_trip_level),
                    B::OvervoltageTripLevel => Value::Float(board.dc_bus_overvoltage_trip_level),
                    B::DcMaxPositiveCurrent => Value::Float(board.dc_max_positive_current),
                    B::DcMaxNegativeCurrent => Value::Float(board.dc_max_negative_current),
                    B::BrakeResistance => Value::Float(board.brake_resistance),
                    B::EnableBrakeResistor => Value::Bool(board.enable_brake_resistor),
                    B::UartABaudrate => Value::U32(board.uart_a_baudrate),
                    B::EnableUartA => Value::Bool(board.enable_uart_a),
                    B::Uart0Protocol => Value::Int(i64::from(board.uart0_protocol)),
                }
            }
            Prop::Axis(index, p) => {
                let axis = &self.axes[index];
                let c = &axis.config;
                let m = self.measured(index, drive);
                match p {
                    A::Error => Value::U32(axis.error),
                    A::CurrentState => Value::Int(i64::from(axis.current_state)),
                    // Requests are carried out as they are written.
                    A::RequestedState => Value::Int(0),
                    A::EnableWatchdog => Value::Bool(c.enable_watchdog),
                    A::WatchdogTimeout => Value::Float(c.watchdog_timeout),
                    A::MotorError => Value::U64(axis.motor_error),
                    A::MotorIsArmed => Value::Bool(axis.current_state == STATE_CLOSED_LOOP),
                    A::MotorIsCalibrated => Value::Bool(axis.has_motor),
                    A::CurrentLim => Value::Float(c.current_lim),
                    A::TorqueConstant => Value::Float(c.torque_constant),
                    A::TorqueLim => Value::Float(c.torque_lim),
                    A::CalibrationCurrent => Value::Float(c.calibration_current),
                    A::PolePairs => Value::Int(i64::from(c.pole_pairs)),
                    A::PhaseResistance => Value::Float(c.phase_resistance),
                    A::PhaseInductance => Value::Float(c.phase_inductance),
                    A::CurrentControlBandwidth => Value::Float(c.current_control_bandwidth),
                    A::IqMeasured => float(m.iq),
                    A::IqSetpoint => float(m.iq_setpoint),
                    A::FetTemperature | A::MotorTemperature => float(m.temperature),
                    A::EncoderError => Value::U32(axis.encoder_error),
                    A::PosEstimate => float(m.pos),
                    A::VelEstimate => float(m.vel),
                    A::Cpr => Value::Int(i64::from(c.cpr)),
                    A::ShadowCount => Value::Int((m.pos * f64::from(c.cpr)).floor() as i64),
                    A::EncoderIsReady => Value::Bool(axis.has_motor),
                    A::ControllerError => Value::U32(axis.controller_error),
                    A::ControlMode => Value::Int(i64::from(c.control_mode)),
                    A::InputMode => Value::Int(i64::from(c.input_mode)),
                    A::VelGain => Value::Float(c.vel_gain),
                    A::VelIntegratorGain => Value::Float(c.vel_integrator_gain),
                    A::PosGain => Value::Float(c.pos_gain),
                    A::VelLimit => Value::Float(c.vel_limit),
                    A::VelLimitTolerance => Value::Float(c.vel_limit_tolerance),
                    A::EnableVelLimit => Value::Bool(c.enable_vel_limit),
                    A::EnableOverspeedError => Value::Bool(c.enable_overspeed_error),
                    A::VelRampRate => Value::Float(c.vel_ramp_rate),
                    A::TorqueRampRate => Value::Float(c.torque_ramp_rate),
                    A::InputPos => Value::Float(axis.input_pos),
                    A::InputVel => Value::Float(axis.input_vel),
                    A::InputTorque => Value::Float(axis.input_torque),
                    A::PosSetpoint => float(m.pos_setpoint),
                    A::VelSetpoint => float(m.vel_setpoint),
                    A::TorqueSetpoint => float(m.iq_setpoint * f64::from(c.torque_constant)),
                    A::TrapVelLimit => Value::Float(c.trap_vel_limit),
                    A::TrapAccelLimit => Value::Float(c.trap_accel_limit),
                    A::TrapDecelLimit => Value::Float(c.trap_decel_limit),
                }
            }
        }
    }

    /// `set_string`: false means `not implemented` (read-only, or the value does not parse).
    fn write(&mut self, prop: Prop, token: &[u8], now_s: f64, drive: &mut SimDrive) -> bool {
        if !writable(prop) {
            return false;
        }
        let Some(value) = self.read(prop, drive).parse_like(token) else {
            return false;
        };
        use AxisProp as A;
        use BoardProp as B;
        match prop {
            Prop::Board(p) => {
                let board = &mut self.board;
                match p {
                    B::Error => self.board_error = value.as_u64() as u32,
                    B::UndervoltageTripLevel => board.dc_bus_undervoltage_trip_level = value.as_f32(),
                    B::OvervoltageTripLevel => board.dc_bus_overvoltage_trip_level = value.as_f32(),
                    B::DcMaxPositiveCurrent => board.dc_max_positive_current = value.as_f32(),
                    B::DcMaxNegativeCurrent => board.dc_max_negative_current = value.as_f32(),
                    B::BrakeResistance => board.brake_resistance = value.as_f32(),
                    B::EnableBrakeResistor => board.enable_brake_resistor = value.as_bool(),
                    B::UartABaudrate => board.uart_a_baudrate = value.as_u64() as u32,
                    B::EnableUartA => board.enable_uart_a = value.as_bool(),
                    B::Uart0Protocol => board.uart0_protocol = value.as_i32(),
                    _ => return false,
                }
            }
            Prop::Axis(index, p) => {
                let axis = &mut self.axes[index];
                let c = &mut axis.config;
                let f = value.as_f32();
                match p {
                    A::RequestedState => {
                        self.request_state(index, value.as_i32(), now_s, drive);
                        return true;
                    }
                    A::Error => axis.error = value.as_u64() as u32,
                    A::MotorError => axis.motor_error = value.as_u64(),
                    A::EncoderError => axis.encoder_error = value.as_u64() as u32,
                    A::ControllerError => axis.controller_error = value.as_u64() as u32,
                    A::EnableWatchdog => c.enable_watchdog = value.as_bool(),
                    A::WatchdogTimeout => c.watchdog_timeout = f,
                    A::CurrentLim => c.current_lim = f,
                    A::TorqueConstant => c.torque_constant = f,
                    A::TorqueLim => c.torque_lim = f,
                    A::CalibrationCurrent => c.calibration_current = f,
                    A::PolePairs => c.pole_pairs = value.as_i32(),
                    A::PhaseResistance => c.phase_resistance = f,
                    A::PhaseInductance => c.phase_inductance = f,
                    A::CurrentControlBandwidth => c.current_control_bandwidth = f,
                    A::Cpr => c.cpr = value.as_i32(),
                    A::ControlMode => c.control_mode = value.as_i32(),
                    A::InputMode => c.input_mode = value.as_i32(),
                    A::VelGain => c.vel_gain = f,
                    A::VelIntegratorGain => c.vel_integrator_gain = f,
                    A::PosGain => c.pos_gain = f,
                    A::VelLimit => c.vel_limit = f,
                    A::VelLimitTolerance => c.vel_limit_tolerance = f,
                    A::EnableVelLimit => c.enable_vel_limit = value.as_bool(),
                    A::EnableOverspeedError => c.enable_overspeed_error = value.as_bool(),
                    A::VelRampRate => c.vel_ramp_rate = f,
                    A::TorqueRampRate => c.torque_ramp_rate = f,
                    A::InputPos => axis.input_pos = f,
                    A::InputVel => axis.input_vel = f,
                    A::InputTorque => axis.input_torque = f,
                    A::TrapVelLimit => c.trap_vel_limit = f,
                    A::TrapAccelLimit => c.trap_accel_limit = f,
                    A::TrapDecelLimit => c.trap_decel_limit = f,
                    _ => return false,
                }
                self.push_to_sim(index, p, drive);
            }
        }
        true
    }

    /// Applies a changed setting of an axis to the simulated drive, clamped into its ranges.
    fn push_to_sim(&self, index: usize, prop: AxisProp, drive: &mut SimDrive) {
        use AxisProp as A;
        let axis = &self.axes[index];
        if !axis.has_motor {
            return;
        }
        let c = &axis.config;
        let kt = f64::from(c.torque_constant);
        match prop {
            A::CurrentLim => set_sim(drive, "current_limit_a", f64::from(c.current_lim)),
            A::VelGain | A::VelIntegratorGain | A::TorqueConstant => {
                if kt > 0.0 {
                    set_sim(drive, "speed_kp", f64::from(c.vel_gain) / (kt * 60.0));
                    set_sim(drive, "speed_ki", f64::from(c.vel_integrator_gain) / (kt * 60.0));
                }
                if prop == A::TorqueConstant {
                    self.apply_setpoint(drive);
                }
            }
            A::PosGain => set_sim(drive, "position_kp", f64::from(c.pos_gain) * 60.0),
            A::VelLimit | A::EnableVelLimit => {
                let rpm = if c.enable_vel_limit { f64::from(c.vel_limit) * 60.0 } else { f64::INFINITY };
                set_sim(drive, "speed_limit_rpm", rpm);
                self.apply_setpoint(drive);
            }
            A::CurrentControlBandwidth | A::PhaseResistance | A::PhaseInductance => {
                let bandwidth = f64::from(c.current_control_bandwidth);
                set_sim(drive, "current_kp", f64::from(c.phase_inductance) * bandwidth);
                set_sim(drive, "current_ki", f64::from(c.phase_resistance) * bandwidth);
            }
            A::TrapVelLimit => set_sim(drive, "profile_speed_rpm", f64::from(c.trap_vel_limit) * 60.0),
            A::TrapAccelLimit => {
                set_sim(drive, "profile_accel_rpm_per_s", f64::from(c.trap_accel_limit) * 60.0)
            }
            A::TorqueLim | A::ControlMode | A::InputPos | A::InputVel | A::InputTorque => {
                self.apply_setpoint(drive)
            }
            _ => {}
        }
    }

    fn push_all(&self, drive: &mut SimDrive) {
        use AxisProp as A;
        for prop in [
            A::CurrentLim,
            A::VelGain,
            A::PosGain,
            A::VelLimit,
            A::CurrentControlBandwidth,
            A::TrapVelLimit,
            A::TrapAccelLimit,
            A::ControlMode,
        ] {
            self.push_to_sim(0, prop, drive);
        }
    }

    /// Puts the simulated drive in the axis's control mode with its input as setpoint.
    fn apply_setpoint(&self, drive: &mut SimDrive) {
        let axis = &self.axes[0];
        let c = &axis.config;
        let (mode, value) = match c.control_mode {
            1 => {
                let limit = c.torque_lim.abs();
                let torque = axis.input_torque.max(-limit).min(limit);
                let kt = c.torque_constant;
                (ControlMode::Current, if kt > 0.0 { f64::from(torque / kt) } else { 0.0 })
            }
            2 => {
                let mut vel = axis.input_vel;
                if c.enable_vel_limit {
                    vel = vel.max(-c.vel_limit).min(c.vel_limit);
                }
                (ControlMode::Speed, f64::from(vel) * 60.0)
            }
            3 => (ControlMode::Position, f64::from(axis.input_pos) + axis.pos_offset_rev),
            // Voltage control and unknown modes: no torque.
            _ => (ControlMode::Current, 0.0),
        };
        drive.set_mode(mode);
        drive.set_setpoint(value);
    }

    fn feed_watchdog(&mut self, index: usize, now_s: f64) {
        let axis = &mut self.axes[index];
        axis.watchdog_deadline_s = now_s + f64::from(axis.config.watchdog_timeout.max(0.0));
    }

    fn check_watchdog(&mut self, index: usize, now_s: f64) {
        let axis = &mut self.axes[index];
        if axis.config.enable_watchdog && now_s >= axis.watchdog_deadline_s {
            axis.error |= AXIS_ERROR_WATCHDOG_TIMER_EXPIRED;
        }
    }

    fn go_idle(&mut self, index: usize, drive: &mut SimDrive) {
        self.axes[index].current_state = STATE_IDLE;
        if self.axes[index].has_motor {
            drive.disable();
        }
    }

    fn request_state(&mut self, index: usize, state: i32, now_s: f64, drive: &mut SimDrive) {
        match state {
            0 => {}
            STATE_IDLE => self.go_idle(index, drive),
            STATE_CLOSED_LOOP => self.enter_closed_loop(index, now_s, drive),
            // Calibrations and start-up: done at once on the calibrated axis; the axis without
            // a motor fails the resistance measurement.
            2 | 3 | 4 | 6 | 7 | 10 | 12 | 13 => {
                self.go_idle(index, drive);
                let axis = &mut self.axes[index];
                if !axis.has_motor {
                    axis.error |= AXIS_ERROR_MOTOR_FAILED;
                    axis.motor_error |= MOTOR_ERROR_PHASE_RESISTANCE_OUT_OF_RANGE;
                }
            }
            11 => {
                self.axes[index].error |= AXIS_ERROR_HOMING_WITHOUT_ENDSTOP;
                self.go_idle(index, drive);
            }
            _ => {
                self.axes[index].error |= AXIS_ERROR_INVALID_STATE;
                self.go_idle(index, drive);
            }
        }
    }

    fn enter_closed_loop(&mut self, index: usize, now_s: f64, drive: &mut SimDrive) {
        if !self.axes[index].has_motor {
            self.axes[index].error |= AXIS_ERROR_INVALID_STATE;
            self.go_idle(index, drive);
            return;
        }
        self.check_watchdog(index, now_s);
        self.latch_sim_fault(drive);
        // The control loop exits at once while any error is set.
        if self.axes[index].has_error() || self.board_error != 0 {
            self.go_idle(index, drive);
            return;
        }
        if self.axes[index].current_state == STATE_CLOSED_LOOP {
            return;
        }
        self.apply_setpoint(drive);
        match drive.enable() {
            Ok(()) => {
                let axis = &mut self.axes[index];
                axis.current_state = STATE_CLOSED_LOOP;
                if axis.config.control_mode == 3 {
                    // Closed loop starts holding the present position.
                    axis.input_pos = (drive.setpoint() - axis.pos_offset_rev) as f32;
                }
            }
            Err(_) => {
                self.latch_sim_fault(drive);
                self.go_idle(index, drive);
            }
        }
    }

    /// Turns a protection trip of the simulated drive into the ODrive's error bits, once.
    fn latch_sim_fault(&mut self, drive: &SimDrive) {
        match drive.fault() {
            Some(fault) if !self.sim_fault_latched => {
                self.sim_fault_latched = true;
                let axis = &mut self.axes[0];
                match fault {
                    SimFault::OverCurrent { .. } => {
                        axis.motor_error |= MOTOR_ERROR_CURRENT_LIMIT_VIOLATION;
                        axis.error |= AXIS_ERROR_MOTOR_FAILED;
                    }
                    SimFault::OverTemperature { .. } => {
                        axis.motor_error |= MOTOR_ERROR_MOTOR_THERMISTOR_OVER_TEMP;
                        axis.error |= AXIS_ERROR_MOTOR_FAILED;
                    }
                    SimFault::FollowingError { .. } => {
                        axis.motor_error |= MOTOR_ERROR_CONTROLLER_FAILED;
                        axis.error |= AXIS_ERROR_CONTROLLER_FAILED;
                    }
                }
            }
            None => self.sim_fault_latched = false,
            Some(_) => {}
        }
    }

    fn clear_errors(&mut self, drive: &mut SimDrive) {
        for axis in &mut self.axes {
            axis.error = 0;
            axis.motor_error = 0;
            axis.encoder_error = 0;
            axis.controller_error = 0;
        }
        self.board_error = 0;
        drive.reset_faults();
        self.sim_fault_latched = false;
    }

    fn reboot(&mut self, now_s: f64, drive: &mut SimDrive) {
        drive.disable();
        self.clear_errors(drive);
        let (configs, board) = self.saved.clone();
        let position = self.latest.map_or(0.0, |frame| frame.position_rev);
        for (axis, config) in self.axes.iter_mut().zip(configs) {
            axis.config = config;
            axis.current_state = STATE_IDLE;
            axis.input_pos = 0.0;
            axis.input_vel = 0.0;
            axis.input_torque = 0.0;
            // The counter of a watchdog starts at zero: expired until fed.
            axis.watchdog_deadline_s = now_s;
        }
        // An incremental encoder counts from zero after power-up.
        self.axes[0].pos_offset_rev = position;
        self.board = board;
        self.push_all(drive);
        self.line.clear();
        self.discarding = false;
    }

    fn process_line(&mut self, raw: &[u8], now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        // Comment and checksum, as `process_line` scans them.
        let mut line = raw;
        let mut checksum: u8 = 0;
        let mut checksum_start = None;
        for (i, &byte) in raw.iter().enumerate() {
            if byte == b';' {
                line = &raw[..i];
                break;
            }
            if checksum_start.is_none() {
                if byte == b'*' {
                    checksum_start = Some(i + 1);
                } else {
                    checksum ^= byte;
                }
            }
        }
        let mut cmd = &line[..line.len().min(RX_BUF)];
        let checksum_start = checksum_start.filter(|&start| start < cmd.len());
        let use_checksum = checksum_start.is_some();
        if let Some(start) = checksum_start {
            let body = cmd[start..].split(|&b| b == 0).next().unwrap_or(&[]);
            match Scan::new(body).uint() {
                Some(received) if received == u32::from(checksum) => cmd = &cmd[..start - 1],
                _ => return,
            }
        }
        // The command is a C string from here on.
        let cmd = cmd.split(|&b| b == 0).next().unwrap_or(&[]);
        match cmd.first() {
            Some(b'p') => self.cmd_position(cmd, use_checksum, now_s, drive, out),
            Some(b'q') => self.cmd_position_with_limits(cmd, use_checksum, now_s, drive, out),
            Some(b'v') => self.cmd_velocity(cmd, use_checksum, now_s, drive, out),
            Some(b'c') => self.cmd_torque(cmd, use_checksum, now_s, drive, out),
            Some(b't') => self.cmd_trajectory(cmd, use_checksum, now_s, drive, out),
            Some(b'f') => self.cmd_feedback(cmd, use_checksum, drive, out),
            Some(b'h') => cmd_help(use_checksum, out),
            Some(b'i') => cmd_info(self.serial_number, use_checksum, out),
            Some(b's') => self.cmd_system(cmd, now_s, drive),
            Some(b'r') => self.cmd_read(cmd, use_checksum, drive, out),
            Some(b'w') => self.cmd_write(cmd, use_checksum, now_s, drive, out),
            Some(b'u') => self.cmd_feed(cmd, use_checksum, now_s, out),
            Some(b'e') => self.cmd_encoder(cmd, use_checksum, now_s, drive, out),
            _ => respond(out, use_checksum, b"unknown command"),
        }
    }

    /// `<letter> %u %f …`: the axis and up to `floats` values, and how many conversions
    /// succeeded. Replies and returns `None` when the axis is missing or invalid.
    fn axis_args(
        cmd: &[u8],
        floats: usize,
        required: usize,
        use_checksum: bool,
        out: &mut Vec<u8>,
    ) -> Option<(usize, usize, [f32; 3])> {
        let mut scan = Scan::new(&cmd[1..]);
        let mut values = [0.0f32; 3];
        let mut count = 0;
        let motor = scan.uint();
        if motor.is_some() {
            count = 1;
            for value in values.iter_mut().take(floats) {
                match scan.float() {
                    Some(v) => {
                        *value = v;
                        count += 1;
                    }
                    None => break,
                }
            }
        }
        match motor {
            Some(motor) if count >= required => {
                if motor >= AXIS_COUNT {
                    respond(out, use_checksum, format!("invalid motor {motor}").as_bytes());
                    None
                } else {
                    Some((motor as usize, count, values))
                }
            }
            _ => {
                respond(out, use_checksum, b"invalid command format");
                None
            }
        }
    }

    fn cmd_position(&mut self, cmd: &[u8], ck: bool, now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        let Some((index, count, values)) = Self::axis_args(cmd, 3, 2, ck, out) else {
            return;
        };
        let axis = &mut self.axes[index];
        axis.config.control_mode = 3;
        axis.input_pos = values[0];
        if count >= 3 {
            axis.input_vel = values[1];
        }
        if count >= 4 {
            axis.input_torque = values[2];
        }
        self.push_to_sim(index, AxisProp::ControlMode, drive);
        self.feed_watchdog(index, now_s);
    }

    fn cmd_position_with_limits(
        &mut self,
        cmd: &[u8],
        ck: bool,
        now_s: f64,
        drive: &mut SimDrive,
        out: &mut Vec<u8>,
    ) {
        let Some((index, count, values)) = Self::axis_args(cmd, 3, 2, ck, out) else {
            return;
        };
        let axis = &mut self.axes[index];
        axis.config.control_mode = 3;
        axis.input_pos = values[0];
        if count >= 3 {
            axis.config.vel_limit = values[1];
        }
        if count >= 4 {
            axis.config.torque_lim = values[2];
        }
        self.push_to_sim(index, AxisProp::VelLimit, drive);
        self.feed_watchdog(index, now_s);
    }

    fn cmd_velocity(&mut self, cmd: &[u8], ck: bool, now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        let Some((index, count, values)) = Self::axis_args(cmd, 2, 2, ck, out) else {
            return;
        };
        let axis = &mut self.axes[index];
        axis.config.control_mode = 2;
        axis.input_vel = values[0];
        if count >= 3 {
            axis.input_torque = values[1];
        }
        self.push_to_sim(index, AxisProp::ControlMode, drive);
        self.feed_watchdog(index, now_s);
    }

    fn cmd_torque(&mut self, cmd: &[u8], ck: bool, now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        let Some((index, _, values)) = Self::axis_args(cmd, 1, 2, ck, out) else {
            return;
        };
        let axis = &mut self.axes[index];
        axis.config.control_mode = 1;
        axis.input_torque = values[0];
        self.push_to_sim(index, AxisProp::ControlMode, drive);
        self.feed_watchdog(index, now_s);
    }

    fn cmd_trajectory(&mut self, cmd: &[u8], ck: bool, now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        let Some((index, _, values)) = Self::axis_args(cmd, 1, 2, ck, out) else {
            return;
        };
        let axis = &mut self.axes[index];
        axis.config.input_mode = 5;
        axis.config.control_mode = 3;
        axis.input_pos = values[0];
        self.push_to_sim(index, AxisProp::ControlMode, drive);
        self.feed_watchdog(index, now_s);
    }

    fn cmd_feedback(&mut self, cmd: &[u8], ck: bool, drive: &SimDrive, out: &mut Vec<u8>) {
        let Some((index, _, _)) = Self::axis_args(cmd, 0, 1, ck, out) else {
            return;
        };
        let m = self.measured(index, drive);
        let text = format!("{} {}", c_float(m.pos as f32), c_float(m.vel as f32));
        respond(out, ck, text.as_bytes());
    }

    fn cmd_feed(&mut self, cmd: &[u8], ck: bool, now_s: f64, out: &mut Vec<u8>) {
        if let Some((index, _, _)) = Self::axis_args(cmd, 0, 1, ck, out) {
            self.feed_watchdog(index, now_s);
        }
    }

    fn cmd_system(&mut self, cmd: &[u8], now_s: f64, drive: &mut SimDrive) {
        match cmd.get(1) {
            Some(b's') => {
                self.saved = ([self.axes[0].config.clone(), self.axes[1].config.clone()], self.board.clone());
                self.reboot(now_s, drive);
            }
            Some(b'e') => {
                self.saved = self.bench.clone();
                self.reboot(now_s, drive);
            }
            Some(b'r') => self.reboot(now_s, drive),
            Some(b'c') => self.clear_errors(drive),
            _ => {}
        }
    }

    fn cmd_read(&mut self, cmd: &[u8], ck: bool, drive: &SimDrive, out: &mut Vec<u8>) {
        let Some(name) = Scan::new(&cmd[1..]).token() else {
            respond(out, ck, b"invalid command format");
            return;
        };
        let Some(prop) = lookup(name) else {
            respond(out, ck, b"invalid property");
            return;
        };
        let text = self.read(prop, drive).text();
        let shown = &text.as_bytes()[..text.len().min(VALUE_BUF - 1)];
        respond(out, ck, shown);
    }

    fn cmd_write(&mut self, cmd: &[u8], ck: bool, now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        let mut scan = Scan::new(&cmd[1..]);
        let Some(name) = scan.token() else {
            respond(out, ck, b"invalid command format");
            return;
        };
        let value = scan.token();
        let Some(prop) = lookup(name) else {
            respond(out, ck, b"invalid property");
            return;
        };
        // Without a value the firmware parses an uninitialised buffer; that fails in practice.
        let written = value.is_some_and(|value| self.write(prop, value, now_s, drive));
        if !written {
            respond(out, ck, b"not implemented");
        }
    }

    fn cmd_encoder(&mut self, cmd: &[u8], ck: bool, now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        if cmd.get(1) != Some(&b's') {
            respond(out, ck, b"invalid command format");
            return;
        }
        let mut scan = Scan::new(&cmd[2..]);
        let motor = if scan.literal(b'l') { scan.uint() } else { None };
        let count = motor.and_then(|_| scan.int_auto());
        let (Some(motor), Some(count)) = (motor, count) else {
            respond(out, ck, b"invalid command format");
            return;
        };
        if motor >= AXIS_COUNT {
            respond(out, ck, format!("invalid motor {motor}").as_bytes());
            return;
        }
        let index = motor as usize;
        let cpr = f64::from(self.axes[index].config.cpr.max(1));
        let sim_position = self.latest.map_or(0.0, |frame| frame.position_rev);
        if self.axes[index].has_motor {
            self.axes[index].pos_offset_rev = sim_position - f64::from(count) / cpr;
            self.apply_setpoint(drive);
        }
        self.feed_watchdog(index, now_s);
        respond(out, ck, format!("encoder set to {}", count as u32).as_bytes());
    }
}

fn cmd_help(ck: bool, out: &mut Vec<u8>) {
    for line in [
        "Please see documentation for more details",
        "",
        "Available commands syntax reference:",
        "Position: q axis pos vel-lim I-lim",
        "Position: p axis pos vel-ff I-ff",
        "Velocity: v axis vel I-ff",
        "Torque: c axis T",
        "",
        "Properties start at odrive root, such as axis0.requested_state",
        "Read: r property",
        "Write: w property value",
        "",
        "Save config: ss",
        "Erase config: se",
        "Reboot: sr",
    ] {
        respond(out, ck, line.as_bytes());
    }
}

fn cmd_info(serial_number: u64, ck: bool, out: &mut Vec<u8>) {
    let (hw_major, hw_minor, hw_variant) = HW_VERSION;
    let (fw_major, fw_minor, fw_revision) = FW_VERSION;
    respond(out, ck, format!("Hardware version: {hw_major}.{hw_minor}-{hw_variant}V").as_bytes());
    respond(out, ck, format!("Firmware version: {fw_major}.{fw_minor}.{fw_revision}").as_bytes());
    respond(out, ck, format!("Serial number: {serial_number:012X}").as_bytes());
}

/// Writes a simulator parameter clamped into its catalogue range; non-finite values are
/// not applied.
fn set_sim(drive: &mut SimDrive, key: &str, value: f64) {
    if value.is_nan() {
        return;
    }
    let Some(spec) = SimDrive::param_specs().into_iter().find(|spec| spec.key == key) else {
        return;
    };
    let value = value.max(spec.min).min(spec.max);
    // In range by construction; a refusal leaves the previous value, as intended.
    let _ = drive.write_param(key, value);
}

impl Device for ODriveDevice {
    fn set_identity_seed(&mut self, seed: u64) {
        // Another board: the upper bits differ (the ASCII reply keeps only the first digits).
        self.serial_number = SERIAL_NUMBER.wrapping_add(seed.wrapping_sub(1) << 32) & 0xFFFF_FFFF_FFFF;
    }

    fn receive(&mut self, bytes: &[u8], now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        self.ensure_ready(drive);
        for &byte in bytes {
            if matches!(byte, b'\r' | b'\n' | b'!') {
                if !self.discarding {
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, now_s, drive, out);
                    // Reuse the allocation.
                    self.line = line;
                    self.line.clear();
                }
                self.discarding = false;
            } else if !self.discarding {
                self.line.push(byte);
                if self.line.len() >= RX_BUF {
                    self.line.clear();
                    self.discarding = true;
                }
            }
        }
    }

    fn tick(&mut self, now_s: f64, drive: &mut SimDrive, latest: &TelemetryFrame, _out: &mut Vec<u8>) {
        self.ensure_ready(drive);
        self.latest = Some(*latest);
        for index in 0..self.axes.len() {
            self.check_watchdog(index, now_s);
        }
        self.latch_sim_fault(drive);
        let vbus = latest.voltage_v;
        // A frame with no bus voltage at all is not a measurement.
        if vbus > 0.5 {
            if vbus < f64::from(self.board.dc_bus_undervoltage_trip_level) {
                self.board_error |= BOARD_ERROR_DC_BUS_UNDER_VOLTAGE;
            }
            if vbus > f64::from(self.board.dc_bus_overvoltage_trip_level) {
                self.board_error |= BOARD_ERROR_DC_BUS_OVER_VOLTAGE;
            }
        }
        let axis = &mut self.axes[0];
        let c = &axis.config;
        if axis.current_state == STATE_CLOSED_LOOP
            && c.enable_vel_limit
            && c.enable_overspeed_error
            && (latest.speed_rpm / 60.0).abs() > f64::from(c.vel_limit_tolerance * c.vel_limit)
        {
            axis.controller_error |= CONTROLLER_ERROR_OVERSPEED;
            axis.error |= AXIS_ERROR_CONTROLLER_FAILED;
        }
        for index in 0..self.axes.len() {
            let axis = &self.axes[index];
            let dropped = axis.has_motor && !drive.is_enabled();
            if axis.current_state == STATE_CLOSED_LOOP
                && (axis.has_error() || self.board_error != 0 || dropped)
            {
                self.go_idle(index, drive);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sim::SimConfig;

    fn frame(position_rev: f64, speed_rpm: f64, voltage_v: f64) -> TelemetryFrame {
        TelemetryFrame {
            t_s: 0.0,
            speed_rpm,
            current_a: 0.0,
            position_rev,
            voltage_v,
            temperature_c: 25.0,
            speed_setpoint_rpm: 0.0,
            current_setpoint_a: 0.0,
            position_setpoint_rev: position_rev,
        }
    }

    fn setup() -> (ODriveDevice, SimDrive) {
        let mut drive = SimDrive::new(&SimConfig::default());
        let mut device = ODriveDevice::new();
        device.tick(0.0, &mut drive, &frame(1.234375, 0.0, 24.087744), &mut Vec::new());
        (device, drive)
    }

    fn ask(device: &mut ODriveDevice, drive: &mut SimDrive, request: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        device.receive(request, 0.0, drive, &mut out);
        out
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn spec_vectors() {
        let (mut device, mut drive) = setup();
        let vectors: &[(&[u8], &[u8])] = &[
            (b"r vbus_voltage\n", b"24.087744\r\n"),
            (b"r vbus_voltage *93\n", b"24.087744*32\r\n"),
            (b"r vbus_voltage *94\n", b""),
            (b"f 0\n", b"1.234375 0.000000\r\n"),
            (b"f 0 *86\n", b"1.234375 0.000000*37\r\n"),
            (b"x\n", b"unknown command\r\n"),
            (b"v 5 1\n", b"invalid motor 5\r\n"),
            (b"w axis0.requested_state 8\n", b""),
            (b"v 0 2.5\n", b""),
        ];
        for (request, reply) in vectors {
            assert_eq!(
                text(&ask(&mut device, &mut drive, request)),
                text(reply),
                "request {}",
                text(request)
            );
        }
        assert!(drive.is_enabled());
        assert_eq!(drive.mode(), ControlMode::Speed);
        assert_eq!(drive.setpoint(), 150.0);
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.current_state\n")), "8\r\n");
    }

    #[test]
    fn vectors_split_anywhere_give_the_same_replies() {
        let stream: &[u8] = b"r vbus_voltage\nf 0 *86\nx\nv 5 1\n";
        let (device, drive) = setup();
        let mut whole = device.clone();
        let mut whole_drive = drive.clone();
        let expected = ask(&mut whole, &mut whole_drive, stream);
        assert_eq!(
            text(&expected),
            "24.087744\r\n1.234375 0.000000*37\r\nunknown command\r\ninvalid motor 5\r\n"
        );
        for split in 0..=stream.len() {
            let mut d = device.clone();
            let mut dr = drive.clone();
            let mut out = ask(&mut d, &mut dr, &stream[..split]);
            out.extend(ask(&mut d, &mut dr, &stream[split..]));
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn framing_details() {
        let (mut device, mut drive) = setup();
        // Empty lines (0.5.2+), `\r\n` endings, `!` as a terminator, comments.
        assert_eq!(text(&ask(&mut device, &mut drive, b"\n")), "unknown command\r\n");
        assert_eq!(
            text(&ask(&mut device, &mut drive, b"r vbus_voltage\r\n")),
            "24.087744\r\nunknown command\r\n"
        );
        assert_eq!(text(&ask(&mut device, &mut drive, b"r vbus_voltage!")), "24.087744\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r vbus_voltage ; the bus\n")), "24.087744\r\n");
        // sscanf leniency.
        assert_eq!(text(&ask(&mut device, &mut drive, b"rvbus_voltage\n")), "24.087744\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"f0\n")), "1.234375 0.000000\r\n");
        // A line of 256 bytes is dropped up to its end; 255 are processed.
        let mut long = b"r vbus_voltage".to_vec();
        long.resize(256, b' ');
        long.push(b'\n');
        assert_eq!(text(&ask(&mut device, &mut drive, &long)), "");
        long.truncate(255);
        long.push(b'\n');
        assert_eq!(text(&ask(&mut device, &mut drive, &long)), "24.087744\r\n");
        // A checksum with nothing after the star is no checksum.
        assert_eq!(text(&ask(&mut device, &mut drive, b"r vbus_voltage *\n")), "24.087744\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r vbus_voltage *abc\n")), "");
    }

    #[test]
    fn error_replies() {
        let (mut device, mut drive) = setup();
        for (request, reply) in [
            (&b"r nope\n"[..], "invalid property\r\n"),
            (b"r axis0\n", "invalid property\r\n"),
            (b"r axis0.controller\n", "invalid property\r\n"),
            (b"r vbus_voltage.x\n", "invalid property\r\n"),
            (b"r\n", "invalid command format\r\n"),
            (b"w\n", "invalid command format\r\n"),
            (b"w nope 1\n", "invalid property\r\n"),
            (b"w vbus_voltage 5\n", "not implemented\r\n"),
            (b"w axis0.controller.config.vel_gain abc\n", "not implemented\r\n"),
            (b"w axis0.controller.config.vel_gain\n", "not implemented\r\n"),
            (b"p 0\n", "invalid command format\r\n"),
            (b"v\n", "invalid command format\r\n"),
            (b"f\n", "invalid command format\r\n"),
            (b"f 2\n", "invalid motor 2\r\n"),
            (b"u 7\n", "invalid motor 7\r\n"),
            (b"c -1 1\n", "invalid motor 4294967295\r\n"),
            (b"ex\n", "invalid command format\r\n"),
            (b"esl 0 4096\n", "encoder set to 4096\r\n"),
            (b"sx\n", ""),
            (b"Q\n", "unknown command\r\n"),
        ] {
            assert_eq!(text(&ask(&mut device, &mut drive, request)), reply, "request {}", text(request));
        }
        assert_eq!(text(&ask(&mut device, &mut drive, b"r vbus_voltage.\n")), "24.087744\r\n");
        let info = text(&ask(&mut device, &mut drive, b"i\n"));
        assert_eq!(
            info,
            "Hardware version: 3.6-56V\r\nFirmware version: 0.5.6\r\nSerial number: 2087377E3548\r\n"
        );
        // The 62-character line leaves room for "\r" and the NUL only, as in the firmware.
        let help = text(&ask(&mut device, &mut drive, b"h\n"));
        assert_eq!(help.matches("\r\n").count(), 14, "{help:?}");
        assert!(help.contains("such as axis0.requested_state\r\0Read: r property\r\n"), "{help:?}");
    }

    #[test]
    fn value_formatting_and_truncation() {
        let (mut device, mut drive) = setup();
        device.tick(0.0, &mut drive, &frame(-1234.56789, 0.0, 24.0), &mut Vec::new());
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.encoder.pos_estimate\n")), "-1234.567\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.config.enable_watchdog\n")), "0\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.controller.config.control_mode\n")), "2\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.motor.config.torque_lim\n")), "inf\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r serial_number\n")), "357651236\r\n");
        // Another board (another emulator seed) has another serial number, also in the
        // first digits the reply keeps.
        let (mut other, mut other_drive) = setup();
        other.set_identity_seed(2);
        let serial = text(&ask(&mut other, &mut other_drive, b"r serial_number\n"));
        assert!(serial != "357651236\r\n" && serial.ends_with("\r\n"), "{serial}");
        assert_eq!(
            text(&ask(&mut device, &mut drive, b"r axis1.controller.config.vel_gain\n")),
            "0.166667\r\n"
        );
        // Written as f32 and read back.
        ask(&mut device, &mut drive, b"w axis0.controller.config.vel_gain 0.2\n");
        assert_eq!(
            text(&ask(&mut device, &mut drive, b"r axis0.controller.config.vel_gain\n")),
            "0.200000\r\n"
        );
        ask(&mut device, &mut drive, b"w axis0.config.enable_watchdog 1abc\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.config.enable_watchdog\n")), "1\r\n");
    }

    #[test]
    fn long_replies_are_cut_like_snprintf() {
        let mut out = Vec::new();
        respond(&mut out, false, &[b'a'; 70]);
        assert_eq!(out.len(), 64);
        assert_eq!(out[63], 0);
        let mut out = Vec::new();
        // 61 × 'a' XORs to 97; only "*9" and the NUL still fit.
        respond(&mut out, true, &[b'a'; 61]);
        assert_eq!(&out[61..], b"*9\0");
    }

    #[test]
    fn gains_and_limits_reach_the_sim() {
        let (mut device, mut drive) = setup();
        let kt = drive.config().motor.torque_constant_nm_per_a;
        ask(&mut device, &mut drive, b"w axis0.controller.config.vel_gain 0.27\n");
        let expected = f64::from(0.27f32) / (f64::from(kt as f32) * 60.0);
        assert!((drive.read_param("speed_kp").unwrap() - expected).abs() < 1e-12);
        ask(&mut device, &mut drive, b"w axis0.controller.config.vel_limit 10\n");
        assert_eq!(drive.read_param("speed_limit_rpm").unwrap(), 600.0);
        ask(&mut device, &mut drive, b"w axis0.motor.config.current_lim 5\n");
        assert_eq!(drive.read_param("current_limit_a").unwrap(), 5.0);
        ask(&mut device, &mut drive, b"w axis0.controller.config.pos_gain 30\n");
        assert_eq!(drive.read_param("position_kp").unwrap(), 1800.0);
        // A torque setpoint becomes a current through the torque constant.
        ask(&mut device, &mut drive, b"c 0 0.09\n");
        assert_eq!(drive.mode(), ControlMode::Current);
        assert!((drive.setpoint() - f64::from(0.09f32) / f64::from(kt as f32)).abs() < 1e-6);
        ask(&mut device, &mut drive, b"p 0 3 0 0\n");
        assert_eq!(drive.mode(), ControlMode::Position);
        assert!((drive.setpoint() - 3.0).abs() < 1e-6);
    }

    #[test]
    fn state_machine_errors_and_clear() {
        let (mut device, mut drive) = setup();
        // Axis 1 has no motor.
        ask(&mut device, &mut drive, b"w axis1.requested_state 8\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis1.current_state\n")), "1\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis1.error\n")), "1\r\n");
        ask(&mut device, &mut drive, b"w axis0.requested_state 8\n");
        assert!(drive.is_enabled());
        ask(&mut device, &mut drive, b"w axis0.requested_state 1\n");
        assert!(!drive.is_enabled());
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.requested_state\n")), "0\r\n");
        ask(&mut device, &mut drive, b"w axis0.requested_state 5\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.error\n")), "1\r\n");
        // With an error latched the axis stays idle.
        ask(&mut device, &mut drive, b"w axis0.requested_state 8\n");
        assert!(!drive.is_enabled());
        ask(&mut device, &mut drive, b"sc\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.error\n")), "0\r\n");
        ask(&mut device, &mut drive, b"w axis0.requested_state 8\n");
        assert!(drive.is_enabled());
    }

    #[test]
    fn watchdog_expires_unless_fed() {
        let (mut device, mut drive) = setup();
        let f = frame(0.0, 0.0, 24.0);
        let mut out = Vec::new();
        // Never fed: enabling it trips at once.
        device.receive(b"w axis0.config.enable_watchdog 1\n", 0.0, &mut drive, &mut out);
        device.tick(0.001, &mut drive, &f, &mut out);
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.error\n")), "2048\r\n");
        device.receive(b"u 0\nsc\nw axis0.requested_state 8\n", 1.0, &mut drive, &mut out);
        assert!(drive.is_enabled());
        // Fed every 0.5 s it holds.
        for step in 1..=6 {
            let now = 1.0 + f64::from(step) * 0.5;
            device.receive(b"u 0\n", now, &mut drive, &mut out);
            device.tick(now + 0.001, &mut drive, &f, &mut out);
        }
        assert!(drive.is_enabled());
        // Not fed for more than the 1 s timeout: IDLE with WATCHDOG_TIMER_EXPIRED.
        device.tick(5.1, &mut drive, &f, &mut out);
        assert!(!drive.is_enabled());
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.current_state\n")), "1\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.error\n")), "2048\r\n");
        assert!(out.is_empty());
    }

    #[test]
    fn sim_faults_and_overspeed_become_error_bits() {
        let (mut device, mut drive) = setup();
        drive.write_param("overcurrent_trip_a", 0.1).unwrap();
        ask(&mut device, &mut drive, b"w axis0.requested_state 8\nv 0 20\n");
        let mut frames = Vec::new();
        for _ in 0..100 {
            drive.advance(0.001, &mut frames);
            if let Some(&last) = frames.last() {
                device.tick(drive.time_s(), &mut drive, &last, &mut Vec::new());
            }
        }
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.motor.error\n")), "4096\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.error\n")), "64\r\n");
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.current_state\n")), "1\r\n");

        let (mut device, mut drive) = setup();
        ask(&mut device, &mut drive, b"w axis0.requested_state 8\n");
        device.tick(0.0, &mut drive, &frame(0.0, 5000.0, 24.0), &mut Vec::new());
        assert_eq!(text(&ask(&mut device, &mut drive, b"r axis0.controller.error\n")), "1\r\n");
        assert!(!drive.is_enabled());

        let (mut device, mut drive) = setup();
        device.tick(0.0, &mut drive, &frame(0.0, 0.0, 6.0), &mut Vec::new());
        assert_eq!(text(&ask(&mut device, &mut drive, b"r error\n")), "2\r\n");
    }

    #[test]
    fn save_reboot_and_erase() {
        let (mut device, mut drive) = setup();
        ask(&mut device, &mut drive, b"w axis0.controller.config.vel_limit 5\n");
        ask(&mut device, &mut drive, b"sr\n");
        assert_ne!(
            text(&ask(&mut device, &mut drive, b"r axis0.controller.config.vel_limit\n")),
            "5.000000\r\n"
        );
        ask(&mut device, &mut drive, b"w axis0.controller.config.vel_limit 5\nss\n");
        ask(&mut device, &mut drive, b"sr\n");
        assert_eq!(
            text(&ask(&mut device, &mut drive, b"r axis0.controller.config.vel_limit\n")),
            "5.000000\r\n"
        );
        ask(&mut device, &mut drive, b"se\n");
        assert_eq!(
            text(&ask(&mut device, &mut drive, b"r axis0.controller.config.vel_limit\n")),
            "66.666664\r\n"
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..10)) {
            let (mut device, mut drive) = setup();
            let mut out = Vec::new();
            for chunk in chunks {
                device.receive(&chunk, 0.0, &mut drive, &mut out);
            }
            prop_assert!(device.line.len() < RX_BUF);
        }

        #[test]
        fn command_shaped_garbage_never_panics(
            lines in prop::collection::vec(("[pqvctfuiwresh]{1,2}", "[ -~]{0,40}"), 0..20),
        ) {
            let (mut device, mut drive) = setup();
            let mut out = Vec::new();
            for (command, args) in lines {
                let line = format!("{command}{args}\n");
                device.receive(line.as_bytes(), 0.0, &mut drive, &mut out);
            }
        }
    }
}
