//! Modbus RTU, device side: drivebench's emulator map (a CiA 402-style drive over holding
//! registers) in front of the simulated drive.
//!
//! What it models:
//! * framing: a request's length is predicted from its function code (and byte count); a
//!   frame whose CRC-16/MODBUS fails is discarded silently and the parser moves on one byte;
//!   bytes whose length cannot be predicted (unknown function codes, garbage) are resolved
//!   once the line has been quiet for 4 ms (t3.5 at 9600 baud): a whole buffer with a valid
//!   CRC is a frame, anything else is dropped;
//! * addressing: its own unit address, and broadcast (0): write requests are executed and
//!   never answered, not even with an exception; frames for other units are ignored;
//! * functions 0x03 and 0x04 (both read the same registers), 0x06, 0x10; any other function
//!   answers exception 01. Checks in the order of the serial-line state charts: quantity (and
//!   for 0x10 the byte count) → 03, addresses → 02 (any address outside the table, or a
//!   read-only register written), value → 03, a write the simulator refuses → 04. A 0x10 is
//!   all or nothing. A 0x06 to one half of a 32-bit register replaces that half; the combined
//!   value is range-checked;
//! * the register table (high word first):
//!
//! | Address | Name | Type | Access | Unit |
//! |---|---|---|---|---|
//! | 0x0000 | controlword | u16 | RW | CiA 402 |
//! | 0x0001 | statusword | u16 | RO | CiA 402 |
//! | 0x0002 | modes_of_operation | i16 | RW | 1, 3 or 4 |
//! | 0x0003 | modes_display | i16 | RO | |
//! | 0x0004 | target_velocity | i32 | RW | rpm, ±20000 |
//! | 0x0006 | velocity_actual | i32 | RO | rpm |
//! | 0x0008 | target_position | i32 | RW | 0.001 rev, ±1e9 |
//! | 0x000A | position_actual | i32 | RO | 0.001 rev |
//! | 0x000C | target_torque | i16 | RW | ‰ of 5 A, ±3000 |
//! | 0x000D | torque_actual | i16 | RO | ‰ of 5 A |
//! | 0x000E | current_actual | i16 | RO | 0.01 A |
//! | 0x000F | error_code | u16 | RO | 0x2310, 0x3210, 0x4310, 0x8611 |
//! | 0x0010 | dc_link_voltage | u32 | RO | mV |
//! | 0x0012 | temperature | i16 | RO | 0.1 °C |
//! | 0x0020 | velocity_kp | u16 | RW | 0.001 A/rpm, 0–2000 |
//! | 0x0021 | velocity_ki | u16 | RW | 0.001 A/(rpm·s) |
//! | 0x0022 | current_limit | u16 | RW | 0.01 A, 10–5000 |
//! | 0x0023 | max_velocity | u16 | RW | rpm, 1–20000 |
//!
//! * the CiA 402 power state machine driven by controlword writes, with the statusword
//!   derived from the state as the typical words (bits 4 and 9 set): switch on disabled
//!   0x0250, ready to switch on 0x0231, switched on 0x0233, operation enabled 0x0237, quick
//!   stop active 0x0217, fault reaction active 0x021F, fault 0x0218. Commands are decoded
//!   only with bit 7 clear; a rising edge of bit 7 in fault resets it (→ switch on disabled).
//!   Switch on + enable (0x000F) from ready to switch on runs transitions 3 and 4.
//!
//! Mapping onto the simulated drive: operation enabled is the power stage on. The mode
//! register selects the loop (1 → position in rev, 3 → speed in rpm, 4 → current, with 1000 ‰
//! = 5 A of rated current); a speed or torque target is followed at once while operation is
//! enabled, and from the moment operation is enabled. A position target is followed when it
//! is written while operation is enabled in mode 1; entering operation enabled or mode 1
//! holds the present position (profile position starts moves on a new set-point only).
//! Quick stop from operation enabled brakes in speed mode to standstill (below 20 rpm, at most
//! 1 s), then switches the stage off and goes to switch on disabled. Faults of the simulated
//! drive latch error codes 0x2310 (over-current), 0x4310 (over-temperature) or 0x8611
//! (following error); [`Device::force_fault`] latches 0x3210 (over-voltage). The gains and
//! limits read and write the simulator's `speed_kp`, `speed_ki`, `current_limit_a` and
//! `speed_limit_rpm`.

use crc::{CRC_16_MODBUS, Crc};

use crate::drive::ControlMode;
use crate::sim::device::Device;
use crate::sim::{SimDrive, SimFault, TelemetryFrame};

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_MODBUS);

/// Bytes kept while a frame is incomplete.
const RX_MAX: usize = 300;
/// Quiet time after which unresolved bytes are judged as a whole.
const SILENCE_S: f64 = 0.004;
/// 1000 ‰ of torque.
const RATED_CURRENT_A: f64 = 5.0;
/// Quick stop ends below this speed…
const QUICK_STOP_DONE_RPM: f64 = 20.0;
/// …or after this long.
const QUICK_STOP_MAX_S: f64 = 1.0;

const READ_MAX: u16 = 125;
const WRITE_MAX: u16 = 123;

const EX_ILLEGAL_FUNCTION: u8 = 0x01;
const EX_ILLEGAL_ADDRESS: u8 = 0x02;
const EX_ILLEGAL_VALUE: u8 = 0x03;
const EX_DEVICE_FAILURE: u8 = 0x04;

const CONTROLWORD: u16 = 0x0000;
const STATUSWORD: u16 = 0x0001;
const MODES_OF_OPERATION: u16 = 0x0002;
const MODES_DISPLAY: u16 = 0x0003;
const TARGET_VELOCITY: u16 = 0x0004;
const VELOCITY_ACTUAL: u16 = 0x0006;
const TARGET_POSITION: u16 = 0x0008;
const POSITION_ACTUAL: u16 = 0x000A;
const TARGET_TORQUE: u16 = 0x000C;
const TORQUE_ACTUAL: u16 = 0x000D;
const CURRENT_ACTUAL: u16 = 0x000E;
const ERROR_CODE: u16 = 0x000F;
const DC_LINK_VOLTAGE: u16 = 0x0010;
const TEMPERATURE: u16 = 0x0012;
const VELOCITY_KP: u16 = 0x0020;
const VELOCITY_KI: u16 = 0x0021;
const CURRENT_LIMIT: u16 = 0x0022;
const MAX_VELOCITY: u16 = 0x0023;

const ERROR_OVER_CURRENT: u16 = 0x2310;
const ERROR_OVER_VOLTAGE: u16 = 0x3210;
const ERROR_OVER_TEMPERATURE: u16 = 0x4310;
const ERROR_FOLLOWING: u16 = 0x8611;

/// A register's width; 32-bit values are high word first.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Width {
    One,
    Two,
}

struct Reg {
    address: u16,
    width: Width,
    writable: bool,
}

const REGS: [Reg; 18] = [
    Reg { address: CONTROLWORD, width: Width::One, writable: true },
    Reg { address: STATUSWORD, width: Width::One, writable: false },
    Reg { address: MODES_OF_OPERATION, width: Width::One, writable: true },
    Reg { address: MODES_DISPLAY, width: Width::One, writable: false },
    Reg { address: TARGET_VELOCITY, width: Width::Two, writable: true },
    Reg { address: VELOCITY_ACTUAL, width: Width::Two, writable: false },
    Reg { address: TARGET_POSITION, width: Width::Two, writable: true },
    Reg { address: POSITION_ACTUAL, width: Width::Two, writable: false },
    Reg { address: TARGET_TORQUE, width: Width::One, writable: true },
    Reg { address: TORQUE_ACTUAL, width: Width::One, writable: false },
    Reg { address: CURRENT_ACTUAL, width: Width::One, writable: false },
    Reg { address: ERROR_CODE, width: Width::One, writable: false },
    Reg { address: DC_LINK_VOLTAGE, width: Width::Two, writable: false },
    Reg { address: TEMPERATURE, width: Width::One, writable: false },
    Reg { address: VELOCITY_KP, width: Width::One, writable: true },
    Reg { address: VELOCITY_KI, width: Width::One, writable: true },
    Reg { address: CURRENT_LIMIT, width: Width::One, writable: true },
    Reg { address: MAX_VELOCITY, width: Width::One, writable: true },
];

/// The register an address belongs to, and which word of it (0 = high or only).
fn reg_at(address: u32) -> Option<(usize, usize)> {
    REGS.iter().enumerate().find_map(|(index, reg)| {
        let start = u32::from(reg.address);
        let words = if reg.width == Width::Two { 2 } else { 1 };
        (address >= start && address < start + words).then(|| (index, (address - start) as usize))
    })
}

/// CiA 402 power states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SwitchOnDisabled,
    ReadyToSwitchOn,
    SwitchedOn,
    OperationEnabled,
    QuickStopActive,
    FaultReactionActive,
    Fault,
}

impl State {
    fn statusword(self) -> u16 {
        match self {
            State::SwitchOnDisabled => 0x0250,
            State::ReadyToSwitchOn => 0x0231,
            State::SwitchedOn => 0x0233,
            State::OperationEnabled => 0x0237,
            State::QuickStopActive => 0x0217,
            State::FaultReactionActive => 0x021F,
            State::Fault => 0x0218,
        }
    }
}

/// A controlword command (bit 7 clear).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmd {
    DisableVoltage,
    QuickStop,
    Shutdown,
    /// Switch on, or disable operation in operation enabled.
    SwitchOn,
    /// Enable operation, or switch on + enable operation from ready to switch on.
    EnableOperation,
}

fn decode_command(word: u16) -> Option<Cmd> {
    if word & 0x0080 != 0 {
        return None;
    }
    if word & 0x0002 == 0 {
        Some(Cmd::DisableVoltage)
    } else if word & 0x0006 == 0x0002 {
        Some(Cmd::QuickStop)
    } else if word & 0x0007 == 0x0006 {
        Some(Cmd::Shutdown)
    } else if word & 0x000F == 0x0007 {
        Some(Cmd::SwitchOn)
    } else if word & 0x000F == 0x000F {
        Some(Cmd::EnableOperation)
    } else {
        None
    }
}

/// How a request's length is known.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Length {
    /// More bytes are needed to tell.
    Need,
    /// Not a request.
    Invalid,
    /// A function whose length is not known here: the silence decides.
    Unknown,
    Bytes(usize),
}

/// The length of the request at the start of `buf`, from its function code.
fn request_length(buf: &[u8]) -> Length {
    let Some(&address) = buf.first() else {
        return Length::Need;
    };
    if address > 247 {
        return Length::Invalid;
    }
    let Some(&function) = buf.get(1) else {
        return Length::Need;
    };
    let counted = |at: usize, fixed: usize| match buf.get(at) {
        Some(&count) => Length::Bytes(fixed + usize::from(count)),
        None => Length::Need,
    };
    match function {
        0x01..=0x06 | 0x08 => Length::Bytes(8),
        0x07 | 0x0B | 0x0C | 0x11 => Length::Bytes(4),
        0x0F | 0x10 => counted(6, 9),
        0x14 | 0x15 => counted(2, 5),
        0x16 => Length::Bytes(10),
        0x17 => counted(10, 13),
        0x18 => Length::Bytes(6),
        0x00 | 0x80..=0xFF => Length::Invalid,
        _ => Length::Unknown,
    }
}

fn crc_ok(frame: &[u8]) -> bool {
    frame.len() >= 4 && {
        let (body, tail) = frame.split_at(frame.len() - 2);
        CRC16.checksum(body).to_le_bytes() == [tail[0], tail[1]]
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn round_i32(value: f64) -> i32 {
    if value.is_finite() { value.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32 } else { 0 }
}

fn round_i16(value: f64) -> i16 {
    if value.is_finite() { value.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16 } else { 0 }
}

fn round_u16(value: f64) -> u16 {
    if value.is_finite() { value.round().clamp(0.0, f64::from(u16::MAX)) as u16 } else { 0 }
}

fn round_u32(value: f64) -> u32 {
    if value.is_finite() { value.round().clamp(0.0, f64::from(u32::MAX)) as u32 } else { 0 }
}

fn sim_mode(code: i16) -> ControlMode {
    match code {
        1 => ControlMode::Position,
        4 => ControlMode::Current,
        _ => ControlMode::Speed,
    }
}

fn fault_code(fault: &SimFault) -> u16 {
    match fault {
        SimFault::OverCurrent { .. } => ERROR_OVER_CURRENT,
        SimFault::OverTemperature { .. } => ERROR_OVER_TEMPERATURE,
        SimFault::FollowingError { .. } => ERROR_FOLLOWING,
    }
}

/// The emulated Modbus drive.
#[derive(Debug, Clone)]
pub struct ModbusDevice {
    unit: u8,
    rx: Vec<u8>,
    last_rx_s: f64,
    now_s: f64,
    ready: bool,
    state: State,
    controlword: u16,
    mode: i16,
    target_velocity: i32,
    target_position: i32,
    target_torque: i16,
    error_code: u16,
    quick_stop_since: Option<f64>,
    latest: Option<TelemetryFrame>,
}

impl ModbusDevice {
    /// A drive at unit address `unit` (1–247), in switch on disabled after power-up.
    pub fn new(unit: u8) -> Self {
        ModbusDevice {
            unit,
            rx: Vec::with_capacity(RX_MAX),
            last_rx_s: 0.0,
            now_s: 0.0,
            ready: false,
            state: State::SwitchOnDisabled,
            controlword: 0,
            mode: 3,
            target_velocity: 0,
            target_position: 0,
            target_torque: 0,
            error_code: 0,
            quick_stop_since: None,
            latest: None,
        }
    }

    /// Power-up: not ready to switch on passes at once into switch on disabled, with the mode
    /// of the simulated drive.
    fn ensure_ready(&mut self, drive: &mut SimDrive) {
        if self.ready {
            return;
        }
        self.ready = true;
        drive.disable();
        self.mode = match drive.mode() {
            ControlMode::Position => 1,
            ControlMode::Speed => 3,
            ControlMode::Current => 4,
        };
        self.state = if drive.fault().is_some() { State::Fault } else { State::SwitchOnDisabled };
        if let Some(fault) = drive.fault() {
            self.error_code = fault_code(fault);
        }
    }

    /// A register's value as raw bits (16-bit registers in the low half).
    fn value(&self, address: u16, drive: &SimDrive) -> u32 {
        let frame = self.latest.unwrap_or(TelemetryFrame {
            voltage_v: drive.config().drive.bus_voltage_v,
            temperature_c: drive.config().motor.ambient_temperature_c,
            ..TelemetryFrame::default()
        });
        let param = |key: &str| drive.read_param(key).unwrap_or(0.0);
        let word = |v: u16| u32::from(v);
        let signed16 = |v: i16| u32::from(v as u16);
        match address {
            CONTROLWORD => word(self.controlword),
            STATUSWORD => word(self.state.statusword()),
            MODES_OF_OPERATION | MODES_DISPLAY => signed16(self.mode),
            TARGET_VELOCITY => self.target_velocity as u32,
            VELOCITY_ACTUAL => round_i32(frame.speed_rpm) as u32,
            TARGET_POSITION => self.target_position as u32,
            POSITION_ACTUAL => round_i32(frame.position_rev * 1000.0) as u32,
            TARGET_TORQUE => signed16(self.target_torque),
            TORQUE_ACTUAL => signed16(round_i16(frame.current_a / RATED_CURRENT_A * 1000.0)),
            CURRENT_ACTUAL => signed16(round_i16(frame.current_a * 100.0)),
            ERROR_CODE => word(self.error_code),
            DC_LINK_VOLTAGE => round_u32(frame.voltage_v * 1000.0),
            TEMPERATURE => signed16(round_i16(frame.temperature_c * 10.0)),
            VELOCITY_KP => word(round_u16(param("speed_kp") * 1000.0)),
            VELOCITY_KI => word(round_u16(param("speed_ki") * 1000.0)),
            CURRENT_LIMIT => word(round_u16(param("current_limit_a") * 100.0)),
            MAX_VELOCITY => word(round_u16(param("speed_limit_rpm"))),
            _ => 0,
        }
    }

    /// The register word at `address`, if the address is in the table.
    fn word(&self, address: u32, drive: &SimDrive) -> Option<u16> {
        let (index, part) = reg_at(address)?;
        let reg = &REGS[index];
        let value = self.value(reg.address, drive);
        Some(match (reg.width, part) {
            (Width::Two, 0) => (value >> 16) as u16,
            _ => value as u16,
        })
    }

    /// Whether a register may hold `raw` (exception 03 otherwise).
    fn value_ok(address: u16, raw: u32) -> bool {
        let signed16 = i32::from(raw as u16 as i16);
        match address {
            MODES_OF_OPERATION => matches!(signed16, 1 | 3 | 4),
            TARGET_VELOCITY => (-20_000..=20_000).contains(&(raw as i32)),
            TARGET_POSITION => (-1_000_000_000..=1_000_000_000).contains(&(raw as i32)),
            TARGET_TORQUE => (-3000..=3000).contains(&signed16),
            VELOCITY_KP => raw <= 2000,
            CURRENT_LIMIT => (10..=5000).contains(&raw),
            MAX_VELOCITY => (1..=20_000).contains(&raw),
            _ => true,
        }
    }

    /// Writes `words` from `start`: addresses (02), values (03), then applies (04 when the
    /// simulator refuses). Nothing changes unless every check passes.
    fn write(&mut self, start: u16, words: &[u16], drive: &mut SimDrive) -> Result<(), u8> {
        let mut pending: Vec<(usize, u32)> = Vec::new();
        for (offset, &word) in words.iter().enumerate() {
            let address = u32::from(start) + offset as u32;
            let (index, part) = reg_at(address).ok_or(EX_ILLEGAL_ADDRESS)?;
            let reg = &REGS[index];
            if !reg.writable {
                return Err(EX_ILLEGAL_ADDRESS);
            }
            let slot = match pending.iter().position(|(i, _)| *i == index) {
                Some(slot) => slot,
                None => {
                    pending.push((index, self.value(reg.address, drive)));
                    pending.len() - 1
                }
            };
            let raw = &mut pending[slot].1;
            *raw = match (reg.width, part) {
                (Width::Two, 0) => (*raw & 0x0000_FFFF) | (u32::from(word) << 16),
                (Width::Two, _) => (*raw & 0xFFFF_0000) | u32::from(word),
                (Width::One, _) => u32::from(word),
            };
        }
        if pending.iter().any(|&(index, raw)| !Self::value_ok(REGS[index].address, raw)) {
            return Err(EX_ILLEGAL_VALUE);
        }
        for (index, raw) in pending {
            self.apply(REGS[index].address, raw, drive)?;
        }
        Ok(())
    }

    fn apply(&mut self, address: u16, raw: u32, drive: &mut SimDrive) -> Result<(), u8> {
        let param = |drive: &mut SimDrive, key: &str, value: f64| {
            drive.write_param(key, value).map_err(|_| EX_DEVICE_FAILURE)
        };
        match address {
            CONTROLWORD => self.controlword_written(raw as u16, drive),
            MODES_OF_OPERATION => {
                self.mode = raw as u16 as i16;
                if self.state == State::OperationEnabled {
                    drive.set_mode(sim_mode(self.mode));
                    self.follow_target(drive, false);
                }
            }
            TARGET_VELOCITY => {
                self.target_velocity = raw as i32;
                self.follow_target(drive, false);
            }
            TARGET_POSITION => {
                self.target_position = raw as i32;
                self.follow_target(drive, true);
            }
            TARGET_TORQUE => {
                self.target_torque = raw as u16 as i16;
                self.follow_target(drive, false);
            }
            VELOCITY_KP => param(drive, "speed_kp", f64::from(raw) * 0.001)?,
            VELOCITY_KI => param(drive, "speed_ki", f64::from(raw) * 0.001)?,
            CURRENT_LIMIT => param(drive, "current_limit_a", f64::from(raw) * 0.01)?,
            MAX_VELOCITY => param(drive, "speed_limit_rpm", f64::from(raw))?,
            _ => return Err(EX_ILLEGAL_ADDRESS),
        }
        Ok(())
    }

    /// Hands the target of the active mode to the simulated drive while operation is enabled.
    /// A position target only moves the shaft when it was just written.
    fn follow_target(&self, drive: &mut SimDrive, position_written: bool) {
        if self.state != State::OperationEnabled {
            return;
        }
        match self.mode {
            3 => drive.set_setpoint(f64::from(self.target_velocity)),
            4 => drive.set_setpoint(f64::from(self.target_torque) / 1000.0 * RATED_CURRENT_A),
            1 if position_written => drive.set_setpoint(f64::from(self.target_position) / 1000.0),
            _ => {}
        }
    }

    fn controlword_written(&mut self, word: u16, drive: &mut SimDrive) {
        let previous = std::mem::replace(&mut self.controlword, word);
        if word & 0x0080 != 0 {
            if previous & 0x0080 == 0 && self.state == State::Fault {
                drive.reset_faults();
                self.error_code = 0;
                self.state = State::SwitchOnDisabled;
            }
            return;
        }
        let Some(cmd) = decode_command(word) else {
            return;
        };
        use State::*;
        match (self.state, cmd) {
            (SwitchOnDisabled, Cmd::Shutdown) => self.state = ReadyToSwitchOn,
            (ReadyToSwitchOn, Cmd::SwitchOn) => self.state = SwitchedOn,
            (ReadyToSwitchOn, Cmd::EnableOperation) | (SwitchedOn, Cmd::EnableOperation) => {
                self.state = SwitchedOn;
                self.enable_operation(drive);
            }
            (ReadyToSwitchOn | SwitchedOn, Cmd::DisableVoltage | Cmd::QuickStop) => {
                self.state = SwitchOnDisabled
            }
            (SwitchedOn, Cmd::Shutdown) => self.state = ReadyToSwitchOn,
            (OperationEnabled, Cmd::SwitchOn) => {
                drive.disable();
                self.state = SwitchedOn;
            }
            (OperationEnabled, Cmd::Shutdown) => {
                drive.disable();
                self.state = ReadyToSwitchOn;
            }
            (OperationEnabled, Cmd::DisableVoltage) | (QuickStopActive, Cmd::DisableVoltage) => {
                drive.disable();
                self.quick_stop_since = None;
                self.state = SwitchOnDisabled;
            }
            (OperationEnabled, Cmd::QuickStop) => {
                // Brake on the speed loop; the tick switches off at standstill.
                drive.set_mode(ControlMode::Speed);
                drive.set_setpoint(0.0);
                self.quick_stop_since = Some(self.now_s);
                self.state = QuickStopActive;
            }
            _ => {}
        }
    }

    fn enable_operation(&mut self, drive: &mut SimDrive) {
        drive.set_mode(sim_mode(self.mode));
        match drive.enable() {
            Ok(()) => {
                self.state = State::OperationEnabled;
                self.follow_target(drive, false);
            }
            Err(_) => self.latch_sim_fault(drive),
        }
    }

    fn latch_sim_fault(&mut self, drive: &mut SimDrive) {
        if let Some(fault) = drive.fault() {
            self.error_code = fault_code(fault);
        }
        drive.disable();
        self.quick_stop_since = None;
        self.state = State::FaultReactionActive;
    }

    /// Runs every complete request in the buffer.
    fn process(&mut self, drive: &mut SimDrive, out: &mut Vec<u8>) {
        loop {
            match request_length(&self.rx) {
                Length::Need => return,
                Length::Invalid => {
                    self.rx.remove(0);
                }
                Length::Unknown => {
                    // Unknown functions wait for the silence, unless a whole request follows.
                    match (1..self.rx.len()).find(|&k| self.complete_request_at(k)) {
                        Some(k) => {
                            self.rx.drain(..k);
                        }
                        None => return,
                    }
                }
                Length::Bytes(n) if self.rx.len() < n => {
                    // A garbage head may promise a long frame: a whole request further on wins.
                    match (1..self.rx.len()).find(|&k| self.complete_request_at(k)) {
                        Some(k) => {
                            self.rx.drain(..k);
                        }
                        None => return,
                    }
                }
                Length::Bytes(n) => {
                    if crc_ok(&self.rx[..n]) {
                        let frame: Vec<u8> = self.rx.drain(..n).collect();
                        self.handle(&frame, drive, out);
                    } else {
                        self.rx.remove(0);
                    }
                }
            }
        }
    }

    fn complete_request_at(&self, at: usize) -> bool {
        let rest = &self.rx[at..];
        if rest.first().is_none_or(|&a| a != self.unit && a != 0) {
            return false;
        }
        matches!(request_length(rest), Length::Bytes(n) if rest.len() >= n && crc_ok(&rest[..n]))
    }

    /// After a quiet line: a buffer with a valid CRC is one frame (an unknown function),
    /// anything else is dropped byte by byte, running whatever requests appear.
    fn resolve_silence(&mut self, drive: &mut SimDrive, out: &mut Vec<u8>) {
        while !self.rx.is_empty() {
            if crc_ok(&self.rx) {
                let frame = std::mem::take(&mut self.rx);
                self.handle(&frame, drive, out);
                return;
            }
            self.rx.remove(0);
            self.process(drive, out);
        }
    }

    /// One frame with a valid CRC.
    fn handle(&mut self, frame: &[u8], drive: &mut SimDrive, out: &mut Vec<u8>) {
        let (address, function) = (frame[0], frame[1]);
        if address != self.unit && address != 0 {
            return;
        }
        let broadcast = address == 0;
        let pdu = &frame[1..frame.len() - 2];
        let reply = match function {
            0x03 | 0x04 if broadcast => return,
            0x03 | 0x04 => self.read(pdu, drive),
            0x06 if pdu.len() == 5 => self.write(be16(pdu, 1), &[be16(pdu, 3)], drive).map(|()| pdu.to_vec()),
            0x10 => self.write_multiple(pdu, drive),
            _ => Err(EX_ILLEGAL_FUNCTION),
        };
        if broadcast {
            return;
        }
        let mut response = vec![self.unit];
        match reply {
            Ok(pdu) => response.extend_from_slice(&pdu),
            Err(code) => response.extend_from_slice(&[function | 0x80, code]),
        }
        let crc = CRC16.checksum(&response);
        response.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&response);
    }

    fn read(&self, pdu: &[u8], drive: &SimDrive) -> Result<Vec<u8>, u8> {
        if pdu.len() != 5 {
            return Err(EX_ILLEGAL_VALUE);
        }
        let (start, qty) = (be16(pdu, 1), be16(pdu, 3));
        if qty == 0 || qty > READ_MAX {
            return Err(EX_ILLEGAL_VALUE);
        }
        let mut reply = vec![pdu[0], (qty * 2) as u8];
        for offset in 0..u32::from(qty) {
            let word = self.word(u32::from(start) + offset, drive).ok_or(EX_ILLEGAL_ADDRESS)?;
            reply.extend_from_slice(&word.to_be_bytes());
        }
        Ok(reply)
    }

    fn write_multiple(&mut self, pdu: &[u8], drive: &mut SimDrive) -> Result<Vec<u8>, u8> {
        if pdu.len() < 6 {
            return Err(EX_ILLEGAL_VALUE);
        }
        let (start, qty, count) = (be16(pdu, 1), be16(pdu, 3), usize::from(pdu[5]));
        let values = &pdu[6..];
        if qty == 0 || qty > WRITE_MAX || count != usize::from(qty) * 2 || values.len() != count {
            return Err(EX_ILLEGAL_VALUE);
        }
        let words: Vec<u16> =
            values.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]])).collect();
        self.write(start, &words, drive)?;
        Ok(pdu[..5].to_vec())
    }
}

impl Device for ModbusDevice {
    fn receive(&mut self, bytes: &[u8], now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        self.ensure_ready(drive);
        self.now_s = now_s;
        if !bytes.is_empty() {
            self.last_rx_s = now_s;
        }
        for &byte in bytes {
            if self.rx.len() >= RX_MAX {
                self.rx.remove(0);
            }
            self.rx.push(byte);
            self.process(drive, out);
        }
    }

    fn tick(&mut self, now_s: f64, drive: &mut SimDrive, latest: &TelemetryFrame, out: &mut Vec<u8>) {
        self.ensure_ready(drive);
        self.now_s = now_s;
        self.latest = Some(*latest);
        if !self.rx.is_empty() && now_s - self.last_rx_s >= SILENCE_S {
            self.resolve_silence(drive, out);
        }
        match self.state {
            State::FaultReactionActive => self.state = State::Fault,
            State::Fault => {}
            _ if drive.fault().is_some() => self.latch_sim_fault(drive),
            State::QuickStopActive => {
                let since = self.quick_stop_since.unwrap_or(now_s);
                if latest.speed_rpm.abs() < QUICK_STOP_DONE_RPM || now_s - since >= QUICK_STOP_MAX_S {
                    drive.disable();
                    self.quick_stop_since = None;
                    self.state = State::SwitchOnDisabled;
                }
            }
            State::OperationEnabled if !drive.is_enabled() => self.state = State::SwitchOnDisabled,
            _ => {}
        }
    }

    fn force_fault(&mut self, drive: &mut SimDrive) {
        self.ensure_ready(drive);
        drive.disable();
        self.error_code = ERROR_OVER_VOLTAGE;
        self.quick_stop_since = None;
        self.state = State::FaultReactionActive;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sim::SimConfig;

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    fn with_crc(text: &str) -> Vec<u8> {
        let mut frame = hex(text);
        let crc = CRC16.checksum(&frame);
        frame.extend_from_slice(&crc.to_le_bytes());
        frame
    }

    fn setup() -> (ModbusDevice, SimDrive) {
        (ModbusDevice::new(1), SimDrive::new(&SimConfig::default()))
    }

    fn ask(device: &mut ModbusDevice, drive: &mut SimDrive, request: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        device.receive(request, 0.0, drive, &mut out);
        out
    }

    /// The reply to `request` must be the same fed whole, byte by byte and split anywhere.
    fn ask_all_ways(
        device: &ModbusDevice,
        drive: &SimDrive,
        request: &[u8],
    ) -> (ModbusDevice, SimDrive, Vec<u8>) {
        let (mut whole, mut whole_drive) = (device.clone(), drive.clone());
        let expected = ask(&mut whole, &mut whole_drive, request);
        let mut splits: Vec<Vec<&[u8]>> =
            (0..=request.len()).map(|i| vec![&request[..i], &request[i..]]).collect();
        splits.push(request.chunks(1).collect());
        for parts in splits {
            let (mut d, mut s) = (device.clone(), drive.clone());
            let mut out = Vec::new();
            for part in parts {
                d.receive(part, 0.0, &mut s, &mut out);
            }
            assert_eq!(out, expected);
            assert_eq!(d.state, whole.state);
        }
        (whole, whole_drive, expected)
    }

    fn read_regs(device: &mut ModbusDevice, drive: &mut SimDrive, start: u16, qty: u16) -> Vec<u16> {
        let request = with_crc(&format!("01 03 {:02X} {:02X} 00 {:02X}", start >> 8, start & 0xFF, qty));
        let reply = ask(device, drive, &request);
        assert_eq!(&reply[..3], &[0x01, 0x03, (qty * 2) as u8], "{reply:02X?}");
        assert!(crc_ok(&reply));
        reply[3..reply.len() - 2].chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect()
    }

    fn statusword(device: &mut ModbusDevice, drive: &mut SimDrive) -> u16 {
        read_regs(device, drive, STATUSWORD, 1)[0]
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(CRC16.checksum(b"123456789"), 0x4B37);
        assert_eq!(with_crc("01 03 00 00 00 0A"), hex("01 03 00 00 00 0A C5 CD"));
    }

    #[test]
    fn spec_vectors() {
        let (device, drive) = setup();
        // Read 10 holding registers at 0: controlword, statusword, modes, targets, actuals.
        let (_, _, reply) = ask_all_ways(&device, &drive, &hex("01 03 00 00 00 0A C5 CD"));
        let mut expected = hex("01 03 14 00 00 02 50 00 03 00 03");
        expected.extend_from_slice(&[0; 12]);
        let crc = CRC16.checksum(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(reply, expected);

        // The spec-style read of 0x006B at unit 0x11: not in this table.
        let mut eleven = ModbusDevice::new(0x11);
        let mut sim = SimDrive::new(&SimConfig::default());
        assert_eq!(ask(&mut eleven, &mut sim, &hex("11 03 00 6B 00 03 76 87")), hex("11 83 02 C1 34"));
        // Unit 1 ignores it.
        assert!(ask_all_ways(&device, &drive, &hex("11 03 00 6B 00 03 76 87")).2.is_empty());

        // Kinco addresses are not in this table either: exception 02 byte for byte.
        assert_eq!(ask_all_ways(&device, &drive, &hex("01 03 32 00 00 02 CA B3")).2, hex("01 83 02 C0 F1"));
        assert_eq!(ask_all_ways(&device, &drive, &hex("01 06 31 00 00 0F C7 32")).2, hex("01 86 02 C3 A1"));
        assert_eq!(
            ask_all_ways(&device, &drive, &hex("01 10 6F 00 00 02 04 55 55 00 08 1A 47")).2,
            hex("01 90 02 CD C1")
        );
        // Register 1 is the read-only statusword.
        assert_eq!(ask_all_ways(&device, &drive, &hex("01 06 00 01 00 03 98 0B")).2, hex("01 86 02 C3 A1"));
        assert_eq!(
            ask_all_ways(&device, &drive, &hex("01 10 00 01 00 02 04 00 0A 01 02 92 30")).2,
            hex("01 90 02 CD C1")
        );
        // An illegal value: mode 7 is not served.
        assert_eq!(ask_all_ways(&device, &drive, &with_crc("01 06 00 02 00 07")).2, hex("01 86 03 02 61"));

        // The controlword sequence, each echoed.
        let (device, drive, reply) = ask_all_ways(&device, &drive, &hex("01 06 00 00 00 06 09 C8"));
        assert_eq!(reply, hex("01 06 00 00 00 06 09 C8"));
        assert_eq!(device.state, State::ReadyToSwitchOn);
        let (device, drive, reply) = ask_all_ways(&device, &drive, &hex("01 06 00 00 00 07 C8 08"));
        assert_eq!(reply, hex("01 06 00 00 00 07 C8 08"));
        assert_eq!(device.state, State::SwitchedOn);
        let (device, drive, reply) = ask_all_ways(&device, &drive, &hex("01 06 00 00 00 0F C9 CE"));
        assert_eq!(reply, hex("01 06 00 00 00 0F C9 CE"));
        assert_eq!(device.state, State::OperationEnabled);
        assert!(drive.is_enabled());

        // Broadcast disable: executed, never answered.
        let (mut device, mut drive, reply) = ask_all_ways(&device, &drive, &hex("00 06 00 00 00 00 88 1B"));
        assert!(reply.is_empty());
        assert_eq!(device.state, State::SwitchOnDisabled);
        assert!(!drive.is_enabled());

        // Fault reset: the rising edge of bit 7 clears a latched fault.
        device.force_fault(&mut drive);
        device.tick(0.01, &mut drive, &TelemetryFrame::default(), &mut Vec::new());
        assert_eq!(statusword(&mut device, &mut drive), 0x0218);
        assert_eq!(read_regs(&mut device, &mut drive, ERROR_CODE, 1), vec![0x3210]);
        let (device, _, reply) = ask_all_ways(&device, &drive, &hex("01 06 00 00 00 80 88 6A"));
        assert_eq!(reply, hex("01 06 00 00 00 80 88 6A"));
        assert_eq!(device.state, State::SwitchOnDisabled);
        assert_eq!(device.error_code, 0);
    }

    #[test]
    fn exceptions_follow_the_check_order() {
        let (mut device, mut drive) = setup();
        // Unsupported functions: 01 (read coils has a known length; 0x2B is found by silence).
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 01 00 00 00 01")), with_crc("01 81 01"));
        let mut out = Vec::new();
        device.receive(&with_crc("01 2B 0E 01 00"), 0.0, &mut drive, &mut out);
        assert!(out.is_empty());
        device.tick(0.01, &mut drive, &TelemetryFrame::default(), &mut out);
        assert_eq!(out, with_crc("01 AB 01"));
        // Quantity before address.
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 03 00 40 00 00")), with_crc("01 83 03"));
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 03 00 40 00 7E")), with_crc("01 83 03"));
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 04 00 40 00 7D")), with_crc("01 84 02"));
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 03 00 40 00 01")), hex("01 83 02 C0 F1"));
        // A read running past the table, or over the hole at 0x0013.
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 03 00 10 00 04")), with_crc("01 83 02"));
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 03 00 23 00 02")), with_crc("01 83 02"));
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 03 FF FF 00 02")), with_crc("01 83 02"));
        // 0x04 reads the same registers.
        let reply = ask(&mut device, &mut drive, &with_crc("01 04 00 01 00 01"));
        assert_eq!(reply, with_crc("01 04 02 02 50"));
        // 0x10: byte count ≠ 2·qty and qty > 123 are 03, before the address check.
        assert_eq!(
            ask(&mut device, &mut drive, &with_crc("01 10 00 40 00 02 02 00 01")),
            with_crc("01 90 03")
        );
        let mut big = String::from("01 10 00 40 00 7C F8");
        big.push_str(&" 00".repeat(248));
        assert_eq!(ask(&mut device, &mut drive, &with_crc(&big)), with_crc("01 90 03"));
        // Writing RO registers, or past the table.
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 06 00 06 00 01")), with_crc("01 86 02"));
        assert_eq!(
            ask(&mut device, &mut drive, &with_crc("01 10 00 22 00 03 06 01 F4 03 E8 00 00")),
            with_crc("01 90 02")
        );
        // Values out of range: 03, and nothing written (all or nothing).
        let before = read_regs(&mut device, &mut drive, VELOCITY_KP, 4);
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 06 00 22 00 05")), hex("01 86 03 02 61"));
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 06 00 20 07 D1")), with_crc("01 86 03"));
        assert_eq!(
            ask(&mut device, &mut drive, &with_crc("01 10 00 20 00 04 08 01 F4 00 64 03 E8 4E 21")),
            with_crc("01 90 03")
        );
        assert_eq!(read_regs(&mut device, &mut drive, VELOCITY_KP, 4), before);
        assert_eq!(
            ask(&mut device, &mut drive, &with_crc("01 10 00 04 00 02 04 00 00 4E 21")),
            with_crc("01 90 03")
        );
        assert_eq!(ask(&mut device, &mut drive, &with_crc("01 06 00 0C 0B B9")), with_crc("01 86 03"));
    }

    #[test]
    fn parameters_reach_the_simulator() {
        let (mut device, mut drive) = setup();
        let kp = drive.read_param("speed_kp").unwrap();
        assert_eq!(read_regs(&mut device, &mut drive, VELOCITY_KP, 1), vec![(kp * 1000.0).round() as u16]);
        // velocity_kp 0.5, velocity_ki 2.5, current_limit 6 A, max_velocity 3000 rpm.
        let request = with_crc("01 10 00 20 00 04 08 01 F4 09 C4 02 58 0B B8");
        assert_eq!(ask(&mut device, &mut drive, &request), with_crc("01 10 00 20 00 04"));
        assert_eq!(drive.read_param("speed_kp").unwrap(), 0.5);
        assert_eq!(drive.read_param("speed_ki").unwrap(), 2.5);
        assert_eq!(drive.read_param("current_limit_a").unwrap(), 6.0);
        assert_eq!(drive.read_param("speed_limit_rpm").unwrap(), 3000.0);
        assert_eq!(read_regs(&mut device, &mut drive, VELOCITY_KP, 4), vec![500, 2500, 600, 3000]);
    }

    #[test]
    fn telemetry_registers_scale_the_frame() {
        let (mut device, mut drive) = setup();
        let frame = TelemetryFrame {
            speed_rpm: -600.4,
            current_a: 1.234,
            position_rev: -2.5,
            voltage_v: 24.0876,
            temperature_c: 31.26,
            ..TelemetryFrame::default()
        };
        device.tick(0.001, &mut drive, &frame, &mut Vec::new());
        let words = read_regs(&mut device, &mut drive, VELOCITY_ACTUAL, 2);
        assert_eq!(words, vec![0xFFFF, (-600i32) as u16]);
        assert_eq!(read_regs(&mut device, &mut drive, POSITION_ACTUAL, 2), vec![0xFFFF, (-2500i32) as u16]);
        assert_eq!(read_regs(&mut device, &mut drive, TORQUE_ACTUAL, 2), vec![247, 123]);
        assert_eq!(read_regs(&mut device, &mut drive, DC_LINK_VOLTAGE, 3), vec![0, 24088, 313]);
        // A 32-bit register read by halves.
        assert_eq!(read_regs(&mut device, &mut drive, VELOCITY_ACTUAL + 1, 1), vec![(-600i32) as u16]);
    }

    #[test]
    fn state_machine_runs_the_drive() {
        let (mut device, mut drive) = setup();
        let write = |device: &mut ModbusDevice, drive: &mut SimDrive, address: u16, value: u16| {
            let request = with_crc(&format!(
                "01 06 {:02X} {:02X} {:02X} {:02X}",
                address >> 8,
                address & 0xFF,
                value >> 8,
                value & 0xFF
            ));
            assert_eq!(ask(device, drive, &request), request);
        };
        assert_eq!(statusword(&mut device, &mut drive), 0x0250);
        // Switch on + enable straight from ready to switch on (transitions 3 and 4).
        write(&mut device, &mut drive, CONTROLWORD, 0x0006);
        assert_eq!(statusword(&mut device, &mut drive), 0x0231);
        // A target written before enabling is followed once operation is enabled.
        let request = with_crc("01 10 00 04 00 02 04 00 00 02 58");
        assert_eq!(ask(&mut device, &mut drive, &request), with_crc("01 10 00 04 00 02"));
        assert!(!drive.is_enabled());
        write(&mut device, &mut drive, CONTROLWORD, 0x000F);
        assert_eq!(statusword(&mut device, &mut drive), 0x0237);
        assert!(drive.is_enabled());
        assert_eq!((drive.mode(), drive.setpoint()), (ControlMode::Speed, 600.0));
        // Disable operation (0x0007) → switched on, power off.
        write(&mut device, &mut drive, CONTROLWORD, 0x0007);
        assert_eq!(statusword(&mut device, &mut drive), 0x0233);
        assert!(!drive.is_enabled());
        // Torque mode: ‰ of 5 A.
        write(&mut device, &mut drive, MODES_OF_OPERATION, 4);
        write(&mut device, &mut drive, TARGET_TORQUE, 100);
        write(&mut device, &mut drive, CONTROLWORD, 0x000F);
        assert_eq!((drive.mode(), drive.setpoint()), (ControlMode::Current, 0.5));
        assert_eq!(read_regs(&mut device, &mut drive, MODES_DISPLAY, 1), vec![4]);
        // Position mode holds the present position until a target is written.
        write(&mut device, &mut drive, MODES_OF_OPERATION, 1);
        assert_eq!(drive.mode(), ControlMode::Position);
        let held = drive.setpoint();
        assert!(held.abs() < 0.01, "{held}");
        let request = with_crc("01 10 00 08 00 02 04 00 00 07 D0");
        assert_eq!(ask(&mut device, &mut drive, &request), with_crc("01 10 00 08 00 02"));
        assert_eq!(drive.setpoint(), 2.0);
        // A single-register write to the low half of a 32-bit target.
        write(&mut device, &mut drive, TARGET_POSITION + 1, 3000);
        assert_eq!(drive.setpoint(), 3.0);
        // Quick stop: braking, then switch on disabled at standstill.
        write(&mut device, &mut drive, CONTROLWORD, 0x0002);
        assert_eq!(statusword(&mut device, &mut drive), 0x0217);
        assert!(drive.is_enabled(), "quick stop brakes with the stage on");
        let mut frames = Vec::new();
        let mut now = 0.0;
        while device.state == State::QuickStopActive && now < 2.0 {
            frames.clear();
            drive.advance(0.001, &mut frames);
            now += 0.001;
            let frame = *frames.last().unwrap();
            device.tick(now, &mut drive, &frame, &mut Vec::new());
        }
        assert_eq!(statusword(&mut device, &mut drive), 0x0250);
        assert!(!drive.is_enabled());
        // Commands with bit 7 set do nothing outside fault.
        write(&mut device, &mut drive, CONTROLWORD, 0x0086);
        assert_eq!(statusword(&mut device, &mut drive), 0x0250);
    }

    #[test]
    fn simulator_faults_latch_codes_until_the_reset_edge() {
        let (mut device, mut drive) = setup();
        drive.write_param("overcurrent_trip_a", 0.3).unwrap();
        for word in [0x0006u16, 0x000F] {
            let request = with_crc(&format!("01 06 00 00 00 {word:02X}"));
            ask(&mut device, &mut drive, &request);
        }
        ask(&mut device, &mut drive, &with_crc("01 10 00 04 00 02 04 00 00 04 B0"));
        let mut frames = Vec::new();
        for ms in 1..300 {
            frames.clear();
            drive.advance(0.001, &mut frames);
            let frame = *frames.last().unwrap();
            device.tick(f64::from(ms) * 0.001, &mut drive, &frame, &mut Vec::new());
        }
        assert_eq!(statusword(&mut device, &mut drive), 0x0218);
        assert_eq!(read_regs(&mut device, &mut drive, ERROR_CODE, 1), vec![0x2310]);
        assert!(!drive.is_enabled());
        // The rising edge of bit 7 resets the fault.
        ask(&mut device, &mut drive, &with_crc("01 06 00 00 00 80"));
        assert_eq!(device.state, State::SwitchOnDisabled);
        assert_eq!(read_regs(&mut device, &mut drive, ERROR_CODE, 1), vec![0]);
        // Bit 7 already set: no edge, no reset.
        device.force_fault(&mut drive);
        ask(&mut device, &mut drive, &with_crc("01 06 00 00 00 80"));
        assert_eq!(device.state, State::FaultReactionActive);
        device.tick(1.0, &mut drive, &TelemetryFrame::default(), &mut Vec::new());
        ask(&mut device, &mut drive, &with_crc("01 06 00 00 00 80"));
        assert_eq!(device.state, State::Fault, "no rising edge");
        ask(&mut device, &mut drive, &with_crc("01 06 00 00 00 06"));
        ask(&mut device, &mut drive, &with_crc("01 06 00 00 00 80"));
        assert_eq!(device.state, State::SwitchOnDisabled);
    }

    #[test]
    fn framing_recovers_and_filters() {
        let (device, drive) = setup();
        let read = hex("01 03 00 01 00 01 D5 CA");
        let (_, _, expected) = ask_all_ways(&device, &drive, &read);
        assert_eq!(expected, with_crc("01 03 02 02 50"));
        // A bad CRC is dropped silently; the next good frame is answered.
        let mut bytes = hex("01 03 00 01 00 01 D5 CB");
        bytes.extend_from_slice(&read);
        assert_eq!(ask_all_ways(&device, &drive, &bytes).2, expected);
        // Garbage before and between frames.
        let mut bytes = hex("FF 00 13 01 10 00 00 00 7B F6 42");
        bytes.extend_from_slice(&read);
        bytes.extend_from_slice(&hex("99 01"));
        bytes.extend_from_slice(&read);
        bytes.push(0x01);
        let (mut after, mut sim, reply) = ask_all_ways(&device, &drive, &bytes);
        let mut twice = expected.clone();
        twice.extend_from_slice(&expected);
        assert_eq!(reply, twice);
        // A leftover partial byte is dropped after the silence.
        after.tick(1.0, &mut sim, &TelemetryFrame::default(), &mut Vec::new());
        assert!(after.rx.is_empty());
        // Other units are ignored; broadcast reads are not answered.
        assert!(ask_all_ways(&device, &drive, &with_crc("02 03 00 01 00 01")).2.is_empty());
        assert!(ask_all_ways(&device, &drive, &with_crc("00 03 00 01 00 01")).2.is_empty());
        // A broadcast write with an illegal value: no exception either.
        assert!(ask_all_ways(&device, &drive, &with_crc("00 06 00 02 00 07")).2.is_empty());
        // Broadcast multiple write is executed.
        let (_, sim, reply) = ask_all_ways(&device, &drive, &with_crc("00 10 00 23 00 01 02 0B B8"));
        assert!(reply.is_empty());
        assert_eq!(sim.read_param("speed_limit_rpm").unwrap(), 3000.0);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..20),
            framed in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..6),
        ) {
            let (mut device, mut drive) = setup();
            let mut out = Vec::new();
            let mut now = 0.0;
            for chunk in chunks {
                now += 0.002;
                device.receive(&chunk, now, &mut drive, &mut out);
                device.tick(now, &mut drive, &TelemetryFrame::default(), &mut out);
                prop_assert!(device.rx.len() <= RX_MAX);
            }
            // Random PDUs with a valid CRC, for unit 1 and broadcast.
            for mut body in framed {
                body.insert(0, if body.len() % 2 == 0 { 1 } else { 0 });
                let crc = CRC16.checksum(&body);
                body.extend_from_slice(&crc.to_le_bytes());
                now += 0.01;
                device.receive(&body, now, &mut drive, &mut out);
                device.tick(now + 0.005, &mut drive, &TelemetryFrame::default(), &mut out);
            }
            // Still answers.
            let mut reply = Vec::new();
            device.tick(now + 1.0, &mut drive, &TelemetryFrame::default(), &mut reply);
            device.receive(&hex("01 03 00 01 00 01 D5 CA"), now + 1.0, &mut drive, &mut reply);
            prop_assert_eq!(reply.get(..3), Some(&[1u8, 3, 2][..]));
        }
    }
}
