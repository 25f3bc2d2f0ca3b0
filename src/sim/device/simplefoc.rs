//! The device side of the SimpleFOC Commander protocol: a sketch running `Commander` with one
//! motor registered under a letter, `motor.useMonitoring(Serial)` and `motor.monitor()` in its
//! loop, driving the simulated motor.
//!
//! It answers like the library's `Commander.cpp`: a 20-byte input buffer wiped silently when
//! full, `\n` and `\r` both ending a command (with the `Warn: \r detected!` text in verbose
//! mode 2 at every place the library tests for an end of line), the four verbose modes, numbers
//! printed the way Arduino's `Print` prints floats, `err` replies, and the monitoring stream
//! (tab-separated, bitmap order target, Uq, Ud, Iq, Id, velocity, angle, currents in mA).
//!
//! Units map onto the simulator at the edge: velocity mode drives its speed mode (rad/s →
//! rpm), angle mode its position mode (rad → rev) and torque mode its current mode. The
//! velocity limit (`LV`) only bounds the angle loop, as in the library, so it maps onto the
//! simulator's move speed and not onto its speed limit. The library latches no faults: `E1`
//! clears a tripped simulator's fault and enables, as re-enabling a real board would.

use std::f64::consts::TAU;

use crate::drive::ControlMode;
use crate::protocol::{RAD_S_PER_RPM, RPM_PER_RAD_S};
use crate::sim::device::Device;
use crate::sim::{SimDrive, TelemetryFrame};

/// `MAX_COMMAND_LENGTH`: the input buffer, terminator included.
const MAX_COMMAND_LENGTH: usize = 20;
/// `DEF_MON_DOWNSMAPLE`: `monitor()` prints once every this many calls plus one.
const DEFAULT_MONITOR_DOWNSAMPLE: u32 = 100;
/// The library's marker for a motor parameter that was never set.
const NOT_SET: f32 = -12345.0;
/// Most stream lines written in one tick; a clock jump skips lines instead of flooding.
const MAX_LINES_PER_TICK: u64 = 64;
/// What `CT` reports as the motion loop time.
const MOTION_LOOP_TIME_US: i32 = 100;

/// Monitoring bitmap bits, in print order.
const MON_TARGET: u8 = 0x40;
const MON_VOLT_Q: u8 = 0x20;
const MON_VOLT_D: u8 = 0x10;
const MON_CURR_Q: u8 = 0x08;
const MON_CURR_D: u8 = 0x04;
const MON_VEL: u8 = 0x02;
const MON_ANGLE: u8 = 0x01;

/// Motion control types (`MotionControlType`).
const MOTION_TORQUE: u8 = 0;
const MOTION_VELOCITY: u8 = 1;
const MOTION_ANGLE: u8 = 2;
const MOTION_VELOCITY_OPENLOOP: u8 = 3;
const MOTION_ANGLE_OPENLOOP: u8 = 4;
const MOTION_ANGLE_NOCASCADE: u8 = 5;
const MOTION_CUSTOM: u8 = 6;
const MOTION_NAMES: [&str; 7] =
    ["torque", "vel", "angle", "vel open", "angle open", "angle nocascade", "custom"];

/// Torque control types (`TorqueControlType`).
const TORQUE_VOLTAGE: u8 = 0;
const TORQUE_FOC_CURRENT: u8 = 2;
const TORQUE_NAMES: [&str; 4] = ["volt", "dc curr", "foc curr", "est. curr"];

/// Verbose modes (`VerboseMode`); any other number behaves like `on_request`.
const VERBOSE_NOTHING: i32 = 0;
const VERBOSE_USER_FRIENDLY: i32 = 2;
const VERBOSE_MACHINE_READABLE: i32 = 3;

/// A `PIDController`'s settable fields.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pid {
    p: f32,
    i: f32,
    d: f32,
    ramp: f32,
    limit: f32,
}

/// Which of the motor's four controllers a command addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loop {
    CurrentQ,
    CurrentD,
    Velocity,
    Angle,
}

/// The emulated sketch: one `Commander`, one `FOCMotor`, monitoring on the same port.
#[derive(Debug, Clone)]
pub struct SimpleFocDevice {
    motor_id: u8,
    /// Stream lines per second at the default downsample; zero or less: the sketch does not
    /// call `motor.monitor()`.
    rate_hz: f64,
    received: Vec<u8>,
    verbose: i32,
    decimal_places: u8,
    /// Whether the motor state below has been taken over from the simulator.
    synced: bool,
    latest: Option<TelemetryFrame>,
    motion: u8,
    torque: u8,
    target: f32,
    pid_q: Pid,
    pid_d: Pid,
    pid_velocity: Pid,
    p_angle: Pid,
    tf_q: f32,
    tf_d: f32,
    tf_velocity: f32,
    tf_angle: f32,
    current_limit: f32,
    voltage_limit: f32,
    velocity_limit: f32,
    sensor_offset: f32,
    zero_electric_angle: f32,
    phase_resistance: f32,
    phase_inductance: f32,
    inductance_d: f32,
    inductance_q: f32,
    kv_rating: f32,
    modulation: u8,
    modulation_centered: i32,
    motion_downsample: u32,
    monitor_downsample: u32,
    monitor_variables: u8,
    monitor_decimals: u32,
    /// Stream schedule: lines are due at `anchor + n / line rate`.
    stream_anchor_s: Option<f64>,
    stream_lines: u64,
    /// Winding resistance and torque constant of the simulated motor, for Uq.
    sim_resistance_ohm: f64,
    sim_kt: f64,
}

impl SimpleFocDevice {
    /// A sketch with its motor registered under `motor` (label "motor"), streaming
    /// `rate_hz` monitoring lines per second at the default downsample.
    pub fn new(motor: char, rate_hz: f64) -> Self {
        let motor_id = if motor.is_ascii() { motor as u8 } else { b'M' };
        let pid = |p, i, limit| Pid { p, i, d: 0.0, ramp: 0.0, limit };
        SimpleFocDevice {
            motor_id,
            rate_hz: if rate_hz.is_finite() { rate_hz.max(0.0) } else { 0.0 },
            received: Vec::with_capacity(MAX_COMMAND_LENGTH),
            verbose: VERBOSE_USER_FRIENDLY,
            decimal_places: 3,
            synced: false,
            latest: None,
            motion: MOTION_VELOCITY,
            torque: TORQUE_FOC_CURRENT,
            target: 0.0,
            // Library defaults; replaced by the simulator's tuning at the first contact.
            pid_q: pid(3.0, 300.0, 12.0),
            pid_d: pid(3.0, 300.0, 12.0),
            pid_velocity: Pid { ramp: 1000.0, ..pid(0.5, 10.0, 2.0) },
            p_angle: pid(20.0, 0.0, 20.0),
            tf_q: 0.005,
            tf_d: 0.005,
            tf_velocity: 0.005,
            tf_angle: 0.0,
            current_limit: 2.0,
            voltage_limit: 12.0,
            velocity_limit: 20.0,
            sensor_offset: 0.0,
            zero_electric_angle: 0.0,
            phase_resistance: NOT_SET,
            phase_inductance: NOT_SET,
            inductance_d: NOT_SET,
            inductance_q: NOT_SET,
            kv_rating: NOT_SET,
            modulation: 0,
            modulation_centered: 1,
            motion_downsample: 0,
            monitor_downsample: DEFAULT_MONITOR_DOWNSAMPLE,
            monitor_variables: MON_TARGET | MON_VOLT_Q | MON_VEL | MON_ANGLE,
            monitor_decimals: 4,
            stream_anchor_s: None,
            stream_lines: 0,
            sim_resistance_ohm: 0.0,
            sim_kt: 0.0,
        }
    }

    /// Takes the tuning, limits, mode and setpoint over from the simulator, once.
    fn sync_from(&mut self, drive: &SimDrive) {
        if self.synced {
            return;
        }
        self.synced = true;
        let read = |key: &str| drive.read_param(key).ok().filter(|v| v.is_finite());
        if let (Some(kp), Some(ki)) = (read("current_kp"), read("current_ki")) {
            self.pid_q.p = kp as f32;
            self.pid_q.i = ki as f32;
            self.pid_d.p = kp as f32;
            self.pid_d.i = ki as f32;
        }
        if let (Some(kp), Some(ki)) = (read("speed_kp"), read("speed_ki")) {
            // A/rpm → A per rad/s.
            self.pid_velocity.p = (kp * RPM_PER_RAD_S) as f32;
            self.pid_velocity.i = (ki * RPM_PER_RAD_S) as f32;
        }
        if let Some(kp) = read("position_kp") {
            // rpm per rev → rad/s per rad.
            self.p_angle.p = (kp / 60.0) as f32;
        }
        if let Some(limit) = read("current_limit_a") {
            self.current_limit = limit as f32;
            self.pid_velocity.limit = limit as f32;
        }
        if let Some(bus) = read("bus_voltage_v") {
            self.voltage_limit = bus as f32;
            self.pid_q.limit = bus as f32;
            self.pid_d.limit = bus as f32;
        }
        if let Some(speed) = read("profile_speed_rpm") {
            self.velocity_limit = (speed * RAD_S_PER_RPM) as f32;
            self.p_angle.limit = self.velocity_limit;
        }
        if let Some(r) = read("motor_resistance_ohm") {
            self.phase_resistance = r as f32;
            self.sim_resistance_ohm = r;
        }
        if let Some(kt) = read("torque_constant_nm_per_a") {
            self.sim_kt = kt;
        }
        let (motion, target) = match drive.mode() {
            ControlMode::Current => (MOTION_TORQUE, drive.setpoint()),
            ControlMode::Speed => (MOTION_VELOCITY, drive.setpoint() * RAD_S_PER_RPM),
            ControlMode::Position => (MOTION_ANGLE, drive.setpoint() * TAU),
        };
        self.motion = motion;
        self.target = target as f32;
    }

    // ---- printing, as the Commander's print functions ----

    fn print(&self, out: &mut Vec<u8>, text: &str) {
        if self.verbose != VERBOSE_NOTHING {
            out.extend_from_slice(text.as_bytes());
        }
    }

    fn println(&self, out: &mut Vec<u8>, text: &str) {
        if self.verbose != VERBOSE_NOTHING {
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    fn print_float(&self, out: &mut Vec<u8>, value: f32) {
        self.print(out, &arduino_float(f64::from(value), self.decimal_places));
    }

    fn println_float(&self, out: &mut Vec<u8>, value: f32) {
        self.println(out, &arduino_float(f64::from(value), self.decimal_places));
    }

    fn println_int(&self, out: &mut Vec<u8>, value: i64) {
        self.println(out, &value.to_string());
    }

    fn print_verbose(&self, out: &mut Vec<u8>, text: &str) {
        if self.verbose == VERBOSE_USER_FRIENDLY {
            self.print(out, text);
        }
    }

    fn print_machine(&self, out: &mut Vec<u8>, text: &str) {
        if self.verbose == VERBOSE_MACHINE_READABLE {
            self.print(out, text);
        }
    }

    fn print_machine_char(&self, out: &mut Vec<u8>, ch: u8) {
        if self.verbose == VERBOSE_MACHINE_READABLE {
            out.push(ch);
        }
    }

    fn print_error(&self, out: &mut Vec<u8>) {
        self.println(out, "err");
    }

    /// The library's end-of-line test, with its side effect: in verbose mode 2 every test that
    /// meets a `\r` prints a warning ending in a bare `\n`.
    fn is_sentinel(&self, ch: u8, out: &mut Vec<u8>) -> bool {
        if ch == b'\n' {
            true
        } else if ch == b'\r' {
            self.print_verbose(out, "Warn: \\r detected! \n");
            true
        } else {
            false
        }
    }

    // ---- the Commander ----

    /// One complete command, terminator included.
    fn run(&mut self, line: &[u8], drive: &mut SimDrive, out: &mut Vec<u8>) {
        let Some(&id) = line.first() else { return };
        match id {
            b'?' => {
                self.print_machine(out, "?");
                self.print(out, &char::from(self.motor_id).to_string());
                self.print(out, ":");
                self.println(out, "motor");
            }
            b'@' => {
                if !self.is_sentinel(at(line, 1), out) {
                    self.verbose = atoi(&line[1..]);
                }
                self.print_verbose(out, "Verb:");
                self.print_machine(out, "@");
                match self.verbose {
                    VERBOSE_NOTHING => self.println(out, "off!"),
                    1 | VERBOSE_USER_FRIENDLY => self.println(out, "on!"),
                    VERBOSE_MACHINE_READABLE => self.println(out, "machine"),
                    _ => {}
                }
            }
            b'#' => {
                if !self.is_sentinel(at(line, 1), out) {
                    // `uint8_t decimal_places = atoi(..)`: truncated to a byte.
                    self.decimal_places = atoi(&line[1..]) as u8;
                }
                self.print_verbose(out, "Decimal:");
                self.print_machine(out, "#");
                self.println_int(out, i64::from(self.decimal_places));
            }
            _ if id == self.motor_id => {
                self.print_machine_char(out, id);
                self.motor(&line[1..], drive, out);
            }
            _ => {}
        }
    }

    /// `Commander::motor`: `cmd` is the line after the motor id.
    fn motor(&mut self, cmd: &[u8], drive: &mut SimDrive, out: &mut Vec<u8>) {
        let c0 = at(cmd, 0);
        if c0.is_ascii_digit() || c0 == b'-' || c0 == b'+' || self.is_sentinel(c0, out) {
            self.target_command(cmd, drive, out);
            return;
        }
        let sub = at(cmd, 1);
        let value_index = if sub.is_ascii_uppercase() || sub == b'#' { 2 } else { 1 };
        let get = self.is_sentinel(at(cmd, value_index), out);
        let value = atof(tail(cmd, value_index)) as f32;
        self.print_machine_char(out, c0);
        if sub.is_ascii_uppercase() {
            self.print_machine_char(out, sub);
        }
        let rest = tail(cmd, 1);
        match c0 {
            b'Q' => self.controller(Loop::CurrentQ, "PID curr q| ", sub, rest, drive, out),
            b'D' => self.controller(Loop::CurrentD, "PID curr d| ", sub, rest, drive, out),
            b'V' => self.controller(Loop::Velocity, "PID vel| ", sub, rest, drive, out),
            b'A' => self.controller(Loop::Angle, "PID angle| ", sub, rest, drive, out),
            b'L' => {
                self.print_verbose(out, "Limits| ");
                match sub {
                    b'U' => {
                        self.print_verbose(out, "volt: ");
                        if !get {
                            self.update_voltage_limit(value);
                        }
                        self.println_float(out, self.voltage_limit);
                    }
                    b'C' => {
                        self.print_verbose(out, "curr: ");
                        if !get {
                            self.update_current_limit(value);
                        }
                        self.println_float(out, self.current_limit);
                    }
                    b'V' => {
                        self.print_verbose(out, "vel: ");
                        if !get {
                            self.update_velocity_limit(value);
                        }
                        self.println_float(out, self.velocity_limit);
                    }
                    _ => self.print_error(out),
                }
                self.apply_limits(drive);
            }
            b'C' | b'T' | b'E' => self.motion_command(cmd, drive, out),
            b'W' => {
                self.print_verbose(out, "PWM Mod | ");
                match sub {
                    b'T' => {
                        self.print_verbose(out, "type: ");
                        if !get {
                            self.modulation = value as u8;
                        }
                        match self.modulation {
                            0 => self.println(out, "SinePWM"),
                            1 => self.println(out, "SVPWM"),
                            2 => self.println(out, "Trap 120"),
                            3 => self.println(out, "Trap 150"),
                            _ => {}
                        }
                    }
                    b'C' => {
                        self.print_verbose(out, "center: ");
                        if !get {
                            self.modulation_centered = value as i32;
                        }
                        self.println_int(out, i64::from(self.modulation_centered));
                    }
                    _ => self.print_error(out),
                }
            }
            b'R' => {
                self.print_verbose(out, "R phase: ");
                if !get {
                    self.phase_resistance = value;
                }
                self.println_if_set(out, self.phase_resistance);
            }
            b'I' => {
                self.print_verbose(out, "L phase: ");
                match sub {
                    b'D' => {
                        self.print_verbose(out, "d: ");
                        if !get {
                            self.inductance_d = value;
                            self.phase_inductance = value;
                        }
                        self.println_if_set(out, self.inductance_d);
                    }
                    b'Q' => {
                        self.print_verbose(out, "q: ");
                        if !get {
                            self.inductance_q = value;
                        }
                        self.println_if_set(out, self.inductance_q);
                    }
                    _ => {
                        if !get {
                            self.phase_inductance = value;
                            self.inductance_d = value;
                            self.inductance_q = value;
                        }
                        self.println_if_set(out, self.phase_inductance);
                    }
                }
            }
            b'K' => {
                self.print_verbose(out, "Motor KV: ");
                if !get {
                    self.kv_rating = value;
                }
                self.println_if_set(out, self.kv_rating);
            }
            b'S' => {
                self.print_verbose(out, "Sensor | ");
                match sub {
                    b'M' => {
                        self.print_verbose(out, "offset: ");
                        if !get {
                            self.sensor_offset = value;
                        }
                        self.println_float(out, self.sensor_offset);
                    }
                    b'E' => {
                        self.print_verbose(out, "el. offset: ");
                        if !get {
                            self.zero_electric_angle = value;
                        }
                        self.println_float(out, self.zero_electric_angle);
                    }
                    _ => self.print_error(out),
                }
            }
            b'F' => self.foc_command(sub, value, drive, out),
            b'M' => self.monitor_command(cmd, get, value, drive.is_enabled(), out),
            _ => {
                self.print_verbose(out, "unknown cmd ");
                self.print_error(out);
            }
        }
    }

    fn println_if_set(&self, out: &mut Vec<u8>, value: f32) {
        if value == NOT_SET {
            self.println_int(out, 0);
        } else {
            self.println_float(out, value);
        }
    }

    /// `Q`/`D`/`V`/`A`: a PID gain, ramp or limit, or (`F`) the loop's low-pass filter.
    fn controller(
        &mut self,
        which: Loop,
        label: &str,
        sub: u8,
        rest: &[u8],
        drive: &mut SimDrive,
        out: &mut Vec<u8>,
    ) {
        self.print_verbose(out, label);
        let get = self.is_sentinel(at(rest, 1), out);
        let value = atof(tail(rest, 1)) as f32;
        if sub == b'F' {
            self.print_verbose(out, "Tf: ");
            let tf = match which {
                Loop::CurrentQ => &mut self.tf_q,
                Loop::CurrentD => &mut self.tf_d,
                Loop::Velocity => &mut self.tf_velocity,
                Loop::Angle => &mut self.tf_angle,
            };
            if !get {
                *tf = value;
            }
            let tf = *tf;
            self.println_float(out, tf);
            return;
        }
        let label = match at(rest, 0) {
            b'P' => "P: ",
            b'I' => "I: ",
            b'D' => "D: ",
            b'R' => "ramp: ",
            b'L' => "limit: ",
            _ => {
                self.print_error(out);
                return;
            }
        };
        self.print_verbose(out, label);
        let pid = match which {
            Loop::CurrentQ => &mut self.pid_q,
            Loop::CurrentD => &mut self.pid_d,
            Loop::Velocity => &mut self.pid_velocity,
            Loop::Angle => &mut self.p_angle,
        };
        let field = match at(rest, 0) {
            b'P' => &mut pid.p,
            b'I' => &mut pid.i,
            b'D' => &mut pid.d,
            b'R' => &mut pid.ramp,
            _ => &mut pid.limit,
        };
        if !get {
            *field = value;
        }
        let shown = *field;
        self.println_float(out, shown);
        if !get {
            self.apply_gains(drive);
            self.apply_limits(drive);
        }
    }

    /// `C` (motion type, downsample, loop time), `T` (torque type) and `E` (enable).
    fn motion_command(&mut self, cmd: &[u8], drive: &mut SimDrive, out: &mut Vec<u8>) {
        let c = at(cmd, 0);
        let sub = at(cmd, 1);
        let value_index = if sub == b'D' { 2 } else { 1 };
        let get = self.is_sentinel(at(cmd, value_index), out);
        let value = atof(tail(cmd, if sub.is_ascii_uppercase() { 2 } else { 1 })) as f32;
        match c {
            b'C' => {
                self.print_verbose(out, "Motion:");
                match sub {
                    b'T' => {
                        self.print_verbose(out, " time: ");
                        self.println_int(out, i64::from(MOTION_LOOP_TIME_US));
                    }
                    b'D' => {
                        self.print_verbose(out, " downsample: ");
                        if !get {
                            self.motion_downsample = value.max(0.0) as u32;
                        }
                        self.println_int(out, i64::from(self.motion_downsample as i32));
                    }
                    _ => {
                        if !get && value >= 0.0 && (value as i32) < 7 {
                            self.update_motion(value as u8, drive);
                        }
                        self.println(out, MOTION_NAMES[usize::from(self.motion)]);
                    }
                }
            }
            b'T' => {
                self.print_verbose(out, "Torque: ");
                match sub {
                    b'T' => {
                        self.print_verbose(out, " time: ");
                        self.println_int(out, i64::from(MOTION_LOOP_TIME_US));
                    }
                    _ => {
                        let code = value as i8;
                        if !get && (0..4).contains(&code) {
                            self.torque = code as u8;
                            if self.torque == TORQUE_VOLTAGE {
                                self.update_voltage_limit(self.voltage_limit);
                            } else {
                                self.update_current_limit(self.current_limit);
                            }
                            self.apply_target(drive);
                            self.apply_limits(drive);
                        }
                        self.println(out, TORQUE_NAMES[usize::from(self.torque)]);
                    }
                }
            }
            _ => {
                self.print_verbose(out, "Status: ");
                if !get {
                    if value != 0.0 {
                        // The library has no fault latch: enabling simply enables.
                        drive.reset_faults();
                        if drive.enable().is_ok() {
                            self.apply_target(drive);
                        }
                    } else {
                        drive.disable();
                    }
                }
                self.println_int(out, i64::from(drive.is_enabled()));
            }
        }
    }

    /// The target command: `<target>[ <limit>[ <limit>]]` by motion type, or a bare end of
    /// line to read the target (printed in verbose mode 3 only).
    fn target_command(&mut self, cmd: &[u8], drive: &mut SimDrive, out: &mut Vec<u8>) {
        if self.is_sentinel(at(cmd, 0), out) {
            if self.verbose == VERBOSE_MACHINE_READABLE {
                self.println_float(out, self.target);
            }
            return;
        }
        let tokens = strtok_spaces(cmd);
        let value = |i: usize| tokens.get(i).map(|t| atof(t) as f32);
        let first = value(0).unwrap_or(0.0);
        match self.motion {
            MOTION_TORQUE | MOTION_ANGLE_NOCASCADE => self.target = first,
            MOTION_VELOCITY | MOTION_VELOCITY_OPENLOOP => {
                self.target = first;
                if let Some(limit) = value(1) {
                    self.update_torque_limit(limit);
                }
            }
            MOTION_ANGLE | MOTION_ANGLE_OPENLOOP => {
                self.target = first;
                if let Some(velocity_limit) = value(1) {
                    self.update_velocity_limit(velocity_limit);
                    if let Some(limit) = value(2) {
                        self.update_torque_limit(limit);
                    }
                }
            }
            _ => {}
        }
        self.print_verbose(out, "Target: ");
        self.println_float(out, self.target);
        self.apply_target(drive);
        self.apply_limits(drive);
    }

    /// `F`: re-initialise FOC, measure R and L, tune the current loop (library 2.4.0).
    fn foc_command(&mut self, sub: u8, value: f32, drive: &mut SimDrive, out: &mut Vec<u8>) {
        self.print_verbose(out, "MOT | ");
        match sub {
            b'R' => {
                self.print_verbose(out, "Reinit!");
                self.target = 0.0;
                self.apply_target(drive);
                self.println(out, "done");
            }
            b'P' => {
                self.print_verbose(out, "Meas motor params!");
                if let (Ok(r), Ok(l)) =
                    (drive.read_param("motor_resistance_ohm"), drive.read_param("motor_inductance_h"))
                {
                    self.phase_resistance = r as f32;
                    self.phase_inductance = l as f32;
                    self.inductance_d = l as f32;
                    self.inductance_q = l as f32;
                }
                self.println(out, "done");
            }
            b'C' => {
                self.print_verbose(out, "PI tune curr.| ");
                let code = if value <= 0.0 {
                    1
                } else if self.phase_resistance == NOT_SET || self.inductance_q == NOT_SET {
                    3
                } else {
                    let w = std::f32::consts::TAU * value;
                    self.pid_q.p = self.inductance_q * w;
                    self.pid_q.i = self.phase_resistance * w;
                    self.pid_d.p = self.inductance_d * w;
                    self.pid_d.i = self.phase_resistance * w;
                    self.tf_q = 1.0 / (w * 5.0);
                    self.tf_d = self.tf_q;
                    self.apply_gains(drive);
                    0
                };
                if code == 0 {
                    self.println(out, "done");
                } else {
                    self.print_verbose(out, "failed, err code: ");
                    self.println_int(out, code);
                }
            }
            _ => self.print_error(out),
        }
    }

    /// `M`: one-shot reads, stream downsample, clear, decimals and bitmap.
    fn monitor_command(&mut self, cmd: &[u8], get: bool, value: f32, enabled: bool, out: &mut Vec<u8>) {
        let sub = at(cmd, 1);
        let value_index = if sub.is_ascii_uppercase() || sub == b'#' { 2 } else { 1 };
        self.print_verbose(out, "Monitor | ");
        match sub {
            b'G' => {
                let which = if (0.0..256.0).contains(&value) { value as u8 } else { u8::MAX };
                let state = self.state_values(enabled);
                let labels = ["target: ", "Vq: ", "Vd: ", "Cq: ", "Cd: ", "vel: ", "angle: "];
                match which {
                    0..=6 => {
                        self.print_verbose(out, labels[usize::from(which)]);
                        self.println_float(out, state[usize::from(which)] as f32);
                    }
                    7 => {
                        self.print_verbose(out, "all: ");
                        for (i, v) in state.iter().enumerate() {
                            if i > 0 {
                                self.print(out, ";");
                            }
                            self.print_float(out, *v as f32);
                        }
                        self.println(out, "");
                    }
                    _ => self.print_error(out),
                }
            }
            b'D' => {
                self.print_verbose(out, "downsample: ");
                if !get {
                    self.monitor_downsample = value.max(0.0) as u32;
                    self.stream_anchor_s = None;
                }
                self.println_int(out, i64::from(self.monitor_downsample as i32));
            }
            b'C' => {
                self.monitor_variables = 0;
                self.println(out, "clear");
            }
            b'#' => {
                // No GET check in the library: `MM#` alone sets 0 decimals.
                self.print_verbose(out, "decimal: ");
                self.monitor_decimals = value.max(0.0) as u32;
                self.println_int(out, i64::from(self.monitor_decimals as i32));
            }
            b'S' => {
                if !get {
                    let mut bits: u8 = 0;
                    for i in 0..7 {
                        let ch = at(cmd, value_index + i);
                        if self.is_sentinel(ch, out) {
                            break;
                        }
                        // `(ch - '0') << (6 - i)` in int, or-ed into a uint8_t.
                        bits |= (i32::from(ch) - 48).wrapping_shl(6 - i as u32) as u8;
                    }
                    self.monitor_variables = bits;
                }
                for i in 0..7 {
                    let bit = (self.monitor_variables >> (6 - i)) & 1;
                    self.print(out, if bit == 1 { "1" } else { "0" });
                }
                self.println(out, "");
            }
            _ => self.print_error(out),
        }
    }

    // ---- the motor model ----

    fn update_current_limit(&mut self, limit: f32) {
        self.current_limit = limit;
        if self.torque != TORQUE_VOLTAGE {
            self.pid_velocity.limit = limit;
            if self.motion == MOTION_ANGLE_NOCASCADE {
                self.p_angle.limit = limit;
            }
        }
    }

    fn update_voltage_limit(&mut self, limit: f32) {
        self.voltage_limit = limit;
        self.pid_q.limit = limit;
        self.pid_d.limit = limit;
        if self.torque == TORQUE_VOLTAGE {
            self.pid_velocity.limit = limit;
            if self.motion == MOTION_ANGLE_NOCASCADE {
                self.p_angle.limit = limit;
            }
        }
    }

    fn update_velocity_limit(&mut self, limit: f32) {
        self.velocity_limit = limit;
        if self.motion != MOTION_ANGLE_NOCASCADE {
            self.p_angle.limit = limit.abs();
        }
    }

    /// The optional limit of a target command: volts in voltage torque mode, else amperes.
    fn update_torque_limit(&mut self, limit: f32) {
        if self.torque == TORQUE_VOLTAGE {
            self.update_voltage_limit(limit);
        } else {
            self.update_current_limit(limit);
        }
    }

    /// `updateMotionControlType` as the library's code runs it (its comment promises more):
    /// the `switch` falls through with `break`s that leave the target alone except when
    /// entering torque mode (target 0), velocity open loop from velocity (0), and angle open
    /// loop from angle or angle_nocascade (the present angle). Every other change keeps the
    /// old target number, now read in the new unit: a host must send the new target before
    /// the loops run.
    fn update_motion(&mut self, motion: u8, drive: &mut SimDrive) {
        if motion == self.motion {
            return;
        }
        let old = self.motion;
        match motion {
            MOTION_TORQUE => self.target = 0.0,
            MOTION_VELOCITY_OPENLOOP if old == MOTION_VELOCITY => self.target = 0.0,
            MOTION_ANGLE_OPENLOOP if old == MOTION_ANGLE || old == MOTION_ANGLE_NOCASCADE => {
                self.target = self.shaft_angle() as f32;
            }
            _ => {}
        }
        self.motion = motion;
        self.update_velocity_limit(self.velocity_limit);
        self.update_current_limit(self.current_limit);
        self.update_voltage_limit(self.voltage_limit);
        self.apply_target(drive);
        self.apply_limits(drive);
    }

    /// The simulator's mode and setpoint for the motion type and target.
    fn apply_target(&self, drive: &mut SimDrive) {
        let target = f64::from(self.target);
        let (mode, setpoint) = match self.motion {
            MOTION_VELOCITY | MOTION_VELOCITY_OPENLOOP => (ControlMode::Speed, target * RPM_PER_RAD_S),
            MOTION_ANGLE | MOTION_ANGLE_OPENLOOP | MOTION_ANGLE_NOCASCADE => {
                (ControlMode::Position, target / TAU)
            }
            MOTION_CUSTOM => (ControlMode::Current, 0.0),
            _ if self.torque == TORQUE_VOLTAGE => (ControlMode::Current, target / self.resistance_ohm(drive)),
            _ => (ControlMode::Current, target),
        };
        drive.set_mode(mode);
        if setpoint.is_finite() {
            drive.set_setpoint(setpoint);
        }
    }

    /// Gains the simulator's loops have in common with the library's.
    fn apply_gains(&self, drive: &mut SimDrive) {
        let pairs = [
            ("current_kp", f64::from(self.pid_q.p)),
            ("current_ki", f64::from(self.pid_q.i)),
            ("speed_kp", f64::from(self.pid_velocity.p) * RAD_S_PER_RPM),
            ("speed_ki", f64::from(self.pid_velocity.i) * RAD_S_PER_RPM),
            ("position_kp", f64::from(self.p_angle.p) * 60.0),
        ];
        for (key, value) in pairs {
            write_clamped(drive, key, value);
        }
    }

    /// The simulator's current limit and move speed from the library's limits: the
    /// velocity PID output bounds the current in the closed loops, the angle P output and
    /// the velocity limit bound the speed of angle moves.
    fn apply_limits(&self, drive: &mut SimDrive) {
        let mut current = f64::from(self.current_limit).abs();
        let closed_loop = matches!(self.motion, MOTION_VELOCITY | MOTION_ANGLE);
        if closed_loop && self.torque != TORQUE_VOLTAGE {
            current = current.min(f64::from(self.pid_velocity.limit).abs());
        }
        write_clamped(drive, "current_limit_a", current);
        let speed = f64::from(self.velocity_limit).abs().min(f64::from(self.p_angle.limit).abs());
        write_clamped(drive, "profile_speed_rpm", speed * RPM_PER_RAD_S);
    }

    fn resistance_ohm(&self, drive: &SimDrive) -> f64 {
        if self.phase_resistance != NOT_SET && self.phase_resistance > 0.0 {
            f64::from(self.phase_resistance)
        } else {
            drive.read_param("motor_resistance_ohm").unwrap_or(1.0)
        }
    }

    fn shaft_angle(&self) -> f64 {
        self.latest.map_or(0.0, |f| f.position_rev * TAU)
    }

    /// target, Uq, Ud, Iq, Id (A), velocity (rad/s), angle (rad) from the newest frame.
    fn state_values(&self, enabled: bool) -> [f64; 7] {
        let target = f64::from(self.target);
        let Some(frame) = self.latest else {
            return [target, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        };
        let velocity = frame.speed_rpm * RAD_S_PER_RPM;
        // The q voltage of a running motor: resistive drop plus back-EMF (Kt in V·s/rad).
        let uq = if enabled {
            let lim = f64::from(self.voltage_limit).abs();
            // `_constrain`: a NaN limit lets the value through.
            let raw = self.sim_resistance_ohm * frame.current_a + self.sim_kt * velocity;
            if raw < -lim {
                -lim
            } else if raw > lim {
                lim
            } else {
                raw
            }
        } else {
            0.0
        };
        [target, uq, 0.0, frame.current_a, 0.0, velocity, frame.position_rev * TAU]
    }

    /// One `monitor()` line: the selected values in bitmap order, currents in mA.
    fn monitor_line(&self, enabled: bool, out: &mut Vec<u8>) {
        let values = self.state_values(enabled);
        let bits = [MON_TARGET, MON_VOLT_Q, MON_VOLT_D, MON_CURR_Q, MON_CURR_D, MON_VEL, MON_ANGLE];
        out.extend_from_slice(
            monitor_text(self.monitor_variables, self.monitor_decimals, &values, &bits).as_bytes(),
        );
    }
}

/// The text of a monitoring line (empty when no variable is selected).
fn monitor_text(variables: u8, decimals: u32, values: &[f64; 7], bits: &[u8; 7]) -> String {
    let mut line = String::new();
    for (i, (&bit, &value)) in bits.iter().zip(values).enumerate() {
        if variables & bit == 0 {
            continue;
        }
        if !line.is_empty() {
            line.push('\t');
        }
        // Iq and Id go out in mA.
        let value = if i == 3 || i == 4 { value * 1000.0 } else { value };
        // `Print::print(double, int)` takes the digits as a byte.
        line.push_str(&arduino_float(f64::from(value as f32), decimals as u8));
    }
    if !line.is_empty() {
        line.push_str("\r\n");
    }
    line
}

/// The byte at `i`, or NUL past the end (the library's buffer is zero-filled).
fn at(bytes: &[u8], i: usize) -> u8 {
    bytes.get(i).copied().unwrap_or(0)
}

fn tail(bytes: &[u8], i: usize) -> &[u8] {
    bytes.get(i..).unwrap_or(&[])
}

/// Writes a simulator parameter, brought into its catalogue range; the device keeps the
/// value it was given whatever the simulator can take.
fn write_clamped(drive: &mut SimDrive, key: &str, value: f64) {
    if !value.is_finite() {
        return;
    }
    let Some(spec) = SimDrive::param_specs().into_iter().find(|s| s.key == key) else { return };
    let _ = drive.write_param(key, value.clamp(spec.min, spec.max));
}

/// `strtok(cmd, " ")`: the space-separated tokens up to the first NUL.
fn strtok_spaces(cmd: &[u8]) -> Vec<&[u8]> {
    let end = cmd.iter().position(|&b| b == 0).unwrap_or(cmd.len());
    cmd[..end].split(|&b| b == b' ').filter(|t| !t.is_empty()).collect()
}

/// C `atoi`: leading white space, a sign, digits; wraps instead of overflowing.
fn atoi(s: &[u8]) -> i32 {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut n: i32 = 0;
    while let Some(d) = s.get(i).filter(|b| b.is_ascii_digit()) {
        n = n.wrapping_mul(10).wrapping_add(i32::from(d - b'0'));
        i += 1;
    }
    if negative { n.wrapping_neg() } else { n }
}

/// C `atof`: the longest prefix (after white space) that reads as a decimal number, an
/// exponent, `inf`/`infinity` or `nan`; 0 when there is none.
fn atof(s: &[u8]) -> f64 {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    let s = &s[..end];
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let start = i;
    if matches!(s.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let word = |w: &str| s.len() >= i + w.len() && s[i..i + w.len()].eq_ignore_ascii_case(w.as_bytes());
    let negative = s.get(start) == Some(&b'-');
    if word("inf") {
        return if negative { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    if word("nan") {
        return f64::NAN;
    }
    let mut digits = 0;
    while s.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
        digits += 1;
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return 0.0;
    }
    let mantissa_end = i;
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some(b'-' | b'+')) {
            j += 1;
        }
        let exp_start = j;
        while s.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    let text = String::from_utf8_lossy(&s[start..i]);
    text.parse::<f64>()
        .or_else(|_| String::from_utf8_lossy(&s[start..mantissa_end]).parse::<f64>())
        .unwrap_or(0.0)
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Arduino `Print::printFloat`: `nan`, `inf`, `ovf` beyond ±4294967040, otherwise the value
/// rounded half up at `digits` decimals and printed digit by digit (a small negative value
/// prints as `-0.000`).
fn arduino_float(number: f64, digits: u8) -> String {
    if number.is_nan() {
        return "nan".into();
    }
    if number.is_infinite() {
        return "inf".into();
    }
    if !(-4_294_967_040.0..=4_294_967_040.0).contains(&number) {
        return "ovf".into();
    }
    let mut text = String::new();
    let mut number = number;
    if number < 0.0 {
        text.push('-');
        number = -number;
    }
    let mut rounding = 0.5;
    for _ in 0..digits {
        rounding /= 10.0;
    }
    number += rounding;
    let int_part = number as u32;
    let mut remainder = number - f64::from(int_part);
    text.push_str(&int_part.to_string());
    if digits > 0 {
        text.push('.');
    }
    for _ in 0..digits {
        remainder *= 10.0;
        let digit = remainder as u32;
        text.push_str(&digit.to_string());
        remainder -= f64::from(digit);
    }
    text
}

impl Device for SimpleFocDevice {
    fn receive(&mut self, bytes: &[u8], _now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        self.sync_from(drive);
        for &b in bytes {
            self.received.push(b);
            if self.is_sentinel(b, out) {
                let line = std::mem::take(&mut self.received);
                self.run(&line, drive, out);
                self.received = line;
                self.received.clear();
            }
            if self.received.len() >= MAX_COMMAND_LENGTH {
                // Too long without an end of line: wiped without a word.
                self.received.clear();
            }
        }
    }

    fn tick(&mut self, now_s: f64, drive: &mut SimDrive, latest: &TelemetryFrame, out: &mut Vec<u8>) {
        self.sync_from(drive);
        self.latest = Some(*latest);
        if self.rate_hz <= 0.0 || self.monitor_downsample == 0 || !now_s.is_finite() {
            self.stream_anchor_s = None;
            return;
        }
        // monitor() runs at the loop rate and prints every (downsample + 1)-th call; the loop
        // rate is chosen so that the default downsample gives `rate_hz`.
        let loop_rate_hz = self.rate_hz * f64::from(DEFAULT_MONITOR_DOWNSAMPLE + 1);
        let line_rate_hz = loop_rate_hz / (f64::from(self.monitor_downsample) + 1.0);
        let anchor = *self.stream_anchor_s.get_or_insert_with(|| {
            self.stream_lines = 0;
            now_s
        });
        let due = ((now_s - anchor) * line_rate_hz).floor().max(0.0) as u64 + 1;
        if due.saturating_sub(self.stream_lines) > MAX_LINES_PER_TICK {
            self.stream_lines = due - 1;
        }
        while self.stream_lines < due {
            self.stream_lines += 1;
            self.monitor_line(drive.is_enabled(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sim::SimConfig;

    fn setup() -> (SimpleFocDevice, SimDrive) {
        (SimpleFocDevice::new('M', 100.0), SimDrive::new(&SimConfig::default()))
    }

    fn send(device: &mut SimpleFocDevice, drive: &mut SimDrive, request: &[u8]) -> String {
        let mut out = Vec::new();
        device.receive(request, 0.0, drive, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Runs the simulation and the stream for `dt_s`, 1 ms per tick.
    fn run(device: &mut SimpleFocDevice, drive: &mut SimDrive, t_s: &mut f64, dt_s: f64) -> String {
        let mut out = Vec::new();
        let mut frames = Vec::new();
        let steps = (dt_s * 1000.0).round() as usize;
        for _ in 0..steps {
            *t_s += 0.001;
            frames.clear();
            drive.advance(0.001, &mut frames);
            if let Some(frame) = frames.last() {
                device.tick(*t_s, drive, frame, &mut out);
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn reference_vectors_byte_exact() {
        let (mut device, mut drive) = setup();
        let vectors: &[(&[u8], &str)] = &[
            (b"?\n", "M:motor\r\n"),
            (b"MVP1.2\n", "PID vel| P: 1.200\r\n"),
            (b"MLV20\n", "Limits| vel: 20.000\r\n"),
            (b"ME1\n", "Status: 1\r\n"),
            (b"MC1\n", "Motion:vel\r\n"),
            (b"M10 2.5\n", "Target: 10.000\r\n"),
            (b"MLC\n", "Limits| curr: 2.500\r\n"),
            (b"MMS0000011\n", "Monitor | 0000011\r\n"),
            (b"MX\n", "unknown cmd err\r\n"),
            (b"@3\n", "@machine\r\n"),
            (b"MVP\n", "MVP1.200\r\n"),
        ];
        for (request, reply) in vectors {
            assert_eq!(
                send(&mut device, &mut drive, request),
                *reply,
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        assert!(drive.is_enabled());
        assert_eq!(drive.mode(), ControlMode::Speed);
        assert!((drive.setpoint() - 10.0 * RPM_PER_RAD_S).abs() < 1e-3);
        assert!((drive.config().drive.current_limit_a - 2.5).abs() < 1e-6);
    }

    #[test]
    fn machine_readable_replies_carry_the_command_letters() {
        let (mut device, mut drive) = setup();
        send(&mut device, &mut drive, b"@3\n");
        let vectors: &[(&[u8], &str)] = &[
            (b"MC\n", "MCvel\r\n"),
            (b"ME\n", "ME0\r\n"),
            (b"M\n", "M0.000\r\n"),
            (b"M-2.5\n", "M-2.500\r\n"),
            (b"MLV\n", "MLV314.159\r\n"),
            (b"MLXerr\n", "MLXerr\r\n"),
            (b"MLX\n", "MLXerr\r\n"),
            (b"MX\n", "MXerr\r\n"),
            (b"MV\n", "MVerr\r\n"),
            (b"MVF0.01\n", "MVF0.010\r\n"),
            (b"MT\n", "MTfoc curr\r\n"),
            (b"MT0\n", "MTvolt\r\n"),
            (b"MT9\n", "MTvolt\r\n"),
            (b"MC9\n", "MCvel\r\n"),
            (b"MC2\n", "MCangle\r\n"),
            (b"MMS1101011\n", "MMS1101011\r\n"),
            (b"MMD\n", "MMD100\r\n"),
            (b"MMC\n", "MMCclear\r\n"),
            (b"MM#2\n", "MM2\r\n"),
            (b"MSM\n", "MSM0.000\r\n"),
            (b"#6\n", "#6\r\n"),
            (b"MQL\n", "MQL24.000000\r\n"),
            (b"?\n", "?M:motor\r\n"),
            (b"X1\n", ""),
        ];
        for (request, reply) in vectors {
            assert_eq!(
                send(&mut device, &mut drive, request),
                *reply,
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        let all = send(&mut device, &mut drive, b"MMG7\n");
        assert!(all.starts_with("MMG") && all.ends_with("\r\n"), "{all}");
        assert_eq!(all.trim_end().split(';').count(), 7, "{all}");
    }

    #[test]
    fn four_verbose_modes() {
        let (mut device, mut drive) = setup();
        assert_eq!(send(&mut device, &mut drive, b"@1\n"), "on!\r\n");
        assert_eq!(
            send(&mut device, &mut drive, b"MVP\n"),
            format!("{}\r\n", arduino_float(f64::from(device.pid_velocity.p), 3))
        );
        assert_eq!(send(&mut device, &mut drive, b"M\n"), "");
        assert_eq!(send(&mut device, &mut drive, b"M5\n"), "5.000\r\n");
        assert_eq!(send(&mut device, &mut drive, b"@0\n"), "");
        assert_eq!(send(&mut device, &mut drive, b"MVP\n"), "");
        assert_eq!(send(&mut device, &mut drive, b"#4\n"), "");
        assert_eq!(send(&mut device, &mut drive, b"@2\n"), "Verb:on!\r\n");
        assert_eq!(send(&mut device, &mut drive, b"#4\n"), "Decimal:4\r\n");
        assert_eq!(send(&mut device, &mut drive, b"M\n"), "");
        assert_eq!(send(&mut device, &mut drive, b"M\n"), "");
        assert_eq!(send(&mut device, &mut drive, b"MMG0\n"), "Monitor | target: 5.0000\r\n");
    }

    #[test]
    fn carriage_return_warnings_in_mode_2() {
        let (mut device, mut drive) = setup();
        send(&mut device, &mut drive, b"MVP1.2\n");
        let w = "Warn: \\r detected! \n";
        assert_eq!(send(&mut device, &mut drive, b"MVP\r"), format!("{w}{w}PID vel| {w}P: 1.200\r\n"));
        // `\r\n`: one command, then an empty line that nothing answers.
        assert_eq!(send(&mut device, &mut drive, b"ME\r\n"), format!("{w}{w}{w}Status: 0\r\n"));
        assert_eq!(send(&mut device, &mut drive, b"M1\r"), format!("{w}Target: 1.000\r\n"));
        // Mode 3 prints no warnings.
        send(&mut device, &mut drive, b"@3\n");
        assert_eq!(send(&mut device, &mut drive, b"MVP\r"), "MVP1.200\r\n");
    }

    #[test]
    fn overlong_lines_are_wiped_silently() {
        let (mut device, mut drive) = setup();
        // 19 characters and the terminator fill the buffer exactly: accepted.
        assert_eq!(send(&mut device, &mut drive, b"MVP1.00000000000000\n"), "PID vel| P: 1.000\r\n");
        // 20 characters: wiped at the 20th byte, the lone terminator is silent.
        assert_eq!(send(&mut device, &mut drive, b"MVP2.000000000000000\n"), "");
        assert_eq!(send(&mut device, &mut drive, b"MVP\n"), "PID vel| P: 1.000\r\n");
        // The tail after a wipe runs as a command of its own.
        assert_eq!(send(&mut device, &mut drive, b"XXXXXXXXXXXXXXXXXXXXME\n"), "Status: 0\r\n");
        // Split anywhere: same result.
        let mut out = Vec::new();
        for b in b"MLV3.5\n" {
            device.receive(&[*b], 0.0, &mut drive, &mut out);
        }
        assert_eq!(String::from_utf8(out).unwrap(), "Limits| vel: 3.500\r\n");
    }

    #[test]
    fn monitor_bitmap_parsing_follows_the_library() {
        let (mut device, mut drive) = setup();
        send(&mut device, &mut drive, b"@3\n");
        assert_eq!(send(&mut device, &mut drive, b"MMS11\n"), "MMS1100000\r\n");
        // '2' - '0' = 2 shifted into bit 7, which is not printed.
        assert_eq!(send(&mut device, &mut drive, b"MMS2\n"), "MMS0000000\r\n");
        assert_eq!(send(&mut device, &mut drive, b"MMS\n"), "MMS0000000\r\n");
        assert_eq!(send(&mut device, &mut drive, b"MM#\n"), "MM0\r\n");
        assert_eq!(device.monitor_decimals, 0);
        assert_eq!(send(&mut device, &mut drive, b"MMG9\n"), "MMGerr\r\n");
    }

    #[test]
    fn stream_vector_and_current_scaling() {
        let bits = [MON_TARGET, MON_VOLT_Q, MON_VOLT_D, MON_CURR_Q, MON_CURR_D, MON_VEL, MON_ANGLE];
        let values = [1.0, 2.0, 0.0, 0.5, -0.0001, 9.9871, 123.4567];
        assert_eq!(monitor_text(0b0000011, 4, &values, &bits), "9.9871\t123.4567\r\n");
        assert_eq!(monitor_text(0b0001000, 2, &values, &bits), "500.00\r\n");
        assert_eq!(monitor_text(0b1000100, 1, &values, &bits), "1.0\t-0.1\r\n");
        assert_eq!(monitor_text(0, 4, &values, &bits), "");
    }

    #[test]
    fn arduino_float_format() {
        assert_eq!(arduino_float(f64::from(1.2f32), 3), "1.200");
        assert_eq!(arduino_float(-0.0001, 3), "-0.000");
        assert_eq!(arduino_float(2.5, 0), "3");
        assert_eq!(arduino_float(f64::NAN, 3), "nan");
        assert_eq!(arduino_float(f64::NEG_INFINITY, 3), "inf");
        assert_eq!(arduino_float(5e9, 3), "ovf");
        assert_eq!(arduino_float(-5e9, 3), "ovf");
        assert_eq!(arduino_float(123.45678, 4), "123.4568");
    }

    #[test]
    fn c_number_parsing() {
        assert_eq!(atof(b"1.5\n"), 1.5);
        assert_eq!(atof(b" -2e1x"), -20.0);
        assert_eq!(atof(b"1e"), 1.0);
        assert_eq!(atof(b"abc"), 0.0);
        assert_eq!(atof(b"."), 0.0);
        assert!(atof(b"inf").is_infinite());
        assert!(atof(b"NaN").is_nan());
        assert_eq!(atoi(b"3\n"), 3);
        assert_eq!(atoi(b"-1"), -1);
        assert_eq!(atoi(b"x"), 0);
    }

    #[test]
    fn stream_rate_bitmap_and_downsample() {
        let (mut device, mut drive) = setup();
        let mut t = 0.0;
        let text = run(&mut device, &mut drive, &mut t, 1.0);
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!((99..=101).contains(&lines.len()), "{} lines", lines.len());
        // Default variables: target, Uq, velocity, angle with 4 decimals.
        for line in &lines {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "{line}");
            assert!(fields.iter().all(|f| f.split('.').nth(1).is_some_and(|d| d.len() == 4)), "{line}");
        }
        send(&mut device, &mut drive, b"MMS0001011\n");
        send(&mut device, &mut drive, b"MMD49\n");
        let text = run(&mut device, &mut drive, &mut t, 1.0);
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!((200..=204).contains(&lines.len()), "{} lines", lines.len());
        assert!(lines.iter().all(|l| l.split('\t').count() == 3));
        send(&mut device, &mut drive, b"MMD0\n");
        assert_eq!(run(&mut device, &mut drive, &mut t, 0.5), "");
        // No monitor() in the sketch: no stream at all.
        let mut quiet = SimpleFocDevice::new('M', 0.0);
        assert_eq!(run(&mut quiet, &mut drive, &mut t, 0.5), "");
    }

    #[test]
    fn modes_map_onto_the_simulator() {
        let (mut device, mut drive) = setup();
        let mut t = 0.0;
        send(&mut device, &mut drive, b"ME1\n");
        send(&mut device, &mut drive, b"M62.83185\n");
        run(&mut device, &mut drive, &mut t, 1.0);
        let speed = drive.setpoint();
        assert!((speed - 600.0).abs() < 0.01, "{speed}");
        // Angle mode keeps the target number: 62.83 rad now.
        assert_eq!(send(&mut device, &mut drive, b"MC2\n"), "Motion:angle\r\n");
        assert_eq!(drive.mode(), ControlMode::Position);
        assert!((drive.setpoint() - 10.0).abs() < 1e-3, "{}", drive.setpoint());
        send(&mut device, &mut drive, b"M0\n");
        assert_eq!(drive.setpoint(), 0.0);
        assert_eq!(send(&mut device, &mut drive, b"MC0\n"), "Motion:torque\r\n");
        assert_eq!(drive.mode(), ControlMode::Current);
        send(&mut device, &mut drive, b"M1.5\n");
        assert!((drive.setpoint() - 1.5).abs() < 1e-6);
        send(&mut device, &mut drive, b"ME0\n");
        assert!(!drive.is_enabled());
        // The velocity limit bounds angle moves (the move speed), not the speed limit.
        send(&mut device, &mut drive, b"MLV10\n");
        assert!((drive.config().drive.profile_speed_rpm - 10.0 * RPM_PER_RAD_S).abs() < 1e-3);
        assert_eq!(drive.config().drive.speed_limit_rpm, 4000.0);
    }

    #[test]
    fn motion_changes_keep_the_target_as_the_library_does() {
        let (mut device, mut drive) = setup();
        send(&mut device, &mut drive, b"@3\n");
        let mut t = 0.0;
        run(&mut device, &mut drive, &mut t, 0.01);
        let steps: &[(&[u8], &str)] = &[
            (b"MC2\n", "MCangle\r\n"),
            (b"M50\n", "M50.000\r\n"),
            // From angle to velocity: 50 rad becomes 50 rad/s.
            (b"MC1\n", "MCvel\r\n"),
            (b"M\n", "M50.000\r\n"),
            // Velocity to velocity open loop stops.
            (b"MC3\n", "MCvel open\r\n"),
            (b"M\n", "M0.000\r\n"),
            (b"M7\n", "M7.000\r\n"),
            // Open loop to closed loop keeps the number.
            (b"MC1\n", "MCvel\r\n"),
            (b"M\n", "M7.000\r\n"),
            // Torque mode always starts at 0.
            (b"MC0\n", "MCtorque\r\n"),
            (b"M\n", "M0.000\r\n"),
            (b"M1.5\n", "M1.500\r\n"),
            (b"MC5\n", "MCangle nocascade\r\n"),
            (b"M\n", "M1.500\r\n"),
            // Angle open loop from an angle mode holds the present angle (0 here).
            (b"MC4\n", "MCangle open\r\n"),
            (b"M\n", "M0.000\r\n"),
        ];
        for (request, reply) in steps {
            assert_eq!(
                send(&mut device, &mut drive, request),
                *reply,
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        assert_eq!(drive.mode(), ControlMode::Position);
    }

    #[test]
    fn enable_clears_a_simulator_fault() {
        let (mut device, mut drive) = setup();
        let mut t = 0.0;
        drive.write_param("overcurrent_trip_a", 0.5).unwrap();
        send(&mut device, &mut drive, b"ME1\n");
        send(&mut device, &mut drive, b"MC0\n");
        send(&mut device, &mut drive, b"M3\n");
        run(&mut device, &mut drive, &mut t, 0.05);
        assert!(drive.fault().is_some());
        assert_eq!(send(&mut device, &mut drive, b"ME\n"), "Status: 0\r\n");
        drive.write_param("overcurrent_trip_a", 20.0).unwrap();
        assert_eq!(send(&mut device, &mut drive, b"ME1\n"), "Status: 1\r\n");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20)) {
            let (mut device, mut drive) = setup();
            let mut t = 0.0;
            let frame = TelemetryFrame {
                t_s: 0.0, speed_rpm: f64::NAN, current_a: 1e300, position_rev: -1e12, voltage_v: 24.0,
                temperature_c: 25.0, speed_setpoint_rpm: 0.0, current_setpoint_a: 0.0, position_setpoint_rev: 0.0,
            };
            for chunk in chunks {
                let mut out = Vec::new();
                device.receive(&chunk, t, &mut drive, &mut out);
                t += 0.01;
                device.tick(t, &mut drive, &frame, &mut out);
                prop_assert!(out.len() < 100_000);
            }
        }

        #[test]
        fn command_like_garbage_never_panics(lines in proptest::collection::vec("[MQDVALCTESWFRIK@#?0-9 .+\\-e]{0,24}[\n\r]", 0..30)) {
            let (mut device, mut drive) = setup();
            for line in lines {
                let mut out = Vec::new();
                device.receive(line.as_bytes(), 0.0, &mut drive, &mut out);
            }
        }
    }
}
