//! VESC UART packet protocol (bldc firmware), host side: framing, telemetry by
//! `COMM_GET_VALUES`, setpoints by `COMM_SET_CURRENT`/`COMM_SET_RPM`/`COMM_SET_POS`, and the
//! firmware's command timeout kept alive while drivebench applies setpoints.
//!
//! Frames: `0x02 len` (payload 1–255) or `0x03 len_hi len_lo` (255–512), the payload (packet id
//! first), CRC-16/XMODEM of the payload high byte first, `0x03`. The receive side decodes as the
//! firmware's `packet.c` does: a bad start byte, length, end byte or CRC slides the window by one
//! byte, so the decoder finds the next frame in any garbage and never holds more than one frame.
//!
//! At start the codec asks `COMM_FW_VERSION` (up to three times; the reply of older firmware is
//! a prefix of the present layout) and reports the identity. Then every poll sends one
//! `COMM_GET_VALUES` unless one is in flight; a reply that does not come within
//! [`REPLY_TIMEOUT_S`] is logged and the next poll asks again, and after
//! [`LOST_AFTER_TIMEOUTS`] silent requests in a row the drive is reported as not answering. The
//! reply is decoded by its length: fields after the fault code (PID position, controller id,
//! MOSFET temperatures, Vd/Vq, status) are optional, since older firmware sends fewer.
//!
//! A VESC has no enable: any SET command starts the motor, and the firmware releases the motor
//! when no SET or `COMM_ALIVE` arrived for `timeout_msec` (1 s by default, `timeout.c`). So
//! `Enable` here means that the codec starts applying setpoints: it sends the stored setpoint
//! at once and `COMM_ALIVE` every [`KEEPALIVE_S`] while enabled, so the firmware timeout stops
//! the motor if drivebench dies and never fires in normal use. While not enabled a setpoint is
//! only stored. `Disable`, E-STOP, a drive fault and a drive that stops answering send
//! `COMM_SET_CURRENT 0` (the firmware releases the motor below `cc_min_current`, so it coasts:
//! the fastest stop that needs no knowledge of the motor), repeated at the next polls because
//! the protocol acknowledges nothing and a frame hit by noise is dropped without a trace.
//!
//! Faults: `mc_interface.c` stops the motor, ignores every SET command for
//! `m_fault_stop_time_ms` (500 ms by default) and then clears the fault code by itself, unless
//! the cause is still there. The codec keeps a fault it saw latched (the drive already cleared
//! it when the text says so) until `ResetFaults`, and leaves the enabled state, so that a
//! transient over-current is never missed on the bench and nothing restarts by itself.
//!
//! Units: speed is ERPM / pole pairs; `current_a` is the averaged q-axis current (the
//! torque-producing current, signed like `COMM_SET_CURRENT`), the VESC "motor current" (signed by
//! power flow: positive when motoring, negative when braking) is the extra `motor_current_a`;
//! `position_rev` is the PID position (0–360°) over 360, a single-turn angle.

use crate::drive::{Command, ControlMode, DriveState, Event, ParamSpec, Sample, SignalSpec};
use crate::protocol::{Codec, CodecError, CodecOut, LogLimiter, RawIntent};

/// CRC-16/XMODEM (poly 0x1021, init 0, no reflection), the firmware's `crc16`.
pub const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);
/// Largest payload the firmware accepts (`PACKET_MAX_PL_LEN`).
pub const MAX_PAYLOAD: usize = 512;
/// Largest frame: start byte, two length bytes, payload, CRC, end byte.
pub const MAX_FRAME: usize = MAX_PAYLOAD + 6;

// Packet ids (`COMM_PACKET_ID` in `datatypes.h`).
/// Firmware and hardware identity.
pub const COMM_FW_VERSION: u8 = 0;
/// Telemetry (table 3.3).
pub const COMM_GET_VALUES: u8 = 4;
/// Duty cycle × 100 000.
pub const COMM_SET_DUTY: u8 = 5;
/// Motor current in mA.
pub const COMM_SET_CURRENT: u8 = 6;
/// Brake current in mA.
pub const COMM_SET_CURRENT_BRAKE: u8 = 7;
/// Electrical rpm.
pub const COMM_SET_RPM: u8 = 8;
/// PID position in degrees × 1 000 000.
pub const COMM_SET_POS: u8 = 9;
/// Motor configuration blob (acknowledged by its id).
pub const COMM_SET_MCCONF: u8 = 13;
/// App configuration blob (acknowledged by its id).
pub const COMM_SET_APPCONF: u8 = 16;
/// Text from the drive.
pub const COMM_PRINT: u8 = 21;
/// Restarts the drive.
pub const COMM_REBOOT: u8 = 29;
/// Resets the command timeout only.
pub const COMM_ALIVE: u8 = 30;
/// A packet for another VESC on the CAN bus.
pub const COMM_FORWARD_CAN: u8 = 34;
/// Temporary motor configuration (current scales, limits).
pub const COMM_SET_MCCONF_TEMP: u8 = 48;
/// Telemetry fields selected by a mask.
pub const COMM_GET_VALUES_SELECTIVE: u8 = 50;

/// The CRC the firmware puts after a payload.
pub fn crc16(payload: &[u8]) -> u16 {
    CRC16.checksum(payload)
}

/// Frames a payload as the firmware's `packet_send_packet` does: short frames up to 255 bytes,
/// long ones up to [`MAX_PAYLOAD`]. An empty or oversized payload gives no bytes.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    if len == 0 || len > MAX_PAYLOAD {
        return Vec::new();
    }
    let mut frame = Vec::with_capacity(len + 6);
    if len <= 255 {
        frame.extend_from_slice(&[2, len as u8]);
    } else {
        frame.extend_from_slice(&[3, (len >> 8) as u8, (len & 0xFF) as u8]);
    }
    frame.extend_from_slice(payload);
    frame.extend_from_slice(&crc16(payload).to_be_bytes());
    frame.push(3);
    frame
}

/// What the bytes at the start of a window hold (`try_decode_packet` in `packet.c`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Decoded {
    /// A frame may start here, but more bytes are needed to tell.
    Incomplete,
    /// No frame starts here.
    Invalid,
    /// A valid frame: the payload at `start..start + len`, `total` bytes in all.
    Frame { start: usize, len: usize, total: usize },
}

fn try_decode(buf: &[u8]) -> Decoded {
    let Some(&first) = buf.first() else {
        return Decoded::Incomplete;
    };
    let header = match first {
        2 => 2,
        3 => 3,
        _ => return Decoded::Invalid,
    };
    if buf.len() < header {
        return Decoded::Incomplete;
    }
    let len = if header == 2 { usize::from(buf[1]) } else { usize::from(buf[1]) << 8 | usize::from(buf[2]) };
    // A zero length, a long frame that should have been short, and an oversized frame are all
    // refused, as by the firmware.
    if (header == 2 && len < 1) || (header == 3 && len < 255) || len > MAX_PAYLOAD {
        return Decoded::Invalid;
    }
    let total = header + len + 3;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    if buf[header + len + 2] != 3 {
        return Decoded::Invalid;
    }
    let payload = &buf[header..header + len];
    let received = u16::from_be_bytes([buf[header + len], buf[header + len + 1]]);
    if crc16(payload) != received {
        return Decoded::Invalid;
    }
    Decoded::Frame { start: header, len, total }
}

/// The frames found by [`frames_anywhere`].
#[derive(Debug, Clone, Default, PartialEq)]
struct FrameScan {
    /// `(start, len)` of the payload of every frame found, by the offset of its header.
    payloads: Vec<(usize, usize)>,
    /// The first byte that lies in no frame found.
    stray: Option<usize>,
    /// A start byte outside every frame claims more bytes than the line holds.
    unfinished: bool,
}

/// Every frame that some firmware generation would decode somewhere in `bytes`: a start byte at
/// any offset (the present decoder slides byte by byte, but one that was in the middle of another
/// frame, or the state machine of firmware up to 5.2, starts elsewhere), a short or a long header
/// with any length from 1 (firmware up to 5.2 took a long header with a length under 255, and
/// older builds allowed payloads beyond 512 bytes), the end byte and a matching CRC. Frames inside
/// another frame's payload are found too.
fn frames_anywhere(bytes: &[u8]) -> FrameScan {
    let mut scan = FrameScan::default();
    let mut covered = vec![false; bytes.len()];
    let mut unfinished = Vec::new();
    for at in 0..bytes.len() {
        let rest = &bytes[at..];
        let (header, len) = match rest {
            [2, len, ..] => (2, usize::from(*len)),
            [3, hi, lo, ..] => (3, usize::from(*hi) << 8 | usize::from(*lo)),
            [2 | 3, ..] => {
                unfinished.push(at);
                continue;
            }
            _ => continue,
        };
        if len == 0 {
            continue;
        }
        let total = header + len + 3;
        let Some(frame) = rest.get(..total) else {
            unfinished.push(at);
            continue;
        };
        let payload = &frame[header..header + len];
        if frame[total - 1] == 3 && crc16(payload) == u16::from_be_bytes([frame[total - 3], frame[total - 2]])
        {
            scan.payloads.push((at + header, len));
            covered[at..at + total].iter_mut().for_each(|c| *c = true);
        }
    }
    scan.stray = covered.iter().position(|c| !c);
    scan.unfinished = unfinished.iter().any(|&at| !covered[at]);
    scan
}

/// Byte-stream frame decoder with the firmware's resynchronisation: on anything that is not a
/// valid frame it drops one byte and tries again. Its memory is bounded by two frames.
#[derive(Debug, Clone, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    skipped: u64,
    frames: u64,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// Feeds bytes; calls `on_payload` with the payload of every valid frame, in order.
    pub fn feed(&mut self, bytes: &[u8], mut on_payload: impl FnMut(&[u8])) {
        for &byte in bytes {
            self.push(byte, &mut on_payload);
        }
    }

    /// Feeds one byte.
    pub fn push(&mut self, byte: u8, mut on_payload: impl FnMut(&[u8])) {
        if self.start > 0 && self.buf.len() >= 2 * MAX_FRAME {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.push(byte);
        loop {
            match try_decode(&self.buf[self.start..]) {
                Decoded::Incomplete => break,
                Decoded::Invalid => {
                    self.start += 1;
                    self.skipped += 1;
                }
                Decoded::Frame { start, len, total } => {
                    let at = self.start + start;
                    on_payload(&self.buf[at..at + len]);
                    self.start += total;
                    self.frames += 1;
                }
            }
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Bytes held as the possible start of a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Bytes dropped because no valid frame started at them.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Valid frames decoded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Forgets everything held.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
    }
}

/// How long a request waits for its reply; the next poll asks again.
pub const REPLY_TIMEOUT_S: f64 = 0.1;
/// Silent requests in a row after which the drive counts as not answering (about 0.5 s).
pub const LOST_AFTER_TIMEOUTS: u32 = 5;
/// `COMM_ALIVE` period while enabled: well inside the firmware's default 1 s timeout.
pub const KEEPALIVE_S: f64 = 0.2;
/// The firmware's default `timeout_msec`: after this long without a SET or `COMM_ALIVE` the
/// motor has been released, whatever the codec sends next.
const FIRMWARE_TIMEOUT_S: f64 = 1.0;
/// Attempts at `COMM_FW_VERSION` before polling telemetry without an identity.
const FW_VERSION_ATTEMPTS: u32 = 3;
/// Extra copies of a stop, one per poll: nothing acknowledges it.
const STOP_REPEATS: u32 = 3;
/// The firmware's timeout thread refreshes the status bit every 10 ms, so a reply to a
/// request sent this soon after enabling may still show the timeout of the idle period.
const TIMEOUT_STATUS_GRACE_S: f64 = 0.05;
/// `s_pid_min_erpm` default (`MCCONF_S_PID_MIN_RPM`): below it the speed controller brakes.
const DEFAULT_MIN_ERPM: f64 = 900.0;
/// Longest text kept from a `COMM_PRINT` or a hardware name.
const MAX_TEXT_CHARS: usize = 200;

const SIG_SPEED: u16 = 0;
const SIG_CURRENT: u16 = 1;
const SIG_POSITION: u16 = 2;
const SIG_VOLTAGE: u16 = 3;
const SIG_TEMPERATURE: u16 = 4;
const SIG_MOTOR_TEMPERATURE: u16 = 5;
const SIG_MOTOR_CURRENT: u16 = 6;
const SIG_INPUT_CURRENT: u16 = 7;
const SIG_ID: u16 = 8;
const SIG_DUTY: u16 = 9;
const SIG_ERPM: u16 = 10;
const SIG_TACHOMETER: u16 = 11;
const SIG_TACHOMETER_ABS: u16 = 12;
const SIG_AH: u16 = 13;
const SIG_AH_CHARGED: u16 = 14;
const SIG_WH: u16 = 15;
const SIG_WH_CHARGED: u16 = 16;
const SIG_MOSFET1: u16 = 17;
const SIG_VD: u16 = 20;
const SIG_VQ: u16 = 21;

const SIGNALS: [(&str, &str); 22] = [
    ("speed_rpm", "rpm"),
    ("current_a", "A"),
    ("position_rev", "rev"),
    ("voltage_v", "V"),
    ("temperature_c", "°C"),
    ("motor_temperature_c", "°C"),
    ("motor_current_a", "A"),
    ("input_current_a", "A"),
    ("id_a", "A"),
    ("duty", ""),
    ("speed_erpm", "ERPM"),
    ("tachometer", "counts"),
    ("tachometer_abs", "counts"),
    ("charge_drawn_ah", "Ah"),
    ("charge_regenerated_ah", "Ah"),
    ("energy_drawn_wh", "Wh"),
    ("energy_regenerated_wh", "Wh"),
    ("mosfet1_temperature_c", "°C"),
    ("mosfet2_temperature_c", "°C"),
    ("mosfet3_temperature_c", "°C"),
    ("vd_v", "V"),
    ("vq_v", "V"),
];

/// `mc_fault_code` of `datatypes.h`, by code (bldc master; later firmware may add codes).
const FAULT_NAMES: [&str; 30] = [
    "FAULT_CODE_NONE",
    "FAULT_CODE_OVER_VOLTAGE",
    "FAULT_CODE_UNDER_VOLTAGE",
    "FAULT_CODE_DRV",
    "FAULT_CODE_ABS_OVER_CURRENT",
    "FAULT_CODE_OVER_TEMP_FET",
    "FAULT_CODE_OVER_TEMP_MOTOR",
    "FAULT_CODE_GATE_DRIVER_OVER_VOLTAGE",
    "FAULT_CODE_GATE_DRIVER_UNDER_VOLTAGE",
    "FAULT_CODE_MCU_UNDER_VOLTAGE",
    "FAULT_CODE_BOOTING_FROM_WATCHDOG_RESET",
    "FAULT_CODE_ENCODER_SPI",
    "FAULT_CODE_ENCODER_SINCOS_BELOW_MIN_AMPLITUDE",
    "FAULT_CODE_ENCODER_SINCOS_ABOVE_MAX_AMPLITUDE",
    "FAULT_CODE_FLASH_CORRUPTION",
    "FAULT_CODE_HIGH_OFFSET_CURRENT_SENSOR_1",
    "FAULT_CODE_HIGH_OFFSET_CURRENT_SENSOR_2",
    "FAULT_CODE_HIGH_OFFSET_CURRENT_SENSOR_3",
    "FAULT_CODE_UNBALANCED_CURRENTS",
    "FAULT_CODE_BRK",
    "FAULT_CODE_RESOLVER_LOT",
    "FAULT_CODE_RESOLVER_DOS",
    "FAULT_CODE_RESOLVER_LOS",
    "FAULT_CODE_FLASH_CORRUPTION_APP_CFG",
    "FAULT_CODE_FLASH_CORRUPTION_MC_CFG",
    "FAULT_CODE_ENCODER_NO_MAGNET",
    "FAULT_CODE_ENCODER_MAGNET_TOO_STRONG",
    "FAULT_CODE_PHASE_FILTER",
    "FAULT_CODE_ENCODER_FAULT",
    "FAULT_CODE_LV_OUTPUT_FAULT",
];

/// The name of a fault code as the firmware's `mc_interface_fault_to_string` gives it.
pub fn fault_name(code: u8) -> String {
    match FAULT_NAMES.get(usize::from(code)) {
        Some(name) => (*name).to_owned(),
        None => format!("fault code {code} (unknown to drivebench)"),
    }
}

/// `COMM_PACKET_ID` names by id, for messages.
const PACKET_NAMES: [&str; 87] = [
    "COMM_FW_VERSION",
    "COMM_JUMP_TO_BOOTLOADER",
    "COMM_ERASE_NEW_APP",
    "COMM_WRITE_NEW_APP_DATA",
    "COMM_GET_VALUES",
    "COMM_SET_DUTY",
    "COMM_SET_CURRENT",
    "COMM_SET_CURRENT_BRAKE",
    "COMM_SET_RPM",
    "COMM_SET_POS",
    "COMM_SET_HANDBRAKE",
    "COMM_SET_DETECT",
    "COMM_SET_SERVO_POS",
    "COMM_SET_MCCONF",
    "COMM_GET_MCCONF",
    "COMM_GET_MCCONF_DEFAULT",
    "COMM_SET_APPCONF",
    "COMM_GET_APPCONF",
    "COMM_GET_APPCONF_DEFAULT",
    "COMM_SAMPLE_PRINT",
    "COMM_TERMINAL_CMD",
    "COMM_PRINT",
    "COMM_ROTOR_POSITION",
    "COMM_EXPERIMENT_SAMPLE",
    "COMM_DETECT_MOTOR_PARAM",
    "COMM_DETECT_MOTOR_R_L",
    "COMM_DETECT_MOTOR_FLUX_LINKAGE",
    "COMM_DETECT_ENCODER",
    "COMM_DETECT_HALL_FOC",
    "COMM_REBOOT",
    "COMM_ALIVE",
    "COMM_GET_DECODED_PPM",
    "COMM_GET_DECODED_ADC",
    "COMM_GET_DECODED_CHUK",
    "COMM_FORWARD_CAN",
    "COMM_SET_CHUCK_DATA",
    "COMM_CUSTOM_APP_DATA",
    "COMM_NRF_START_PAIRING",
    "COMM_GPD_SET_FSW",
    "COMM_GPD_BUFFER_NOTIFY",
    "COMM_GPD_BUFFER_SIZE_LEFT",
    "COMM_GPD_FILL_BUFFER",
    "COMM_GPD_OUTPUT_SAMPLE",
    "COMM_GPD_SET_MODE",
    "COMM_GPD_FILL_BUFFER_INT8",
    "COMM_GPD_FILL_BUFFER_INT16",
    "COMM_GPD_SET_BUFFER_INT_SCALE",
    "COMM_GET_VALUES_SETUP",
    "COMM_SET_MCCONF_TEMP",
    "COMM_SET_MCCONF_TEMP_SETUP",
    "COMM_GET_VALUES_SELECTIVE",
    "COMM_GET_VALUES_SETUP_SELECTIVE",
    "COMM_EXT_NRF_PRESENT",
    "COMM_EXT_NRF_ESB_SET_CH_ADDR",
    "COMM_EXT_NRF_ESB_SEND_DATA",
    "COMM_EXT_NRF_ESB_RX_DATA",
    "COMM_EXT_NRF_SET_ENABLED",
    "COMM_DETECT_MOTOR_FLUX_LINKAGE_OPENLOOP",
    "COMM_DETECT_APPLY_ALL_FOC",
    "COMM_JUMP_TO_BOOTLOADER_ALL_CAN",
    "COMM_ERASE_NEW_APP_ALL_CAN",
    "COMM_WRITE_NEW_APP_DATA_ALL_CAN",
    "COMM_PING_CAN",
    "COMM_APP_DISABLE_OUTPUT",
    "COMM_TERMINAL_CMD_SYNC",
    "COMM_GET_IMU_DATA",
    "COMM_BM_CONNECT",
    "COMM_BM_ERASE_FLASH_ALL",
    "COMM_BM_WRITE_FLASH",
    "COMM_BM_REBOOT",
    "COMM_BM_DISCONNECT",
    "COMM_BM_MAP_PINS_DEFAULT",
    "COMM_BM_MAP_PINS_NRF5X",
    "COMM_ERASE_BOOTLOADER",
    "COMM_ERASE_BOOTLOADER_ALL_CAN",
    "COMM_PLOT_INIT",
    "COMM_PLOT_DATA",
    "COMM_PLOT_ADD_GRAPH",
    "COMM_PLOT_SET_GRAPH",
    "COMM_GET_DECODED_BALANCE",
    "COMM_BM_MEM_READ",
    "COMM_WRITE_NEW_APP_DATA_LZO",
    "COMM_WRITE_NEW_APP_DATA_ALL_CAN_LZO",
    "COMM_BM_WRITE_FLASH_LZO",
    "COMM_SET_CURRENT_REL",
    "COMM_CAN_FWD_FRAME",
    "COMM_SET_BATTERY_CUT",
];

/// A packet id with its name, e.g. `COMM_SET_DUTY (5)`.
pub fn packet_name(id: u8) -> String {
    match PACKET_NAMES.get(usize::from(id)) {
        Some(name) => format!("{name} ({id})"),
        None => format!("packet id {id}"),
    }
}

/// Packets a console may send freely: they read, or do nothing to the motor.
const HARMLESS_IDS: [u8; 15] = [0, 4, 14, 15, 17, 18, 21, 30, 31, 32, 33, 47, 50, 51, 65];

/// One `COMM_GET_VALUES` reply (table 3.3), in physical units.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Values {
    temp_fet_c: f64,
    /// Absent before firmware 3.
    temp_motor_c: Option<f64>,
    current_motor_a: f64,
    current_in_a: f64,
    /// Absent before firmware 3.
    id_a: Option<f64>,
    /// Before firmware 3 (no Iq in the reply): the averaged motor current.
    iq_a: f64,
    duty: f64,
    erpm: f64,
    v_in: f64,
    amp_hours: Option<f64>,
    amp_hours_charged: Option<f64>,
    watt_hours: Option<f64>,
    watt_hours_charged: Option<f64>,
    tachometer: Option<i32>,
    tachometer_abs: Option<i32>,
    /// Absent in the shortest replies of firmware 1.x.
    fault: Option<u8>,
    pid_pos_deg: Option<f64>,
    controller_id: Option<u8>,
    temp_mos_c: Option<[f64; 3]>,
    vd_v: Option<f64>,
    vq_v: Option<f64>,
    status: Option<u8>,
}

/// Big-endian reader over a payload; every read fails cleanly at the end.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, at: 0 }
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes = self.data.get(self.at..self.at + N)?;
        self.at += N;
        bytes.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }

    fn i16(&mut self) -> Option<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }

    /// `buffer_get_float16`: a fixed-point i16 over `scale`.
    fn f16(&mut self, scale: f64) -> Option<f64> {
        self.i16().map(|v| f64::from(v) / scale)
    }

    /// `buffer_get_float32`: a fixed-point i32 over `scale`.
    fn f32(&mut self, scale: f64) -> Option<f64> {
        self.i32().map(|v| f64::from(v) / scale)
    }
}

/// Decodes the data of a `COMM_GET_VALUES` reply (after the id) in the layout of firmware major
/// version `major`: from 3 on, the present layout, where everything up to the fault code is
/// required and the later fields are taken one by one while complete; before 3, the layout of
/// [`parse_values_v2`].
fn parse_values(data: &[u8], major: u8) -> Option<Values> {
    if major < 3 {
        return parse_values_v2(data);
    }
    let mut r = Reader::new(data);
    let mut v = Values {
        temp_fet_c: r.f16(10.0)?,
        temp_motor_c: Some(r.f16(10.0)?),
        current_motor_a: r.f32(100.0)?,
        current_in_a: r.f32(100.0)?,
        id_a: Some(r.f32(100.0)?),
        iq_a: r.f32(100.0)?,
        duty: r.f16(1000.0)?,
        erpm: r.f32(1.0)?,
        v_in: r.f16(10.0)?,
        amp_hours: Some(r.f32(10_000.0)?),
        amp_hours_charged: Some(r.f32(10_000.0)?),
        watt_hours: Some(r.f32(10_000.0)?),
        watt_hours_charged: Some(r.f32(10_000.0)?),
        tachometer: Some(r.i32()?),
        tachometer_abs: Some(r.i32()?),
        fault: Some(r.u8()?),
        ..Values::default()
    };
    v.pid_pos_deg = r.f32(1_000_000.0);
    v.controller_id = v.pid_pos_deg.and_then(|_| r.u8());
    if v.controller_id.is_some()
        && let (Some(a), Some(b), Some(c)) = (r.f16(10.0), r.f16(10.0), r.f16(10.0))
    {
        v.temp_mos_c = Some([a, b, c]);
    }
    if v.temp_mos_c.is_some() {
        v.vd_v = r.f32(1000.0);
        v.vq_v = v.vd_v.and_then(|_| r.f32(1000.0));
        v.status = v.vq_v.and_then(|_| r.u8());
    }
    Some(v)
}

/// Decodes a `COMM_GET_VALUES` reply of firmware 1.x/2.x (`commands.c` before 3.0): six MOSFET
/// NTCs and the PCB NTC (i16 /10), the averaged motor and input currents (i32 /100), duty (i16
/// /1000), ERPM (i32), input voltage (i16 /10); then, from 2.x, Ah, Ah charged, Wh, Wh charged
/// (i32 /10000), the tachometer and its absolute value (i32) and the fault code (u8): 55 bytes.
/// There is no Id/Iq, motor temperature, PID position or status. The temperature is the hottest
/// MOSFET NTC.
fn parse_values_v2(data: &[u8]) -> Option<Values> {
    let mut r = Reader::new(data);
    let mut mos = [0.0; 6];
    for t in &mut mos {
        *t = r.f16(10.0)?;
    }
    let _pcb = r.f16(10.0)?;
    let current_motor_a = r.f32(100.0)?;
    let mut v = Values {
        temp_fet_c: mos.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        current_motor_a,
        iq_a: current_motor_a,
        current_in_a: r.f32(100.0)?,
        duty: r.f16(1000.0)?,
        erpm: r.f32(1.0)?,
        v_in: r.f16(10.0)?,
        temp_mos_c: Some([mos[0], mos[1], mos[2]]),
        ..Values::default()
    };
    if let (Some(ah), Some(ahc), Some(wh), Some(whc), Some(tach), Some(tach_abs)) =
        (r.f32(10_000.0), r.f32(10_000.0), r.f32(10_000.0), r.f32(10_000.0), r.i32(), r.i32())
    {
        v.amp_hours = Some(ah);
        v.amp_hours_charged = Some(ahc);
        v.watt_hours = Some(wh);
        v.watt_hours_charged = Some(whc);
        v.tachometer = Some(tach);
        v.tachometer_abs = Some(tach_abs);
        v.fault = r.u8();
    }
    Some(v)
}

/// The identity text from a `COMM_FW_VERSION` reply (after the id), read as far as it goes:
/// older firmware sends a prefix of the present layout.
fn parse_identity(data: &[u8]) -> Option<String> {
    let (&major, rest) = data.split_first()?;
    let (&minor, mut rest) = rest.split_first()?;
    let mut text = format!("VESC firmware {major}.{minor:02}");
    if !rest.is_empty() {
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        text.push_str(&format!(", hardware {}", printable(&rest[..end])));
        rest = rest.get(end + 1..).unwrap_or(&[]);
    }
    if let Some(uuid) = rest.get(..12) {
        let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!(", UUID {hex}"));
        rest = &rest[12..];
    } else {
        rest = &[];
    }
    // pairing_done, test version, hw type, custom configs, phase filters, QML hw/app, NRF flags.
    if let Some(&test) = rest.get(1)
        && test != 0
    {
        text.push_str(&format!(", test build {test}"));
    }
    match rest.get(2) {
        Some(1) => text.push_str(", a VESC BMS"),
        Some(2) => text.push_str(", a custom module"),
        _ => {}
    }
    if let Some(name) = rest.get(8..) {
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        if end > 0 {
            text.push_str(&format!(", firmware name {}", printable(&name[..end])));
        }
    }
    Some(text)
}

/// Text from the drive with control characters replaced, cut to a sane length.
fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String =
        text.chars().take(MAX_TEXT_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > MAX_TEXT_CHARS {
        out.push('…');
    }
    out.trim().to_owned()
}

/// A value rounded to the nearest i32, saturating.
fn to_i32(value: f64) -> i32 {
    value.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

/// A SET command's payload: the id and a big-endian i32.
fn set_payload(id: u8, value: i32) -> [u8; 5] {
    let b = value.to_be_bytes();
    [id, b[0], b[1], b[2], b[3]]
}

/// Parses a console line of hex bytes: pairs of hex digits, blanks and commas between bytes
/// optional, a `0x` prefix allowed on each group, upper or lower case.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for group in text.split(|c: char| c.is_whitespace() || c == ',').filter(|g| !g.is_empty()) {
        let digits = group.strip_prefix("0x").or_else(|| group.strip_prefix("0X")).unwrap_or(group);
        if digits.is_empty() || digits.len() % 2 != 0 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "`{group}` is not hex bytes: type pairs of hex digits, e.g. `02 01 04 40 84 03`"
            ));
        }
        for pair in digits.as_bytes().chunks(2) {
            let pair = std::str::from_utf8(pair).map_err(|_| "not hex".to_owned())?;
            bytes.push(u8::from_str_radix(pair, 16).map_err(|_| format!("`{pair}` is not hex"))?);
        }
    }
    Ok(bytes)
}

/// The request waiting for its reply.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Request {
    FwVersion,
    Values,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    request: Request,
    sent_at: f64,
}

/// Host side of the VESC UART packet protocol for one motor.
#[derive(Debug, Clone)]
pub struct VescCodec {
    pole_pairs: u32,
    rx: FrameDecoder,
    started: bool,
    in_flight: Option<InFlight>,
    fw_attempts: u32,
    want_identity: bool,
    identity: Option<String>,
    /// The firmware major version from `COMM_FW_VERSION`: the layout of `COMM_GET_VALUES`.
    fw_major: Option<u8>,
    /// The drive reported a fault code before its firmware version was known (reported once).
    unversioned_fault_noted: bool,
    timeouts_in_row: u32,
    lost: bool,
    /// A `COMM_GET_VALUES` reply arrived since start: the state is known.
    answered: bool,
    mode: ControlMode,
    /// The setpoint of `mode`, in its canonical unit.
    setpoint: f64,
    /// Drivebench applies setpoints (and keeps the firmware timeout fed).
    enabled: bool,
    enabled_at: f64,
    next_keepalive_at: f64,
    /// When the last SET or `COMM_ALIVE` went out while enabled.
    last_keepalive_at: f64,
    stop_repeats: u32,
    /// The fault code in the last reply.
    drive_fault: u8,
    /// A fault seen and not yet acknowledged by `ResetFaults`.
    fault_latched: Option<u8>,
    status: Option<u8>,
    last_state: Option<DriveState>,
    /// Last PID position, rev in [0, 1).
    position_rev: Option<f64>,
    skipped_reported: u64,
    log: LogLimiter,
}

impl VescCodec {
    /// A codec for a motor with `pole_pairs` pole pairs (speed = ERPM / pole pairs; 0 is taken
    /// as 1).
    pub fn new(pole_pairs: u32) -> Self {
        VescCodec {
            pole_pairs: pole_pairs.max(1),
            rx: FrameDecoder::new(),
            started: false,
            in_flight: None,
            fw_attempts: 0,
            want_identity: true,
            identity: None,
            fw_major: None,
            unversioned_fault_noted: false,
            timeouts_in_row: 0,
            lost: false,
            answered: false,
            mode: ControlMode::Speed,
            setpoint: 0.0,
            enabled: false,
            enabled_at: 0.0,
            next_keepalive_at: 0.0,
            last_keepalive_at: 0.0,
            stop_repeats: 0,
            drive_fault: 0,
            fault_latched: None,
            status: None,
            last_state: None,
            position_rev: None,
            skipped_reported: 0,
            log: LogLimiter::default(),
        }
    }

    fn pp(&self) -> f64 {
        f64::from(self.pole_pairs)
    }

    fn send(&self, payload: &[u8], out: &mut CodecOut) {
        out.tx.extend(encode_frame(payload));
    }

    fn send_request(&mut self, now_s: f64, out: &mut CodecOut) {
        if self.want_identity && self.fw_attempts >= FW_VERSION_ATTEMPTS {
            self.want_identity = false;
            self.log.log(
                now_s,
                format!(
                    "no reply to COMM_FW_VERSION after {FW_VERSION_ATTEMPTS} attempts: the firmware version \
                     is unknown"
                ),
                out,
            );
        }
        let request = if self.want_identity {
            self.fw_attempts += 1;
            self.send(&[COMM_FW_VERSION], out);
            Request::FwVersion
        } else {
            self.send(&[COMM_GET_VALUES], out);
            Request::Values
        };
        self.in_flight = Some(InFlight { request, sent_at: now_s });
    }

    /// The SET packet for a setpoint of `mode`, in drive units.
    fn setpoint_payload(&self, mode: ControlMode, value: f64) -> Result<[u8; 5], CodecError> {
        if !value.is_finite() {
            return Err(CodecError::Invalid(format!("{} setpoint is not a finite number", mode.cli_name())));
        }
        Ok(match mode {
            ControlMode::Current => set_payload(COMM_SET_CURRENT, to_i32(value * 1000.0)),
            ControlMode::Speed => set_payload(COMM_SET_RPM, to_i32(value * self.pp())),
            ControlMode::Position => {
                // COMM_SET_POS sets the PID position, an angle the firmware normalises to
                // 0–360° (`utils_norm_angle`) and reaches the short way round: one turn of the
                // shaft (or of the electrical angle, depending on the sensor setup), not a
                // multi-turn position. Anything outside one turn would wrap silently.
                if !(0.0..1.0).contains(&value) {
                    return Err(CodecError::Invalid(format!(
                        "{value} rev is outside one turn: a VESC position (COMM_SET_POS) is the single-turn PID \
                         angle 0–360°, so drivebench takes 0 ≤ position < 1 rev"
                    )));
                }
                set_payload(COMM_SET_POS, to_i32(value * 360.0 * 1_000_000.0))
            }
        })
    }

    /// Sends the stored setpoint (enabled only) and restarts the keep-alive period: every SET
    /// command resets the firmware timeout.
    fn apply_setpoint(&mut self, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        let payload = self.setpoint_payload(self.mode, self.setpoint)?;
        self.send(&payload, out);
        self.next_keepalive_at = now_s + KEEPALIVE_S;
        self.last_keepalive_at = now_s;
        Ok(())
    }

    fn warn_low_speed(&mut self, now_s: f64, out: &mut CodecOut) {
        if self.mode != ControlMode::Speed {
            return;
        }
        let erpm = (self.setpoint * self.pp()).abs();
        if erpm > 0.0 && erpm < DEFAULT_MIN_ERPM {
            self.log.log(
                now_s,
                format!(
                    "{} rpm is {} ERPM with {} pole pairs: below the speed controller's s_pid_min_erpm ({} \
                     ERPM by default, {} rpm here) a VESC brakes instead of regulating",
                    self.setpoint,
                    to_i32(self.setpoint * self.pp()),
                    self.pole_pairs,
                    DEFAULT_MIN_ERPM,
                    to_i32(DEFAULT_MIN_ERPM / self.pp())
                ),
                out,
            );
        }
    }

    /// `COMM_SET_CURRENT 0`: the firmware releases the motor and it coasts. Repeated at the
    /// next polls; drivebench stops applying setpoints.
    fn send_stop(&mut self, out: &mut CodecOut) {
        self.send(&set_payload(COMM_SET_CURRENT, 0), out);
        self.enabled = false;
        self.stop_repeats = STOP_REPEATS;
    }

    fn report_mode(&self, out: &mut CodecOut) {
        out.events.push(Event::Mode { mode: self.mode, setpoint: self.setpoint });
    }

    fn enable(&mut self, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        if let Some(code) = self.fault_latched {
            return Err(CodecError::Invalid(format!(
                "the drive reported {}: reset faults before enabling",
                fault_name(code)
            )));
        }
        if self.mode == ControlMode::Position {
            // Start from where the shaft is, as a drive with an enable would.
            let position = self.position_rev.ok_or_else(|| {
                CodecError::Invalid(
                    "position mode starts at the present PID position, which is not known yet: wait for \
                     telemetry"
                        .into(),
                )
            })?;
            self.setpoint = position;
            self.report_mode(out);
        }
        self.apply_setpoint(now_s, out)?;
        self.enabled = true;
        self.enabled_at = now_s;
        self.stop_repeats = 0;
        self.warn_low_speed(now_s, out);
        self.update_state(out);
        Ok(())
    }

    fn set_mode(&mut self, mode: ControlMode, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        if mode == self.mode {
            self.report_mode(out);
            return Ok(());
        }
        let setpoint = match mode {
            ControlMode::Current | ControlMode::Speed => 0.0,
            ControlMode::Position => self.position_rev.ok_or_else(|| {
                CodecError::Invalid(
                    "position mode starts at the present PID position, which is not known yet: wait for \
                     telemetry"
                        .into(),
                )
            })?,
        };
        self.mode = mode;
        self.setpoint = setpoint;
        if self.enabled {
            self.apply_setpoint(now_s, out)?;
        }
        self.report_mode(out);
        Ok(())
    }

    fn set_setpoint(
        &mut self,
        mode: ControlMode,
        value: f64,
        now_s: f64,
        out: &mut CodecOut,
    ) -> Result<(), CodecError> {
        if mode != self.mode {
            return Err(CodecError::WrongMode {
                wanted: mode.cli_name().to_owned(),
                active: self.mode.cli_name().to_owned(),
            });
        }
        // Validates before anything is stored.
        self.setpoint_payload(mode, value)?;
        self.setpoint = value;
        if self.enabled {
            self.apply_setpoint(now_s, out)?;
            self.warn_low_speed(now_s, out);
        }
        self.report_mode(out);
        Ok(())
    }

    fn reset_faults(&mut self, out: &mut CodecOut) {
        if self.fault_latched.is_none() {
            return;
        }
        if self.drive_fault != 0 {
            out.events.push(Event::Refused(format!(
                "the drive still reports {}: a VESC clears a fault by itself once the cause is gone and its \
                 fault stop time (m_fault_stop_time_ms, 500 ms by default) has passed",
                fault_name(self.drive_fault)
            )));
            return;
        }
        self.fault_latched = None;
        self.update_state(out);
    }

    fn fault_text(&self, code: u8) -> String {
        let name = fault_name(code);
        if self.drive_fault == code {
            format!("{name} (VESC fault code {code})")
        } else {
            format!(
                "{name} (VESC fault code {code}), since cleared by the drive: reset faults to acknowledge"
            )
        }
    }

    fn lost_text() -> String {
        format!(
            "no reply from the VESC for {} requests in a row ({:.1} s): check the port, the baud rate (115200 \
             by default) and, on the UART port, that the app to use includes UART",
            LOST_AFTER_TIMEOUTS,
            f64::from(LOST_AFTER_TIMEOUTS) * REPLY_TIMEOUT_S
        )
    }

    /// Reports the state once the drive answered (or is lost), and on change.
    fn update_state(&mut self, out: &mut CodecOut) {
        if !(self.answered || self.lost) {
            return;
        }
        let state = if self.lost {
            DriveState::Fault(Self::lost_text())
        } else if let Some(code) = self.fault_latched {
            DriveState::Fault(self.fault_text(code))
        } else if self.enabled {
            DriveState::Enabled
        } else {
            DriveState::Idle
        };
        if self.last_state.as_ref() != Some(&state) {
            self.last_state = Some(state.clone());
            out.events.push(Event::State(state));
        }
    }

    /// A reply arrived: the drive is there.
    fn answered(&mut self, out: &mut CodecOut) {
        self.timeouts_in_row = 0;
        if self.lost {
            self.lost = false;
            out.events.push(Event::Log("the VESC answers again".to_owned()));
            // It may have been power-cycled or swapped: ask who it is again.
            self.want_identity = true;
            self.fw_attempts = 0;
            self.fw_major = None;
            self.update_state(out);
        }
    }

    fn check_timeout(&mut self, now_s: f64, out: &mut CodecOut) {
        let Some(in_flight) = self.in_flight else {
            return;
        };
        if now_s - in_flight.sent_at < REPLY_TIMEOUT_S {
            return;
        }
        self.in_flight = None;
        self.timeouts_in_row += 1;
        if self.timeouts_in_row == 2 || self.timeouts_in_row.is_multiple_of(10) {
            // Noise may have left a long-frame header in the drive's decoder, which then holds
            // our requests until 518 bytes have arrived: complete it with zeros (never a start
            // byte, so a decoder that is in sync ignores them).
            out.tx.extend(std::iter::repeat_n(0u8, MAX_FRAME));
        }
        let what = match in_flight.request {
            Request::FwVersion => "COMM_FW_VERSION",
            Request::Values => "COMM_GET_VALUES",
        };
        self.log.log(now_s, format!("no reply to {what} within {REPLY_TIMEOUT_S} s"), out);
        if self.timeouts_in_row >= LOST_AFTER_TIMEOUTS && !self.lost {
            self.lost = true;
            if self.enabled {
                // Drivebench cannot see the motor any more: stop applying setpoints and stop it,
                // in case only the replies are lost.
                self.send_stop(out);
                out.events.push(Event::Refused(
                    "the VESC does not answer: sent COMM_SET_CURRENT 0 and stopped applying setpoints".into(),
                ));
            }
            self.update_state(out);
        }
    }

    fn handle_payload(&mut self, payload: &[u8], now_s: f64, out: &mut CodecOut) {
        let Some((&id, data)) = payload.split_first() else {
            return;
        };
        match id {
            COMM_FW_VERSION => {
                // Only the answer to our request: the version selects the layout of every
                // later COMM_GET_VALUES reply.
                if !matches!(self.in_flight, Some(InFlight { request: Request::FwVersion, .. })) {
                    return;
                }
                self.in_flight = None;
                self.answered(out);
                self.want_identity = false;
                if let Some(&major) = data.first() {
                    self.fw_major = Some(major);
                }
                match parse_identity(data) {
                    Some(text) => {
                        if self.identity.as_ref() != Some(&text) {
                            self.identity = Some(text.clone());
                            out.events.push(Event::Identity(text));
                        }
                    }
                    None => self.log.log(
                        now_s,
                        format!("COMM_FW_VERSION reply of {} bytes is too short to read", payload.len()),
                        out,
                    ),
                }
            }
            COMM_GET_VALUES => {
                let sent_at = match self.in_flight {
                    Some(InFlight { request: Request::Values, sent_at }) => {
                        self.in_flight = None;
                        Some(sent_at)
                    }
                    _ => None,
                };
                self.answered(out);
                // Until the version is known the present layout is assumed, but no fault is taken
                // from it (see `handle_values`).
                let major = self.fw_major.unwrap_or(u8::MAX);
                match parse_values(data, major) {
                    Some(values) => self.handle_values(&values, sent_at, now_s, out),
                    None => self.log.log(
                        now_s,
                        format!(
                            "COMM_GET_VALUES reply of {} bytes is shorter than any firmware drivebench knows \
                             (at least {} with the fault code)",
                            payload.len(),
                            if major < 3 { 31 } else { 54 }
                        ),
                        out,
                    ),
                }
            }
            COMM_PRINT => {
                let text = printable(data);
                if !text.is_empty() {
                    self.log.log(now_s, format!("VESC: {text}"), out);
                }
            }
            COMM_SET_MCCONF | COMM_SET_APPCONF => {
                out.events.push(Event::Log(format!("the VESC acknowledged {}", packet_name(id))));
            }
            _ => self.log.log(
                now_s,
                format!("ignored a packet from the VESC: {}, {} bytes", packet_name(id), payload.len()),
                out,
            ),
        }
    }

    fn handle_values(&mut self, v: &Values, sent_at: Option<f64>, now_s: f64, out: &mut CodecOut) {
        let pp = self.pp();
        let mut sample = |signal: u16, value: f64| {
            if value.is_finite() {
                out.samples.push(Sample { t_s: now_s, signal, value });
            }
        };
        sample(SIG_SPEED, v.erpm / pp);
        sample(SIG_CURRENT, v.iq_a);
        if let Some(deg) = v.pid_pos_deg {
            sample(SIG_POSITION, deg / 360.0);
        }
        sample(SIG_VOLTAGE, v.v_in);
        sample(SIG_TEMPERATURE, v.temp_fet_c);
        if let Some(t) = v.temp_motor_c {
            sample(SIG_MOTOR_TEMPERATURE, t);
        }
        sample(SIG_MOTOR_CURRENT, v.current_motor_a);
        sample(SIG_INPUT_CURRENT, v.current_in_a);
        if let Some(id) = v.id_a {
            sample(SIG_ID, id);
        }
        sample(SIG_DUTY, v.duty);
        sample(SIG_ERPM, v.erpm);
        for (signal, value) in [
            (SIG_TACHOMETER, v.tachometer.map(f64::from)),
            (SIG_TACHOMETER_ABS, v.tachometer_abs.map(f64::from)),
            (SIG_AH, v.amp_hours),
            (SIG_AH_CHARGED, v.amp_hours_charged),
            (SIG_WH, v.watt_hours),
            (SIG_WH_CHARGED, v.watt_hours_charged),
        ] {
            if let Some(value) = value {
                sample(signal, value);
            }
        }
        if let Some(temps) = v.temp_mos_c {
            for (i, t) in temps.iter().enumerate() {
                sample(SIG_MOSFET1 + i as u16, *t);
            }
        }
        if let Some(vd) = v.vd_v {
            sample(SIG_VD, vd);
        }
        if let Some(vq) = v.vq_v {
            sample(SIG_VQ, vq);
        }
        if let Some(deg) = v.pid_pos_deg {
            self.position_rev = Some((deg / 360.0).rem_euclid(1.0));
        }
        self.answered = true;

        // The reply's layout depends on the firmware version: a fault code read before the
        // version is known may be any byte of an older layout, so it is not acted on.
        let fault = match v.fault {
            Some(code) if self.fw_major.is_none() => {
                if code != 0 && !self.unversioned_fault_noted {
                    self.unversioned_fault_noted = true;
                    out.events.push(Event::Log(format!(
                        "COMM_GET_VALUES holds fault code {code} but the firmware version is not known yet, \
                         so the reply's layout is not certain: faults are shown once COMM_FW_VERSION is answered"
                    )));
                }
                0
            }
            Some(code) => code,
            None => 0,
        };
        if fault != 0 {
            if self.fault_latched != Some(fault) {
                self.fault_latched = Some(fault);
                if self.enabled {
                    self.send_stop(out);
                    out.events.push(Event::Log(format!(
                        "the VESC reported {}: it stopped the motor; drivebench stopped applying setpoints",
                        fault_name(fault)
                    )));
                }
            }
        } else if let Some(code) = self.fault_latched
            && self.drive_fault == code
        {
            out.events.push(Event::Log(format!(
                "the VESC cleared {} by itself (after its fault stop time); reset faults to acknowledge",
                fault_name(code)
            )));
        }
        self.drive_fault = fault;

        if let Some(status) = v.status {
            if self.status != Some(status) {
                self.status = Some(status);
                out.events.push(Event::Status(status_text(status)));
            }
            let fresh = sent_at.is_some_and(|t| t >= self.enabled_at + TIMEOUT_STATUS_GRACE_S);
            if self.enabled && status & 0b11 != 0 && fresh {
                // The firmware released the motor itself; a keep-alive does not bring it back.
                let why = if status & 0b10 != 0 {
                    "its kill switch is active"
                } else {
                    "its command timeout fired (no SET or COMM_ALIVE within the app's timeout_msec; drivebench \
                     sends COMM_ALIVE every 0.2 s, so the timeout may be set shorter than that, or frames are lost)"
                };
                self.send_stop(out);
                out.events.push(Event::Refused(format!(
                    "the VESC released the motor: {why}; drivebench stopped applying setpoints"
                )));
            }
        }
        self.update_state(out);
    }
}

/// The status byte (bit 0 timeout active, bit 1 kill switch active) in words.
fn status_text(status: u8) -> String {
    let mut parts = Vec::new();
    if status & 0b01 != 0 {
        parts.push("timeout active");
    }
    if status & 0b10 != 0 {
        parts.push("kill switch active");
    }
    if parts.is_empty() { "normal".to_owned() } else { parts.join(", ") }
}

/// What one packet sent to the drive would do (see [`Codec::raw_intent`]).
fn packet_intent(payload: &[u8], pole_pairs: f64) -> RawIntent {
    let Some((&id, data)) = payload.split_first() else {
        return RawIntent::Other;
    };
    if HARMLESS_IDS.contains(&id) {
        return RawIntent::Other;
    }
    let value = data.get(..4).map(|b| f64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])));
    let name = packet_name(id);
    let setpoint = |mode: ControlMode, f: &dyn Fn(f64) -> f64| match value {
        Some(v) => RawIntent::Setpoint(mode, f(v)),
        None => RawIntent::Guarded(format!(
            "{name} needs a 4-byte value but has {} bytes: the firmware would read past the packet",
            data.len()
        )),
    };
    match id {
        COMM_SET_CURRENT => setpoint(ControlMode::Current, &|v| v / 1000.0),
        // A brake current only opposes the rotation; its magnitude is checked as a current.
        COMM_SET_CURRENT_BRAKE => setpoint(ControlMode::Current, &|v| v.abs() / 1000.0),
        COMM_SET_RPM => setpoint(ControlMode::Speed, &|v| v / pole_pairs),
        // The firmware normalises the angle to 0–360°.
        COMM_SET_POS => setpoint(ControlMode::Position, &|v| (v / 1_000_000.0).rem_euclid(360.0) / 360.0),
        COMM_SET_DUTY => RawIntent::Guarded(format!(
            "{name} sets the PWM duty directly: neither a current nor a speed drivebench can check"
        )),
        COMM_SET_MCCONF | COMM_SET_APPCONF | COMM_SET_MCCONF_TEMP | 49 => RawIntent::Guarded(format!(
            "{name} writes the drive's configuration, including its current and speed limits: use VESC Tool"
        )),
        COMM_REBOOT => RawIntent::Guarded(format!("{name} restarts the drive")),
        COMM_FORWARD_CAN => RawIntent::Guarded(format!(
            "{name} passes a packet to another VESC on the CAN bus, outside the limits of this drive, and its \
             reply would be taken for this drive's"
        )),
        20 | 64 => RawIntent::Guarded(format!(
            "{name} runs a firmware terminal command, some of which drive the motor directly"
        )),
        10..=12 | 24..=28 | 35 | 57 | 58 | 84 => {
            RawIntent::Guarded(format!("{name} drives the motor in a way drivebench cannot check"))
        }
        _ => RawIntent::Guarded(format!(
            "{name} is not one drivebench knows to be harmless (it may write settings or drive the motor)"
        )),
    }
}

impl Codec for VescCodec {
    fn signals(&self) -> Vec<SignalSpec> {
        SIGNALS.iter().map(|(name, unit)| SignalSpec::new(name, unit)).collect()
    }

    fn params(&self) -> Vec<ParamSpec> {
        Vec::new()
    }

    fn params_note(&self) -> Option<String> {
        Some(
            "A VESC keeps its motor and app configuration (limits, gains, timeout) in binary blobs \
             (COMM_GET/SET_MCCONF, APPCONF) whose layout and signature change with every firmware version; \
             edit them in VESC Tool. drivebench does not offer them here."
                .into(),
        )
    }

    fn start(&mut self, now_s: f64, out: &mut CodecOut) {
        self.started = true;
        self.rx.reset();
        self.in_flight = None;
        self.fw_attempts = 0;
        self.want_identity = true;
        self.identity = None;
        self.timeouts_in_row = 0;
        self.lost = false;
        self.answered = false;
        self.enabled = false;
        self.stop_repeats = 0;
        self.drive_fault = 0;
        self.fault_latched = None;
        self.status = None;
        self.last_state = None;
        self.position_rev = None;
        self.skipped_reported = self.rx.skipped();
        out.events.push(Event::Log(format!(
            "VESC UART packets, {} pole pairs (speed = ERPM / {})",
            self.pole_pairs, self.pole_pairs
        )));
        self.report_mode(out);
        self.send_request(now_s, out);
    }

    fn command(&mut self, cmd: &Command, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        match cmd {
            Command::Connect | Command::Disconnect => {}
            Command::Raw(text) => self.raw(text, now_s, out),
            Command::EStop => self.estop(now_s, out),
            Command::Enable => self.enable(now_s, out)?,
            Command::Disable => {
                self.send_stop(out);
                self.update_state(out);
            }
            Command::ResetFaults => self.reset_faults(out),
            Command::SetMode(mode) => self.set_mode(*mode, now_s, out)?,
            Command::SetSetpoint(mode, value) => self.set_setpoint(*mode, *value, now_s, out)?,
            Command::ReadParam(key) | Command::WriteParam(key, _) => {
                return Err(CodecError::UnknownParam(key.clone()));
            }
            Command::ReadAllParams => {}
        }
        Ok(())
    }

    fn estop(&mut self, _now_s: f64, out: &mut CodecOut) {
        self.send_stop(out);
        // A later enable must not restart the motion by itself.
        match self.mode {
            ControlMode::Current | ControlMode::Speed => self.setpoint = 0.0,
            ControlMode::Position => {
                if let Some(position) = self.position_rev {
                    self.setpoint = position;
                }
            }
        }
        self.report_mode(out);
        self.update_state(out);
    }

    fn raw(&mut self, text: &str, _now_s: f64, out: &mut CodecOut) {
        match parse_hex(text) {
            Ok(bytes) => out.tx.extend(bytes),
            Err(reason) => out.events.push(Event::Refused(format!("console line not sent: {reason}"))),
        }
    }

    /// Finds every frame any firmware generation would decode in the hex bytes (see
    /// [`frames_anywhere`]) and classifies each packet; a refusal of any wins, more than one packet
    /// that sets the motor is refused, and so is a line with bytes outside every frame found.
    fn raw_intent(&self, text: &str) -> RawIntent {
        let bytes = match parse_hex(text) {
            Ok(bytes) => bytes,
            Err(reason) => return RawIntent::Guarded(format!("not hex: {reason}")),
        };
        let scan = frames_anywhere(&bytes);
        if let Some(at) = scan.stray {
            return RawIntent::Guarded(if scan.unfinished {
                "the line ends inside a packet: the drive would join it with the next bytes it receives"
                    .into()
            } else {
                format!(
                    "byte {} (0x{:02X}) is outside every valid packet: a drive with another frame decoder \
                     may read the line differently; send only whole packets",
                    at + 1,
                    bytes[at]
                )
            });
        }
        let mut found = None;
        let mut setting = 0;
        for (start, len) in scan.payloads {
            match packet_intent(&bytes[start..start + len], self.pp()) {
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
                "the line holds several packets that set the motor: send them one per line".into(),
            );
        }
        found.unwrap_or(RawIntent::Other)
    }

    fn feed(&mut self, bytes: &[u8], now_s: f64, out: &mut CodecOut) {
        let mut payloads = Vec::new();
        self.rx.feed(bytes, |payload| payloads.push(payload.to_vec()));
        if !self.started {
            return;
        }
        for payload in payloads {
            self.handle_payload(&payload, now_s, out);
        }
    }

    fn poll(&mut self, now_s: f64, out: &mut CodecOut) {
        if !self.started {
            return;
        }
        if self.enabled && now_s - self.last_keepalive_at > FIRMWARE_TIMEOUT_S {
            // Polls stalled (a frozen app, a suspended machine): the firmware has released the
            // motor by now, and a keep-alive would not bring it back.
            let gap = now_s - self.last_keepalive_at;
            self.send_stop(out);
            out.events.push(Event::Refused(format!(
                "nothing was sent to the VESC for {gap:.1} s, longer than its command timeout (1 s by default): \
                 it released the motor; drivebench stopped applying setpoints"
            )));
            self.update_state(out);
        }
        if self.enabled && now_s >= self.next_keepalive_at {
            self.send(&[COMM_ALIVE], out);
            self.next_keepalive_at = now_s + KEEPALIVE_S;
            self.last_keepalive_at = now_s;
        }
        if self.stop_repeats > 0 {
            self.stop_repeats -= 1;
            self.send(&set_payload(COMM_SET_CURRENT, 0), out);
        }
        self.check_timeout(now_s, out);
        if self.in_flight.is_none() {
            self.send_request(now_s, out);
        }
        let skipped = self.rx.skipped();
        if skipped > self.skipped_reported {
            let count = skipped - self.skipped_reported;
            self.skipped_reported = skipped;
            self.log.log(
                now_s,
                format!(
                    "skipped {count} received bytes that are not part of a valid VESC packet (noise, a wrong \
                     baud rate or another protocol)"
                ),
                out,
            );
        }
    }

    fn stop(&mut self, _now_s: f64, out: &mut CodecOut) {
        self.send(&set_payload(COMM_SET_CURRENT, 0), out);
        self.enabled = false;
        self.stop_repeats = 0;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        parse_hex(text).unwrap()
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
    const SET_CURRENT_0: &str = "02 05 06 00 00 00 00 CD 85 03";

    /// The payload of the reference GET_VALUES reply.
    fn values_payload() -> Vec<u8> {
        let frame = hex(VALUES_REPLY);
        frame[2..frame.len() - 3].to_vec()
    }

    /// The reference reply with some payload bytes changed, framed again.
    fn values_frame_with(changes: &[(usize, u8)]) -> Vec<u8> {
        let mut payload = values_payload();
        for &(at, byte) in changes {
            payload[at] = byte;
        }
        encode_frame(&payload)
    }

    /// A FW_VERSION reply laid out as in PROTOCOLS §3.2.
    fn fw_reply() -> Vec<u8> {
        let mut p = vec![0, 6, 2];
        p.extend_from_slice(b"60\0");
        p.extend_from_slice(&[0x1c, 0, 0x2a, 0, 0x0d, 0x51, 0x37, 0x32, 0x33, 0x38, 0x35, 0x31]);
        p.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(b"\0");
        p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        encode_frame(&p)
    }

    const IDENTITY: &str = "VESC firmware 6.02, hardware 60, UUID 1c002a000d51373233383531";

    fn started(pole_pairs: u32) -> VescCodec {
        let mut codec = VescCodec::new(pole_pairs);
        let mut out = CodecOut::new();
        codec.start(0.0, &mut out);
        codec
    }

    /// A codec that has its identity and one telemetry reply (status 0, no fault).
    fn ready(pole_pairs: u32) -> VescCodec {
        let mut codec = started(pole_pairs);
        let mut out = CodecOut::new();
        codec.feed(&fw_reply(), 0.001, &mut out);
        codec.poll(0.01, &mut out);
        codec.feed(&hex(VALUES_REPLY), 0.011, &mut out);
        codec
    }

    fn run(codec: &mut VescCodec, cmd: Command, now_s: f64) -> (Result<(), CodecError>, CodecOut) {
        let mut out = CodecOut::new();
        let result = codec.command(&cmd, now_s, &mut out);
        (result, out)
    }

    fn poll(codec: &mut VescCodec, now_s: f64) -> CodecOut {
        let mut out = CodecOut::new();
        codec.poll(now_s, &mut out);
        out
    }

    fn feed(codec: &mut VescCodec, bytes: &[u8], now_s: f64) -> CodecOut {
        let mut out = CodecOut::new();
        codec.feed(bytes, now_s, &mut out);
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn states(events: &[Event]) -> Vec<DriveState> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::State(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    fn sample(out: &CodecOut, signal: u16) -> f64 {
        out.samples.iter().rev().find(|s| s.signal == signal).map(|s| s.value).unwrap_or(f64::NAN)
    }

    #[test]
    fn crc_is_xmodem() {
        assert_eq!(CRC16.checksum(b"123456789"), 0x31C3);
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn frames_match_the_reference_vectors() {
        let cases: [(&[u8], &str); 10] = [
            (&[0], FW_VERSION_REQ),
            (&[4], GET_VALUES_REQ),
            (&[30], ALIVE),
            (&[6, 0, 0, 0x13, 0x88], SET_CURRENT_5A),
            (&[6, 0xFF, 0xFF, 0xF6, 0x3C], SET_CURRENT_MINUS_2_5A),
            (&[5, 0, 0, 0x61, 0xA8], SET_DUTY_0_25),
            (&[8, 0, 0, 0x27, 0x10], SET_RPM_10000),
            (&[9, 0x05, 0x5D, 0x4A, 0x80], SET_POS_90),
            (&[50, 0, 0, 0x81, 0x01], SELECTIVE_8101),
            (&[6, 0, 0, 0, 0], SET_CURRENT_0),
        ];
        for (payload, vector) in cases {
            assert_eq!(encode_frame(payload), hex(vector), "{vector}");
            let mut decoded = Vec::new();
            FrameDecoder::new().feed(&hex(vector), |p| decoded.push(p.to_vec()));
            assert_eq!(decoded, vec![payload.to_vec()], "{vector}");
        }
        assert_eq!(set_payload(COMM_SET_DUTY, 25_000), [5, 0, 0, 0x61, 0xA8]);
        assert_eq!(encode_frame(&values_payload()), hex(VALUES_REPLY));
    }

    #[test]
    fn long_frames_and_length_rules() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let frame = encode_frame(&payload);
        assert_eq!(&frame[..3], &[3, 0x01, 0x2C]);
        assert_eq!(frame.len(), 306);
        let mut decoded = Vec::new();
        FrameDecoder::new().feed(&frame, |p| decoded.push(p.to_vec()));
        assert_eq!(decoded, vec![payload]);
        // 255 bytes still go short; the firmware also accepts a long frame of 255.
        let p255 = vec![4u8; 255];
        assert_eq!(encode_frame(&p255)[..2], [2, 255]);
        let mut long255 = vec![3, 0, 255];
        long255.extend_from_slice(&p255);
        long255.extend_from_slice(&crc16(&p255).to_be_bytes());
        long255.push(3);
        let mut count = 0;
        FrameDecoder::new().feed(&long255, |_| count += 1);
        assert_eq!(count, 1);
        // Non-minimal long frames, zero lengths and oversized payloads are refused.
        let p254 = vec![4u8; 254];
        let mut long254 = vec![3, 0, 254];
        long254.extend_from_slice(&p254);
        long254.extend_from_slice(&crc16(&p254).to_be_bytes());
        long254.push(3);
        let mut decoder = FrameDecoder::new();
        let mut count = 0;
        decoder.feed(&long254, |_| count += 1);
        assert_eq!(count, 0);
        assert!(encode_frame(&[]).is_empty());
        assert!(encode_frame(&vec![0u8; MAX_PAYLOAD + 1]).is_empty());
        assert_eq!(encode_frame(&vec![0u8; MAX_PAYLOAD]).len(), MAX_FRAME);
        let mut decoder = FrameDecoder::new();
        decoder.feed(&[3, 0x02, 0x01], |_| panic!("no frame"));
        assert_eq!(decoder.skipped(), 1, "a 513-byte length is refused at once");
        let mut decoder = FrameDecoder::new();
        decoder.feed(&[3, 0x04, 0x00], |_| panic!("no frame"));
        assert_eq!((decoder.skipped(), decoder.pending()), (3, 0));
    }

    #[test]
    fn start_asks_the_version_then_polls_values() {
        let mut codec = VescCodec::new(7);
        let mut out = CodecOut::new();
        codec.start(0.0, &mut out);
        assert_eq!(out.tx, hex(FW_VERSION_REQ));
        assert!(out.events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }));
        // One request in flight: nothing more until it is answered or times out.
        assert!(poll(&mut codec, 0.01).tx.is_empty());
        let out = feed(&mut codec, &fw_reply(), 0.012);
        assert_eq!(out.events, vec![Event::Identity(IDENTITY.into())]);
        assert_eq!(poll(&mut codec, 0.02).tx, hex(GET_VALUES_REQ));
        assert!(poll(&mut codec, 0.03).tx.is_empty());
        let out = feed(&mut codec, &hex(VALUES_REPLY), 0.035);
        assert!(out.events.contains(&Event::State(DriveState::Idle)), "{:?}", out.events);
        assert_eq!(poll(&mut codec, 0.04).tx, hex(GET_VALUES_REQ));
        // A second identical identity is not reported again.
        assert!(feed(&mut codec, &fw_reply(), 0.05).events.is_empty());
    }

    #[test]
    fn identity_of_older_firmware_is_read_leniently() {
        assert_eq!(parse_identity(&[3, 60]).as_deref(), Some("VESC firmware 3.60"));
        assert_eq!(
            parse_identity(&[5, 2, b'4', b'1', 0]).as_deref(),
            Some("VESC firmware 5.02, hardware 41")
        );
        assert_eq!(
            parse_identity(&[5, 3, b'7', b'5', b'_', b'3', b'0', 0, 1, 2, 3]).as_deref(),
            Some("VESC firmware 5.03, hardware 75_30")
        );
        let mut with_test = vec![6, 5, b'6', b'0', 0];
        with_test.extend_from_slice(&[0xAB; 12]);
        with_test.extend_from_slice(&[0, 4, 0, 0, 0, 0, 0, 0]);
        with_test.extend_from_slice(b"custom\0");
        assert_eq!(
            parse_identity(&with_test).as_deref(),
            Some(
                "VESC firmware 6.05, hardware 60, UUID abababababababababababab, test build 4, firmware name custom"
            )
        );
        assert_eq!(parse_identity(&[6]), None);
        let mut codec = started(7);
        let out = feed(&mut codec, &encode_frame(&[0, 6]), 0.01);
        assert!(matches!(&out.events[..], [Event::Log(t)] if t.contains("too short")), "{:?}", out.events);
    }

    #[test]
    fn reference_reply_decodes_to_every_signal() {
        let mut codec = started(7);
        feed(&mut codec, &fw_reply(), 0.001);
        poll(&mut codec, 0.01);
        let out = feed(&mut codec, &hex(VALUES_REPLY), 0.02);
        let expect = [
            (SIG_SPEED, 5000.0 / 7.0),
            (SIG_CURRENT, 1.5),
            (SIG_POSITION, 123.456 / 360.0),
            (SIG_VOLTAGE, 24.0),
            (SIG_TEMPERATURE, 25.0),
            (SIG_MOTOR_TEMPERATURE, 30.0),
            (SIG_MOTOR_CURRENT, 1.5),
            (SIG_INPUT_CURRENT, 0.75),
            (SIG_ID, 0.0),
            (SIG_DUTY, 0.1),
            (SIG_ERPM, 5000.0),
            (SIG_TACHOMETER, 1234.0),
            (SIG_TACHOMETER_ABS, 1234.0),
            (SIG_AH, 0.0123),
            (SIG_AH_CHARGED, 0.0),
            (SIG_WH, 0.2952),
            (SIG_WH_CHARGED, 0.0),
            (SIG_MOSFET1, 25.0),
            (SIG_MOSFET1 + 1, 25.0),
            (SIG_MOSFET1 + 2, 25.0),
            (SIG_VD, 0.5),
            (SIG_VQ, 2.0),
        ];
        assert_eq!(out.samples.len(), expect.len());
        for (signal, value) in expect {
            assert!((sample(&out, signal) - value).abs() < 1e-9, "{}: {}", SIGNALS[signal as usize].0, value);
        }
        assert!(out.samples.iter().all(|s| s.t_s == 0.02));
        assert_eq!(
            out.events,
            vec![Event::Status("normal".into()), Event::State(DriveState::Idle)],
            "{:?}",
            out.events
        );
        let signals = codec.signals();
        let names: Vec<&str> = signals.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(&names[..5], &["speed_rpm", "current_a", "position_rev", "voltage_v", "temperature_c"]);
        assert_eq!(signals.len(), SIGNALS.len());
    }

    #[test]
    fn shorter_replies_of_older_firmware() {
        let payload = values_payload();
        // Through the fault code, the PID position and controller id, the MOSFET NTCs, Vd/Vq,
        // and the full reply with the status byte.
        for (len, samples) in [(54, 16), (59, 17), (65, 20), (73, 22), (74, 22)] {
            let mut codec = ready(7);
            let out = feed(&mut codec, &encode_frame(&payload[..len]), 0.1);
            assert_eq!(out.samples.len(), samples, "{len}");
            assert_eq!(
                out.samples.iter().any(|s| s.signal == SIG_POSITION),
                len >= 58,
                "position needs the PID field ({len})"
            );
        }
        let mut codec = ready(7);
        let out = feed(&mut codec, &encode_frame(&payload[..53]), 0.1);
        assert!(out.samples.is_empty());
        assert!(matches!(&out.events[..], [Event::Log(t)] if t.contains("shorter")), "{:?}", out.events);
        // Without the status byte no status is reported.
        let mut codec = started(7);
        poll(&mut codec, 0.2);
        let out = feed(&mut codec, &encode_frame(&payload[..73]), 0.21);
        assert!(!out.events.iter().any(|e| matches!(e, Event::Status(_))), "{:?}", out.events);
        assert!(out.events.contains(&Event::State(DriveState::Idle)));
    }

    /// A stream holding every kind of packet the codec handles.
    fn mixed_stream() -> Vec<u8> {
        let mut stream = fw_reply();
        stream.extend(hex(VALUES_REPLY));
        let mut print = vec![COMM_PRINT];
        print.extend_from_slice(b"Warning: Could not set mcconf due to wrong signature");
        stream.extend(encode_frame(&print));
        stream.extend(encode_frame(&[99, 1, 2, 3]));
        stream.extend(values_frame_with(&[(53, 4), (73, 1)]));
        stream
    }

    fn outcome(out: &CodecOut) -> (Vec<u8>, Vec<Event>, Vec<Sample>) {
        (out.tx.clone(), out.events.clone(), out.samples.clone())
    }

    #[test]
    fn split_anywhere_gives_the_same_result() {
        let stream = mixed_stream();
        let reference = {
            let mut codec = started(7);
            poll(&mut codec, 0.01);
            outcome(&feed(&mut codec, &stream, 0.5))
        };
        assert!(reference.1.contains(&Event::Identity(IDENTITY.into())));
        assert!(reference.1.iter().any(|e| matches!(e, Event::Log(t) if t.contains("wrong signature"))));
        assert!(
            reference
                .1
                .iter()
                .any(|e| matches!(e, Event::State(DriveState::Fault(t)) if t.contains("ABS_OVER_CURRENT")))
        );
        for split in 0..=stream.len() {
            let mut codec = started(7);
            poll(&mut codec, 0.01);
            let mut out = CodecOut::new();
            codec.feed(&stream[..split], 0.5, &mut out);
            codec.feed(&stream[split..], 0.5, &mut out);
            assert_eq!(outcome(&out), reference, "split at {split}");
        }
        let mut codec = started(7);
        poll(&mut codec, 0.01);
        let mut out = CodecOut::new();
        for byte in &stream {
            codec.feed(std::slice::from_ref(byte), 0.5, &mut out);
        }
        assert_eq!(outcome(&out), reference, "byte by byte");
    }

    #[test]
    fn garbage_and_bad_frames_are_skipped() {
        let mut codec = started(7);
        poll(&mut codec, 0.01);
        let mut stream = vec![0x02, 0xFF, 0x03, 0x00, 0x02, 0x05, 0x06, 0x03, 0x03, 0x03, 0x00, 0x10];
        stream.extend(hex(VALUES_REPLY));
        // The same frame with one CRC bit flipped, then a wrong end byte.
        let mut bad_crc = hex(VALUES_REPLY);
        let n = bad_crc.len();
        bad_crc[n - 2] ^= 1;
        stream.extend(&bad_crc);
        let mut bad_end = hex(VALUES_REPLY);
        bad_end[n - 1] = 0x04;
        stream.extend(&bad_end);
        stream.extend([0xAA; 40]);
        stream.extend(hex(VALUES_REPLY));
        let out = feed(&mut codec, &stream, 0.05);
        assert_eq!(out.samples.iter().filter(|s| s.signal == SIG_SPEED).count(), 2);
        assert_eq!(codec.rx.pending(), 0);
        assert!(codec.rx.skipped() > 0);
        let out = poll(&mut codec, 0.06);
        assert!(
            out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("skipped"))),
            "{:?}",
            out.events
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
            biased in prop::collection::vec(prop::sample::select(vec![0u8, 2, 3, 4, 0x4A, 0xFF]), 0..600),
        ) {
            let mut codec = started(7);
            let mut now = 0.0;
            for chunk in chunks.iter().chain(std::iter::once(&biased)) {
                now += 0.01;
                let mut out = CodecOut::new();
                codec.feed(chunk, now, &mut out);
                codec.poll(now, &mut out);
                prop_assert!(codec.rx.pending() <= MAX_FRAME);
                prop_assert!(out.samples.iter().all(|s| s.value.is_finite()));
            }
        }

        #[test]
        fn console_classification_never_panics(text in ".{0,80}", bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let codec = started(7);
            let _ = codec.raw_intent(&text);
            let hex_line: String = bytes.iter().map(|b| format!("{b:02x} ")).collect();
            let _ = codec.raw_intent(&hex_line);
        }
    }

    #[test]
    fn setpoints_are_stored_until_enabled() {
        let mut codec = ready(5);
        let (r, out) = run(&mut codec, Command::SetSetpoint(ControlMode::Speed, 2000.0), 0.1);
        r.unwrap();
        assert!(out.tx.is_empty(), "a SET would start the motor");
        assert_eq!(out.events, vec![Event::Mode { mode: ControlMode::Speed, setpoint: 2000.0 }]);
        let (r, out) = run(&mut codec, Command::Enable, 0.1);
        r.unwrap();
        assert_eq!(out.tx, hex(SET_RPM_10000));
        assert_eq!(states(&out.events), vec![DriveState::Enabled]);
        // COMM_ALIVE 0.2 s after the last SET, not before.
        assert!(!contains(&poll(&mut codec, 0.25).tx, &hex(ALIVE)));
        feed(&mut codec, &hex(VALUES_REPLY), 0.26);
        let out = poll(&mut codec, 0.31);
        assert_eq!(out.tx, [hex(ALIVE), hex(GET_VALUES_REQ)].concat());
        assert!(!contains(&poll(&mut codec, 0.45).tx, &hex(ALIVE)));
        assert!(contains(&poll(&mut codec, 0.52).tx, &hex(ALIVE)));
        // Changing the setpoint sends it at once and restarts the period.
        let (_, out) = run(&mut codec, Command::SetSetpoint(ControlMode::Speed, 2000.0), 0.6);
        assert_eq!(out.tx, hex(SET_RPM_10000));
        assert!(!contains(&poll(&mut codec, 0.7).tx, &hex(ALIVE)));
    }

    #[test]
    fn current_and_position_setpoints_encode_as_the_vectors() {
        let mut codec = ready(7);
        run(&mut codec, Command::SetMode(ControlMode::Current), 0.1).0.unwrap();
        run(&mut codec, Command::SetSetpoint(ControlMode::Current, 5.0), 0.1).0.unwrap();
        let (_, out) = run(&mut codec, Command::Enable, 0.1);
        assert_eq!(out.tx, hex(SET_CURRENT_5A));
        let (_, out) = run(&mut codec, Command::SetSetpoint(ControlMode::Current, -2.5), 0.1);
        assert_eq!(out.tx, hex(SET_CURRENT_MINUS_2_5A));
        // Position: the mode starts at the present PID position (123.456°).
        let (r, out) = run(&mut codec, Command::SetMode(ControlMode::Position), 0.2);
        r.unwrap();
        assert_eq!(out.tx, encode_frame(&[9, 0x07, 0x5B, 0xCA, 0x00]));
        assert_eq!(out.events, vec![Event::Mode { mode: ControlMode::Position, setpoint: 123.456 / 360.0 }]);
        let (_, out) = run(&mut codec, Command::SetSetpoint(ControlMode::Position, 0.25), 0.2);
        assert_eq!(out.tx, hex(SET_POS_90));
        for bad in [1.0, -0.01, 2.5, f64::NAN, f64::INFINITY] {
            let (r, out) = run(&mut codec, Command::SetSetpoint(ControlMode::Position, bad), 0.2);
            assert!(matches!(r, Err(CodecError::Invalid(_))), "{bad}: {r:?}");
            assert!(out.tx.is_empty());
        }
        let (r, _) = run(&mut codec, Command::SetSetpoint(ControlMode::Speed, 100.0), 0.2);
        assert_eq!(r, Err(CodecError::WrongMode { wanted: "speed".into(), active: "position".into() }));
    }

    #[test]
    fn position_mode_needs_a_known_position() {
        let mut codec = started(7);
        let (r, _) = run(&mut codec, Command::SetMode(ControlMode::Position), 0.01);
        assert!(matches!(r, Err(CodecError::Invalid(t)) if t.contains("not known yet")));
        let mut codec = ready(7);
        run(&mut codec, Command::SetMode(ControlMode::Position), 0.1).0.unwrap();
        // Enabling holds the present angle, whatever setpoint was stored.
        run(&mut codec, Command::SetSetpoint(ControlMode::Position, 0.9), 0.1).0.unwrap();
        feed(&mut codec, &values_frame_with(&[(54, 0x05), (55, 0x5D), (56, 0x4A), (57, 0x80)]), 0.15);
        let (r, out) = run(&mut codec, Command::Enable, 0.2);
        r.unwrap();
        assert_eq!(out.tx, hex(SET_POS_90));
        assert!(out.events.contains(&Event::Mode { mode: ControlMode::Position, setpoint: 0.25 }));
    }

    #[test]
    fn stops_coast_and_are_repeated() {
        let mut codec = ready(7);
        run(&mut codec, Command::SetSetpoint(ControlMode::Speed, 600.0), 0.1).0.unwrap();
        run(&mut codec, Command::Enable, 0.1).0.unwrap();
        let (_, out) = run(&mut codec, Command::Disable, 0.12);
        assert_eq!(out.tx, hex(SET_CURRENT_0));
        assert_eq!(states(&out.events), vec![DriveState::Idle]);
        for k in 0..STOP_REPEATS {
            let out = poll(&mut codec, 0.13 + 0.01 * f64::from(k));
            assert!(contains(&out.tx, &hex(SET_CURRENT_0)), "repeat {k}");
            assert!(!contains(&out.tx, &hex(ALIVE)));
        }
        assert!(!contains(&poll(&mut codec, 0.2).tx, &hex(SET_CURRENT_0)));
        // Disabled: the stored setpoint is kept and sent again by the next enable.
        let (_, out) = run(&mut codec, Command::Enable, 0.3);
        assert_eq!(out.tx, encode_frame(&set_payload(COMM_SET_RPM, 4200)));
        // E-stop zeroes the setpoint; a stop still repeating is cancelled by an enable.
        let mut out = CodecOut::new();
        codec.estop(0.4, &mut out);
        assert_eq!(out.tx, hex(SET_CURRENT_0));
        assert!(out.events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }));
        assert!(out.events.contains(&Event::State(DriveState::Idle)));
        let (_, out) = run(&mut codec, Command::Enable, 0.41);
        assert_eq!(out.tx, encode_frame(&set_payload(COMM_SET_RPM, 0)));
        assert!(!contains(&poll(&mut codec, 0.42).tx, &hex(SET_CURRENT_0)), "no stale stop after the enable");
        // Closing the port.
        let mut out = CodecOut::new();
        codec.stop(0.5, &mut out);
        assert_eq!(out.tx, hex(SET_CURRENT_0));
    }

    #[test]
    fn replies_that_never_come_are_reported() {
        let mut codec = ready(7);
        run(&mut codec, Command::Enable, 0.02).0.unwrap();
        let mut events = Vec::new();
        let mut tx = Vec::new();
        let mut now = 0.02;
        while now < 0.8 {
            now += 0.01;
            let out = poll(&mut codec, now);
            events.extend(out.events);
            tx.extend(out.tx);
        }
        let timeouts = events
            .iter()
            .filter(|e| matches!(e, Event::Log(t) if t.contains("no reply to COMM_GET_VALUES")))
            .count();
        assert!(timeouts >= 5, "{events:?}");
        let lost: Vec<_> = states(&events);
        assert!(
            matches!(&lost[..], [DriveState::Fault(t)] if t.contains("no reply from the VESC")),
            "{lost:?}"
        );
        assert!(events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("COMM_SET_CURRENT 0"))));
        assert!(contains(&tx, &hex(SET_CURRENT_0)));
        // GET_VALUES is asked again after each timeout.
        assert!(tx.windows(6).filter(|w| *w == hex(GET_VALUES_REQ).as_slice()).count() >= 7);
        // The drive comes back: the state is known again (not enabled), the identity re-read.
        let out = feed(&mut codec, &hex(VALUES_REPLY), now + 0.001);
        assert!(out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("answers again"))));
        assert_eq!(states(&out.events), vec![DriveState::Idle]);
        assert_eq!(poll(&mut codec, now + 0.01).tx, hex(FW_VERSION_REQ));
    }

    #[test]
    fn version_request_gives_up_after_three_attempts() {
        let mut codec = started(7);
        let mut tx = Vec::new();
        let mut events = Vec::new();
        for k in 1..=40 {
            let out = poll(&mut codec, 0.01 * f64::from(k));
            tx.extend(out.tx);
            events.extend(out.events);
        }
        // The first went out at start.
        assert_eq!(tx.windows(6).filter(|w| *w == hex(FW_VERSION_REQ).as_slice()).count(), 2);
        assert!(contains(&tx, &hex(GET_VALUES_REQ)));
        assert!(events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("version is unknown"))));
    }

    #[test]
    fn faults_latch_until_reset() {
        let mut codec = ready(7);
        run(&mut codec, Command::SetSetpoint(ControlMode::Speed, 600.0), 0.1).0.unwrap();
        run(&mut codec, Command::Enable, 0.1).0.unwrap();
        poll(&mut codec, 0.2);
        let out = feed(&mut codec, &values_frame_with(&[(53, 4)]), 0.21);
        assert_eq!(
            states(&out.events),
            vec![DriveState::Fault("FAULT_CODE_ABS_OVER_CURRENT (VESC fault code 4)".into())]
        );
        assert_eq!(out.tx, hex(SET_CURRENT_0), "stops applying setpoints");
        let (r, out) = run(&mut codec, Command::Enable, 0.22);
        assert!(matches!(r, Err(CodecError::Invalid(t)) if t.contains("reset faults")));
        assert!(out.tx.is_empty());
        let (_, out) = run(&mut codec, Command::ResetFaults, 0.23);
        assert!(
            matches!(&out.events[..], [Event::Refused(t)] if t.contains("still reports")),
            "{:?}",
            out.events
        );
        // The drive clears it by itself after its fault stop time.
        poll(&mut codec, 0.8);
        let out = feed(&mut codec, &hex(VALUES_REPLY), 0.81);
        assert!(out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("cleared"))));
        assert!(
            matches!(&states(&out.events)[..], [DriveState::Fault(t)] if t.contains("since cleared by the drive")),
            "{:?}",
            out.events
        );
        let (_, out) = run(&mut codec, Command::ResetFaults, 0.82);
        assert_eq!(states(&out.events), vec![DriveState::Idle]);
        run(&mut codec, Command::Enable, 0.83).0.unwrap();
        // Unknown codes keep their number.
        assert_eq!(fault_name(200), "fault code 200 (unknown to drivebench)");
        assert_eq!(fault_name(29), "FAULT_CODE_LV_OUTPUT_FAULT");
    }

    #[test]
    fn drive_timeout_while_enabled_ends_the_enabled_state() {
        let mut codec = ready(7);
        run(&mut codec, Command::Enable, 0.1).0.unwrap();
        // A reply to a request sent right after the enable may still show the idle timeout.
        poll(&mut codec, 0.12);
        let out = feed(&mut codec, &values_frame_with(&[(73, 1)]), 0.125);
        assert_eq!(out.events, vec![Event::Status("timeout active".into())]);
        let out = poll(&mut codec, 0.2);
        assert!(contains(&out.tx, &hex(GET_VALUES_REQ)));
        let out = feed(&mut codec, &values_frame_with(&[(73, 0)]), 0.205);
        assert_eq!(out.events, vec![Event::Status("normal".into())]);
        poll(&mut codec, 0.3);
        let out = feed(&mut codec, &values_frame_with(&[(73, 3)]), 0.305);
        assert!(out.events.contains(&Event::Status("timeout active, kill switch active".into())));
        assert!(out.events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("kill switch"))));
        assert_eq!(states(&out.events), vec![DriveState::Idle]);
        assert_eq!(out.tx, hex(SET_CURRENT_0));
    }

    #[test]
    fn prints_and_unknown_packets_are_logged() {
        let mut codec = ready(7);
        let mut print = vec![COMM_PRINT];
        print.extend_from_slice(b"hello\x07\xffworld\n");
        let out = feed(&mut codec, &encode_frame(&print), 0.1);
        assert_eq!(out.events, vec![Event::Log("VESC: hello \u{fffd}world".into())]);
        let out = feed(&mut codec, &encode_frame(&[14, 1, 2, 3]), 0.1);
        assert!(matches!(&out.events[..], [Event::Log(t)] if t.contains("COMM_GET_MCCONF (14)")));
        let out = feed(&mut codec, &encode_frame(&[13]), 0.1);
        assert_eq!(out.events, vec![Event::Log("the VESC acknowledged COMM_SET_MCCONF (13)".into())]);
        // Nothing arrives before start.
        let mut fresh = VescCodec::new(7);
        assert!(feed(&mut fresh, &hex(VALUES_REPLY), 0.0).samples.is_empty());
    }

    #[test]
    fn catalogue_is_empty_with_a_note() {
        let mut codec = ready(7);
        assert!(codec.params().is_empty());
        assert!(codec.params_note().is_some_and(|n| n.contains("VESC Tool")));
        assert_eq!(
            run(&mut codec, Command::ReadParam("x".into()), 0.1).0,
            Err(CodecError::UnknownParam("x".into()))
        );
        assert_eq!(
            run(&mut codec, Command::WriteParam("current_limit_a".into(), 1.0), 0.1).0,
            Err(CodecError::UnknownParam("current_limit_a".into()))
        );
        assert_eq!(run(&mut codec, Command::ReadAllParams, 0.1).0, Ok(()));
    }

    #[test]
    fn console_lines_are_classified() {
        let codec = started(7);
        let cases: [(&str, RawIntent); 9] = [
            (GET_VALUES_REQ, RawIntent::Other),
            ("020104408403", RawIntent::Other),
            ("0x02 0x01 0x04 0x40 0x84 0x03", RawIntent::Other),
            (ALIVE, RawIntent::Other),
            (SELECTIVE_8101, RawIntent::Other),
            (&SET_CURRENT_5A.to_lowercase(), RawIntent::Setpoint(ControlMode::Current, 5.0)),
            (SET_CURRENT_MINUS_2_5A, RawIntent::Setpoint(ControlMode::Current, -2.5)),
            (SET_RPM_10000, RawIntent::Setpoint(ControlMode::Speed, 10000.0 / 7.0)),
            (SET_POS_90, RawIntent::Setpoint(ControlMode::Position, 0.25)),
        ];
        for (line, intent) in cases {
            assert_eq!(codec.raw_intent(line), intent, "{line}");
        }
        let brake = encode_frame(&set_payload(COMM_SET_CURRENT_BRAKE, -3000));
        let brake_line: String = brake.iter().map(|b| format!("{b:02X} ")).collect();
        assert_eq!(codec.raw_intent(&brake_line), RawIntent::Setpoint(ControlMode::Current, 3.0));
        // -90° is 270° to the firmware.
        let pos = encode_frame(&set_payload(COMM_SET_POS, -90_000_000));
        let pos_line: String = pos.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(codec.raw_intent(&pos_line), RawIntent::Setpoint(ControlMode::Position, 0.75));

        let line = |payload: &[u8]| -> String {
            encode_frame(payload).iter().map(|b| format!("{b:02x} ")).collect()
        };
        let guarded = |text: &str, needle: &str| match codec.raw_intent(text) {
            RawIntent::Guarded(reason) => assert!(reason.contains(needle), "{text}: {reason}"),
            other => panic!("{text}: {other:?}"),
        };
        guarded(SET_DUTY_0_25, "COMM_SET_DUTY");
        guarded(&line(&[13, 0x93, 0x08, 0x5D, 0x0D, 1, 2]), "COMM_SET_MCCONF (13)");
        guarded(&line(&[16, 0x3A, 0x92, 0x7E, 0x56]), "COMM_SET_APPCONF (16)");
        guarded(&line(&[48, 0, 0, 0, 0]), "COMM_SET_MCCONF_TEMP (48)");
        guarded(&line(&[29]), "restarts");
        guarded(&line(&[34, 5, 4]), "CAN");
        guarded(&line(&[20, b'f', b'o', b'c']), "terminal");
        guarded(&line(&[24, 1]), "COMM_DETECT_MOTOR_PARAM");
        guarded(&line(&[200]), "packet id 200");
        guarded(&line(&[6, 0, 0]), "4-byte value");
        guarded("zz", "not hex");
        guarded("02 1", "not hex");
        guarded("02 05 06 00", "ends inside a packet");
        // Several packets: each counts, the strictest wins.
        assert_eq!(
            codec.raw_intent(&format!("{GET_VALUES_REQ} {SET_CURRENT_5A}")),
            RawIntent::Setpoint(ControlMode::Current, 5.0)
        );
        guarded(&format!("{SET_CURRENT_5A} {SET_DUTY_0_25}"), "COMM_SET_DUTY");
        guarded(&format!("{SET_CURRENT_5A} {SET_RPM_10000}"), "several packets");
        assert_eq!(codec.raw_intent(""), RawIntent::Other);
    }

    #[test]
    fn console_frames_of_every_decoder_generation_are_classified() {
        let codec = started(7);
        let guarded = |text: &str, needle: &str| match codec.raw_intent(text) {
            RawIntent::Guarded(reason) => assert!(reason.contains(needle), "{text}: {reason}"),
            other => panic!("{text}: {other:?}"),
        };
        // A long header with a short length: firmware up to 5.2 runs it as SET_CURRENT 50 A.
        assert_eq!(
            codec.raw_intent("03 00 05 06 00 00 C3 50 D4 77 03"),
            RawIntent::Setpoint(ControlMode::Current, 50.0)
        );
        guarded("03 00 05 06 00 00 C3 50 D4 77 03 00 00", "byte 12 (0x00) is outside every valid packet");
        // A packet hidden in another packet's payload is found and classified too.
        let mut print = vec![COMM_PRINT];
        print.extend(encode_frame(&set_payload(COMM_SET_CURRENT, 50_000)));
        let line: String = encode_frame(&print).iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(codec.raw_intent(&line), RawIntent::Setpoint(ControlMode::Current, 50.0));
        let mut print = vec![COMM_PRINT];
        print.extend(hex(SET_DUTY_0_25));
        let line: String = encode_frame(&print).iter().map(|b| format!("{b:02X}")).collect();
        guarded(&line, "COMM_SET_DUTY");
        // Stray bytes: a start byte that forms no frame, or anything else outside every frame.
        guarded(&format!("02 {GET_VALUES_REQ}"), "byte 1 (0x02)");
        guarded(&format!("{SET_CURRENT_5A} 03 00 07"), "ends inside a packet");
        guarded("ff ee 00", "outside every valid packet");
        guarded("02 05 06 00 00 13 88 00 00 04", "byte 1 (0x02) is outside every valid packet");
    }

    /// A `COMM_GET_VALUES` payload of firmware 2.x (`commands.c` before 3.0).
    fn values_v2_payload(fault: u8) -> Vec<u8> {
        let mut p = vec![COMM_GET_VALUES];
        for t in [251i16, 252, 253, 254, 255, 256, 240] {
            p.extend_from_slice(&t.to_be_bytes());
        }
        for v in [150i32, 75] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        p.extend_from_slice(&100i16.to_be_bytes());
        p.extend_from_slice(&5000i32.to_be_bytes());
        p.extend_from_slice(&240i16.to_be_bytes());
        for v in [123i32, 0, 2952, 0, 1234, 0x0102_0304] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        p.push(fault);
        assert_eq!(p.len(), 56);
        p
    }

    #[test]
    fn firmware_2_values_use_the_old_layout() {
        let mut codec = started(7);
        let out = feed(&mut codec, &encode_frame(&[COMM_FW_VERSION, 2, 18]), 0.001);
        assert_eq!(out.events, vec![Event::Identity("VESC firmware 2.18".into())]);
        poll(&mut codec, 0.01);
        // Read in the present layout, byte 3 of the absolute tachometer (0x03) would be a fault.
        let out = feed(&mut codec, &encode_frame(&values_v2_payload(0)), 0.02);
        assert_eq!(out.events, vec![Event::State(DriveState::Idle)], "{:?}", out.events);
        let expect = [
            (SIG_SPEED, 5000.0 / 7.0),
            (SIG_CURRENT, 1.5),
            (SIG_VOLTAGE, 24.0),
            (SIG_TEMPERATURE, 25.6),
            (SIG_MOTOR_CURRENT, 1.5),
            (SIG_INPUT_CURRENT, 0.75),
            (SIG_DUTY, 0.1),
            (SIG_ERPM, 5000.0),
            (SIG_TACHOMETER, 1234.0),
            (SIG_TACHOMETER_ABS, f64::from(0x0102_0304)),
            (SIG_AH, 0.0123),
            (SIG_AH_CHARGED, 0.0),
            (SIG_WH, 0.2952),
            (SIG_WH_CHARGED, 0.0),
            (SIG_MOSFET1, 25.1),
            (SIG_MOSFET1 + 1, 25.2),
            (SIG_MOSFET1 + 2, 25.3),
        ];
        assert_eq!(out.samples.len(), expect.len(), "{:?}", out.samples);
        for (signal, value) in expect {
            assert!((sample(&out, signal) - value).abs() < 1e-9, "{}: {}", SIGNALS[signal as usize].0, value);
        }
        // Its own fault code is at the end.
        let out = feed(&mut codec, &encode_frame(&values_v2_payload(2)), 0.03);
        assert!(
            matches!(&out.events[..], [Event::State(DriveState::Fault(t))] if t.contains("code 2")),
            "{:?}",
            out.events
        );
        // Firmware 1.x: the reply ends after the input voltage.
        let mut codec = started(7);
        feed(&mut codec, &encode_frame(&[COMM_FW_VERSION, 1, 5]), 0.001);
        let out = feed(&mut codec, &encode_frame(&values_v2_payload(0)[..31]), 0.02);
        assert_eq!(out.samples.len(), 11, "{:?}", out.samples);
        assert_eq!(out.events, vec![Event::State(DriveState::Idle)]);
        let out = feed(&mut codec, &encode_frame(&values_v2_payload(0)[..30]), 0.03);
        assert!(matches!(&out.events[..], [Event::Log(t)] if t.contains("at least 31")), "{:?}", out.events);
    }

    #[test]
    fn no_fault_is_taken_before_the_version_is_known() {
        let mut codec = started(7);
        let faulty = values_frame_with(&[(53, 4)]);
        let out = feed(&mut codec, &faulty, 0.01);
        assert_eq!(states(&out.events), vec![DriveState::Idle], "{:?}", out.events);
        assert!(out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("fault code 4"))));
        let out = feed(&mut codec, &faulty, 0.02);
        assert!(!out.events.iter().any(|e| matches!(e, Event::Log(_))), "noted once: {:?}", out.events);
        feed(&mut codec, &fw_reply(), 0.03);
        let out = feed(&mut codec, &faulty, 0.04);
        assert!(matches!(&states(&out.events)[..], [DriveState::Fault(_)]), "{:?}", out.events);
    }

    #[test]
    fn console_lines_are_sent_as_hex() {
        let mut codec = ready(7);
        let mut out = CodecOut::new();
        codec.raw("02 01 04 40 84 03", 0.1, &mut out);
        assert_eq!(out.tx, hex(GET_VALUES_REQ));
        let (r, out) = run(&mut codec, Command::Raw("0201 1ef3ff03".into()), 0.1);
        r.unwrap();
        assert_eq!(out.tx, hex(ALIVE));
        let (_, out) = run(&mut codec, Command::Raw("hello".into()), 0.1);
        assert!(out.tx.is_empty());
        assert!(matches!(&out.events[..], [Event::Refused(t)] if t.contains("not hex")));
    }

    /// The codec against the emulated VESC and the simulated motor, in memory.
    struct Bench {
        codec: VescCodec,
        device: crate::sim::device::vesc::VescDevice,
        drive: crate::sim::SimDrive,
        ms: u64,
        polling: bool,
        events: Vec<Event>,
        samples: Vec<Sample>,
    }

    impl Bench {
        fn new(pole_pairs: u32) -> Self {
            let mut bench = Bench {
                codec: VescCodec::new(pole_pairs),
                device: crate::sim::device::vesc::VescDevice::new(pole_pairs),
                drive: crate::sim::SimDrive::new(&crate::sim::SimConfig::default()),
                ms: 0,
                polling: true,
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

        fn exchange(&mut self, mut out: CodecOut) {
            use crate::sim::device::Device;
            for _ in 0..100 {
                self.events.append(&mut out.events);
                self.samples.append(&mut out.samples);
                if out.tx.is_empty() {
                    return;
                }
                let tx = std::mem::take(&mut out.tx);
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
                    let mut unsolicited = Vec::new();
                    self.device.tick(now, &mut self.drive, &frame, &mut unsolicited);
                    let mut out = CodecOut::new();
                    self.codec.feed(&unsolicited, now, &mut out);
                    self.exchange(out);
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

        fn last_status(&self) -> Option<String> {
            self.events.iter().rev().find_map(|e| match e {
                Event::Status(status) => Some(status.clone()),
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
    fn codec_against_emulated_vesc() {
        let mut bench = Bench::new(7);
        bench.run(0.3);
        let events = bench.take_events();
        assert!(events.contains(&Event::Identity(
            "VESC firmware 6.02, hardware 60, UUID 1c002a000d51373233383531".into()
        )));
        assert!(events.contains(&Event::State(DriveState::Idle)), "{events:?}");
        assert!(events.contains(&Event::Status("normal".into())), "{events:?}");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::Log(t) if t.contains("no reply") || t.contains("skipped")))
        );
        assert!((bench.mean(SIG_VOLTAGE, 0.0) - 24.0).abs() < 0.5);
        assert!((bench.mean(SIG_TEMPERATURE, 0.0) - 25.0).abs() < 1.0);
        let polls = bench.samples.iter().filter(|s| s.signal == SIG_SPEED).count();
        assert!(polls >= 25, "{polls}");

        // Idle for over a second: the drive's own timeout shows, nothing moves.
        bench.run(1.0);
        assert_eq!(bench.last_status().as_deref(), Some("timeout active"));

        // Speed step to 600 rpm.
        bench.command(Command::SetMode(ControlMode::Speed)).unwrap();
        bench.command(Command::SetSetpoint(ControlMode::Speed, 600.0)).unwrap();
        bench.run(0.05);
        assert!(!bench.drive.is_enabled(), "not enabled: the setpoint is only stored");
        bench.command(Command::Enable).unwrap();
        let step_s = bench.now();
        assert_eq!(bench.last_state(), Some(DriveState::Enabled));
        assert!(bench.drive.is_enabled());
        bench.run(1.5);
        let speed = bench.mean(SIG_SPEED, step_s + 1.0);
        assert!((speed - 600.0).abs() < 0.03 * 600.0, "{speed}");
        let erpm = bench.mean(SIG_ERPM, step_s + 1.0);
        assert!((erpm - 4200.0).abs() < 0.03 * 4200.0, "{erpm}");
        assert_eq!(bench.last_status().as_deref(), Some("normal"));

        // Polled normally, the firmware timeout never fires.
        bench.run(3.0);
        assert!(bench.drive.is_enabled());
        assert_eq!(bench.last_state(), Some(DriveState::Enabled));
        assert_eq!(bench.last_status().as_deref(), Some("normal"));

        // E-stop: the motor coasts.
        let mut out = CodecOut::new();
        bench.codec.estop(bench.now(), &mut out);
        bench.exchange(out);
        assert!(!bench.drive.is_enabled());
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
        let stop_s = bench.now();
        bench.run(0.5);
        let coasting = bench.mean(SIG_SPEED, stop_s + 0.4);
        assert!(coasting < 590.0, "{coasting}");
        assert!(!bench.drive.is_enabled());

        // A fault: reported by name, the motor stops, it clears in the drive after 0.5 s.
        bench.command(Command::SetSetpoint(ControlMode::Speed, 600.0)).unwrap();
        bench.command(Command::Enable).unwrap();
        bench.run(0.5);
        assert!(bench.drive.is_enabled());
        bench.take_events();
        {
            use crate::sim::device::Device;
            bench.device.force_fault(&mut bench.drive);
        }
        bench.run(0.05);
        assert_eq!(
            bench.last_state(),
            Some(DriveState::Fault("FAULT_CODE_ABS_OVER_CURRENT (VESC fault code 4)".into()))
        );
        assert!(!bench.drive.is_enabled());
        assert!(matches!(bench.command(Command::Enable), Err(CodecError::Invalid(_))));
        bench.run(0.6);
        assert!(matches!(bench.last_state(), Some(DriveState::Fault(t)) if t.contains("since cleared")));
        assert!(!bench.drive.is_enabled(), "a VESC does not restart by itself");
        bench.command(Command::ResetFaults).unwrap();
        assert_eq!(bench.last_state(), Some(DriveState::Idle));
        bench.command(Command::Enable).unwrap();
        assert!(bench.drive.is_enabled());
        bench.run(0.5);

        // The host goes silent while enabled: the drive releases the motor after 1 s.
        bench.polling = false;
        bench.run(0.9);
        assert!(bench.drive.is_enabled());
        bench.run(0.3);
        assert!(!bench.drive.is_enabled(), "the firmware timeout fired");
        {
            use crate::sim::device::Device;
            let mut reply = Vec::new();
            let now = bench.now();
            bench.device.receive(&hex(GET_VALUES_REQ), now, &mut bench.drive, &mut reply);
            assert_eq!(reply.len(), 79);
            assert_eq!(reply[2 + 73], 1, "status: timeout active");
        }
        // Polls resume: the codec knows the motor was released and does not claim Enabled.
        bench.polling = true;
        bench.take_events();
        bench.run(0.1);
        let events = bench.take_events();
        assert!(
            events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("released the motor"))),
            "{events:?}"
        );
        assert!(events.contains(&Event::State(DriveState::Idle)), "{events:?}");
        assert!(!bench.drive.is_enabled());

        // A drive whose timeout fires although the codec keeps it alive (timeout_msec set shorter
        // than the keep-alive period) is noticed from the status bit.
        bench.command(Command::Enable).unwrap();
        bench.run(0.1);
        bench.polling = false;
        bench.run(1.05);
        bench.polling = true;
        bench.codec.next_keepalive_at = bench.now() + 1.0;
        bench.codec.last_keepalive_at = bench.now();
        bench.take_events();
        bench.run(0.05);
        let events = bench.take_events();
        assert!(events.contains(&Event::Status("timeout active".into())), "{events:?}");
        assert!(
            events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("timeout fired"))),
            "{events:?}"
        );
        assert!(events.contains(&Event::State(DriveState::Idle)), "{events:?}");
    }

    #[test]
    fn position_and_current_against_emulated_vesc() {
        let mut bench = Bench::new(7);
        bench.run(0.2);
        bench.command(Command::SetMode(ControlMode::Position)).unwrap();
        let start = match bench.events.iter().rev().find_map(|e| match e {
            Event::Mode { mode: ControlMode::Position, setpoint } => Some(*setpoint),
            _ => None,
        }) {
            Some(p) => p,
            None => panic!("no position mode report"),
        };
        bench.command(Command::Enable).unwrap();
        let target = (start + 0.3).rem_euclid(1.0);
        bench.command(Command::SetSetpoint(ControlMode::Position, target)).unwrap();
        bench.run(1.5);
        let position = bench.mean(SIG_POSITION, bench.now() - 0.2);
        assert!((position - target).abs() < 0.01, "{position} vs {target}");

        bench.command(Command::SetMode(ControlMode::Current)).unwrap();
        assert!(!bench.drive.is_enabled(), "0 A releases the motor");
        bench.command(Command::SetSetpoint(ControlMode::Current, 1.0)).unwrap();
        assert!(bench.drive.is_enabled());
        bench.run(0.3);
        let current = bench.mean(SIG_CURRENT, bench.now() - 0.1);
        assert!(current > 0.3, "{current}");
        bench.command(Command::Disable).unwrap();
        assert!(!bench.drive.is_enabled());
    }
}
