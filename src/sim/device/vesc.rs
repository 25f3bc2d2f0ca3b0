//! VESC UART packet protocol, device side: a VESC 6 (hardware name `60`) with firmware 6.02 in
//! FOC mode driving the simulated motor.
//!
//! What it models, from the bldc firmware (`packet.c`, `commands.c`, `timeout.c`,
//! `mc_interface.c`):
//! * the packet decoder: a bad start byte, length, end byte or CRC slides one byte; nothing is
//!   ever sent back for a bad frame or an unknown packet id;
//! * `COMM_FW_VERSION` (0), `COMM_GET_VALUES` (4) with every field of the 74-byte reply and
//!   `COMM_GET_VALUES_SELECTIVE` (50), all fixed-point values truncated toward zero as the
//!   firmware's `(int16_t)(value * scale)` casts do;
//! * `COMM_SET_DUTY` (5), `COMM_SET_CURRENT` (6), `COMM_SET_CURRENT_BRAKE` (7), `COMM_SET_RPM`
//!   (8), `COMM_SET_POS` (9) and `COMM_ALIVE` (30), each resetting the command timeout; a SET
//!   whose value is shorter than 4 bytes is ignored (the firmware would read past the packet);
//! * the timeout: with no SET or ALIVE for `timeout_msec` (1000 ms) the motor is released
//!   (`timeout_brake_current` 0 A) and status bit 0 reads 1 until the next SET or ALIVE; a VESC
//!   that nobody commands reads "timeout active" from one second after boot, as the firmware does;
//! * faults: the simulator's protections become fault codes (over-current →
//!   `FAULT_CODE_ABS_OVER_CURRENT`, winding over-temperature → `FAULT_CODE_OVER_TEMP_MOTOR`; its
//!   following error, which a VESC does not have, → `FAULT_CODE_ENCODER_FAULT` with a
//!   `COMM_PRINT` saying so), [`Device::force_fault`] latches `FAULT_CODE_ABS_OVER_CURRENT`. As in
//!   `mc_interface.c`, the motor stops, SET commands are ignored for `m_fault_stop_time_ms`
//!   (500 ms) and then the code clears by itself unless the cause trips again.
//!
//! Mapping onto the simulated drive: SET_CURRENT → current mode with the setpoint and the power
//! stage on, except below `cc_min_current` (0.05 A), where the firmware releases the motor, so
//! `SET_CURRENT 0` is a coast (the stage goes off); SET_RPM → speed mode at ERPM / pole pairs
//! (below `s_pid_min_erpm`, 900 ERPM, the firmware brakes with zero duty; here a speed setpoint of
//! 0); SET_POS → position mode towards the given PID angle the short way round (the firmware
//! normalises the angle to 0–360° and regulates the angle error), on the multi-turn simulator;
//! SET_CURRENT_BRAKE → a current of the given magnitude against the rotation, released near
//! standstill; SET_DUTY → approximated by a speed setpoint of duty × the no-load speed at the
//! present bus voltage (the simulator has no open-loop duty mode), released below `l_min_duty`
//! (0.005).
//!
//! Reported values: the simulator is a DC-equivalent q-axis model, so Id is 0, Iq is the
//! simulated current, Vq = Kt·ω + R·Iq, Vd = −ω_e·L·Iq, duty = Vq / bus, input current =
//! Vq·Iq / bus, and the VESC "motor current" is |Iq| signed by the power flow (sign of Vq·Iq).
//! Currents and Vd/Vq are averaged over the ticks since they were last read, as the firmware
//! averages over its control cycles. Both temperatures (and the three MOSFET NTCs) report the
//! simulated winding temperature, since the simulator has no power-stage thermal model. The
//! tachometer counts 6 steps per electrical turn, the PID position is the shaft angle 0–360°.

use crate::drive::ControlMode;
use crate::protocol::vesc::{FrameDecoder, encode_frame};
use crate::sim::device::Device;
use crate::sim::{SimDrive, SimFault, TelemetryFrame};

const FW_MAJOR: u8 = 6;
const FW_MINOR: u8 = 2;
const HW_NAME: &[u8] = b"60";
const UUID: [u8; 12] = [0x1c, 0x00, 0x2a, 0x00, 0x0d, 0x51, 0x37, 0x32, 0x33, 0x38, 0x35, 0x31];

/// `app_conf.timeout_msec` default, in seconds.
const TIMEOUT_S: f64 = 1.0;
/// `m_fault_stop_time_ms` default, in seconds.
const FAULT_STOP_S: f64 = 0.5;
/// `cc_min_current` default: smaller current commands release the motor.
const CC_MIN_CURRENT_A: f64 = 0.05;
/// `s_pid_min_erpm` default.
const MIN_ERPM: f64 = 900.0;
/// `l_min_duty` default.
const MIN_DUTY: f64 = 0.005;
/// `l_max_duty` default.
const MAX_DUTY: f64 = 0.95;
/// A brake current is released below this mechanical speed.
const BRAKE_RELEASE_RPM: f64 = 10.0;
/// FOC tachometer steps per electrical turn.
const TACHO_STEPS_PER_EREV: f64 = 6.0;

const FAULT_NONE: u8 = 0;
const FAULT_ABS_OVER_CURRENT: u8 = 4;
const FAULT_OVER_TEMP_MOTOR: u8 = 6;
const FAULT_ENCODER_FAULT: u8 = 28;

const ID_FW_VERSION: u8 = 0;
const ID_GET_VALUES: u8 = 4;
const ID_SET_DUTY: u8 = 5;
const ID_SET_CURRENT: u8 = 6;
const ID_SET_CURRENT_BRAKE: u8 = 7;
const ID_SET_RPM: u8 = 8;
const ID_SET_POS: u8 = 9;
const ID_PRINT: u8 = 21;
const ID_ALIVE: u8 = 30;
const ID_GET_VALUES_SELECTIVE: u8 = 50;

/// The values of table 3.3, in physical units, before fixed-point encoding.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Values {
    pub temp_fet_c: f64,
    pub temp_motor_c: f64,
    pub current_motor_a: f64,
    pub current_in_a: f64,
    pub id_a: f64,
    pub iq_a: f64,
    pub duty: f64,
    pub erpm: f64,
    pub v_in: f64,
    pub amp_hours: f64,
    pub amp_hours_charged: f64,
    pub watt_hours: f64,
    pub watt_hours_charged: f64,
    pub tachometer: i32,
    pub tachometer_abs: i32,
    pub fault: u8,
    pub pid_pos_deg: f64,
    pub controller_id: u8,
    pub temp_mos_c: [f64; 3],
    pub vd_v: f64,
    pub vq_v: f64,
    pub status: u8,
}

/// `buffer_append_float16`: `(int16_t)(value * scale)`, truncated toward zero (saturating
/// where C would be undefined).
fn float16(out: &mut Vec<u8>, value: f64, scale: f64) {
    out.extend_from_slice(&((value * scale) as i16).to_be_bytes());
}

/// `buffer_append_float32`: `(int32_t)(value * scale)`, truncated toward zero.
fn float32(out: &mut Vec<u8>, value: f64, scale: f64) {
    out.extend_from_slice(&((value * scale) as i32).to_be_bytes());
}

/// The fields of a values reply selected by `mask` (bit n = field n of table 3.3), in order.
pub(crate) fn append_values(out: &mut Vec<u8>, v: &Values, mask: u32) {
    let on = |bit: u32| mask & (1 << bit) != 0;
    if on(0) {
        float16(out, v.temp_fet_c, 10.0);
    }
    if on(1) {
        float16(out, v.temp_motor_c, 10.0);
    }
    if on(2) {
        float32(out, v.current_motor_a, 100.0);
    }
    if on(3) {
        float32(out, v.current_in_a, 100.0);
    }
    if on(4) {
        float32(out, v.id_a, 100.0);
    }
    if on(5) {
        float32(out, v.iq_a, 100.0);
    }
    if on(6) {
        float16(out, v.duty, 1000.0);
    }
    if on(7) {
        float32(out, v.erpm, 1.0);
    }
    if on(8) {
        float16(out, v.v_in, 10.0);
    }
    if on(9) {
        float32(out, v.amp_hours, 10_000.0);
    }
    if on(10) {
        float32(out, v.amp_hours_charged, 10_000.0);
    }
    if on(11) {
        float32(out, v.watt_hours, 10_000.0);
    }
    if on(12) {
        float32(out, v.watt_hours_charged, 10_000.0);
    }
    if on(13) {
        out.extend_from_slice(&v.tachometer.to_be_bytes());
    }
    if on(14) {
        out.extend_from_slice(&v.tachometer_abs.to_be_bytes());
    }
    if on(15) {
        out.push(v.fault);
    }
    if on(16) {
        float32(out, v.pid_pos_deg, 1_000_000.0);
    }
    if on(17) {
        out.push(v.controller_id);
    }
    if on(18) {
        for t in v.temp_mos_c {
            float16(out, t, 10.0);
        }
    }
    if on(19) {
        float32(out, v.vd_v, 1000.0);
    }
    if on(20) {
        float32(out, v.vq_v, 1000.0);
    }
    if on(21) {
        out.push(v.status);
    }
}

/// `utils_angle_difference`: `a − b` in degrees, within (−180, 180].
fn angle_difference(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    if d > 180.0 { d - 360.0 } else { d }
}

/// A running mean of a value between two reads.
#[derive(Debug, Clone, Copy, Default)]
struct Average {
    sum: f64,
    count: u32,
}

impl Average {
    fn add(&mut self, value: f64) {
        self.sum += value;
        self.count += 1;
    }

    /// The mean since the last read (`fallback` without any value), and a restart.
    fn read_reset(&mut self, fallback: f64) -> f64 {
        let mean = if self.count > 0 { self.sum / f64::from(self.count) } else { fallback };
        *self = Average::default();
        mean
    }
}

/// What the firmware's motor control is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Control {
    Released,
    Current,
    /// Braking with this current magnitude against the rotation.
    Brake(f64),
    Speed,
    Position,
}

/// The emulated VESC.
#[derive(Debug, Clone)]
pub struct VescDevice {
    pole_pairs: u32,
    /// The STM32 unique id reported in `COMM_FW_VERSION`.
    uuid: [u8; 12],
    rx: FrameDecoder,
    /// Latest emulator time seen.
    now_s: f64,
    last_tick_s: Option<f64>,
    /// Last SET or ALIVE (the firmware's `last_update_time`, 0 at boot).
    last_reset_s: f64,
    timed_out: bool,
    fault: u8,
    /// SET commands are ignored until then (`m_ignore_iterations`).
    ignore_until_s: f64,
    control: Control,
    latest: Option<TelemetryFrame>,
    avg_motor_current: Average,
    avg_input_current: Average,
    avg_iq: Average,
    avg_vd: Average,
    avg_vq: Average,
    amp_seconds: f64,
    amp_seconds_charged: f64,
    watt_seconds: f64,
    watt_seconds_charged: f64,
    tacho_steps: Option<i64>,
    tachometer: i64,
    tachometer_abs: i64,
}

impl VescDevice {
    /// A VESC driving a motor with `pole_pairs` pole pairs (0 is taken as 1).
    pub fn new(pole_pairs: u32) -> Self {
        VescDevice {
            pole_pairs: pole_pairs.max(1),
            uuid: UUID,
            rx: FrameDecoder::new(),
            now_s: 0.0,
            last_tick_s: None,
            last_reset_s: 0.0,
            timed_out: false,
            fault: FAULT_NONE,
            ignore_until_s: 0.0,
            control: Control::Released,
            latest: None,
            avg_motor_current: Average::default(),
            avg_input_current: Average::default(),
            avg_iq: Average::default(),
            avg_vd: Average::default(),
            avg_vq: Average::default(),
            amp_seconds: 0.0,
            amp_seconds_charged: 0.0,
            watt_seconds: 0.0,
            watt_seconds_charged: 0.0,
            tacho_steps: None,
            tachometer: 0,
            tachometer_abs: 0,
        }
    }

    fn pp(&self) -> f64 {
        f64::from(self.pole_pairs)
    }

    fn send(out: &mut Vec<u8>, payload: &[u8]) {
        out.extend(encode_frame(payload));
    }

    fn fw_version_reply(&self) -> Vec<u8> {
        let mut p = vec![ID_FW_VERSION, FW_MAJOR, FW_MINOR];
        p.extend_from_slice(HW_NAME);
        p.push(0);
        p.extend_from_slice(&self.uuid);
        // pairing_done, test version, hw type (VESC), custom configs, phase filters,
        // QML hw, QML app, NRF flags.
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        // FW_NAME (empty) and the hardware CRC.
        p.push(0);
        p.extend_from_slice(&[0, 0, 0, 0]);
        p
    }

    /// The instantaneous electrical quantities: (Iq, Vq, Vd, input current, motor current, duty).
    fn electrical(&self, drive: &SimDrive, frame: &TelemetryFrame) -> (f64, f64, f64, f64, f64, f64) {
        let motor = &drive.config().motor;
        let iq = frame.current_a;
        let omega = frame.speed_rpm * std::f64::consts::TAU / 60.0;
        let bus = frame.voltage_v;
        let (vq, vd) = if drive.is_enabled() {
            (
                motor.torque_constant_nm_per_a * omega + motor.resistance_ohm * iq,
                -omega * self.pp() * motor.inductance_h * iq,
            )
        } else {
            (0.0, 0.0)
        };
        let (input, duty) =
            if bus > 1.0 { (vq * iq / bus, (vq / bus).clamp(-MAX_DUTY, MAX_DUTY)) } else { (0.0, 0.0) };
        // SIGN() of the firmware is +1 at 0.
        let motor_current = if vq * iq < 0.0 { -iq.abs() } else { iq.abs() };
        (iq, vq, vd, input, motor_current, duty)
    }

    /// The values a GET_VALUES now reports; the averages read are restarted.
    fn values(&mut self, drive: &SimDrive, mask: u32) -> Values {
        let ambient = drive.config().motor.ambient_temperature_c;
        let frame = self.latest.unwrap_or(TelemetryFrame {
            voltage_v: drive.config().drive.bus_voltage_v,
            temperature_c: ambient,
            ..TelemetryFrame::default()
        });
        let (iq, vq, vd, input, motor_current, duty) = self.electrical(drive, &frame);
        let on = |bit: u32| mask & (1 << bit) != 0;
        let read = |avg: &mut Average, bit: u32, now: f64| if on(bit) { avg.read_reset(now) } else { now };
        let pid_pos_deg = frame.position_rev.rem_euclid(1.0) * 360.0;
        Values {
            temp_fet_c: frame.temperature_c,
            temp_motor_c: frame.temperature_c,
            current_motor_a: read(&mut self.avg_motor_current, 2, motor_current),
            current_in_a: read(&mut self.avg_input_current, 3, input),
            id_a: 0.0,
            iq_a: read(&mut self.avg_iq, 5, iq),
            duty: if drive.is_enabled() { duty } else { 0.0 },
            erpm: frame.speed_rpm * self.pp(),
            v_in: frame.voltage_v,
            amp_hours: self.amp_seconds / 3600.0,
            amp_hours_charged: self.amp_seconds_charged / 3600.0,
            watt_hours: self.watt_seconds / 3600.0,
            watt_hours_charged: self.watt_seconds_charged / 3600.0,
            tachometer: self.tachometer.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            tachometer_abs: self.tachometer_abs.clamp(0, i64::from(i32::MAX)) as i32,
            fault: self.fault,
            // 360.0 exactly would wrap to 0 in the firmware.
            pid_pos_deg: if pid_pos_deg >= 360.0 { 0.0 } else { pid_pos_deg },
            controller_id: 0,
            temp_mos_c: [frame.temperature_c; 3],
            vd_v: read(&mut self.avg_vd, 19, vd),
            vq_v: read(&mut self.avg_vq, 20, vq),
            status: u8::from(self.timeout_active()),
        }
    }

    fn timeout_active(&self) -> bool {
        self.now_s - self.last_reset_s > TIMEOUT_S
    }

    fn reset_timeout(&mut self, now_s: f64) {
        self.last_reset_s = now_s;
        self.timed_out = false;
    }

    fn release(&mut self, drive: &mut SimDrive) {
        drive.disable();
        self.control = Control::Released;
    }

    /// Power stage on in `mode`; false if the simulator refuses (a fault latched).
    fn run(drive: &mut SimDrive, mode: ControlMode) -> bool {
        drive.set_mode(mode);
        drive.enable().is_ok()
    }

    fn present_position_rev(&self) -> f64 {
        self.latest.map_or(0.0, |frame| frame.position_rev)
    }

    fn speed_rpm(&self) -> f64 {
        self.latest.map_or(0.0, |frame| frame.speed_rpm)
    }

    /// One SET command with its i32 value.
    fn set(&mut self, id: u8, raw: i32, drive: &mut SimDrive) {
        let raw = f64::from(raw);
        match id {
            ID_SET_CURRENT => {
                let current = raw / 1000.0;
                if current.abs() < CC_MIN_CURRENT_A {
                    self.release(drive);
                } else if Self::run(drive, ControlMode::Current) {
                    drive.set_setpoint(current);
                    self.control = Control::Current;
                }
            }
            ID_SET_CURRENT_BRAKE => {
                let current = (raw / 1000.0).abs();
                if current < CC_MIN_CURRENT_A {
                    self.release(drive);
                } else if Self::run(drive, ControlMode::Current) {
                    self.control = Control::Brake(current);
                    self.update_brake(drive);
                }
            }
            ID_SET_RPM => {
                let rpm = if raw.abs() < MIN_ERPM { 0.0 } else { raw / self.pp() };
                if Self::run(drive, ControlMode::Speed) {
                    drive.set_setpoint(rpm);
                    self.control = Control::Speed;
                }
            }
            ID_SET_POS => {
                let target_deg = (raw / 1_000_000.0).rem_euclid(360.0);
                let present = self.present_position_rev();
                let present_deg = present.rem_euclid(1.0) * 360.0;
                let target = present + angle_difference(target_deg, present_deg) / 360.0;
                if Self::run(drive, ControlMode::Position) {
                    drive.set_setpoint(target);
                    self.control = Control::Position;
                }
            }
            ID_SET_DUTY => {
                let duty = (raw / 100_000.0).clamp(-MAX_DUTY, MAX_DUTY);
                if duty.abs() < MIN_DUTY {
                    self.release(drive);
                } else {
                    let bus = self.latest.map_or(drive.config().drive.bus_voltage_v, |frame| frame.voltage_v);
                    let rpm = duty * drive.config().motor.no_load_speed_rpm(bus);
                    if Self::run(drive, ControlMode::Speed) {
                        drive.set_setpoint(rpm);
                        self.control = Control::Speed;
                    }
                }
            }
            _ => {}
        }
    }

    fn update_brake(&mut self, drive: &mut SimDrive) {
        let Control::Brake(current) = self.control else {
            return;
        };
        let speed = self.speed_rpm();
        if speed.abs() < BRAKE_RELEASE_RPM {
            self.release(drive);
        } else {
            drive.set_setpoint(-speed.signum() * current);
        }
    }

    fn handle(&mut self, payload: &[u8], now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        let Some((&id, data)) = payload.split_first() else {
            return;
        };
        match id {
            ID_FW_VERSION => Self::send(out, &self.fw_version_reply()),
            ID_GET_VALUES => {
                let values = self.values(drive, u32::MAX);
                let mut reply = vec![ID_GET_VALUES];
                append_values(&mut reply, &values, u32::MAX);
                Self::send(out, &reply);
            }
            ID_GET_VALUES_SELECTIVE => {
                // A mask shorter than 4 bytes is read as if the missing bytes were 0.
                let mut mask_bytes = [0u8; 4];
                for (slot, byte) in mask_bytes.iter_mut().zip(data) {
                    *slot = *byte;
                }
                let mask = u32::from_be_bytes(mask_bytes);
                let values = self.values(drive, mask);
                let mut reply = vec![ID_GET_VALUES_SELECTIVE];
                reply.extend_from_slice(&mask_bytes);
                append_values(&mut reply, &values, mask);
                Self::send(out, &reply);
            }
            ID_SET_DUTY | ID_SET_CURRENT | ID_SET_CURRENT_BRAKE | ID_SET_RPM | ID_SET_POS => {
                let Some(bytes) = data.get(..4) else {
                    return;
                };
                let raw = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                // `mc_interface_try_input`: ignored while a fault stop lasts; the timeout is
                // reset all the same.
                if now_s >= self.ignore_until_s {
                    self.set(id, raw, drive);
                }
                self.reset_timeout(now_s);
            }
            ID_ALIVE => self.reset_timeout(now_s),
            _ => {}
        }
    }

    fn latch_fault(&mut self, code: u8, drive: &mut SimDrive) {
        self.fault = code;
        self.ignore_until_s = self.now_s + FAULT_STOP_S;
        self.release(drive);
    }

    /// The simulator's protections as fault codes; the simulator's latch is cleared at once,
    /// since the VESC clears its own code after the fault stop time.
    fn check_sim_fault(&mut self, drive: &mut SimDrive, out: &mut Vec<u8>) {
        let Some(fault) = drive.fault().cloned() else {
            return;
        };
        let code = match &fault {
            SimFault::OverCurrent { .. } => FAULT_ABS_OVER_CURRENT,
            SimFault::OverTemperature { .. } => FAULT_OVER_TEMP_MOTOR,
            SimFault::FollowingError { .. } => {
                let text = format!(
                    "emulator: the simulated drive tripped on a {fault}; a VESC has no following-error trip, \
                     shown as FAULT_CODE_ENCODER_FAULT"
                );
                let mut payload = vec![ID_PRINT];
                payload.extend(text.bytes().take(250));
                Self::send(out, &payload);
                FAULT_ENCODER_FAULT
            }
        };
        drive.reset_faults();
        self.latch_fault(code, drive);
    }
}

impl Device for VescDevice {
    fn set_identity_seed(&mut self, seed: u64) {
        self.uuid = UUID;
        let tail = (u32::from_be_bytes([UUID[8], UUID[9], UUID[10], UUID[11]]))
            .wrapping_add((seed as u32).wrapping_sub(1));
        self.uuid[8..].copy_from_slice(&tail.to_be_bytes());
    }

    fn receive(&mut self, bytes: &[u8], now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        self.now_s = self.now_s.max(now_s);
        let mut payloads = Vec::new();
        self.rx.feed(bytes, |payload| payloads.push(payload.to_vec()));
        for payload in payloads {
            self.handle(&payload, now_s, drive, out);
        }
    }

    fn tick(&mut self, now_s: f64, drive: &mut SimDrive, latest: &TelemetryFrame, out: &mut Vec<u8>) {
        self.now_s = self.now_s.max(now_s);
        self.latest = Some(*latest);
        let dt = self.last_tick_s.map_or(0.0, |last| (now_s - last).clamp(0.0, 0.1));
        self.last_tick_s = Some(now_s);

        let (iq, vq, vd, input, motor_current, _) = self.electrical(drive, latest);
        self.avg_iq.add(iq);
        self.avg_vq.add(vq);
        self.avg_vd.add(vd);
        self.avg_input_current.add(input);
        self.avg_motor_current.add(motor_current);
        let power = input * latest.voltage_v;
        if input >= 0.0 {
            self.amp_seconds += input * dt;
            self.watt_seconds += power * dt;
        } else {
            self.amp_seconds_charged -= input * dt;
            self.watt_seconds_charged -= power * dt;
        }

        let steps_f = (latest.position_rev * TACHO_STEPS_PER_EREV * self.pp()).floor();
        if steps_f.is_finite() {
            let steps = steps_f.clamp(-1e15, 1e15) as i64;
            if let Some(previous) = self.tacho_steps {
                let delta = steps - previous;
                self.tachometer += delta;
                self.tachometer_abs += delta.abs();
            }
            self.tacho_steps = Some(steps);
        }

        self.check_sim_fault(drive, out);
        if self.fault != FAULT_NONE && now_s >= self.ignore_until_s {
            self.fault = FAULT_NONE;
        }
        if !drive.is_enabled() {
            self.control = Control::Released;
        }
        self.update_brake(drive);

        if self.timeout_active() && !self.timed_out {
            self.timed_out = true;
            // timeout_brake_current 0 A: the motor is released.
            self.release(drive);
        }
    }

    fn force_fault(&mut self, drive: &mut SimDrive) {
        self.latch_fault(FAULT_ABS_OVER_CURRENT, drive);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sim::SimConfig;

    /// Hex text to bytes (test vectors are written as in PROTOCOLS.md).
    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    /// A frame built here from the layout, with the CRC from the `crc` crate.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let crc = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM).checksum(payload);
        let mut f = vec![2, payload.len() as u8];
        f.extend_from_slice(payload);
        f.extend_from_slice(&crc.to_be_bytes());
        f.push(3);
        f
    }

    const FW_VERSION_REQ: &str = "02 01 00 00 00 03";
    const GET_VALUES_REQ: &str = "02 01 04 40 84 03";
    const ALIVE: &str = "02 01 1E F3 FF 03";
    const SET_CURRENT_5A: &str = "02 05 06 00 00 13 88 8B 25 03";
    const SET_CURRENT_MINUS_2_5A: &str = "02 05 06 FF FF F6 3C 07 FD 03";
    const SET_DUTY_0_25: &str = "02 05 05 00 00 61 A8 2F AE 03";
    const SET_RPM_10000: &str = "02 05 08 00 00 27 10 8F 6D 03";
    const SET_POS_90: &str = "02 05 09 05 5D 4A 80 7B 29 03";
    const SELECTIVE_8101: &str = "02 05 32 00 00 81 01 70 E5 03";
    const VALUES_REPLY: &str = "02 4A 04 00 FA 01 2C 00 00 00 96 00 00 00 4B 00 00 00 00 00 00 00 96 00 64
        00 00 13 88 00 F0 00 00 00 7B 00 00 00 00 00 00 0B 88 00 00 00 00 00 00 04
        D2 00 00 04 D2 00 07 5B CA 00 00 00 FA 00 FA 00 FA 00 00 01 F4 00 00 07 D0
        00 AC 90 03";

    fn setup(pole_pairs: u32) -> (VescDevice, SimDrive) {
        (VescDevice::new(pole_pairs), SimDrive::new(&SimConfig::default()))
    }

    fn ask(device: &mut VescDevice, drive: &mut SimDrive, bytes: &[u8], now_s: f64) -> Vec<u8> {
        let mut out = Vec::new();
        device.receive(bytes, now_s, drive, &mut out);
        out
    }

    /// Advances the simulation and ticks the device every millisecond from `from_s` to `to_s`.
    fn run(device: &mut VescDevice, drive: &mut SimDrive, from_s: f64, to_s: f64) -> Vec<u8> {
        let mut frames = Vec::new();
        let mut out = Vec::new();
        let steps = ((to_s - from_s) * 1000.0).round() as u64;
        for k in 1..=steps {
            frames.clear();
            drive.advance(0.001, &mut frames);
            if let Some(frame) = frames.last() {
                device.tick(from_s + k as f64 / 1000.0, drive, frame, &mut out);
            }
        }
        out
    }

    /// The payload of a GET_VALUES reply.
    fn values(device: &mut VescDevice, drive: &mut SimDrive, now_s: f64) -> Vec<u8> {
        let reply = ask(device, drive, &hex(GET_VALUES_REQ), now_s);
        assert_eq!(reply.len(), 79, "{reply:02X?}");
        assert_eq!(&reply[..3], &[2, 0x4A, 4]);
        reply[2..reply.len() - 3].to_vec()
    }

    #[test]
    fn reference_values_encode_exactly() {
        let v = Values {
            temp_fet_c: 25.0,
            temp_motor_c: 30.0,
            current_motor_a: 1.5,
            current_in_a: 0.75,
            id_a: 0.0,
            iq_a: 1.5,
            duty: 0.1,
            erpm: 5000.0,
            v_in: 24.0,
            amp_hours: 0.0123,
            amp_hours_charged: 0.0,
            watt_hours: 0.2952,
            watt_hours_charged: 0.0,
            tachometer: 1234,
            tachometer_abs: 1234,
            fault: 0,
            pid_pos_deg: 123.456,
            controller_id: 0,
            temp_mos_c: [25.0; 3],
            vd_v: 0.5,
            vq_v: 2.0,
            status: 0,
        };
        let mut payload = vec![ID_GET_VALUES];
        append_values(&mut payload, &v, u32::MAX);
        assert_eq!(payload.len(), 74);
        assert_eq!(encode_frame(&payload), hex(VALUES_REPLY));
        assert_eq!(frame(&payload), hex(VALUES_REPLY));
        // Truncation toward zero, as the firmware's casts.
        let mut out = Vec::new();
        float16(&mut out, -0.19, 10.0);
        float32(&mut out, 1.999, 100.0);
        float32(&mut out, -1.999, 100.0);
        assert_eq!(out, [0xFF, 0xFF, 0, 0, 0, 199, 0xFF, 0xFF, 0xFF, 0x39]);
    }

    #[test]
    fn answers_version_and_values_requests() {
        let (mut device, mut drive) = setup(7);
        let mut expected = vec![0, 6, 2, b'6', b'0', 0];
        expected.extend_from_slice(&UUID);
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0]);
        assert_eq!(ask(&mut device, &mut drive, &hex(FW_VERSION_REQ), 0.0), frame(&expected));

        // Before any tick, at rest: 25 °C, 24 V, everything else zero.
        let mut expected = vec![4, 0x00, 0xFA, 0x00, 0xFA];
        expected.extend_from_slice(&[0; 16]); // motor, input, d, q currents
        expected.extend_from_slice(&[0, 0]); // duty
        expected.extend_from_slice(&[0; 4]); // ERPM
        expected.extend_from_slice(&[0x00, 0xF0]); // 24.0 V
        expected.extend_from_slice(&[0; 16]); // Ah, Ah charged, Wh, Wh charged
        expected.extend_from_slice(&[0; 8]); // tachometers
        expected.push(0); // fault
        expected.extend_from_slice(&[0; 4]); // PID position
        expected.push(0); // controller id
        expected.extend_from_slice(&[0x00, 0xFA, 0x00, 0xFA, 0x00, 0xFA]);
        expected.extend_from_slice(&[0; 8]); // Vd, Vq
        expected.push(0); // status
        assert_eq!(expected.len(), 74);
        assert_eq!(ask(&mut device, &mut drive, &hex(GET_VALUES_REQ), 0.0), frame(&expected));

        // FET temperature, input voltage and fault only.
        let expected = frame(&[0x32, 0x00, 0x00, 0x81, 0x01, 0x00, 0xFA, 0x00, 0xF0, 0x00]);
        assert_eq!(ask(&mut device, &mut drive, &hex(SELECTIVE_8101), 0.0), expected);
    }

    #[test]
    fn set_commands_drive_the_simulator_silently() {
        let (mut device, mut drive) = setup(5);
        assert!(ask(&mut device, &mut drive, &hex(SET_CURRENT_5A), 0.01).is_empty());
        assert!(drive.is_enabled());
        assert_eq!((drive.mode(), drive.setpoint()), (ControlMode::Current, 5.0));
        assert!(ask(&mut device, &mut drive, &hex(SET_CURRENT_MINUS_2_5A), 0.02).is_empty());
        assert_eq!(drive.setpoint(), -2.5);
        assert!(ask(&mut device, &mut drive, &hex(SET_RPM_10000), 0.03).is_empty());
        assert_eq!((drive.mode(), drive.setpoint()), (ControlMode::Speed, 2000.0));
        assert!(ask(&mut device, &mut drive, &hex(SET_DUTY_0_25), 0.04).is_empty());
        let no_load = drive.config().motor.no_load_speed_rpm(24.0);
        assert_eq!(drive.mode(), ControlMode::Speed);
        assert!((drive.setpoint() - 0.25 * no_load).abs() < 1e-6, "{}", drive.setpoint());
        assert!(ask(&mut device, &mut drive, &hex(SET_POS_90), 0.05).is_empty());
        assert_eq!((drive.mode(), drive.setpoint()), (ControlMode::Position, 0.25));
        assert!(ask(&mut device, &mut drive, &hex(ALIVE), 0.06).is_empty());
        // Zero current releases the motor: it coasts.
        assert!(ask(&mut device, &mut drive, &encode_frame(&[6, 0, 0, 0, 0]), 0.07).is_empty());
        assert!(!drive.is_enabled());
        // Below s_pid_min_erpm the speed controller holds zero.
        ask(&mut device, &mut drive, &encode_frame(&[8, 0, 0, 0x03, 0x20]), 0.08);
        assert_eq!((drive.mode(), drive.setpoint(), drive.is_enabled()), (ControlMode::Speed, 0.0, true));
        // A value shorter than 4 bytes is ignored.
        ask(&mut device, &mut drive, &encode_frame(&[6, 0, 0x13]), 0.09);
        assert_eq!(drive.mode(), ControlMode::Speed);
    }

    #[test]
    fn position_goes_the_short_way_round() {
        let (mut device, mut drive) = setup(7);
        run(&mut device, &mut drive, 0.0, 0.01);
        // 350° from 0° is 10° backwards.
        ask(&mut device, &mut drive, &encode_frame(&[9, 0x14, 0xDC, 0x93, 0x80]), 0.02);
        assert!((drive.setpoint() - (-10.0 / 360.0)).abs() < 1e-9, "{}", drive.setpoint());
        // Angles beyond a turn are normalised: 450° is 90°.
        ask(&mut device, &mut drive, &encode_frame(&[9, 0x1A, 0xD2, 0x74, 0x80]), 0.03);
        assert!((drive.setpoint() - 0.25).abs() < 1e-9, "{}", drive.setpoint());
        assert_eq!(angle_difference(10.0, 350.0), 20.0);
        assert_eq!(angle_difference(180.0, 0.0), 180.0);
        assert_eq!(angle_difference(0.0, 180.0), 180.0);
    }

    #[test]
    fn bad_frames_and_unknown_ids_get_no_answer() {
        let (mut device, mut drive) = setup(7);
        let mut bad = hex(GET_VALUES_REQ);
        bad[3] ^= 0x01;
        assert!(ask(&mut device, &mut drive, &bad, 0.0).is_empty());
        assert!(ask(&mut device, &mut drive, &encode_frame(&[99, 1, 2]), 0.0).is_empty());
        assert!(ask(&mut device, &mut drive, &encode_frame(&[200]), 0.0).is_empty());
        assert!(ask(&mut device, &mut drive, &encode_frame(&[14]), 0.0).is_empty());
        // A zero length, a long length above 512, a short frame with a wrong end byte.
        let mut stream = vec![0x02, 0x00, 0x03, 0x02, 0x04, 0x41, 0x42];
        stream.extend(hex(FW_VERSION_REQ));
        stream.extend([0x03, 0x00, 0x10, 0x99]);
        stream.extend(hex(GET_VALUES_REQ));
        let reply = ask(&mut device, &mut drive, &stream, 0.0);
        let mut payloads = Vec::new();
        FrameDecoder::new().feed(&reply, |p| payloads.push(p[0]));
        assert_eq!(payloads, vec![0, 4]);
        // A start byte with a long length holds the bytes after it until it can be judged, then
        // the decoder slides back to the request inside them.
        let mut stream = vec![0x02, 0xFF];
        stream.extend(hex(GET_VALUES_REQ));
        assert!(ask(&mut device, &mut drive, &stream, 0.0).is_empty());
        let reply = ask(&mut device, &mut drive, &[0u8; 252], 0.0);
        assert_eq!(&reply[..3], &[2, 0x4A, 4]);
    }

    #[test]
    fn requests_split_anywhere_get_the_same_replies() {
        let stream = [hex(FW_VERSION_REQ), hex(GET_VALUES_REQ), hex(SELECTIVE_8101), hex(ALIVE)].concat();
        let (mut device, mut drive) = setup(7);
        let reference = ask(&mut device, &mut drive, &stream, 0.0);
        for split in 0..=stream.len() {
            let (mut device, mut drive) = setup(7);
            let mut reply = ask(&mut device, &mut drive, &stream[..split], 0.0);
            reply.extend(ask(&mut device, &mut drive, &stream[split..], 0.0));
            assert_eq!(reply, reference, "split at {split}");
        }
    }

    #[test]
    fn timeout_releases_the_motor() {
        let (mut device, mut drive) = setup(7);
        ask(&mut device, &mut drive, &encode_frame(&[6, 0, 0, 0x07, 0xD0]), 0.1);
        run(&mut device, &mut drive, 0.1, 1.05);
        assert!(drive.is_enabled());
        assert_eq!(values(&mut device, &mut drive, 1.05)[73], 0);
        run(&mut device, &mut drive, 1.05, 1.2);
        assert!(!drive.is_enabled(), "no command for 1 s");
        assert_eq!(values(&mut device, &mut drive, 1.2)[73], 1, "timeout active");
        // ALIVE clears the status; the motor stays released.
        ask(&mut device, &mut drive, &hex(ALIVE), 1.3);
        assert_eq!(values(&mut device, &mut drive, 1.3)[73], 0);
        assert!(!drive.is_enabled());

        // Kept alive every 0.2 s (GET_VALUES alone does not count), it never fires.
        let (mut device, mut drive) = setup(7);
        ask(&mut device, &mut drive, &encode_frame(&[6, 0, 0, 0x07, 0xD0]), 0.0);
        let mut t = 0.0;
        while t < 3.0 {
            run(&mut device, &mut drive, t, t + 0.2);
            t += 0.2;
            values(&mut device, &mut drive, t);
            ask(&mut device, &mut drive, &hex(ALIVE), t);
        }
        assert!(drive.is_enabled());
        assert_eq!(values(&mut device, &mut drive, t)[73], 0);
    }

    #[test]
    fn forced_fault_stops_and_clears_after_the_fault_stop_time() {
        let (mut device, mut drive) = setup(7);
        ask(&mut device, &mut drive, &hex(SET_RPM_10000), 0.0);
        run(&mut device, &mut drive, 0.0, 0.2);
        assert!(drive.is_enabled());
        device.force_fault(&mut drive);
        assert!(!drive.is_enabled());
        assert_eq!(values(&mut device, &mut drive, 0.2)[53], FAULT_ABS_OVER_CURRENT);
        // Commands are ignored during the fault stop time.
        ask(&mut device, &mut drive, &hex(SET_CURRENT_5A), 0.3);
        assert!(!drive.is_enabled());
        run(&mut device, &mut drive, 0.2, 0.69);
        assert_eq!(values(&mut device, &mut drive, 0.69)[53], FAULT_ABS_OVER_CURRENT);
        run(&mut device, &mut drive, 0.69, 0.72);
        assert_eq!(values(&mut device, &mut drive, 0.72)[53], FAULT_NONE);
        assert!(!drive.is_enabled(), "nothing restarts by itself");
        ask(&mut device, &mut drive, &hex(SET_CURRENT_5A), 0.73);
        assert!(drive.is_enabled());
    }

    #[test]
    fn simulator_trips_become_fault_codes() {
        let (mut device, mut drive) = setup(7);
        drive.write_param("overcurrent_trip_a", 1.0).unwrap();
        ask(&mut device, &mut drive, &hex(SET_CURRENT_5A), 0.0);
        run(&mut device, &mut drive, 0.0, 0.05);
        assert!(!drive.is_enabled());
        assert!(drive.fault().is_none(), "the VESC keeps its own fault code");
        assert_eq!(values(&mut device, &mut drive, 0.05)[53], FAULT_ABS_OVER_CURRENT);

        let (mut device, mut drive) = setup(7);
        drive.write_param("following_error_rev", 0.001).unwrap();
        run(&mut device, &mut drive, 0.0, 0.01);
        drive.write_param("load_torque_nm", 0.5).unwrap();
        ask(&mut device, &mut drive, &hex(SET_POS_90), 0.01);
        let printed = run(&mut device, &mut drive, 0.01, 0.5);
        assert_eq!(values(&mut device, &mut drive, 0.5)[53], FAULT_ENCODER_FAULT);
        let mut payloads = Vec::new();
        FrameDecoder::new().feed(&printed, |p| payloads.push(p.to_vec()));
        assert!(
            payloads
                .iter()
                .any(|p| p[0] == ID_PRINT && String::from_utf8_lossy(&p[1..]).contains("following"))
        );
    }

    #[test]
    fn telemetry_follows_the_motor() {
        let (mut device, mut drive) = setup(7);
        ask(&mut device, &mut drive, &encode_frame(&[8, 0, 0, 0x10, 0x68]), 0.0); // 4200 ERPM
        let mut t = 0.0;
        while t < 1.5 {
            run(&mut device, &mut drive, t, t + 0.1);
            t += 0.1;
            ask(&mut device, &mut drive, &hex(ALIVE), t);
        }
        let v = values(&mut device, &mut drive, t);
        let i32_at = |at: usize| i32::from_be_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]);
        let erpm = i32_at(23);
        assert!((erpm - 4200).abs() < 150, "{erpm}");
        let tacho = i32_at(45);
        let revs = drive.config().drive.encoder_counts_per_rev;
        assert!(tacho > 6 * 7 * 10, "{tacho} steps ({revs} counts/rev)");
        assert_eq!(i32_at(49), tacho, "one direction only");
        let duty = i16::from_be_bytes([v[21], v[22]]);
        assert!(duty > 0 && duty < 950, "{duty}");
        assert!(device.amp_seconds > 0.0 && device.watt_seconds > 0.0, "{}", device.amp_seconds);
        let pid_pos = i32_at(54);
        assert!((0..360_000_000).contains(&pid_pos), "{pid_pos}");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..20),
            biased in prop::collection::vec(prop::sample::select(vec![0u8, 2, 3, 4, 5, 6, 8, 9, 30, 50, 0xFF]), 0..400),
        ) {
            let (mut device, mut drive) = setup(7);
            let mut t = 0.0;
            for chunk in chunks.iter().chain(std::iter::once(&biased)) {
                t += 0.01;
                let mut out = Vec::new();
                device.receive(chunk, t, &mut drive, &mut out);
                run(&mut device, &mut drive, t, t + 0.002);
                prop_assert!(device.rx.pending() <= crate::protocol::vesc::MAX_FRAME);
            }
        }
    }
}
